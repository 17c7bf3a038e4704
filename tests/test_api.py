"""``nfinpaint.Inpainter``: arrays in, the same kind of array out, only the holes changed.

The generator is a ``fullres`` one made here with small random output weights (an untrained
one returns its base fill exactly): the tests check types, channels and where pixels go.
"""
import io
import struct
import threading
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import nfinpaint
from nfinpaint import Inpainter, InpaintError, devices, fill_holes
from nfinpaint.images import turned_back, turned_upright
from nfinpaint.inpaint import inpaint_image

H, W = 36, 44


@pytest.fixture(scope="module")
def inpainter(fullres_checkpoint):
    return Inpainter(fullres_checkpoint, device="cpu")


def _hole():
    hole = np.zeros((H, W), bool)
    hole[8:20, 10:24] = True
    hole[28, 40] = True
    return hole


def _palette_picture(rng, mode="P", transparency=False):
    """A palette picture of 24 entries, the last 8 repeating the first 8 (each used): a picture
    saved back by colour instead of by index would lose which of two equal entries a pixel had."""
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    palette = np.concatenate([colours, colours[:8]])
    indices = rng.integers(0, len(palette), (H, W), dtype=np.uint8)
    bands = indices if mode == "P" else np.dstack([indices, rng.integers(0, 256, (H, W), dtype=np.uint8)])
    picture = Image.frombytes(mode, (W, H), np.ascontiguousarray(bands).tobytes())
    picture.putpalette(palette.ravel().tolist())
    if transparency:    # PNG's tRNS: an alpha per entry, some fully transparent, some half
        picture.info["transparency"] = bytes(rng.choice([0, 128, 255], len(palette)).astype(np.uint8))
    return picture


def _pictures(rng):
    u8 = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    return {
        "numpy uint8 grey": u8[..., 0],
        "numpy uint8 rgb": u8[..., :3],
        "numpy uint8 rgba": u8,
        "numpy uint16 rgb": u16,
        "numpy uint16 grey+alpha": u16[..., :2],
        "numpy big-endian uint16 rgb": u16.astype(">u2"),      # was refused: '>u2' is no np.uint16
        "numpy float32 rgb": rng.random((H, W, 3), dtype=np.float32),
        "numpy float64 grey": rng.random((H, W)),
        "PIL RGB": Image.fromarray(u8[..., :3]),
        "PIL RGBA": Image.fromarray(u8, "RGBA"),
        # premultiplied alpha: went through RGB, and the holes came back opaque
        "PIL RGBa": Image.fromarray(u8, "RGBA").convert("RGBa"),
        "PIL La": Image.fromarray(u8[..., :2], "LA").convert("La"),
        "PIL L": Image.fromarray(u8[..., 0]),
        "PIL I;16": Image.fromarray(u16[..., 0]),
        "PIL P": _palette_picture(rng),
        "PIL PA": _palette_picture(rng, "PA"),
        "torch float rgb": torch.rand(3, H, W, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))),
        "torch uint8 rgba": torch.from_numpy(u8).permute(2, 0, 1).contiguous(),
    }


def _as_array(x):
    """(H, W, C) numpy view of any image kind, for comparing pixels."""
    if isinstance(x, Image.Image):
        a = np.asarray(x)
    elif isinstance(x, torch.Tensor):
        a = x.permute(1, 2, 0).numpy()
    else:
        a = x
    return a[..., None] if a.ndim == 2 else a


@pytest.mark.parametrize("kind", list(_pictures(np.random.default_rng(0))))
def test_same_kind_out_and_only_the_holes_change(inpainter, kind):
    picture = _pictures(np.random.default_rng())[kind]
    hole = _hole()
    out = inpainter(picture, hole)
    assert type(out) is type(picture)
    if isinstance(picture, Image.Image):
        assert (out.mode, out.size, out.getpalette()) == (picture.mode, picture.size, picture.getpalette())
    else:
        assert out.dtype == picture.dtype and tuple(out.shape) == tuple(picture.shape)
        assert out.flags.c_contiguous if isinstance(out, np.ndarray) else out.is_contiguous()
    before, after = _as_array(picture), _as_array(out)
    assert np.array_equal(after[~hole], before[~hole])                  # known pixels: exactly
    colour = 1 if before.shape[2] in (1, 2) else 3
    if before.shape[2] in (2, 4):
        assert np.array_equal(after[..., colour], before[..., colour])  # alpha passed through
    assert not np.array_equal(after[hole][:, :colour], before[hole][:, :colour])


def _random_holes(rng) -> dict[str, np.ndarray]:
    box = np.zeros((H, W), bool)
    top, left = rng.integers(0, H - 4), rng.integers(0, W - 4)
    box[top:top + rng.integers(2, H - top + 1), left:left + rng.integers(2, W - left + 1)] = True
    lines = np.zeros((H, W), bool)
    lines[rng.integers(0, H, 3)] = True
    lines[:, rng.integers(0, W, 2)] = True
    return {"box": box, "lines": lines, "salt": rng.random((H, W)) < rng.uniform(0.5, 0.95)}


@pytest.mark.parametrize("kind", ["numpy float32 rgb", "numpy float64 grey", "torch float rgb"])
def test_a_float_picture_s_fill_stays_within_0_and_1(inpainter, kind):
    """Whatever the holes, a float picture in [0, 1] comes back in [0, 1], finite, its known pixels exact.
    Dense salt holes (the sparse rule's converged biharmonic fill) over noise came back -0.6..1.5 until
    2026-12-06: the uint8 kinds and the files written were clipped on the way out, floats were not."""
    rng = np.random.default_rng()
    for name, hole in _random_holes(rng).items():
        picture = _pictures(rng)[kind]
        after = _as_array(inpainter(picture, hole))
        assert np.isfinite(after).all() and after.min() >= 0 and after.max() <= 1, (name, after.min(), after.max())
        assert np.array_equal(after[~hole], _as_array(picture)[~hole]), name


