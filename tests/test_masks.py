"""Mask generators: kinds, shapes, dtype, reproducibility from the seed, bounds."""
import pytest
import torch

from nfinpaint.masks import center_masks, freeform_masks, make_masks, random_rect_masks, random_rect_range


def _bbox(mask):
    ys, xs = mask[0].nonzero(as_tuple=True)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def test_center_masks():
    m = center_masks(3, 24, 8)
    assert m.shape == (3, 1, 24, 24) and m.dtype == torch.float32
    expected = torch.zeros(24, 24)
    expected[8:16, 8:16] = 1
    assert all(torch.equal(mi[0], expected) for mi in m)
    odd = center_masks(1, 9, 4)[0]
    assert _bbox(odd) == (2, 6, 2, 6)
    with pytest.raises(ValueError, match="hole_size"):
        center_masks(1, 8, 9)


def test_random_rects_are_single_rectangles_in_range():
    m = random_rect_masks(64, 24, 4, 12, seed=5)
    assert m.shape == (64, 1, 24, 24) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    heights, widths, tops = set(), set(), set()
    for mi in m:
        y0, y1, x0, x1 = _bbox(mi)
        assert torch.all(mi[0, y0:y1, x0:x1] == 1)            # the bbox is full: one rectangle
        assert float(mi.sum()) == (y1 - y0) * (x1 - x0)
        assert 4 <= y1 - y0 <= 12 and 4 <= x1 - x0 <= 12
        heights.add(y1 - y0), widths.add(x1 - x0), tops.add(y0)
    assert len(heights) > 4 and len(widths) > 4 and len(tops) > 5  # random size and position
    with pytest.raises(ValueError, match="min_size"):
        random_rect_masks(1, 24, 10, 5)


@pytest.mark.parametrize("kind", ["center", "random", "freeform"])
def test_make_masks_reproducible_from_seed(kind):
    a = make_masks(kind, 8, 24, 8, seed=11)
    b = make_masks(kind, 8, 24, 8, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    assert a.shape == (8, 1, 24, 24) and a.dtype == torch.float32
    assert torch.all(a.sum(dim=(1, 2, 3)) > 0)
    if kind != "center":
        assert not torch.equal(a, make_masks(kind, 8, 24, 8, seed=12))


def test_generator_state_advances():
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(random_rect_masks(4, 24, 4, 12, g), random_rect_masks(4, 24, 4, 12, g))


def test_random_range_protocol():
    assert random_rect_range(24, 8) == (4, 12)
    assert random_rect_range(64, 22) == (11, 33)
    low, high = random_rect_range(8, 8)
    assert high == 8


def test_freeform_masks_look_like_strokes():
    m = freeform_masks(32, 32, seed=3)
    assert m.shape == (32, 1, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
    coverage = m.mean(dim=(1, 2, 3))
    assert torch.all(coverage > 0) and torch.all(coverage <= 0.5)
    # not rectangles: most masks fill well under their bounding box
    fill = [float(mi.sum()) / ((b[1] - b[0]) * (b[3] - b[2])) for mi in m for b in [_bbox(mi)]]
    assert sum(f < 0.9 for f in fill) > len(fill) // 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_masks("circle", 1, 24, 8)
    with pytest.raises(ValueError, match="not both"):
        make_masks("random", 1, 24, 8, generator=torch.Generator(), seed=1)


def test_blank_holes_zeroes_exactly_the_hole():
    from nfinpaint.masks import blank_holes

    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    image = torch.rand(2, 3, 9, 9, generator=g) + 0.01      # no pixel is 0 before blanking
    mask = (torch.rand(2, 1, 9, 9, generator=g) > 0.5).float()
    out = blank_holes(image, mask)
    hole = mask.expand_as(image) > 0.5
    assert torch.all(out[hole] == 0) and torch.equal(out[~hole], image[~hole])
