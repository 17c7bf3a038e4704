"""``python -m nfinpaint.train``: train the inpainting GAN, end to end.

    python -m nfinpaint.train --feature-weights random            # embedded photos, default preset, CPU ok
    python -m nfinpaint.train --data DIR --preset paper           # a folder of images, the paper's setting
    torchrun --nproc_per_node=8 -m nfinpaint.train --data DIR ... # several GPUs / nodes (DDP)
    python -m nfinpaint.train --resume RUN                        # continue a stopped run, bit for bit
    python -m nfinpaint.train --fine-tune RUN --set KEY=V --steps N --out NEW   # go on under new settings

The schedule is GLCIC's staged one (the paper optimises "in a gradual way"):
``g_warmup_steps`` of the generator alone on L2 (+ the feature loss), then
``d_warmup_steps`` of the discriminators alone, then joint adversarial
training; Adam with DCGAN settings (lr 2e-4, beta1 0.5).  The whole step
(generator and discriminator updates) runs channels-last, under
``torch.compile`` on GPUs (config ``compile``: on CPUs the eager step was as
fast or faster, without minutes of compiling), in bf16 autocast on GPUs
and on CPUs with native bf16 (AMX / AVX512-BF16; ``--set amp=none`` for
fp32), with the fused loss operators.

The run directory (``--out``) holds config.toml (the resolved configuration
and the versions in use), metrics.jsonl, samples/ (original | masked | filled
PNG grids), checkpoints/ (atomic; Ctrl-C writes one too) and, at the end,
generator.pt (what ``nfinpaint.evaluate`` and ``nfinpaint.inpaint`` load).
"""
from __future__ import annotations

import argparse
import os
import warnings
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch

from nfinpaint import cli, distributed, inference, initial_fill, masks
from nfinpaint.checkpoint import list_checkpoints
from nfinpaint.config import PRESETS, ConfigError, TrainConfig, to_toml
from nfinpaint.crop_store import batch_items
from nfinpaint.data import build_datasets, describe
from nfinpaint.devices import autocast_dtype, compiles
from nfinpaint.files import DiskFullError
from nfinpaint.generators import build_generator, spec
from nfinpaint.masks import blank_holes
from nfinpaint.metrics import batch_psnr
from nfinpaint.networks import GlobalDiscriminator, LocalDiscriminator, crop_patches, local_patch_origin
from nfinpaint.objective import Objective
from nfinpaint.resume import ResumePoint, open_initial_generator
from nfinpaint.run_dir import say
from nfinpaint.stop import StopRequest
from nfinpaint.train_options import build_parser, config_from_args
from nfinpaint.training_run import Run
from nfinpaint.weight_average import WeightAverage

N_SAMPLES = 8


# --------------------------------------------------------------------------- data and models


def build_data(config: TrainConfig, progress: bool = True):
    """The training and validation datasets of (3, S, S) crops (nfinpaint.data); ``progress``: a bar
    while a large folder is decoded."""
    return build_datasets(config.data or None, config.image_size, **config.split().as_meta(),
                          augment=config.augment, max_rotation=config.max_rotation, val_dir=config.val_data or None,
                          progress=progress)


def build_models(config: TrainConfig) -> tuple[torch.nn.Module, GlobalDiscriminator, LocalDiscriminator]:
    """The generator and the two discriminators, initialised from the seed (the same on every rank)."""
    torch.manual_seed(config.seed)
    own = ({"stats": config.window_stats, "base_iterations": config.base_iterations}
           if spec(config.generator).full_resolution else {})
    return (build_generator(config.generator, config.image_size, **own), GlobalDiscriminator(config.image_size),
            LocalDiscriminator(config.local_patch_size))


class NoFeatureNet(torch.nn.Module):
    """Stands in for the VGG-19 when no loss term reads features (``feature_weight`` and
    ``texture_weight`` both 0): nothing is downloaded or built, and the run records that none was used."""

    weights_source = "none (no loss term uses the feature network: feature_weight = texture_weight = 0)"
    pretrained = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no loss term uses the feature network (feature_weight = texture_weight = 0)")


def build_feature_net(config: TrainConfig):
    """The frozen VGG-19 of the feature loss (FeatureWeightsError when its weights can't be had), or a
    :class:`NoFeatureNet` when no loss term uses it (``--set feature_weight=0`` needed no ImageNet download)."""
    from nfinpaint.feature_net import VGGFeatures  # noqa: PLC0415

    if not Objective.from_config(config).reads_features:
        return NoFeatureNet()
    torch.manual_seed(config.seed)  # "random" weights: the same ones again when a run resumes
    with warnings.catch_warnings():
        # the "random weights" warning is repeated in the run's own log lines, marked there
        warnings.simplefilter("ignore", UserWarning)
        return VGGFeatures(layer=config.feature_layer, weights=config.feature_weights)


