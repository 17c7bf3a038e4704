"""The full-size evaluation protocol: whole pictures, the hole families people paint, every method.

``python -m nfinpaint.evaluate --data DIR --size 512 --masks thin,medium,large``:

- every picture of DIR scaled (Lanczos) so its longer side is ``--size``
  (512x384 for a 4:3 photograph); pictures are never cropped;
- for each hole family (:func:`nfinpaint.masks.family_masks`, ``scale="picture"``:
  scratches 4-9 px wide, an object of ~56 px, an object of ~150 px at 512x384;
  on request ``box``, :func:`nfinpaint.masks.box_masks`: a rectangle of
  ~40-160 px, the shape the generator was not trained on, and ``edge``,
  :func:`nfinpaint.masks.edge_masks`: a medium or large object flush with a
  side or in a corner of the picture; and ``lama-thin``, ``lama-medium``,
  ``lama-thick``, :func:`nfinpaint.masks.lama_masks`: LaMa's evaluation masks,
  strokes or boxes over up to half the picture)
  one mask per picture, drawn from (seed, picture, family), the same for every
  method;
- every method fills the whole picture through its public code path (the
  ``gan`` method is ``nfinpaint.inpaint.inpaint_image`` itself);
- per family and method: hole PSNR, hole SSIM, whole-picture PSNR and SSIM,
  the texture ratio (gradient energy in the hole relative to the truth's:
  1 = as much detail as the original, a smooth blob is near 0), the detail
  in place (how much of the truth's fine detail the fill holds where the
  truth holds it, a projection coefficient: texture in the wrong place
  scores near 0) and seconds per picture; then the paired difference of the ``gan`` method against every
  other method on the same pictures and masks, mean ± 95% confidence interval
  over the fills and, with several masks a picture (``--repeats``), over the
  pictures (each one's fills averaged first: fills of one picture are not
  independent, so that is the interval to trust).
"""
from __future__ import annotations

import csv
import io
import math
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from nfinpaint import metrics
from nfinpaint.baselines import Method
from nfinpaint.images import (DEEP_GREY_MODES, OPEN_ERRORS, ImageError, open_error, pil_to_arrays,
                              upright)
from nfinpaint.masks import HOLE_FAMILIES, LAMA_KINDS, box_masks, edge_masks, family_masks, lama_masks
from nfinpaint.metrics import format_summary

# what --masks takes with --size (new ones at the end: a family's index is in its masks' seed)
FAMILIES = HOLE_FAMILIES + ("box", "edge") + LAMA_KINDS
DEFAULT_FAMILIES = ",".join(HOLE_FAMILIES)
CROP_SIDE = 160          # figure crops around each hole, in pixels of the figure
KEYS = (("psnr_hole", "PSNR hole (dB)", 2), ("ssim_hole", "SSIM hole", 4), ("psnr_full", "PSNR picture (dB)", 2),
        ("ssim_full", "SSIM picture", 4), ("texture", "texture ratio", 3), ("placed", "detail in place", 3),
        ("seconds", "s / picture", 3))
DETAIL_SIGMA = 2.0       # fine detail: the picture less its Gaussian blur of this many pixels
SOMETIMES_MEASURED = ("texture", "placed")    # NaN where a hole has nothing to measure: left out of the mean


