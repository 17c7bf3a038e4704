"""Triton Gram distance vs the bmm reference (interpreter on the CPU, compiled on a GPU).

The reference's gradient comes from autograd through two bmm's, so it checks the
kernel's hand-derived backward 4·D·F/K independently.  Shapes are tiny because
the interpreter runs one program at a time; they still cover C not a multiple of
the block (16 in the interpreter), H·W = 1 and several tiles on each side.
"""
import numpy as np
import pytest
import torch

from _layouts import LAYOUTS, relayout
from nfinpaint.kernels import gram, launch
from nfinpaint.kernels.gram import gram_distance, gram_distance_reference

# (dtype, rtol): fp32 tight; half inputs are read by both paths and multiplied in fp32,
# so the loss stays tight and only the gradient, stored in the half dtype, rounds.
DTYPES = [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)]
SHAPES = [(2, 20, 3, 3), (2, 33, 1, 1), (1, 7, 5, 7)]


@pytest.fixture(autouse=True)
def _interpreter_runs_loops(request):
    # Triton 3.6's interpreter with numpy >= 2.4 cannot run the kernels' loops (an
    # upstream fault the op reports, see test_a_faulty_interpreter_is_named); GPU tests
    # compile, and the tests that fake the fault need no interpreter.
    if "gpu" in request.keywords or "interpreter_fault" in request.fixturenames:
        return
    if launch.triton_installed() and (fault := launch.interpreter_loop_fault()) is not None:
        pytest.skip(fault)


@pytest.fixture
def interpreter_fault(monkeypatch):
    launch.interpreter_loop_fault.cache_clear()
    yield
    launch.interpreter_loop_fault.cache_clear()


def _close(actual, expected, rtol):
    # atol scaled by the largest reference value: sums of many rounded terms near zero.
    atol = rtol * expected.float().abs().max().item() + 1e-12
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


def _pair(shape, dtype, device="cpu", scale_real=1.0):
    fake = torch.randn(shape, device=device).to(dtype).requires_grad_()
    real = (scale_real * torch.randn(shape, device=device)).to(dtype)
    return fake, real


def _check(fake, real, reduction, rtol, fwd_rtol=1e-4):
    out = gram_distance(fake, real, reduction)
    ref = gram_distance_reference(fake, real, reduction)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    _close(out, ref, min(rtol, fwd_rtol))
    grad_out = torch.rand_like(ref) + 0.5
    (g,) = torch.autograd.grad(out, fake, grad_out)
    (g_ref,) = torch.autograd.grad(ref, fake, grad_out)
    assert g.dtype == fake.dtype and g.shape == fake.shape
    assert g_ref.abs().max() > 0
    _close(g, g_ref, rtol)
    return g


