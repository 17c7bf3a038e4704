#!/usr/bin/env python3
"""Fills of pictures whose known pixels are sparse: the learned fill with and without its sparse rule
(``nfinpaint.neural_fill.sparse_weight``), and biharmonic, through ``Inpainter`` (``inpaint``'s path).

    python scripts/sparse_known_eval.py --data data/corpus/photos/val --size 512

Masks: salt noise over 70% and 90% of each picture's pixels (drawn per picture, numpy seeded
``--seed``) and lattices of known pixels, every 2nd and every 4th, from the top-left pixel.  Prints,
for each mask, hole PSNR (dB) / hole SSIM averaged over the pictures (docs/evaluation.md, "Where the
known pixels are sparse", quotes its numbers).  PatchMatch and OpenCV are left out: PatchMatch finds
no whole known patch to copy in such masks.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from nfinpaint import Inpainter, metrics, neural_fill, picture_eval

MASKS = (("salt", 0.7), ("salt", 0.9), ("lattice", 2), ("lattice", 4))


def sparse_mask(kind: str, amount: float, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool hole: salt noise over ``amount`` of the pixels, or every ``amount``-th pixel known."""
    if kind == "salt":
        return rng.random(shape) < amount
    hole = np.ones(shape, bool)
    hole[::amount, ::amount] = False
    return hole


def scores(out: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """Hole PSNR and hole SSIM of uint8 ``out`` against ``truth``, as the full-size protocol measures."""
    pred, real = out.astype(np.float64) / 255, truth.astype(np.float64) / 255
    return metrics.psnr(pred, real, hole), metrics.ssim(pred, real, hole)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a folder of photographs")
    parser.add_argument("--size", type=int, default=512, help="longer side the pictures are scaled to (512)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the salt masks (2026)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    pictures, where = picture_eval.load_pictures(args.data, args.size)
    print(where)
    fill = Inpainter(device="cpu")
    rule = neural_fill.SPARSE_KNOWN
    rng = np.random.default_rng(args.seed)
    for kind, amount in MASKS:
        rows = []
        for _, picture in pictures:
            truth = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            hole = sparse_mask(kind, amount, truth.shape[:2], rng)
            row = []
            for share, method in ((rule, "auto"), (0.0, "auto"), (rule, "biharmonic")):
                neural_fill.SPARSE_KNOWN = share            # 0: no pixel is sparse (the rule is off)
                try:
                    row += scores(fill(truth, hole, method=method), truth, hole)
                finally:
                    neural_fill.SPARSE_KNOWN = rule
            rows.append(row)
        mean = np.mean(rows, axis=0)
        nth = {2: "2nd", 3: "3rd"}.get(amount, f"{amount}th")
        name = f"salt {amount:.0%}" if kind == "salt" else f"every {nth} pixel known"
        print(f"{name}: learned fill {mean[0]:.2f} / {mean[1]:.3f}, without the sparse rule {mean[2]:.2f} / "
              f"{mean[3]:.3f}, biharmonic {mean[4]:.2f} / {mean[5]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
