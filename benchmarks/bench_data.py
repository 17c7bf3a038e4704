"""Input pipeline: crops/s of the batched crop sampler, and training steps/s from a folder of
large photographs against the in-memory embedded set, in one run.

    pytest benchmarks/bench_data.py -s
    NFINPAINT_BENCH_FILES=60 NFINPAINT_BENCH_SIDE=1024 NFINPAINT_BENCH_STEPS=40 ...

The folder is made by the benchmark (``NFINPAINT_BENCH_FILES`` PNGs of
``NFINPAINT_BENCH_SIDE`` pixels on the long side, textured so PNG decoding
costs what a photograph does), or ``NFINPAINT_BENCH_DATA=/path`` uses a real
one.  The reference for the sampler is the per-item path that the package
used before: decode the source file, then crop and resize that one item.
Prints wall-clock medians and ratios; asserts nothing about time.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timing import measure, print_table

from nfinpaint import distributed
from nfinpaint.config import PRESETS
from nfinpaint.crop_store import batch_items
from nfinpaint.data import _load_file, build_datasets, crop_resize, find_image_files
from nfinpaint.train import Trainer, build_feature_net


def _photo_folder(folder: Path, count: int, side: int) -> Path:
    """``count`` textured RGB PNGs (side x 2/3 side): smooth gradients plus noise, like photographs."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = side * 2 // 3, side
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        base = rng.uniform(0, 255, 3) * 0.5
        gx, gy = rng.uniform(-0.2, 0.2, 2)
        image = base + gx * xx[..., None] + gy * yy[..., None] + rng.normal(0, 20, (h, w, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"photo_{i:03d}.png")
    return folder


def _steps_per_second(trainer: Trainer, train_ds, steps: int, batch: int) -> float:
    """Wall-clock steps/s of data + optimisation step (the joint stage), after a warm-up."""
    def run(first: int, count: int) -> float:
        start = time.perf_counter()
        for step in range(first, first + count):
            real = train_ds.crops(batch_items(step, batch)).to(memory_format=trainer.memory_format)
            trainer.step_fn(real, trainer.train_masks(step, batch), "joint")
        return count / (time.perf_counter() - start)

    run(0, 3)
    return run(3, steps)


def test_input_pipeline(tmp_path):
    count = int(os.environ.get("NFINPAINT_BENCH_FILES", "56"))
    side = int(os.environ.get("NFINPAINT_BENCH_SIDE", "1024"))
    steps = int(os.environ.get("NFINPAINT_BENCH_STEPS", "30"))
    rounds = int(os.environ.get("NFINPAINT_BENCH_ROUNDS", "3"))
    real = os.environ.get("NFINPAINT_BENCH_DATA")
    folder = Path(real or _photo_folder(tmp_path / "photos", count, side))
    described = f"folder {real}" if real else f"folder ({count} x {side} px PNG)"
    base = dataclasses.replace(PRESETS["default"], feature_weights="random", compile="never", device="cpu")
    S, batch = base.image_size, base.batch_size

    start = time.perf_counter()
    folder_train, _ = build_datasets(str(folder), S, seed=0)
    build_s = time.perf_counter() - start
    embedded_train, _ = build_datasets(None, S, seed=0)

    # 1. crop sampling alone
    rows = []
    for n in (batch, 256):
        calls = iter(range(10**9))

        def cut(n=n):   # fresh items every call
            k = next(calls)
            return folder_train.crops(torch.arange(k * n, (k + 1) * n))

        t = measure(cut, reps=20)
        rows.append([f"batched sampler, batch {n}", t.median_ms, n * 1e3 / t.median_ms])
    files = find_image_files(folder)[:8]        # as build_datasets finds them (a real folder: JPEGs, say)
    k = iter(range(10**9))

    def per_item():  # the old path: decode the file for every crop
        image = _load_file(files[next(k) % len(files)])
        return crop_resize(image, 10, 10, 2 * S, S)

    ref = measure(per_item, warmup=1, reps=8)
    rows.append(["reference: decode per crop", ref.median_ms, 1e3 / ref.median_ms])
    for row in rows:
        row.append(row[2] / rows[-1][2])
    print_table(f"crop sampling, {S}x{S} with augmentation (flip, rotation, scale), {len(folder_train.store)} "
                f"images of {side} px decoded once in {build_s:.1f} s ({folder_train.store.nbytes / 2**20:.0f} "
                f"MiB), torch threads {torch.get_num_threads()}, wall-clock",
                ["path", "median ms/call", "crops/s", "speed-up vs reference"], rows)

    # 2. training steps/s: folder of large photographs vs the embedded set, alternated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(base, build_feature_net(base), distributed.DistInfo(device=torch.device("cpu")))
    results = {"embedded (7 photos, in memory)": [], described: []}
    for _ in range(rounds):
        results["embedded (7 photos, in memory)"].append(_steps_per_second(trainer, embedded_train, steps, batch))
        results[described].append(_steps_per_second(trainer, folder_train, steps, batch))
    reference = statistics.median(results["embedded (7 photos, in memory)"])
    rows = [[name, statistics.median(v), statistics.median(v) / reference] for name, v in results.items()]
    print_table(f"training steps/s (default preset, eager, joint stage, batch {batch}, CPU), medians of {rounds} "
                f"rounds x {steps} steps, wall-clock", ["data", "steps/s", "ratio vs embedded"], rows)
