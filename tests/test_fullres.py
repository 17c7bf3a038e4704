"""Full-size inpainting: the fully convolutional generator, its base fill, the hole families,
the window planning of the learned fill, the generator registry and the full-size evaluation."""
import csv
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats

from nfinpaint import devices, evaluate, generators, inference, masks, metrics, neural_fill, patchmatch, picture_eval
from nfinpaint.config import ConfigError, load_config
from nfinpaint.fullres_generator import FullResGenerator, tile_plan, tile_spans
from nfinpaint.generator_io import load_generator, save_generator
from nfinpaint.initial_fill import biharmonic_fill, multiscale_biharmonic_fill
from nfinpaint import inpaint as inpaint_module
from nfinpaint.inpaint import inpaint_image
from test_initial_fill import _biharmonic_solution


def _rng():
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))


def _trained_looking(generator: FullResGenerator, g: torch.Generator) -> FullResGenerator:
    """Non-zero output layer: an untrained generator *is* its base fill, which would hide bugs."""
    with torch.no_grad():
        generator.to_rgb.weight.normal_(0, 0.05, generator=g)
        generator.to_rgb.bias.normal_(0, 0.05, generator=g)
    return generator.eval()


# ---------------------------------------------------------------- base fill

def test_multiscale_biharmonic_fill_converges_faster_than_single_level_cg():
    g = _rng()
    n = 16
    # smooth pictures (photographs are locally smooth; on white noise no interpolant means much)
    image = torch.nn.functional.interpolate(torch.rand(n, 3, 6, 7, generator=g), size=(40, 48), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    hole = torch.zeros(n, 1, 40, 48)
    hole[..., 6:34, 9:37] = 1                        # a large hole: plain CG needs many steps
    exact = torch.stack([torch.from_numpy(_biharmonic_solution(x.double().numpy(), hole[0, 0].numpy() > 0.5))
                         for x in image]).float()
    inside = hole.bool().expand(-1, 3, -1, -1)

    def rms(x):
        return float(((x - exact)[inside] ** 2).mean().sqrt())

    # same number of steps per level as the single-level solve: closer to the solution over a batch
    # (not on every picture: on some, CG alone happens to get closer)
    assert rms(multiscale_biharmonic_fill(image, hole, 128, 128)) < 0.8 * rms(biharmonic_fill(image, hole, 128))
    converged = multiscale_biharmonic_fill(image[:2], hole[:2], iterations=600, coarsest_iterations=600)
    torch.testing.assert_close(converged, exact[:2], atol=1e-4, rtol=0)
    default = multiscale_biharmonic_fill(image, hole)
    assert torch.equal(default * (1 - hole), image * (1 - hole))
    assert float(default.min()) >= -0.05 and float(default.max()) <= 1.05     # smooth, no overshoot


# ---------------------------------------------------------------- generator

@pytest.mark.parametrize("shape", [(1, 37, 53), (2, 64, 48), (1, 16, 130)])
def test_fullres_generator_takes_any_size_and_starts_as_its_base(shape):
    g = _rng()
    n, h, w = shape
    generator = FullResGenerator(32).eval()
    image = torch.rand(n, 3, h, w, generator=g)
    hole = masks.family_masks("medium", n, h, w, generator=g)
    with torch.no_grad():
        out = generator(image * (1 - hole), hole)
        torch.testing.assert_close(out, generator.base_fill(image, hole).clamp(0, 1))
        # whatever the hole holds is ignored
        scrambled = torch.where(hole > 0.5, torch.rand(image.shape, generator=g), image)
        assert torch.equal(generator(scrambled, hole), out)


def test_fullres_generator_output_does_not_depend_on_the_batch():
    """No normalisation layer: a window's fill is the same alone or in a batch (inference = training)."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 3, 40, 40, generator=g)
    hole = masks.family_masks("mixed", 3, 40, 40, generator=g)
    with torch.no_grad():
        batch = generator(image, hole)
        alone = generator(image[1:2], hole[1:2])
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)


def test_fullres_generator_uses_a_given_base():
    g = _rng()
    generator = FullResGenerator(32).eval()
    image = torch.rand(1, 3, 24, 24, generator=g)
    hole = torch.zeros(1, 1, 24, 24)
    hole[..., 5:15, 6:18] = 1
    base = torch.rand(1, 3, 24, 24, generator=g)
    with torch.no_grad():
        out = generator(image, hole, base=base)
    torch.testing.assert_close(out, torch.where(hole > 0.5, base, image))


@pytest.mark.parametrize("dilations, size, tiles", [((1, 1), (150, 200), (40, 4096)),
                                                     ((1, 2, 4, 8), (300, 700), (8,))])
def test_tiled_refinement_gives_the_holes_the_whole_pass_values(dilations, size, tiles):
    """Tiles on the stride-8 grid with the generator's halo of context (64 px and 272 px here, so tiles
    are cut inside the picture) reproduce one pass over the window in its holes (bit for bit on the
    CPU here, float32 rounding allowed); outside the holes' box the result is the input."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32, dilations=dilations), g)
    h, w = size[0] + int(torch.randint(0, 20, (), generator=g)), size[1] + int(torch.randint(0, 20, (), generator=g))
    image = torch.rand(2, 3, h, w, generator=g)
    hole = torch.zeros(2, 1, h, w)
    top, left = int(torch.randint(9, 40, (), generator=g)), int(torch.randint(0, 30, (), generator=g))
    hole[0, :, top:h // 2, left + 20:w - 40] = 1
    hole[1, :, h - 9:, :13] = 1                           # a corner: tiles reach the border there
    with torch.no_grad():
        whole = generator(image, hole)
        for tile in tiles:
            tiled = generator(image, hole, tile=tile)
            # float32 rounding only (convolutions of different shapes may sum in a different order)
            torch.testing.assert_close(torch.where(hole > 0.5, tiled, 0), torch.where(hole > 0.5, whole, 0),
                                       atol=1e-5, rtol=0, msg=f"tile {tile}")
        # the box of both samples' holes, out to the stride-8 grid: rows from top, columns up to w - 40
        outside = torch.zeros(h, w, dtype=torch.bool)
        outside[:top - top % 8, :] = True
        outside[:, w - 40 + (-(w - 40)) % 8:] = True
        assert outside.any() and torch.equal(tiled[..., outside], image[..., outside])
        with pytest.raises(ValueError, match="at least 8"):
            generator(image, hole, tile=4)


def test_the_decoder_on_a_box_gives_the_whole_pass_values_there():
    """_correction(x, box): the encoder over all of x, the decoder on the box and its margin only; the
    box's values are the whole pass's, for boxes anywhere on the stride grid, at the border too."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    for layer in (generator.up2[0], generator.up1[0], generator.up0[0]):      # a decoder that matters
        with torch.no_grad():
            layer.weight.normal_(0, 0.1, generator=g)
    for _ in range(6):
        h, w = (8 * int(torch.randint(4, 30, (), generator=g)) for _ in range(2))
        x = torch.randn(1, 4, h, w, generator=g)
        top, bottom = sorted(8 * int(v) for v in torch.randperm(h // 8 + 1, generator=g)[:2])
        left, right = sorted(8 * int(v) for v in torch.randperm(w // 8 + 1, generator=g)[:2])
        with torch.no_grad():
            whole = generator._correction(x)[:, :, top:bottom, left:right]
            boxed = generator._correction(x, (top, bottom, left, right))
        # float32 rounding: convolutions of another size may sum in another order
        torch.testing.assert_close(boxed, whole, atol=1e-6 * float(whole.abs().max()), rtol=0)


def test_the_learned_fill_is_the_same_with_small_tiles(monkeypatch):
    """neural_fill hands its tile size to the generator: a picture filled with tiny tiles is the same."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 180, 640, generator=g)
    hole = torch.zeros(1, 180, 640)
    hole[:, 40:120, 50:600] = 1
    filled = _fill(generator, image, hole, patch_blend=0)      # the blend's matches could flip on a rounding
    monkeypatch.setattr(neural_fill, "TILE", 8)
    pieces = []
    correction = generator._correction
    monkeypatch.setattr(generator, "_correction", lambda x, box: pieces.append(x.shape) or correction(x, box))
    torch.testing.assert_close(_fill(generator, image, hole, patch_blend=0), filled, atol=1e-5, rtol=0)
    assert len(pieces) > 2, pieces         # several tiles a pass (8 + 2 * 272 px a side), and the mirror's pass


@pytest.mark.parametrize("halo", [0, 64, 272])
def test_tile_spans_are_the_fewest_tiles_within_the_limit_on_the_stride_grid(halo):
    g = _rng()
    for _ in range(200):
        size = int(torch.randint(1, 3000, (), generator=g))
        first = int(torch.randint(0, size, (), generator=g))
        last = int(torch.randint(first, size, (), generator=g))
        tile = int(torch.randint(8, 1000, (), generator=g))
        spans = tile_spans(first, last, size, tile, halo)
        assert spans[0][0] <= first and last < spans[-1][1] <= size
        assert all(a % 8 == 0 and a < b for a, b in spans)
        assert all(b == c for (_, b), (c, _) in zip(spans, spans[1:]))          # contiguous
        computed = [min(size, b + halo) - max(0, a - halo) for a, b in spans]
        assert max(computed) <= tile + 2 * halo, (first, last, size, tile, spans)
        # fewest: no tile but the last could end one grid cell later (a shorter cover needs a longer tile)
        for a, b in spans[:-1]:
            assert min(size, b + 8 + halo) - max(0, a - halo) > tile + 2 * halo


@pytest.mark.parametrize("halo", [0, 64, 272])
def test_tile_plan_covers_each_hole_once_in_tight_boxes_on_the_stride_grid(halo):
    """Scratches across a picture: every hole pixel lies in exactly one box, each box holds a hole, is
    tight on the stride-8 grid (a side moved in by one cell would leave a hole pixel out) and computes
    no more than its tile; and the boxes compute less than the tiles they were cut from."""
    g = _rng()
    for _ in range(20):
        h, w = int(torch.randint(1, 600, (), generator=g)), int(torch.randint(1, 900, (), generator=g))
        mask = masks.stroke_masks(1, h, w, g, strokes=(1, 4), vertices=(1, 4), brush=(2, 9), length=(10, 400),
                                  max_coverage=1.0)
        tile = int(torch.randint(8, 400, (), generator=g))
        boxes = tile_plan(mask, tile, halo)
        holes = mask[0, 0] > 0.5
        size_h, size_w = h + (-h) % 8, w + (-w) % 8
        covered = torch.zeros(size_h, size_w, dtype=torch.int64)
        for top, bottom, left, right in boxes:
            assert top % 8 == 0 and left % 8 == 0 and top < bottom <= size_h and left < right <= size_w
            assert bottom % 8 == 0 or bottom == size_h
            assert right % 8 == 0 or right == size_w
            assert min(size_h, bottom + halo) - max(0, top - halo) <= tile - tile % 8 + 2 * halo
            covered[top:bottom, left:right] += 1
            inside = holes[top:bottom, left:right]
            assert inside[:8].any() and inside[-((bottom - top - 1) % 8 + 1):].any()        # tight rows
            assert inside[:, :8].any() and inside[:, -((right - left - 1) % 8 + 1):].any()  # tight columns
        assert torch.equal(covered[:h, :w][holes], torch.ones(int(holes.sum()), dtype=torch.int64))
        assert covered.max() <= 1
        rows, cols = torch.nonzero(holes, as_tuple=True)
        if rows.numel():
            uncut = sum((b - a) * (d - c) for a, b in tile_spans(int(rows.min()), int(rows.max()), size_h, tile, halo)
                        for c, d in tile_spans(int(cols.min()), int(cols.max()), size_w, tile, halo))
            assert int(covered.sum()) <= uncut
        else:
            assert boxes == []


def test_tiles_around_a_scratch_give_its_pixels_the_whole_pass_values():
    """A diagonal scratch across a wide window, in small tiles each shrunk to its piece of the scratch:
    its pixels get one whole pass's values (float32 rounding), with fewer pixels computed."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32, dilations=(1, 2)), g)
    h, w = 200 + int(torch.randint(0, 9, (), generator=g)), 640 + int(torch.randint(0, 9, (), generator=g))
    image = torch.rand(1, 3, h, w, generator=g)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    slope = float(torch.empty(()).uniform_(0.1, 0.25, generator=g))
    hole = ((ys - 10 - slope * xs).abs() <= 3).float()[None, None]       # ~6 px wide, corner to corner
    computed = []
    correction = generator._correction
    generator._correction = lambda x, box=None: computed.append(x.shape[-2] * x.shape[-1]) or correction(x, box)
    with torch.no_grad():
        whole = generator(image, hole)
        computed.clear()
        tiled = generator(image, hole, tile=64)
    torch.testing.assert_close(torch.where(hole > 0.5, tiled, 0), torch.where(hole > 0.5, whole, 0), atol=1e-5, rtol=0)
    assert len(computed) > 1


def test_channel_statistics_are_each_channel_s_mean_and_the_pooled_deviation_around_them():
    from nfinpaint.networks import known_channel_stats

    g = _rng()
    image = torch.rand(3, 3, 20, 30, generator=g) * torch.rand(3, 3, 1, 1, generator=g)
    mask = (torch.rand(3, 1, 20, 30, generator=g) < 0.4).float()
    centre, spread = known_channel_stats(image, mask)
    for n in range(3):
        known = image[n][:, mask[n, 0] < 0.5].double()                     # (3, K)
        expected = known.mean(dim=1)
        torch.testing.assert_close(centre[n, :, 0, 0].double(), expected, rtol=1e-5, atol=1e-6)
        deviation = ((known - expected[:, None]) ** 2).mean().sqrt().clamp_min(1 / 255)
        torch.testing.assert_close(spread[n, 0, 0, 0].double(), deviation, rtol=1e-5, atol=1e-6)


def test_with_channel_statistics_a_flat_colour_of_any_hue_is_filled_as_it_is():
    """With pooled statistics a saturated flat colour's deviation is the spread between its channels,
    and the network's correction is scaled up by it; with each channel's own, it is one 8-bit level."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    colour = torch.rand(3, 1, 1, generator=g)
    colour[int(torch.randint(0, 3, (), generator=g))] = 0.9                # saturated: channels far apart
    colour[int(torch.randint(0, 3, (), generator=g))] = 0.05
    image = colour.expand(3, 64, 80)[None].clone()
    hole = torch.zeros(1, 1, 64, 80)
    hole[..., 16:48, 20:60] = 1
    with torch.no_grad():
        zero_input = torch.cat([torch.zeros(1, 3, 64, 80), hole], dim=1)
        bound = float(generator._correction(zero_input).abs().max()) / 255 + 1e-5
        errors = {}
        for stats in ("pooled", "channel"):
            generator.stats = stats
            errors[stats] = float((generator(image, hole) - image).abs().max())
    assert errors["channel"] <= bound, (errors, bound)
    assert errors["pooled"] > 5 * bound, (errors, bound)


def test_the_statistics_setting_round_trips_and_old_files_stay_pooled(tmp_path):
    generator = FullResGenerator(32, widths=(8, 8, 8, 8), stats="channel")
    loaded, _ = load_generator(save_generator(tmp_path / "g.pt", generator,
                                              dict(preset="test", image_size=32, hole_size=12, feature_weights="random",
                                                   feature_pretrained=False)))
    assert loaded.stats == "channel"
    config = dict(generator.config)
    del config["stats"]                                   # a file written before the setting existed
    assert generators.generator_from_config(config).stats == "pooled"
    with pytest.raises(ValueError, match="stats must be one of"):
        FullResGenerator(32, stats="per-pixel")


def test_fullres_generator_refuses_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 8"):
        FullResGenerator(100)
    with pytest.raises(ValueError, match=r"\(N,1,H,W\)"):
        FullResGenerator(32)(torch.rand(1, 3, 16, 16), torch.rand(1, 1, 8, 8))


# ---------------------------------------------------------------- registry

@pytest.mark.parametrize("name", generators.GENERATORS)
def test_every_registered_generator_round_trips_through_its_file(tmp_path, name):
    size = 32 if generators.GENERATORS[name].full_resolution else 24
    generator = _trained_looking(generators.build_generator(name, size), _rng()) if name == "fullres" else \
        generators.build_generator(name, size).eval()
    path = save_generator(tmp_path / "g.pt", generator, dict(preset="test", image_size=size, hole_size=8,
                                                             feature_weights="random", feature_pretrained=False))
    loaded, _ = load_generator(path)
    assert type(loaded) is type(generator) and loaded.config == generator.config
    assert generators.is_full_resolution(loaded) == generators.GENERATORS[name].full_resolution
    x, m = torch.rand(2, 3, size, size), masks.make_masks("random", 2, size, 8, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, m), generator(x, m))


