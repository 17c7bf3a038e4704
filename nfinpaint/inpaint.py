"""``python -m nfinpaint.inpaint IMAGE MASK -o OUT``: fill the holes of your own picture.

IMAGE is any picture PIL reads, of any size (8- or 16-bit, grey, palette,
CMYK; its EXIF orientation is applied; an alpha channel is passed through to
the output untouched where the format keeps it); MASK is an image of the same
size in which white marks the holes (any PNG mode: grey, RGB, palette, 16-bit;
an alpha channel counts as "not a hole" where transparent).

With the shipped generator (or any full-resolution one, such as the
``fullres`` preset trains), every hole is filled by the learned model at the
picture's own resolution (:mod:`nfinpaint.neural_fill`): a window of context
around each hole (holes close together share one), and for holes thicker than
the generator trained on, a coarse pass on a shrunk copy whose upsampled fill
the full-resolution pass refines.  The command prints each window.

With a fixed-size generator (the ``paper``, ``paper64`` and ``default``
presets' 24x24 or 64x64 networks) each hole is filled on its own:

- **GAN**, on a square window around the hole: the window's side is chosen so
  that the hole takes the same fraction of it as the training hole takes of the
  generator's input (hole side x image_size / hole_size, at least image_size),
  centred on the hole and clamped inside the picture; the window is scaled to
  the generator's size, filled, scaled back and only the hole's pixels are
  copied into the picture.
- **PatchMatch** (``nfinpaint.patchmatch``), for holes the generator cannot
  fill well, or for every hole with ``--method patchmatch``.

With ``--method auto`` (default) and a fixed-size generator a hole goes to the
GAN when (1) its window is at most ``--max-scale`` (default 4) times the
generator's size, i.e. the window is not shrunk by more than that, and (2) the
hole's longer side is at most the largest hole the evaluation protocol uses
(1.5 x the training hole, as a fraction of the window); otherwise it goes to
PatchMatch.  Without ``--checkpoint`` the generator shipped in the package is
used when installed (the command says which), else every hole goes to
PatchMatch.

Pixels outside the holes are copied from the input unchanged (exactly, for a
lossless output format such as PNG).  The output's folder is created if
missing; the file is written atomically, and never over IMAGE or MASK unless
``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from nfinpaint import cli, generator_io, neural_fill
from nfinpaint.baselines import patchmatch_missing
from nfinpaint.cli import UsageError
from nfinpaint.generator_io import DEFAULT_GENERATOR, GeneratorFileError
from nfinpaint.generators import is_full_resolution
from nfinpaint.images import (ALPHA_SUFFIXES, IMAGE_SUFFIXES, LOSSY_SUFFIXES, PALETTE_SUFFIXES, ImageError,
                              read_image_and_alpha, read_image_info, read_mask, save_image)
from nfinpaint.masks import blank_holes, default_hole_size

DEFAULT_MAX_SCALE = 4.0
PATCHMATCH_PATCH = 7    # PatchMatch's patch side: the picture needs known patches this big to copy from


@dataclass
class Hole:
    """One connected hole and the decision about it."""

    index: int                      # 1-based, in scan order of the component labels
    top: int
    left: int
    height: int
    width: int
    method: str = ""                # "gan" or "patchmatch"
    reason: str = ""
    window: tuple[int, int, int] | None = None   # (top, left, side) for the GAN

    def describe(self) -> str:
        return (f"hole {self.index} at x={self.left}..{self.left + self.width - 1}, "
                f"y={self.top}..{self.top + self.height - 1} ({self.width}x{self.height} px)")


def find_holes(mask: torch.Tensor) -> tuple[np.ndarray, list[Hole]]:
    """Label the 8-connected holes of a (1, H, W) / (H, W) mask; returns (labels, holes)."""
    hole = (mask.reshape(mask.shape[-2:]) > 0.5).cpu().numpy()
    labels, count = ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    holes = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = sl
        holes.append(Hole(i, ys.start, xs.start, ys.stop - ys.start, xs.stop - xs.start))
    return labels, holes


def gan_window(hole: Hole, picture_hw: tuple[int, int], image_size: int, hole_size: int) -> tuple[int, int, int]:
    """(top, left, side) of the square window the GAN sees for ``hole`` (see the module doc)."""
    ph, pw = picture_hw
    longest = max(hole.height, hole.width)
    side = max(image_size, math.ceil(longest * image_size / hole_size))
    side = min(side, ph, pw)
    cy, cx = hole.top + hole.height / 2, hole.left + hole.width / 2
    top = int(min(max(round(cy - side / 2), 0), ph - side))
    left = int(min(max(round(cx - side / 2), 0), pw - side))
    return top, left, side


def largest_gan_hole_fraction(image_size: int, hole_size: int) -> float:
    """Longest hole side / window side that the GAN is trusted with: the evaluation protocol's largest."""
    from nfinpaint.masks import random_rect_range

    return random_rect_range(image_size, hole_size)[1] / image_size