def parse_families(text: str) -> list[str]:
    names = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in FAMILIES:
            raise ValueError(f"unknown hole family {name!r} in --masks; with --size choose from "
                             f"{', '.join(FAMILIES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"--masks is empty; choose from {', '.join(FAMILIES)}")
    return names


#: The shorter side, once scaled, that every method and metric of the protocol needs at its defaults:
#: PatchMatch's 7x7 patch (nfinpaint.patchmatch.inpaint's patch_size); SSIM needs 3 (metrics.win_size_for).
MIN_SIDE = 7


class PictureTooSmall(ImageError):
    """A picture whose shorter side, scaled to the protocol's size, is too short to evaluate."""


def _scaled(img: Image.Image, size: int, min_side: int = 1, name: str = "a picture") -> torch.Tensor:
    """(3, H, W) float picture of ``img``, its EXIF orientation applied (as every reader here does) and
    its longer side scaled to ``size`` (Lanczos): 8-bit pictures in PIL's 8-bit RGB, deeper grey ones
    (16-bit, float) as floats, so that they are not clipped to 8 bits on the way.  PictureTooSmall when
    a side would be shorter than ``min_side`` (checked before the pixels are decoded)."""
    # decodes first (an unreadable picture raises OSError, caught as such); a damaged EXIF block is
    # ignored, with a warning naming the picture
    upright(img, name, in_place=True)
    scale = size / max(img.size)
    shape = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if min(shape) < min_side:
        raise PictureTooSmall(f"{img.height}x{img.width} pixels, {shape[1]}x{shape[0]} with its longer side "
                              f"scaled to {size}: too thin to evaluate (every side needs {min_side} pixels)")
    if img.mode in DEEP_GREY_MODES:
        grey = Image.fromarray(pil_to_arrays(img)[0][..., 0], "F")
        grey = grey.resize(shape, Image.LANCZOS) if shape != grey.size else grey
        return torch.from_numpy(np.clip(np.asarray(grey), 0, 1)).expand(3, -1, -1).contiguous()
    img = img.convert("RGB")
    img = img.resize(shape, Image.LANCZOS) if shape != img.size else img
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_pictures(data: str | None, size: int, limit: int | None = None,
                  min_side: int = MIN_SIDE) -> tuple[list[tuple[str, torch.Tensor]], str]:
    """(name, (3, H, W) float picture) pairs, the longer side scaled to ``size`` (Lanczos), from the
    folder ``data`` (a file that cannot be read, or whose shorter side would scale below ``min_side``
    pixels, is skipped with a warning, as training and the crop protocol do) or, with None, the embedded
    scikit-image photographs; and a one-line description."""
    from nfinpaint import data as data_module  # noqa: PLC0415

    out, skipped, unreadable = [], [], 0       # skipped: why, for each picture left out
    if data is None:
        for name, array in data_module._embedded_arrays()[:limit]:
            try:
                out.append((name, _scaled(Image.fromarray(np.asarray(array)), size, min_side, name)))
            except PictureTooSmall as exc:
                skipped.append(f"{name}: {exc}")
        where = "the embedded scikit-image photographs"
    else:
        for path in data_module.find_image_files(data):
            if limit is not None and len(out) >= limit:    # the first N pictures that can be evaluated
                break
            try:
                with Image.open(path) as img:
                    # the path within --data (searched recursively: a/x.png and b/x.png were both "x.png")
                    out.append((path.relative_to(data).as_posix(), _scaled(img, size, min_side, str(path))))
            except PictureTooSmall as exc:      # an ImageError: caught first
                skipped.append(f"{path}: {exc}")
            except (*OPEN_ERRORS, ImageError) as exc:
                unreadable += 1
                skipped.append(str(f"{path}: {exc}" if isinstance(exc, ImageError) else open_error(path, exc)))
        where = f"folder {data}"
    if not out and skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        can = "be read" if unreadable == len(skipped) else "be evaluated"
        raise data_module.DataError(f"no image of {data or where} can {can}: {skipped[0]}{more}")
    for reason in skipped:
        warnings.warn(f"skipping {reason}", data_module.DataWarning, stacklevel=2)
    return out, f"{where}, {len(out)} pictures, longer side scaled to {size} px (Lanczos)"


def picture_mask(family: str, picture: torch.Tensor, seed: int, index: int, repeat: int = 0) -> torch.Tensor:
    """The (1, H, W) mask of ``family`` for picture ``index`` (its ``repeat``-th): a function of
    (seed, index, family, repeat)."""
    h, w = picture.shape[-2:]
    family_seed = (seed * 1_000_003 + index * 101 + FAMILIES.index(family) + repeat * 7919) & 0x7FFF_FFFF
    if family == "box":
        return box_masks(1, h, w, seed=family_seed)[0]
    if family == "edge":
        return edge_masks(1, h, w, seed=family_seed)[0]
    if family in LAMA_KINDS:
        return lama_masks(family, 1, h, w, seed=family_seed)[0]
    return family_masks(family, 1, h, w, seed=family_seed, scale="picture")[0]


def texture_ratio(filled: torch.Tensor, truth: torch.Tensor, hole: torch.Tensor) -> float:
    """Gradient energy of ``filled`` inside the hole divided by the truth's: squared forward differences,
    channels pooled, over the pairs of neighbours that both lie in the hole (1 = as much detail as the
    original, a flat fill 0).  Pairs that cross the hole's edge are left out: they measure the seam, not
    the detail (until 2026-12-03 the right and lower edges' pairs counted, so a flat fill of thin strokes
    scored ~2.5).  The truth's energy is floored at one 8-bit level in one channel per pair, so a hole
    over a flat truth (a clear sky) does not divide by ~0.  NaN for a hole with no such pair (it was 0,
    a flat fill's score, whatever the fill)."""
    inside = hole.reshape(hole.shape[-2:]) > 0.5
    pairs_y = (inside[1:, :] & inside[:-1, :]).float()
    pairs_x = (inside[:, 1:] & inside[:, :-1]).float()

    def energy(x: torch.Tensor) -> torch.Tensor:
        gy = x[:, 1:, :] - x[:, :-1, :]
        gx = x[:, :, 1:] - x[:, :, :-1]
        return (gy ** 2 * pairs_y).sum() + (gx ** 2 * pairs_x).sum()

    count = float(pairs_y.sum() + pairs_x.sum())
    if count == 0:      # a hole of single pixels (a 1 px diagonal): no detail inside it to measure
        return math.nan
    return float(energy(filled) / energy(truth).clamp_min(count / 255.0 ** 2))


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) ``image`` blurred by a separable Gaussian of ``sigma`` px, reflected at the border (a
    side of more than 3 sigma px)."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-t ** 2 / (2 * sigma * sigma))
    c = image.shape[0]
    k = (k / k.sum()).view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(F.pad(image[None], (r, r, 0, 0), mode="reflect"), k, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=c)[0]


