#!/usr/bin/env python3
"""Which evaluation holes the colour rules of ``nfinpaint.colour_rules`` take (a hole in a flat ring kept
within its colours; a picture of one hue filled in it), and what the one-hue rule does to pictures
made one-hue.

    python scripts/colour_rules_check.py data/corpus/photos/test data/corpus/mate skimage
    python scripts/colour_rules_check.py --fills data/corpus/photos/val

Without ``--fills``, for each folder ("skimage": the embedded photographs): the fills that
``colour_rules.apply`` would change, for the masks of

* the full-size protocol (``evaluate --size``) at 256, 512 and 1024 px: every family, seed 0,
  repeats 0-2 (the tables use ``--repeats 2`` or fewer);
* the crop protocol (``evaluate --crops grid``, 24x24 crops, random 8x8 holes, seed 0);
* ``scripts/sparse_known_eval.py``'s salt and lattice masks (its seed, 2026).

A fill counts as changed when ``apply`` moves any pixel of a probe fill (random colours in the holes):
what it would move in any method's fill.  Where none changes, the tables of docs/results.md and
docs/evaluation.md stand.

With ``--fills``: each picture made one-hue four ways (grey; grey with a level of noise in each channel;
sepia; cyanotype) and filled through ``Inpainter`` (``inpaint``'s path) with and without the rules in a
disc of radius ``--radius`` at the centre: hole PSNR (dB) and the fill's distance from the picture's
hue (levels, mean and max).
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch

from nfinpaint import Inpainter, colour_rules, evaluate, metrics, picture_eval
from nfinpaint import masks as mask_module
from nfinpaint.data import DataSplit

TONES = {"grey": (1.0, 1.0, 1.0), "sepia": (1.0, 0.89, 0.73), "cyanotype": (0.55, 0.75, 1.0)}
_PROBE = torch.Generator().manual_seed(0)


def changed(image: torch.Tensor, hole: torch.Tensor) -> bool:
    """Whether ``colour_rules.apply`` moves any pixel of a fill of (1, H, W) bool ``hole`` in ``image``."""
    probe = torch.where(hole, torch.rand(3, *image.shape[-2:], generator=_PROBE), image.expand(3, -1, -1))
    return not torch.equal(colour_rules.apply(image, hole, probe.clone()), probe)


def _sparse_eval():
    """scripts/sparse_known_eval.py, imported by its path."""
    spec = importlib.util.spec_from_file_location("sparse_known_eval", Path(__file__).with_name("sparse_known_eval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(folder: str) -> None:
    data = None if folder == "skimage" else folder
    for size in (256, 512, 1024):
        pictures, _ = picture_eval.load_pictures(data, size)
        taken = [f"{name} ({family} {repeat})" for index, (name, picture) in enumerate(pictures)
                 for family in picture_eval.FAMILIES for repeat in range(3)
                 if changed(picture, picture_eval.picture_mask(family, picture, 0, index, repeat) > 0.5)]
        print(f"{folder} at {size} px, {len(pictures)} pictures x {len(picture_eval.FAMILIES)} families x 3: "
              f"{', '.join(taken) or 'none taken'}")
    crops, _, _ = evaluate.load_images(data, 24, None, DataSplit.from_meta({}, None), "grid")
    holes = mask_module.make_masks("random", len(crops), 24, 8, generator=torch.Generator().manual_seed(0))
    taken = [str(i) for i, (crop, hole) in enumerate(zip(crops, holes)) if changed(crop, hole > 0.5)]
    print(f"{folder}, crop protocol ({len(crops)} crops of 24 px): {', '.join(taken) or 'none taken'}")
    sparse = _sparse_eval()          # its masks as it draws them: seed 2026, masks outer, pictures inner
    pictures, _ = picture_eval.load_pictures(data, 512)
    rng = np.random.default_rng(2026)
    taken = []
    for kind, amount in sparse.MASKS:
        for name, picture in pictures:
            truth = (picture * 255).round() / 255                   # as it fills them: uint8
            hole = torch.from_numpy(sparse.sparse_mask(kind, amount, truth.shape[-2:], rng))[None]
            if changed(truth, hole):
                taken.append(f"{name} ({kind} {amount})")
    print(f"{folder}, sparse masks at 512 px: {', '.join(taken) or 'none taken'}")


def toned(picture: np.ndarray, tone: str, noise: bool, rng: np.random.Generator) -> np.ndarray:
    grey = picture.astype(np.float64).mean(axis=2, keepdims=True)
    out = grey * np.array(TONES[tone])
    if noise:
        out = out + rng.integers(-1, 2, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hue_distance(out: np.ndarray, reference: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Each hole pixel's distance (levels, largest channel) from the colour ``reference``'s known pixels
    have at its brightness (``colour_rules.one_hue``'s line)."""
    hue = colour_rules.one_hue(torch.from_numpy(reference).permute(2, 0, 1).double() / 255,
                               torch.from_numpy(hole)[None])
    x = out[hole].astype(np.float64) / 255
    brightness = x.mean(axis=1)
    colour = brightness[:, None] + hue.offset + hue.slope * brightness[:, None]
    return np.abs(x - colour).max(axis=1) * 255


def fills(folders: list[str], radius: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inpainter = Inpainter()
    real = colour_rules.apply
    for tone, noise in (("grey", False), ("grey", True), ("sepia", False), ("cyanotype", False)):
        rows = {"with": [], "without": []}
        for folder in folders:
            for _, loaded in picture_eval.load_pictures(None if folder == "skimage" else folder, 512)[0]:
                picture = toned(np.rint(loaded.permute(1, 2, 0).numpy() * 255).astype(np.uint8), tone, noise, rng)
                h, w = picture.shape[:2]
                yy, xx = np.mgrid[:h, :w]
                hole = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < radius ** 2
                for rule in rows:
                    colour_rules.apply = real if rule == "with" else (lambda image, hole, filled: filled)
                    try:
                        out = inpainter(picture, hole)
                    finally:
                        colour_rules.apply = real
                    d = hue_distance(out, picture, hole)
                    rows[rule].append((metrics.psnr(out / 255.0, picture / 255.0, hole), d.mean(), d.max()))
        for rule, values in rows.items():
            v = np.array(values)
            print(f"{tone}{' +-1' if noise else ''}, {rule} the rules: hole PSNR {v[:, 0].mean():.2f} dB, off the "
                  f"picture's hue {v[:, 1].mean():.2f} levels on average, {v[:, 2].max():.1f} at most "
                  f"({len(v)} pictures)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="picture folders; skimage: the embedded photographs")
    parser.add_argument("--fills", action="store_true", help="fill one-hue versions of the pictures")
    parser.add_argument("--radius", type=int, default=40, help="--fills' disc radius (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.fills:
        fills(args.folders, args.radius, args.seed)
    else:
        for folder in args.folders:
            check(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
