"""The learned fill of a whole picture at its own resolution, with a fully convolutional generator.

Every hole is filled by the generator on a window around it, at the
picture's own resolution (the picture is never shrunk):

1. **Windows.**  Each hole (8-connected component) gets a box: its bounding
   box grown by a margin of context as wide as the hole is thick (twice its
   largest distance to a known pixel), at least :data:`MIN_MARGIN` pixels, so
   a window looks like the training crops (a hole of up to ~40% of the crop).
   Boxes that overlap are merged into one window, so many small holes close
   together (a scratched photograph) cost one generator call, not one each;
   but a small hole (at most :data:`APART_THICKNESS`) whose box does not reach
   a hole of step 2's thickness keeps a window of its own, filled first,
   instead of sharing that hole's wide window and coarse pass.
   The network runs only around the holes, in tiles (:data:`TILE`) with its
   whole receptive field of context, which gives them the values of one pass
   over the window; a window of thin holes only (at most
   :data:`THIN_THICKNESS` px) takes small tiles with a short halo instead
   (:data:`THIN_TILING`) where that computes much less, so a long scratch
   across a large picture computes a band, not its box.
2. **Coarse to fine for very thick holes.**  A window whose thickest hole is
   thicker than :data:`COARSE_THICKNESS` pixels is filled on a copy shrunk by
   an integer factor that brings the hole to that size; the coarse fill,
   upsampled and relaxed by the biharmonic steps at full resolution (so it
   meets the known pixels without a step), is the window's fill.  (Up to that
   thickness one full-resolution pass does better: the generator's receptive
   field is about 500 px.  Beyond it, a full-resolution pass correcting the
   upsampled fill, as until 2026-12-04, lost 0.5 dB on validation.)
3. **Mirror average.**  Each pass is the mean of the generator's fill of the
   window and of its mirror image (flipped left-right, the fill flipped back):
   the two fills err differently, and their mean was better on every hole
   family of the validation photographs (+0.1 dB on thin strokes, +0.25 dB
   on ~56 px objects, +0.06 dB on ~150 px ones, hole SSIM up too) for twice
   the generator's time.  ``mirror=False`` makes one pass.
4. **Patch blend.**  The window's fill (a coarse-to-fine window's: its coarse
   fill, before upsampling) is averaged, in its holes, with its
   re-synthesis from the window's own known patches
   (:func:`nfinpaint.patchmatch.resynthesize`: every 7x7 patch touching a hole
   matched to its nearest known patch, starting from the learned fill, and
   the matches voted back).  The two err differently: the learned fill is
   smooth and structured, the vote is made of real patches of the picture.
   Chosen on the validation photographs among one or two rounds, weights
   0.3 / 0.5 / 0.7 and a two-level pyramid: one round, half and half, raised
   hole PSNR by +0.36, +0.15, +0.08 dB and hole SSIM by +0.004, +0.003,
   +0.002 (thin strokes, ~56 px and ~150 px objects) for 30-140 ms more per
   512x384 picture.  It does not add texture: every variant that made the
   fill visibly more detailed (more rounds, a pyramid, the vote alone) lost
   hole SSIM.  ``patch_blend=0`` leaves it out.
   **Detail** (``detail=True``, ``inpaint --method gan-detail``) replaces
   the blend for users who prefer texture to the smooth mean: the window's
   holes are re-synthesised by coarse-to-fine PatchMatch over
   :data:`DETAIL_LEVELS` levels, starting at the coarsest from the learned
   fill (:func:`nfinpaint.patchmatch.inpaint` with ``guide``), so the
   structure is the learned fill's and the texture is copied from the
   window (holes thinner than :data:`DETAIL_MIN_THICKNESS` keep the blend,
   also in a window shared with a thicker one).  Less of a smooth blob, at
   a cost in PSNR and SSIM (docs/evaluation.md has the numbers).
5. **Composite.**  Only the window's own holes are copied into the picture;
   pixels outside the holes are the input's, exactly.

Windows never overlap (overlapping boxes merge), so no window sees another's fill and the order
they are filled in does not change the result.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from nfinpaint import _extension, inference, patchmatch
from nfinpaint.fullres_generator import padded, tile_input, tile_plan
from nfinpaint.generators import is_full_resolution, needs_operators
from nfinpaint.initial_fill import biharmonic_fill, coarse_hole_mask, multiscale_biharmonic_fill
from nfinpaint.masks import blank_holes

MIN_MARGIN = 24          # pixels of context around the thinnest hole
# Holes thicker than this are filled coarse to fine.  Chosen on the validation pictures: on ~150 px
# objects at 512x384 the single full-resolution pass beat a coarse pass first (20.54 vs 20.42 dB hole
# PSNR with a threshold of 64 px), so the coarse pass is kept for holes beyond the sizes measured.  At
# 1024 px (~300 px objects) 128, 256 px and no coarse pass each traded PSNR against SSIM on validation
# (docs/evaluation.md); none was better in both, so 192 stayed.  Both measured with a full-resolution pass
# after the coarse one, as until 2026-12-04.  With the coarse fill alone, 128 px was chosen by a rule
# written first, on fresh validation masks: ~150 px objects at 512 px +0.34 dB, boxes and edge holes not
# lower; 96 px lost on ~112 px objects at 1024 px, which 128 leaves at full resolution (docs/evaluation.md).
COARSE_THICKNESS = 128
# The thickest hole planned apart from a thicker hole's coarse window when its own box holds none of that
# hole (plan_windows): 20-40 px blobs gained 1.2 dB filled alone, but holes of 78 and 114 px lost up to
# 0.9 dB (LaMa's thick strokes at 512 px), doing better in the coarse pass; chosen on validation
APART_THICKNESS = COARSE_THICKNESS // 2
MIRROR = True            # average each pass with its mirror image's (see the module's docstring)
PATCH_BLEND = 0.5        # weight of the patch re-synthesis in the fill (see the module's docstring)
PATCH_SIZE = 7           # its patches (PatchMatch's default) and search rounds, as chosen on val
PATCH_ITERATIONS = 2
# Pyramid levels of the detail mode: chosen by looking at fills of training pictures (two levels kept the
# learned fill's structure and added texture; three repeated stripes across some holes, four copied whole
# objects into them, a bird's beak into foliage, as PatchMatch alone does)
DETAIL_LEVELS = 2
# Thinner holes keep the patch blend in the detail mode: a smooth fill only shows as a blob across several
# patches, and on thin strokes (4-9 px) the synthesis cost 1.9 dB and 0.047 hole SSIM on validation
DETAIL_MIN_THICKNESS = 3 * PATCH_SIZE
# The network runs on the holes' bounding box only, in tiles that compute at most this side plus twice the
# generator's halo of context (fullres_generator.tile_spans: the fewest such tiles): the holes get one
# pass's values over the whole window to float rounding (FullResGenerator.refine), in bounded memory.
# Measured (benchmarks/bench_fullres.py): a 4032x3024 photograph with a ~1,000 px hole, 64 s and 9.1 GB
# peak in one pass, 37 s and 3.6 GB in tiles of 768 (tiles of 1024 were ~10% faster for ~0.7 GB more at
# 4032x2520); the validation pictures' fills at 512 and 1024 px came out equal bit for bit.
TILE = 768
# A window whose holes are all thin (at most this thick) may run the network in small tiles with a short
# halo of context instead: a scratch across a large picture then computes a band around it, not its box
# grown by the ~270 px halo.  A thin hole alone gets a window of MIN_MARGIN pixels of context anyway, and
# the halo gives each of its pixels more.  Chosen by a rule written first (docs/evaluation.md): on the
# validation photographs at 1024 px, thin strokes -0.008 +- 0.009 dB hole PSNR, hole SSIM level, against
# the exact pass ((256, 64): +0.001 dB).  A window takes them only where they compute at most
# THIN_MAX_SHARE of the exact pass's pixels: the benchmark's 12-megapixel scratches (a fifth), none of
# the evaluations' windows at 256-1024 px, whose tables stay as measured.  A cautious gate: at 0.78
# (scratches across 1024x768) the short tiles were still 1.6x faster (docs/evaluation.md); a gate at 1,
# tried later under a rule written first, made thin strokes at 1024 px 0.51 -> 0.44 s but not those at
# 512 px faster, which the rule asked for, so it stays.  None: every window gets the exact pass.
THIN_THICKNESS = MIN_MARGIN
THIN_TILING: tuple[int, int] | None = (128, 32)        # (tile, halo)
THIN_MAX_SHARE = 0.5
# Where the known pixels are sparse (dense salt noise, a lattice of known pixels: a picture to be
# restored from scattered samples), the network, trained on holes in mostly known crops, corrects the
# smooth fill by the wrong colour: on the validation photographs at 512 px, 2.5-8.8 dB below
# biharmonic on salt masks of 70-90% and on lattices of every 2nd-7th pixel.  There the fill is the base
# fill: a hole pixel with no "deep" hole pixel (farther than SPARSE_REACH px from every known pixel, as
# in a solid hole) and no open known ground (a known pixel with no hole pixel within SPARSE_OPEN px, as
# between strokes) within the SPARSE_BOX-pixel square around it, and fewer than SPARSE_KNOWN of that
# square's pixels known; the change is feathered over SPARSE_FEATHER px.  Chosen on the validation
# photographs (docs/evaluation.md): thin strokes of 4-9 px keep 70% of such a square known and known
# ground between them, a solid hole has deep pixels within reach of its rim; the evaluation's hole
# families never reach the rule.
SPARSE_REACH = 6
SPARSE_OPEN = 2
SPARSE_BOX = 33
SPARSE_KNOWN = 0.4
# (reach, square) pairs the rule is judged at, the weights' maximum taken: the first as above; at the
# second, samples up to ~25 px apart (a lattice of every 16th or 24th pixel, salt over 97-99%, known
# islands every 24 px in a large hole), past which the first stopped and the brown cast came back
# (lattice 16: 4.8 dB below biharmonic on the validation photographs).  Chosen there by a rule written
# first (docs/evaluation.md); no window of the evaluation's hole families reaches it.
SPARSE_SCALES: tuple[tuple[int, int], ...] = ((SPARSE_REACH, SPARSE_BOX), (18, 99))
SPARSE_FEATHER = 9
# The base fill's conjugate-gradient steps a level there: 32 (the shipped file's) left 90% salt noise
# short of convergence on the validation photographs (26.0 dB against 28.5 converged, where 128 are)
SPARSE_ITERATIONS = 128


@dataclass
class Window:
    """A rectangle of the picture filled in one generator call, and the holes it fills."""

    top: int
    left: int
    height: int
    width: int
    hole_thickness: dict[int, float] = field(default_factory=dict)   # 1-based hole label -> thickness (px), by label
    # tiling()'s answers, by what they depend on besides the window's holes: planned_steps (the progress
    # bar) and fill_picture both ask, and planning a 12-megapixel window's short tiles took 0.28 s
    _tilings: dict = field(default_factory=dict, repr=False, compare=False)
    # the share of its hole pixels that fill_picture gave the base fill (sparse_weight's mean), once filled
    sparse: float = field(default=0.0, compare=False)

    @property
    def holes(self) -> list[int]:
        """Its holes' labels, in increasing order (the order :func:`plan_windows` fills the dict in)."""
        return list(self.hole_thickness)

    @property
    def thickness(self) -> float:
        """Of its thickest hole, in pixels."""
        return max(self.hole_thickness.values(), default=0.0)

    @property
    def scale(self) -> int:
        """The shrink factor of the coarse pass (1: none)."""
        return max(1, math.ceil(self.thickness / COARSE_THICKNESS)) if self.thickness > COARSE_THICKNESS else 1

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def describe(self) -> str:
        size = f"{self.width}x{self.height} window at x={self.left}, y={self.top}"
        return size + (f", coarse pass at 1/{self.scale}" if self.scale > 1 else "")