def plan(holes: list[Hole], picture_hw: tuple[int, int], method: str, image_size: int | None,
         hole_size: int | None, max_scale: float) -> None:
    """Decide, in place, which method fills each hole (``method`` is auto, gan or patchmatch)."""
    for hole in holes:
        if method == "patchmatch":
            hole.method, hole.reason = "patchmatch", "asked with --method patchmatch"
            continue
        if image_size is None:
            hole.method, hole.reason = "patchmatch", "no --checkpoint given"
            continue
        top, left, side = gan_window(hole, picture_hw, image_size, hole_size)
        hole.window = (top, left, side)
        longest = max(hole.height, hole.width)
        fraction = largest_gan_hole_fraction(image_size, hole_size)
        wanted = max(image_size, math.ceil(longest * image_size / hole_size))
        problems = []
        if wanted > max_scale * image_size:
            problems.append(f"it needs a {wanted}x{wanted} window, more than {max_scale:g}x the "
                            f"generator's {image_size}x{image_size}")
        if longest > fraction * side:
            problems.append(f"it spans {longest / side:.0%} of the largest window the picture allows "
                            f"({side}x{side}); the generator is evaluated up to {fraction:.0%}")
        scaled = f"{side}x{side} window" + ("" if side == image_size else f" scaled to {image_size}x{image_size}")
        if method == "gan":
            hole.method = "gan"
            hole.reason = f"asked with --method gan, on a {scaled}"
            if problems:
                hole.reason += " (too large for the generator: " + "; ".join(problems) + ")"
        elif problems:
            hole.method, hole.reason = "patchmatch", "too large for the generator: " + "; ".join(problems)
        else:
            hole.method, hole.reason = "gan", f"on a {scaled}"


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    antialias = x.shape[-1] > size   # antialiasing only matters when shrinking
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


