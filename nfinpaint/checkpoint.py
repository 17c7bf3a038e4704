"""Training-state checkpoints: written atomically, resumed bit for bit.

A checkpoint (``RUN/checkpoints/step_0000500.pt``) holds everything the next
step depends on: model and optimiser states, the step, the resolved config,
the random-number-generator states (torch CPU and CUDA, numpy, python) and
how the feature network was obtained.  The data order needs no state: every
item is a pure function of (seed, epoch, index) and the position in the stream
follows from the step.  Files are loaded with ``weights_only=True``, so they
hold only tensors and plain Python values.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from nfinpaint.errors import NfinpaintError
from nfinpaint.files import atomic_path, load_torch, save_torch

FORMAT = "nfinpaint-train-checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(NfinpaintError, ValueError):
    """A resume path or checkpoint that cannot be used, with what to do."""


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": np_state["bit_generator"],
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU visible when it was saved (8 under torchrun on an 8-GPU node): a resume that
        # sees fewer (CUDA_VISIBLE_DEVICES=0, a 1-GPU workstation) restores those it has
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:07d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: str | os.PathLike, step: int, payload: dict, keep: int = 2) -> Path:
    """Write ``payload`` as the step-``step`` checkpoint (temp file + rename); keep the newest ``keep``."""
    path = checkpoint_path(run_dir, step)
    with atomic_path(path) as tmp:
        save_torch({"format": FORMAT, "step": step, **payload}, tmp)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    # no advice here: find_resume_point goes on to an older checkpoint, or says what to do when none is left
    payload = load_torch(path, CheckpointError, "training checkpoint", map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nfinpaint training checkpoint (expected format {FORMAT!r})")
    return _checked(path, payload)


def _checked(path: Path, payload: dict) -> dict:
    """``payload`` with its config in today's keys (retired ones dropped), or CheckpointError naming
    what is missing or mistyped: resuming reads all of it, so a damaged entry fails here, in one line,
    not in the middle of loading the models."""
    from nfinpaint.config import PAPER_METHOD, RETIRED_KEYS, ConfigError, TrainConfig, coerce  # noqa: PLC0415

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable training checkpoint: {what}")

    step = payload.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad(f"its step is {step!r}, not a count of steps")
    for key, parts in (("config", ()), ("models", ("generator", "global_d", "local_d")),
                       ("optimizers", ("generator", "discriminators")), ("rng", ("torch", "numpy", "python"))):
        entry = payload.get(key)
        if not isinstance(entry, dict):
            raise bad(f"it has no {key!r} entry" if entry is None else f"its {key!r} entry is not a table")
        missing = [part for part in parts if part not in entry]
        if missing:
            raise bad(f"its {key!r} entry has no {missing[0]!r}")
    if not isinstance(payload["rng"]["torch"], torch.Tensor) or not isinstance(payload["rng"]["numpy"], dict):
        raise bad("its random-number-generator states ('rng') are damaged")
    config = {key: value for key, value in payload["config"].items() if key not in RETIRED_KEYS}
    try:
        config = {key: coerce(key, value, "its config") for key, value in config.items()}
        # keys it lacks were added after it was written: they take what training did before, as a resume
        # reads them (resume.saved_config); TrainConfig's defaults asked an older checkpoint for an EMA
        resolved = TrainConfig(**{**PAPER_METHOD, **config}).validate()
    except ConfigError as exc:
        raise bad(str(exc)) from None
    if resolved.ema_decay > 0 and "generator_ema" not in payload["models"]:
        raise bad("its 'models' entry has no 'generator_ema' (the weight average its config asks for)")
    return {**payload, "config": config}
