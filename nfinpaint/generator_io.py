"""Saving and loading a trained generator: what training exports and evaluate/inpaint load.

File format (a ``torch.save`` dict, loaded with ``weights_only=True``)::

    {"format": "nfinpaint-generator/1", "config": Generator.config,
     "state_dict": {...}, "meta": {...}}

``meta`` holds at least: preset, image_size, hole_size, feature_weights
(source) and feature_pretrained (bool); training adds what it likes (step,
versions, ...); values are stored as plain Python data (str subclasses such
as ``torch.__version__``, paths and other objects as str, tuples as lists)
so that loading never needs to unpickle arbitrary classes.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import torch

from nfinpaint.files import atomic_path
from nfinpaint.networks import Generator

FORMAT = "nfinpaint-generator/1"
GENERATOR_FILENAME = "generator.pt"
REQUIRED_META = ("preset", "image_size", "hole_size", "feature_weights", "feature_pretrained")


class GeneratorFileError(RuntimeError):
    """A generator file is missing, corrupt, or not an nfinpaint generator."""


def _plain(value):
    """``value`` as plain Python/tensor data that ``torch.load(weights_only=True)`` accepts:
    str subclasses (e.g. ``torch.__version__``), paths and other objects become str."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):      # also numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def save_generator(path: str | os.PathLike, generator: Generator, meta: dict) -> Path:
    """Write ``generator`` (config + weights) and ``meta`` to ``path`` atomically; returns the path."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"generator meta lacks {missing} (required: {list(REQUIRED_META)})")
    if meta["image_size"] != generator.config["image_size"]:
        raise ValueError(f"meta image_size {meta['image_size']} != generator's {generator.config['image_size']}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    payload = {"format": FORMAT, "config": _plain(generator.config), "state_dict": state, "meta": _plain(meta)}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def resolve_generator_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/generator.pt`` when ``path`` is a run directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / GENERATOR_FILENAME
        if not candidate.is_file():
            raise GeneratorFileError(f"{str(path)!r} is a directory without {GENERATOR_FILENAME}; pass a run "
                                     f"directory that finished training, or the exported generator file")
        return candidate
    if not path.is_file():
        raise GeneratorFileError(f"generator checkpoint {str(path)!r} does not exist; pass a run directory "
                                 f"(with {GENERATOR_FILENAME}) or the exported generator file")
    return path


def load_generator(path: str | os.PathLike, map_location="cpu") -> tuple[Generator, dict]:
    """Load a generator saved by :func:`save_generator` (file or run directory).

    Returns ``(generator in eval mode, meta)``.  Raises GeneratorFileError with a
    one-line reason for a missing, corrupt or foreign file.
    """
    file = resolve_generator_path(path)
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise GeneratorFileError(f"{str(file)!r} is not a readable nfinpaint generator file (corrupt or not "
                                 f"written by torch.save: {type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise GeneratorFileError(f"{str(file)!r} is not an nfinpaint generator (format {found!r}, expected "
                                 f"{FORMAT!r}); training checkpoints are in checkpoints/, the exported "
                                 f"generator is {GENERATOR_FILENAME} in the run directory")
    try:
        generator = Generator(**payload["config"])
        generator.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise GeneratorFileError(f"{str(file)!r} has an nfinpaint header but its generator does not load "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    generator.eval()
    return generator, dict(payload.get("meta", {}))
