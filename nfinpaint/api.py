"""Filling holes from Python: ``Inpainter()(image, mask)`` on PIL images, numpy arrays or torch tensors.

::

    from nfinpaint import Inpainter
    inpainter = Inpainter()                 # loads the shipped generator once
    filled = inpainter(image, mask)         # same type, dtype and channels as ``image``

``image``: a PIL image (L, LA, RGB, RGBA, 16-bit grey in any byte order, I, F; a palette
image, P or PA, keeps its palette, the filled pixels taking its nearest colour; other modes
are filled as RGB and converted back), a numpy array (H, W) or (H, W, C) with C in 1-4
(grey, grey+alpha, RGB, RGBA) of dtype uint8, uint16 or float (values in [0, 1]), or a torch
tensor (C, H, W) of dtype uint8 or float ([0, 1]).  An alpha channel is passed through untouched; pixels
outside the holes are returned unchanged, exactly.

``mask``: the same kinds, one channel (a colour PIL image is read as its luminance), white =
hole: a bool array or tensor (True = hole); an integer one (any integer dtype) holding only 0
and 1 (1 = hole), else grey levels 0..255 (uint16: 0..65535); a float one in [0, 1]; a PIL
image by its grey levels, as its file would be read (a grey one holding only 0 and 1 too means
1 = hole).  A PIL image comes back in its stored layout and size, its mask read on the stored
pixels; the fill itself runs on the picture turned as its EXIF orientation shows it, as the
command's does (the model learned upright photographs).  A PIL mask whose EXIF orientation differs
from the image's is refused.  Soft edges
follow :mod:`nfinpaint.mask_options`'s rule; ``invert=True`` for black = hole, ``dilate=PX`` to
grow the holes, ``resize_mask=True`` to take a mask of another size (nearest neighbour).

Every bad input raises :class:`InpaintError` (a ``ValueError``) with a one-line message.
One Inpainter may be called from several threads at once, each call with its own options: the
results are those of the same calls one after another.  Its fills with a generator run one at a
time (reading and preparing the inputs does not wait); PIL pictures are decoded in place, one at
a time; a generator loaded on first use is loaded once.
The fill itself is :func:`nfinpaint.inpaint.inpaint_image`'s, as in the command.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import numpy as np
import torch
from PIL import Image

from nfinpaint import devices, mask_options, transparency
from nfinpaint.cli import UsageError
from nfinpaint.errors import NfinpaintError
from nfinpaint.images import (INTEGER_GREY_MODES, ImageError, carried_exif, colour_key_alpha, exif_orientation,
                              integer_grey_image, keep_transparent_level, key_as_alpha, load_pixels,
                              mask_image_levels, profile_fits, sixteen_bit_levels, turned_back, turned_upright)

_PIL_ARRAY_MODES = {"L", "LA", "RGB", "RGBA", "F", *INTEGER_GREY_MODES}
# PIL decodes a lazily opened picture in place, and not thread-safely: one picture (a mask for
# every fill) passed from several threads at once gave spurious "cannot be decoded" errors, bare
# AssertionErrors and wrong pixels.  Pictures are decoded, and their EXIF read, one at a time.
_DECODING = threading.Lock()
_OPENING = threading.Lock()       # a generator loaded lazily is loaded once, not by each thread calling


class InpaintError(NfinpaintError, ValueError):
    """Bad input to :class:`Inpainter` (image, mask, options or generator file), in one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- images in and out


def _scale_of(dtype: np.dtype, what: str = "image") -> float | None:
    """The value of white for an integer dtype (either byte order); None for floats."""
    if dtype.kind == "u" and dtype.itemsize == 1:
        return 255.0
    if dtype.kind == "u" and dtype.itemsize == 2:      # '>u2' too: a big-endian 16-bit picture is 16-bit
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return None
    raise InpaintError(f"{what} arrays must be uint8, uint16 or float, got {dtype}")


def _to_float(array: np.ndarray, what: str) -> np.ndarray:
    scale = _scale_of(array.dtype, what)
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
    # halves round up, as the command's writer rounds (images.tensor_to_pil): one picture, one result
    return np.floor(np.clip(values, 0, 1) * scale + 0.5).astype(dtype)


