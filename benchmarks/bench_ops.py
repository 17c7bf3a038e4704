"""Fused loss ops (nfinpaint.ops) vs their PyTorch references, forward+backward.

Run: ``pytest benchmarks/bench_ops.py -s`` (``NFI_BENCH_REPS`` sets the timed
repetitions, default 5; ``NFI_BENCH_THREADS`` the CPU threads, default torch's).  For each op and training size it prints
the median time of one forward+backward step of the fused op, the eager
reference and the ``torch.compile``d reference, the ratios reference/fused
(>1: fused is faster), and the GB/s achieved against the bytes the step must
move at the least (every input read once and every output written once, in
forward and in backward).  "kernels only" times the op's forward and backward
kernels called directly, without autograd or the Python wrapper: the
bandwidth the kernels reach, apart from the per-call overhead.  Times are only
compared within one run.
"""
from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
from timing import measure, print_table

from nfinpaint import _extension, ops

# the benchmarks measure the compiled operators: without them, fail (a skip read as a run with nothing to say)
_extension.require()

REPS = int(os.environ.get("NFI_BENCH_REPS", "5"))
# On a machine shared with other jobs, more threads than idle cores makes every
# parallel region wait for descheduled threads; NFI_BENCH_THREADS=1 measures the
# single-core work instead.
THREADS = int(os.environ.get("NFI_BENCH_THREADS", "0")) or torch.get_num_threads()
# the CUDA rows skip with a reason where no GPU is visible (left out of the list, nothing said so)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs a CUDA GPU; none is visible"))]
DTYPES = {"cpu": [torch.float32], "cuda": [torch.float32, torch.bfloat16]}


def composite_step(fn, g, t, m, probe):
    """Training's use: the loss and the composite (seen by the discriminators) both get gradients."""
    g.grad = None
    composite, loss = fn(g, t, m)
    torch.autograd.backward([composite, loss], [probe, torch.ones_like(loss)])


def feature_step(fn, f, r, w):
    f.grad = None
    fn(f, r, w).backward()


def composite_kernels(g, t, m, probe):
    """The two kernels alone (no autograd, no Python wrapper): the part the op itself costs."""
    _, sq_err, _ = torch.ops.nfinpaint.composite_l2.default(g, t, m)
    torch.ops.nfinpaint.composite_l2_backward.default(probe, torch.ones_like(sq_err), g, t, m)


def feature_kernels(f, r, w):
    dist = torch.ops.nfinpaint.feature_distance.default(f, r, w)
    torch.ops.nfinpaint.feature_distance_backward.default(torch.ones_like(dist), f, r, w)


def bytes_composite(g, m):
    # forward: read g, t, m; write composite.  backward: read grad_composite, g, t, m; write grad.
    return 7 * g.numel() * g.element_size() + 2 * m.numel() * m.element_size()


def bytes_feature(f, w):
    # forward: read f, r, w.  backward: read f, r, w; write grad.
    return 5 * f.numel() * f.element_size() + 2 * w.numel() * w.element_size()


def medians_ms(fns, device):
    """Median wall ms of each fn, and on the CPU also median process CPU ms.

    On the CPU the fns take turns rep by rep, so that load from other jobs on a
    shared machine falls on all of them alike.  On a machine with more runnable
    jobs than cores a step of a few ms is often preempted and its wall time
    measures the scheduler; the process CPU time (all threads) measures the work.
    """
    if device != "cpu":
        return {label: measure(fn, device=device, warmup=2, reps=REPS).median_ms for label, fn in fns.items()}, None
    for fn in fns.values():
        for _ in range(2):
            fn()
    wall = {label: [] for label in fns}
    cpu = {label: [] for label in fns}
    for _ in range(REPS):
        for label, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[label].append((time.process_time() - start_cpu) * 1e3)
            wall[label].append((time.perf_counter() - start) * 1e3)
    median = lambda d: {label: statistics.median(v) for label, v in d.items()}  # noqa: E731
    return median(wall), median(cpu)


def row(name, shape_str, nbytes, times):
    fused_ms = times["fused"]
    gbps = lambda ms: nbytes / (ms * 1e-3) / 1e9  # noqa: E731
    return [name, shape_str, f"{nbytes / 1e6:.1f}", fused_ms, times["eager ref"], times["compiled ref"],
            f"{times['eager ref'] / fused_ms:.2f}x", f"{times['compiled ref'] / fused_ms:.2f}x",
            f"{gbps(fused_ms):.1f}", f"{gbps(times['compiled ref']):.1f}", times["kernels"],
            f"{gbps(times['kernels']):.1f}"]


def run_case(device, name, shape_str, step, fused, reference, args, nbytes, kernels):
    torch._dynamo.reset()
    compiled = torch.compile(reference)
    step(compiled, *args)  # compile outside the timing
    detached = [a.detach() for a in args]
    fns = {label: (lambda f=f: step(f, *args)) for label, f in
           (("fused", fused), ("eager ref", reference), ("compiled ref", compiled))}
    fns["kernels"] = lambda: kernels(*detached)
    wall, cpu = medians_ms(fns, device)
    return row(name, shape_str, nbytes, wall), None if cpu is None else row(name, shape_str, nbytes, cpu)


@pytest.mark.parametrize("device", DEVICES)
def test_bench_fused_losses(device):
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        bench_fused_losses(device)
    finally:
        torch.set_num_threads(previous_threads)


def bench_fused_losses(device):
    rows = []
    gen = torch.Generator().manual_seed(0)
    for dtype in DTYPES[device]:
        for size in (24, 64):
            shape = (64, 3, size, size)
            g = torch.rand(shape, generator=gen).to(device, dtype).requires_grad_()
            t = torch.rand(shape, generator=gen).to(device, dtype)
            m = (torch.rand((64, 1, size, size), generator=gen) > 0.5).to(device, dtype)
            probe = torch.rand(shape, generator=gen).to(device, dtype)
            rows.append(run_case(device, f"composite_l2 {str(dtype)[6:]}", "x".join(map(str, shape)), composite_step,
                                 ops.composite_l2, ops.composite_l2_reference, (g, t, m, probe),
                                 bytes_composite(g, m), composite_kernels))
        for size in (6, 16):  # VGG-19 relu3_x of 24x24 and 64x64 images: 256 channels at 1/4 resolution
            shape = (64, 256, size, size)
            f = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_()
            r = torch.randn(shape, generator=gen).to(device, dtype)
            w = torch.rand((64, 1, size, size), generator=gen).to(device, dtype)
            rows.append(run_case(device, f"feature_distance {str(dtype)[6:]}", "x".join(map(str, shape)),
                                 feature_step, ops.feature_distance, ops.feature_distance_reference,
                                 (f, r, w), bytes_feature(f, w), feature_kernels))
    threads = f", {torch.get_num_threads()} threads" if device == "cpu" else ""
    header = ["op", "shape", "MB moved", "fused ms", "eager ref ms", "compiled ref ms", "eager/fused",
              "compiled/fused", "fused GB/s", "compiled GB/s", "kernels only ms", "kernels GB/s"]
    print_table(f"Fused losses, forward+backward on {device}{threads}: median wall ms of {REPS} reps",
                header, [wall for wall, _ in rows])
    if device == "cpu":
        print_table(f"Same run, median process CPU ms (all threads) of {REPS} reps", header,
                    [cpu for _, cpu in rows])
