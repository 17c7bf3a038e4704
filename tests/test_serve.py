"""``python -m nfinpaint.serve``'s HTTP API, in-process (Starlette's TestClient) and as a command.

The fills use a small ``fullres`` generator made here (random output weights, so the fill
differs from whatever the hole held); the checks are about where pixels go, what counts as
hole, limits, errors and the one-at-a-time queue, each against a reference built in the test.
"""
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from _crafted import grey_alpha_16_png, profile_of_space

IN_CI = os.environ.get("NFINPAINT_CI") == "1"
for _module in ("fastapi", "uvicorn", "python_multipart", "swagger_ui_bundle", "httpx2"):
    if not IN_CI:   # CI installs the serve extra: there a missing one fails instead
        pytest.importorskip(_module, reason=f"{_module} is missing: pip install \".[test,serve]\"")

from fastapi.testclient import TestClient  # noqa: E402

from nfinpaint import Inpainter, devices  # noqa: E402
from nfinpaint.serve import create_app, main, methods  # noqa: E402

H, W = 40, 56
HOLE = (slice(12, 24), slice(16, 36))


@pytest.fixture(scope="module")
def inpainter(fullres_checkpoint):
    return Inpainter(fullres_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(inpainter):
    with TestClient(create_app(inpainter)) as c:
        yield c


def png(array_or_image, mode=None, **save) -> bytes:
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image, mode)
    buf = io.BytesIO()
    img.save(buf, save.pop("format", "PNG"), **save)
    return buf.getvalue()