@pytest.mark.parametrize("dtype,rtol", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_with_gradient(shape, dtype, rtol):
    fake, real = _pair(shape, dtype, scale_real=1.5)
    for reduction in ("mean", "sum", "per_sample"):
        _check(fake, real, reduction, rtol)


def test_channels_last_inputs_and_gradient_layout():
    fake, real = _pair((2, 18, 4, 5), torch.float32)
    fake_cl = fake.detach().to(memory_format=torch.channels_last).requires_grad_()
    g = _check(fake_cl, real.to(memory_format=torch.channels_last), "per_sample", 1e-5)
    assert g.is_contiguous(memory_format=torch.channels_last)
    # Mixed layouts: only fake channels-last, real contiguous.
    _check(fake_cl, real, "sum", 1e-5)


def test_strided_channel_slice_input():
    # Not channels-last, not contiguous: every other channel of a larger map (read in place).
    big, real = _pair((2, 38, 3, 4), torch.float32)
    fake = big[:, ::2]
    _check(fake, real[:, ::2], "mean", 1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs_values_gradients_and_opcheck(layout):
    fake, real = _pair((2, 18, 3, 5), torch.float32, scale_real=1.5)
    fake_l = relayout(fake, layout).requires_grad_()
    real_l = relayout(real, layout)
    g = _check(fake_l, real_l, "per_sample", 1e-5)
    expected = fake_l if layout == "channels_last" else fake_l.contiguous()
    assert g.stride() == expected.stride()
    # The backward's fake kernel must report the real op's strides (it reported the
    # transposed input's while the op returned NCHW): opcheck compares them.
    grad = torch.rand(2) + 0.5
    _, diff = gram._gram_distance_op(fake_l.detach(), real_l, "per_sample", True)
    for args in ((grad, diff, fake_l.detach(), real_l, "per_sample"),
                 (grad, diff[:0].reshape(0), fake_l.detach(), real_l, "per_sample")):
        torch.library.opcheck(gram._gram_distance_backward_op, args)
    torch.library.opcheck(gram._gram_distance_op, (fake_l, real_l, "sum", True))


@pytest.fixture
def restore_fp32_precision():
    saved = (torch.backends.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    yield
    # "none" (the default) at both levels also clears torch's mixed-API state.
    torch.backends.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved


@pytest.mark.parametrize("api", ["matmul", "global", "legacy"])
def test_fp32_precision_follows_both_tf32_apis(api, restore_fp32_precision):
    # torch 2.14 raises when the legacy allow_tf32 is read after the new API set TF32.
    fake, real = _pair((1, 17, 2, 3), torch.float32)
    assert gram.fp32_dot_precision() == "tf32x3"
    if api == "matmul":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    elif api == "global":
        torch.backends.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    assert gram.fp32_dot_precision() == "tf32"
    out = gram_distance(fake, real, "sum")  # the interpreter runs the "tf32" dot too
    (g,) = torch.autograd.grad(out, fake)
    (g_ref,) = torch.autograd.grad(gram_distance_reference(fake, real, "sum"), fake)
    _close(g, g_ref, 1e-2)  # tf32 keeps 10 mantissa bits


def test_real_gets_no_gradient_and_equal_inputs_give_zero():
    fake, real = _pair((1, 17, 2, 3), torch.float32)
    real.requires_grad_()
    gram_distance(fake, real).backward()
    assert real.grad is None and fake.grad is not None
    same = torch.randn(2, 17, 3, 2)
    assert gram_distance(same, same.clone(), "per_sample").abs().max() < 1e-12


def test_per_sample_losses_summed_later():
    # The incoming gradient is then an expanded (stride-0) tensor.
    fake, real = _pair((3, 17, 2, 2), torch.float32)
    (g,) = torch.autograd.grad(gram_distance(fake, real, "per_sample").sum() * 2, fake)
    (g_ref,) = torch.autograd.grad(gram_distance_reference(fake, real, "per_sample").sum() * 2, fake)
    _close(g, g_ref, 1e-5)


def test_no_grad_forward_matches():
    fake, real = _pair((2, 20, 2, 2), torch.float32)
    with torch.no_grad():
        out = gram_distance(fake, real, "sum")
    _close(out, gram_distance_reference(fake, real, "sum"), 1e-5)


@pytest.mark.parametrize("save_diff", [True, False])
def test_opcheck(save_diff):
    fake, real = _pair((2, 18, 2, 3), torch.float32)
    torch.library.opcheck(gram._gram_distance_op, (fake, real, "mean", save_diff))
    torch.library.opcheck(gram._gram_distance_op, (fake, real, "per_sample", save_diff))


def test_torch_compile_fullgraph():
    fake, real = _pair((2, 18, 3, 2), torch.float32)

    @torch.compile(fullgraph=True)
    def loss_fn(a, b):
        return 3.0 * gram_distance(a, b, "sum") + a.square().mean()

    out = loss_fn(fake, real)
    (g,) = torch.autograd.grad(out, fake)
    ref = 3.0 * gram_distance_reference(fake, real, "sum") + fake.square().mean()
    (g_ref,) = torch.autograd.grad(ref, fake)
    _close(out, ref, 1e-5)
    _close(g, g_ref, 1e-5)


def test_inductor_compiles_in_this_process():
    # conftest flips TRITON_INTERPRET per test; a compile-worker pool would keep the value
    # it started with and could compile a later GPU test's kernels for the interpreter.
    from torch._inductor import config

    assert config.compile_threads == 1


def test_without_gpu_or_interpreter_raises_unless_fallback(monkeypatch):
    fake, real = _pair((1, 4, 2, 2), torch.float32)
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # read at call time, after import
    with pytest.raises(RuntimeError, match="needs CUDA tensors on a GPU, or TRITON_INTERPRET=1"):
        gram_distance(fake, real)
    out = gram_distance(fake, real, allow_reference_fallback=True)
    _close(out, gram_distance_reference(fake, real), 1e-6)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    _close(gram_distance(fake, real), gram_distance_reference(fake, real), 1e-5)


def test_backward_makes_no_gradient_for_the_saved_diff():
    # D (N, C, C) is an output only to be saved for the backward; a materialised gradient for it
    # was an (N, C, C) zeros written every backward (16 MB at N=64, C=256).
    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:        # the saved D's detach is an alias, not a tensor made
                self.seen += [tuple(t.shape) for t in torch.utils._pytree.tree_leaves(out)
                              if isinstance(t, torch.Tensor)]
            return out

    n, c = 2, 20
    fake, real = _pair((n, c, 3, 3), torch.float32)
    loss = gram_distance(fake, real)
    with Shapes() as shapes:
        (grad,) = torch.autograd.grad(loss, fake)
    assert (n, c, c) not in shapes.seen
    _close(grad, torch.autograd.grad(gram_distance_reference(fake, real), fake)[0], 1e-5)


MODE_SWITCH = """
import os, sys, torch
os.environ["TRITON_INTERPRET"] = sys.argv[1]
import triton.language  # takes its mode now
os.environ["TRITON_INTERPRET"] = "1"  # then the interpreter is asked for
from nfinpaint.kernels.gram import gram_distance, gram_distance_reference
from nfinpaint.kernels.launch import TritonModeError
fake, real = torch.randn(2, 1, 20, 3, 3, generator=torch.Generator().manual_seed(int(sys.argv[2])))
try:
    gram_distance(fake, real)
    print("ran")
except TritonModeError as exc:
    print("refused:", exc)
out = gram_distance(fake, real, allow_reference_fallback=True)
reference = gram_distance_reference(fake, real)
print("relative error:", float((out - reference).abs() / reference))
"""


@pytest.mark.parametrize("first_import", ["0", "1"])
def test_the_interpreter_in_a_process_that_imported_triton_for_the_compiler(first_import):
    # Triton builds tl.sum & co. for one mode at its first import: asked to interpret after a
    # compiler import (a GPU machine's test run), the op refuses in one line that says what to
    # do, and the opt-in fallback computes the reference; after an interpreter import it runs.
    import os
    import subprocess
    import sys

    if first_import == "1" and (fault := launch.interpreter_loop_fault()):
        pytest.skip(fault)
    seed = int(torch.randint(0, 2**31, ()))
    proc = subprocess.run([sys.executable, "-c", MODE_SWITCH, first_import, str(seed)], capture_output=True,
                          text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    error = float(lines[1].split(": ")[1])
    if first_import == "0":
        assert lines[0].startswith("refused: gram_distance: Triton built its language library")
        assert "set TRITON_INTERPRET=1 before anything imports triton" in lines[0]
        assert error == 0.0          # the fallback is the reference itself
    else:
        assert lines[0] == "ran"
        assert error < 1e-5


def test_a_faulty_interpreter_is_named(interpreter_fault, monkeypatch):
    # The probe reports what went wrong, never raises...
    def broken(out_ptr, n):
        raise TypeError("only 0-dimensional arrays can be converted to Python scalars")

    monkeypatch.setattr(launch, "_loop_probe", broken)
    fault = launch.interpreter_loop_fault()
    assert fault is not None and "0-dimensional" in fault and "numpy<2.4" in fault

    def wrong(out_ptr, n):  # ... and a loop that runs but writes the wrong values is a fault too
        pass

    launch.interpreter_loop_fault.cache_clear()
    monkeypatch.setattr(launch, "_loop_probe", wrong)
    assert "instead of [1, 2]" in launch.interpreter_loop_fault()
    # ...and the op refuses with it, in one line, instead of the interpreter's traceback.
    fake, real = _pair((1, 4, 2, 2), torch.float32)
    with pytest.raises(RuntimeError, match=r"^gram_diff_tiles: the CPU interpreter of Triton .* "
                                           r"instead of \[1, 2\]"):
        gram_distance(fake, real)


def test_bad_inputs_say_what_is_wrong():
    a = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match="same shape"):
        gram_distance(a, torch.randn(1, 4, 2, 3))
    with pytest.raises(ValueError, match="reduction"):
        gram_distance(a, a, "max")
    with pytest.raises(ValueError, match="dtype"):
        gram_distance(a.double(), a.double())
    with pytest.raises(ValueError, match="non-empty"):
        gram_distance(a[:0], a[:0])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gram_distance(a[0], a[0])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)],
                         ids=["fp32", "bf16"])
