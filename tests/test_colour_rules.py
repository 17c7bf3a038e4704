"""nfinpaint.colour_rules: the rings of holes, the flat-ring rule and the one-hue rule, on fresh random
pictures (each test's seed is in its failure message)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from nfinpaint import colour_rules


@pytest.fixture
def seed():
    return int(np.random.default_rng().integers(1 << 30))


def _ring_of(hole: np.ndarray, other_holes: np.ndarray) -> np.ndarray:
    """The reference: ``hole``'s known pixels within RING px (8-connected, a square), by dilation."""
    reach = np.ones((2 * colour_rules.RING + 1,) * 2, dtype=bool)
    return ndimage.binary_dilation(hole, reach) & ~other_holes


def test_each_holes_ring_is_its_dilation_even_where_rings_overlap(seed):
    rng = np.random.default_rng(seed)
    hole = np.zeros((60, 80), dtype=bool)
    top, left = rng.integers(5, 15), rng.integers(5, 15)
    hole[top:top + 20, left:left + 15] = True
    hole[top:top + 20, left + 18:left + 32] = True     # 3 px apart: their rings share the columns between
    hole[45, 70] = True                                # one pixel
    found = colour_rules.rings(hole)
    labels, count = ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    h, w = found.labels.shape
    for k, label in enumerate(found.owners):
        pixels = found.pixels[found.starts[k]:found.starts[k + 1]]
        got = np.zeros((h, w), dtype=bool)
        got.reshape(-1)[pixels] = True
        full = np.zeros_like(hole)
        full[found.box] = got
        # the box's labels are the whole mask's here (the holes are in scan order either way)
        expected = _ring_of(labels == label, hole)
        assert np.array_equal(full, expected), (seed, label)
    assert sorted(found.owners) == list(range(1, count + 1))



def test_every_ring_is_its_dilation_where_many_holes_are_near(seed):
    """Scattered small holes, several within reach of one known pixel: that pixel is in each of their
    rings (it was in the lowest and the highest label's only)."""
    rng = np.random.default_rng(seed)
    hole = rng.random((int(rng.integers(8, 40)), int(rng.integers(8, 40)))) < rng.uniform(0.05, 0.35)
    hole[rng.integers(hole.shape[0]), rng.integers(hole.shape[1])] = True
    found = colour_rules.rings(hole)
    if found is None:                    # every pixel a hole or none known near one: nothing to check
        assert not (ndimage.binary_dilation(hole, np.ones((5, 5), dtype=bool)) & ~hole).any()
        return
    labels = found.labels
    for k, label in enumerate(found.owners):
        got = np.zeros(labels.shape, dtype=bool)
        got.reshape(-1)[found.pixels[found.starts[k]:found.starts[k + 1]]] = True
        assert np.array_equal(got, _ring_of(labels == label, hole[found.box])), (seed, label)
    assert sorted(found.owners) == list(range(1, found.count + 1))


def test_a_line_through_three_near_holes_keeps_the_middle_ones_fill(seed):
    """A dark 1 px line on grey through the middle of three 1 px holes 2 px apart: every ring holds line
    pixels, so no hole is flat and every fill is left as it is (the middle one was clamped to the grey).
    A one-channel picture: the one-hue rule, which would make an RGB grey picture's fill grey, is off."""
    rng = np.random.default_rng(seed)
    grey, line = rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.3)
    image = torch.full((1, 24, 30), grey)
    column = int(rng.integers(6, 24))
    image[:, :, column] = line
    hole = torch.zeros(1, 24, 30, dtype=torch.bool)
    hole[0, 10, [column - 2, column, column + 2]] = True
    fill = torch.from_numpy(rng.random((3, 24, 30))).float()
    assert torch.equal(colour_rules.apply(image, hole, fill.clone()), fill), seed

def test_a_flat_ring_keeps_its_holes_fill_within_its_range_and_no_other(seed):
    """Two holes 3 px apart on red with a blue strip between: each ring has blue in it, so neither is flat
    (the strip was once counted in one ring only, and the other hole painted red up to it)."""
    rng = np.random.default_rng(seed)
    image = torch.zeros(3, 40, 60)
    image[0] = 1.0
    hole = torch.zeros(1, 40, 60, dtype=torch.bool)
    hole[0, 10:30, 10:25] = True
    hole[0, 10:30, 28:42] = True
    image[:, 10:30, 25:28] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    fill = torch.from_numpy(rng.random((3, 40, 60))).float()
    assert torch.equal(colour_rules.apply(image, hole, fill.clone()), fill)
    # without the strip both rings are red: their holes' fills come back red
    image[:, 10:30, 25:28] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    out = colour_rules.apply(image, hole, fill.clone())
    assert torch.equal(out[:, hole[0]], torch.tensor([1.0, 0.0, 0.0])[:, None].expand(-1, int(hole.sum())))
    assert torch.equal(out[:, ~hole[0]], fill[:, ~hole[0]])


