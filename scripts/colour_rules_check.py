#!/usr/bin/env python3
"""The colour rules ``nfinpaint.inpaint.inpaint_image`` applies after every fill, checked: the one-hue rule
(``one_hue``: a grey photograph with noise, a toned print; the fill keeps the picture's hue), and the
flat-ring rule (``flat_ring_colours``: a hole whose ring of known pixels is one colour is that colour).

    python scripts/colour_rules_check.py data/corpus/photos/val data/corpus/photos/test ...
    python scripts/colour_rules_check.py --fills data/corpus/photos/val

Without ``--fills``: for each folder's pictures (their longer side scaled to ``--size``), the share of
pixels within ``ONE_HUE_LEVELS`` of the picture's hue (each channel less the brightness fitted by a
straight line in the brightness), and whether the rule takes the picture (a colour photograph must be
far from it: the share it needs is 99.9%), also with the evaluation's holes (``evaluate --size``'s
families, seed 0, three repeats), which might take away a picture's colour; and the evaluation's holes
that the flat-ring rule takes (where it takes none, the tables of docs/results.md stand).  With
``--fills``: each
picture made one-hue four ways (grey; grey with a level of noise in each channel; sepia; cyanotype) and
filled through ``Inpainter`` (``inpaint``'s path) with and without the rule in a disc of radius
``--radius`` at the centre: hole PSNR (dB) and the fill's distance from the picture's hue (levels, mean
and max).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from nfinpaint import Inpainter, inpaint, metrics, picture_eval

TONES = {"grey": (1.0, 1.0, 1.0), "sepia": (1.0, 0.89, 0.73), "cyanotype": (0.55, 0.75, 1.0)}


def pictures(folder: str, size: int) -> list[tuple[str, np.ndarray]]:
    """The evaluation's pictures (``picture_eval.load_pictures``: "skimage" for the embedded photographs)
    as uint8 (H, W, 3) arrays."""
    loaded, _ = picture_eval.load_pictures(None if folder == "skimage" else folder, size)
    return [(name, np.rint(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for name, x in loaded]


def on_hue_share(picture: np.ndarray) -> float:
    """Share of the pixels within ONE_HUE_LEVELS of the picture's hue: the straight line in brightness that
    each channel less the brightness is fitted to (least squares)."""
    x = picture.reshape(-1, 3).astype(np.float64) / 255
    brightness = x.mean(axis=1)
    line = np.stack([np.ones_like(brightness), brightness], axis=1)
    fit, *_ = np.linalg.lstsq(line, x - brightness[:, None], rcond=None)
    return float(np.mean(np.abs(x - brightness[:, None] - line @ fit).max(axis=1) <= inpaint.ONE_HUE_LEVELS))


def toned(picture: np.ndarray, tone: str, noise: bool, rng: np.random.Generator) -> np.ndarray:
    grey = picture.astype(np.float64).mean(axis=2, keepdims=True)
    out = grey * np.array(TONES[tone])
    if noise:
        out = out + rng.integers(-1, 2, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hue_distance(out: np.ndarray, reference: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Each hole pixel's distance (levels, largest channel) from the colour ``reference``'s known pixels
    have at its brightness (:func:`nfinpaint.inpaint.one_hue`)."""
    hue = inpaint.one_hue(torch.from_numpy(reference).permute(2, 0, 1).double() / 255,
                          torch.from_numpy(hole)[None])
    x = out[hole].astype(np.float64) / 255
    brightness = x.mean(axis=1)
    colour = brightness[:, None] + hue.offset + hue.slope * brightness[:, None]
    return np.abs(x - colour).max(axis=1) * 255


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="picture folders; skimage: the embedded photographs")
    parser.add_argument("--size", type=int, default=512, help="the pictures' longer side (default 512)")
    parser.add_argument("--fills", action="store_true", help="fill one-hue versions of the pictures")
    parser.add_argument("--radius", type=int, default=40, help="--fills' disc radius (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.fills:
        for folder in args.folders:
            loaded = pictures(folder, args.size)
            shares = [(on_hue_share(p), name) for name, p in loaded]
            taken = [name for share, name in shares if share >= 1 - inpaint.ONE_HUE_OFF]
            # with the evaluation's holes (seed 0, three repeats of each family), where a hole might take
            # away what colour a picture has (of those not taken whole)
            masked = sorted({f"{name} ({family} {repeat})" for index, (name, p) in enumerate(loaded) if name not in taken
                             for family in picture_eval.FAMILIES for repeat in range(3)
                             if inpaint.one_hue(torch.from_numpy(p).permute(2, 0, 1).float() / 255,
                                                picture_eval.picture_mask(family, torch.from_numpy(p).permute(2, 0, 1),
                                                                          0, index, repeat) > 0.5) is not None})
            flat = sorted({f"{name} ({family} {repeat})" for index, (name, p) in enumerate(loaded)
                           for family in picture_eval.FAMILIES for repeat in range(3)
                           if inpaint.flat_ring_colours(torch.from_numpy(p).permute(2, 0, 1).float() / 255,
                                                        picture_eval.picture_mask(family, torch.from_numpy(p).permute(2, 0, 1),
                                                                                  0, index, repeat) > 0.5) is not None})
            closest = max(shares)
            print(f"{folder}: {len(shares)} pictures, the closest to one hue {closest[1]} ({closest[0]:.1%} of "
                  f"its pixels within {inpaint.ONE_HUE_LEVELS * 255:.0f} levels); taken by the rule: "
                  f"{', '.join(taken) or 'none'}; with an evaluation's holes: {', '.join(masked) or 'none'}; "
                  f"evaluation holes of one ring colour: {', '.join(flat) or 'none'}")
        return 0
    rng = np.random.default_rng(args.seed)
    inpainter = Inpainter()
    real = inpaint.one_hue
    for tone, noise in (("grey", False), ("grey", True), ("sepia", False), ("cyanotype", False)):
        rows = {"with": [], "without": []}
        for folder in args.folders:
            for _, picture in pictures(folder, args.size):
                picture = toned(picture, tone, noise, rng)
                h, w = picture.shape[:2]
                yy, xx = np.mgrid[:h, :w]
                hole = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < args.radius ** 2
                for rule in rows:
                    inpaint.one_hue = real if rule == "with" else (lambda image, hole: None)
                    try:
                        out = inpainter(picture, hole)
                    finally:
                        inpaint.one_hue = real
                    psnr = metrics.psnr(out / 255.0, picture / 255.0, hole)
                    d = hue_distance(out, picture, hole)
                    rows[rule].append((psnr, d.mean(), d.max()))
        for rule, values in rows.items():
            v = np.array(values)
            print(f"{tone}{' +-1' if noise else ''}, {rule} the rule: hole PSNR {v[:, 0].mean():.2f} dB, off the "
                  f"picture's hue {v[:, 1].mean():.2f} levels on average, {v[:, 2].max():.1f} at most "
                  f"({len(v)} pictures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
