"""Gram distance and feature difference, forward + backward: Triton vs the PyTorch reference.

Run: ``pytest benchmarks/bench_gram.py -s``.  Shapes are conv3-sized features of
real training: N=64, C=256 at 6x6, 16x16 and 64x64 (override with
``NFI_BENCH_GRAM_SIZES=6,16``).  Every row is forward + backward to ``fake``
(``torch.autograd.grad``), median of repeated runs, all measured in this run.

FLOP/s use one nominal count for every implementation, the work the maths needs:
two Gram products (4·N·C²·HW) plus the gradient product D·F (2·N·C²·HW).  The
device's matmul peak is measured here too, as a large square matmul in the same
dtype (float32 under PyTorch's current tf32 setting).

On the CPU the Triton path only runs in the interpreter, whose speed means
nothing: those rows are skipped with the reason printed; the references are
still timed (few repetitions: CPU time here is shared).
"""
from __future__ import annotations

import os

import pytest
import torch

from nfinpaint.kernels.feature_distance import feature_distance
from nfinpaint.kernels.gram import gram_distance, gram_distance_reference
from nfinpaint import ops as nfi_ops
from nfinpaint.ops import feature_distance_reference
from timing import measure, print_table

N, C = 64, 256
SIZES = [int(s) for s in os.environ.get("NFI_BENCH_GRAM_SIZES", "6,16,64").split(",")]
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
REPS = {"warmup": 3, "reps": 10} if ON_GPU else {"warmup": 1, "reps": 3}
TRITON_SKIP = ("Triton path not timed: no GPU, and the CPU interpreter's speed is "
               "meaningless (correctness only)")


def _fwd_bwd(loss_fn, fake, real):
    def step():
        loss = loss_fn(fake, real)
        return torch.autograd.grad(loss, fake)
    return step


def _matmul_peak_tflops(dtype: torch.dtype) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    t = measure(lambda: a @ b, device="cuda")
    return 2 * 8192 ** 3 / (t.median_ms * 1e-3) / 1e12


# TFLOP/s on a GPU; GFLOP/s on the CPU, where TFLOP/s would print as 0.00.
FLOP_UNIT, FLOP_SCALE = ("TFLOP/s", 1e12) if ON_GPU else ("GFLOP/s", 1e9)


def _compiled_afresh(fn):
    """``torch.compile(fn)`` with dynamo's caches cleared: its cache is the function's code, so a second
    size (or dtype) ran a graph of symbolic sizes, not the static one each row claims to measure."""
    torch._dynamo.reset()
    return torch.compile(fn)


def _rate(flops: float, ms: float) -> str:
    return f"{flops / (ms * 1e-3) / FLOP_SCALE:.2f}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16] if ON_GPU else [torch.float32],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_gram_forward_backward(dtype):
    torch.manual_seed(0)
    peak = _matmul_peak_tflops(dtype) if ON_GPU else None
    rows = []
    for size in SIZES:
        compiled_ref = _compiled_afresh(gram_distance_reference)
        hw = size * size
        fake = torch.randn(N, C, size, size, device=DEVICE, dtype=dtype, requires_grad=True)
        real = torch.randn(N, C, size, size, device=DEVICE, dtype=dtype)
        flops = 6 * N * C * C * hw
        eager = measure(_fwd_bwd(gram_distance_reference, fake, real), device=DEVICE, **REPS)
        comp = measure(_fwd_bwd(compiled_ref, fake, real), device=DEVICE, **REPS)
        label = f"{N}x{C}x{size}x{size}"
        for name, t in (("reference (bmm, eager)", eager), ("reference (bmm, compiled)", comp)):
            rows.append([label, name, t.median_ms, f"{comp.median_ms / t.median_ms:.2f}x",
                         _rate(flops, t.median_ms)])
        if ON_GPU:
            tri = measure(_fwd_bwd(gram_distance, fake, real), device=DEVICE, **REPS)
            rows.append([label, "triton", tri.median_ms, f"{comp.median_ms / tri.median_ms:.2f}x",
                         _rate(flops, tri.median_ms)])
        else:
            rows.append([label, "triton", "skipped", TRITON_SKIP, "-"])
        del fake, real
    device_name = torch.cuda.get_device_name() if ON_GPU else "CPU"
    title = f"gram_distance fwd+bwd, {dtype}, {device_name}"
    if peak is not None:
        title += f" (measured matmul peak {peak:.1f} TFLOP/s)"
    print_table(title, ["shape", "implementation", "median ms",
                        "speed-up vs compiled ref", f"nominal {FLOP_UNIT}"], rows)


def _cpp_feature_distance_usable(fake, real, weight) -> bool:
    """The compiled feature_distance op, when this checkout has it built, for comparison."""
    if not hasattr(nfi_ops, "feature_distance"):
        return False
    try:
        nfi_ops.feature_distance(fake[:1], real[:1], weight[:1])
    except (RuntimeError, NotImplementedError) as err:  # extension not built for this device
        print(f"C++/CUDA feature_distance not timed: {err}")
        return False
    return True


def test_feature_distance_forward_backward():
    torch.manual_seed(0)
    rows = []
    for size in SIZES:
        compiled_ref = _compiled_afresh(feature_distance_reference)
        fake = torch.randn(N, C, size, size, device=DEVICE, requires_grad=True)
        real = torch.randn(N, C, size, size, device=DEVICE)
        weight = torch.rand(N, 1, size, size, device=DEVICE)
        moved = 3 * fake.numel() * fake.element_size()  # read f, r; write grad (weight small)
        label = f"{N}x{C}x{size}x{size}"
        impls = [("reference (eager)", lambda a, b: feature_distance_reference(a, b, weight)),
                 ("reference (compiled)", lambda a, b: compiled_ref(a, b, weight))]
        if ON_GPU:
            impls.append(("triton", lambda a, b: feature_distance(a, b, weight)))
        if _cpp_feature_distance_usable(fake, real, weight):
            impls.append(("C++/CUDA op (nfinpaint.ops.feature_distance)",
                          lambda a, b: nfi_ops.feature_distance(a, b, weight)))
        times = {name: measure(_fwd_bwd(fn, fake, real), device=DEVICE, **REPS) for name, fn in impls}
        base = times["reference (compiled)"].median_ms
        for name, t in times.items():
            gbs = moved / (t.median_ms * 1e-3) / 1e9
            rows.append([label, name, t.median_ms, f"{base / t.median_ms:.2f}x", f"{gbs:.1f}"])
        if not ON_GPU:
            rows.append([label, "triton", "skipped", TRITON_SKIP, "-"])
        del fake, real
    print_table(f"feature_distance fwd+bwd (weight (N,1,h,w)), float32, "
                f"{torch.cuda.get_device_name() if ON_GPU else 'CPU'}",
                ["shape", "implementation", "median ms", "speed-up vs compiled ref",
                 "min. GB/s (3 tensors)"], rows)
