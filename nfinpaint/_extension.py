"""Loads the compiled operators (``nfinpaint._C``) and says clearly when they are missing.

Importing the extension runs its ``TORCH_LIBRARY`` registrations, after which
the operators live under ``torch.ops.nfinpaint``.  Code that needs them calls
:func:`require`; nothing falls back to a slower path behind the user's back.
"""
from __future__ import annotations

import functools
import importlib
import re
import warnings
from pathlib import Path

import torch

from nfinpaint.errors import NfinpaintError


class ExtensionMissing(NfinpaintError, RuntimeError):
    """The compiled operators are not built, or have no kernels for the device asked for: a command says
    so in one line (it was a traceback from the first fill), and so does the API."""


_HINT = (
    "nfinpaint's C++/CUDA operators (nfinpaint._C) are not built. Install the package with "
    "`pip install .` from the repository root (it compiles csrc/), and run Python from outside "
    "the source tree so that the installed package is imported."
)


class StaleExtensionWarning(UserWarning):
    """The compiled operators were built from other sources than the source tree's ``csrc/``."""


@functools.lru_cache(maxsize=None)
def _load() -> str | None:
    """Import ``nfinpaint._C``; return the import error's text, or None on success."""
    try:
        importlib.import_module("nfinpaint._C")
    except ImportError as exc:
        return str(exc)
    check_sources()
    return None


def check_sources(root=None) -> None:
    """Where the package runs from a source tree (``root``, by default the folder above the package, holds
    ``csrc/`` and ``setup.py``: the README's commands from the repository root, an editable install),
    warn when the built operators' sources differ from it: after a ``git pull`` without ``pip install .``
    they ran the old kernels without a word."""
    from nfinpaint.sources_digest import digest  # noqa: PLC0415

    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    if not (root / "csrc").is_dir() or not (root / "setup.py").is_file():     # an installed package
        return
    built = _fields().get("sources")      # None: built before the digest was recorded
    if built is not None and digest(root / "csrc") != built:
        warnings.warn(f"nfinpaint's compiled operators were built from other sources than {root / 'csrc'}: "
                      f"reinstall with `pip install .` from {root} (`pip install -e .` for an editable "
                      f"install) to run the kernels there",
                      StaleExtensionWarning, stacklevel=2)


# torch from pip brings no nvcc: `pip install .` then builds the CPU operators only, and on a GPU the
# dispatcher's "Could not run 'nfinpaint::...' with arguments from the 'CUDA' backend" said nothing useful
_CUDA_HINT = (
    "nfinpaint's operators (nfinpaint._C) were built without CUDA kernels (no CUDA toolkit was found when "
    "the package was installed): to run on the GPU, reinstall it with the toolkit, "
    "`CUDA_HOME=/path/to/cuda NFINPAINT_FORCE_CUDA=1 pip install .` (the folder with bin/nvcc and lib64/libcudart.so)"
)


def is_built() -> bool:
    return _load() is None


def require(device: str | torch.device | None = None) -> None:
    """Raise a clear error if the extension is not importable, or, for a CUDA ``device``, if it was built
    without CUDA kernels."""
    error = _load()
    if error is not None:
        raise ExtensionMissing(f"{_HINT} (import error: {error})")
    if device is not None and torch.device(device).type == "cuda" and not has_cuda_kernels():
        raise ExtensionMissing(_CUDA_HINT)


# TORCH_CUDA_ARCH_LIST's names, as torch.utils.cpp_extension expands them (in this order, by replacing text)
_NAMED_ARCHS = (("Kepler+Tesla", "3.7"), ("Kepler", "3.5+PTX"), ("Maxwell+Tegra", "5.3"), ("Maxwell", "5.0;5.2+PTX"),
                ("Pascal", "6.0;6.1+PTX"), ("Volta+Tegra", "7.2"), ("Volta", "7.0+PTX"), ("Turing", "7.5+PTX"),
                ("Ampere+Tegra", "8.7"), ("Ampere", "8.0;8.6+PTX"), ("Ada", "8.9+PTX"), ("Hopper", "9.0+PTX"),
                ("Blackwell+Tegra", "11.0"), ("Blackwell", "10.0;10.3;12.0;12.1+PTX"), ("Rubin", "10.7+PTX"))