@torch.inference_mode()
def gan_fill_window(generator: torch.nn.Module, window: torch.Tensor, window_mask: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
    """Fill a (3, W, W) window whose holes are ``window_mask`` (1, W, W); returns (3, W, W) on the CPU.

    The window is scaled to the generator's size with its holes blanked, and
    every scaled pixel that any hole pixel contributes to (the mask scaled the
    same way, > 0) counts as a hole: nothing under a hole reaches the network.
    The output is composited at the generator's size before scaling back, so
    the scaled-up hole border blends with real context, not the raw generation.
    """
    size = generator.image_size
    side = window.shape[-1]
    window_mask = window_mask[None].to(device)
    x = _resize(blank_holes(window[None].to(device), window_mask), size)
    m = (_resize(window_mask, size) > 0).float()
    return _resize(generator_io.fill(generator, x, m), side)[0].float().cpu()


def inpaint_image(image: torch.Tensor, mask: torch.Tensor, *, generator: torch.nn.Module | None = None,
                  hole_size: int | None = None, method: str = "auto", device: str | torch.device = "cpu",
                  seed: int = 0, max_scale: float = DEFAULT_MAX_SCALE,
                  log: Callable[[str], None] = print) -> tuple[torch.Tensor, list[Hole]]:
    """Fill the holes of a (3, H, W) [0, 1] image given a (1, H, W) mask (1 = hole).

    Returns the filled image (pixels outside the holes are the input's, exactly)
    and the list of holes with the method used for each.  ``generator`` (with
    its training ``hole_size``) enables the GAN; without it every hole goes to
    PatchMatch.  Raises ValueError for bad input.
    """
    if method not in ("auto", "gan", "patchmatch"):
        raise ValueError(f"method must be auto, gan or patchmatch, got {method!r}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    mask = mask.reshape(1, *mask.shape[-2:]).float().cpu()
    if mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                         f"{image.shape[-1]}x{image.shape[-2]} (width x height); they must be the same size")
    if method == "gan" and generator is None:
        raise ValueError("--method gan needs --checkpoint PATH")
    hole_mask = mask > 0.5
    if not bool(hole_mask.any()):
        raise ValueError("the mask has no hole: white (brighter than 50% grey) marks the pixels to fill")
    if bool(hole_mask.all()):
        raise ValueError("the mask covers the whole image: nothing is left to fill the holes from")
    device = torch.device(device)
    image = image.detach().float().cpu().clamp(0, 1)
    labels, holes = find_holes(mask)
    image_size = None if generator is None else int(generator.image_size)
    if generator is not None:
        generator = generator.to(device).eval()
        hole_size = int(hole_size) if hole_size else default_hole_size(image_size)
    if generator is not None and method != "patchmatch" and is_full_resolution(generator):
        # a fully convolutional generator fills every hole at the picture's own resolution
        for hole in holes:
            hole.method, hole.reason = "gan", "learned fill at full resolution"

        def say(window) -> None:
            names = ", ".join(str(i) for i in window.holes[:8]) + (", ..." if len(window.holes) > 8 else "")
            log(f"hole(s) {names}: learned fill on a {window.describe()}")

        filled = neural_fill.fill_picture(generator, image, hole_mask, labels, len(holes), device, say)
        return torch.where(hole_mask, filled, image), holes
    plan(holes, tuple(image.shape[-2:]), method, image_size, hole_size, max_scale)

    pm_holes = [h for h in holes if h.method == "patchmatch"]
    if pm_holes:
        missing = patchmatch_missing()
        if missing:
            raise ValueError(f"{len(pm_holes)} hole(s) need PatchMatch, which cannot run here: {missing}")
        if not _has_known_patch(hole_mask, PATCHMATCH_PATCH):
            raise ValueError(f"{len(pm_holes)} hole(s) need PatchMatch, which copies {PATCHMATCH_PATCH}x"
                             f"{PATCHMATCH_PATCH} patches of known pixels, and this {image.shape[-1]}x"
                             f"{image.shape[-2]} picture has none outside the holes; use a larger picture, "
                             f"smaller holes, or a generator (--checkpoint)")

    current = image.clone()
    remaining = hole_mask.clone()                       # holes not filled yet
    labels_t = torch.from_numpy(labels)[None]
    for hole in holes:
        if hole.method != "gan":
            continue
        top, left, side = hole.window
        win = (slice(None), slice(top, top + side), slice(left, left + side))
        filled = gan_fill_window(generator, current[win], remaining[win].float(), device)
        mine = labels_t[win] == hole.index
        current[win] = torch.where(mine, filled, current[win])
        remaining[win] &= ~mine
        log(f"{hole.describe()}: GAN, {hole.reason}")

    if pm_holes:
        from nfinpaint import patchmatch

        pm_mask = remaining.float()
        visible = blank_holes(current, pm_mask)   # never show it the holes
        filled = patchmatch.inpaint(visible.to(device), pm_mask.to(device), patch_size=PATCHMATCH_PATCH, seed=seed)
        current = torch.where(remaining, filled.detach().float().cpu().clamp(0, 1), current)
        for hole in pm_holes:
            log(f"{hole.describe()}: PatchMatch ({hole.reason})")
    # The invariant the user relies on, enforced once more at the end.
    return torch.where(hole_mask, current, image), holes


def _has_known_patch(hole: torch.Tensor, side: int) -> bool:
    """Whether some ``side`` x ``side`` window of the (1, H, W) bool ``hole`` mask is all known."""
    if min(hole.shape[-2:]) < side:
        return False
    return bool((F.max_pool2d(hole.float()[None], side, stride=1) < 0.5).any())


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m nfinpaint.inpaint", __doc__)
    p.add_argument("image", metavar="IMAGE", help="the picture to fill (any size)")
    p.add_argument("mask", metavar="MASK", help="mask image of the same size: white = hole")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output image (.png keeps the pixels outside the holes exactly; folder created)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="trained generator: a training run directory or its generator.pt (default: the "
                        f"generator shipped in the package, nfinpaint/{DEFAULT_GENERATOR}, when installed)")
    p.add_argument("--method", choices=("auto", "gan", "patchmatch"), default="auto",
                   help="auto (default): the learned fill for every hole with a full-resolution generator "
                        "(the shipped one); with a fixed-size one, the GAN for holes that fit its window and "
                        "PatchMatch otherwise; gan or patchmatch: that method for every hole")
    p.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="PatchMatch seed (default 0)")
    p.add_argument("--max-scale", type=float, default=DEFAULT_MAX_SCALE, metavar="F",
                   help=f"fixed-size generators only: largest window / generator size ratio the GAN is used at "
                        f"(default {DEFAULT_MAX_SCALE:g})")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to be IMAGE or MASK itself")
    return p


