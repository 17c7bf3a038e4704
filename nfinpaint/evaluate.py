"""``python -m nfinpaint.evaluate``: PSNR/SSIM table of the GAN against PatchMatch and classical baselines.

Every method fills the same images with the same masks (drawn once from
``--seed``); the table reports, per method, the mean and 95% confidence
interval of PSNR and SSIM over the hole and over the whole image, L1, and the
time per image, in the style of the paper's Table 5.

Outputs in ``--out``: ``results.md`` and ``results.csv`` (the table),
``per_image.csv`` (every image's metrics), ``figures/grid_NNN.png``
(original | masked | each method) and ``config.json`` (arguments, data,
checkpoint, versions).  Same inputs and seed give identical numbers except the
timing columns.  See ``nfinpaint.metrics`` for the exact metric definitions.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from nfinpaint import baselines, metrics
from nfinpaint.files import write_text
from nfinpaint.images import save_image

DEFAULT_METHODS = "gan,patchmatch,biharmonic,opencv-telea,opencv-ns"
DEFAULT_IMAGE_SIZE = 24   # the paper preset, used only without a checkpoint
FIGURE_ROWS = 8           # images per figure grid


class UsageError(Exception):
    """Bad input from the user: printed as one ``error: ...`` line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nfinpaint.evaluate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", metavar="PATH",
                   help="trained generator: a training run directory or its exported generator.pt "
                        "(required for the gan method; sets the image and hole size)")
    p.add_argument("--data", metavar="DIR",
                   help="folder of test images (cropped and scaled to the generator's size); "
                        "default: the held-out split of the embedded default set")
    p.add_argument("--masks", choices=("random", "center", "freeform"), default="random",
                   help="hole protocol: random rectangles of random size and position (the paper's "
                        "test protocol, default), the fixed centre hole of training, or free-form strokes")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated methods among {', '.join(baselines.METHODS)} "
                        f"(default: {DEFAULT_METHODS}; the OpenCV ones are skipped with a note when "
                        f"OpenCV is not installed)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the masks and of PatchMatch (default 0)")
    p.add_argument("--out", metavar="DIR", default="evaluation",
                   help="output folder (created; default ./evaluation)")
    p.add_argument("--device", default="auto",
                   help="device for the GAN and PatchMatch: auto (a GPU when visible), cpu, cuda, cuda:N")
    p.add_argument("--image-size", type=int, metavar="S",
                   help=f"image size without a checkpoint (default {DEFAULT_IMAGE_SIZE}); "
                        "with one it must match the generator")
    p.add_argument("--hole-size", type=int, metavar="H",
                   help="mask size parameter (default: the checkpoint's training hole, or a third of "
                        "the image); random rectangles have sides in [H/2, 1.5 H]")
    p.add_argument("--figures", type=int, default=16, metavar="K",
                   help="how many images to show in figure grids (default 16, 0 for none)")
    p.add_argument("--patch-size", type=int, default=None, metavar="P",
                   help="PatchMatch patch size (odd; default: nfinpaint.patchmatch's)")
    p.add_argument("--split-seed", type=int, default=None, metavar="S",
                   help="seed of the embedded set's train/validation split (default: the training seed "
                        "recorded in the checkpoint, else 0); must match training's to keep the split held out")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch and the CPU PatchMatch (default: torch's default); on a busy "
                        "machine, 1 gives steadier times for the tiny per-image GAN calls")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------- inputs

def resolve_device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: no CUDA GPU is visible; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {text}: only cpu and cuda devices are supported")
    return device


@dataclass
class LoadedGenerator:
    generator: torch.nn.Module
    meta: dict
    path: Path
    sha256: str
    run_config: dict = field(default_factory=dict)   # the run's config.toml, when beside the file


