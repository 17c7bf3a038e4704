"""A trained generator's file: its format, where it is found, loading it (filling with it: nfinpaint.inference).

File format (a ``torch.save`` dict, loaded with ``weights_only=True``)::

    {"format": "nfinpaint-generator/1", "config": Generator.config,
     "state_dict": {...}, "meta": {...}}

``meta`` holds at least: preset, image_size, hole_size, feature_weights
(source) and feature_pretrained (bool); training's export
(:func:`nfinpaint.training_run.training_meta`) adds everything evaluation needs to rebuild the
held-out split (``split``: :class:`nfinpaint.data.DataSplit`, and data) and a
one-line ``description``.  Values are stored as plain Python data (str subclasses such
as ``torch.__version__``, paths and other objects as str, tuples as lists) so
that loading never needs to unpickle arbitrary classes.  The weights may be
stored in half precision (the shipped default is); they load as float32.

Where a generator comes from (:func:`open_generator`): a file, a run directory
holding ``generator.pt``, or with no path the default that ships inside the
package (``nfinpaint/weights/default_generator.pt``) when it is installed.
"""
from __future__ import annotations

import hashlib
import numbers
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

import nfinpaint
from nfinpaint.errors import NfinpaintError
from nfinpaint.files import atomic_path, load_torch, save_torch
from nfinpaint.masks import default_hole_size
from nfinpaint.generators import generator_from_config
from nfinpaint.networks import Generator

FORMAT = "nfinpaint-generator/1"
GENERATOR_FILENAME = "generator.pt"
DEFAULT_GENERATOR = Path("weights") / "default_generator.pt"   # inside the package
REQUIRED_META = ("preset", "image_size", "hole_size", "feature_weights", "feature_pretrained")


class GeneratorFileError(NfinpaintError, RuntimeError):
    """A generator file is missing, corrupt, or not an nfinpaint generator."""


# --------------------------------------------------------------------------- saving


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
        save_torch(payload, tmp)
    return path


# --------------------------------------------------------------------------- finding and loading


def shipped_default() -> Path | None:
    """The generator installed with the package, or None when this installation has none."""
    # nfinpaint.__path__ may list the source folder and the installed copy (see __init__)
    for folder in nfinpaint.__path__:
        candidate = Path(folder) / DEFAULT_GENERATOR
        if candidate.is_file():
            return candidate
    return None


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
        # a pipe or a device exists: "does not exist" sent the user looking for a typo
        what = "is not a regular file" if path.exists() else "does not exist"
        raise GeneratorFileError(f"generator checkpoint {str(path)!r} {what}; pass a run directory "
                                 f"(with {GENERATOR_FILENAME}) or the exported generator file")
    return path


