"""Training and evaluation data: crops of photographs as (3, S, S) float32 tensors in [0, 1].

Two sources:

- a folder tree of images (any format PIL reads; files that cannot be read are
  reported with a warning naming them and skipped);
- ``data_dir=None``: the *embedded default*, the colour photographs that ship
  inside scikit-image (``skimage.data``: astronaut, chelsea, coffee, rocket,
  immunohistochemistry, hubble_deep_field, stereo_motorcycle's left view),
  seven images, about 2.4 megapixels in all.  Small, but it needs no download.

Training images are decoded once into an :class:`~nfinpaint.crop_store.ImageStore`
and cut into random crops a whole batch at a time (:mod:`nfinpaint.crop_store`):
several scales (``image_size`` up to ``max_crop_scale * image_size`` source
pixels, scaled to ``image_size``), with the paper's augmentation: horizontal
flip, shift (the crop's random position) and rotation.  Every random choice
of item ``i`` is a counter-based hash of ``(seed, i)``, so the data do not
depend on batch size, workers or device, and a resumed run sees exactly the
items it would have seen.

The validation split is held out *by region*: from each photograph (or each
image of a folder with few images) a rectangle of ``val_fraction`` of its area,
placed by the seed, serves validation only, and no training crop touches it.
A folder with many images (``>= FILE_SPLIT_MIN`` files) is split by file
instead, and a separate validation folder (``val_dir``) replaces the split.
Validation items are fixed crops, never augmented.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import math
import numbers
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from nfinpaint.crop_store import Holdout, ImageStore, RandomCrops
from nfinpaint.errors import NfinpaintError
from nfinpaint.files import marker_kind
from nfinpaint.images import IMAGE_SUFFIXES, OPEN_ERRORS, ImageError, load_pixels, open_error, pil_to_tensor

# skimage.data's colour photographs that load offline.  ("retina" also does, but is mostly
# flat orange and would dominate by area; "cat" is "chelsea" again.)
EMBEDDED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                   "hubble_deep_field", "stereo_motorcycle")
# Folders with at least this many images are split by file; smaller ones by region.
FILE_SPLIT_MIN = 20
# Validation crops per scale per image, embedded / region-split sources.
VAL_CROPS_PER_SCALE = 8


@dataclass(frozen=True)
class DataSplit:
    """Which crops of a data set are held out for validation, and at which scales crops are cut: the one
    definition of these options and their defaults.

    Training builds its data with its config's split (``TrainConfig.split()``); the generator it
    exports stores the split verbatim in its meta (``meta["split"]``, :meth:`as_meta`), and evaluation
    hands it back here (:meth:`from_meta`, then :func:`build_datasets`) to hold the same crops out.
    """

    val_fraction: float = 0.1       # held-out share of the data (by image region or by file)
    seed: int = 0                   # which regions or files are held out (training's seed)
    max_crop_scale: float = 4.0     # crops span image_size .. max_crop_scale * image_size source pixels

    def as_meta(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict, seed: int | None = None) -> "DataSplit":
        """The split a generator file records (``meta["split"]``); a file written before the split was
        stored as one value has its keys at the top level of the meta (or under ``config``), and a key
        it lacks has this class's default.  ``seed`` overrides the recorded seed."""
        if isinstance(meta.get("split"), dict):
            sources = [meta["split"]]
        elif meta.get("split") is not None:
            # a damaged meta: the defaults would hold out other crops than training did, silently
            raise DataError(f"the generator file's meta has split {meta['split']!r}, not a table of "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}: export the generator again")
        else:
            sources = [meta, meta.get("config") if isinstance(meta.get("config"), dict) else {}]
        values = {}
        for f in dataclasses.fields(cls):
            found = next((source[f.name] for source in sources if source.get(f.name) is not None), f.default)
            kinds = (numbers.Integral,) if isinstance(f.default, int) else (numbers.Real,)
            if isinstance(found, bool) or not isinstance(found, kinds) or not math.isfinite(found):
                raise DataError(f"the generator file's meta has split {f.name} {found!r}, not a "
                                f"{'whole ' if kinds[0] is numbers.Integral else ''}number: export the generator again")
            values[f.name] = type(f.default)(found)
        if seed is not None:
            values["seed"] = seed
        return cls(**values)

    def describe(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.as_meta().items())


class DataError(NfinpaintError, ValueError):
    """Data that cannot be used (empty folder, no readable image, image too small), with what to do."""


class DataWarning(UserWarning):
    """A file that was skipped (e.g. not a readable image)."""


