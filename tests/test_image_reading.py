"""Reading pictures and masks (``nfinpaint.images``), through the command and the server too: a
damaged EXIF block, and PNG single-colour transparency (tRNS) on grey and RGB pictures.

The fills use the border-mean method (no generator): the checks are about which pixels are read
as what, not about the fill.
"""
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image, PngImagePlugin

from nfinpaint import inpaint
from nfinpaint.images import (ImageError, ImageWarning, header_size, mask_image_levels, pil_to_arrays,
                              read_image_and_alpha, read_mask_levels)

H, W = 24, 32
HOLE = (slice(8, 16), slice(10, 22))
BAND = (slice(None), slice(0, 6))          # the pixels of the transparent colour


def _picture(channels=3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(1, 256, (H, W, channels), dtype=np.uint8)    # never 0: 0 is the transparent colour
    return out[..., 0] if channels == 1 else out


def _hole_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[HOLE] = 255
    return mask


def _save(array_or_image, path, **options):
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    img.save(path, **options)
    return path


def _png_bytes(array_or_image, **options) -> bytes:
    buf = io.BytesIO()
    _save(array_or_image, buf, format="PNG", **options)
    return buf.getvalue()


def _raw_png(width, height, depth, colour_type, rows, trns: bytes, exif: bytes | None = None) -> bytes:
    """A PNG written chunk by chunk, for what PIL does not write (2/4-bit grey, 16-bit RGB) with tRNS
    (and an eXIf chunk when ``exif`` is given)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
            + chunk(b"tRNS", trns) + (b"" if exif is None else chunk(b"eXIf", exif))
            + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- a damaged EXIF block

BAD_EXIF = b"garbage-not-tiff"


def _bad_exif_png(array, path):
    _save(array, path, exif=BAD_EXIF)       # PIL writes the bytes as the eXIf chunk, unchecked
    with Image.open(path) as img, pytest.raises(SyntaxError):
        img.getexif()                       # the file is what the test is about: EXIF that PIL cannot parse
    return path


def test_a_damaged_exif_block_is_ignored_when_reading(tmp_path):
    image, mask = _picture(), _hole_mask()
    image_path, mask_path = _bad_exif_png(image, tmp_path / "bad.png"), _bad_exif_png(mask, tmp_path / "badmask.png")
    with pytest.warns(ImageWarning, match="bad.png: its EXIF block is damaged"):
        picture = read_image_and_alpha(image_path)
    assert np.array_equal((picture.image.permute(1, 2, 0).numpy() * 255).round(), image)
    with pytest.warns(ImageWarning, match="badmask.png: its EXIF block is damaged"):
        levels = read_mask_levels(mask_path)
    assert np.array_equal(levels, mask / 255.0)
    assert header_size(image_path) == (W, H)
    with pytest.warns(ImageWarning, match="EXIF block is damaged"):
        rgb, alpha = pil_to_arrays(Image.open(image_path))
    assert rgb.shape == (H, W, 3) and alpha is None


def _corrupt_png(path, truncate=False):
    """A PNG whose compressed pixels are damaged (bit rot: 64 bytes of the stream zeroed) or cut short."""
    data = bytearray(_png_bytes(np.random.default_rng().integers(0, 256, (96, 128, 3), dtype=np.uint8)))
    at = data.find(b"IDAT")
    length = int.from_bytes(data[at - 4:at], "big")
    if truncate:
        data = data[:at + 4 + length // 2]
    else:
        data[at + 4 + length // 4:at + 4 + length // 4 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with Image.open(path) as img, pytest.raises(OSError):
        img.load()                          # the file is what the test is about: pixels PIL cannot decode
    return path


@pytest.mark.parametrize("truncate", [False, True], ids=["damaged", "truncated"])
def test_a_png_whose_pixels_do_not_decode_is_skipped_by_training_and_evaluation(tmp_path, truncate):
    """Reading a PNG's EXIF decodes the file: the error, met there and taken for a damaged EXIF block, left
    PIL holding the part-decoded pixels as loaded, and training and `evaluate --size` read on a mostly
    black picture (with a false EXIF warning naming no file)."""
    import warnings as warnings_module

    from nfinpaint import data, picture_eval
    from nfinpaint.images import ImageError

    folder = tmp_path / "pictures"
    folder.mkdir()
    _save(np.random.default_rng().integers(0, 256, (96, 128, 3), dtype=np.uint8), folder / "good.png")
    bad = _corrupt_png(folder / "bad.png", truncate)
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error", ImageWarning)          # no EXIF warning on the way
        with pytest.raises(ImageError, match="bad.png: not a readable image"):
            data._load_file(bad)
        with pytest.warns(UserWarning, match="skipping .*bad.png: not a readable image"):
            pictures, _ = picture_eval.load_pictures(str(folder), 64)
    assert [os.path.basename(name) for name, _ in pictures] == ["good.png"]


@pytest.mark.parametrize("suffix", [".tif", ".jpg", ".png", ".webp"])
@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_the_header_size_is_the_size_read_whatever_the_orientation(tmp_path, suffix, orientation):
    """Pillow turns a TIFF itself (its size upright when opened): header_size turned it a second time,
    and the command refused its mask however it was drawn."""
    picture = Image.fromarray(np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8))
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = _save(picture, tmp_path / f"turned{suffix}", exif=exif.tobytes())
    image = read_image_and_alpha(path).image
    assert header_size(path) == (image.shape[2], image.shape[1]) == ((H, W) if orientation >= 5 else (W, H))


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
@pytest.mark.parametrize("orientation", [5, 6, 8])
def test_a_turned_uncompressed_tiff_is_read_upright_and_filled_by_every_entry_point(tmp_path, client, mode,
                                                                                       orientation):
    """Pillow 13 maps an uncompressed grey TIFF opened by name at its upright size: the pixels came out
    scrambled (the command refused both masks, or with --resize-mask wrote noise; the API filled noise).
    And the server turned a TIFF's header size once more than Pillow: it refused every mask."""
    from nfinpaint import Inpainter
    from nfinpaint.images import integer_grey_image

    rng = np.random.default_rng()
    if mode == "I;16":
        stored = integer_grey_image(rng.integers(0, 65536, (H, W)).astype(np.uint16), mode)
    else:
        stored = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.tif"
    stored.save(path, exif=exif.tobytes())                  # uncompressed: PIL's default
    upright = np.asarray(Image.open(io.BytesIO(path.read_bytes())))    # decoded from bytes: not mapped
    assert upright.shape[:2] == (W, H) and not np.array_equal(upright, np.asarray(stored)[: W, : H])
    expected = upright if mode != "I;16" else upright.astype(np.float32) / 65535
    read = read_image_and_alpha(path).image.permute(1, 2, 0).numpy()
    read = read[..., 0] if mode != "RGB" else (read * 255).round().astype(np.uint8)
    np.testing.assert_allclose(read, expected if mode != "L" else expected / 255, atol=1e-6)
    mask = np.zeros((W, H), np.uint8)
    mask[5:12, 4:15] = 255
    outside = mask == 0
    filled = Inpainter(device="cpu", method="border-mean")(Image.open(path), mask)
    assert np.array_equal(np.asarray(filled)[outside], upright[outside])
    if mode != "I;16":      # the server answers 16-bit grey as PNG too; its levels are checked above
        served = _post(client, path.read_bytes(), _png_bytes(mask))
        assert np.array_equal(np.asarray(served)[outside], upright[outside])


def test_the_command_fills_pictures_and_masks_with_a_damaged_exif_block(tmp_path):
    image, mask = _picture(), _hole_mask()
    good, bad = _save(image, tmp_path / "good.png"), _bad_exif_png(image, tmp_path / "bad.png")
    good_mask, bad_mask = _save(mask, tmp_path / "mask.png"), _bad_exif_png(mask, tmp_path / "badmask.png")
    for picture, hole in ((bad, good_mask), (good, bad_mask)):
        out = tmp_path / f"out_{picture.stem}_{hole.stem}.png"
        with pytest.warns(ImageWarning, match=f"{(bad if picture == bad else bad_mask).name}: its EXIF block"):
            assert inpaint.main([str(picture), str(hole), "-o", str(out), "--method", "border-mean"]) == 0
        assert np.array_equal(np.asarray(Image.open(out))[mask == 0], image[mask == 0])
    for folder in ("imgs", "masks"):
        (tmp_path / folder).mkdir()
    _save(image, tmp_path / "imgs" / "a.png")
    _bad_exif_png(image, tmp_path / "imgs" / "b.png")
    for name in ("a", "b"):
        _save(mask, tmp_path / "masks" / f"{name}.png")
    with pytest.warns(ImageWarning, match="b.png: its EXIF block is damaged"):
        assert inpaint.main(["--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "masks"),
                             "-o", str(tmp_path / "outdir"), "--method", "border-mean"]) == 0
    assert sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["a.png", "b.png"]


def _tiff_with_an_empty_second_page(image: np.ndarray, path: Path) -> Path:
    """A TIFF whose first page points to a second page entry with no size tags (a bad copy of a scan)."""
    _save(image, path)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\0"
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    struct.pack_into("<I", data, first + 2 + 12 * entries, len(data))
    path.write_bytes(bytes(data + struct.pack("<HI", 0, 0)))
    return path


def _cut_animated_gif(image: np.ndarray, path: Path) -> Path:
    """An animated GIF cut short (a partial download) where counting its frames raises IndexError."""
    frames = [Image.fromarray(np.roll(image, 7 * k, axis=1)).convert("P") for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    whole = buf.getvalue()
    for size in range(len(whole) - 1, 0, -1):
        try:
            Image.open(io.BytesIO(whole[:size])).n_frames
        except IndexError:
            path.write_bytes(whole[:size])
            return path
        except Exception:       # other cuts fail otherwise (or not at all): not the one wanted
            continue
    pytest.skip("this PIL raises no IndexError for any cut of an animated GIF")


@pytest.mark.parametrize("damage", [_tiff_with_an_empty_second_page, _cut_animated_gif], ids=["tiff", "gif"])
def test_a_picture_whose_pages_cannot_be_counted_is_one_bad_pair_of_a_folder(tmp_path, damage):
    """Counting the pages of a damaged multi-page TIFF (TypeError) or a cut animated GIF (IndexError)
    stopped the whole folder run with a traceback; it is listed as not readable and the rest are filled."""
    image, mask = _picture(seed=int(np.random.default_rng().integers(1 << 30))), _hole_mask()
    for folder in ("imgs", "masks"):
        (tmp_path / folder).mkdir()
    suffix = ".tif" if damage is _tiff_with_an_empty_second_page else ".gif"
    bad = damage(image, tmp_path / "imgs" / f"b{suffix}")
    _save(image, tmp_path / "imgs" / "a.png")
    for name in ("a", "b"):
        _save(mask, tmp_path / "masks" / f"{name}.png")
    with pytest.raises(ImageError, match=f"{bad.name}: not a readable image"):
        read_image_and_alpha(bad)
    assert inpaint.main(["--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "masks"),
                         "-o", str(tmp_path / "out"), "--method", "border-mean", "--no-progress"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


# --------------------------------------------------------------------------- an orientation in XMP only


def _xmp(orientation: int, element: bool = False) -> str:
    """An XMP packet that gives tiff:Orientation, as an attribute or as an element (PIL reads both)."""
    tag = (f"><tiff:Orientation>{orientation}</tiff:Orientation></rdf:Description>" if element
           else f' tiff:Orientation="{orientation}"/>')
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{tag}</rdf:RDF></x:xmpmeta>')


def _save_with_xmp(image: np.ndarray, path, orientation: int, exif_orientation: int | None = None):
    """``image`` saved lossless where the format allows, with an XMP packet that says ``orientation``
    and, when given, an EXIF orientation tag."""
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[0x0112] = exif_orientation
    picture, suffix = Image.fromarray(image), Path(path).suffix
    if suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", _xmp(orientation, element=True))
        return _save(picture, path, pnginfo=info, exif=exif.tobytes())
    if suffix == ".tif":
        tags = {700: _xmp(orientation).encode()}
        if exif_orientation is not None:
            tags[0x0112] = exif_orientation
        return _save(picture, path, tiffinfo=tags)
    options = {"lossless": True} if suffix == ".webp" else {"quality": 100}
    return _save(picture, path, xmp=_xmp(orientation).encode(), exif=exif.tobytes(), **options)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_an_orientation_given_only_in_xmp_is_not_applied(tmp_path, suffix):
    """PIL takes tiff:Orientation from XMP when EXIF has none; browsers (the server's page) and most
    viewers do not: the picture was turned on reading and its mask, drawn on it as shown, refused or
    filled in the wrong place.  An EXIF orientation beside it is applied as ever."""
    image = _picture()
    path = _save_with_xmp(image, tmp_path / f"xmp{suffix}", 6)
    with Image.open(path) as img:
        assert img.getexif().get(0x0112) == 6           # the file is what the test is about: PIL sees it
    read = read_image_and_alpha(path).image
    assert header_size(path) == (W, H) and tuple(read.shape) == (3, H, W)
    if suffix in (".png", ".webp", ".tif"):             # lossless: the stored pixels exactly
        assert np.array_equal((read.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), image)
    both = _save_with_xmp(image, tmp_path / f"both{suffix}", 6, exif_orientation=6)
    assert header_size(both) == (H, W) and tuple(read_image_and_alpha(both).image.shape) == (3, W, H)


def test_the_command_and_the_server_fill_a_picture_turned_only_in_xmp_where_its_mask_says(tmp_path, client):
    """Half turned (orientation 3 in XMP alone), a square picture read turned would fill the hole's mirror
    image: every check on the sides passes."""
    image = np.random.default_rng().integers(1, 256, (W, W, 3), dtype=np.uint8)
    mask = np.zeros((W, W), np.uint8)
    mask[2:9, 3:12] = 255
    outside = mask == 0
    path = _save_with_xmp(image, tmp_path / "xmp.png", 3)
    _save(mask, tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert inpaint.main([str(path), str(tmp_path / "mask.png"), "-o", str(out), "--method", "border-mean"]) == 0
    assert np.array_equal(np.asarray(Image.open(out))[outside], image[outside])
    served = _post(client, path.read_bytes(), _png_bytes(mask))
    assert np.array_equal(np.asarray(served)[outside], image[outside])


# --------------------------------------------------------------------------- PNG gamma and chromaticities

COLOUR_CHUNKS = {"gamma": 1.0, "chromaticity": (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06), "srgb": 1}


def _colour_png(image: np.ndarray) -> bytes:
    """A PNG with gAMA, cHRM and sRGB chunks (how its pixels are shown, without an ICC profile)."""
    chunks = PngImagePlugin.PngInfo()
    chunks.add(b"gAMA", (100_000).to_bytes(4, "big"))
    chunks.add(b"cHRM", b"".join(round(v * 100_000).to_bytes(4, "big") for v in COLOUR_CHUNKS["chromaticity"]))
    chunks.add(b"sRGB", b"\x01")
    data = _png_bytes(image, pnginfo=chunks)
    assert {key: Image.open(io.BytesIO(data)).info.get(key) for key in COLOUR_CHUNKS} == COLOUR_CHUNKS
    return data


def test_the_command_and_the_server_keep_a_png_s_gamma_and_chromaticities(tmp_path, client):
    """PIL reads gAMA, cHRM and sRGB and writes none back: a browser showed the filled picture otherwise
    (a gamma of 1.0 dropped: every pixel 69 levels off on average)."""
    image, mask = _picture(), _hole_mask()
    (tmp_path / "in.png").write_bytes(_colour_png(image))
    _save(mask, tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert inpaint.main([str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(out),
                         "--method", "border-mean"]) == 0
    assert {key: Image.open(out).info.get(key) for key in COLOUR_CHUNKS} == COLOUR_CHUNKS
    served = _post(client, _colour_png(image), _png_bytes(mask))
    assert {key: served.info.get(key) for key in COLOUR_CHUNKS} == COLOUR_CHUNKS
    with pytest.warns(ImageWarning, match="gamma/chromaticity/srgb .* has no place in JPEG"):
        assert inpaint.main([str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "out.jpg"),
                             "--method", "border-mean"]) == 0


# --------------------------------------------------------------------------- single-colour transparency


def _keyed(mode):
    """A picture of ``mode`` whose BAND is its one transparent colour (tRNS), its PNG's bytes, and
    the alpha it must read with."""
    alpha = np.full((H, W), 255, np.uint8)
    alpha[BAND] = 0
    if mode == "L":
        grey = _picture(1)
        grey[BAND] = 0
        return grey, _png_bytes(grey, transparency=0), alpha
    if mode == "RGB":
        rgb = _picture(3)
        rgb[BAND] = 0
        rgb[:, 6:9] = (0, 0, 7)                  # one channel off the key: opaque
        return rgb, _png_bytes(rgb, transparency=(0, 0, 0)), alpha
    if mode == "I;16":
        levels = _picture(1).astype(np.uint16) * 257
        levels[BAND] = 1000
        return levels, _png_bytes(Image.fromarray(levels), transparency=1000), alpha
    raise ValueError(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_single_colour_transparency_is_read_as_alpha(tmp_path, mode):
    _, data, alpha = _keyed(mode)
    path = tmp_path / "keyed.png"
    path.write_bytes(data)
    assert Image.open(path).mode == mode and "transparency" in Image.open(path).info
    picture = read_image_and_alpha(path)
    assert picture.alpha is not None and np.array_equal(picture.alpha.numpy(), alpha)


def test_single_colour_transparency_in_the_stored_bits(tmp_path):
    # 4-bit grey: the key is a 4-bit level, the pixels PIL scales to 8 bits (15 -> 255)
    path = tmp_path / "grey4.png"
    path.write_bytes(_raw_png(4, 1, 4, 0, [bytes([0x05, 0xFF])], struct.pack(">H", 15)))
    assert np.array_equal(read_image_and_alpha(path).alpha.numpy(), [[255, 255, 0, 0]])
    # 16-bit RGB, which PIL reads at 8 bits: matched on the high bytes it keeps
    path = tmp_path / "rgb16.png"
    path.write_bytes(_raw_png(2, 1, 16, 2, [struct.pack(">6H", 0x1234, 0, 0, 0x3400, 0, 0)],
                              struct.pack(">3H", 0x1234, 0, 0)))
    with pytest.warns(ImageWarning, match="16 bits"):
        assert np.array_equal(read_image_and_alpha(path).alpha.numpy(), [[0, 255]])


def _rgb16_keyed(rng, height=5, width=7):
    """Random 16-bit RGB samples holding a random transparent colour and pixels that differ from it only
    in one channel's low byte: (samples (H, W, 3) uint16, key, the alpha PNG's rule gives)."""
    samples = rng.integers(0, 65536, (height, width, 3)).astype(np.uint16)
    key = rng.integers(0, 65536, 3).astype(np.uint16)
    spots = rng.permutation(height * width)[:12].reshape(2, 6)
    samples.reshape(-1, 3)[spots[0]] = key
    for spot in spots[1]:
        near = key.copy()
        channel = rng.integers(0, 3)
        near[channel] = (near[channel] & 0xFF00) | ((int(near[channel]) + int(rng.integers(1, 256))) & 0xFF)
        samples.reshape(-1, 3)[spot] = near
    alpha = np.where((samples == key).all(axis=2), 0, 255).astype(np.uint8)      # all 16 bits of each sample
    return samples, tuple(int(v) for v in key), alpha


def _rgb16_png(samples, key, exif=None) -> bytes:
    return _raw_png(samples.shape[1], samples.shape[0], 16, 2, [row.astype(">u2").tobytes() for row in samples],
                    struct.pack(">3H", *key), exif)


def test_a_16_bit_colour_pictures_transparent_colour_is_matched_on_all_16_bits(tmp_path):
    """PNG's rule: a pixel is transparent when all 16 bits of its samples are the key's.  PIL keeps each
    sample's high byte only, and matched there, a dark opaque pixel beside a black key came back
    transparent, outside the hole too: through the command's reader, the API and the server."""
    from nfinpaint import Inpainter  # noqa: PLC0415

    samples, key, alpha = _rgb16_keyed(np.random.default_rng())
    assert (alpha == 0).sum() == 6 and (alpha == 255).sum() == samples.shape[0] * samples.shape[1] - 6
    path = tmp_path / "rgb16.png"
    path.write_bytes(_rgb16_png(samples, key))
    with pytest.warns(ImageWarning, match="16 bits"):
        assert np.array_equal(read_image_and_alpha(path).alpha.numpy(), alpha)
    hole = np.zeros(alpha.shape, bool)
    hole[2, 3] = True
    with Image.open(path) as img:
        out = Inpainter(device="cpu", method="border-mean")(img, hole)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), alpha)
    # turned by its EXIF orientation, the low bytes with the pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(_rgb16_png(samples, key, exif.tobytes()))
    with pytest.warns(ImageWarning, match="16 bits"):
        assert np.array_equal(read_image_and_alpha(path).alpha.numpy(), np.rot90(alpha, -1))


def test_a_16_bit_colour_key_on_pixels_decoded_elsewhere_is_matched_on_high_bytes_with_a_warning():
    """Once PIL has decoded the picture (here without nfinpaint), its low bytes are gone: the key is then
    matched on the high bytes, and the reader says so rather than being silently approximate."""
    from nfinpaint.images import colour_key_alpha  # noqa: PLC0415

    samples, key, alpha = _rgb16_keyed(np.random.default_rng())
    img = Image.open(io.BytesIO(_rgb16_png(samples, key)))
    img.load()
    img.info["nfinpaint_16bit_colour"] = True
    with pytest.warns(ImageWarning, match="within 1/256 of that colour"):
        approx = colour_key_alpha(img)
    assert np.array_equal(approx, np.where(((samples >> 8) == np.asarray(key) >> 8).all(axis=2), 0, 255))


def test_the_api_matches_a_lazily_opened_pictures_transparent_colour_in_its_stored_bits(tmp_path):
    # the API loaded PIL images with img.load(), which loses the stored depth: a 4-bit key of 15 was
    # compared with levels PIL had scaled to 255, and the transparent pixels came back opaque
    from nfinpaint import Inpainter  # noqa: PLC0415

    path = tmp_path / "grey4.png"
    path.write_bytes(_raw_png(4, 8, 4, 0, [bytes([0x5F, 0xF5]) for _ in range(8)], struct.pack(">H", 15)))
    hole = np.zeros((8, 4), bool)
    hole[3:5, 0] = True
    with Image.open(path) as img:
        out = Inpainter(device="cpu", method="border-mean")(img, hole)
    assert out.mode == "LA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.tile([255, 0, 0, 255], (8, 1)).astype(np.uint8))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_the_command_keeps_single_colour_transparency(tmp_path, capsys, mode):
    picture, data, alpha = _keyed(mode)
    (tmp_path / "keyed.png").write_bytes(data)
    _save(_hole_mask(), tmp_path / "mask.png")
    common = [str(tmp_path / "keyed.png"), str(tmp_path / "mask.png"), "--method", "border-mean"]
    assert inpaint.main(common + ["-o", str(tmp_path / "out.png")]) == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == {"L": "LA", "RGB": "RGBA"}[mode]         # grey stays grey
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)
    outside = _hole_mask() == 0
    assert np.array_equal(np.asarray(out.convert(mode))[outside], picture[outside])
    assert "note: the alpha channel is passed through unchanged" in capsys.readouterr().out
    assert inpaint.main(common + ["-o", str(tmp_path / "out.jpg")]) == 0
    assert "transparency is dropped" in capsys.readouterr().out


@pytest.mark.parametrize("mode, key, options", [("L", 255, {}), ("RGB", (255, 255, 255), {}),
                                                ("L", 0, {"invert": True})])
def test_a_mask_s_transparent_colour_is_never_a_hole(tmp_path, mode, key, options):
    hole_level = 0 if options else 255
    grey = np.full((H, W), 255 - hole_level, np.uint8)
    grey[HOLE] = hole_level                       # a hole, but of the transparent colour: not one
    grey[0:4, 0:4] = 200 if not options else 55   # a hole of another level: one
    array = grey if mode == "L" else np.dstack([grey] * 3)
    path = _save(array, tmp_path / "mask.png", transparency=key)
    expected = np.zeros((H, W), bool)
    expected[0:4, 0:4] = True
    assert np.array_equal(read_mask_levels(path, **options) > 0.5, expected)
    assert np.array_equal(mask_image_levels(Image.open(path), **options) > 0.5, expected)


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def client():
    for module in ("fastapi", "python_multipart", "httpx2"):     # as tests/test_serve.py
        if os.environ.get("NFINPAINT_CI") != "1":   # CI installs the serve extra: there a missing one fails
            pytest.importorskip(module, reason=f"{module} is missing: pip install \".[test,serve]\"")
    from fastapi.testclient import TestClient

    from nfinpaint import Inpainter
    from nfinpaint.serve import create_app

    with TestClient(create_app(Inpainter(device="cpu", method="border-mean"))) as c:
        yield c


def _post(client, image: bytes, mask: bytes) -> Image.Image:
    response = client.post("/api/inpaint", files={"image": ("a.png", image), "mask": ("m.png", mask)})
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_the_server_matches_a_16_bit_colour_key_on_all_16_bits(client):
    samples, key, alpha = _rgb16_keyed(np.random.default_rng(), H, W)
    out = _post(client, _rgb16_png(samples, key), _png_bytes(_hole_mask()))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), alpha)


def test_the_server_fills_uploads_with_a_damaged_exif_block(client):
    image, mask = _picture(), _hole_mask()
    bad, bad_mask = _png_bytes(image, exif=BAD_EXIF), _png_bytes(mask, exif=BAD_EXIF)
    outside = mask == 0
    for image_data, mask_data in ((bad, _png_bytes(mask)), (_png_bytes(image), bad_mask)):
        out = _post(client, image_data, mask_data)
        assert np.array_equal(np.asarray(out)[outside], image[outside])


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_the_server_keeps_single_colour_transparency(client, mode):
    picture, data, alpha = _keyed(mode)
    out = _post(client, data, _png_bytes(_hole_mask()))
    outside = _hole_mask() == 0
    if mode == "I;16":     # no 16-bit grey+alpha mode: the 16-bit levels and the transparent level kept
        assert out.mode == "I;16" and out.info.get("transparency") == 1000
        levels = np.asarray(out)
        assert np.array_equal(levels[outside], picture[outside]) and np.array_equal(levels != 1000, alpha > 0)
        return
    assert out.mode == {"L": "LA", "RGB": "RGBA"}[mode]
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)
    assert np.array_equal(np.asarray(out.convert(mode))[outside], picture[outside])


def test_a_colour_picture_saved_as_pgm_is_a_greymap(tmp_path):
    """PIL wrote a colour pixmap (P6) under a .pgm name, silently."""
    from nfinpaint.images import ImageWarning, save_image  # noqa: PLC0415

    colour = torch.rand(3, 6, 8)
    with pytest.warns(ImageWarning, match="a .pgm holds grey levels"):
        save_image(colour, tmp_path / "out.pgm")
    assert (tmp_path / "out.pgm").read_bytes()[:2] == b"P5"
    with Image.open(tmp_path / "out.pgm") as img:
        assert img.mode == "L" and img.size == (8, 6)
    save_image(colour[:1], tmp_path / "grey.pgm")          # a grey picture: no warning needed
    assert (tmp_path / "grey.pgm").read_bytes()[:2] == b"P5"
