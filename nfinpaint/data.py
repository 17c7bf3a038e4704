"""Training and evaluation data: crops of photographs as (3, S, S) float32 tensors in [0, 1].

Two sources:

- a folder tree of images (any format PIL reads; files that cannot be read are
  reported with a warning naming them and skipped);
- ``data_dir=None``: the *embedded default*, the colour photographs that ship
  inside scikit-image (``skimage.data``: astronaut, chelsea, coffee, rocket,
  immunohistochemistry, hubble_deep_field, stereo_motorcycle's left view),
  seven images, about 2.4 megapixels in all.  Small, but it needs no download.

Training items are random crops at several scales (``image_size`` up to
``max_crop_scale * image_size`` source pixels, scaled to ``image_size``), with
the paper's augmentation: horizontal flip, shift (the crop's random position)
and rotation.  Every random choice of item ``i`` in epoch ``e`` comes from a
generator seeded by ``(seed, e, i)``, so the data are the same whatever the
number of DataLoader workers, and a resumed run sees exactly the items it
would have seen.

The validation split is held out *by region*: from each photograph (or each
image of a folder with few images) a rectangle of ``val_fraction`` of its area,
placed by the seed, serves validation only, and no training crop touches it.
A folder with many images (``>= FILE_SPLIT_MIN`` files) is split by file
instead.  Validation items are fixed crops, never augmented.
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from nfinpaint.images import IMAGE_SUFFIXES, ImageError, pil_to_tensor

# skimage.data's colour photographs that load offline.  ("retina" also does, but is mostly
# flat orange and would dominate by area; "cat" is "chelsea" again.)
EMBEDDED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                   "hubble_deep_field", "stereo_motorcycle")
# Folders with at least this many images are split by file; smaller ones by region.
FILE_SPLIT_MIN = 20
# Validation crops per scale per image, embedded / region-split sources.
VAL_CROPS_PER_SCALE = 8


class DataError(ValueError):
    """Data that cannot be used (empty folder, no readable image, image too small), with what to do."""


class DataWarning(UserWarning):
    """A file that was skipped (e.g. not a readable image)."""


# --------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data  # noqa: PLC0415  (optional until the default set is asked for)

    out = []
    for name in EMBEDDED_PHOTOS:
        array = getattr(skimage.data, name)()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity); the left view only
            array = array[0]
        array = np.ascontiguousarray(array[..., :3])
        array.flags.writeable = False  # cached and shared
        out.append((f"skimage.data.{name}", array))
    return tuple(out)


def _array_to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0).contiguous()


def find_image_files(data_dir: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) under ``data_dir``, sorted; hidden files and folders skipped."""
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder of images")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                        f"point --data at a folder of images")
    return files


def _probe(path: Path, decode: bool) -> tuple[int, int] | None:
    """(height, width) of an image file, or None (with a warning) when it cannot be read."""
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        warnings.warn(f"skipping {path}: not a readable image ({exc})", DataWarning, stacklevel=3)
        return None
    return height, width


def _readable_images(data_dir: str | os.PathLike, min_side: int, decode: bool,
                     skip_small: bool = False) -> list[tuple[Path, int, int]]:
    files = find_image_files(data_dir)
    found = []
    for path in files:
        size = _probe(path, decode)
        if size is None:
            continue
        if min(size) < min_side and skip_small:
            warnings.warn(f"skipping {path}: {size[1]}x{size[0]} pixels, smaller than the {min_side}x{min_side} "
                          f"crop", DataWarning, stacklevel=2)
            continue
        if min(size) < min_side:
            raise DataError(f"{path} is {size[1]}x{size[0]} pixels, smaller than the {min_side}x{min_side} crop; "
                            f"remove it or use a smaller image size")
        found.append((path, *size))
    if not found:
        raise DataError(f"{data_dir}: none of the {len(files)} image files could be read"
                        + (f" at {min_side}x{min_side} or larger" if skip_small else ""))
    return found


