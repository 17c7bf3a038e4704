"""Devices: which one a command runs on, in which precision training runs there, and how many CPU
threads to use on a shared machine."""
from __future__ import annotations

import os
import warnings

import torch

from nfinpaint import _extension
from nfinpaint.cli import UsageError


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): there oneDNN's bf16
    convolutions run about twice as fast as fp32 (measured: docs/training.md)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def half_problem(device: str | torch.device) -> str | None:
    """Why half precision cannot run on ``device`` (a sentence to finish), or None where it can: a CUDA GPU
    (float16), or a CPU that computes bfloat16 natively (AMX or AVX512-BF16: there oneDNN's bfloat16
    convolutions run about twice as fast as float32's; elsewhere they are emulated, and slower)."""
    device = torch.device(device)
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return None
    return (f"runs on a CUDA GPU (float16) or on a CPU that computes bfloat16 natively (AMX or AVX512-BF16), "
            f"and the device is {device}" + (", which does not (there it would be slower, not faster)"
                                             if device.type == "cpu" else ""))


def half_dtype(device: str | torch.device) -> torch.dtype:
    """The half precision that runs on ``device`` (where :func:`half_problem` has none): float16 on a CUDA
    GPU, bfloat16 on a CPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def half_would_help(half: bool, device: str | torch.device) -> bool:
    """Whether a fill without ``half`` on ``device`` is one that ``--half`` would make faster: on a CPU that
    computes bfloat16 natively (on a GPU the choice is the user's: memory as much as time)."""
    return not half and torch.device(device).type == "cpu" and cpu_has_bf16()


def set_cpu_threads(requested: int, device: torch.device) -> tuple[int, str | None]:
    """Set torch's intra-op CPU threads: ``requested``, or with 0 ("auto") one per core that
    is not already busy (the 1-minute load average), at least one.  Returns the count and
    a note for the log when fewer than all cores are used.

    Why: with every core taken by other work, OpenMP's spinning threads slow a CPU
    step down many times over (measured here: 2.85 s with 2 threads vs 0.19 s with 1
    on 2 cores with one other busy process).  On a GPU torch's default is kept.
    Resuming bit for bit needs the same count: a resumed run reuses the recorded one.
    """
    if requested > 0:
        torch.set_num_threads(requested)
        return requested, None
    if device.type != "cpu":
        return torch.get_num_threads(), None
    cores = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    threads = max(1, min(cores, cores - int(busy)))  # a core counts as busy once fully loaded
    torch.set_num_threads(threads)
    if threads == cores:
        return threads, None
    return threads, (f"note: using {threads} of {cores} CPU threads: the load average ({busy:.1f}) says other "
                     f"work holds the rest (--threads N to override)")


class CpuOnlyBuildWarning(UserWarning):
    """``auto`` passed over a visible GPU: the compiled operators have no CUDA kernels."""


def resolve_device(text: str, local_rank: int = 0, operators: bool = True) -> torch.device:
    """``auto`` -> this process's GPU when one is visible and the compiled operators can run there, else
    the CPU (with a warning that says why, where a GPU was passed over); UsageError for a device that is
    not one, is not here, or that the operators cannot run on.  ``operators=False``: work that runs no
    compiled operator (feature pretraining) takes a visible GPU whatever the build."""
    auto = text == "auto"
    if auto:
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {text}: only cpu and cuda devices are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: no CUDA GPU is visible; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is None:
            device = torch.device("cuda", local_rank % count)
        elif device.index >= count:     # else torch's "invalid device ordinal" after the loading
            raise UsageError(f"--device {text}: this machine has {count} CUDA GPU(s), "
                             f"{'cuda:0' if count == 1 else f'cuda:0 to cuda:{count - 1}'}")
        missing = _extension.cuda_kernels_missing(device) if operators else None
        if missing and auto:
            warnings.warn(f"running on the CPU although a CUDA GPU is visible: {missing}",
                          CpuOnlyBuildWarning, stacklevel=2)
            return torch.device("cpu")
        if missing:
            raise UsageError(f"--device {text}: {missing}; or use --device cpu")
    return device


def compiles(mode: str, device: torch.device) -> bool:
    """Whether training compiles its step for config ``compile`` on ``device`` ("auto": on GPUs only. On
    2-core CPUs the compiled step measured 0.75-1.09x the eager channels-last step, after 1-3 minutes of
    compiling: oneDNN's convolutions are most of the step, and Inductor calls them as they are)."""
    return mode == "always" or (mode == "auto" and device.type == "cuda")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Training's autocast precision for config ``amp`` on ``device``: bf16, or None for fp32
    ("auto": bf16 on GPUs and on CPUs that compute it natively)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" or cpu_has_bf16() else "none"
    return torch.bfloat16 if amp == "bf16" else None
