"""Images/s of the whole training step (generator + discriminator updates, the joint stage).

Variants, timed round-robin in one run (so ratios compare like with like on a
shared machine): eager NCHW, eager channels-last, compiled channels-last in
fp32, and eager / compiled channels-last in bf16 autocast (on GPUs and on CPUs
with native bf16), each with the PyTorch reference losses and (when the
compiled operators are built) with the custom operators.

    pytest benchmarks/bench_train_step.py -s                       # default preset
    NFINPAINT_BENCH_PRESET=paper64 pytest benchmarks/bench_train_step.py -s
    NFINPAINT_BENCH_ROUNDS=5 NFINPAINT_BENCH_STEPS=5 ...           # more samples
    NFINPAINT_BENCH_THREADS=1 ...                                  # torch intra-op threads

Prints a Markdown table: median ms/step over rounds, images/s, speed-up over eager.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
import warnings

import torch
from timing import print_table

from nfinpaint import _extension, distributed
from nfinpaint.config import PRESETS
from nfinpaint.devices import cpu_has_bf16
from nfinpaint.train import Trainer, build_feature_net


def _has_custom_ops() -> bool:
    from nfinpaint import ops

    return _extension.is_built() and hasattr(ops, "composite_l2") and hasattr(ops, "feature_distance")


def _trainer(base, device, *, compile: str, channels_last: bool, custom_ops: bool, amp: str) -> Trainer:
    cfg = dataclasses.replace(base, compile=compile, channels_last=channels_last, use_custom_ops=custom_ops,
                              feature_weights="random", device=str(device), amp=amp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg, build_feature_net(cfg), distributed.DistInfo(device=device))


def test_train_step_images_per_second():
    preset = os.environ.get("NFINPAINT_BENCH_PRESET", "default")
    rounds = int(os.environ.get("NFINPAINT_BENCH_ROUNDS", "5"))
    steps = int(os.environ.get("NFINPAINT_BENCH_STEPS", "3"))
    stage = os.environ.get("NFINPAINT_BENCH_STAGE", "joint")
    if os.environ.get("NFINPAINT_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["NFINPAINT_BENCH_THREADS"]))
    device = distributed.resolve_device("auto")
    base = PRESETS[preset]
    n, s = base.batch_size, base.image_size
    variants = [("eager NCHW", dict(compile="never", channels_last=False, amp="none")),
                ("eager channels-last", dict(compile="never", channels_last=True, amp="none")),
                ("compiled channels-last", dict(compile="always", channels_last=True, amp="none"))]
    if device.type == "cuda" or cpu_has_bf16():
        variants += [("eager channels-last bf16", dict(compile="never", channels_last=True, amp="bf16")),
                     ("compiled channels-last bf16", dict(compile="always", channels_last=True, amp="bf16"))]
    loss_paths = [("reference", False)] + ([("custom ops", True)] if _has_custom_ops() else [])
    runs = {}
    for loss_name, custom in loss_paths:
        for name, opts in variants:
            trainer = _trainer(base, device, custom_ops=custom, **opts)
            real = torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(0)).to(
                device, memory_format=trainer.memory_format)
            mask = trainer.train_masks(0, n)
            start = time.perf_counter()
            trainer.step_fn(real, mask, stage)   # warm-up (compiles)
            trainer.step_fn(real, mask, stage)
            if device.type == "cuda":
                torch.cuda.synchronize()
            first = time.perf_counter() - start
            runs[(name, loss_name)] = (trainer, real, mask, [], first)
    for _ in range(rounds):
        for key, (trainer, real, mask, times, _) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                trainer.step_fn(real, mask, stage)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3 / steps)
    base_ms = statistics.median(runs[("eager NCHW", "reference")][3])
    rows = []
    for (name, loss_name), (trainer, _, _, times, first) in runs.items():
        med = statistics.median(times)
        rows.append([name, loss_name, med, min(times), n * 1e3 / med, base_ms / med, first])
    print_table(f"training step ({stage} stage), preset {preset} ({s}x{s}, batch {n}), {device}, "
                f"torch threads {torch.get_num_threads()}; {rounds} rounds x {steps} steps",
                ["variant", "losses", "median ms/step", "best ms/step", "images/s", "speed-up vs eager NCHW",
                 "warm-up s (2 steps, incl. compile)"], rows)
