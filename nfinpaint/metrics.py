"""Image-quality metrics for inpainting: PSNR, SSIM and L1, over the hole and the whole image.

Definitions (all on float images in [0, 1], ``data_range = 1.0``, RGB, the
three channels pooled; uint8 and uint16 images, as ``Inpainter`` returns them,
are read on their full scale, other integer types refused):

- **PSNR, whole image**: scikit-image's ``peak_signal_noise_ratio`` on the
  full (H, W, 3) arrays, i.e. ``10 * log10(1 / MSE)`` with the MSE over every
  pixel and channel.
- **PSNR, hole**: the same function on the hole pixels only (the MSE over the
  pixels where the mask is 1, all three channels).  Pixels outside the hole
  never enter it, so it measures the fill alone and does not grow with the
  amount of untouched context.
- **SSIM, whole image**: scikit-image's ``structural_similarity`` with
  ``channel_axis=-1``, ``data_range=1.0`` and its default uniform 7x7 window
  (``gaussian_weights=False``, sample covariance), i.e. the mean of the SSIM map
  with the window half-width cropped off the border (scikit-image's own mean).
- **SSIM, hole**: the mean of the same SSIM map (``full=True``) over the hole
  pixels (all channels), border pixels included so that holes touching the
  border are measured too.  Each map value is computed from the window around
  the pixel, so it sees the hole's surrounding context, as a viewer does.
- **Window size**: 7, or the largest odd number not above the image's shorter
  side when that is smaller than 7 (SSIM needs the window inside the image;
  the paper's 24x24 images take the default 7).
- **L1**: mean absolute difference, over the hole and over the whole image.
- **Fills as saved**: a fill of an 8-bit picture is measured rounded to 8 bits
  (:func:`as_saved`), as the PNG a user gets from ``inpaint`` holds it (a float
  fill scored 0.01-0.09 dB and ~0.0005 SSIM above its file, an 8-bit method's
  none: until 2026-12-05 OpenCV's fills alone paid for the rounding).  In the crop
  protocol the rule is the same per crop: a crop cut at its picture's own scale
  holds 8-bit levels and its fills are rounded; a crop resized as floats is not
  an 8-bit picture, and its fills are measured as they are (OpenCV's still
  rounded by OpenCV itself).
- **PSNR of a perfect fill** (MSE = 0) is reported as :data:`PSNR_CAP` dB
  rather than infinity, so that means and confidence intervals stay finite.

Means come with a 95% confidence interval of the mean (Student's t,
``mean ± t(0.975, n-1) * s / sqrt(n)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np
import torch
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

DATA_RANGE = 1.0
PSNR_CAP = 100.0
DEFAULT_WIN_SIZE = 7

#: Metric names in table order; every one is "higher is better" except the L1s.
QUALITY_METRICS = ("psnr_hole", "ssim_hole", "psnr_full", "ssim_full", "l1_hole", "l1_full")


# Integer pictures are read on their full scale (what Inpainter returns for them); other integer types
# have no scale to read them on.
_INTEGER_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _to_float64(array: np.ndarray) -> np.ndarray:
    """``array`` as float64 in [0, 1]: uint8 and uint16 divided by their largest value (scored as
    floats they came out ~-15 dB), floats as they are."""
    if array.dtype.kind in "biu":
        scale = _INTEGER_SCALES.get(array.dtype)
        if scale is None:
            raise ValueError(f"cannot score a {array.dtype} image: give floats in [0, 1], or uint8 or uint16")
        return array.astype(np.float64) / scale
    return array.astype(np.float64, copy=False)


def _to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) tensor or (H, W, 3) array -> (H, W, 3) float64 array in [0, 1] (see :func:`_to_float64`)."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3:
            raise ValueError(f"expected a (C, H, W) image tensor, got shape {tuple(image.shape)}")
        values = image.detach().cpu()
        values = values.double() if values.is_floating_point() else values     # bfloat16 has no numpy type
        return _to_float64(values.permute(1, 2, 0).numpy())
    array = _to_float64(np.asarray(image))
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image array, got shape {array.shape}")
    return array


def _to_hole(mask: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(1, H, W) / (H, W) mask (1 = hole) -> (H, W) bool array, checked against the image."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    hole = np.asarray(mask)
    if hole.ndim == 3 and hole.shape[0] == 1:
        hole = hole[0]
    if hole.shape != shape:
        raise ValueError(f"mask of shape {hole.shape} does not match the image's {shape}")
    hole = hole > 0.5
    if not hole.any():
        raise ValueError("the mask has no hole pixel: hole metrics are undefined")
    return hole


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """Both images as (H, W, C) float64 arrays of the same shape."""
    x, y = _to_hwc(pred), _to_hwc(target)
    if x.shape != y.shape:
        raise ValueError(f"prediction {x.shape} and target {y.shape} differ in shape")
    return x, y


def _pixels(pred, target, mask) -> tuple[np.ndarray, np.ndarray]:
    """The pixels a metric compares: the whole images, or only the hole's when ``mask`` is given."""
    x, y = _pair(pred, target)
    if mask is None:
        return x, y
    hole = _to_hole(mask, x.shape[:2])
    return x[hole], y[hole]


def win_size_for(height: int, width: int) -> int:
    """SSIM window: 7, or the largest odd size that fits the shorter side."""
    side = min(height, width, DEFAULT_WIN_SIZE)
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return side if side % 2 == 1 else side - 1


