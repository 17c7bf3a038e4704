#!/usr/bin/env python3
"""What detail costs in hole PSNR and SSIM when its place is not known (docs/evaluation.md, "What texture
costs where its place is not known", quotes its numbers).

    python scripts/texture_placement.py --data data/corpus/photos/train data/corpus/photos/val

For each picture (longer side ``--size``) and each of ``--families`` (``--repeats`` masks each, as the
full-size protocol draws them with ``--seed``): the shipped learned fill through ``Inpainter``'s method
(``gan``, inpaint's path), biharmonic, and the learned fill plus the truth's own fine detail (the picture
less its Gaussian blur of ``--sigma`` px): in its place, and moved by ``--shift`` px (a random direction,
at most the larger, at least the smaller) at full, half and quarter strength.  Prints hole PSNR (dB) /
hole SSIM / texture ratio (mean and median) / detail in place per family and fill, and the difference from biharmonic.
An analysis, not a method: the oracle rows use the truth.  Never run it on test or reserved photographs
to choose anything.
"""
from __future__ import annotations

import argparse
import math
import random
import warnings

import torch

from nfinpaint import baselines, metrics, picture_eval
from nfinpaint.generator_io import open_generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", required=True, help="folders of photographs")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--families", default="medium,large")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--shift", type=float, nargs=2, default=(8.0, 16.0), metavar=("LEAST", "MOST"))
    args = p.parse_args()
    warnings.simplefilter("ignore")
    pictures = [pic for folder in args.data for pic in picture_eval.load_pictures(folder, args.size)[0]]
    learned = baselines.METHODS["gan"](generator=open_generator(None).generator)
    biharmonic = baselines.METHODS["biharmonic"]()
    rng = random.Random(args.seed)
    families = picture_eval.parse_families(args.families)
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for family in families:
        for index, (_, truth) in enumerate(pictures):
            for repeat in range(args.repeats):
                mask = picture_eval.picture_mask(family, truth, args.seed, index, repeat)
                ours, theirs = learned.fill(truth, mask, 0), biharmonic.fill(truth, mask, 0)
                detail = picture_eval.fine_detail(truth, args.sigma)
                angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(*args.shift)
                moved = torch.roll(detail, (round(radius * math.sin(angle)), round(radius * math.cos(angle))), (1, 2))
                fills = {"learned": ours, "biharmonic": theirs, "+ detail in place": ours + detail,
                         "+ detail moved": ours + moved, "+ half, moved": ours + moved / 2,
                         "+ quarter, moved": ours + moved / 4}
                for name, fill in fills.items():
                    fill = metrics.as_saved(torch.where(mask > 0.5, fill.clamp(0, 1), truth), truth)
                    row = metrics.image_metrics(fill, truth, mask)
                    rows.setdefault((family, name), []).append(
                        (row["psnr_hole"], row["ssim_hole"], picture_eval.texture_ratio(fill, truth, mask),
                         picture_eval.detail_in_place(fill, truth, mask)))
    print(f"{len(pictures)} pictures x {args.repeats} masks, sigma {args.sigma}, shift {args.shift[0]:g}-{args.shift[1]:g} px")
    for (family, name), values in rows.items():
        t = torch.tensor(values, dtype=torch.float64)
        texture = t[:, 2][~t[:, 2].isnan()]
        diff = t[:, :2] - torch.tensor(rows[(family, "biharmonic")], dtype=torch.float64)[:, :2]
        print(f"{family:7s} {name:18s} {t[:, 0].mean():6.2f} / {t[:, 1].mean():.4f} / texture {texture.mean():.3f} "
              f"(median {texture.median():.3f}) / in place {t[:, 3].mean():+.3f}   against biharmonic {diff[:, 0].mean():+.2f} dB / {diff[:, 1].mean():+.4f}")


if __name__ == "__main__":
    main()
