"""nfinpaint.metrics against values computed by hand from the definitions."""
import math

import numpy as np
import pytest
import torch

from nfinpaint import metrics

C1 = (0.01 * 1.0) ** 2  # SSIM constants for data_range 1
C2 = (0.03 * 1.0) ** 2


def _pair(h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(3, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    mask = torch.zeros(1, h, w, dtype=torch.float64)
    mask[:, 1:4, 2:6] = 1
    return pred, target, mask


def test_psnr_whole_image_is_ten_log_of_inverse_mse():
    pred, target, _ = _pair()
    mse = float(((pred - target) ** 2).mean())
    assert metrics.psnr(pred, target) == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)


def test_psnr_hole_uses_only_hole_pixels():
    pred, target, mask = _pair(seed=1)
    pred_far = torch.where(mask > 0, pred, torch.rand_like(pred))   # outside the hole: anything
    hole = mask[0] > 0
    mse = float(((pred - target)[:, hole] ** 2).mean())
    expected = 10 * math.log10(1.0 / mse)
    assert metrics.psnr(pred, target, mask) == pytest.approx(expected, rel=1e-12)
    assert metrics.psnr(pred_far, target, mask) == pytest.approx(expected, rel=1e-12)


def test_psnr_full_and_hole_relation_when_known_pixels_are_exact():
    pred, target, mask = _pair(seed=2)
    composite = torch.where(mask > 0, pred, target)
    fraction = float(mask.mean())
    # MSE_full = MSE_hole * fraction  =>  PSNR_full = PSNR_hole - 10 log10(fraction)
    assert metrics.psnr(composite, target) == pytest.approx(
        metrics.psnr(composite, target, mask) - 10 * math.log10(fraction), rel=1e-10)


def test_psnr_of_a_perfect_fill_is_capped():
    _, target, mask = _pair()
    assert metrics.psnr(target.clone(), target, mask) == metrics.PSNR_CAP
    assert metrics.psnr(target.clone(), target) == metrics.PSNR_CAP


def test_ssim_constant_images_match_formula():
    a, b = 0.3, 0.7
    pred = torch.full((3, 9, 9), a, dtype=torch.float64)
    target = torch.full((3, 9, 9), b, dtype=torch.float64)
    # zero variances and covariance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) * C2 / C2
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    mask = torch.zeros(1, 9, 9)
    mask[:, 0:3, 0:3] = 1    # a corner hole: border pixels count for the hole mean
    assert metrics.ssim(pred, target) == pytest.approx(expected, rel=1e-9)
    assert metrics.ssim(pred, target, mask) == pytest.approx(expected, rel=1e-9)


def test_ssim_single_window_matches_hand_formula():
    # A 7x7 image has exactly one full 7x7 window (the centre pixel after scikit-image's
    # border crop); compute its SSIM by hand with the sample (N-1) covariance.
    rng = np.random.default_rng(3)
    x = rng.random((7, 7, 3))
    y = np.clip(x + 0.2 * rng.standard_normal((7, 7, 3)), 0, 1)
    values = []
    for c in range(3):
        a, b = x[..., c].ravel(), y[..., c].ravel()
        mx, my = a.mean(), b.mean()
        vx, vy = a.var(ddof=1), b.var(ddof=1)
        cov = ((a - mx) * (b - my)).sum() / (a.size - 1)
        values.append((2 * mx * my + C1) * (2 * cov + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2)))
    assert metrics.ssim(y, x) == pytest.approx(np.mean(values), rel=1e-9)
    mask = np.zeros((7, 7))
    mask[3, 3] = 1
    assert metrics.ssim(y, x, mask) == pytest.approx(np.mean(values), rel=1e-9)


def test_ssim_identical_is_one():
    _, target, mask = _pair(seed=4)
    assert metrics.ssim(target, target) == pytest.approx(1.0)
    assert metrics.ssim(target, target, mask) == pytest.approx(1.0)


