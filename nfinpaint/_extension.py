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


_ATEN_DTYPE_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
                     torch.bfloat16: "BFloat16", torch.bool: "Bool", torch.int32: "Int", torch.int64: "Long",
                     torch.uint8: "Byte"}


def aten_words(value) -> str:
    """A dtype or a shape as the C++ operators' checks print it (``Float``, ``[8, 9, 3]``): the fake
    kernels refuse a call in the same words as the kernel would."""
    if isinstance(value, torch.dtype):
        return _ATEN_DTYPE_NAMES.get(value, str(value))
    return str(list(value))
