"""Fused loss operators: masked composite + L2, and the conv3 feature distance.

``composite_l2`` and ``feature_distance`` run the compiled kernels of
``nfinpaint._C`` (CPU and CUDA, ``csrc/``): one pass over the data forward and
one backward, float32 accumulation, deterministic per-sample sums.  Each op
also has a plain PyTorch reference here (``*_reference``) that defines what it
must compute; the tests hold the kernels to it.  The ops are registered with
``torch.library`` (fake kernels for ``torch.compile``, autograd).

Semantics (both the op and its reference):

``composite_l2(generated, target, mask, reduction)`` -> ``(composite, loss)``
    composite = mask*generated + (1-mask)*target, in generated's dtype and
    memory format (NCHW or channels-last); mask is (N,1,H,W) (broadcast over
    channels) or (N,C,H,W).  The squared error mask*(generated-target)^2 is
    summed per sample in float32; ``reduction``: "mean" (default) = total /
    number of hole elements (hole pixels x C) in the batch, "per_sample" =
    each sample's own mean, "sum" = total.  An empty hole gives 0.
    Gradients flow to ``generated`` only (from both the composite and the
    loss); ``target`` and ``mask`` are constants of the loss and get none.
    The op converts ``target`` and ``mask`` to generated's dtype.

``feature_distance(fake, real, weight=None, reduction)`` -> loss (float32)
    Equation 2 of the paper: sum of weight*(fake-real)^2; weight is an optional
    (N,1,h,w) or (N,C,h,w) per-position weight (the hole mask resized to the
    feature resolution).  ``reduction``: "sum" (default, the paper's), "mean"
    (divided by fake.numel(); an empty batch gives 0), "per_sample" ((N,) sums).  ``fake`` gets
    d/dfake, ``real`` its negation (the distance depends on fake - real only),
    ``weight`` none: the same contract as the Triton kernel and the plain
    PyTorch reference.  The feature loss passes the real image's features
    detached, so in training only ``fake`` receives one.  The op converts
    ``real`` and ``weight`` to fake's dtype.

Losses come back in float32 (float64 when the inputs are float64, so that
``gradcheck`` can check the kernels).
"""
from __future__ import annotations

import torch
from torch import Tensor

from nfinpaint import _extension