def test_rgb_holes_are_inpaint_image_s_fill(inpainter, fullres_checkpoint):
    rng = np.random.default_rng()
    picture = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    hole = _hole()
    out = inpainter(picture, hole)
    expected, _ = inpaint_image(torch.from_numpy(picture).permute(2, 0, 1).float() / 255,
                                torch.from_numpy(hole)[None].float(), generator=inpainter.loaded.generator,
                                log=lambda m: None)
    expected = np.floor(expected.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(out, np.where(hole[..., None], expected, picture))


@pytest.mark.parametrize("mode, transparency", [("P", False), ("P", True), ("PA", False)])
def test_palette_picture_keeps_its_palette_and_fills_with_its_nearest_colours(inpainter, mode, transparency):
    rng = np.random.default_rng()
    picture = _palette_picture(rng, mode, transparency)
    hole = _hole()
    out = inpainter(picture, hole)
    assert (out.mode, out.getpalette(), out.info.get("transparency")) == \
        (mode, picture.getpalette(), picture.info.get("transparency"))
    before, after = _as_array(picture), _as_array(out)
    assert np.array_equal(after[~hole], before[~hole])              # indices, so duplicate entries too
    assert not np.array_equal(after[hole][:, 0], before[hole][:, 0])
    # reference: the RGB(A) picture's fill, and a brute-force nearest palette colour of the same alpha
    rgba = mode == "PA" or transparency
    fill = np.asarray(inpainter(picture.convert("RGBA" if rgba else "RGB"), hole)).astype(np.int64)
    shown = np.asarray(out.convert("RGBA")).astype(np.int64)
    assert np.array_equal(shown[..., 3], np.asarray(picture.convert("RGBA"))[..., 3])   # alpha never changes
    palette = np.array(picture.getpalette(), np.int64).reshape(-1, 3)
    entry_alpha = np.frombuffer(picture.info["transparency"], np.uint8) if transparency else np.full(len(palette), 255)
    for y, x in zip(*np.nonzero(hole)):
        same_alpha = palette[entry_alpha == entry_alpha[before[y, x, 0]]] if transparency else palette
        nearest = ((same_alpha - fill[y, x, :3]) ** 2).sum(axis=1).min()
        assert ((shown[y, x, :3] - fill[y, x, :3]) ** 2).sum() == nearest, (y, x)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "1"])
def test_other_modes_change_only_the_holes(inpainter, mode):
    """Modes filled as RGB: RGB -> CMYK (...) is no exact round trip, yet the known pixels stay exact."""
    rng = np.random.default_rng()
    # random bands: CMYK's black channel is one that RGB -> CMYK would not give back
    picture = Image.frombytes(mode, (W, H), rng.integers(0, 256, (H, W, 4), dtype=np.uint8).tobytes())
    hole = _hole()
    out = inpainter(picture, hole)
    before, after = _as_array(picture), _as_array(out)
    assert out.mode == mode and np.array_equal(after[~hole], before[~hole])
    assert not np.array_equal(after[hole], before[hole])


def test_every_mask_kind_gives_the_same_fill(inpainter):
    picture = np.random.default_rng().random((H, W, 3), dtype=np.float32)
    hole = _hole()
    reference = inpainter(picture, hole)
    for mask in (hole.astype(np.uint8) * 255, hole.astype(np.float32), Image.fromarray(hole.astype(np.uint8) * 255),
                 torch.from_numpy(hole)[None].float(), Image.fromarray(~hole).convert("RGB"),
                 hole.astype(np.int64), hole.astype(np.int32) * 255, hole.astype(np.int16), hole.astype(np.uint8),
                 hole.astype(np.uint16) * 65535, torch.from_numpy(hole.astype(np.int64)), torch.from_numpy(hole),
                 Image.fromarray(hole.astype(np.uint8)), Image.fromarray(hole.astype(np.uint16)),   # 0/1: 1 = hole
                 # LAB: PIL has no LAB -> L (a bare ValueError), only LAB -> RGB
                 Image.fromarray(hole.astype(np.uint8) * 255).convert("RGB").convert("LAB")):
        invert = isinstance(mask, Image.Image) and mask.mode == "RGB"
        assert np.array_equal(inpainter(picture, mask, invert=invert), reference)


@pytest.mark.parametrize("mode, dtype", [("I;16B", ">u2"), ("I;16L", "<u2"), ("I;16N", "=u2")])
def test_16_bit_grey_of_any_byte_order_is_filled_at_16_bits(inpainter, mode, dtype):
    """Such PIL images once went through convert("RGB"), which clipped them white: the holes came back
    unchanged. They fill as I;16 does, and come back in their own byte order."""
    levels = np.random.default_rng().integers(0, 65536, (H, W), dtype=np.uint16)
    hole = _hole()
    reference = np.asarray(inpainter(Image.fromarray(levels), hole))
    assert not np.array_equal(reference[hole], levels[hole])
    out = inpainter(Image.frombytes(mode, (W, H), levels.astype(dtype).tobytes()), hole)
    assert out.mode == mode and np.array_equal(np.asarray(out).astype(np.uint16), reference)


def test_integer_results_round_as_the_command_writes_them():
    """Halves round up in both (the API rounded them to even: 1 level of 65535 apart on 16-bit grey)."""
    from nfinpaint.api import _from_float
    from nfinpaint.images import tensor_to_pil

    rng = np.random.default_rng()
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        top = 2**bits - 1
        ties = (rng.integers(0, top, 64) + 0.5) / top               # exactly k + 0.5 levels, as float32 allows
        values = np.concatenate([ties, rng.random(64)]).astype(np.float32).reshape(8, 16)
        written = np.asarray(tensor_to_pil(torch.from_numpy(values)[None], bits=bits)).astype(np.int64)
        assert np.array_equal(_from_float(values, np.dtype(dtype)).astype(np.int64), written), bits


def test_a_big_endian_16_bit_mask_is_read_by_its_full_range(inpainter):
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    hole = _hole()
    reference = inpainter(picture, hole)
    assert np.array_equal(inpainter(picture, (hole * 65535).astype(">u2")), reference)


@pytest.mark.parametrize("mode", ["L", "I", "I;16", "I;16B", "I;16L", "I;16N"])
def test_a_grey_pil_mask_of_0_and_1_is_1_for_hole_in_every_integer_mode(inpainter, mode):
    """As an integer mask array is; I;16N was read by its full range instead: "no hole"."""
    from nfinpaint.images import integer_grey_image

    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    hole = _hole()
    mask = Image.fromarray(hole.astype(np.uint8)) if mode == "L" else integer_grey_image(hole.astype(np.uint16), mode)
    assert np.array_equal(inpainter(picture, mask), inpainter(picture, hole))


@pytest.mark.parametrize("image_orientation, mask_orientation, refused", [
    (None, 3, True), (6, 3, True), (3, 3, False), (3, None, False)])
