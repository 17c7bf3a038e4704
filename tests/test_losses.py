"""Loss terms against hand-computed values; gradients reach the generator from every term."""
import dataclasses
import math
import warnings

import pytest
import torch

from nfinpaint.feature_net import VGGFeatures
from nfinpaint.config import PRESETS
from nfinpaint import metrics
from nfinpaint.losses import (adversarial_d_loss, adversarial_g_loss, composite_and_l2, feature_loss,
                              hole_cell_weight, hole_texture_loss, mask_to_feature_weight, ssim_hole_loss, ssim_map)
from nfinpaint.objective import Objective
from nfinpaint.kernels.gram import gram_distance_reference
from nfinpaint.networks import GlobalDiscriminator, Generator, LocalDiscriminator, crop_patches, local_patch_origin

PAPER = Objective.from_config(PRESETS["paper"])   # l1 = l2 = 200, l3 = 0.05 on per-image sums


def _tiny_case():
    # one 1-channel 2x2 image pair; hole = the two left pixels
    generated = torch.tensor([[[[0.5, 0.1], [0.2, 0.9]]]])
    target = torch.tensor([[[[0.1, 0.3], [0.6, 0.4]]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    return generated, target, mask


@pytest.mark.parametrize("use_custom_ops", [False, True])
def test_composite_and_l2_by_hand(use_custom_ops):
    generated, target, mask = _tiny_case()
    composite, loss = composite_and_l2(generated, target, mask, use_custom_ops)
    assert torch.allclose(composite, torch.tensor([[[[0.5, 0.3], [0.2, 0.4]]]]))
    # hole errors: (0.5-0.1)^2 = 0.16, (0.2-0.6)^2 = 0.16 -> mean over 2 hole pixels
    assert math.isclose(float(loss), 0.16, rel_tol=1e-6)
    _, total = composite_and_l2(generated, target, mask, use_custom_ops, reduction="sum")
    assert math.isclose(float(total), 0.32, rel_tol=1e-6)
    batch = (torch.cat([generated, generated]), torch.cat([target, target]), torch.cat([mask, mask]))
    _, per_image = composite_and_l2(*batch, use_custom_ops, reduction="image_sum")
    assert math.isclose(float(per_image), 0.32, rel_tol=1e-6)


def test_adversarial_by_hand_and_stable():
    zero = torch.zeros(3)
    assert math.isclose(float(adversarial_d_loss(zero, zero)), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(float(adversarial_g_loss(zero)), math.log(2), rel_tol=1e-6)
    x = torch.tensor([1.5, -0.5])
    expected_g = torch.log1p(torch.exp(-x)).mean()
    assert torch.allclose(adversarial_g_loss(x), expected_g)
    real, fake = torch.tensor([2.0, 0.3]), torch.tensor([-1.0, 0.7])
    expected_d = torch.log1p(torch.exp(-real)).mean() + torch.log1p(torch.exp(fake)).mean()
    assert torch.allclose(adversarial_d_loss(real, fake), expected_d)
    # far-out logits: the logit form stays finite where sigmoid-then-log gives inf
    big = torch.tensor([-1000.0])
    assert math.isclose(float(adversarial_g_loss(big)), 1000.0, rel_tol=1e-6)
    assert math.isclose(float(adversarial_d_loss(big, -big)), 2000.0, rel_tol=1e-6)   # both wrong
    assert float(adversarial_d_loss(-big, big)) == 0.0                                  # both right
    assert adversarial_g_loss(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32


def test_adversarial_cells_weigh_each_fake_cell_by_its_hole_share():
    """adv_form "cells": every real cell counts once, a fake cell by its weight; against the formula
    written out (softplus), on fresh random maps and weights."""
    real, fake = torch.randn(3, 1, 5, 5) * 3, torch.randn(3, 1, 5, 5) * 3
    weight = torch.rand(3, 1, 5, 5) * (torch.rand(3, 1, 5, 5) > 0.4)
    softplus = torch.nn.functional.softplus           # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    want_d = softplus(-real).mean() + (weight * softplus(fake)).sum() / weight.sum()
    want_g = (weight * softplus(-fake)).sum() / weight.sum()
    assert torch.allclose(adversarial_d_loss(real, fake, weight), want_d, rtol=1e-5)
    assert torch.allclose(adversarial_g_loss(fake, weight), want_g, rtol=1e-5)
    # a cell of weight 0 gets no gradient, whatever its logit
    fake.requires_grad_(True)
    adversarial_g_loss(fake, weight).backward()
    assert torch.all(fake.grad[weight == 0] == 0) and torch.all(fake.grad[weight > 0] != 0)
    # uniform weights are the plain mean; no hole anywhere: nothing to judge, 0 and no NaN
    assert torch.allclose(adversarial_g_loss(fake, torch.full_like(fake, 0.3)), adversarial_g_loss(fake.flatten()))
    assert float(adversarial_g_loss(fake.detach(), torch.zeros_like(fake))) == 0.0


def test_objective_cells_judges_each_discriminator_on_its_own_holes():
    """Objective(adv_form="cells") against the terms written out: block means of each mask as the
    fake cells' weights (the global map over the picture, the local one over its patch)."""
    n, size, patch = 3, 12, 8
    mask = (torch.rand(n, 1, size, size) > 0.6).float()
    local_mask = mask[..., 2:2 + patch, 1:1 + patch]
    glob, loc = torch.randn(2 * n, 1, 3, 3), torch.randn(2 * n, 1, 4, 4)
    softplus = torch.nn.functional.softplus

    def blocks(m, cells):
        k = m.shape[-1] // cells
        return m.reshape(n, 1, cells, k, cells, k).mean(dim=(3, 5))

    def d_term(logits, w):
        return softplus(-logits[:n]).mean() + (w * softplus(logits[n:])).sum() / w.sum()

    cells = dataclasses.replace(PAPER, adv_form="cells")
    want = d_term(glob, blocks(mask, 3)) + d_term(loc, blocks(local_mask, 4))
    assert torch.allclose(cells.discriminator_loss(glob, loc, mask, local_mask), want, rtol=1e-5)
    w = blocks(local_mask, 4)
    assert torch.allclose(cells.adversarial_term(loc[n:], local_mask), (w * softplus(-loc[n:])).sum() / w.sum())
    # the paper's form ignores the masks: one logit a picture, the map's mean
    assert torch.allclose(PAPER.discriminator_loss(glob.mean((1, 2, 3)), loc.mean((1, 2, 3)), mask, local_mask),
                          adversarial_d_loss(glob.mean((1, 2, 3))[:n], glob.mean((1, 2, 3))[n:])
                          + adversarial_d_loss(loc.mean((1, 2, 3))[:n], loc.mean((1, 2, 3))[n:]))
    assert cells.loss_weights()["adv_form"] == "cells" and "adv_form" not in PAPER.loss_weights()
    with pytest.raises(ValueError, match="adv_form must be one of"):
        dataclasses.replace(PAPER, adv_form="pixels")


def test_hole_cell_weight_is_the_hole_share_under_each_cell():
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4, :4] = 1                      # the first cell of a 2x2 map, all of it
    mask[1, :, 0, :] = 1                        # a stroke along the top: an eighth of the top cells
    mask[1, :, 7, 7] = 0.4                      # soft values below 0.5 are not hole
    weight = hole_cell_weight(mask, (2, 2))
    assert torch.equal(weight[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(weight[1, 0], torch.tensor([[0.25, 0.25], [0.0, 0.0]]))


@pytest.mark.parametrize("use_custom_ops", [False, True])
def test_feature_distance_by_hand(use_custom_ops):
    fake = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])       # (1,2,1,2)
    real = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    # squared differences: 1, 0, 4, 1 -> sum 6, mean 1.5
    assert math.isclose(float(feature_loss(fake, real, use_custom_ops=use_custom_ops, reduction="image_sum")), 6.0)
    assert math.isclose(float(feature_loss(fake, real, use_custom_ops=use_custom_ops)), 1.5)
    weight = torch.tensor([[[[1.0, 0.0]]]])                   # only the first position: 1 + 4
    assert math.isclose(float(feature_loss(fake, real, weight=weight, use_custom_ops=use_custom_ops,
                                           reduction="sum")), 5.0)


def test_gram_by_hand():
    fake = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])       # (1,C=2,1,HW=2); K = C*H*W = 4
    real = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]])
    # G_fake = [[1,0],[0,4]]/4, G_real = [[2,2],[2,2]]/4; diff = [[-1,-2],[-2,2]]/4 -> 13/16
    assert math.isclose(float(gram_distance_reference(fake, real)), 13 / 16, rel_tol=1e-6)
    assert math.isclose(float(feature_loss(fake, real, kind="gram")), 13 / 16, rel_tol=1e-6)
    two = torch.cat([fake, real]), torch.cat([real, real])
    assert math.isclose(float(feature_loss(*two, kind="gram")), 13 / 32, rel_tol=1e-6)
    assert math.isclose(float(feature_loss(*two, kind="gram", reduction="sum")), 13 / 16, rel_tol=1e-6)
    with pytest.raises(ValueError, match="weight"):
        feature_loss(fake, real, kind="gram", weight=torch.ones(1, 1, 1, 2))