def picture(seed=0, channels=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    out[HOLE] = 255 if channels == 1 else (255, 0, 255, 255)[:channels]   # what the fill replaces
    return out


def hole_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[HOLE] = 255
    return mask


def post(client, image: bytes, mask: bytes, **data):
    return client.post("/api/inpaint", files={"image": ("picture.png", image), "mask": ("mask.png", mask)},
                       data={k: str(v) for k, v in data.items()})


def decoded(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(response.content))


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and "\n" not in response.text and body["error"].strip()
    for word in words:
        assert word in body["error"], body["error"]


# --------------------------------------------------------------------------- the page and info


def test_info_names_model_device_limits_and_versions(client, inpainter):
    info = client.get("/api/info").json()
    assert info["model"]["file"] == "generator.pt" and info["model"]["preset"] == "fullres"
    assert info["model"]["sha256"] == inpainter.loaded.sha256
    assert info["device"] == "cpu" and info["half"] is False
    assert info["versions"]["torch"] == torch.__version__
    assert info["limits"]["max_upload_bytes"] == 5 * 40_000_000 + 2**20 and info["limits"]["max_pixels"] == 40_000_000


def test_a_fill_of_the_largest_picture_can_be_sent_back_for_the_next_fill(inpainter):
    """The page's second fill sends the first one's PNG: a 40-megapixel photograph's came to 53 MB, over
    the 50 MB the server took, and the page refused to fill it again.  The worst case, a picture of
    noise with alpha at the pixel limit, fits the default limit as the result of its fill."""
    side = 1000
    noise = np.random.default_rng().integers(0, 256, (side, side, 4), dtype=np.uint8)
    hole = np.zeros((side, side), np.uint8)
    hole[100:140, 200:260] = 255
    with TestClient(create_app(inpainter, max_pixels=side * side)) as small:
        limit = small.get("/api/info").json()["limits"]["max_upload_bytes"]
        first = post(small, png(noise, "RGBA"), png(hole), method="border-mean")
        assert first.status_code == 200, first.text
        assert len(first.content) > 3.9 * side * side and len(first.content) + len(png(hole)) < limit   # ~4 B a pixel
        again = post(small, first.content, png(hole[::-1].copy()), method="border-mean")
        assert again.status_code == 200, again.text


def test_page_is_served_and_needs_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        if not src.startswith(("http", "//", "data:")):
            assert client.get(f"/{src}").status_code == 200, src
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = client.get(f"/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        # nothing is fetched from elsewhere: no absolute URLs in the page's own files
        assert not re.search(r"https?://|//cdn|@import", response.text), name
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page.text)


def test_api_is_documented(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.0.")     # what the /docs page's Swagger UI renders
    body = spec["paths"]["/api/inpaint"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["properties"]) == {"image", "mask", "method", "dilation"}
    assert set(body["required"]) == {"image", "mask"}
    assert {"400", "413", "503"} <= set(spec["paths"]["/api/inpaint"]["post"]["responses"])
    assert "get" in spec["paths"]["/api/info"]
    # each operation's operationId is its own (OpenAPI asks it; client generators drop or refuse duplicates)
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values() if "operationId" in op]
    assert len(ids) == len(set(ids)), ids


def test_docs_page_works_offline(client):
    assert client.get("/redoc").status_code == 404     # FastAPI's ReDoc page loads from a CDN
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    # its script and styles are served here, not from a CDN
    assert not re.search(r"(?:src|href)=[\'\"](?:https?:)?//", page.text), page.text
    for url in re.findall(r"/docs-static/[\w.-]+", page.text):
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 0, url
    assert "javascript" in client.get("/docs-static/swagger-ui-bundle.js").headers["content-type"]


# --------------------------------------------------------------------------- fills


def test_fill_changes_only_the_hole(client, inpainter):
    image = picture()
    out = np.asarray(decoded(post(client, png(image), png(hole_mask()))))
    assert out.shape == image.shape and out.dtype == np.uint8
    inside = hole_mask() > 0
    assert np.array_equal(out[~inside], image[~inside])
    assert (out[inside] != image[inside]).any(axis=-1).all(), "every hole pixel held magenta; the fill replaces it"
    # the same fill as the Python API's on the same picture and mask
    assert np.array_equal(out, np.asarray(inpainter(Image.fromarray(image), Image.fromarray(hole_mask()))))


@pytest.mark.parametrize("space, kept", [(b"RGB ", True), (b"CMYK", False), (b"GRAY", False)])
def test_the_colour_profile_comes_back_only_where_it_fits_the_pixels(client, space, kept):
    icc = profile_of_space(space)
    out = decoded(post(client, png(picture(), icc_profile=icc), png(hole_mask())))
    assert out.mode == "RGB" and (out.info.get("icc_profile") == icc) is kept
    assert kept or "icc_profile" not in out.info


@pytest.mark.parametrize("kind", ["RGBA", "L", "LA", "I;16", "I;16B", "I", "P", "JPEG", "1"])
def test_picture_kinds_keep_every_pixel_outside_the_hole(client, kind):
    rgb = picture(1)
    if kind == "RGBA":
        source = Image.fromarray(picture(1, 4), "RGBA")
    elif kind == "L":
        source = Image.fromarray(rgb[..., 0], "L")
    elif kind == "LA":
        source = Image.fromarray(picture(1, 4)[..., :2], "LA")
    elif kind == "I;16":
        source = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257 + 3))
    elif kind in ("I;16B", "I"):    # as TIFFs (Pillow writes neither mode to PNG): 16-bit grey PNG back
        values = rgb[..., 0].astype(np.int64) * 256 + 3
        source = (Image.frombytes("I;16B", (W, H), values.astype(">u2").tobytes()) if kind == "I;16B"
                  else Image.fromarray(values.astype(np.int32), "I"))
    elif kind == "P":
        source = Image.fromarray(rgb).quantize(16)
    elif kind == "1":
        source = Image.fromarray(rgb[..., 0] > 127)
    else:
        source = Image.fromarray(rgb)
    data = png(source, format={"JPEG": "JPEG", "I;16B": "TIFF", "I": "TIFF"}.get(kind, "PNG"),
               **({"quality": 90} if kind == "JPEG" else {}))
    out = decoded(post(client, data, png(hole_mask())))
    # the reference: the file as PIL decodes it, in the mode the result must have
    expected = {"P": "RGB", "1": "L", "JPEG": "RGB", "I;16B": "I;16", "I": "I;16"}.get(kind, source.mode)
    reference = Image.open(io.BytesIO(data)).convert(expected) if kind in ("P", "1", "JPEG") else source
    assert out.mode == expected
    out_a, ref_a = np.asarray(out).astype(np.int64), np.asarray(reference).astype(np.int64)
    inside = hole_mask() > 0
    assert np.array_equal(out_a[~inside], ref_a[~inside])
    if kind in ("RGBA", "LA"):      # alpha is passed through, even in the hole
        assert np.array_equal(out_a[..., -1], ref_a[..., -1])


def test_antialiased_rim_and_transparent_mask(client):
    """The page's mask: white with the brush's soft edge as alpha. Above 10% that touches the
    stroke is hole; faint specks away from it, and transparent pixels, are not."""
    image = picture(2)
    image[11, 15:37] = (255, 0, 255)              # the hole and its rim hold magenta, which the fill
    image[HOLE] = (255, 0, 255)                   # replaces (the context around them is random)
    image[3, 3] = image[36, 50] = (255, 0, 255)   # so do the two specks
    alpha = np.zeros((H, W), np.uint8)
    alpha[HOLE] = 255
    alpha[11, 15:37] = 40          # a rim row at ~16% touching the stroke: hole
    alpha[10, 15:37] = 20          # ~8%: not hole
    alpha[3, 3] = 40               # a faint speck far away: not hole
    mask = np.dstack([np.full((H, W, 3), 255, np.uint8), alpha])
    mask[36, 50] = (255, 255, 255, 0)   # white but fully transparent: not hole
    out = np.asarray(decoded(post(client, png(image), png(mask, "RGBA"))))
    changed = (out != image).any(axis=-1)
    expected = alpha > 255 * 0.5
    expected[11, 15:37] = True
    assert np.array_equal(changed, expected)