def test_a_pil_mask_turned_otherwise_than_its_image_is_refused(inpainter, image_orientation, mask_orientation,
                                                               refused):
    """The API fills stored pixels; a mask stored turned by 180 degrees filled the opposite corner."""
    def tagged(array, orientation):
        picture = Image.fromarray(array)
        if orientation is not None:
            picture.getexif()[0x0112] = orientation
        return picture

    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    hole = _hole()
    image, mask = tagged(picture, image_orientation), tagged(hole.astype(np.uint8) * 255, mask_orientation)
    if refused:
        with pytest.raises(InpaintError, match=f"the mask has EXIF orientation {mask_orientation}"):
            inpainter(image, mask)
    else:       # the same stored layout: pixels line up (the fill itself runs upright: the test below)
        turn = image_orientation or 1
        upright = inpainter(np.ascontiguousarray(turned_upright(picture, turn)),
                            np.ascontiguousarray(turned_upright(hole, turn)))
        assert np.array_equal(np.asarray(inpainter(image, mask)), turned_back(upright, turn))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_pil_picture_is_filled_upright_and_returned_as_stored(inpainter, orientation):
    """The model learned upright photographs: a phone picture stored sideways with its EXIF orientation
    was filled sideways (~60 px holes lost 1.0 dB over 46 fills).  It is filled as it is shown, as the
    command fills its files, and comes back in its stored layout."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    tagged = Image.fromarray(picture)
    tagged.getexif()[0x0112] = orientation
    shown = ImageOps.exif_transpose(tagged)
    assert np.array_equal(turned_upright(picture, orientation), np.asarray(shown))      # PIL's own turn
    hole = _hole()
    out = inpainter(tagged, hole)
    assert out.size == tagged.size and np.array_equal(np.asarray(out)[~hole], picture[~hole])
    upright_fill = inpainter(np.asarray(shown), np.ascontiguousarray(turned_upright(hole, orientation)))
    assert np.array_equal(turned_upright(np.asarray(out), orientation), upright_fill)


def test_a_pil_mask_is_read_as_its_file_is(inpainter, tmp_path):
    """A 16-bit big-endian mask counts by its full range, as the command reads its file: a faint level
    (300 of 65535) is no hole (converted to 8 bits it was clipped white, and was one)."""
    from nfinpaint.mask_options import read_holes

    hole = _hole()
    faint = np.zeros((H, W), bool)
    faint[25:30, 2:8] = True
    levels = (hole * 40000 + faint * 300).astype(">u2")
    mask = Image.frombytes("I;16B", (W, H), levels.tobytes())
    mask.save(tmp_path / "mask.tif")
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = inpainter(picture, mask)
    assert np.array_equal(read_holes(tmp_path / "mask.tif"), hole)
    assert np.array_equal(out[~hole], picture[~hole]) and not np.array_equal(out[hole], picture[hole])


@pytest.mark.parametrize("invert", [False, True])
def test_transparent_mask_pixels_are_never_holes_whichever_the_polarity(inpainter, tmp_path, invert):
    """A stroke drawn on a transparent layer: with invert (black = hole) the transparent pixels once
    became holes too (alpha was multiplied in before the levels were inverted)."""
    from nfinpaint.mask_options import read_holes

    stroke = np.zeros((H, W), bool)
    stroke[10:14, 5:30] = True
    rgba = np.zeros((H, W, 4), np.uint8)            # transparent, of the hole colour where not drawn...
    rgba[..., :3] = 0 if invert else 255              # ...so that only alpha keeps them out of the holes
    rgba[stroke] = (0, 0, 0, 255) if invert else (255, 255, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mask.png")
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = inpainter(picture, Image.open(tmp_path / "mask.png"), invert=invert)
    assert np.array_equal(out[~stroke], picture[~stroke]) and not np.array_equal(out[stroke], picture[stroke])
    assert np.array_equal(read_holes(tmp_path / "mask.png", invert), stroke)


def test_package_level_names_and_one_off_call(fullres_checkpoint):
    assert nfinpaint.Inpainter is Inpainter and issubclass(InpaintError, ValueError)
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    hole = _hole()
    out = fill_holes(picture, hole, checkpoint=fullres_checkpoint, device="cpu", dilate=2)
    grown = fill_holes(picture, hole, checkpoint=fullres_checkpoint, device="cpu")
    assert np.array_equal(out[~hole], picture[~hole]) is False      # dilation changed pixels beside the hole
    assert np.array_equal(grown[~hole], picture[~hole])


BAD = [  # (image, mask, options, expected part of the message)
    (np.zeros((H, W, 3), np.int32), "hole", {}, "uint8, uint16 or float"),
    (np.full((H, W, 3), 2.0, np.float32), "hole", {}, "outside [0, 1]"),
    (np.zeros((H, W, 5), np.uint8), "hole", {}, "C in 1-4"),
    (torch.zeros(H, W, 3), "hole", {}, "(C, H, W)"),
    ([[0, 1]], "hole", {}, "PIL image, a numpy array or a torch tensor"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((H, W), bool), {}, "no hole"),
    (np.zeros((H, W, 3), np.uint8), np.ones((H, W), bool), {}, "whole image"),
    (np.zeros((H, W, 3), np.uint8), np.ones((10, 12), bool), {}, "the mask is 12x10 but the image is 44x36"),
    (np.zeros((H, W, 3), np.uint8), np.full((H, W), np.nan), {}, "outside [0, 1]"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((2, H, W)), {}, "the mask must be (H, W)"),
    (np.zeros((H, W, 3), np.uint8), np.full((H, W), -1, np.int64), {}, "the mask is int64 with values in [-1, -1]"),
    (np.zeros((H, W, 3), np.uint8), np.full((H, W), 256, np.int32), {}, "the mask is int32 with values in [256, 256]"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.complex64), {}, "mask arrays must be bool, integer or float"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"dilate": "3"}, "dilate must be a whole number"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"dilate": 2.5}, "dilate must be a whole number"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"dilate": -1}, "dilate must be a whole number"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"method": "best"}, "method must be one of auto"),
    # yes/no options take True or False only: "False" is true to Python, and inverted the mask
    (np.zeros((H, W, 3), np.uint8), "hole", {"invert": "False"}, "invert must be True or False"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"invert": 0.5}, "invert must be True or False"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"invert": np.array([True, False])}, "invert must be True or False"),
    (np.zeros((H, W, 3), np.uint8), "hole", {"resize_mask": "no"}, "resize_mask must be True or False"),
    # tensors and arrays numpy cannot read as they are
    (np.zeros((H, W, 3), np.uint8), torch.zeros(H, W, device="meta"), {}, "the mask tensor is on the meta device"),
    (np.zeros((H, W, 3), np.uint8), "sparse", {}, "the mask tensor is sparse_coo; pass a dense one"),
    (torch.zeros(3, H, W).to_sparse(), "hole", {}, "the image tensor is sparse_coo; pass a dense one"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((H, W), "m8[s]"), {}, "mask arrays must be bool, integer or float"),
]


@pytest.mark.parametrize("image, mask, options, expected", BAD)
def test_bad_input_is_one_documented_error(inpainter, image, mask, options, expected):
    mask = {"hole": _hole, "sparse": lambda: torch.from_numpy(_hole()).to_sparse()}[mask]() \
        if isinstance(mask, str) else mask
    with pytest.raises(InpaintError) as info:
        inpainter(image, mask, **options)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("options, expected", [
    ({"method": "best"}, "method must be"), ({"dilate": -1}, "dilate must be"), ({"dilate": 2.5}, "dilate must be"),
    ({"dilate": "3"}, "dilate must be"), ({"device": "tpu9"}, "not a device"),
    ({"checkpoint": "/no/such/generator.pt"}, "does not exist"),
    ({"half": True, "device": "cpu"}, r"half=True runs on a CUDA GPU \(float16\) or on a CPU that computes "
                                      r"bfloat16 natively .* which does not"),
    ({"device": "mps"}, "only cpu and cuda devices"), ({"device": "meta"}, "only cpu and cuda devices"),
    ({"device": None}, "device must be"), ({"checkpoint": 123}, "checkpoint must be a path"),
    ({"seed": "abc"}, "seed must be an integer"), ({"seed": 1.5}, "seed must be an integer"),
    ({"invert": "False"}, "invert must be True or False"), ({"resize_mask": 1}, "resize_mask must be True or False"),
    ({"half": "no"}, "half must be True or False")])
def test_bad_options_are_the_same_error(options, expected, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)      # half=True refused on any CPU here
    with pytest.raises(InpaintError, match=expected):
        Inpainter(**options)


def test_a_per_call_method_that_needs_the_generator_loads_it(fullres_checkpoint):
    """An Inpainter made for a classical fill loads no generator; a call with method='auto' then loads
    it and fills as an auto Inpainter does (it once went to PatchMatch, silently)."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    classical = Inpainter(fullres_checkpoint, device="cpu", method="biharmonic")
    assert classical.loaded is None
    auto = Inpainter(fullres_checkpoint, device="cpu")(picture, _hole())
    assert np.array_equal(classical(picture, _hole(), method="auto"), auto)
    assert not np.array_equal(auto, Inpainter(device="cpu", method="patchmatch")(picture, _hole()))


