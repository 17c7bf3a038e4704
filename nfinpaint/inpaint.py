"""``python -m nfinpaint.inpaint IMAGE MASK -o OUT``: fill the holes of your own picture.

IMAGE is any picture PIL reads, of any size (8- or 16-bit, grey, palette,
CMYK; its EXIF orientation is applied; an alpha channel is passed through to
the output untouched where the format keeps it; a grey picture is written back
grey, with 16 bits or float where the format holds them: PNG and TIFF keep
16-bit grey, TIFF float; a black-and-white picture stored as RGB gets grey
holes too); MASK is an image of the same
size in which white marks the holes (any PNG mode: grey, RGB, palette, 16-bit;
an alpha channel counts as "not a hole" where transparent).

With the shipped generator (or any full-resolution one, such as the
``fullres`` preset trains), every hole is filled by the learned model at the
picture's own resolution (:mod:`nfinpaint.neural_fill`): a window of context
around each hole (holes close together share one), and for holes thicker than
128 px (``neural_fill.COARSE_THICKNESS``), the fill of a shrunk copy, upsampled and
relaxed to meet the known pixels.  The command prints each window, and a progress
bar when the fill is long (``--no-progress``: none, for logs and scripts).

With a fixed-size generator (the ``paper``, ``paper64`` and ``default``
presets' 24x24 or 64x64 networks) each hole is filled on its own:

- **GAN**, on a square window around the hole: the window's side is chosen so
  that the hole takes the same fraction of it as the training hole takes of the
  generator's input (hole side x image_size / hole_size, at least image_size),
  centred on the hole and clamped inside the picture; the window is scaled to
  the generator's size, filled, scaled back and only the hole's pixels are
  copied into the picture.  A hole that lies in the inner part of an earlier
  hole's window of the same size is filled by that window (same context and
  scale).  Windows are filled in scan order, each seeing the fills before
  it; windows that do not depend on each other (no hole of one inside the
  other's window) go to the generator together: many small holes (a
  scratched photograph) cost few generator calls.
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

Any other ``--method`` is one of the methods ``evaluate`` compares
(``nfinpaint.baselines.METHODS``: ``biharmonic``, the ``border-mean`` floor,
the OpenCV ones when OpenCV is installed), and fills every hole.

**Folders**: ``--images DIR --masks DIR|FILE -o DIR`` fills every picture of DIR
(pairing: a mask of the same stem, LaMa's ``NAME_mask*.png``, or one mask FILE
for all; see :mod:`nfinpaint.folders`), writes ``DIR/NAME.png`` for each, shows a
progress bar, keeps what is there with ``--skip-existing`` and replaces it only
with ``--overwrite``.  Pictures that cannot be filled (no mask, a mask of
another size, an unreadable file) are listed at the end and the status is 1;
the others are filled.

**Masks as drawn**: white (brighter than 50% grey) marks the holes, and so does
an antialiased brush's soft rim (brighter than 10% grey, touching a hole);
``--invert`` for black = hole; ``--dilate PX`` grows every hole by PX pixels;
a mask of another size is refused unless ``--resize-mask`` (nearest neighbour).
See :mod:`nfinpaint.mask_options`.

Pixels outside the holes are copied from the input unchanged (exactly, for a
lossless output format such as PNG).  The output's folder is created if
missing; the file is written atomically, and never over IMAGE or MASK unless
``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from nfinpaint import (cli, colour_rules, devices, folders, inference, mask_options, neural_fill, patchmatch,
                       transparency)
from nfinpaint.baselines import METHODS, build_method, patchmatch_missing
from nfinpaint.cli import UsageError
from nfinpaint.files import DiskFullError, FolderUnwritableError, remove_stale_temps_of
from nfinpaint.generator_io import DEFAULT_GENERATOR
from nfinpaint.generators import is_full_resolution
from nfinpaint.images import (ALPHA_SUFFIXES, IMAGE_SUFFIXES, LOSSY_SUFFIXES, PALETTE_SUFFIXES, ImageError,
                              check_format_size, check_regular_file, header_size, read_image_and_alpha,
                              read_image_info, save_image)
from nfinpaint.masks import blank_holes, default_hole_size, mask_plane

DEFAULT_MAX_SCALE = 4.0
# The learned fill shows a progress bar when its network computes this many pixels or more (halo included):
# about 4 s on 2 CPU cores (a 12-megapixel photograph with a ~1,000 px hole computes ~30 million)
PROGRESS_PIXELS = 4_000_000
# What a long fill on a CPU with native bfloat16 says about --half (benchmarks/bench_fullres.py measures it)
# (since the decoder runs around the holes and the base fill on a band around scratches, the network is a
# smaller share of a long fill's time: 1.1x on 12-megapixel scratches, 1.4x on a 512x384 picture's holes)
HALF_HINT = ("--half runs the network in it: 1.2-1.4x as fast on holes of ~56 px, ~1.1x on long scratches "
             "(docs/usage.md)")
HALF_HINT_FOLDER = "--half runs the network in it, 1.2-1.4x as fast a picture with holes of ~56 px (docs/usage.md)"
# The methods whose holes are planned here one by one (windows, a fixed-size generator's reach); every
# other method of the registry (baselines.METHODS) fills the whole picture through its Method class.
PLANNED_METHODS = ("gan", "gan-detail", "patchmatch")
_NOT_FINITE = ("the image has NaN or infinite values; give finite values in [0, 1] "
               "(what lies under a hole may be anything finite)")
METHOD_CHOICES = ("auto", *METHODS)
PATCHMATCH_PATCH = 7    # PatchMatch's patch side: the picture needs known patches this big to copy from


@dataclass
class Hole:
    """One connected hole and the decision about it."""

    index: int                      # 1-based, in scan order of the component labels
    top: int
    left: int
    height: int
    width: int
    method: str = ""                # "gan", "patchmatch", or the registry method asked for
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
        if method == "gan" and longest > side:
            # the square window cannot hold the hole (a picture narrower than the hole is long): the generator
            # filled only the part inside it and left the rest as it was (auto sends it to PatchMatch anyway)
            hole.method, hole.reason = "patchmatch", (
                f"asked with --method gan, but the hole is longer ({longest} px) than the largest square window "
                f"the picture allows ({side}x{side}), which a fixed-size generator fills")
        elif method == "gan":
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


GAN_BATCH = 256          # windows a generator call takes at most (each scaled to the generator's size)


@torch.inference_mode()
def gan_fill_windows(generator: torch.nn.Module, windows: Sequence[torch.Tensor], window_masks: Sequence[torch.Tensor],
                     device: torch.device) -> list[torch.Tensor]:
    """Fill (3, W, W) windows (any sides) whose holes are ``window_masks`` (1, W, W), in one generator
    call per :data:`GAN_BATCH` windows; returns each (3, W, W) on the CPU.

    Each window is scaled to the generator's size with its holes blanked, and
    every scaled pixel that any hole pixel contributes to (the mask scaled the
    same way, > 0) counts as a hole: nothing under a hole reaches the network.
    The output is composited at the generator's size before scaling back, so
    the scaled-up hole border blends with real context, not the raw generation.
    """
    size = generator.image_size
    out: list[torch.Tensor] = []
    for start in range(0, len(windows), GAN_BATCH):
        xs, ms = [], []
        for window, window_mask in zip(windows[start:start + GAN_BATCH], window_masks[start:start + GAN_BATCH]):
            window_mask = window_mask[None].to(device)
            xs.append(_resize(blank_holes(window[None].to(device), window_mask), size))
            ms.append((_resize(window_mask, size) > 0).float())
        filled = inference.fill(generator, torch.cat(xs), torch.cat(ms))
        for i, window in enumerate(windows[start:start + GAN_BATCH]):
            out.append(_resize(filled[i:i + 1], window.shape[-1])[0].float().cpu())
    return out


def gan_fill_window(generator: torch.nn.Module, window: torch.Tensor, window_mask: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
    """Fill one (3, W, W) window whose holes are ``window_mask`` (1, W, W) (:func:`gan_fill_windows`)."""
    return gan_fill_windows(generator, [window], [window_mask], device)[0]


@dataclass
class GanWindow:
    """A GAN window (its owner's: the first hole, in scan order, that it was planned for) and the
    holes it fills: the owner, and later holes of the same window size that lie in its inner part."""

    owner: Hole
    holes: list[Hole]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) around its holes."""
        return (min(h.top for h in self.holes), min(h.left for h in self.holes),
                max(h.top + h.height for h in self.holes), max(h.left + h.width for h in self.holes))


def gan_windows(holes: Sequence[Hole], picture_hw: tuple[int, int]) -> list[GanWindow]:
    """The windows that fill ``holes`` (planned for the GAN, in scan order).  A hole whose window has
    the same side as an earlier window's and that lies in that window's inner part (a quarter of the
    side from every edge that is not the picture's) is filled by that window: it sees as much
    context, at the same scale, as in its own.  Many small holes close together: few windows."""
    ph, pw = picture_hw
    out: list[GanWindow] = []
    taken: set[int] = set()
    for i, hole in enumerate(holes):
        if hole.index in taken:
            continue
        top, left, side = hole.window
        margin = side // 4
        inner = (top + (margin if top > 0 else 0), left + (margin if left > 0 else 0),
                 top + side - (margin if top + side < ph else 0), left + side - (margin if left + side < pw else 0))
        members = [hole]
        for other in holes[i + 1:]:
            if (other.index not in taken and other.window[2] == side and inner[0] <= other.top
                    and inner[1] <= other.left and other.top + other.height <= inner[2]
                    and other.left + other.width <= inner[3]):
                members.append(other)
                taken.add(other.index)
        out.append(GanWindow(hole, members))
    return out


def gan_rounds(windows: Sequence[GanWindow]) -> list[list[GanWindow]]:
    """``windows`` (in fill order) in rounds that are filled together, with the same result as one
    at a time in order: a window goes in the round after every earlier window it depends on, or that
    depends on it (one's holes inside the other's window), so each window sees exactly the fills it
    would see one at a time.  Each round is one batched generator call."""
    if not windows:
        return []
    box = np.array([w.box for w in windows])
    win = np.array([(t, l, t + side, l + side) for t, l, side in (w.owner.window for w in windows)])

    def meets(a: np.ndarray, b: np.ndarray) -> np.ndarray:   # rectangles a[i] and b (one) overlap
        return (a[:, 0] < b[2]) & (b[0] < a[:, 2]) & (a[:, 1] < b[3]) & (b[1] < a[:, 3])

    level = np.zeros(len(windows), dtype=np.int64)
    for j in range(1, len(windows)):
        depends = meets(box[:j], win[j]) | meets(win[:j], box[j])
        if depends.any():
            level[j] = level[:j][depends].max() + 1
    return [[windows[i] for i in np.flatnonzero(level == k)] for k in range(int(level.max()) + 1)]


def check_half(half: bool, device: str | torch.device) -> None:
    """ValueError unless half precision can run on ``device`` (:func:`nfinpaint.devices.half_problem`)."""
    problem = devices.half_problem(device) if half else None
    if problem:
        raise ValueError(f"half precision (--half) {problem}; drop --half"
                         + (", or use --device cuda" if torch.cuda.is_available() else ""))


def _float32_unless_half(device: str | torch.device) -> contextlib.ExitStack:
    """The caller's autocast switched off for the fill: inside one, the same picture came back other
    (PatchMatch's search in bfloat16: up to 20 levels), and on a CPU without native bfloat16 on the
    emulated path that ``half`` refuses there.  ``half`` (:func:`half_precision`) turns it on again
    for the network alone."""
    stack = contextlib.ExitStack()
    for kind in dict.fromkeys(("cpu", torch.device(device).type)):
        stack.enter_context(torch.autocast(kind, enabled=False))
    return stack


def half_precision(half: bool, device: str | torch.device):
    """The context the generator runs in: with ``half``, float16 autocast on a CUDA GPU and bfloat16 autocast
    on a CPU that computes it natively; else nothing.  Only the network's convolutions change precision:
    the base fill, the patch blend and the composite stay float32, and the known pixels stay exact."""
    if not half:
        return contextlib.nullcontext()
    check_half(half, device)
    return torch.autocast(torch.device(device).type, dtype=devices.half_dtype(device))


def inpaint_image(image: torch.Tensor, mask: torch.Tensor, *, generator: torch.nn.Module | None = None,
                  hole_size: int | None = None, method: str = "auto", device: str | torch.device = "cpu",
                  seed: int = 0, max_scale: float = DEFAULT_MAX_SCALE,
                  log: Callable[[str], None] = print, half: bool = False,
                  progress: bool = False, hidden: np.ndarray | torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, list[Hole]]:
    """Fill the holes of a (3, H, W) colour or (1, H, W) grey [0, 1] image given a (1, H, W) mask (1 = hole).

    The mask is read as given: a pixel above 0.5 is a hole.  The soft-edge rule for drawn masks
    (an antialiased rim joins its stroke; docs/usage.md) is applied by :class:`nfinpaint.Inpainter`
    and the command before they call this; ``nfinpaint.mask_options.holes_from_values`` gives it here.

    Returns the filled image, with the input's channels and float dtype (pixels outside
    the holes are the input's, exactly; the fill itself is computed in float32), and the
    list of holes with the method used for each.  ``generator`` (with its training
    ``hole_size``) enables the GAN; without it every hole goes to PatchMatch.  ``half``:
    the generator runs in float16 (autocast; a CUDA device only), the composite stays float32.
    ``progress``: a progress bar on stderr while the learned fill's network runs, when its work is
    long (:data:`PROGRESS_PIXELS`).  ``hidden``: (H, W) bool, the pixels nobody sees (alpha 0), whose
    colours the fill reads as their nearest visible known pixel's (:mod:`nfinpaint.transparency`).
    Raises ValueError for bad input (an integer or non-finite image, a mask of another
    size or with more than one plane).
    """
    if not image.is_floating_point():
        raise ValueError(f"expected a float image with values in [0, 1], got {image.dtype}: divide a uint8 "
                         f"picture by 255 (nfinpaint.Inpainter takes uint8 arrays as they are)")
    mask = mask_plane(mask).cpu()      # once: _inpaint_colour's own call is then free
    # one layout whatever the caller's: oneDNN's convolutions round a channels-last or permuted view
    # differently (up to 6e-4), so the API's and the server's (H, W, 3) views came back a level off the command's
    image = image.contiguous()
    grey = image.dim() == 3 and image.shape[0] == 1
    if isinstance(generator, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        generator = generator.module   # a training loop's wrapped generator: the fill runs the one inside
    given, replaced = image, None
    if hidden is not None and image.dim() == 3 and mask.shape[-2:] == image.shape[-2:]:
        if not bool(torch.isfinite(image).all()):     # checked below too, but on the replaced picture
            raise ValueError(_NOT_FINITE)
        image, replaced = transparency.seen_context(image, mask[0] > 0.5, hidden)
    # a caller's generator (a training loop's, in train mode) comes back as it was given
    with _float32_unless_half(device), inference.left_as_it_was(generator):
        filled, holes = _inpaint_colour(image.expand(3, -1, -1) if grey else image, mask, generator=generator,
                                        hole_size=hole_size, method=method, device=device, seed=seed,
                                        max_scale=max_scale, log=log, half=half, progress=progress)
    hole = mask > 0.5
    # a hole in a flat ring kept within its colours, a picture of one hue filled in it (nfinpaint.colour_rules)
    filled = colour_rules.apply(image, hole, filled)
    if grey:    # every method fills RGB and may tint a grey picture: its holes get the channels' mean,
        # as the first plus the others' differences from it: exact where the three are equal (a flat ring's)
        mean = filled[:1] + ((filled[1:2] - filled[:1]) + (filled[2:3] - filled[:1])) / 3
        filled = torch.where(hole, mean, filled[:1])
    if image.dtype != filled.dtype:
        # the fill is computed in float32; a float64 (or float16) picture keeps its own known pixels
        filled = torch.where(hole, filled.to(image.dtype), image.detach().cpu().clamp(0, 1))
    if replaced is not None:      # the hidden pixels come back as they were given
        filled = torch.where(replaced, given.detach().cpu().clamp(0, 1).to(filled.dtype), filled)
    return filled, holes


@contextlib.contextmanager
def _fill_progress(wanted: bool, generator: torch.nn.Module, hole: torch.Tensor, windows: list[neural_fill.Window],
                   log: Callable[[str], None]):
    """A progress bar over the learned fill's steps (:func:`neural_fill.planned_steps`; stderr, gone when
    done) when ``wanted`` and its network computes at least :data:`PROGRESS_PIXELS`.  Yields (the per-step
    callback or None, ``log`` made to print above the bar)."""
    steps, pixels = neural_fill.planned_steps(generator, hole, windows) if wanted else (0, 0)
    if not wanted or pixels < PROGRESS_PIXELS:
        yield None, log
        return
    from tqdm import tqdm  # noqa: PLC0415

    def above(message: str) -> None:
        with tqdm.external_write_mode():      # clears the bar, prints, draws it again
            log(message)

    with tqdm(total=steps, desc="learned fill", unit="step", leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update, above


def _inpaint_colour(image: torch.Tensor, mask: torch.Tensor, *, generator: torch.nn.Module | None,
                    hole_size: int | None, method: str, device: str | torch.device, seed: int, max_scale: float,
                    log: Callable[[str], None], half: bool, progress: bool = False
                    ) -> tuple[torch.Tensor, list[Hole]]:
    """inpaint_image for a (3, H, W) picture."""
    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of {', '.join(METHOD_CHOICES)}, got {method!r}")
    check_half(half, device)
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) colour or (1, H, W) grey image, got shape {tuple(image.shape)}")
    mask = mask_plane(mask).cpu()
    if mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                         f"{image.shape[-1]}x{image.shape[-2]} (width x height); they must be the same size")
    asked, detail = method, method == "gan-detail"
    if detail:          # the learned fill with texture re-synthesised from the picture (neural_fill.add_detail)
        method = "gan"
    if method == "gan" and generator is None:
        raise ValueError(f"--method {asked} needs --checkpoint PATH")
    refusal = METHODS[asked].refuses(generator) if asked in METHODS else None    # auto is not a registry entry
    if refusal is not None:
        raise ValueError(f"--method {asked} {refusal}")
    hole_mask = mask > 0.5
    if not bool(hole_mask.any()):
        raise ValueError(f"the mask has no hole: {mask_options.no_hole_reason()}")
    if bool(hole_mask.all()):
        raise ValueError("the mask covers the whole image: nothing is left to fill the holes from")
    device = torch.device(device)
    image = image.detach().float().cpu()
    if not bool(torch.isfinite(image).all()):
        # NaN passes the clamp below and would end as NaN fills (or a generator blamed for them)
        raise ValueError(_NOT_FINITE)
    if image.numel() and (bool(image.min() < 0) or bool(image.max() > 1)):   # a copy only when needed
        image = image.clamp(0, 1)
    labels, holes = find_holes(mask)
    if method not in ("auto", *PLANNED_METHODS):
        filled = build_method(method, device=device).fill(image, mask, seed)
        for hole in holes:
            hole.method, hole.reason = method, f"asked with --method {method}"
            log(f"{hole.describe()}: {METHODS[method].label}")
        return torch.where(hole_mask, filled, image), holes
    image_size = None if generator is None else int(generator.image_size)
    if generator is not None:
        generator = neural_fill.ready_to_fill(generator, device)
        hole_size = int(hole_size) if hole_size else default_hole_size(image_size)
    if generator is not None and method != "patchmatch" and is_full_resolution(generator):
        # a fully convolutional generator fills every hole at the picture's own resolution
        for hole in holes:
            hole.method, hole.reason = "gan", "learned fill at full resolution" + (
                ", texture re-synthesised from the picture" if detail else "")

        windows = neural_fill.plan_windows(labels, len(holes))      # once: the bar is sized by them
        with half_precision(half, device), _fill_progress(progress, generator, hole_mask, windows, log) as (step, shown):
            def say(window) -> None:
                names = ", ".join(str(i) for i in window.holes[:8]) + (", ..." if len(window.holes) > 8 else "")
                textured = detail and neural_fill.takes_detail(window)
                sparse = (f"; where the known pixels are sparse ({window.sparse:.0%} of the hole), the smooth base "
                          f"fill" if window.sparse else "")
                shown(f"hole(s) {names}: learned fill{' with detail' if textured else ''} on a {window.describe()}"
                      f"{sparse}")

            if step is not None and devices.half_would_help(half, device):
                shown(f"note: this CPU computes bfloat16 natively: {HALF_HINT}")
            filled = neural_fill.fill_picture(generator, image, hole_mask, labels, len(holes), device, say,
                                              seed=seed, detail=detail, on_step=step, windows=windows)
        return torch.where(hole_mask, filled, image, out=filled), holes      # in place: memory per pixel
    plan(holes, tuple(image.shape[-2:]), method, image_size, hole_size, max_scale)

    pm_holes = [h for h in holes if h.method == "patchmatch"]
    if pm_holes:
        missing = patchmatch_missing()
        if missing:
            raise ValueError(f"{len(pm_holes)} hole(s) need PatchMatch, which cannot run here: {missing}")
        # PatchMatch runs after the GAN's holes are filled: they are known pixels by then
        pm_only = torch.isin(torch.from_numpy(labels), torch.tensor([h.index for h in pm_holes], device="cpu"))
        if not patchmatch.has_source_patch(pm_only, PATCHMATCH_PATCH):
            # what fills such holes instead: the learned fill, if the loaded generator can
            instead = ("the learned fill (--method auto)" if method == "patchmatch"
                       else "a generator (--checkpoint)" if generator is None
                       else "a full-resolution generator (the shipped default)")
            raise ValueError(f"{len(pm_holes)} hole(s) need PatchMatch, which copies {PATCHMATCH_PATCH}x"
                             f"{PATCHMATCH_PATCH} patches of known pixels, and this {image.shape[-1]}x"
                             f"{image.shape[-2]} picture has none outside those holes; use a larger picture, "
                             f"smaller holes, or {instead}")

    current = image.clone()
    remaining = hole_mask.clone()                       # holes not filled yet
    labels_t = torch.from_numpy(labels)[None]

    def window_of(window: GanWindow) -> tuple:
        top, left, side = window.owner.window
        return slice(None), slice(top, top + side), slice(left, left + side)

    windows = gan_windows([h for h in holes if h.method == "gan"], tuple(image.shape[-2:]))
    shared = {}
    for window in windows:
        for hole in window.holes[1:]:
            shared[hole.index] = window.owner.index
    for round_ in gan_rounds(windows):
        with half_precision(half, device):
            fills = gan_fill_windows(generator, [current[window_of(w)] for w in round_],
                                     [remaining[window_of(w)].float() for w in round_], device)
        for window, filled in zip(round_, fills):
            win = window_of(window)
            mine = torch.isin(labels_t[win], torch.tensor([h.index for h in window.holes], device=labels_t.device))
            current[win] = torch.where(mine, filled, current[win])
            remaining[win] &= ~mine
    for hole in holes:
        if hole.method == "gan":
            also = f" (hole {shared[hole.index]}'s window)" if hole.index in shared else ""
            log(f"{hole.describe()}: GAN, {hole.reason}{also}")

    if pm_holes:
        pm_mask = remaining.float()
        visible = blank_holes(current, pm_mask)   # never show it the holes
        filled = patchmatch.inpaint(visible.to(device), pm_mask.to(device), patch_size=PATCHMATCH_PATCH, seed=seed)
        current = torch.where(remaining, filled.detach().float().cpu().clamp(0, 1), current)
        for hole in pm_holes:
            log(f"{hole.describe()}: PatchMatch ({hole.reason})")
    # The invariant the user relies on, enforced once more at the end.
    return torch.where(hole_mask, current, image, out=current), holes


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m nfinpaint.inpaint", __doc__)
    p.add_argument("image", metavar="IMAGE", nargs="?", help="the picture to fill (any size)")
    p.add_argument("mask", metavar="MASK", nargs="?", help="mask image of the same size: white = hole")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output image (.png keeps the pixels outside the holes exactly; folder created); "
                        "with --images, the output folder")
    p.add_argument("--images", metavar="DIR", help="fill every picture in DIR (instead of IMAGE MASK)")
    p.add_argument("--masks", metavar="DIR|FILE",
                   help="with --images: a folder of masks (same stem, or LaMa's NAME_mask*.png), or one mask for all")
    p.add_argument("--skip-existing", action="store_true", help="with --images: keep outputs already in -o DIR")
    p.add_argument("--dilate", type=int, default=0, metavar="PX",
                   help="grow every hole by PX pixels (for a brush that missed an object's edge; default 0)")
    p.add_argument("--invert", action="store_true", help="black marks the holes (white is kept)")
    p.add_argument("--resize-mask", action="store_true",
                   help="resize a mask of another size to the picture's (nearest neighbour) instead of refusing it")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="trained generator: a training run directory or its generator.pt (default: the "
                        f"generator shipped in the package, nfinpaint/{DEFAULT_GENERATOR}, when installed)")
    p.add_argument("--method", choices=METHOD_CHOICES, default="auto",
                   help="auto (default): the learned fill for every hole with a full-resolution generator "
                        "(the shipped one); with a fixed-size one, the GAN for holes that fit its window and "
                        "PatchMatch otherwise; gan-detail: the learned fill with texture copied from the "
                        "picture into holes 21 px thick or more (less smooth, lower PSNR/SSIM; full-resolution "
                        "generators); any other: that method for every hole (the methods evaluate compares; "
                        "optional ones need their extra installed)")
    p.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of PatchMatch's random search: of the learned fill's patch blend and of --method "
                        "patchmatch (default 0; the same seed gives the same picture with the same number of CPU "
                        "threads: the network's sums add in an order that follows it, and a level may differ; with "
                        "gan-detail the synthesis may then copy other patches, up to ~10 levels on a few pixels)")
    p.add_argument("--half", action="store_true",
                   help="run the generator's network in half precision: float16 autocast on a CUDA GPU (faster, "
                        "half the memory), bfloat16 on a CPU that computes it natively (AMX or AVX512-BF16: "
                        "1.2-1.4x as fast on holes of ~56 px, ~1.1x on long scratches); refused on other CPUs, where "
                        "it would be slower. Hole PSNR within 0.01 dB of float32's on validation (docs/usage.md)")
    p.add_argument("--max-scale", type=float, default=DEFAULT_MAX_SCALE, metavar="F",
                   help=f"fixed-size generators only: largest window / generator size ratio the GAN is used at "
                        f"(default {DEFAULT_MAX_SCALE:g})")
    p.add_argument("--overwrite", action="store_true",
                   help="allow OUT to be IMAGE or MASK itself; with --images, replace outputs already in -o DIR")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (a long fill's, or the folder's with --images) and no note about --half "
                        "on a long fill: for logs and scripts, where the bar's redrawn lines pile up")
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