def test_config_reads_the_registry():
    assert load_config("fullres").generator == "fullres"
    with pytest.raises(ConfigError, match="fullres"):
        load_config("default", overrides={"generator": "nosuch"})
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_config("fullres", overrides={"image_size": 100})


# ---------------------------------------------------------------- hole families

def _thickness(mask: torch.Tensor) -> float:
    return 2 * float(ndimage.distance_transform_edt(np.pad(mask[0].numpy() > 0.5, 1)).max())


@pytest.mark.parametrize("family, thickness", [("thin", (3, 11)), ("medium", (38, 72)), ("large", (110, 175))])
def test_picture_families_have_the_sizes_they_promise(family, thickness):
    """At 512x384: scratches 4-9 px wide, an object of ~56 px, an object of ~150 px."""
    g = _rng()
    drawn = masks.family_masks(family, 12, 384, 512, generator=g, scale="picture")
    for mask in drawn:
        hole = mask[0].numpy() > 0.5
        assert hole.any() and hole.mean() <= 0.45
        if family == "thin":   # strokes may cross or double back; a typical hole pixel is on a thin stroke
            twice_depth = 2 * ndimage.distance_transform_edt(np.pad(hole, 1))[1:-1, 1:-1][hole]
            assert np.median(twice_depth) <= 7 and _thickness(mask) >= thickness[0]
        else:
            assert thickness[0] <= _thickness(mask) <= thickness[1]


def test_family_masks_are_seeded_and_mixed_uses_every_family():
    a = masks.make_masks("mixed", 30, 64, 20, seed=5)
    assert torch.equal(a, masks.make_masks("mixed", 30, 64, 20, seed=5))
    assert not torch.equal(a, masks.make_masks("mixed", 30, 64, 20, seed=6))
    thick = [_thickness(m) for m in a]
    assert min(thick) < 6 and max(thick) > 25       # thin strokes and large blobs both present
    assert all(0 < float(m.mean()) <= 0.45 for m in a)


def _touches_edge(mask: torch.Tensor) -> bool:
    hole = mask[0] > 0.5
    return bool(hole[0].any() or hole[-1].any() or hole[:, 0].any() or hole[:, -1].any())


