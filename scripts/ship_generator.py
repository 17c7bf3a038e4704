#!/usr/bin/env python3
"""Turn a finished training run into the generator that ships inside the package.

    python scripts/ship_generator.py RUN [--eval NAME=EVAL_DIR ...] [--out nfinpaint/weights/default_generator.pt]

Writes RUN/generator.pt's weights in half precision (the package loads them as
float32) with its meta, plus ``shipped``: how it was trained (data, steps,
preset, the untrained VGG) and, for each ``--eval NAME=DIR`` (a folder written
by ``python -m nfinpaint.evaluate``), that evaluation's data description and
every method's hole and image PSNR/SSIM (mean and 95% CI).  Evaluate the
shipped file itself (``--checkpoint nfinpaint/weights/default_generator.pt``)
and run this again with ``--eval``: the weights are the same bytes, and the
numbers in the meta are then those of the weights users get.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from nfinpaint import neural_fill
from nfinpaint.cli import UsageError, check_output_file, one_line
from nfinpaint.config import PRESETS, ConfigError, changed_from_preset, load_config
from nfinpaint.errors import NfinpaintError
from nfinpaint.fullres_generator import STATS
from nfinpaint.generator_io import load_generator, resolve_generator_path, save_generator
from nfinpaint.generators import is_full_resolution
from nfinpaint.initial_fill import MAX_LEVEL_ITERATIONS

COLUMNS = ("n", "psnr_hole_mean", "psnr_hole_ci95", "ssim_hole_mean", "ssim_hole_ci95", "psnr_full_mean",
           "ssim_full_mean")
PICTURE_COLUMNS = COLUMNS + ("texture_mean", "seconds_mean")


EVALUATE = "give the --out folder of a finished python -m nfinpaint.evaluate run"


def read_evaluation(folder: Path, item: str | None = None) -> dict:
    """An evaluation's numbers: per method (crop protocol), or per hole family and method (full-size
    protocol, ``evaluate --size``).  A folder that is not a whole evaluation (missing, a file, without
    config.json or results.csv, either empty or unreadable) is one :class:`ShipError` naming the file."""
    where = f"--eval {item if item is not None else folder}"
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "does not exist"
        raise ShipError(f"{where}: {folder} {state}, not an evaluation folder; {EVALUATE}")
    for name in ("config.json", "results.csv"):
        if not (folder / name).is_file():
            raise ShipError(f"{where}: {folder} is not an evaluation folder (no {name}); {EVALUATE}")
    config_file, results_file = folder / "config.json", folder / "results.csv"

    def bad(file: Path, what: str) -> ShipError:
        return ShipError(f"{where}: {file} {what}; expected the {file.name} that python -m nfinpaint.evaluate "
                         f"writes: run it again into {folder}, or give another folder")

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise bad(config_file, f"is not readable JSON ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    resolved = config.get("resolved") if isinstance(config, dict) else None
    if not (isinstance(resolved, dict) and isinstance(resolved.get("data"), str)):
        raise bad(config_file, 'is not an evaluation\'s config.json (no "resolved" record with its "data")')
    full_size = resolved.get("protocol") == "full-size"
    methods: dict = {}
    try:
        with open(results_file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if not header:
                raise bad(results_file, "is empty")
            if ("family" in header) != full_size:       # a results.csv from another evaluation than config.json's
                raise bad(results_file, f"is a {'full-size' if 'family' in header else 'crop'}-protocol table but "
                                        f"{config_file.name} says the {'full-size' if full_size else 'crop'} protocol")
            columns = PICTURE_COLUMNS if full_size else COLUMNS
            wanted = ("family", "method", *columns) if full_size else ("method", *columns)
            missing = [k for k in wanted if k not in header]
            if missing:
                raise bad(results_file, f"lacks the column(s) {', '.join(missing)} of a "
                                        f"{'full-size' if full_size else 'crop'}-protocol results.csv")
            for row in reader:
                try:
                    values = {k: (int(row[k]) if k == "n" else round(float(row[k]), 4)) for k in columns}
                except (TypeError, ValueError):
                    raise bad(results_file, f"line {reader.line_num} is not a row of numbers") from None
                if full_size:
                    methods.setdefault(row["family"], {})[row["method"]] = values
                else:
                    methods[row["method"]] = values
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise bad(results_file, f"is not a readable CSV table ({' '.join(str(exc).split()) or type(exc).__name__})"
                  ) from None
    if not methods:
        raise bad(results_file, "has no results (no method's row)")
    if not any("gan" in row for row in (methods.values() if full_size else [methods])):
        raise ShipError(f"{where}: {results_file} has no gan row: that evaluation ran no generator; evaluate the "
                        f"shipped file with --methods including gan")
    key = "families" if full_size else "methods"
    evaluated = config.get("checkpoint")
    return {"data": resolved["data"], "command": config.get("command", ""), key: methods,
            "evaluated": evaluated if isinstance(evaluated, dict) else None}


def check_evaluated(item: str, evaluated: dict | None, generator) -> None:
    """ShipError unless the generator an evaluation ran (its config.json's checkpoint: path and sha256) is
    still that file and holds the weights (at half precision) and settings about to be shipped: any
    evaluation folder was recorded as the shipped weights' own numbers, another run's or another
    --stats's among them."""
    then = "evaluate the file this writes (ship once without --eval, evaluate it, ship again with --eval)"
    if not (evaluated and isinstance(evaluated.get("path"), str) and isinstance(evaluated.get("sha256"), str)):
        raise ShipError(f"--eval {item}: its config.json does not say which generator file it evaluated; {then}")
    path = Path(evaluated["path"])
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != evaluated["sha256"]:
        raise ShipError(f"--eval {item}: the generator file it evaluated, {path}, is gone or has changed since; "
                        f"{then}")
    theirs, _ = load_generator(path)

    def weights(module):
        return {k: v.detach().half() if v.is_floating_point() else v for k, v in module.state_dict().items()}

    mine, other = weights(generator), weights(theirs)
    same = mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)
    if not same or theirs.config != generator.config:
        what = "weights" if not same else "settings (" + ", ".join(
            f"{k} {theirs.config.get(k)!r} there, {generator.config.get(k)!r} here"
            for k in sorted(set(theirs.config) | set(generator.config))
            if theirs.config.get(k) != generator.config.get(k)) + ")"
        raise ShipError(f"--eval {item}: it evaluated {path}, whose {what} are not those being shipped; {then}")


