"""The smooth base fill of the full-resolution generator: the compiled solver against the tensor steps
it replaced, on the CPU and, where a GPU is visible, on CUDA.

Run: ``pytest benchmarks/bench_base_fill.py -s``.  Rows (medians, ratios from the same run):

- ``nfinpaint::biharmonic_cg`` (32 conjugate-gradient steps) against
  ``initial_fill.conjugate_gradients_reference`` on the same float32 problem: the windows of a ~56 px
  hole and of thin strokes (sizes as ``inpaint`` plans them on a 512x384 picture), a training batch
  of 16 crops of 128x128, and thin strokes over a 1024x768 window (on CUDA a plane past
  ``initial_fill.CUDA_PLANE_LIMIT``, which ``conjugate_gradients`` leaves to the tensor steps: this row
  is how that limit gets measured);
- ``initial_fill.multiscale_biharmonic_fill`` (32 steps a level, as the shipped generator runs it)
  through the operator and through the tensor steps: the whole base fill of those windows;

each with the largest difference between the two results.  Nothing is asserted about time.
"""
from __future__ import annotations

import pytest
import torch
from timing import measure, print_table

from nfinpaint import _extension, initial_fill, masks

# the benchmarks measure the compiled operators: without them, fail (a skip read as a run with nothing to say)
_extension.require()

# (name, hole family, batch, height, width): a window of ``inpaint``'s plan on a 512x384 picture, and training
CASES = [("~56 px hole's window", "medium", 1, 158, 165), ("thin strokes' window", "thin", 1, 238, 204),
         ("training batch", "medium", 16, 128, 128), ("thin strokes over 1024x768", "thin", 1, 768, 1024)]


def problem(kind: str, n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), masks.family_masks(kind, n, h, w, seed=seed)


# the CUDA rows skip with a reason where no GPU is visible (left out of the list, nothing said so)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs a CUDA GPU; none is visible"))]


@pytest.mark.parametrize("device", DEVICES)
def test_base_fill_solver(monkeypatch, device):
    rows = []
    for name, kind, n, h, w in CASES:
        image, mask = (t.to(device) for t in problem(kind, n, h, w))
        start = initial_fill.harmonic_fill(image, mask)
        op = measure(lambda: torch.ops.nfinpaint.biharmonic_cg(start, mask, 32), device=device)
        ref = measure(lambda: initial_fill.conjugate_gradients_reference(mask, start, 32), device=device)
        diff = (torch.ops.nfinpaint.biharmonic_cg(start, mask, 32)
                - initial_fill.conjugate_gradients_reference(mask, start, 32)).abs().max().item()
        rows.append([f"32 CG steps, {name}", f"{n}x3x{h}x{w}", op.median_ms, ref.median_ms,
                     f"{ref.median_ms / op.median_ms:.2f}x", f"{diff:.1e}"])

        def multiscale():
            return initial_fill.multiscale_biharmonic_fill(image * (1 - mask), mask, 32)

        fast = measure(multiscale, device=device)
        out_fast = multiscale()
        with monkeypatch.context() as patch:
            patch.setattr(initial_fill, "conjugate_gradients", initial_fill.conjugate_gradients_reference)
            slow = measure(multiscale, device=device)
            out_slow = multiscale()
        rows.append([f"multiscale base fill, {name}", f"{n}x3x{h}x{w}", fast.median_ms, slow.median_ms,
                     f"{slow.median_ms / fast.median_ms:.2f}x", f"{(out_fast - out_slow).abs().max().item():.1e}"])
    where = f"CUDA ({torch.cuda.get_device_name()})" if device == "cuda" else \
        f"the CPU, torch threads {torch.get_num_threads()}"
    print_table(f"base fill on {where}: median ms",
                ["what", "shape", "operator ms", "tensor steps ms", "speed-up", "max diff"], rows)
