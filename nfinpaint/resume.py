"""Continuing a stopped training run: which run, from which checkpoint, with which config.

``--resume RUN`` continues from the newest readable checkpoint of
``RUN/checkpoints/`` (a corrupt newest one is skipped with a warning);
``--resume RUN/checkpoints/step_N.pt`` from that one.  A checkpoint file
anywhere else is refused: its run directory would be a guess, and the run
writes config.toml, samples and generator.pt there.  Resuming from a checkpoint
older than the run's newest starts a new branch: the later checkpoints are
moved aside (:func:`set_aside_later_checkpoints`), said in one line.
``--fine-tune RUN`` starts a new run from RUN's checkpoint under changed settings
(:func:`fine_tune_config`); ``--init-generator FILE`` a new run whose generator
starts from a generator file's weights, everything else fresh
(:func:`open_initial_generator`).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

import torch

from nfinpaint.checkpoint import CHECKPOINT_DIR, CheckpointError, list_checkpoints, load_checkpoint
from nfinpaint.cli import warn
from nfinpaint.config import (PAPER_METHOD, PATH_KEYS, RESUMABLE_KEYS, ConfigError, TrainConfig, changed_settings,
                              read_toml, same_path)
from nfinpaint.generator_io import GENERATOR_FILENAME, GeneratorFileError, open_generator
from nfinpaint.run_dir import METRICS_FILE, stopped_before_a_checkpoint


@dataclass
class ResumePoint:
    """A run directory and the checkpoint (already loaded) it continues from."""

    run_dir: Path
    checkpoint: Path
    payload: dict

    @property
    def step(self) -> int:
        return int(self.payload["step"])


def _candidates(path: Path, option: str = "--resume") -> tuple[Path, list[Path]]:
    """(run directory, checkpoint files to try, newest first); ``option`` names the path in errors."""
    if not path.exists():
        raise CheckpointError(f"{option} {path} does not exist; pass a run directory written by "
                              f"python -m nfinpaint.train")
    if path.is_file():
        if path.parent.name != CHECKPOINT_DIR or path not in [p for _, p in list_checkpoints(path.parent.parent)]:
            raise CheckpointError(f"{option} {path}: a checkpoint file is accepted only inside its run directory's "
                                  f"{CHECKPOINT_DIR}/ folder (RUN/{CHECKPOINT_DIR}/step_N.pt), where the run "
                                  f"directory is unambiguous; copy it there, or pass the run directory")
        return path.parent.parent, [path]
    found = [p for _, p in reversed(list_checkpoints(path))]
    if not found and stopped_before_a_checkpoint(path):
        raise CheckpointError(f"{path} holds no checkpoint: its run stopped before its first one (every "
                              f"checkpoint_every steps), so there is nothing to resume; start it again with "
                              f"--out {path}, which replaces it")
    if not found:
        raise CheckpointError(f"{path} holds no checkpoint ({CHECKPOINT_DIR}/step_*.pt); pass a run directory "
                              f"that has trained for at least one checkpoint")
    return path, found


def find_resume_point(path: str | os.PathLike, option: str = "--resume") -> ResumePoint:
    """The run at ``path`` (a run directory, or one of its checkpoint files) and its checkpoint.

    Falls back from a corrupt newest checkpoint to the next older one, with a
    warning; CheckpointError (naming ``option``) when none can be read.
    """
    if not str(path).strip():
        # an unset shell variable: not the current folder (from inside a run directory, a resume of it)
        raise CheckpointError(f"{option} is empty: give the run directory to go on from (or one of its "
                              f"checkpoints/step_N.pt)")
    run_dir, candidates = _candidates(Path(path).expanduser(), option)
    for i, candidate in enumerate(candidates):
        try:
            return ResumePoint(run_dir, candidate, load_checkpoint(candidate, map_location="cpu"))
        except CheckpointError as exc:
            if i + 1 == len(candidates):
                instead = (f"start a new run (--out), from this run's generator if it has one "
                           f"(--init-generator {run_dir})")
                if i > 0:
                    raise CheckpointError(f"none of the {len(candidates)} checkpoints in {run_dir / CHECKPOINT_DIR} "
                                          f"can be read (the oldest: {exc}); {instead}") from None
                raise CheckpointError(f"{exc}; {instead}") from None
            warn(f"{exc}; resuming from the older checkpoint {candidates[i + 1].name} instead")
    raise AssertionError("unreachable")


def saved_config(point: ResumePoint) -> TrainConfig:
    """The config the checkpoint's run trained with."""
    # keys the checkpoint lacks were added after it was written: they take what training did before
    return TrainConfig(**{**PAPER_METHOD, **point.payload["config"]})