def hole_thickness(labels: np.ndarray, count: int) -> np.ndarray:
    """Per hole label (index 0 unused): twice the largest distance from a hole pixel to a known one
    (each hole measured on its own bounding box plus a known border, so cost follows the holes).
    The border counts as known at the picture's edge too, which makes a hole along an edge thinner
    than its distance from anything known.  Measured the other way, 12 edge holes on the validation
    pictures (a 150 px band on the left, 100 px along the bottom, a 200x160 corner) got wider
    windows and a coarse pass, and lost 0.7 dB hole PSNR on average; so the edge stays "known"."""
    out = np.zeros(count + 1)
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            own = np.pad(labels[sl] == index, 1)
            out[index] = 2.0 * float(ndimage.distance_transform_edt(own).max())
    return out


def _merged(boxes: list[list]) -> list[list]:
    """``boxes`` ([top, left, bottom, right, [labels]]) merged until none overlap (few boxes in practice)."""
    merged = True
    while merged:
        merged = False
        out: list[list] = []
        for box in boxes:
            for other in out:
                if box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]:
                    other[0], other[1] = min(other[0], box[0]), min(other[1], box[1])
                    other[2], other[3] = max(other[2], box[2]), max(other[3], box[3])
                    other[4] += box[4]
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return boxes


