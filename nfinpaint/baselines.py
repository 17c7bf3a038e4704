"""The inpainting methods that evaluation compares, behind one interface.

Every method fills one image: ``method.fill(image, mask, seed=0)`` takes a
(3, H, W) float image in [0, 1] and a (1, H, W) mask (1 = hole) and returns
the filled (3, H, W) float32 image on the CPU, composited so that every pixel
outside the hole is the input pixel, bit for bit (``torch.where`` on the mask:
no arithmetic touches the known pixels).  Every method gets the image with the
hole blanked to 0, so no method can use what was under the hole.

Registry (``METHODS``, one :class:`Method` subclass per entry, read by ``evaluate`` and ``inpaint``):

- ``gan``: the trained generator (needs a checkpoint), through the code path of
  ``python -m nfinpaint.inpaint`` (any picture size).
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
  Each hole gets ``border-mean``'s fill under it first: both methods read the
  pixels under a hole that touches the picture's edge.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from nfinpaint.errors import NfinpaintError
from nfinpaint.masks import blank_holes

FLOOR = "border-mean"   # shown in every evaluation table

OPENCV_RADIUS = 3
BORDER_WIDTH = 2


class MethodUnavailable(NfinpaintError, RuntimeError):
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


class Method:
    """One inpainting method: ``fill(image, mask, seed)`` -> composited (3, H, W) on the CPU.

    A method is a subclass with a ``name`` (its registry key, used on the command
    line), a ``label`` (tables and figures), ``missing()`` (None when it can run
    here, else why not) and ``raw_fill(image, mask, seed)`` (the image arrives with
    its holes blanked; the result is composited by :meth:`fill`).  Register it in
    :data:`METHODS` with :func:`register`.
    """

    name: str = ""
    label: str = ""
    needs_generator: bool = False
    optional: bool = False     # an extra install; evaluation skips it with a note when missing
    by_default: bool = True    # in evaluate's default --methods

    def __init__(self, *, generator: torch.nn.Module | None = None, device: str | torch.device = "cpu",
                 options: dict | None = None):
        missing = self.missing()
        if missing:
            raise MethodUnavailable(missing)
        self.device = torch.device(device)
        self.generator = generator
        self.options = dict(options or {})

    @classmethod
    def missing(cls) -> str | None:
        return None

    @classmethod
    def refuses(cls, generator: torch.nn.Module | None) -> str | None:
        """None unless this method cannot fill with the loaded ``generator`` (None: none loaded yet), else why
        (a phrase that follows the method's name: "needs ...")."""
        return None

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        raise NotImplementedError

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device})"


#: Every method by name: what ``evaluate --methods`` and ``inpaint --method`` choose from.
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


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


@register
class LearnedFill(Method):
    """The trained generator, through exactly the code path of ``python -m nfinpaint.inpaint``:
    any picture size; a full-resolution generator fills every hole on windows at the picture's
    own resolution, a fixed-size one on windows scaled to its size."""

    name, label, needs_generator = "gan", "GAN (ours)", True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.generator is None:
            raise ValueError("the gan method needs a trained generator (--checkpoint PATH)")
        from nfinpaint.neural_fill import ready_to_fill  # noqa: PLC0415  (as inpaint_image below)

        self.generator = ready_to_fill(self.generator, self.device)

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        from nfinpaint.inpaint import inpaint_image  # noqa: PLC0415  (inpaint imports this module)

        filled, _ = inpaint_image(image, mask, generator=self.generator, method=self.name, device=self.device,
                                  seed=seed, log=lambda line: None, **self.options)
        return filled


@register
class LearnedDetailFill(LearnedFill):
    """The learned fill with its holes' texture re-synthesised from the picture's own patches, starting
    from the learned fill (``neural_fill.add_detail``): less smooth, lower PSNR/SSIM.  Full-resolution
    generators only."""

    name, label = "gan-detail", "GAN + detail (ours)"
    by_default = False         # a variant of gan, asked for by name

    @classmethod
    def refuses(cls, generator: torch.nn.Module | None) -> str | None:
        from nfinpaint.generators import is_full_resolution  # noqa: PLC0415

        if generator is not None and not is_full_resolution(generator):
            return "needs a full-resolution generator (the shipped one, or one trained with the fullres preset)"
        return None


