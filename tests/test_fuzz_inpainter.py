"""scripts/fuzz_inpainter.py: its checks catch what they look for, and a short run passes."""
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_inpainter.py"
spec = importlib.util.spec_from_file_location("fuzz_inpainter", SCRIPT)
fuzz_inpainter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz_inpainter)


def _outcomes(inpainter, cases: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    counts = {"ok": 0, "refused": 0, "failed": 0}
    for _ in range(cases):
        counts[fuzz_inpainter.one_case(inpainter, rng)[0]] += 1
    return counts


def _float_out_of_range(picture, mask, **_):
    if isinstance(picture, torch.Tensor):
        return picture * 1.5
    if isinstance(picture, np.ndarray) and picture.dtype.kind == "f":
        return picture - 0.25
    return picture


def _known_pixel_changed(picture, mask, **_):
    if isinstance(picture, np.ndarray):
        out = picture.copy()
        out.flat[0] = out.flat[0] ^ 1 if out.dtype.kind in "ui" else out.flat[0] / 2 + 0.25
        return out
    return picture


def _wrong_kind(picture, mask, **_):
    return np.asarray(picture) if isinstance(picture, Image.Image) else picture


def test_the_checks_fail_an_inpainter_that_breaks_a_promise():
    """Each broken fill is caught on some of 60 fresh cases (the pictures are half arrays, half PIL)."""
    seed = int(np.random.default_rng().integers(1 << 30))
    for broken in (_float_out_of_range, _known_pixel_changed, _wrong_kind):
        assert _outcomes(broken, 60, seed)["failed"] > 0, broken.__name__


def test_an_identity_fill_breaks_no_promise():
    """Returning the picture as it came changes nothing and keeps every kind: no case fails."""
    counts = _outcomes(lambda picture, mask, **_: picture, 60, int(np.random.default_rng().integers(1 << 30)))
    assert counts["failed"] == 0 and counts["ok"] == 60


def test_a_short_run_of_the_shipped_generator_passes(capsys):
    assert fuzz_inpainter.main(["--seconds", "4", "--seed", str(int(np.random.default_rng().integers(1 << 30)))]) == 0
    assert " 0 failed" in capsys.readouterr().out
