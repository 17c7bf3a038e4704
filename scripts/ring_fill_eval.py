#!/usr/bin/env python3
"""Fill a hole ring by ring with the learned fill, against one pass (docs/evaluation.md, "Filling a large
hole ring by ring", quotes its numbers).

    python scripts/ring_fill_eval.py --data data/corpus/photos/val --bands 16,32

For each picture (longer side ``--size``) and each of ``--families`` (``--repeats`` masks each, as the
full-size protocol draws them with ``--seed``): the shipped generator through ``Inpainter`` (inpaint's
path) once, and ring by ring: fill the hole, count its pixels within B px of the known ones (Euclidean
distance) as known, fill what is left again, until no hole pixel is further than B px in.  Prints per
family and fill the mean hole PSNR (dB), hole SSIM, texture ratio, detail in place, seconds and passes,
and each ring fill's paired difference from one pass (mean ± 95% interval, Student's t:
``metrics.paired``).  An analysis, not a method:
run it on validation photographs only.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

from nfinpaint import Inpainter, metrics, picture_eval


def ring_fill(inpainter: Inpainter, picture: torch.Tensor, mask: torch.Tensor, band: int) -> tuple[torch.Tensor, int]:
    """(the fill, its passes): each pass keeps the ring within ``band`` px of the known pixels."""
    filled, hole, passes = inpainter(picture, mask), mask[0].numpy() > 0.5, 1
    while True:
        inner = ndimage.distance_transform_edt(hole) > band
        if not inner.any():
            return filled, passes
        inner_mask = torch.from_numpy(inner)[None].float()
        filled = torch.where(inner_mask > 0.5, inpainter(filled, inner_mask), filled)
        hole, passes = inner, passes + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder of validation photographs")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--families", default="medium,large")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--bands", default="16,32", help="ring widths B in px, comma-separated")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    pictures, _ = picture_eval.load_pictures(args.data, args.size)
    inpainter = Inpainter(device="cpu")
    # each fill's label and its ring width (None: one pass)
    fills = {"one pass": None, **{f"rings of {b} px": b for b in map(int, args.bands.split(","))}}
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for family in picture_eval.parse_families(args.families):
        for repeat in range(args.repeats):
            for index, (_, truth) in enumerate(pictures):
                mask = picture_eval.picture_mask(family, truth, args.seed, index, repeat)
                for name, band in fills.items():
                    start = time.perf_counter()
                    if band is None:
                        filled, passes = inpainter(truth, mask), 1
                    else:
                        filled, passes = ring_fill(inpainter, truth, mask, band)
                    seconds = time.perf_counter() - start
                    filled = metrics.as_saved(filled, truth)
                    row = metrics.image_metrics(filled, truth, mask)
                    row.update(texture=picture_eval.texture_ratio(filled, truth, mask),
                               placed=picture_eval.detail_in_place(filled, truth, mask),
                               seconds=seconds, passes=passes)
                    rows.setdefault((family, name), []).append(row)
        for name in fills:
            got, base = rows[(family, name)], rows[(family, "one pass")]
            line = f"{family:7s} {name:15s}" + "".join(
                f" {key} {np.nanmean([r[key] for r in got]):.4f}"
                for key in ("psnr_hole", "ssim_hole", "texture", "placed", "seconds", "passes"))
            if fills[name] is not None:
                for key in ("psnr_hole", "ssim_hole", "placed"):
                    line += f" | d{key} {metrics.format_summary(metrics.paired(got, base, key), 4)}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
