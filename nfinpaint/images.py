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

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nfinpaint.files import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}       # change pixels when saving
PALETTE_SUFFIXES = {".gif"}                       # at most 256 colours
ALPHA_SUFFIXES = {".png", ".webp", ".tif", ".tiff"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageError(ValueError):
    """An image or mask file that cannot be used, with the reason."""


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
    return img


def _grey_scale(img: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1] of a one-channel integer or float image."""
    array = np.asarray(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        return array.astype(np.float32) / 65535.0
    if img.mode == "I":    # 32-bit ints; PIL's mode for 16-bit PNGs of some encoders
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ImageError(f"32-bit integer image with values in [{array.min()}, {array.max()}]: "
                             f"only 16-bit ranges (0..65535) can be read")
        return array.astype(np.float32) / 65535.0
    array = array.astype(np.float32)   # "F": floats, taken as [0, 1] intensities
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ImageError("float image with values outside [0, 1]; save it scaled to [0, 1] or as 8/16-bit")
    return array


def pil_to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """PIL image (any mode) -> ((H, W, 3) float32 RGB in [0, 1], (H, W) uint8 alpha or None),
    with the EXIF orientation applied."""
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        grey = _grey_scale(img)
        return np.repeat(grey[..., None], 3, axis=2), None
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return rgba[..., :3].astype(np.float32) / 255.0, np.ascontiguousarray(rgba[..., 3])
    try:
        rgb = img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"images of mode {img.mode} cannot be read ({exc})") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0, None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode) -> (3, H, W) float32 RGB in [0, 1] (alpha, if any, dropped)."""
    rgb, _ = pil_to_arrays(img)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def read_image_and_alpha(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(3, H, W) float32 RGB in [0, 1], the (H, W) uint8 alpha channel or None, and the bits per
    channel of the file (8 or 16: a 16-bit image written back as 8-bit loses precision)."""
    img = _open(path)
    try:
        rgb, alpha = pil_to_arrays(img)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    bits = 16 if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F") else 8
    return (torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
            None if alpha is None else torch.from_numpy(alpha), bits)


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read any PIL-readable image as (3, H, W) float32 RGB in [0, 1]."""
    return read_image_and_alpha(path)[0]


def read_mask(path: str | os.PathLike, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask image (white = hole) of any mode as a (1, H, W) {0, 1} float32 tensor.

    Colour and palette masks are converted to luminance; an alpha channel, if
    present, multiplies it (transparent pixels are not holes).
    """
    img = ImageOps.exif_transpose(_open(path))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        value = (0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]) * rgba[..., 3]
    elif img.mode in ("I", "I;16", "F"):
        array = np.asarray(img, dtype=np.float32)
        peak = float(array.max()) if array.size else 0.0
        value = array / peak if peak > 0 else array
    else:
        value = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy((value > threshold).astype(np.float32))[None]


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, H, W) float tensor in [0, 1] -> 8-bit PIL image."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) or (1, H, W) tensor, got shape {tuple(image.shape)}")
    array = (image.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def save_image(image: torch.Tensor, path: str | os.PathLike, alpha: torch.Tensor | None = None) -> None:
    """Write a (C, H, W) [0, 1] tensor as an 8-bit image, atomically (format from the suffix);
    an (H, W) uint8 ``alpha`` is written as the image's alpha channel, unchanged."""
    path = Path(path)
    pil = tensor_to_pil(image)
    if alpha is not None:
        pil = pil.convert("RGB")
        pil.putalpha(Image.fromarray(alpha.cpu().numpy().astype(np.uint8)))
    with atomic_path(path) as tmp:
        pil.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