def test_tensor_and_array_inputs_agree():
    pred, target, mask = _pair(seed=5)
    hwc = lambda t: t.permute(1, 2, 0).numpy()
    assert metrics.image_metrics(pred, target, mask) == pytest.approx(
        metrics.image_metrics(hwc(pred), hwc(target), mask[0].numpy()))


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_pictures_are_scored_on_their_full_scale(dtype, top):
    """What Inpainter returns for a uint8 picture scored as floats 0-255 came out ~-15 dB, silently."""
    g = np.random.default_rng()
    truth = g.integers(0, top + 1, (9, 11, 3)).astype(dtype)
    filled = np.clip(truth.astype(np.int64) + g.integers(-top // 20, top // 20 + 1, truth.shape), 0, top).astype(dtype)
    hole = np.zeros((9, 11), bool)
    hole[2:7, 3:9] = True
    as_floats = metrics.image_metrics(filled / top, truth / top, hole)
    assert metrics.image_metrics(filled, truth, hole) == pytest.approx(as_floats, rel=1e-12)
    # a tensor too, against a float picture
    tensor = torch.from_numpy(filled).permute(2, 0, 1)
    assert metrics.psnr(tensor, truth / top, hole) == pytest.approx(as_floats["psnr_hole"], rel=1e-12)
    with pytest.raises(ValueError, match="int32 image"):
        metrics.psnr(truth.astype(np.int32), truth / top, hole)
    with pytest.raises(ValueError, match="bool image"):
        metrics.ssim(truth > top // 2, truth / top)


def test_l1_by_hand():
    pred, target, mask = _pair(seed=6)
    hole = mask[0] > 0
    assert metrics.l1(pred, target) == pytest.approx(float((pred - target).abs().mean()))
    assert metrics.l1(pred, target, mask) == pytest.approx(float((pred - target)[:, hole].abs().mean()))


def test_image_metrics_has_every_key_and_consistent_values():
    pred, target, mask = _pair(seed=7)
    row = metrics.image_metrics(pred, target, mask)
    assert set(row) == set(metrics.QUALITY_METRICS)
    assert row["psnr_hole"] == pytest.approx(metrics.psnr(pred, target, mask))
    assert row["ssim_hole"] == pytest.approx(metrics.ssim(pred, target, mask))
    assert row["ssim_full"] == pytest.approx(metrics.ssim(pred, target))


@pytest.mark.parametrize("shape, expected", [((24, 24), 7), ((5, 9), 5), ((6, 8), 5), ((3, 3), 3), ((4, 100), 3)])
def test_win_size(shape, expected):
    assert metrics.win_size_for(*shape) == expected


def test_bad_inputs_are_clear_errors():
    pred, target, mask = _pair()
    with pytest.raises(ValueError, match="no hole"):
        metrics.psnr(pred, target, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="does not match"):
        metrics.ssim(pred, target, torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.l1(pred, target[:, :5])
    with pytest.raises(ValueError, match="at least 3x3"):
        metrics.win_size_for(2, 10)


def test_summary_mean_and_confidence_interval_by_hand():
    s = metrics.summarize([1.0, 2.0, 3.0, 4.0])
    t_975_3 = 3.182446305284263          # Student's t, 97.5% quantile, 3 degrees of freedom
    assert s.mean == 2.5 and s.n == 4
    assert s.ci95 == pytest.approx(t_975_3 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-9)
    single = metrics.summarize([5.0])
    assert single.mean == 5.0 and math.isnan(single.ci95)
    with pytest.raises(ValueError):
        metrics.summarize([])


def test_paired_differences_over_rows_and_over_groups():
    rng = np.random.default_rng()
    ours = [{"v": float(x)} for x in rng.normal(1.0, 1.0, 12)]
    other = [{"v": float(x)} for x in rng.normal(0.0, 1.0, 12)]
    groups = ["a", "b", "c"] * 4                     # interleaved, as crops of three pictures need not be
    diffs = np.array([a["v"] - b["v"] for a, b in zip(ours, other)])
    over_rows = metrics.paired(ours, other, "v")
    assert over_rows.n == 12 and over_rows.mean == pytest.approx(diffs.mean(), rel=1e-12)
    by_group = metrics.paired(ours, other, "v", groups)
    means = np.array([diffs[0::3].mean(), diffs[1::3].mean(), diffs[2::3].mean()])
    t_975_2 = 4.302652729911275          # Student's t, 97.5% quantile, 2 degrees of freedom
    assert by_group.n == 3 and by_group.mean == pytest.approx(means.mean(), rel=1e-12)
    assert by_group.ci95 == pytest.approx(t_975_2 * means.std(ddof=1) / math.sqrt(3), rel=1e-9)
    with pytest.raises(ValueError):
        metrics.paired(ours, other[:-1], "v")        # rows that do not pair up


def test_batch_psnr_is_the_per_image_psnr():
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    target = torch.rand(5, 3, 12, 10, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    pred[3] = target[3]                                       # a perfect fill: capped, not infinite
    mask = (torch.rand(5, 1, 12, 10, generator=g) > 0.6).float()
    mask[:, :, 0, 0] = 1                                      # every image has a hole
    hole = metrics.batch_psnr(pred, target, mask)
    whole = metrics.batch_psnr(pred, target)
    for i in range(5):
        assert float(hole[i]) == pytest.approx(metrics.psnr(pred[i], target[i], mask[i]), abs=1e-3)
        assert float(whole[i]) == pytest.approx(metrics.psnr(pred[i], target[i]), abs=1e-3)
    assert float(hole[3]) == pytest.approx(metrics.PSNR_CAP)


def test_batch_psnr_of_an_image_without_hole_is_nan():
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    target = torch.rand(3, 3, 9, 11, generator=g)
    pred = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    mask = (torch.rand(3, 1, 9, 11, generator=g) > 0.5).float()
    mask[:, :, 0, 0] = 1
    mask[1] = 0                                               # no hole pixel: undefined, not a perfect fill
    hole = metrics.batch_psnr(pred, target, mask)
    assert math.isnan(float(hole[1]))
    for i in (0, 2):
        assert float(hole[i]) == pytest.approx(metrics.psnr(pred[i], target[i], mask[i]), abs=1e-3)
    with pytest.raises(ValueError, match="no hole"):
        metrics.psnr(pred[1], target[1], mask[1])