@dataclass(frozen=True)
class OptionNames:
    """What the command that builds the data calls the settings a :class:`DataError` asks to change:
    by default training's (``python -m nfinpaint.train``: its ``--data`` option, its ``val_data`` and
    ``image_size`` config keys; evaluate's ``--data`` too); ``feature_pretrain`` passes its own
    (``--data``, ``--val-data``, ``--crop-size``)."""

    data: str = "--data"            # the training (or test) folder
    val_data: str = "val_data"      # the separate validation folder
    image_size: str = "image_size"  # the side of the crops


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


def files_digest(*folders: str | None) -> str | None:
    """A digest of the image files under ``folders`` (each file's path within its folder and its size):
    what a resumed run checks it trains on the files its checkpoint trained on (the crops, and the split
    by file, follow the files found).  None for the embedded pictures (no folder), and for a folder
    without image files (reading the data says so, naming the option)."""
    if not any(folders):
        return None
    digest = hashlib.sha256()
    for folder in folders:
        if folder:
            try:
                with warnings.catch_warnings():     # what it skips is said when the data is read
                    warnings.simplefilter("ignore", DataWarning)
                    files = find_image_files(folder)
            except DataError:
                return None
            for path in files:
                digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\n".encode("utf-8", "surrogateescape"))
        digest.update(b"\x1e")         # the training folder's files, then the validation folder's
    return digest.hexdigest()


def find_image_files(data_dir: str | os.PathLike, option: str = OptionNames.data) -> list[Path]:
    """Image files (by suffix) under ``data_dir``, sorted; hidden files and folders skipped.

    Links are followed, but every image is taken once: a folder reached again
    (a link loop such as ``sub/loop -> ..``) is not walked twice, and a file
    reached by several paths (links, hard links) or held twice (a byte-for-byte
    copy) counts once (the first path in sorted order), so the split cannot put
    copies of one image on both sides; how many were dropped is said in a
    :class:`DataWarning`.  Anything that is not a regular file (a FIFO, a
    device: reading one could block forever), a subfolder that cannot be listed
    and the folders the commands write their outputs to (marked with
    ``files.MARKER``) are skipped with a warning.  ``option`` is what the command
    calls the folder, for the errors.
    """
    root = Path(data_dir)
    if not root.exists():
        raise DataError(f"{root}: no such folder; point {option} at a folder of images")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; point {option} at a folder of images")
    try:
        os.scandir(root).close()
    except OSError as exc:          # os.walk would say nothing, and no image would be found
        raise DataError(f"{root}: the folder cannot be listed ({exc.strerror or exc}); point {option} at a "
                        f"folder of images you can read") from None

    def unlisted(exc: OSError) -> None:     # a subfolder left out without a word, its images untrained
        warnings.warn(f"skipping {exc.filename}: the folder cannot be listed ({exc.strerror or exc})",
                      DataWarning, stacklevel=3)

    files, seen_files, seen_dirs, dup_dirs, dup_files = [], set(), set(), 0, 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unlisted):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:          # reached again through a link (a loop, a mirror): walked already
            dup_dirs += 1
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        if dirpath != str(root) and marker_kind(dirpath) is not None:
            warnings.warn(f"skipping {dirpath}: the output folder of an nfinpaint {marker_kind(dirpath)}, "
                          f"not data", DataWarning, stacklevel=2)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError:            # a dangling link
                regular = False
            if not regular:
                warnings.warn(f"skipping {path}: not a regular file", DataWarning, stacklevel=2)
                continue
            real = os.path.realpath(path)
            if real in seen_files:
                dup_files += 1
                continue
            seen_files.add(real)
            files.append(path)
    if dup_dirs or dup_files:
        warnings.warn(f"{root}: dropped {dup_dirs + dup_files} duplicate path(s) reached again through links "
                      f"({dup_dirs} folder(s), {dup_files} file(s)): each image is taken once",
                      DataWarning, stacklevel=2)
    copies = dict(identical_files(files))
    if copies:
        first = next(iter(copies.items()))
        warnings.warn(f"{root}: dropped {len(copies)} file(s) identical to another one (hard links or byte-for-byte "
                      f"copies, e.g. {first[0]} = {first[1]}): each image is taken once", DataWarning, stacklevel=2)
        files = [path for path in files if path not in copies]
    if not files:
        raise DataError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                        f"point {option} at a folder of images")
    return files


