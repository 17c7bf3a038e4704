"""Training configuration: one dataclass, named presets, TOML files and overrides.

The resolved configuration is ``preset -> TOML file -> command-line overrides``
(later wins).  Every run directory holds its resolved ``config.toml`` (written
by :func:`to_toml`), which :func:`load_config` reads back, so a run can be
repeated with ``--config RUN/config.toml``.

``TrainConfig()`` is the ``default`` preset: the dataclass's field defaults are
the one definition of every training default (the objective's weights and
forms included, :mod:`nfinpaint.objective`); the other presets are changes to
it.

Presets:

``paper``
    The paper's setting (section 4): 24x24 crops, an 8x8 hole fixed at the
    centre, loss weights l1 = l2 = 200 (adversarial), l3 = 0.05 (feature),
    Adam lr 2e-4 beta1 0.5 (DCGAN).  What a user with a GPU runs on ImageNet
    crops.
``paper64``
    The 64x64 layout that Tables 1-2 imply (4096-wide "defc" = 256x4x4 after
    four 2x poolings), with the paper's weights; hole 22 (about 1/3 of the
    side, as 8 of 24) and local patch 32 (half the image, as GLCIC).
``default``
    What trains in a few CPU minutes on the embedded photographs: the paper's
    24x24 / 8x8 geometry, random rectangular training holes (the paper's test
    protocol: a model trained on the centre hole alone fails elsewhere), the
    adversarial weight of GLCIC (0.0004 on per-element means, not 200)
    and a short staged schedule; beyond the paper, the ``residual_unet``
    generator (a contrast-normalised correction of a biharmonic fill, with
    U-Net skips), the log-form L2 (per-image hole PSNR), a cosine learning
    rate and an average of the generator's weights; the evidence is in
    docs/training.md.
``photos``
    ``default`` for 12,000 steps (about 50 minutes on 2 CPU cores): the recipe of
    the shipped generator, trained on ``scripts/build_photo_corpus.py``'s
    photographs (``--data CORPUS/photos/train --set val_data=CORPUS/photos/val``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

from nfinpaint.data import DataSplit
from nfinpaint.errors import NfinpaintError
from nfinpaint.fullres_generator import STATS
from nfinpaint.generators import GENERATORS, spec
from nfinpaint.initial_fill import LEVEL_ITERATIONS, MAX_LEVEL_ITERATIONS
from nfinpaint.masks import FAMILY_KINDS, MASK_KINDS
from nfinpaint.networks import MIN_SIZE as LOCAL_PATCH_MIN

FLOAT32_MAX = 3.4028234663852886e38   # the training tensors' dtype bounds every float setting


class ConfigError(NfinpaintError, ValueError):
    """A configuration that cannot be used (unknown key, bad value), with what to do."""


FEATURE_KINDS = ("feature", "gram")
AMP_MODES = ("auto", "bf16", "none")
COMPILE_MODES = ("auto", "always", "never")
LR_SCHEDULES = ("constant", "cosine")
# How a discriminator's map of logits meets its loss: "mean", one logit a picture (the map's mean, as the
# paper's fully connected layer gives one); "cells", one a map cell, a fill's cells labelled fake by their
# share of hole pixels (the others left out) and every cell of a photograph real (beyond the paper).
ADV_FORMS = ("mean", "cells")
L2_FORMS = ("mse", "log")
# The feature term as equation 2 ("plain"), or its logarithm ("log": scale-free, so the term keeps its
# share of the gradient whatever the feature network's scale, untrained features included).
FEATURE_FORMS = ("plain", "log")
# Where equation 2 looks: the whole image, or the hole (each feature cell weighted by its hole fraction).
FEATURE_REGIONS = ("image", "hole")
# Reductions of the objective's L2 and feature terms (nfinpaint.losses): the one
# definition.  Not nfinpaint.ops.REDUCTIONS, which reduce one op's per-sample values.
LOSS_REDUCTIONS = ("mean", "image_sum", "sum")
# A run uses a per-image one: "sum" over the batch would tie the loss scale to the batch size.
RUN_LOSS_REDUCTIONS = ("mean", "image_sum")


@dataclass
class TrainConfig:
    """Everything that defines a training run (see ``python -m nfinpaint.train --help``)."""

    preset: str = "default"
    # -- data ---------------------------------------------------------------
    data: str = ""                  # folder of training images ("" = the embedded scikit-image photos)
    image_size: int = 24            # crops are scaled to image_size x image_size
    hole_size: int = 8              # side of the training hole (random holes: hole_size/2 .. 1.5*hole_size)
    local_patch_size: int = 12      # local discriminator's patch around the hole
    train_masks: str = "random"     # center (the paper) | random (rectangles) | freeform (strokes)
    # share of training holes (hole families only) placed without the families' inset from the crop's
    # edge, so that some reach it as inpaint's windows clipped at a picture's edge do
    flush_holes: float = 0.0
    val_fraction: float = DataSplit.val_fraction    # held-out share of the data (by image region or by file)
    augment: bool = True            # flip, shift (random crop position), rotation
    max_rotation: float = 15.0      # degrees, augmentation
    max_crop_scale: float = DataSplit.max_crop_scale  # crops span image_size .. max_crop_scale*image_size source pixels
    val_data: str = ""              # folder of validation images ("" = hold out part of the training data)
    # -- model ----------------------------------------------------------------
    generator: str = "residual_unet"  # a name in nfinpaint.generators.GENERATORS: paper (Tables 1-2) | residual | residual_unet | fullres
    # fullres generator: how each window is normalised, pooled (one mean and deviation over the three
    # channels; what a generator file without the setting means) | channel (each channel's own: what the
    # shipped file runs, and its last leg trained, with)
    window_stats: str = "pooled"
    # fullres generator: conjugate-gradient steps a pyramid level of the base fill the network corrects;
    # cheap in training (8); the shipped file runs 32 (chosen on validation), which a leg can train with
    base_iterations: int = LEVEL_ITERATIONS
    # a new run's generator (and weight average) starts from this generator file's weights: a run's
    # generator.pt, an exported file, or "shipped" (the package's default); "" = the seeded init
    init_generator: str = ""
    # -- schedule (GLCIC-style staged training) -----------------------------
    steps: int = 800                # total optimisation steps
    g_warmup_steps: int = 300       # stage 1: generator only, L2 (+ feature) loss
    d_warmup_steps: int = 40        # stage 2: discriminators only
    batch_size: int = 32            # per process (torchrun: per GPU)
    lr: float = 2e-4                # Adam, DCGAN settings
    lr_schedule: str = "cosine"     # constant (DCGAN) | cosine (decays to 0 at `steps`; beyond the paper)
    ema_decay: float = 0.995        # > 0: evaluate and export an EMA of the generator's weights (beyond the paper)
    # > 0: the discriminators' learning rate (peak; the schedule scales it as it scales lr), else lr's
    # (beyond the paper: a discriminator that learns faster than the generator)
    d_lr: float = 0.0
    beta1: float = 0.5
    beta2: float = 0.999
    # > 0: clip the gradient norm of each optimiser's parameters to this (beyond the paper): the generator's,
    # and the two discriminators' together (one optimiser; the shipped generator trained that way)
    grad_clip: float = 0.0
    # -- loss ---------------------------------------------------------------
    l2_weight: float = 1.0
    adv_global_weight: float = 0.0004
    adv_local_weight: float = 0.0004
    feature_weight: float = 0.05
    ssim_weight: float = 0.0        # > 0: add ssim_weight * (1 - hole SSIM) to the generator loss (beyond the paper)
    texture_weight: float = 0.0     # > 0: add texture_weight * log(hole Gram distance of the features) (beyond the paper)
    adv_form: str = "mean"          # mean (one logit a picture) | cells (one a map cell, the hole's fake; beyond the paper)
    l2_form: str = "log"            # mse (the paper's L2) | log (mean per-image log hole MSE = hole PSNR; beyond the paper)
    loss_reduction: str = "mean"    # mean (per element) | image_sum (per image sums: equation 2 literally)
    feature_kind: str = "feature"   # feature (equation 2) | gram (style distance)
    feature_form: str = "plain"     # plain (equation 2) | log (log of the term: scale-free; beyond the paper)
    feature_region: str = "image"   # image (equation 2) | hole (each feature cell weighted by its share of hole pixels)
    feature_layer: str = "relu3_1"
    feature_weights: str = "imagenet"  # imagenet | rotation (shipped, self-supervised) | PATH to a VGG-19 state dict | random (untrained, tests only)
    use_custom_ops: bool = True     # fused C++/CUDA loss operators and base-fill solver (False: PyTorch references)
    # -- speed --------------------------------------------------------------
    # torch.compile the training step: auto (on GPUs; on CPUs it measured no faster than the eager
    # channels-last step and took 1-3 minutes to compile, docs/training.md) | always | never
    compile: str = "auto"
    channels_last: bool = True
    amp: str = "auto"               # auto (bf16 on GPUs and on CPUs with native bf16, else fp32) | bf16 | none
    # -- run ----------------------------------------------------------------
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    threads: int = 0                # torch intra-op CPU threads (0 = auto: one per core not already busy)
    log_every: int = 20             # metrics.jsonl / progress-bar cadence
    sample_every: int = 100         # sample grid PNG cadence
    val_every: int = 200            # validation PSNR cadence
    val_batches: int = 0            # validation crops per evaluation, in whole steps' batches (0 = all)
    checkpoint_every: int = 200     # checkpoint cadence (also at the end and on Ctrl-C)
    tensorboard: bool = True        # log to TensorBoard too when it is installed

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` on values no run can use."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        for f in fields(self):   # inf passes range checks such as lr > 0; 1e39 is inf once in float32
            value = getattr(self, f.name)
            if isinstance(value, float):
                need(math.isfinite(value) and abs(value) <= FLOAT32_MAX,
                     f"{f.name} must be a finite number (within float32's range, |x| <= 3.4e38), got {value}")
        need(self.image_size >= 8, f"image_size must be at least 8, got {self.image_size}")
        need(0 < self.hole_size < self.image_size,
             f"hole_size must be between 1 and image_size-1 ({self.image_size - 1}), got {self.hole_size}")
        need(max(self.hole_size, LOCAL_PATCH_MIN) <= self.local_patch_size <= self.image_size,
             f"local_patch_size must be between {max(self.hole_size, LOCAL_PATCH_MIN)} (hole_size {self.hole_size}, "
             f"and the local discriminator's least {LOCAL_PATCH_MIN}) and image_size ({self.image_size}), "
             f"got {self.local_patch_size}")
        need(self.train_masks in MASK_KINDS, f"train_masks must be one of {MASK_KINDS}, got {self.train_masks!r}")
        need(0.0 <= self.flush_holes <= 1.0, f"flush_holes must be in [0, 1], got {self.flush_holes}")
        need(self.flush_holes == 0.0 or self.train_masks in FAMILY_KINDS,
             f"flush_holes applies to the hole families (train_masks thin, medium, large or mixed), "
             f"not train_masks={self.train_masks!r}")
        need(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        need(0.0 <= self.max_rotation <= 45.0, f"max_rotation must be in [0, 45] degrees, got {self.max_rotation}")
        need(self.max_crop_scale >= 1.0, f"max_crop_scale must be >= 1, got {self.max_crop_scale}")
        need(self.generator in GENERATORS,
             f"generator must be one of {tuple(GENERATORS)}, got {self.generator!r}")
        need(self.window_stats in STATS, f"window_stats must be one of {tuple(STATS)}, got {self.window_stats!r}")
        need(isinstance(self.base_iterations, int) and 1 <= self.base_iterations <= MAX_LEVEL_ITERATIONS,
             f"base_iterations must be an integer from 1 to {MAX_LEVEL_ITERATIONS}, got {self.base_iterations!r}")
        # settings only a full-resolution generator has, given away from their defaults
        own = [key for key, default in (("window_stats", "pooled"), ("base_iterations", LEVEL_ITERATIONS))
               if getattr(self, key) != default]
        need(not own or GENERATORS[self.generator].full_resolution,
             f"only a full-resolution generator (fullres) has {' and '.join(own)}; generator="
             f"{self.generator!r} does not: leave {'them' if len(own) > 1 else 'it'} out")
        need(not self.val_data or bool(self.data), "val_data (a validation folder) needs data (a training folder)")
        need(self.steps >= 0, f"steps must be >= 0, got {self.steps}")
        need(self.g_warmup_steps >= 0 and self.d_warmup_steps >= 0, "warm-up step counts must be >= 0")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        least = GENERATORS[self.generator].min_batch
        need(self.batch_size >= least,
             f"generator={self.generator!r} normalises its fully connected layer over the batch (BatchNorm): "
             f"batch_size must be at least {least} (per process), got {self.batch_size}")
        # an absurd batch is refused here, before the run directory is written, not by running
        # out of memory in the first step
        memory_problem = batch_memory_problem(self.batch_size, self.image_size, self.device)
        need(memory_problem is None, memory_problem or "")
        need(seed_problem(self.seed) is None, seed_problem(self.seed) or "")
        need(self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "lr must be > 0, betas in [0, 1)")
        need(self.d_lr >= 0, f"d_lr must be >= 0 (0: the discriminators take lr), got {self.d_lr}")
        need(self.adv_form in ADV_FORMS, f"adv_form must be one of {ADV_FORMS}, got {self.adv_form!r}")
        for name in ("l2_weight", "adv_global_weight", "adv_local_weight", "feature_weight", "ssim_weight",
                     "texture_weight"):
            need(getattr(self, name) >= 0 and math.isfinite(getattr(self, name)),
                 f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        need(self.loss_reduction in RUN_LOSS_REDUCTIONS,
             f"loss_reduction must be one of {RUN_LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        need(self.feature_kind in FEATURE_KINDS, f"feature_kind must be one of {FEATURE_KINDS}, got {self.feature_kind!r}")
        need(self.feature_weights.strip() != "", "feature_weights must be 'imagenet', 'rotation', 'random' or a file path")
        need(self.feature_form in FEATURE_FORMS,
             f"feature_form must be one of {FEATURE_FORMS}, got {self.feature_form!r}")
        need(self.feature_region in FEATURE_REGIONS,
             f"feature_region must be one of {FEATURE_REGIONS}, got {self.feature_region!r}")
        need(self.feature_region == "image" or self.feature_kind == "feature",
             "feature_region = \"hole\" weights equation 2 (feature_kind = \"feature\"); the Gram distance compares "
             "whole maps")
        need(self.l2_form in L2_FORMS, f"l2_form must be one of {L2_FORMS}, got {self.l2_form!r}")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        need(self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        need(self.compile in COMPILE_MODES, f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        need(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
             f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("log_every", "sample_every", "val_every", "checkpoint_every"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        need(self.val_batches >= 0, f"val_batches must be >= 0, got {self.val_batches}")
        # the models' own checks, as config errors before anything is built or written
        from nfinpaint.feature_net import LAYER_INDEX  # noqa: PLC0415  (torchvision: only when validating)
        need(self.feature_layer in LAYER_INDEX,
             f"feature_layer must be one of {', '.join(LAYER_INDEX)}, got {self.feature_layer!r}")
        try:
            spec(self.generator).check_size(self.image_size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return self

    def split(self) -> DataSplit:
        """The data split this run trains and validates on (recorded in its exported generator)."""
        return DataSplit(val_fraction=self.val_fraction, seed=self.seed, max_crop_scale=self.max_crop_scale)

    def schedule(self) -> str:
        """The stages as this run will see them, e.g. "300 generator-only, 40 discriminator-only,
        460 joint steps" (a stage cut short by ``steps`` is said so)."""
        g = min(self.g_warmup_steps, self.steps)
        d = min(self.d_warmup_steps, self.steps - g)
        joint = self.steps - g - d
        text = f"{g} generator-only, {d} discriminator-only, {joint} joint steps"
        if g < self.g_warmup_steps or d < self.d_warmup_steps:
            text += (f" (the {self.g_warmup_steps} + {self.d_warmup_steps}-step warm-up is longer than "
                     f"--steps {self.steps})")
        return text

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): a function of the step alone, so resuming keeps it."""
        if self.lr_schedule == "cosine" and self.steps > 0:
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr

    def d_lr_at(self, step: int) -> float:
        """The discriminators' learning rate at step ``step``: :meth:`lr_at`'s, scaled by d_lr / lr."""
        return self.lr_at(step) * (self.d_lr / self.lr if self.d_lr > 0 else 1.0)

    def stage(self, step: int) -> str:
        """Which stage step ``step`` (0-based) is in: "generator", "discriminator" or "joint"."""
        if step < self.g_warmup_steps:
            return "generator"
        if step < self.g_warmup_steps + self.d_warmup_steps:
            return "discriminator"
        return "joint"


# The seeds torch's generators take (torch.manual_seed); numpy's and Python's take these too.
SEED_MIN, SEED_MAX = -(2 ** 63), 2 ** 64 - 1


def seed_problem(value: int, name: str = "seed") -> str | None:
    """Why ``value`` cannot be a seed (a one-line message), or None when it can."""
    if isinstance(value, bool) or not isinstance(value, int) or not SEED_MIN <= value <= SEED_MAX:
        return f"{name} must be an integer from -2^63 to 2^64-1 ({SEED_MAX}), got {value}"
    return None


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def device_memory(device: str) -> tuple[int | None, str]:
    """(bytes, what) of the memory a run on ``device`` trains in: the GPU's when it is one and
    visible (``auto`` included), else this machine's."""
    if device != "cpu":
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            try:
                index = int(device.split(":")[1]) if ":" in device else 0
                return torch.cuda.get_device_properties(index).total_memory, f"GPU {index}"
            except (ValueError, RuntimeError, AssertionError, IndexError):
                pass     # a device that is not here: said in one line where the device is resolved
    return physical_memory(), "this machine"


