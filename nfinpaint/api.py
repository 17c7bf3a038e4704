"""Filling holes from Python: ``Inpainter()(image, mask)`` on PIL images, numpy arrays or torch tensors.

::

    from nfinpaint import Inpainter
    inpainter = Inpainter()                 # loads the shipped generator once
    filled = inpainter(image, mask)         # same type, dtype and channels as ``image``

``image``: a PIL image (L, LA, RGB, RGBA, I;16, I, F; other modes are filled as RGB and
converted back), a numpy array (H, W) or (H, W, C) with C in 1-4 (grey, grey+alpha, RGB,
RGBA) of dtype uint8, uint16 or float (values in [0, 1]), or a torch tensor (C, H, W) of
dtype uint8 or float ([0, 1]).  An alpha channel is passed through untouched; pixels
outside the holes are returned unchanged, exactly.

``mask``: the same kinds (bool, integer or float; one channel, or a colour image read as
its luminance), white = hole, with :mod:`nfinpaint.mask_options`'s rule for antialiased
edges; ``invert=True`` for black = hole, ``dilate=PX`` to grow the holes, ``resize_mask=True``
to take a mask of another size (nearest neighbour).

Every bad input raises :class:`InpaintError` (a ``ValueError``) with a one-line message.
The fill itself is :func:`nfinpaint.inpaint.inpaint_image`'s, as in the command.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from nfinpaint import mask_options
from nfinpaint.errors import NfinpaintError

_PIL_ARRAY_MODES = {"L", "LA", "RGB", "RGBA", "I;16", "I", "F"}


class InpaintError(NfinpaintError, ValueError):
    """Bad input to :class:`Inpainter` (image, mask, options or generator file), in one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- images in and out


def _scale_of(dtype: np.dtype) -> float | None:
    """The value of white for an integer dtype; None for floats."""
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return None
    raise InpaintError(f"image arrays must be uint8, uint16 or float, got {dtype}")


def _to_float(array: np.ndarray, what: str) -> np.ndarray:
    scale = _scale_of(array.dtype)
    if scale is not None:
        return array.astype(np.float32) / scale
    values = array.astype(np.float32)
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        raise InpaintError(f"the {what} is float with values outside [0, 1] (or NaN); scale it to [0, 1]")
    return values


def _from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    scale = _scale_of(dtype)
    if scale is None:
        return values.astype(dtype)
    return np.rint(np.clip(values, 0, 1) * scale).astype(dtype)