def test_views_numpy_cannot_read_directly_fill_as_their_values(inpainter):
    """A lazily negated tensor (torch._neg_view) and an np.matrix (which indexes unlike an array, and
    once crashed the process) fill as the plain arrays of their values."""
    rng = np.random.default_rng()
    picture = rng.random((H, W)).astype(np.float32)
    reference = inpainter(picture, _hole())
    negated = torch._neg_view(torch.from_numpy(-picture)[None])
    assert torch.equal(inpainter(negated, _hole())[0], torch.from_numpy(reference))
    assert np.array_equal(inpainter(np.asmatrix(picture), _hole()), reference)
    assert np.array_equal(inpainter(picture, torch._neg_view(-torch.from_numpy(_hole()).float())), reference)
    assert np.array_equal(inpainter(picture, np.asmatrix(_hole())), reference)


def test_a_mask_of_another_size_is_resized_when_asked(inpainter):
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    small = np.zeros((H // 2, W // 2), bool)
    small[4:10, 5:12] = True
    out = inpainter(picture, small, resize_mask=True)
    big = np.kron(small, np.ones((2, 2), bool))           # nearest, exactly 2x
    assert np.array_equal(out[~big], picture[~big]) and not np.array_equal(out[big], picture[big])


def test_half_precision_on_a_cpu_with_bfloat16_runs_the_network_in_it(monkeypatch):
    """half=True on a CPU that computes bfloat16 natively (faked: bfloat16 runs on any CPU, emulated where
    it is not native): the network's convolutions run in bfloat16, the base fill and the composite in
    float32, so the known pixels stay exact and the holes come out within a few grey levels of float32's
    (bfloat16 keeps 8 bits; fed those differences, the patch blend may pick another patch here and there)."""
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    rng = np.random.default_rng()
    y, x = np.mgrid[0:96, 0:128]
    picture = (np.stack([1.5 * x, 1.5 * y + 30, 100 + 0 * x], axis=-1) + rng.integers(0, 40, (96, 128, 3))).astype(np.uint8)
    hole = np.zeros((96, 128), bool)
    hole[30:60, 40:80] = True
    full = Inpainter(device="cpu")(picture, hole)
    inpainter = Inpainter(device="cpu", half=True)
    seen = []
    first = inpainter(picture, hole)             # loads the generator
    conv = next(m for m in inpainter.loaded.generator.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    half = inpainter(picture, hole)
    assert seen and set(seen) == {torch.bfloat16} and np.array_equal(half, first)
    assert np.array_equal(half[~hole], picture[~hole])
    diff = np.abs(half.astype(int) - full.astype(int))[hole]
    assert diff.mean() < 1.0 and diff.max() <= 24, (diff.mean(), diff.max())
    assert diff.max() > 0          # it did run in another precision


@pytest.mark.gpu
def test_half_precision_on_a_gpu_fills_like_float32():
    """half=True: the shipped generator in float16 on the GPU, within 2/255 of float32 in the holes
    (float16 keeps 11 bits: about 1/2000 per operation), known pixels exact."""
    picture = np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    hole = np.zeros((96, 128), bool)
    hole[30:60, 40:80] = True
    full = Inpainter(device="cuda")(picture, hole)
    half = Inpainter(device="cuda", half=True)(picture, hole)
    assert np.array_equal(half[~hole], picture[~hole])
    assert np.abs(half.astype(int) - full.astype(int)).max() <= 2


@pytest.mark.parametrize("layout", ["(H, W, 1)", "(1, H, W)"])
@pytest.mark.parametrize("height, width", [(1, 23), (23, 1)])
def test_one_pixel_high_or_wide_masks_of_either_layout(inpainter, layout, height, width):
    """(1, W, 1) reads as (1, H, W) with W = 1 or as (H, W, 1) with H = 1: the picture decides."""
    picture = np.random.default_rng().integers(0, 256, (height, width, 3), dtype=np.uint8)
    hole = np.zeros((height, width), bool)
    start = int(np.random.default_rng().integers(3, 18))
    hole.reshape(-1)[start:start + 4] = True
    mask = hole[..., None] if layout == "(H, W, 1)" else hole[None]
    for m in (mask, torch.from_numpy(mask)):
        out = inpainter(picture, m, method="biharmonic")
        assert np.array_equal(out, inpainter(picture, hole, method="biharmonic"))
        assert np.array_equal(out[~hole], picture[~hole]) and not np.array_equal(out[hole], picture[hole])


def test_a_method_this_installation_cannot_run_is_refused_up_front(inpainter, monkeypatch):
    from nfinpaint import baselines  # noqa: PLC0415

    monkeypatch.setattr(baselines, "opencv_missing", lambda: "OpenCV is not installed (pip install x)")
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    for call in (lambda: Inpainter(method="opencv-telea", device="cpu"),
                 lambda: inpainter(picture, _hole(), method="opencv-ns")):
        with pytest.raises(InpaintError, match="method='opencv-(telea|ns)' cannot run in this installation: "
                                               "OpenCV is not installed"):
            call()


def _png_bytes(array: np.ndarray) -> bytes:
    import io  # noqa: PLC0415

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_pil_images_that_do_not_decode_are_an_inpaint_error(inpainter):
    """A lazily opened PIL image is decoded on first use: truncated or closed ones raised raw OSError /
    ValueError, and a truncated RGB mask was blamed on its mode."""
    import io  # noqa: PLC0415

    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = _png_bytes(picture)
    truncated = data[:len(data) // 2]
    closed = Image.open(io.BytesIO(data))
    closed.close()
    for image, mask, what in ((Image.open(io.BytesIO(truncated)), _hole(), "image"), (closed, _hole(), "image"),
                              (picture, Image.open(io.BytesIO(truncated)), "mask"),
                              (picture, Image.open(io.BytesIO(_png_bytes(_hole().astype(np.uint8) * 255)[:60])),
                               "mask")):
        with pytest.raises(InpaintError, match=f"the {what} cannot be decoded"):
            inpainter(image, mask)
    with pytest.raises(InpaintError, match="meta device"):
        inpainter(torch.zeros(3, H, W, device="meta"), _hole())


def test_a_method_the_generator_cannot_run_is_refused_in_the_constructor(tmp_path):
    from nfinpaint.generator_io import save_generator  # noqa: PLC0415
    from nfinpaint.generators import build_generator  # noqa: PLC0415

    path = tmp_path / "fixed.pt"
    save_generator(path, build_generator("paper", 24), dict(preset="paper", image_size=24, hole_size=8,
                                                              feature_weights="random", feature_pretrained=False))
    with pytest.raises(InpaintError, match="^method='gan-detail' needs a full-resolution generator"):
        Inpainter(path, device="cpu", method="gan-detail")
    inpainter = Inpainter(path, device="cpu")
    with pytest.raises(InpaintError, match="^method='gan-detail' needs a full-resolution generator"):
        inpainter(np.zeros((H, W, 3), np.uint8), _hole(), method="gan-detail")


def test_a_mask_without_a_hole_under_invert_says_black_marks_the_holes(inpainter):
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    with pytest.raises(InpaintError, match=r"no hole: black \(darker than 50% grey\) marks the pixels to fill"):
        inpainter(picture, np.full((H, W), 255, np.uint8), invert=True)
    with pytest.raises(InpaintError, match=r"no hole: white \(brighter"):
        inpainter(picture, np.zeros((H, W), np.uint8))


def test_the_fill_does_not_depend_on_the_callers_memory_layout():
    """A channels-last or permuted view came back up to 6e-4 (a level in 8 bits) off the contiguous
    picture's fill: the API's and the server's (H, W, 3) views differed from the command's files."""
    from nfinpaint import generator_io

    # the shipped generator on a smooth picture: the test generator's small fills came out equal either way
    generator, _ = generator_io.load_generator(generator_io.shipped_default())
    rng = np.random.default_rng()
    y, x = np.mgrid[0:120, 0:160] / 40.0
    phase = rng.uniform(0, 6)
    hwc = np.stack([np.sin(x + phase), np.cos(1.3 * y), np.sin(0.2 * x * y)], -1) * 0.3 + 0.5
    hwc = torch.from_numpy((hwc + rng.normal(0, 0.05, hwc.shape)).clip(0, 1).astype(np.float32))
    hole = torch.zeros(1, 120, 160)
    hole[:, 40:90, 50:110] = 1
    expected, _ = inpaint_image(hwc.permute(2, 0, 1).contiguous(), hole, generator=generator, log=lambda line: None)
    view, _ = inpaint_image(hwc.permute(2, 0, 1), hole, generator=generator, log=lambda line: None)
    assert torch.equal(view, expected)


def test_mask_options_that_undo_the_mask_say_so(inpainter):
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    lines = np.zeros((2 * H, 2 * W), bool)
    lines[::2] = True                  # 1-px strokes: half the mask, gone at half the size (PIL keeps odd rows)
    with pytest.raises(InpaintError, match=f"resizing the mask from {2 * W}x{2 * H} to the image's {W}x{H} left "
                                           f"no hole"):
        inpainter(picture, lines, resize_mask=True)
    with pytest.raises(InpaintError, match="dilating the holes by 60 px covers the whole image"):
        inpainter(picture, _hole(), dilate=60)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "I;16B", "I;16L", "I;16N", "I"])
def test_one_transparent_colour_stays_transparent(inpainter, mode):
    """A grey or RGB PIL picture with one transparent colour (PNG tRNS) came back opaque: 8-bit ones
    come back as LA / RGBA with alpha 0 there, 16-bit grey (any byte order, or mode I, which
    ``convert("I")`` gives with the level kept) keeps its transparent level."""
    from nfinpaint.images import integer_grey_image

    rng = np.random.default_rng()
    sixteen = mode.startswith("I")
    if sixteen:
        levels = rng.integers(1000, 60000, (H, W)).astype(np.uint16)
        key = 7
        levels[:4] = key
        picture = integer_grey_image(levels, mode)
    else:
        shape = (H, W) if mode == "L" else (H, W, 3)
        pixels = rng.integers(20, 230, shape, dtype=np.uint8)
        key = 5 if mode == "L" else (5, 6, 7)
        pixels[:4] = key
        picture = Image.fromarray(pixels, mode)
    picture.info["transparency"] = key
    hole = _hole()
    hole[2:6] = True                   # a hole over transparent pixels too
    out = inpainter(picture, hole, method="biharmonic")
    if sixteen:
        assert out.mode == mode and out.info["transparency"] == key
        result = np.asarray(out).astype(np.int64)
        assert (result[:4] == key).all() and not (result[4:] == key).any()
    else:
        assert out.mode == ("LA" if mode == "L" else "RGBA")
        alpha = np.asarray(out)[..., -1]
        assert (alpha[:4] == 0).all() and (alpha[4:] == 255).all()
        colour = np.asarray(out)[..., :-1].reshape(H, W, -1)
        assert np.array_equal(colour[~hole], np.asarray(picture).reshape(H, W, -1)[~hole])


# --------------------------------------------------------------------------- threads


def _in_threads(calls, threads: int, timeout: float = 60):
    """Run the zero-argument ``calls`` on ``threads`` threads started together (thread t takes calls
    t, t + threads, ...); returns (results in the calls' order, repr of each exception raised)."""
    results, errors = [None] * len(calls), []
    start = threading.Barrier(threads)

    def work(first):
        start.wait()
        for i in range(first, len(calls), threads):
            try:
                results[i] = calls[i]()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout)
    assert not any(t.is_alive() for t in workers), "a call did not return"
    return results, errors


def test_calls_from_several_threads_give_the_results_of_the_same_calls_one_after_another(inpainter):
    """One Inpainter shared by threads: each call keeps its own options (method, dilation, invert)
    and input kind, and the fill is the same as when the calls run in turn."""
    rng = np.random.default_rng(11)
    calls = []
    for i in range(8):
        pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        image = [pixels, Image.fromarray(pixels), torch.from_numpy(pixels).permute(2, 0, 1).float() / 255][i % 3]
        hole = np.roll(_hole(), i, axis=1)
        options = dict(method=["auto", "patchmatch", "biharmonic", "border-mean"][i % 4], dilate=i % 3)
        calls.append((image, ~hole, dict(options, invert=True)) if i % 2 else (image, hole, options))

    def array(out):
        return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    expected = [array(inpainter(image, hole, **options)) for image, hole, options in calls]
    results, errors = _in_threads([lambda c=c: array(inpainter(c[0], c[1], **c[2])) for c in calls], 4, 120)
    assert errors == []
    assert all(np.array_equal(r, e) for r, e in zip(results, expected))
    assert (inpainter.method, inpainter.dilate, inpainter.invert) == ("auto", 0, False)


def test_a_generator_loaded_on_first_use_is_loaded_once_by_threads_calling_at_once(fullres_checkpoint,
                                                                                   monkeypatch):
    """An Inpainter made for a classical fill loads the generator when a call first needs it: two
    threads making that call at once each loaded it (twice the memory and time)."""
    from nfinpaint import generator_io  # noqa: PLC0415

    opened, second = [], threading.Event()
    real = generator_io.open_generator

    def open_generator(path):
        opened.append(path)
        if len(opened) == 1:
            second.wait(1)       # a second thread loading now is loading it again
        else:
            second.set()
        return real(path)
    monkeypatch.setattr(generator_io, "open_generator", open_generator)
    inpainter = Inpainter(fullres_checkpoint, device="cpu", method="border-mean")
    assert inpainter.loaded is None
    picture = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    _, errors = _in_threads([lambda: inpainter(picture, _hole(), method="auto")] * 2, 2)
    assert len(opened) == 1 and inpainter.loaded is not None and errors == []


def test_first_fills_of_a_new_inpainter_from_several_threads_are_those_made_in_turn(fullres_checkpoint):
    """The fill puts the model in place on its first call (channels-last weights, its device), in
    place: threads making their first calls at once ran the model while another rewrote its
    weights, and got wrong pixels (the shipped generator: 33 of 60 calls, off by up to 186 of 255)
    or NaN.  Fills with the model now run one at a time."""
    rng = np.random.default_rng(8)
    pictures = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(2)]
    fresh = Inpainter(fullres_checkpoint, device="cpu")
    expected = [np.asarray(fresh(picture, _hole())) for picture in pictures]
    inpainter = Inpainter(fullres_checkpoint, device="cpu")
    generator = inpainter.loaded.generator
    forward, inside, most, second, guard = generator.forward, [0], [0], threading.Event(), threading.Lock()

    def counted(*args, **kwargs):
        with guard:
            inside[0] += 1
            first, most[0] = most[0] == 0, max(most[0], inside[0])
        if first:
            second.wait(1)      # a second thread's fill arriving now runs the model at the same time
        else:
            second.set()
        try:
            return forward(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1
    generator.forward = counted
    results, errors = _in_threads([lambda p=p: np.asarray(inpainter(p, _hole())) for p in pictures], 2)
    assert errors == [] and most[0] == 1
    assert all(np.array_equal(r, e) for r, e in zip(results, expected))


def test_one_lazily_opened_picture_passed_from_several_threads_is_decoded_by_one_at_a_time(tmp_path):
    """PIL decodes a lazily opened picture in place, and not thread-safely: one picture (a mask for
    every fill, say) passed from threads at once was decoded by each at the same time, which gave
    spurious 'cannot be decoded' errors, PIL's bare AssertionError and wrong pixels."""
    pixels = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = tmp_path / "picture.png"
    Image.fromarray(pixels).save(path)
    inpainter = Inpainter(device="cpu", method="border-mean")
    expected = np.asarray(inpainter(Image.open(path), _hole()))
    shared = Image.open(path)
    decode, inside, most, second, guard = shared.load, [0], [0], threading.Event(), threading.Lock()

    def load():
        with guard:
            decoding = bool(shared.tile)        # not decoded yet: this call decodes it
            if decoding:
                inside[0] += 1
                first, most[0] = most[0] == 0, max(most[0], inside[0])
        if decoding and first:
            second.wait(1)      # a second thread decoding now decodes the same picture at the same time
        elif decoding:
            second.set()
        try:
            return decode()
        finally:
            if decoding:
                with guard:
                    inside[0] -= 1
    shared.load = load
    results, errors = _in_threads([lambda: np.asarray(inpainter(shared, _hole()))] * 2, 2)
    assert most[0] == 1 and errors == []
    assert all(np.array_equal(r, expected) for r in results)


def _rgb16_png_with_a_transparent_colour(pixels: np.ndarray, key: tuple) -> bytes:
    """A 16-bit RGB PNG (PIL reads it at 8 bits, and cannot write it) with one transparent colour."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = pixels.shape
    rows = zlib.compress(b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">3H", *key)) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_lazily_opened_16_bit_colour_png_keeps_its_transparent_colour_on_every_call(inpainter):
    """Its transparent colour is matched on the high bytes PIL keeps, which only the undecoded file
    tells: a second call with the same PIL image, or a PIL mask (whose EXIF check decoded the picture
    first), found no transparent pixel and returned them opaque."""
    pixels = np.random.default_rng(5).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    pixels[:4, :6] = (1000, 2000, 3000)
    data = _rgb16_png_with_a_transparent_colour(pixels, (1000, 2000, 3000))
    keyed = np.zeros((H, W), bool)
    keyed[:4, :6] = True
    picture = Image.open(io.BytesIO(data))
    for mask in (_hole(), _hole(), Image.fromarray(_hole())):
        out = inpainter(picture, mask, method="border-mean")
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3] == 0, keyed)
    out = inpainter(Image.open(io.BytesIO(data)), Image.fromarray(_hole()), method="border-mean")
    assert np.array_equal(np.asarray(out)[..., 3] == 0, keyed)


@pytest.mark.parametrize("method", ["auto", "patchmatch", "border-mean"])
def test_the_fill_is_the_same_whatever_the_callers_default_dtype(fullres_checkpoint, method):
    """After torch.set_default_dtype(torch.float64) a new Inpainter's generator was built in float64
    and met float32 inputs, and PatchMatch's first guess made a float64 kernel: raw RuntimeErrors."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    before = Inpainter(fullres_checkpoint, device="cpu", method=method)(picture, _hole())
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        after = Inpainter(fullres_checkpoint, device="cpu", method=method)(picture, _hole())
    finally:
        torch.set_default_dtype(default)
    assert np.array_equal(after, before)


@pytest.mark.parametrize("method", ["auto", "patchmatch"])
def test_a_callers_autocast_does_not_change_the_fill(inpainter, method):
    """Inside the caller's bfloat16 autocast the fills came back other (PatchMatch's search in
    bfloat16: up to 20 levels): without ``half`` the fill is float32's."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    plain = inpainter(picture, _hole(), method=method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        assert np.array_equal(inpainter(picture, _hole(), method=method), plain)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_tensors_are_filled_as_their_float32_values(inpainter, dtype):
    """numpy has no float8: they ended in a raw TypeError; float32 holds each of their values."""
    picture = torch.rand(3, H, W).to(dtype)
    hole = torch.from_numpy(_hole()).to(dtype)
    out = inpainter(picture, hole)
    assert out.dtype == dtype
    assert torch.equal(out, inpainter(picture.float(), hole.float()).to(dtype))
    assert torch.equal(out.float()[:, ~torch.from_numpy(_hole())], picture.float()[:, ~torch.from_numpy(_hole())])


@pytest.mark.parametrize("method", ["opencv-telea", "opencv-ns"])
@pytest.mark.parametrize("shape", [(1, 50), (50, 1)])
def test_opencv_fills_a_one_row_picture_the_same_every_time(method, shape):
    """cv2.inpaint fills a one-row picture differently from call to call (up to 57 levels)."""
    pytest.importorskip("cv2", reason="OpenCV is not installed: pip install \".[opencv]\"")
    rng = np.random.default_rng()
    picture = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    hole = np.zeros(shape, bool)
    hole.flat[10:20] = True
    fill = Inpainter(device="cpu", method=method)
    first = fill(picture, hole)
    assert np.array_equal(first[~hole], picture[~hole])
    assert all(np.array_equal(fill(picture, hole), first) for _ in range(8))


@pytest.mark.parametrize("method", ["opencv-telea", "opencv-ns"])
def test_an_opencv_fill_does_not_read_what_lies_under_a_hole_at_the_edge(method):
    """cv2.inpaint reads the pixels under a hole that touches the picture's edge: the blanked 0s pulled
    Telea's fills of corner holes toward black (a baseline handicapped in the tables, and a user's
    --method opencv-telea too).  Whatever lies under the hole, the fill is the same."""
    pytest.importorskip("cv2", reason="OpenCV is not installed: pip install \".[opencv]\"")
    from nfinpaint.baselines import build_method

    rng = np.random.default_rng()
    level = rng.uniform(0.3, 0.7)
    picture = (level + 0.05 * torch.rand(3, 40, 60)).clamp(0, 1)
    hole = torch.zeros(1, 40, 60)
    hole[:, :12, :15] = 1                   # a corner
    hole[:, 25:, 40:52] = 1                 # a side
    fill = build_method(method)
    fills = [fill.raw_fill(torch.where(hole > 0.5, under, picture), hole, 0)
             for under in (torch.zeros(()), torch.ones(()), torch.rand(3, 40, 60))]
    assert all(torch.equal(other, fills[0]) for other in fills[1:])
    assert (fills[0][:, hole[0] > 0.5] - level).abs().max() < 0.1      # the ring's colour, not black


def test_a_one_off_fill_leaves_the_callers_random_streams_as_they_were(fullres_checkpoint):
    """Building the generator ran its layers' random initialisation (then replaced by the file's weights)
    on torch's global stream: a caller's seeded draws after a fill_holes call came out otherwise."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    seed = int(np.random.default_rng().integers(1 << 31))
    torch.manual_seed(seed)
    expected = torch.rand(8)
    torch.manual_seed(seed)
    fill_holes(picture, _hole(), checkpoint=fullres_checkpoint, device="cpu")
    Inpainter(fullres_checkpoint, device="cpu")
    assert torch.equal(torch.rand(8), expected)


