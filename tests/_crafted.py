"""Files a user may have without meaning harm: a PNG whose header declares a huge picture, a saved
tensor file with a flipped bit."""
import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A grey 8-bit PNG of a few hundred bytes whose header declares ``width`` x ``height`` pixels
    (its data holds ten rows: decoding it fails as truncated, after allocating the whole picture).
    30000 x 30000 trips PIL's decompression-bomb guard; 12000 x 10000 (120 MP) only warns."""
    rows = zlib.compress(b"".join(b"\x00" + b"\x00" * width for _ in range(10)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


def grey_alpha_16_png(path: Path, grey: "np.ndarray", alpha: "np.ndarray", icc: bytes | None = None) -> Path:
    """A PNG of 16-bit grey and 16-bit alpha (colour type 4, bit depth 16) from two (H, W) uint16
    arrays: PIL reads such files but cannot write them; ``icc``: a colour profile (iCCP chunk)."""
    import numpy as np  # noqa: PLC0415

    h, w = grey.shape
    pixels = np.stack([grey, alpha], axis=-1).astype(">u2")          # (H, W, 2), big-endian as PNG stores it
    rows = zlib.compress(b"".join(b"\x00" + row.tobytes() for row in pixels))   # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    profile = b"" if icc is None else _chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + profile + _chunk(b"IDAT", rows)
                     + _chunk(b"IEND", b""))
    return path


def profile_of_space(space: bytes) -> bytes:
    """A colour profile declaring ``space`` (b"GRAY", b"CMYK", ...) as its data colour space: the sRGB
    one with header bytes 16-19, the ICC data colour space field, changed (ImageCms reads it so)."""
    from PIL import ImageCms  # noqa: PLC0415

    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[16:20] = space
    return bytes(icc)


def flip_a_bit_in_the_largest_entry(path: Path, rng) -> str:
    """Flip one random bit inside the data of ``path``'s largest zip entry (a ``torch.save`` file: its
    largest tensor), as a bad copy or a failing disk does; the file stays a readable zip. Returns the
    entry's name within the archive's folder."""
    import zipfile  # noqa: PLC0415

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    start = entry.header_offset + 30 + name_length + extra_length      # the local header, then the data
    data[start + int(rng.integers(entry.file_size))] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return entry.filename.split("/", 1)[-1]