def test_real_features_get_no_gradient():
    fake = torch.randn(2, 3, 2, 2, requires_grad=True)
    real = torch.randn(2, 3, 2, 2, requires_grad=True)
    for kind in ("feature", "gram"):
        fake.grad = real.grad = None
        feature_loss(fake, real, kind=kind).backward()
        assert fake.grad is not None and real.grad is None


def test_bad_arguments():
    a = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="kind"):
        feature_loss(a, a, kind="style")
    with pytest.raises(ValueError, match="shape"):
        feature_loss(a, torch.zeros(1, 2, 1, 2))
    with pytest.raises(ValueError, match="reduction"):
        composite_and_l2(a, a, a[:, :1], False, reduction="avg")
    with pytest.raises(ValueError, match="unknown"):
        PAPER.generator_loss({"l1": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="reduction"):
        dataclasses.replace(PAPER, reduction="median")


def test_total_generator_loss_by_hand():
    terms = {"l2": torch.tensor(0.5), "adv_global": torch.tensor(0.25), "adv_local": torch.tensor(2.0),
             "feature": torch.tensor(10.0)}
    assert (PAPER.l2, PAPER.adv_global, PAPER.adv_local, PAPER.feature, PAPER.reduction) == (1, 200, 200, 0.05,
                                                                                             "image_sum")
    assert math.isclose(float(PAPER.generator_loss(terms)), 0.5 + 50 + 400 + 0.5)
    assert math.isclose(float(PAPER.generator_loss({"l2": terms["l2"]})), 0.5)
    w = dataclasses.replace(PAPER, l2=2.0, adv_global=0.0, adv_local=1.0, feature=0.1)
    assert math.isclose(float(w.generator_loss(terms)), 1.0 + 2.0 + 1.0)


def test_the_feature_term_in_log_form_and_over_the_hole():
    fake, real = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4, :] = 1                                   # the top half of each image
    plain = Objective.from_config(PRESETS["default"])
    assert math.isclose(float(plain.feature_term(fake, real)), 1.0)
    in_log = dataclasses.replace(plain, feature_form="log")
    assert math.isclose(float(in_log.feature_term(fake, real)), 0.0, abs_tol=1e-7)
    over_hole = dataclasses.replace(plain, feature_region="hole")
    assert math.isclose(float(over_hole.feature_term(fake, real, mask)), 0.5)   # half the cells weigh 1, half 0