@pytest.mark.parametrize("family", ["medium", "large"])
def test_flush_share_lets_thick_training_holes_reach_the_crop_edge(family):
    """Inset holes (the default) rarely touch the crop's edge; flush_share=1 places them anywhere, so most
    medium and large ones do, at the family's sizes; flush_share=0 is the inset draw itself."""
    seed = int(torch.randint(0, 2**31, ()))
    inset = masks.family_masks(family, 200, 128, seed=seed)
    assert torch.equal(inset, masks.family_masks(family, 200, 128, seed=seed, flush_share=0.0))
    flush = masks.family_masks(family, 200, 128, seed=seed + 1, flush_share=1.0)
    inset_rate = np.mean([_touches_edge(m) for m in inset])
    flush_rate = np.mean([_touches_edge(m) for m in flush])
    # over 300 seeds: inset 0.006 (medium) and 0.146 (large) on average, at most 0.21; flush 0.67 and 0.87,
    # at least 0.56 (200 masks: the large inset rate's sd is 0.025, so 0.25 is 4 sd from its mean)
    assert inset_rate < 0.25 and flush_rate > 0.4, (inset_rate, flush_rate)
    # the same brushes: the thickest flush holes are as thick as the inset ones (a hole cut by the
    # edge is thinner, so compare the upper part of the distribution)
    assert np.percentile([_thickness(m) for m in flush], 90) >= 0.8 * np.percentile([_thickness(m) for m in inset], 90)
    assert all(0 < float(m.mean()) <= 0.45 for m in flush)
    half = masks.family_masks(family, 200, 128, seed=seed + 2, flush_share=0.5)
    assert inset_rate < np.mean([_touches_edge(m) for m in half]) < flush_rate


def test_flush_share_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="flush_share"):
        masks.family_masks("large", 2, 64, flush_share=1.5)
    with pytest.raises(ValueError, match="hole families"):
        masks.make_masks("random", 2, 64, 20, seed=0, flush_share=0.3)
    with pytest.raises(ConfigError, match="flush_holes"):
        load_config("default", overrides={"flush_holes": 0.3})      # its train_masks: rectangles
    assert load_config("fullres", overrides={"flush_holes": 0.3}).flush_holes == 0.3


def test_box_family_is_one_seeded_rectangle_of_the_sides_it_promises():
    """At 512x384 (shorter side 384): one rectangle, sides 0.1-0.42 of 384 as a geometric mean, at most 1:2,
    inside the picture; the same seed draws the same boxes; placed over the whole picture."""
    seed = int(torch.randint(0, 2**31, ()))
    drawn = masks.box_masks(200, 384, 512, seed=seed)
    assert torch.equal(drawn, masks.box_masks(200, 384, 512, seed=seed))
    extent = [384, 0, 512, 0]           # smallest top, largest bottom, smallest left, largest right
    for mask in drawn:
        rows, cols = torch.nonzero(mask[0] > 0.5, as_tuple=True)
        top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        assert float(mask[0, top:bottom, left:right].min()) == 1 and int(mask.sum()) == (bottom - top) * (right - left)
        height, width = bottom - top, right - left
        assert 0.1 * 384 - 1 <= math.sqrt(height * width) <= 0.42 * 384 + 1
        assert max(height, width) / min(height, width) <= 2 * (1 + 2 / min(height, width))   # rounding
        extent = [min(extent[0], top), max(extent[1], bottom), min(extent[2], left), max(extent[3], right)]
    # uniform placement reaches near every edge among 200 boxes (each miss has probability < 1e-4)
    assert extent[0] < 20 and extent[1] > 364 and extent[2] < 20 and extent[3] > 492
    with pytest.raises(ValueError, match="positive size"):
        masks.box_masks(1, 0, 10)


def test_edge_family_is_a_medium_or_large_object_flush_with_a_side_or_a_corner():
    """At 512x384: one object of the medium or large family's thickness, its bounding box flush with one side
    (or two, in a corner), every one of the eight places used; seeded."""
    seed = int(torch.randint(0, 2**31, ()))
    drawn = masks.edge_masks(80, 384, 512, seed=seed)
    assert torch.equal(drawn, masks.edge_masks(80, 384, 512, seed=seed))
    places, kinds = set(), set()
    for mask in drawn:
        hole = mask[0] > 0.5
        assert ndimage.label(hole.numpy(), structure=np.ones((3, 3)))[1] == 1
        flush = (bool(hole[0].any()), bool(hole[-1].any()), bool(hole[:, 0].any()), bool(hole[:, -1].any()))
        assert 1 <= sum(flush) <= 2 and not (flush[0] and flush[1]) and not (flush[2] and flush[3])
        places.add(flush)
        thickness = _thickness(mask)     # the edge counts as known here: a hole cut by it would be thinner
        kinds.add("large" if thickness > 100 else "medium")
        assert 38 <= thickness <= 175
    assert len(places) == 8 and kinds == {"medium", "large"}


def test_the_evaluation_takes_the_box_family_and_keeps_the_others_masks():
    picture = torch.rand(3, 96, 128)
    assert picture_eval.parse_families("thin, box") == ["thin", "box"]
    box = picture_eval.picture_mask("box", picture, 0, 1)
    assert box.shape == (1, 96, 128) and 0 < float(box.mean()) < 0.5
    # adding box to the families did not move the seeds of the three trained-on families
    for index, family in enumerate(masks.HOLE_FAMILIES):
        expected = masks.family_masks(family, 1, 96, 128, seed=(3 * 1_000_003 + 2 * 101 + index) & 0x7FFF_FFFF,
                                      scale="picture")[0]
        assert torch.equal(picture_eval.picture_mask(family, picture, 3, 2), expected)
    with pytest.raises(ValueError, match="thin, medium, large, box, edge"):
        picture_eval.parse_families("triangle")
    edge = picture_eval.picture_mask("edge", picture, 0, 1)
    assert edge.shape == (1, 96, 128) and bool((edge[0, [0, -1]] > 0.5).any() or (edge[0, :, [0, -1]] > 0.5).any())



def _all_rectangles(mask: torch.Tensor) -> bool:
    """Every connected hole of ``mask`` fills its bounding box (a box mask whose boxes do not overlap)."""
    labels, _ = ndimage.label(mask[0].numpy() > 0.5)
    return all((labels[box] == index).all() for index, box in enumerate(ndimage.find_objects(labels), start=1))


def _median_width(mask: torch.Tensor) -> float:
    """Twice the median depth of a hole pixel: the typical brush width of a stroke mask."""
    hole = mask[0].numpy() > 0.5
    return float(np.median(2 * ndimage.distance_transform_edt(np.pad(hole, 1))[1:-1, 1:-1][hole]))


def test_lama_masks_follow_lamas_evaluation_protocol():
    """At 512x384 (LaMa's pixel sizes): seeded; every mask covers something and at most half the picture;
    thin masks are strokes of brushes 5-24 px, never boxes; medium and thick masks are boxes about
    0.3 / 1.3 of the time (less where boxes overlap), and thick brushes reach past 100 px."""
    seed = int(torch.randint(0, 2**31, ()))
    drawn = {kind: masks.lama_masks(kind, 60, 384, 512, seed=seed) for kind in masks.LAMA_KINDS}
    assert torch.equal(drawn["lama-thin"], masks.lama_masks("lama-thin", 60, 384, 512, seed=seed))
    for kind, batch in drawn.items():
        area = batch.mean(dim=(1, 2, 3))
        assert bool((area > 0).all() and (area <= masks.LAMA_MAX_AREA).all()), kind
        assert set(batch.unique().tolist()) <= {0.0, 1.0}
    thin = drawn["lama-thin"]
    assert not any(_all_rectangles(m) for m in thin)
    assert all(_median_width(m) <= 25 for m in thin)
    thick = [m for kind in ("lama-medium", "lama-thick") for m in drawn[kind]]
    # over seeds 0-2 (100 masks each): 0.09-0.21; 120 masks: sd ~0.035
    assert 0.03 <= np.mean([_all_rectangles(m) for m in thick]) <= 0.4
    assert max(_thickness(m) for m in drawn["lama-thick"] if not _all_rectangles(m)) > 100
    # mean coverage: a quarter to a third (LaMa's masks, rejected above half the picture)
    assert 0.15 < float(torch.cat(list(drawn.values())).mean()) < 0.45
    with pytest.raises(ValueError, match="lama-thin, lama-medium, lama-thick"):
        masks.lama_masks("lama-huge", 1, 64, 64)


def test_lama_strokes_are_round_brushes_of_their_width():
    """One painted segment against the area of a round brush dragged along it: length x width plus a disc."""
    length, width = 150.0, 20.0
    for angle in torch.rand(4) * math.pi:
        a = torch.tensor([200.0, 200.0])        # the brush stays inside the 400x400 grid
        b = a + length * torch.stack([torch.cos(angle), torch.sin(angle)])
        ys = torch.arange(400, dtype=torch.float32).view(-1, 1) + 0.5
        xs = torch.arange(400, dtype=torch.float32).view(1, -1) + 0.5
        hit = masks._segment_hits(ys, xs, a, b, torch.tensor(width / 2))
        expected = length * width + math.pi * (width / 2) ** 2
        assert abs(float(hit.sum()) - expected) < 0.02 * expected


def test_lama_masks_scale_with_the_picture():
    """LaMa's sizes are for 512 px: at 1024x768 the brushes are about twice as wide."""
    seed = int(torch.randint(0, 2**31, ()))
    small = np.median([_median_width(m) for m in masks.lama_masks("lama-thin", 16, 384, 512, seed=seed)])
    large = np.median([_median_width(m) for m in masks.lama_masks("lama-thin", 16, 768, 1024, seed=seed)])
    assert 1.5 < large / small < 2.6, (small, large)


