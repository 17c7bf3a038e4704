"""The inpainting methods that evaluation compares, behind one interface.

Every method fills one image: ``method.fill(image, mask, seed=0)`` takes a
(3, H, W) float image in [0, 1] and a (1, H, W) mask (1 = hole) and returns
the filled (3, H, W) float32 image on the CPU, composited so that every pixel
outside the hole is the input pixel, bit for bit (``torch.where`` on the mask:
no arithmetic touches the known pixels).  Every method gets the image with the
hole blanked to 0, so no method can use what was under the hole.

Registry (``METHODS``):

- ``gan``: the trained generator (needs a checkpoint); the image must have the
  generator's size.
- ``patchmatch``: :func:`nfinpaint.patchmatch.inpaint` (CUDA when the device
  is a GPU, the multi-threaded CPU implementation otherwise).
- ``biharmonic``: ``skimage.restoration.inpaint_biharmonic``.
- ``border-mean``: the floor every method should beat: each hole (8-connected)
  filled with the mean colour of the known pixels in a ring of
  :data:`BORDER_WIDTH` pixels around it (chessboard distance; all known pixels
  when the ring holds none).
- ``opencv-telea`` / ``opencv-ns``: ``cv2.inpaint`` with Telea's fast marching
  or the Navier-Stokes method, radius 3.  OpenCV is optional
  (``pip install opencv-python-headless``); without it these methods are
  unavailable (:class:`MethodUnavailable`).  OpenCV inpaints 8-bit images, so
  its input is rounded to 8 bits; the known pixels are still the float input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from nfinpaint import generator_io
from nfinpaint.masks import blank_holes

METHODS = ("gan", "patchmatch", "biharmonic", "border-mean", "opencv-telea", "opencv-ns")
FLOOR = "border-mean"   # shown in every evaluation table

#: Names shown in tables and figures.
LABELS = {
    "gan": "GAN (ours)",
    "patchmatch": "PatchMatch",
    "biharmonic": "Biharmonic",
    "border-mean": "Border mean colour (floor)",
    "opencv-telea": "OpenCV Telea",
    "opencv-ns": "OpenCV Navier-Stokes",
}

OPENCV_RADIUS = 3
BORDER_WIDTH = 2


class MethodUnavailable(RuntimeError):
    """A method that cannot run in this installation (e.g. OpenCV not installed)."""


def composite(filled: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hole pixels from ``filled`` (clamped to [0, 1]), every other pixel exactly from ``image``."""
    filled = filled.detach().to(device=image.device, dtype=image.dtype).clamp(0, 1)
    return torch.where(mask > 0.5, filled, image)


def check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    if mask.dim() != 3 or mask.shape[0] != 1 or mask.shape[1:] != image.shape[1:]:
        raise ValueError(f"expected a (1, {image.shape[1]}, {image.shape[2]}) mask for a "
                         f"{tuple(image.shape)} image, got shape {tuple(mask.shape)}")


@dataclass
class Method:
    """One inpainting method: ``fill(image, mask, seed)`` -> composited (3, H, W) on the CPU."""

    name: str
    raw_fill: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
        image = image.detach().float().cpu()
        mask = mask.detach().float().cpu()
        check_pair(image, mask)
        # Methods see the hole blanked out: none can peek at the answer (OpenCV's
        # Navier-Stokes, for one, reads pixels under the mask).
        filled = self.raw_fill(blank_holes(image, mask), mask, seed).detach().float().cpu()
        if filled.shape != image.shape:
            raise RuntimeError(f"method {self.name} returned shape {tuple(filled.shape)} "
                               f"for a {tuple(image.shape)} image")
        return composite(filled, image, mask)


def opencv_missing() -> str | None:
    """None when OpenCV's inpainting is importable, else why not."""
    try:
        import cv2
    except ImportError:
        return "OpenCV is not installed (pip install opencv-python-headless)"
    if not hasattr(cv2, "inpaint"):
        return f"this OpenCV ({cv2.__version__}) has no cv2.inpaint"
    return None


