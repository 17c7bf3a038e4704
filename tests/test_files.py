"""Atomic writes: all or nothing, and ordinary file permissions."""
import os
import stat

import pytest

from nfinpaint.files import atomic_path, write_text


def test_atomic_write_replaces_and_uses_umask_mode(tmp_path):
    target = tmp_path / "sub" / "results.md"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["results.md"]


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
