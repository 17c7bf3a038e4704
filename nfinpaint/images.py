"""Reading and writing images and masks as float tensors in [0, 1].

Images are (3, H, W) float32 RGB tensors in [0, 1]; masks are (1, H, W)
float32 tensors with 1 in the hole and 0 elsewhere.  Every failure is an
:class:`ImageError` whose message names the file and says what to do.

Reading is faithful to what the file holds: 8- and 16-bit, grey, grey+alpha,
palette, CMYK and float images all come out scaled to [0, 1] (a 16-bit image
is divided by 65535, not clipped at 255), the EXIF orientation is applied (as
image viewers do, so a mask drawn over what a viewer shows matches), and the
alpha channel, when there is one, can be had separately.
"""
from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from nfinpaint.errors import NfinpaintError
from nfinpaint.files import atomic_path

# .jfif and .jpe: JPEG, as browsers on Windows save pictures from the web (they were left out without a word)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".jpe"}   # change pixels when saving (WebP is written lossless)
PALETTE_SUFFIXES = {".gif"}                       # at most 256 colours
ALPHA_SUFFIXES = {".png", ".webp", ".tif", ".tiff"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
# One grey channel of integer levels up to 16 bits: 16-bit grey in any byte order, and mode I (32-bit
# integers, PIL's mode for 16-bit PNGs of some encoders) holding 16-bit levels.
INTEGER_GREY_MODES = frozenset({"I", *_SIXTEEN_BIT_MODES})
# One grey channel deeper than 8 bits: read (and resized, by picture_eval) as floats, never through 8 bits.
DEEP_GREY_MODES = frozenset({"F", *INTEGER_GREY_MODES})
# Modes of one grey channel (with alpha or not): such a picture is filled and written back grey.
_GREY_MODES = {"1", "L", "LA", "La", *DEEP_GREY_MODES}


class ImageError(NfinpaintError, ValueError):
    """An image or mask file that cannot be used, with the reason."""


class ImageWarning(UserWarning):
    """Something of an image file that is not read (extra frames or pages, colour depth)."""


# What PIL raises for a file it cannot read; DecompressionBombError (a header declaring more pixels
# than Image.MAX_IMAGE_PIXELS allows, twice over) is none of the others, and the AVIF and BLP decoders
# raise RuntimeError and NotImplementedError (one of them) for a damaged file.  Counting the frames of a
# damaged multi-page TIFF or a cut-off animated GIF raised TypeError, KeyError and IndexError, which
# stopped a whole folder run with a traceback; struct.error and EOFError come from its frame readers too.
OPEN_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError,
               TypeError, KeyError, IndexError, struct.error, EOFError)


def open_error(path: str | os.PathLike, exc: BaseException) -> "ImageError":
    """The one-line :class:`ImageError` for an exception of :data:`OPEN_ERRORS` reading ``path``."""
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "more pixels than allowed"
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        return ImageError(f"{path}: its header declares {size}, more than the {limit:,.0f} megapixels that are "
                          f"decoded (a guard against decompression bombs: a small file that would fill the "
                          f"memory); refused")
    return ImageError(f"{path}: not a readable image ({exc})")


def check_regular_file(path: Path) -> None:
    """ImageError unless ``path`` is a regular file: a folder or a missing file said as such, and
    a FIFO or device refused (reading one may block forever, or never end: /dev/zero)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError(f"{path}: a link to {os.readlink(path)}, which does not exist; "
                             f"mend or remove the link") from None
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{path} is a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise ImageError(f"{path} is not a regular file (a pipe, socket or device); give an image file")


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    check_regular_file(path)
    try:
        img = Image.open(path)
        frames = getattr(img, "n_frames", 1)
        raw_modes = load_pixels(img)
    except OPEN_ERRORS as exc:
        raise open_error(path, exc) from None
    if frames > 1:
        warnings.warn(f"{path} has {frames} frames or pages: only the first is read", ImageWarning, stacklevel=3)
    # PIL decodes 16-bit colour (RGB/RGBA) PNGs to 8 bits per channel; say so, and count them as 16-bit
    if img.info["nfinpaint_16bit_colour"]:
        grey = is_grey_alpha_16(raw_modes)
        img = grey_again(img, raw_modes)
        warnings.warn(f"{path} has 16 bits per {'grey and alpha' if grey else 'colour'} channel: it is read "
                      f"at 8 bits per channel", ImageWarning, stacklevel=3)
    return img


def is_grey_alpha_16(raw_modes: list[str]) -> bool:
    """Whether a picture that :func:`load_pixels` decoded (``raw_modes``, its return) is 16-bit grey+alpha."""
    return any("LA;16" in raw for raw in raw_modes)


def grey_again(img: Image.Image, raw_modes: list[str]) -> Image.Image:
    """A 16-bit grey+alpha picture, which PIL decodes as 8-bit RGBA, as LA with its info (its colour
    profile, for grey, still fits); any other picture as it is."""
    if not is_grey_alpha_16(raw_modes):
        return img
    info = img.info
    img = img.convert("LA")
    img.info.update(info)
    return img


def load_pixels(img: Image.Image) -> list[str]:
    """``img.load()``, keeping in ``img.info`` what PIL's decoding hides and a tRNS colour is stored
    in: 16-bit colour read at 8 bits (``nfinpaint_16bit_colour``), 2- or 4-bit grey scaled to 8
    (``nfinpaint_grey_bits``).  Returns the tiles' raw modes (gone after load())."""
    raw_modes = [str(tile.args) for tile in getattr(img, "tile", []) or []]
    low_bytes = _low_bytes_of_keyed_rgb16(img, raw_modes)
    _load(img)
    img.info["nfinpaint_16bit_colour"] = img.mode in ("RGB", "RGBA") and any(";16" in raw for raw in raw_modes)
    if low_bytes is not None:
        img.info["nfinpaint_16bit_key_bytes"] = (np.array(img), low_bytes)
    low = re.fullmatch(r"L;([24])", raw_modes[0]) if img.mode == "L" and len(raw_modes) == 1 else None
    if low:
        img.info["nfinpaint_grey_bits"] = int(low.group(1))
    return raw_modes


