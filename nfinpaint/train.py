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
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import nfinpaint
from nfinpaint import _extension, distributed, losses, masks
from nfinpaint.checkpoint import (CheckpointError, find_resume_checkpoint, list_checkpoints, load_checkpoint,
                                  rng_state, save_checkpoint, set_rng_state)
from nfinpaint.config import (PRESETS, RESUMABLE_KEYS, ConfigError, TrainConfig, coerce, load_config, to_toml)
from nfinpaint.crop_store import batch_items
from nfinpaint.data import DataError, build_datasets, describe
from nfinpaint.files import write_text
from nfinpaint.images import ImageError
from nfinpaint.networks import Generator, GlobalDiscriminator, LocalDiscriminator, crop_patches, local_patch_origin
from nfinpaint.samples import save_samples

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
N_SAMPLES = 8


# --------------------------------------------------------------------------- helpers


def versions() -> dict[str, str]:
    """What produced a run: package and library versions, extension backends, device."""
    import skimage
    import torchvision

    out = {"nfinpaint": nfinpaint.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": np.__version__, "scikit-image": skimage.__version__,
           "cuda": torch.version.cuda or "none"}
    out["nfinpaint._C"] = _extension.build_info()["backends"] if _extension.is_built() else "not built"
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    # plain str: torch.__version__ is a str subclass that weights_only loading refuses
    return {key: str.__str__(value) for key, value in out.items()}