def runs_on(archs: str, capability: tuple[int, int]) -> bool:
    """Whether CUDA kernels built for ``archs`` (a ``TORCH_CUDA_ARCH_LIST``: "8.0;9.0+PTX", or names such
    as "Ampere") run on a GPU of compute ``capability``: machine code of its major version and a minor one
    at most its own, or PTX (which the driver compiles) of a version at most its own.  An empty or
    unreadable list (torch's default: the arch of the GPU the build saw) counts as running."""
    for name, versions in _NAMED_ARCHS:
        archs = archs.replace(name, versions)
    items = [item for item in re.split(r"[;,\s]+", archs.strip()) if item]
    versions = [re.fullmatch(r"(\d+)\.(\d+)[a-z]?(\+PTX)?", item) for item in items]
    if not items or not all(versions):
        return True
    for match, item in zip(versions, items):
        built = (int(match[1]), int(match[2]))
        if item.removesuffix("+PTX")[-1].isalpha():      # "9.0a": that arch's own features, that GPU alone
            if built == capability:
                return True
        elif (match[3] and built <= capability) or (built[0] == capability[0] and built[1] <= capability[1]):
            return True
    return False


def cuda_kernels_missing(device: str | torch.device | None = None) -> str | None:
    """Why the built operators cannot run on a CUDA GPU (``device``'s, when given), or None: they can, or
    the extension is not built at all (:func:`require` says that where the operators are needed).  A
    build without CUDA kernels, or one for other archs (the default without a visible GPU is Ampere and
    Hopper: a T4 or V100 then met "no kernel image is available" at the first launch)."""
    if not is_built():
        return None
    if not has_cuda_kernels():
        return _CUDA_HINT
    if device is None:
        return None
    archs = build_info().get("cuda_archs", "")
    capability = torch.cuda.get_device_capability(device)
    if runs_on(archs, capability):
        return None
    wanted = f"{capability[0]}.{capability[1]}"
    return (f"nfinpaint's CUDA kernels were built for compute capabilities {archs}, which this GPU "
            f"({torch.cuda.get_device_name(device)}, {wanted}) cannot run: reinstall it for this GPU, "
            f"`TORCH_CUDA_ARCH_LIST={wanted} CUDA_HOME=/path/to/cuda pip install .`")


def build_info() -> dict[str, str]:
    """What the extension was compiled with: backends, CUDA archs, the digest of its sources."""
    require()
    return _fields()


def _fields() -> dict[str, str]:
    """The loaded extension's ``build_info`` as a dict (:func:`build_info` without the check)."""
    return dict(item.split("=", 1) for item in torch.ops.nfinpaint.build_info().splitlines())


def has_cuda_kernels() -> bool:
    return is_built() and "CUDA" in build_info()["backends"].split(",")


def same_device(op: str, **tensors: torch.Tensor | None) -> None:
    """RuntimeError unless the tensors given (None: absent) are on the first one's device.  A fake kernel
    checks this first: a call mixing devices reaches it when one input is on "meta", and it would return
    uninitialised tensors on the first input's device (the real kernels check too)."""
    (first, x0), *rest = tensors.items()
    for name, x in rest:
        if x is not None and x.device != x0.device:
            raise RuntimeError(f"{op}: expected {name} on {x0.device} like {first}, got {x.device}")


def check_on_meta(check, *args) -> None:
    """Run ``check`` (an input-rules op of the extension: ``nfinpaint::_check_*_inputs``) on meta copies
    of the tensors in ``args``: a fake kernel so refuses what its kernel would, in the kernel's words.
    Symbolic sizes are left to the kernel's check at run time (a meta copy needs concrete ones); devices
    are the caller's to check first (the copies all share one)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if any(isinstance(d, torch.SymInt) for x in tensors for d in (*x.shape, *x.stride())):
        return
    with torch._subclasses.fake_tensor.unset_fake_temporarily():
        check(*(torch.empty_strided(tuple(a.shape), tuple(a.stride()), dtype=a.dtype, device="meta")
                if isinstance(a, torch.Tensor) else a for a in args))
