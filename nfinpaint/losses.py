"""The terms of the paper's objective, L = L2 + l1*Ladv_global + l2*Ladv_local + l3*Ln (equation 3);
their weights, forms and sum are :class:`nfinpaint.objective.Objective`.

Every term has a plain PyTorch path (the references in ``nfinpaint.ops`` and
``nfinpaint.kernels.gram``); ``use_custom_ops=True`` routes the L2/composite
and the feature distance through the compiled operators and the Gram distance
through its Triton kernel on CUDA.

Reductions (``reduction=`` of :func:`composite_and_l2` and :func:`feature_loss`):

* ``"mean"``: per element (hole elements for L2, feature elements for Ln);
  scale-free, the usual deep-learning reading.
* ``"image_sum"``: the sum over each image's elements (equation 2 literally,
  and the L2 as a sum over the hole), averaged over the batch.  With the
  paper's weights (200, 200, 0.05) this keeps the terms within ~2 orders of
  magnitude of each other, which "mean" does not (see docs/model.md), so
  the ``paper`` preset (``nfinpaint.config.PRESETS``) uses it.
* ``"sum"``: over the whole batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nfinpaint import ops
from nfinpaint.config import L2_FORMS, LOSS_REDUCTIONS
from nfinpaint.kernels import gram

TERMS = ("l2", "adv_global", "adv_local", "feature", "ssim", "texture")
# The log-form L2's floor: an image's hole MSE below it (PSNR above 50 dB) no longer counts.
LOG_L2_EPS = 1e-5


def check_reduction(reduction: str) -> None:
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")


# ----------------------------------------------------------------------------- L2 + composite

def composite_and_l2(generated: Tensor, target: Tensor, mask: Tensor, use_custom_ops: bool,
                     reduction: str = "mean", form: str = "mse") -> tuple[Tensor, Tensor]:
    """``composite = mask*generated + (1-mask)*target`` and the L2 over the hole.

    ``form="mse"`` is the paper's L2 (reduced per ``reduction``); ``form="log"``
    is the batch mean of ``ln(hole MSE + LOG_L2_EPS)`` per image, i.e. it
    maximises the mean per-image hole PSNR that evaluation reports, so smooth
    crops, where a small error is a large PSNR loss, weigh as much as busy ones
    (beyond the paper; ``reduction`` does not apply).
    Gradients reach ``generated`` through both outputs (the composite carries
    the adversarial and feature terms back into the hole).
    """
    check_reduction(reduction)
    if form not in L2_FORMS:
        raise ValueError(f"form must be one of {L2_FORMS}, got {form!r}")
    op_reduction = "per_sample" if form == "log" else "sum" if reduction == "image_sum" else reduction
    if use_custom_ops:
        composite, loss = ops.composite_l2(generated, target, mask, reduction=op_reduction)
    else:
        composite, loss = ops.composite_l2_reference(generated, target, mask, reduction=op_reduction)
    if form == "log":
        return composite, torch.log(loss + LOG_L2_EPS).mean()
    if reduction == "image_sum":
        loss = loss / generated.shape[0]
    return composite, loss


# ----------------------------------------------------------------------------- SSIM

# scikit-image's structural_similarity defaults, which nfinpaint.metrics reports: a 7x7 uniform window,
# sample covariances, K1 = 0.01, K2 = 0.03, data range 1.
SSIM_WINDOW = 7
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _symmetric_pad(t: Tensor, pad: int) -> Tensor:
    """Pad the last two dims by mirroring with the edge pixel repeated (scipy.ndimage's "reflect",
    which scikit-image's SSIM uses; torch's "reflect" leaves the edge out)."""
    t = torch.cat([t[..., :pad].flip(-1), t, t[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([t[..., :pad, :].flip(-2), t, t[..., -pad:, :].flip(-2)], dim=-2)


def ssim_map(x: Tensor, y: Tensor) -> Tensor:
    """The SSIM map (N,C,H,W) of ``x`` against ``y`` as scikit-image computes it (uniform 7x7 window,
    mirrored at the border, sample covariances), differentiable in both.  Images need at least
    :data:`SSIM_WINDOW` // 2 pixels a side."""
    pad = SSIM_WINDOW // 2
    area = SSIM_WINDOW * SSIM_WINDOW
    unbias = area / (area - 1)

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(_symmetric_pad(t, pad), SSIM_WINDOW, stride=1)

    mx, my = mean(x), mean(y)
    vx = unbias * (mean(x * x) - mx * mx)
    vy = unbias * (mean(y * y) - my * my)
    cov = unbias * (mean(x * y) - mx * my)
    return ((2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))


def ssim_hole_loss(composite: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Batch mean of ``1 - hole SSIM``: one minus the SSIM map's mean over each image's hole pixels (all
    channels), what evaluation reports as hole SSIM; ``mask`` (N,1,H,W), 1 = hole.  The windows that
    straddle the hole's border count, so a fill that does not continue its surroundings loses.  An
    image without a hole contributes 0.  ``target`` gets no gradient."""
    dtype = torch.promote_types(composite.dtype, torch.float32)    # bf16 under autocast: in float32
    score = ssim_map(composite.to(dtype), target.detach().to(dtype))
    hole = (mask > 0.5).float().expand_as(score)
    per_image = (score * hole).flatten(1).sum(1) / hole.flatten(1).sum(1).clamp_min(1)
    has_hole = hole.flatten(1).amax(1)
    return (has_hole * (1 - per_image)).mean()


# ----------------------------------------------------------------------------- adversarial

def _weighted_bce(logits: Tensor, target: float, weight: Tensor | None) -> Tensor:
    """The mean of BCE(logits, target) over every element, or its ``weight``-weighted mean (0 where the
    weights sum to 0: nothing to judge)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target),
                                             reduction="mean" if weight is None else "none")
    if weight is None:
        return bce
    weight = weight.float().expand_as(bce)
    return (weight * bce).sum() / weight.sum().clamp_min(1e-12)


