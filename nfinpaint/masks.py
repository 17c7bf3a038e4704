"""Hole masks: fixed centre square (training), random rectangles (the paper's test protocol), free-form strokes.

Every function returns float32 (N,1,S,S) on the CPU with 1 = hole, 0 = known.
Randomness comes from ``generator`` (a CPU ``torch.Generator``) or ``seed``
(an int: a fresh generator seeded with it), never both; with neither, torch's
global RNG is used (reproducible under ``torch.manual_seed``).  The same seed
gives the same masks on every machine, since all draws happen on the CPU.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

MASK_KINDS = ("center", "random", "freeform", "thin", "medium", "large", "mixed")
# The hole families of full-size inpainting (in the spirit of LaMa's thin / medium / thick masks):
# scratches and wires, an object, a large object.  "mixed" draws one family per mask.
HOLE_FAMILIES = ("thin", "medium", "large")
FAMILY_KINDS = HOLE_FAMILIES + ("mixed",)    # the mask kinds family_masks draws
MIXED_WEIGHTS = (0.3, 0.35, 0.35)


def mask_plane(mask, name: str = "mask") -> Tensor:
    """A (H, W), (1, H, W) or (1, 1, H, W) mask (tensor or numpy array) as a (1, H, W) float tensor,
    soft values kept; ValueError for any other shape (a mask per colour channel, say, whose
    channels could disagree)."""
    m = mask if isinstance(mask, Tensor) else torch.from_numpy(np.asarray(mask))
    if m.dim() < 2 or any(size != 1 for size in m.shape[:-2]):
        raise ValueError(f"{name}: expected a (1, H, W) or (H, W) mask, got shape {tuple(m.shape)}: "
                         f"one plane, 1 (or white) = hole")
    return m.reshape(1, *m.shape[-2:]).float()


def blank_holes(image: Tensor, mask: Tensor) -> Tensor:
    """``image`` with 0 wherever ``mask`` marks a hole (> 0.5): what every fill method gets to see,
    so that none can use what was under the hole (a NaN or inf too: multiplied by 0 it stays one).  A
    fill with a Python scalar, so a traced graph (export) holds no constant tensor pinned to a device."""
    return image.masked_fill(mask > 0.5, 0.0)


def _rng(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        # modulo 2**64, as torch reads a negative seed: derived seeds (a run's seed times a constant)
        # may leave the range torch takes; one inside it is unchanged
        return torch.Generator().manual_seed(int(seed) % (1 << 64))
    return generator


def _check_common(n: int, image_size: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")


def _boxes_to_masks(top: Tensor, left: Tensor, height: Tensor, width: Tensor, image_size: int,
                    image_width: int | None = None) -> Tensor:
    """(N,1,image_size,image_width) masks of one box each (image_width defaults to image_size)."""
    rows = torch.arange(image_size)
    cols = torch.arange(image_size if image_width is None else image_width)
    inside_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])      # (N,H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])     # (N,W)
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).to(torch.float32)[:, None]


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


def stroke_masks(n: int, height: int, width: int, generator: torch.Generator | None = None, *,
                 seed: int | None = None, strokes: tuple[int, int], vertices: tuple[int, int],
                 brush: tuple[float, float], length: tuple[float, float], margin: float = 0.0,
                 max_coverage: float = 0.4) -> Tensor:
    """Brush strokes on (N,1,height,width) masks: 1 = hole.

    Each mask gets ``strokes`` (inclusive range) strokes; a stroke starts at a
    uniform point at least ``margin`` pixels inside the picture and walks
    ``vertices`` segments of random direction and ``length`` pixels, painted with
    a round brush of diameter ``brush`` pixels (one diameter per stroke).  A
    mask covering more than ``max_coverage`` of the picture keeps its first
    stroke's first segment only, so every mask has a hole and keeps context.
    """
    if n < 0 or height < 1 or width < 1:
        raise ValueError(f"need n >= 0 and a positive size, got n={n}, {width}x{height}")
    if not (1 <= strokes[0] <= strokes[1] and 1 <= vertices[0] <= vertices[1]):
        raise ValueError(f"stroke and vertex counts must be ranges of positive integers, got {strokes}, {vertices}")
    g = _rng(generator, seed)
    ms, mv = strokes[1], vertices[1]
    k = ms * mv
    n_strokes = torch.randint(strokes[0], strokes[1] + 1, (n,), generator=g)
    n_vertices = torch.randint(vertices[0], vertices[1] + 1, (n, ms), generator=g)
    size = torch.tensor([float(height), float(width)])
    inner = (size - 2 * margin).clamp_min(1.0)
    start = (size - inner) / 2 + torch.rand(n, ms, 1, 2, generator=g) * inner
    angle = torch.rand(n, ms, mv, generator=g) * (2 * math.pi)
    seg = length[0] + torch.rand(n, ms, mv, generator=g) * (length[1] - length[0])
    radius = (brush[0] + torch.rand(n, ms, 1, generator=g) * (brush[1] - brush[0])) / 2
    step = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1) * seg[..., None]
    points = torch.cat([start, start + step.cumsum(dim=2)], dim=2)    # may leave the picture: painted where inside
    a, b = points[:, :, :-1] + 0.5, points[:, :, 1:] + 0.5
    active = (torch.arange(mv) < n_vertices[..., None]) & (torch.arange(ms)[:, None] < n_strokes[:, None, None])
    radius = radius.expand(-1, -1, mv)
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5

    def paint(active: Tensor) -> Tensor:
        out = torch.zeros(n, height, width, dtype=torch.bool)
        aa, bb = a.reshape(n, k, 2), b.reshape(n, k, 2)
        rr, on = radius.reshape(n, k), active.reshape(n, k)
        for j in range(k):       # one segment at a time: memory n*H*W, whatever the picture size
            hit = _segment_hits(ys.view(1, -1, 1), xs.view(1, 1, -1), aa[:, j].view(-1, 1, 1, 2),
                                bb[:, j].view(-1, 1, 1, 2), rr[:, j].view(-1, 1, 1))       # (N,H,W)
            out |= hit & on[:, j].view(-1, 1, 1)
        return out[:, None].to(torch.float32)

    masks = paint(active)
    too_big = masks.mean(dim=(1, 2, 3)) > max_coverage
    if bool(too_big.any()):
        first = active & (torch.arange(ms)[:, None] == 0) & (torch.arange(mv) == 0)
        masks = torch.where(too_big[:, None, None, None], paint(first), masks)
    return masks


# Hole families as fractions of a reference side: (strokes, vertices, brush diameter, segment length,
# margin from the border, largest share of the picture).  "crop": training crops, where the crop plays the
# window that inpaint cuts around a hole (holes up to ~40% of it); "picture": whole pictures at 512x384
# (reference 384): scratches 4-9 px wide, an object of ~56 px, an object of ~150 px.
_FAMILY_FRACTIONS = {
    "crop": {
        "thin": ((2, 5), (2, 6), (0.03, 0.07), (0.1, 0.35), 0.0, 0.25),
        "medium": ((1, 2), (1, 2), (0.2, 0.35), (0.0, 0.1), 0.25, 0.4),
        "large": ((1, 2), (1, 2), (0.4, 0.55), (0.0, 0.15), 0.3, 0.45),
    },
    "picture": {
        "thin": ((2, 5), (2, 5), (0.0104, 0.0234), (0.1, 0.3), 0.0, 0.25),
        "medium": ((1, 1), (1, 2), (0.11, 0.15), (0.0, 0.04), 0.2, 0.4),
        "large": ((1, 1), (1, 2), (0.34, 0.42), (0.0, 0.06), 0.3, 0.45),
    },
}
FAMILY_SCALES = tuple(_FAMILY_FRACTIONS)


def family_stroke_settings(kind: str, height: int, width: int, scale: str = "crop", *,
                           flush: bool = False) -> dict:
    """:func:`stroke_masks` settings of hole family ``kind`` for a ``height`` x ``width`` crop or
    picture (``scale``), sizes in proportion to its shorter side; ``flush``: strokes start anywhere
    (no margin), so thick holes often reach the border."""
    if scale not in _FAMILY_FRACTIONS:
        raise ValueError(f"scale must be one of {FAMILY_SCALES}, got {scale!r}")
    if kind not in _FAMILY_FRACTIONS[scale]:
        raise ValueError(f"hole family must be one of {HOLE_FAMILIES}, got {kind!r}")
    strokes, vertices, brush, length, margin, coverage = _FAMILY_FRACTIONS[scale][kind]
    r = float(min(height, width))
    return dict(strokes=strokes, vertices=vertices, brush=(max(2.0, brush[0] * r), max(3.0, brush[1] * r)),
                length=(length[0] * r, length[1] * r), margin=0.0 if flush else margin * r, max_coverage=coverage)


def family_masks(kind: str, n: int, height: int, width: int | None = None,
                 generator: torch.Generator | None = None, *, seed: int | None = None,
                 scale: str = "crop", flush_share: float = 0.0) -> Tensor:
    """(N,1,H,W) masks of hole family ``kind`` (thin / medium / large, or mixed: one family per
    mask drawn with :data:`MIXED_WEIGHTS`) for ``height`` x ``width`` pictures.

    ``flush_share``: the share of masks drawn without the family's margin, so that thick holes
    reach the border as often as chance puts them there.  ``inpaint`` clips a window at the
    picture's edge, so a hole flush with the picture is flush with its window: a generator that
    only ever saw inset holes reads the zero padding there as known pixels.  At 0 no extra random
    numbers are drawn: the masks are those of earlier versions, bit for bit.
    """
    if not 0.0 <= flush_share <= 1.0:
        raise ValueError(f"flush_share must be in [0, 1], got {flush_share}")
    width = height if width is None else width
    g = _rng(generator, seed)

    def draw(flush: bool) -> Tensor:
        if kind != "mixed":
            return stroke_masks(n, height, width, g, **family_stroke_settings(kind, height, width, scale, flush=flush))
        choice = torch.multinomial(torch.tensor(MIXED_WEIGHTS), n, replacement=True, generator=g)
        out = torch.zeros(n, 1, height, width)
        for index, family in enumerate(HOLE_FAMILIES):
            drawn = stroke_masks(n, height, width, g,
                                 **family_stroke_settings(family, height, width, scale, flush=flush))
            out = torch.where((choice == index).view(-1, 1, 1, 1), drawn, out)
        return out

    out = draw(flush=False)
    if flush_share > 0.0:
        flush = torch.rand(n, generator=g) < flush_share
        out = torch.where(flush.view(-1, 1, 1, 1), draw(flush=True), out)
    return out


# Boxes (the full-size evaluation's "box" family, not trained on): the rectangle an object detector or a
# selection tool leaves, sides 0.1 to 0.42 of the picture's shorter side (~40-160 px at 512x384), aspect
# up to 1:2, placed uniformly inside the picture (so few touch its edge).
BOX_SIDES = (0.1, 0.42)
BOX_ASPECT = 2.0


def box_masks(n: int, height: int, width: int, generator: torch.Generator | None = None, *,
              seed: int | None = None, sides: tuple[float, float] = BOX_SIDES, aspect: float = BOX_ASPECT) -> Tensor:
    """(N,1,height,width) masks of one axis-aligned rectangle each: a side of ``sides`` (fractions of the
    shorter side; the geometric mean of the two sides), the ratio of its sides at most ``aspect``."""
    if n < 0 or height < 1 or width < 1:
        raise ValueError(f"need n >= 0 and a positive size, got n={n}, {height}x{width}")
    g = _rng(generator, seed)
    r = min(height, width)
    side = (sides[0] + (sides[1] - sides[0]) * torch.rand(n, generator=g, dtype=torch.float64)) * r
    stretch = torch.exp((torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * math.log(aspect))
    box_h = (side * stretch).round().clamp(1, height).long()
    box_w = (side / stretch).round().clamp(1, width).long()
    top = (torch.rand(n, generator=g, dtype=torch.float64) * (height - box_h + 1)).floor().long()
    left = (torch.rand(n, generator=g, dtype=torch.float64) * (width - box_w + 1)).floor().long()
    return _boxes_to_masks(top, left, box_h, box_w, height, width)


# Edge holes (the full-size evaluation's "edge" family): a picture family's ~56 or ~150 px object (one or
# the other, equally often) moved flush with one of the picture's four sides or into one of its four
# corners (equally often): a date stamp, a watermark, a thumb at the frame's edge.  inpaint's window of such
# a hole is cut by the picture's edge, so the hole is flush with the window too.
EDGE_PLACES = ("top", "bottom", "left", "right", "top-left", "top-right", "bottom-left", "bottom-right")


def edge_masks(n: int, height: int, width: int, generator: torch.Generator | None = None, *,
               seed: int | None = None) -> Tensor:
    """(N,1,height,width) masks of one medium or large picture-family object each, moved (without
    changing its shape) so that its bounding box is flush with a side or a corner of the picture."""
    if n < 0 or height < 1 or width < 1:
        raise ValueError(f"need n >= 0 and a positive size, got n={n}, {height}x{width}")
    g = _rng(generator, seed)
    large = torch.rand(n, generator=g) < 0.5
    place = torch.randint(len(EDGE_PLACES), (n,), generator=g)
    drawn = torch.where(large.view(-1, 1, 1, 1), family_masks("large", n, height, width, g, scale="picture"),
                        family_masks("medium", n, height, width, g, scale="picture"))
    out = torch.zeros_like(drawn)
    for i in range(n):
        rows, cols = torch.nonzero(drawn[i, 0] > 0.5, as_tuple=True)
        if rows.numel() == 0:       # nothing drawn (a picture too small for a stroke): nothing to move
            continue
        top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        where = EDGE_PLACES[int(place[i])]
        dy = -top if "top" in where else height - 1 - bottom if "bottom" in where else 0
        dx = -left if "left" in where else width - 1 - right if "right" in where else 0
        # the box stays inside the picture, so nothing wraps round
        out[i] = torch.roll(drawn[i], shifts=(dy, dx), dims=(-2, -1))
    return out


def default_hole_size(image_size: int) -> int:
    """The hole size to assume when none is known: a third of the side (the paper's 8 of 24)."""
    return max(1, round(image_size / 3))


def random_rect_range(image_size: int, hole_size: int) -> tuple[int, int]:
    """The side range ``make_masks("random")`` uses: hole_size/2 .. 1.5*hole_size, inside the image."""
    low = max(1, hole_size // 2)
    high = min(image_size, hole_size + hole_size // 2)
    return min(low, high), high


def validation_masks(kind: str, items: Sequence[int], image_size: int, hole_size: int, seed: int) -> Tensor:
    """The ``kind`` masks (:func:`make_masks`) of validation crops ``items`` (their indices in the
    validation set), each seeded by (``seed``, its item): a crop's holes, and so a run's validation
    numbers, do not depend on the batches it is validated in (the batch size, the number of processes)."""
    if kind == "center":
        return make_masks(kind, len(items), image_size, hole_size)
    return torch.cat([make_masks(kind, 1, image_size, hole_size, seed=seed * 7919 + item) for item in items])


def make_masks(kind: str, n: int, image_size: int, hole_size: int,
               generator: torch.Generator | None = None, *, seed: int | None = None,
               flush_share: float = 0.0) -> Tensor:
    """Dispatch on ``kind``:

    * "center": the training mask, a ``hole_size`` square at the centre;
    * "random": the paper's test protocol, a rectangle whose sides are drawn from
      [hole_size//2, hole_size*3//2] (clipped to the image) at a random position;
    * "freeform": brush strokes with the default settings of :func:`freeform_masks`;
    * "thin", "medium", "large", "mixed": the hole families of :func:`family_masks`,
      scaled to the crop (``hole_size`` is not used); ``flush_share`` of them may reach the crop's
      edge (:func:`family_masks`), a share only these kinds take.
    """
    if flush_share and kind not in FAMILY_KINDS:
        raise ValueError(f"flush_share applies to the hole families {FAMILY_KINDS}, not {kind!r}")
    if kind == "center":
        _rng(generator, seed)        # still reject generator+seed together
        return center_masks(n, image_size, hole_size)
    if kind == "random":
        low, high = random_rect_range(image_size, hole_size)
        return random_rect_masks(n, image_size, low, high, generator, seed=seed)
    if kind == "freeform":
        return freeform_masks(n, image_size, generator, seed=seed)
    if kind in FAMILY_KINDS:
        return family_masks(kind, n, image_size, image_size, generator, seed=seed, flush_share=flush_share)
    raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")


# LaMa's evaluation masks (Suvorov et al. 2022; its configs/data_gen/random_{thin,medium,thick}_512.yaml),
# redrawn with this module's random numbers: the protocol people compare inpainting methods on, with far
# more of the picture missing than the picture families above (a quarter to a half).  Each mask is one of
# two kinds, chosen with the weights LaMa normalises (irregular 1 : box ``box_weight``): irregular strokes
# (``times`` strokes of 1-5 segments, each 10 + [0, max_len) px long at an angle of 0.01 + an integer
# 0-3 radians, mirrored for every other stroke, as LaMa draws them, with a round brush 5 + [0, max_width)
# px wide) or ``box_times`` rectangles with sides in [box_min, box_max) px, ``box_margin`` px inside the
# picture.  Pixel sizes are LaMa's at a 512 px picture and scale with the longer side; a mask covering more
# than LaMa's max_tamper_area (half the picture) is drawn again.
LAMA_SETTINGS = {
    "lama-thin": dict(times=(4, 70), max_width=20, max_len=100, box_weight=0.0),
    "lama-medium": dict(times=(4, 10), max_width=100, max_len=200, box_weight=0.3,
                        box_times=(1, 5), box_min=30, box_max=150, box_margin=0),
    "lama-thick": dict(times=(1, 5), max_width=250, max_len=450, box_weight=0.3,
                       box_times=(1, 4), box_min=30, box_max=300, box_margin=10),
}
LAMA_KINDS = tuple(LAMA_SETTINGS)
LAMA_REFERENCE = 512      # the picture side LaMa's pixel sizes are for
LAMA_MAX_AREA = 0.5
LAMA_TRIES = 100          # draws before the smallest one is kept (a picture too small for LaMa's brushes)


def _segment_hits(ys: Tensor, xs: Tensor, a: Tensor, b: Tensor, radius: Tensor) -> Tensor:
    """Whether each pixel centre (``ys`` and ``xs``, broadcast against each other) lies within ``radius``
    of the segment from ``a`` to ``b`` ((y, x) in their last dimension, broadcast likewise): a round brush."""
    ab = b - a
    dy, dx = ys - a[..., 0], xs - a[..., 1]
    t = ((dy * ab[..., 0] + dx * ab[..., 1]) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    ey, ex = dy - t * ab[..., 0], dx - t * ab[..., 1]
    return ey * ey + ex * ex <= radius ** 2


def _lama_draw(kind: str, height: int, width: int, g: torch.Generator | None) -> Tensor:
    """One (height, width) bool mask of LaMa kind ``kind`` (:data:`LAMA_SETTINGS`), not yet area-checked."""
    s = LAMA_SETTINGS[kind]
    scale = max(height, width) / LAMA_REFERENCE
    out = torch.zeros(height, width, dtype=torch.bool)

    def below(high: float) -> int:      # LaMa's randint(high): an integer in [0, high)
        return int(torch.randint(max(1, int(high)), (1,), generator=g))

    boxes = s["box_weight"] > 0 and float(torch.rand(1, generator=g)) < s["box_weight"] / (1 + s["box_weight"])
    if boxes:
        margin = min(round(s["box_margin"] * scale), (min(height, width) - 1) // 2)   # a box always fits
        low = max(1, round(s["box_min"] * scale))
        high = max(low + 1, min(round(s["box_max"] * scale), height - 2 * margin, width - 2 * margin))
        for _ in range(s["box_times"][0] + below(s["box_times"][1] - s["box_times"][0] + 1)):
            bw, bh = low + below(high - low), low + below(high - low)
            bw, bh = min(bw, width - 2 * margin), min(bh, height - 2 * margin)
            x = margin + below(width - 2 * margin - bw + 1)
            y = margin + below(height - 2 * margin - bh + 1)
            out[y:y + bh, x:x + bw] = True
        return out
    for stroke in range(s["times"][0] + below(s["times"][1] - s["times"][0] + 1)):
        y, x = float(below(height)), float(below(width))
        for _ in range(1 + below(5)):
            angle = 0.01 + below(4)
            if stroke % 2 == 0:
                angle = 2 * math.pi - angle
            length = (10 + below(s["max_len"])) * scale
            radius = (5 + below(s["max_width"])) * scale / 2
            ey = min(max(y + length * math.cos(angle), 0.0), float(height))
            ex = min(max(x + length * math.sin(angle), 0.0), float(width))
            # paint the segment's box only: up to 350 segments a mask
            top, bottom = max(0, int(min(y, ey) - radius)), min(height, int(max(y, ey) + radius) + 2)
            left, right = max(0, int(min(x, ex) - radius)), min(width, int(max(x, ex) + radius) + 2)
            ys = torch.arange(top, bottom, dtype=torch.float32).view(-1, 1) + 0.5
            xs = torch.arange(left, right, dtype=torch.float32).view(1, -1) + 0.5
            a, b = torch.tensor([y + 0.5, x + 0.5]), torch.tensor([ey + 0.5, ex + 0.5])
            out[top:bottom, left:right] |= _segment_hits(ys, xs, a, b, torch.tensor(radius))
            y, x = ey, ex
    return out


def lama_masks(kind: str, n: int, height: int, width: int, generator: torch.Generator | None = None, *,
               seed: int | None = None) -> Tensor:
    """(N,1,height,width) masks of LaMa's evaluation kind ``kind`` (lama-thin / lama-medium / lama-thick:
    :data:`LAMA_SETTINGS`), each covering more than nothing and at most half of the picture (redrawn
    until it does; after :data:`LAMA_TRIES` draws the smallest is kept)."""
    if kind not in LAMA_SETTINGS:
        raise ValueError(f"LaMa mask kind must be one of {', '.join(LAMA_KINDS)}, got {kind!r}")
    if n < 0 or height < 1 or width < 1:
        raise ValueError(f"need n >= 0 and a positive size, got n={n}, {width}x{height}")
    g = _rng(generator, seed)
    out = torch.zeros(n, 1, height, width)
    for i in range(n):
        best = None
        for _ in range(LAMA_TRIES):
            drawn = _lama_draw(kind, height, width, g)
            area = float(drawn.float().mean())
            if 0 < area <= LAMA_MAX_AREA:
                best = drawn
                break
            if area > 0 and (best is None or area < float(best.float().mean())):
                best = drawn
        out[i, 0] = (best if best is not None else drawn).float()
    return out
