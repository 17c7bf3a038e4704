#!/usr/bin/env python3
"""Average the weights of generators fine-tuned from one starting point (a "model soup").

    python scripts/average_generators.py RUN_A RUN_B [...] --out soup.pt [--base-iterations N]

Runs that start from the same trained generator and train a few thousand steps each usually end in one
basin of the loss, where the element-wise mean of their weights fills as well as each of them or better,
at no cost at inference (Wortsman et al. 2022, "Model soups").  Whether it does is measured, not assumed:
evaluate the average on the validation photographs like any candidate, then ship it with
``scripts/ship_generator.py soup.pt``.

Each RUN is a finished run directory or its generator.pt (the runs' weight averages, as they export).
They must be one network: the same architecture and window statistics, trained at the same size on the
same data with the same feature network; otherwise one ``error:`` line names what differs and nothing
is written.  The file written says how it was made: ``averaged_from`` holds, for each run, its file,
SHA-256, description, step and how it was trained (its settings and its own starting point).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nfinpaint.cli import UsageError, check_output_file, one_line
from nfinpaint.errors import NfinpaintError
from nfinpaint.generator_io import open_generator, resolve_generator_path, save_generator
from nfinpaint.generators import is_full_resolution
from nfinpaint.initial_fill import MAX_LEVEL_ITERATIONS

# What the runs must share for their mean to be one generator trained one way: the meta keys (the
# network's crop and hole sizes, its data, its feature network) and the config keys other than the base
# fill's step count, which is an inference setting (each run's is recorded; --base-iterations picks one).
SHARED_META = ("preset", "image_size", "hole_size", "data", "feature_weights", "feature_pretrained")
INFERENCE_CONFIG = ("base_iterations",)
# Training settings the average's meta states when every run had the same (validation data, masks, split,
# loss weights); runs may differ in them, as in any other setting, and each run's record keeps its own.
SAID_WHEN_SHARED = ("val_data", "train_masks", "split", "loss_weights")


class AverageError(Exception):
    """Bad input: one ``error:`` line, exit status 2."""


def _differs(what: str, values: dict[str, object]) -> AverageError:
    shown = "; ".join(f"{name}: {value!r}" for name, value in values.items())
    return AverageError(f"the generators differ in {what} ({shown}): only runs of one network trained one way "
                        f"can be averaged")


def _one_value(what: str, values: dict[str, object]) -> None:
    """AverageError unless every generator has the same value (by name) of ``what``."""
    if len({repr(value) for value in values.values()}) > 1:
        raise _differs(what, values)


def common_settings(records: list[dict]) -> dict:
    """The settings every run changed from its preset the same way (``settings_changed_from_preset``)."""
    changed = [record.get("settings_changed_from_preset") or {} for record in records]
    return {key: value for key, value in changed[0].items() if all(other.get(key) == value for other in changed[1:])}


def average(paths: list[Path], base_iterations: int | None = None) -> tuple[torch.nn.Module, dict]:
    """The mean of the generators at ``paths`` and its meta (see the module's docstring)."""
    if len(paths) < 2:
        raise AverageError(f"give at least two generators to average, got {len(paths)}")
    loaded = [open_generator(path) for path in paths]
    names = [str(path) for path in paths]
    shas = [trained.sha256 for trained in loaded]
    if len(set(shas)) < len(shas):
        raise AverageError("the same generator file is given twice: its weights would count double")
    unfinished = [name for name, trained in zip(names, loaded) if not trained.meta.get("complete", False)]
    if unfinished:
        raise AverageError(f"{unfinished[0]} is from an interrupted run; average finished ones")
    configs = [dict(trained.generator.config) for trained in loaded]
    for key in sorted(set().union(*configs) - set(INFERENCE_CONFIG)):
        _one_value(f"the network's {key}", {name: config.get(key) for name, config in zip(names, configs)})
    for key in SHARED_META:
        _one_value(key, {name: trained.meta.get(key) for name, trained in zip(names, loaded)})
    trained_counts = [config.get("base_iterations") for config in configs]
    if base_iterations is not None and not (is_full_resolution(loaded[0].generator)
                                            and 1 <= base_iterations <= MAX_LEVEL_ITERATIONS):
        raise AverageError(f"--base-iterations must be from 1 to {MAX_LEVEL_ITERATIONS} and is for full-resolution "
                           f"generators only, got {base_iterations} for {configs[0].get('variant')!r}")
    if base_iterations is None and len(set(trained_counts)) > 1:
        raise AverageError(f"the runs trained with {' and '.join(map(str, trained_counts))} base-fill steps a "
                           f"level: choose the count the average runs with, --base-iterations N (then "
                           f"measure it on the validation photographs)")

    generator = loaded[0].generator
    states = [trained.generator.state_dict() for trained in loaded]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():   # in float64, so the mean does not depend on the order given
            averaged[key] = torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
        elif all(torch.equal(state[key], value) for state in states[1:]):
            averaged[key] = value
        elif key.endswith("num_batches_tracked"):
            # BatchNorm's count of the batches a run trained on (runs of N and M steps differ): it
            # changes no output here (a momentum is set); the most of them is kept
            averaged[key] = torch.stack([state[key] for state in states]).max()
        else:
            raise _differs(f"the integer buffer {key}", dict(zip(names, (state[key] for state in states))))
    generator.load_state_dict(averaged)
    if base_iterations is not None:
        generator.config["base_iterations"] = generator.base_iterations = base_iterations

    records = [trained.record() for trained in loaded]
    # what the runs share is said of the average; where they differ, each run's record says it
    meta = {key: loaded[0].meta[key] for key in loaded[0].meta
            if key in SHARED_META or (key in SAID_WHEN_SHARED
                                      and all(trained.meta.get(key) == loaded[0].meta[key] for trained in loaded))}
    steps = {trained.meta.get("step") for trained in loaded}
    meta.update({
        "complete": True,
        "step": steps.pop() if len(steps) == 1 else None,
        "averaged_from": records,
        "settings_changed_from_preset": common_settings(records),
        # as ship_generator keeps them: how the runs trained, beside what the file runs
        "trained_base_iterations": trained_counts[0] if len(set(trained_counts)) == 1 else trained_counts,
    })
    if "stats" in configs[0]:
        meta["trained_stats"] = configs[0]["stats"]
    return generator, meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="finished run directories or their generator.pt files")
    parser.add_argument("--out", type=Path, required=True, help="the generator file to write")
    parser.add_argument("--base-iterations", type=int, default=None, metavar="N",
                        help="full-resolution generators: the base fill's steps a level the average runs with; "
                             "needed when the runs trained with different counts")
    args = parser.parse_args()
    try:
        check_output_file(args.out, "--out", example="soup.pt")        # before any work
        if any(args.out.resolve() == resolve_generator_path(run).resolve() for run in args.runs):
            raise AverageError(f"--out {args.out} is one of the generators being averaged; write it elsewhere")
        generator, meta = average(args.runs, args.base_iterations)
        save_generator(args.out, generator, meta)
    except (AverageError, NfinpaintError, UsageError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: the mean of {len(args.runs)} generators' weights "
          f"({', '.join(str(path) for path in args.runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