def resume_config(point: ResumePoint, overrides: dict) -> TrainConfig:
    """The run's own config with ``overrides`` of the keys a resumed run may change."""
    saved = saved_config(point)
    for key, value in overrides.items():
        if key in PATH_KEYS and same_path(key, value, getattr(saved, key)):
            continue        # the same file or folder, written another way
        if key not in RESUMABLE_KEYS and value != getattr(saved, key):
            raise ConfigError(f"cannot change {key} when resuming (the run's value is {getattr(saved, key)!r}); "
                              f"only {', '.join(sorted(RESUMABLE_KEYS))} may change; to go on under another "
                              f"{key}, start a new run from this one: --fine-tune {point.run_dir} --out NEW_RUN")
    return dataclasses.replace(saved, **overrides).validate()


# Keys that shape the models a checkpoint holds: a fine-tune keeps them, so the weights fit.
MODEL_KEYS = ("generator", "image_size", "local_patch_size")


def fine_tune_config(point: ResumePoint, overrides: dict) -> TrainConfig:
    """The config of a new run that goes on from ``point``'s checkpoint: that run's config with
    ``overrides`` of any key but :data:`MODEL_KEYS`, and ``steps`` beyond the checkpoint's step
    (the learning-rate schedule goes on from there)."""
    saved = saved_config(point)
    for key in MODEL_KEYS:
        if key in overrides and overrides[key] != getattr(saved, key):
            raise ConfigError(f"cannot change {key} when fine-tuning (the run's is {getattr(saved, key)!r}): the "
                              f"checkpoint's weights are shaped by it; start a new run for another {key}")
    config = dataclasses.replace(saved, **overrides).validate()
    if config.init_generator != saved.init_generator:
        raise ConfigError("init_generator starts a new run's generator from a generator file; a fine-tune starts "
                          "from its checkpoint's weights: drop it, or start a new run with --init-generator")
    if not config.val_data:
        # without a validation folder the split is drawn from seed and val_fraction: another draw holds out
        # regions or files the checkpoint trained on, and the run (and evaluate, from its meta) validates there
        for key in ("seed", "val_fraction"):
            if getattr(config, key) != getattr(saved, key):
                raise ConfigError(f"cannot change {key} when fine-tuning without a validation folder (the run's is "
                                  f"{getattr(saved, key)!r}): it draws the validation split, and another draw would "
                                  f"validate on pictures the checkpoint trained on; keep it, or give "
                                  f"--set val_data=FOLDER")
    if (config.ema_decay > 0) != (saved.ema_decay > 0):
        raise ConfigError(f"cannot turn the weight average {'on' if config.ema_decay > 0 else 'off'} when "
                          f"fine-tuning (the run's ema_decay is {saved.ema_decay}); change its rate only")
    if config.steps <= point.step:
        raise ConfigError(f"{point.checkpoint} is at step {point.step}; a fine-tune goes on from there: pass "
                          f"--steps N with N > {point.step}")
    return config


def fine_tune_origin(point: ResumePoint, config: TrainConfig) -> dict:
    """What a fine-tuned run records of where it started: the checkpoint, its step, the settings
    changed ({key: [before, after]}) and, when that run was a fine-tune too, its own origin."""
    before, after = dataclasses.asdict(saved_config(point)), dataclasses.asdict(config)
    origin = {"checkpoint": str(point.checkpoint.resolve()), "step": point.step,
              "changed": changed_settings(before, after)}
    if point.payload.get("fine_tuned_from"):
        origin["from"] = point.payload["fine_tuned_from"]
    return origin


