"""``python -m nfinpaint.serve``: a local web page that removes things from a picture, and its HTTP API.

    pip install ".[serve]"
    python -m nfinpaint.serve                     # then open http://127.0.0.1:8080/

The page (``nfinpaint/web/``: plain HTML, JS and CSS, no build step, nothing loaded from the
network) opens or takes a dropped picture, lets you paint the hole with a brush, fills it through
the API below, shows the result with a before/after toggle, lets you paint again on the result
and downloads it as PNG.

The API (OpenAPI document at ``/openapi.json``, interactive page at ``/docs``):

* ``POST /api/inpaint``: multipart ``image`` and ``mask`` files (same size; white = hole, with
  the mask rule of ``nfinpaint.mask_options`` for antialiased edges, alpha = 0 is not a hole), optional
  ``method`` (auto, gan, or a classical fill such as patchmatch) and ``dilation`` (pixels); the filled picture as PNG, every
  pixel outside the hole exactly the input's.
* ``GET /api/info``: the model, the device, the limits and the versions.

Every error is a 4xx or 503 with a one-line JSON body ``{"error": "..."}``.  Fills run one at a
time (one worker thread owns the model); up to ``queue`` more wait, and a request beyond that gets
503, as does an upload beyond ``queue`` + 2 being received at once; an upload of which nothing
arrives for 30 s gets 408.  On Ctrl-C the waiting ones get 503 and the running one finishes.  Requests never name a file:
uploads are parsed in memory and nothing is written to disk.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request,
# imported inside create_app so that the serve extra is needed only to serve) as objects
import argparse
import asyncio
import contextlib
import io
import math
import re
import socket
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from nfinpaint import cli, devices
from nfinpaint.images import (DEEP_GREY_MODES, OPEN_ERRORS, ImageError, exif_orientation, grey_again,
                              keep_transparent_level, key_as_alpha, load_pixels, png_colour_chunks, png_colour_info,
                              profile_fits, sixteen_bit_levels, upright, upright_size)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_PIXELS = 40_000_000                 # per picture (width x height), checked before decoding


def upload_limit(max_pixels: int) -> int:
    """The largest request body by default: room for the PNG the server returns for a picture of
    ``max_pixels`` (at most 4 bytes a pixel, RGBA: the page's next fill sends that result back, and
    a 40-megapixel photograph's came to 53 MB, over the 50 MB this was), a mask of a byte a pixel, and
    1 MiB for the rest of the form."""
    return 5 * max_pixels + 2**20


MAX_UPLOAD_BYTES = upload_limit(MAX_PIXELS)     # the whole request body (191.7 MiB)
QUEUE = 4                               # fills that may wait behind the running one
MAX_DILATION = 200
MAX_FIELDS = 16                         # multipart parts in one request: the API has four
UPLOAD_STALL_SECONDS = 30.0             # an upload of which nothing arrives this long is dropped
# modes a PNG holds and the Inpainter fills and returns in the same mode, pixel for pixel
_PNG_MODES = {"L", "LA", "RGB", "RGBA", "I;16"}     # what Pillow writes to PNG as it is
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}


def _amount(value: float) -> str:
    """A limit as its user gave it: 50, 0.25, 0.0015 (not 50.0, nor 0 for a fractional limit)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _over_limit(size: int, limit: int) -> str:
    """An upload of ``size`` bytes over the ``limit``, in MB, or in bytes where the two round alike
    ("the upload is 8.66 MB; the limit is 8.66 MB")."""
    shown, cap = _amount(size / 2**20), _amount(limit / 2**20)
    if shown == cap:
        return f"the upload is {size:,} bytes; the limit is {limit:,} bytes ({cap} MB)"
    return f"the upload is {shown} MB; the limit is {cap} MB"


class RequestError(Exception):
    """A request that cannot be served: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, " ".join(message.split())


# --------------------------------------------------------------------------- request body


async def read_body(request, limit: int, stall: float = UPLOAD_STALL_SECONDS) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over ``limit`` bytes, and with
    408 when nothing of it arrives for ``stall`` seconds (a suspended or vanished client held its
    memory for ever, and Ctrl-C waited for it for ever)."""
    declared = request.headers.get("content-length")
    # ASCII digits only (str.isdigit() takes '²', which int() refuses); a length of more digits than any
    # limit has is over it, and int() of over 4,300 digits would raise
    huge = declared is not None and len(declared) > 15
    if declared is not None and re.fullmatch(r"[0-9]+", declared) and (huge or int(declared) > limit):
        if huge:
            raise RequestError(413, f"the upload is {len(declared)} digits of bytes; the limit is "
                                    f"{_amount(limit / 2**20)} MB")
        raise RequestError(413, _over_limit(int(declared), limit))
    from starlette.requests import ClientDisconnect  # noqa: PLC0415

    chunks, size = [], 0
    stream = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), stall)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise RequestError(408, f"the upload stalled: nothing of it arrived for {_amount(stall)} s") from None
            size += len(chunk)
            if size > limit:     # a chunked upload or a lying Content-Length: stop reading now
                raise RequestError(413, f"the upload is over the limit of {_amount(limit / 2**20)} MB")
            chunks.append(chunk)
    except ClientDisconnect:    # a closed tab or a dropped connection: nothing to fill, no traceback in the log
        raise RequestError(400, "the client closed the connection before the upload ended") from None
    return b"".join(chunks)