def test_the_evaluation_takes_lamas_masks_and_keeps_the_others_seeds():
    picture = torch.rand(3, 96, 128)
    assert picture_eval.parse_families("lama-thin,thin") == ["lama-thin", "thin"]
    for index, kind in enumerate(masks.LAMA_KINDS):
        family_seed = (3 * 1_000_003 + 2 * 101 + 5 + index) & 0x7FFF_FFFF
        expected = masks.lama_masks(kind, 1, 96, 128, seed=family_seed)[0]
        assert torch.equal(picture_eval.picture_mask(kind, picture, 3, 2), expected)
    # box and edge keep their seeds (indices 3 and 4, as before the LaMa kinds were added)
    assert torch.equal(picture_eval.picture_mask("box", picture, 3, 2),
                       masks.box_masks(1, 96, 128, seed=(3 * 1_000_003 + 2 * 101 + 3) & 0x7FFF_FFFF)[0])


# ---------------------------------------------------------------- window planning

def _labels(hole: torch.Tensor):
    return ndimage.label(hole[0].numpy() > 0.5, structure=np.ones((3, 3), dtype=bool))


def test_windows_hold_their_holes_with_margin_and_do_not_overlap(monkeypatch):
    monkeypatch.setattr(neural_fill, "COARSE_THICKNESS", 64)
    hole = torch.zeros(1, 200, 300)
    hole[:, 20:30, 20:30] = 1          # two close holes: one window
    hole[:, 20:30, 45:52] = 1
    hole[:, 120:190, 150:220] = 1      # a thick one far away: its own window, coarse to fine
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)
    assert len(windows) == 2
    assert sorted(len(w.holes) for w in windows) == [1, 2]
    for w in windows:
        rows, cols = w.slices()
        inside = np.isin(labels, w.holes)
        assert inside[rows, cols].sum() == inside.sum()            # every pixel of its holes
        ys, xs = np.nonzero(inside)
        assert ys.min() - w.top >= min(ys.min(), neural_fill.MIN_MARGIN)
        assert xs.min() - w.left >= min(xs.min(), neural_fill.MIN_MARGIN)
    a, b = windows
    assert a.top + a.height <= b.top or b.top + b.height <= a.top or \
        a.left + a.width <= b.left or b.left + b.width <= a.left
    big = next(w for w in windows if len(w.holes) == 1)
    assert big.scale == math.ceil(big.thickness / neural_fill.COARSE_THICKNESS) > 1


def _boxes_hold(window, labels):
    """The window is the union of its holes' boxes (bounding box grown by the hole's margin, clipped)."""
    thickness = neural_fill.hole_thickness(labels, int(labels.max()))
    tops, lefts, bottoms, rights = [], [], [], []
    for index in window.holes:
        ys, xs = np.nonzero(labels == index)
        margin = max(neural_fill.MIN_MARGIN, math.ceil(thickness[index]))
        tops.append(max(0, ys.min() - margin))
        lefts.append(max(0, xs.min() - margin))
        bottoms.append(min(labels.shape[0], ys.max() + 1 + margin))
        rights.append(min(labels.shape[1], xs.max() + 1 + margin))
    return (window.top, window.left, window.top + window.height, window.left + window.width) == \
        (min(tops), min(lefts), max(bottoms), max(rights))


def test_a_small_hole_far_from_a_thick_one_gets_a_full_resolution_window_of_its_own_first(monkeypatch):
    """A thick hole's margin is as wide as the hole: small holes up to that far away shared its window and
    its coarse pass (20-40 px blobs 190-330 px from a ~280 px object lost 1.2 dB).  A hole at most
    APART_THICKNESS thick whose own box holds none of the thick hole is now filled on its own, first;
    thicker ones, and ones whose box reaches the thick hole, still share its coarse window."""
    monkeypatch.setattr(neural_fill, "COARSE_THICKNESS", 64)
    monkeypatch.setattr(neural_fill, "APART_THICKNESS", 32)
    hole = torch.zeros(1, 300, 400)
    hole[:, 100:200, 150:250] = 1      # thick (100 px): a coarse window reaching 100 px round it
    hole[:, 20:30, 60:70] = 1          # A: small, its box clear of the thick hole
    hole[:, 120:130, 110:120] = 1      # B: small, its box (to x=144) clear of it too
    hole[:, 140:150, 262:272] = 1      # C: small, but its box (from x=238) reaches the thick hole
    hole[:, 240:280, 300:340] = 1      # D: 40 px, over APART_THICKNESS, its box clear
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)
    label = {name: int(labels[y, x]) for name, (y, x) in
             {"thick": (150, 200), "A": (25, 65), "B": (125, 115), "C": (145, 267), "D": (260, 320)}.items()}
    assert [w.holes for w in windows] == [[label["A"]], [label["B"]],
                                          sorted([label["thick"], label["C"], label["D"]])]
    assert [w.scale for w in windows] == [1, 1, 2]
    assert all(_boxes_hold(w, labels) for w in windows)
    # filled first, in a window with no other hole: A's fill is its fill alone
    g = _rng()
    generator = _trained_looking(FullResGenerator(32, dilations=(1, 2)), g)
    image = torch.rand(3, 300, 400, generator=g)
    alone = torch.zeros_like(hole)
    alone[:, 20:30, 60:70] = 1
    both = _fill(generator, image, hole)
    assert torch.equal(both[:, 20:30, 60:70], _fill(generator, image, alone)[:, 20:30, 60:70])
    known = hole[0] < 0.5
    assert torch.equal(both[:, known], image[:, known])


def test_small_holes_whose_shared_box_reaches_a_thick_hole_keep_their_own_window(monkeypatch):
    """Two small holes each clear of the thick hole, but whose boxes overlap and together span it, went
    back into its coarse window (0.61 dB below their own on validation, docs/evaluation.md): they keep
    their merged full-resolution window, filled first, the thick hole's pixels in it left unknown and not
    written back; the coarse window then fills the thick hole alone, seeing their fill as known."""
    monkeypatch.setattr(neural_fill, "COARSE_THICKNESS", 64)
    hole = torch.zeros(1, 300, 400)
    hole[:, 100:200, 150:250] = 1      # thick
    hole[:, 40:44, 100:300] = 1        # P: a scratch above it (box to y=68)
    hole[:, 60:260, 100:104] = 1       # Q: a scratch beside it (box to x=128), crossing P's box
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)
    thick = int(labels[150, 200])
    assert [sorted(w.holes) for w in windows] == [sorted({int(labels[42, 200]), int(labels[150, 102])}), [thick]]
    assert [w.scale for w in windows] == [1, 2] and all(_boxes_hold(w, labels) for w in windows)
    g = _rng()
    generator = _trained_looking(FullResGenerator(32, dilations=(1, 2)), g)
    image = torch.rand(3, 300, 400, generator=g)
    filled = _fill(generator, image, hole)
    first = _fill(generator, image, hole, windows=windows[:1])      # the scratches' window alone
    in_thick = torch.from_numpy(labels == thick)
    assert torch.equal(first[:, in_thick], image[:, in_thick])      # not written back by the first window
    assert torch.equal(filled[:, ~in_thick], first[:, ~in_thick])   # the coarse window changed only its hole


def test_many_tiny_holes_cost_few_windows():
    hole = torch.zeros(1, 64, 96)
    hole[:, 2::4, 2::4] = 1            # 384 one-pixel holes
    labels, count = _labels(hole)
    assert count == 384
    assert len(neural_fill.plan_windows(labels, count)) == 1


def test_learned_fill_fills_every_hole_of_a_picture_and_keeps_the_rest(monkeypatch):
    monkeypatch.setattr(neural_fill, "COARSE_THICKNESS", 64)     # the large hole takes the coarse pass
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 150, 210, generator=g)
    hole = torch.zeros(1, 150, 210)
    hole[:, 10:14, 20:120] = 1         # a scratch
    hole[:, 60:140, 100:190] = 1       # a large object: coarse to fine
    lines = []
    filled, holes = inpaint_image(image, hole, generator=generator, log=lines.append)
    assert {h.method for h in holes} == {"gan"} and len(holes) == 2
    assert any("coarse pass" in line for line in lines)
    known = hole[0] < 0.5
    assert torch.equal(filled[:, known], image[:, known])
    assert torch.isfinite(filled).all() and not torch.equal(filled, image)
    scrambled = torch.where(hole > 0.5, torch.rand(image.shape, generator=g), image)
    assert torch.equal(inpaint_image(scrambled, hole, generator=generator, log=lambda s: None)[0], filled)


def test_planned_steps_are_the_steps_the_fill_reports(monkeypatch):
    """What a progress bar is sized by (planned_steps) is what fill_picture calls on_step for: every
    network tile of every pass (coarse and full, each mirrored) and each window's blend."""
    monkeypatch.setattr(neural_fill, "COARSE_THICKNESS", 32)
    monkeypatch.setattr(neural_fill, "TILE", 8 * int(torch.randint(1, 6, ())))
    g = _rng()
    generator = _trained_looking(FullResGenerator(32, dilations=(1, 2)), g)
    image = torch.rand(3, 170, 330, generator=g)
    hole = torch.zeros(1, 170, 330)
    hole[:, 8:12, 10:150] = 1                       # a scratch: in the thick hole's margin, a window of its own
    hole[:, 50:130, 40:120] = 1                     # thick: a coarse pass
    hole[:, 140:150, 280:300] = 1                   # a window of its own
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)
    assert len(windows) == 3 and max(w.scale for w in windows) > 1
    for mirror in (True, False):
        steps, pixels = neural_fill.planned_steps(generator, hole > 0.5, windows, mirror=mirror)
        calls = []
        _fill(generator, image, hole, mirror=mirror, on_step=lambda: calls.append(1))
        assert len(calls) == steps >= 2 * len(windows)       # a tile and a blend a window at least
        assert pixels >= int((hole > 0.5).sum())