@pytest.mark.parametrize("method", ["auto", "gan-detail", "patchmatch"])
def test_the_fill_is_the_same_whatever_the_callers_default_device(inpainter, method):
    """Index tensors made without device= landed on the caller's torch.set_default_device: "meta" stands
    in for "cuda" here (no GPU), where the fill changed without an error."""
    picture = np.random.default_rng().integers(0, 256, (96, 128, 3), dtype=np.uint8)
    hole = np.zeros((96, 128), bool)
    hole[30:62, 40:76] = True       # thick enough for gan-detail's synthesis
    hole[80, 100] = True
    before = inpainter(picture, hole, method=method)
    torch.set_default_device("meta")
    try:
        after = inpainter(picture, hole, method=method)
    finally:
        torch.set_default_device(None)
    assert np.array_equal(after, before)


def test_a_generator_loads_on_the_cpu_whatever_the_callers_default_device(fullres_checkpoint):
    """It was built (and randomly initialised, on a random stream fork_rng does not keep) on the caller's
    torch.set_default_device: under "meta", standing in for "cuda", loading failed in Tensor.item()."""
    picture = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    before = Inpainter(fullres_checkpoint, device="cpu")(picture, _hole())
    torch.set_default_device("meta")
    try:
        inpainter = Inpainter(fullres_checkpoint, device="cpu")
        after = inpainter(picture, _hole())
    finally:
        torch.set_default_device(None)
    assert {t.device.type for t in inpainter.loaded.generator.parameters()} == {"cpu"}
    assert np.array_equal(after, before)