def adversarial_d_loss(real_logits: Tensor, fake_logits: Tensor, fake_weight: Tensor | None = None) -> Tensor:
    """Discriminator side of equation 1 (to minimise): BCE(real, 1) + BCE(fake, 0), batch means.

    Logit form (``binary_cross_entropy_with_logits``): no sigmoid-then-log overflow.  ``fake_weight``
    (cell logits, ``adv_form = "cells"``): how much each fake cell counts, its hole share
    (:func:`hole_cell_weight`); every real cell counts once.
    """
    return _weighted_bce(real_logits, 1.0, None) + _weighted_bce(fake_logits, 0.0, fake_weight)


def adversarial_g_loss(fake_logits: Tensor, weight: Tensor | None = None) -> Tensor:
    """Generator side, non-saturating form: BCE(fake, 1) = -log sigmoid(fake), batch mean (``weight``:
    each cell's, as ``fake_weight`` of :func:`adversarial_d_loss`)."""
    return _weighted_bce(fake_logits, 1.0, weight)


def hole_cell_weight(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Hole mask (N,1,H,W) -> (N,1,h,w): each cell of a discriminator's h x w map weighted by the share
    of hole pixels under it, so a fill's cells count as fake by how much of the fill they see (a
    stroke 4 px wide still counts where a cell holds some of it).  The area average, as the feature
    term's :func:`mask_to_feature_weight`, of the mask's hole pixels."""
    return mask_to_feature_weight(mask > 0.5, size)


# ----------------------------------------------------------------------------- neural features

def feature_loss(feat_fake: Tensor, feat_real: Tensor, kind: str = "feature", weight: Tensor | None = None,
                 use_custom_ops: bool = False, reduction: str = "mean") -> Tensor:
    """Neural-feature loss between feature maps (N,C,h,w) of the generated and the real image.

    ``kind="feature"``: equation 2, sum of ``weight*(fake-real)^2`` (``weight``:
    optional (N,1,h,w) or (N,C,h,w), e.g. :func:`mask_to_feature_weight`).
    ``kind="gram"``: the Gram (style) distance, per image by definition, so
    "mean" and "image_sum" both average it over the batch.
    ``feat_real`` is the target: no gradient flows into it.
    """
    check_reduction(reduction)
    if feat_fake.shape != feat_real.shape:
        raise ValueError(f"feature maps differ in shape: {tuple(feat_fake.shape)} vs {tuple(feat_real.shape)}")
    feat_real = feat_real.detach()
    if kind == "feature":
        op_reduction = "mean" if reduction == "mean" else "sum"
        fn = ops.feature_distance if use_custom_ops else ops.feature_distance_reference
        loss = fn(feat_fake, feat_real, weight, reduction=op_reduction)
        return loss / feat_fake.shape[0] if reduction == "image_sum" else loss
    if kind == "gram":
        if weight is not None:
            raise ValueError("weight applies to kind='feature' only; the Gram distance compares whole maps")
        gram_reduction = "sum" if reduction == "sum" else "mean"
        # The Triton kernel runs on GPUs; on the CPU the bmm reference is the fast path.
        if use_custom_ops and feat_fake.is_cuda:
            return gram.gram_distance(feat_fake, feat_real, reduction=gram_reduction)
        return gram.gram_distance_reference(feat_fake, feat_real, reduction=gram_reduction)
    raise ValueError(f"kind must be 'feature' or 'gram', got {kind!r}")


def hole_texture_loss(feat_fake: Tensor, feat_real: Tensor, mask: Tensor, use_custom_ops: bool = False) -> Tensor:
    """The Gram (style) distance between the fill's and the truth's features inside the hole, batch mean.

    Each feature cell counts by its share of hole pixels (:func:`mask_to_feature_weight`), so the
    Gram matrices are the second moments of the hole's features, sum(w f f^T) / (C sum(w)): a
    statistic of texture that does not ask *where* a stroke of texture goes, which a pixel loss does
    (its optimum, the conditional mean, is the smooth blob).  Computed as the plain Gram distance of
    the maps scaled by sqrt(w / mean(w)), so the Triton kernel serves it on CUDA.
    """
    if feat_fake.shape != feat_real.shape:
        raise ValueError(f"feature maps differ in shape: {tuple(feat_fake.shape)} vs {tuple(feat_real.shape)}")
    weight = mask_to_feature_weight(mask, tuple(feat_fake.shape[-2:]))
    mean = weight.mean((1, 2, 3), keepdim=True)
    if bool((mean <= 0).any()):
        raise ValueError("the texture term needs a hole in every image of the batch")
    scale = (weight / mean).sqrt()
    return feature_loss(feat_fake.float() * scale, feat_real.float() * scale, kind="gram",
                        use_custom_ops=use_custom_ops)


def mask_to_feature_weight(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Hole mask (N,1,H,W) -> (N,1,h,w) weight at feature resolution: the hole fraction
    of each feature cell (area average), for a feature loss that looks only at the hole."""
    return F.adaptive_avg_pool2d(mask.float(), size)