def test_the_command_shows_progress_on_long_fills_and_keeps_its_lines(monkeypatch, capsys):
    monkeypatch.setattr(inpaint_module, "PROGRESS_PIXELS", 0)        # every fill counts as long
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)      # no --half note (the test below)
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 96, 128, generator=g)
    hole = torch.zeros(1, 96, 128)
    hole[:, 30:60, 40:80] = 1
    filled, _ = inpaint_image(image, hole, generator=generator, log=print, progress=True)
    out, err = capsys.readouterr()
    assert "learned fill" in err and "step" in err
    assert out.startswith("hole(s) 1: learned fill on a ") and out.count("\n") == 1
    quiet, _ = inpaint_image(image, hole, generator=generator, log=print)
    assert torch.equal(quiet, filled)
    assert "learned fill:" not in capsys.readouterr().err


@pytest.mark.parametrize("folder", [False, True])
def test_the_command_draws_no_bar_with_no_progress_and_fills_the_same(tmp_path, monkeypatch, capsys, folder,
                                                                     fullres_checkpoint):
    """--no-progress (logs, scripts): no bar on stderr, for one picture or a folder, and the same pixels."""
    from PIL import Image

    monkeypatch.setattr(inpaint_module, "PROGRESS_PIXELS", 0)        # every fill counts as long
    g = _rng()
    pictures, holes = tmp_path / "pictures", tmp_path / "holes"
    pictures.mkdir(), holes.mkdir()
    Image.fromarray((torch.rand(96, 128, 3, generator=g) * 255).byte().numpy()).save(pictures / "p.png")
    hole = np.zeros((96, 128), np.uint8)
    hole[30:60, 40:80] = 255
    Image.fromarray(hole).save(holes / "p.png")
    written = {}
    for quiet in (False, True):
        out = tmp_path / f"out{quiet}"
        where = ["--images", str(pictures), "--masks", str(holes), "-o", str(out)] if folder else \
            [str(pictures / "p.png"), str(holes / "p.png"), "-o", str(out / "p.png")]
        assert inpaint_module.main([*where, "--checkpoint", str(fullres_checkpoint)] + ["--no-progress"] * quiet) == 0
        err = capsys.readouterr().err
        bar = "inpaint:" if folder else "learned fill:"
        assert (bar in err) != quiet, err
        written[quiet] = np.asarray(Image.open(out / "p.png"))
    assert np.array_equal(written[False], written[True])


@pytest.mark.parametrize("native, half, noted", [(True, False, True), (True, True, False), (False, False, False)])
def test_a_long_fill_on_a_cpu_with_native_bfloat16_mentions_half(monkeypatch, capsys, native, half, noted):
    """Where --half would run the network faster, a long fill without it says so, once; with
    it, or on a CPU without native bfloat16 (faked either way), or on a short fill, nothing."""
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: native)
    generator = _trained_looking(FullResGenerator(32), _rng())
    image, hole = torch.rand(3, 96, 128), torch.zeros(1, 96, 128)
    hole[:, 30:60, 40:80] = 1
    for threshold, long_fill in ((0, True), (10 ** 9, False)):
        monkeypatch.setattr(inpaint_module, "PROGRESS_PIXELS", threshold)
        inpaint_image(image, hole, generator=generator, log=print, progress=True, half=half)
        out = capsys.readouterr().out
        assert out.count(inpaint_module.HALF_HINT) == (noted and long_fill), out


def _fill(generator, image, hole, **options):
    labels, count = _labels(hole)
    return neural_fill.fill_picture(generator, image, hole > 0.5, labels, count, torch.device("cpu"), **options)


def _texture(h, w, g):
    """A random periodic colour texture (3, h, w): every patch of the hole has exact copies outside it."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    period = torch.randint(5, 9, (3, 2), generator=g)
    return torch.stack([0.5 + 0.4 * torch.sin(2 * math.pi * (xx / period[c, 0] + yy / period[c, 1]))
                        for c in range(3)])


def test_patch_blend_moves_each_window_half_way_to_its_resynthesis():
    from nfinpaint import patchmatch

    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = _texture(90, 160, g)
    hole = torch.zeros(1, 90, 160)
    hole[:, 30:44, 20:36] = 1          # two windows
    hole[:, 40:52, 110:130] = 1
    seed = int(torch.randint(0, 2**31, (), generator=g))
    plain = _fill(generator, image, hole, patch_blend=0.0)
    blended = _fill(generator, image, hole, seed=seed)
    expected = plain.clone()
    windows = neural_fill.plan_windows(*_labels(hole))
    assert len(windows) == 2
    for number, window in enumerate(windows):
        rows, cols = window.slices()
        part, todo = plain[:, rows, cols], hole[0, rows, cols] > 0.5
        patches = patchmatch.resynthesize(part, todo, neural_fill.PATCH_SIZE, neural_fill.PATCH_ITERATIONS,
                                          seed + number)
        expected[:, rows, cols] = torch.where(todo, (part + patches) / 2, part)
    torch.testing.assert_close(blended, expected, rtol=0, atol=1e-6)
    known = hole[0] < 0.5
    assert torch.equal(blended[:, known], image[:, known])
    # the smooth learned fill of a texture moves toward the texture
    inside = hole[0] > 0.5
    assert (blended - image)[:, inside].abs().mean() < 0.85 * (plain - image)[:, inside].abs().mean()


def test_a_window_without_a_whole_known_patch_keeps_the_learned_fill():
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 6, 40, generator=g)            # thinner than a patch
    hole = torch.zeros(1, 6, 40)
    hole[:, 2:4, 10:20] = 1
    assert torch.equal(_fill(generator, image, hole), _fill(generator, image, hole, patch_blend=0.0))


def test_detail_brings_texture_into_thick_holes_and_leaves_thin_ones_to_the_blend():
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = _texture(120, 260, g)
    hole = torch.zeros(1, 120, 260)
    hole[:, 10:13, 5:40] = 1           # a scratch 3 px thick: the blend
    hole[:, 50:90, 170:220] = 1        # 40 px thick, far enough for a window of its own: the detail synthesis
    seed = int(torch.randint(0, 2**31, (), generator=g))
    blended = _fill(generator, image, hole, seed=seed)
    detailed = _fill(generator, image, hole, seed=seed, detail=True)
    scratch, block = torch.zeros(120, 260, dtype=torch.bool), torch.zeros(120, 260, dtype=torch.bool)
    scratch[10:13, 5:40], block[50:90, 170:220] = True, True
    assert len(neural_fill.plan_windows(*_labels(hole))) == 2
    assert torch.equal(detailed[:, scratch], blended[:, scratch])
    assert torch.equal(detailed[:, hole[0] < 0.5], image[:, hole[0] < 0.5])
    # the learned fill of a texture is smooth; the detail copies the texture back
    assert (detailed - image)[:, block].abs().mean() < 0.7 * (blended - image)[:, block].abs().mean()
    # through inpaint's path, by name
    filled, holes = inpaint_image(image, hole, generator=generator, method="gan-detail", seed=seed,
                                  log=lambda s: None)
    assert torch.equal(filled, detailed) and {h.method for h in holes} == {"gan"}


def test_detail_keeps_the_blend_in_thin_holes_that_share_a_window_with_a_thick_one():
    """The detail synthesis was chosen per window: a scratch beside a thick hole was re-synthesised too
    (on thin strokes that cost 1.9 dB on validation), unlike the same scratch in a window of its own."""
    from nfinpaint import patchmatch

    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = _texture(120, 200, g)
    hole = torch.zeros(1, 120, 200)
    hole[:, 40:80, 60:100] = 1         # 40 px thick
    hole[:, 45:48, 110:140] = 1        # a scratch 3 px thick, inside the thick hole's margin: one window
    windows = neural_fill.plan_windows(*_labels(hole))
    assert len(windows) == 1 and neural_fill.detail_holes(windows[0]) == [1]
    seed = int(torch.randint(0, 2**31, (), generator=g))
    plain = _fill(generator, image, hole, patch_blend=0.0)
    detailed = _fill(generator, image, hole, seed=seed, detail=True)
    rows, cols = windows[0].slices()
    part, todo = plain[:, rows, cols], hole[0, rows, cols] > 0.5
    patches = patchmatch.resynthesize(part, todo, neural_fill.PATCH_SIZE, neural_fill.PATCH_ITERATIONS, seed)
    synthesis = neural_fill.add_detail(part, todo, seed)
    scratch, block = torch.zeros(120, 200, dtype=torch.bool), torch.zeros(120, 200, dtype=torch.bool)
    scratch[45:48, 110:140], block[40:80, 60:100] = True, True
    torch.testing.assert_close(detailed[:, rows, cols][:, scratch[rows, cols]],
                               ((part + patches) / 2)[:, scratch[rows, cols]], rtol=0, atol=1e-6)
    torch.testing.assert_close(detailed[:, rows, cols][:, block[rows, cols]], synthesis[:, block[rows, cols]],
                               rtol=0, atol=1e-6)
    assert torch.equal(detailed[:, hole[0] < 0.5], image[:, hole[0] < 0.5])


def test_detail_needs_a_full_resolution_generator():
    from nfinpaint.networks import Generator

    image, hole = torch.rand(3, 24, 24), torch.zeros(1, 24, 24)
    hole[:, 8:16, 8:16] = 1
    with pytest.raises(ValueError, match="gan-detail needs a full-resolution generator"):
        inpaint_image(image, hole, generator=Generator(24), method="gan-detail", log=lambda s: None)
    with pytest.raises(ValueError, match="gan-detail needs --checkpoint"):
        inpaint_image(image, hole, method="gan-detail", log=lambda s: None)


# ---------------------------------------------------------------- full-size evaluation

def test_mirror_average_is_the_mean_of_the_fill_and_its_mirror_images():
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    window = torch.rand(1, 3, 48, 70, generator=g)
    hole = torch.zeros(1, 1, 48, 70)
    hole[..., 10:30, 12:40] = 1        # off centre: its mirror image is another problem
    one = neural_fill.fill_window(generator, window, hole, mirror=False)
    other = neural_fill.fill_window(generator, window.flip(-1), hole.flip(-1), mirror=False).flip(-1)
    assert not torch.allclose(one, other, atol=1e-3)           # the two passes do differ
    both = neural_fill.fill_window(generator, window, hole, mirror=True)
    torch.testing.assert_close(both, torch.where(hole > 0.5, (one + other) / 2, window), rtol=0, atol=2e-6)
    assert torch.equal(both[(hole < 0.5).expand_as(both)], window[(hole < 0.5).expand_as(window)])


@pytest.mark.parametrize("scale", [1, 3])
def test_what_a_hole_holds_never_reaches_the_fill(scale):
    """Full resolution and coarse to fine: the fill depends on the known pixels only."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    generator = FullResGenerator(64).eval()
    for p in generator.parameters():
        p.data.normal_(0, 0.05)
    window, hole = torch.rand(1, 3, 96, 96), torch.zeros(1, 1, 96, 96)
    hole[..., 20:70, 30:80] = 1
    noisy = torch.where(hole > 0, torch.rand_like(window), window)
    filled = neural_fill.fill_window(generator, window, hole, scale=scale)
    assert torch.equal(filled, neural_fill.fill_window(generator, noisy, hole, scale=scale))
    assert torch.equal(filled[(hole == 0).expand_as(filled)], window[(hole == 0).expand_as(window)])