def psnr(pred, target, mask=None) -> float:
    """PSNR in dB (data range 1.0) over the whole image, or over the hole when ``mask`` is given."""
    x, y = _pixels(pred, target, mask)
    if np.array_equal(x, y):
        return PSNR_CAP
    return min(float(peak_signal_noise_ratio(y, x, data_range=DATA_RANGE)), PSNR_CAP)


def batch_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`psnr` of every image of an (N, C, H, W) batch at once, on the batch's device
    (training's validation): over the hole pixels (all channels) of each (N, 1, H, W)
    ``mask``, or the whole images; capped at :data:`PSNR_CAP` like :func:`psnr`.  An image whose
    mask has no hole pixel gets NaN (:func:`psnr` refuses it): its hole PSNR is undefined, and the
    cap it got before read as a perfect fill."""
    err = (pred.float() - target.float()) ** 2
    hole = torch.ones_like(err) if mask is None else (mask > 0.5).expand_as(err).float()
    count = hole.flatten(1).sum(1)
    mse = (hole * err).flatten(1).sum(1) / count.clamp_min(1)
    floor = DATA_RANGE ** 2 * 10 ** (-PSNR_CAP / 10)
    value = 10 * torch.log10(DATA_RANGE ** 2 / mse.clamp_min(floor))
    return torch.where(count > 0, value, torch.full_like(value, math.nan))


def ssim_map(pred, target) -> tuple[float, np.ndarray]:
    """scikit-image's SSIM (mean, full (H, W, C) map) with this module's settings."""
    x, y = _pair(pred, target)
    mean, full = structural_similarity(y, x, data_range=DATA_RANGE, channel_axis=-1,
                                       win_size=win_size_for(*x.shape[:2]), full=True)
    return float(mean), full


def ssim(pred, target, mask=None) -> float:
    """SSIM over the whole image (scikit-image's mean), or the SSIM map's mean over the hole."""
    mean, full = ssim_map(pred, target)
    if mask is None:
        return mean
    hole = _to_hole(mask, full.shape[:2])
    return float(full[hole].mean())


def l1(pred, target, mask=None) -> float:
    """Mean absolute difference over the whole image, or over the hole pixels."""
    x, y = _pixels(pred, target, mask)
    return float(np.abs(x - y).mean())


def as_saved(filled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """``filled`` as a user's file holds it: rounded to 8 bits when ``original`` is an 8-bit picture
    (every value a multiple of 1/255), as ``inpaint`` writes its PNG; deeper pictures as they are."""
    levels = original.detach().float() * 255
    if bool(((levels - levels.round()).abs() <= 1e-3).all()):
        return (filled.clamp(0, 1) * 255).round() / 255
    return filled


def image_metrics(pred, target, mask) -> dict[str, float]:
    """All of :data:`QUALITY_METRICS` for one filled image against its original."""
    x, y = _to_hwc(pred), _to_hwc(target)
    hole = _to_hole(mask, x.shape[:2])
    ssim_mean, full = ssim_map(x, y)
    return {
        "psnr_hole": psnr(x, y, hole),
        "ssim_hole": float(full[hole].mean()),
        "psnr_full": psnr(x, y),
        "ssim_full": ssim_mean,
        "l1_hole": l1(x, y, hole),
        "l1_full": l1(x, y),
    }


@dataclass(frozen=True)
class Summary:
    """Mean of a sample and the half-width of its 95% confidence interval (nan when n < 2)."""

    mean: float
    ci95: float
    n: int


def format_summary(summary: Summary, digits: int) -> str:
    """``summary`` as a table cell: "mean ± ci95" with ``digits`` decimals, the mean alone when n < 2."""
    if math.isnan(summary.ci95):
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.ci95:.{digits}f}"


def summarize(values: Iterable[float]) -> Summary:
    """Mean ± 95% CI half-width (Student's t) of ``values``."""
    data = np.asarray(list(values), dtype=np.float64)
    if data.size == 0:
        raise ValueError("cannot summarise an empty sample")
    mean = float(data.mean())
    if data.size < 2:
        return Summary(mean, math.nan, 1)
    sem = float(data.std(ddof=1)) / math.sqrt(data.size)
    return Summary(mean, float(stats.t.ppf(0.975, data.size - 1)) * sem, int(data.size))


def summarize_rows(rows: Sequence[dict[str, float]], keys: Sequence[str]) -> dict[str, Summary]:
    return {key: summarize(row[key] for row in rows) for key in keys}


def paired(ours: Sequence[dict[str, float]], other: Sequence[dict[str, float]], key: str,
           groups: Sequence[Hashable] | None = None) -> Summary:
    """Mean ± 95% CI of ``ours - other`` in ``key``, row by row (the same images and masks): over the
    rows, or with ``groups`` (each row's picture), over each group's mean difference.  Rows of one
    picture are not independent (its content makes one method win on all of them), so the groups are
    the honest sample: a wider interval on fewer, independent values."""
    diffs = [a[key] - b[key] for a, b in zip(ours, other, strict=True)]
    if groups is None:
        return summarize(diffs)
    per_group: dict[Hashable, list[float]] = {}
    for group, diff in zip(groups, diffs, strict=True):
        per_group.setdefault(group, []).append(diff)
    return summarize(float(np.mean(values)) for values in per_group.values())