def test_dilation_grows_the_hole_and_method_is_honoured(client, inpainter):
    rows, cols = np.mgrid[0:H, 0:W]
    dy = np.maximum(np.maximum(HOLE[0].start - rows, rows - (HOLE[0].stop - 1)), 0)
    dx = np.maximum(np.maximum(HOLE[1].start - cols, cols - (HOLE[1].stop - 1)), 0)
    grown = np.hypot(dx, dy) <= 3                  # every pixel within 3 px of the hole, Euclidean
    image = picture(3)
    image[grown] = (255, 0, 255)                   # what the fill must replace
    out = np.asarray(decoded(post(client, png(image), png(hole_mask()), dilation=3)))
    assert np.array_equal((out != image).any(axis=-1), grown)

    default = np.asarray(decoded(post(client, png(picture()), png(hole_mask()))))
    patchmatch = np.asarray(decoded(post(client, png(picture()), png(hole_mask()), method="patchmatch")))
    inside = hole_mask() > 0
    assert np.array_equal(patchmatch[~inside], picture()[~inside])
    assert not np.array_equal(patchmatch, default)
    reference = inpainter(Image.fromarray(picture()), Image.fromarray(hole_mask()), method="patchmatch")
    assert np.array_equal(patchmatch, np.asarray(reference))
    # every method of the registry is offered, and the classical ones run through the same call
    offered = client.get("/api/info").json()["methods"]
    assert {"auto", "gan", "patchmatch", "biharmonic"} <= set(offered)
    spec = client.get("/openapi.json").json()["paths"]["/api/inpaint"]["post"]["requestBody"]
    assert spec["content"]["multipart/form-data"]["schema"]["properties"]["method"]["enum"] == offered
    biharmonic = np.asarray(decoded(post(client, png(picture()), png(hole_mask()), method="biharmonic")))
    reference = inpainter(Image.fromarray(picture()), Image.fromarray(hole_mask()), method="biharmonic")
    assert np.array_equal(biharmonic, np.asarray(reference)) and not np.array_equal(biharmonic, patchmatch)