def fine_detail(image: torch.Tensor, sigma: float = DETAIL_SIGMA, within: torch.Tensor | None = None) -> torch.Tensor:
    """(C, H, W) ``image`` less its Gaussian blur of ``sigma`` px.  ``within``: an (H, W) region whose
    pixels alone are averaged (a normalised convolution; 0 outside it): the detail inside a hole, its
    known surroundings left out, so a flat fill has none, whatever is around it."""
    if within is None:
        return image - _gaussian_blur(image, sigma)
    weight = within.to(image.dtype)[None]
    local = _gaussian_blur(image * weight, sigma) / _gaussian_blur(weight, sigma).clamp_min(1e-12)
    return (image - local) * weight


def detail_in_place(filled: torch.Tensor, truth: torch.Tensor, hole: torch.Tensor) -> float:
    """How much of the truth's fine detail ``filled`` holds where the truth holds it: the projection
    coefficient of the fill's detail onto the truth's over the hole, channels pooled, the detail of
    each taken within the hole alone (:func:`fine_detail`).  1 = the truth's own detail, 0 = a flat
    fill, about 0 for texture in other places (misplaced detail costs hole SSIM, docs/evaluation.md;
    the texture ratio beside it tells a blob from misplaced texture).  Not a share bounded by [0, 1]:
    detail against the truth's is negative, and a blur's soft high-pass overlaps the truth's (the truth
    blurred by sigma 1, 2 and 4 px scores about 0.4, 0.15 and 0.04 on the validation photographs).
    The truth's energy is floored at one 8-bit level a channel a pixel, so a hole over a flat truth
    does not divide by ~0."""
    inside = hole.reshape(hole.shape[-2:]) > 0.5
    if not inside.any():
        return math.nan
    ours = fine_detail(filled, within=inside)[:, inside].double()
    theirs = fine_detail(truth, within=inside)[:, inside].double()
    floor = theirs.numel() / 255.0 ** 2
    return float((ours * theirs).sum() / (theirs * theirs).sum().clamp_min(floor))


@dataclass
class FamilyResult:
    family: str
    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)    # method -> per picture
    fills: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    masks: list[torch.Tensor] = field(default_factory=list)     # of the fills kept for figures
    coverage: list[float] = field(default_factory=list)         # of every mask: its share of the picture
    pictures: list[int] = field(default_factory=list)    # the picture of each row (rows of every method alike)


def run(pictures: list[tuple[str, torch.Tensor]], families: Sequence[str], methods: Sequence[Method],
        seed: int, progress: bool = True, keep_fills: int = 0, repeats: int = 1) -> list[FamilyResult]:
    """Fill every picture with every method for every family, ``repeats`` masks per picture;
    ``keep_fills`` pictures' first fills are kept for figures.  Each method fills the first
    picture once untimed first (start-up costs).  A ValueError names the picture it came from."""
    results = []
    bar = tqdm(total=len(families) * len(pictures) * len(methods) * repeats, desc="evaluating", unit="fill",
               disable=not progress, file=sys.stderr)
    for method in methods:
        with _naming(pictures[0]):
            method.fill(pictures[0][1], picture_mask(families[0], pictures[0][1], seed, 0), seed)
    for family in families:
        result = FamilyResult(family)
        jobs = [(index, repeat) for repeat in range(repeats) for index in range(len(pictures))]
        for index, repeat in jobs:
            picture = pictures[index][1]
            mask = picture_mask(family, picture, seed, index, repeat)
            keep = repeat == 0 and index < keep_fills
            result.pictures.append(index)
            result.coverage.append(float((mask > 0.5).float().mean()))
            if keep:
                result.masks.append(mask)
            for method in methods:
                bar.set_postfix_str(f"{family}, {method.name}")
                with _naming(pictures[index]):
                    start = time.perf_counter()
                    filled = method.fill(picture, mask, seed + index)
                    if method.device.type == "cuda":
                        torch.cuda.synchronize(method.device)
                    seconds = time.perf_counter() - start
                    filled = metrics.as_saved(filled, picture)     # what the user's file holds
                    row = metrics.image_metrics(filled, picture, mask)
                    row["texture"] = texture_ratio(filled, picture, mask)
                    row["placed"] = detail_in_place(filled, picture, mask)
                row["seconds"] = seconds
                result.rows.setdefault(method.name, []).append(row)
                if keep:
                    result.fills.setdefault(method.name, []).append(filled)
                bar.update(1)
        results.append(result)
    bar.close()
    return results