def test_mask_to_feature_weight():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 0:4, 0:2] = 1
    weight = mask_to_feature_weight(mask, (2, 2))
    assert torch.allclose(weight, torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]]))


def _hwc(t):
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("shape", [(2, 3, 40, 37), (1, 3, 9, 12)])
def test_ssim_map_is_scikit_images(shape):
    # the map evaluation reports (nfinpaint.metrics wraps skimage.metrics.structural_similarity),
    # borders included, on fresh random pictures
    x = torch.rand(shape, dtype=torch.float64)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    ours = ssim_map(x, y)
    for i in range(shape[0]):
        _, reference = metrics.ssim_map(_hwc(x[i]), _hwc(y[i]))
        assert ours[i].permute(1, 2, 0).numpy() == pytest.approx(reference, abs=1e-10)


def test_ssim_hole_loss_is_one_minus_the_reported_hole_ssim():
    x = torch.rand(3, 3, 32, 24, dtype=torch.float64)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    mask = (torch.rand(3, 1, 32, 24) > 0.6).double()
    mask[2] = 0                                            # no hole: contributes 0, not a NaN
    reported = [1 - metrics.ssim(_hwc(x[i]), _hwc(y[i]), mask[i, 0].numpy() > 0.5) for i in range(2)]
    assert float(ssim_hole_loss(x, y, mask)) == pytest.approx(sum(reported) / 3, abs=1e-12)
    assert float(ssim_hole_loss(y, y, mask)) == pytest.approx(0.0, abs=1e-12)