def _check_options(args: argparse.Namespace) -> None:
    if not args.output.strip():
        # an empty name is no output: as a folder it was the current one, as a file "-o . is a folder"
        raise UsageError("-o is empty: give an output file (or, with --images, an output folder)")
    if not math.isfinite(args.max_scale) or args.max_scale < 1:
        raise UsageError(f"--max-scale must be at least 1, got {args.max_scale:g}")
    if args.dilate < 0:
        raise UsageError(f"--dilate must be 0 or more pixels, got {args.dilate}")
    folder = args.images is not None or args.masks is not None
    if folder and (args.image or args.mask):
        raise UsageError("give either IMAGE MASK or --images DIR --masks DIR|FILE, not both")
    if folder and (args.images is None or args.masks is None):
        raise UsageError("--images DIR needs --masks DIR|FILE (and --masks needs --images)")
    if not folder and not (args.image and args.mask):
        raise UsageError("give IMAGE MASK -o OUT, or --images DIR --masks DIR|FILE -o DIR")
    if not folder and args.skip_existing:
        raise UsageError("--skip-existing is for --images DIR; for one picture choose another -o name")
    if args.skip_existing and args.overwrite:
        raise UsageError("--skip-existing keeps existing outputs and --overwrite replaces them: pass one")


def _read_holes(masks: list[Path], invert: bool) -> np.ndarray:
    """The holes of one or more mask files (LaMa's several masks of a picture: their union)."""
    hole = None
    for path in masks:
        part = mask_options.read_holes(path, invert)
        if hole is not None and part.shape != hole.shape:
            raise UsageError(f"{path} is {part.shape[1]}x{part.shape[0]} but {masks[0]} is "
                             f"{hole.shape[1]}x{hole.shape[0]}; masks of one picture must be the same size")
        hole = part if hole is None else hole | part
    return hole