# How an op reduces its per-sample values over the batch: the one definition for the
# compiled ops here and the Triton kernels (nfinpaint.kernels).  Not the objective's
# LOSS_REDUCTIONS (nfinpaint.config), which scale whole loss terms.
REDUCTIONS = ("mean", "sum", "per_sample")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _wide(t: Tensor) -> Tensor:
    """``t`` in the dtype the ops accumulate in: float32, or float64 for float64 (what gradcheck needs)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _hole_mean(sq_err: Tensor, count: Tensor) -> Tensor:
    """sq_err / count, 0 for an empty hole.  Not count.clamp_min(1): a soft hole's weights may add
    up to less than 1 (a mask of 0.05 over 12 pixels weighs 0.6)."""
    return sq_err / torch.where(count > 0, count, torch.ones_like(count))


def composite_l2_reference(generated: Tensor, target: Tensor, mask: Tensor,
                           reduction: str = "mean") -> tuple[Tensor, Tensor]:
    check_reduction(reduction)
    # target and mask are constants of the loss, as the op treats them: no gradient reaches them; and
    # like the op, both are taken in generated's dtype, for the composite and the loss alike (the loss
    # from unrounded ones differed from the op's by 2e-4 with bfloat16 generated, float32 target)
    target, mask = target.detach().to(generated.dtype), mask.detach().to(generated.dtype)
    # the composite in generated's dtype, as the op returns it (not the promoted dtype of the three)
    composite = mask * generated + (1 - mask) * target
    diff = _wide(generated) - _wide(target)
    sq_err = (_wide(mask) * diff * diff).flatten(1).sum(1)
    if reduction == "sum":
        return composite, sq_err.sum()
    # a mask broadcast over the batch counts once per sample, as its squared errors do
    per_sample_mask = _wide(mask).expand(generated.shape[0], *mask.shape[1:])
    count = per_sample_mask.flatten(1).sum(1) * (generated.shape[1] // max(mask.shape[1], 1))   # C = 0: no pixel
    if reduction == "per_sample":
        return composite, _hole_mean(sq_err, count)
    return composite, _hole_mean(sq_err.sum(), count.sum())


def feature_distance_reference(fake: Tensor, real: Tensor, weight: Tensor | None = None,
                               reduction: str = "sum") -> Tensor:
    check_reduction(reduction)
    # real and weight in fake's dtype, as the op takes them; weight: no gradient
    diff = _wide(fake) - _wide(real.to(fake.dtype))
    sq = diff * diff if weight is None else _wide(weight.detach().to(fake.dtype)) * diff * diff
    per_sample = sq.flatten(1).sum(1)
    if reduction == "per_sample":
        return per_sample
    total = per_sample.sum()
    return total / max(fake.numel(), 1) if reduction == "mean" else total   # an empty batch: 0, as composite_l2


# ---------------------------------------------------------------------------
# Compiled operators
# ---------------------------------------------------------------------------

_BUILT = _extension.is_built()  # a plain bool, so torch.compile traces the wrappers without a break


def composite_l2(generated: Tensor, target: Tensor, mask: Tensor,
                 reduction: str = "mean") -> tuple[Tensor, Tensor]:
    """Fused ``composite = mask*generated + (1-mask)*target`` and the L2 loss in the hole.

    Returns ``(composite, loss)``; see the module docstring for the reductions.
    """
    check_reduction(reduction)
    if not _BUILT:
        _extension.require()
    if target.dtype != generated.dtype:
        target = target.to(generated.dtype)
    if mask.dtype != generated.dtype:
        mask = mask.to(generated.dtype)
    composite, sq_err, count = torch.ops.nfinpaint.composite_l2.default(generated, target, mask)
    if reduction == "sum":
        return composite, sq_err.sum()
    if reduction == "per_sample":
        return composite, _hole_mean(sq_err, count)
    return composite, _hole_mean(sq_err.sum(), count.sum())


def feature_distance(fake: Tensor, real: Tensor, weight: Tensor | None = None,
                     reduction: str = "sum") -> Tensor:
    """Equation 2: (optionally weighted) squared distance of two feature maps."""
    check_reduction(reduction)
    if not _BUILT:
        _extension.require()
    if real.dtype != fake.dtype:
        real = real.to(fake.dtype)
    if weight is not None and weight.dtype != fake.dtype:
        weight = weight.to(fake.dtype)
    per_sample = torch.ops.nfinpaint.feature_distance.default(fake, real, weight)
    if reduction == "per_sample":
        return per_sample
    total = per_sample.sum()
    return total / max(fake.numel(), 1) if reduction == "mean" else total   # an empty batch: 0, as composite_l2


def _memory_format(x: Tensor) -> torch.memory_format:
    # Same rule as loss_memory_format() in csrc/include/nfinpaint/loss_inputs.h:
    # the fake kernels must give the real kernels' strides.
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(op: str, a_name: str, b_name: str, w_name: str, a: Tensor, b: Tensor,
                  w: Tensor | None) -> None:
    """Apply the kernels' own input checks (prepare_loss_inputs in loss_inputs.h, through
    ``nfinpaint::_check_loss_inputs``) to meta copies of the fake kernel's inputs, so the
    fake kernels raise what the real ones would.  Symbolic shapes are left to the real
    kernel's check at run time (a meta copy needs concrete sizes)."""
    # devices first, on the inputs themselves (the meta copies below all share one)
    _extension.same_device(op, **{a_name: a, b_name: b, w_name: w})
    _extension.check_on_meta(torch.ops.nfinpaint._check_loss_inputs, op, a_name, b_name, w_name, a, b, w)


