"""The whole fill (blank the holes, run the generator, keep the known pixels) as one graph that
ONNX and TorchScript can hold, with any height and width for full-resolution generators.

:func:`~nfinpaint.initial_fill.multiscale_biharmonic_fill` recurses as deep as the picture's
shape says, which a graph of fixed operators cannot: here every pyramid level that a picture
up to :data:`MAX_SIDE` pixels can need is computed, and at each level the branch its shape
calls for is *selected* (``torch.where`` on a flag computed from the shape).  The result is
the recursive fill's, to float rounding (tests/test_export.py); pictures whose shorter side
exceeds ``MAX_SIDE`` get their coarsest level solved at more than 16 pixels (still a fill,
no longer the same numbers).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfinpaint.fullres_generator import FullResGenerator
from nfinpaint.initial_fill import (COARSEST_ITERATIONS, DEFAULT_ITERATIONS, LEVEL_ITERATIONS,
                                    MULTISCALE_MIN_SIDE, NEIGHBOUR_CROSS, base_fill_hole_mask,
                                    conjugate_gradients_reference, level_mean_fill, neighbour_sum_conv,
                                    relax_harmonic)
from nfinpaint.masks import blank_holes
from nfinpaint.neural_fill import MIRROR

MAX_SIDE = 8192


def _levels(side: int, stop: int) -> int:
    """Halvings (rounding up) until a side of ``side`` is below ``stop``."""
    count = 0
    while side >= stop:
        side = (side + 1) // 2
        count += 1
    return count


def _min_side(x: Tensor) -> Tensor:
    # the shorter side as data, not a Python int: a branch on it is a select, not a guard
    h = torch.ones_like(x[0, 0, :, 0]).sum()
    w = torch.ones_like(x[0, 0, 0, :]).sum()
    return torch.minimum(h, w)


def _halve_mean(x: Tensor) -> Tensor:
    """``avg_pool2d(x, 2, ceil_mode=True)``: the mean of the pixels of each 2x2 block inside the picture
    (one zero row/column of padding and a count, so the shape arithmetic is plain floor division)."""
    ones = torch.ones_like(x[:, :1])
    total = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2)
    count = F.avg_pool2d(F.pad(ones, (0, 1, 0, 1)), 2)
    return total / count


def _halve_max(x: Tensor) -> Tensor:
    """``max_pool2d(x, 2, ceil_mode=True)`` for x >= 0."""
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=[like.shape[-2], like.shape[-1]], mode="bilinear", align_corners=False)


def push_pull(values: Tensor, weight: Tensor, levels: int) -> Tensor:
    pyramid = [(values, weight)]
    for _ in range(levels):
        v, w = pyramid[-1]
        pyramid.append((_halve_mean(v), _halve_mean(w)))
    v, w = pyramid[-1]
    out = level_mean_fill(v, w)
    for i in range(levels - 1, -1, -1):
        v, w = pyramid[i]
        refined = torch.where(w > 0, v / w.clamp_min(1e-12), _up(out, v))
        out = torch.where(_min_side(v) <= 1, level_mean_fill(v, w), refined)   # the recursion stops at a side of 1
    return out


NeighbourSum = Callable[[Tensor], Tensor]


def harmonic_fill(image: Tensor, mask: Tensor, levels: int, neighbour_sum: NeighbourSum = neighbour_sum_conv) -> Tensor:
    known3 = (1 - mask).expand_as(image).contiguous()
    x = push_pull(image * (1 - mask), known3, levels)
    return relax_harmonic(image, mask, torch.where(known3 > 0, image, x), DEFAULT_ITERATIONS, neighbour_sum)


def _biharmonic(image: Tensor, mask: Tensor, start: Tensor, iterations: int, neighbour_sum: NeighbourSum) -> Tensor:
    return conjugate_gradients_reference(mask, torch.where(mask.expand_as(image) > 0.5, start, image), iterations,
                                         neighbour_sum)


def multiscale_biharmonic_fill(image: Tensor, mask: Tensor, max_side: int = MAX_SIDE,
                               iterations: int = LEVEL_ITERATIONS,
                               neighbour_sum: NeighbourSum = neighbour_sum_conv) -> Tensor:
    """:func:`nfinpaint.initial_fill.multiscale_biharmonic_fill` as a fixed graph, the same numbers for
    pictures whose shorter side is at most ``max_side`` (see the module doc).  ``neighbour_sum``:
    :func:`~nfinpaint.initial_fill.neighbour_sum_conv`, with a module's kernel in a module
    (:class:`FullResFill`)."""
    levels = _levels(max_side, 2 * MULTISCALE_MIN_SIDE)          # down to a side below 16
    # push-pull depth at level i: down to a side of 1 from that level's largest side
    pp = [_levels(-(-max_side // 2 ** i), 2) for i in range(levels + 1)]
    pyramid = [(image, mask)]
    for _ in range(levels):
        img, m = pyramid[-1]
        known = 1 - m
        coarse_known = _halve_mean(known)
        coarse_mask = base_fill_hole_mask(_halve_max(m), coarse_known)
        coarse_image = _halve_mean(img * known) / coarse_known.clamp_min(1e-6)
        pyramid.append((coarse_image * (1 - coarse_mask), coarse_mask))
    img, m = pyramid[-1]
    out = _biharmonic(img, m, harmonic_fill(img, m, pp[levels], neighbour_sum), COARSEST_ITERATIONS, neighbour_sum)
    for i in range(levels - 1, -1, -1):
        img, m = pyramid[i]
        terminal = _biharmonic(img, m, harmonic_fill(img, m, pp[i], neighbour_sum), COARSEST_ITERATIONS,
                               neighbour_sum)
        refined = _biharmonic(img, m, _up(out, img), iterations, neighbour_sum)
        out = torch.where(_min_side(img) < 2 * MULTISCALE_MIN_SIDE, terminal, refined)
    return out


class FullResFill(nn.Module):
    """A :class:`FullResGenerator`'s whole fill, ``forward(image (N,3,H,W) in [0,1], mask (N,1,H,W), 1 = hole)
    -> (N,3,H,W)``: holes blanked, generated, known pixels kept; any H and W.  With ``mirror`` (as
    ``inpaint`` fills each window: :data:`nfinpaint.neural_fill.MIRROR`), the mean of that fill and of
    the fill of the left-right mirror image, flipped back, computed as one batch of 2N."""

    def __init__(self, generator: FullResGenerator, max_side: int = MAX_SIDE, mirror: bool = MIRROR):
        super().__init__()
        self.max_side = int(max_side)
        self.mirror = bool(mirror)
        self.generator = generator
        # the base fill's kernel as a buffer: it moves with .cuda() (a constant made in the graph was
        # pinned to the CPU by the TorchScript trace)
        self.register_buffer("neighbour_cross", torch.tensor(NEIGHBOUR_CROSS), persistent=False)

    def _fill(self, image: Tensor, mask: Tensor) -> Tensor:
        # the generator's own base fill, as a fixed graph, with the generator's step count
        neighbour_sum = functools.partial(neighbour_sum_conv, cross=self.neighbour_cross)
        filled = multiscale_biharmonic_fill(image, mask, self.max_side, self.generator.base_iterations, neighbour_sum)
        return torch.where(mask > 0.5, self.generator.refine(filled, mask), image)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        # blanked by a select, as every fill of the package is: multiplied by 0, a NaN or inf stored
        # under a hole (no-data pixels) made the whole hole NaN
        image, mask = image.float(), (mask > 0.5).float()
        image = blank_holes(image, mask)
        if not self.mirror:
            return self._fill(image, mask)
        # one batch, not two calls: the graph holds the base fill once (its steps are per sample)
        n = image.shape[0]
        both = self._fill(torch.cat([image, image.flip(-1)]), torch.cat([mask, mask.flip(-1)]))
        return (both[:n] + both[n:].flip(-1)) / 2


class FixedFill(nn.Module):
    """A fixed-size generator's whole fill on (N,3,S,S) images and (N,1,S,S) masks, S its image_size."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        image, mask = image.float(), (mask > 0.5).float()
        out = self.generator(blank_holes(image, mask), mask).float().clamp(0.0, 1.0)
        return torch.where(mask > 0.5, out, image)