class ShipError(Exception):
    """Bad input: one ``error:`` line, exit status 2."""


REPOSITORY = Path(__file__).resolve().parents[1]
SHIPPED = REPOSITORY / "nfinpaint" / "weights" / "default_generator.pt"


def repository_relative(data: str | None) -> str | None:
    """``data`` relative to the repository when it lies inside it: the meta names no machine's folders."""
    if not data:
        return data
    try:
        return str(Path(data).resolve().relative_to(REPOSITORY))
    except ValueError:
        return data


# Keys that name this machine's folders, in a generator's meta and in each origin record down its chain;
# and the keys that hold those records (train's initialised_from / fine_tuned_from, nested one per run).
PATH_KEYS = ("file", "checkpoint", "data", "val_data")
# (averaged_from, of scripts/average_generators.py, holds a list of them).
ORIGINS = ("initialised_from", "fine_tuned_from", "from", "averaged_from")


def relative_paths(record):
    """A meta or origin record with its paths made repository-relative (in its description too: train's
    names the run's data), all the way down its chain of origins: the shipped file names no folder of
    the machine that trained it."""
    if isinstance(record, list):
        return [relative_paths(item) for item in record]
    if not isinstance(record, dict):
        return record
    return {key: repository_relative(value) if key in PATH_KEYS and isinstance(value, str)
            else value.replace(f"{REPOSITORY}{os.sep}", "") if key == "description" and isinstance(value, str)
            else relative_paths(value) if key in ORIGINS else value
            for key, value in record.items()}


