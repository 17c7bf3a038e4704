"""Training crops at memory speed: images decoded once, crops cut in whole batches.

The paper trains on 24x24 crops: the model is tiny, so the input pipeline sets
the pace.  Decoding a 1024-pixel photograph for every 24-pixel crop (what a
per-item ``Dataset`` does) costs about a thousand times the crop.  Here:

- :class:`ImageStore` decodes each image once into one flat buffer of
  packed RGBX pixels (four bytes, one ``int32`` each), with a pyramid of copies at half-octave scales (1, 1/sqrt 2, 1/2, ...,
  antialiased), about twice the image in memory.  A crop of ``side`` source
  pixels is cut from the level whose scale brings it to between 1 and sqrt(2)
  times the output size, so bilinear sampling does not alias.
- :class:`RandomCrops` draws the crops of a whole batch with tensor operations:
  every random choice of item ``i`` (image, scale, position, flip, rotation)
  is a counter-based hash of ``(seed, i, choice)`` (:func:`uniforms`), so an
  item does not depend on batch size, worker count or device, and a resumed
  run continues bit for bit.  Sampling is one gather of the four bilinear
  neighbours per output pixel from the flat buffer: it runs on whatever
  device the store lives on (the GPU when training there).  One ``int32``
  per pixel makes that one gather per neighbour for all three channels.

Per-crop cost is independent of the source image's size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_MASK32 = 0xFFFFFFFF
# Draws per item, one hash stream each (image, scale, angle, flip, y, x, and retries of y, x).
_IMAGE, _SCALE, _ANGLE, _FLIP, _POS = range(5)
_RETRIES = 8


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32 with multipliers below 2**31, so int64 never overflows)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _MASK32
    return x ^ (x >> 15)


def uniforms(seed: int, items: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform floats in [0, 1), a pure function of (seed, item, stream): counter-based, no state."""
    items = items.to(torch.int64)
    key = _hash32(torch.full_like(items, (seed * 0x9E3779B1 + stream * 0x85EBCA77) & _MASK32))
    h = _hash32(key ^ (items & _MASK32))
    h = _hash32(h ^ (items >> 32))
    return h.to(torch.float64).div(2.0**32).to(torch.float32)


@dataclass(frozen=True)
class Holdout:
    """A rectangle (full-resolution pixels) of an image that training crops must not touch."""
    top: int
    left: int
    height: int
    width: int

    def intersects(self, top: float, left: float, height: float, width: float) -> bool:
        return not (top >= self.top + self.height or top + height <= self.top
                    or left >= self.left + self.width or left + width <= self.left)


def _levels(height: int, width: int, min_side: int) -> list[tuple[int, int]]:
    """(height, width) of the half-octave pyramid levels that are still at least ``min_side``."""
    sizes = []
    level = 0
    while True:
        scale = 2.0 ** (-level / 2)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if min(h, w) < min_side:
            break
        sizes.append((h, w))
        level += 1
    return sizes or [(height, width)]


