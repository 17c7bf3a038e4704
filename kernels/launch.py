"""Choosing and building the Triton path at call time.

``triton.jit`` decides between the compiler and the CPU interpreter when the
decorator runs (import time).  The kernels here are plain Python functions
wrapped lazily instead, so ``TRITON_INTERPRET`` is read when an op is called:
setting it after ``import nfinpaint.kernels.gram`` still works.

Paths, in order:

- ``TRITON_INTERPRET=1``: the interpreter (any device; CPU tensors stay put),
  one fixed block configuration so CPU tests stay quick; a kernel that loops over
  a launch argument first checks that this interpreter can
  (:func:`interpreter_loop_fault`: Triton 3.6's cannot with numpy 2.4);
- CUDA tensors: compiled Triton with a small autotuned configuration set;
  the autotuner benchmarks every configuration on the real buffers, so a
  kernel that leaves per-program partial sums must let the caller read only
  the slots the configuration that ran wrote: :meth:`LazyKernel.launch`
  returns that configuration's meta-parameters;
- otherwise there is no Triton path: :func:`require_triton_path` raises, and
  the public wrappers fall back to the PyTorch reference only when the caller
  passed ``allow_reference_fallback=True``.

Our kernels are wrapped per call, but Triton's own library (``tl.sum``,
``tl.cdiv``...) is built for one mode when ``triton.language`` is first
imported, and one process cannot switch: an interpreted kernel calling a compiled
``tl.sum`` fails, and so does compiling after an interpreted import (Triton's
own assertion, deep in its compiler; seen on an H200).  :func:`mode_fault` names
the mismatch and the path counts as unavailable (:class:`TritonModeError`).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from typing import Callable, Sequence

import torch

try:
    import triton.language as tl
except ImportError:   # no Triton wheel for this platform
    tl = None

NO_TRITON_PATH = (
    "the Triton path needs CUDA tensors on a GPU, or TRITON_INTERPRET=1 for the CPU "
    "interpreter (slow, for tests); pass allow_reference_fallback=True to use the PyTorch "
    "reference instead")


# Triton's own reading of a boolean variable (triton.knobs' env_bool): "true", "on", "yes"... also
# put it in interpreter mode, where "1" alone counted here and its kernels refused to run
_TRUE = frozenset({"1", "true", "on", "yes", "y"})


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET`` is set now to a value Triton reads as true (``1``, ``true``,
    ``on``, ``yes``, ``y``, any case; read on every call)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in _TRUE


def _loop_probe(out_ptr, n):
    # The smallest kernel that loops over a launch argument, as the Gram kernels do.
    for i in range(0, n, 1):
        tl.store(out_ptr + i, i + 1)


@functools.cache
def interpreter_loop_fault() -> str | None:
    """Why this Triton's CPU interpreter cannot run a loop over a kernel argument, or
    None when it can.  Triton 3.6's interpreter turns an int argument into a one-element
    array and calls ``int()`` on it for ``range``; numpy 2.4 refuses that
    (triton-lang/triton#9171, fixed in later Triton).  Tried once, on a tiny kernel."""
    from triton.runtime.interpreter import InterpretedFunction  # noqa: PLC0415

    out = torch.zeros(2, dtype=torch.int32)
    try:
        InterpretedFunction(_loop_probe)[(1,)](out, 2)
        if out.tolist() == [1, 2]:
            return None
        problem = f"a test loop wrote {out.tolist()} instead of [1, 2]"
    except Exception as exc:  # noqa: BLE001 - any failure of the interpreter is the answer
        problem = f"{type(exc).__name__}: {exc}"
    import numpy  # noqa: PLC0415
    import triton  # noqa: PLC0415

    return (f"the CPU interpreter of Triton {triton.__version__} cannot run a loop over a kernel "
            f"argument with numpy {numpy.__version__} ({problem}; triton-lang/triton#9171); "
            "install numpy<2.4 or a newer Triton, or run the kernel on a GPU")


def triton_installed() -> bool:
    """Whether Triton is importable (it ships Linux wheels only, so elsewhere it is not installed)."""
    return importlib.util.find_spec("triton") is not None


NO_TRITON = ("Triton is not installed (it ships wheels for Linux only, and nfinpaint installs it only "
             "there), so the Triton kernels cannot run on this machine; pass allow_reference_fallback=True "
             "to use the PyTorch reference instead")


class TritonModeError(RuntimeError):
    """The Triton path needs the mode (interpreter or compiler) that this process's
    ``triton.language`` was not built for (:func:`mode_fault`)."""


@functools.cache       # fixed when this module imported triton.language
def library_interpreted() -> bool:
    """Whether ``triton.language``'s own jitted functions were built for the interpreter
    (``TRITON_INTERPRET=1`` when this process first imported it)."""
    from triton.runtime.interpreter import InterpretedFunction  # noqa: PLC0415

    return isinstance(tl.standard.sum, InterpretedFunction)


def mode_fault(interpret: bool) -> str | None:
    """Why Triton cannot run in the interpreter (``interpret``) or compiled in this
    process, or None when it can."""
    if tl is None or library_interpreted() == interpret:
        return None
    built = "the CPU interpreter (TRITON_INTERPRET=1 then)" if not interpret else "the compiler"
    fix = ("set TRITON_INTERPRET=1 before anything imports triton" if interpret
           else "start the process without TRITON_INTERPRET=1")
    return (f"Triton built its language library (tl.sum, tl.cdiv) for {built} when this process first "
            f"imported it, and a process cannot switch modes: {fix}")


def triton_path_available(tensor: torch.Tensor) -> bool:
    """Whether a Triton kernel can run on ``tensor`` right now."""
    return (triton_installed() and (interpreter_enabled() or tensor.is_cuda)
            and mode_fault(interpreter_enabled()) is None)


def require_triton_path(tensor: torch.Tensor, op_name: str) -> None:
    """Raise a clear RuntimeError when no Triton path exists for ``tensor``
    (:class:`TritonModeError` when only the process's Triton mode is in the way)."""
    if not triton_installed():
        raise RuntimeError(f"{op_name}: {NO_TRITON}")
    if not (interpreter_enabled() or tensor.is_cuda):
        raise RuntimeError(f"{op_name}: {NO_TRITON_PATH} (got a {tensor.device.type} tensor, "
                           f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', 'unset')})")
    if (fault := mode_fault(interpreter_enabled())) is not None:
        raise TritonModeError(f"{op_name}: {fault}")


def device_guard(tensor: torch.Tensor):
    """Make ``tensor``'s GPU current for the launch (Triton launches on the current device
    and its current stream)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def fp32_dot_precision() -> str:
    """``tl.dot`` precision for float32 operands on a GPU, following PyTorch's matmul
    setting: "tf32" when ``torch.backends.cuda.matmul.fp32_precision`` is "tf32" (set
    directly, inherited from ``torch.backends.fp32_precision``, or through the legacy
    ``allow_tf32``, which the new getter reflects); otherwise "tf32x3" (three tf32
    tensor-core products, about float32 accuracy and, on Hopper, faster than Triton's
    CUDA-core "ieee" products).  Reading the legacy ``allow_tf32`` instead raises once a
    user has set the new API (torch refuses to mix the two)."""
    return "tf32" if torch.backends.cuda.matmul.fp32_precision == "tf32" else "tf32x3"


def hw_merge(x: torch.Tensor) -> bool:
    """Whether (N, C, H, W) ``x``'s H and W merge into one stride, so that
    ``x.view(N, C, H*W)`` exists (contiguous and channels-last do; a transposed map does not)."""
    h, w = x.shape[2], x.shape[3]
    return h == 1 or w == 1 or x.stride(2) == x.stride(3) * w


def grad_like(x: torch.Tensor) -> torch.Tensor:
    """Empty gradient buffer for an (N, C, H, W) input: ``x``'s layout when its H and W
    merge, else NCHW-contiguous.  The kernels write through :func:`as_matrix_view` of it,
    and the fake kernels call this same function, so ``torch.compile`` plans for the
    strides the real op returns."""
    out = torch.empty_like(x)  # keeps channels-last (and any dense permutation)
    return out if hw_merge(out) else torch.empty_like(x, memory_format=torch.contiguous_format)


def as_matrix_view(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H*W) view of the same memory, for outputs: ``reshape``
    would silently copy a non-mergeable layout and the kernel would write the copy."""
    n, c, h, w = x.shape
    return x.view(n, c, h * w)


class LazyKernel:
    """A Triton kernel built on first use for the current mode.

    ``configs`` (``triton.Config`` list) are autotuned on the GPU with ``key``;
    ``interpret_meta`` is the fixed block configuration for the interpreter.
    Launch with ``kernel.launch(grid, *args, **constexprs)``; ``grid`` is a
    callable of the meta-parameters (block sizes), as for ``triton.autotune``.
    """

    def __init__(self, fn: Callable, configs: Callable[[], Sequence], key: Sequence[str],
                 interpret_meta: dict, loops_over_arguments: bool = False):
        self.fn = fn
        # Such kernels need an interpreter that can run them (interpreter_loop_fault).
        self.loops_over_arguments = loops_over_arguments
        self.configs = configs
        self.key = list(key)
        self.interpret_meta = dict(interpret_meta)

    @functools.cached_property
    def _jit(self):
        from triton.runtime.jit import JITFunction  # noqa: PLC0415

        return JITFunction(self.fn)

    @functools.cached_property
    def _interpreted(self):
        from triton.runtime.interpreter import InterpretedFunction  # noqa: PLC0415

        return InterpretedFunction(self.fn)

    @functools.cached_property
    def _autotuned(self):
        import triton  # noqa: PLC0415

        return triton.autotune(configs=list(self.configs()), key=self.key)(self._jit)

    def launch(self, grid: Callable[[dict], tuple], *args, meta: dict | None = None,
               **constexprs) -> dict:
        """Run the kernel; return the meta-parameters (block sizes) of the launch that
        produced the outputs.  ``meta`` forces one configuration (tests run every
        autotune configuration in turn this way)."""
        if (fault := mode_fault(interpreter_enabled())) is not None:
            raise TritonModeError(f"{self.fn.__name__.lstrip('_')}: {fault}")
        if interpreter_enabled():
            if self.loops_over_arguments and (fault := interpreter_loop_fault()):
                raise RuntimeError(f"{self.fn.__name__.lstrip('_')}: {fault}")
            meta = dict(self.interpret_meta if meta is None else meta)
            self._interpreted[grid](*args, **constexprs, **meta)
            return meta
        if meta is not None:
            self._jit[grid](*args, **constexprs, **meta)
            return dict(meta)
        self._autotuned[grid](*args, **constexprs)
        # The autotuner records the configuration of its final (real) run here.
        return dict(self._autotuned.best_config.kwargs)

    def all_meta(self) -> list[dict]:
        """Every configuration the kernel can run with: the interpreter's, then the GPU's."""
        return [dict(self.interpret_meta)] + [dict(c.kwargs) for c in self.configs()]

    def smallest(self, name: str) -> int:
        """Smallest value meta-parameter ``name`` takes in any configuration (sizes scratch
        buffers whose length depends on the block size the autotuner picks)."""
        return min(m[name] for m in self.all_meta())


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# CUDA caps grid axes 1 and 2 at 65,535 programs and axis 0 at 2^31 - 1: every kernel
# here folds the sample index into axis 0 (one 1-D grid), and checks the total.
MAX_PROGRAMS = 2**31 - 1


# Offsets inside one sample are int32 in the kernels (index vectors times strides; the
# sample's base offset is int64), so no element may lie further than this from its
# sample's first one.
MAX_SAMPLE_OFFSET = 2**31 - 1


def check_sample_offsets(op_name: str, *tensors: torch.Tensor | None) -> None:
    """Raise ValueError when an element of one sample (dims 1.. of a tensor) lies beyond
    int32 reach of the sample's start."""
    for t in tensors:
        if t is None or t.numel() == 0:
            continue
        span = sum((size - 1) * abs(stride) for size, stride in zip(t.shape[1:], t.stride()[1:]))
        if span > MAX_SAMPLE_OFFSET:
            raise ValueError(f"{op_name}: one sample of a {tuple(t.shape)} operand spans {span + 1} elements, "
                             f"beyond the kernels' int32 offsets ({MAX_SAMPLE_OFFSET + 1}); "
                             "split the channels or the image")


def folded_grid(op_name: str, programs: int) -> tuple[int]:
    """A 1-D grid of ``programs`` programs (samples x tiles folded into axis 0)."""
    if programs > MAX_PROGRAMS:
        raise ValueError(f"{op_name}: {programs} Triton programs exceed the grid limit "
                         f"{MAX_PROGRAMS}; split the batch")
    return (programs,)
