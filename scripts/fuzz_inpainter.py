#!/usr/bin/env python3
"""Random pictures, masks and options through ``nfinpaint.Inpainter``, checked against what the API promises.

    python scripts/fuzz_inpainter.py --seconds 600 --seed 1

Each case draws a picture (numpy uint8 / uint16 / float32 / float64, grey or RGB or RGBA, a torch tensor,
or a PIL image of mode RGB, RGBA, L, LA, P, I;16, I, F, 1 or CMYK; 1 to 260 px a side; noise, a ramp,
or one flat value), a mask (a box, lines, salt of any density, all but one pixel, one pixel, a strip
along the left side; sometimes soft-edged, in several PIL modes), a method and, sometimes, the mask
options.  It checks what docs/usage.md promises:

- the result has the picture's type, shape, dtype (or PIL mode and size);
- with a hard mask and no dilation, every pixel outside the holes is the input's, bit for bit
  (in RGB for palette pictures, whose holes take the palette's nearest colour);
- float results are finite and within [0, 1];
- bad input is one ``InpaintError``; any other exception is a failure.

Refusals the docs describe (no hole, a mask over the whole picture, PatchMatch with no whole known
patch to copy, ``gan-detail`` with a fixed-size generator) are counted, not failures.  Prints each failure as it is found, and a summary; exits 1
if any.  In 2026-12-06's first run it found float fills of dense salt holes out of [0, 1]
(tests/test_api.py keeps that case).  CPU only; one thread, so it can run beside other work.
"""
from __future__ import annotations

import argparse
import time
import traceback
import warnings

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from nfinpaint import Inpainter, InpaintError

REFUSALS = ("no hole", "covers the whole", "patches of known", "needs a full-resolution generator")
METHODS = ("auto", "auto", "auto", "gan-detail", "patchmatch", "biharmonic", "border-mean")
PIL_MODES = ("RGB", "RGBA", "L", "LA", "P", "I;16", "I", "F", "1", "CMYK")
ARRAY_KINDS = ("uint8", "uint16", "float32", "float64", "grey", "rgba", "torch")


