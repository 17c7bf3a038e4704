"""``python -m nfinpaint.evaluate``: PSNR/SSIM table of the GAN against PatchMatch and classical baselines.

Every method fills the same images with the same masks (drawn once from
``--seed``); the table reports, per method, the mean and 95% confidence
interval of PSNR and SSIM over the hole and over the whole image, L1, and the
time per image, in the style of the paper's Table 5.  The floor,
``border-mean`` (each hole filled with the mean colour of its border), is in
every table: a method that does not beat it has learnt nothing.

Outputs in ``--out``: ``results.md`` and ``results.csv`` (the table),
``per_image.csv`` (every image's metrics), figures of original | masked | each method
(``figures/FAMILY.png`` with ``--size``: ``thin.png``, ``lama-thick.png``, ...; ``figures/grid_NNN.png``
with ``--crops``) and ``config.json`` (arguments, data,
checkpoint, versions).  Same inputs and seed give identical numbers except the
timing columns.  See ``nfinpaint.metrics`` for the exact metric definitions.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from nfinpaint import baselines, cli, devices, metrics, picture_eval
from nfinpaint.cli import UsageError, one_line
from nfinpaint.config import seed_problem
from nfinpaint.files import MARKER, atomic_folder, marker_kind, overlap, write_marker, write_text
from nfinpaint.generator_io import DEFAULT_GENERATOR, TrainedGenerator
from nfinpaint.data import DataSplit
from nfinpaint.masks import default_hole_size
from nfinpaint.metrics import format_summary
from nfinpaint.provenance import versions

DEFAULT_METHODS = ",".join(name for name, method in baselines.METHODS.items() if method.by_default)
DEFAULT_IMAGE_SIZE = 24   # the paper preset, used only without a checkpoint
FIGURE_ROWS = 8           # images per figure grid


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m nfinpaint.evaluate", __doc__)
    p.add_argument("--checkpoint", metavar="PATH",
                   help="trained generator: a training run directory or its exported generator.pt "
                        f"(default: the generator shipped in the package, nfinpaint/{DEFAULT_GENERATOR}, when "
                        "installed; sets the image and hole size)")
    p.add_argument("--data", metavar="DIR",
                   help="folder of test images (cropped and scaled to the generator's size; with --size, "
                        "whole pictures); default: the held-out split of the embedded default set (with --size: "
                        "the seven embedded scikit-image photographs, whole)")
    p.add_argument("--crops", choices=("center", "grid"), default=None,
                   help="crop protocol, with --data: one centre square per image scaled to the generator's size "
                        "(default), or "
                        "grid: crops spread over each whole image at 1x, 2x and 4x the generator's size, up to 8 "
                        "per scale (the crops validation uses; the 24x24 generator's tables in docs/evaluation.md)")
    p.add_argument("--size", type=int, metavar="PX",
                   help="the full-size protocol: whole pictures with their longer side scaled to PX (512: "
                        "512x384 for a 4:3 photograph), holes of the families in --masks, every method "
                        "through its public code path (gan = inpaint's); 64 to 8192; without it, the crop protocol")
    p.add_argument("--repeats", type=int, default=None, metavar="K",
                   help="full-size protocol: masks per picture and family (default 1), each a different hole")
    p.add_argument("--masks", default=None,
                   help="crop protocol: random (rectangles of random size and position, the paper's test "
                        "protocol, default), center (the training hole) or freeform (strokes); full-size "
                        f"protocol (--size): a comma-separated list of hole families among "
                        f"{', '.join(picture_eval.FAMILIES)} (default {picture_eval.DEFAULT_FAMILIES}; box: one "
                        f"rectangle of ~40-160 px at 512x384, a shape not trained on; edge: a ~56 or ~150 px object flush "
                        f"with a side or in a corner; lama-thin, lama-medium, lama-thick: LaMa's evaluation masks, "
                        f"strokes or boxes over up to half the picture)")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated methods among {', '.join(baselines.METHODS)} "
                        f"(default: {DEFAULT_METHODS}; the optional ones, "
                        f"{', '.join(n for n, m in baselines.METHODS.items() if m.optional)}, are skipped with a "
                        f"note when their extra is not installed)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the masks and of PatchMatch (default 0)")
    p.add_argument("--out", metavar="DIR", default="evaluation",
                   help="output folder (default ./evaluation); it holds this run's results only: a previous "
                        "evaluation there is replaced when this one is done")
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

def _check_data_folder(data: str) -> None:
    """UsageError unless ``--data`` names a folder (a file given for it is said as such)."""
    if Path(data).is_dir():
        return
    if Path(data).exists():
        raise UsageError(f"--data {data} is a file, not a folder: point --data at the folder of pictures "
                         f"that holds it")
    raise UsageError(f"--data {data}: no such folder")


def load_images(data: str | None, image_size: int, limit: int | None, split: DataSplit,
                crops: str = "center") -> tuple[torch.Tensor, list[str], str]:
    """(N, 3, S, S) test images, the name of the picture each was cut from, and a one-line description
    of where they came from."""
    from nfinpaint import data as data_module

    try:
        if data is None:
            _, dataset = data_module.build_datasets(None, image_size, augment=False, **split.as_meta())
            where = f"held-out split of the embedded default set ({split.describe()})"
        else:
            _check_data_folder(data)
            dataset = data_module.folder_dataset(data, image_size, crops=crops,
                                                 max_crop_scale=split.max_crop_scale)
            where = f"folder {data} ({crops} crops)"
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        message = one_line(exc)
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
    pictures = list(dataset.names[:count])
    return (images.float().clamp(0, 1), pictures,
            f"{where}, {count} of {len(dataset)} images at {image_size}x{image_size}")


def _item_image(item) -> torch.Tensor:
    # Datasets yield an image tensor; tolerate (image, ...) tuples too.
    return item[0] if isinstance(item, (tuple, list)) else item


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
            filled[i] = metrics.as_saved(filled[i], images[i])     # what the user's file holds
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
        lines.append(f"| {r.method.label} | " + " | ".join(format_summary(s[k], d) for k, _, d in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def timing_table(results: Sequence[MethodResult]) -> str:
    stats = summaries(results)
    lines = ["| Method | device | time per image (ms) |", "|---|---|---:|"]
    for r in results:
        lines.append(f"| {r.method.label} | {r.method.device} | {format_summary(stats[r.method.name][TIME_KEY], 2)} |")
    return "\n".join(lines) + "\n"


def results_markdown(results: Sequence[MethodResult], header: dict, pictures: Sequence[str]) -> str:
    n = len(results[0].rows) if results else 0
    parts = [
        f"# Inpainting evaluation: {n} images, {header['masks']} masks, seed {header['seed']}\n",
        f"- Data: {header['data']}",
        f"- Masks: {header['mask_description']}",
        f"- Generator: {header['generator']}",
        "- Metrics: PSNR and SSIM by scikit-image with data_range=1.0 on float RGB in [0, 1]; "
        "\"hole\" = PSNR over the hole pixels only, and the SSIM map (7x7 uniform window) averaged "
        "over the hole pixels; \"image\" = over the whole image; L1 = mean absolute error. "
        "Mean ± 95% confidence interval (Student's t) over the images (crops: with --crops grid or held-out "
        "crops, several come from one picture and are not independent, so these intervals are narrower than "
        "the evidence; the paired table at the end gives intervals over the pictures).",
    ]
    if header.get("skipped"):
        parts.append("- Skipped: " + "; ".join(f"{k} ({v})" for k, v in header["skipped"].items()))
    parts += ["", quality_table(results) + paired_markdown(results, pictures), "## Time per image", "",
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


def per_image_csv(results: Sequence[MethodResult], pictures: Sequence[str]) -> str:
    """One row per image and method; ``picture``: the picture the image was cut from."""
    keys = [key for key, _, _ in COLUMNS] + [TIME_KEY]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "picture", "method"] + keys)
    for r in results:
        for i, row in enumerate(r.rows):
            writer.writerow([i, pictures[i], r.method.name] + [repr(float(row[k])) for k in keys])
    return buf.getvalue()


def paired_markdown(results: Sequence[MethodResult], pictures: Sequence[str]) -> str:
    """The GAN minus each other method on the same images and masks, over the images and, when
    several come from one picture, over the pictures (each picture's images averaged first: the
    interval to trust).  Empty without a GAN row or another method."""
    ours = next((r for r in results if r.method.name == "gan"), None)
    others = [r for r in results if r is not ours]
    if ours is None or not others:
        return ""
    grouped = len(set(pictures)) < len(pictures)
    lines = ["", f"## Paired: {ours.method.label} minus each method", "",
             "Same images and masks; mean ± 95% CI over the images"
             + (f", and over the {len(set(pictures))} pictures they were cut from" if grouped else "") + ".", ""]
    lines += picture_eval.paired_table(ours.rows, [(other.method.label, other.rows) for other in others],
                                       pictures if grouped else None)
    return "\n".join(lines) + "\n"


def write_figures(out: Path, images: torch.Tensor, masks: torch.Tensor,
                  results: Sequence[MethodResult], count: int) -> list[Path]:
    from nfinpaint.figures import save_comparison_grid

    paths = []
    count = min(count, len(images))
    for start in range(0, count, FIGURE_ROWS):
        stop = min(start + FIGURE_ROWS, count)
        path = out / "figures" / f"grid_{start // FIGURE_ROWS:03d}.png"
        paths.append(save_comparison_grid(path, images[start:stop], masks[start:stop],
                                          {r.method.label: r.filled[start:stop] for r in results}))
    return paths


# --------------------------------------------------------------------------- main

EVALUATION = "evaluation"   # the marker's word (files.MARKER) of an evaluation folder


def check_out_folder(out: Path, data: str | None) -> None:
    """--out must be a new folder, an empty one, or one an earlier evaluation marked as its own
    (which this one replaces whole); never one that holds or is inside --data."""
    cli.check_output_folder(out, "--out")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        # the results replace the folder whole (files.atomic_folder), which the folder one works in,
        # or one holding it, cannot be
        raise UsageError(f"--out {out} is the current folder or holds it; the results replace their folder "
                         f"whole, so give a folder of its own, such as {Path(out) / 'eval'}")
    kind = marker_kind(out)     # None for a folder of anyone else's, or no folder
    if out.is_dir() and any(out.iterdir()) and kind != EVALUATION:
        # a config.json alone proves nothing: replacing the folder would delete the user's files
        holds = f"it holds an nfinpaint {kind}" if kind else f"no {MARKER} marker"
        raise UsageError(f"--out {out} is a folder that does not hold an nfinpaint evaluation ({holds}); "
                         f"choose a new or empty folder")
    if data is not None and Path(data).is_dir() and overlap(out, data):
        raise UsageError(f"--out {out} overlaps --data {data}: the results would be read as test images, or "
                         f"the images replaced with the results; choose an --out outside --data")


CROP_MASKS = ("random", "center", "freeform")


def _method_names(text: str) -> list[str]:
    try:
        names = baselines.parse_methods(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if baselines.FLOOR not in names:
        names.append(baselines.FLOOR)
    return names


def _build_methods(names: Sequence[str], loaded: TrainedGenerator | None, device: torch.device,
                   patchmatch_options: dict) -> tuple[list[baselines.Method], dict[str, str]]:
    """The methods that can run here, and the optional ones skipped (with why)."""
    methods, skipped = [], {}
    for name in names:
        try:
            methods.append(baselines.build_method(
                name, generator=loaded.generator if loaded else None, device=device,
                options=patchmatch_options if name == "patchmatch" else None))
        except baselines.MethodUnavailable as exc:
            if not baselines.METHODS[name].optional:
                raise UsageError(f"method {name}: {exc}") from None
            skipped[name] = str(exc)
            print(f"note: skipping {name}: {exc}", file=sys.stderr)
    if not methods:
        raise UsageError("none of the requested methods can run here: " +
                         "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return methods, skipped


def _common_inputs(args: argparse.Namespace, sizes_from_generator: bool = False
                   ) -> tuple[list[str], Path, torch.device, TrainedGenerator | None]:
    """What both protocols check and open first: the methods, --out, --limit, --figures, --patch-size,
    the device, --threads (applied) and the generator (also without gan in --methods when
    ``sizes_from_generator``: the crop protocol's sizes are the generator's, whichever methods run)."""
    names = _method_names(args.methods)
    if not args.out.strip():
        raise UsageError("--out is empty; give the name of a folder for the results")
    out = Path(args.out)
    check_out_folder(out, args.data)
    for option, value in (("--seed", args.seed), ("--split-seed", args.split_seed)):
        if value is not None and seed_problem(value, option) is not None:
            raise UsageError(seed_problem(value, option))
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if args.figures < 0:
        raise UsageError(f"--figures must be 0 or more, got {args.figures}")
    if args.patch_size is not None and (args.patch_size < 1 or args.patch_size % 2 == 0):
        raise UsageError(f"--patch-size must be a positive odd number of pixels (e.g. 5 or 7), got {args.patch_size}")
    device = devices.resolve_device(args.device)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    learned = [name for name in names if baselines.METHODS[name].needs_generator]
    loaded = cli.open_generator_option(args.checkpoint, wanted=bool(learned) or sizes_from_generator,
                                       needed_by=f"the {learned[0]} method" if learned else None,
                                       hint=f"; or leave {' and '.join(learned)} out of --methods")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return names, out, device, loaded


def _write_results(out: Path, text: str, tables: dict[str, str], write_figures_in, args: argparse.Namespace,
                   argv: Sequence[str] | None, resolved: dict, loaded: TrainedGenerator | None) -> None:
    """The output folder, written whole (it describes this run only) and marked as an evaluation's;
    ``write_figures_in(folder)`` returns the figure paths it wrote."""
    with atomic_folder(out) as folder:
        write_text(folder / "results.md", text)
        for name, content in tables.items():
            write_text(folder / name, content)
        figures = [p.relative_to(folder) for p in write_figures_in(folder)]
        record = _config_record(args, argv, resolved, loaded, figures)
        write_text(folder / "config.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        write_marker(folder, EVALUATION)
    print(text)
    shown = f"{len(figures)} figure(s) in {out / 'figures'}, " if figures else ""      # none: no folder either
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {shown}{out / 'config.json'}")


MIN_SIZE, MAX_SIZE = 64, 8192     # full-size protocol: a 4:3 picture at 8192 px has 50 megapixels


def evaluate_pictures(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    """The full-size protocol (:mod:`nfinpaint.picture_eval`): whole pictures through every method."""
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        # pictures are scaled to --size, up as well as down: 100000 asked for 7.5 gigapixels and the
        # kernel's OOM killer ended the run without a word
        raise UsageError(f"--size must be {MIN_SIZE} to {MAX_SIZE} pixels (the longer side every picture is "
                         f"scaled to, up or down), got {args.size}")
    args.repeats = 1 if args.repeats is None else args.repeats
    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {args.repeats}")
    if args.data is not None:
        _check_data_folder(args.data)
    try:
        families = picture_eval.parse_families(args.masks or picture_eval.DEFAULT_FAMILIES)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names, out, device, loaded = _common_inputs(args)
    patchmatch_options = {} if args.patch_size is None else {"patch_size": args.patch_size}
    pictures, where = picture_eval.load_pictures(args.data, args.size, args.limit,
                                                 min_side=max(picture_eval.MIN_SIDE, args.patch_size or 0))
    if not pictures:
        raise UsageError(f"{where}: no pictures to evaluate")
    methods, skipped = _build_methods(names, loaded, device, patchmatch_options)   # notes after the data's errors
    try:
        results = picture_eval.run(pictures, families, methods, args.seed, progress=not args.no_progress,
                                   keep_fills=min(args.figures, len(pictures)), repeats=args.repeats)
    except ValueError as exc:
        raise UsageError(one_line(exc)) from None
    header = {"pictures": len(pictures), "repeats": args.repeats, "size": args.size, "seed": args.seed, "data": where,
              "generator": loaded.describe() if loaded else "none (the gan method was not asked for)",
              "skipped": skipped}
    text = picture_eval.markdown(results, methods, header)
    resolved = {"protocol": "full-size", "size": args.size, "repeats": args.repeats, "families": families,
                "device": str(device),
                "methods": [m.name for m in methods], "skipped": skipped, "data": where,
                "pictures": [name for name, _ in pictures], "patchmatch_options": patchmatch_options,
                "torch_threads": torch.get_num_threads()}
    tables = {"results.csv": picture_eval.results_csv(results),
              "per_image.csv": picture_eval.per_picture_csv(results, [n for n, _ in pictures])}
    _write_results(out, text, tables, lambda folder: picture_eval.write_figures(folder, pictures, results, methods),
                   args, argv, resolved, loaded)
    return out


def evaluate(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    """Run the evaluation described by parsed ``args``; returns the output folder.

    ``argv`` (the command-line words) is only recorded in ``config.json``.
    """
    if args.masks is not None and not args.masks.strip():     # an unset shell variable: the defaults ran
        raise UsageError(f"--masks is empty: give the masks to evaluate, such as "
                         f"{picture_eval.DEFAULT_FAMILIES if args.size is not None else 'random'} (or leave it out)")
    # an option of the other protocol is refused, not silently ignored
    if args.size is not None:
        crop_only = [option for option, value in (("--crops", args.crops), ("--image-size", args.image_size),
                                                  ("--hole-size", args.hole_size), ("--split-seed", args.split_seed))
                     if value is not None]
        if crop_only:
            raise UsageError(f"{', '.join(crop_only)}: crop protocol only; the full-size protocol (--size) fills "
                             f"whole pictures with the hole families of --masks: leave {crop_only[0]} out")
        return evaluate_pictures(args, argv)
    if args.repeats is not None:
        raise UsageError("--repeats: full-size protocol only (masks per picture and family); add --size PX, or "
                         "leave --repeats out")
    if args.crops is not None and args.data is None:
        raise UsageError("--crops chooses the crops of a --data folder; without --data the held-out split of the "
                         "embedded set is evaluated on its own fixed crops: add --data DIR, or leave --crops out")
    args.crops = args.crops or "center"
    args.masks = args.masks or "random"
    if args.masks not in CROP_MASKS:
        raise UsageError(f"--masks {args.masks}: the crop protocol takes one of {', '.join(CROP_MASKS)} (the hole "
                         f"families {', '.join(picture_eval.FAMILIES)} need --size)")
    # the crop and hole sizes are the generator's (the shipped one by default) even when gan is not
    # evaluated: classical-only runs are then comparable with runs that include it
    names, out, device, loaded = _common_inputs(args, sizes_from_generator=args.image_size is None)
    meta = loaded.meta if loaded else {}
    if loaded is not None:
        image_size = loaded.image_size
        if args.image_size is not None and args.image_size != image_size:
            raise UsageError(f"--image-size {args.image_size} does not match the checkpoint's generator, "
                             f"which takes {image_size}x{image_size} images; leave --image-size out")
    else:
        image_size = args.image_size if args.image_size is not None else DEFAULT_IMAGE_SIZE
    if image_size < 8:
        raise UsageError(f"--image-size must be at least 8, got {image_size}")
    if args.hole_size is not None:
        hole_size = args.hole_size
    else:
        hole_size = loaded.hole_size if loaded else default_hole_size(image_size)
    if not 1 <= hole_size <= image_size:
        raise UsageError(f"--hole-size must be in [1, {image_size}], got {hole_size}")

    patchmatch_options = {} if args.patch_size is None else {"patch_size": args.patch_size}
    split = DataSplit.from_meta(meta, args.split_seed)
    images, pictures, data_description = load_images(args.data, image_size, args.limit, split, args.crops)
    methods, skipped = _build_methods(names, loaded, device, patchmatch_options)   # notes after the data's errors
    trained_on = meta.get("data")
    if args.data is None and trained_on:
        data_description += f" (note: the model was trained on {trained_on}, not on this set)"
    from nfinpaint import masks as mask_module
    generator = torch.Generator().manual_seed(args.seed)
    masks = mask_module.make_masks(args.masks, len(images), image_size, hole_size, generator=generator)
    whole = int((masks.flatten(1) > 0.5).all(dim=1).sum())
    if whole:   # no known pixel: nothing to fill from, and no metric over the known part
        raise UsageError(f"--hole-size {hole_size}: {whole} of the {len(masks)} {args.masks} masks cover the whole "
                         f"{image_size}x{image_size} image, leaving nothing to fill from; use a smaller --hole-size")
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
        raise UsageError(one_line(exc)) from None

    header = {"masks": args.masks, "seed": args.seed, "data": data_description,
              "mask_description": mask_description,
              "generator": loaded.describe() if loaded else "none (the gan method was not asked for)",
              "skipped": skipped}
    markdown = results_markdown(results, header, pictures)
    resolved = {"image_size": image_size, "hole_size": hole_size, "device": str(device),
                "methods": [m.name for m in methods], "skipped": skipped,
                "data": data_description, "masks": mask_description,
                "patchmatch_options": patchmatch_options, "torch_threads": torch.get_num_threads(),
                "metrics": {"data_range": metrics.DATA_RANGE, "psnr_cap_db": metrics.PSNR_CAP,
                            "ssim_win_size": metrics.win_size_for(image_size, image_size)}}
    tables = {"results.csv": results_csv(results), "per_image.csv": per_image_csv(results, pictures)}
    _write_results(out, markdown, tables, lambda folder: write_figures(folder, images, masks, results, args.figures),
                   args, argv, resolved, loaded)
    return out


def _config_record(args: argparse.Namespace, argv: Sequence[str] | None, resolved: dict,
                   loaded: TrainedGenerator | None, figures: list[Path]) -> dict:
    """config.json: the command, the resolved inputs, the checkpoint, versions and outputs."""
    return {
        "command": "python -m nfinpaint.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arguments": vars(args),
        "resolved": resolved,
        "checkpoint": None if loaded is None else {"path": str(loaded.path), "sha256": loaded.sha256,
                                                   "meta": _jsonable(loaded.meta)},
        "versions": versions(),
        "outputs": ["results.md", "results.csv", "per_image.csv"] + [str(p) for p in figures],
    }


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
    """Command-line entry point: 0 on success, 2 after one ``error:`` line for bad input."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    def command(args: argparse.Namespace) -> None:
        evaluate(args, argv)

    return cli.main(command, argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
