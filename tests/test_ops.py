"""The fused loss operators (nfinpaint.ops) against their PyTorch references.

CPU tests run everywhere; tests marked ``gpu`` hold the CUDA kernels to the
reference and to the CPU kernels when a GPU is visible.
"""
import numpy as np
import pytest
import torch

from _layouts import LAYOUTS, relayout
from nfinpaint import _extension, ops

pytestmark = pytest.mark.skipif(not _extension.is_built(), reason="nfinpaint._C is not built")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (atol, rtol) for elementwise outputs (composite, gradients) in each dtype: the
# kernels round once from float32, the references may round at every step.
ELEMENT_TOL = {torch.float32: (1e-6, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2),
               torch.float64: (1e-12, 1e-12)}
# Reductions are float32 sums of the same float32 terms in another order.
LOSS_RTOL = 1e-5
SHAPES = [(2, 3, 5, 7), (1, 3, 40, 45)]  # odd sizes; the second spans several 4096-element chunks


def make_inputs(shape, dtype=torch.float32, mask_channels=1, channels_last=False, soft=False, seed=0,
                device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    generated = torch.rand(shape, generator=gen, dtype=torch.float64)
    target = torch.rand(shape, generator=gen, dtype=torch.float64)
    mask = torch.rand((n, mask_channels, h, w), generator=gen, dtype=torch.float64)
    mask = mask if soft else (mask > 0.5).double()
    out = []
    for x in (generated, target, mask):
        x = x.to(device=device, dtype=dtype)
        out.append(x.to(memory_format=torch.channels_last) if channels_last else x)
    return out


def assert_close(actual, expected, dtype):
    atol, rtol = ELEMENT_TOL[dtype]
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def reference_grads(fn, generated, *args):
    """Gradient of (loss + <composite-or-nothing, probe>) from fn, and its outputs."""
    generated = generated.detach().clone().requires_grad_()
    out = fn(generated, *args)
    if isinstance(out, tuple):
        composite, loss = out
        probe = torch.rand(composite.shape, generator=torch.Generator().manual_seed(7)).to(composite)
        total = loss.sum() + (composite.float() * probe.float()).sum()
    else:
        total = out.sum()
    total.backward()
    return out, generated.grad


# ---------------------------------------------------------------------------
# composite_l2
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask_channels", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_composite_l2_matches_reference(dtype, shape, mask_channels, channels_last):
    g, t, m = make_inputs(shape, dtype, mask_channels, channels_last, soft=mask_channels == 3, seed=1)
    for reduction in ops.REDUCTIONS:
        (comp, loss), grad = reference_grads(lambda x: ops.composite_l2(x, t, m, reduction), g)
        (rcomp, rloss), rgrad = reference_grads(lambda x: ops.composite_l2_reference(x, t, m, reduction), g)
        assert comp.dtype == dtype and loss.dtype == torch.float32
        assert comp.stride() == g.stride()  # same memory format as generated
        assert_close(comp, rcomp, dtype)
        torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=1e-7)
        assert grad.stride() == g.stride()
        assert_close(grad, rgrad, dtype)


def test_composite_l2_mixed_layouts_and_dtypes():
    # target NCHW, generated channels-last, mask float32 with float16 images
    g, t, m = make_inputs((2, 3, 6, 5), torch.float16, 1, channels_last=True, seed=2)
    t = t.contiguous()
    comp, loss = ops.composite_l2(g, t, m.float())
    rcomp, rloss = ops.composite_l2_reference(g, t, m)
    assert comp.is_contiguous(memory_format=torch.channels_last)
    assert_close(comp, rcomp, torch.float16)
    torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)


@pytest.mark.parametrize("low, other", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                        (torch.float32, torch.float64), (torch.bfloat16, torch.float64)])
@pytest.mark.parametrize("reduction", ops.REDUCTIONS)
def test_ops_and_references_take_the_other_inputs_in_the_first_one_s_dtype(low, other, reduction):
    """Given the same mixed-dtype arguments, op and reference agree: both take target/mask (real/weight)
    in the first argument's dtype. The references once computed the loss from the unrounded ones
    (2e-4 apart with bfloat16 images) and returned float64 beside a float64 mask."""
    seed = torch.seed() % 2**31
    g, t, m = make_inputs((3, 4, 9, 7), other, 1, soft=True, seed=seed)
    g = g.to(low)
    _, loss = ops.composite_l2(g, t, m, reduction)
    _, rloss = ops.composite_l2_reference(g, t, m, reduction)
    assert loss.dtype == rloss.dtype == torch.float32
    torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
    dist = ops.feature_distance(g, t, m, reduction)
    rdist = ops.feature_distance_reference(g, t, m, reduction)
    assert dist.dtype == rdist.dtype == torch.float32
    torch.testing.assert_close(dist, rdist, rtol=LOSS_RTOL, atol=0)