# --------------------------------------------------------------------------- the step


@torch._dynamo.disable
def _set_requires_grad(params: list[torch.nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


@torch._dynamo.disable
def _optimizer_step(optimizer: torch.optim.Optimizer, clip: float = 0.0) -> None:
    # Kept out of torch.compile: compiling the Adam update for every parameter costs minutes
    # of compile time on a 2-core CPU and buys nothing over the fused kernel.
    if clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()


class Trainer:
    """Models, optimisers, the objective and the training step; the loop is :func:`train`."""

    def __init__(self, config: TrainConfig, feature_net: torch.nn.Module, info: distributed.DistInfo):
        self.config, self.info, self.device = config, info, info.device
        # under torchrun the log-form terms take the whole step's batch (every process's share)
        self.whole_mean = partial(distributed.mean_over_ranks, info=info) if info.enabled else None
        self.memory_format = fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.generator, self.global_d, self.local_d = (m.to(self.device, memory_format=fmt)
                                                       for m in build_models(config))
        self.feature_net = feature_net.to(self.device, memory_format=fmt)
        self.g_ddp = distributed.wrap(self.generator, info)
        self.average = WeightAverage(self.generator, config.ema_decay) if config.ema_decay > 0 else None
        self.global_d_ddp = distributed.wrap(self.global_d, info)
        self.local_d_ddp = distributed.wrap(self.local_d, info)
        betas = (config.beta1, config.beta2)
        # fused Adam: one kernel per update on CPU and GPU, so nothing is left for the compiler to fuse
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas, fused=True)
        self.d_params = list(self.global_d.parameters()) + list(self.local_d.parameters())
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.d_lr_at(0), betas=betas, fused=True)
        self.objective = Objective.from_config(config)
        self.amp_dtype = autocast_dtype(config.amp, self.device)
        self.compiled = compiles(config.compile, self.device)
        self.step_fn = torch.compile(self.train_step) if self.compiled else self.train_step

    def start_generator_from(self, generator: torch.nn.Module) -> None:
        """A new run's generator, and its weight average, start as ``generator``'s weights (config
        init_generator); ConfigError when the two generators are not shaped alike."""
        theirs = getattr(generator, "config", {}).get("variant", "paper")
        if theirs != self.config.generator:     # say so, rather than list every missing weight
            presets = [name for name, preset in PRESETS.items() if preset.generator == theirs]
            raise ConfigError(f"init_generator: it is a {theirs} generator and this run trains a "
                              f"{self.config.generator} one; use a preset that trains {theirs} "
                              f"({', '.join('--preset ' + p for p in presets) or '--set generator=' + theirs})")
        state = generator.state_dict()
        try:
            self.generator.load_state_dict(state)
        except RuntimeError as exc:
            detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise ConfigError(f"init_generator: its generator does not fit this run's ({self.config.generator}, "
                              f"image_size {self.config.image_size}): {detail}; use the preset it was trained "
                              f"with (its meta says which)") from None
        if self.average is not None:
            self.average.model.load_state_dict(state)

    def runs_unlike(self, generator: torch.nn.Module) -> str:
        """How ``generator`` (a full-resolution init_generator) runs that this run does not train it to run:
        its window statistics and base-fill steps, as ``--set`` options ("" when alike).  Its weights learned
        to correct its own base and input, so training them on another changes what they see (the legs
        trained as the shipped file runs were the first from a shipped generator to gain on every hole
        family, docs/training.md), yet the run's settings win: a run may mean to change them."""
        mine = {"window_stats": self.config.window_stats, "base_iterations": self.config.base_iterations}
        theirs = {"window_stats": getattr(generator, "stats", None),
                  "base_iterations": getattr(generator, "base_iterations", None)}
        if theirs["window_stats"] is None:        # a fixed-size generator: no window statistics, no base fill
            return ""
        return " ".join(f"--set {key}={theirs[key]}" for key in mine if theirs[key] != mine[key])

    @property
    def inference_generator(self) -> torch.nn.Module:
        """The generator to validate, sample and export: the weight average when there is one."""
        return self.average.model if self.average is not None else self.generator

    def set_lr(self, step: int) -> None:
        """The step's learning rates (config.lr_at, config.d_lr_at); the optimisers run outside the
        compiled step."""
        for optimizer, lr in ((self.opt_g, self.config.lr_at(step)), (self.opt_d, self.config.d_lr_at(step))):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _autocast(self):
        return nullcontext() if self.amp_dtype is None else torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, real: torch.Tensor, mask: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        """One optimisation step of ``stage`` ("generator", "discriminator" or "joint").

        Joint: one generator forward; the discriminators update on its detached
        composite, then the generator updates against the updated discriminators
        (as pytorch/examples' DCGAN).  Returns the detached loss terms.
        """
        objective, p = self.objective, self.config.local_patch_size
        masked = blank_holes(real, mask)
        with self._autocast():
            if stage == "discriminator":
                with torch.no_grad():
                    generated = distributed.unwrap(self.g_ddp)(masked, mask)
            else:
                generated = self.g_ddp(masked, mask)
        composite, l2 = objective.reconstruction(generated, real, mask)
        out: dict[str, torch.Tensor] = {}
        if stage == "joint":
            # Under torch.compile one graph is one autograd node: without this break the
            # discriminator's backward would free the generator's saved tensors before the
            # generator's own backward needs them.
            torch._dynamo.graph_break()
        if stage != "generator":
            # the local discriminator's patches, and the holes in them (adv_form "cells" weighs its cells by those)
            origins, cells = local_patch_origin(mask, p), objective.adv_cells
            local_mask = crop_patches(mask, origins, p)
            # real and fake share one forward of each discriminator (no BatchNorm in them)
            both = torch.cat([real, composite.detach()])
            with self._autocast():
                logits = (self.global_d_ddp(both, cells=cells),
                          self.local_d_ddp(crop_patches(both, torch.cat([origins, origins]), p), cells=cells))
            d_loss = objective.discriminator_loss(*logits, mask, local_mask)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            _optimizer_step(self.opt_d, self.config.grad_clip)
            out["loss_d"] = d_loss.detach()
        if stage == "discriminator":
            return out
        terms = {"l2": l2}
        if objective.reads_features:
            with self._autocast():
                feat_fake = self.feature_net(composite)
                with torch.no_grad():
                    feat_real = self.feature_net(real)
            if objective.uses_features:
                terms["feature"] = objective.feature_term(feat_fake, feat_real, mask, self.whole_mean)
            if objective.uses_texture:
                terms["texture"] = objective.texture_term(feat_fake, feat_real, mask, self.whole_mean)
        if objective.uses_ssim:
            terms["ssim"] = objective.ssim_term(composite, real, mask)
        if stage == "joint":
            # The generator's update needs the discriminators' input gradients only: freezing
            # their weights skips the weight-gradient half of their backward, and running the
            # plain modules keeps DDP from all-reducing gradients nobody uses.
            _set_requires_grad(self.d_params, False)
            with self._autocast():
                logits = (self.global_d(composite, cells=cells),
                          self.local_d(crop_patches(composite, origins, p), cells=cells))
            terms["adv_global"] = objective.adversarial_term(logits[0], mask)
            terms["adv_local"] = objective.adversarial_term(logits[1], local_mask)
        loss_g = objective.generator_loss(terms)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        _optimizer_step(self.opt_g, self.config.grad_clip)
        if stage == "joint":
            _set_requires_grad(self.d_params, True)
        return {**out, "loss_g": loss_g.detach(), **{name: value.detach() for name, value in terms.items()}}

    def train_masks(self, step: int, n: int) -> torch.Tensor:
        """The step's hole masks: fixed centre holes, or random ones seeded by (seed, step, rank)."""
        cfg = self.config
        seed = hash((cfg.seed, step, self.info.rank)) & 0x7FFF_FFFF_FFFF
        generator = None if cfg.train_masks == "center" else torch.Generator().manual_seed(seed)
        m = masks.make_masks(cfg.train_masks, n, cfg.image_size, cfg.hole_size, generator, flush_share=cfg.flush_holes)
        return m.to(self.device, memory_format=self.memory_format)

    def fill(self, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The inference generator's fill of ``real``'s ``mask`` holes, in the training's precision."""
        real = real.to(self.device, memory_format=self.memory_format)
        mask = mask.to(self.device, memory_format=self.memory_format)
        return inference.fill(self.inference_generator, real, mask, self.amp_dtype)

    @torch.no_grad()
    def validate(self, batches) -> dict[str, float]:
        """Mean hole PSNR on the validation split with the training's centre holes, with random
        rectangles and, for runs trained on the hole families, with those (each crop's seeded by its
        index: the same masks every time, :func:`masks.validation_masks`); and whole-image PSNR.
        ``batches``: (indices in the validation set, crops) pairs, all of them (:func:`train` gives it
        :class:`ValidationBatches`)."""
        cfg = self.config
        kinds = ("center", "random") + (("mixed",) if cfg.train_masks in masks.FAMILY_KINDS else ())
        psnr: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds + ("image",)}
        for items, real in batches:
            real = real.to(self.device)
            for kind in kinds:
                holes = masks.validation_masks(kind, items, cfg.image_size, cfg.hole_size, cfg.seed).to(self.device)
                filled = self.fill(real, holes)
                psnr[kind].append(batch_psnr(filled, real, holes).cpu())
                if kind == "center":
                    psnr["image"].append(batch_psnr(filled, real).cpu())
        if not psnr["center"]:
            return {}
        out = {"val_psnr_hole": float(torch.cat(psnr["center"]).mean()),
               "val_psnr_hole_random": float(torch.cat(psnr["random"]).mean()),
               "val_psnr_image": float(torch.cat(psnr["image"]).mean()),
               "val_images": int(sum(len(x) for x in psnr["center"]))}
        if "mixed" in psnr:
            out["val_psnr_hole_mixed"] = float(torch.cat(psnr["mixed"]).mean())
        return out

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        models = {"generator": self.generator, "global_d": self.global_d, "local_d": self.local_d}
        return {**models, "generator_ema": self.average.model} if self.average is not None else models

    def _state_parts(self) -> dict[str, dict]:
        return {"models": self.models, "optimizers": {"generator": self.opt_g, "discriminators": self.opt_d}}

    def state_dict(self) -> dict:
        """Models and optimisers as a checkpoint holds them."""
        return {group: {name: part.state_dict() for name, part in parts.items()}
                for group, parts in self._state_parts().items()}

    def load_state_dict(self, state: dict) -> None:
        for group, parts in self._state_parts().items():
            for name, part in parts.items():
                part.load_state_dict(state[group][name])
        # an optimiser's state brings back the saved run's hyperparameters: a fine-tune's new betas
        # were recorded but never used (the learning rate escaped: it is set every step)
        for optimiser in (self.opt_g, self.opt_d):
            for group in optimiser.param_groups:
                group["betas"] = (self.config.beta1, self.config.beta2)


