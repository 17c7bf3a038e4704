#!/usr/bin/env python3
"""Where the learned fill's detail is in place: the detail in place (docs/evaluation.md) of the shipped fill
and of biharmonic, by distance from the hole's rim, over the training and validation photographs at 512 px
(one medium and one large hole a picture, seed 11; pooled over the pictures: the truth's detail energy
weighs each).  An analysis (docs/evaluation.md, "What texture costs"); never run it on test or reserved
photographs to choose anything.

    python scripts/detail_by_rim_distance.py
"""
import warnings

import torch
from scipy import ndimage
from nfinpaint import baselines, metrics, picture_eval
from nfinpaint.generator_io import open_generator

BANDS = [(0, 3), (3, 6), (6, 10), (10, 16), (16, 30), (30, 999)]     # px from the rim


def main() -> None:
    warnings.simplefilter("ignore")
    pics = [p for f in ["data/corpus/photos/train", "data/corpus/photos/val"] for p in picture_eval.load_pictures(f, 512)[0]]
    methods = {"gan": baselines.METHODS["gan"](generator=open_generator(None).generator), "biharmonic": baselines.METHODS["biharmonic"]()}
    for family in ["medium", "large"]:
        acc = {m: torch.zeros(len(BANDS), 2, dtype=torch.float64) for m in methods}
        share = torch.zeros(len(BANDS), dtype=torch.float64)
        for i, (_, truth) in enumerate(pics):
            mask = picture_eval.picture_mask(family, truth, 11, i, 0)
            inside = mask.reshape(mask.shape[-2:]) > 0.5
            dist = torch.from_numpy(ndimage.distance_transform_edt(inside.numpy()))
            in_band = [inside & (dist > lo) & (dist <= hi) for lo, hi in BANDS]
            dt = picture_eval.fine_detail(truth, within=inside).double()     # the hole's own detail, as evaluate's
            for name, m in methods.items():
                f = metrics.as_saved(m.fill(truth, mask, 0), truth)
                df = picture_eval.fine_detail(f, within=inside).double()
                for b, sel in enumerate(in_band):
                    acc[name][b, 0] += (df[:, sel] * dt[:, sel]).sum()
                    acc[name][b, 1] += (dt[:, sel] ** 2).sum()
            share += torch.tensor([float(sel.sum()) for sel in in_band], dtype=torch.float64)
        print(family, "share of hole pixels by band:", " ".join(f"{lo}-{hi}:{s:.2f}" for (lo, hi), s in zip(BANDS, share / share.sum())))
        for name in methods:
            print(f"  {name:10s}", " ".join(f"{lo}-{hi}px {acc[name][b,0]/acc[name][b,1]:+.3f}" for b, (lo, hi) in enumerate(BANDS)))


if __name__ == "__main__":
    main()