def _low_bytes_of_keyed_rgb16(img: Image.Image, raw_modes: list[str]) -> np.ndarray | None:
    """(H, W, 3) uint8: each sample's low byte, for a 16-bit RGB PNG with one transparent colour (tRNS)
    not yet decoded; None for any other picture.  PIL keeps the high bytes only, but the PNG rule makes
    a pixel transparent when all 16 bits of its samples are the key's: matched on the high bytes, a dark
    opaque pixel near a black key read as transparent, outside the hole too.  The file is decoded a
    second time with the little-endian raw mode, whose "high" byte is the low byte stored."""
    key = img.info.get("transparency")
    fp = getattr(img, "fp", None)
    if (img.format != "PNG" or img.mode != "RGB" or raw_modes != ["RGB;16B"] or fp is None
            or getattr(img, "n_frames", 1) != 1 or not (isinstance(key, tuple) and len(key) == 3)):
        return None
    at = fp.tell()
    try:
        fp.seek(0)
        data = fp.read()
    finally:
        fp.seek(at)
    with Image.open(io.BytesIO(data)) as again:
        again.tile = [tile._replace(args="RGB;16L") for tile in again.tile]
        again.load()
        return np.array(again)


def exif_orientation(img: Image.Image) -> int | None:
    """The EXIF orientation (1-8; 1 when there is none), or None when the EXIF block cannot be read.

    Only the EXIF tag counts: PIL's ``getexif()`` takes ``tiff:Orientation`` from the XMP packet of a
    picture whose EXIF has none, which browsers (the server's page among them) and most viewers ignore:
    such a picture was turned here but shown unturned, and its mask, drawn as shown, filled in the wrong
    place.  That tag is taken out of the EXIF PIL keeps for ``img``, so that ``exif_transpose``
    (:func:`upright`), and PIL's TIFF reader as it decodes, turn by the EXIF tag alone."""
    try:
        exif = img.getexif()
        if 0x0112 in exif and any(key in img.info for key in ("xmp", "XML:com.adobe.xmp")) \
                and _stored_orientation(img) is None:
            del exif[0x0112]
        return int(exif.get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001  (PIL's EXIF parser raises SyntaxError, struct.error, ... on bad data)
        return None


def _stored_orientation(img: Image.Image) -> int | None:
    """The orientation tag of the EXIF block as stored (where ``getexif()`` reads it), XMP aside."""
    raw = img.info.get("exif")
    if raw is None and "Raw profile type exif" in img.info:     # PNG's older way to carry EXIF
        raw = bytes.fromhex("".join(img.info["Raw profile type exif"].split("\n")[3:]))
    if raw is not None:
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(0x0112)
    tags = getattr(img, "tag_v2", None)     # a TIFF: its first directory is its EXIF
    return None if tags is None else tags.get(0x0112)


def _load(img: Image.Image) -> None:
    """``img.load()``.  PIL's TIFF reader turns the pixels as it decodes them, by the orientation
    ``getexif()`` finds, XMP's among them: the EXIF is read first, as :func:`exif_orientation` reads
    it, and PIL keeps that."""
    if img.format == "TIFF":
        exif_orientation(img)
        if getattr(img, "_tile_size", img.size) != img.size and getattr(img, "filename", ""):
            # Pillow 13 maps an uncompressed single strip (grey, palette, RGBA) of a file opened by name
            # at the picture's upright size, not its stored one, when its orientation turns it (5-8):
            # the pixels came out scrambled. Without a name it reads them through the file object, and
            # turns them right.
            name, img.filename = img.filename, ""
            try:
                img.load()
            finally:
                img.filename = name
            return
    img.load()


def upright(img: Image.Image, name: str | os.PathLike = "the picture", in_place: bool = False) -> Image.Image | None:
    """``ImageOps.exif_transpose(img, in_place=...)``, except that a damaged EXIF block (which PIL
    decodes around, but exif_transpose raises on) is ignored with an :class:`ImageWarning`: the
    picture is left as stored, as one without EXIF is (and as :func:`header_size` sizes it).  The pixels
    are decoded first, so that a picture that does not decode raises (OSError, ...) here: reading a PNG's
    EXIF decodes the whole file, and a decoding error met there (caught as a damaged EXIF block) left
    PIL holding the part-decoded pixels as loaded, read on as a mostly black picture."""
    _load(img)
    orientation = exif_orientation(img)
    if orientation is None:
        warnings.warn(f"{name}: its EXIF block is damaged: ignored (the picture is read as stored, unturned)",
                      ImageWarning, stacklevel=2)
        return None if in_place else img
    key_bytes = img.info.get("nfinpaint_16bit_key_bytes")
    out = ImageOps.exif_transpose(img, in_place=in_place)
    if key_bytes is not None and orientation in _UPRIGHT:      # turned with the pixels they belong to
        (img if in_place else out).info["nfinpaint_16bit_key_bytes"] = tuple(
            np.ascontiguousarray(turned_upright(a, orientation)) for a in key_bytes)
    return out


# EXIF orientation -> the numpy turn that shows stored (H, W, ...) pixels upright (as exif_transpose), and back
_UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
            6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
_STORED = {**_UPRIGHT, 6: _UPRIGHT[8], 8: _UPRIGHT[6]}


def turned_upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, ...) ``array`` of pixels as stored, turned as EXIF ``orientation`` shows them (a view)."""
    return _UPRIGHT.get(orientation, lambda a: a)(array)


def turned_back(array: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of :func:`turned_upright` (a view)."""
    return _STORED.get(orientation, lambda a: a)(array)


_KEYED_MODES = {"1", "L", "RGB", *INTEGER_GREY_MODES}


def colour_key_alpha(img: Image.Image) -> np.ndarray | None:
    """(H, W) uint8 alpha of a grey or RGB picture with one transparent colour (PNG tRNS, which PIL
    gives as ``info['transparency']`` and drops when it converts): 0 where a pixel is that colour,
    255 elsewhere.  None for a picture without one (palette ones included: PIL converts those)."""
    key = img.info.get("transparency")
    if img.mode not in _KEYED_MODES or key is None or isinstance(key, bytes):
        return None
    if img.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return None
        pixels = np.asarray(img)
        if img.info.get("nfinpaint_16bit_colour"):
            # PIL keeps each 16-bit channel's high byte; the low ones load_pixels kept, while the pixels
            # are still the ones it read them with (not turned, cropped or edited since)
            key16 = np.asarray(key, np.int64)
            hit = (pixels == key16 >> 8).all(axis=2)
            high, low = img.info.get("nfinpaint_16bit_key_bytes", (None, None))
            if high is not None and high.shape == pixels.shape and np.array_equal(high, pixels):
                hit &= (low == key16 & 0xFF).all(axis=2)
            else:
                warnings.warn("a 16-bit colour picture with one transparent colour, read at 8 bits: pixels "
                              "within 1/256 of that colour are read as transparent too", ImageWarning,
                              stacklevel=2)
        else:
            hit = (pixels == np.asarray(key, np.int64)).all(axis=2)
    else:
        if not isinstance(key, int):
            return None
        if img.mode in ("1", "L"):
            levels = np.asarray(img.convert("L"))
            bits = img.info.get("nfinpaint_grey_bits")
            if bits:     # the key is in the stored bits; PIL scaled the pixels to 0..255
                key = key * 255 // (2 ** bits - 1)
        else:
            levels = sixteen_bit_levels(img)
        hit = levels == key
    return np.where(hit, 0, 255).astype(np.uint8)


def key_as_alpha(img: Image.Image) -> Image.Image | None:
    """An 8-bit grey or RGB picture with one transparent colour as LA / RGBA (alpha 0 on that colour),
    whose alpha every fill passes through; None for any other picture (16-bit grey, which Pillow has
    no grey+alpha mode for, keeps its level instead: :func:`keep_transparent_level`)."""
    alpha = colour_key_alpha(img) if img.mode not in DEEP_GREY_MODES else None
    if alpha is None:
        return None
    with_alpha = img.convert("L" if img.mode in ("1", "L") else "RGB")
    with_alpha.info.pop("transparency", None)
    with_alpha.info.pop("nfinpaint_16bit_key_bytes", None)     # read into the alpha: not carried on
    with_alpha.putalpha(Image.fromarray(alpha))
    return with_alpha


# numpy's dtype for the bytes of each of INTEGER_GREY_MODES
_INTEGER_GREY_DTYPES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2", "I": "=i4"}


def integer_grey_image(levels: np.ndarray, mode: str) -> Image.Image:
    """(H, W) 16-bit levels as a PIL image of 16-bit grey ``mode`` (any byte order) or of mode I."""
    if mode == "I":
        return Image.fromarray(levels.astype(np.int32), "I")
    return Image.frombytes(mode, (levels.shape[1], levels.shape[0]),
                           levels.astype(_INTEGER_GREY_DTYPES[mode]).tobytes())


def keep_transparent_level(image: Image.Image, filled: Image.Image) -> Image.Image:
    """``filled`` with the transparent level of 16-bit grey ``image`` (PNG tRNS, in any byte order or
    mode I; Pillow has no 16-bit grey+alpha mode to fill it as), treated as alpha is: a pixel that had
    it keeps it, a filled pixel that lands on it moves one level off, and the PNG is written with it."""
    key = image.info.get("transparency")
    if image.mode not in INTEGER_GREY_MODES or filled.mode != image.mode or not isinstance(key, int) \
            or not 0 <= key <= 65535:
        return filled
    result = integer_grey_image(with_transparent_level(sixteen_bit_levels(filled), sixteen_bit_levels(image) == key,
                                                       key), image.mode)
    result.info["transparency"] = key
    return result


def with_transparent_level(levels: np.ndarray, was: np.ndarray, key: int) -> np.ndarray:
    """(H, W) 16-bit grey ``levels``, changed in place, with the transparent level ``key``: the pixels
    that had it (``was``) keep it, and a filled pixel that lands on it moves one level off."""
    levels[(levels == key) & ~was] = key + 1 if key < 65535 else key - 1
    levels[was] = key
    return levels


def sixteen_bit_levels(img: Image.Image) -> np.ndarray:
    """(H, W) uint16 levels of a 16-bit grey image (I;16, any byte order) or of a 32-bit integer one
    (mode I: PIL's mode for 16-bit PNGs of some encoders), which must hold 16-bit values (else ImageError)."""
    array = np.asarray(img)
    if img.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
        raise ImageError(f"32-bit integer image with values in [{array.min()}, {array.max()}]: "
                         f"only 16-bit ranges (0..65535) can be read")
    return array.astype(np.uint16)


def _grey_scale(img: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1] of a one-channel integer or float image."""
    if img.mode != "F":
        return sixteen_bit_levels(img).astype(np.float32) / 65535.0
    array = np.asarray(img).astype(np.float32)   # "F": floats, taken as [0, 1] intensities
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ImageError("float image with values outside [0, 1]; save it scaled to [0, 1] or as 8/16-bit")
    return array


def header_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as it is read (EXIF orientation applied), from its header
    alone: the pixels are not decoded, so a size mismatch is found before a large picture is."""
    path = Path(path)
    check_regular_file(path)
    try:
        with warnings.catch_warnings():
            # the warning for a large picture belongs to decoding it, if it comes to that
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return upright_size(img)
    except OPEN_ERRORS as exc:
        raise open_error(path, exc) from None


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened, not yet decoded ``img`` turned by its EXIF orientation (none for
    a damaged EXIF block, as :func:`upright` reads it)."""
    width, height = img.size
    if exif_orientation(img) not in (5, 6, 7, 8):     # transposed or turned by 90 degrees
        return width, height
    # Pillow gives a turned TIFF its upright size when it opens it (and turns the pixels when it
    # decodes them): turned once more, its mask was refused whichever way it was drawn
    if img.format == "TIFF" and (img.tag_v2.get(256), img.tag_v2.get(257)) == (height, width):
        return width, height
    return height, width


def _unit_floats(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 in [0, 1], stored channel-first: a view of a (3, H, W)
    array, so that the tensor the fill needs is a view too.  A large picture costs its uint8 copies
    and one float copy (4 bytes a value), never a float temporary besides."""
    colour = np.empty((3, *rgb8.shape[:2]), np.float32)
    np.copyto(colour, rgb8.transpose(2, 0, 1))
    colour /= 255.0
    return colour.transpose(1, 2, 0)


def pil_to_arrays(img: Image.Image, name: str | os.PathLike = "the picture") -> tuple[np.ndarray, np.ndarray | None]:
    """PIL image (any mode) -> ((H, W, 3) float32 RGB in [0, 1], (H, W) uint8 alpha or None),
    with the EXIF orientation applied (to ``img`` itself: no copy of a large picture; a damaged
    EXIF block is ignored, see :func:`upright`).  The alpha is the picture's alpha channel, its
    palette's transparency, or its one transparent colour (:func:`colour_key_alpha`)."""
    upright(img, name, in_place=True)
    if img.mode in DEEP_GREY_MODES:
        grey = _grey_scale(img)
        return np.repeat(grey[..., None], 3, axis=2), colour_key_alpha(img)
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return _unit_floats(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    try:
        rgb = img if img.mode == "RGB" else img.convert("RGB")     # convert() copies even an RGB image
    except (ValueError, OSError) as exc:
        raise ImageError(f"images of mode {img.mode} cannot be read ({exc})") from None
    return _unit_floats(np.asarray(rgb)), colour_key_alpha(img)


def pil_to_tensor(img: Image.Image, name: str | os.PathLike = "the picture") -> torch.Tensor:
    """PIL image (any mode) -> (3, H, W) float32 RGB in [0, 1] (alpha, if any, dropped); ``name`` is the
    picture's in a warning."""
    rgb, _ = pil_to_arrays(img, name)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


class Picture(NamedTuple):
    """An image file as :func:`read_image_and_alpha` reads it."""

    image: torch.Tensor               # (3, H, W) float32 RGB in [0, 1] (a grey picture's channel three times)
    alpha: torch.Tensor | None        # (H, W) uint8, or None
    bits: int                         # per channel in the file: 8, 16, or 32 (float)
    grey: bool                        # one grey channel (with or without alpha)
    level: int | None = None          # 16-bit grey's transparent level (PNG tRNS), which alpha was read from


def read_image_and_alpha(path: str | os.PathLike) -> Picture:
    """The picture at ``path`` as a :class:`Picture`: its pixels as RGB, its alpha channel, its bits
    per channel (more than 8 written back with 8 loses precision) and whether it is grey (then the
    fill is written back as one channel: :func:`save_image` of a (1, H, W) tensor, with ``bits``)."""
    img = _open(path)
    try:
        rgb, alpha = pil_to_arrays(img, path)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    if img.mode == "F":
        bits = 32
    elif img.mode in INTEGER_GREY_MODES or img.info.get("nfinpaint_16bit_colour"):
        bits = 16
    else:
        bits = 8
    key = img.info.get("transparency")
    level = key if alpha is not None and img.mode in INTEGER_GREY_MODES and isinstance(key, int) else None
    return Picture(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
                   None if alpha is None else torch.from_numpy(alpha), bits, img.mode in _GREY_MODES, level)


_ZERO_ONE_MODES = frozenset({"L", *INTEGER_GREY_MODES})      # grey integer masks that may hold 0/1 levels


def zero_one_levels(img: Image.Image) -> np.ndarray | None:
    """A grey integer mask image holding only 0 and 1, with some 1 (what saving
    ``(m > 0).astype(np.uint8)`` gives), as (H, W) float32 levels 0/1: 1 = hole, as for an integer
    mask array.  None for any other image.  Read as grey levels such a mask could only be refused,
    since none of its pixels reaches 50% grey."""
    if img.mode not in _ZERO_ONE_MODES:
        return None
    levels = np.asarray(img)
    if levels.size == 0 or levels.max() != 1 or levels.min() < 0:
        return None
    return levels.astype(np.float32)


def mask_image_levels(img: Image.Image, invert: bool = False) -> np.ndarray:
    """(H, W) float32 hole levels in [0, 1] of a mask image of any mode: its grey level (white = hole;
    with ``invert``, black = hole), times its alpha where it has one, so a transparent pixel is never
    a hole whichever the polarity (a grey or RGB mask's one transparent colour, PNG tRNS, included:
    :func:`colour_key_alpha`).  Colour and palette masks count by luminance, 16-bit and float
    grey by their format's full range (never by the mask's own brightest pixel), and a grey integer
    mask holding only 0 and 1 as levels 0/1 (:func:`zero_one_levels`).  ImageError for levels it
    cannot read.  The one reading of a mask image, for files, the Python API and the server."""
    key = colour_key_alpha(img)
    alpha = None if key is None else key.astype(np.float32) / 255.0
    grey = zero_one_levels(img)
    if grey is not None:
        pass
    elif img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        grey, alpha = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2], rgba[..., 3]
    elif img.mode in DEEP_GREY_MODES:
        grey = _grey_scale(img)
    else:
        try:
            try:
                grey_img = img.convert("L")
            except ValueError:        # LAB: PIL converts it to RGB only (it was a traceback)
                grey_img = img.convert("RGB").convert("L")
            grey = np.asarray(grey_img, dtype=np.float32) / 255.0
        except (ValueError, OSError) as exc:
            raise ImageError(f"a mask in PIL mode {img.mode} cannot be read as grey levels ({exc}); "
                             f"save it as a grey or RGB picture") from None
    if invert:
        grey = 1.0 - grey
    return grey if alpha is None else grey * alpha


def read_mask_levels(path: str | os.PathLike, invert: bool = False) -> np.ndarray:
    """:func:`mask_image_levels` of a mask file (EXIF orientation applied); ImageError names the file."""
    img = upright(_open(path), path)
    try:
        return mask_image_levels(img, invert)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def read_mask(path: str | os.PathLike, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask image (white = hole) of any mode as a (1, H, W) {0, 1} float32 tensor: the pixels
    whose :func:`mask_image_levels` exceed ``threshold``."""
    return torch.from_numpy((read_mask_levels(path) > threshold).astype(np.float32))[None]


def tensor_to_pil(image: torch.Tensor, bits: int = 8) -> Image.Image:
    """(3, H, W) or (1, H, W) float tensor in [0, 1] -> PIL image of 8 bits per channel; a (1, H, W) one
    also as 16-bit grey (``bits=16``, mode I;16) or 32-bit float grey (``bits=32``, mode F)."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) or (1, H, W) tensor, got shape {tuple(image.shape)}")
    if bits not in (8, 16, 32) or (bits != 8 and image.shape[0] != 1):
        raise ValueError(f"bits={bits}: 8 bits per channel, or 16 or 32 (float) for one grey channel")
    if bits == 32:
        return Image.fromarray(image[0].detach().float().clamp(0, 1).cpu().numpy(), "F")
    top, dtype = (255.0, torch.uint8) if bits == 8 else (65535.0, torch.int32)
    scaled = image.detach().float().clamp(0, 1).mul_(top).add_(0.5)     # one float copy, not three
    array = scaled.to(dtype).permute(1, 2, 0).cpu().numpy()
    del scaled
    if bits == 16:
        array = array.astype(np.uint16)
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


# The tags of an input's first EXIF directory written back with the filled picture: what it shows and who
# made it (document and page name, description, make, model, software, date, artist, host, rating,
# copyright, Windows' title/comment/author/keywords/subject) and the pointers to the Exif and GPS
# directories.  Not the rest: a TIFF's getexif() is its whole first directory, whose layout tags (size,
# compression, photometric, strips...) PIL's TIFF writer would let override the output's own (CMYK in the
# header over RGB data: an unreadable file), and whose XMP, IPTC and Photoshop resources and layers hold
# another orientation (a picture turned upright here was turned again by a reader of XMP's) or the
# original picture itself (Photoshop opened the output from its layers, the removed object back); the
# resolution travels as ``dpi``, turned with the pixels.
_KEPT_TAGS = frozenset({269, 270, 271, 272, 285, 305, 306, 315, 316, 18246, 18249, 33432, 34665, 34853,
                        *range(40091, 40096)})
# In the Exif directory: the stored pixel size (the output's may be turned) and the maker note (a camera's
# private data, often a preview of the original picture).  The thumbnail directory (IFD1) is never written.
_EXIF_DROPPED = (0xA002, 0xA003, 0x927C)


def carried_exif(exif: Image.Exif, turned: bool) -> bytes | None:
    """The EXIF block written with a filled picture, from its input's ``exif`` (changed in place):
    :data:`_KEPT_TAGS` of its first directory, the Exif directory without :data:`_EXIF_DROPPED`, the GPS
    directory, and no thumbnail; the orientation kept unless the pixels were ``turned`` upright.  None
    when nothing is left."""
    orientation = exif.get(0x0112)
    exif_ifd = dict(exif.get_ifd(0x8769)) if 0x8769 in exif else None
    gps_ifd = dict(exif.get_ifd(0x8825)) if 0x8825 in exif else None
    for tag in list(exif):
        if tag not in _KEPT_TAGS:
            del exif[tag]
    if orientation is not None and not turned:
        exif[0x0112] = orientation
    for pointer, directory in ((0x8769, exif_ifd), (0x8825, gps_ifd)):
        if directory is not None:
            kept = exif.get_ifd(pointer)
            kept.clear()
            kept.update({tag: value for tag, value in directory.items() if tag not in _EXIF_DROPPED})
    return exif.tobytes() if len(exif) else None


# How a PNG says its pixels are shown when it has no ICC profile (gAMA, cHRM, sRGB): PIL reads them into
# ``info`` and writes none back, and a browser shows a file without them otherwise (a gamma of 1.0
# dropped: every pixel 69 levels off on average, as shown)
PNG_COLOUR_KEYS = ("gamma", "chromaticity", "srgb")


def png_colour_info(img: Image.Image) -> dict:
    """A PNG's colour chunks' values (:data:`PNG_COLOUR_KEYS`); {} for another format (PIL's DDS reader
    sets a "gamma" of its own)."""
    if img.format != "PNG":
        return {}
    return {key: img.info[key] for key in PNG_COLOUR_KEYS if img.info.get(key) is not None}


def png_colour_chunks(colour: dict) -> PngImagePlugin.PngInfo | None:
    """``png_colour_info``'s values as the chunks PIL's PNG writer adds (``pnginfo=``); None for none."""
    if not colour:
        return None
    chunks = PngImagePlugin.PngInfo()
    if "gamma" in colour:
        chunks.add(b"gAMA", round(colour["gamma"] * 100_000).to_bytes(4, "big"))
    if "chromaticity" in colour:
        chunks.add(b"cHRM", b"".join(round(v * 100_000).to_bytes(4, "big") for v in colour["chromaticity"]))
    if "srgb" in colour:
        chunks.add(b"sRGB", int(colour["srgb"]).to_bytes(1, "big"))
    return chunks


def read_image_info(path: str | os.PathLike) -> dict:
    """What of an image file besides its pixels is written back with them: the ICC colour
    profile (without it wide-gamut photos change colour; :func:`save_image` writes it only where
    its colour space fits the output's pixels), EXIF (its orientation reset, since the pixels are
    read already turned) and the resolution (dpi)."""
    with Image.open(path) as img:
        info = {}
        if img.info.get("icc_profile"):
            info["icc_profile"] = img.info["icc_profile"]
        # PIL says 1 dpi for a TIFF without a resolution (most writers leave it out): print programs then
        # sized the output at 1 pixel an inch
        if img.info.get("dpi") and (img.format != "TIFF" or 282 in getattr(img, "tag_v2", {})):
            dpi = tuple(float(v) for v in img.info["dpi"])
            # the pixels were read turned upright: a quarter turn swaps the two directions
            info["dpi"] = dpi[::-1] if (exif_orientation(img) or 1) >= 5 and len(dpi) == 2 else dpi
        info.update(png_colour_info(img))
        try:
            exif = carried_exif(img.getexif(), turned=True)     # orientation: applied when read
            if exif is not None:
                info["exif"] = exif
        except Exception:  # noqa: BLE001  (damaged EXIF: the pixels are still good; write without it)
            info.pop("exif", None)
    return info


# What each output format can hold of read_image_info, and how it is written: JPEG at high quality
# without chroma subsampling (4:4:4), WebP lossless (exact: even fully transparent pixels kept).
_SAVE_OPTIONS = {
    "PNG": ({"icc_profile", "exif", "dpi"}, {}),
    "JPEG": ({"icc_profile", "exif", "dpi"}, {"quality": 95, "subsampling": 0}),
    "WEBP": ({"icc_profile", "exif"}, {"lossless": True, "exact": True}),
    "TIFF": ({"icc_profile", "exif", "dpi"}, {}),
    "BMP": ({"dpi"}, {}),
}


_JPEG_EXIF_LIMIT = 65533      # bytes of EXIF in one JPEG APP1 marker (PIL's MAX_BYTES_IN_MARKER)

# The ICC data colour space (header bytes 16-19) that fits each mode a picture is written in.
_PROFILE_SPACES = {"RGB": "RGB", "RGBA": "RGB", "L": "GRAY", "LA": "GRAY", "I;16": "GRAY", "F": "GRAY"}


def icc_colour_space(icc: bytes) -> str | None:
    """The data colour space an ICC profile declares ('RGB', 'GRAY', 'CMYK', 'Lab', ...), or None
    when ``icc`` is not a profile."""
    try:
        from PIL import ImageCms  # noqa: PLC0415  (LittleCMS: loaded only for a picture with a profile)

        space = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space
    except (ImportError, OSError, ValueError, TypeError):
        # a profile LittleCMS cannot parse (a newer ICC version, say): the header's own field
        space = icc[16:20].decode("ascii", "replace") if len(icc) >= 128 and icc[36:40] == b"acsp" else None
    return space.strip() if space and space.strip() else None


def profile_fits(icc: bytes, mode: str) -> bool:
    """Whether an ICC profile describes pixels of PIL ``mode`` (an RGB profile on RGB(A), a GRAY
    one on L(A)): a profile of another colour space on them is invalid (PNG spec) and colour-managed
    viewers misrender the picture."""
    return _PROFILE_SPACES.get(mode) is not None and icc_colour_space(icc) == _PROFILE_SPACES[mode]


def _grey_depth(bits: int, fmt: str) -> int:
    """The bits per channel ``fmt`` writes one grey channel of ``bits`` with: 16 in PNG and TIFF,
    32-bit float in TIFF (in PNG, which has no float, 16: the closest it holds), else 8."""
    if bits == 32 and fmt == "PNG":
        return 16
    return bits if (bits == 16 and fmt in ("PNG", "TIFF")) or (bits == 32 and fmt == "TIFF") else 8


# The largest side each format holds (libwebp; libjpeg's JPEG_MAX_DIMENSION; GIF's 16-bit fields);
# the others hold more than a picture that fits in memory.
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "GIF": 65535}