def _check_output(args: argparse.Namespace) -> Path:
    output = cli.check_output_file(args.output, "-o")
    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"-o {args.output}: unknown image format {output.suffix or '(no suffix)'!r}; "
                         f"end the name in one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    for name, given in (("IMAGE", args.image), ("MASK", args.mask)):
        if output.exists() and Path(given).exists() and output.samefile(given) and not args.overwrite:
            raise UsageError(f"-o {args.output} is {name} itself: writing it would replace your file; choose "
                             f"another name, or pass --overwrite")
    return output


def run(args: argparse.Namespace) -> list[Hole]:
    output = _check_output(args)
    if not math.isfinite(args.max_scale) or args.max_scale < 1:
        raise UsageError(f"--max-scale must be at least 1, got {args.max_scale:g}")
    device = cli.resolve_device(args.device)
    try:
        image, alpha, bits = read_image_and_alpha(args.image)
        kept = read_image_info(args.image)     # colour profile, EXIF, dpi: written back unchanged
        mask = read_mask(args.mask)
    except ImageError as exc:
        raise UsageError(str(exc)) from None
    if any(s == 0 for s in image.shape[-2:]):
        raise UsageError(f"{args.image} is empty")
    if mask.shape[-2:] != image.shape[-2:]:
        raise UsageError(f"{args.mask} is {mask.shape[-1]}x{mask.shape[-2]} but {args.image} is "
                         f"{image.shape[-1]}x{image.shape[-2]} (width x height, after EXIF orientation); "
                         f"they must be the same size")
    if not bool((mask > 0.5).any()):
        raise UsageError(f"{args.mask} has no hole: white (brighter than 50% grey) marks the pixels to fill")
    loaded = cli.open_generator_option(args.checkpoint, wanted=args.method != "patchmatch",
                                       needed_by="--method gan" if args.method == "gan" else None,
                                       stream=sys.stdout)
    if loaded is None and args.method == "auto":
        print(f"note: no --checkpoint given and no shipped default generator is installed "
              f"(nfinpaint/{DEFAULT_GENERATOR}): every hole is filled with PatchMatch")
    try:
        filled, holes = inpaint_image(
            image, mask, generator=None if loaded is None else loaded.generator,
            hole_size=None if loaded is None else loaded.hole_size,
            method=args.method, device=device, seed=args.seed, max_scale=args.max_scale)
    except ValueError as exc:
        raise UsageError(cli.one_line(exc)) from None
    suffix = output.suffix.lower()
    if suffix in PALETTE_SUFFIXES:
        cli.warn(f"{suffix} holds at most 256 colours: pixels outside the holes change too; use .png to keep "
                 f"them exact")
    keep_alpha = alpha is not None and suffix in ALPHA_SUFFIXES
    save_image(filled, output, alpha if keep_alpha else None, info=kept)
    used = {m: sum(h.method == m for h in holes) for m in ("gan", "patchmatch")}
    print(f"wrote {output}: {len(holes)} hole(s), {used['gan']} by the learned model, {used['patchmatch']} by "
          f"PatchMatch")
    if alpha is not None:
        print("note: the alpha channel is passed through unchanged" if keep_alpha else
              f"note: {suffix} has no alpha channel: the input's transparency is dropped; use .png to keep it")
    if suffix in LOSSY_SUFFIXES:
        print(f"note: {output.suffix} is lossy, so pixels outside the holes change slightly; "
              "use .png to keep them exact")
    if bits > 8:
        depth = "32-bit float" if bits == 32 else f"{bits}-bit"
        print(f"note: {args.image} has {depth} channels; {output} is written with 8 bits, so pixels outside "
              f"the holes are rounded to 8 bits")
    return holes


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 after one ``error:`` line for bad input."""
    def command(args: argparse.Namespace) -> None:
        run(args)

    return cli.main(command, argv, build_parser(), (GeneratorFileError, ImageError))


if __name__ == "__main__":
    raise SystemExit(main())
