"""Two rules on the colours of a finished fill, which :func:`nfinpaint.inpaint.inpaint_image` applies
after every method (the command's and :class:`nfinpaint.Inpainter`'s fills; ``evaluate``'s classical
columns call their methods directly and are left as they are).

Both look at each hole's **ring**: the known pixels within :data:`RING` px of it (the boundary that a
biharmonic fill of the hole is solved from).

* **A flat ring** (each channel's spread within :data:`FLAT_LEVELS`): the hole's fill is kept within the
  ring's range.  The learned fill's multiscale base, 32 steps a level, saw an edge a few pixels beyond
  the ring at its coarse levels, and the network did not undo it: a logo removed from a flat banner
  came back up to 29 levels off its colour, a disc of mid-grey beside a red block a cyan blotch 37 off
  (biharmonic and PatchMatch: exact).  Flat graphics and screenshots meet it.  Kept within the range,
  not replaced by the ring's mean, so that a gradient a hole's ring barely spans (a 16-bit ramp) stays.
  In a picture of one hue such a hole takes the line's colour first (below), then the range.
* **A picture of one hue** (:func:`one_hue`): a grey photograph stored as RGB with a scanner's noise, a
  sepia or cyanotype print, a colour on black or on white.  Each hole whose ring lies on the picture's
  line of colour against brightness takes, in each pixel, the line's colour at the fill's brightness:
  the learned fill, which fills RGB, put colours such a picture does not have in its holes (bluish
  whites 25-30 levels off a sepia print's hue).  A hole whose ring is off the line (over a small
  coloured icon the picture's judgement let through) keeps its fill.

Neither rule takes any hole of the full-size evaluations the results tables were measured on; of the
crop protocol's, one crop of mate's 288 and one of scikit-image's 117 have a flat ring
(``scripts/colour_rules_check.py``).  The settings were set before measuring, not chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

RING = 2                   # the ring's width: a biharmonic fill's boundary
FLAT_LEVELS = 2 / 255      # a flat ring: each channel's spread at most this

# A picture of one hue: each channel less the brightness (the mean of the channels) is a straight line in
# the brightness, within ONE_HUE_LEVELS, for all but ONE_HUE_OFF of its known pixels.  A grey photograph
# with noise of a level or two, a toned print (a tone times the grey: a line through black), a colour on
# black or on white (its blends: a line).  A line, not the mean colour at each brightness: on a
# black-and-white page with a small cyan icon that mean was cyan at mid-grey, and a hole over a letter
# came back cyan.
ONE_HUE_LEVELS = 4 / 255
ONE_HUE_OFF = 0.001
# ... whose line rises or falls by at most this much per unit of brightness: a line through black or
# white by 2 at most (a primary on black; a toned print 0.3), a blend of two colours of about one
# brightness (a blue banner's orange title) by 11, where an error of a few levels in the fill's
# brightness became one of tens of levels in colour.  A quarter over 2, for noise
ONE_HUE_SLOPE = 2.5
# ... and that has at least this many known pixels: on small pictures (the crop protocol's 24x24 crops)
# a smooth patch is "one hue" within 4 levels, and the line took real colour out of its fill
ONE_HUE_MIN_KNOWN = 1 << 15
# known pixels a picture is judged on, drawn at random (a stride aliased with the picture's columns): a
# colour picture is told from the first few, and the rest bound the cost on large pictures
_ONE_HUE_SAMPLES = (1 << 12, 1 << 18)
RING_OFF = 0.05            # a hole's ring on the line: all but this share of its pixels
COLOUR_RUN = 3             # ... and where the rest holds a run of colour, the hole's part nearest it is left


@dataclass(frozen=True)
class Hue:
    """The line of a one-hue picture (:func:`one_hue`): at brightness b (the mean of the channels, in
    [0, 1]) the colour ``b + offset + slope * b`` (each (3,); zero for grey); ``lowest``..``highest``, its
    known pixels' brightness."""
    offset: np.ndarray
    slope: np.ndarray
    lowest: float
    highest: float

    def off_line(self, pixels: np.ndarray) -> np.ndarray:
        """(N,) bool: which of the (N, 3) ``pixels`` lie farther than ONE_HUE_LEVELS from the line."""
        brightness = pixels.mean(axis=1, keepdims=True)
        return np.abs(pixels - brightness - self.offset - self.slope * brightness).max(axis=1) > ONE_HUE_LEVELS

    def on(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, N) ``pixels`` on the line: each keeps its brightness, within the picture's range (outside it
        no colour of the hue may exist: a sepia print's white is R = 255), and takes the line's colour."""
        brightness = pixels.double().mean(dim=0).cpu().numpy().clip(self.lowest, self.highest)
        colour = brightness + self.offset[:, None] + self.slope[:, None] * brightness
        return torch.from_numpy(colour).clamp(0, 1).to(pixels.device, pixels.dtype)


def _all_grey(image: torch.Tensor, known: torch.Tensor, rows: int = 256) -> bool:
    """Whether every known pixel (``known`` (H, W) bool) of (3, H, W) ``image`` is grey (R = G = B); a band
    of rows at a time, the picture's memory being the fill's (a whole picture's comparisons cost 4 bytes
    a pixel)."""
    for top in range(0, image.shape[1], rows):
        part, mask = image[:, top:top + rows], known[top:top + rows]
        if bool((((part[0] != part[1]) | (part[1] != part[2])) & mask).any()):
            return False
    return True


def _at(image: torch.Tensor, flat: torch.Tensor, width: int) -> torch.Tensor:
    """(C, N): ``image``'s (C, H, W) pixels at the flat indices ``flat`` into rows of ``width`` (no copy of
    the picture, whatever its strides: a caller's tensor may be a view of an (H, W, C) array)."""
    return image[:, flat // width, flat % width]


def _known_sample(known: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of about ``size`` of the True pixels of flat bool ``known``, at random (seeded: the same
    picture is judged the same way), or all of them where they are fewer."""
    count = int(known.sum())
    if count <= size:
        return known.nonzero()[:, 0]
    draws = torch.randint(0, known.numel(), (min(known.numel(), size * known.numel() // count + size),),
                          generator=torch.Generator().manual_seed(0), device="cpu").to(known.device)
    return draws[known[draws]][:size]


def one_hue(image: torch.Tensor, hole: torch.Tensor) -> Hue | None:
    """The line of a (3, H, W) [0, 1] ``image`` whose known pixels (``hole`` (1, H, W) bool) are of one hue
    (see :data:`ONE_HUE_LEVELS`), on the CPU; None for a colour picture or one of too few known pixels.
    A grey picture stored as RGB (every known pixel R = G = B), of any size, is grey, its fill's
    brightness left as it is: the holes of a grey picture get the mean of the fill's channels."""
    if image.dim() != 3 or image.shape[0] != 3 or hole.shape[-2:] != image.shape[-2:]:
        return None
    image = image.detach()
    width = image.shape[-1]
    known_plane = ~hole[0].to(image.device)
    known = known_plane.reshape(-1)
    first = _at(image, _known_sample(known, _ONE_HUE_SAMPLES[0]), width)
    if bool((first[0] == first[1]).all() and (first[1] == first[2]).all()) and _all_grey(image, known_plane):
        return Hue(np.zeros(3), np.zeros(3), 0.0, 1.0)
    if int(known.sum()) < ONE_HUE_MIN_KNOWN:
        return None
    for size in _ONE_HUE_SAMPLES:
        pixels = _at(image, _known_sample(known, size), width).T.double().cpu().numpy().clip(0, 1)  # as the fill read it
        brightness = pixels.mean(axis=1)
        line = np.stack([np.ones_like(brightness), brightness], axis=1)
        (offset, slope), *_ = np.linalg.lstsq(line, pixels - brightness[:, None], rcond=None)
        off = Hue(offset, slope, 0.0, 1.0).off_line(pixels)
        if off.mean() > ONE_HUE_OFF * (10 if size < _ONE_HUE_SAMPLES[-1] else 1):
            return None
    if off.any():       # the line of the others: a small coloured icon had pulled it a few levels its way
        (offset, slope), *_ = np.linalg.lstsq(line[~off], (pixels - brightness[:, None])[~off], rcond=None)
    if np.abs(slope).max() > ONE_HUE_SLOPE:
        return None
    return Hue(offset, slope, *_range_on_line(image, known_plane, Hue(offset, slope, 0.0, 1.0)))


def _range_on_line(image: torch.Tensor, known: torch.Tensor, hue: Hue, rows: int = 256) -> tuple[float, float]:
    """The least and the greatest brightness of the known pixels (``known`` (H, W) bool) of (3, H, W)
    ``image`` that lie on ``hue``'s line: over all of them, a band of rows at a time, not over the sample
    the line was fitted on (a small lamp the sample missed was darkened to the sample's brightest)."""
    offset = torch.from_numpy(hue.offset)[:, None, None]
    slope = torch.from_numpy(hue.slope)[:, None, None]
    lowest, highest = math.inf, -math.inf
    for top in range(0, image.shape[1], rows):
        part = image[:, top:top + rows].double().cpu().clamp(0, 1)
        brightness = part.mean(dim=0)
        on = ((part - brightness - offset - slope * brightness).abs().amax(dim=0) <= ONE_HUE_LEVELS)
        values = brightness[on & known[top:top + rows].cpu()]
        if values.numel():
            lowest, highest = min(lowest, float(values.min())), max(highest, float(values.max()))
    return (lowest, highest) if lowest <= highest else (0.0, 1.0)


@dataclass(frozen=True)
class Rings:
    """The rings of the 8-connected holes of a mask (:func:`rings`), within ``box`` (the holes' bounding
    box and their rings): ``labels`` the holes there (1..count), and for each hole ``label`` its ring's
    pixels, ``pixels[starts[k]:starts[k + 1]]`` (flat indices into the box) for ``label = owners[k]``."""
    box: tuple[slice, slice]
    labels: np.ndarray
    count: int
    owners: np.ndarray
    starts: np.ndarray
    pixels: np.ndarray

    def values(self, image: torch.Tensor) -> np.ndarray:
        """(C, M) float64: ``image``'s (C, H, W) values at the rings' pixels, in order, clamped to [0, 1] as
        the fill read them."""
        box = image[:, self.box[0], self.box[1]]
        return _at(box, torch.from_numpy(self.pixels).to(box.device), box.shape[-1]).double().cpu().numpy().clip(0, 1)

    def holes(self, taken: np.ndarray) -> np.ndarray:
        """(h, w) bool in the box: the pixels of the holes whose run of ``owners`` is True in ``taken``."""
        chosen = np.zeros(self.count + 1, dtype=bool)
        chosen[self.owners[taken]] = True
        return chosen[self.labels]


def rings(hole: np.ndarray) -> Rings | None:
    """The :data:`RING`-pixel rings of the 8-connected holes of (H, W) bool ``hole``; None without a hole or
    a known pixel near one.  A known pixel within reach of several holes is in each of their rings."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    if len(rows) == 0:
        return None
    # the holes' bounding box and their rings: the filters below cost ~60 ms over a 3-megapixel picture
    box = (slice(max(rows[0] - RING, 0), rows[-1] + RING + 1), slice(max(cols[0] - RING, 0), cols[-1] + RING + 1))
    h = hole[box]
    labels, count = ndimage.label(h, structure=np.ones((3, 3), dtype=bool))
    reach = 2 * RING + 1
    highest = ndimage.maximum_filter(labels, size=reach)
    lowest = ndimage.minimum_filter(np.where(h, labels, count + 1), size=reach)
    ring = (highest > 0) & ~h
    pixels = np.flatnonzero(ring)
    if len(pixels) == 0:
        return None
    high, low = highest.reshape(-1)[pixels], lowest.reshape(-1)[pixels]
    shared = low != high
    # a pixel in reach of one hole is in its ring; one in reach of several is in each of theirs: not only
    # the lowest's and the highest's (a hole between two others lost the pixels it shared with both, and
    # a dark line through three 1 px holes made the middle one's ring look flat)
    near_owner, near_pixels = _owners_near(labels, pixels[shared])
    owner = np.concatenate([high[~shared], near_owner])
    pixels = np.concatenate([pixels[~shared], near_pixels])
    order = np.argsort(owner, kind="stable")
    owner, pixels = owner[order], pixels[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return Rings(box, labels, count, owner[starts], np.r_[starts, len(owner)], pixels)


def _owners_near(labels: np.ndarray, pixels: np.ndarray, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """(hole label, pixel) for every distinct hole within :data:`RING` px of each of ``pixels`` (flat indices
    into ``labels``), a chunk of pixels at a time (the window's labels take 25 of each)."""
    padded = np.pad(labels, RING)
    width = padded.shape[1]
    steps = np.arange(-RING, RING + 1)
    offsets = (steps[:, None] * width + steps[None, :]).reshape(-1)
    owners, where = [], []
    for start in range(0, len(pixels), chunk):
        part = pixels[start:start + chunk]
        centre = (part // labels.shape[1] + RING) * width + part % labels.shape[1] + RING
        near = np.sort(padded.reshape(-1)[centre[:, None] + offsets], axis=1)
        first = near > 0
        first[:, 1:] &= near[:, 1:] != near[:, :-1]
        owners.append(near[first])
        where.append(np.repeat(part, first.sum(axis=1)))
    if not owners:
        return np.zeros(0, dtype=labels.dtype), np.zeros(0, dtype=pixels.dtype)
    return np.concatenate(owners), np.concatenate(where)


def apply(image: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """(3, H, W) CPU ``filled``, the fill of (1, H, W) bool ``hole`` in (C, H, W) ``image`` (C = 1 grey, or
    3), with both rules applied (see the module doc), in place (a copy would cost 12 bytes a pixel of a
    large picture); returned."""
    known = image.detach()
    found = rings(hole[0].cpu().numpy())
    if found is None:
        return filled
    values = found.values(known)
    low = np.minimum.reduceat(values, found.starts[:-1], axis=1)
    high = np.maximum.reduceat(values, found.starts[:-1], axis=1)
    flat = (high - low <= FLAT_LEVELS + 1e-6).all(axis=0)
    hue = one_hue(known, hole) if known.shape[0] == 3 else None
    if hue is not None:
        # the holes whose rings lie on the line: a noisy pixel or two in a ring is let through, a good
        # part of one over a coloured icon is not.  Flat rings too, before their clamp: clamped alone,
        # channel by channel, a grey picture's fill came back 1 level off grey
        off_pixels = hue.off_line(values.T)
        off = np.add.reduceat(off_pixels.astype(np.float64), found.starts[:-1]) / np.diff(found.starts)
        on_line = off <= RING_OFF
        if on_line.any():
            part = filled[:, found.box[0], found.box[1]]
            where = found.holes(on_line) & ~_near_colour(found, on_line, off_pixels)
            inside = torch.from_numpy(where)
            part[:, inside] = hue.on(part[:, inside])
    if flat.any():
        # within the flat ring's range, channel by channel (a grey ring's range is one for all three,
        # so a fill the line made grey stays grey)
        where = found.holes(flat)
        ids = found.labels[where]
        lookup_low = np.zeros((known.shape[0], found.count + 1))
        lookup_high = np.ones_like(lookup_low)
        lookup_low[:, found.owners[flat]], lookup_high[:, found.owners[flat]] = low[:, flat], high[:, flat]
        part = filled[:, found.box[0], found.box[1]]
        inside = torch.from_numpy(where)
        part[:, inside] = torch.maximum(torch.minimum(part[:, inside].double(), torch.from_numpy(lookup_high[:, ids])),
                                        torch.from_numpy(lookup_low[:, ids])).to(filled.dtype)
    return filled


def _near_colour(found: Rings, taken: np.ndarray, off_pixels: np.ndarray) -> np.ndarray:
    """(h, w) bool in ``found``'s box: the pixels whose nearest ring pixel, among the rings of the holes
    ``taken`` (per run of owners), is in a run of colour off the line (:data:`COLOUR_RUN` such pixels
    within its 5x5 square; a lone noisy pixel is not).  A long scratch across a page crosses a small red
    stamp on under 5% of its ring: the whole hole took the page's grey, and the stamp a grey gap."""
    shape = found.labels.shape
    mine = np.repeat(taken, np.diff(found.starts))
    ring = np.zeros(shape, dtype=bool)
    ring.reshape(-1)[found.pixels[mine]] = True
    coloured = np.zeros(shape, dtype=bool)
    coloured.reshape(-1)[found.pixels[mine & off_pixels]] = True
    if not coloured.any():
        return coloured
    coloured &= ndimage.uniform_filter(coloured.astype(np.float32), size=5) * 25 >= COLOUR_RUN - 0.5
    if not coloured.any():
        return coloured
    # the nearest ring pixel of every pixel of the box (int32 indices; no distances)
    nearest = ndimage.distance_transform_edt(~ring, return_distances=False, return_indices=True)
    return coloured[nearest[0], nearest[1]]