def _check_grad_devices(op: str, a: Tensor, **grads: Tensor | None) -> None:
    for name, g in grads.items():
        if g is not None and g.device != a.device:
            raise RuntimeError(f"{op}: expected {name} on {a.device}, got {g.device}")


def _register() -> None:
    lib = "nfinpaint::"

    @torch.library.register_fake(lib + "composite_l2")
    def _composite_l2_fake(generated, target, mask):
        _check_inputs("nfinpaint::composite_l2", "generated", "target", "mask", generated, target, mask)
        composite = torch.empty_like(generated, memory_format=_memory_format(generated))
        acc = _accumulate_dtype(generated.dtype)
        n = generated.shape[0]
        return composite, generated.new_empty((n,), dtype=acc), generated.new_empty((n,), dtype=acc)

    @torch.library.register_fake(lib + "composite_l2_backward")
    def _composite_l2_backward_fake(grad_composite, grad_sq_err, generated, target, mask):
        _check_inputs("nfinpaint::composite_l2_backward", "generated", "target", "mask", generated, target, mask)
        _check_grad_devices("nfinpaint::composite_l2_backward", generated,
                            grad_composite=grad_composite, grad_sq_err=grad_sq_err)
        return torch.empty_like(generated, memory_format=_memory_format(generated))

    @torch.library.register_fake(lib + "feature_distance")
    def _feature_distance_fake(fake, real, weight):
        _check_inputs("nfinpaint::feature_distance", "fake", "real", "weight", fake, real, weight)
        return fake.new_empty((fake.shape[0],), dtype=_accumulate_dtype(fake.dtype))

    @torch.library.register_fake(lib + "feature_distance_backward")
    def _feature_distance_backward_fake(grad_dist, fake, real, weight):
        _check_inputs("nfinpaint::feature_distance_backward", "fake", "real", "weight", fake, real, weight)
        _check_grad_devices("nfinpaint::feature_distance_backward", fake, grad_dist=grad_dist)
        return torch.empty_like(fake, memory_format=_memory_format(fake))

    def composite_setup_context(ctx, inputs, output):
        generated, target, mask = inputs
        ctx.save_for_backward(generated, target, mask)
        ctx.mark_non_differentiable(output[2])  # hole_count
        # An unused output (e.g. a loss-only caller ignores the composite) then
        # arrives as None and the kernel skips reading its gradient.
        ctx.set_materialize_grads(False)

    def composite_backward(ctx, grad_composite, grad_sq_err, _grad_count):
        if not ctx.needs_input_grad[0] or (grad_composite is None and grad_sq_err is None):
            return None, None, None
        generated, target, mask = ctx.saved_tensors
        grad = torch.ops.nfinpaint.composite_l2_backward.default(grad_composite, grad_sq_err, generated, target, mask)
        return grad, None, None  # target and mask are constants of the loss

    torch.library.register_autograd(lib + "composite_l2", composite_backward, setup_context=composite_setup_context)

    def feature_setup_context(ctx, inputs, output):
        fake, real, weight = inputs
        ctx.save_for_backward(fake, real, weight)
        ctx.set_materialize_grads(False)

    def feature_backward(ctx, grad_dist):
        # One contract for the C++/CUDA op, the Triton kernel and the reference: fake gets
        # d/dfake, real its negation (the distance is symmetric in fake - real), weight none.
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]) or grad_dist is None:
            return None, None, None
        fake, real, weight = ctx.saved_tensors
        grad = torch.ops.nfinpaint.feature_distance_backward.default(grad_dist, fake, real, weight)
        grad_real = -grad.to(real.dtype) if ctx.needs_input_grad[1] else None
        return (grad if ctx.needs_input_grad[0] else None), grad_real, None

    torch.library.register_autograd(lib + "feature_distance", feature_backward, setup_context=feature_setup_context)


if _BUILT:
    _register()
