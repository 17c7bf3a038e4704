"""Timing and reporting shared by every benchmark (``pytest benchmarks -s``).

On a GPU, times come from ``triton.testing.do_bench`` (CUDA events, cache
flushed between runs); on the CPU, from ``time.perf_counter`` around whole
calls after a warm-up.  Either way the result is the median and the 20th/80th
percentiles in milliseconds, and ratios are only ever taken between numbers
measured in the same run.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float

    def __str__(self) -> str:
        return f"{self.median_ms:9.3f} ms [{self.p20_ms:.3f}, {self.p80_ms:.3f}]"


def measure(fn: Callable[[], object], *, device: torch.device | str = "cpu", warmup: int = 3,
            reps: int = 10) -> Timing:
    """Median and 20/80 percentiles of ``fn()``'s wall time on ``device``."""
    if torch.device(device).type == "cuda":
        from triton.testing import do_bench  # noqa: PLC0415  (needs a GPU)

        med, p20, p80 = do_bench(fn, quantiles=[0.5, 0.2, 0.8], warmup=25 * warmup, rep=100 * reps)
        return Timing(med, p20, p80)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(samples, n=10, method="inclusive")
    return Timing(statistics.median(samples), q[1], q[7])


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print a Markdown table (paste-able into the README's results)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row) + " |")
    print(flush=True)