def averaged_steps(meta: dict) -> str:
    """How a weight average (scripts/average_generators.py) was trained, in words, for the description."""
    runs = meta["averaged_from"]
    steps = sorted({run.get("step") for run in runs}, key=str)
    starts = {str(run.get("initialised_from", {}).get("sha256"))[:12] for run in runs if run.get("initialised_from")}
    text = (f"the mean of the weights of {len(runs)} runs of {' or '.join(map(str, steps))} steps of the "
            f"{meta.get('preset')} preset")
    which = "the meta's shipped.averaged_from says which"
    if len(starts) == 1 and all(run.get("initialised_from") for run in runs):
        return text + f", each starting from the same trained generator (sha256 {starts.pop()}: {which})"
    if starts:
        return text + f", starting from trained generators (sha256 {', '.join(sorted(starts))}: {which})"
    return text + f" ({which})"


def trained_on(data: str | None) -> str:
    """What a run's ``data`` was, in words, for the description."""
    if not data:
        return "the embedded default set (scikit-image's photographs)"
    if Path(data).parts[-2:] == ("photos", "train"):
        return f"the photograph corpus ({data}, scripts/build_photo_corpus.py)"
    if Path(data).parts[-2:] == ("corpus", "train_all"):
        return (f"the photograph corpus's training photographs and OpenCV's sample photographs ({data}, "
                f"scripts/build_photo_corpus.py)")
    return f"the pictures in {data}"


def settings_changed(run: Path, meta: dict) -> dict[str, list] | None:
    """The run's settings that differ from its preset, as {key: [preset's, run's]}: the generator's
    meta has them (train records them); a generator exported before it did gets them from its run
    directory's config.toml (None when there is none, or the preset is unknown)."""
    if "settings_changed_from_preset" in meta:
        return meta["settings_changed_from_preset"]
    config, preset = run / "config.toml", meta.get("preset")
    if not (run.is_dir() and config.is_file() and preset in PRESETS):
        return None
    try:
        return changed_from_preset(load_config(preset, config))
    except ConfigError as exc:
        raise ShipError(str(exc)) from None


