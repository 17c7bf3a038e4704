"""What the CPU can do for training: native bf16, and how many threads to use on a shared machine."""
from __future__ import annotations

import os

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): there oneDNN's bf16
    convolutions run about twice as fast as fp32 (measured: docs/training.md)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


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
