"""Colours under alpha 0 are not read as context (nfinpaint.transparency): the fill of what a user
sees does not depend on what they cannot see, through the API and the command alike."""
import numpy as np
import pytest
import torch
from PIL import Image

from nfinpaint import Inpainter, inpaint
from nfinpaint.transparency import hidden_pixels, seen_context

H, W = 40, 56


@pytest.fixture(scope="module")
def inpainter(fullres_checkpoint):
    return Inpainter(fullres_checkpoint, device="cpu")


def _cut_out(rng, hidden_colour):
    """A smooth visible picture on the left, a transparent surround (holding ``hidden_colour``: an RGB
    triple or "noise") on the right, and a hole across the edge between them."""
    yy, xx = np.mgrid[:H, :W]
    rgba = np.zeros((H, W, 4), np.uint8)
    base = rng.integers(40, 216, 3)
    rgba[..., :3] = np.clip(base + 0.8 * yy[..., None] - 0.5 * xx[..., None], 0, 255).astype(np.uint8)
    rgba[..., 3] = 255
    surround = xx >= 30
    rgba[surround, 3] = 0
    if isinstance(hidden_colour, str):
        rgba[surround, :3] = rng.integers(0, 256, (int(surround.sum()), 3))
    else:
        rgba[surround, :3] = hidden_colour
    hole = (np.abs(yy - 20) < 7) & (np.abs(xx - 30) < 8)
    return rgba, hole


def test_seen_context_takes_each_hidden_pixel_from_a_nearest_seen_one():
    rng = np.random.default_rng()
    image = torch.rand(3, 23, 31)
    hole = torch.from_numpy(rng.random((23, 31)) < 0.2)
    hidden = rng.random((23, 31)) < 0.4
    out, replaced = seen_context(image, hole, hidden)
    replace = hidden & ~hole.numpy()
    seen = ~hidden & ~hole.numpy()
    assert torch.equal(replaced, torch.from_numpy(replace))
    assert torch.equal(out[:, ~replaced], image[:, ~replaced])           # nothing else changes
    sy, sx = np.nonzero(seen)
    for y, x in zip(*np.nonzero(replace)):        # brute force: some seen pixel at the least distance has it
        d2 = (sy - y) ** 2 + (sx - x) ** 2
        nearest = d2 == d2.min()
        colours = image[:, sy[nearest], sx[nearest]]
        assert (colours == out[:, y, x, None]).all(0).any()


def test_seen_context_leaves_pictures_without_hidden_known_pixels():
    image = torch.rand(3, 8, 9)
    hole = torch.zeros(8, 9, dtype=torch.bool)
    hole[2:5, 2:5] = True
    for hidden in (np.zeros((8, 9), bool), hole.numpy().copy(), np.ones((8, 9), bool)):
        out, replaced = seen_context(image, hole, hidden)          # none hidden, only holes, none seen
        assert out is image and replaced is None
    with pytest.raises(ValueError, match="transparency is 9x7"):
        seen_context(image, hole, np.zeros((7, 9), bool))


def test_hidden_pixels_by_dtype():
    assert hidden_pixels(np.array([[0, 1, 255]], np.uint8)).tolist() == [[True, False, False]]
    assert hidden_pixels(torch.tensor([[0.0, 1e-6, -0.1]])).tolist() == [[True, False, True]]


@pytest.mark.parametrize("method", ["auto", "biharmonic", "patchmatch"])
def test_fill_does_not_read_colours_under_alpha_zero(inpainter, method):
    rng = np.random.default_rng()
    seed = int(rng.integers(1 << 30))
    fills = []
    for hidden_colour in ((0, 0, 0), (255, 255, 255), "noise"):
        rgba, hole = _cut_out(np.random.default_rng(seed), hidden_colour)
        out = inpainter(rgba, hole, method=method)
        assert np.array_equal(out[~hole], rgba[~hole])           # hidden pixels come back as they were
        assert np.array_equal(out[..., 3], rgba[..., 3])
        fills.append(out[hole])
    assert all(np.array_equal(fills[0], other) for other in fills[1:])
    # without the alpha (RGB), the same hidden colours do change the fill: the test above can fail
    rgbs = [inpainter(_cut_out(np.random.default_rng(seed), c)[0][..., :3], hole, method=method)[hole]
            for c in ((0, 0, 0), (255, 255, 255))]
    assert not np.array_equal(rgbs[0], rgbs[1])


def test_grey_alpha_and_float_alpha(inpainter):
    rng = np.random.default_rng()
    rgba, hole = _cut_out(rng, (0, 0, 0))
    la = rgba[..., [0, 3]]
    lighter = la.copy()
    lighter[la[..., 1] == 0, 0] = 255
    assert np.array_equal(inpainter(la, hole)[hole], inpainter(lighter, hole)[hole])
    as_float = rgba.astype(np.float32) / 255
    other = as_float.copy()
    other[rgba[..., 3] == 0, :3] = 1.0
    assert np.array_equal(inpainter(as_float, hole)[hole], inpainter(other, hole)[hole])


def test_command_keeps_hidden_colours_out_unless_the_output_shows_them(tmp_path, fullres_checkpoint):
    rng = np.random.default_rng()
    seed = int(rng.integers(1 << 30))
    outputs = {}
    for name, colour in (("black", (0, 0, 0)), ("white", (255, 255, 255))):
        rgba, hole = _cut_out(np.random.default_rng(seed), colour)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{name}.png")
        Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
        for suffix in (".png", ".bmp"):      # .bmp holds no alpha: the hidden colours are shown, so read
            out = tmp_path / f"{name}_out{suffix}"
            assert inpaint.main([str(tmp_path / f"{name}.png"), str(tmp_path / "mask.png"), "-o", str(out),
                                 "--checkpoint", str(fullres_checkpoint), "--method", "biharmonic"]) == 0
            outputs[name, suffix] = np.asarray(Image.open(out).convert("RGB"))[hole]
    assert np.array_equal(outputs["black", ".png"], outputs["white", ".png"])
    assert not np.array_equal(outputs["black", ".bmp"], outputs["white", ".bmp"])


def test_sixteen_bit_grey_with_a_transparent_level(inpainter):
    """16-bit grey keeps its transparent level (PNG tRNS) as one channel, not as alpha: that level was
    read as context by the API (and so by the web page), though the command took it as alpha 0."""
    from nfinpaint.images import integer_grey_image

    rng = np.random.default_rng()
    rgba, hole = _cut_out(rng, (0, 0, 0))
    visible = rgba[..., 3] > 0
    fills = []
    for key in (0, 65535):
        levels = (rgba[..., 0].astype(np.uint16) * 257)
        levels[~visible] = key
        picture = integer_grey_image(levels, "I;16")
        picture.info["transparency"] = key
        fills.append(np.asarray(inpainter(picture, hole)).astype(np.int64)[hole & visible])
    assert np.abs(fills[0] - fills[1]).max() <= 1


def test_non_finite_values_under_alpha_zero_are_refused_as_anywhere():
    """They were replaced for the fill, passed its check, and came back (NaN) in the result."""
    from nfinpaint.inpaint import inpaint_image

    image = torch.rand(3, 24, 24)
    image[:, :, 20:] = float("nan")
    hidden = np.zeros((24, 24), bool)
    hidden[:, 20:] = True
    mask = torch.zeros(1, 24, 24)
    mask[:, 8:14, 8:14] = 1
    with pytest.raises(ValueError, match="NaN or infinite"):
        inpaint_image(image, mask, method="biharmonic", hidden=hidden, log=lambda line: None)