def check_format_size(path: str | os.PathLike, width: int, height: int) -> None:
    """ImageError when a ``width`` x ``height`` picture is larger than the format of ``path`` (from its
    suffix) holds: found before a fill, not as a traceback from the encoder after it."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise ImageError(f"{path}: a {path.suffix.lower()} file holds at most {limit:,} pixels a side, and the "
                         f"picture is {width}x{height}; write .png or .tif instead")


def save_image(image: torch.Tensor, path: str | os.PathLike, alpha: torch.Tensor | None = None,
               info: dict | None = None, bits: int = 8, transparent_level: int | None = None) -> int:
    """Write a (C, H, W) [0, 1] tensor (C = 3: RGB, C = 1: grey) atomically (format from the suffix),
    and return the bits per channel written: 8, or ``bits`` (16, 32) for one grey channel without
    alpha where the format holds that depth; an (H, W) uint8 ``alpha`` is written as the image's
    alpha channel, unchanged; ``info`` (:func:`read_image_info`) is kept as far as the format can
    hold it, and its colour profile only when it fits the written pixels (:func:`profile_fits`;
    dropped with an :class:`ImageWarning`).  ``transparent_level``: the 16-bit grey level that
    ``alpha`` came from (a PNG's tRNS, :attr:`Picture.level`): a PNG is written as 16-bit grey with
    that level transparent again (PIL has no 16-bit grey+alpha: it was written 8-bit LA), other
    formats with the alpha channel at 8 bits."""
    path = Path(path)
    check_format_size(path, image.shape[-1], image.shape[-2])
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    keyed = (transparent_level is not None and alpha is not None and image.shape[0] == 1 and bits == 16
             and fmt == "PNG")
    depth = _grey_depth(bits, fmt) if image.shape[0] == 1 and (alpha is None or keyed) else 8
    pil = tensor_to_pil(image, depth)
    if keyed:
        levels = with_transparent_level(np.array(pil, dtype=np.uint16), alpha.cpu().numpy() == 0, transparent_level)
        pil = integer_grey_image(levels, "I;16")
    elif alpha is not None:
        pil = pil if pil.mode == "L" else pil.convert("RGB")
        pil.putalpha(Image.fromarray(alpha.cpu().numpy().astype(np.uint8)))
    if path.suffix.lower() == ".pgm" and pil.mode in ("RGB", "RGBA"):
        # PIL writes a colour pixmap (P6) whatever the name; a .pgm is a greymap
        warnings.warn(f"{path}: a .pgm holds grey levels: the colour picture is written in grey (.ppm or .png "
                      f"keep its colour)", ImageWarning, stacklevel=2)
        pil = pil.convert("L")
    if fmt == "WEBP" and pil.mode in ("L", "LA"):     # WebP has no grey: PIL would write RGB(A) anyway
        pil = pil.convert("RGBA" if pil.mode == "LA" else "RGB")
    keys, options = _SAVE_OPTIONS.get(fmt, (set(), {}))
    options = {**options, **{k: v for k, v in (info or {}).items() if k in keys}}
    if (info or {}).get("icc_profile") and "icc_profile" not in keys:
        warnings.warn(f"{path}: the input's colour profile has no place in {fmt}: written without it (colours "
                      f"show as untagged sRGB; .png, .jpg, .tif or .webp keep it)", ImageWarning, stacklevel=2)
    if keyed:
        options["transparency"] = transparent_level
    colour = {key: value for key, value in (info or {}).items() if key in PNG_COLOUR_KEYS}
    if colour and fmt == "PNG":
        options["pnginfo"] = png_colour_chunks(colour)
    elif colour:
        warnings.warn(f"{path}: the input PNG's {'/'.join(colour)} (how its pixels are shown) has no place in "
                      f"{fmt}: written without it (a .png output keeps it)", ImageWarning, stacklevel=2)
    icc = options.get("icc_profile")
    if icc and not profile_fits(icc, pil.mode):
        # a CMYK picture is filled and written as RGB (a grey one too, where the format has no grey):
        # its profile no longer describes the pixels
        del options["icc_profile"]
        space = icc_colour_space(icc)
        warnings.warn(f"{path}: the input's colour profile is "
                      f"{'for ' + space + ' data' if space else 'not a readable ICC profile'}, not {pil.mode}: "
                      f"written without it (colours show as untagged sRGB)", ImageWarning, stacklevel=2)
    if fmt == "JPEG" and len(options.get("exif", b"")) > _JPEG_EXIF_LIMIT:
        # one APP1 marker holds at most this much: PIL refuses the whole save, while the pixels are fine
        warnings.warn(f"{path}: the input's EXIF ({len(options.pop('exif')):,} bytes) is more than a JPEG "
                      f"holds ({_JPEG_EXIF_LIMIT:,}): written without it (PNG or TIFF keep it)", ImageWarning,
                      stacklevel=2)
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt, **options)
    return depth