def identical_files(files: list[Path], others: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(file, the one it is identical to): hard links of one file and byte-for-byte copies.  Without
    ``others``, each file of ``files`` identical to an earlier one; with them, each file of ``files``
    identical to one of ``others``.  Only files of one size are read (a hash of their bytes)."""
    size = {path: path.stat().st_size for path in (*files, *(others or ()))}     # one stat a file
    if others is None:      # sizes seen twice or more
        sizes = {s for s, n in collections.Counter(size[path] for path in files).items() if n > 1}
    else:
        sizes = {size[path] for path in others}

    @functools.cache
    def digest(path: Path) -> bytes | Path:
        try:
            return hashlib.sha256(path.read_bytes()).digest()
        except OSError:     # unreadable: like no other file (reading it says why, in its own warning)
            return path

    seen = {} if others is None else {digest(path): path for path in others if size[path] in sizes}
    out = []
    for path in files:
        if size[path] not in sizes:
            continue
        key = digest(path)
        if key in seen:
            out.append((path, seen[key]))
        elif others is None:
            seen[key] = path
    return out


def _probe(path: Path, decode: bool) -> tuple[int, int] | None:
    """(height, width) of an image file, or None (with a warning) when it cannot be read."""
    try:
        with Image.open(path) as img:
            if decode:
                load_pixels(img)      # (a TIFF's size as every reader here turns it)
            width, height = img.size
    except OPEN_ERRORS as exc:
        warnings.warn(f"skipping {open_error(path, exc)}", DataWarning, stacklevel=3)
        return None
    return height, width


def _readable_images(data_dir: str | os.PathLike, min_side: int, decode: bool, skip_small: bool = False,
                     option: str = OptionNames.data,
                     size_option: str = OptionNames.image_size) -> list[tuple[Path, int, int]]:
    """(path, height, width) of every readable image under ``data_dir``; ``option`` and ``size_option``
    are what the command calls the folder and the crop side, named in its errors."""
    files = find_image_files(data_dir, option)
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
                            f"remove it from {option} {data_dir}, or use a smaller {size_option}")
        found.append((path, *size))
    if not found:
        raise DataError(f"{data_dir}: none of the {len(files)} image files could be read"
                        + (f" at {min_side}x{min_side} or larger" if skip_small else "")
                        + f"; fix or replace them, or point {option} at another folder")
    return found


def _load_file(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return pil_to_tensor(img, path)
    except OPEN_ERRORS as exc:
        raise open_error(path, exc) from None


# --------------------------------------------------------------------------- geometry


def _resize(region: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(region.shape[-2:]) == tuple(size):
        return region
    return F.interpolate(region[None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp_(0.0, 1.0)


def crop_resize(image: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """The ``side`` x ``side`` crop at (top, left) of a (3, H, W) image, scaled to size x size."""
    return _resize(image[:, top:top + side, left:left + side], (size, size)).contiguous()


def _val_box(height: int, width: int, fraction: float, size: int, rng: np.random.Generator) -> Holdout | None:
    """The held-out rectangle of an image: ``fraction`` of its area, at least one crop big,
    leaving room for training crops; None when the image is too small for both."""
    if fraction <= 0:
        return None
    bh = min(height, max(size, int(round(height * math.sqrt(fraction)))))
    bw = min(width, max(size, int(round(width * math.sqrt(fraction)))))
    if height - bh < size and width - bw < size:
        return None
    top, left = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
    if max(top, height - bh - top, left, width - bw - left) < size:
        # the room around the box is split into strips each narrower than a crop (a 48 px image,
        # 24 px crops, the box in the middle): the box goes to the nearer end of an axis with room,
        # which leaves one whole strip. Placements that leave room are kept, so splits do not move
        if width - bw >= size:
            left = 0 if left <= width - bw - left else width - bw
        else:
            top = 0 if top <= height - bh - top else height - bh
    return Holdout(top, left, bh, bw)


def _val_crops(box: Holdout, size: int, max_scale: float) -> list[tuple[int, int, int]]:
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


# --------------------------------------------------------------------------- datasets


class FixedCrops(Dataset):
    """Deterministic (k, top, left, side) crops of in-memory named images, scaled to S; no augmentation.
    ``names[i]``: the name of the image crop ``i`` comes from."""

    def __init__(self, images: list[tuple[str, torch.Tensor]], crops: list[tuple[int, int, int, int]],
                 image_size: int):
        self.images = [image for _, image in images]
        self.crops, self.image_size = crops, image_size
        self.names = [images[k][0] for k, *_ in crops]

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        k, top, left, side = self.crops[index]
        return crop_resize(self.images[k], top, left, side, self.image_size)


class CenterCrops(Dataset):
    """Every file centre-cropped to its largest square (at most ``max_side`` pixels) and scaled to S."""

    def __init__(self, files: list[Path], image_size: int, max_side: int | None = None):
        self.files, self.image_size, self.max_side = files, image_size, max_side
        self.names = [str(path) for path in files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _load_file(self.files[index])
        height, width = image.shape[-2:]
        side = min(height, width) if self.max_side is None else min(height, width, self.max_side)
        return crop_resize(image, (height - side) // 2, (width - side) // 2, side, self.image_size)


def _training_crops(images: list[tuple[str, torch.Tensor]], image_size: int, **options) -> RandomCrops:
    """Random crops of named images, decoded into one store (see nfinpaint.crop_store)."""
    store = ImageStore([image for _, image in images], image_size, names=[name for name, _ in images])
    return RandomCrops(store, image_size, **options)


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
    train = _training_crops(images, image_size, seed=seed, augment=augment, max_rotation=max_rotation,
                            max_crop_scale=max_crop_scale, holdout=holdout)
    return train, FixedCrops(images, val_crops, image_size)


def _load_files(paths: list[Path], what: str, progress: bool = True) -> list[tuple[str, torch.Tensor]]:
    """Decode every file once (threads: PIL releases the GIL while decoding); unreadable files
    are reported with a :class:`DataWarning` and skipped.  ``progress``: a bar for 20 files or more."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from tqdm import tqdm  # noqa: PLC0415

    def load(path: Path) -> tuple[str, torch.Tensor] | ImageError:
        try:
            return str(path), _load_file(path)
        except ImageError as exc:
            return exc

    images = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(load, paths)
        for result in tqdm(results, total=len(paths), desc=f"decoding {what}", disable=not progress or len(paths) < 20,
                           leave=False, dynamic_ncols=True):
            if isinstance(result, ImageError):
                warnings.warn(f"skipping {result}", DataWarning, stacklevel=3)
            else:
                images.append(result)
    return images


def _file_split(train_files: list[Path], val_files: list[Path], image_size: int, *, seed: int, augment: bool,
                max_rotation: float, max_crop_scale: float, names: OptionNames = OptionNames(),
                val_dir: str | os.PathLike | None = None, progress: bool = True) -> tuple[Dataset, Dataset]:
    """Train on every crop of ``train_files``; validate on fixed crops of ``val_files`` (from the separate
    folder ``val_dir`` when there is one, else held out of the training folder)."""
    images = _load_files(train_files, "training images", progress)
    if not images:
        example = f" (e.g. {train_files[0]})" if train_files else ""
        raise DataError(f"none of the {len(train_files)} training image files could be read{example}; fix or "
                        f"replace them, or point {names.data} at another folder")
    train = _training_crops(images, image_size, seed=seed, augment=augment, max_rotation=max_rotation,
                            max_crop_scale=max_crop_scale)
    val_images = _load_files(val_files, "validation images", progress)
    if val_files and not val_images:   # training on without the validation that was asked for
        remedy = (f"fix or replace them, or point {names.val_data} at another folder" if val_dir is not None
                  else f"fix or replace them (the validation files held out of {names.data})")
        raise DataError(f"none of the {len(val_files)} validation image files could be read (e.g. "
                        f"{val_files[0]}); {remedy}")
    return train, fixed_crops(val_images, image_size, max_crop_scale)


def fixed_crops(images: list[tuple[str, torch.Tensor]], image_size: int, max_crop_scale: float) -> "FixedCrops":
    """Deterministic crops spread over whole images (up to ``VAL_CROPS_PER_SCALE`` per scale, at
    scales 1, 2, 4, ... up to ``max_crop_scale``): the validation and test crops of held-out files."""
    crops = []
    for k, (_, image) in enumerate(images):
        height, width = image.shape[-2:]
        crops += [(k, *crop) for crop in _val_crops(Holdout(0, 0, height, width), image_size, max_crop_scale)]
    return FixedCrops(images, crops, image_size)


def build_datasets(data_dir: str | None, image_size: int, *, val_fraction: float = DataSplit.val_fraction,
                   seed: int = DataSplit.seed, augment: bool = True, max_rotation: float = 15.0,
                   max_crop_scale: float = DataSplit.max_crop_scale,
                   val_dir: str | None = None, names: OptionNames = OptionNames(),
                   progress: bool = True) -> tuple[Dataset, Dataset]:
    """Training crops (:class:`~nfinpaint.crop_store.RandomCrops`, cut in batches) and a
    validation dataset of fixed (3, S, S) float32 crops in [0, 1].

    ``data_dir=None`` uses the embedded scikit-image photographs.  The split is
    deterministic from ``seed`` and disjoint (``val_fraction``, ``seed`` and
    ``max_crop_scale`` are a :class:`DataSplit`'s, ``**split.as_meta()``): with ``val_dir`` the validation
    crops come from that folder's files and training uses all of ``data_dir``;
    otherwise by region (a held-out rectangle per image), or by file for
    folders of ``FILE_SPLIT_MIN`` images or more.  Validation items are never
    augmented.  Raises :class:`DataError` for an empty folder, a folder without
    readable images or an image smaller than the crop, naming the option to change as the
    calling command calls it (``names``: training's by default).  ``progress``: a bar while a folder
    of 20 files or more is decoded.
    """
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    opts = dict(seed=seed, augment=augment, max_rotation=max_rotation, max_crop_scale=max_crop_scale)
    if val_dir is not None:
        if data_dir is None:
            raise DataError(f"a separate validation folder needs a training folder ({names.data}) too")
        train_files = [path for path, _, _ in _readable_images(data_dir, image_size, decode=False,
                                                               option=names.data, size_option=names.image_size)]
        val_files = [path for path, _, _ in _readable_images(val_dir, image_size, decode=False,
                                                             option=names.val_data, size_option=names.image_size)]
        # the same file (a link, a hard link) or a byte-for-byte copy: validated on what it trains on
        overlap = identical_files(val_files, train_files)
        if overlap:
            raise DataError(f"{len(overlap)} file(s) of the validation folder are also in the training folder "
                            f"(the same file, or a byte-for-byte copy), e.g. {overlap[0][0]} = {overlap[0][1]}; "
                            f"keep the splits apart")
        return _file_split(train_files, val_files, image_size, names=names, val_dir=val_dir, progress=progress, **opts)
    if data_dir is None:
        images = [(name, _array_to_tensor(array)) for name, array in _embedded_arrays()]
        return _region_split(images, image_size, val_fraction=val_fraction, **opts)
    found = _readable_images(data_dir, image_size, decode=False, option=names.data, size_option=names.image_size)
    if len(found) < FILE_SPLIT_MIN:
        images = _load_files([path for path, _, _ in found], "images", progress)
        if not images:
            raise DataError(f"{data_dir}: none of the image files could be read; fix or replace them, or point "
                            f"{names.data} at another folder")
        return _region_split(images, image_size, val_fraction=val_fraction, **opts)
    files = [path for path, _, _ in found]
    order = np.random.default_rng([seed & 0xFFFFFFFF, 0x6669]).permutation(len(files))
    # at least one file when asked for any: rounded to none, the run trained without validation, silently
    n_val = max(1, int(round(len(files) * val_fraction))) if val_fraction > 0 else 0
    if n_val >= len(files):
        raise DataError(f"val_fraction = {val_fraction} holds out all {len(files)} image files of {data_dir} "
                        f"for validation and leaves none to train on; use a smaller val_fraction")
    val_files = sorted(files[i] for i in order[:n_val])
    train_files = sorted(files[i] for i in order[n_val:])
    return _file_split(train_files, val_files, image_size, names=names, progress=progress, **opts)


FOLDER_CROPS = ("center", "grid")


def folder_dataset(data_dir: str, image_size: int, crops: str = "center",
                   max_crop_scale: float = DataSplit.max_crop_scale) -> Dataset:
    """Every readable image under ``data_dir`` as fixed crops (for evaluating on a test folder), in
    sorted path order: ``crops="center"``, each image centre-cropped to its largest square and
    scaled to ``image_size``; ``"grid"``, the crops validation uses, spread over each whole
    image at scales 1, 2, 4, ... up to ``max_crop_scale`` (what training sees).

    Unreadable files and images smaller than the crop are reported (a
    :class:`DataWarning` naming the file) and skipped; an empty folder or no
    usable image raise :class:`DataError`.
    """
    if crops not in FOLDER_CROPS:
        raise DataError(f"crops must be one of {FOLDER_CROPS}, got {crops!r}")
    found = _readable_images(data_dir, image_size, decode=True, skip_small=True)
    if crops == "grid":
        return fixed_crops(_load_files([path for path, _, _ in found], "images"), image_size, max_crop_scale)
    return CenterCrops([path for path, _, _ in found], image_size)


def describe(dataset: Dataset) -> str:
    """One line on what a dataset holds (for logs)."""
    if isinstance(dataset, RandomCrops):
        return (f"{len(dataset.store)} images decoded once ({dataset.store.nbytes / 2**20:.0f} MiB with their "
                f"pyramids), random crops cut in batches")
    if isinstance(dataset, FixedCrops):
        return f"{len(dataset)} fixed crops"
    return f"{len(dataset)} items"
