"""Generator / discriminators / patch cropping: shapes, layer widths, errors, channels-last, compile."""
import os
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nfinpaint.config import PRESETS
from nfinpaint.generators import GENERATORS, build_generator, generator_from_config
from nfinpaint.networks import (GlobalDiscriminator, Generator, LocalDiscriminator, PaperGenerator,
                                ResidualGenerator, ResidualUNetGenerator, count_parameters, crop_patches,
                                generator_stages, local_patch_origin)


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _linears(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("preset", ["paper", "paper64"])
def test_presets_shapes_and_range(preset):
    p = PRESETS[preset]
    torch.manual_seed(0)
    g = Generator(p.image_size)
    x = torch.rand(2, 3, p.image_size, p.image_size)
    m = torch.zeros(2, 1, p.image_size, p.image_size)
    m[..., 2:6, 3:7] = 1
    y = g(x, m)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    gd, ld = GlobalDiscriminator(p.image_size), LocalDiscriminator(p.local_patch_size)
    assert gd(y).shape == (2,)
    origins = local_patch_origin(m, p.local_patch_size)
    assert ld(crop_patches(y, origins, p.local_patch_size)).shape == (2,)
    # adv_form "cells": the map whose mean the logit is
    for d, images in ((gd, y), (ld, crop_patches(y, origins, p.local_patch_size))):
        cells = d(images, cells=True)
        assert cells.shape == (2, 1, d.final_size, d.final_size)
        assert torch.allclose(cells.mean(dim=(1, 2, 3)), d(images))


def test_paper64_layer_widths_match_tables():
    g = Generator(64)
    convs = _convs(g)
    # Table 1 encoder convs, Table 2 decoder convs, then to RGB
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 64, 64, 32, 32, 3]
    assert convs[0].in_channels == 4 and convs[4].in_channels == 256
    assert all(c.kernel_size == (3, 3) for c in convs)
    fc, defc = _linears(g)
    assert (fc.in_features, fc.out_features) == (256 * 4 * 4, 1024)
    assert (defc.in_features, defc.out_features) == (1024, 4096)
    assert sum(isinstance(m, nn.MaxPool2d) for m in g.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 8
    print(f"\nGenerator(64): {count_parameters(g):,} parameters "
          f"(encoder {count_parameters(g.encoder):,}, fc {count_parameters(g.fc):,}, "
          f"defc {count_parameters(g.defc):,}, decoder {count_parameters(g.decoder):,}, "
          f"to_rgb {count_parameters(g.to_rgb):,})")


def test_paper24_layout():
    g = Generator(24)
    assert g.stages == 3 and g.bottleneck == 3
    assert [c.out_channels for c in _convs(g)] == [32, 64, 128, 64, 32, 32, 3]
    fc, defc = _linears(g)
    assert (fc.in_features, fc.out_features, defc.out_features) == (128 * 9, 1024, 256 * 9)
    print(f"\nGenerator(24): {count_parameters(g):,} parameters")


def test_discriminator_widths_match_tables():
    gd = GlobalDiscriminator(64)
    convs = _convs(gd)
    assert [c.out_channels for c in convs] == [32, 32, 64, 128, 256, 128, 1]       # Table 3
    assert [c.kernel_size[0] for c in convs] == [3, 4, 4, 4, 4, 4, 4]
    assert [c.stride[0] for c in convs] == [1, 2, 2, 2, 2, 2, 1]
    ld = LocalDiscriminator(32)
    convs = _convs(ld)
    assert [c.out_channels for c in convs] == [64, 64, 128, 256, 1]                # Table 4
    assert [c.stride[0] for c in convs] == [1, 2, 2, 2, 1]
    for d in (gd, ld, GlobalDiscriminator(24), LocalDiscriminator(12)):
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in d.modules())
    print(f"\nGlobalD(64) {count_parameters(gd):,}, LocalD(32) {count_parameters(ld):,}, "
          f"GlobalD(24) {count_parameters(GlobalDiscriminator(24)):,}, "
          f"LocalD(12) {count_parameters(LocalDiscriminator(12)):,} parameters")