def test_cuda_matches_reference(dtype, rtol):
    # Larger than on the CPU: several tiles of every autotuned block size, odd C and H·W.
    fake, real = _pair((3, 130, 9, 17), dtype, device="cuda", scale_real=1.5)
    for reduction in ("mean", "per_sample"):
        _check(fake, real, reduction, rtol, fwd_rtol=rtol)
    fake_cl = fake.detach().to(memory_format=torch.channels_last).requires_grad_()
    _check(fake_cl, real, "sum", rtol, fwd_rtol=rtol)


def test_every_autotune_config_on_one_reused_buffer():
    # On a GPU the autotuner runs every configuration on the same partial-sum buffer
    # before the real run; what a config with more tiles leaves there must not reach
    # the loss.  Run each configuration in turn on one buffer filled with garbage.
    fake, real = _pair((2, 130, 3, 3), torch.float32, scale_real=1.5)
    ref = gram_distance_reference(fake, real, "per_sample")
    metas = gram._TILES.all_meta()
    assert len({gram._tile_pairs(130, m["BLOCK_C"]) for m in metas}) >= 3  # the configs differ
    partial = torch.full((2, gram._tile_pairs(130, gram._TILES.smallest("BLOCK_C"))), 1e3)
    for meta in metas + metas[::-1]:  # small blocks before large ones, then the reverse
        per_sample, _ = gram._forward_launch(fake.detach(), real, False, partial=partial, meta=meta)
        _close(per_sample, ref, 1e-4)


