"""Reading and writing images and masks as float tensors in [0, 1].

Images are (3, H, W) float32 RGB tensors in [0, 1]; masks are (1, H, W)
float32 tensors with 1 in the hole and 0 elsewhere.  Every failure is an
:class:`ImageError` whose message names the file and says what to do.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nfinpaint.files import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


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


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode) -> (3, H, W) float32 RGB in [0, 1]."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read any PIL-readable image as (3, H, W) float32 RGB in [0, 1]."""
    return pil_to_tensor(_open(path))


def read_mask(path: str | os.PathLike, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask image (white = hole) of any mode as a (1, H, W) {0, 1} float32 tensor.

    Colour and palette masks are converted to luminance; an alpha channel, if
    present, multiplies it (transparent pixels are not holes).
    """
    img = _open(path)
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


def save_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (C, H, W) [0, 1] tensor as an 8-bit image, atomically (format from the suffix)."""
    path = Path(path)
    pil = tensor_to_pil(image)
    with atomic_path(path) as tmp:
        pil.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