@pytest.mark.parametrize("reduction", ops.REDUCTIONS)
def test_composite_l2_empty_and_full_masks(reduction):
    g, t, _ = make_inputs((2, 3, 4, 5), seed=3)
    empty = torch.zeros(2, 1, 4, 5)
    full = torch.ones(2, 1, 4, 5)
    g.requires_grad_()
    comp, loss = ops.composite_l2(g, t, empty, reduction)
    assert torch.equal(comp, t) and torch.all(loss == 0)
    loss.sum().backward()
    assert torch.all(g.grad == 0)
    comp, loss = ops.composite_l2(g, t, full, reduction)
    assert torch.equal(comp, g.detach())
    per_sample_mse = ((g.detach() - t) ** 2).flatten(1).mean(1)
    expected = {"mean": per_sample_mse.mean(), "per_sample": per_sample_mse,
                "sum": ((g.detach() - t) ** 2).sum()}[reduction]
    torch.testing.assert_close(loss, expected, rtol=LOSS_RTOL, atol=0)


def test_composite_l2_batch_one_and_empty_batch():
    g, t, m = make_inputs((1, 3, 9, 11), seed=4)
    comp, loss = ops.composite_l2(g, t, m, "per_sample")
    rcomp, rloss = ops.composite_l2_reference(g, t, m, "per_sample")
    assert loss.shape == (1,)
    torch.testing.assert_close(comp, rcomp)
    torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
    g0, t0, m0 = make_inputs((0, 3, 4, 4), seed=4)
    comp, loss = ops.composite_l2(g0, t0, m0, "sum")
    assert comp.shape == (0, 3, 4, 4) and loss.item() == 0


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_composite_l2_mean_of_a_light_soft_hole(mask_channels):
    """A soft hole whose weights add up to less than 1 is still a weighted mean: the denominator was
    clamped to 1, so a mask of 0.05 over 4x4 pixels gave 0.8 of the mean."""
    seed = int(torch.randint(1 << 30, ()))
    g, t, _ = make_inputs((2, 3, 4, 4), seed=seed)
    m = torch.rand(2, mask_channels, 4, 4, generator=torch.Generator().manual_seed(seed)) * 0.01
    sq = (m * (g - t) ** 2).double().expand(2, 3, 4, 4)
    weight = m.double().expand(2, 3, 4, 4)
    per_sample = sq.flatten(1).sum(1) / weight.flatten(1).sum(1)
    assert float(weight.sum()) < 1     # what the clamp got wrong
    for fn in (ops.composite_l2, ops.composite_l2_reference):
        torch.testing.assert_close(fn(g, t, m, "per_sample")[1].double(), per_sample, rtol=1e-5, atol=0)
        torch.testing.assert_close(fn(g, t, m, "mean")[1].double(), sq.sum() / weight.sum(), rtol=1e-5, atol=0)
        assert fn(g, t, torch.zeros_like(m), "mean")[1].item() == 0      # an empty hole: 0, not NaN


def test_composite_l2_gradient_only_from_used_outputs():
    g, t, m = make_inputs((2, 3, 5, 6), mask_channels=1, soft=True, seed=5)
    # loss only: the composite's gradient is None and must count as zero
    (_, _), grad = reference_grads(lambda x: (torch.zeros(()), ops.composite_l2(x, t, m)[1]), g)
    (_, _), rgrad = reference_grads(lambda x: (torch.zeros(()), ops.composite_l2_reference(x, t, m)[1]), g)
    torch.testing.assert_close(grad, rgrad)
    # composite only
    x = g.clone().requires_grad_()
    probe = torch.rand(g.shape, generator=torch.Generator().manual_seed(8))
    (ops.composite_l2(x, t, m)[0] * probe).sum().backward()
    torch.testing.assert_close(x.grad, m * probe)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_composite_l2_gradient_of_the_composite_alone_with_non_finite_values(dtype, bad):
    """With the loss unused, its gradient (None) counts as 0; the kernel still added 2*0*(g-t), which
    is NaN where generated or target is inf or NaN (an fp16 generator that overflowed), although the
    composite's gradient mask*grad is finite there."""
    seed = int(torch.randint(1 << 30, ()))
    g, t, m = make_inputs((2, 3, 5, 6), dtype=dtype, mask_channels=1, soft=True, seed=seed)
    g[0, 1, 2, 3] = bad
    t[1, 0, 4, 5] = bad
    probe = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    grads = []
    for fn in (ops.composite_l2, ops.composite_l2_reference):
        x = g.clone().requires_grad_()
        (fn(x, t, m)[0] * probe).sum().backward()
        grads.append(x.grad)
    assert bool(torch.isfinite(grads[1]).all())
    assert_close(grads[0], grads[1], dtype)


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_references_keep_float64_as_the_ops_do(mask_channels):
    """In float64 the ops sum in float64 (what gradcheck needs); their references, which define them,
    did their sums in float32 and could not check them there."""
    g, t, m = make_inputs((2, 3, 6, 5), torch.float64, mask_channels, seed=int(torch.randint(1 << 30, ())))
    for reduction in ("sum", "mean", "per_sample"):
        (comp, loss), (rcomp, rloss) = ops.composite_l2(g, t, m, reduction), ops.composite_l2_reference(g, t, m, reduction)
        assert rloss.dtype == loss.dtype == torch.float64
        torch.testing.assert_close(rloss, loss, rtol=1e-12, atol=1e-12)
        distance, rdistance = ops.feature_distance(g, t, m, reduction), ops.feature_distance_reference(g, t, m, reduction)
        assert rdistance.dtype == distance.dtype == torch.float64
        torch.testing.assert_close(rdistance, distance, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: ops.feature_distance_reference(x, t, m), (g.requires_grad_(),))


