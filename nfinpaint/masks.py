"""Hole masks: fixed centre square (training), random rectangles (the paper's test protocol), free-form strokes.

Every function returns float32 (N,1,S,S) on the CPU with 1 = hole, 0 = known.
Randomness comes from ``generator`` (a CPU ``torch.Generator``) or ``seed``
(an int: a fresh generator seeded with it), never both; with neither, torch's
global RNG is used (reproducible under ``torch.manual_seed``).  The same seed
gives the same masks on every machine, since all draws happen on the CPU.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

MASK_KINDS = ("center", "random", "freeform")


def blank_holes(image: Tensor, mask: Tensor) -> Tensor:
    """``image`` with 0 wherever ``mask`` marks a hole (> 0.5): what every fill method gets to see,
    so that none can use what was under the hole."""
    return torch.where(mask > 0.5, torch.zeros((), dtype=image.dtype, device=image.device), image)


def _rng(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        return torch.Generator().manual_seed(int(seed))
    return generator


def _check_common(n: int, image_size: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")


def _boxes_to_masks(top: Tensor, left: Tensor, height: Tensor, width: Tensor, image_size: int) -> Tensor:
    idx = torch.arange(image_size)
    rows = (idx >= top[:, None]) & (idx < (top + height)[:, None])      # (N,S)
    cols = (idx >= left[:, None]) & (idx < (left + width)[:, None])
    return (rows[:, :, None] & cols[:, None, :]).to(torch.float32)[:, None]


def center_masks(n: int, image_size: int, hole_size: int) -> Tensor:
    """A ``hole_size`` square at the centre (top-left at (S-h)//2), the same for all n."""
    _check_common(n, image_size)
    if not 1 <= hole_size <= image_size:
        raise ValueError(f"hole_size must be in [1, {image_size}], got {hole_size}")
    start = (image_size - hole_size) // 2
    full = torch.full((n,), start)
    size = torch.full((n,), hole_size)
    return _boxes_to_masks(full, full, size, size, image_size)


def random_rect_masks(n: int, image_size: int, min_size: int, max_size: int,
                      generator: torch.Generator | None = None, *, seed: int | None = None) -> Tensor:
    """One axis-aligned rectangle per mask: height and width drawn independently and
    uniformly from [min_size, max_size], position uniform over the places where it fits."""
    _check_common(n, image_size)
    if not 1 <= min_size <= max_size <= image_size:
        raise ValueError(f"need 1 <= min_size <= max_size <= image_size ({image_size}), "
                         f"got min_size={min_size}, max_size={max_size}")
    g = _rng(generator, seed)
    height = torch.randint(min_size, max_size + 1, (n,), generator=g)
    width = torch.randint(min_size, max_size + 1, (n,), generator=g)
    # uniform position: floor(u * (number of places)) with u in [0,1)
    top = (torch.rand(n, generator=g) * (image_size - height + 1)).long()
    left = (torch.rand(n, generator=g) * (image_size - width + 1)).long()
    return _boxes_to_masks(top, left, height, width, image_size)


def freeform_masks(n: int, image_size: int, generator: torch.Generator | None = None, *,
                   seed: int | None = None, max_strokes: int = 3, max_vertices: int = 5,
                   max_width: float | None = None, max_length: float | None = None,
                   max_coverage: float = 0.5) -> Tensor:
    """Random brush strokes (as in free-form inpainting tools / DeepFill v2's generator).

    Each mask gets 1..``max_strokes`` strokes; a stroke starts at a uniform
    point and walks 1..``max_vertices`` segments of random angle and length (up
    to ``max_length``, default S/3), painted with a round brush of diameter
    2..``max_width`` (default S/6, at least 3).  Masks covering more than
    ``max_coverage`` of the image are redrawn from strokes with fewer segments
    (the first stroke alone), so every mask has a hole and keeps context.
    """
    _check_common(n, image_size)
    if max_strokes < 1 or max_vertices < 1:
        raise ValueError("max_strokes and max_vertices must be >= 1")
    if not 0 < max_coverage <= 1:
        raise ValueError(f"max_coverage must be in (0, 1], got {max_coverage}")
    g = _rng(generator, seed)
    s = float(image_size)
    max_width = max(3.0, s / 6) if max_width is None else float(max_width)
    max_length = max(2.0, s / 3) if max_length is None else float(max_length)
    k = max_strokes * max_vertices                                        # segments, padded
    n_strokes = torch.randint(1, max_strokes + 1, (n,), generator=g)
    n_vertices = torch.randint(1, max_vertices + 1, (n, max_strokes), generator=g)
    start = torch.rand(n, max_strokes, 1, 2, generator=g) * s
    angle = torch.rand(n, max_strokes, max_vertices, generator=g) * (2 * math.pi)
    length = 1.0 + torch.rand(n, max_strokes, max_vertices, generator=g) * (max_length - 1.0)
    radius = (2.0 + torch.rand(n, max_strokes, 1, generator=g) * (max_width - 2.0)) / 2
    step = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1) * length[..., None]  # (N,St,V,2) (y,x)
    points = torch.cat([start, start + step.cumsum(dim=2)], dim=2).clamp(0, s - 1)  # (N,St,V+1,2)
    a, b = points[:, :, :-1], points[:, :, 1:]                            # segment ends (N,St,V,2)
    seg_index = torch.arange(max_vertices)
    active = (seg_index < n_vertices[..., None]) & (torch.arange(max_strokes)[:, None] < n_strokes[:, None, None])
    radius = radius.expand(-1, -1, max_vertices)

    centres = torch.arange(image_size, dtype=torch.float32) + 0.5
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1).view(1, -1, 1, 2)  # (1,P,1,2)

    def paint(active: Tensor) -> Tensor:
        # distance from every pixel centre to every active segment; pixel is hole if within the radius
        aa, bb = (a + 0.5).reshape(n, 1, k, 2), (b + 0.5).reshape(n, 1, k, 2)
        ab = bb - aa
        t = (((grid - aa) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
        dist2 = ((grid - aa - t[..., None] * ab) ** 2).sum(-1)             # (N,P,K)
        hit = (dist2 <= radius.reshape(n, 1, k) ** 2) & active.reshape(n, 1, k)
        return hit.any(dim=-1).view(n, 1, image_size, image_size).to(torch.float32)

    masks = paint(active)
    too_big = masks.mean(dim=(1, 2, 3)) > max_coverage
    if bool(too_big.any()):
        first_only = active & (torch.arange(max_strokes)[:, None] == 0) & (seg_index == 0)
        masks = torch.where(too_big[:, None, None, None], paint(first_only), masks)
    return masks


def default_hole_size(image_size: int) -> int:
    """The hole size to assume when none is known: a third of the side (the paper's 8 of 24)."""
    return max(1, round(image_size / 3))


def random_rect_range(image_size: int, hole_size: int) -> tuple[int, int]:
    """The side range ``make_masks("random")`` uses: hole_size/2 .. 1.5*hole_size, inside the image."""
    low = max(1, hole_size // 2)
    high = min(image_size, hole_size + hole_size // 2)
    return min(low, high), high


def make_masks(kind: str, n: int, image_size: int, hole_size: int,
               generator: torch.Generator | None = None, *, seed: int | None = None) -> Tensor:
    """Dispatch on ``kind``:

    * "center": the training mask, a ``hole_size`` square at the centre;
    * "random": the paper's test protocol, a rectangle whose sides are drawn from
      [hole_size//2, hole_size*3//2] (clipped to the image) at a random position;
    * "freeform": brush strokes with the default settings of :func:`freeform_masks`.
    """
    if kind == "center":
        _rng(generator, seed)        # still reject generator+seed together
        return center_masks(n, image_size, hole_size)
    if kind == "random":
        low, high = random_rect_range(image_size, hole_size)
        return random_rect_masks(n, image_size, low, high, generator, seed=seed)
    if kind == "freeform":
        return freeform_masks(n, image_size, generator, seed=seed)
    raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
