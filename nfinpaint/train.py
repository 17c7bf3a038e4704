"""``python -m nfinpaint.train``: train the inpainting GAN, end to end.

    python -m nfinpaint.train --feature-weights random            # embedded photos, default preset, CPU ok
    python -m nfinpaint.train --data DIR --preset paper           # a folder of images, the paper's setting
    torchrun --nproc_per_node=8 -m nfinpaint.train --data DIR ... # several GPUs / nodes (DDP)
    python -m nfinpaint.train --resume RUN                        # continue a stopped run, bit for bit

The schedule is GLCIC's staged one (the paper optimises "in a gradual way"):
``g_warmup_steps`` of the generator alone on L2 (+ the feature loss), then
``d_warmup_steps`` of the discriminators alone, then joint adversarial
training; Adam with DCGAN settings (lr 2e-4, beta1 0.5).  The whole step
(generator and discriminator updates) runs channels-last under
``torch.compile`` (``--no-compile`` to turn off), in bf16 autocast on GPUs
and on CPUs with native bf16 (AMX / AVX512-BF16; ``--set amp=none`` for
fp32), with the fused loss operators.

The run directory (``--out``) holds config.toml (the resolved configuration
and the versions in use), metrics.jsonl, samples/ (original | masked | filled
PNG grids), checkpoints/ (atomic; Ctrl-C writes one too) and, at the end,
generator.pt (what ``nfinpaint.evaluate`` and ``nfinpaint.inpaint`` load).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
import warnings
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from nfinpaint import _extension, cli, distributed, generator_io, losses, masks
from nfinpaint.checkpoint import (CHECKPOINT_DIR, CheckpointError, list_checkpoints, rng_state, save_checkpoint,
                                  set_rng_state)
from nfinpaint.config import ConfigError, TrainConfig, load_config, to_toml
from nfinpaint.cpu import cpu_has_bf16, set_cpu_threads
from nfinpaint.crop_store import batch_items
from nfinpaint.data import DataError, build_datasets, describe
from nfinpaint.errors import NfinpaintError
from nfinpaint.figures import save_comparison_grid
from nfinpaint.images import ImageError
from nfinpaint.info import versions
from nfinpaint.masks import blank_holes
from nfinpaint.metrics import batch_psnr
from nfinpaint.files import remove_stale_temps
from nfinpaint.generators import build_generator
from nfinpaint.networks import GlobalDiscriminator, LocalDiscriminator, crop_patches, local_patch_origin
from nfinpaint.resume import (ResumePoint, check_config_file, find_resume_point, resume_config,
                              set_aside_later_checkpoints)
from nfinpaint.run_dir import (MetricsLog, RunLock, check_new_run_dir, check_not_in_use, check_outside_data,
                               default_run_dir, metrics_to_keep, say, write_config)
from nfinpaint.stop import StopRequest
from nfinpaint.train_options import build_parser, overrides_from_args

N_SAMPLES = 8


# --------------------------------------------------------------------------- data


def build_data(config: TrainConfig):
    """The training and validation datasets of (3, S, S) crops (nfinpaint.data)."""
    return build_datasets(config.data or None, config.image_size, val_fraction=config.val_fraction,
                          seed=config.seed, augment=config.augment, max_rotation=config.max_rotation,
                          max_crop_scale=config.max_crop_scale, val_dir=config.val_data or None)


# --------------------------------------------------------------------------- models


def build_models(config: TrainConfig) -> tuple[torch.nn.Module, GlobalDiscriminator, LocalDiscriminator]:
    """The generator and the two discriminators, initialised from the seed (the same on every rank)."""
    torch.manual_seed(config.seed)
    return (build_generator(config.generator, config.image_size), GlobalDiscriminator(config.image_size),
            LocalDiscriminator(config.local_patch_size))


def build_feature_net(config: TrainConfig):
    """The frozen VGG-19 of the feature loss (FeatureWeightsError when its weights can't be had)."""
    from nfinpaint.feature_net import VGGFeatures  # noqa: PLC0415

    torch.manual_seed(config.seed)  # "random" weights: the same ones again when a run resumes
    with warnings.catch_warnings():
        # the "random weights" warning is repeated in the run's own log lines, marked there
        warnings.simplefilter("ignore", UserWarning)
        return VGGFeatures(layer=config.feature_layer, weights=config.feature_weights)


# --------------------------------------------------------------------------- losses and the step


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
    """Models, optimisers and the training step; the loop is :func:`train`."""

    def __init__(self, config: TrainConfig, feature_net: torch.nn.Module, info: distributed.DistInfo):
        self.config, self.info, self.device = config, info, info.device
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.memory_format = fmt
        self.generator, self.global_d, self.local_d = (m.to(self.device, memory_format=fmt)
                                                       for m in build_models(config))
        self.feature_net = feature_net.to(self.device, memory_format=fmt)
        self.g_ddp = distributed.wrap(self.generator, info)
        # an exponential moving average of the generator's weights: what validation, samples
        # and the exported generator use when ema_decay > 0 (beyond the paper)
        self.generator_ema = (copy.deepcopy(self.generator).eval().requires_grad_(False)
                              if config.ema_decay > 0 else None)
        self.global_d_ddp = distributed.wrap(self.global_d, info)
        self.local_d_ddp = distributed.wrap(self.local_d, info)
        betas = (config.beta1, config.beta2)
        # fused Adam: one kernel per update on CPU and GPU, so nothing is left for the compiler to fuse
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas, fused=True)
        self.d_params = list(self.global_d.parameters()) + list(self.local_d.parameters())
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.lr, betas=betas, fused=True)
        self.weights = losses.LossWeights.from_config(config)
        amp = config.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" or cpu_has_bf16() else "none"
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.step_fn = torch.compile(self.train_step) if config.compile else self.train_step

    @property
    def inference_generator(self) -> torch.nn.Module:
        """The generator to evaluate and export: the weight average when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the average towards the generator after one of its updates (outside the compiled step)."""
        if self.generator_ema is None:
            return
        ema = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema, list(self.generator.parameters()), 1.0 - self.config.ema_decay)
        for mine, theirs in zip(self.generator_ema.buffers(), self.generator.buffers()):
            mine.copy_(theirs)   # BatchNorm statistics: the current ones

    def set_lr(self, lr: float) -> None:
        """The step's learning rate (config.lr_at); the optimisers run outside the compiled step."""
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Global + local discriminator loss; real and fake share one forward (no BatchNorm in D)."""
        n, p = real.shape[0], self.config.local_patch_size
        origins = local_patch_origin(mask, p)
        both = torch.cat([real, fake])
        with self._autocast():
            g_logits = self.global_d_ddp(both)
            l_logits = self.local_d_ddp(crop_patches(both, torch.cat([origins, origins]), p))
        return (losses.adversarial_d_loss(g_logits[:n], g_logits[n:])
                + losses.adversarial_d_loss(l_logits[:n], l_logits[n:]))

    def train_step(self, real: torch.Tensor, mask: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        """One optimisation step of ``stage`` ("generator", "discriminator" or "joint").

        Joint: one generator forward; the discriminators update on its detached
        composite, then the generator updates against the updated discriminators
        (as pytorch/examples' DCGAN).  Returns the detached loss terms.
        """
        cfg = self.config
        masked = blank_holes(real, mask)
        out: dict[str, torch.Tensor] = {}
        with self._autocast():
            if stage == "discriminator":
                with torch.no_grad():
                    generated = distributed.unwrap(self.g_ddp)(masked, mask)
            else:
                generated = self.g_ddp(masked, mask)
        composite, l2 = losses.composite_and_l2(generated.float(), real, mask, cfg.use_custom_ops,
                                                reduction=cfg.loss_reduction, form=cfg.l2_form)
        if stage == "joint":
            # Under torch.compile one graph is one autograd node: without this break the
            # discriminator's backward would free the generator's saved tensors before the
            # generator's own backward needs them.
            torch._dynamo.graph_break()
        if stage != "generator":
            d_loss = self._d_loss(real, composite.detach(), mask)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            _optimizer_step(self.opt_d, cfg.grad_clip)
            out["loss_d"] = d_loss.detach()
        if stage == "discriminator":
            return out
        terms = {"l2": l2}
        if cfg.feature_weight > 0:
            with self._autocast():
                feat_fake = self.feature_net(composite)
                with torch.no_grad():
                    feat_real = self.feature_net(real)
            feature = losses.feature_loss(feat_fake.float(), feat_real.float(), kind=cfg.feature_kind,
                                          use_custom_ops=cfg.use_custom_ops, reduction=cfg.loss_reduction)
            terms["feature"] = feature.clamp_min(1e-12).log() if cfg.feature_form == "log" else feature
        if stage == "joint":
            # The generator's update needs the discriminators' input gradients only: freezing
            # their weights skips the weight-gradient half of their backward, and running the
            # plain modules keeps DDP from all-reducing gradients nobody uses.
            _set_requires_grad(self.d_params, False)
            p = cfg.local_patch_size
            with self._autocast():
                g_logits = self.global_d(composite)
                l_logits = self.local_d(crop_patches(composite, local_patch_origin(mask, p), p))
            terms["adv_global"] = losses.adversarial_g_loss(g_logits)
            terms["adv_local"] = losses.adversarial_g_loss(l_logits)
        loss_g = losses.total_generator_loss(terms, self.weights)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        _optimizer_step(self.opt_g, cfg.grad_clip)
        if stage == "joint":
            _set_requires_grad(self.d_params, True)
        out["loss_g"] = loss_g.detach()
        out.update({name: value.detach() for name, value in terms.items()})
        return out

    # -- masks, validation ----------------------------------------------------------------

    def train_masks(self, step: int, n: int) -> torch.Tensor:
        """The step's hole masks: fixed centre holes, or random ones seeded by (seed, step, rank)."""
        cfg = self.config
        generator = None
        if cfg.train_masks != "center":
            generator = torch.Generator().manual_seed(hash((cfg.seed, step, self.info.rank)) & 0x7FFF_FFFF_FFFF)
        m = masks.make_masks(cfg.train_masks, n, cfg.image_size, cfg.hole_size, generator)
        return m.to(self.device, memory_format=self.memory_format)

    def fill(self, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The generator's fill of ``real``'s ``mask`` holes (eval mode, the training's precision)."""
        real = real.to(self.device, memory_format=self.memory_format)
        mask = mask.to(self.device, memory_format=self.memory_format)
        return generator_io.fill(self.inference_generator, real, mask, self.amp_dtype)

    @torch.no_grad()
    def validate(self, loader) -> dict[str, float]:
        """Mean hole PSNR on the validation split with the training's centre holes, with random
        rectangles and, for runs trained on the hole families, with those (all seeded: the same
        masks every time); and whole-image PSNR."""
        cfg = self.config
        families = cfg.train_masks in masks.HOLE_FAMILIES + ("mixed",)
        psnr_center, psnr_random, psnr_image, psnr_family = [], [], [], []
        for b, real in enumerate(loader):
            if cfg.val_batches and b >= cfg.val_batches:
                break
            n = real.shape[0]
            center = masks.make_masks("center", n, cfg.image_size, cfg.hole_size).to(self.device)
            rand = masks.make_masks("random", n, cfg.image_size, cfg.hole_size, seed=cfg.seed * 7919 + b)
            rand = rand.to(self.device)
            real = real.to(self.device)
            filled = self.fill(real, center)
            psnr_center.append(batch_psnr(filled, real, center).cpu())
            psnr_image.append(batch_psnr(filled, real).cpu())
            psnr_random.append(batch_psnr(self.fill(real, rand), real, rand).cpu())
            if families:
                holes = masks.make_masks("mixed", n, cfg.image_size, cfg.hole_size, seed=cfg.seed * 7919 + b)
                holes = holes.to(self.device)
                psnr_family.append(batch_psnr(self.fill(real, holes), real, holes).cpu())
        if not psnr_center:
            return {}
        out = {"val_psnr_hole": float(torch.cat(psnr_center).mean()),
               "val_psnr_hole_random": float(torch.cat(psnr_random).mean()),
               "val_psnr_image": float(torch.cat(psnr_image).mean()),
               "val_images": int(sum(len(x) for x in psnr_center))}
        if psnr_family:
            out["val_psnr_hole_mixed"] = float(torch.cat(psnr_family).mean())
        return out

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        models = {"generator": self.generator.state_dict(), "global_d": self.global_d.state_dict(),
                  "local_d": self.local_d.state_dict()}
        if self.generator_ema is not None:
            models["generator_ema"] = self.generator_ema.state_dict()
        return {"models": models,
                "optimizers": {"generator": self.opt_g.state_dict(), "discriminators": self.opt_d.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["models"]["generator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(state["models"]["generator_ema"])
        self.global_d.load_state_dict(state["models"]["global_d"])
        self.local_d.load_state_dict(state["models"]["local_d"])
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["discriminators"])


# --------------------------------------------------------------------------- the loop


def train(config: TrainConfig, out: str | os.PathLike | None = None, *,
          resume: ResumePoint | str | os.PathLike | None = None,
          info: distributed.DistInfo | None = None, progress: bool = True) -> dict:
    """Train per ``config`` into run directory ``out`` (or continue the run at ``resume``).

    Everything that can fail on bad input (data, feature weights, resume path,
    run directory) is checked before anything is written.  Returns a summary
    dict (steps done, final metrics, whether it was interrupted, paths).
    """
    info = info or distributed.setup(config.device)
    point = find_resume_point(resume) if isinstance(resume, (str, os.PathLike)) else resume
    if point is not None:
        run_dir = point.run_dir
        if config.steps < point.step:
            raise ConfigError(f"the run in {run_dir} is already at step {point.step}; pass --steps N with "
                              f"N >= {point.step} to continue it")
        if point.payload.get("world_size", 1) != info.world_size:
            say(info.is_main, f"note: the run used {point.payload.get('world_size', 1)} processes, now "
                              f"{info.world_size}: it continues, but not bit for bit")
        if info.is_main:
            check_not_in_use(run_dir)
            check_config_file(point)
    else:
        if out is not None and not str(out).strip():
            raise ConfigError("--out is empty; give the name of a folder for the run directory")
        run_dir = Path(distributed.broadcast_object(str(out or default_run_dir(config)), info))
        if info.is_main:
            check_new_run_dir(run_dir)
    check_outside_data(run_dir, config)
    if config.use_custom_ops and not _extension.is_built():
        raise ConfigError("use_custom_ops = true needs the compiled operators (nfinpaint._C), which are not built: "
                          "install with `pip install .`, or pass --set use_custom_ops=false")
    kept_metrics = metrics_to_keep(run_dir, point.step) if point is not None and info.is_main else None
    threads, note = set_cpu_threads(config.threads or (point.payload.get("threads", 0) if point else 0), info.device)
    if note:
        say(info.is_main, note)

    train_ds, val_ds = build_data(config)
    feature_net = build_feature_net(config)
    trainer = Trainer(config, feature_net, info)
    start = 0
    if point is not None:
        trainer.load_state_dict(point.payload)
        set_rng_state(point.payload["rng"])
        start = point.step

    # -- nothing was written before this point --------------------------------------------
    # The run directory is taken (created, locked) before the first write; a second training
    # into it fails here with one line instead of interleaving with this one.
    lock = RunLock(run_dir, new=point is None) if info.is_main else None
    try:
        samples_dir = run_dir / "samples"
        log = None
        if info.is_main:
            # temporary files of a writer killed mid-write (kill -9): no other process writes here now
            for folder in (run_dir, run_dir / CHECKPOINT_DIR, samples_dir):
                for stale in remove_stale_temps(folder):
                    say(True, f"note: removed {stale}, a temporary file left by a run that was killed mid-write")
            if point is not None:
                aside = set_aside_later_checkpoints(point)
                if aside is not None:
                    say(True, f"note: resuming from step {point.step}, older than the run's newest checkpoint: "
                              f"a new branch starts here; the later checkpoints are moved to {aside}")
        feature_meta = {"feature_weights": feature_net.weights_source, "feature_pretrained": feature_net.pretrained}
        if info.is_main:
            samples_dir.mkdir(parents=True, exist_ok=True)
            write_config(run_dir, config, feature_net.weights_source, feature_net.pretrained)
            log = MetricsLog(run_dir, kept_metrics, config.tensorboard)
        distributed.barrier(info)

        untrained = "" if feature_net.pretrained else " (UNTRAINED: random weights, smoke runs only)"
        say(info.is_main, f"run directory: {run_dir}")
        say(info.is_main, f"data: {config.data or 'embedded scikit-image photographs'}: train {describe(train_ds)}, "
                          f"validation {describe(val_ds)}")
        say(info.is_main, f"device: {info.device} x {info.world_size} process(es), {threads} CPU thread(s); "
                          f"compile={config.compile}, channels_last={config.channels_last}, "
                          f"amp={'bf16' if trainer.amp_dtype else 'off (fp32)'}, custom ops={config.use_custom_ops}")
        say(info.is_main, f"feature network: VGG-19 {config.feature_layer}, weights {feature_net.weights_source}"
                          f"{untrained}")
        say(info.is_main, f"schedule: {config.schedule()}, to step {config.steps}"
                          + (f"; resuming at step {start}" if start else ""))
        if log is not None:
            log.write({"kind": "start" if point is None else "resume", "step": start, "preset": config.preset,
                       **feature_meta, "world_size": info.world_size, "device": str(info.device),
                       "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})

        # crops are cut a batch at a time where the model trains (crop_store): no loader workers
        train_ds.store.to(info.device)
        val_loader = torch.utils.data.DataLoader(val_ds, batch_size=config.batch_size, shuffle=False, num_workers=0)
        # samples spread over the validation split (its items are grouped by source image)
        picks = np.linspace(0, len(val_ds) - 1, min(N_SAMPLES, len(val_ds))).round().astype(int).tolist()
        sample_batch = torch.stack([val_ds[i] for i in picks]) if len(val_ds) else None
        last_val: dict[str, float] = {}

        def validate(step: int) -> None:
            nonlocal last_val
            if info.is_main and len(val_ds):
                last_val = {"step": step, **trainer.validate(val_loader)}
                log.write({"kind": "val", **last_val})

        def samples(step: int) -> None:
            if info.is_main and sample_batch is not None:
                center = masks.make_masks("center", len(sample_batch), config.image_size, config.hole_size)
                save_comparison_grid(samples_dir / f"step_{step:07d}.png", sample_batch, center,
                                     {"filled": trainer.fill(sample_batch, center)})

        def checkpoint(step: int) -> Path | None:
            if info.is_main:
                return save_checkpoint(run_dir, step, {"config": dataclasses.asdict(config), **trainer.state_dict(),
                                                       "rng": rng_state(), "world_size": info.world_size,
                                                       "threads": threads, "versions": versions(), **feature_meta})
            return None

        def export(step: int, complete: bool) -> None:
            if info.is_main:
                val = {k: v for k, v in last_val.items() if k != "step"}
                meta = generator_io.training_meta(config, step=step, complete=complete, **feature_meta,
                                                  loss_weights=trainer.weights.as_dict(), val=val, versions=versions())
                generator_io.save_generator(run_dir / generator_io.GENERATOR_FILENAME, trainer.inference_generator, meta)

        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=config.steps, initial=start, disable=not (info.is_main and progress), dynamic_ncols=True,
                   mininterval=1.0, desc="train")
        if start == 0:
            validate(0)
            samples(0)
        step, interrupted, path = start, False, None
        window_start, window_images = time.perf_counter(), 0
        t0 = time.perf_counter()
        with StopRequest() as stop:
            while step < config.steps:
                if distributed.any_rank(stop.requested, info):
                    interrupted = True
                    break
                items = batch_items(step, config.batch_size, info.rank, info.world_size)
                real = train_ds.crops(items).to(memory_format=trainer.memory_format)
                stage = config.stage(step)
                trainer.set_lr(config.lr_at(step))
                out = trainer.step_fn(real, trainer.train_masks(step, real.shape[0]), stage)
                finite = bool(torch.isfinite(torch.stack([v.float() for v in out.values()])).all())
                if distributed.any_rank(not finite, info):
                    bar.close()
                    raise _diverged(step + 1, stage, out, run_dir, log)
                if stage != "discriminator":
                    trainer.update_ema()
                step += 1
                window_images += real.shape[0] * info.world_size
                if info.is_main and (step % config.log_every == 0 or step == config.steps):
                    values = {k: float(v) for k, v in out.items()}
                    now = time.perf_counter()
                    log.write({"kind": "train", "step": step, "stage": stage, **values,
                               "images_per_s": window_images / max(now - window_start, 1e-9), "elapsed_s": now - t0})
                    window_start, window_images = now, 0
                    bar.set_postfix({"stage": stage[:5], **{k: f"{v:.4g}" for k, v in values.items()}}, refresh=False)
                bar.update(1)
                if step % config.val_every == 0 or step == config.steps:
                    validate(step)
                    if "val_psnr_hole" in last_val:
                        bar.set_description(f"train (val hole PSNR {last_val['val_psnr_hole']:.2f} dB)", refresh=False)
                if step % config.sample_every == 0 or step == config.steps:
                    samples(step)
                if step % config.checkpoint_every == 0 and step < config.steps:
                    checkpoint(step)
            bar.close()
            if interrupted or step == config.steps:
                if last_val.get("step") != step:
                    validate(step)   # the exported generator and the end record describe this step
                path = checkpoint(step)
                export(step, complete=not interrupted)
        distributed.barrier(info)
        final = {k: v for k, v in last_val.items() if k != "step"}
        if log is not None:
            log.write({"kind": "end", "step": step, "interrupted": interrupted, "elapsed_s": time.perf_counter() - t0,
                       **final})
            log.close()
        if interrupted:
            say(info.is_main, f"interrupted at step {step}: checkpoint {path}; continue with --resume {run_dir}")
        else:
            summary = ", ".join(f"{k} {v:.2f}" for k, v in final.items() if k.startswith("val_psnr"))
            say(info.is_main, f"done: {step} steps; {summary}; generator exported to {run_dir / 'generator.pt'}")
        return {"run_dir": run_dir, "step": step, "interrupted": interrupted, "val": final, "trainer": trainer}
    finally:
        if lock is not None:
            lock.release()


class TrainingDiverged(NfinpaintError, RuntimeError):
    """The loss became NaN or infinite: the run stopped, and nothing of that step was saved."""


def _diverged(step: int, stage: str, out: dict, run_dir: Path, log: MetricsLog | None) -> TrainingDiverged:
    """Log the stop and say what is left: the weights of this step are not saved (they are not
    finite, or soon will be), so the last checkpoint is the one before it."""
    values = {k: float(v) for k, v in out.items()}
    if log is not None:
        log.write({"kind": "diverged", "step": step, "stage": stage, **values})
        log.close()
    shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    saved = list_checkpoints(run_dir)
    before = (f"the last checkpoint before it is {saved[-1][1]}" if saved else
              "no checkpoint was saved before it")
    return TrainingDiverged(f"training stopped at step {step} ({stage} stage): the loss is not finite ({shown}); "
                            f"nothing of this step was saved, {before}; start again with a lower lr or smaller "
                            f"loss weights")


# --------------------------------------------------------------------------- command line


def resolve(args: argparse.Namespace) -> tuple[TrainConfig, ResumePoint | None]:
    """The run's config, and the point it resumes from (None for a new run)."""
    overrides = overrides_from_args(args)
    if args.resume is None:
        return load_config(args.preset, args.config, overrides), None
    if args.preset is not None or args.config is not None:
        raise ConfigError("--resume continues a run with its own config; drop --preset/--config")
    point = find_resume_point(args.resume)
    if args.out is not None and Path(args.out).resolve() != point.run_dir.resolve():
        raise ConfigError("--resume continues in the run's own directory; drop --out")
    return resume_config(point, overrides), point


def run(args: argparse.Namespace) -> int:
    config, point = resolve(args)
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    info = distributed.setup(config.device)
    try:
        result = train(config, args.out, resume=point, info=info, progress=not args.quiet)
    finally:
        distributed.teardown(info)
    return cli.EXIT_INTERRUPTED if result["interrupted"] else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 done, 2 bad input (one ``error:`` line), 130 interrupted."""
    from nfinpaint.feature_net import FeatureWeightsError  # noqa: PLC0415

    return cli.main(run, argv, build_parser(__doc__),
                    (ConfigError, DataError, CheckpointError, ImageError, FeatureWeightsError, TrainingDiverged,
                     generator_io.NonFiniteOutput))


if __name__ == "__main__":
    raise SystemExit(main())