def read_run_config(file: Path) -> dict:
    """The training run's resolved ``config.toml`` beside the generator file ({} if absent or unreadable)."""
    import tomllib

    path = file.parent / "config.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def checkpoint_file(path: Path) -> Path:
    """The file holding the generator: ``path`` itself or ``path/generator.pt`` for a run directory."""
    return path / "generator.pt" if path.is_dir() else path


def load_checkpoint(text: str) -> LoadedGenerator:
    """Load a generator with :func:`nfinpaint.generator_io.load_generator`, errors as UsageError."""
    from nfinpaint import generator_io

    path = Path(text)
    if not path.exists():
        raise UsageError(f"--checkpoint {text}: no such file or directory")
    try:
        generator, meta = generator_io.load_generator(path, map_location="cpu")
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise UsageError(f"--checkpoint {text}: {_one_line(exc)}") from None
    meta = dict(meta or {})
    size = meta.get("image_size", getattr(generator, "image_size", None))
    if not isinstance(size, int) or getattr(generator, "image_size", size) != size:
        raise UsageError(f"--checkpoint {text}: its metadata does not give the generator's image size; "
                         "is it an nfinpaint generator export?")
    file = checkpoint_file(path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else ""
    return LoadedGenerator(generator.eval(), meta, path, digest, read_run_config(file))


def default_hole_size(image_size: int) -> int:
    return max(1, round(image_size / 3))


def split_parameters(meta: dict, run_config: dict | None = None, split_seed: int | None = None) -> dict:
    """The embedded set's train/validation split options that training used.

    The held-out split depends on the training seed (and ``val_fraction``,
    ``max_crop_scale``), so evaluating on a split drawn with other values would
    score the model on its training crops.  Each value comes from the
    checkpoint's meta (top level or under ``config``), else the run's
    ``config.toml`` beside the generator file, else training's default;
    ``--split-seed`` overrides the seed.
    """
    nested = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    run_config = run_config or {}

    def pick(key, default):
        for source in (meta, nested, run_config):
            if source.get(key) is not None:
                return source[key]
        return default

    params = {"val_fraction": float(pick("val_fraction", 0.1)), "seed": int(pick("seed", 0))}
    if pick("max_crop_scale", None) is not None:
        params["max_crop_scale"] = float(pick("max_crop_scale", None))
    if split_seed is not None:
        params["seed"] = split_seed
    return params


def load_images(data: str | None, image_size: int, limit: int | None, split: dict) -> tuple[torch.Tensor, str]:
    """(N, 3, S, S) test images and a one-line description of where they came from."""
    from nfinpaint import data as data_module

    try:
        if data is None:
            _, dataset = data_module.build_datasets(None, image_size, augment=False, **split)
            where = ("held-out split of the embedded default set (" +
                     ", ".join(f"{k}={v}" for k, v in split.items()) + ")")
        else:
            if not Path(data).is_dir():
                raise UsageError(f"--data {data}: no such folder")
            dataset = data_module.folder_dataset(data, image_size)
            where = f"folder {data}"
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        message = _one_line(exc)
        if data is None:
            raise UsageError(f"embedded data: {message}") from None
        raise UsageError(message if message.startswith(str(data)) else f"--data {data}: {message}") from None
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise UsageError(f"{where}: no images to evaluate")
    images = torch.stack([_item_image(dataset[i]) for i in range(count)])
    if images.shape[1:] != (3, image_size, image_size):
        raise RuntimeError(f"the dataset gave images of shape {tuple(images.shape[1:])}, "
                           f"expected (3, {image_size}, {image_size})")
    return images.float().clamp(0, 1), f"{where}, {count} of {len(dataset)} images at {image_size}x{image_size}"


def _item_image(item) -> torch.Tensor:
    # Datasets yield an image tensor; tolerate (image, ...) tuples too.
    return item[0] if isinstance(item, (tuple, list)) else item


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- running

@dataclass
class MethodResult:
    method: baselines.Method
    filled: torch.Tensor                                   # (N, 3, S, S)
    rows: list[dict[str, float]] = field(default_factory=list)  # per image: metrics + time_ms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_methods(images: torch.Tensor, masks: torch.Tensor, methods: Sequence[baselines.Method],
                seed: int, progress: bool = True) -> list[MethodResult]:
    """Fill every image with every method (image i gets seed ``seed + i``), measure and time it.

    Each method fills image 0 once untimed first, so start-up costs (CUDA
    context, allocator, first-call dispatch) stay out of the time per image.
    """
    results = []
    bar = tqdm(total=len(methods) * len(images), desc="evaluating", unit="img",
               disable=not progress, file=sys.stderr)
    for method in methods:
        bar.set_postfix_str(method.name)
        method.fill(images[0], masks[0], seed)
        filled = torch.empty_like(images)
        result = MethodResult(method, filled)
        for i in range(len(images)):
            _sync(method.device)
            start = time.perf_counter()
            filled[i] = method.fill(images[i], masks[i], seed + i)
            _sync(method.device)
            elapsed_ms = (time.perf_counter() - start) * 1e3
            row = metrics.image_metrics(filled[i], images[i], masks[i])
            row["time_ms"] = elapsed_ms
            result.rows.append(row)
            bar.update(1)
        results.append(result)
    bar.close()
    return results