def test_exif_orientation_is_applied_as_viewers_show_it(client):
    raw = picture(4)[:, :48]                       # 48 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6                               # shown rotated: 40 wide, 48 high
    data = png(Image.fromarray(raw), exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert upright.shape[:2] == (48, 40)
    mask = np.zeros((48, 40), np.uint8)
    mask[10:20, 10:30] = 255
    out = np.asarray(decoded(post(client, data, png(mask))))
    assert np.array_equal(out[mask == 0], upright[mask == 0])
    assert_error(post(client, data, png(np.zeros((40, 48), np.uint8) + 255)), 400, "40x48", "same size")


def _trailing_exif_png(raw: np.ndarray, orientation: int) -> bytes:
    """A PNG whose eXIf chunk follows its pixels (PIL writes it before them)."""
    data, exif = png(raw), Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes()[6:]                       # without the "Exif\0\0" of a JPEG's APP1
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


@pytest.mark.parametrize("kind", ["webp", "png-exif-after-pixels"])
@pytest.mark.parametrize("orientation", [3, 6])
def test_a_picture_the_page_shows_unturned_is_filled_unturned(client, inpainter, kind, orientation):
    """Chromium ignores the EXIF orientation of a WebP and of a PNG whose eXIf follows its pixels; the
    server turned them, so the fill landed where the mask was not drawn (3: the opposite corner) or
    the mask, drawn on the page, was refused (6).  Its fill is the fill of the picture as shown: with
    the orientation tag left on it, the Inpainter (which fills a PIL picture as its tag shows it) filled
    it turned."""
    raw = picture(5)
    if kind == "webp":
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = png(Image.fromarray(raw), format="WEBP", lossless=True, exif=exif.tobytes())
    else:
        data = _trailing_exif_png(raw, orientation)
    with Image.open(io.BytesIO(data)) as stored:
        stored.load()
        assert stored.getexif().get(0x0112) == orientation      # the file is what the test is about
    out = np.asarray(decoded(post(client, data, png(hole_mask()), method="biharmonic")))
    known = hole_mask() == 0
    assert out.shape == raw.shape and np.array_equal(out[known], raw[known])
    assert not np.array_equal(out[HOLE], raw[HOLE])                  # the hole, where it was drawn, filled
    # (the learned fill: biharmonic's is the same whichever way the picture is turned)
    out = np.asarray(decoded(post(client, data, png(hole_mask()), method="gan")))
    assert np.array_equal(out, inpainter(raw, hole_mask(), method="gan"))


def test_an_animated_png_is_filled_on_the_frame_the_page_shows(client):
    """An APNG's default image may be no frame of its animation: PIL's first frame is that image, the
    page shows the animation's first frame, and the other picture was filled."""
    hidden, first, second = picture(6), picture(7), picture(8)
    data = png(Image.fromarray(hidden), save_all=True, default_image=True,
               append_images=[Image.fromarray(first), Image.fromarray(second)])
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.default_image and stored.n_frames == 3     # the file is what the test is about
    out = np.asarray(decoded(post(client, data, png(hole_mask()), method="biharmonic")))
    known = hole_mask() == 0
    assert np.array_equal(out[known], first[known])


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_a_4xx_with_a_one_line_json_error(client):
    good_image, good_mask = png(picture()), png(hole_mask())
    assert_error(post(client, b"this is text, not a picture", good_mask), 400, "image", "not an image")
    assert_error(post(client, good_image, b"GIF89a broken"), 400, "mask", "not an image")
    assert_error(post(client, good_image[: len(good_image) // 2], good_mask), 400, "image")   # truncated
    assert_error(post(client, good_image, png(hole_mask()[:30])), 400, "56x30", "56x40", "same size")
    assert_error(post(client, good_image, png(np.zeros((H, W), np.uint8))), 400, "no hole")
    assert_error(post(client, good_image, png(np.full((H, W), 255, np.uint8))), 400, "whole image")
    assert_error(client.post("/api/inpaint", files={"image": ("a.png", good_image)}), 400, "mask", "missing")
    assert_error(client.post("/api/inpaint", content=b"{}", headers={"content-type": "application/json"}),
                 400, "multipart")
    for method in ("neural", ""):
        response = post(client, good_image, good_mask, method=method)
        assert response.status_code == 200 if method == "" else response.status_code == 400
    # '²' passes str.isdigit() and 5,000 digits pass it too: int() refused both, a 500 with a traceback
    for dilation in ("-1", "2.5", "ten", "201", "²", "9" * 5000):
        assert_error(post(client, good_image, good_mask, dilation=dilation), 400, "dilation")
    assert_error(client.get("/api/nothing"), 404)
    assert_error(client.put("/api/inpaint"), 405)
    assert client.get("/api/inpaint").headers["allow"] == "POST"        # a 405 must say what is allowed


def test_the_page_and_info_answer_head_as_get(client):
    """`curl -I`, an "is it up?" check, got 405 for the page: GET routes answer HEAD, without a body."""
    for path in ("/", "/app.js", "/api/info", "/docs"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path


def test_many_fields_are_refused_before_they_are_parsed():
    """800,000 tiny fields (44 MB, under the upload limit) held the event loop for seconds."""
    from nfinpaint.serve import MAX_FIELDS, RequestError, parse_multipart

    part = b'--xyz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n'
    body = b"".join(part % i for i in range(MAX_FIELDS + 1)) + b"--xyz--\r\n"
    with pytest.raises(RequestError, match=f"more than {MAX_FIELDS} fields") as info:
        parse_multipart("multipart/form-data; boundary=xyz", body)
    assert info.value.status == 400
    fine = b"".join(part % i for i in range(MAX_FIELDS)) + b"--xyz--\r\n"
    assert len(parse_multipart("multipart/form-data; boundary=xyz", fine)) == MAX_FIELDS


def test_a_damaged_avif_is_a_400_not_a_500(client):
    """Pillow's AVIF decoder raises RuntimeError for a damaged file (a 500 once); here, a file whose
    image item is gone."""
    avif = png(picture(), format="AVIF")
    damaged = avif.replace(b"iloc", b"iXoc", 1)
    with pytest.raises(RuntimeError):
        Image.open(io.BytesIO(damaged)).load()          # the file is what the test is about
    assert_error(post(client, damaged, png(hole_mask())), 400, "image")
    assert_error(post(client, png(picture()), damaged), 400, "mask")


def test_16_bit_grey_and_alpha_comes_back_grey_with_its_profile(client, tmp_path):
    """Pillow decodes 16-bit grey+alpha as 8-bit RGBA: it came back RGBA, its grey profile dropped."""
    levels = picture(3, channels=1)[..., 0].astype(np.uint16) * 257
    from nfinpaint.images import icc_colour_space

    grey = profile_of_space(b"GRAY")
    assert icc_colour_space(grey) == "GRAY"        # what profile_fits reads
    upload = grey_alpha_16_png(tmp_path / "la16.png", levels, np.full((H, W), 65535, np.uint16), icc=grey)
    out = decoded(post(client, upload.read_bytes(), png(hole_mask())))
    assert out.mode == "LA" and out.info.get("icc_profile") == grey
    known = hole_mask() == 0
    assert np.array_equal(np.asarray(out)[..., 0][known], (levels >> 8).astype(np.uint8)[known])


def test_a_body_without_its_closing_boundary_is_a_truncated_upload(client):
    """A multipart body cut short was read as far as it went: "the field 'mask' is missing"."""
    def field(name, data):
        return (f'--xyz\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                f'Content-Type: image/png\r\n\r\n').encode() + data + b"\r\n"
    whole = field("image", png(picture())) + field("mask", png(hole_mask())) + b"--xyz--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    assert client.post("/api/inpaint", content=whole, headers=headers).status_code == 200
    for cut in (len(b"--xyz--\r\n"), len(b"\r\n--xyz--\r\n"), 100):   # the closing boundary, and into the mask
        response = client.post("/api/inpaint", content=whole[:-cut], headers=headers)
        assert_error(response, 400, "truncated", "closing boundary")


def test_uploads_over_the_limits_get_413(inpainter):
    with TestClient(create_app(inpainter, max_upload_bytes=20_000, max_pixels=1500)) as small:
        big = png(np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8))
        assert len(big) > 20_000
        # the limits as given, not rounded to "0" (20,000 bytes, 1,500 pixels), and the upload's size too
        response = post(small, big, png(hole_mask()))
        assert_error(response, 413, "limit is 0.0191 MB")
        # over 20,000 bytes with the form around it: 0.019... to 0.05 MB; it read "0.0 MB"
        assert re.search(r"the upload is 0\.0[1-4][0-9]* MB", response.json()["error"]), response.json()["error"]
        # a few bytes over: in MB the two amounts read alike ("0.0191 MB; the limit is 0.0191 MB"), so in bytes
        over = int(np.random.default_rng().integers(1, 20))
        response = small.post("/api/inpaint", content=b"x" * (20_000 + over),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert_error(response, 413, f"the upload is {20_000 + over:,} bytes; the limit is 20,000 bytes (0.0191 MB)")

        def chunks():   # no Content-Length: the server counts what arrives
            for start in range(0, len(big), 4096):
                yield big[start:start + 4096]
        response = small.post("/api/inpaint", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert_error(response, 413)
        # 56x40 = 2240 px, said as such (it read "0.0 megapixels", below the limit it was over)
        assert_error(post(small, png(picture()), png(hole_mask())), 413, "(0.00224 megapixels)", "0.0015 megapixels")

    # the default limit: a 48-megapixel PNG of one colour is a small file, refused before decoding
    flat = png(Image.new("L", (8000, 6000)), compress_level=9)
    assert len(flat) < 200_000
    with TestClient(create_app(inpainter)) as default:
        started = time.perf_counter()
        assert_error(post(default, flat, png(hole_mask())), 413, "8000x6000", "40 megapixels")
        assert time.perf_counter() - started < 5


# the 60x60 picture is over the server's limit and PIL's warning level: PIL warns, the server refuses
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_server_s_pixel_limit_applies_above_pil_s_guard(inpainter, monkeypatch):
    """PIL refuses to open a picture of more than twice Image.MAX_IMAGE_PIXELS (about 179 megapixels):
    --max-megapixels 300 stopped there, and the 413 named 300.  PIL's guard is made small here (it
    refuses over 1,000 pixels) and the server's limit larger."""
    with monkeypatch.context() as patch, TestClient(create_app(inpainter, max_pixels=3000)) as small:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
        filled = post(small, png(picture()), png(hole_mask()))                     # 56x40 = 2,240 pixels
        over = post(small, png(Image.new("L", (60, 60))), png(hole_mask()))
        # over twice the server's limit: PIL's guard refuses it unopened, at the server's limit
        far_over = post(small, png(Image.new("L", (100, 100))), png(hole_mask()))
        assert Image.MAX_IMAGE_PIXELS == 500        # PIL's own setting, for the rest of the process
    out = np.asarray(decoded(filled))                # read here: PIL's small guard would refuse it
    assert np.array_equal(out[hole_mask() == 0], picture()[hole_mask() == 0])
    assert_error(over, 413, "60x60", "limit is 0.003 megapixels")
    assert_error(far_over, 413, "limit of 0.003 megapixels")


def test_requests_never_touch_the_file_system(client, tmp_path, monkeypatch):
    """Uploads are parsed in memory (a multipart parser would spool big files to disk), and a
    file name in the request is only a name."""
    import tempfile

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.chdir(tmp_path)
    side = 700   # ~1.5 MB as PNG: more than a parser keeps in memory by default
    image = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = np.zeros((side, side), np.uint8)
    mask[300:310, 300:320] = 255
    data = png(image, compress_level=0)
    assert len(data) > 1_400_000
    response = client.post("/api/inpaint", files={"image": ("/etc/passwd", data), "mask": ("../m.png", png(mask))})
    out = np.asarray(decoded(response))
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert list(spool.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    response = client.post("/api/inpaint", files={"image": ("/etc/hostname", b""), "mask": ("x", png(hole_mask()))})
    assert_error(response, 400, "image", "missing or empty")


def _grey4_png_with_a_transparent_level(levels: np.ndarray, key: int) -> bytes:
    """A 4-bit grey PNG (PIL cannot write one) whose level ``key`` is transparent (tRNS)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w = levels.shape
    rows = zlib.compress(b"".join(b"\0" + bytes(row[0::2] << 4 | row[1::2]) for row in levels.astype(np.uint8)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 4, 0, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">H", key)) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_pictures_are_decoded_by_the_fill_worker_only(client, monkeypatch):
    """The request handler runs on the event loop, before the queue.  Reading a PNG's EXIF there
    decoded it (PIL looks for an eXIf chunk after the pixels): a large picture stalled every other
    request (GET /api/info) for as long, requests then refused with 503 were decoded all the same,
    and a 2/4-bit grey or 16-bit colour PNG lost its transparent colour (known only undecoded)."""
    from PIL import PngImagePlugin  # noqa: PLC0415

    decoded_on, real = [], PngImagePlugin.PngImageFile.load

    def load(self):
        decoded_on.append(threading.current_thread().name)
        return real(self)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
    levels = np.random.default_rng(6).integers(0, 15, (H, W))
    levels[:4] = 15                                          # the transparent level
    response = post(client, _grey4_png_with_a_transparent_level(levels, 15), png(hole_mask()), method="biharmonic")
    assert response.status_code == 200 and decoded_on
    assert all(name.startswith("nfinpaint-fill") for name in decoded_on), decoded_on
    out = np.asarray(decoded(response))
    assert out.shape == (H, W, 2) and np.array_equal(out[..., 1] == 0, levels == 15)
    outside = hole_mask() == 0
    assert np.array_equal(out[..., 0][outside], (levels * 17)[outside])


# --------------------------------------------------------------------------- one fill at a time


class Gate:
    """An Inpainter that records how many fills run at once and can hold them until released."""

    def __init__(self, inner, hold: bool):
        self.inner, self.running, self.most = inner, 0, 0
        self.lock, self.entered, self.release = threading.Lock(), threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.entered.set()
        try:
            time.sleep(0.05)
            assert self.release.wait(30)
            return self.inner(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def _in_threads(client, count, images):
    results = [None] * count

    def one(i):
        results[i] = post(client, png(images[i]), png(hole_mask()))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads, results


def test_concurrent_requests_are_filled_one_at_a_time(inpainter):
    gate = Gate(inpainter, hold=False)
    images = [picture(10 + i) for i in range(4)]
    with TestClient(create_app(gate, queue=4)) as c:
        threads, results = _in_threads(c, 4, images)
        for t in threads:
            t.join(60)
    assert gate.most == 1
    inside = hole_mask() > 0
    for image, response in zip(images, results):   # each answer is its own picture's fill
        out = np.asarray(decoded(response))
        assert np.array_equal(out[~inside], image[~inside])
        assert np.array_equal(out, np.asarray(inpainter(Image.fromarray(image), Image.fromarray(hole_mask()))))


def test_two_apps_on_one_model_still_fill_one_at_a_time(inpainter):
    gate = Gate(inpainter, hold=False)
    images = [picture(30 + i) for i in range(4)]
    with TestClient(create_app(gate)) as a, TestClient(create_app(gate)) as b:
        threads_a, results_a = _in_threads(a, 2, images[:2])
        threads_b, results_b = _in_threads(b, 2, images[2:])
        for t in threads_a + threads_b:
            t.join(60)
    assert gate.most == 1
    assert all(r.status_code == 200 for r in results_a + results_b)


def test_a_full_queue_answers_503(inpainter):
    gate = Gate(inpainter, hold=True)
    app = create_app(gate, queue=1)            # one running, one waiting
    with TestClient(app) as c:
        first, first_result = _in_threads(c, 1, [picture(20)])
        assert gate.entered.wait(30)
        second, second_result = _in_threads(c, 1, [picture(21)])
        deadline = time.monotonic() + 30
        while app.state.fills.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_error(post(c, png(picture(22)), png(hole_mask())), 503, "busy")
        gate.release.set()
        for t in first + second:
            t.join(60)
        assert first_result[0].status_code == 200 and second_result[0].status_code == 200
        assert app.state.fills.pending == 0
        assert post(c, png(picture(22)), png(hole_mask())).status_code == 200   # room again
    assert gate.most == 1


def test_shutdown_cancels_the_waiting_fills_and_lets_the_running_one_finish(inpainter, monkeypatch):
    """Ctrl-C waited for every queued fill: uvicorn waits for the open requests before the app's own
    shutdown closed the queue.  The server as the command runs it (a uvicorn server in a thread
    here, told to stop as Ctrl-C tells it) cancels the waiting fills as it starts to shut down."""
    import asyncio

    import httpx2

    from nfinpaint import serve

    started, release, filled = threading.Event(), threading.Event(), []

    def slow_fill(self, job):       # the model's place: holds the worker until released
        filled.append(job)
        started.set()
        assert release.wait(60)
        return png(picture()), 0.0
    monkeypatch.setattr(serve.FillQueue, "fill", slow_fill)
    app = create_app(inpainter, queue=2)
    sock = serve.listening_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/inpaint"
    server = serve.make_server(app)
    running = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    running.start()
    results = {}

    def request(i):
        results[i] = httpx2.post(url, files={"image": ("a.png", png(picture())), "mask": ("m.png", png(hole_mask()))},
                                 timeout=120)
    clients = [threading.Thread(target=request, args=(i,)) for i in range(3)]
    try:
        clients[0].start()
        assert started.wait(60)
        for client in clients[1:]:
            client.start()
        deadline = time.monotonic() + 60
        while app.state.fills.pending < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.fills.pending == 3
        server.should_exit = True           # what uvicorn's SIGINT handler does
        for client in clients[1:]:          # answered while the running fill is still held
            client.join(60)
        for i in (1, 2):
            assert i in results, "a waiting fill held up the shutdown"
            assert_error(results[i], 503, "shutting down", "send it again")
        assert not release.is_set() and len(filled) == 1
    finally:
        release.set()
        clients[0].join(60)
        running.join(60)
    assert results[0].status_code == 200       # the running fill finished
    assert not running.is_alive() and len(filled) == 1
    with pytest.raises(serve.RequestError, match="shutting down"):    # and no fill is queued after that
        asyncio.run(app.state.fills.run(None))


# --------------------------------------------------------------------------- the command


def test_command_binds_loopback_and_says_where_to_open(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "nfinpaint.serve", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"open (http://127\.0\.0\.1:(\d+)/) in a browser", line)
            if match:
                break
        assert match, "".join(lines)
        with urllib.request.urlopen(f"{match.group(1)}api/info", timeout=30) as response:
            info = json.load(response)
        assert info["device"] == "cpu" and info["model"]["file"] == "default_generator.pt"
        # Ctrl-C, the server's normal stop: uvicorn shuts down, then raises the signal again, which ended
        # in "aborted" and status 130
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and rest.strip().endswith("stopped") and "aborted" not in rest, rest
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_command_errors_are_one_line(capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["--port", str(taken.getsockname()[1])]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.startswith("error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
    assert main(["--port", "0", "--checkpoint", "/nonexistent/generator.pt"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("option, value", [
    ("--queue", "-1"), ("--max-upload-mb", "nan"), ("--max-upload-mb", "inf"), ("--max-upload-mb", "0"),
    ("--max-upload-mb", "-2.5"), ("--max-megapixels", "inf"), ("--max-megapixels", "-inf"),
    ("--max-megapixels", "NaN"), ("--max-megapixels", "0")])
def test_command_refuses_bad_numbers_in_one_line(capsys, option, value):
    assert main(["--port", "0", "--device", "cpu", f"{option}={value}"]) == 2   # = : argparse reads -inf as a flag
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} must be") and err.count("\n") == 1, err


@pytest.mark.parametrize("device, expected", [("tpu9", "error: --device 'tpu9' is not a device"),
                                              ("mps", "error: --device mps: only cpu and cuda devices")])
def test_command_says_a_bad_device_in_the_command_s_words(capsys, device, expected):
    """The server's --device error was the Python API's (device='cpu'), not the command's (--device cpu)."""
    assert main(["--port", "0", "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err


def test_methods_this_installation_cannot_run_are_not_offered(inpainter, monkeypatch):
    from nfinpaint import baselines  # noqa: PLC0415

    monkeypatch.setattr(baselines, "opencv_missing", lambda: "OpenCV is not installed")
    with TestClient(create_app(inpainter)) as fresh:
        offered = fresh.get("/api/info").json()["methods"]
        assert {"auto", "gan", "patchmatch", "biharmonic"} <= set(offered)
        assert not {"opencv-telea", "opencv-ns"} & set(offered)
        response = post(fresh, png(picture()), png(hole_mask()), method="opencv-telea")
        assert response.status_code == 400 and "method must be one of" in response.json()["error"]


def test_the_detail_fill_is_offered_with_a_full_resolution_generator_only(inpainter, tmp_path):
    from nfinpaint.generator_io import save_generator  # noqa: PLC0415
    from nfinpaint.networks import Generator  # noqa: PLC0415

    assert "gan-detail" in methods(inpainter.loaded.generator)
    save_generator(tmp_path / "generator.pt", Generator(24), dict(preset="paper", image_size=24, hole_size=12,
                                                                feature_weights="random", feature_pretrained=False))
    fixed = Inpainter(tmp_path / "generator.pt", device="cpu")
    with TestClient(create_app(fixed)) as fresh:
        offered = fresh.get("/api/info").json()["methods"]
        assert "gan" in offered and "gan-detail" not in offered


def test_an_integer_picture_beyond_16_bits_is_a_400(client):
    values = picture(1)[..., 0].astype(np.int32) * 300          # up to 76,500: more than 16 bits hold
    response = post(client, png(Image.fromarray(values, "I"), format="TIFF"), png(hole_mask()))
    assert response.status_code == 400 and "only 16-bit ranges (0..65535)" in response.json()["error"]


def test_a_client_that_hangs_up_mid_upload_is_a_request_error_not_a_traceback():
    """starlette's ClientDisconnect went up to the server, which logged it with a traceback."""
    import asyncio

    from starlette.requests import ClientDisconnect

    from nfinpaint.serve import RequestError, read_body

    class HangsUp:
        headers = {}

        async def stream(self):
            yield b"--boundary\r\n"
            raise ClientDisconnect

    with pytest.raises(RequestError, match="closed the connection") as info:
        asyncio.run(read_body(HangsUp(), 1 << 20))
    assert info.value.status == 400


def test_an_upload_that_stalls_is_dropped_with_408():
    """A suspended or vanished client's upload was kept for ever: its memory held, and Ctrl-C waited."""
    import asyncio

    from nfinpaint.serve import RequestError, read_body

    class Stalls:
        headers = {}

        async def stream(self):
            yield b"--boundary\r\n"
            await asyncio.sleep(30)
            yield b"never"

    with pytest.raises(RequestError, match="stalled: nothing of it arrived for 0.2 s") as info:
        asyncio.run(read_body(Stalls(), 1 << 20, stall=0.2))
    assert info.value.status == 408


def test_uploads_beyond_the_queue_and_two_get_503_at_once(inpainter):
    """Each upload is held in memory: eight stalled 45 MB uploads held 360 MB until the end."""
    import asyncio

    from nfinpaint import serve

    release = asyncio.Event()

    async def held(request, limit, stall=serve.UPLOAD_STALL_SECONDS):
        await release.wait()
        raise serve.RequestError(400, "released")

    async def scenario():
        import httpx2

        app = create_app(inpainter, queue=1)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as c:
            sends = [asyncio.create_task(c.post("/api/inpaint", content=b"x")) for _ in range(4)]
            await asyncio.sleep(0.5)
            release.set()
            return [r.status_code for r in await asyncio.gather(*sends)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serve, "read_body", held)
        codes = asyncio.run(scenario())
    assert sorted(codes) == [400, 400, 400, 503]


@pytest.mark.parametrize("declared", ["9" * 5000, "²", "12"])
def test_content_length_is_read_as_ascii_digits(declared):
    """str.isdigit() let '²' through to int() (a 500), and int() of 5,000 digits raised (a 500 again)."""
    import asyncio

    from nfinpaint.serve import RequestError, read_body

    class Upload:
        headers = {"content-length": declared}

        async def stream(self):
            yield b"x" * 12

    if declared == "9" * 5000:      # more digits than any limit has: over it, said before reading
        with pytest.raises(RequestError, match="5000 digits") as info:
            asyncio.run(read_body(Upload(), 1 << 20))
        assert info.value.status == 413
    else:                           # not a length, or a small one: the body is read as it comes
        assert asyncio.run(read_body(Upload(), 1 << 20)) == b"x" * 12


def test_half_is_refused_in_one_line_where_the_cpu_has_no_native_bfloat16(capsys, monkeypatch):
    """--half, as inpaint's: refused before the port is taken or the model loads on a CPU without native
    bfloat16 (faked here), in the command's words."""
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert main(["--port", "0", "--device", "cpu", "--half"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --half runs on a CUDA GPU (float16) or on a CPU that computes bfloat16 natively")
    assert "which does not" in err and err.count("\n") == 1, err