def test_saved_diff_written_once_per_element(monkeypatch):
    # The diagonal tiles used to be stored twice (the tile and its mirror); d is not
    # bit-symmetric (tf32x3), so on a GPU which store won varied run to run.  Count the
    # interpreter's stores into the saved D.
    from triton.runtime import interpreter

    fake, real = _pair((2, 20, 3, 5), torch.float32, scale_real=1.5)
    n, c = 2, 20
    stored = []  # addresses of every masked store, kept apart from the D buffer's below
    store = interpreter.interpreter_builder.create_masked_store

    def recording_store(ptrs, value, mask, *args):
        stored.append(ptrs.data[np.broadcast_to(mask.data.astype(bool), ptrs.data.shape)].ravel())
        return store(ptrs, value, mask, *args)

    monkeypatch.setattr(interpreter.interpreter_builder, "create_masked_store", recording_store)
    _, saved = gram._forward_launch(fake.detach(), real, True)
    addr = torch.from_numpy(np.concatenate(stored).astype(np.int64)) - saved.data_ptr()
    index = addr[(addr >= 0) & (addr < saved.numel() * saved.element_size())] // saved.element_size()
    counts = torch.bincount(index, minlength=saved.numel())
    assert counts.min() == 1, "some elements of D never written"
    assert counts.max() == 1, f"{int((counts > 1).sum())} elements of D written twice"
    # D stays the symmetric difference of the two Gram matrices.
    f, r = fake.detach().reshape(n, c, -1).double(), real.reshape(n, c, -1).double()
    ref = (f @ f.transpose(1, 2) - r @ r.transpose(1, 2)) / (c * 15)
    _close(saved, ref, 1e-5)


