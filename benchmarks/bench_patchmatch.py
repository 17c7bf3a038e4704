"""PatchMatch fill and nearest-neighbour field against classical baselines.

Run: ``pytest benchmarks/bench_patchmatch.py -s`` (add ``NFI_BENCH_BIG=0`` to
skip the 1024x1024 rows, whose biharmonic reference takes a while on a CPU).

Tables (medians, ratios from the same run):
- hole filling, 256x256 and 1024x1024 photos (scikit-image's bundled
  astronaut / coffee, resized) with realistic holes: PatchMatch on the CPU
  (and CUDA), scikit-image ``inpaint_biharmonic``, OpenCV Telea when cv2 is
  importable; PSNR inside the hole against the original photo;
- nearest-neighbour field, 1024x1024, every pixel searched: CPU vs CUDA.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from timing import measure, print_table

from nfinpaint import _extension

# the benchmarks measure the compiled operators: without them, fail (a skip read as a run with nothing to say)
_extension.require()

skimage_data = pytest.importorskip("skimage.data")
from skimage.restoration import inpaint_biharmonic  # noqa: E402
from skimage.transform import resize  # noqa: E402

from nfinpaint import patchmatch  # noqa: E402

try:
    import cv2
except ImportError:  # optional baseline
    cv2 = None

BIG = os.environ.get("NFI_BENCH_BIG", "1") != "0"
HAS_GPU = torch.cuda.is_available() and _extension.has_cuda_kernels()
GPU_SKIP = ("needs a CUDA GPU; none is visible" if not torch.cuda.is_available()
            else "the extension was built without CUDA kernels")


def photo(name: str, size: int) -> np.ndarray:
    img = getattr(skimage_data, name)()
    return resize(img, (size, size), anti_aliasing=True).astype(np.float32)  # (H, W, 3) in [0, 1]


def square_mask(size: int) -> np.ndarray:
    """A square of a quarter of the side (64x64 at 256), right of the centre."""
    m = np.zeros((size, size), bool)
    q = size // 4
    m[size // 2 - q // 2:size // 2 + q // 2, size // 2 - q // 2 + q // 3:size // 2 + q // 2 + q // 3] = True
    return m


def realistic_mask(size: int) -> np.ndarray:
    """square_mask plus two thin scribbles across the picture."""
    m = square_mask(size)
    t = max(2, size // 64)
    rows = np.arange(size // 8, size - size // 8)
    cols = (size // 6 + 0.3 * (rows - size // 8)).astype(int)
    for dt in range(t):
        m[rows, cols + dt] = True
        m[size - 1 - rows // 2 - size // 4, rows + dt - size // 16] = True
    return m


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(((a[mask] - b[mask]) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def once_ms(fn) -> float:
    """One timed call (for baselines too slow to repeat)."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def fill_rows(size: int, mask: np.ndarray, mask_name: str, reps: int, slow_baseline: bool) -> list[list[object]]:
    img = photo("astronaut" if size <= 256 else "coffee", size)
    chw = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    hole = torch.from_numpy(mask)
    rows = []
    results = {}

    def pm_cpu():
        results["PatchMatch CPU"] = patchmatch.inpaint(chw, hole, seed=0)

    t_cpu = measure(pm_cpu, warmup=1, reps=reps)
    rows.append(["PatchMatch CPU", t_cpu.median_ms, 1.0, psnr(results["PatchMatch CPU"].permute(1, 2, 0).numpy(),
                                                              img, mask)])
    if HAS_GPU:
        gpu_img, gpu_hole = chw.cuda(), hole.cuda()

        def pm_gpu():
            results["PatchMatch CUDA"] = patchmatch.inpaint(gpu_img, gpu_hole, seed=0)

        t = measure(pm_gpu, device="cuda", warmup=1, reps=reps)
        out = results["PatchMatch CUDA"].permute(1, 2, 0).cpu().numpy()
        rows.append(["PatchMatch CUDA", t.median_ms, t_cpu.median_ms / t.median_ms, psnr(out, img, mask)])
    else:
        rows.append(["PatchMatch CUDA", "skipped", GPU_SKIP, "-"])

    def biharmonic():
        results["biharmonic"] = inpaint_biharmonic(img, mask, channel_axis=-1)

    t_ms = once_ms(biharmonic) if slow_baseline else measure(biharmonic, warmup=0, reps=reps).median_ms
    rows.append(["skimage inpaint_biharmonic", t_ms, t_cpu.median_ms / t_ms,
                 psnr(results["biharmonic"].astype(np.float32), img, mask)])
    if cv2 is not None:
        img8 = (img * 255).round().astype(np.uint8)
        mask8 = mask.astype(np.uint8) * 255

        def telea():
            results["telea"] = cv2.inpaint(img8, mask8, 3, cv2.INPAINT_TELEA)

        t = measure(telea, warmup=1, reps=reps)
        rows.append(["OpenCV Telea", t.median_ms, t_cpu.median_ms / t.median_ms,
                     psnr(results["telea"].astype(np.float32) / 255, img, mask)])
    return [[f"{size}x{size}", mask_name, int(mask.sum()), *row] for row in rows]


HEADER = ["image", "hole", "hole px", "method", "median ms", "PatchMatch CPU time / this time", "hole PSNR dB"]


def test_fill_256():
    print(f"\n[torch threads: {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}, "
          f"load average: {os.getloadavg()[0]:.1f}]")
    rows = fill_rows(256, square_mask(256), "64x64 square", reps=5, slow_baseline=False)
    rows += fill_rows(256, realistic_mask(256), "square + 2 scribbles", reps=5, slow_baseline=False)
    print_table("Hole filling, 256x256 astronaut "
                "(PatchMatch: 7x7, 3 EM rounds (6 at the coarsest) x 2 iterations per scale)", HEADER, rows)


@pytest.mark.skipif(not BIG, reason="NFI_BENCH_BIG=0")
def test_fill_1024():
    print(f"\n[load average: {os.getloadavg()[0]:.1f}]")
    rows = fill_rows(1024, realistic_mask(1024), "256x256 square + 2 scribbles", reps=2, slow_baseline=True)
    print_table("Hole filling, 1024x1024 coffee (biharmonic timed once)", HEADER, rows)


@pytest.mark.skipif(not BIG, reason="NFI_BENCH_BIG=0")
def test_nnf_1024():
    """Full-image NNF (every target pixel searched), 7x7 patches, 5 iterations."""
    a = torch.from_numpy(photo("astronaut", 1024)).permute(2, 0, 1).contiguous()
    b = torch.from_numpy(photo("coffee", 1024)).permute(2, 0, 1).contiguous()
    t_cpu = measure(lambda: patchmatch.nnf(a, b, iterations=5), warmup=0, reps=2)
    rows = [["CPU", str(t_cpu), 1.0]]
    if HAS_GPU:
        ga, gb = a.cuda(), b.cuda()
        t = measure(lambda: patchmatch.nnf(ga, gb, iterations=5), device="cuda", warmup=1, reps=5)
        rows.append(["CUDA", str(t), t_cpu.median_ms / t.median_ms])
    else:
        rows.append(["CUDA", "skipped", GPU_SKIP])
    print_table("Nearest-neighbour field, 1024x1024 -> 1024x1024, 7x7, 5 iterations",
                ["backend", "median ms [p20, p80]", "speed-up vs CPU"], rows)