def batch_floor_bytes(batch_size: int, image_size: int) -> int:
    """A lower bound of the memory one training batch takes: its crops, masks, the generator's
    input and output, in float32 (3 + 1 + 3 + 3 values a pixel); the networks' activations add
    many times more."""
    return batch_size * image_size * image_size * (3 + 1 + 3 + 3) * 4


def batch_memory_problem(batch_size: int, image_size: int, device: str, *, name: str = "batch_size",
                         images_per_item: int = 1, counted: str = "crops, masks and fills alone") -> str | None:
    """Why a batch of ``batch_size`` items (each ``images_per_item`` crops of ``image_size`` squared)
    cannot fit in the memory of ``device`` (a one-line message naming the option ``name``), or None
    when its floor (:func:`batch_floor_bytes`) fits or the memory is unknown.  Training's check
    (:meth:`TrainConfig.validate`) and ``feature_pretrain``'s: an absurd batch refused up front, not by
    running out of memory in the first step."""
    memory, where = device_memory(device)
    floor = batch_floor_bytes(batch_size * images_per_item, image_size)
    if memory is None or floor <= memory:
        return None
    return (f"{name} {batch_size} does not fit in memory: one batch of {image_size}x{image_size} crops needs more "
            f"than {floor / 2 ** 30:,.1f} GiB ({counted}, float32) and {where} has {memory / 2 ** 30:,.1f} GiB; "
            f"use a smaller {name}")