def _nearest_entries(colours: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """For each of ``colours`` (K, 3), the index of the nearest of ``entries`` (N, 3) (squared distance)."""
    entries = entries.astype(np.int32)
    found = np.empty(len(colours), np.intp)
    for start in range(0, len(colours), 16384):     # bounded memory: 16384 x N distances at a time
        block = colours[start:start + 16384].astype(np.int32)
        found[start:start + 16384] = ((block[:, None, :] - entries[None]) ** 2).sum(axis=2).argmin(axis=1)
    return found


def _palette_as_hwc(image: Image.Image) -> tuple[np.ndarray, Any]:
    """A P or PA image as RGB(A) values, and back onto its own palette without requantizing: a pixel
    the fill left as it was keeps its index (exact even with duplicate entries); a filled one takes
    the nearest entry as transparent as its own (the alpha is never changed)."""
    alpha = image.mode == "PA" or "transparency" in image.info or image.palette.mode == "RGBA"
    inner = "RGBA" if alpha else "RGB"
    array = np.asarray(image.convert(inner))
    bands = np.asarray(image)
    indices = bands if image.mode == "P" else bands[..., 0]
    strip = image.crop((0, 0, 256, 1))              # keeps the palette and the transparency
    strip.putdata(range(256) if image.mode == "P" else [(i, 255) for i in range(256)])
    entries = np.asarray(strip.convert("RGBA"))[0]  # each index's colour and alpha, as the picture shows it
    used = max(len(image.getpalette() or []) // 3, int(indices.max(initial=0)) + 1)
    entries = entries[:used]                        # an index past the palette is no colour of it

    def back(out: np.ndarray) -> Image.Image:
        new = indices.copy()
        changed = (out[..., :3] != array[..., :3]).any(axis=2)
        own_alpha = entries[indices[changed], 3]
        picked = np.empty(len(own_alpha), np.uint8)
        for level in np.unique(own_alpha):
            among = np.flatnonzero(entries[:, 3] == level)   # holds the pixel's own index: never empty
            these = own_alpha == level
            picked[these] = among[_nearest_entries(out[changed][these][:, :3], entries[among, :3])]
        new[changed] = picked
        result = image.copy()
        result.frombytes((new if image.mode == "P" else np.dstack([new, bands[..., 1]])).tobytes())
        return result
    return array, back


def _decoded(image: Image.Image, what: str) -> Image.Image:
    """``image`` with its pixels loaded (:func:`nfinpaint.images.load_pixels`, as the command and the
    server load theirs: a lazily opened 2/4-bit grey picture's transparent colour then matches in its
    stored bits); a truncated, corrupt or closed image is an InpaintError here, not a raw OSError (or a
    mode blamed for it) further on."""
    try:
        with _DECODING:
            if "nfinpaint_16bit_colour" in image.info:
                # decoded here before: load_pixels would read its tiles again, which PIL dropped when
                # it decoded it, and forget that it is 16-bit colour (its transparent colour turned opaque)
                image.load()
            else:
                load_pixels(image)
    except (OSError, SyntaxError, ValueError, AttributeError) as exc:   # AttributeError: a closed file
        raise InpaintError(f"the {what} cannot be decoded ({_one_line(exc)}); check the file") from None
    return image


def _carried_exif(given: Image.Image) -> bytes | None:
    """:func:`nfinpaint.images.carried_exif` of ``given``'s EXIF block, read afresh (the caller's picture
    keeps its own), in the stored layout; None for a block PIL cannot read."""
    try:
        exif = Image.Exif()
        exif.load(given.info["exif"])
        return carried_exif(exif, turned=False)
    except Exception:  # noqa: BLE001  (PIL's EXIF parser raises SyntaxError, struct.error, ... on bad data)
        return None


def _cli_words(message: str) -> str:
    """A message of the command's, in this API's words: its options are keyword arguments here."""
    return message.replace("--checkpoint PATH", "checkpoint=PATH").replace("--checkpoint", "checkpoint=") \
        .replace("--method ", "method=")


def _as_hwc(image: Any) -> tuple[np.ndarray, Any]:
    """``image`` as an (H, W, C) numpy array in its own dtype, and how to turn such an array back."""
    if isinstance(image, Image.Image):
        _decoded(image, "image")
        # one transparent colour (PNG tRNS) is alpha: 8-bit grey and RGB are filled, and come back, as
        # LA / RGBA; 16-bit grey keeps its transparent level (it once came back opaque, silently)
        keyed, given = key_as_alpha(image), image
        image = image if keyed is None else keyed
        mode = image.mode
        if mode in ("P", "PA"):
            return _palette_as_hwc(image)
        original = image
        if mode not in _PIL_ARRAY_MODES:    # CMYK, YCbCr, ...: filled as RGB(A), converted back
            # premultiplied alpha (RGBa, La) goes through its plain mode, so that its alpha is kept
            inner = {"La": "LA", "RGBa": "RGBA"}.get(mode, "RGBA" if "transparency" in image.info else "RGB")
            try:
                image = image.convert(inner)
            except (ValueError, OSError) as exc:      # a mode PIL has no conversion to RGB for
                raise InpaintError(f"the image: PIL cannot convert mode {mode} to {inner} ({_one_line(exc)}); "
                                   f"convert it to RGB first") from None
        inner = image.mode
        if inner in INTEGER_GREY_MODES:     # 16-bit grey of any byte order, or 32-bit holding 16-bit levels
            try:
                array = sixteen_bit_levels(image)
            except ImageError as exc:
                raise InpaintError(f"the image: {exc}") from None
        else:
            array = np.asarray(image)

        def back(out: np.ndarray) -> Image.Image:
            out = out[..., 0] if out.shape[2] == 1 else out
            if inner in INTEGER_GREY_MODES:     # in its own byte order, with its transparent level
                result = keep_transparent_level(given, integer_grey_image(out, inner))
            else:
                result = Image.fromarray(out, inner)
            # the picture's colour profile, EXIF (its orientation: the result is in the stored layout) and
            # resolution, as the command writes them back: a result saved as PNG kept none of them
            for key in ("icc_profile", "dpi"):
                if key in given.info and (key != "icc_profile" or profile_fits(given.info[key], result.mode)):
                    result.info.setdefault(key, given.info[key])     # (a profile only of these pixels' space)
            if "exif" in given.info and "exif" not in result.info:
                # as the command writes it (no thumbnail of the original, no maker note, no XMP), the
                # orientation kept: the result is in the stored layout
                exif = _carried_exif(given)
                if exif is not None:
                    result.info["exif"] = exif
            if result.mode == mode:
                return result
            # RGB -> CMYK (...) is no exact round trip: only the pixels the fill changed are converted back
            changed = (out != array).any(axis=2)     # out, array: (H, W, 3 or 4) RGB(A) here
            kept = original.copy()
            kept.paste(result.convert(mode), mask=Image.fromarray(changed))
            return kept
        return (array[..., None] if array.ndim == 2 else array), back
    if isinstance(image, torch.Tensor):
        _check_tensor(image, "image")
        if image.dim() != 3 or image.shape[0] not in (1, 2, 3, 4):
            raise InpaintError(f"image tensors must be (C, H, W) with C in 1-4, got shape {tuple(image.shape)}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise InpaintError(f"image tensors must be uint8 or float, got {image.dtype}")
        dtype, device = image.dtype, image.device
        array = _cpu_values(image)
        array = _numpy_readable(array).permute(1, 2, 0).numpy()

        def back(out: np.ndarray) -> torch.Tensor:
            # contiguous, as a (C, H, W) tensor is expected to be (a permuted view refused .view())
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).to(device=device, dtype=dtype) \
                .contiguous()
        return array, back
    if isinstance(image, np.ndarray):
        image = np.asarray(image)     # a subclass (np.matrix) indexes unlike an array: numpy's own
        if image.ndim == 2:
            return image[..., None], lambda out: out[..., 0]
        if image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
            return image, lambda out: out
        raise InpaintError(f"image arrays must be (H, W) or (H, W, C) with C in 1-4, got shape {image.shape}")
    raise InpaintError(f"the image must be a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def mask_levels(mask: Any, size: tuple[int, int] | None = None, invert: bool = False) -> np.ndarray:
    """A mask (PIL, numpy or torch) as (H, W) float32 hole levels in [0, 1]: grey levels, white = hole
    (``invert``: black = hole); a PIL mask's alpha multiplies them, so transparent is never a hole.
    ``size``: the picture's (H, W), which tells a (1, H, W) mask from an (H, W, 1) one when both read."""
    if isinstance(mask, Image.Image):
        _decoded(mask, "mask")
        try:
            return mask_image_levels(mask, invert)     # as its file would be read (its pixels as stored)
        except ImageError as exc:
            raise InpaintError(f"the mask: {exc}") from None
    levels = _array_mask_levels(mask, size)
    return 1.0 - levels if invert else levels


def _orientation(img: Image.Image) -> int:
    return exif_orientation(img) or 1     # a damaged EXIF block: none, as the command reads it


def _check_orientations(image: Any, mask: Any) -> None:
    """InpaintError when a PIL mask carries an EXIF orientation other than the image's.

    The API reads a mask on the stored pixels (the result keeps the image's size and layout; the
    command applies EXIF to its files instead): a mask stored turned otherwise than its picture
    lines up with it on the screen but not in its pixels, and would be filled in the wrong place.
    A mask without an orientation is taken as drawn on the stored pixels."""
    if not isinstance(mask, Image.Image):
        return
    # decoded first: reading a PNG's EXIF decodes it, and load_pixels must see how it is stored
    if isinstance(image, Image.Image):
        _decoded(image, "image")
    _decoded(mask, "mask")
    with _DECODING:
        theirs = _orientation(mask)
        ours = _orientation(image) if isinstance(image, Image.Image) else 1
    if theirs not in (1, ours):
        raise InpaintError(f"the mask has EXIF orientation {theirs} and the image {ours}: their pixels do not line "
                           f"up; pass both through PIL.ImageOps.exif_transpose (as the command reads files)")


def _check_tensor(tensor: torch.Tensor, what: str) -> None:
    """InpaintError for a tensor whose values cannot be read as a dense array."""
    if tensor.device.type == "meta":
        raise InpaintError(f"the {what} tensor is on the meta device, which holds no values")
    if tensor.layout != torch.strided:
        raise InpaintError(f"the {what} tensor is {str(tensor.layout).replace('torch.', '')}; pass a dense one "
                           f"(.to_dense())")


def _numpy_readable(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor numpy can read: float types of under 32 bits (numpy has none for bfloat16 and the
    float8s) as float32, which holds each of their values exactly."""
    small = tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64)
    return tensor.float() if small else tensor


def _cpu_values(tensor: torch.Tensor) -> torch.Tensor:
    """A checked tensor's values on the CPU, its lazy negation or conjugation (views numpy cannot
    read) applied."""
    return tensor.detach().cpu().resolve_neg().resolve_conj()


def _array_mask_levels(mask: Any, size: tuple[int, int] | None) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        _check_tensor(mask, "mask")
        mask = _cpu_values(mask)
        mask = _numpy_readable(mask).numpy()
    if not isinstance(mask, np.ndarray):
        raise InpaintError(f"the mask must be a PIL image, a numpy array or a torch tensor, got {type(mask).__name__}")
    mask = np.asarray(mask)     # a subclass (np.matrix) indexes unlike an array
    if mask.ndim == 3 and 1 in (mask.shape[0], mask.shape[2]):
        # (1, W, 1) is (1, H, W) with W = 1 or (H, W, 1) with H = 1: the picture's size decides
        channels_last = mask.shape[2] == 1 and (mask.shape[0] != 1 or size is None or mask.shape[:2] == size)
        mask = mask[..., 0] if channels_last else mask[0]
    if mask.ndim != 2:
        raise InpaintError(f"the mask must be (H, W) (or (1, H, W), (H, W, 1)), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if mask.dtype.kind in "iu":        # not timedelta64, which numpy counts as an integer type
        return _integer_mask_levels(mask)
    if mask.dtype.kind == "f":
        return _to_float(mask, "mask")
    raise InpaintError(f"mask arrays must be bool, integer or float, got {mask.dtype}")


def _integer_mask_levels(mask: np.ndarray) -> np.ndarray:
    """An integer mask array: 0/1 only is a binary mask (1 = hole, what ``(m > 0).astype(int)`` gives,
    and as grey levels it could only be refused: no level reaches a hole); else grey levels 0..255
    (uint16: 0..65535, as in a 16-bit file)."""
    top = 65535 if mask.dtype.kind == "u" and mask.dtype.itemsize == 2 else 255     # either byte order
    low, high = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    if low < 0 or high > top:
        raise InpaintError(f"the mask is {mask.dtype} with values in [{low}, {high}]; integer masks hold 0/1 or "
                           f"grey levels 0..{top}: scale it, or pass it as bool")
    return mask.astype(np.float32) / (1.0 if high <= 1 else top)


# --------------------------------------------------------------------------- the object


def _checked_method(method: Any) -> str:
    from nfinpaint.baselines import METHODS  # noqa: PLC0415

    if method not in ("auto", *METHODS):
        raise InpaintError(f"method must be one of auto, {', '.join(METHODS)}, got {method!r}")
    missing = None if method == "auto" else METHODS[method].missing()
    if missing:        # an extra not installed (OpenCV): refused here, not halfway through a fill
        raise InpaintError(f"method={method!r} cannot run in this installation: {missing}")
    return method


def _is_whole_number(value: Any) -> bool:
    """An int or a NumPy integer (a count read from an array); not a bool, which is an int to Python."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _checked_flag(name: str, value: Any) -> bool:
    """A yes/no option: True or False (NumPy's too), never a truthy string ("False" is true to Python)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InpaintError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _checked_dilate(dilate: Any) -> int:
    if not _is_whole_number(dilate) or dilate < 0:
        raise InpaintError(f"dilate must be a whole number of pixels, 0 or more, got {dilate!r}")
    return int(dilate)


class Inpainter:
    """Loads a generator once and fills any number of pictures (see the module doc).

    ``checkpoint``: a generator file or training run directory (default: the generator
    shipped in the package; without one every hole goes to PatchMatch).  ``device``:
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.  ``method``: auto or a name of
    ``nfinpaint.baselines.METHODS``, as the command's ``--method``.  ``dilate``, ``invert``, ``resize_mask``:
    the mask options, defaults for every call.  ``seed``: PatchMatch's random search.  ``half``: the
    generator's network in float16 on a CUDA GPU, in bfloat16 on a CPU that computes it natively (AMX or
    AVX512-BF16: 1.2-1.4x as fast on holes of ~56 px, hole PSNR within 0.01 dB of float32's); refused elsewhere
    (:func:`nfinpaint.devices.half_problem`).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str = "auto", method: str = "auto",
                 dilate: int = 0, invert: bool = False, resize_mask: bool = False, seed: int = 0,
                 half: bool = False):
        from nfinpaint.baselines import METHODS  # noqa: PLC0415

        method, dilate = _checked_method(method), _checked_dilate(dilate)
        if not isinstance(device, (str, torch.device)):
            raise InpaintError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise InpaintError(f"checkpoint must be a path (str or os.PathLike) or None, got {checkpoint!r}")
        try:
            self.device = devices.resolve_device(str(device))      # the command's --device rule
        except UsageError as exc:
            raise InpaintError(str(exc).replace("--device ", "device=")) from None
        half, invert, resize_mask = (_checked_flag("half", half), _checked_flag("invert", invert),
                                     _checked_flag("resize_mask", resize_mask))
        problem = devices.half_problem(self.device) if half else None
        if problem:
            raise InpaintError(f"half=True {problem}; drop half=True"
                               + (", or use device='cuda'" if torch.cuda.is_available() else ""))
        if not _is_whole_number(seed):
            raise InpaintError(f"seed must be an integer, got {seed!r}")
        self.method, self.seed, self.half = method, int(seed), half
        self.dilate, self.invert, self.resize_mask = dilate, invert, resize_mask
        self._checkpoint, self._opened, self.loaded = checkpoint, False, None
        # fills with the model run one at a time: the fill puts the model in place on its first
        # call (device, channels-last weights), which under another thread's fill gave it wrong
        # pixels (off by up to 186 of 255) or NaN; on the CPU each fill uses every core anyway
        self._filling = threading.Lock()
        if method == "auto" or METHODS[method].needs_generator:
            self._open_generator()
        if self.loaded is None and method != "auto" and METHODS[method].needs_generator:
            raise InpaintError(f"method={method!r} needs a generator: pass checkpoint=PATH (no shipped default is "
                               f"installed)")
        self._check_generator_for(method)

    def _check_generator_for(self, method: str) -> None:
        """A method the loaded generator cannot run (gan-detail with a fixed-size one) is refused at
        once, not on every call in the command's words."""
        from nfinpaint.baselines import METHODS  # noqa: PLC0415

        refusal = None if method == "auto" else METHODS[method].refuses(
            None if self.loaded is None else self.loaded.generator)
        if refusal is not None:
            raise InpaintError(f"method={method!r} {refusal}")

    def _open_generator(self) -> None:
        """Load the generator once, when a method first needs it: an Inpainter made for biharmonic
        fills loads none, and a later call with method='auto' then loads it (it once went to
        PatchMatch without one, silently)."""
        from nfinpaint import generator_io, neural_fill  # noqa: PLC0415

        if self._opened:
            return
        with _OPENING:      # threads calling at once each loaded it (memory, time), then kept one
            if not self._opened:
                try:
                    self.loaded = generator_io.open_generator(self._checkpoint)
                except generator_io.GeneratorFileError as exc:
                    raise InpaintError(_one_line(exc)) from None
                if self.loaded is not None:     # once, not on every call
                    neural_fill.ready_to_fill(self.loaded.generator, self.device)
                self._opened = True

    def __call__(self, image: Any, mask: Any, *, dilate: int | None = None, invert: bool | None = None,
                 resize_mask: bool | None = None, method: str | None = None) -> Any:
        """``image`` with its holes filled; the keywords override the constructor's for this call."""
        from nfinpaint.inpaint import inpaint_image  # noqa: PLC0415  (inpaint imports this module's neighbours)

        from nfinpaint.baselines import METHODS  # noqa: PLC0415

        # per-call options: the constructor's checks
        method = self.method if method is None else _checked_method(method)
        dilate = self.dilate if dilate is None else _checked_dilate(dilate)
        invert = self.invert if invert is None else _checked_flag("invert", invert)
        resize_mask = self.resize_mask if resize_mask is None else _checked_flag("resize_mask", resize_mask)
        if method == "auto" or METHODS[method].needs_generator:
            self._open_generator()
        if method != "auto" and METHODS[method].needs_generator and self.loaded is None:
            raise InpaintError(f"method={method!r} needs a generator: pass checkpoint=PATH "
                               f"(no shipped default is installed)")
        self._check_generator_for(method)

        _check_orientations(image, mask)
        array, back = _as_hwc(image)
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InpaintError(f"the image is empty ({array.shape[1]}x{array.shape[0]})")
        values = _to_float(array, "image")
        channels = values.shape[2]
        colour = values[..., :3] if channels >= 3 else values[..., :1]     # grey comes back grey
        # colours under alpha 0 are not read as context (nfinpaint.transparency); 16-bit grey keeps its
        # transparent level (PNG tRNS) as it is, one channel: that level is its alpha 0
        hidden = transparency.hidden_pixels(values[..., -1]) if channels in (2, 4) else None
        keyed = colour_key_alpha(image) if hidden is None and isinstance(image, Image.Image) else None
        if keyed is not None:
            hidden = transparency.hidden_pixels(keyed)
        hole = mask_options.holes_from_values(
            mask_levels(mask, values.shape[:2], invert))
        if not hole.any():      # said here, where the polarity is known (inpaint_image's words are white's)
            raise InpaintError(f"the mask has no hole: {mask_options.no_hole_reason(invert)}"
                               + (" with invert=True" if invert else ""))
        try:
            hole = mask_options.prepare(hole, values.shape[:2], dilate_px=dilate,
                                        resize=resize_mask)
            # filled upright, as the picture is shown and as the command fills its files, and returned as
            # stored: the model learned upright photographs (turned 90 degrees, ~60 px holes lost 1.0 dB)
            turn = _orientation(image) if isinstance(image, Image.Image) else 1
            loaded = self.loaded
            with contextlib.nullcontext() if loaded is None else self._filling:
                filled, _ = inpaint_image(
                    # (C, H, W) contiguous: one copy (inpaint_image makes a view contiguous, a second one)
                    torch.from_numpy(np.ascontiguousarray(turned_upright(colour, turn).transpose(2, 0, 1))),
                    torch.from_numpy(np.ascontiguousarray(turned_upright(hole, turn)))[None].float(),
                    generator=None if loaded is None else loaded.generator,
                    hole_size=None if loaded is None else loaded.hole_size,
                    method=method, device=self.device, seed=self.seed, log=lambda message: None, half=self.half,
                    hidden=None if hidden is None else turned_upright(hidden, turn))
        except InpaintError:
            raise
        except ValueError as exc:
            raise InpaintError(_cli_words(_one_line(exc))) from None
        filled = turned_back(filled.permute(1, 2, 0).numpy(), turn)
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