def _fill_one(image_path: Path, masks: list[Path], output: Path, args: argparse.Namespace, loaded, device,
              log: Callable[[str], None]) -> tuple[list[Hole], torch.Tensor | None, int, int]:
    """Read, fill and write one picture; UsageError (or ImageError) for bad input.
    Returns (holes, the alpha channel or None, the input's bits per channel, the output's)."""
    shown = ", ".join(str(m) for m in masks)
    try:
        # from the headers, before any pixel is decoded: a picture the output's format cannot hold, or a
        # mask of another size, is refused at once, not after a large picture has filled the memory
        width, height = header_size(image_path)
        check_format_size(output, width, height)
        if not args.resize_mask:
            for path in masks:
                mask_width, mask_height = header_size(path)
                if (mask_width, mask_height) != (width, height):
                    raise UsageError(f"{path} is {mask_width}x{mask_height} but {image_path} is {width}x{height} "
                                     f"(width x height, after EXIF orientation); they must be the same size, or "
                                     f"pass --resize-mask")
        image, alpha, bits, grey, level = read_image_and_alpha(image_path)
        kept = read_image_info(image_path)     # colour profile, EXIF, dpi: written back unchanged
        hole = _read_holes(masks, args.invert)
    except ImageError as exc:
        raise UsageError(str(exc)) from None
    if any(s == 0 for s in image.shape[-2:]):
        raise UsageError(f"{image_path} is empty")
    if hole.shape != tuple(image.shape[-2:]) and not args.resize_mask:
        raise UsageError(f"{shown} is {hole.shape[1]}x{hole.shape[0]} but {image_path} is "
                         f"{image.shape[-1]}x{image.shape[-2]} (width x height, after EXIF orientation); "
                         f"they must be the same size, or pass --resize-mask")
    try:
        hole = mask_options.prepare(hole, tuple(image.shape[-2:]), dilate_px=args.dilate, resize=True)
    except ValueError as exc:
        raise UsageError(f"{shown}: {cli.one_line(exc).replace('dilate less', 'use a smaller --dilate')}") from None
    if not hole.any():
        raise UsageError(f"{shown} has no hole: {mask_options.no_hole_reason(args.invert)}")
    keep_alpha = alpha is not None and output.suffix.lower() in ALPHA_SUFFIXES
    try:
        filled, holes = inpaint_image(
            image[:1] if grey else image, torch.from_numpy(hole)[None].float(),
            generator=None if loaded is None else loaded.generator,
            hole_size=None if loaded is None else loaded.hole_size,
            method=args.method, device=device, seed=args.seed, max_scale=args.max_scale, log=log, half=args.half,
            progress=not args.no_progress,
            # colours under alpha 0 are not read as context, unless the output shows them (no alpha kept)
            hidden=transparency.hidden_pixels(alpha) if keep_alpha else None)
    except ValueError as exc:
        raise UsageError(cli.one_line(exc)) from None
    del image          # the picture's float copy: not needed to write the result (memory per pixel)
    written = save_image(filled, output, alpha if keep_alpha else None, info=kept, bits=bits if grey else 8,
                         transparent_level=level)
    return holes, alpha, bits, written