class ImageStore:
    """Images decoded once: a flat buffer of packed RGBX pixels (``int32``, bytes R, G, B, 0)
    holding every pyramid level of every image.

    ``images`` are (3, H, W) uint8 tensors (or float in [0, 1]); ``min_side``
    is the smallest level worth keeping (the output crop size).
    """

    def __init__(self, images: list[torch.Tensor], min_side: int, names: list[str] | None = None):
        if not images:
            raise ValueError("an ImageStore needs at least one image")
        self.names = list(names) if names is not None else [str(i) for i in range(len(images))]
        chunks, table = [], []       # table rows: image, level -> (offset, height, width)
        offset = 0
        self.sizes = []
        self.level_counts = []
        for image in images:
            if image.dtype != torch.uint8:
                image = (image.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
            height, width = image.shape[-2:]
            self.sizes.append((height, width))
            levels = _levels(height, width, min_side)
            self.level_counts.append(len(levels))
            rows = []
            source = image[None].float()
            for h, w in levels:
                if (h, w) == (height, width):
                    level = image
                else:
                    # each level from the picture itself, as validation and `evaluate` resize their
                    # crops: made from the one before, the blur of each 1/sqrt(2) step added up, and a
                    # crop at scale 4 held 0.78 of the detail of the same region cut for validation
                    level = F.interpolate(source, size=(h, w), mode="bilinear", align_corners=False,
                                          antialias=True)[0].round().clamp_(0, 255).to(torch.uint8)
                rgbx = torch.cat([level, torch.zeros_like(level[:1])]).permute(1, 2, 0).contiguous()
                chunks.append(rgbx.view(torch.int32).reshape(-1))
                rows.append((offset, h, w))
                offset += h * w
            table.append(rows)
        self.buffer = torch.cat(chunks)
        self.max_levels = max(self.level_counts)
        # (images, max_levels, 3) int64: offset, height, width; missing levels repeat the last one
        self.table = torch.tensor([rows + [rows[-1]] * (self.max_levels - len(rows)) for rows in table],
                                  dtype=torch.int64)
        self.full_size = torch.tensor(self.sizes, dtype=torch.float32)          # (images, 2) H, W
        self.level_count = torch.tensor(self.level_counts, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()

    def to(self, device: torch.device | str) -> "ImageStore":
        """Move the buffer and tables (e.g. to the GPU, where the crops are then cut)."""
        for name in ("buffer", "table", "full_size", "level_count"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def sample(self, image: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, side: torch.Tensor,
               angle: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
        """Crops (N, 3, size, size) float32 in [0, 1] (channels-last strides).

        Crop n is the ``side[n]``-pixel square centred at (cy[n], cx[n]) (full
        resolution, continuous coordinates: pixel k covers [k, k+1)) of image
        ``image[n]``, rotated by ``angle[n]`` radians and mirrored where
        ``flip[n]``; bilinear, clamped at the image border.
        """
        dev = self.buffer.device
        image = image.to(dev, torch.int64)
        n = image.shape[0]
        level = pyramid_level(side, size, self.level_count[image])
        row = self.table[image, level]                                           # (N, 3)
        off, lh, lw = row[:, 0], row[:, 1], row[:, 2]
        fy = lh.float() / self.full_size[image, 0]
        fx = lw.float() / self.full_size[image, 1]
        step = (side / size).float()
        t = torch.arange(size, device=dev, dtype=torch.float32) + 0.5 - size / 2
        u = t.view(1, 1, size) * step.view(n, 1, 1)                              # along x
        v = t.view(1, size, 1) * step.view(n, 1, 1)                              # along y
        u = torch.where(flip.view(n, 1, 1).to(dev), -u, u)
        cos, sin = torch.cos(angle).view(n, 1, 1).float(), torch.sin(angle).view(n, 1, 1).float()
        x = cx.view(n, 1, 1).float() + cos * u - sin * v                         # (N, S, S)
        y = cy.view(n, 1, 1).float() + sin * u + cos * v
        # to level pixel indices (pixel centres at k + 0.5), clamped to the border
        xl = (x * fx.view(n, 1, 1) - 0.5).clamp(min=0.0)
        yl = (y * fy.view(n, 1, 1) - 0.5).clamp(min=0.0)
        wmax = (lw - 1).view(n, 1, 1)
        hmax = (lh - 1).view(n, 1, 1)
        x0 = torch.minimum(xl.floor().to(torch.int64), wmax)
        y0 = torch.minimum(yl.floor().to(torch.int64), hmax)
        ax = (xl - x0.float()).clamp(0.0, 1.0)
        ay = (yl - y0.float()).clamp(0.0, 1.0)
        x1 = torch.minimum(x0 + 1, wmax)
        y1 = torch.minimum(y0 + 1, hmax)
        base = off.view(n, 1, 1)
        stride = lw.view(n, 1, 1)
        rows, cols = torch.stack([y0, y1]), torch.stack([x0, x1])                 # (2, N, S, S)
        # the four neighbours in one gather: (2, 2, N, S, S) int32 -> bytes R, G, B, X (little-endian)
        pixels = self.buffer[base + rows[:, None] * stride + cols[None]]
        nb = pixels.view(torch.uint8).view(2, 2, n, size, size, 4)[..., :3].float()
        ax, ay = ax.unsqueeze(-1), ay.unsqueeze(-1)
        out = torch.lerp(torch.lerp(nb[0, 0], nb[0, 1], ax), torch.lerp(nb[1, 0], nb[1, 1], ax), ay) * (1.0 / 255.0)
        return out.clamp_(0.0, 1.0).permute(0, 3, 1, 2)                          # NHWC memory = channels-last


def pyramid_level(side: torch.Tensor, size: int, level_count: torch.Tensor) -> torch.Tensor:
    """The pyramid level a ``side``-pixel crop is cut from at output ``size``: the one that brings the
    crop to 1 .. sqrt(2) times the output size (at most the image's last level, ``level_count - 1``)."""
    level = torch.floor(2.0 * torch.log2((side / size).clamp_min(1.0)) + 1e-4).to(torch.int64)
    return torch.minimum(level, level_count - 1)


def holdout_margin(level: torch.Tensor) -> torch.Tensor:
    """Source pixels beyond a crop's box that its pixels draw on at pyramid ``level``: each level is
    made from the picture with one antialiased resize (reach: one pixel of the level, 2^(level/2)
    source pixels), and the crop's bilinear taps reach one more level pixel; the margin, set when the
    levels were made one from the next (3.4 x 2^(level/2) summed), is kept: it is the wider.  A fixed
    2 px let held-out pixels into crops of the coarser levels (59 of 20,000 crops at max_crop_scale 4
    touched a validation box, up to 11% of its value)."""
    return 5.0 * torch.exp2(level.float() / 2)


class RandomCrops(torch.utils.data.Dataset):
    """Random training crops of an :class:`ImageStore`, cut in whole batches.

    Item ``i`` of epoch ``e`` is global item ``e * len(self) + i``; its image
    (uniform over images, so one large flat photograph does not dominate),
    scale (log-uniform, ``image_size`` .. ``max_crop_scale * image_size``
    source pixels), position, horizontal flip and rotation (``augment``) are
    hashes of ``(seed, item)``.  Crops avoid each image's ``holdout`` rectangle
    (the validation region of region-split data).

    ``crops(items)`` returns a batch; ``dataset[i]`` one item (same values).
    """

    def __init__(self, store: ImageStore, image_size: int, *, seed: int, augment: bool, max_rotation: float,
                 max_crop_scale: float, holdout: list[Holdout | None] | None = None, length: int | None = None):
        self.store, self.image_size, self.seed = store, image_size, seed
        self.augment, self.max_rotation, self.max_crop_scale = augment, max_rotation, max_crop_scale
        self.holdout = holdout if holdout is not None else [None] * len(store)
        S = image_size
        sizes = np.array(store.sizes, dtype=np.float64)
        # the draws are made on the CPU (whatever device the store is on): per-image sizes and
        # upper scale limits (the whole short side at most) kept here
        self._sizes = torch.tensor(sizes, dtype=torch.float32)
        self._level_count = store.level_count.cpu()
        self._limit = torch.tensor(np.minimum(max_crop_scale, sizes.min(axis=1) / S), dtype=torch.float32)
        boxes = [(b.top, b.left, b.height, b.width) if b else (0, 0, 0, 0) for b in self.holdout]
        self._boxes = torch.tensor(boxes, dtype=torch.float32)
        self._fallback = torch.tensor([self._fallback_centre(k) for k in range(len(store))], dtype=torch.float32)
        areas = sizes.prod(axis=1) - self._boxes[:, 2:].prod(dim=1).double().numpy()
        # one "epoch" ~ as many crops as the training area holds at the smallest scale
        self.length = length or int(min(100_000, max(1024, areas.sum() // S**2)))

    def _fallback_centre(self, k: int) -> tuple[float, float]:
        """Centre of an unrotated smallest crop that avoids image k's holdout (always exists)."""
        S = self.image_size
        height, width = self.store.sizes[k]
        box = self.holdout[k]
        # a half-crop grid and the last position: the room the holdout leaves on the right or at the bottom
        # can be narrower than the grid's step from its last point (a traceback on ~2% of seeds)
        tops = sorted({*range(0, height - S + 1, max(1, S // 2)), height - S})
        lefts = sorted({*range(0, width - S + 1, max(1, S // 2)), width - S})
        for top in tops:
            for left in lefts:
                if box is None or not box.intersects(top, left, S, S):
                    return top + S / 2, left + S / 2
        raise ValueError(f"image {self.store.names[k]} has no room for a training crop outside its "
                         f"validation region")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index) -> torch.Tensor:
        """Item ``index`` of epoch 0, or ``(epoch, index)``."""
        epoch, index = (int(index[0]), int(index[1])) if isinstance(index, (tuple, list)) else (0, int(index))
        return self.crops(torch.tensor([epoch * self.length + index]))[0].contiguous()

    def crops(self, items: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) crops of global items ``items`` (int64), channels-last, on the store's device."""
        S, seed = self.image_size, self.seed
        items = items.to(torch.int64).cpu()
        n_images = len(self.store)
        image = (uniforms(seed, items, _IMAGE) * n_images).long().clamp_(max=n_images - 1)
        limit = self._limit[image]
        side = S * torch.exp(uniforms(seed, items, _SCALE) * torch.log(limit.clamp_min(1.0)))
        if self.augment and self.max_rotation > 0:
            angle = (2 * uniforms(seed, items, _ANGLE) - 1) * math.radians(self.max_rotation)
        else:
            angle = torch.zeros_like(side)
        flip = (uniforms(seed, items, _FLIP) < 0.5) if self.augment else torch.zeros_like(side, dtype=torch.bool)
        height, width = self._sizes[image].unbind(1)
        # the rotated square's bounding box (+2 px margin for bilinear taps) must fit in the image
        bbox = side * (angle.cos().abs() + angle.sin().abs()) + 2
        too_big = bbox > torch.minimum(height, width)
        angle = torch.where(too_big, torch.zeros_like(angle), angle)
        bbox = torch.where(too_big, side, bbox).clamp(max=torch.minimum(height, width))
        boxes = self._boxes[image]
        # the validation box is kept this far from the crop's box: what the pyramid's blur brings in
        pad = holdout_margin(pyramid_level(side, S, self._level_count[image]))
        cy = cx = None
        ok = torch.zeros_like(side, dtype=torch.bool)
        for attempt in range(_RETRIES):
            ty = uniforms(seed, items, _POS + 2 * attempt)
            tx = uniforms(seed, items, _POS + 2 * attempt + 1)
            new_cy = bbox / 2 + ty * (height - bbox)
            new_cx = bbox / 2 + tx * (width - bbox)
            fits = ~_hits(boxes, new_cy - bbox / 2 - pad, new_cx - bbox / 2 - pad, bbox + 2 * pad)
            take = fits & ~ok
            cy = torch.where(take, new_cy, cy) if cy is not None else new_cy
            cx = torch.where(take, new_cx, cx) if cx is not None else new_cx
            ok |= fits
            if bool(ok.all()):
                break
        if not bool(ok.all()):
            # rare: nothing fitted outside the holdout; the image's smallest plain crop always does
            fallback = self._fallback[image]
            cy = torch.where(ok, cy, fallback[:, 0])
            cx = torch.where(ok, cx, fallback[:, 1])
            side = torch.where(ok, side, torch.full_like(side, float(S)))
            angle = torch.where(ok, angle, torch.zeros_like(angle))
        dev = self.store.buffer.device
        return self.store.sample(image, cy.to(dev), cx.to(dev), side.to(dev), angle.to(dev), flip.to(dev), S)


def _hits(boxes: torch.Tensor, top: torch.Tensor, left: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Vectorised :meth:`Holdout.intersects` of squares with (top, left, height, width) rows (0-size rows: never)."""
    b_top, b_left, b_h, b_w = boxes.unbind(1)
    empty = (b_h <= 0) | (b_w <= 0)
    apart = (top >= b_top + b_h) | (top + side <= b_top) | (left >= b_left + b_w) | (left + side <= b_left)
    return ~(apart | empty)


def batch_items(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Global item numbers of optimisation step ``step`` on process ``rank``: consecutive blocks,
    disjoint across ranks, so the data are a function of (seed, step, rank) and a run resumed at
    step k continues with exactly the crops it would have seen."""
    first = (step * world_size + rank) * batch_size
    return torch.arange(first, first + batch_size, dtype=torch.int64)
