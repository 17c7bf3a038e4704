"""Loads the compiled operators (``nfinpaint._C``) and says clearly when they are missing.

Importing the extension runs its ``TORCH_LIBRARY`` registrations, after which
the operators live under ``torch.ops.nfinpaint``.  Code that needs them calls
:func:`require`; nothing falls back to a slower path behind the user's back.
"""
from __future__ import annotations

import functools
import importlib

import torch

_HINT = (
    "nfinpaint's C++/CUDA operators (nfinpaint._C) are not built. Install the package with "
    "`pip install .` from the repository root (it compiles csrc/), and run Python from outside "
    "the source tree so that the installed package is imported."
)


@functools.lru_cache(maxsize=None)
def _load() -> str | None:
    """Import ``nfinpaint._C``; return the import error's text, or None on success."""
    try:
        importlib.import_module("nfinpaint._C")
    except ImportError as exc:
        return str(exc)
    return None


def is_built() -> bool:
    return _load() is None


def require() -> None:
    """Raise a clear error if the extension is not importable."""
    error = _load()
    if error is not None:
        raise RuntimeError(f"{_HINT}\n(import error: {error})")


def build_info() -> dict[str, str]:
    """What the extension was compiled with: backends, CUDA archs."""
    require()
    fields = dict(item.split("=", 1) for item in torch.ops.nfinpaint.build_info().splitlines())
    return fields


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