def hole_psnr(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, data range 1) over the hole pixels (all channels)."""
    err = (mask * (output.float() - target.float()) ** 2).flatten(1).sum(1)
    count = (mask.expand_as(target)).flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1.0 / (err / count).clamp_min(1e-10))


class MetricsLog:
    """metrics.jsonl (one JSON object per line, flushed) and TensorBoard when installed."""

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # drop what a stopped run logged after its last checkpoint: those steps are redone
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the current step and save; a
    second Ctrl-C aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step: saving a checkpoint (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# --------------------------------------------------------------------------- trainer


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): there oneDNN's bf16
    convolutions run about twice as fast as fp32 (measured: docs/training.md)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


@torch._dynamo.disable
def _set_requires_grad(params: list[torch.nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


@torch._dynamo.disable
def _optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    # Kept out of torch.compile: compiling the Adam update for every parameter costs minutes
    # of compile time on a 2-core CPU and buys nothing over the fused kernel.
    optimizer.step()


class Trainer:
    """Models, optimisers and the training step; the loop is :func:`train`."""

    def __init__(self, config: TrainConfig, feature_net: torch.nn.Module, info: distributed.DistInfo):
        self.config, self.info = config, info
        device = info.device
        self.device = device
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.memory_format = fmt
        torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts)
        self.generator = Generator(config.image_size, variant=config.generator).to(device, memory_format=fmt)
        self.global_d = GlobalDiscriminator(config.image_size).to(device, memory_format=fmt)
        self.local_d = LocalDiscriminator(config.local_patch_size).to(device, memory_format=fmt)
        self.feature_net = feature_net.to(device, memory_format=fmt)
        self.g_ddp = distributed.wrap(self.generator, info)
        self.global_d_ddp = distributed.wrap(self.global_d, info)
        self.local_d_ddp = distributed.wrap(self.local_d, info)
        betas = (config.beta1, config.beta2)
        # fused Adam: one kernel per update on CPU and GPU, so nothing is left for the compiler to fuse
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas, fused=True)
        self.d_params = list(self.global_d.parameters()) + list(self.local_d.parameters())
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.lr, betas=betas, fused=True)
        self.weights = losses.LossWeights(config.l2_weight, config.adv_global_weight, config.adv_local_weight,
                                          config.feature_weight, reduction=config.loss_reduction)
        amp = config.amp if config.amp != "auto" else ("bf16" if device.type == "cuda" or cpu_has_bf16() else "none")
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.step_fn = torch.compile(self.train_step) if config.compile else self.train_step

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr

    # -- the step ---------------------------------------------------------------------------

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
        masked = real * (1 - mask)
        out: dict[str, torch.Tensor] = {}
        with self._autocast():
            if stage == "discriminator":
                with torch.no_grad():
                    generated = distributed.unwrap(self.g_ddp)(masked, mask)
            else:
                generated = self.g_ddp(masked, mask)
        composite, l2 = losses.composite_and_l2(generated.float(), real, mask, cfg.use_custom_ops,
                                                reduction=cfg.loss_reduction)
        if stage == "joint":
            # Under torch.compile one graph is one autograd node: without this break the
            # discriminator's backward would free the generator's saved tensors before the
            # generator's own backward needs them.
            torch._dynamo.graph_break()
        if stage != "generator":
            d_loss = self._d_loss(real, composite.detach(), mask)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            _optimizer_step(self.opt_d)
            out["loss_d"] = d_loss.detach()
        if stage == "discriminator":
            return out
        terms = {"l2": l2}
        if cfg.feature_weight > 0:
            with self._autocast():
                feat_fake = self.feature_net(composite)
                with torch.no_grad():
                    feat_real = self.feature_net(real)
            terms["feature"] = losses.feature_loss(feat_fake.float(), feat_real.float(), kind=cfg.feature_kind,
                                                   use_custom_ops=cfg.use_custom_ops, reduction=cfg.loss_reduction)
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
        _optimizer_step(self.opt_g)
        if stage == "joint":
            _set_requires_grad(self.d_params, True)
        out["loss_g"] = loss_g.detach()
        out.update({name: value.detach() for name, value in terms.items()})
        return out

    # -- masks, evaluation, samples ---------------------------------------------------------

    def train_masks(self, step: int, n: int) -> torch.Tensor:
        """The step's hole masks: fixed centre holes, or random ones seeded by (seed, step, rank)."""
        cfg = self.config
        generator = None
        if cfg.train_masks != "center":
            generator = torch.Generator().manual_seed(hash((cfg.seed, step, self.info.rank)) & 0x7FFF_FFFF_FFFF)
        m = masks.make_masks(cfg.train_masks, n, cfg.image_size, cfg.hole_size, generator)
        return m.to(self.device, memory_format=self.memory_format)

    @torch.no_grad()
    def fill(self, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The generator's composite for ``real`` with ``mask`` holes (eval mode)."""
        g = self.generator
        was_training = g.training
        g.eval()
        try:
            real = real.to(self.device, memory_format=self.memory_format)
            mask = mask.to(self.device, memory_format=self.memory_format)
            with self._autocast():
                generated = g(real * (1 - mask), mask)
            return mask * generated.float() + (1 - mask) * real
        finally:
            g.train(was_training)

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Mean hole PSNR on the validation split with the training's centre holes and with
        random rectangles (seeded: the same masks every time), and whole-image PSNR."""
        cfg = self.config
        psnr_center, psnr_random, psnr_image = [], [], []
        for b, real in enumerate(loader):
            if cfg.val_batches and b >= cfg.val_batches:
                break
            n = real.shape[0]
            center = masks.make_masks("center", n, cfg.image_size, cfg.hole_size).to(self.device)
            rand = masks.make_masks("random", n, cfg.image_size, cfg.hole_size, seed=cfg.seed * 7919 + b)
            rand = rand.to(self.device)
            real = real.to(self.device)
            filled = self.fill(real, center)
            psnr_center.append(hole_psnr(filled, real, center).cpu())
            psnr_image.append(hole_psnr(filled, real, torch.ones_like(center)).cpu())
            psnr_random.append(hole_psnr(self.fill(real, rand), real, rand).cpu())
        if not psnr_center:
            return {}
        return {"val_psnr_hole": float(torch.cat(psnr_center).mean()),
                "val_psnr_hole_random": float(torch.cat(psnr_random).mean()),
                "val_psnr_image": float(torch.cat(psnr_image).mean()),
                "val_images": int(sum(len(x) for x in psnr_center))}

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"models": {"generator": self.generator.state_dict(), "global_d": self.global_d.state_dict(),
                           "local_d": self.local_d.state_dict()},
                "optimizers": {"generator": self.opt_g.state_dict(), "discriminators": self.opt_d.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["models"]["generator"])
        self.global_d.load_state_dict(state["models"]["global_d"])
        self.local_d.load_state_dict(state["models"]["local_d"])
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["discriminators"])


# --------------------------------------------------------------------------- the run


def build_feature_net(config: TrainConfig):
    """The frozen VGG-19 of the feature loss (FeatureWeightsError when its weights can't be had)."""
    from nfinpaint.feature_net import VGGFeatures  # noqa: PLC0415

    torch.manual_seed(config.seed)  # "random" weights: the same ones again when a run resumes
    with warnings.catch_warnings():
        # the "random weights" warning is repeated in the run's own log lines, marked there
        warnings.simplefilter("ignore", UserWarning)
        return VGGFeatures(layer=config.feature_layer, weights=config.feature_weights)


def set_cpu_threads(requested: int, info: distributed.DistInfo) -> int:
    """Set torch's intra-op CPU threads: ``requested``, or with 0 ("auto") one per core that
    is not already busy (the 1-minute load average), at least one.

    Why: with every core taken by other work, OpenMP's spinning threads slow a CPU
    step down many times over (measured here: 2.85 s with 2 threads vs 0.19 s with 1
    on 2 cores with one other busy process).  On a GPU torch's default is kept.
    Resuming bit for bit needs the same count: a resumed run reuses the recorded one.
    """
    if requested > 0:
        torch.set_num_threads(requested)
        return requested
    if info.device.type != "cpu":
        return torch.get_num_threads()
    cores = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    threads = max(1, min(cores, cores - int(busy)))  # a core counts as busy once fully loaded
    torch.set_num_threads(threads)
    if threads < cores:
        _log(info, f"note: using {threads} of {cores} CPU threads: the load average ({busy:.1f}) says other work "
                   f"holds the rest (--threads N to override)")
    return threads


def _log(info: distributed.DistInfo, message: str) -> None:
    if info.is_main:
        from tqdm import tqdm  # noqa: PLC0415

        tqdm.write(message, file=sys.stderr)


def _default_out(config: TrainConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.preset}-{stamp}"


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"run directory {out} already exists and is not empty; continue it with "
                          f"--resume {out}, or choose another --out")


def train(config: TrainConfig, out: str | os.PathLike | None = None, *, resume: str | os.PathLike | None = None,
          info: distributed.DistInfo | None = None, progress: bool = True) -> dict:
    """Train per ``config`` into run directory ``out`` (or continue the run at ``resume``).

    Everything that can fail on bad input (data, feature weights, resume path,
    run directory) is checked before anything is written.  Returns a summary
    dict (steps done, final metrics, whether it was interrupted, paths).
    """
    info = info or distributed.setup(config.device)
    payload = None
    if resume is not None:
        payload = load_checkpoint(find_resume_checkpoint(resume), map_location="cpu")
        run_dir = Path(resume) if Path(resume).is_dir() else Path(resume).parent.parent
        if config.steps < int(payload["step"]):
            raise ConfigError(f"the run in {run_dir} is already at step {payload['step']}; pass --steps N with "
                              f"N >= {payload['step']} to continue it")
        if payload.get("world_size", 1) != info.world_size:
            _log(info, f"note: the run used {payload.get('world_size', 1)} processes, now {info.world_size}: "
                       f"it continues, but not bit for bit")
    else:
        run_dir = Path(out) if out is not None else _default_out(config)
        run_dir = Path(distributed.broadcast_object(str(run_dir), info))
        if info.is_main:
            _check_out_dir(run_dir)
    if config.use_custom_ops and not _extension.is_built():
        raise ConfigError("use_custom_ops = true needs the compiled operators (nfinpaint._C), which are not built: "
                          "install with `pip install .`, or pass --set use_custom_ops=false")

    threads = set_cpu_threads(config.threads or (payload or {}).get("threads", 0), info)
    data_dir = config.data or None
    train_ds, val_ds = build_datasets(data_dir, config.image_size, val_fraction=config.val_fraction, seed=config.seed,
                                      augment=config.augment, max_rotation=config.max_rotation,
                                      max_crop_scale=config.max_crop_scale, val_dir=config.val_data or None)
    feature_net = build_feature_net(config)
    trainer = Trainer(config, feature_net, info)
    start = 0
    if payload is not None:
        trainer.load_state_dict(payload)
        set_rng_state(payload["rng"])
        start = int(payload["step"])

    # -- nothing was written before this point --------------------------------------------
    samples_dir = run_dir / "samples"
    log = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        samples_dir.mkdir(exist_ok=True)
        header = ("nfinpaint training run: the resolved configuration.\n"
                  "Repeat it with: python -m nfinpaint.train --config config.toml --out NEW_DIR\n"
                  f"feature network weights: {feature_net.weights_source}"
                  + ("" if feature_net.pretrained else "  <-- UNTRAINED: the feature loss is not perceptual"))
        write_text(run_dir / "config.toml", to_toml(config, versions(), header))
        log = MetricsLog(run_dir, start if payload is not None else None, config.tensorboard)
    distributed.barrier(info)

    untrained = "" if feature_net.pretrained else " (UNTRAINED: random weights, smoke runs only)"
    _log(info, f"run directory: {run_dir}")
    _log(info, f"data: {config.data or 'embedded scikit-image photographs'}: train {describe(train_ds)}, "
               f"validation {describe(val_ds)}")
    _log(info, f"device: {info.device} x {info.world_size} process(es), {threads} CPU thread(s); "
               f"compile={config.compile}, "
               f"channels_last={config.channels_last}, amp={'bf16' if trainer.amp_dtype else 'off (fp32)'}, "
               f"custom ops={config.use_custom_ops}")
    _log(info, f"feature network: VGG-19 {config.feature_layer}, weights {feature_net.weights_source}{untrained}")
    _log(info, f"schedule: {config.g_warmup_steps} generator-only, {config.d_warmup_steps} discriminator-only, "
               f"then joint, to step {config.steps}" + (f"; resuming at step {start}" if start else ""))
    if log is not None:
        log.write({"kind": "start" if payload is None else "resume", "step": start, "preset": config.preset,
                   "feature_weights": feature_net.weights_source, "feature_pretrained": feature_net.pretrained,
                   "world_size": info.world_size, "device": str(info.device),
                   "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    # crops are cut a batch at a time where the model trains (see crop_store): no loader workers
    train_ds.store.to(info.device)
    val_loader = DataLoader(val_ds, batch_size=config.batch_size, shuffle=False, num_workers=0)
    # samples spread over the validation split (its items are grouped by source image)
    picks = np.linspace(0, len(val_ds) - 1, min(N_SAMPLES, len(val_ds))).round().astype(int).tolist()
    sample_batch = torch.stack([val_ds[i] for i in picks]) if len(val_ds) else None

    feature_meta = {"feature_weights": feature_net.weights_source, "feature_pretrained": feature_net.pretrained}
    last_val: dict[str, float] = {}

    def evaluate(step: int) -> None:
        nonlocal last_val
        if info.is_main and len(val_ds):
            last_val = trainer.validate(val_loader)
            log.write({"kind": "val", "step": step, **last_val})

    def samples(step: int) -> None:
        if info.is_main and sample_batch is not None:
            center = masks.make_masks("center", len(sample_batch), config.image_size, config.hole_size)
            save_samples(samples_dir / f"step_{step:07d}.png", sample_batch, center,
                         trainer.fill(sample_batch, center))

    def checkpoint(step: int) -> Path | None:
        if not info.is_main:
            return None
        return save_checkpoint(run_dir, step, {"config": dataclasses.asdict(config), **trainer.state_dict(),
                                               "rng": rng_state(), "world_size": info.world_size,
                                               "threads": threads,
                                               "versions": versions(), **feature_meta})

    def export(step: int, complete: bool) -> None:
        if not info.is_main:
            return
        from nfinpaint.generator_io import save_generator  # noqa: PLC0415

        meta = {"preset": config.preset, "generator": config.generator, "data": config.data,
                "val_data": config.val_data, "seed": config.seed, "val_fraction": config.val_fraction,
                "max_crop_scale": config.max_crop_scale, "image_size": config.image_size, "hole_size": config.hole_size,
                "local_patch_size": config.local_patch_size, "train_masks": config.train_masks,
                "step": step, "steps": config.steps, "complete": complete, **feature_meta,
                "loss_weights": trainer.weights.as_dict(), "val": dict(last_val), "versions": versions()}
        save_generator(run_dir / "generator.pt", trainer.generator, meta)

    from tqdm import tqdm  # noqa: PLC0415

    bar = tqdm(total=config.steps, initial=start, disable=not (info.is_main and progress), dynamic_ncols=True,
               mininterval=1.0, desc="train")
    if start == 0:
        evaluate(0)
        samples(0)
    step = start
    interrupted = False
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
            step += 1
            window_images += real.shape[0] * info.world_size
            if info.is_main and (step % config.log_every == 0 or step == config.steps):
                values = {k: float(v) for k, v in out.items()}
                now = time.perf_counter()
                record = {"kind": "train", "step": step, "stage": stage, **values,
                          "images_per_s": window_images / max(now - window_start, 1e-9),
                          "elapsed_s": now - t0}
                window_start, window_images = now, 0
                log.write(record)
                bar.set_postfix({"stage": stage[:5], **{k: f"{v:.4g}" for k, v in values.items()}}, refresh=False)
            bar.update(1)
            if step % config.val_every == 0 or step == config.steps:
                evaluate(step)
                if last_val:
                    bar.set_description(f"train (val hole PSNR {last_val['val_psnr_hole']:.2f} dB)", refresh=False)
            if step % config.sample_every == 0 or step == config.steps:
                samples(step)
            if step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint(step)
        bar.close()
        if interrupted or step == config.steps:
            path = checkpoint(step)
            export(step, complete=not interrupted)
    distributed.barrier(info)
    if log is not None:
        log.write({"kind": "end", "step": step, "interrupted": interrupted, "elapsed_s": time.perf_counter() - t0,
                   **last_val})
        log.close()
    if interrupted:
        _log(info, f"interrupted at step {step}: checkpoint {path}; continue with --resume {run_dir}")
    elif info.is_main:
        summary = ", ".join(f"{k} {v:.2f}" for k, v in last_val.items() if k.startswith("val_psnr"))
        _log(info, f"done: {step} steps; {summary}; generator exported to {run_dir / 'generator.pt'}")
    return {"run_dir": run_dir, "step": step, "interrupted": interrupted, "val": last_val, "trainer": trainer}


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nfinpaint.train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(__doc__.split("\n\n")[:3]).replace("``", ""),
        epilog="Configuration precedence: --preset, then --config FILE.toml, then the options above and --set. "
               f"Presets: {', '.join(PRESETS)}. Every config key (python -m nfinpaint.train --print-config "
               "lists them) can be set with --set KEY=VALUE. Exit status: 0 done, 2 bad input, 130 interrupted "
               "(checkpoint saved).")
    parser.add_argument("--data", metavar="DIR",
                        help="folder (searched recursively) of training images, any format PIL reads; default: the "
                             "embedded scikit-image photographs (no download)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="named configuration: 'default' (trains in minutes on a CPU), 'paper' (24x24, 8x8 hole, "
                             "the paper's loss weights), 'paper64' (the tables' 64x64 layout); default: default")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="TOML file of config keys (a run's config.toml works); applied over the preset")
    parser.add_argument("--steps", type=int, metavar="N", help="total optimisation steps (all three stages)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="images per step per process")
    parser.add_argument("--out", metavar="DIR",
                        help="run directory to create (must not exist or be empty); default runs/PRESET-TIMESTAMP")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its newest checkpoint, bit for bit (same losses as an "
                             "uninterrupted run); only --steps, --device, --no-compile and logging "
                             "cadences may change")
    parser.add_argument("--device", metavar="DEV", help="auto (GPU if visible, default), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="seed of the weights, the data split, crops and augmentation (default 0)")
    parser.add_argument("--no-compile", action="store_true",
                        help="run the training step eagerly instead of under torch.compile (starts faster, "
                             "steps slower)")
    parser.add_argument("--feature-weights", metavar="{imagenet,PATH,random}",
                        help="VGG-19 weights of the feature loss: 'imagenet' (torchvision's, downloaded and cached; "
                             "the default), PATH to a vgg19 state_dict file, or 'random' (UNTRAINED: only for "
                             "offline smoke runs and tests; marked as such in logs, checkpoints and generator.pt)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: one per core not already busy, by the load average; "
                             "a resumed run reuses its recorded count)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key, e.g. --set adv_global_weight=0.01 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict:
    overrides = {}
    for option, key in (("data", "data"), ("steps", "steps"), ("batch_size", "batch_size"), ("device", "device"),
                        ("seed", "seed"), ("feature_weights", "feature_weights"),
                        ("threads", "threads")):
        value = getattr(args, option)
        if value is not None:
            overrides[key] = value
    if args.data is not None:
        overrides["data"] = str(Path(args.data).expanduser())
    if args.no_compile:
        overrides["compile"] = False
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key.strip()] = coerce(key.strip(), value, "--set")
    return overrides


def resolve(args: argparse.Namespace) -> TrainConfig:
    overrides = overrides_from_args(args)
    if args.resume is None:
        return load_config(args.preset, args.config, overrides)
    if args.preset is not None or args.config is not None:
        raise ConfigError("--resume continues a run with its own config; drop --preset/--config")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError("--resume continues in the run's own directory; drop --out")
    payload = load_checkpoint(find_resume_checkpoint(args.resume))
    saved = TrainConfig(**payload["config"])
    for key, value in overrides.items():
        if key not in RESUMABLE_KEYS and value != getattr(saved, key):
            raise ConfigError(f"cannot change {key} when resuming (the run's value is {getattr(saved, key)!r}); "
                              f"only {', '.join(sorted(RESUMABLE_KEYS))} may change")
    return dataclasses.replace(saved, **overrides).validate()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning
    from nfinpaint.feature_net import FeatureWeightsError  # noqa: PLC0415

    info = None
    try:
        config = resolve(args)
        if args.print_config:
            print(to_toml(config), end="")
            return 0
        info = distributed.setup(config.device)
        result = train(config, args.out, resume=args.resume, info=info, progress=not args.quiet)
    except (ConfigError, DataError, CheckpointError, ImageError, FeatureWeightsError,
            distributed.DeviceError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if info is not None:
            distributed.teardown(info)
    return EXIT_INTERRUPTED if result["interrupted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
