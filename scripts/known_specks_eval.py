#!/usr/bin/env python3
"""Known specks inside a hole (``nfinpaint.known_specks``), measured: fills through ``Inpainter``
(``inpaint``'s path) with the specks left to the network as context, with them filled over and met, and
biharmonic.

    python scripts/known_specks_eval.py data/corpus/photos/val 512

Masks per picture (drawn with numpy seeded 2026, one generator for the run): a centred box of 45% of each
side with random known specks of 1x1 over 0.05% of it, 2x2 over 0.16%, 3x3 over 0.3%; the picture's
'large' evaluation hole (seed 0) with 1-3 px specks over 0.2% of it; then scripts/sparse_scales_eval.py's
masks (lattices, salt, islands, the solid box), which must not move.  Prints each fill's hole PSNR / SSIM,
then the means (docs/evaluation.md, "Known specks", quotes them).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from nfinpaint import Inpainter, inpaint, metrics, picture_eval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sparse_scales_eval import masks as sparse_masks  # noqa: E402


def speckle(hole: np.ndarray, share: float, sides: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """``hole`` with random known specks (square, a side drawn from ``sides``) over ``share`` of it."""
    out = hole.copy()
    ys, xs = np.nonzero(hole)
    count = max(1, int(share * len(ys)))
    for i in rng.choice(len(ys), count, replace=False):
        side = int(rng.choice(sides))
        out[ys[i]:ys[i] + side, xs[i]:xs[i] + side] = False
    return out & hole


def masks(picture, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = picture.shape[-2:]
    box = np.zeros((h, w), bool)
    bh, bw = int(h * 0.45), int(w * 0.45)
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    box[y0:y0 + bh, x0:x0 + bw] = True
    large = picture_eval.picture_mask("large", picture, 0, index)[0].numpy() > 0.5
    out = {"box_specks1": speckle(box, 0.0005, (1,), rng), "box_specks2": speckle(box, 0.0016, (2,), rng),
           "box_specks3": speckle(box, 0.003, (3,), rng), "large_specks": speckle(large, 0.002, (1, 2, 3), rng)}
    out.update(sparse_masks((h, w), rng))
    return out


def main(argv: list[str]) -> int:
    data = argv[0] if argv else "data/corpus/photos/val"
    size = int(argv[1]) if len(argv) > 1 else 512
    warnings.simplefilter("ignore")
    pictures, where = picture_eval.load_pictures(data, size)
    print(where, flush=True)
    fill = Inpainter(device="cpu")
    rng = np.random.default_rng(2026)
    rows: dict[str, list[list[float]]] = {}
    for index, (name, picture) in enumerate(pictures):
        truth = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for mask_name, hole in masks(picture, index, rng).items():
            row = []
            for specks, method in ((False, "auto"), (True, "auto"), (True, "biharmonic")):
                inpaint.SPECKS = specks
                try:
                    out = fill(truth, hole, method=method)
                finally:
                    inpaint.SPECKS = True
                pred, real = out.astype(np.float64) / 255, truth.astype(np.float64) / 255
                row += [metrics.psnr(pred, real, hole), metrics.ssim(pred, real, hole)]
            rows.setdefault(mask_name, []).append(row)
            print(name, mask_name, " ".join(f"{v:.3f}" for v in row), flush=True)
    print("\nmask: context | filled over and met | biharmonic (hole PSNR / SSIM, mean over pictures); "
          "met - context")
    for mask_name, values in rows.items():
        mean = np.mean(values, axis=0)
        diff = np.array(values)[:, 2] - np.array(values)[:, 0]
        sem = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(f"{mask_name}: {mean[0]:.2f} / {mean[1]:.4f} | {mean[2]:.2f} / {mean[3]:.4f} | "
              f"{mean[4]:.2f} / {mean[5]:.4f}; diff {diff.mean():+.2f} ± {sem:.2f} dB, "
              f"SSIM {np.mean(np.array(values)[:, 3] - np.array(values)[:, 1]):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
