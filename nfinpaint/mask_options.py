"""Masks as people draw them: what counts as hole, inverted masks, grown holes, resized masks.

The rule for a mask's grey levels (one for files, arrays and every command):

* a pixel brighter than 50% grey is a hole (:data:`HOLE_LEVEL`);
* **antialiased brush edges**: a pixel brighter than 10% grey (:data:`RIM_LEVEL`) is a hole
  too when it touches a hole through such pixels (8-connected): the soft rim a painting
  program draws around a stroke belongs to the stroke, so the fill covers what the brush
  covered; faint grey that touches no hole (noise, a lossy format's ringing) is not a hole;
* ``invert``: black marks the holes instead (MAT's polarity): the rule applies to
  ``1 - value``;
* a mask's **alpha** multiplies its level after any inversion: a transparent pixel is never
  a hole, whichever the polarity;
* ``dilate`` PX: every pixel within PX pixels (Euclidean distance) of a hole becomes a
  hole: the usual fix for a brush that missed an object's edge.

Resizing (``--resize-mask``) is nearest-neighbour, so a resized mask holds only levels the
drawn one held.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

HOLE_LEVEL = 0.5
RIM_LEVEL = 0.1
_EIGHT = np.ones((3, 3), dtype=bool)


def holes_from_levels(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """The hole (H, W) bool from the pixels above :data:`HOLE_LEVEL` (``strong``) and above
    :data:`RIM_LEVEL` (``weak``): every 8-connected region of ``weak`` that holds a ``strong`` pixel."""
    weak = weak | strong
    labels, _ = ndimage.label(weak, structure=_EIGHT)
    keep = np.unique(labels[strong])
    return np.isin(labels, keep[keep > 0])


def no_hole_reason(invert: bool = False) -> str:
    """What a mask without a hole is told, in the polarity it was read with (the command, the API and
    the fill say the same)."""
    return f"{'black (darker' if invert else 'white (brighter'} than 50% grey) marks the pixels to fill"


def holes_from_values(value: np.ndarray, invert: bool = False) -> np.ndarray:
    """The hole (H, W) bool of grey levels ``value`` (H, W) in [0, 1] (see the module doc)."""
    if invert:
        value = 1.0 - value
    return holes_from_levels(value > HOLE_LEVEL, value > RIM_LEVEL)


def resize_nearest(hole: np.ndarray, height: int, width: int) -> np.ndarray:
    """``hole`` (h, w) bool resized to (height, width), nearest neighbour (PIL's pixel-centre rule)."""
    if hole.shape == (height, width):
        return hole
    img = Image.fromarray(hole.astype(np.uint8) * 255)
    return np.asarray(img.resize((width, height), Image.Resampling.NEAREST)) > 127


def dilate(hole: np.ndarray, pixels: int) -> np.ndarray:
    """``hole`` grown by every pixel within ``pixels`` (Euclidean) of it."""
    if pixels <= 0 or not hole.any():
        return hole
    return ndimage.distance_transform_edt(~hole) <= pixels


def prepare(hole: np.ndarray, size: tuple[int, int], *, dilate_px: int = 0, resize: bool = False) -> np.ndarray:
    """The hole (H, W) bool for a picture of ``size`` (H, W): resized when ``resize`` (ValueError
    naming both sizes otherwise), then grown by ``dilate_px``.  ValueError, saying which step did it,
    when the resize leaves no hole or the growth leaves no known pixel: the mask alone was fine."""
    if dilate_px < 0:
        raise ValueError(f"dilate must be 0 or more pixels, got {dilate_px}")
    if hole.shape != tuple(size):
        if not resize:
            raise ValueError(f"the mask is {hole.shape[1]}x{hole.shape[0]} but the image is {size[1]}x{size[0]} "
                             f"(width x height); they must be the same size, or resize the mask (resize_mask)")
        resized = resize_nearest(hole, *size)
        if hole.any() and not resized.any():
            raise ValueError(f"resizing the mask from {hole.shape[1]}x{hole.shape[0]} to the image's {size[1]}x"
                             f"{size[0]} left no hole (its strokes are thinner than the scale); draw it at the image's "
                             f"size, or with thicker strokes")
        hole = resized
    grown = dilate(hole, dilate_px)
    if grown.all() and not hole.all():
        raise ValueError(f"dilating the holes by {dilate_px} px covers the whole image, leaving nothing to fill "
                         f"them from; dilate less")
    return grown


def read_holes(path, invert: bool = False) -> np.ndarray:
    """The hole (H, W) bool of a mask file (any mode :func:`nfinpaint.images.mask_image_levels` reads)."""
    from nfinpaint.images import read_mask_levels  # noqa: PLC0415  (torch: only when a file is read)

    levels = read_mask_levels(path, invert)
    return holes_from_levels(levels > HOLE_LEVEL, levels > RIM_LEVEL)
