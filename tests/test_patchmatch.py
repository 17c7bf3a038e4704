"""PatchMatch: nearest-neighbour field and hole filling (CPU; CUDA vs CPU on a GPU)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _layouts import relayout
from _refusals import assert_meta_refuses_as_cpu
from nfinpaint import _extension

pytestmark = pytest.mark.skipif(not _extension.is_built(), reason="nfinpaint._C is not built")

pm = pytest.importorskip("nfinpaint.patchmatch")


def smooth_image(h, w, seed, blur=5):
    """Random smooth colour image (3, h, w): PatchMatch's test bed (pure noise has no gradient to follow)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h + 2 * blur, w + 2 * blur, generator=g)
    img = F.avg_pool2d(noise, 2 * (blur // 2) + 1, 1, blur // 2)[0, :, blur:blur + h, blur:blur + w]
    return ((img - img.min()) / (img.max() - img.min())).contiguous()


def periodic_texture(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([0.5 + 0.4 * np.sin(2 * np.pi * xx / 8), 0.5 + 0.4 * np.cos(2 * np.pi * yy / 6),
                     0.5 + 0.2 * np.sin(2 * np.pi * (xx + yy) / 12)], -1).astype(np.float32)


def hwc(chw):
    return chw.permute(1, 2, 0).contiguous()


# ---------------------------------------------------------------- nnf
@pytest.mark.parametrize("shift", [(3, -2), (-5, 4)])
def test_nnf_recovers_shift(shift):
    sy, sx = shift
    base = smooth_image(80, 80, seed=sy * 31 + sx)
    target = base[:, 8:72, 8:72].contiguous()                      # target(y, x) = base(y+8, x+8)
    source = base[:, 8 + sy:72 + sy, 8 + sx:72 + sx].contiguous()  # source(y, x) = base(y+8+sy, x+8+sx)
    field, dist = pm.nnf(target, source, patch_size=5, iterations=5, seed=3)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    exp_y, exp_x = ys - sy, xs - sx
    reachable = (exp_y >= 2) & (exp_y < 62) & (exp_x >= 2) & (exp_x < 62)  # true match is a usable centre
    hit = (field[..., 0] == exp_y) & (field[..., 1] == exp_x)
    assert hit[reachable].float().mean() > 0.97
    assert dist[hit & reachable].max() < 1e-10


@pytest.mark.parametrize("patch_size", [3, 5, 7])
def test_nnf_distances_match_reference(patch_size):
    g = torch.Generator().manual_seed(100 + patch_size)
    target = torch.rand(3, 23, 31, generator=g)
    source = torch.rand(3, 19, 17, generator=g)
    forbidden = torch.rand(19, 17, generator=g) > 0.6
    field, dist = pm.nnf(target, source, patch_size=patch_size, iterations=2, seed=5, source_mask=forbidden)
    assert field.shape == (23, 31, 2) and field.dtype == torch.int32
    assert dist.shape == (23, 31) and dist.dtype == torch.float32
    r = patch_size // 2
    fy, fx = field[..., 0].long(), field[..., 1].long()
    assert bool(((fy >= r) & (fy < 19 - r) & (fx >= r) & (fx < 17 - r)).all()), "patch leaves the source"
    assert not bool(forbidden[fy, fx].any()), "matched a forbidden centre"
    # Independent numpy computation of the documented distance (mean over the
    # target patch pixels inside the target, and channels).
    t, s = target.permute(1, 2, 0).double().numpy(), source.permute(1, 2, 0).double().numpy()
    expected = np.zeros((23, 31))
    for y in range(23):
        for x in range(31):
            y0, y1, x0, x1 = max(y - r, 0), min(y + r, 22), max(x - r, 0), min(x + r, 30)
            cy, cx = fy[y, x].item(), fx[y, x].item()
            diff = t[y0:y1 + 1, x0:x1 + 1] - s[cy + y0 - y:cy + y1 - y + 1, cx + x0 - x:cx + x1 - x + 1]
            expected[y, x] = (diff ** 2).mean()
    np.testing.assert_allclose(dist.double().numpy(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dist.double(), pm.patch_distance_reference(hwc(target), hwc(source), field,
                                                                          patch_size), rtol=1e-5, atol=1e-7)


def test_nnf_leaves_source_patches_that_hold_nan():
    """A NaN in the source makes the patches over it unusable: every pixel that started on one
    moves to a finite match (NaN compared false with every candidate, so such a start was kept)."""
    seed = int(torch.randint(1 << 30, ()))
    source = smooth_image(30, 30, seed=seed)
    target = source.clone()
    source[:, 0:8, 0:8] = float("nan")
    field, dist = pm.nnf(target, source, patch_size=3, iterations=8, seed=seed % 1000)
    assert bool(torch.isfinite(dist).all())
    # a target pixel on the picture's edge compares only the part of its patch inside the picture,
    # so its match may sit beside the NaN corner (read pixels finite); one inside compares all nine
    fy, fx = field[1:-1, 1:-1, 0].long(), field[1:-1, 1:-1, 1].long()
    assert not bool(((fy <= 8) & (fx <= 8)).any()), "matched a patch that touches the NaN corner"
    # no match reads a NaN pixel, and the matches are as good as the reference distance says
    reference = pm.patch_distance_reference(hwc(target), hwc(source), field, 3)
    assert bool(torch.isfinite(reference).all())
    torch.testing.assert_close(dist.double(), reference, rtol=1e-5, atol=1e-7)


def test_nnf_more_iterations_do_not_hurt():
    target, source = smooth_image(40, 40, seed=7), smooth_image(40, 40, seed=8)
    d1 = pm.nnf(target, source, patch_size=5, iterations=1, seed=1)[1]
    d4 = pm.nnf(target, source, patch_size=5, iterations=4, seed=1)[1]
    assert d4.mean() < d1.mean()


def test_nnf_seeded_and_thread_count_independent():
    target, source = smooth_image(37, 41, seed=11), smooth_image(29, 33, seed=12)
    f1, d1 = pm.nnf(target, source, patch_size=5, iterations=2, seed=42)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        f2, d2 = pm.nnf(target, source, patch_size=5, iterations=2, seed=42)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(f1, f2) and torch.equal(d1, d2)
    f3, _ = pm.nnf(target, source, patch_size=5, iterations=2, seed=43)
    assert not torch.equal(f1, f3)


def test_integer_arguments_of_any_kind():
    """A numpy integer patch size is a patch size, and any Python int is a seed: seeds at or beyond 2**63
    (which the ops' int64 cannot hold) are reduced modulo 2**63, as inpaint's per-step seeds are."""
    image = smooth_image(20, 22, seed=3)
    mask = torch.zeros(20, 22)
    mask[6:11, 7:12] = 1
    assert torch.equal(pm.inpaint(image, mask, patch_size=np.int64(5), seed=4),
                       pm.inpaint(image, mask, patch_size=5, seed=4))
    for seed in (2**63 + 9, 2**64 + 9, 9 - 2**63):
        assert torch.equal(pm.nnf(image, image, patch_size=3, seed=seed)[0],
                           pm.nnf(image, image, patch_size=3, seed=9)[0])
    with pytest.raises(ValueError, match="odd integer"):
        pm.inpaint(image, mask, patch_size=5.0)
    with pytest.raises(ValueError, match="odd integer"):
        pm.inpaint(image, mask, patch_size=True)
    assert torch.equal(pm.inpaint(image, mask, patch_size=5, iterations=np.int32(1), em_steps=np.int64(2), seed=4),
                       pm.inpaint(image, mask, patch_size=5, iterations=1, em_steps=2, seed=4))
    # a float count was a TypeError from range() or a schema error from inside the op
    with pytest.raises(ValueError, match="em_steps must be an integer >= 1, got 1.5"):
        pm.inpaint(image, mask, patch_size=5, em_steps=1.5)
    with pytest.raises(ValueError, match="iterations must be an integer >= 0, got 2.0"):
        pm.nnf(image, image, patch_size=3, iterations=2.0)
    with pytest.raises(ValueError, match="iterations must be an integer >= 0, got -1"):
        pm.inpaint(image, mask, patch_size=5, iterations=-1)


def test_nnf_numpy_in_numpy_out():
    target = hwc(smooth_image(20, 24, seed=1)).numpy()
    field, dist = pm.nnf(target, target, patch_size=3, iterations=3)
    assert isinstance(field, np.ndarray) and field.dtype == np.int32 and field.shape == (20, 24, 2)
    assert isinstance(dist, np.ndarray) and dist.dtype == np.float32 and dist.shape == (20, 24)
    assert dist[1:-1, 1:-1].max() < 1e-12  # identity is the perfect match away from the border


def test_nnf_op_init_field_and_active():
    """The op keeps a usable initial match of an inactive pixel, replaces unusable ones, and searches active ones."""
    target = hwc(smooth_image(16, 16, seed=2))
    allowed = torch.ones(16, 16, dtype=torch.bool)
    active = torch.zeros(16, 16, dtype=torch.bool)
    active[4:12, 4:12] = True
    init = torch.stack(torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij"), -1).int()
    init[0, 0] = torch.tensor([-5, 99])  # unusable: must be replaced by a usable centre
    field, dist = torch.ops.nfinpaint.patchmatch_nnf(target, target, allowed, active, init, 3, 0, 0)
    assert torch.equal(field[1:15, 1:15], init[1:15, 1:15])
    assert 1 <= field[0, 0, 0] <= 14 and 1 <= field[0, 0, 1] <= 14
    assert bool((dist[~active] == -1).all()) and dist[4:12, 4:12].abs().max() < 1e-12


# ---------------------------------------------------------------- vote
def test_vote_matches_reference():
    image, field, weight, hole, p = _vote_problem(9, h=12, w=14, p=5)
    out = torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, p)
    np.testing.assert_allclose(out.double().numpy(), _vote_numpy(image, field, weight, hole, p), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[~hole], image[~hole])


def test_vote_weights_of_far_matches_keep_the_average():
    """Weights exp(-d / 2 sigma^2) of distances ~200 sigma^2 were subnormal, and the vote's float32
    sums lost the average (4e-2 off at 1e-44); they are floored at a normal float, and inf (no
    finite match) still gives no vote."""
    g = torch.Generator().manual_seed(int(torch.randint(1 << 30, ())))
    h, w, p = 9, 9, 3
    image = torch.rand(h, w, 3, generator=g)
    field = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).int().clamp(1, 7)
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[4, 4] = True
    active = torch.ones(h, w, dtype=torch.bool)
    dist = torch.ones(h, w)                       # sigma^2 = 1: the 75th percentile
    dist[3:6, 3:6] = 200.0                        # every patch over the hole pixel: e^-100 < FLT_MIN
    dist[0, 0] = float("inf")
    weight = pm._vote_weights(dist, active)
    assert weight[0, 0] == 0
    assert bool((weight[3:6, 3:6] >= torch.finfo(torch.float32).tiny).all())
    assert torch.equal(weight[1:3, 1:3], torch.full((2, 2), math.exp(-0.5)))
    voted = torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, p)[4, 4]
    sources = [image[field[4 - dy, 4 - dx, 0] + dy, field[4 - dy, 4 - dx, 1] + dx]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    torch.testing.assert_close(voted, torch.stack(sources).mean(0), rtol=1e-6, atol=1e-6)


def _vote_numpy(image, field, weight, hole, p):
    """The vote in float64 numpy: each hole pixel the weighted mean of what the matches of the patches
    covering it put there (weights <= 0 or NaN give no vote; where +inf weights vote, they outvote every
    finite one and count alike); pixels without a vote keep their value."""
    r = p // 2
    h, w, _ = image.shape
    img, f, wt = image.double().numpy(), field.numpy(), weight.double().numpy()
    out = img.copy()
    for y, x in zip(*np.nonzero(hole.numpy())):
        votes = []
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                cy, cx = y - dy, x - dx
                if 0 <= cy < h and 0 <= cx < w and wt[cy, cx] > 0:
                    votes.append((wt[cy, cx], img[f[cy, cx, 0] + dy, f[cy, cx, 1] + dx]))
        if any(np.isinf(v) for v, _ in votes):
            votes = [(1.0, src) for v, src in votes if np.isinf(v)]
        if votes:
            out[y, x] = sum(v * src for v, src in votes) / sum(v for v, _ in votes)
    return out


def _vote_problem(seed, h=9, w=10, p=3):
    g = torch.Generator().manual_seed(seed)
    r = p // 2
    image = torch.rand(h, w, 3, generator=g)
    field = torch.stack([torch.randint(r, h - r, (h, w), generator=g),
                         torch.randint(r, w - r, (h, w), generator=g)], -1).int()
    weight = torch.rand(h, w, generator=g) * (torch.rand(h, w, generator=g) > 0.2)
    hole = torch.rand(h, w, generator=g) > 0.4
    return image, field, weight, hole, p


@pytest.mark.parametrize("scale", [1e-45, 1e-44, 1e-40, 1e-30, 1.0, 1e30, 3e38])
def test_vote_op_averages_weights_of_any_scale(scale):
    """Only the weights' ratios matter. The op's float32 sums of weight * pixel lost the average for
    subnormal weights (0.1 off at 1e-44, 0.4 at 1e-45, where the products round to 0) and overflowed
    for huge ones (NaN at 3e38)."""
    image, field, weight, hole, p = _vote_problem(int(torch.randint(1 << 30, ())))
    weight = (weight.double() * scale).float()      # the weights the op gets, also for the reference
    out = torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, p)
    np.testing.assert_allclose(out.double().numpy(), _vote_numpy(image, field, weight, hole, p),
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(out[~hole], image[~hole])


def test_vote_op_infinite_weights_outvote_finite_ones():
    """A +inf weight (the limit of a weight growing past every other) gave inf / inf = NaN."""
    image, field, weight, hole, p = _vote_problem(int(torch.randint(1 << 30, ())))
    weight[torch.rand(weight.shape, generator=torch.Generator().manual_seed(5)) > 0.8] = float("inf")
    weight[0, 0] = float("nan")     # no vote, as ever
    out = torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, p)
    assert bool(torch.isfinite(out).all())
    np.testing.assert_allclose(out.double().numpy(), _vote_numpy(image, field, weight, hole, p),
                               rtol=1e-5, atol=1e-6)


def test_vote_op_refuses_pictures_beyond_int32_pixel_indices():
    """The vote indexes pixels in int32, like patchmatch_nnf, which refuses pictures of 2^31 pixels or
    more; the vote took them, and its pixel index wrapped. Stride-0 inputs: nothing is allocated."""
    side = 46341                                       # side * side > 2^31
    image = torch.zeros(1, 1, 1).expand(side, side, 1)
    field = torch.ones(1, 1, 2, dtype=torch.int32).expand(side, side, 2)
    weight = torch.ones(1, 1).expand(side, side)
    hole = torch.ones(1, 1, dtype=torch.bool).expand(side, side)
    with pytest.raises(RuntimeError, match="image too large"):
        torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_inpaint_refuses_a_non_finite_known_pixel(bad):
    # it reached the fill through the border fill's convolutions: 20 of 100 hole pixels came back NaN
    image = torch.rand(3, 30, 36, generator=torch.Generator().manual_seed(3))
    hole = torch.zeros(30, 36, dtype=torch.bool)
    hole[10:20, 12:22] = True
    image[:, 9, 16] = bad
    with pytest.raises(ValueError, match="outside the hole"):
        pm.inpaint(image, hole, patch_size=5)
    image[:, 12, 16] = bad       # under the hole: unknown, never read
    image[:, 9, 16] = 0.5
    assert bool(torch.isfinite(pm.inpaint(image, hole, patch_size=5)).all())


# ---------------------------------------------------------------- inpaint
def test_inpaint_periodic_texture_near_exact():
    tex = periodic_texture(48, 48)
    mask = np.zeros((48, 48), bool)
    mask[18:30, 20:32] = True
    out = pm.inpaint(tex, mask, patch_size=5, seed=0)
    assert np.abs(out - tex)[mask].max() < 1e-3


def test_inpaint_keeps_known_pixels_and_several_holes():
    image = torch.from_numpy(periodic_texture(50, 61)).permute(2, 0, 1)
    g = torch.Generator().manual_seed(22)
    mask = torch.zeros(1, 50, 61)
    mask[0, 5:14, 6:20] = 1
    mask[0, 30:44, 40:47] = 1
    mask[0, 20:26, 2:9] = (torch.rand(6, 7, generator=g) > 0.3).float()  # irregular
    out = pm.inpaint(image, mask, patch_size=5, seed=1)
    hole = mask[0].bool()
    assert out.shape == image.shape and out.dtype == image.dtype
    assert torch.equal(out[:, ~hole], image[:, ~hole])
    assert bool(torch.isfinite(out).all()) and 0 <= out.min() and out.max() <= 1
    # Every hole, irregular ones and those near the border included, is filled with the texture.
    assert (out - image)[:, hole].abs().mean() < 1e-2


@pytest.mark.parametrize("junk", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_inpaint_never_reads_what_lies_under_the_hole(junk):
    """NaN under the hole (a common "missing" marker) made every hole pixel NaN: the border fill
    multiplied it by zero, which keeps NaN."""
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    image = smooth_image(36, 40, seed=int(torch.randint(0, 2**31, ())))
    mask = torch.zeros(36, 40, dtype=torch.bool)
    y, x = (int(v) for v in torch.randint(6, 20, (2,), generator=g))
    mask[y:y + 10, x:x + 12] = True
    clean = pm.inpaint(image, mask, patch_size=5, seed=3)
    dirty = image.clone()
    dirty[:, mask] = junk
    assert torch.equal(pm.inpaint(dirty, mask, patch_size=5, seed=3), clean)


# ---------------------------------------------------------------- resynthesize
def _vote_reference(image, hole, field, p):
    """numpy: each hole pixel the weighted mean of what the matches of the patches covering it put there,
    weights exp(-d / 2 sigma^2) from distances recomputed here, sigma^2 their 75th percentile."""
    r = p // 2
    img = image.double().permute(1, 2, 0).numpy()
    targets = _dilate_reference(hole.numpy(), r)
    dist = {}
    for y, x in zip(*np.nonzero(targets)):   # the tests keep these patches inside the image
        sy, sx = field[y, x]
        dist[y, x] = ((img[y - r:y + r + 1, x - r:x + r + 1] - img[sy - r:sy + r + 1, sx - r:sx + r + 1]) ** 2).mean()
    d = np.sort(np.array(list(dist.values())))
    sigma2 = max(d[(3 * len(d) + 3) // 4 - 1], 1e-6)
    out = img.copy()
    for y, x in zip(*np.nonzero(hole.numpy())):
        acc, total = np.zeros(3), 0.0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                q = (y - dy, x - dx)
                weight = np.exp(-dist[q] / (2 * sigma2))
                acc += weight * img[field[q][0] + dy, field[q][1] + dx]
                total += weight
        out[y, x] = acc / total
    return out


def _dilate_reference(mask, r):
    out = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask)):
        out[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = True
    return out


def test_resynthesize_votes_the_nearest_known_patches():
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    h, w, p = 22, 26, 5
    r = p // 2
    image = smooth_image(h, w, int(torch.randint(0, 2**31, (), generator=g)), blur=3)
    hole = torch.zeros(h, w, dtype=torch.bool)
    y0, x0 = (int(v) for v in torch.randint(2 * r, 8, (2,), generator=g))
    hole[y0:y0 + 6, x0:x0 + 8] = True
    hole[y0 + 6, x0 + 2] = True                                     # not a rectangle
    guess = torch.where(hole, image + 0.1 * torch.randn(image.shape, generator=g), image)
    seed = int(torch.randint(0, 2**31, (), generator=g))
    out = pm.resynthesize(guess, hole, p, iterations=3, seed=seed)
    # the same search as resynthesize's (same seed), to read its matches
    targets = torch.from_numpy(_dilate_reference(hole.numpy(), r))
    field, _ = torch.ops.nfinpaint.patchmatch_nnf(hwc(guess), hwc(guess), ~targets, targets, None, p, 3, seed)
    field = field.numpy()
    for y, x in zip(*np.nonzero(targets.numpy())):                  # every match is a known patch
        sy, sx = field[y, x]
        assert not hole[sy - r:sy + r + 1, sx - r:sx + r + 1].any()
    np.testing.assert_allclose(out.double().permute(1, 2, 0).numpy(), _vote_reference(guess, hole, field, p),
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, ~hole], guess[:, ~hole])
    precise = pm.resynthesize(guess.double() + 1e-12, hole, p, iterations=3, seed=seed)   # not float32 values
    assert precise.dtype == torch.float64 and torch.equal(precise[:, ~hole], guess.double()[:, ~hole] + 1e-12)


def test_resynthesize_pulls_a_noisy_guess_back_to_the_texture():
    """The search is random: one draw in ~30 converges short of the texture (400 draws: median error
    1.4% of the guess's, 99th percentile 39%, worst 43%), so the claim is about the typical draw, over
    seven, and no draw may end near the guess (one draw against before / 4 failed CI)."""
    tex = torch.from_numpy(periodic_texture(48, 56)).permute(2, 0, 1)
    hole = torch.zeros(48, 56, dtype=torch.bool)
    hole[16:32, 18:40] = True
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    ratios = []
    for _ in range(7):
        guess = torch.where(hole, tex + 0.08 * torch.randn(tex.shape, generator=g), tex)
        out = pm.resynthesize(guess, hole, 5, seed=int(torch.randint(0, 2**31, (), generator=g)))
        ratios.append(float((out - tex)[:, hole].abs().mean() / (guess - tex)[:, hole].abs().mean()))
    assert sorted(ratios)[3] < 1 / 4 and max(ratios) < 3 / 4, ratios


def test_resynthesize_takes_a_float_hole_and_refuses_a_guess_that_is_not_finite():
    """A 0/1 float hole (inpaint's mask format) ran the whole search, then the vote refused it ("hole
    must be Bool"); a NaN or inf guess came back unchanged (no patch over it matches)."""
    g = torch.Generator().manual_seed(int(torch.randint(1 << 30, ())))
    image = torch.rand(3, 20, 24, generator=g)
    hole = torch.zeros(20, 24, dtype=torch.bool)
    hole[6:12, 8:15] = True
    expected = pm.resynthesize(image, hole, 5, seed=3)
    assert torch.equal(pm.resynthesize(image, hole.float(), 5, seed=3), expected)
    for bad in (float("nan"), float("inf")):
        guess = image.clone()
        guess[1, 8, 10] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            pm.resynthesize(guess, hole, 5)


def test_resynthesize_fails_loudly_under_autograd():
    """Not differentiable: an image that required grad got a result whose backward gave no gradient
    through the vote, with only a warning (inpaint detaches its input)."""
    image = torch.rand(3, 20, 24, requires_grad=True)
    hole = torch.zeros(20, 24, dtype=torch.bool)
    hole[6:12, 8:15] = True
    with pytest.raises(RuntimeError, match="derivative for nfinpaint::patchmatch_.* is not implemented"):
        pm.resynthesize(image, hole, 5).sum().backward()


def test_resynthesize_needs_a_known_patch():
    image = torch.rand(3, 12, 12)
    hole = torch.ones(12, 12, dtype=torch.bool)
    hole[:4, :4] = False                                            # known, but no 5x5 patch of it
    assert not pm.has_source_patch(hole, 5) and pm.has_source_patch(hole, 3)
    assert not pm.has_source_patch(torch.zeros(4, 30, dtype=torch.bool), 5)     # thinner than a patch
    with pytest.raises(ValueError, match="no 5x5 patch"):
        pm.resynthesize(image, hole, 5)
    for bad_hole in (hole[None], hole[:, :10]):                    # named as the caller knows it
        with pytest.raises(ValueError, match=r"\(H, W\) hole"):
            pm.resynthesize(image, bad_hole, 3)


def _two_textures(h, w):
    """(truth, swapped, left, a, b): texture a on the left half and b on the right, and the other way round."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    a = torch.stack([0.5 + 0.4 * torch.sin(2 * np.pi * xx / 6), 0.2 + 0 * xx, 0.3 + 0.2 * torch.sin(2 * np.pi * yy / 7)])
    b = torch.stack([0.2 + 0 * xx, 0.5 + 0.4 * torch.sin(2 * np.pi * yy / 5), 0.6 + 0.2 * torch.cos(2 * np.pi * xx / 9)])
    left = torch.arange(w)[None, :].expand(h, w) < w // 2
    return torch.where(left, a, b), torch.where(left, b, a), left, a, b


def test_inpaint_follows_its_guide():
    truth, swapped, left, a, b = _two_textures(64, 96)
    hole = torch.zeros(64, 96, dtype=torch.bool)
    hole[20:44, 30:66] = True                                       # across the border of the two textures
    seed = int(torch.randint(0, 2**31, ()))
    out = pm.inpaint(truth, hole, patch_size=5, seed=seed, guide=swapped, levels=2)
    inside = hole & left
    assert (out - b)[:, inside].abs().mean() < 0.5 * (out - a)[:, inside].abs().mean()   # the guide's texture
    assert torch.equal(out[:, ~hole], truth[:, ~hole])
    out = pm.inpaint(truth, hole, patch_size=5, seed=seed, guide=truth, levels=2)
    assert (out - truth)[:, hole].abs().mean() < 0.02


def test_inpaint_from_a_smooth_guide_brings_the_texture_back():
    """A blurred guide (what a smooth learned fill looks like): two levels of search copy the texture."""
    truth, _, _, _, _ = _two_textures(64, 96)
    hole = torch.zeros(64, 96, dtype=torch.bool)
    hole[20:44, 30:66] = True
    smooth = F.avg_pool2d(truth[None], 9, 1, 4, count_include_pad=False)[0]
    out = pm.inpaint(truth, hole, patch_size=5, seed=int(torch.randint(0, 2**31, ())), guide=smooth, levels=2)
    before = (smooth - truth)[:, hole].abs().mean()
    assert (out - truth)[:, hole].abs().mean() < 0.5 * before


def test_inpaint_refuses_a_bad_guide():
    image, hole = torch.rand(3, 30, 40), torch.zeros(30, 40, dtype=torch.bool)
    hole[10:20, 10:20] = True
    with pytest.raises(ValueError, match="guide must have the image's shape"):
        pm.inpaint(image, hole, guide=torch.rand(3, 30, 41))
    bad = image.clone()
    bad[:, 12, 12] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        pm.inpaint(image, hole, guide=bad)
    bad = image.clone()
    bad[:, 0, 0] = float("nan")                                     # outside the hole: never read
    assert torch.isfinite(pm.inpaint(image, hole, guide=bad)).all()
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        pm.inpaint(image, hole, levels=0)


def test_inpaint_numpy_uint8_roundtrip_and_seed():
    rng = np.random.default_rng(5)
    image = (hwc(smooth_image(40, 36, seed=5)).numpy() * 255).astype(np.uint8)
    mask = np.zeros((40, 36), np.float32)
    mask[10:22, 12:20] = 1
    mask[30:35, 3:9] = rng.random((5, 6)) > 0.4
    a = pm.inpaint(image, mask, patch_size=5, seed=3)
    b = pm.inpaint(image, mask, patch_size=5, seed=3)
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b)
    assert np.array_equal(a[mask == 0], image[mask == 0])
    f = pm.inpaint(image.astype(np.float64) / 255, mask, patch_size=5, seed=3)
    assert f.dtype == np.float64 and np.array_equal(f[mask == 0], image[mask == 0] / 255)


@pytest.mark.parametrize("case, message", [
    ("mask_size", "must be the same size"),
    ("no_hole", "no hole"),
    ("full_hole", "no 5x5 patch"),
    ("mostly_hole", "no 5x5 patch"),
    ("even_patch", "odd"),
    ("big_patch", "larger than the image"),
    ("bad_image", "(3, H, W)"),
    ("uint16_image", "uint8 .0..255. or float .0..1., got uint16"),
    ("list_mask", "got shape (2, 3)"),
])
def test_inpaint_bad_input(case, message):
    image = torch.rand(3, 20, 24)
    mask = torch.zeros(20, 24)
    mask[5:10, 5:10] = 1
    kwargs = {"patch_size": 5}
    if case == "mask_size":
        mask = torch.ones(20, 23)
    elif case == "no_hole":
        mask = torch.zeros(20, 24)
    elif case == "full_hole":
        mask = torch.ones(20, 24)
    elif case == "mostly_hole":
        mask = torch.ones(20, 24)
        mask[0:3, 0:3] = 0  # known pixels, but no whole 5x5 patch of them
    elif case == "even_patch":
        kwargs["patch_size"] = 4
    elif case == "big_patch":
        kwargs["patch_size"] = 21
    elif case == "bad_image":
        image = torch.rand(20, 24)
    elif case == "uint16_image":        # filled on its raw values and truncated back: refused
        image = (image.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    elif case == "list_mask":
        mask = [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pm.inpaint(image, mask, **kwargs)


def test_nnf_bad_input():
    with pytest.raises(ValueError, match="forbids every source patch"):
        pm.nnf(torch.rand(3, 9, 9), torch.rand(3, 9, 9), patch_size=3, source_mask=torch.ones(9, 9))
    with pytest.raises(ValueError, match="larger than the source"):
        pm.nnf(torch.rand(3, 9, 9), torch.rand(3, 4, 9), patch_size=5)
    with pytest.raises(ValueError, match="same channels"):
        pm.nnf(torch.rand(3, 9, 9), torch.rand(1, 9, 9), patch_size=3)


def test_ops_reject_bad_tensors():
    t = torch.rand(8, 8, 3)
    ok = torch.ones(8, 8, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="odd"):
        torch.ops.nfinpaint.patchmatch_nnf(t, t, ok, ok, None, 2, 1, 0)
    with pytest.raises(RuntimeError, match="source_allowed must have shape"):
        torch.ops.nfinpaint.patchmatch_nnf(t, t, ok[:4], ok, None, 3, 1, 0)
    with pytest.raises(RuntimeError, match="no usable source patch"):
        torch.ops.nfinpaint.patchmatch_nnf(t, t, ~ok, ok, None, 3, 1, 0)
    field = torch.full((8, 8, 2), 3, dtype=torch.int32)
    weight, hole = torch.ones(8, 8), ok.clone()
    # 2**32 + 1 wrapped to a negative int32 radius: no votes, the hole came back unfilled
    for size in (9, 2**32 + 1):
        with pytest.raises(RuntimeError, match=f"patch_size {size} is larger than the image"):
            torch.ops.nfinpaint.patchmatch_vote(t, field, weight, hole, size)


@pytest.mark.parametrize("op, meta_arg", [("nnf", 2), ("nnf", 4), ("vote", 2), ("vote", 3)])
def test_ops_refuse_a_meta_input_beside_cpu_ones(op, meta_arg):
    """One input on "meta" sends the call to the fake kernel: it must refuse, not return uninitialised
    CPU tensors."""
    t = torch.rand(12, 13, 3)
    ok = torch.ones(12, 13, dtype=torch.bool)
    if op == "nnf":
        args = [t, t, ok, ok, torch.zeros(12, 13, 2, dtype=torch.int32), 3, 1, 0]
    else:
        args = [t, torch.full((12, 13, 2), 6, dtype=torch.int32), torch.ones(12, 13), ok, 3]
    args[meta_arg] = args[meta_arg].to("meta")
    with pytest.raises(RuntimeError, match="like .*, got meta"):
        getattr(torch.ops.nfinpaint, f"patchmatch_{op}")(*args)


def _bad_patchmatch_calls():
    """(name, call(device)) pairs that the CPU kernels refuse for their shapes, dtypes or parameters."""
    def image(h=8, w=9, c=3, **kw):
        return torch.rand(h, w, c, **kw)

    def plane(h=8, w=9, **kw):
        return torch.ones(h, w, dtype=torch.bool, **kw)

    def nnf(**change):
        def call(d):
            args = dict(target=image(device=d), source=image(device=d), source_allowed=plane(device=d),
                        active=plane(device=d), init_field=None, patch_size=3, iterations=1, seed=0)
            args.update({k: v(d) if callable(v) else v for k, v in change.items()})
            return torch.ops.nfinpaint.patchmatch_nnf(*args.values())
        return call

    def vote(**change):
        def call(d):
            args = dict(image=image(device=d), field=torch.zeros(8, 9, 2, dtype=torch.int32, device=d),
                        weight=torch.ones(8, 9, device=d), hole=plane(device=d), patch_size=3)
            args.update({k: v(d) if callable(v) else v for k, v in change.items()})
            return torch.ops.nfinpaint.patchmatch_vote(*args.values())
        return call

    return [
        ("nnf channels", nnf(source=lambda d: image(c=5, device=d))),
        ("nnf float64 target", nnf(target=lambda d: image(device=d).double())),
        ("nnf empty target", nnf(target=lambda d: image(h=0, device=d))),
        ("nnf even patch", nnf(patch_size=4)),
        ("nnf patch over the source", nnf(patch_size=11)),
        ("nnf negative iterations", nnf(iterations=-1)),
        ("nnf source_allowed shape", nnf(source_allowed=lambda d: plane(3, 3, device=d))),
        ("nnf active dtype", nnf(active=lambda d: plane(device=d).float())),
        ("nnf init_field shape", nnf(init_field=lambda d: torch.zeros(8, 9, 3, dtype=torch.int32, device=d))),
        ("nnf init_field dtype", nnf(init_field=lambda d: torch.zeros(8, 9, 2, dtype=torch.int64, device=d))),
        ("vote five channels", vote(image=lambda d: image(c=5, device=d))),
        ("vote zero patch", vote(patch_size=0)),
        ("vote patch over the image", vote(patch_size=9 + 2)),
        ("vote field dtype", vote(field=lambda d: torch.zeros(8, 9, 2, dtype=torch.int64, device=d))),
        ("vote field shape", vote(field=lambda d: torch.zeros(9, 8, 2, dtype=torch.int32, device=d))),
        ("vote weight shape", vote(weight=lambda d: torch.ones(2, 2, device=d))),
        ("vote hole dtype", vote(hole=lambda d: torch.ones(8, 9, device=d))),
    ]


@pytest.mark.parametrize("name, call", _bad_patchmatch_calls(), ids=[n for n, _ in _bad_patchmatch_calls()])
def test_fake_kernels_refuse_what_the_cpu_kernels_refuse(name, call):
    """Tracing (meta / fake tensors, torch.compile) fails where the call would, with the kernel's words;
    the fakes once checked devices only and built graphs for calls that could only fail."""
    assert_meta_refuses_as_cpu(call)


# ---------------------------------------------------------------- opcheck
def test_opcheck_nnf():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(10, 12, 3, generator=g)
    s = torch.rand(9, 11, 3, generator=g)
    allowed = torch.rand(9, 11, generator=g) > 0.3
    active = torch.rand(10, 12, generator=g) > 0.2
    init = torch.randint(0, 9, (10, 12, 2), generator=g, dtype=torch.int32)
    for args in [(t, s, allowed, active, None, 3, 2, 7), (t, s, allowed, active, init, 5, 1, 1)]:
        torch.library.opcheck(torch.ops.nfinpaint.patchmatch_nnf.default, args)


def test_opcheck_vote():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(8, 9, 3, generator=g)
    field = torch.stack([torch.randint(1, 7, (8, 9), generator=g), torch.randint(1, 8, (8, 9), generator=g)], -1).int()
    args = (image, field, torch.rand(8, 9, generator=g), torch.rand(8, 9, generator=g) > 0.5, 3)
    torch.library.opcheck(torch.ops.nfinpaint.patchmatch_vote.default, args)


# ---------------------------------------------------------------- memory layouts
# Each op on strided inputs must give what it gives on contiguous ones (the contiguous
# results are held to the references above). Images are (H, W, C): "transposed" swaps
# H and W in memory, "planar" stores channel planes (C, H, W); planes (H, W) are
# column-major ("transposed") or a window of a wider buffer ("sliced").
IMAGE_LAYOUTS = [("transposed", (0, 1)), ("planar", (0, 2)), ("sliced", (-2, -1))]
PLANE_LAYOUTS = ["transposed", "sliced"]


def _image_layout(x, kind, dims):
    if kind == "planar":
        out = x.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        assert not out.is_contiguous() and torch.equal(out, x)
        return out
    return relayout(x, kind, dims)


def _nnf_inputs():
    g = torch.Generator().manual_seed(4)
    t = hwc(smooth_image(12, 14, seed=5))
    s = hwc(smooth_image(11, 13, seed=6))
    allowed = torch.rand(11, 13, generator=g) > 0.5
    active = torch.rand(12, 14, generator=g) > 0.2
    init = torch.stack([torch.randint(0, 11, (12, 14), generator=g),
                        torch.randint(0, 13, (12, 14), generator=g)], -1).int()
    return t, s, allowed, active, init


def _assert_usable(field, allowed, r):
    fy, fx = field[..., 0].long(), field[..., 1].long()
    hs, ws = allowed.shape
    assert bool(((fy >= r) & (fy < hs - r) & (fx >= r) & (fx < ws - r)).all())
    assert bool(allowed[fy, fx].all()), f"{int((~allowed[fy, fx]).sum())} matches on forbidden centres"


@pytest.mark.parametrize("which", ["target", "source", "source_allowed", "active", "init_field"])
def test_nnf_op_strided_inputs_match_contiguous(which):
    # A column-major source_allowed used to be read as row-major: matches on forbidden centres.
    args = list(_nnf_inputs())
    index = ["target", "source", "source_allowed", "active", "init_field"].index(which)
    for init in (None, args[4]):
        base = args[:4] + [init]
        field, dist = torch.ops.nfinpaint.patchmatch_nnf(*base, 3, 2, 11)
        _assert_usable(field, args[2], 1)
        if which == "init_field" and init is None:
            continue
        layouts = IMAGE_LAYOUTS if index in (0, 1, 4) else [(k, (-2, -1)) for k in PLANE_LAYOUTS]
        for kind, dims in layouts:
            strided = list(base)
            strided[index] = _image_layout(base[index], kind, dims)
            field_s, dist_s = torch.ops.nfinpaint.patchmatch_nnf(*strided, 3, 2, 11)
            _assert_usable(field_s, args[2], 1)
            assert torch.equal(field_s, field) and torch.equal(dist_s, dist), (which, kind)
            torch.library.opcheck(torch.ops.nfinpaint.patchmatch_nnf.default, (*strided, 3, 1, 11))


def test_nnf_column_major_source_mask():
    # The public entry point with a column-major (numpy Fortran-order) mask.
    t = smooth_image(12, 14, seed=7)
    g = torch.Generator().manual_seed(8)
    forbidden = (torch.rand(12, 14, generator=g) > 0.4).numpy()
    field, _ = pm.nnf(t, t, patch_size=3, iterations=2, seed=1, source_mask=np.asfortranarray(forbidden))
    _assert_usable(field, ~torch.from_numpy(forbidden), 1)
    field_c, _ = pm.nnf(t, t, patch_size=3, iterations=2, seed=1, source_mask=forbidden)
    assert torch.equal(field, field_c)


@pytest.mark.parametrize("which", ["image", "field", "weight", "hole"])
def test_vote_op_strided_inputs_match_contiguous(which):
    g = torch.Generator().manual_seed(10)
    h, w, p = 9, 11, 3
    image = torch.rand(h, w, 3, generator=g)
    field = torch.stack([torch.randint(1, h - 1, (h, w), generator=g),
                         torch.randint(1, w - 1, (h, w), generator=g)], -1).int()
    args = [image, field, torch.rand(h, w, generator=g), torch.rand(h, w, generator=g) > 0.5]
    index = ["image", "field", "weight", "hole"].index(which)
    out = torch.ops.nfinpaint.patchmatch_vote(*args, p)
    layouts = IMAGE_LAYOUTS if index < 2 else [(k, (-2, -1)) for k in PLANE_LAYOUTS]
    for kind, dims in layouts:
        strided = list(args)
        strided[index] = _image_layout(args[index], kind, dims)
        assert torch.equal(torch.ops.nfinpaint.patchmatch_vote(*strided, p), out), kind
        torch.library.opcheck(torch.ops.nfinpaint.patchmatch_vote.default, (*strided, p))


# ---------------------------------------------------------------- CUDA vs CPU
@pytest.mark.gpu
def test_cuda_field_equals_cpu_field():
    target, source = smooth_image(70, 90, seed=31), smooth_image(64, 80, seed=32)
    forbidden = torch.zeros(64, 80, dtype=torch.bool)
    forbidden[20:40, 30:60] = True
    f_cpu, d_cpu = pm.nnf(target, source, patch_size=7, iterations=4, seed=9, source_mask=forbidden)
    f_gpu, d_gpu = pm.nnf(target.cuda(), source.cuda(), patch_size=7, iterations=4, seed=9, source_mask=forbidden)
    assert torch.equal(f_gpu.cpu(), f_cpu)
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-6, atol=1e-9)


@pytest.mark.gpu
def test_cuda_fill_close_to_cpu_fill():
    # Fields agree exactly, but the float weights/upsampling between searches may
    # differ in the last bit across devices; on a periodic texture both fills
    # must be near exact, hence close to each other.
    image = torch.from_numpy(periodic_texture(64, 64)).permute(2, 0, 1).contiguous()
    mask = torch.zeros(64, 64)
    mask[20:36, 24:44] = 1
    out_cpu = pm.inpaint(image, mask, patch_size=5, seed=2)
    out_gpu = pm.inpaint(image.cuda(), mask.cuda(), patch_size=5, seed=2)
    assert out_gpu.is_cuda
    assert torch.equal(out_gpu.cpu()[:, mask == 0], image[:, mask == 0])
    assert (out_gpu.cpu() - out_cpu).abs().max() < 2e-3
    assert (out_gpu.cpu() - image).abs().max() < 2e-3
    on_gpu = pm.inpaint(image, mask, patch_size=5, seed=2, device="cuda")
    assert not on_gpu.is_cuda and torch.equal(on_gpu, out_gpu.cpu())