def test_composite_l2_reference_of_no_channels_is_zero_like_the_op():
    empty = torch.zeros(2, 0, 4, 4)
    for reduction in ("sum", "mean", "per_sample"):
        loss, reference = ops.composite_l2(empty, empty, empty, reduction)[1], \
            ops.composite_l2_reference(empty, empty, empty, reduction)[1]
        torch.testing.assert_close(reference, loss)
        assert not bool(reference.any())


def test_composite_l2_reference_takes_a_bool_mask_like_the_op():
    g, t, m = make_inputs((2, 3, 5, 4), seed=7)
    hole = m > 0.5
    for reduction in ops.REDUCTIONS:
        comp, loss = ops.composite_l2_reference(g, t, hole, reduction)
        rcomp, rloss = ops.composite_l2_reference(g, t, hole.float(), reduction)
        assert torch.equal(comp, rcomp) and torch.equal(loss, rloss)
        torch.testing.assert_close(ops.composite_l2(g, t, hole, reduction)[1], rloss, rtol=LOSS_RTOL, atol=0)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_composite_l2_reference_returns_the_composite_in_generated_dtype_like_the_op(low):
    """With a low-precision generation and float32 target and mask, the reference's composite was float32
    (the promoted dtype) and the op's the generation's: use_custom_ops changed the composite's dtype."""
    g, t, m = make_inputs((2, 3, 6, 5), seed=int(torch.randint(0, 2**31, ())))
    comp, _ = ops.composite_l2(g.to(low), t, m)
    rcomp, _ = ops.composite_l2_reference(g.to(low), t, m)
    assert comp.dtype == rcomp.dtype == low
    torch.testing.assert_close(rcomp, comp, rtol=0, atol=0)


def test_composite_l2_reference_counts_a_mask_broadcast_over_the_batch_once_per_sample():
    g, t, m = make_inputs((3, 2, 5, 4), seed=int(torch.randint(0, 2**31, ())))
    shared = m[:1]                                  # (1, 1, H, W): the same hole for every sample
    loss = ops.composite_l2_reference(g, t, shared, "mean")[1]
    loss_expanded = ops.composite_l2_reference(g, t, shared.expand(3, -1, -1, -1).contiguous(), "mean")[1]
    torch.testing.assert_close(loss, loss_expanded)


