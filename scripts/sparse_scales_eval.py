#!/usr/bin/env python3
"""The sparse rule's second scale (``nfinpaint.neural_fill.SPARSE_SCALES``), measured: fills through
``Inpainter`` (``inpaint``'s path) with the first scale alone, with both, and biharmonic.

    python scripts/sparse_scales_eval.py data/corpus/photos/val 512

Masks per picture, in this order (salt and specks drawn with numpy seeded 2026, one generator for the
run): lattices of every 16th and 24th pixel known, salt over 97% and 99%, a centred box of 45% of each
side with 4x4 known islands every 24 px, the box with random 2x2 known specks over 0.16% of it, the box
alone, then the first scale's masks (salt 70% and 90%, lattices of every 2nd and 4th pixel).  Prints
each fill's hole PSNR / SSIM, then the means (docs/evaluation.md, "Sparser samples", quotes them).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from nfinpaint import Inpainter, metrics, neural_fill, picture_eval


def lattice(shape: tuple[int, int], step: int) -> np.ndarray:
    hole = np.ones(shape, bool)
    hole[::step, ::step] = False
    return hole


def masks(shape: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The (H, W) bool holes, in the order the module docstring gives."""
    h, w = shape
    salt97, salt99 = rng.random(shape) < 0.97, rng.random(shape) < 0.99     # drawn first, in this order
    box = np.zeros(shape, bool)
    bh, bw = int(h * 0.45), int(w * 0.45)
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    box[y0:y0 + bh, x0:x0 + bw] = True
    islands = box.copy()
    for y in range(y0 + 10, y0 + bh - 4, 24):
        for x in range(x0 + 10, x0 + bw - 4, 24):
            islands[y:y + 4, x:x + 4] = False
    specks = box.copy()
    count = max(1, int(0.0016 * bh * bw))
    for y, x in zip(rng.integers(y0 + 2, y0 + bh - 4, count), rng.integers(x0 + 2, x0 + bw - 4, count)):
        specks[y:y + 2, x:x + 2] = False
    out = {"lattice16": lattice(shape, 16), "lattice24": lattice(shape, 24),
           "salt97": salt97, "salt99": salt99,
           "box_islands24": islands, "box_specks": specks, "box_solid": box}
    out.update({"salt70": rng.random(shape) < 0.7, "salt90": rng.random(shape) < 0.9})
    out.update({"lattice2": lattice(shape, 2), "lattice4": lattice(shape, 4)})
    return out


def main(argv: list[str]) -> int:
    data = argv[0] if argv else "data/corpus/photos/val"
    size = int(argv[1]) if len(argv) > 1 else 512
    warnings.simplefilter("ignore")
    pictures, where = picture_eval.load_pictures(data, size)
    print(where, flush=True)
    fill = Inpainter(device="cpu")
    both = neural_fill.SPARSE_SCALES
    rng = np.random.default_rng(2026)
    rows: dict[str, list[list[float]]] = {}
    for name, picture in pictures:
        truth = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for mask_name, hole in masks(truth.shape[:2], rng).items():
            row = []
            for scales, method in ((both[:1], "auto"), (both, "auto"), (both, "biharmonic")):
                neural_fill.SPARSE_SCALES = scales
                try:
                    out = fill(truth, hole, method=method)
                finally:
                    neural_fill.SPARSE_SCALES = both
                pred, real = out.astype(np.float64) / 255, truth.astype(np.float64) / 255
                row += [metrics.psnr(pred, real, hole), metrics.ssim(pred, real, hole)]
            rows.setdefault(mask_name, []).append(row)
            print(name, mask_name, " ".join(f"{v:.3f}" for v in row), flush=True)
    print("\nmask: first scale | both scales | biharmonic (hole PSNR / SSIM, mean over pictures); both - first")
    for mask_name, values in rows.items():
        mean = np.mean(values, axis=0)
        diff = np.array(values)[:, 2] - np.array(values)[:, 0]
        sem = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(f"{mask_name}: {mean[0]:.2f} / {mean[1]:.4f} | {mean[2]:.2f} / {mean[3]:.4f} | "
              f"{mean[4]:.2f} / {mean[5]:.4f}; diff {diff.mean():+.2f} ± {sem:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