# --------------------------------------------------------------------------- reporting

COLUMNS = (  # key, Markdown header, digits
    ("psnr_hole", "PSNR hole (dB)", 2),
    ("ssim_hole", "SSIM hole", 4),
    ("psnr_full", "PSNR image (dB)", 2),
    ("ssim_full", "SSIM image", 4),
    ("l1_hole", "L1 hole", 4),
    ("l1_full", "L1 image", 4),
)
TIME_KEY = "time_ms"


def _fmt(summary: metrics.Summary, digits: int) -> str:
    if math.isnan(summary.ci95):
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.ci95:.{digits}f}"


def summaries(results: Sequence[MethodResult]) -> dict[str, dict[str, metrics.Summary]]:
    keys = [key for key, _, _ in COLUMNS] + [TIME_KEY]
    return {r.method.name: metrics.summarize_rows(r.rows, keys) for r in results}


def quality_table(results: Sequence[MethodResult]) -> str:
    """The Table-5-style Markdown table (no timing: it is identical for identical inputs)."""
    stats = summaries(results)
    lines = ["| Method | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for r in results:
        s = stats[r.method.name]
        lines.append(f"| {r.method.label} | " + " | ".join(_fmt(s[k], d) for k, _, d in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def timing_table(results: Sequence[MethodResult]) -> str:
    stats = summaries(results)
    lines = ["| Method | device | time per image (ms) |", "|---|---|---:|"]
    for r in results:
        lines.append(f"| {r.method.label} | {r.method.device} | {_fmt(stats[r.method.name][TIME_KEY], 2)} |")
    return "\n".join(lines) + "\n"


def results_markdown(results: Sequence[MethodResult], header: dict) -> str:
    n = len(results[0].rows) if results else 0
    parts = [
        f"# Inpainting evaluation: {n} images, {header['masks']} masks, seed {header['seed']}\n",
        f"- Data: {header['data']}",
        f"- Masks: {header['mask_description']}",
        f"- Generator: {header['generator']}",
        "- Metrics: PSNR and SSIM by scikit-image with data_range=1.0 on float RGB in [0, 1]; "
        "\"hole\" = PSNR over the hole pixels only, and the SSIM map (7x7 uniform window) averaged "
        "over the hole pixels; \"image\" = over the whole image; L1 = mean absolute error. "
        "Mean ± 95% confidence interval (Student's t) over the images.",
    ]
    if header.get("skipped"):
        parts.append("- Skipped: " + "; ".join(f"{k} ({v})" for k, v in header["skipped"].items()))
    parts += ["", quality_table(results), "## Time per image", "",
              "Wall-clock time of one fill (one image at a time), after one untimed warm-up fill.", "",
              timing_table(results)]
    return "\n".join(parts)


def results_csv(results: Sequence[MethodResult]) -> str:
    stats = summaries(results)
    keys = [key for key, _, _ in COLUMNS] + [TIME_KEY]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "label", "n"] + [f"{k}_{s}" for k in keys for s in ("mean", "ci95")])
    for r in results:
        s = stats[r.method.name]
        writer.writerow([r.method.name, r.method.label, len(r.rows)]
                        + [repr(float(v)) for k in keys for v in (s[k].mean, s[k].ci95)])
    return buf.getvalue()


def per_image_csv(results: Sequence[MethodResult]) -> str:
    keys = [key for key, _, _ in COLUMNS] + [TIME_KEY]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "method"] + keys)
    for r in results:
        for i, row in enumerate(r.rows):
            writer.writerow([i, r.method.name] + [repr(float(row[k])) for k in keys])
    return buf.getvalue()