def _read(file: Path, map_location) -> dict:
    if _is_torchscript(file):       # torch.load would warn and call it corrupt
        raise GeneratorFileError(f"{str(file)!r} is an exported TorchScript model (python -m nfinpaint.export; load "
                                 f"it with torch.jit.load), not a generator file: give the run directory or its "
                                 f"{GENERATOR_FILENAME}")
    payload = load_torch(file, GeneratorFileError, "nfinpaint generator file",
                         "copy it again, or give another generator file",
                         map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise GeneratorFileError(f"{str(file)!r} is not an nfinpaint generator (format {found!r}, expected "
                                 f"{FORMAT!r}); training checkpoints are in checkpoints/, the exported "
                                 f"generator is {GENERATOR_FILENAME} in the run directory")
    return payload


def _is_torchscript(file: Path) -> bool:
    """Whether ``file`` is a TorchScript archive (a zip with the scripted code's constants.pkl)."""
    try:
        with zipfile.ZipFile(file) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _meta_int(meta: dict, key: str, file: Path, most: int | None = None) -> int:
    """``meta[key]`` as an int from 1 to ``most``, else GeneratorFileError naming the file, key and value:
    a hand-edited meta ("abc", "128") otherwise fails later, naming neither or contradicting itself."""
    value = meta[key]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= value <= (most or value):
        return int(value)
    wanted = f"from 1 to {most}" if most else "of at least 1"
    raise GeneratorFileError(f"{str(file)!r}: its meta has {key} {value!r} ({type(value).__name__}), not a whole "
                             f"number of pixels {wanted}")


def load_generator(path: str | os.PathLike, map_location="cpu") -> tuple[Generator, dict]:
    """Load a generator saved by :func:`save_generator` (file or run directory).

    Returns ``(float32 generator in eval mode, meta)``.  Raises GeneratorFileError
    with a one-line reason for a missing, corrupt or foreign file.
    """
    file = resolve_generator_path(path)
    payload = _read(file, map_location)
    try:
        # float32 whatever the caller's torch.set_default_dtype (float64 parameters met float32 inputs);
        # the layers' random initialisation, which the file's weights replace, drew from the caller's
        # seeded random stream; built on the CPU whatever the caller's torch.set_default_device (its CUDA
        # stream, which fork_rng(devices=[]) does not keep; "meta", which cannot hold the weights)
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            generator = generator_from_config(payload["config"]).float()
        # half-precision files (the shipped default) load as float32: the model runs in float32
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        generator.load_state_dict(state)
        meta = dict(payload.get("meta", {}))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise GeneratorFileError(f"{str(file)!r} has an nfinpaint header but its generator does not load "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    bad = [name for name, value in generator.state_dict().items()
           if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:   # a diverged training: every fill would be NaN (black holes)
        raise GeneratorFileError(f"{str(file)!r}: {len(bad)} of its weight tensors are not finite (NaN or "
                                 f"infinite, e.g. {bad[0]}): the training that wrote it diverged; use an "
                                 f"earlier checkpoint or train again")
    if "image_size" in meta:
        meta["image_size"] = _meta_int(meta, "image_size", file)
        if meta["image_size"] != generator.image_size:
            raise GeneratorFileError(f"{str(file)!r}: its meta says image_size {meta['image_size']} but the "
                                     f"generator takes {generator.image_size}")
    if meta.get("hole_size") is not None:     # None or absent: a third of the image (TrainedGenerator)
        meta["hole_size"] = _meta_int(meta, "hole_size", file, generator.image_size)
    generator.eval()
    return generator, meta


# What a file made from a generator file records of it beyond the file itself (TrainedGenerator.record)
HISTORY = ("preset", "data", "settings_changed_from_preset", "initialised_from", "fine_tuned_from", "averaged_from")


@dataclass
class TrainedGenerator:
    """A loaded generator with its meta, where it came from, and the file's SHA-256."""

    generator: Generator
    meta: dict
    path: Path
    sha256: str

    @property
    def image_size(self) -> int:
        return self.generator.image_size

    @property
    def hole_size(self) -> int:
        """The training hole (a third of the image when the meta does not say)."""
        if self.meta.get("hole_size") is None:
            return default_hole_size(self.image_size)
        return _meta_int(self.meta, "hole_size", self.path, self.image_size)

    def record(self) -> dict:
        """What a file made from this one records of it (a run's ``initialised_from``, a weight average's
        ``averaged_from``): the file, its SHA-256, its description and step, and how it was trained (its
        preset, data, settings changed from the preset and its own origin), so a chain of files stays in
        the last one's meta when the files before it are gone."""
        record = {"file": str(resolve_generator_path(self.path).resolve()), "sha256": self.sha256,
                  "description": self.meta.get("description", ""), "step": self.meta.get("step")}
        record.update({key: self.meta[key] for key in HISTORY if key in self.meta})
        return record

    def describe(self) -> str:
        """One line: where it is, what it is."""
        meta = self.meta
        description = meta.get("description") or f"preset {meta.get('preset', '?')}"
        features = str(meta.get("feature_weights", "unknown"))
        parts = [str(self.path), description,
                 f"{self.image_size}x{self.image_size}, training hole {meta.get('hole_size', '?')}"]
        if features not in description:        # a shipped file's description names them already
            parts.append(f"feature-network weights: {features}")
        if meta.get("feature_pretrained") is False:
            parts.append("feature network NOT pretrained (untrained VGG)")
        if "step" in meta and "description" not in meta:
            parts.append(f"step {meta['step']}")
        return ", ".join(parts)


def open_generator(path: str | os.PathLike | None) -> TrainedGenerator | None:
    """The generator at ``path`` (file or run directory); with None, the shipped default, or None
    when none is installed.  GeneratorFileError for anything that does not load."""
    if path is None:
        path = shipped_default()
        if path is None:
            return None
    file = resolve_generator_path(path)
    generator, meta = load_generator(file)
    return TrainedGenerator(generator, meta, Path(path), hashlib.sha256(file.read_bytes()).hexdigest())