def _edge_step(filled: torch.Tensor, hole: torch.Tensor) -> float:
    """Mean |difference| of the 4-neighbour pairs with one pixel in the hole and one known."""
    h = hole[0, 0] > 0.5
    steps = []
    for dy, dx in ((0, 1), (1, 0)):
        a, b = h[:h.shape[0] - dy, :h.shape[1] - dx], h[dy:, dx:]
        diff = (filled[0][:, :h.shape[0] - dy, :h.shape[1] - dx] - filled[0][:, dy:, dx:]).abs()
        steps.append(diff[:, a != b].flatten())
    return float(torch.cat(steps).mean())


def test_coarse_to_fine_fill_meets_the_known_pixels_without_a_step():
    """The upsampled coarse fill is relaxed at full resolution: across the hole's edge a coarse-to-fine
    fill steps about as little as the one-pass fill (an untrained generator's fill is its base).
    Unrelaxed, the step was 2.3-2.9x the one-pass base's."""
    g = _rng()
    generator = FullResGenerator(32).eval()
    low = torch.rand(1, 3, 12, 16, generator=g)
    window = F.interpolate(low, size=(192, 256), mode="bicubic", align_corners=False).clamp(0, 1)
    hole = torch.zeros(1, 1, 192, 256)
    hole[..., 40:150, 60:190] = 1
    one_pass = _edge_step(neural_fill.fill_window(generator, window, hole, scale=1), hole)
    coarse_to_fine = _edge_step(neural_fill.fill_window(generator, window, hole, scale=3), hole)
    assert coarse_to_fine < 1.5 * one_pass, (coarse_to_fine, one_pass)


@pytest.mark.parametrize("scale, blend", [(2, 0.0), (3, 0.0), (2, 0.5)])
def test_a_coarse_to_fine_fill_is_the_relaxed_fill_of_the_shrunk_copy(scale, blend):
    """Past the coarse threshold the network sees only the copy shrunk by ``scale`` (no full-resolution
    pass corrects it since 2026-12-04): the window's fill is that copy's fill, blended with its patch
    re-synthesis at that scale, upsampled and relaxed by the biharmonic steps, in [0, 1], with the known
    pixels exact."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    window = torch.rand(1, 3, 96, 120, generator=g)
    hole = torch.zeros(1, 1, 96, 120)
    hole[..., 20:80, 30:100] = 1
    seen = []
    correction = generator._correction
    generator._correction = lambda x, box=None: seen.append(tuple(x.shape[-2:])) or correction(x, box)
    seed = int(torch.randint(0, 1000, (), generator=g))
    filled = neural_fill.fill_window(generator, window, hole, scale=scale, mirror=False, coarse_blend=blend, seed=seed)
    coarse = (math.ceil(96 / scale), math.ceil(120 / scale))
    assert seen == [tuple(n + (-n) % 8 for n in coarse)]
    shrunk, shrunk_hole = neural_fill._shrink(window, hole, scale)
    small = neural_fill.inference.fill(generator, shrunk, shrunk_hole, tile=neural_fill.TILE)
    if blend:
        patches = patchmatch.resynthesize(small[0], shrunk_hole[0, 0] > 0.5, neural_fill.PATCH_SIZE,
                                          neural_fill.PATCH_ITERATIONS, seed)
        small = torch.where(shrunk_hole[0] > 0.5, (small[0] + patches) / 2, small[0])[None]
    start = F.interpolate(small, size=(96, 120), mode="bilinear", align_corners=False)
    expected = biharmonic_fill(window * (1 - hole), hole, generator.base_iterations, start=start).clamp(0, 1)
    torch.testing.assert_close(filled, torch.where(hole > 0.5, expected, window), rtol=0, atol=1e-6)
    assert torch.equal(filled[(hole == 0).expand_as(filled)], window[(hole == 0).expand_as(window)])


@pytest.mark.parametrize("scale", [1, 2])
def test_mirror_averaged_fill_of_a_mirrored_window_is_the_mirrored_fill(scale):
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    window = torch.rand(1, 3, 64, 80, generator=g)
    hole = torch.zeros(1, 1, 64, 80)
    hole[..., 8:50, 10:45] = 1
    fill = neural_fill.fill_window(generator, window, hole, scale)
    mirrored = neural_fill.fill_window(generator, window.flip(-1), hole.flip(-1), scale).flip(-1)
    torch.testing.assert_close(mirrored, fill, rtol=0, atol=1e-4)    # the base fill's CG rounds differently


def test_texture_ratio():
    g = _rng()
    truth = torch.rand(3, 32, 32, generator=g)
    hole = torch.zeros(1, 32, 32)
    hole[:, 8:24, 8:24] = 1
    assert picture_eval.texture_ratio(truth, truth, hole) == pytest.approx(1.0)
    flat = torch.where(hole > 0.5, truth.mean(), truth)
    assert picture_eval.texture_ratio(flat, truth, hole) == 0.0
    # the seam at the hole's edge is not detail: a flat fill of a ramp scored 2.5 (its right and lower edges)
    ramp = torch.linspace(0, 1, 32).expand(3, 32, 32).clone()
    thin = torch.zeros(1, 32, 32)
    thin[:, 10:16, 10:16] = 1
    flat_ramp = torch.where(thin > 0.5, ramp[:, 10:16, 10:16].mean(), ramp)
    assert picture_eval.texture_ratio(flat_ramp, ramp, thin) == 0.0
    # by hand: every pair of neighbours inside the hole, both directions
    noisy = torch.where(hole > 0.5, torch.rand(3, 32, 32, generator=g), truth)
    def energy(x):
        part = x[:, 8:24, 8:24]
        return float(((part[:, 1:] - part[:, :-1]) ** 2).sum() + ((part[:, :, 1:] - part[:, :, :-1]) ** 2).sum())
    assert picture_eval.texture_ratio(noisy, truth, hole) == pytest.approx(energy(noisy) / energy(truth), rel=1e-5)
    # a flat truth (a clear sky): one grey level off is not a ratio of millions
    sky = torch.ones(3, 32, 32)
    off = torch.where(hole > 0.5, torch.rand(3, 32, 32, generator=g) / 255, sky)
    assert picture_eval.texture_ratio(off, sky, hole) < 3.0
    # a hole with no two neighbouring pixels in it has no detail to measure: NaN, not a flat fill's 0
    diagonal = torch.eye(32)[None]
    assert math.isnan(picture_eval.texture_ratio(torch.rand(3, 32, 32, generator=g), truth, diagonal))


def test_detail_in_place_against_scipy_and_where_the_detail_goes():
    g = _rng()
    h, w = 40, 52
    truth = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    fill = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, h, w)
    top, left = int(torch.randint(0, 12, (), generator=g)), int(torch.randint(0, 20, (), generator=g))
    hole[:, top:top + 25, left:left + 30] = 1

    inside = hole[0].numpy() > 0.5

    def blur(x):    # scipy's "mirror" is torch's "reflect"; truncate 3 sigma: a radius of 6 px at sigma 2
        return ndimage.gaussian_filter(x, 2.0, mode="mirror", truncate=3.0)

    def detail(x):  # the blur of the hole's pixels alone: a normalised convolution
        return np.stack([(c - blur(c * inside) / blur(inside.astype(float))) for c in x.numpy()])
    ours, theirs = detail(fill)[:, inside], detail(truth)[:, inside]
    expected = float((ours * theirs).sum() / (theirs * theirs).sum())
    assert picture_eval.detail_in_place(fill, truth, hole) == pytest.approx(expected, rel=1e-9)
    assert picture_eval.detail_in_place(truth, truth, hole) == pytest.approx(1.0)
    # the known pixels around the hole do not enter: a fill that differs only outside it scores the same
    elsewhere = torch.where(hole > 0.5, fill, torch.rand(3, h, w, generator=g, dtype=torch.float64))
    assert picture_eval.detail_in_place(elsewhere, truth, hole) == pytest.approx(expected, rel=1e-9)
    # a flat fill holds none of the detail, whatever is around it; texture moved away about none
    flat = torch.where(hole > 0.5, truth.mean((1, 2), keepdim=True), truth)
    assert abs(picture_eval.detail_in_place(flat, truth, hole)) < 1e-9
    moved = torch.roll(truth, (0, 13), (1, 2))
    assert abs(picture_eval.detail_in_place(torch.where(hole > 0.5, moved, truth), truth, hole)) < 0.15
    # a flat truth (a clear sky) is no division by ~0; an empty hole has nothing to measure
    sky = torch.ones(3, h, w, dtype=torch.float64)
    assert abs(picture_eval.detail_in_place(fill, sky, hole)) < 1e-6
    assert math.isnan(picture_eval.detail_in_place(fill, truth, torch.zeros(1, h, w)))


def test_a_fill_without_a_texture_ratio_leaves_the_column_to_the_others():
    """A NaN texture ratio (a hole of single pixels) made the table's whole column "nan"."""
    rows = [{"psnr_hole": 20.0 + i, "texture": t} for i, t in enumerate([0.2, math.nan, 0.4])]
    stats = picture_eval._summaries(rows, ["psnr_hole", "texture"])
    assert stats["texture"].n == 2 and stats["texture"].mean == pytest.approx(0.3)
    assert stats["psnr_hole"].n == 3
    assert math.isnan(picture_eval._summaries(rows[1:2], ["texture"])["texture"].mean)