def test_a_gradient_within_a_flat_ring_stays(seed):
    """A 16-bit ramp spans less than the flat ring's 2 levels across a small hole: a fill that follows it
    is kept (the hole was once set to the ring's mean, flattening it); one outside its range is clamped."""
    rng = np.random.default_rng(seed)
    ramp = torch.linspace(0.4, 0.4 + 200 / 65535, 60).expand(3, 40, -1).clone()
    hole = torch.zeros(1, 40, 60, dtype=torch.bool)
    hole[0, 15:25, 20:40] = True
    assert torch.equal(colour_rules.apply(ramp, hole, ramp.clone()), ramp)
    wild = ramp.clone()
    wild[:, hole[0]] = torch.from_numpy(rng.random((3, int(hole.sum())))).float()
    out = colour_rules.apply(ramp, hole, wild.clone())
    ring = torch.from_numpy(_ring_of(hole[0].numpy(), hole[0].numpy()))
    low, high = ramp[:, ring].amin(dim=1), ramp[:, ring].amax(dim=1)
    assert ((out[:, hole[0]] >= low[:, None]) & (out[:, hole[0]] <= high[:, None])).all()


def test_a_flat_ring_in_a_grey_picture_stored_as_rgb_comes_back_grey(seed):
    """Holes in a patch of one grey within 2 levels: their fill is kept within the ring's range and is
    grey (it was clamped channel by channel alone, and came back up to 1 level off grey)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, (200, 300))
    levels[50:150, 100:250] = rng.integers(0, 3, (100, 150)) + int(rng.integers(0, 254))   # the patch
    grey = torch.from_numpy(levels / 255).float().expand(3, -1, -1).clone()
    hole = torch.from_numpy(rng.random((1, 200, 300)) < 0.02)
    hole[:, :60] = hole[:, 140:] = False
    hole[:, :, :110] = hole[:, :, 240:] = False            # holes only where their rings are the patch's
    filled = grey.clone()
    filled[:, hole[0]] = torch.rand(3, int(hole.sum()))    # a fill in colours the picture does not have
    out = colour_rules.apply(grey, hole, filled)
    inside = out[:, hole[0]]
    assert torch.equal(inside[0], inside[1]) and torch.equal(inside[1], inside[2]), seed
    low, high = grey[0, 50:150, 100:250].min(), grey[0, 50:150, 100:250].max()
    assert bool(((inside >= low) & (inside <= high)).all()), seed


def test_the_rules_read_the_picture_as_the_fill_does_clamped():
    image = torch.full((3, 30, 40), 1.5)
    hole = torch.zeros(1, 30, 40, dtype=torch.bool)
    hole[0, 10:20, 10:20] = True
    out = colour_rules.apply(image, hole, torch.full((3, 30, 40), 0.9))
    assert torch.equal(out[:, hole[0]], torch.ones(3, 100))


def test_one_hue_takes_grey_and_toned_pictures_with_noise_and_no_colour_picture(seed):
    """What lies under a hole does not count; a level of noise in a channel, or a few odd pixels in ten
    thousand, leaves a picture one hue; two in a thousand, a colour picture, or too few known pixels
    (a crop of the crop protocol) do not."""
    rng = np.random.default_rng(seed)
    grey = torch.from_numpy(rng.integers(0, 256, (200, 300)) / 255).float().expand(3, -1, -1).clone()
    hole = torch.zeros(1, 200, 300, dtype=torch.bool)
    hole[:, 5:9, 10:14] = True
    grey[:, 6, 11] = torch.tensor([1.0, 0.0, 0.5])         # a painted hole
    hue = colour_rules.one_hue(grey, hole)
    assert hue is not None and np.all(hue.offset == 0) and np.all(hue.slope == 0), seed
    noisy = (grey + torch.from_numpy(rng.integers(-1, 2, grey.shape)) / 255).clamp(0, 1)
    assert colour_rules.one_hue(noisy, hole) is not None, seed
    coloured = grey.clone()
    reds = torch.stack([torch.linspace(0.1, 1, 120), torch.zeros(120), torch.zeros(120)])
    coloured[:, 100, 100:130] = reds[:, ::4]    # 30 pixels in 59,984, of 30 brightnesses
    assert colour_rules.one_hue(coloured, hole) is not None, seed
    coloured[:, 101, 100:220] = reds            # 150
    assert colour_rules.one_hue(coloured, hole) is None, seed
    assert colour_rules.one_hue(torch.rand(3, 200, 300), hole) is None
    assert colour_rules.one_hue(grey[:1], hole) is None
    # 29,984 known pixels: too few to judge noise from colour; exactly grey, though, at any size
    assert colour_rules.one_hue(noisy[:, :150, :200], hole[:, :150, :200]) is None, seed
    small = colour_rules.one_hue(grey[:, :24, :24], hole[:, :24, :24])
    assert small is not None and (small.lowest, small.highest) == (0.0, 1.0)
    sepia = (grey * torch.tensor([1.0, 0.89, 0.73])[:, None, None] * 255).round() / 255
    hue = colour_rules.one_hue(sepia, hole)
    assert hue is not None, seed
    # the colour at brightness b is the tone's, b * tone / mean(tone): a line through black
    tone = np.array([1.0, 0.89, 0.73])
    assert np.abs(hue.slope - (tone / tone.mean() - 1)).max() <= 0.01 and np.abs(hue.offset).max() <= 1 / 255
    # two colours: their blends are the line between them, taken where it is gentle (red on white, on
    # black), not where two colours of about one brightness would turn an error in brightness into one
    # in colour (blue and orange)
    for first, second, taken in (((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), True), ((1.0, 0.0, 0.0), (0.0, 0.0, 0.0), True),
                                 ((0.0, 0.47, 0.84), (1.0, 0.55, 0.0), False)):
        share = torch.from_numpy(rng.random((1, 200, 300))).float()
        blend = share * torch.tensor(first)[:, None, None] + (1 - share) * torch.tensor(second)[:, None, None]
        assert (colour_rules.one_hue(blend, hole) is not None) is taken, (seed, first, second)


@pytest.mark.parametrize("width", [256, 320, 512])
def test_one_hue_sees_columns_a_stride_would_skip(width):
    """Red 1-px stripes every 64th column of a grey picture (1.6% of its pixels): a strided sample whose
    step divides the width saw the same columns in every row, missed them, and took the picture for grey."""
    grey = torch.rand(1, 256, width).expand(3, -1, -1).clone()
    grey[:, :, 2::64] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    assert colour_rules.one_hue(grey, torch.zeros(1, 256, width, dtype=torch.bool)) is None


def _toned_page(rng, height, width):
    """A sepia-toned picture with a level of noise in each channel, (3, H, W) float32 on 8-bit levels."""
    grey = rng.random((height, width)) * 0.6 + 0.2
    tone = np.array([1.0, 0.89, 0.73]) / np.mean([1.0, 0.89, 0.73])
    picture = grey[None] * tone[:, None, None] + rng.integers(-1, 2, (3, height, width)) / 255
    return torch.from_numpy((np.clip(picture, 0, 1) * 255).round() / 255).float()


def test_one_hue_range_is_every_known_pixel_s_not_the_sample_s(seed):
    """Its brightest known pixel, a lamp of one pixel, is the range's top: a sample of 2^18 of the 2
    million known pixels misses it nine times in ten, and a fill beside the lamp was darkened to the
    sample's brightest."""
    rng = np.random.default_rng(seed)
    picture = _toned_page(rng, 1000, 2000)
    y, x = int(rng.integers(10, 990)), int(rng.integers(10, 1990))
    picture[:, y, x] = torch.tensor([1.0, 0.89, 0.73]) / float(np.mean([1.0, 0.89, 0.73])) * 0.85   # page: 0.2-0.8
    hole = torch.zeros(1, 1000, 2000, dtype=torch.bool)
    hole[:, y - 5:y - 1, x - 3:x + 3] = True
    hue = colour_rules.one_hue(picture, hole)
    assert hue is not None, seed
    brightness = picture.double().mean(0)
    assert hue.highest == pytest.approx(float(brightness[y, x]), abs=1e-9), seed
    assert hue.lowest == pytest.approx(float(brightness[~hole[0]].min()), abs=1e-9), seed