@contextmanager
def _naming(picture: tuple[str, torch.Tensor]):
    """A ValueError filling or measuring ``picture`` says which picture (e.g. a --patch-size larger than a
    thin one, which load_pictures' default MIN_SIDE does not cover): a run of many stopped naming none."""
    try:
        yield
    except ValueError as exc:
        name, pixels = picture
        raise ValueError(f"{name} ({pixels.shape[-2]}x{pixels.shape[-1]} once scaled): {exc}") from exc


def paired_table(ours: Sequence[dict[str, float]], others: Sequence[tuple[str, Sequence[dict[str, float]]]],
                 groups: Sequence | None = None) -> list[str]:
    """The Markdown rows of ``ours`` minus each of ``others`` (label, rows) in hole PSNR and SSIM, over
    the rows and, with ``groups`` (each row's picture), over the pictures too."""
    lines = ["| vs | PSNR hole (dB) | SSIM hole |" + (" PSNR hole, by picture | SSIM hole, by picture |"
                                                   if groups is not None else ""),
             "|---|---:|---:|" + ("---:|---:|" if groups is not None else "")]
    for label, rows in others:
        cells = [format_summary(metrics.paired(ours, rows, key, by), digits)
                 for by in ((None, groups) if groups is not None else (None,))
                 for key, digits in (("psnr_hole", 2), ("ssim_hole", 4))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _several_masks(result: FamilyResult) -> bool:
    return len(set(result.pictures)) < len(result.pictures)


def markdown(results: Sequence[FamilyResult], methods: Sequence[Method], header: dict) -> str:
    labels = {m.name: m.label for m in methods}
    lines = [f"# Full-size evaluation: {header['pictures']} pictures x {header.get('repeats', 1)} mask(s) per "
             f"family, longer side {header['size']} px, seed {header['seed']}", "",
             f"- Data: {header['data']}", f"- Generator: {header['generator']}",
             "- Holes: one mask per picture and family, the same for every method (nfinpaint.masks.family_masks, "
             "scale='picture': thin = scratches 4-9 px wide, medium = an object of ~56 px, large = an object of "
             "~150 px, at 512x384; nfinpaint.masks.box_masks: box = one rectangle of ~40-160 px, a shape not "
             "trained on; nfinpaint.masks.edge_masks: edge = a medium or large object moved flush with a side "
             "or into a corner; nfinpaint.masks.lama_masks: lama-thin / lama-medium / lama-thick = LaMa's "
             "evaluation masks, strokes or boxes over up to half the picture).",
             "- Every method fills the whole picture; gan is `python -m nfinpaint.inpaint`'s code path. PSNR/SSIM "
             "as in nfinpaint.metrics; texture ratio = gradient energy in the hole (pairs of neighbours both in "
             "it) / the original's (1 = as detailed as the original); detail in place = how much of the "
             "original's fine detail (the hole's pixels less their Gaussian blur over the hole, sigma 2 px) the "
             "fill holds where the original holds it, a projection coefficient (1 = the original's, 0 = a flat "
             "fill, about 0 for texture in other places; the original blurred by sigma 2 px: about 0.15). "
             "Mean ± 95% CI over the fills (pictures x masks).", ""]
    if header.get("skipped"):
        lines += ["- Skipped: " + "; ".join(f"{k} ({v})" for k, v in header["skipped"].items()), ""]
    for result in results:
        coverage = float(np.mean(result.coverage)) if result.coverage else None
        lines += [f"## {result.family} holes" + (f" (mean {coverage * 100:.1f}% of the picture)" if coverage else ""),
                  "", "| Method | " + " | ".join(h for _, h, _ in KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
        for name, rows in result.rows.items():
            stats = _summaries(rows, [k for k, _, _ in KEYS])
            lines.append(f"| {labels[name]} | " + " | ".join(_cell(stats[k], d, len(rows)) for k, _, d in KEYS) + " |")
        if "gan" in result.rows and len(result.rows) > 1:
            several = _several_masks(result)
            lines += ["", f"Paired, {labels['gan']} minus each method (same pictures and masks)"
                      + (f"; over the {len(result.pictures)} fills, and over the {len(set(result.pictures))} "
                         "pictures (each picture's fills averaged first: the interval to trust, its fills "
                         "not being independent)" if several else "") + ":", ""]
            lines += paired_table(result.rows["gan"], [(labels[name], rows) for name, rows in result.rows.items()
                                                       if name != "gan"],
                                  result.pictures if several else None)
        lines.append("")
    return "\n".join(lines)


def _cell(summary: metrics.Summary, digits: int, fills: int) -> str:
    """A table cell: the summary, and its n where it is over fewer than the row's ``fills`` (the texture
    ratio of holes with no two neighbouring pixels is not measured)."""
    text = format_summary(summary, digits)
    return text if summary.n == fills else f"{text} (n={summary.n})"


def _summaries(rows: Sequence[dict[str, float]], keys: Sequence[str]) -> dict[str, metrics.Summary]:
    """:func:`metrics.summarize_rows`, the texture ratio over the fills that have one (a hole of single
    pixels has none, NaN: it made the whole column "nan"); NaN when none has."""
    stats = metrics.summarize_rows(rows, [k for k in keys if k not in SOMETIMES_MEASURED])
    for key in SOMETIMES_MEASURED:
        if key in keys:
            measured = [row[key] for row in rows if not math.isnan(row[key])]
            stats[key] = metrics.Summary(math.nan, math.nan, 0) if not measured else metrics.summarize(measured)
    return stats


def results_csv(results: Sequence[FamilyResult]) -> str:
    keys = [k for k, _, _ in KEYS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    # texture_n: the fills the texture ratio is over (n less those with no two neighbouring hole pixels)
    writer.writerow(["family", "method", "n"] + [f"{k}_{s}" for k in keys for s in ("mean", "ci95")]
                    + ["texture_n"])
    for result in results:
        for name, rows in result.rows.items():
            stats = _summaries(rows, keys)
            writer.writerow([result.family, name, len(rows)]
                            + [repr(float(v)) for k in keys for v in (stats[k].mean, stats[k].ci95)]
                            + [stats["texture"].n])
    return buf.getvalue()


def per_picture_csv(results: Sequence[FamilyResult], names: Sequence[str]) -> str:
    keys = [k for k, _, _ in KEYS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["family", "picture", "mask", "method"] + keys)
    for result in results:
        for method, rows in result.rows.items():
            for i, row in enumerate(rows):
                writer.writerow([result.family, names[i % len(names)], i // len(names), method]
                                + [repr(float(row[k])) for k in keys])
    return buf.getvalue()


def hole_crop(image: torch.Tensor, mask: torch.Tensor) -> tuple[slice, slice]:
    """A square around the mask's holes with as much context again, inside the picture."""
    ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
    h, w = mask.shape[-2:]
    extent = int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1
    side = min(h, w, max(64, 2 * extent))
    cy, cx = int(ys.min() + ys.max()) // 2, int(xs.min() + xs.max()) // 2
    top, left = min(max(cy - side // 2, 0), h - side), min(max(cx - side // 2, 0), w - side)
    return slice(top, top + side), slice(left, left + side)


def write_figures(folder: Path, pictures: list[tuple[str, torch.Tensor]], results: Sequence[FamilyResult],
                  methods: Sequence[Method]) -> list[Path]:
    """Per family, one grid: a crop around the holes of each kept picture, original | masked | each method."""
    from nfinpaint.figures import save_comparison_grid  # noqa: PLC0415

    paths = []
    for result in results:
        if not result.masks:
            continue
        originals, holes, fills = [], [], {m.label: [] for m in methods}
        for index, mask in enumerate(result.masks):
            rows, cols = hole_crop(pictures[index][1], mask)

            def crop(x: torch.Tensor) -> torch.Tensor:
                return F.interpolate(x[None, :, rows, cols], size=(CROP_SIDE, CROP_SIDE), mode="bilinear",
                                     align_corners=False, antialias=True)[0].clamp(0, 1)

            originals.append(crop(pictures[index][1]))
            holes.append((crop(mask) > 0.5).float())
            for m in methods:
                fills[m.label].append(crop(result.fills[m.name][index]))
        path = folder / "figures" / f"{result.family}.png"
        paths.append(save_comparison_grid(path, torch.stack(originals), torch.stack(holes),
                                          {k: torch.stack(v) for k, v in fills.items()}))
    return paths