def test_the_texture_column_says_how_many_fills_it_is_over(tmp_path):
    """Its mean left out the fills with no ratio: the table and the CSV say over how many."""
    g = _rng()
    textures = [float(t) for t in torch.rand(4, generator=g)]
    textures[int(torch.randint(0, 4, (), generator=g))] = math.nan
    rows = [{k: float(torch.rand((), generator=g)) for k, _, _ in picture_eval.KEYS} | {"texture": t} for t in textures]
    whole = [dict(row, texture=0.5) for row in rows]
    result = picture_eval.FamilyResult("thin", rows={"gan": rows, "biharmonic": whole}, pictures=["a", "b", "c", "d"])
    header = {"pictures": 4, "size": 512, "seed": 0, "data": "d", "generator": "g"}
    methods = [SimpleNamespace(name="gan", label="ours"), SimpleNamespace(name="biharmonic", label="biharmonic")]
    table = picture_eval.markdown([result], methods, header)
    ours = next(line for line in table.splitlines() if line.startswith("| ours |"))
    theirs = next(line for line in table.splitlines() if line.startswith("| biharmonic |"))
    assert ours.count("(n=3)") == 1 and "(n=" not in theirs
    records = list(csv.DictReader(io.StringIO(picture_eval.results_csv([result]))))
    assert [(r["method"], r["n"], r["texture_n"]) for r in records] == [("gan", "4", "3"), ("biharmonic", "4", "4")]
    measured = [t for t in textures if not math.isnan(t)]
    assert float(records[0]["texture_mean"]) == pytest.approx(sum(measured) / 3)


def test_fills_of_8_bit_pictures_are_measured_as_their_files_hold_them():
    """A float fill scored 0.01-0.09 dB above the PNG a user gets (OpenCV's 8-bit fills paid for the
    rounding alone); a deeper picture's fill is measured as it is."""
    g = _rng()
    picture = (torch.rand(3, 20, 30, generator=g) * 255).round() / 255
    fill = torch.rand(3, 20, 30, generator=g) * 1.2 - 0.1
    saved = metrics.as_saved(fill, picture)
    expected = torch.from_numpy(np.round(np.clip(fill.numpy(), 0, 1) * 255).astype(np.float32) / 255)
    torch.testing.assert_close(saved, expected, rtol=0, atol=1e-7)
    deep = picture + 0.3 / 65535
    assert metrics.as_saved(fill, deep) is fill


def test_full_size_protocol_end_to_end(tmp_path):
    from PIL import Image

    g = _rng()
    data = tmp_path / "pictures"
    data.mkdir()
    for i in range(3):
        array = (torch.rand(90, 120, 3, generator=g) * 255).byte().numpy()
        Image.fromarray(array).resize((200, 150)).save(data / f"p{i}.png")
    checkpoint = save_generator(tmp_path / "g.pt", _trained_looking(FullResGenerator(32), g),
                                dict(preset="test", image_size=32, hole_size=12, feature_weights="random",
                                     feature_pretrained=False))
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data", str(data), "--size", "160",
                          "--masks", "medium,large", "--methods", "gan,biharmonic", "--figures", "2", "--repeats", "2",
                          "--out", str(out), "--no-progress"]) == 0
    text = (out / "results.md").read_text()
    assert "## medium holes" in text and "## large holes" in text and "thin" not in text.split("##")[1]
    assert "Paired, GAN (ours) minus each method" in text and "texture ratio" in text
    assert "over the 6 fills, and over the 3 pictures" in text and "SSIM hole, by picture" in text
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3 * 2 * 3      # families x pictures x masks x methods (border-mean added)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["large.png", "medium.png"]
    assert evaluate.main(["--data", str(data), "--size", "160", "--masks", "random", "--methods", "biharmonic",
                          "--out", str(tmp_path / "e2")]) == 2


def test_paired_differences_over_fills_and_over_pictures():
    """With several masks a picture, the interval over pictures averages each picture's differences
    first: here every picture's two fills agree, so the 6 fills look like 6 independent values (a
    narrow interval) where there are 3 (a wide one)."""
    g = np.random.default_rng(int(torch.randint(0, 2**31, ())))
    effect = g.normal(0.5, 1.0, size=3)                 # each picture's own difference
    result = picture_eval.FamilyResult("medium")
    for repeat in range(2):
        for picture in range(3):
            result.pictures.append(picture)
            other = float(g.uniform(20, 30))
            noise = float(g.normal(0, 0.01))
            result.rows.setdefault("gan", []).append({"psnr_hole": other + effect[picture] + noise})
            result.rows.setdefault("biharmonic", []).append({"psnr_hole": other})
    diffs = np.array([a["psnr_hole"] - b["psnr_hole"] for a, b in zip(result.rows["gan"], result.rows["biharmonic"])])
    per_picture = np.array([diffs[[p, p + 3]].mean() for p in range(3)])
    fills = metrics.paired(result.rows["gan"], result.rows["biharmonic"], "psnr_hole")
    pictures = metrics.paired(result.rows["gan"], result.rows["biharmonic"], "psnr_hole", result.pictures)
    assert fills.n == 6 and pictures.n == 3
    assert fills.mean == pytest.approx(diffs.mean()) and pictures.mean == pytest.approx(per_picture.mean())
    assert fills.ci95 == pytest.approx(stats.t.ppf(0.975, 5) * diffs.std(ddof=1) / np.sqrt(6))
    assert pictures.ci95 == pytest.approx(stats.t.ppf(0.975, 2) * per_picture.std(ddof=1) / np.sqrt(3))
    assert pictures.ci95 > fills.ci95


@pytest.mark.parametrize("scale", [3, 4, 7])
def test_the_coarse_pass_keeps_a_known_band_thinner_than_its_pixels(scale):
    """The coarse pass shrinks a window by ``scale``; with a known strip narrower than that, every
    coarse pixel was a hole and the generator filled from mid-grey. The strip stays known, as the mean
    of its pixels; where the strip is wide enough the old rule holds (any hole pixel makes a hole)."""
    colour = torch.rand(1, 3, 1, 1)
    image = colour.expand(1, 3, 60, 90).clone()
    hole = torch.ones(1, 1, 60, 90)
    hole[..., :, : scale - 1] = 0
    coarse, coarse_hole = neural_fill._shrink(image, hole, scale)
    assert coarse_hole[..., :, 0].eq(0).all() and coarse_hole[..., :, 1:].eq(1).all()
    torch.testing.assert_close(coarse[..., :, :1], colour.expand(1, 3, coarse.shape[-2], 1))
    hole[..., :, : 2 * scale] = 0                         # two whole coarse columns known
    _, coarse_hole = neural_fill._shrink(image, hole, scale)
    assert coarse_hole[..., :, :2].eq(0).all() and coarse_hole[..., :, 2:].eq(1).all()