def test_fp16_gradient_with_the_gpu_flags_keeps_d_in_fp32(monkeypatch):
    # The GPU path (no upcast after loading) used to cast D to fp16 for the backward
    # product; at C=256, H*W=256 D's entries (~1/sqrt(K)) fall into fp16's subnormals.
    # Run the GPU flags in the interpreter.
    monkeypatch.setattr(gram, "interpreter_enabled", lambda: False)
    # fake near real, as late in training: D's entries are then far below fp16's 6e-5.
    fake, _ = _pair((1, 256, 16, 16), torch.float16)
    real = (fake.detach().float() + 0.005 * torch.randn(fake.shape)).half()
    scale = torch.tensor(2.0**24)  # as a GradScaler would: the gradient is then fp16-normal
    (g,) = torch.autograd.grad(gram_distance(fake, real, "sum"), fake, scale)
    (g_ref,) = torch.autograd.grad(gram_distance_reference(fake, real, "sum"), fake, scale)
    assert g_ref.abs().max() > 1e-2
    _close(g, g_ref, 2e-3)


@pytest.mark.gpu
def test_cuda_fp16_matches_reference():
    # The size where D underflowed in fp16 (C=256, H*W >= 256), and an odd one.
    # The incoming gradient is scaled as a GradScaler would, so the gradient is fp16-normal.
    for shape in ((2, 256, 16, 16), (3, 130, 9, 17)):
        fake, real = _pair(shape, torch.float16, device="cuda", scale_real=1.1)
        near = (fake.detach().float() + 0.005 * torch.randn(shape, device="cuda")).half()
        for target in (real, near):
            out = gram_distance(fake, target, "per_sample")
            ref = gram_distance_reference(fake, target, "per_sample")
            _close(out, ref, 1e-3)
            scale = torch.full_like(ref, 2.0**24)
            (g,) = torch.autograd.grad(out, fake, scale)
            (g_ref,) = torch.autograd.grad(ref, fake, scale)
            assert g_ref.abs().max() > 1e-2
            _close(g, g_ref, 2e-3)


@pytest.mark.gpu
def test_cuda_saved_diff_is_the_same_every_run():
    fake, real = _pair((2, 130, 9, 17), torch.float32, device="cuda")
    first = gram._forward_launch(fake.detach(), real, True)[1]
    for _ in range(10):
        assert torch.equal(gram._forward_launch(fake.detach(), real, True)[1], first)


def test_offsets_beyond_int32_are_refused(record_grids):
    # Offsets inside a sample are int32 in the kernels: D of 50,000 channels has 2.5e9
    # entries a sample.  Meta tensors and a recorded launch: nothing is allocated or run.
    record_grids(gram._TILES, gram._GRAD)
    fake = torch.empty(1, 50_000, 1, 1, device="meta")
    with pytest.raises(ValueError, match="int32 offsets"):
        gram._forward_launch(fake, fake, True)
    with pytest.raises(ValueError, match="int32 offsets"):
        gram._backward_launch(torch.ones((), device="meta"), torch.empty(1, 50_000, 50_000, device="meta"),
                              fake, "sum")
    gram._forward_launch(torch.empty(2, 40_000, 1, 1, device="meta"), torch.empty(2, 40_000, 1, 1, device="meta"),
                         True)  # 1.6e9 a sample: fits


def test_batch_is_folded_into_grid_axis_0(record_grids):
    # CUDA caps grid axes 1 and 2 at 65,535: a batch of 70,000 must stay on axis 0.
    grids = record_grids(gram._TILES, gram._GRAD)
    fake, real = _pair((70_000, 20, 1, 1), torch.float32)
    gram._forward_launch(fake.detach(), real, True)
    gram._backward_launch(torch.ones(()), torch.zeros(70_000, 20, 20), fake.detach(), "sum")
    assert grids == [(70_000 * 3,), (70_000 * 2,)]  # 2 tiles of 16 -> 3 pairs; 2 x 1 gradient tiles
    with pytest.raises(ValueError, match="grid limit"):
        gram.folded_grid("gram_distance", 2**31)