def _preset(**changes: Any) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **changes)


# The paper's method where the default recipe goes beyond it: its generator (Tables 1-2), the plain L2,
# a constant learning rate, no weight average.  Also what a checkpoint written before these keys
# existed trained with (resume.resume_config).
PAPER_METHOD: dict[str, Any] = {"generator": "paper", "l2_form": "mse", "lr_schedule": "constant", "ema_decay": 0.0}


def _paper_preset(name: str, image_size: int, hole_size: int, local_patch_size: int) -> TrainConfig:
    """The paper's objective and schedule at one crop geometry."""
    return _preset(
        preset=name, image_size=image_size, hole_size=hole_size, local_patch_size=local_patch_size,
        loss_reduction="image_sum", max_crop_scale=8.0, steps=100_000, g_warmup_steps=20_000, d_warmup_steps=2_000,
        batch_size=64, adv_global_weight=200.0, adv_local_weight=200.0, feature_weight=0.05,
        train_masks="center", log_every=100, sample_every=2_000, val_every=2_000, val_batches=32,
        checkpoint_every=5_000, **PAPER_METHOD,
    )


PRESETS: dict[str, TrainConfig] = {
    # The paper's objective: l1 = l2 = 200, l3 = 0.05 on per-image sums (objective.Objective.from_config);
    # 24x24 crops, 8x8 centre hole; local patch = half the image, as in GLCIC.
    "paper": _paper_preset("paper", image_size=24, hole_size=8, local_patch_size=12),
    # The 64x64 layout of Tables 1-2 with the paper's weights; hole and patch at the paper's ratios.
    "paper64": _paper_preset("paper64", image_size=64, hole_size=22, local_patch_size=32),
    # The paper's geometry with what trained best here (docs/training.md): the residual U-Net over a
    # biharmonic fill, the log-form L2, a cosine learning rate and a weight average.
    "default": TrainConfig(),
    # default, trained for about an hour on 2 CPU cores on a folder of photographs: the recipe of
    # the generator that ships in the package (scripts/build_photo_corpus.py makes the folders).
    "photos": _preset(preset="photos", ema_decay=0.999, steps=12_000, val_every=500, sample_every=1_000, checkpoint_every=1_000,
                      log_every=50),
    # Full-size inpainting: the fully convolutional generator on 128x128 crops with thin / medium /
    # large holes (up to 45% of the crop), crops of 1-2.5x as many source pixels; the paper's objective
    # (both discriminators, the feature term in log form so it keeps its share with any feature net).
    # Without normalisation layers the log-L2's large gradients on near-perfect holes can blow the
    # generator up (seen at lr 5e-4): gradients are clipped.
    "fullres": _preset(preset="fullres", generator="fullres", image_size=128, hole_size=48, local_patch_size=64,
                       train_masks="mixed", max_crop_scale=2.5, batch_size=8, steps=3_500, g_warmup_steps=1_500,
                       d_warmup_steps=50, grad_clip=1.0, l2_form="log", lr_schedule="cosine", ema_decay=0.995,
                       feature_form="log", feature_weight=0.1, val_every=500, val_batches=4, sample_every=500,
                       checkpoint_every=250, log_every=25),
}

FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
# Keys of older config files that are read and ignored (num_workers: crops are now cut in batches).
RETIRED_KEYS = frozenset({"num_workers"})
# Keys a resumed run may change: the others would make it another run (--fine-tune starts one).  All but
# device, threads and compile keep its bit-for-bit continuation; a changed thread count, or a step
# compiled where it was not (or the reverse), is said in a note.
RESUMABLE_KEYS = frozenset({"steps", "device", "threads", "log_every", "sample_every", "val_every",
                            "val_batches", "checkpoint_every", "tensorboard", "compile"})


# Keys that say where a run read its pictures, not how it trained.
WHERE_KEYS = frozenset({"preset", "data", "val_data"})


def changed_settings(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    """{key: [before's, after's]} for each key of ``after`` whose value differs from ``before``'s."""
    return {key: [before[key], value] for key, value in after.items() if key in before and before[key] != value}


def changed_from_preset(config: TrainConfig) -> dict[str, list] | None:
    """The settings ``config`` changed from its preset's, as {key: [preset's, run's]} (not where it
    read its pictures): what a generator's meta records so the run can be told apart from the preset.
    None for a preset this version does not know (a run of an older version)."""
    if config.preset not in PRESETS:
        return None
    after = {key: value for key, value in dataclasses.asdict(config).items() if key not in WHERE_KEYS}
    return changed_settings(dataclasses.asdict(PRESETS[config.preset]), after)


def _field_type(name: str) -> type:
    return type(getattr(TrainConfig(), name))


_KIND_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _compile_mode(value: Any, where: str) -> str:
    """``compile`` as one of COMPILE_MODES; true / false (the key was a boolean until 2026-12-03, and runs'
    config.toml files say so) mean always / never."""
    words = {"true": "always", "yes": "always", "1": "always", "false": "never", "no": "never", "0": "never"}
    if isinstance(value, bool):
        return "always" if value else "never"
    if isinstance(value, str):
        text = value.strip().lower()
        return words.get(text, text)
    raise ConfigError(f"config key 'compile'{where} needs one of {', '.join(COMPILE_MODES)}, got {value!r}")


def coerce(name: str, value: Any, origin: str = "") -> Any:
    """Check (and for strings from the command line, parse) ``value`` for config key ``name``."""
    where = f" in {origin}" if origin else ""
    if name not in FIELD_NAMES:
        raise ConfigError(f"unknown config key {name!r}{where}; known keys: {', '.join(FIELD_NAMES)}")
    if name == "compile":
        return _compile_mode(value, where)
    kind = _field_type(name)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text in ("true", "1", "yes")
            return kind(text)
        except ValueError:
            raise ConfigError(f"config key {name!r}{where} needs {_KIND_WORDS[kind]}, got {value!r}") from None
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"config key {name!r}{where} needs true or false, got {value!r}")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"config key {name!r}{where} needs {_KIND_WORDS[kind]}, got {value!r}")
    return value


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The config keys of a TOML file (top-level keys; a ``[versions]`` table is ignored)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a TOML file (a run's config.toml works)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data.pop("versions", None)  # recorded by the run directory, informational
    for key in RETIRED_KEYS:     # written by older versions; they no longer change anything
        data.pop(key, None)
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"unknown config table [{key}] in {path}; config keys are top-level")
        out[key] = coerce(key, value, str(path))
    return out