def _load_file(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None


# --------------------------------------------------------------------------- geometry


def _resize(region: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(region.shape[-2:]) == tuple(size):
        return region
    return F.interpolate(region[None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp_(0.0, 1.0)


def crop_resize(image: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """The ``side`` x ``side`` crop at (top, left) of a (3, H, W) image, scaled to size x size."""
    return _resize(image[:, top:top + side, left:left + side], (size, size)).contiguous()


def _rotated_bbox(side: float, angle: float) -> int:
    """Side of the axis-aligned box that holds a ``side`` square rotated by ``angle`` radians."""
    return int(math.ceil(side * (abs(math.cos(angle)) + abs(math.sin(angle))))) + 2


def augmented_crop(image: torch.Tensor, cy: float, cx: float, side: float, angle: float, flip: bool,
                   size: int) -> torch.Tensor:
    """A ``side``-pixel square centred at (cy, cx) of ``image``, rotated by ``angle`` radians,
    optionally mirrored, scaled to ``size`` x ``size``.

    The enclosing box is cut out and scaled (with antialiasing) to the output's
    resolution first, so the rotation resamples at 1:1 and does not alias.
    """
    box = _rotated_bbox(side, angle)
    top, left = int(round(cy - box / 2)), int(round(cx - box / 2))
    region = image[:, top:top + box, left:left + box]
    if angle == 0.0 and not flip and abs(side - round(side)) < 1e-6 and box - 2 == round(side):
        return crop_resize(image, top + 1, left + 1, int(round(side)), size)
    out_box = max(size, int(round(box * size / side)))
    region = _resize(region, (out_box, out_box))
    scale = (side / size) * (out_box / box)  # output pixels -> region pixels (about 1)
    # the crop's centre inside the resampled region (continuous coords, pixel centres at k + 0.5)
    ry = (cy - top) * out_box / box
    rx = (cx - left) * out_box / box
    offs = (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) * scale
    v, u = torch.meshgrid(offs, offs, indexing="ij")
    if flip:
        u = -u
    cos, sin = math.cos(angle), math.sin(angle)
    x = rx + cos * u - sin * v
    y = ry + sin * u + cos * v
    grid = torch.stack((2 * x / out_box - 1, 2 * y / out_box - 1), dim=-1)[None]
    out = F.grid_sample(region[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].clamp_(0.0, 1.0).contiguous()


@dataclass(frozen=True)
class _Box:
    top: int
    left: int
    height: int
    width: int

    def intersects(self, top: float, left: float, height: float, width: float) -> bool:
        return not (top >= self.top + self.height or top + height <= self.top
                    or left >= self.left + self.width or left + width <= self.left)


def _val_box(height: int, width: int, fraction: float, size: int, rng: np.random.Generator) -> _Box | None:
    """The held-out rectangle of an image: ``fraction`` of its area, at least one crop big,
    leaving room for training crops; None when the image is too small for both."""
    if fraction <= 0:
        return None
    bh = min(height, max(size, int(round(height * math.sqrt(fraction)))))
    bw = min(width, max(size, int(round(width * math.sqrt(fraction)))))
    if height - bh < size and width - bw < size:
        return None
    return _Box(int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1)), bh, bw)


def _val_crops(box: _Box, size: int, max_scale: float) -> list[tuple[int, int, int]]:
    """Fixed (top, left, side) crops inside ``box``: a spread of non-overlapping crops at
    scales 1, 2, 4, ... up to ``max_scale``."""
    crops = []
    scale = 1
    while scale <= max_scale:
        side = size * scale
        rows, cols = box.height // side, box.width // side
        if rows == 0 or cols == 0:
            break
        cells = [(r, c) for r in range(rows) for c in range(cols)]
        pick = np.linspace(0, len(cells) - 1, min(len(cells), VAL_CROPS_PER_SCALE)).round().astype(int)
        for i in sorted(set(pick.tolist())):
            r, c = cells[i]
            crops.append((box.top + r * side, box.left + c * side, side))
        scale *= 2
    return crops


def _item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, 0x6E66, epoch, index])


# --------------------------------------------------------------------------- datasets


class _RandomCrops(Dataset):
    """Shared sampling of training crops (scale, position, flip, rotation) from one image."""

    image_size: int
    augment: bool
    max_rotation: float
    max_crop_scale: float
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops in each epoch (deterministically from the seed)."""
        self.epoch = epoch

    def _where(self, index) -> tuple[int, int]:
        """``index`` is an int (this dataset's epoch) or an (epoch, index) pair from a sampler
        that streams several epochs (nfinpaint.train's sampler)."""
        if isinstance(index, (tuple, list)):
            return int(index[0]), int(index[1])
        return self.epoch, int(index)

    def _sample(self, image: torch.Tensor, rng: np.random.Generator, hole: _Box | None) -> torch.Tensor:
        S = self.image_size
        height, width = image.shape[-2:]
        limit = min(self.max_crop_scale, min(height, width) / S)
        for attempt in range(64):
            if attempt == 48:  # fall back to the smallest, unrotated crop (always fits somewhere)
                limit = 1.0
            side = S * math.exp(rng.uniform(0.0, math.log(limit))) if limit > 1 else float(S)
            angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation)) \
                if self.augment and self.max_rotation > 0 and attempt < 48 else 0.0
            flip = bool(self.augment and rng.random() < 0.5)
            box = _rotated_bbox(side, angle)
            if box > min(height, width):
                continue
            top = int(rng.integers(0, height - box + 1))
            left = int(rng.integers(0, width - box + 1))
            if hole is not None and hole.intersects(top, left, box, box):
                continue
            return augmented_crop(image, top + box / 2, left + box / 2, side, angle, flip, S)
        # exhaustive scan for a plain crop outside the held-out box
        for top in range(0, height - S + 1, max(1, S // 2)):
            for left in range(0, width - S + 1, max(1, S // 2)):
                if hole is None or not hole.intersects(top, left, S, S):
                    return crop_resize(image, top, left, S, S)
        raise DataError("no training crop fits outside the validation region")  # _val_box prevents this


class RegionCrops(_RandomCrops):
    """Random crops of in-memory images, avoiding each image's held-out rectangle."""

    def __init__(self, images: list[tuple[str, torch.Tensor]], holdout: list[_Box | None], image_size: int, *,
                 seed: int, augment: bool, max_rotation: float, max_crop_scale: float,
                 length: int | None = None):
        self.names = [name for name, _ in images]
        self.images = [image for _, image in images]
        self.holdout = holdout
        self.image_size, self.seed, self.augment = image_size, seed, augment
        self.max_rotation, self.max_crop_scale = max_rotation, max_crop_scale
        areas = np.array([img.shape[-1] * img.shape[-2] - (b.height * b.width if b else 0)
                          for img, b in zip(self.images, holdout)], dtype=np.float64)
        # every image equally often: by area, one large flat photo would dominate
        self.weights = np.full(len(self.images), 1.0 / len(self.images))
        # one "epoch" ~ as many crops as the training area holds at the smallest scale
        self.length = length or int(min(100_000, max(1024, areas.sum() // image_size**2)))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index) -> torch.Tensor:
        epoch, index = self._where(index)
        rng = _item_rng(self.seed, epoch, index)
        k = int(rng.choice(len(self.images), p=self.weights))
        return self._sample(self.images[k], rng, self.holdout[k])


class FileCrops(_RandomCrops):
    """Random crops of image files read on demand (folders too big to hold in memory).

    A file that fails to decode mid-run is reported once and replaced by the next
    file, so a bad file never stops training.
    """

    def __init__(self, files: list[Path], image_size: int, *, seed: int, augment: bool,
                 max_rotation: float, max_crop_scale: float):
        self.files = files
        self.image_size, self.seed, self.augment = image_size, seed, augment
        self.max_rotation, self.max_crop_scale = max_rotation, max_crop_scale
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> torch.Tensor:
        epoch, index = self._where(index)
        for k in range(len(self.files)):
            i = (index + k) % len(self.files)
            if i in self._bad:
                continue
            try:
                image = _load_file(self.files[i])
            except ImageError as exc:
                self._bad.add(i)
                warnings.warn(f"skipping {exc}", DataWarning, stacklevel=2)
                continue
            return self._sample(image, _item_rng(self.seed, epoch, index), None)
        raise DataError("none of the training images could be read")


class FixedCrops(Dataset):
    """Deterministic (top, left, side) crops of in-memory images, scaled to S; no augmentation."""

    def __init__(self, images: list[torch.Tensor], crops: list[tuple[int, int, int, int]], image_size: int):
        self.images, self.crops, self.image_size = images, crops, image_size

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        k, top, left, side = self.crops[index]
        return crop_resize(self.images[k], top, left, side, self.image_size)


class CenterCrops(Dataset):
    """Every file centre-cropped to its largest square (at most ``max_side`` pixels) and scaled to S."""

    def __init__(self, files: list[Path], image_size: int, max_side: int | None = None):
        self.files, self.image_size, self.max_side = files, image_size, max_side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _load_file(self.files[index])
        height, width = image.shape[-2:]
        side = min(height, width) if self.max_side is None else min(height, width, self.max_side)
        return crop_resize(image, (height - side) // 2, (width - side) // 2, side, self.image_size)


def _region_split(images: list[tuple[str, torch.Tensor]], image_size: int, *, val_fraction: float, seed: int,
                  augment: bool, max_rotation: float, max_crop_scale: float) -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x7661])
    holdout, val_crops = [], []
    for k, (name, image) in enumerate(images):
        height, width = image.shape[-2:]
        box = _val_box(height, width, val_fraction, image_size, rng)
        holdout.append(box)
        if box is not None:
            val_crops += [(k, *crop) for crop in _val_crops(box, image_size, max_crop_scale)]
    if val_fraction > 0 and not val_crops:
        raise DataError(f"the images are too small to hold out a {image_size}x{image_size} validation region "
                        f"and still train; use larger or more images, or val_fraction = 0")
    train = RegionCrops(images, holdout, image_size, seed=seed, augment=augment, max_rotation=max_rotation,
                        max_crop_scale=max_crop_scale)
    return train, FixedCrops([image for _, image in images], val_crops, image_size)


def build_datasets(data_dir: str | None, image_size: int, *, val_fraction: float = 0.1, seed: int = 0,
                   augment: bool = True, max_rotation: float = 15.0,
                   max_crop_scale: float = 4.0) -> tuple[Dataset, Dataset]:
    """Training and validation datasets of (3, S, S) float32 crops in [0, 1].

    ``data_dir=None`` uses the embedded scikit-image photographs.  The split is
    deterministic from ``seed`` and disjoint (by region, or by file for folders
    of ``FILE_SPLIT_MIN`` images or more); validation items are never
    augmented.  Raises :class:`DataError` for an empty folder, a folder without
    readable images or an image smaller than the crop.
    """
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    opts = dict(seed=seed, augment=augment, max_rotation=max_rotation, max_crop_scale=max_crop_scale)
    if data_dir is None:
        images = [(name, _array_to_tensor(array)) for name, array in _embedded_arrays()]
        return _region_split(images, image_size, val_fraction=val_fraction, **opts)
    found = _readable_images(data_dir, image_size, decode=False)
    if len(found) < FILE_SPLIT_MIN:
        images = []
        for path, _, _ in found:
            try:
                images.append((str(path), _load_file(path)))
            except ImageError as exc:
                warnings.warn(f"skipping {exc}", DataWarning, stacklevel=2)
        if not images:
            raise DataError(f"{data_dir}: none of the image files could be read")
        return _region_split(images, image_size, val_fraction=val_fraction, **opts)
    files = [path for path, _, _ in found]
    order = np.random.default_rng([seed & 0xFFFFFFFF, 0x6669]).permutation(len(files))
    n_val = int(round(len(files) * val_fraction))
    val_files = sorted(files[i] for i in order[:n_val])
    train_files = sorted(files[i] for i in order[n_val:])
    train = FileCrops(train_files, image_size, **opts)
    # validation crops at the middle of the training scales
    val_side = int(round(image_size * math.sqrt(max_crop_scale)))
    return train, CenterCrops(val_files, image_size, max_side=val_side)


def folder_dataset(data_dir: str, image_size: int) -> Dataset:
    """Every readable image under ``data_dir``, centre-cropped to its largest square and scaled
    to ``image_size`` (for evaluating on a user's test folder), in sorted path order.

    Unreadable files and images smaller than the crop are reported (a
    :class:`DataWarning` naming the file) and skipped; an empty folder or no
    usable image raise :class:`DataError`.
    """
    found = _readable_images(data_dir, image_size, decode=True, skip_small=True)
    dataset = CenterCrops([path for path, _, _ in found], image_size)
    dataset.names = [str(path) for path, _, _ in found]
    return dataset


def describe(dataset: Dataset) -> str:
    """One line on what a dataset holds (for logs)."""
    if isinstance(dataset, RegionCrops):
        return f"{len(dataset.images)} images, random crops ({len(dataset)} per epoch)"
    if isinstance(dataset, FileCrops):
        return f"{len(dataset.files)} image files, random crops"
    if isinstance(dataset, FixedCrops):
        return f"{len(dataset)} fixed crops"
    return f"{len(dataset)} items"