def patchmatch_missing() -> str | None:
    """None when nfinpaint.patchmatch can run (module present, extension built), else why not."""
    try:
        from nfinpaint import patchmatch  # noqa: F401
    except ImportError as exc:
        return f"nfinpaint.patchmatch cannot be imported ({exc})"
    from nfinpaint import _extension

    if not _extension.is_built():
        return ("nfinpaint's compiled operators are not built: install with `pip install .` "
                "from the repository root")
    return None


def _biharmonic(image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(image.permute(1, 2, 0).double().numpy(), mask[0].numpy() > 0.5,
                             channel_axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float()


def border_mean_fill(image: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(3, H, W) ``image`` with each hole of the (1, H, W) ``mask`` set to the mean colour of the
    known pixels within :data:`BORDER_WIDTH` pixels of it."""
    hole = mask[0].cpu().numpy() > 0.5
    known = torch.from_numpy(~hole)
    labels, count = ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    ring_shape = np.ones((2 * BORDER_WIDTH + 1,) * 2, dtype=bool)
    out = image.clone()
    for k in range(1, count + 1):
        component = labels == k
        ring = torch.from_numpy(ndimage.binary_dilation(component, structure=ring_shape)) & known
        if not bool(ring.any()):
            ring = known
        colour = image[:, ring].mean(dim=1) if bool(ring.any()) else torch.full((3,), 0.5)
        out[:, torch.from_numpy(component)] = colour[:, None].to(out.dtype)
    return out


def _opencv(flag_name: str) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    def fill(image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        import cv2

        rgb = (image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        hole = (mask[0].numpy() > 0.5).astype(np.uint8) * 255
        out = cv2.inpaint(np.ascontiguousarray(rgb[..., ::-1]), hole, OPENCV_RADIUS,
                          getattr(cv2, flag_name))
        return torch.from_numpy(np.ascontiguousarray(out[..., ::-1])).permute(2, 0, 1).float() / 255.0

    return fill


def _patchmatch(device: torch.device, options: dict) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    missing = patchmatch_missing()
    if missing:
        raise MethodUnavailable(missing)
    from nfinpaint import patchmatch

    def fill(image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        return patchmatch.inpaint(image.to(device), mask.to(device), seed=seed, **options)

    return fill


def _gan(generator: torch.nn.Module, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    generator = generator.to(device).eval()
    size = generator.image_size

    def fill(image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        if tuple(image.shape[1:]) != (size, size):
            raise ValueError(f"the generator takes {size}x{size} images, got "
                             f"{image.shape[1]}x{image.shape[2]}")
        return generator_io.fill(generator, image.to(device)[None], mask.to(device)[None])[0]

    return fill


def build_method(name: str, *, generator: torch.nn.Module | None = None,
                 device: str | torch.device = "cpu", patchmatch_options: dict | None = None) -> Method:
    """The method called ``name`` (one of :data:`METHODS`), ready to fill images.

    Raises ValueError for an unknown name or ``gan`` without a generator, and
    :class:`MethodUnavailable` when the method cannot run here.
    """
    device = torch.device(device)
    if name == "gan":
        if generator is None:
            raise ValueError("the gan method needs a trained generator (--checkpoint PATH)")
        return Method(name, _gan(generator, device), device)
    if name == "patchmatch":
        return Method(name, _patchmatch(device, dict(patchmatch_options or {})), device)
    if name == "biharmonic":
        return Method(name, _biharmonic)
    if name == FLOOR:
        return Method(name, border_mean_fill)
    if name in ("opencv-telea", "opencv-ns"):
        missing = opencv_missing()
        if missing:
            raise MethodUnavailable(missing)
        return Method(name, _opencv("INPAINT_TELEA" if name == "opencv-telea" else "INPAINT_NS"))
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def parse_methods(text: str) -> list[str]:
    """'gan,patchmatch' -> ['gan', 'patchmatch'], validated, order kept, duplicates dropped."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r} in --methods; choose from {', '.join(METHODS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"--methods is empty; choose from {', '.join(METHODS)}")
    return names