def test_one_hue_leaves_the_part_of_a_hole_nearest_a_run_of_colour(seed):
    """A long scratch across a toned page crosses a small red stamp on under 5% of its ring: the part of
    the hole nearest the stamp keeps its fill, the rest of the hole takes the page's hue; a lone noisy
    ring pixel off the line carves nothing out."""
    rng = np.random.default_rng(seed)
    picture = _toned_page(rng, 400, 600)
    picture[:, 195:207, 300:320] = torch.tensor([0.85, 0.1, 0.1])[:, None, None]        # the stamp
    hole = torch.zeros(1, 400, 600, dtype=torch.bool)
    hole[:, 199:203, 20:580] = True
    odd = (197, int(rng.integers(40, 280)))                 # one ring pixel off the line, away from the stamp
    picture[:, odd[0], odd[1]] = torch.tensor([0.2, 0.9, 0.2])
    filled = picture.clone()
    filled[:, hole[0]] = torch.rand(3, int(hole.sum()))     # a fill in colours the page does not have
    given = filled.clone()
    out = colour_rules.apply(picture, hole, filled)
    hue = colour_rules.one_hue(picture, hole)
    stamp_part = torch.zeros(400, 600, dtype=torch.bool)
    stamp_part[199:203, 300:320] = True
    # the pixels whose nearest ring pixel is the stamp's: those under it (its rows reach 2 px past the hole)
    assert torch.equal(out[:, stamp_part], given[:, stamp_part]), seed
    elsewhere = hole[0] & ~stamp_part
    elsewhere[:, 296:324] = False                           # where the nearest ring pixel may be either
    assert not hue.off_line(out[:, elsewhere].T.double().numpy()).any(), seed