def _as_hwc(image: Any) -> tuple[np.ndarray, Any]:
    """``image`` as an (H, W, C) numpy array in its own dtype, and how to turn such an array back."""
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode not in _PIL_ARRAY_MODES:    # palette, CMYK, ...: filled as RGB(A), converted back
            image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
        inner = image.mode
        array = np.asarray(image)
        if inner == "I":
            array = array.astype(np.uint16) if array.size == 0 or (array.min() >= 0 and array.max() <= 65535) \
                else _raise(f"32-bit integer PIL image with values in [{array.min()}, {array.max()}]; "
                            f"only 16-bit ranges (0..65535) can be filled")

        def back(out: np.ndarray) -> Image.Image:
            out = out[..., 0] if out.shape[2] == 1 else out
            if inner == "I":
                result = Image.fromarray(out.astype(np.int32), "I")
            elif inner == "I;16":
                result = Image.fromarray(out.astype(np.uint16))
            else:
                result = Image.fromarray(out, inner)
            return result if result.mode == mode else result.convert(mode)
        return (array[..., None] if array.ndim == 2 else array), back
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 2, 3, 4):
            raise InpaintError(f"image tensors must be (C, H, W) with C in 1-4, got shape {tuple(image.shape)}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise InpaintError(f"image tensors must be uint8 or float, got {image.dtype}")
        dtype, device = image.dtype, image.device
        array = image.detach().cpu()
        array = (array.float() if dtype in (torch.bfloat16, torch.float16) else array).permute(1, 2, 0).numpy()

        def back(out: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).to(device=device, dtype=dtype)
        return array, back
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            return image[..., None], lambda out: out[..., 0]
        if image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
            return image, lambda out: out
        raise InpaintError(f"image arrays must be (H, W) or (H, W, C) with C in 1-4, got shape {image.shape}")
    raise InpaintError(f"the image must be a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def _raise(message: str):
    raise InpaintError(message)


def mask_levels(mask: Any) -> np.ndarray:
    """A mask (PIL, numpy or torch) as (H, W) float32 grey levels in [0, 1] (alpha: transparent = 0)."""
    if isinstance(mask, Image.Image):
        if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
            rgba = np.asarray(mask.convert("RGBA"), dtype=np.float32) / 255.0
            return (0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]) * rgba[..., 3]
        if mask.mode not in ("1", "L", "I;16", "I", "F"):
            mask = mask.convert("L")
        array = np.asarray(mask)
        if mask.mode == "1":
            return array.astype(np.float32)
        if mask.mode == "I":
            return np.clip(array / 65535.0, 0, 1).astype(np.float32)
        return _to_float(array, "mask")
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu()
        mask = mask.float().numpy() if mask.dtype in (torch.bfloat16, torch.float16) else mask.numpy()
    if not isinstance(mask, np.ndarray):
        raise InpaintError(f"the mask must be a PIL image, a numpy array or a torch tensor, got {type(mask).__name__}")
    if mask.ndim == 3 and 1 in (mask.shape[0], mask.shape[2]):
        mask = mask[0] if mask.shape[0] == 1 else mask[..., 0]
    if mask.ndim != 2:
        raise InpaintError(f"the mask must be (H, W) (or (1, H, W), (H, W, 1)), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.float32)
    return _to_float(mask, "mask")


# --------------------------------------------------------------------------- the object


class Inpainter:
    """Loads a generator once and fills any number of pictures (see the module doc).

    ``checkpoint``: a generator file or training run directory (default: the generator
    shipped in the package; without one every hole goes to PatchMatch).  ``device``:
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.  ``method``: auto or a name of
    ``nfinpaint.baselines.METHODS``, as the command's ``--method``.  ``dilate``, ``invert``, ``resize_mask``:
    the mask options, defaults for every call.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str = "auto", method: str = "auto",
                 dilate: int = 0, invert: bool = False, resize_mask: bool = False, seed: int = 0,
                 half: bool = False):
        from nfinpaint import generator_io  # noqa: PLC0415

        from nfinpaint.baselines import METHODS  # noqa: PLC0415

        if method not in ("auto", *METHODS):
            raise InpaintError(f"method must be one of auto, {', '.join(METHODS)}, got {method!r}")
        if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
            raise InpaintError(f"dilate must be a whole number of pixels, 0 or more, got {dilate!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except (RuntimeError, ValueError):
            raise InpaintError(f"device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InpaintError(f"device {device!r}: no CUDA GPU is visible; use device='cpu'")
        if half and self.device.type != "cuda":
            raise InpaintError(f"half=True (float16) runs on a CUDA GPU only, and the device is {self.device}; "
                               f"drop half=True, or use device='cuda'")
        self.method, self.seed, self.half = method, seed, bool(half)
        self.dilate, self.invert, self.resize_mask = int(dilate), bool(invert), bool(resize_mask)
        self.loaded = None
        if method == "auto" or METHODS[method].needs_generator:
            try:
                self.loaded = generator_io.open_generator(checkpoint)
            except generator_io.GeneratorFileError as exc:
                raise InpaintError(_one_line(exc)) from None
        if self.loaded is None and method == "gan":
            raise InpaintError("method='gan' needs a generator: pass checkpoint=PATH (no shipped default is installed)")

    def __call__(self, image: Any, mask: Any, *, dilate: int | None = None, invert: bool | None = None,
                 resize_mask: bool | None = None, method: str | None = None) -> Any:
        """``image`` with its holes filled; the keywords override the constructor's for this call."""
        from nfinpaint.inpaint import inpaint_image  # noqa: PLC0415  (inpaint imports this module's neighbours)

        from nfinpaint.baselines import METHODS  # noqa: PLC0415

        method = self.method if method is None else method
        if method not in ("auto", *METHODS):
            raise InpaintError(f"method must be one of auto, {', '.join(METHODS)}, got {method!r}")
        if method != "auto" and METHODS[method].needs_generator and self.loaded is None:
            raise InpaintError(f"method={method!r} needs a generator: this Inpainter has none")

        array, back = _as_hwc(image)
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InpaintError(f"the image is empty ({array.shape[1]}x{array.shape[0]})")
        values = _to_float(array, "image")
        channels = values.shape[2]
        colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
        hole = mask_options.holes_from_values(mask_levels(mask), self.invert if invert is None else invert)
        try:
            hole = mask_options.prepare(hole, values.shape[:2], dilate_px=self.dilate if dilate is None else dilate,
                                        resize=self.resize_mask if resize_mask is None else resize_mask)
            filled, _ = inpaint_image(
                torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1),
                torch.from_numpy(hole)[None].float(),
                generator=None if self.loaded is None else self.loaded.generator,
                hole_size=None if self.loaded is None else self.loaded.hole_size,
                method=method, device=self.device, seed=self.seed, log=lambda message: None, half=self.half)
        except InpaintError:
            raise
        except ValueError as exc:
            raise InpaintError(_one_line(exc).replace("--checkpoint", "checkpoint=")) from None
        filled = filled.permute(1, 2, 0).numpy()
        if channels < 3:       # grey in, grey out: the fill's mean over its colour channels
            filled = filled.mean(axis=2, keepdims=True)
        out = array.copy()
        colour_channels = 3 if channels >= 3 else 1
        converted = _from_float(filled, array.dtype)
        # only the holes change: colour channels there, never alpha, never a known pixel
        out[..., :colour_channels] = np.where(hole[..., None], converted, array[..., :colour_channels])
        return back(out)


def fill_holes(image: Any, mask: Any, **options) -> Any:
    """One-off ``Inpainter(**options)(image, mask)`` (loads the generator on every call)."""
    mask_keys = {k: options.pop(k) for k in ("dilate", "invert", "resize_mask") if k in options}
    return Inpainter(**options, **mask_keys)(image, mask)