def test_inpaint_image_gives_a_callers_generator_back_as_it_was(fullres_checkpoint):
    """inpaint_image ran the caller's generator as a fill does (eval mode, channels-last weights) and left
    it so: a training loop that filled a picture with its own generator trained on in eval mode."""
    from nfinpaint import generator_io

    generator, _ = generator_io.load_generator(fullres_checkpoint)
    generator.train()
    next(generator.children()).eval()      # a mix of modes comes back as it was, too
    modes = [m.training for m in generator.modules()]
    for p in generator.parameters():      # a training loop's gradients, which Module.to moves too
        p.grad = torch.zeros_like(p)
    grads = [(p.grad, p.grad.data_ptr(), p.grad.stride()) for p in generator.parameters()]
    tensors = {k: (v.data_ptr(), v.stride()) for k, v in generator.state_dict(keep_vars=True).items()}
    picture = torch.rand(3, H, W, generator=torch.Generator().manual_seed(int(np.random.default_rng().integers(1 << 30))))
    filled, _ = inpaint_image(picture, torch.from_numpy(_hole())[None].float(), generator=generator,
                              log=lambda line: None)
    assert [m.training for m in generator.modules()] == modes
    assert {k: (v.data_ptr(), v.stride()) for k, v in generator.state_dict(keep_vars=True).items()} == tensors
    assert [(p.grad, p.grad.data_ptr(), p.grad.stride()) for p in generator.parameters()] == grads
    # and the fill is the one of a generator made ready once (the Inpainter's)
    assert torch.equal(filled, inpaint_image(picture, torch.from_numpy(_hole())[None].float(),
                                             generator=generator_io.load_generator(fullres_checkpoint)[0],
                                             log=lambda line: None)[0])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_generator_on_another_gpu_is_moved_to_the_one_asked_for(fullres_checkpoint):
    """ready_to_fill took a generator on cuda:1 as ready for "cuda" (the current GPU, cuda:0), whose
    windows then met weights on another device."""
    from nfinpaint import generator_io
    from nfinpaint.neural_fill import ready_to_fill

    generator, _ = generator_io.load_generator(fullres_checkpoint)
    generator.to("cuda:1")
    ready = ready_to_fill(generator, "cuda")
    assert {t.device for t in ready.parameters()} == {torch.device("cuda", torch.cuda.current_device())}