def test_ssim_hole_loss_gradient():
    x = torch.rand(2, 3, 10, 11, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 10, 11, dtype=torch.float64)
    mask = torch.zeros(2, 1, 10, 11, dtype=torch.float64)
    mask[..., 3:7, 2:8] = 1
    assert torch.autograd.gradcheck(lambda t: ssim_hole_loss(t, y, mask), (x,))
    ssim_hole_loss(x, y.requires_grad_(), mask).backward()
    assert y.grad is None                                   # the target is not trained


def test_the_ssim_term_is_weighted_into_the_generator_loss():
    plain = Objective.from_config(PRESETS["fullres"])
    assert not plain.uses_ssim and "ssim" not in plain.loss_weights()
    with_ssim = Objective.from_config(dataclasses.replace(PRESETS["fullres"], ssim_weight=10.0))
    assert with_ssim.uses_ssim and with_ssim.loss_weights()["ssim"] == 10.0
    terms = {"l2": torch.tensor(-7.0), "ssim": torch.tensor(0.25)}
    assert math.isclose(float(with_ssim.generator_loss(terms)), -7.0 + 2.5)


def _weighted_gram_reference(feat, weight):
    """sum over cells of w * f f^T / (C * sum w), one image at a time (float64)."""
    c = feat.shape[0]
    f = feat.double().reshape(c, -1)
    w = weight.double().reshape(-1)
    return (f * w) @ f.T / (c * w.sum())


def test_hole_texture_loss_against_a_weighted_gram_reference():
    torch.manual_seed(1)
    n, c, h, w = 3, 5, 6, 7
    fake, real = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    mask = torch.zeros(n, 1, 24, 28)
    mask[0, :, 2:14, 3:20] = 1
    mask[1, :, 5:9, 1:27] = 1
    mask[2, :, 20:24, 0:5] = 1
    weight = mask_to_feature_weight(mask, (h, w))
    expected = torch.stack([(_weighted_gram_reference(fake[i], weight[i]) - _weighted_gram_reference(real[i], weight[i]))
                            .square().sum() for i in range(n)]).mean()
    got = hole_texture_loss(fake, real, mask)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-9)
    # only the hole counts: features outside it may change freely
    outside = (weight == 0).expand(n, c, h, w)
    moved = torch.where(outside, torch.randn(n, c, h, w), fake)
    torch.testing.assert_close(hole_texture_loss(moved, real, mask), got)


def test_hole_texture_loss_does_not_ask_where_the_texture_goes():
    # a texture shifted inside the hole has the same Gram matrix; the pixel-aligned feature term sees it
    torch.manual_seed(2)
    real = torch.zeros(1, 4, 8, 8)
    real[..., 2:6, 2:6] = torch.randn(1, 4, 4, 4)
    shifted = torch.zeros_like(real)
    shifted[..., 2:6, 2:6] = real[..., 2:6, 2:6].roll(1, dims=-1)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert float(hole_texture_loss(shifted, real, mask)) < 1e-10
    assert float(feature_loss(shifted, real)) > 0.1
    with pytest.raises(ValueError, match="needs a hole in every image"):
        hole_texture_loss(real, real, torch.zeros(1, 1, 32, 32))


