"""Triton feature difference (equation 2) vs ``nfinpaint.ops.feature_distance_reference``.

The reference is the ground truth for values and (through autograd) gradients
to fake and real.  Interpreter on the CPU, so shapes stay tiny; they cover C and
H·W not multiples of the block (16 in the interpreter) and H·W = 1.
"""
import pytest
import torch

from _layouts import LAYOUTS, relayout
from nfinpaint.kernels import feature_distance as fd_module
from nfinpaint.kernels.feature_distance import feature_distance
from nfinpaint.ops import feature_distance_reference

# Both paths square in fp32, so values stay tight for every dtype; the gradients are
# stored in the input dtype and round at its precision.
DTYPES = [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)]
SHAPES = [(2, 20, 3, 3), (2, 33, 1, 1), (1, 7, 5, 7)]
WEIGHTS = [None, "broadcast", "full"]


def _close(actual, expected, rtol):
    atol = rtol * expected.float().abs().max().item() + 1e-12
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


def _inputs(shape, dtype, weight_kind, device="cpu"):
    fake = torch.randn(shape, device=device).to(dtype).requires_grad_()
    real = torch.randn(shape, device=device).to(dtype).requires_grad_()
    n, c, h, w = shape
    weight = {None: None,
              "broadcast": torch.rand(n, 1, h, w, device=device),
              "full": torch.rand(n, c, h, w, device=device)}[weight_kind]
    return fake, real, weight


def _check(fake, real, weight, reduction, rtol, fwd_rtol=1e-5):
    out = feature_distance(fake, real, weight, reduction)
    ref = feature_distance_reference(fake, real, weight, reduction)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    _close(out, ref, max(fwd_rtol, 1e-5))
    grad_out = torch.rand_like(ref) + 0.5
    grads = torch.autograd.grad(out, (fake, real), grad_out)
    grads_ref = torch.autograd.grad(ref, (fake, real), grad_out)
    for g, g_ref, x in zip(grads, grads_ref, (fake, real)):
        assert g.dtype == x.dtype and g.shape == x.shape
        assert g_ref.abs().max() > 0
        _close(g, g_ref, rtol)
    return grads[0]


@pytest.mark.parametrize("dtype,rtol", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("weight_kind", WEIGHTS, ids=["noweight", "weight1", "weightC"])
def test_matches_reference_with_gradient(shape, dtype, rtol, weight_kind):
    fake, real, weight = _inputs(shape, dtype, weight_kind)
    for reduction in ("sum", "mean", "per_sample"):
        _check(fake, real, weight, reduction, rtol)


def test_channels_last_inputs_weight_and_gradient_layout():
    fake, real, weight = _inputs((2, 18, 4, 5), torch.float32, "broadcast")
    fake_cl = fake.detach().to(memory_format=torch.channels_last).requires_grad_()
    weight_cl = weight.to(memory_format=torch.channels_last)
    g = _check(fake_cl, real, weight_cl, "per_sample", 1e-5)
    assert g.is_contiguous(memory_format=torch.channels_last)
    real_cl = real.detach().to(memory_format=torch.channels_last).requires_grad_()
    _check(fake_cl, real_cl, None, "mean", 1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs_values_gradients_and_opcheck(layout):
    # "transposed" (H and W don't merge) used to return the untouched gradient buffer:
    # the kernel wrote a reshape copy of it.
    fake, real, weight = _inputs((2, 18, 3, 5), torch.float32, "broadcast")
    fake_l = relayout(fake, layout).requires_grad_()
    real_l = relayout(real, layout).requires_grad_()
    weight_l = relayout(weight, layout)
    g = _check(fake_l, real_l, weight_l, "per_sample", 1e-5)
    # Dense layouts whose H and W merge keep their strides; the others come back NCHW.
    expected = fake_l if layout == "channels_last" else fake_l.contiguous()
    assert g.stride() == expected.stride()
    _check(fake_l, real_l, None, "sum", 1e-5)
    grad = torch.rand(2) + 0.5
    torch.library.opcheck(fd_module._feature_distance_op, (fake_l, real_l, weight_l, "per_sample"))
    torch.library.opcheck(fd_module._feature_distance_backward_op,
                          (grad, fake_l.detach(), real_l.detach(), weight_l, "per_sample"))


def test_per_sample_losses_summed_later():
    # The incoming gradient is then an expanded (stride-0) tensor.
    fake, real, weight = _inputs((3, 17, 2, 2), torch.float32, "full")
    (g,) = torch.autograd.grad(feature_distance(fake, real, weight, "per_sample").sum() * 2, fake)
    ref = feature_distance_reference(fake, real, weight, "per_sample").sum() * 2
    (g_ref,) = torch.autograd.grad(ref, fake)
    _close(g, g_ref, 1e-5)


def test_weight_zero_masks_out_and_weight_gets_no_gradient():
    fake, real, weight = _inputs((1, 5, 2, 3), torch.float32, "full")
    weight.zero_()
    weight.requires_grad_()
    out = feature_distance(fake, real, weight)
    assert out.item() == 0.0
    out.backward()
    assert weight.grad is None
    assert fake.grad.abs().max().item() == 0.0


def test_bool_weight_is_the_hole_as_the_compiled_op_takes_it():
    """A bool mask was refused here ("must be a float tensor") where ops.feature_distance converts it."""
    fake, real, _ = _inputs((2, 5, 3, 4), torch.float32, None)
    hole = torch.rand(2, 1, 3, 4) > 0.5
    out = feature_distance(fake, real, hole, "per_sample")
    _close(out, feature_distance_reference(fake, real, hole.float(), "per_sample"), 1e-5)
    assert 0 < out.sum() < feature_distance(fake, real, None).detach()


def test_opcheck():
    fake, real, weight = _inputs((2, 18, 2, 3), torch.float32, "broadcast")
    torch.library.opcheck(fd_module._feature_distance_op, (fake, real, weight, "mean"))
    torch.library.opcheck(fd_module._feature_distance_op, (fake, real, None, "per_sample"))


def test_torch_compile_fullgraph():
    fake, real, weight = _inputs((2, 18, 3, 2), torch.float32, "broadcast")

    @torch.compile(fullgraph=True)
    def loss_fn(a, b, w):
        return 0.5 * feature_distance(a, b, w, "sum") + a.abs().mean()

    out = loss_fn(fake, real, weight)
    grads = torch.autograd.grad(out, (fake, real))
    ref = 0.5 * feature_distance_reference(fake, real, weight, "sum") + fake.abs().mean()
    grads_ref = torch.autograd.grad(ref, (fake, real))
    _close(out, ref, 1e-5)
    for g, g_ref in zip(grads, grads_ref):
        _close(g, g_ref, 1e-5)


def test_without_gpu_or_interpreter_raises_unless_fallback(monkeypatch):
    fake, real, weight = _inputs((1, 4, 2, 2), torch.float32, "broadcast")
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # read at call time, after import
    with pytest.raises(RuntimeError, match="needs CUDA tensors on a GPU, or TRITON_INTERPRET=1"):
        feature_distance(fake, real, weight)
    out = feature_distance(fake, real, weight, allow_reference_fallback=True)
    _close(out, feature_distance_reference(fake, real, weight), 1e-6)
    # any value Triton itself reads as true ("true" ran Triton's interpreter, but these kernels refused)
    for value in ("1", "true", "ON", "yes"):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        _close(feature_distance(fake, real, weight), feature_distance_reference(fake, real, weight),
               1e-5)
    for value in ("false", "off", "2"):
        monkeypatch.setenv("TRITON_INTERPRET", value)
        with pytest.raises(RuntimeError, match="needs CUDA tensors on a GPU"):
            feature_distance(fake, real, weight)


def test_bad_inputs_say_what_is_wrong():
    a = torch.randn(2, 4, 2, 2)
    with pytest.raises(ValueError, match="same shape"):
        feature_distance(a, torch.randn(2, 4, 2, 3))
    with pytest.raises(ValueError, match="resize the mask"):
        feature_distance(a, a, torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="reduction"):
        feature_distance(a, a, reduction="max")
    with pytest.raises(ValueError, match="non-empty"):
        feature_distance(a[:, :0], a[:, :0])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.bfloat16, 1.6e-2)],
                         ids=["fp32", "bf16"])
