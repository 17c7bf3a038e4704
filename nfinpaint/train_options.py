"""The options of ``python -m nfinpaint.train`` and how they become a config (and a run to resume)."""
from __future__ import annotations

import argparse
from pathlib import Path

from nfinpaint import cli
from nfinpaint.config import PATH_KEYS, PRESETS, ConfigError, TrainConfig, absolute_path, coerce, load_config
from nfinpaint.resume import ResumePoint, fine_tune_config, find_resume_point, resume_config


def build_parser(doc: str) -> argparse.ArgumentParser:
    """The parser; ``doc`` (train.py's docstring) gives the description."""
    parser = cli.parser(
        "python -m nfinpaint.train", "\n\n".join(doc.split("\n\n")[:3]),
        epilog="Configuration precedence: --preset, then --config FILE.toml, then the options above and --set. "
               f"Presets: {', '.join(PRESETS)}. Every config key (python -m nfinpaint.train --print-config "
               "lists them) can be set with --set KEY=VALUE. Exit status: 0 done, 2 bad input, 130 interrupted "
               "(checkpoint saved).")
    parser.add_argument("--data", metavar="DIR",
                        help="folder (searched recursively) of training images, any format PIL reads; default: the "
                             "embedded scikit-image photographs (no download)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="named configuration: 'default' (24x24, trains in minutes on a CPU), 'photos' (the "
                             "24x24 recipe for the photograph corpus, 12,000 steps), 'fullres' (the full-resolution "
                             "generator that ships: 128x128 crops, 3,500 steps), 'paper' (24x24, 8x8 hole, the "
                             "paper's loss weights), 'paper64' (the tables' 64x64 layout); default: default")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="TOML file of config keys (a run's config.toml works); applied over the preset")
    parser.add_argument("--steps", type=int, metavar="N", help="total optimisation steps (all three stages)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="images per step per process")
    parser.add_argument("--out", metavar="DIR",
                        help="run directory to create (must not exist or be empty); default runs/PRESET-TIMESTAMP")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its newest checkpoint, bit for bit (same losses as an "
                             "uninterrupted run); only --steps, --device, --threads, --no-compile and logging "
                             "cadences may change (a changed device, thread count or compiling: not bit for bit)")
    parser.add_argument("--fine-tune", metavar="RUN",
                        help="start a new run (--out) from the newest checkpoint of RUN (or RUN/checkpoints/"
                             "step_N.pt): its weights, optimiser states, step and config, with any setting "
                             "changed but the models' shape (--set, --steps N beyond its step); e.g. "
                             "--set ssim_weight=10 --steps 14000. Recorded in the new run's meta")
    parser.add_argument("--init-generator", metavar="FILE",
                        help="start the new run's generator from a trained one: a generator file, a run directory "
                             "holding generator.pt, or 'shipped' (the package's default: fine-tune it on your own "
                             "photographs with --preset fullres); the discriminators, optimisers and schedule start "
                             "fresh. Recorded in the run's meta")
    parser.add_argument("--device", metavar="DEV", help="auto (GPU if visible, default), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="seed of the weights, the data split, crops and augmentation (default 0)")
    parser.add_argument("--no-compile", action="store_true",
                        help="never torch.compile the training step (the default, compile=auto, compiles it on "
                             "GPUs only; --set compile=always compiles it on a CPU too)")
    parser.add_argument("--feature-weights", metavar="{imagenet,rotation,PATH,random}",
                        help="VGG-19 weights of the feature loss: 'imagenet' (torchvision's, downloaded and cached; "
                             "the default), 'rotation' (conv1-conv3 learned offline by rotation prediction on the "
                             "photograph corpus, shipped: no download), PATH to a vgg19 state_dict file, or "
                             "'random' (UNTRAINED: only for "
                             "offline smoke runs and tests; marked as such in logs, checkpoints and generator.pt)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: one per core not already busy, by the load average; "
                             "a resumed run reuses its recorded count)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key, e.g. --set adv_global_weight=0.01 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# What leaving each path key out does, for the error on an empty one (an unset shell variable): the run
# went on silently as if the key were left out (a fresh generator, the embedded photographs).
_EMPTY_MEANS = {"init_generator": ("a generator file, a run directory or 'shipped'", "start from a fresh generator"),
                "data": ("a folder of pictures", "train on the embedded scikit-image photographs"),
                "val_data": ("a folder of validation pictures", "hold out part of the training data"),
                "feature_weights": ("'imagenet', 'rotation', 'random' or a VGG-19 weights file",
                                    "use the preset's")}


def _refuse_empty(key: str, value: str | None, written: str) -> None:
    """An empty value of ``key`` given explicitly is an error, not the default it would silently be."""
    if value is not None and not value.strip():
        give, default = _EMPTY_MEANS[key]
        raise ConfigError(f"{written} is empty: give {give} (leave it out to {default})")


def overrides_from_args(args: argparse.Namespace) -> dict:
    overrides = {}
    for option, key in (("data", "data"), ("steps", "steps"), ("batch_size", "batch_size"), ("device", "device"),
                        ("seed", "seed"), ("feature_weights", "feature_weights"),
                        ("threads", "threads"), ("init_generator", "init_generator")):
        value = getattr(args, option)
        if value is not None:
            overrides[key] = value
    _refuse_empty("init_generator", args.init_generator, "--init-generator")
    _refuse_empty("data", args.data, "--data")
    _refuse_empty("feature_weights", args.feature_weights, "--feature-weights")
    if args.no_compile:
        overrides["compile"] = "never"
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        if key.strip() in _EMPTY_MEANS:
            _refuse_empty(key.strip(), value, f"--set {key.strip()}=")
        overrides[key.strip()] = coerce(key.strip(), value, "--set")
    for key in overrides.keys() & PATH_KEYS.keys():     # absolute for a new, resumed or fine-tuned run alike
        overrides[key] = absolute_path(key, overrides[key])
    return overrides


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, ResumePoint | None, ResumePoint | None]:
    """The run's config, the point it resumes from and the point it fine-tunes (None when not)."""
    overrides = overrides_from_args(args)
    if args.resume is None and args.fine_tune is None:
        return load_config(args.preset, args.config, overrides), None, None
    option = "--resume" if args.fine_tune is None else "--fine-tune"
    if args.resume is not None and args.fine_tune is not None:
        raise ConfigError("--resume continues a run in its own directory, --fine-tune starts a new one from it: "
                          "give one of them")
    if args.preset is not None or args.config is not None:
        raise ConfigError(f"{option} goes on with the run's own config; drop --preset/--config (change "
                          f"settings with --set)")
    if args.fine_tune is not None:
        point = find_resume_point(args.fine_tune, "--fine-tune")
        if args.out is not None and Path(args.out).resolve() == point.run_dir.resolve():
            raise ConfigError("--fine-tune starts a new run: give --out a new directory (--resume continues "
                              "the run in its own)")
        return fine_tune_config(point, overrides), None, point
    point = find_resume_point(args.resume)
    if args.out is not None and Path(args.out).resolve() != point.run_dir.resolve():
        raise ConfigError("--resume continues in the run's own directory; drop --out")
    return resume_config(point, overrides), point, None