def test_a_halo_that_reaches_the_window_border_is_the_whole_pass():
    """refine's ``halo``: tiles whose context reaches the window's border on every side give the holes
    what one pass does; a shorter one gives them other values, and the fill keeps the known pixels
    exactly; a halo off the stride grid, or without tiles, is refused."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    h, w = 8 * int(torch.randint(6, 12, (), generator=g)), 8 * int(torch.randint(6, 12, (), generator=g))
    image = torch.rand(1, 3, h, w, generator=g)
    hole = torch.zeros(1, 1, h, w)
    hole[..., h // 2 - 3:h // 2 + 3, 5:w - 5] = 1              # a scratch across the window
    with torch.no_grad():
        whole = generator(image, hole)
        reaching = generator(image, hole, tile=w, halo=8 * ((max(h, w) + 7) // 8))
        short = generator(image, hole, tile=16, halo=8)
    torch.testing.assert_close(torch.where(hole > 0.5, reaching, 0), torch.where(hole > 0.5, whole, 0), atol=1e-5,
                               rtol=0)
    assert not torch.allclose(torch.where(hole > 0.5, short, 0), torch.where(hole > 0.5, whole, 0), atol=1e-4)
    filled = inference.fill(generator, image, hole, tile=16, halo=8)      # as inpaint composites it
    assert torch.equal(filled[(hole < 0.5).expand_as(image)], image[(hole < 0.5).expand_as(image)])
    torch.testing.assert_close(filled[(hole > 0.5).expand_as(image)], short[(hole > 0.5).expand_as(image)])
    for bad in (4, -8):
        with pytest.raises(ValueError, match="multiple of 8"):
            generator(image, hole, tile=16, halo=bad)
    with pytest.raises(ValueError, match="given with tile"):
        generator(image, hole, halo=8)


def test_windows_of_thin_holes_take_the_short_tiles_where_they_compute_much_less(monkeypatch):
    """neural_fill.tiling: THIN_TILING for a full-resolution window whose holes are all thin, where its
    tiles compute at most THIN_MAX_SHARE of the exact pass's pixels; the exact pass for a window with a
    thicker hole, for a coarse pass, and where the short tiles would save too little.  Each call of the
    network gets the window's tiling, and planned_steps counts what the fill does."""
    monkeypatch.setattr(neural_fill, "THIN_TILING", (16, 8))
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    halo = generator.halo
    image = torch.rand(3, 200, 700, generator=g)
    hole = torch.zeros(1, 200, 700)
    for i in range(180):                             # a diagonal scratch: a window of thin holes, whose
        hole[:, 10 + i, 10 + 2 * i:14 + 2 * i] = 1   # short tiles compute a band of its box
    hole[:, 120:170, 600:660] = 1                    # an object ~50 px thick: a window of its own
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)

    def chosen(window):
        rows, cols = window.slices()
        return neural_fill.tiling(window, hole[None, :, rows, cols], halo)

    assert [chosen(window) for window in windows] == [(16, 8), (neural_fill.TILE, None)]
    coarse = neural_fill.Window(0, 0, 300, 300, {1: 2.0 * neural_fill.COARSE_THICKNESS})
    assert coarse.scale > 1 and neural_fill.tiling(coarse, torch.ones(1, 1, 300, 300), halo) == (neural_fill.TILE, None)
    # a diagonal of short strokes filling its window: tiles of 16 + 2 * 8 px overlap and compute more
    diagonal = torch.zeros(1, 1, 64, 64)
    for i in range(0, 64, 2):
        diagonal[..., i:i + 3, i:i + 3] = 1
    assert neural_fill.tiling(neural_fill.Window(0, 0, 64, 64, {1: 3.0}), diagonal, halo) == (neural_fill.TILE, None)
    seen = []
    fill = inference.fill
    monkeypatch.setattr(inference, "fill", lambda *a, **k: seen.append((k["tile"], k["halo"])) or fill(*a, **k))
    calls = []
    _fill(generator, image, hole, patch_blend=0, on_step=lambda: calls.append(1))
    assert sorted(set(seen), key=str) == sorted({(16, 8), (neural_fill.TILE, None)}, key=str)
    assert len(calls) == neural_fill.planned_steps(generator, hole > 0.5, windows)[0]
    monkeypatch.setattr(neural_fill, "THIN_TILING", None)
    assert {chosen(window) for window in windows} == {(neural_fill.TILE, None)}


def test_a_windows_tiling_is_planned_once_for_the_progress_bar_and_the_fill(monkeypatch):
    """tiling() plans a thin window's short and exact tiles to compare them (0.28 s for a 12-megapixel
    window): planned_steps, which sizes the progress bar, and the fill on the same windows plan once, and
    the fill is the one with fresh windows."""
    monkeypatch.setattr(neural_fill, "THIN_TILING", (16, 8))
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 120, 400, generator=g)
    hole = torch.zeros(1, 120, 400)
    for i in range(100):
        hole[:, 10 + i, 10 + 3 * i:13 + 3 * i] = 1
    labels, count = _labels(hole)
    windows = neural_fill.plan_windows(labels, count)
    neural_fill.planned_steps(generator, hole > 0.5, windows)
    planned = []
    plan = neural_fill._tile_inputs
    monkeypatch.setattr(neural_fill, "_tile_inputs", lambda *a: planned.append(1) or plan(*a))
    once = _fill(generator, image, hole, windows=windows)
    assert planned == []
    assert torch.equal(once, _fill(generator, image, hole))
    assert planned                                   # fresh windows plan their tiles again


def _sparse_masks(shape, g):
    """Known pixels that are sparse: 85% salt noise, a lattice of every 3rd pixel, and one of every 16th
    (the rule's first scale stops at samples ~13 px apart: the brown cast came back there)."""
    salt = (torch.rand(shape, generator=g) < 0.85).float()
    lattice = torch.ones(shape)
    lattice[::3, ::3] = 0
    wide = torch.ones(shape)
    wide[::16, ::16] = 0
    return {"salt": salt, "lattice": lattice, "lattice of every 16th pixel": wide}


def test_where_known_pixels_are_sparse_the_fill_is_the_converged_base_fill():
    """Dense salt noise or a lattice of known pixels: the network, trained on holes in mostly known
    crops, corrected the smooth fill by the wrong colour (2.5-8.8 dB below biharmonic on the
    validation photographs); there the fill is the base fill, relaxed to convergence."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    y, x = torch.meshgrid(torch.linspace(0, 1, 90), torch.linspace(0, 1, 120), indexing="ij")
    image = torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y * x, 0.8 - 0.5 * y]) + 0.02 * torch.rand(3, 90, 120, generator=g)
    for name, hole in _sparse_masks((90, 120), g).items():
        lines = []
        filled, _ = inpaint_image(image, hole[None], generator=generator, log=lines.append)
        assert any("where the known pixels are sparse (100% of the hole)" in line for line in lines), lines
        base = multiscale_biharmonic_fill(image[None] * (1 - hole), hole[None, None], neural_fill.SPARSE_ITERATIONS)[0]
        inside = hole > 0.5
        torch.testing.assert_close(filled[:, inside], base.clamp(0, 1)[:, inside], rtol=0, atol=1e-6, msg=name)
        assert torch.equal(filled[:, ~inside], image[:, ~inside])
    # a solid hole keeps the network's correction (the same generator changes its base fill)
    solid = torch.zeros(1, 90, 120)
    solid[:, 30:60, 40:80] = 1
    filled, _ = inpaint_image(image, solid, generator=generator, log=lambda s: None)
    base = multiscale_biharmonic_fill(image[None] * (1 - solid), solid[None], generator.base_iterations)[0]
    assert (filled - base)[:, solid[0] > 0.5].abs().max() > 1e-3


def test_the_sparse_rule_keeps_the_fill_within_0_and_1():
    """The converged biharmonic fill overshoots between noisy samples (-0.6 to 1.5 on uniform noise with
    85% salt holes): a float picture's fill came back out of [0, 1] until 2026-12-06 (a fuzz of
    ``Inpainter``; uint8 and the files written were clipped on the way out)."""
    g = _rng()
    generator = _trained_looking(FullResGenerator(32), g)
    image = torch.rand(3, 70, 90, generator=g)
    hole = (torch.rand(70, 90, generator=g) < 0.85).float()
    filled, _ = inpaint_image(image, hole[None], generator=generator, log=lambda s: None)
    base = multiscale_biharmonic_fill(image[None] * (1 - hole), hole[None, None], neural_fill.SPARSE_ITERATIONS)[0]
    inside = hole > 0.5
    assert base[:, inside].min() < -0.05 and base[:, inside].max() > 1.05      # the overshoot is there to clip
    assert filled.min() >= 0 and filled.max() <= 1
    torch.testing.assert_close(filled[:, inside], base.clamp(0, 1)[:, inside], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["thin", "medium", "large"])
def test_the_hole_families_never_reach_the_sparse_rule(family):
    """The evaluation's holes (and the pictures' tables) are filled as before: none is sparse.  (At
    the training crops' scale, where thin strokes crowd a 256 px crop, a few hundred pixels where
    several cross can be.)"""
    for seed in range(6):
        mask = masks.family_masks(family, 1, 384, 512, seed=seed, scale="picture")[0, 0] > 0.5
        labels, count = ndimage.label(mask.numpy(), structure=np.ones((3, 3)))
        for window in neural_fill.plan_windows(labels, count):
            rows, cols = window.slices()
            assert neural_fill.sparse_weight(mask.numpy()[rows, cols]) is None, (family, seed)
    # and a sparse region beside a solid hole is found, the solid hole's rim left to the network
    hole = np.zeros((120, 200), bool)
    hole[30:90, 20:80] = True
    hole[:, 120:] = np.random.default_rng().random((120, 80)) < 0.85
    weight = neural_fill.sparse_weight(hole)
    assert weight[:, :100].max() == 0
    # judged away from the picture's edges: a corner's few salt pixels, all holes (a few fresh draws in a
    # thousand), are "deep" there, and the rule rightly leaves the square around them to the network
    inner = (slice(30, 90), slice(140, 170))
    assert weight[inner][hole[inner]].min() == 1


def test_sparse_rule_counts_a_square_exactly_at_the_limit_as_not_sparse():
    """"Sparse" is fewer than SPARSE_KNOWN known: a 10x10 window whose every square (all cut by its
    edge, so all the whole window) is exactly 40% known has no sparse pixel, and one known pixel fewer
    makes every hole pixel sparse.  (A float32 share made 40/100 a hair below 0.4.)"""
    assert neural_fill.SPARSE_KNOWN == 0.4 and all(box > 20 for _, box in neural_fill.SPARSE_SCALES)
    y, x = np.mgrid[:10, :10]
    hole = ~np.isin((y * 10 + x) % 5, [0, 2])               # 40 known pixels, none farther than 2 px from one
    assert neural_fill.sparse_weight(hole) is None
    fewer = hole.copy()
    fewer[np.random.default_rng().integers(10), 0] = True   # 39 known (column 0 is all known)
    weight = neural_fill.sparse_weight(fewer)
    assert weight is not None and weight[fewer].min() > 0