@pytest.mark.parametrize("kind", ["float64", "DataParallel"])
def test_a_callers_generator_of_another_dtype_or_wrapped_fills_as_the_plain_one(fullres_checkpoint, kind):
    """A float64 generator ended in "Input type (float) and bias type (double)", a DataParallel-wrapped
    one (a training loop's) in an AttributeError; both fill as the float32 generator inside, and come
    back as they were."""
    from nfinpaint import generator_io

    generator, _ = generator_io.load_generator(fullres_checkpoint)
    picture = torch.rand(3, H, W, generator=torch.Generator().manual_seed(int(np.random.default_rng().integers(1 << 30))))
    hole = torch.from_numpy(_hole())[None].float()
    expected, _ = inpaint_image(picture, hole, generator=generator, log=lambda line: None)
    given = generator.double() if kind == "float64" else torch.nn.DataParallel(generator)
    filled, _ = inpaint_image(picture, hole, generator=given, log=lambda line: None)
    torch.testing.assert_close(filled, expected, rtol=0, atol=1e-6)
    if kind == "float64":
        assert {p.dtype for p in given.parameters()} == {torch.float64}


def test_a_generator_on_the_meta_device_is_refused_in_one_line(fullres_checkpoint):
    """A generator built under torch.device("meta") (weights not loaded yet) ended in torch's traceback
    from inside Module.to; it is refused with what to do, before any fill."""
    from nfinpaint import generator_io

    generator, _ = generator_io.load_generator(fullres_checkpoint)
    generator.to("meta")
    picture = torch.rand(3, H, W)
    with pytest.raises(ValueError, match="meta device.*to_empty"):
        inpaint_image(picture, torch.from_numpy(_hole())[None].float(), generator=generator, log=lambda line: None)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
