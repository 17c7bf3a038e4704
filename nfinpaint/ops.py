"""Fused loss operators: masked composite + L2, and the conv3 feature distance.

Each op has a plain PyTorch reference here (``*_reference``) that defines what
it must compute; the compiled kernels (``csrc/``) are held to it by the tests.
Registration (fake kernels, autograd) is added with the compiled operators.

Semantics (both the op and its reference):

``composite_l2(generated, target, mask, reduction)`` -> ``(composite, loss)``
    composite = mask*generated + (1-mask)*target, in generated's dtype; mask is
    (N,1,H,W) (broadcast over channels) or (N,C,H,W).  The squared error
    mask*(generated-target)^2 is summed per sample in float32; ``reduction``:
    "mean" (default) = total / number of hole elements (hole pixels x C) in the
    batch, "per_sample" = each sample's own mean, "sum" = total.  An empty
    hole gives 0.

``feature_distance(fake, real, weight=None, reduction)`` -> loss (float32)
    Equation 2 of the paper: sum of weight*(fake-real)^2; weight is an optional
    (N,1,h,w) or (N,C,h,w) per-position weight (the hole mask resized to the
    feature resolution).  ``reduction``: "sum" (default, the paper's), "mean"
    (divided by fake.numel()), "per_sample" ((N,) sums).
"""
from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "per_sample")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def composite_l2_reference(generated: Tensor, target: Tensor, mask: Tensor,
                           reduction: str = "mean") -> tuple[Tensor, Tensor]:
    _check_reduction(reduction)
    composite = mask * generated + (1 - mask) * target
    diff = generated.float() - target.float()
    sq_err = (mask.float() * diff * diff).flatten(1).sum(1)
    if reduction == "sum":
        return composite, sq_err.sum()
    count = mask.float().flatten(1).sum(1) * (generated.shape[1] // mask.shape[1])
    if reduction == "per_sample":
        return composite, sq_err / count.clamp_min(1)
    return composite, sq_err.sum() / count.sum().clamp_min(1)


def feature_distance_reference(fake: Tensor, real: Tensor, weight: Tensor | None = None,
                               reduction: str = "sum") -> Tensor:
    _check_reduction(reduction)
    diff = fake.float() - real.float()
    sq = diff * diff if weight is None else weight.float() * diff * diff
    per_sample = sq.flatten(1).sum(1)
    if reduction == "per_sample":
        return per_sample
    total = per_sample.sum()
    return total / fake.numel() if reduction == "mean" else total
