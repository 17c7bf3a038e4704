"""A training run's directory and its logs: where it goes, config.toml, metrics.jsonl, console lines.

Layout: ``config.toml`` (resolved config + versions), ``metrics.jsonl`` (one
JSON record per line), ``samples/``, ``checkpoints/`` (nfinpaint.checkpoint)
and ``generator.pt`` (nfinpaint.generator_io).  Everything that can refuse a
run directory is checked here before anything is written into it.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from nfinpaint.cli import warn
from nfinpaint.config import ConfigError, TrainConfig, to_toml
from nfinpaint.files import MARKER, full_disk_reported, is_temporary, marker_kind, overlap, write_text
from nfinpaint.provenance import versions

METRICS_FILE = "metrics.jsonl"


def say(is_main: bool, message: str) -> None:
    """A line on stderr from the main process, printed above the progress bar."""
    if is_main:
        from tqdm import tqdm  # noqa: PLC0415

        tqdm.write(message, file=sys.stderr)


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.preset}-{stamp}"


# what a run writes before its first checkpoint (the rest: checkpoints/step_N.pt, generator.pt, abandoned/):
# files at the top, and in each folder the names it writes there (a write killed midway: atomic_path's)
_FIRST_FILES = frozenset({MARKER, "config.toml", METRICS_FILE})
_FIRST_FOLDERS = {"samples": re.compile(r"^step_\d+\.png$"), "checkpoints": re.compile(r"^$"),
                  "tensorboard": re.compile(r"^events\.out\.tfevents\.[^/]+$")}


def stopped_before_a_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a run directory whose run stopped before its first checkpoint (killed, out of
    memory, a full disk in its first steps): it holds only what a run writes first, and nothing to resume.
    A new run may replace it; that was refused (\"not empty\"), and so was --resume (\"no checkpoint\")."""
    from nfinpaint.checkpoint import list_checkpoints  # noqa: PLC0415  (checkpoint imports this module's users)

    if marker_kind(path) != RUN_KIND:
        return False
    try:
        entries = list(path.iterdir())
        for entry in entries:
            if entry.name in _FIRST_FOLDERS and entry.is_dir() and not entry.is_symlink():
                written = _FIRST_FOLDERS[entry.name]
                if not all((written.match(p.name) or is_temporary(p.name)) and p.is_file() and not p.is_symlink()
                           for p in entry.iterdir()):
                    return False           # anything else in it (a copied checkpoint, notes): not replaced
            elif entry.name not in _FIRST_FILES or not entry.is_file():
                return False
    except OSError:
        return False
    return any(entry.name != MARKER for entry in entries) and not list_checkpoints(path)


def check_new_run_dir(path: Path) -> None:
    """ConfigError unless ``path`` can become a new run directory (missing, or an empty folder:
    one that holds only a run's marker, left by a run that stopped before writing, counts; so does a run
    that stopped before its first checkpoint, which the new run replaces)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder; choose another --out for the run directory")
    check_not_in_use(path)
    if path.is_dir() and any(p.name != MARKER for p in path.iterdir()) and not stopped_before_a_checkpoint(path):
        if marker_kind(path) == RUN_KIND:
            raise ConfigError(f"run directory {path} already exists and is not empty; continue it with "
                              f"--resume {path}, or choose another --out")
        raise ConfigError(f"--out {path} already exists and is not empty, and it is no training run's folder; "
                          f"choose another --out (a new or empty folder)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"--out {path}: no permission to create folders in {parent}")
            break


def check_outside_data(run_dir: Path, config: TrainConfig) -> None:
    """ConfigError when the run directory overlaps a data folder: its sample grids would become
    training or validation data when the run resumes (and resuming would no longer be bit for bit)."""
    for key in ("data", "val_data"):
        folder = getattr(config, key)
        if folder and Path(folder).is_dir() and overlap(run_dir, folder):
            raise ConfigError(f"run directory {run_dir} overlaps {key} {folder}: the run's own images would be "
                              f"read as data; keep the run directory (--out) outside the data folders")


RUN_KIND = "training run"   # the marker's word (files.MARKER) of a run directory


def _in_use(path: Path) -> bool:
    """Whether another process holds the lock of run directory ``path`` (a look: nothing is written)."""
    try:
        fd = os.open(path / MARKER, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)   # also releases the lock taken just now
    return False


def _busy(path: Path) -> ConfigError:
    return ConfigError(f"run directory {path} is in use by another training process; wait for it to finish "
                       f"(or stop it), or choose another --out")


def check_not_in_use(path: Path) -> None:
    """ConfigError when another training writes into ``path`` now."""
    if _in_use(path):
        raise _busy(path)


class RunLock:
    """The run directory, taken for one process: an exclusive lock on its marker file, held
    until :meth:`release` (or the process ends: the kernel drops it, so a crash leaves no lock)."""

    def __init__(self, path: Path, new: bool):
        """Create (``new``) or open the run directory and lock it; ConfigError when another process
        holds it, or (``new``) when another run wrote into it since it was checked."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path / MARKER, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise _busy(path) from None
        if new and any(p.name != MARKER for p in path.iterdir()):
            if not stopped_before_a_checkpoint(path):
                self.release()
                raise ConfigError(f"run directory {path} was written by another run since this one started; "
                                  f"choose another --out")
            # locked: no other run writes here now
            for entry in path.iterdir():
                if entry.name != MARKER:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            say(True, f"note: replacing {path}, a run that stopped before its first checkpoint (nothing to resume)")
        text = f"nfinpaint {RUN_KIND}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text, 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_config(run_dir: Path, config: TrainConfig, weights_source: str, pretrained: bool | None) -> None:
    """``pretrained``: None when no loss term uses the feature network."""
    header = ("nfinpaint training run: the resolved configuration.\n"
              "Repeat it with: python -m nfinpaint.train --config config.toml --out NEW_DIR\n"
              f"feature network weights: {weights_source}"
              + ("  <-- UNTRAINED: the feature loss is not perceptual" if pretrained is False else ""))
    write_text(run_dir / "config.toml", to_toml(config, versions(), header))


def metrics_to_keep(run_dir: Path, resume_step: int) -> list[str]:
    """The records of ``run_dir``'s metrics.jsonl up to ``resume_step`` (a stopped run's later ones
    are redone); damaged lines (e.g. cut short by a crash) are dropped with a warning.  Reads only."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    if not path.is_file():      # reading it was an IsADirectoryError traceback
        raise ConfigError(f"{path} is not a file: the run's log of records must be one; move it away to "
                          f"resume with a fresh log")
    kept, damaged = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            damaged += 1
            continue
        if isinstance(record, dict) and record.get("step", 0) <= resume_step:
            kept.append(line)
    if damaged:
        warn(f"{path}: dropped {damaged} damaged line(s) that are not JSON records")
    return kept


def _json_numbers(value):
    """``value`` with every NaN or infinite float as None (JSON's null): Python's bare NaN is no JSON,
    and strict readers (jq, JavaScript's JSON.parse) refused a diverged run's record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(item) for item in value]
    return value


class MetricsLog:
    """metrics.jsonl (one JSON object per line, flushed) and TensorBoard when installed."""

    def __init__(self, run_dir: Path, kept: list[str] | None, tensorboard: bool):
        """``kept``: the records to keep from a resumed run (:func:`metrics_to_keep`); None for a new run."""
        self.path = run_dir / METRICS_FILE
        if kept is not None:
            write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        with full_disk_reported(self.path):
            self.file.write(json.dumps(_json_numbers(record), allow_nan=False) + "\n")
            self.file.flush()
        if self.tb is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