def test_the_texture_term_is_weighted_into_the_generator_loss():
    plain = Objective.from_config(PRESETS["fullres"])
    assert not plain.uses_texture and "texture" not in plain.loss_weights()
    textured = Objective.from_config(dataclasses.replace(PRESETS["fullres"], texture_weight=0.2))
    assert textured.uses_texture and textured.loss_weights()["texture"] == 0.2
    feat_fake, feat_real = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.ones(2, 1, 16, 16)
    term = textured.texture_term(feat_fake, feat_real, mask)
    torch.testing.assert_close(term, hole_texture_loss(feat_fake, feat_real, mask).log())
    assert math.isclose(float(textured.generator_loss({"l2": torch.tensor(-7.0), "texture": term})),
                        -7.0 + 0.2 * float(term), rel_tol=1e-6)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = VGGFeatures(weights="random")
    return Generator(8), GlobalDiscriminator(8), LocalDiscriminator(8), vgg


@pytest.mark.parametrize("term", ["l2", "adv_global", "adv_local", "feature", "gram", "ssim", "texture"])
def test_gradients_reach_the_generator_from_every_term(tiny_model, term):
    g, gd, ld, vgg = tiny_model
    g.train()
    g.zero_grad(set_to_none=True)
    target = torch.rand(4, 3, 8, 8)
    mask = torch.zeros(4, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    generated = g(target * (1 - mask), mask)
    composite, l2 = composite_and_l2(generated, target, mask, use_custom_ops=False)
    if term == "l2":
        loss = l2
    elif term == "adv_global":
        loss = adversarial_g_loss(gd(composite))
    elif term == "adv_local":
        loss = adversarial_g_loss(ld(crop_patches(composite, local_patch_origin(mask, 8), 8)))
    elif term == "ssim":
        loss = ssim_hole_loss(composite, target, mask)
    elif term == "texture":
        loss = hole_texture_loss(vgg(composite), vgg(target), mask)
    else:
        kind = "feature" if term == "feature" else "gram"
        loss = feature_loss(vgg(composite), vgg(target), kind=kind)
    objective = dataclasses.replace(PAPER, ssim=1.0, texture=1.0)
    total = objective.generator_loss({term if term != "gram" else "feature": loss})
    total.backward()
    grads = [p.grad for p in g.parameters()]
    assert all(gr is not None for gr in grads), "some generator parameter got no gradient"
    assert g.encoder[0][0].weight.grad.abs().sum() > 0 and g.to_rgb.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_losses_compile_without_graph_breaks():
    def objective(generated, target, mask, logits):
        composite, l2 = composite_and_l2(generated, target, mask, use_custom_ops=False)
        feat = feature_loss(composite, target, kind="feature", weight=mask_to_feature_weight(mask, (4, 4)))
        gram = feature_loss(composite, target, kind="gram")
        return PAPER.generator_loss({"l2": l2, "adv_global": adversarial_g_loss(logits), "feature": feat + gram})
    args = (torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float(), torch.randn(2))
    compiled = torch.compile(objective, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), objective(*args))


def test_custom_ops_path_requires_the_extension(monkeypatch):
    from nfinpaint import _extension, ops

    def missing():
        raise RuntimeError("nfinpaint's C++/CUDA operators (nfinpaint._C) are not built")
    monkeypatch.setattr(_extension, "require", missing)
    monkeypatch.setattr(ops, "_BUILT", False)  # as if `import nfinpaint._C` had failed
    generated, target, mask = _tiny_case()
    with pytest.raises(RuntimeError, match="not built"):
        composite_and_l2(generated, target, mask, use_custom_ops=True)
    with pytest.raises(RuntimeError, match="not built"):
        feature_loss(generated, target, use_custom_ops=True)
    composite_and_l2(generated, target, mask, use_custom_ops=False)       # the reference path needs nothing


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_gram_custom_kernel_on_cuda_matches_reference(dtype, tol):
    torch.manual_seed(0)
    fake = torch.randn(4, 256, 6, 6, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    real = torch.randn(4, 256, 6, 6, device="cuda", dtype=dtype)
    fake.requires_grad_(True)
    ours = feature_loss(fake, real, kind="gram", use_custom_ops=True)
    (grad,) = torch.autograd.grad(ours, fake)
    ref_in = fake.detach().float().requires_grad_(True)
    ref = gram_distance_reference(ref_in, real.float())
    (ref_grad,) = torch.autograd.grad(ref, ref_in)
    torch.testing.assert_close(ours.float(), ref, rtol=tol, atol=tol * float(ref.abs()))
    torch.testing.assert_close(grad.float(), ref_grad, rtol=tol, atol=tol * float(ref_grad.abs().max()))
