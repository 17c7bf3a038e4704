"""The digest of the compiled operators' sources (``csrc/``): recorded in the extension when it is built
(setup.py, which loads this file by its path), and compared by :mod:`nfinpaint._extension` where the
package runs from a source tree, so that a build older than its sources (a ``git pull`` without
``pip install .``) says so instead of running the old kernels."""
from __future__ import annotations

import hashlib
from pathlib import Path

SUFFIXES = (".cpp", ".h", ".cu", ".cuh")


def digest(csrc: Path) -> str:
    """16 hex digits of SHA-256 over the source files under ``csrc`` (their paths and bytes, in order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(csrc).rglob("*") if p.is_file() and p.suffix in SUFFIXES):
        h.update(path.relative_to(csrc).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