def load_config(preset: str | None = None, toml_path: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve ``preset`` (default: the TOML file's ``preset`` key, else "default"), then the
    TOML file's keys, then ``overrides``; validate; return a new :class:`TrainConfig`."""
    from_file = read_toml(toml_path) if toml_path is not None else {}
    name = preset if preset is not None else from_file.get("preset", "default")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = dataclasses.asdict(PRESETS[name])
    values.update(from_file)
    if "preset" in (overrides or {}):
        # a preset is a set of keys, applied first; as an override it would only relabel the run
        raise ConfigError(f"preset is chosen with --preset {overrides['preset']}, not as a key (--set preset=...)")
    for key, value in (overrides or {}).items():
        values[key] = coerce(key, value, "overrides")
    values["preset"] = name
    for key in PATH_KEYS:
        values[key] = absolute_path(key, values[key])
    return TrainConfig(**values).validate()


# Paths are recorded absolute: a run resumed (or a config.toml rerun) from another working folder reads
# the same pictures and weights (a relative path silently named whatever file of that name was there).
# Each key's values that are names, not paths ("": the embedded set, no file).
PATH_KEYS = {"data": ("",), "val_data": ("",), "feature_weights": ("imagenet", "random", "rotation"),
             "init_generator": ("", "shipped")}


def absolute_path(key: str, value: str) -> str:
    """A :data:`PATH_KEYS` key's value as an absolute path (its names as they are; an empty one stays empty,
    for the check that refuses it: made absolute it named the working folder)."""
    return value if value in PATH_KEYS[key] or not value.strip() else str(Path(value).expanduser().absolute())


def same_path(key: str, a: str, b: str) -> bool:
    """Whether two values of a :data:`PATH_KEYS` key name the same file or folder (``..`` and links
    resolved: the same folder written another way)."""
    if a in PATH_KEYS[key] or b in PATH_KEYS[key]:
        return a == b
    return os.path.realpath(absolute_path(key, a)) == os.path.realpath(absolute_path(key, b))


def _comment_safe(text: str) -> str:
    """``text`` with the control characters TOML forbids in comments written as escapes."""
    return "".join(c if c == "\t" or (" " <= c != "\x7f") else c.encode("unicode_escape").decode() for c in text)


def to_toml(config: TrainConfig, versions: dict[str, str] | None = None, header: str = "") -> str:
    """The config as TOML (``tomllib`` reads it back), plus an informational ``[versions]`` table."""
    # tomli-w escapes every string (control characters included), so every file reads back
    data: dict[str, Any] = {f.name: getattr(config, f.name) for f in fields(config)}
    if versions:
        data["versions"] = {str(key): str(value) for key, value in versions.items()}
    comments = "".join(f"# {_comment_safe(line)}\n" for line in header.splitlines())
    return comments + tomli_w.dumps(data)