def plan_windows(labels: np.ndarray, count: int) -> list[Window]:
    """The windows that fill the ``count`` labelled holes of ``labels`` (H, W), in the order to fill them.

    Holes whose boxes overlap share a window, except that a hole at most :data:`APART_THICKNESS` thick
    whose own box holds no pixel of a hole thicker than :data:`COARSE_THICKNESS` is not drawn into that
    hole's coarse window (whose margin, as wide as the hole is thick, reaches far): such holes get
    full-resolution windows of their own, planned among themselves and filled first, and the coarse
    windows then see their fills as known.  Sharing the coarse pass, six 20-40 px blobs 190-330 px from
    a ~280 px object at 1024 px were 1.2 dB below their fill alone (docs/evaluation.md).  Planned among
    themselves, their merged windows stay apart even where one reaches a thick hole (its pixels there are
    left unknown and not written back): sent back to its coarse window, such groups were 0.61 dB below
    (36 layouts on the validation photographs, docs/evaluation.md)."""
    h, w = labels.shape
    thickness = hole_thickness(labels, count)
    boxes = {}
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            margin = max(MIN_MARGIN, math.ceil(thickness[index]))
            boxes[index] = [max(0, sl[0].start - margin), max(0, sl[1].start - margin),
                            min(h, sl[0].stop + margin), min(w, sl[1].stop + margin), [index]]
    apart: list[list] = []
    thick = [index for index in boxes if thickness[index] > COARSE_THICKNESS]
    if thick:
        in_thick = np.isin(labels, thick)

        def clear(box: list) -> bool:       # no pixel of a thick hole in the box
            return not in_thick[box[0]:box[2], box[1]:box[3]].any()

        apart = _merged([list(boxes[i]) for i in boxes if thickness[i] <= APART_THICKNESS and clear(boxes[i])])
    alone = {index for box in apart for index in box[4]}
    rest = _merged([list(boxes[i]) for i in boxes if i not in alone])
    return [Window(t, l, b - t, r - l, {i: float(thickness[i]) for i in sorted(ids)})
            for t, l, b, r, ids in apart + rest]