def write_figures(out: Path, images: torch.Tensor, masks: torch.Tensor,
                  results: Sequence[MethodResult], count: int) -> list[Path]:
    from nfinpaint.figures import comparison_grid

    paths = []
    count = min(count, len(images))
    for start in range(0, count, FIGURE_ROWS):
        stop = min(start + FIGURE_ROWS, count)
        grid = comparison_grid(images[start:stop], masks[start:stop],
                               {r.method.label: r.filled[start:stop] for r in results})
        path = out / "figures" / f"grid_{start // FIGURE_ROWS:03d}.png"
        _save_pil(grid, path)
        paths.append(path)
    return paths


def _save_pil(image, path: Path) -> None:
    from nfinpaint.files import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def versions() -> dict[str, str | None]:
    import numpy
    import scipy
    import skimage
    import torchvision

    import nfinpaint

    try:
        import cv2
        cv2_version = cv2.__version__
    except ImportError:
        cv2_version = None
    return {"python": platform.python_version(), "nfinpaint": nfinpaint.__version__,
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-image": skimage.__version__, "opencv": cv2_version,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# --------------------------------------------------------------------------- main

def _generator_description(loaded: LoadedGenerator | None) -> str:
    if loaded is None:
        return "none (no --checkpoint)"
    meta = loaded.meta
    weights = meta.get("feature_weights", "unknown")
    parts = [str(loaded.path), f"preset {meta.get('preset', '?')}",
             f"{meta.get('image_size')}x{meta.get('image_size')}, training hole {meta.get('hole_size', '?')}",
             f"feature-network weights: {weights}"]
    if meta.get("feature_pretrained") is False:
        parts.append("feature network NOT pretrained (untrained VGG)")
    if "step" in meta:
        parts.append(f"step {meta['step']}")
    return ", ".join(parts)


def evaluate(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    """Run the evaluation described by parsed ``args``; returns the output folder.

    ``argv`` (the command-line words) is only recorded in ``config.json``.
    """
    try:
        names = baselines.parse_methods(args.methods)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if args.figures < 0:
        raise UsageError(f"--figures must be 0 or more, got {args.figures}")
    if "gan" in names and not args.checkpoint:
        raise UsageError("the gan method needs --checkpoint PATH (a run directory or generator.pt); "
                         "or leave gan out of --methods")
    device = resolve_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    loaded = load_checkpoint(args.checkpoint) if args.checkpoint else None
    meta = loaded.meta if loaded else {}
    if loaded is not None:
        image_size = int(meta["image_size"])
        if args.image_size is not None and args.image_size != image_size:
            raise UsageError(f"--image-size {args.image_size} does not match the checkpoint's generator, "
                             f"which takes {image_size}x{image_size} images; leave --image-size out")
    else:
        image_size = args.image_size if args.image_size is not None else DEFAULT_IMAGE_SIZE
    if image_size < 8:
        raise UsageError(f"--image-size must be at least 8, got {image_size}")
    hole_size = args.hole_size if args.hole_size is not None else int(meta.get("hole_size") or
                                                                      default_hole_size(image_size))
    if not 1 <= hole_size <= image_size:
        raise UsageError(f"--hole-size must be in [1, {image_size}], got {hole_size}")

    methods, skipped = [], {}
    patchmatch_options = {} if args.patch_size is None else {"patch_size": args.patch_size}
    for name in names:
        try:
            methods.append(baselines.build_method(
                name, generator=loaded.generator if loaded else None, device=device,
                patchmatch_options=patchmatch_options))
        except baselines.MethodUnavailable as exc:
            if not name.startswith("opencv"):
                raise UsageError(f"method {name}: {exc}") from None
            skipped[name] = str(exc)
            print(f"note: skipping {name}: {exc}", file=sys.stderr)
    if not methods:
        raise UsageError("none of the requested methods can run here: " +
                         "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    split = split_parameters(meta, loaded.run_config if loaded else None, args.split_seed)
    images, data_description = load_images(args.data, image_size, args.limit, split)
    trained_on = (loaded.run_config.get("data") if loaded else None) or meta.get("data")
    if args.data is None and trained_on:
        data_description += f" (note: the model was trained on {trained_on}, not on this set)"
    from nfinpaint import masks as mask_module
    generator = torch.Generator().manual_seed(args.seed)
    masks = mask_module.make_masks(args.masks, len(images), image_size, hole_size, generator=generator)
    if args.masks == "random":
        low, high = mask_module.random_rect_range(image_size, hole_size)
        mask_description = (f"random rectangles, sides uniform in [{low}, {high}], uniform position "
                            f"(the paper's test protocol)")
    elif args.masks == "center":
        mask_description = f"centred {hole_size}x{hole_size} square (the training hole)"
    else:
        mask_description = "free-form brush strokes (nfinpaint.masks.freeform_masks defaults)"
    mask_description += f", mean hole area {float(masks.mean()) * 100:.1f}% of the image"

    try:
        results = run_methods(images, masks, methods, args.seed, progress=not args.no_progress)
    except ValueError as exc:  # e.g. PatchMatch rejecting a patch size larger than the image
        raise UsageError(_one_line(exc)) from None

    out = Path(args.out)
    header = {"masks": args.masks, "seed": args.seed, "data": data_description,
              "mask_description": mask_description, "generator": _generator_description(loaded),
              "skipped": skipped}
    markdown = results_markdown(results, header)
    write_text(out / "results.md", markdown)
    write_text(out / "results.csv", results_csv(results))
    write_text(out / "per_image.csv", per_image_csv(results))
    figures = write_figures(out, images, masks, results, args.figures)
    config = {
        "command": "python -m nfinpaint.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arguments": vars(args),
        "resolved": {"image_size": image_size, "hole_size": hole_size, "device": str(device),
                     "methods": [m.name for m in methods], "skipped": skipped,
                     "data": data_description, "masks": mask_description,
                     "patchmatch_options": patchmatch_options, "torch_threads": torch.get_num_threads(),
                     "metrics": {"data_range": metrics.DATA_RANGE, "psnr_cap_db": metrics.PSNR_CAP,
                                 "ssim_win_size": metrics.win_size_for(image_size, image_size)}},
        "checkpoint": None if loaded is None else {"path": str(loaded.path), "sha256": loaded.sha256,
                                                   "meta": _jsonable(meta)},
        "versions": versions(),
        "outputs": ["results.md", "results.csv", "per_image.csv"] + [str(p.relative_to(out)) for p in figures],
    }
    write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(markdown)
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {len(figures)} figure(s) in "
          f"{out / 'figures'}, {out / 'config.json'}")
    return out


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success; bad input exits with status 2 and one ``error:`` line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        evaluate(args, argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