def _device(args: argparse.Namespace) -> torch.device:
    device = devices.resolve_device(args.device)
    try:
        check_half(args.half, device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return device


def _open_generator(args: argparse.Namespace, device: torch.device):
    """The generator of --checkpoint (or the shipped one), ready to fill on ``device``; None where none
    is wanted or installed."""
    needs_generator = args.method != "auto" and METHODS[args.method].needs_generator
    loaded = cli.open_generator_option(args.checkpoint, wanted=args.method == "auto" or needs_generator,
                                       needed_by=f"--method {args.method}" if needs_generator else None,
                                       stream=sys.stdout)
    if loaded is None and args.method == "auto":
        print(f"note: no --checkpoint given and no shipped default generator is installed "
              f"(nfinpaint/{DEFAULT_GENERATOR}): every hole is filled with PatchMatch")
    if loaded is not None:
        neural_fill.ready_to_fill(loaded.generator, device)
    return loaded


def run(args: argparse.Namespace) -> list[Hole] | int:
    _check_options(args)
    if args.images is not None:
        return run_folders(args)
    output = _check_output(args)
    device = _device(args)
    for given in (args.image, args.mask):     # before the generator loads: a typo fails at once
        try:
            check_regular_file(Path(given))
        except ImageError as exc:
            raise UsageError(str(exc)) from None
    loaded = _open_generator(args, device)
    suffix = output.suffix.lower()
    holes, alpha, bits, written = _fill_one(Path(args.image), [Path(args.mask)], output, args, loaded, device,
                                            print)
    if suffix in PALETTE_SUFFIXES:
        cli.warn(f"{suffix} holds at most 256 colours: pixels outside the holes change too; use .png to keep "
                 f"them exact")
    keep_alpha = alpha is not None and suffix in ALPHA_SUFFIXES
    used = {m: sum(h.method == m for h in holes) for m in PLANNED_METHODS}
    if args.method in ("auto", *PLANNED_METHODS):
        print(f"wrote {output}: {len(holes)} hole(s), {used['gan']} by the learned model, {used['patchmatch']} by "
              f"PatchMatch")
    else:
        print(f"wrote {output}: {len(holes)} hole(s), all by {METHODS[args.method].label}")
    if alpha is not None:
        print("note: the alpha channel is passed through unchanged" if keep_alpha else
              f"note: {suffix} has no alpha channel: the input's transparency is dropped; use .png to keep it")
    if suffix in LOSSY_SUFFIXES:
        print(f"note: {output.suffix} is lossy, so pixels outside the holes change slightly; "
              "use .png to keep them exact")
    if bits > written:
        print(f"note: {args.image} has {_depth_name(bits)} channels; {output} is written with {written} bits, so "
              f"pixels outside the holes are rounded to {written} bits ({_KEEPS_DEPTH})")
    return holes


# where a grey picture's depth survives, said when it does not
_KEEPS_DEPTH = ("a grey picture keeps 16 bits in .png or .tif (with a transparent level in .png only, with "
               "alpha in neither), and float in .tif")


def _depth_name(bits: int) -> str:
    return "32-bit float" if bits == 32 else f"{bits}-bit"


EXIT_SOME_FAILED = 1


def _listed_reason(exc: BaseException, paths: Sequence[Path]) -> str:
    """The first line of ``exc``'s message, its ``paths`` shown as :func:`folders.shown` shows them
    (a newline in a file name cut the message there, and a raw one would split its entry)."""
    text = str(exc)
    for path in paths:
        text = text.replace(str(path), folders.shown(path))
    return cli.first_line(text, type(exc).__name__)


def run_folders(args: argparse.Namespace) -> int:
    """``--images DIR --masks DIR|FILE -o DIR``: 0 when every picture was filled (or kept), else 1
    after listing the ones that were not."""
    from tqdm import tqdm  # noqa: PLC0415

    images, masks, out_dir = Path(args.images), Path(args.masks), Path(args.output)
    if not images.is_dir():
        raise UsageError(f"--images {images}: " + ("no such folder" if not images.exists() else
                                                   "is a file; give the folder of pictures"))
    if not masks.exists():
        raise UsageError(f"--masks {masks}: no such file or folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} is a file; with --images, -o names the output folder")
    for option, folder in (("--images", images), ("--masks", masks)):
        if out_dir.is_dir() and folder.is_dir() and out_dir.resolve() == folder.resolve():
            # its outputs would be read as pictures (or masks) by the next run: --skip-existing could not
            # resume an interrupted one ("would replace an input picture")
            raise UsageError(f"-o {out_dir} is the {option} folder: the filled pictures would be read as inputs "
                             f"by the next run; choose another output folder (a subfolder is fine)")
    cli.check_output_folder(out_dir, "-o")
    try:
        pairs = folders.pair(images, masks, out_dir)
    except OSError as exc:   # e.g. a folder this user may not list
        raise UsageError(f"cannot read the folder {exc.filename or images}: {exc.strerror or exc}; "
                         "give folders this user can read") from None
    if not pairs:
        raise UsageError(f"--images {images} holds no picture (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    for item in pairs:
        if not item.problem and item.output.exists() and not item.output.is_file():
            # a folder (or a pipe) of that name: neither an output to keep nor one that can be written
            what = "a folder" if item.output.is_dir() else "not a regular file"
            item.problem = (f"{folders.shown(item.output)} is {what}: the output cannot be written there; move or "
                            f"rename it, or choose another -o")
    sources = {p.image.resolve() for p in pairs} | {m.resolve() for p in pairs for m in p.masks}
    clash = [p for p in pairs if p.output.exists() and p.output.resolve() in sources]
    if clash:
        raise UsageError(f"-o {out_dir}: {clash[0].output.name} would replace an input picture or mask; "
                         f"choose another output folder")
    existing = [p for p in pairs if not p.problem and p.output.exists()]
    if existing and not (args.skip_existing or args.overwrite):
        raise UsageError(f"-o {out_dir} already holds {len(existing)} of the outputs (e.g. {existing[0].output.name}); "
                         f"pass --skip-existing to keep them or --overwrite to replace them")
    # an earlier run killed mid-write (kill -9, power loss) left hidden temporary files beside its outputs
    stale = remove_stale_temps_of(p.output for p in pairs)
    if stale:
        print(f"note: removed {len(stale)} temporary file(s) an interrupted run left in {out_dir}")
    device = _device(args)
    loaded = _open_generator(args, device)
    todo = [p for p in pairs if not (args.skip_existing and not p.problem and p.output.exists())]
    if (loaded is not None and is_full_resolution(loaded.generator) and args.method in ("auto", "gan", "gan-detail")
            and devices.half_would_help(args.half, device)):
        # a folder's fills add up (each picture's own note is not shown in this mode)
        print(f"note: this CPU computes bfloat16 natively: {HALF_HINT_FOLDER}")
    skipped = len(pairs) - len(todo)
    bad: list[tuple[Path, str]] = []
    rounded: list[str] = []         # pictures whose depth the PNG output does not hold
    filled = 0
    for item in tqdm(todo, desc="inpaint", unit="picture", file=sys.stderr, dynamic_ncols=True, disable=args.no_progress):
        if item.problem:
            bad.append((item.image, item.problem))
            continue
        try:
            _, _, bits, written = _fill_one(item.image, item.masks, item.output, args, loaded, device,
                                            lambda message: None)
            filled += 1
            if bits > written:
                rounded.append(f"{folders.shown(item.image.name)} ({_depth_name(bits)} -> {written} bits)")
        except (DiskFullError, FolderUnwritableError) as exc:
            # every picture after it would fail the same way: stop, after listing those found bad so far
            _list_bad(bad, len(pairs))
            if isinstance(exc, DiskFullError):      # as it stands, running again is refused: outputs exist
                raise exc.then_instead("run again with --skip-existing") from None
            raise
        except (UsageError, ImageError) as exc:
            bad.append((item.image, _listed_reason(exc, [item.image, *item.masks])))
    print(f"filled {filled} picture(s) into {out_dir}" + (f", kept {skipped} already there" if skipped else ""))
    if rounded:
        shown = ", ".join(rounded[:5]) + (f" and {len(rounded) - 5} more" if len(rounded) > 5 else "")
        print(f"note: {len(rounded)} picture(s) have more bits per channel than their PNG holds, so pixels outside "
              f"the holes are rounded: {shown} ({_KEEPS_DEPTH}: fill a float one with -o NAME.tif)")
    if bad:
        _list_bad(bad, len(pairs))
        return EXIT_SOME_FAILED
    return 0


def _list_bad(bad: list[tuple[Path, str]], count: int) -> None:
    """On stderr: the pictures of a folder run that were not filled, each with its reason."""
    if bad:
        print(f"error: {len(bad)} of {count} picture(s) not filled:", file=sys.stderr)
        for path, reason in bad:
            print(f"  {folders.shown(path.name)}: {reason}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 after one ``error:`` line for bad input, 1 when some
    pictures of ``--images`` could not be filled (listed)."""
    def command(args: argparse.Namespace) -> int:
        result = run(args)
        return result if isinstance(result, int) else 0

    return cli.main(command, argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