@pytest.mark.parametrize("size,stages", [(8, 2), (12, 2), (16, 3), (20, 2), (28, 2), (32, 4), (48, 4)])
def test_other_sizes(size, stages):
    assert generator_stages(size) == stages
    g = Generator(size).eval()
    y = g(torch.rand(1, 3, size, size), torch.zeros(1, 1, size, size))
    assert y.shape == (1, 3, size, size)
    assert GlobalDiscriminator(size)(y).shape == (1,)


@pytest.mark.parametrize("size", [4, 7, 9, 10, 18, 25, 30])
def test_bad_sizes_raise_naming_valid_sizes(size):
    with pytest.raises(ValueError, match="multiples of 4"):
        Generator(size)


def test_bad_input_shapes():
    g = Generator(24)
    with pytest.raises(ValueError, match="expects"):
        g(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expects"):
        g(torch.rand(1, 3, 24, 24), torch.zeros(1, 3, 24, 24))
    with pytest.raises(ValueError, match="patch_size"):
        LocalDiscriminator(5)
    with pytest.raises(ValueError, match="expects"):
        LocalDiscriminator(12)(torch.rand(1, 3, 16, 16))


def test_hole_content_is_ignored():
    torch.manual_seed(1)
    g = Generator(16).eval()
    x = torch.rand(2, 3, 16, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 5:11] = 1
    other = torch.where(m.bool(), torch.rand_like(x), x)
    assert torch.equal(g(x, m), g(other, m))


def test_config_rebuilds_same_architecture():
    for fill in (0.5, (0.485, 0.456, 0.406)):
        g = Generator(24, hole_fill=fill)
        h = Generator(**g.config)
        h.load_state_dict(g.state_dict())
        assert h.config == g.config
        assert set(g.state_dict()) == set(Generator(24).state_dict())   # the fill is config, not weights
    with pytest.raises(ValueError, match="hole_fill"):
        Generator(24, hole_fill=(0.1, 0.2))


def test_mean_fill_is_used_in_the_hole():
    mean = (0.485, 0.456, 0.406)
    g = Generator(16, hole_fill=mean).eval()
    seen = []
    g.encoder[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.rand(2, 3, 16, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 5:11] = 1
    g(x, m)
    expected = torch.cat([torch.where(m.bool(), torch.tensor(mean).view(1, 3, 1, 1), x), m], dim=1)
    torch.testing.assert_close(seen[0], expected)


def test_channels_last_matches_contiguous():
    torch.manual_seed(2)
    g = Generator(24).eval()
    d = GlobalDiscriminator(24)
    x = torch.rand(3, 3, 24, 24)
    m = torch.zeros(3, 1, 24, 24)
    m[..., 8:16, 8:16] = 1
    cl = torch.channels_last
    y, ycl = g(x, m), g(x.contiguous(memory_format=cl), m.contiguous(memory_format=cl))
    assert ycl.is_contiguous(memory_format=cl)
    torch.testing.assert_close(ycl, y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.to(memory_format=cl)(ycl), d(y), atol=1e-5, rtol=1e-5)



# ----------------------------------------------------------------------------- the generator classes

def test_registry_has_one_class_per_name():
    classes = [entry.cls for entry in GENERATORS.values()]
    assert len(set(classes)) == len(classes)
    for name, entry in GENERATORS.items():
        assert entry.name == name == entry.cls.variant
    fixed = {name for name, entry in GENERATORS.items() if issubclass(entry.cls, Generator)}
    assert {GENERATORS[name].cls for name in fixed} == {PaperGenerator, ResidualGenerator, ResidualUNetGenerator}
    for name in fixed:        # the old spelling Generator(size, variant=name) / Generator(**config) still builds it
        assert type(Generator(8, variant=name)) is GENERATORS[name].cls
    assert type(Generator(8)) is PaperGenerator
    with pytest.raises(ValueError, match="'paper'"):
        PaperGenerator(8, variant="residual")
    with pytest.raises(ValueError, match="unknown generator"):
        Generator(8, variant="nope")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_each_registered_generator_loads_its_own_state_dict(name):
    entry = GENERATORS[name]
    size = 16 if entry.full_resolution else 8
    torch.manual_seed(8)
    g = build_generator(name, size)
    assert type(g) is entry.cls and g.config["variant"] == name
    with torch.no_grad():                 # away from the zero-initialised to_rgb of the residual ones
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g.eval()
    again = generator_from_config(g.config)
    assert type(again) is entry.cls and again.config == g.config
    again.load_state_dict(g.state_dict(), strict=True)
    again.eval()
    x, m = torch.rand(2, 3, size, size), torch.zeros(2, 1, size, size)
    m[..., 2:6, 3:7] = 1
    with torch.no_grad():
        assert torch.equal(again(x, m), g(x, m))


def test_fixed_size_generator_files_keep_their_weight_names():
    """The names and shapes a generator file holds (users' files of every kind must keep loading)."""
    weights = {"encoder.0.0.weight": (32, 4, 3, 3), "encoder.2.0.weight": (64, 32, 3, 3),
             "fc.0.weight": (1024, 256), "defc.0.weight": (1024, 1024),
             "decoder.1.0.weight": (32, 256, 3, 3), "decoder.3.0.weight": (32, 32, 3, 3),
             "to_rgb.weight": (3, 32, 3, 3), "to_rgb.bias": (3,)}
    norms = {"encoder.0.1": 32, "encoder.2.1": 64, "fc.1": 1024, "defc.1": 1024, "decoder.1.1": 32,
             "decoder.3.1": 32}
    for cls in (PaperGenerator, ResidualGenerator, ResidualUNetGenerator):
        want = dict(weights)
        if cls is ResidualUNetGenerator:      # the skips widen the decoder convs' inputs
            want.update({"decoder.1.0.weight": (32, 256 + 64, 3, 3), "decoder.3.0.weight": (32, 32 + 32, 3, 3)})
        for prefix, width in norms.items():
            want.update({f"{prefix}.{k}": (width,) for k in ("weight", "bias", "running_mean", "running_var")})
            want[f"{prefix}.num_batches_tracked"] = ()
        got = {k: tuple(v.shape) for k, v in cls(8).state_dict().items()}
        assert got == want, cls.__name__


def test_patch_origin_centres_and_clamps():
    m = torch.zeros(4, 1, 24, 24)
    m[0, :, 8:16, 8:16] = 1          # centred 8x8 -> patch 6..17
    m[1, :, 0:3, 20:24] = 1          # corner -> clamped
    m[2, :, 5:6, 9:12] = 1           # 1x3 hole: centre y=5.5, x=10.5
    origins = local_patch_origin(m, 12)  # sample 3: empty -> image centre
    assert origins.dtype == torch.long
    assert origins.tolist() == [[6, 6], [0, 12], [0, 4], [6, 6]]


def test_patch_origin_random_boxes_against_loop():
    g = torch.Generator().manual_seed(3)
    n, s, p = 16, 20, 9
    m = torch.zeros(n, 1, s, s)
    expected = []
    for i in range(n):
        y0, x0 = torch.randint(0, s - 1, (2,), generator=g).tolist()
        y1 = y0 + int(torch.randint(1, s - y0 + 1, (1,), generator=g))
        x1 = x0 + int(torch.randint(1, s - x0 + 1, (1,), generator=g))
        m[i, 0, y0:y1, x0:x1] = 1
        # hand computation: centre of [y0, y1) is (y0 + y1) / 2; patch starts p/2 before it
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        oy = min(max(int((cy - p / 2) // 1), 0), s - p)
        ox = min(max(int((cx - p / 2) // 1), 0), s - p)
        expected.append([oy, ox])
    assert local_patch_origin(m, p).tolist() == expected


def test_patch_origin_always_sees_the_hole():
    """Strokes around an empty middle: the box-centred patch held no hole pixel, so the local
    discriminator got the same pixels as real and as fake.  Such a patch moves to the hole pixel
    nearest the box's centre; every other patch stays box-centred (a rectangle's, a blob's)."""
    m = torch.zeros(2, 1, 40, 40)
    m[0, :, 2:4, 2:38] = 1            # two strokes, top and bottom: the box's middle rows are empty
    m[0, :, 36:38, 2:38] = 1
    m[1, :, 10:30, 12:28] = 1         # a box: unchanged
    origins = local_patch_origin(m, 12)
    assert origins[1].tolist() == [14, 14]
    oy, ox = origins[0].tolist()
    assert m[0, 0, oy:oy + 12, ox:ox + 12].any()
    assert ox in (13, 14) and oy in (0, 28)     # on a stroke, at the box's centre column
    # random masks of the training families: a hole pixel in every patch
    from nfinpaint.masks import family_masks

    for family in ("thin", "medium", "large"):
        masks = family_masks(family, 64, 128, 128, seed=int(torch.randint(1 << 30, ())))
        origins = local_patch_origin(masks, 64)
        for mask, (y, x) in zip(masks, origins.tolist()):
            assert mask[0, y:y + 64, x:x + 64].gt(0.5).any()


def test_crop_patches_values_and_gradient():
    images = torch.rand(3, 2, 10, 10, requires_grad=True)
    origins = torch.tensor([[0, 0], [3, 5], [6, 6]])
    patches = crop_patches(images, origins, 4)
    for i, (y, x) in enumerate(origins.tolist()):
        assert torch.equal(patches[i], images[i, :, y:y + 4, x:x + 4])
    weights = torch.rand_like(patches)
    (patches * weights).sum().backward()
    expected = torch.zeros_like(images)
    for i, (y, x) in enumerate(origins.tolist()):
        expected[i, :, y:y + 4, x:x + 4] = weights[i]
    assert torch.equal(images.grad, expected)


def test_forward_passes_compile_without_graph_breaks():
    """fullgraph=True fails on any graph break; one compile of each network on tiny sizes."""
    torch.manual_seed(4)
    cl = torch.channels_last
    g = Generator(8).to(memory_format=cl)
    gd, ld = GlobalDiscriminator(8).to(memory_format=cl), LocalDiscriminator(8).to(memory_format=cl)
    x = torch.rand(2, 3, 8, 8).contiguous(memory_format=cl)
    m = torch.zeros(2, 1, 8, 8)
    m[..., 2:5, 3:6] = 1
    m = m.contiguous(memory_format=cl)

    def step(x, m):
        y = g(x, m)
        patches = crop_patches(y, local_patch_origin(m, 8), 8)
        return y, gd(y), ld(patches)

    eager = step(x, m)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x, m)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- generator files

from nfinpaint.generator_io import GeneratorFileError, load_generator, save_generator  # noqa: E402

_META = dict(preset="paper", image_size=24, hole_size=8, feature_weights="random (untrained)",
             feature_pretrained=False)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(5)
    g = Generator(24, hole_fill=0.5)
    g.train()
    g(torch.rand(4, 3, 24, 24), torch.zeros(4, 1, 24, 24))        # move the BN running stats
    extra = dict(step=7, versions={"torch": torch.__version__}, out=tmp_path, sizes=(1, 2), lr=2e-4,
                 count=np.int64(3))
    path = save_generator(tmp_path / "run" / "generator.pt", g, dict(_META, **extra))
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["generator.pt"]  # no temp left
    for where in (path, path.parent):
        loaded, meta = load_generator(where)
        assert meta["step"] == 7 and meta["feature_pretrained"] is False and meta["lr"] == 2e-4
        assert meta["versions"] == {"torch": str(torch.__version__)} and meta["out"] == str(tmp_path)
        assert meta["sizes"] == [1, 2] and meta["count"] == 3 and type(meta["count"]) is int
        assert loaded.config == g.config and not loaded.training
        for (k, a), (_, b) in zip(g.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k
    x, m = torch.rand(2, 3, 24, 24), torch.ones(2, 1, 24, 24)
    torch.testing.assert_close(loaded(x, m), g.eval()(x, m))


def test_half_precision_file_loads_as_float32(tmp_path):
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    g = Generator(16).eval()
    path = save_generator(tmp_path / "half.pt", g.half(), dict(_META, image_size=16))
    assert torch.load(path)["state_dict"]["to_rgb.weight"].dtype == torch.float16
    loaded, _ = load_generator(path)
    for (name, want), got in zip(g.state_dict().items(), loaded.state_dict().values()):
        assert got.dtype == (torch.float32 if want.is_floating_point() else want.dtype), name
        assert torch.equal(got, want.float() if want.is_floating_point() else want), name
    x, m = torch.rand(2, 3, 16, 16), torch.ones(2, 1, 16, 16)
    assert loaded(x, m).dtype == torch.float32


def test_a_generator_file_with_a_flipped_bit_is_refused_not_loaded(tmp_path):
    """torch.load does not check the zip's checksums: a flipped bit in a weight loaded (as 3.5e36, say)."""
    from _crafted import flip_a_bit_in_the_largest_entry  # noqa: PLC0415

    path = tmp_path / "generator.pt"
    save_generator(path, Generator(8), dict(_META, image_size=8))
    load_generator(path)
    entry = flip_a_bit_in_the_largest_entry(path, np.random.default_rng())
    with pytest.raises(GeneratorFileError, match="is damaged") as info:
        load_generator(path)
    assert repr(entry) in str(info.value)


def test_load_errors(tmp_path):
    with pytest.raises(GeneratorFileError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")
    with pytest.raises(GeneratorFileError, match="without generator.pt"):
        load_generator(tmp_path)
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(GeneratorFileError, match="is not a regular file"):
        load_generator(fifo)
    fifo.unlink()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(GeneratorFileError, match="not a readable") as info:
        load_generator(corrupt)
    assert "weights_only" not in str(info.value)     # never advise unpickling a file of unknown origin
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(GeneratorFileError, match=r"empty \(0 bytes\)"):
        load_generator(empty)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(GeneratorFileError, match="not an nfinpaint generator"):
        load_generator(foreign)
    truncated = tmp_path / "generator.pt"
    save_generator(truncated, Generator(8), dict(_META, image_size=8))
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(GeneratorFileError, match="not a readable"):
        load_generator(tmp_path)
    with pytest.raises(ValueError, match="meta lacks"):
        save_generator(tmp_path / "x.pt", Generator(8), {"preset": "paper"})
    scripted = tmp_path / "exported.pt"          # what python -m nfinpaint.export writes
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # torch.load's "dispatching to torch.jit.load" leaked before
        with pytest.raises(GeneratorFileError, match="is an exported TorchScript model"):
            load_generator(scripted)


@pytest.mark.parametrize("key, value", [("hole_size", "abc"), ("hole_size", "8"), ("hole_size", 8.0),
                                        ("hole_size", True), ("hole_size", 0), ("hole_size", 25),
                                        ("image_size", "24"), ("image_size", 24.0), ("image_size", None)])
def test_a_wrongly_typed_meta_size_is_a_one_line_error_naming_file_key_and_value(tmp_path, key, value):
    # a hand-edited meta failed later: "invalid literal for int()" (no file named), or "image_size 24 but
    # the generator takes 24" for the string "24"
    from nfinpaint.generator_io import TrainedGenerator  # noqa: PLC0415

    path = save_generator(tmp_path / "edited.pt", Generator(24), _META)
    payload = torch.load(path, weights_only=True)
    payload["meta"][key] = value
    torch.save(payload, path)
    with pytest.raises(GeneratorFileError) as info:
        load_generator(path)
    message = str(info.value)
    assert "\n" not in message and "edited.pt" in message and f"{key} {value!r}" in message, message
    if key == "hole_size":        # a meta handed to TrainedGenerator without load_generator's check
        trained = TrainedGenerator(Generator(24), dict(_META, hole_size=value), path, "0" * 64)
        with pytest.raises(GeneratorFileError, match=r"edited\.pt.*" + re.escape(f"hole_size {value!r}")):
            trained.hole_size
    payload["meta"].pop(key)      # absent: allowed (the generator's own size; a third of it as hole)
    torch.save(payload, path)
    generator, meta = load_generator(path)
    assert TrainedGenerator(generator, meta, path, "").hole_size == 8      # the meta's, or a third of 24


@pytest.mark.gpu
def test_cuda_bf16_channels_last_compiled_matches_eager():
    torch.manual_seed(6)
    cl = torch.channels_last
    g = Generator(24).cuda().to(memory_format=cl).eval()
    gd = GlobalDiscriminator(24).cuda().to(memory_format=cl)
    x = torch.rand(8, 3, 24, 24, device="cuda").contiguous(memory_format=cl)
    m = torch.zeros(8, 1, 24, 24, device="cuda")
    m[..., 8:16, 8:16] = 1

    def forward(x, m):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = g(x, m)
            return y, gd(y)

    eager = forward(x, m)
    compiled = torch.compile(forward, fullgraph=True)(x, m)
    assert compiled[0].is_contiguous(memory_format=cl)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a.float(), b.float(), atol=3e-2, rtol=3e-2)