def parse_multipart(content_type: str | None, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body by field name, in memory (no temporary files)."""
    from python_multipart.multipart import MultipartParser, parse_options_header  # noqa: PLC0415

    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise RequestError(400, "send the image and the mask as multipart/form-data fields 'image' and 'mask'")
    parts: dict[str, bytes] = {}
    state: dict[str, Any] = {}

    def on_part_begin():
        state["parts"] = state.get("parts", 0) + 1
        if state["parts"] > MAX_FIELDS:     # each part costs the event loop: 800,000 tiny ones held it for seconds
            raise RequestError(400, f"the upload has more than {MAX_FIELDS} fields; send image, mask, and "
                                    f"optionally method and dilation")
        state.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        state["data"].append(data[start:end])

    def on_end():
        state["ended"] = True

    def on_part_end():
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name in parts:
            raise RequestError(400, f"the field {name!r} is sent twice")
        parts[name] = b"".join(state["data"])

    parser = MultipartParser(boundary, dict(on_part_begin=on_part_begin, on_header_field=on_header_field,
                                            on_header_value=on_header_value, on_header_end=on_header_end,
                                            on_part_data=on_part_data, on_part_end=on_part_end, on_end=on_end))
    try:
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except Exception as exc:   # python-multipart's own errors: a malformed body
        raise RequestError(400, f"malformed multipart body ({exc})") from None
    if not state.get("ended"):   # python-multipart's finalize() does not check it: its last fields went missing
        raise RequestError(400, "the upload is truncated: the multipart body ends before its closing boundary; "
                                "send the image and the mask again")
    return parts


# --------------------------------------------------------------------------- pictures


def shown_turned(img: Image.Image) -> bool:
    """Whether the page shows ``img`` (opened, not yet decoded) turned by its EXIF orientation, as
    Chromium does: a JPEG's or an AVIF's, a PNG's whose eXIf chunk comes before its pixels; not a
    WebP's, nor a PNG's after its pixels (checked in Chromium 156, 2026-12-05: turned here but shown
    as stored, such a picture's fill landed where the mask was not drawn, or its mask was refused).
    The server turns a picture as the page shows it."""
    if img.format == "WEBP":
        return False
    return img.format != "PNG" or "exif" in img.info     # (PIL finds a later eXIf only by decoding)


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as the page shows it (:func:`shown_turned`): EXIF orientations 5-8 swap the
    sides (a damaged EXIF block none: :func:`decode` ignores it too).  Read from the header only: the
    request handler must not decode (it runs on the event loop, before the queue: that stalled every
    other request and held the pixels of requests then refused with 503, and the picture, decoded
    there, lost the transparent colour that :func:`decode` keeps)."""
    return upright_size(img) if shown_turned(img) else img.size


class _PilPixelLimit:
    """PIL's guard against decompression bombs kept at or above the server's pixel limit while the
    server reads a picture.

    PIL refuses to open or decode a picture of more than twice ``Image.MAX_IMAGE_PIXELS`` (about 179
    megapixels), before the server's own check of the header can run: ``--max-megapixels 300``
    stopped there, and the 413 named 300.  The server's limit is its guard, so during its reads PIL's
    is raised to it (never lowered).  PIL's setting is process-wide (it has no other), so it is
    changed only while a read needs it and put back when the last one ends."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reads: dict[int, int] = {}      # limit -> reads under way with it
        self.saved: int | None = None        # PIL's own setting, while reads are under way

    @contextlib.contextmanager
    def __call__(self, max_pixels: int):
        with self.lock:
            if not self.reads:
                self.saved = Image.MAX_IMAGE_PIXELS
            self.reads[max_pixels] = self.reads.get(max_pixels, 0) + 1
            self._set()
        try:
            yield
        finally:
            with self.lock:
                self.reads[max_pixels] -= 1
                if not self.reads[max_pixels]:
                    del self.reads[max_pixels]
                self._set()

    def _set(self) -> None:
        # None: PIL's guard is off, and stays off
        wanted = self.saved if self.saved is None or not self.reads else max(self.saved, *self.reads)
        if Image.MAX_IMAGE_PIXELS != wanted:    # untouched unless the server's limit is PIL's or above
            Image.MAX_IMAGE_PIXELS = wanted


pil_pixel_limit = _PilPixelLimit()


def _over_the_pixel_limit(field: str, max_pixels: int) -> RequestError:
    """413 for a picture PIL's guard refused (its header, or its frames or tiles as it decodes)."""
    return RequestError(413, f"the {field} is larger than the limit of {_amount(max_pixels / 1e6)} megapixels")


def open_picture(data: bytes | None, field: str, max_pixels: int) -> Image.Image:
    """The uploaded file ``field`` opened (header only: nothing decoded yet), within the pixel limit."""
    if not data:
        raise RequestError(400, f"the field {field!r} is missing or empty: send the {field} as a file")
    try:
        with pil_pixel_limit(max_pixels):
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _over_the_pixel_limit(field, max_pixels) from None
    except OPEN_ERRORS:     # a damaged AVIF's RuntimeError among them: a 500 once
        raise RequestError(400, f"the {field} is not an image PIL can read (PNG, JPEG, WebP, ...)") from None
    w, h = img.size
    if w * h > max_pixels:
        raise RequestError(413, f"the {field} is {w}x{h} ({_amount(w * h / 1e6)} megapixels); "
                                f"the limit is {_amount(max_pixels / 1e6)} megapixels")
    if w == 0 or h == 0:
        raise RequestError(400, f"the {field} is empty ({w}x{h})")
    return img


def decode(img: Image.Image, field: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The picture decoded and turned as the page shows it (:func:`shown_turned`: its EXIF orientation,
    but for a WebP and a PNG whose EXIF follows its pixels; a damaged EXIF block is ignored, as by the
    command)."""
    turned = shown_turned(img)        # before decoding: PIL reads a PNG's later eXIf then
    if getattr(img, "default_image", False) and getattr(img, "n_frames", 1) > 1:
        # an animated PNG whose default image is no frame of its animation: PIL's first frame is that
        # image, the page shows the animation's first frame (and was filled on the other picture)
        img.seek(1)
    try:
        with pil_pixel_limit(max_pixels):     # PIL checks sizes again as it decodes (TIFF tiles, GIF frames)
            raw_modes = load_pixels(img)      # keeps what a tRNS colour needs (colour_key_alpha)
            # 16-bit grey+alpha comes back grey, with its profile, as the command writes it (RGBA once)
            img = grey_again(img, raw_modes)
            if turned:
                return upright(img, f"the {field}")
            # shown as stored: its orientation tag goes, else the Inpainter would fill it turned (it fills a
            # PIL picture as its orientation shows it), which is not how the page shows it
            if exif_orientation(img) not in (None, 1):
                exif = img.getexif()
                del exif[0x0112]
                img.info["exif"] = exif.tobytes()
            return img
    except Image.DecompressionBombError:
        raise _over_the_pixel_limit(field, max_pixels) from None
    except OPEN_ERRORS as exc:
        raise RequestError(400, f"the {field} cannot be decoded ({cli.one_line(exc)})") from None


def fillable(img: Image.Image) -> Image.Image:
    """``img`` in a mode that the fill returns unchanged outside the hole and PNG stores as is.

    Palette images become RGB(A) (converting the fill back to a palette would change other
    pixels), 1-bit becomes L, CMYK and the like RGB; 16-bit grey stays 16-bit.  Grey and RGB with
    one transparent colour (PNG tRNS) become LA and RGBA, whose alpha the fill passes through;
    16-bit grey keeps its transparent level (:func:`keep_transparent_level`).
    """
    keyed = key_as_alpha(img)
    if keyed is not None:
        return keyed
    if img.mode in _PNG_MODES:
        return img
    if img.mode == "F":
        raise RequestError(400, "float images cannot be returned as PNG; send an 8- or 16-bit image")
    if img.mode in DEEP_GREY_MODES:
        # big-endian 16-bit and 32-bit integer grey as little-endian 16-bit, the one deep grey mode
        # Pillow writes to PNG (it has no PNG writer for mode I)
        try:
            levels = Image.fromarray(sixteen_bit_levels(img))
        except ImageError as exc:
            raise RequestError(400, f"{exc}; send an 8- or 16-bit image") from None
        if "transparency" in img.info:
            levels.info["transparency"] = img.info["transparency"]
        return levels
    if img.mode == "1":
        return img.convert("L")
    transparent = img.mode in ("PA", "RGBa", "La") or "transparency" in img.info
    return img.convert("RGBA" if transparent else "RGB")


def png_bytes(img: Image.Image, icc_profile: bytes | None, colour: dict | None = None) -> bytes:
    """The PNG of ``img``, tagged with the upload's colour profile when it describes these pixels
    (a CMYK or GRAY profile on RGB pixels would be invalid and misrender), and with an uploaded PNG's
    gAMA, cHRM and sRGB chunks (``colour``: :func:`~nfinpaint.images.png_colour_info`)."""
    if icc_profile and not profile_fits(icc_profile, img.mode):
        icc_profile = None
    # PIL writes the image's own profile when none is given: only the one that fits, or none
    options = {"icc_profile": icc_profile} if icc_profile else {}
    if not icc_profile and "icc_profile" in img.info:
        img = img.copy()
        del img.info["icc_profile"]
    if colour:
        options["pnginfo"] = png_colour_chunks(colour)
    buf = io.BytesIO()
    # lossless either way; level 1 is several times faster to write than the default 6 and the
    # file goes over the loopback, so speed wins over size
    img.save(buf, "PNG", compress_level=1, **options)
    return buf.getvalue()


# --------------------------------------------------------------------------- one fill at a time


@dataclass
class FillJob:
    image: Image.Image
    mask: Image.Image
    method: str
    dilation: int


_MODEL_LOCKS: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(inpainter) -> threading.Lock:
    """The one lock of ``inpainter``: apps that share a model still fill one at a time."""
    with _MODEL_LOCKS_GUARD:
        return _MODEL_LOCKS.setdefault(inpainter, threading.Lock())


SHUTTING_DOWN = "the server is shutting down and this fill had not started; send it again once the server is back"


class FillQueue:
    """Runs fills one at a time on one worker thread (a model runs one fill at a time: its
    threads are the machine's, and two fills would only slow each other down and double the
    memory); at most ``waiting`` more requests wait, further ones are refused with 503.
    :meth:`close` answers the waiting ones with 503; the running one finishes."""

    def __init__(self, inpainter, waiting: int, max_pixels: int = MAX_PIXELS):
        self.inpainter, self.waiting, self.max_pixels = inpainter, waiting, max_pixels
        self.model_lock = model_lock(inpainter)
        self.pending = 0                 # running + waiting, counted until the worker is done with a job
        self.lock = threading.Lock()
        self.closed = False
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nfinpaint-fill")

    async def run(self, job: FillJob) -> tuple[bytes, float]:
        with self.lock:
            if self.closed:
                raise RequestError(503, SHUTTING_DOWN)
            if self.pending > self.waiting:
                raise RequestError(503, f"busy: {self.pending} fills are running or waiting; try again shortly")
            self.pending += 1
            future = self.worker.submit(self.fill, job)   # in the lock: close() comes before or after, not between
        # counted down when the worker finishes or drops it, not when the client goes away
        future.add_done_callback(self._done)
        wrapped = asyncio.wrap_future(future)
        try:
            # shielded: a cancelled request then leaves the future alone, so a cancelled future here is
            # close()'s doing
            return await asyncio.shield(wrapped)
        except asyncio.CancelledError:
            if future.cancelled():
                raise RequestError(503, SHUTTING_DOWN) from None
            wrapped.cancel()       # the request was cancelled: so is its fill, unless it has started
            raise

    def _done(self, future) -> None:
        with self.lock:
            self.pending -= 1

    def fill(self, job: FillJob) -> tuple[bytes, float]:
        from nfinpaint.api import InpaintError  # noqa: PLC0415

        start = time.perf_counter()
        icc = job.image.info.get("icc_profile")
        colour = png_colour_info(job.image)        # gAMA, cHRM, sRGB: how a PNG's pixels are shown
        image = fillable(decode(job.image, "image", self.max_pixels))
        mask = decode(job.mask, "mask", self.max_pixels)
        if image.size != mask.size:   # the header's check could not see a PNG's EXIF, nor a broken one
            raise RequestError(400, f"the mask is {mask.width}x{mask.height} but the image is "
                                    f"{image.width}x{image.height}; they must be the same size")
        try:
            with self.model_lock:
                filled = self.inpainter(image, mask, dilate=job.dilation, method=job.method)
        except InpaintError as exc:
            raise RequestError(400, str(exc)) from None
        return png_bytes(keep_transparent_level(image, filled), icc, colour), time.perf_counter() - start

    def close(self) -> None:
        """Cancel the fills that wait (their requests get 503) and take no more; the running one finishes."""
        with self.lock:
            self.closed = True
        self.worker.shutdown(wait=False, cancel_futures=True)


def warm_up(inpainter) -> float:
    """One small fill before the first request, in seconds: a model's first call pays one-off
    costs (thread pool, allocator, kernel choice) that a user's first Fill should not."""
    image = np.full((96, 128, 3), 128, np.uint8)
    image[:, ::2] = 96                   # some texture, so every code path runs as for a photograph
    hole = np.zeros((96, 128), bool)
    hole[40:56, 36:92] = True
    start = time.perf_counter()
    inpainter(image, hole)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the app


def _model_info(inpainter) -> dict | None:
    loaded = inpainter.loaded
    if loaded is None:
        return None
    meta = loaded.meta
    return {"file": Path(loaded.path).name, "sha256": loaded.sha256, "preset": meta.get("preset"),
            "description": meta.get("description") or loaded.describe().split(", ", 1)[-1],
            "image_size": loaded.image_size, "feature_pretrained": meta.get("feature_pretrained")}


def _static_files() -> dict[str, bytes]:
    web = resources.files("nfinpaint") / "web"
    return {name: (web / name).read_bytes() for name in _STATIC}


def methods(generator: Any = None) -> tuple[str, ...]:
    """``auto`` and every fill method of the registry (``nfinpaint.baselines.METHODS``) that can run in
    this installation (the OpenCV fills need OpenCV) and with the loaded ``generator`` (gan-detail
    needs a full-resolution one)."""
    from nfinpaint.baselines import METHODS  # noqa: PLC0415

    return ("auto", *(name for name, method in METHODS.items()
                      if method.missing() is None and method.refuses(generator) is None))


def _inpaint_body(choices: Sequence[str]) -> dict:
    return {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image", "mask"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "the picture (PNG, JPEG, WebP, ...; EXIF orientation applied)"},
                "mask": {"type": "string", "format": "binary",
                         "description": "same size as the image; white = hole (brighter than 50% grey, plus "
                                        "antialiased rims above 10% grey that touch it); transparent = not a hole"},
                "method": {"type": "string", "enum": list(choices), "default": "auto",
                           "description": "auto / gan: the learned fill; the others: classical fills "
                                          "(opencv-* need OpenCV installed)"},
                "dilation": {"type": "integer", "minimum": 0, "maximum": MAX_DILATION, "default": 0,
                             "description": "grow the hole by this many pixels first"},
            }}}},
    }


