"""The training objective: equation 3's terms, their weights, forms and reductions, as one value.

    generator:      L = l2 * L2 + adv_global * Ladv_global + adv_local * Ladv_local + feature * Ln
                        + ssim * (1 - hole SSIM) + texture * log(hole Gram distance)
                                                          (the last two beyond the paper; 0 in its presets)
    discriminators: BCE(real, 1) + BCE(fake, 0), global + local (equation 1); with adv_form "cells"
                    per cell of each discriminator's map, a fake cell weighted by its hole share

:class:`Objective` is built from a :class:`nfinpaint.config.TrainConfig`
(``Objective.from_config``): the config's fields and presets are the only
place its values and defaults are defined (the ``paper`` preset holds the
paper's l1 = l2 = 200, l3 = 0.05 on per-image sums).  Each term is computed by
:mod:`nfinpaint.losses`; this module decides which, in which form and with
which weight.  ``loss_weights()`` is what a run records in its exported
generator's meta.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from nfinpaint import losses
from nfinpaint.config import ADV_FORMS

TERMS = losses.TERMS
WholeMean = Callable[[Tensor], Tensor]   # a detached per-process mean -> the whole step's batch's


def log_of_mean(term: Tensor, whole_mean: WholeMean | None = None) -> Tensor:
    """The log of a batch-mean term.  ``whole_mean``: where the step's batch is split over processes
    (torchrun), the mean of a value over all of them.  Each process's loss is then log(M) + (term -
    term.detach()) / M, M the whole batch's mean: its value is the whole batch's log, and DDP's mean of
    the processes' gradients is the gradient of log(M).  The log of each process's own share, averaged,
    was another objective, which changed with the number of processes."""
    term = term.clamp_min(1e-12)
    if whole_mean is None:
        return term.log()
    mean = whole_mean(term.detach())
    return mean.log() + (term - term.detach()) / mean


@dataclass(frozen=True)
class Objective:
    """The weights of equation 3 (by term name), the reduction of the L2 and feature terms, the L2's
    and the feature term's forms, and whether the fused operators compute them."""

    l2: float
    adv_global: float
    adv_local: float
    feature: float
    reduction: str              # mean | image_sum | sum (nfinpaint.losses)
    l2_form: str = "mse"        # mse | log (losses.composite_and_l2)
    feature_kind: str = "feature"   # feature (equation 2) | gram
    feature_form: str = "plain"     # plain | log (the logarithm of the term: scale-free)
    feature_region: str = "image"   # image | hole (equation 2 weighted by each feature cell's hole share)
    use_custom_ops: bool = False
    ssim: float = 0.0               # weight of 1 - hole SSIM (losses.ssim_hole_loss)
    texture: float = 0.0            # weight of the log hole Gram distance (losses.hole_texture_loss)
    adv_form: str = "mean"          # mean | cells (nfinpaint.config.ADV_FORMS)

    def __post_init__(self):
        losses.check_reduction(self.reduction)
        if self.adv_form not in ADV_FORMS:
            raise ValueError(f"adv_form must be one of {ADV_FORMS}, got {self.adv_form!r}")

    @classmethod
    def from_config(cls, config) -> "Objective":
        """The objective of a :class:`nfinpaint.config.TrainConfig`."""
        return cls(config.l2_weight, config.adv_global_weight, config.adv_local_weight, config.feature_weight,
                   reduction=config.loss_reduction, l2_form=config.l2_form, feature_kind=config.feature_kind,
                   feature_form=config.feature_form, feature_region=config.feature_region,
                   use_custom_ops=config.use_custom_ops, ssim=config.ssim_weight,
                   texture=config.texture_weight, adv_form=config.adv_form)

    def loss_weights(self) -> dict:
        """The weights and reduction as a run records them (``loss_weights`` in the generator's meta)."""
        weights = {"l2": self.l2, "adv_global": self.adv_global, "adv_local": self.adv_local,
                   "feature": self.feature, "reduction": self.reduction}
        extra = {name: getattr(self, name) for name in ("ssim", "texture") if getattr(self, name)}
        if self.adv_cells:
            extra["adv_form"] = self.adv_form
        return {**weights, **extra}

    @property
    def uses_features(self) -> bool:
        return self.feature > 0

    @property
    def uses_ssim(self) -> bool:
        return self.ssim > 0

    @property
    def uses_texture(self) -> bool:
        return self.texture > 0

    @property
    def reads_features(self) -> bool:
        """Whether a term reads the feature network (the feature or the texture term)."""
        return self.uses_features or self.uses_texture

    # -- the terms ----------------------------------------------------------------------------

    def reconstruction(self, generated: Tensor, real: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(composite, L2)``: the generation composited into ``real``'s known pixels, and the L2 term
        over the hole (the gradient reaches ``generated`` through both)."""
        return losses.composite_and_l2(generated.float(), real, mask, self.use_custom_ops,
                                       reduction=self.reduction, form=self.l2_form)

    def feature_term(self, feat_fake: Tensor, feat_real: Tensor, mask: Tensor | None = None,
                     whole_mean: WholeMean | None = None) -> Tensor:
        """Ln between the feature maps of the composite and of the real image (``mask``: the hole mask,
        used when ``feature_region`` is "hole"; ``whole_mean``: :func:`log_of_mean`'s, for the log form)."""
        weight = None
        if self.feature_region == "hole":
            weight = losses.mask_to_feature_weight(mask, tuple(feat_fake.shape[-2:]))
        term = losses.feature_loss(feat_fake.float(), feat_real.float(), kind=self.feature_kind, weight=weight,
                                   use_custom_ops=self.use_custom_ops, reduction=self.reduction)
        return log_of_mean(term, whole_mean) if self.feature_form == "log" else term

    def texture_term(self, feat_fake: Tensor, feat_real: Tensor, mask: Tensor,
                     whole_mean: WholeMean | None = None) -> Tensor:
        """The log of the hole Gram distance between the composite's and the real image's features
        (log form: scale-free, as the feature term's, so its weight is a share of the gradient)."""
        term = losses.hole_texture_loss(feat_fake, feat_real, mask, use_custom_ops=self.use_custom_ops)
        return log_of_mean(term, whole_mean)

    @staticmethod
    def ssim_term(composite: Tensor, real: Tensor, mask: Tensor) -> Tensor:
        """1 - the composite's hole SSIM against the real image (batch mean)."""
        return losses.ssim_hole_loss(composite, real, mask)

    @property
    def adv_cells(self) -> bool:
        """Whether the discriminators are judged a map cell at a time (``adv_form = "cells"``)."""
        return self.adv_form == "cells"

    def cell_weight(self, logits: Tensor, mask: Tensor) -> Tensor | None:
        """The weights of the cells of ``logits``, a discriminator's map of fills whose holes ``mask``
        gives (what that discriminator saw of them), or None when a logit is a picture's."""
        if not self.adv_cells:
            return None
        return losses.hole_cell_weight(mask, tuple(logits.shape[-2:]))

    def adversarial_term(self, fake_logits: Tensor, mask: Tensor) -> Tensor:
        """The generator's side of equation 1 for one discriminator's logits on the composite (``mask``:
        the hole mask of what that discriminator saw)."""
        return losses.adversarial_g_loss(fake_logits, self.cell_weight(fake_logits, mask))

    def discriminator_loss(self, global_logits: Tensor, local_logits: Tensor, global_mask: Tensor,
                           local_mask: Tensor) -> Tensor:
        """Both discriminators' loss; each logits tensor holds the real images' first, then the fakes';
        the masks are the holes of the fakes each discriminator saw."""
        total = 0
        for logits, mask in ((global_logits, global_mask), (local_logits, local_mask)):
            n = logits.shape[0] // 2
            total = total + losses.adversarial_d_loss(logits[:n], logits[n:], self.cell_weight(logits[n:], mask))
        return total

    def generator_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted sum of the terms given (any subset of :data:`TERMS`: e.g. l2 and feature only
        during the warm-up)."""
        unknown = set(terms) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {TERMS}")
        if not terms:
            raise ValueError("no loss terms given")
        total: Tensor | None = None
        for name in TERMS:
            if name in terms:
                part = getattr(self, name) * terms[name].float()
                total = part if total is None else total + part
        return total