SHIPPED = "shipped"      # init_generator's name for the generator that ships in the package


def open_initial_generator(spec: str) -> tuple[torch.nn.Module, dict]:
    """The generator file ``spec`` names (:data:`SHIPPED`: the package's default) and what a run records
    of it (``initialised_from``: the file, its SHA-256, its description and step, and how it was trained:
    its preset, data, settings changed from the preset and its own origin, so a chain of runs stays in
    the last file's meta when the files before it are gone)."""
    try:
        trained = open_generator(None if spec == SHIPPED else spec)
    except GeneratorFileError as exc:       # its message names the file; this says which setting gave it
        raise GeneratorFileError(f"init_generator: {exc}") from None   # (--init-generator, --set or --config)
    if trained is None:
        raise ConfigError(f"init_generator = {SHIPPED!r}, but this installation ships no generator; pass a "
                          f"generator file or a run directory")
    return trained.generator, trained.record()


def _as_set(value) -> str:
    """``value`` as written after ``--set KEY=`` (config.coerce reads it back)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_config_file(point: ResumePoint, config: TrainConfig) -> None:
    """ConfigError when the run's config.toml was edited by hand in a key a resumed run cannot
    change: the run goes on with its checkpoint's config, and would silently overwrite the edit.

    A key it may change (RESUMABLE_KEYS) that the file holds otherwise than both the checkpoint and
    the resumed run (``config``: overrides included) is no error (after a hard kill the file can
    hold a newer ``steps`` than any checkpoint), but the file is rewritten with the run's value:
    one warning says so, and which ``--set`` keeps the file's."""
    path = point.run_dir / "config.toml"
    if not path.is_file():
        return
    try:
        written = read_toml(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; --resume rewrites {path}: restore it, or remove it") from None
    saved = point.payload["config"]
    edited = sorted(key for key, value in written.items()
                    if key not in RESUMABLE_KEYS and key in saved and value != saved[key])
    if edited:
        key = edited[0]
        raise ConfigError(f"{path} was edited ({', '.join(edited)}; e.g. {key} = {written[key]!r}, the run's is "
                          f"{saved[key]!r}), and a resumed run keeps its own config; to train with the edited "
                          f"file start a new run with --config {path} --out NEW_DIR, or undo the edit")
    used = {key: getattr(config, key) for key in RESUMABLE_KEYS & written.keys() if key in saved}
    # an edit is a value the checkpoint does not hold; one the run uses anyway (--set, --steps) loses nothing
    lost = sorted(key for key, value in used.items() if written[key] != saved[key] and written[key] != value)
    if lost:
        warn(f"{path} sets " + ", ".join(f"{key} = {_as_set(written[key])} (the run keeps {_as_set(used[key])})"
                                         for key in lost)
             + "; this run rewrites the file with its own values; to use the file's, resume with "
             + " ".join(f"--set {key}={_as_set(written[key])}" for key in lost))


ABANDONED_DIR = "abandoned"


def later_checkpoints(point: ResumePoint) -> list[Path]:
    """The run's checkpoints after the one it resumes from (the branch that resuming abandons)."""
    return [p for step, p in list_checkpoints(point.run_dir) if step > point.step]


def set_aside_later_checkpoints(point: ResumePoint) -> Path | None:
    """Move the checkpoints after ``point`` (and the generator exported from them) into
    ``RUN/abandoned/after_step_N-STAMP/``, so that ``--resume RUN`` later continues this new branch,
    not the abandoned one; returns that folder (None when there was nothing to move)."""
    later = later_checkpoints(point)
    if not later:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = point.run_dir / ABANDONED_DIR / f"after_step_{point.step}-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    for path in later:
        os.replace(path, folder / path.name)
    generator = point.run_dir / GENERATOR_FILENAME
    if generator.is_file():
        os.replace(generator, folder / GENERATOR_FILENAME)
    metrics = point.run_dir / METRICS_FILE
    if metrics.is_file():          # the abandoned branch's records, before the log is cut back
        shutil.copy2(metrics, folder / METRICS_FILE)
    return folder