def test_cuda_matches_reference(dtype, rtol):
    fake, real, weight = _inputs((3, 130, 9, 17), dtype, "broadcast", device="cuda")
    for reduction in ("sum", "per_sample"):
        _check(fake, real, weight, reduction, rtol, fwd_rtol=1e-4)
    fake_cl = fake.detach().to(memory_format=torch.channels_last).requires_grad_()
    _check(fake_cl, real, None, "mean", rtol, fwd_rtol=1e-4)


def test_every_autotune_config_on_one_reused_buffer():
    # On a GPU the autotuner runs every configuration on the same partial-sum buffer
    # before the real run; what a config with more tiles leaves there must not reach
    # the loss.  Run each configuration in turn on one buffer filled with garbage.
    fake, real, weight = _inputs((2, 130, 9, 17), torch.float32, "broadcast")
    ref = feature_distance_reference(fake, real, weight, "per_sample")
    metas = fd_module._PARTIALS.all_meta()
    counts = [fd_module._tiles(130, 153, m) for m in metas]
    assert len(set(counts)) >= 3  # the configs differ in how many partials they write
    partial = torch.full((2, max(counts)), 1e3)
    for meta in metas + metas[::-1]:
        per_sample = fd_module._forward_launch(fake.detach(), real.detach(), weight,
                                               partial=partial, meta=meta)
        _close(per_sample, ref, 1e-5)


def test_offsets_beyond_int32_are_refused(record_grids):
    # 2^32 elements in one sample (meta tensors, launches recorded: nothing is allocated
    # or run); the same total split over 2 samples fits the int32 offsets.
    record_grids(fd_module._PARTIALS, fd_module._GRAD)
    big = torch.empty(1, 2**16, 2**8, 2**8, device="meta")
    with pytest.raises(ValueError, match="int32 offsets"):
        fd_module._forward_launch(big, big, None)
    with pytest.raises(ValueError, match="int32 offsets"):
        fd_module._backward_launch(torch.ones((), device="meta"), big, big, None, "sum")
    halves = torch.empty(2, 2**15, 2**8, 2**8, device="meta")
    fd_module._forward_launch(halves, halves, halves[:, :1])


def test_batch_is_folded_into_grid_axis_0(record_grids):
    # CUDA caps grid axes 1 and 2 at 65,535: a batch of 70,000 must stay on axis 0.
    grids = record_grids(fd_module._PARTIALS, fd_module._GRAD)
    fake, real, _ = _inputs((70_000, 20, 1, 1), torch.float32, None)
    fd_module._forward_launch(fake.detach(), real.detach(), None)
    fd_module._backward_launch(torch.ones(()), fake.detach(), real.detach(), None, "sum")
    assert grids == [(70_000 * 2,), (70_000 * 2,)]  # 20 channels = 2 tiles of 16, 1 position tile