def _shrunk_hole(hole: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,1,h,w) ``hole`` shrunk by ``scale``: (the coarse hole, each coarse pixel's known fraction).  A
    coarse pixel is a hole when any of its pixels is, unless that leaves nothing known
    (:func:`coarse_hole_mask`).  Not the base fill's per-pixel rule: there one known fine pixel of nine
    became a known coarse pixel, which the network carried across the hole (docs/evaluation.md)."""
    size = (max(1, math.ceil(hole.shape[-2] / scale)), max(1, math.ceil(hole.shape[-1] / scale)))
    weight = F.adaptive_avg_pool2d(1 - hole, size)
    return coarse_hole_mask((weight < 1 - 1e-6).float(), weight), weight    # thin known bands kept


def _shrink(image: torch.Tensor, hole: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,3,h,w) image and (N,1,h,w) hole shrunk by ``scale`` (:func:`_shrunk_hole`): a coarse known pixel
    is the mean of its known pixels (nothing under a hole leaks into it)."""
    coarse_hole, weight = _shrunk_hole(hole, scale)
    coarse = F.adaptive_avg_pool2d(image * (1 - hole), weight.shape[-2:]) / weight.clamp_min(1e-6)
    return blank_holes(coarse, coarse_hole), coarse_hole


def _tile_inputs(mask: torch.Tensor, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """The input boxes the network's tiles compute for the holes of ``mask`` (N, 1, h, w), halo included."""
    h, w = padded(mask.shape[-2]), padded(mask.shape[-1])
    return [tile_input(box, halo, h, w) for box in tile_plan(mask, tile, halo)]


def _pixels(boxes: list[tuple[int, int, int, int]]) -> int:
    return sum((bottom - top) * (right - left) for top, bottom, left, right in boxes)


def tiling(window: Window, hole: torch.Tensor, halo: int) -> tuple[int, int | None]:
    """(tile, halo) of the network's tiles on ``window``, whose holes are ``hole`` (N, 1, h, w), for a
    generator of ``halo``: :data:`THIN_TILING` for a full-resolution window of thin holes where its tiles
    compute at most :data:`THIN_MAX_SHARE` of the exact pass's pixels, else :data:`TILE` with the
    generator's own halo (None: the whole pass's values).  Remembered on the window (its holes are
    ``hole`` whoever asks), so the progress bar's plan and the fill plan once."""
    if THIN_TILING is None or window.scale > 1 or window.thickness > THIN_THICKNESS:
        return TILE, None
    key = (halo, TILE, THIN_TILING, THIN_MAX_SHARE)
    if key not in window._tilings:
        short = _pixels(_tile_inputs(hole, *THIN_TILING))
        exact = _pixels(_tile_inputs(hole, TILE, halo))
        window._tilings[key] = THIN_TILING if short <= THIN_MAX_SHARE * exact else (TILE, None)
    return window._tilings[key]


def _pass(generator: torch.nn.Module, window: torch.Tensor, hole: torch.Tensor, mirror: bool,
          on_tile: Callable[[], None] | None = None, tiles: tuple[int, int | None] = (TILE, None)) -> torch.Tensor:
    """One filled window, or with ``mirror`` the mean of it and the fill of the left-right mirror image
    (flipped back; known pixels stay exact, being the mean of two equal values).  Two calls, not one
    batch of two: the peak memory of a large window stays one pass's."""
    tile, halo = tiles
    out = inference.fill(generator, window, hole, tile=tile, on_tile=on_tile, halo=halo)
    if mirror:
        # each pass computes its own smooth base: one base mirrored for both was worse on the
        # validation photographs (-0.06 dB, -0.003 SSIM on ~56 px holes), for ~15% less time
        flipped = inference.fill(generator, window.flip(-1), hole.flip(-1), tile=tile, on_tile=on_tile, halo=halo)
        out = (out + flipped.flip(-1)) / 2
    return out


def coarse_fill(generator: torch.nn.Module, window: torch.Tensor, hole: torch.Tensor, scale: int,
                mirror: bool = MIRROR, on_tile: Callable[[], None] | None = None, patch_blend: float = 0.0,
                seed: int = 0) -> torch.Tensor:
    """The fill of ``hole`` (N,1,h,w) in ``window`` (N,3,h,w) coarse to fine: the generator's fill of a copy
    shrunk by ``scale``, blended with its patch re-synthesis by ``patch_blend`` (:func:`blend_patches`,
    ``seed``; N = 1), upsampled, then relaxed by the generator's full-resolution biharmonic steps, as
    :func:`~nfinpaint.initial_fill.multiscale_biharmonic_fill` relaxes each level's start; known pixels
    exactly the input's.

    Unrelaxed (until 2026-12-03), the upsampled coarse fill met the known pixels with a step: on 400 px
    corner boxes at 1023x767 (validation pictures) the mean step across the hole's edge was 1.47 times
    the true picture's, 0.76 relaxed; and thin holes sharing the window of a thicker one took the
    coarse fill too, losing 0.8 dB (strokes beside a ~220 px disk at 1024 px), which the relaxation,
    converging on them, gave back (29.04 -> 29.77 dB; 29.80 in a window of their own).  Until 2026-12-04
    this was the base that a full-resolution pass of the generator then corrected; without that pass
    the ~300 px holes of the validation pictures at 1024 px gained 0.52 +- 0.22 dB hole PSNR (hole SSIM
    +0.0003 +- 0.0031, mean +- s.e. of 12 fills; the rule was written first), at a third of the time:
    on holes twice the size it trained on, the full-resolution pass added error, not detail (texture
    ratio 0.0359 with it, 0.0357 without).  The patch blend at the coarse scale rather than on the full
    resolution fill: +0.02 +- 0.01 dB, +0.0007 +- 0.0004 hole SSIM on those 12 fills, 0.52 -> 0.36 s a
    picture (no blend at all: -0.04 +- 0.03 dB; one rule, written first, for both)."""
    small, small_hole = _shrink(window, hole, scale)
    coarse = _pass(generator, small, small_hole, mirror, on_tile)
    if patch_blend:
        coarse = blend_patches(coarse[0].float(), small_hole[0, 0] > 0.5, patch_blend, seed)[None]
    start = F.interpolate(coarse, size=window.shape[-2:], mode="bilinear", align_corners=False)
    relaxed = biharmonic_fill(window * (1 - hole), hole, generator.base_iterations, start=start)
    return torch.where(hole > 0.5, relaxed.clamp(0, 1), window)


@torch.inference_mode()
def fill_window(generator: torch.nn.Module, window: torch.Tensor, hole: torch.Tensor, scale: int = 1,
                mirror: bool = MIRROR, on_tile: Callable[[], None] | None = None, coarse_blend: float = 0.0,
                seed: int = 0, tiles: tuple[int, int | None] = (TILE, None)) -> torch.Tensor:
    """Fill the ``hole`` (N,1,h,w) of ``window`` (N,3,h,w) with a full-resolution generator at the window's
    resolution, or with ``scale`` > 1 coarse to fine (:func:`coarse_fill`, its coarse fill blended with its
    patch re-synthesis by ``coarse_blend``, ``seed``); ``mirror`` averages each pass with its mirror image's;
    ``on_tile`` is called after each of the network's tiles, ``tiles`` (full resolution): their (tile, halo),
    :func:`tiling`.
    Returns the window with its holes filled (known pixels exactly the input's)."""
    if scale > 1:
        return coarse_fill(generator, window, hole, scale, mirror, on_tile, coarse_blend, seed)
    return _pass(generator, window, hole, mirror, on_tile, tiles)


def blend_patches(filled: torch.Tensor, hole: torch.Tensor, weight: float = PATCH_BLEND, seed: int = 0) -> torch.Tensor:
    """``filled`` (3, h, w) with its ``hole`` (h, w) bool pixels moved ``weight`` of the way to their patch
    re-synthesis (:func:`nfinpaint.patchmatch.resynthesize`); unchanged when ``weight`` is 0 or no whole
    known patch exists to copy from (a window smaller than a patch, or all hole)."""
    if weight == 0 or not patchmatch.has_source_patch(hole, PATCH_SIZE):
        return filled
    patches = patchmatch.resynthesize(filled, hole, PATCH_SIZE, PATCH_ITERATIONS, seed)
    return torch.where(hole, torch.lerp(filled, patches, weight), filled)


def takes_detail(window: Window) -> bool:
    """Whether the detail mode re-synthesises any hole of this window (its thickest is thick enough)."""
    return window.thickness >= DETAIL_MIN_THICKNESS


def detail_holes(window: Window) -> list[int]:
    """The labels of the window's holes the detail mode re-synthesises (the rest keep the blend)."""
    return [i for i in window.holes if window.hole_thickness[i] >= DETAIL_MIN_THICKNESS]


def add_detail(filled: torch.Tensor, hole: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``filled`` (3, h, w) with its ``hole`` (h, w) bool re-synthesised by coarse-to-fine PatchMatch from
    its known pixels, starting from ``filled``'s hole at the coarsest of :data:`DETAIL_LEVELS` levels;
    unchanged when no whole known patch exists to copy from."""
    if not patchmatch.has_source_patch(hole, PATCH_SIZE):
        return filled
    return patchmatch.inpaint(filled, hole, patch_size=PATCH_SIZE, seed=seed, guide=filled, levels=DETAIL_LEVELS)


def sparse_weight(hole: np.ndarray) -> np.ndarray | None:
    """The weight (h, w) float32 in [0, 1] of the base fill in the fill of (h, w) bool ``hole``: 1 where
    the known pixels around a hole pixel are sparse (see :data:`SPARSE_KNOWN`) at any of
    :data:`SPARSE_SCALES`, feathered; None where there is no such pixel."""
    # known ground (a pixel with no hole pixel within SPARSE_OPEN, itself included): between strokes, not
    # among specks; the same at every scale
    open_ground = ~ndimage.maximum_filter(hole, size=2 * SPARSE_OPEN + 1, mode="constant", cval=False)
    weights = [w for reach, box in SPARSE_SCALES if (w := _sparse_at(hole, open_ground, reach, box)) is not None]
    if not weights:
        return None
    return np.maximum.reduce(weights) if len(weights) > 1 else weights[0]


def _sparse_at(hole: np.ndarray, open_ground: np.ndarray, reach: int, box: int) -> np.ndarray | None:
    """:func:`sparse_weight` at one scale: "deep" is farther than ``reach`` px from every known pixel, and
    the square around a hole pixel is ``box`` px; ``open_ground``: the known pixels with no hole pixel
    within :data:`SPARSE_OPEN`."""
    known = ~hole
    near_known = ndimage.maximum_filter(known, size=2 * reach + 1, mode="constant", cval=False)
    near_deep = ndimage.maximum_filter(hole & ~near_known, size=box, mode="constant", cval=False)
    near_open = ndimage.maximum_filter(open_ground, size=box, mode="constant", cval=False)
    near_deep |= near_open
    candidates = hole & ~near_deep
    if not candidates.any():
        return None
    # the share of the square's pixels inside the picture, compared as whole counts: a float32 share
    # put a square exactly SPARSE_KNOWN known (where the window's edge cuts it) a hair below the limit
    inside, known_count = (_box_count(a, box) for a in (np.ones(hole.shape, bool), known))
    sparse = ~near_deep & (known_count < SPARSE_KNOWN * inside)     # the known pixels among them too: a full
    if not (sparse & hole).any():                       # weight between them, feathered at the region's edge
        return None
    return ndimage.uniform_filter(sparse.astype(np.float32), size=SPARSE_FEATHER, mode="nearest") * hole


def _box_count(pixels: np.ndarray, box: int) -> np.ndarray:
    """The number of true pixels of bool ``pixels`` in the ``box`` x ``box`` square around each pixel
    (outside the array counts as false), exact: the box mean in float64, rounded back to a count."""
    mean = ndimage.uniform_filter(pixels.astype(np.float64), size=box, mode="constant")
    return np.rint(mean * (box * box)).astype(np.int64)


def ready_to_fill(generator: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """``generator``, changed in place, as a fill runs it: in eval mode on ``device``, and a full-resolution
    one with channels-last weights (oneDNN's convolutions of the windows ran ~25% faster on 2 CPU cores;
    the windows follow, whatever their own layout; results equal to float rounding).  Whoever loads a
    generator for many fills calls this once: a fill that must change the layout changes it back after
    (:func:`nfinpaint.inference.left_as_it_was`), ~80 ms a call for the shipped generator.  A generator
    whose base fill runs the compiled solver is refused here, where the extension cannot run it on
    ``device`` (:class:`nfinpaint._extension.ExtensionMissing`: one line, before any fill)."""
    if any(t.is_meta for t in (*generator.parameters(), *generator.buffers())):
        # Module.to cannot copy out of "meta": say what to do instead of torch's traceback from inside .to
        raise ValueError("the generator's weights are on the meta device (they hold no values): load them "
                         "first, e.g. generator.to_empty(device='cpu') then load_state_dict")
    if needs_operators(generator):
        _extension.require(device)
    channels_last = is_full_resolution(generator)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:     # "cuda" is the current GPU, not any GPU
        device = torch.device("cuda", torch.cuda.current_device())
    # ready already (the Inpainter's, on every call): Module.to and eval walked it again, ~1 ms a call
    here = all(t.device.type == device.type and device.index in (None, t.device.index)
               and (t.dtype == torch.float32 or not t.is_floating_point())
               for t in (*generator.parameters(), *generator.buffers()))
    laid_out = not channels_last or all(p.dim() != 4 or p.is_contiguous(memory_format=torch.channels_last)
                                        for p in generator.parameters())
    if here and laid_out and not any(m.training for m in generator.modules()):
        return generator
    # float32 whatever the caller's generator holds (a float64 one met float32 windows; --half autocasts)
    return generator.to(device, torch.float32,
                        memory_format=torch.channels_last if channels_last else torch.preserve_format).eval()


def fill_picture(generator: torch.nn.Module, image: torch.Tensor, hole: torch.Tensor, labels: np.ndarray,
                 count: int, device: torch.device, log=None, mirror: bool = MIRROR, patch_blend: float = PATCH_BLEND,
                 seed: int = 0, detail: bool = False, on_step: Callable[[], None] | None = None,
                 windows: list[Window] | None = None) -> torch.Tensor:
    """Fill every labelled hole of (3, H, W) ``image`` (CPU float32, holes ``hole`` (1, H, W) bool) with
    ``generator`` on the windows of :func:`plan_windows` (``mirror``: see :func:`fill_window`), each
    window's fill blended with its patch re-synthesis (``patch_blend``: see :func:`blend_patches`;
    ``seed``: its search's) or, with ``detail``, in holes at least :data:`DETAIL_MIN_THICKNESS` thick,
    replaced by the texture synthesis of :func:`add_detail`, and where the known pixels are sparse
    (:func:`sparse_weight`) moved to the converged base fill; ``on_step`` is called after each of the network's
    tiles and after each window's blend (progress: :func:`planned_steps` says how many calls there will be);
    ``windows``: :func:`plan_windows`'s, when the caller has them already.  Returns the filled (3, H, W) on
    the CPU."""
    generator = ready_to_fill(generator, device)
    current = image.clone()
    remaining = hole.clone()
    labels_t = torch.from_numpy(labels)[None]
    for number, window in enumerate(plan_windows(labels, count) if windows is None else windows):
        rows, cols = window.slices()
        part = current[:, rows, cols]
        todo = remaining[:, rows, cols]
        todo_here = todo.to(device)
        # a coarse-to-fine window gets its patch blend at the coarse scale, inside fill_window
        tiles = tiling(window, todo[None].float(), generator.halo)
        filled = fill_window(generator, part[None].to(device), todo_here[None].float(), window.scale, mirror, on_step,
                             patch_blend, seed + number, tiles)[0]
        # todo: the window's own holes (overlapping boxes were merged, and the small holes planned apart from a
        # coarse window are filled before it), and in such a small hole's window perhaps some of a coarse
        # window's, left unknown there and not written back (only the window's own holes are)
        here = labels_t[:, rows, cols]
        thick = detail_holes(window) if detail else []
        if len(thick) < len(window.holes):
            blended = filled.float() if window.scale > 1 else blend_patches(filled.float(), todo_here[0], patch_blend,
                                                                            seed + number)
        if thick:
            # the synthesis of the whole window's holes, kept in the thick ones: thin strokes beside a thick
            # hole keep the blend, as in a window of their own (the synthesis cost them 1.9 dB on validation)
            detailed = add_detail(filled.float(), todo_here[0], seed + number)
            filled = detailed if len(thick) == len(window.holes) else torch.where(
                torch.isin(here, torch.tensor(thick, device=here.device)).to(device), detailed, blended)
        else:
            filled = blended
        weight = sparse_weight(todo[0].numpy())
        if weight is not None:
            hole_here = todo_here[None].float()
            # converged, the biharmonic fill overshoots between noisy samples (beyond [0, 1]): clipped as the
            # network's fill is
            base = multiscale_biharmonic_fill(part[None].to(device) * (1 - hole_here), hole_here,
                                              max(generator.base_iterations, SPARSE_ITERATIONS))[0].clamp(0, 1)
            filled = torch.lerp(filled.float(), base.float(), torch.from_numpy(weight).to(device))
            window.sparse = float(weight[todo[0].numpy()].mean())
        mine = torch.isin(here, torch.tensor(window.holes, device=here.device))
        current[:, rows, cols] = torch.where(mine, filled.cpu(), part)
        remaining[:, rows, cols] &= ~mine
        if on_step is not None:
            on_step()
        if log is not None:
            log(window)
    return current


def planned_steps(generator: torch.nn.Module, hole: torch.Tensor, windows: list[Window],
                  mirror: bool = MIRROR) -> tuple[int, int]:
    """(steps, pixels) of :func:`fill_picture` filling the holes of (1, H, W) bool ``hole`` on ``windows``
    (:func:`plan_windows`): its calls of ``on_step`` (the network's tiles, and each window's blend), and the
    pixels the network's tiles compute, halo included (what the time follows)."""
    tiles, pixels = 0, 0
    for window in windows:
        rows, cols = window.slices()
        mask = hole[None, :, rows, cols].float()
        tile, halo = tiling(window, mask, generator.halo)
        mask = mask if window.scale == 1 else _shrunk_hole(mask, window.scale)[0]
        for flipped in (False, True) if mirror else (False,):
            boxes = _tile_inputs(mask.flip(-1) if flipped else mask, tile, generator.halo if halo is None else halo)
            tiles, pixels = tiles + len(boxes), pixels + _pixels(boxes)
    return tiles + len(windows), pixels