def draw_values(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float64 in [0, 1]: noise, a ramp, or one flat value."""
    r = rng.random()
    if r < 0.5:
        return rng.random((h, w, 3))
    if r < 0.9:
        y, x = np.mgrid[0:h, 0:w]
        return np.stack([x / max(w - 1, 1), y / max(h - 1, 1), np.full((h, w), rng.random())], -1)
    return np.full((h, w, 3), float(rng.choice([0.0, 1.0, rng.random()])))


def draw_picture(rng: np.random.Generator, h: int, w: int):
    values = draw_values(rng, h, w)
    if rng.random() < 0.5:
        kind = str(rng.choice(ARRAY_KINDS))
        if kind == "uint8":
            return (values * 255).round().astype(np.uint8)
        if kind == "uint16":
            return (values * 65535).round().astype(np.uint16)
        if kind in ("float32", "float64"):
            return values.astype(kind)
        if kind == "grey":
            return (values[..., 0] * 255).round().astype(np.uint8)
        if kind == "rgba":
            alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
            return np.concatenate([(values * 255).round().astype(np.uint8), alpha], -1)
        return torch.from_numpy(values.astype(np.float32)).permute(2, 0, 1).contiguous()
    mode = str(rng.choice(PIL_MODES))
    rgb = Image.fromarray((values * 255).round().astype(np.uint8), "RGB")
    if mode == "RGBA":
        rgb.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)))
        return rgb
    if mode == "I;16":
        return Image.fromarray((values[..., 0] * 65535).round().astype(np.uint16))
    if mode == "I":
        return Image.fromarray((values[..., 0] * 65535).round().astype(np.int32))
    if mode == "F":
        return Image.fromarray(values[..., 0].astype(np.float32))
    return rgb.convert(mode)


def draw_hole(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = str(rng.choice(["box", "lines", "salt", "all but one", "one", "strip"]))
    hole = np.zeros((h, w), bool)
    if kind == "box":
        top, left = rng.integers(0, h), rng.integers(0, w)
        hole[top:top + rng.integers(1, h + 1), left:left + rng.integers(1, w + 1)] = True
    elif kind == "lines":
        hole[rng.integers(0, h, rng.integers(1, 4))] = True
        hole[:, rng.integers(0, w, rng.integers(0, 3))] = True
    elif kind == "salt":
        hole = rng.random((h, w)) < rng.random()
    elif kind == "all but one":
        hole[:] = True
        hole[rng.integers(0, h), rng.integers(0, w)] = False
    elif kind == "one":
        hole[rng.integers(0, h), rng.integers(0, w)] = True
    else:
        hole[:, :rng.integers(1, w + 1)] = True
    return hole


def as_hwc(x) -> np.ndarray:
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGBA") if x.mode in ("P", "PA") else x)
    elif isinstance(x, torch.Tensor):
        x = x.permute(1, 2, 0).numpy()
    return x[..., None] if x.ndim == 2 else x


def same_kind(picture, result) -> str | None:
    """Why ``result`` is not of ``picture``'s kind; None when it is."""
    if type(result) is not type(picture):
        return f"{type(picture).__name__} in, {type(result).__name__} out"
    if isinstance(picture, Image.Image):
        if (result.mode, result.size) != (picture.mode, picture.size):
            return f"{picture.mode} {picture.size} in, {result.mode} {result.size} out"
    elif result.dtype != picture.dtype or tuple(result.shape) != tuple(picture.shape):
        return f"{picture.dtype} {tuple(picture.shape)} in, {result.dtype} {tuple(result.shape)} out"
    return None


def describe(picture) -> str:
    if isinstance(picture, Image.Image):
        return f"PIL {picture.mode} {picture.size[1]}x{picture.size[0]}"
    return f"{type(picture).__name__} {picture.dtype} {tuple(picture.shape)}"


def one_case(inpainter: Inpainter, rng: np.random.Generator) -> tuple[str, str]:
    """('ok' | 'refused' | 'failed', what) for one random case."""
    h, w = int(rng.integers(1, 261)), int(rng.integers(1, 261))
    picture, hole = draw_picture(rng, h, w), draw_hole(rng, h, w)
    method = str(rng.choice(METHODS))
    options: dict = {}
    mask = (hole * 255).astype(np.uint8)
    hard = True
    if rng.random() < 0.2:      # a soft edge, as a brush draws it: the soft-edge rule decides the hole
        mask = ndimage.gaussian_filter(mask.astype(float), rng.uniform(0.5, 3)).round().clip(0, 255).astype(np.uint8)
        hard = False
    if rng.random() < 0.3:
        mask = Image.fromarray(mask).convert(str(rng.choice(["L", "1", "RGB", "LA"])))
    if rng.random() < 0.15:
        options["dilate"] = int(rng.integers(1, 5))
    if rng.random() < 0.15:
        options["invert"] = True
        hole = ~hole
    what = f"{describe(picture)}, method {method}, {'hard' if hard else 'soft'} mask, options {options}"
    try:
        result = inpainter(picture, mask, method=method, **options)
    except InpaintError as exc:
        if any(reason in str(exc) for reason in REFUSALS):
            return "refused", what
        return "failed", f"{what}: InpaintError {exc}"
    except Exception:       # noqa: BLE001  (any other exception is what the fuzz looks for)
        return "failed", f"{what}:\n{traceback.format_exc()}"
    wrong = same_kind(picture, result)
    if wrong:
        return "failed", f"{what}: {wrong}"
    before, after = as_hwc(picture), as_hwc(result)
    if hard and "dilate" not in options:
        if not np.array_equal(after[~hole], before[~hole]):
            return "failed", f"{what}: pixels outside the holes changed"
    if after.dtype.kind == "f" and not (np.isfinite(after).all() and after.min() >= 0 and after.max() <= 1):
        return "failed", f"{what}: float result {after.min()}..{after.max()}"
    return "ok", what


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=300, help="how long to draw cases (default 300)")
    p.add_argument("--seed", type=int, default=0, help="the cases' seed (default 0)")
    p.add_argument("--checkpoint", default=None, help="a generator (default the shipped one)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    inpainter = Inpainter(args.checkpoint, device="cpu")
    rng = np.random.default_rng(args.seed)
    counts = {"ok": 0, "refused": 0, "failed": 0}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        outcome, what = one_case(inpainter, rng)
        counts[outcome] += 1
        if outcome == "failed":
            print(f"FAILED {what}", flush=True)
    print(f"{sum(counts.values())} cases: {counts['ok']} ok, {counts['refused']} refused as documented, "
          f"{counts['failed']} failed")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