# --------------------------------------------------------------------------- the loop


def spread_indices(length: int, count: int) -> list[int]:
    """``count`` of ``length`` item numbers, evenly spread over them (all of them when ``count`` is 0 or
    at least ``length``)."""
    if not count or count >= length:
        return list(range(length))
    return np.linspace(0, length - 1, count).round().astype(int).tolist()


class ValidationBatches:
    """``count`` crops of ``dataset`` spread over it (all of them when 0, :func:`spread_indices`), as
    (their indices, the crops) pairs of ``batch_size``; iterable again at every validation."""

    def __init__(self, dataset: torch.utils.data.Dataset, count: int, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self.items = spread_indices(len(dataset), count)

    def __iter__(self):
        for start in range(0, len(self.items), self.batch_size):
            items = self.items[start:start + self.batch_size]
            yield items, torch.stack([self.dataset[i] for i in items])


def train(config: TrainConfig, out: str | os.PathLike | None = None, *,
          resume: ResumePoint | str | os.PathLike | None = None, fine_tune: ResumePoint | None = None,
          info: distributed.DistInfo | None = None, progress: bool = True) -> dict:
    """Train per ``config`` into run directory ``out`` (or continue the run at ``resume``; or, with
    ``fine_tune``, go on from that checkpoint in the new run ``out``).

    Everything that can fail on bad input (data, feature weights, resume path,
    run directory) is checked before anything is written.  Returns a summary
    dict (steps done, final metrics, whether it was interrupted, paths).
    """
    info = info or distributed.setup(config.device)
    run = Run.prepare(config, out, resume, info, fine_tune=fine_tune)   # checks; sets the CPU threads
    train_ds, val_ds = build_data(config, progress and info.is_main)
    feature_net = build_feature_net(config)
    trainer = Trainer(config, feature_net, info)
    start = run.restore(trainer)
    if config.init_generator and run.point is None and run.origin is None:    # a new run, from a trained generator
        generator, run.initialised_from = open_initial_generator(config.init_generator)
        trainer.start_generator_from(generator)
        unlike = trainer.runs_unlike(generator)
        if unlike:
            say(info.is_main, f"note: the initial generator runs otherwise than this run trains it "
                              f"(window_stats={config.window_stats}, base_iterations={config.base_iterations}); "
                              f"{unlike} trains it as it runs")
    # -- nothing was written before this point --------------------------------------------
    try:
        # Ctrl-C and SIGTERM are caught from the first write on: one before the first step still ends
        # with a checkpoint to resume from, not a run directory that can be neither resumed nor reused
        # use_custom_ops = false: the base fill's solver too runs its PyTorch reference (no compiled operator)
        with StopRequest() as stop, initial_fill.reference_solver(not config.use_custom_ops):
            run.start(feature_net, f"train {describe(train_ds)}, validation {describe(val_ds)}", trainer.amp_dtype,
                      trainer.compiled)
            # crops are cut a batch at a time where the model trains (crop_store): no loader workers
            train_ds.store.to(info.device)
            # the validation crops and the samples spread over the validation split (its items are grouped
            # by source image): the first val_batches batches were the first pictures only (fullres: two of
            # the corpus's four).  val_batches counts the step's whole batch (every process's share), so
            # w processes of B validate on the crops one process of w*B does (rank 0 alone validates)
            val_batches = ValidationBatches(val_ds, config.val_batches * config.batch_size * info.world_size,
                                            config.batch_size)
            picks = spread_indices(len(val_ds), N_SAMPLES)
            sample_batch = torch.stack([val_ds[i] for i in picks]) if len(val_ds) else None

            def validate(step: int) -> None:
                if info.is_main and len(val_ds):
                    run.validated(step, trainer.validate(val_batches))

            def samples(step: int) -> None:
                if info.is_main and sample_batch is not None:
                    center = masks.make_masks("center", len(sample_batch), config.image_size, config.hole_size)
                    run.samples(step, sample_batch, center, trainer.fill(sample_batch, center))

            if run.point is None:     # a new run (a fine-tune too): where it starts from
                validate(start)
                samples(start)
            run.open_progress(progress)
            step, interrupted, path = start, False, None
            while step < config.steps:
                if distributed.any_rank(stop.requested, info):
                    interrupted = True
                    break
                real = train_ds.crops(batch_items(step, config.batch_size, info.rank, info.world_size))
                real = real.to(memory_format=trainer.memory_format)
                stage = config.stage(step)
                trainer.set_lr(step)
                out = trainer.step_fn(real, trainer.train_masks(step, real.shape[0]), stage)
                if stage != "discriminator" and trainer.average is not None:
                    trainer.average.update(trainer.generator)
                run.check_finite(step + 1, stage, out, trainer.models.values())
                step += 1
                if info.enabled and run.logs_at(step):    # the whole step's batch, not rank 0's share
                    out = dict(zip(out, distributed.mean_over_ranks(torch.stack(list(out.values())), info)))
                run.stepped(step, stage, out, real.shape[0] * info.world_size)
                if step % config.val_every == 0 or step == config.steps:
                    validate(step)
                if step % config.sample_every == 0 or step == config.steps:
                    samples(step)
                if step % config.checkpoint_every == 0 and step < config.steps:
                    run.checkpoint(step, trainer)
            run.close_progress()
            if interrupted or step == config.steps:
                if run.val_step != step:
                    validate(step)   # the exported generator and the end record describe this step
                path = run.checkpoint(step, trainer)
                run.export(step, not interrupted, trainer.inference_generator, trainer.objective.loss_weights())
        run.finish(step, interrupted, path)
        return {"run_dir": run.dir, "step": step, "interrupted": interrupted, "val": run.val, "trainer": trainer}
    except DiskFullError as exc:
        kept = list_checkpoints(run.dir)
        if not kept:        # nothing to resume from: running the command again is the way
            raise
        # "run again" started a new run beside this one, or was refused: this run goes on from its checkpoint
        raise exc.then_instead(f"run again with --resume {run.dir} (from its checkpoint of step {kept[-1][0]})") \
            from None
    finally:
        run.release()


# --------------------------------------------------------------------------- command line


def run(args: argparse.Namespace) -> int:
    config, point, origin = config_from_args(args)
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    info = distributed.setup(config.device)
    try:
        result = train(config, args.out, resume=point, fine_tune=origin, info=info, progress=not args.quiet)
    except RuntimeError as exc:
        # under torchrun one process's error ends the others in a lost connection: one line, not gloo's traceback
        lost = distributed.peer_stopped(exc, info)
        if lost is None:
            raise
        raise lost from None
    finally:
        distributed.teardown(info)
    return cli.EXIT_INTERRUPTED if result["interrupted"] else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 bad input (one ``error:`` line), 130 interrupted."""
    return cli.main(run, argv, build_parser(__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
