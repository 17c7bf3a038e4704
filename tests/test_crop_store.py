"""The batched crop sampler: counter-based randomness, batch independence, devices, speed-free checks."""
import math

import pytest
import torch

from nfinpaint.crop_store import Holdout, ImageStore, RandomCrops, batch_items, uniforms


def _store(seed=0, sizes=((60, 80), (90, 70), (48, 48))):
    gen = torch.Generator().manual_seed(seed)
    return ImageStore([torch.rand(3, h, w, generator=gen) for h, w in sizes], 16)


def test_uniforms_are_a_pure_function_of_seed_item_and_stream():
    items = torch.randint(0, 2**40, (5000,))
    a = uniforms(7, items, 3)
    assert torch.equal(a, uniforms(7, items, 3))
    assert torch.equal(a[100:200], uniforms(7, items[100:200], 3))          # no hidden state
    assert not torch.equal(a, uniforms(8, items, 3)) and not torch.equal(a, uniforms(7, items, 4))
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0


def test_uniforms_are_uniform_and_independent_across_streams():
    items = torch.arange(200_000)
    a, b = uniforms(0, items, 0), uniforms(0, items, 1)
    counts = torch.histc(a, bins=20, min=0, max=1)
    expected = len(items) / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.3                                  # 99.9% quantile of chi-square, 19 d.o.f.
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.01


def test_a_crop_does_not_depend_on_its_batch():
    crops = RandomCrops(_store(), 16, seed=3, augment=True, max_rotation=20, max_crop_scale=3)
    items = torch.randint(0, 10**9, (40,))
    whole = crops.crops(items)
    parts = torch.cat([crops.crops(items[:7]), crops.crops(items[7:])])
    assert torch.equal(whole, parts)
    assert torch.equal(whole[5], crops[(0, int(items[5]))])
    assert whole.shape == (40, 3, 16, 16) and whole.is_contiguous(memory_format=torch.channels_last)
    assert float(whole.min()) >= 0 and float(whole.max()) <= 1


def test_every_image_is_drawn_equally_often():
    sizes = ((40, 40), (400, 600), (60, 50))
    store = ImageStore([torch.full((3, h, w), k / 4) for k, (h, w) in enumerate(sizes)], 16)
    crops = RandomCrops(store, 16, seed=0, augment=False, max_rotation=0, max_crop_scale=4)
    ids = (crops.crops(torch.arange(3000)).mean(dim=(1, 2, 3)) * 4).round().long()
    counts = torch.bincount(ids, minlength=3).float()
    assert bool((counts > 900).all()), counts


def test_scales_span_the_configured_range():
    # a coordinate image: a crop's span of x values says how many source pixels it covered
    h, w = 300, 300
    x = torch.linspace(0, 1, w).expand(h, w)
    store = ImageStore([torch.stack([x, x.t(), torch.zeros(h, w)])], 16)
    crops = RandomCrops(store, 16, seed=1, augment=False, max_rotation=0, max_crop_scale=4)
    out = crops.crops(torch.arange(400))
    span = (out[:, 0, :, -1] - out[:, 0, :, 0]).mean(dim=1) * (w - 1) * 16 / 15   # source pixels per crop
    assert float(span.min()) > 16 * 0.9 and float(span.max()) < 64 * 1.1
    assert float(span.max()) > 64 * 0.85 and float(span.min()) < 16 * 1.15
    logs = torch.log(span / 16) / math.log(4)
    assert 0.35 < float(logs.mean()) < 0.65                                         # log-uniform


def test_each_pyramid_level_is_one_antialiased_resize_of_the_image():
    """Against PIL's bilinear resize (a triangle filter widened by the scale, as validation's crops are
    made): levels made one from the one before blurred more at each step (a crop at scale 4 held 0.78
    of the detail of the same region cut for validation)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng()
    picture = rng.integers(0, 256, (3, 97, 131), dtype=np.uint8)
    store = ImageStore([torch.from_numpy(picture)], 16)
    assert store.level_counts[0] >= 5
    for level in range(store.level_counts[0]):
        offset, h, w = (int(v) for v in store.table[0, level])
        got = store.buffer[offset:offset + h * w].view(torch.uint8).reshape(h, w, 4)[..., :3].numpy()
        expected = np.asarray(Image.fromarray(picture.transpose(1, 2, 0)).resize((w, h), Image.BILINEAR))
        assert np.abs(got.astype(int) - expected).max() <= 1, level


@pytest.mark.parametrize("augment", [True, False])
def test_no_held_out_pixel_reaches_a_training_crop_at_any_scale(augment):
    """A white validation box in a black picture: crops cut from the coarser pyramid levels, whose pixels
    were blurred from their neighbours level after level, took up to 18% of its white (417 of 20,000
    crops at max_crop_scale 8) through a fixed 2 px margin."""
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    h, w = 400, 400
    top, left = (int(v) for v in torch.randint(60, 240, (2,), generator=gen))
    image = torch.zeros(3, h, w)
    image[:, top:top + 100, left:left + 100] = 1.0
    crops = RandomCrops(ImageStore([image], 16), 16, seed=int(torch.randint(0, 2**31, (), generator=gen)),
                        augment=augment, max_rotation=15, max_crop_scale=8,
                        holdout=[Holdout(top, left, 100, 100)])
    out = crops.crops(torch.arange(20_000))
    assert float(out.max()) == 0.0


def test_batch_items_are_disjoint_across_steps_and_ranks():
    seen = torch.cat([batch_items(s, 8, r, 3) for s in range(5) for r in range(3)])
    assert len(set(seen.tolist())) == len(seen) == 5 * 3 * 8


@pytest.mark.gpu
def test_crops_on_the_gpu_match_the_cpu():
    store = _store()
    crops = RandomCrops(store, 16, seed=0, augment=True, max_rotation=15, max_crop_scale=3)
    items = torch.arange(256)
    cpu = crops.crops(items)
    store.to("cuda")
    gpu = crops.crops(items)
    assert gpu.is_cuda
    # the same draws (made on the CPU); only float rounding of the sampling grid differs
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