@register
class PatchMatchFill(Method):
    """:func:`nfinpaint.patchmatch.inpaint` (CUDA on a GPU, multi-threaded C++ on the CPU)."""

    name, label = "patchmatch", "PatchMatch"

    @classmethod
    def missing(cls) -> str | None:
        return patchmatch_missing()

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        from nfinpaint import patchmatch  # noqa: PLC0415

        return patchmatch.inpaint(image.to(self.device), mask.to(self.device), seed=seed, **self.options)


@register
class BiharmonicFill(Method):
    """``skimage.restoration.inpaint_biharmonic``."""

    name, label = "biharmonic", "Biharmonic"

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        from skimage.restoration import inpaint_biharmonic  # noqa: PLC0415

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
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        # each hole's ring from its bounding box grown by the ring width: cost follows the holes
        rows = slice(max(0, sl[0].start - BORDER_WIDTH), sl[0].stop + BORDER_WIDTH)
        cols = slice(max(0, sl[1].start - BORDER_WIDTH), sl[1].stop + BORDER_WIDTH)
        component = labels[rows, cols] == k
        ring = torch.from_numpy(ndimage.binary_dilation(component, structure=ring_shape)) & known[rows, cols]
        colour = image[:, rows, cols][:, ring].mean(dim=1) if bool(ring.any()) else None
        if colour is None:
            colour = image[:, known].mean(dim=1) if bool(known.any()) else torch.full((3,), 0.5, dtype=image.dtype)
        region = out[:, rows, cols]
        region[:, torch.from_numpy(component)] = colour[:, None].to(out.dtype)
    return out


@register
class BorderMeanFill(Method):
    """The floor: each hole filled with the mean colour of the known pixels around it."""

    name, label = FLOOR, "Border mean colour (floor)"

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        return border_mean_fill(image, mask, seed)


class _OpenCVFill(Method):
    """``cv2.inpaint`` (radius :data:`OPENCV_RADIUS`) on the image rounded to 8 bits."""

    flag = ""
    optional = True

    @classmethod
    def missing(cls) -> str | None:
        return opencv_missing()

    def raw_fill(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        import cv2  # noqa: PLC0415

        # cv2.inpaint reads the pixels under a hole that touches the picture's edge (Telea by up to 5 levels):
        # the blanked 0s pulled such fills toward black (-0.10 dB on the validation photographs' edge holes);
        # each hole's ring mean instead, from known pixels only
        image = border_mean_fill(image, mask)
        rgb = (image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        hole = (mask[0].numpy() > 0.5).astype(np.uint8) * 255
        # cv2.inpaint fills a one-row (or one-column) picture differently from call to call (up to 57
        # levels, OpenCV 4.x): it gets the row twice more around it, and the middle one is kept
        pad = [(int(side == 1),) * 2 for side in hole.shape]
        if any(p for p, _ in pad):
            rgb, hole = np.pad(rgb, pad + [(0, 0)], mode="edge"), np.pad(hole, pad, mode="edge")
        out = cv2.inpaint(np.ascontiguousarray(rgb[..., ::-1]), hole, OPENCV_RADIUS, getattr(cv2, self.flag))
        out = out[pad[0][0]:out.shape[0] - pad[0][0], pad[1][0]:out.shape[1] - pad[1][0]]
        return torch.from_numpy(np.ascontiguousarray(out[..., ::-1])).permute(2, 0, 1).float() / 255.0


@register
class TeleaFill(_OpenCVFill):
    name, label, flag = "opencv-telea", "OpenCV Telea", "INPAINT_TELEA"


@register
class NavierStokesFill(_OpenCVFill):
    name, label, flag = "opencv-ns", "OpenCV Navier-Stokes", "INPAINT_NS"


#: Names shown in tables and figures.
LABELS = {name: cls.label for name, cls in METHODS.items()}


def build_method(name: str, *, generator: torch.nn.Module | None = None,
                 device: str | torch.device = "cpu", options: dict | None = None) -> Method:
    """The method called ``name`` (a key of :data:`METHODS`), ready to fill images.

    Raises ValueError for an unknown name or ``gan`` without a generator, and
    :class:`MethodUnavailable` when the method cannot run here.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](generator=generator, device=device, options=options)


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