@pytest.mark.parametrize("op", ["composite_l2", "feature_distance"])
def test_double_backward_fails_loudly(op):
    """A gradient of the loss's gradient (a gradient penalty through it) has no formula: it must raise,
    not come back as no gradient (PyTorch's default for an op without autograd only warns). The
    reference's second derivative exists, so the test shows what a silent zero would have hidden."""
    g, t, m = make_inputs((2, 3, 4, 5), torch.float64, 1, seed=8)
    custom = (lambda x: ops.composite_l2(x, t, m, "sum")[1]) if op == "composite_l2" else \
        (lambda x: ops.feature_distance(x, t, m, "sum"))
    reference = (lambda x: ops.composite_l2_reference(x, t, m, "sum")[1]) if op == "composite_l2" else \
        (lambda x: ops.feature_distance_reference(x, t, m, "sum"))
    x = g.clone().requires_grad_()
    grad, = torch.autograd.grad(reference(x), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert x.grad.abs().max() > 0
    x = g.clone().requires_grad_()
    grad, = torch.autograd.grad(custom(x), x, create_graph=True)
    with pytest.raises(RuntimeError, match=f"derivative for nfinpaint::{op}_backward is not implemented"):
        grad.pow(2).sum().backward()


@pytest.mark.parametrize("fn", [ops.composite_l2, ops.composite_l2_reference], ids=["op", "reference"])
def test_composite_l2_target_and_mask_get_no_gradient(fn):
    """The op and the reference that defines it: the reference gave target and mask a gradient."""
    g, t, m = make_inputs((2, 3, 4, 4), seed=int(torch.randint(0, 2**31, ())))
    for x in (g, t, m):
        x.requires_grad_()
    composite, loss = fn(g, t, m)
    (loss + composite.sum()).backward()
    assert g.grad is not None and t.grad is None and m.grad is None


@pytest.mark.parametrize("mask_channels,channels_last,reduction", [
    (1, False, "mean"), (3, False, "per_sample"), (1, True, "sum"), (3, True, "mean")])
def test_composite_l2_gradcheck_float64(mask_channels, channels_last, reduction):
    g, t, m = make_inputs((2, 3, 3, 4), torch.float64, mask_channels, channels_last, soft=True, seed=9)
    g.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.composite_l2(x, t, m, reduction), (g,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_composite_l2_opcheck(channels_last):
    g, t, m = make_inputs((2, 3, 4, 5), torch.float32, 1, channels_last, seed=10)
    g.requires_grad_()
    torch.library.opcheck(torch.ops.nfinpaint.composite_l2.default, (g, t, m))
    _, _, m3 = make_inputs((2, 3, 4, 5), torch.float32, 3, channels_last, seed=10)
    torch.library.opcheck(torch.ops.nfinpaint.composite_l2.default, (g, t, m3))
    gc = torch.rand_like(g)
    gs = torch.rand(2)
    for grads in ((gc, gs), (None, gs), (gc, None)):
        torch.library.opcheck(torch.ops.nfinpaint.composite_l2_backward.default, (*grads, g.detach(), t, m))


@pytest.mark.parametrize("bad,match", [
    (lambda g, t, m: (g, t, m[:, :1, :-1]), r"expected mask of shape \(N,1,H,W\) or \(N,C,H,W\)"),
    (lambda g, t, m: (g, t, torch.cat([m, m], 1)), r"expected mask of shape \(N,1,H,W\) or \(N,C,H,W\) = \[2, 1 or 3, 4, 5\]"),
    (lambda g, t, m: (g, t, m[:1]), r"expected mask of shape"),
    (lambda g, t, m: (g, t[:, :2], m), r"expected target of the same shape as generated"),
    (lambda g, t, m: (g[0], t[0], m[0]), r"expected generated of shape \(N,C,H,W\)"),
])
def test_composite_l2_rejects_bad_shapes(bad, match):
    args = bad(*make_inputs((2, 3, 4, 5), seed=11))
    with pytest.raises(RuntimeError, match=match):
        ops.composite_l2(*args)
    with pytest.raises(RuntimeError, match=match):  # the fake kernel says the same under torch.compile
        with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
            torch.ops.nfinpaint.composite_l2.default(*(mode.from_tensor(x) for x in args))


def test_composite_l2_rejects_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        ops.composite_l2(*make_inputs((1, 3, 2, 2)), reduction="avg")


# ---------------------------------------------------------------------------
# feature_distance
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 8, 3, 5), (2, 256, 4, 5)])
@pytest.mark.parametrize("weight_channels", [None, 1, "C"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_feature_distance_matches_reference(dtype, shape, weight_channels, channels_last):
    wc = shape[1] if weight_channels == "C" else (weight_channels or 1)
    f, r, w = make_inputs(shape, dtype, wc, channels_last, soft=True, seed=12)
    f, r = f * 4 - 2, r * 4 - 2  # features are not in [0, 1]
    w = None if weight_channels is None else w
    for reduction in ops.REDUCTIONS:
        loss, grad = reference_grads(lambda x: ops.feature_distance(x, r, w, reduction), f)
        rloss, rgrad = reference_grads(lambda x: ops.feature_distance_reference(x, r, w, reduction), f)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
        assert grad.stride() == f.stride()
        assert_close(grad, rgrad, dtype)


def test_feature_distance_edge_cases():
    f, r, w = make_inputs((1, 4, 3, 3), seed=13)
    torch.testing.assert_close(ops.feature_distance(f, r, torch.zeros_like(w)), torch.tensor(0.0))
    torch.testing.assert_close(ops.feature_distance(f, r, torch.ones_like(w)), ops.feature_distance(f, r),
                               rtol=LOSS_RTOL, atol=0)
    assert ops.feature_distance(f, f).item() == 0
    f0, r0, _ = make_inputs((0, 4, 3, 3), seed=13)
    assert ops.feature_distance(f0, r0, reduction="per_sample").shape == (0,)
    assert ops.feature_distance(f0, r0).item() == 0
    # "mean" divides by the element count: an empty batch is 0 (as composite_l2's), not 0/0 = NaN
    for fn in (ops.feature_distance, ops.feature_distance_reference):
        assert fn(f0, r0, reduction="mean").item() == 0


def test_feature_distance_converts_real_and_weight_to_fake_dtype():
    f, r, w = make_inputs((2, 4, 3, 5), torch.bfloat16, 1, channels_last=True, soft=True, seed=24)
    loss = ops.feature_distance(f, r.float(), w.double(), "per_sample")
    torch.testing.assert_close(loss, ops.feature_distance_reference(f, r, w, "per_sample"), rtol=LOSS_RTOL, atol=0)


def test_feature_distance_gradient_contract_matches_the_reference_and_triton():
    """fake gets d/dfake, real its negation, weight nothing: the same for the C++ op, the Triton
    kernel (interpreted) and the plain PyTorch reference (which gave weight a gradient)."""
    from nfinpaint.kernels.feature_distance import feature_distance as triton_feature_distance

    f, r, w = make_inputs((2, 4, 3, 3), seed=int(torch.randint(0, 2**31, ())))
    grads = {}
    for name, fn in (("op", ops.feature_distance), ("reference", ops.feature_distance_reference),
                     ("triton", triton_feature_distance)):
        fx, rx, wx = (x.detach().clone().requires_grad_() for x in (f, r, w))
        fn(fx, rx, wx, reduction="sum").backward()
        grads[name] = (fx.grad, rx.grad, wx.grad)
    assert grads["reference"][2] is None
    for name in ("op", "triton"):
        fake_grad, real_grad, weight_grad = grads[name]
        torch.testing.assert_close(fake_grad, grads["reference"][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(real_grad, grads["reference"][1], rtol=1e-5, atol=1e-6)
        assert weight_grad is None


@pytest.mark.parametrize("weight_channels,channels_last,reduction", [
    (None, False, "sum"), (1, False, "mean"), (4, True, "per_sample"), (1, True, "sum")])
def test_feature_distance_gradcheck_float64(weight_channels, channels_last, reduction):
    f, r, w = make_inputs((2, 4, 3, 2), torch.float64, weight_channels or 1, channels_last, soft=True, seed=15)
    w = None if weight_channels is None else w
    f.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.feature_distance(x, r, w, reduction), (f,))


@pytest.mark.parametrize("channels_last", [False, True])
def test_feature_distance_opcheck(channels_last):
    f, r, w = make_inputs((2, 4, 3, 5), torch.float32, 1, channels_last, seed=16)
    f.requires_grad_()
    for weight in (None, w, make_inputs((2, 4, 3, 5), mask_channels=4, channels_last=channels_last)[2]):
        torch.library.opcheck(torch.ops.nfinpaint.feature_distance.default, (f, r, weight))
        torch.library.opcheck(torch.ops.nfinpaint.feature_distance_backward.default,
                              (torch.rand(2), f.detach(), r, weight))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ops_on_strided_inputs_match_reference_and_opcheck(layout):
    # Each input in its own layout (the others contiguous), values, gradients and the
    # fake kernels' strides (opcheck) included.
    for i in range(3):
        g, t, m = make_inputs((2, 3, 4, 5), torch.float32, 3, soft=True, seed=30 + i)
        args = [g, t, m]
        args[i] = relayout(args[i], layout)
        (comp, loss), grad = reference_grads(lambda x, *a: ops.composite_l2(x, *a, "per_sample"), *args)
        (comp_ref, loss_ref), grad_ref = reference_grads(
            lambda x, *a: ops.composite_l2_reference(x, *a, "per_sample"), *args)
        assert_close(comp, comp_ref, torch.float32)
        torch.testing.assert_close(loss, loss_ref, rtol=LOSS_RTOL, atol=0)
        assert_close(grad, grad_ref, torch.float32)
        dist, grad = reference_grads(lambda x, *a: ops.feature_distance(x, *a, "per_sample"), *args)
        dist_ref, grad_ref = reference_grads(
            lambda x, *a: ops.feature_distance_reference(x, *a, "per_sample"), *args)
        torch.testing.assert_close(dist, dist_ref, rtol=LOSS_RTOL, atol=0)
        assert_close(grad, grad_ref, torch.float32)
        torch.library.opcheck(torch.ops.nfinpaint.composite_l2.default,
                              (args[0].requires_grad_(), *args[1:]))
        torch.library.opcheck(torch.ops.nfinpaint.composite_l2_backward.default,
                              (torch.rand(2, 3, 4, 5), torch.rand(2), *(a.detach() for a in args)))
        torch.library.opcheck(torch.ops.nfinpaint.feature_distance.default, tuple(args))
        torch.library.opcheck(torch.ops.nfinpaint.feature_distance_backward.default,
                              (torch.rand(2), *(a.detach() for a in args)))


def test_mixed_devices_are_refused_with_the_input_named():
    # A call mixing devices runs the kernel of the "highest" one: with a meta input that
    # was the fake kernel, which returned uninitialised tensors on the CPU.
    g, t, m = make_inputs((1, 3, 4, 4), soft=True, seed=50)
    meta = {"device": "meta"}
    with pytest.raises(RuntimeError, match="expected target on cpu like generated, got meta"):
        ops.composite_l2(g, t.to(**meta), m)
    with pytest.raises(RuntimeError, match="expected mask on cpu like generated, got meta"):
        ops.composite_l2(g, t, m.to(**meta))
    with pytest.raises(RuntimeError, match="expected grad_composite on cpu, got meta"):
        torch.ops.nfinpaint.composite_l2_backward(torch.ones(1, 3, 4, 4, **meta), None, g, t, m)
    with pytest.raises(RuntimeError, match="expected weight on cpu like fake, got meta"):
        ops.feature_distance(g, t, m.to(**meta))
    with pytest.raises(RuntimeError, match="expected grad_dist on cpu, got meta"):
        torch.ops.nfinpaint.feature_distance_backward(torch.ones(1, **meta), g, t, m)


@pytest.mark.gpu
def test_cuda_mixed_devices_are_refused_with_the_input_named():
    # The CUDA kernels used to build their device guard from a CPU tensor first:
    # "CUDAGuardImpl initialized with non-CUDA DeviceType".
    g, t, m = make_inputs((1, 3, 4, 4), soft=True, seed=51)
    cuda = {"device": "cuda"}
    with pytest.raises(RuntimeError, match="every input on one CUDA device, got generated on cpu"):
        ops.composite_l2(g, t.to(**cuda), m.to(**cuda))
    with pytest.raises(RuntimeError, match="every input on one CUDA device, got fake on cpu"):
        ops.feature_distance(g, t.to(**cuda))
    with pytest.raises(RuntimeError, match="every input on one CUDA device, got grad_dist on cpu"):
        torch.ops.nfinpaint.feature_distance_backward(torch.ones(1), g.to(**cuda), t.to(**cuda), None)


def test_cpu_rounds_every_operation_like_cuda():
    # CUDA builds with --fmad=false; the CPU build must not contract a*b + c into an FMA
    # either (GCC's default for the AVX2 loops), or the two differ by an ulp. numpy
    # float32 ufuncs round after every operation: the unfused order of loss_math.h.
    g, t, m = make_inputs((2, 3, 16, 17), torch.float32, 3, soft=True, seed=40)
    gc = torch.rand(g.shape, generator=torch.Generator().manual_seed(41))
    gs = torch.rand(2, generator=torch.Generator().manual_seed(42))
    comp, _, _ = torch.ops.nfinpaint.composite_l2.default(g, t, m)
    grad = torch.ops.nfinpaint.composite_l2_backward.default(gc, gs, g, t, m)
    gn, tn, mn, gcn = (x.numpy() for x in (g, t, m, gc))
    one, two = np.float32(1), np.float32(2)
    comp_np = mn * gn + (one - mn) * tn
    grad_np = mn * (gcn + (two * gs.numpy()[:, None, None, None]) * (gn - tn))
    for name, actual, expected in (("composite", comp, comp_np), ("gradient", grad, grad_np)):
        differ = int((actual.numpy() != expected).sum())
        assert differ == 0, f"{name}: {differ} of {expected.size} elements round differently"


@pytest.mark.parametrize("bad,match", [
    (lambda f, r, w: (f, r, w[:, :, :-1]), r"expected weight of shape \(N,1,H,W\) or \(N,C,H,W\)"),
    (lambda f, r, w: (f, r, torch.cat([w, w], 1)), r"= \[2, 1 or 4, 3, 5\]"),
    (lambda f, r, w: (f, r[:, :, :2], w), r"expected real of the same shape as fake"),
    (lambda f, r, w: (f.flatten(2), r.flatten(2), None), r"expected fake of shape \(N,C,H,W\)"),
])
def test_feature_distance_rejects_bad_shapes(bad, match):
    args = bad(*make_inputs((2, 4, 3, 5), seed=17))
    with pytest.raises(RuntimeError, match=match):
        ops.feature_distance(*args)


# ---------------------------------------------------------------------------
# both: determinism, torch.compile
# ---------------------------------------------------------------------------

def test_reductions_do_not_depend_on_thread_count():
    g, t, m = make_inputs((3, 3, 64, 70), soft=True, seed=18)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.composite_l2(g, t, m, "per_sample")[1], ops.feature_distance(g, t, m, "per_sample")
        torch.set_num_threads(max(2, threads))
        many = ops.composite_l2(g, t, m, "per_sample")[1], ops.feature_distance(g, t, m, "per_sample")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_compile_fullgraph_forward_and_backward(channels_last):
    g, t, m = make_inputs((2, 3, 8, 8), channels_last=channels_last, soft=True, seed=19)
    fr = torch.rand(2, 16, 2, 2, generator=torch.Generator().manual_seed(20))

    def step(op_l2, op_fd, x):
        composite, l2 = op_l2(x, t, m)
        fake = torch.nn.functional.avg_pool2d(composite, 4).repeat(1, 16 // 3 + 1, 1, 1)[:, :16]
        w = torch.nn.functional.max_pool2d(m, 4)
        return l2 + 0.1 * op_fd(fake, fr, w, "mean")

    def run(fn):
        x = g.clone().requires_grad_()
        loss = fn(x)
        loss.backward()
        return loss.detach(), x.grad

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: step(ops.composite_l2, ops.feature_distance, x), fullgraph=True)
    loss, grad = run(compiled)
    rloss, rgrad = run(lambda x: step(ops.composite_l2_reference, ops.feature_distance_reference, x))
    torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
    torch.testing.assert_close(grad, rgrad, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# CUDA kernels (run only where a GPU is visible)
# ---------------------------------------------------------------------------

def unaligned(x):
    """x's values in a tensor whose data starts one element past a 16-byte boundary."""
    flat = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:]
    out = flat.view(x.shape)
    out.copy_(x)
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 3, 64, 64)])
@pytest.mark.parametrize("mask_channels", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_composite_l2_cuda_matches_reference_and_cpu(dtype, shape, mask_channels, channels_last):
    g, t, m = make_inputs(shape, dtype, mask_channels, channels_last, soft=True, seed=21)
    for reduction in ops.REDUCTIONS:
        (cpu_comp, cpu_loss), cpu_grad = reference_grads(lambda x: ops.composite_l2(x, t, m, reduction), g)
        gpu = [x.cuda() for x in (g, t, m)]
        (comp, loss), grad = reference_grads(lambda x: ops.composite_l2(x, *gpu[1:], reduction), gpu[0])
        (rcomp, rloss), rgrad = reference_grads(
            lambda x: ops.composite_l2_reference(x, *gpu[1:], reduction), gpu[0])
        assert comp.stride() == gpu[0].stride() and grad.stride() == gpu[0].stride()
        assert_close(comp, rcomp, dtype)
        assert_close(grad, rgrad, dtype)
        torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=1e-7)
        assert_close(comp.cpu(), cpu_comp, dtype)
        assert_close(grad.cpu(), cpu_grad, dtype)
        torch.testing.assert_close(loss.cpu(), cpu_loss, rtol=LOSS_RTOL, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_channels", [None, 1, "C"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_feature_distance_cuda_matches_reference_and_cpu(dtype, weight_channels, channels_last):
    shape = (4, 256, 6, 6)
    wc = shape[1] if weight_channels == "C" else (weight_channels or 1)
    f, r, w = make_inputs(shape, dtype, wc, channels_last, soft=True, seed=22)
    w = None if weight_channels is None else w
    for reduction in ops.REDUCTIONS:
        cpu_loss, cpu_grad = reference_grads(lambda x: ops.feature_distance(x, r, w, reduction), f)
        gr, gw = r.cuda(), None if w is None else w.cuda()
        loss, grad = reference_grads(lambda x: ops.feature_distance(x, gr, gw, reduction), f.cuda())
        rloss, rgrad = reference_grads(lambda x: ops.feature_distance_reference(x, gr, gw, reduction), f.cuda())
        assert grad.stride() == f.stride()
        torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
        assert_close(grad, rgrad, dtype)
        torch.testing.assert_close(loss.cpu(), cpu_loss, rtol=LOSS_RTOL, atol=0)
        assert_close(grad.cpu(), cpu_grad, dtype)


@pytest.mark.gpu
def test_cuda_unaligned_empty_and_deterministic():
    g, t, m = (x.cuda() for x in make_inputs((2, 3, 32, 32), soft=True, seed=23))
    comp, loss = ops.composite_l2(unaligned(g), unaligned(t), unaligned(m), "per_sample")
    rcomp, rloss = ops.composite_l2_reference(g, t, m, "per_sample")
    torch.testing.assert_close(comp, rcomp)
    torch.testing.assert_close(loss, rloss, rtol=LOSS_RTOL, atol=0)
    torch.testing.assert_close(ops.feature_distance(unaligned(g), unaligned(t), unaligned(m)),
                               ops.feature_distance_reference(g, t, m), rtol=LOSS_RTOL, atol=0)
    assert ops.composite_l2(g, t, torch.zeros_like(m))[1].item() == 0
    assert ops.composite_l2(g[:0], t[:0], m[:0], "sum")[1].item() == 0
    assert torch.equal(ops.feature_distance(g, t, m, "per_sample"), ops.feature_distance(g, t, m, "per_sample"))
    assert torch.equal(ops.composite_l2(g, t, m)[1], ops.composite_l2(g, t, m)[1])
    torch.library.opcheck(torch.ops.nfinpaint.composite_l2.default, (g.requires_grad_(), t, m))
    torch.library.opcheck(torch.ops.nfinpaint.feature_distance.default, (g, t, m))


@pytest.mark.gpu
def test_cuda_samples_of_many_chunks_use_the_second_pass_tree():
    """A sample of more than 256 chunks of 2048 elements (here 3x512x512: 384 chunks) is summed by
    the per-sample second pass, which the small inputs above never reach."""
    g, t, m = (x.cuda() for x in make_inputs((2, 3, 512, 512), soft=True, seed=29))
    comp, loss = ops.composite_l2(g, t, m, "per_sample")
    rcomp, rloss = ops.composite_l2_reference(g.double(), t.double(), m.double(), "per_sample")
    torch.testing.assert_close(comp, rcomp.float())
    torch.testing.assert_close(loss, rloss.float(), rtol=LOSS_RTOL, atol=0)
    torch.testing.assert_close(ops.feature_distance(g, t, m, "per_sample"),
                               ops.feature_distance_reference(g.double(), t.double(), m.double(),
                                                              "per_sample").float(), rtol=LOSS_RTOL, atol=0)
    assert torch.equal(ops.composite_l2(g, t, m, "per_sample")[1], loss)      # deterministic


# ---------------------------------------------------------------------------
# The CUDA kernels' launch plan and chunk mapping (shared host code, checked on the CPU)
# ---------------------------------------------------------------------------

def test_cuda_launch_plan_vector_loads_and_grid_limit():
    plan = torch.ops.nfinpaint._loss_launch_plan
    # [chunks a sample, blocks, vector loads]: 2048 elements a block
    assert plan(2, 4097, 4, []) == [3, 6, 0]  # 4097 floats: samples not 16-byte aligned
    assert plan(2, 48, 4, [0, 16, 4096]) == [1, 2, 1]
    assert plan(2, 48, 4, [0, 4]) == [1, 2, 0]  # one pointer off a 16-byte boundary
    assert plan(3, 40, 2, [32, 64]) == [1, 3, 1]  # half: 8 a vector
    assert plan(3, 44, 2, [32, 64]) == [1, 3, 0]
    assert plan(1, 2**31 + 16, 2, [0]) == [2**20 + 1, 2**20 + 1, 1]  # one sample over 2^31 elements
    with pytest.raises(RuntimeError, match="input too large"):
        plan(2**20, 2**22, 4, [])  # 2^31 blocks: past CUDA's grid limit


@pytest.mark.parametrize("chunk", [2048, 4096])  # CUDA blocks, CPU work items
def test_chunks_cover_samples_with_int64_offsets(chunk):
    chunk_of = torch.ops.nfinpaint._loss_chunk
    s = 2**31 - 1000  # two samples: the second starts below 2^31 and ends far above it
    nchunk = -(-s // chunk)
    assert chunk_of(0, 2, s, chunk) == [0, 0, chunk, 0, nchunk]
    last = 2 * nchunk - 1
    begin = (nchunk - 1) * chunk
    assert chunk_of(last, 2, s, chunk) == [1, begin, s - begin, s + begin, nchunk]
    assert chunk_of(nchunk, 2, s, chunk)[:4] == [1, 0, chunk, s]
    small = [chunk_of(i, 3, 5000, chunk)[:4] for i in range(3 * -(-5000 // chunk))]
    covered = [i for _, _, n, b in sorted(small, key=lambda c: c[3]) for i in range(b, b + n)]
    assert covered == list(range(3 * 5000))  # every element once, in order
    with pytest.raises(RuntimeError, match="need chunk > 0"):   # was a division by zero: SIGFPE
        chunk_of(0, 1, 10, 0)