def test_a_pil_result_keeps_the_pictures_profile_exif_and_resolution(inpainter, mode):
    """The result came back from Image.fromarray with none of them: saved as PNG, a wide-gamut photograph
    lost its profile (shown in the wrong colours) and a phone picture its orientation (shown sideways).
    (A profile of another colour space than the pixels' is not passed on: PNG would write it, invalid.)"""
    from _crafted import profile_of_space

    from nfinpaint.images import integer_grey_image

    rng = np.random.default_rng()
    if mode == "I;16":
        picture = integer_grey_image(rng.integers(0, 65536, (H, W)).astype(np.uint16), mode)
    else:
        picture = Image.fromarray(rng.integers(0, 256, (H, W, len(mode)), dtype=np.uint8).squeeze(), mode)
    profile = profile_of_space(b"RGB " if mode.startswith("RGB") else b"GRAY")
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.info.update(icc_profile=profile, exif=exif.tobytes(), dpi=(300, 300))
    out = inpainter(picture, _hole())
    assert out.info.get("icc_profile") == profile and out.info.get("dpi") == (300, 300)
    assert out.getexif().get(0x0112) == 6
    saved = io.BytesIO()
    out.save(saved, "PNG")
    assert Image.open(saved).info.get("icc_profile") == profile
    picture.info["icc_profile"] = profile_of_space(b"CMYK")
    assert "icc_profile" not in inpainter(picture, _hole()).info


def test_a_pil_results_exif_holds_no_thumbnail_of_the_original(inpainter):
    """The result's EXIF was the input's block byte for byte, its thumbnail (IFD1) too: saved with it, as
    one keeps EXIF, a file browser showed the removed object.  As the command writes it: no thumbnail, the
    camera tag kept, and (the result being in the stored layout) the orientation."""
    import struct

    from PIL import ExifTags

    def ifd(entries, following):
        return (struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHI", t, k, n) + v for t, k, n, v in entries)
                + struct.pack(">I", following))

    thumb = io.BytesIO()
    Image.new("RGB", (8, 6), (255, 0, 0)).save(thumb, "JPEG")
    thumb = thumb.getvalue()
    first = [(271, 2, 4, b"Cam\0"), (274, 3, 1, struct.pack(">HH", 6, 0))]
    second_at = 8 + 2 + 12 * len(first) + 4
    data_at = second_at + 2 + 36 + 4
    raw = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd(first, second_at) + ifd(
        [(259, 3, 1, struct.pack(">HH", 6, 0)), (513, 4, 1, struct.pack(">I", data_at)),
         (514, 4, 1, struct.pack(">I", len(thumb)))], 0) + thumb
    rng = np.random.default_rng()
    picture = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    picture.info["exif"] = raw
    saved = io.BytesIO()
    picture.save(saved, "JPEG", exif=raw)
    assert Image.open(saved).getexif().get_ifd(ExifTags.IFD.IFD1)                 # the block holds one
    out = inpainter(picture, _hole())
    exif = Image.Exif()
    exif.load(out.info["exif"])
    assert exif.get(271) == "Cam" and exif.get(274) == 6 and not exif.get_ifd(ExifTags.IFD.IFD1)
    assert picture.info["exif"] == raw                              # the caller's picture is left as it was