def _error_doc(*codes: int) -> dict:
    schema = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    return {code: {"description": "one-line error", "content": {"application/json": {"schema": schema}}}
            for code in codes}


def create_app(inpainter=None, *, checkpoint: str | None = None, device: str = "auto",
               max_upload_bytes: int | None = None, max_pixels: int = MAX_PIXELS, queue: int = QUEUE):
    """The FastAPI app: the page, ``POST /api/inpaint`` and ``GET /api/info``.

    ``inpainter``: an :class:`nfinpaint.Inpainter` to fill with (tests pass a small one); by
    default one is loaded from ``checkpoint`` (the shipped generator when None) on ``device``.
    ``max_upload_bytes``: by default :func:`upload_limit` of ``max_pixels``.
    """
    from fastapi import FastAPI, Request  # noqa: PLC0415  (the serve extra: only when serving)
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415
    from fastapi.responses import JSONResponse, Response  # noqa: PLC0415
    from starlette.exceptions import HTTPException  # noqa: PLC0415

    import nfinpaint  # noqa: PLC0415
    from nfinpaint import provenance  # noqa: PLC0415
    from nfinpaint.api import Inpainter  # noqa: PLC0415

    if inpainter is None:
        inpainter = Inpainter(checkpoint, device=device)
    if max_upload_bytes is None:
        max_upload_bytes = upload_limit(max_pixels)
    fills = FillQueue(inpainter, queue, max_pixels)
    # uploads read at once, each up to max_upload_bytes in memory: as many as the fills they feed, a few
    # more beyond them answered 503 at once (eight stalled 45 MB uploads once held 360 MB until the end)
    uploads = asyncio.Semaphore(queue + 2)
    choices = methods(inpainter.loaded.generator if inpainter.loaded is not None else None)
    static = _static_files()
    versions = provenance.versions()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        fills.close()

    # docs_url=None: FastAPI's own /docs loads Swagger UI from a CDN and is blank offline (its /redoc
    # too, so it is off); the page below serves the copy that the swagger-ui-bundle package (the serve
    # extra) holds.  That copy
    # (Swagger UI 4) renders OpenAPI 3.0 only, and nothing here needs 3.1: the document says 3.0.3.
    app = FastAPI(title="nfinpaint", version=nfinpaint.__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Remove things from a picture: paint the hole, get it filled. "
                              "Errors are one-line JSON objects `{\"error\": \"...\"}`.")
    app.openapi_version = "3.0.3"
    app.state.fills = fills

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request, exc: RequestError):
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):   # 404, 405, ...: the same one-line form
        response = error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request refused")
        response.headers.update(exc.headers or {})      # a 405's Allow, which a 405 must carry
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return error(400, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.post("/api/inpaint", summary="Fill the hole of a picture",
              response_class=Response, openapi_extra={"requestBody": _inpaint_body(choices)},
              responses={200: {"content": {"image/png": {}}, "description": "the filled picture (PNG)"},
                         **_error_doc(400, 408, 413, 503)})
    async def inpaint(request: Request):
        if uploads.locked():
            raise RequestError(503, f"{queue + 2} uploads are being received already; try again in a moment")
        async with uploads:
            body = await read_body(request, max_upload_bytes)
            fields = parse_multipart(request.headers.get("content-type"), body)
            del body
        method = fields.get("method", b"auto").decode("utf-8", "replace").strip() or "auto"
        if method not in choices:
            raise RequestError(400, f"method must be one of {', '.join(choices)}, got {method!r}")
        text = fields.get("dilation", b"0").decode("utf-8", "replace").strip() or "0"
        # ASCII digits, few of them: str.isdigit() takes '²' (int() refuses it) and int() refuses over 4,300 digits
        if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) > MAX_DILATION:
            raise RequestError(400, f"dilation must be a whole number of pixels from 0 to {MAX_DILATION}, "
                                    f"got {text[:20]!r}")
        image = open_picture(fields.get("image"), "image", max_pixels)
        mask = open_picture(fields.get("mask"), "mask", max_pixels)
        (iw, ih), (mw, mh) = oriented_size(image), oriented_size(mask)
        if (iw, ih) != (mw, mh):     # (FillQueue.fill checks the decoded pictures again)
            raise RequestError(400, f"the mask is {mw}x{mh} but the image is {iw}x{ih}; "
                                    f"they must be the same size")
        png, seconds = await fills.run(FillJob(image, mask, method, int(text)))
        return Response(png, media_type="image/png", headers={"X-Fill-Seconds": f"{seconds:.3f}"})

    async def api_info():
        return {"model": _model_info(inpainter), "device": str(inpainter.device), "half": inpainter.half,
                "method": inpainter.method, "methods": list(choices),
                "limits": {"max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels,
                           "queue": queue, "max_dilation": MAX_DILATION},
                "versions": versions}

    # GET routes answer HEAD too (curl -I, "is it up?"), as HTTP asks of them; HEAD out of the OpenAPI
    # document, where one function on two methods gave two operations one operationId (the spec forbids it)
    app.get("/api/info", summary="The model, the device, the limits and the versions")(api_info)
    app.head("/api/info", include_in_schema=False)(api_info)

    def page(name: str):
        async def serve_file():
            return Response(static[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})
        return serve_file

    app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)(page("index.html"))
    for name in ("app.js", "style.css"):
        app.api_route(f"/{name}", methods=["GET", "HEAD"], include_in_schema=False)(page(name))
    _add_docs_page(app)
    return app