def main() -> int:
    try:
        return ship()
    except (ShipError, NfinpaintError, UsageError, OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def ship() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished training run directory (or its generator.pt)")
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=DIR",
                        help="an evaluation of the shipped weights to record (repeatable)")
    parser.add_argument("--out", type=Path, default=SHIPPED,
                        help="the file to write (default: the package's own shipped generator, wherever this "
                             "is run from)")
    parser.add_argument("--base-iterations", type=int, default=None, metavar="N",
                        help="full-resolution generators: conjugate-gradient steps per level of the base fill "
                             "at inference (training used the preset's; more is closer to the biharmonic "
                             "solution; choose on the validation split)")
    parser.add_argument("--stats", choices=sorted(STATS), default=None,
                        help="full-resolution generators: how the network normalises its window at inference: "
                             "pooled (one mean and deviation over the three channels; how a run trains unless "
                             "given --set window_stats=channel) or channel (each channel's own mean; flat colours "
                             "exact); choose on the validation split")
    args = parser.parse_args()
    check_output_file(args.out, "--out", example="default_generator.pt")       # before any work
    if args.base_iterations is not None and not 1 <= args.base_iterations <= MAX_LEVEL_ITERATIONS:
        raise ShipError(f"--base-iterations must be from 1 to {MAX_LEVEL_ITERATIONS}, got {args.base_iterations}")
    evaluations, items = {}, {}
    for item in args.eval:      # every --eval folder read (and refused when malformed) before the generator
        name, _, folder = item.partition("=")
        if not (name and folder):
            raise ShipError(f"--eval wants NAME=DIR, got {item!r}")
        if name in evaluations:
            raise ShipError(f"--eval {item}: the name {name!r} is given twice; name each evaluation once")
        evaluations[name], items[name] = read_evaluation(Path(folder), item), item
    source = resolve_generator_path(args.run)
    if args.out.resolve() == Path(source).resolve():
        raise ShipError(f"--out {args.out} is the generator being shipped: it would replace the run's float32 "
                        f"weights with half precision; write it elsewhere")
    generator, meta = load_generator(source)
    asked = [name for name, value in (("--base-iterations", args.base_iterations), ("--stats", args.stats))
             if value is not None]
    if asked and not is_full_resolution(generator):
        raise ShipError(f"{source} is not a full-resolution generator: {' and '.join(asked)} set the base fill "
                        f"and window statistics only those have; ship it without them")
    if args.base_iterations is not None:
        # a shipped file shipped again keeps the count its run trained with, not the one it shipped with
        meta.setdefault("trained_base_iterations", generator.config["base_iterations"])
        generator.config["base_iterations"] = generator.base_iterations = args.base_iterations
    if args.stats is not None:
        meta.setdefault("trained_stats", generator.config["stats"])
        generator.config["stats"] = generator.stats = args.stats
    if not meta.get("complete", False):
        raise ShipError(f"{source} is from an interrupted run; ship a finished one")
    for name, record in evaluations.items():
        check_evaluated(items[name], record.pop("evaluated"), generator)
    untrained = meta.get("feature_pretrained") is False
    meta = relative_paths({"data": None, "val_data": None, **meta})
    meta["shipped"] = {
        "what": "nfinpaint's default generator (used by inpaint and evaluate without --checkpoint)",
        "generator": generator.config.get("variant", "paper"),
        "data": meta.get("data"), "val_data": meta.get("val_data"), "steps": meta.get("step"),
        "preset": meta.get("preset"),
        "feature_network": "untrained VGG-19 (random weights: no ImageNet weights offline)" if untrained
                           else str(meta.get("feature_weights")),
        "precision": "float16 weights, run in float32",
        "base_iterations": generator.config.get("base_iterations"),
        "trained_base_iterations": meta.get("trained_base_iterations", generator.config.get("base_iterations")),
        "stats": generator.config.get("stats"),
        "trained_stats": meta.get("trained_stats", generator.config.get("stats")),
        # the evaluations ran through inpaint's fill: say which, so the numbers can be reproduced
        "inference": ("full resolution, each pass the mean of the fill and of its mirror image's"
                      if neural_fill.MIRROR else "full resolution, one pass per window")
                     + (f", then {neural_fill.PATCH_BLEND:g} of the way to its patch re-synthesis"
                        if neural_fill.PATCH_BLEND else "")
                     + f"; a window with a hole thicker than {neural_fill.COARSE_THICKNESS} px filled on a shrunk copy, "
                       "upsampled and relaxed",
        "loss_weights": meta.get("loss_weights"),
        "settings_changed_from_preset": settings_changed(args.run, meta),
        "evaluations": evaluations,
    }
    features = "untrained VGG" if untrained else f"VGG features {meta.get('feature_weights')}"
    steps = f"{meta.get('step')} steps of the {meta.get('preset')} preset"
    origin = meta.get("fine_tuned_from")
    if origin:      # train --fine-tune: say from which step, and what changed
        meta["shipped"]["fine_tuned_from"] = origin
        changed = ", ".join(f"{key} {before} -> {after}" for key, (before, after) in origin["changed"].items()
                            if key != "steps")
        steps = (f"{origin['step']} steps of the {meta.get('preset')} preset, then fine-tuned to step "
                 f"{meta.get('step')} ({changed or 'same settings'})")
    if meta.get("averaged_from"):     # scripts/average_generators.py: each run's record says how it trained
        meta["shipped"]["averaged_from"] = meta["averaged_from"]
        steps = averaged_steps(meta)
    start = meta.get("initialised_from")
    if start:       # train --init-generator: its steps went on from another generator's weights
        meta["shipped"]["initialised_from"] = start
        steps += (f" starting from a trained generator (step {start.get('step')}, sha256 "
                  f"{str(start.get('sha256'))[:12]}: the meta's shipped.initialised_from says which)")
    meta["description"] = (f"shipped default: {meta['shipped']['generator']} generator, {steps} on "
                           f"{trained_on(meta.get('data'))}, {features}")
    save_generator(args.out, generator.half(), meta)     # half precision: the package loads it as float32
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB): {meta['description']}; "
          f"{len(evaluations)} evaluation(s) recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