def _add_docs_page(app) -> None:
    """``/docs``: Swagger UI from the swagger-ui-bundle package's files (``/docs-static/...``), so the
    interactive page works without internet access."""
    from fastapi.openapi.docs import get_swagger_ui_html  # noqa: PLC0415
    from starlette.staticfiles import StaticFiles  # noqa: PLC0415
    from swagger_ui_bundle import swagger_ui_path  # noqa: PLC0415

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    async def docs_page():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="nfinpaint API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")


# --------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m nfinpaint.serve", __doc__)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                             f"0.0.0.0 lets the network in, without any authentication)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--checkpoint", help="generator file or training run directory "
                                             "(default: the generator shipped in the package)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda or cuda:N")
    parser.add_argument("--half", action="store_true",
                        help="run the generator's network in half precision, as inpaint --half does: float16 on a "
                             "CUDA GPU, bfloat16 on a CPU that computes it natively (AMX or AVX512-BF16); refused "
                             "elsewhere")
    parser.add_argument("--queue", type=int, default=QUEUE,
                        help=f"fills that may wait behind the running one before 503 (default {QUEUE})")
    parser.add_argument("--max-upload-mb", type=float, default=None,
                        help="largest request body in MB (default: room for the filled PNG of the largest "
                             "picture sent back with a mask, 5 bytes a pixel: 192 MB at 40 megapixels)")
    parser.add_argument("--max-megapixels", type=float, default=MAX_PIXELS / 1e6,
                        help="largest picture in megapixels (default 40)")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401, PLC0415
        import fastapi  # noqa: F401, PLC0415
        import python_multipart  # noqa: F401, PLC0415
        import swagger_ui_bundle  # noqa: F401, PLC0415
    except ImportError as exc:
        raise cli.UsageError(f"the server needs the serve extra ({exc.name} is missing): "
                             f"pip install \"nfinpaint[serve]\" (from the repository: pip install \".[serve]\")")
    from nfinpaint.api import Inpainter, InpaintError  # noqa: PLC0415

    if not 0 <= args.port <= 65535:
        raise cli.UsageError(f"--port must be 0-65535, got {args.port}")
    if args.queue < 0:
        raise cli.UsageError(f"--queue must be 0 or more, got {args.queue}")
    for option, value in (("--max-upload-mb", args.max_upload_mb), ("--max-megapixels", args.max_megapixels)):
        if value is None:
            continue
        # argparse's float() takes nan and inf, which pass a `<= 0` test and then break int()
        if not (math.isfinite(value) and value > 0):
            raise cli.UsageError(f"{option} must be a finite number more than 0, got {value}")
    device = devices.resolve_device(args.device)     # --device's own message, as every command says it
    problem = devices.half_problem(device) if args.half else None
    if problem:
        raise cli.UsageError(f"--half {problem}; drop --half")
    sock = listening_socket(args.host, args.port)   # before the model loads: a taken port fails fast
    try:
        inpainter = Inpainter(args.checkpoint, device=args.device, half=args.half)
    except InpaintError as exc:
        sock.close()
        raise cli.UsageError(str(exc)) from None
    warm_up(inpainter)
    upload = None if args.max_upload_mb is None else int(args.max_upload_mb * 2**20)
    app = create_app(inpainter, max_upload_bytes=upload, max_pixels=int(args.max_megapixels * 1e6), queue=args.queue)
    model = "PatchMatch only (no generator installed)" if inpainter.loaded is None else inpainter.loaded.describe()
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    precision = f" ({str(devices.half_dtype(inpainter.device)).removeprefix('torch.')})" if inpainter.half else ""
    print(f"model: {model}\ndevice: {inpainter.device}{precision}", flush=True)
    if host in ("0.0.0.0", "::"):
        cli.warn(f"listening on every network address ({args.host}): anyone who can reach this machine can use it")
    print(f"open {url} in a browser (API documentation: {url}docs); Ctrl-C stops", flush=True)
    try:
        make_server(app).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down on Ctrl-C, then (some of its versions) raises the signal again: the server's
        # normal stop, not an abort
        pass
    print("stopped", flush=True)
    return 0


def make_server(app, **config):
    """uvicorn's server for an app of :func:`create_app` that, as it starts to shut down (Ctrl-C),
    cancels the fills still waiting: uvicorn waits for every open request before the app's own
    shutdown (which closes the queue) runs, so Ctrl-C waited for every queued fill to be done."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            app.state.fills.close()
            await super().shutdown(sockets=sockets)

    return Server(uvicorn.Config(app, **{"log_level": "warning", **config}))


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (uvicorn listens on it), or a one-line UsageError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise cli.UsageError(f"--host {host}: not an address of this machine ({exc})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)   # connections made before uvicorn runs wait in the backlog
    except OSError as exc:
        sock.close()
        raise cli.UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                             f"is another server using it? pick another --port") from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(run, argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
