"""scripts/ring_fill_eval.py: the ring-by-ring fill it measures, on fresh random pictures."""
import importlib.util
import math
from pathlib import Path

import torch
from scipy import ndimage

from nfinpaint import Inpainter

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ring_fill_eval.py"
spec = importlib.util.spec_from_file_location("ring_fill_eval", SCRIPT)
ring_fill_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ring_fill_eval)


def _picture_and_hole(thickness: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    picture = (torch.stack([x, y, (x + y) / 2]) + 0.05 * torch.rand(3, 96, 128)).clamp(0, 1)
    mask = torch.zeros(1, 96, 128)
    top, left = int(torch.randint(8, 96 - 8 - thickness, ())), int(torch.randint(8, 128 - 8 - thickness, ()))
    mask[:, top:top + thickness, left:left + thickness] = 1
    return picture, mask


def test_a_ring_as_wide_as_the_hole_is_one_pass():
    picture, mask = _picture_and_hole(20)
    inpainter = Inpainter(device="cpu")
    filled, passes = ring_fill_eval.ring_fill(inpainter, picture, mask, band=10)
    assert passes == 1
    torch.testing.assert_close(filled, inpainter(picture, mask), rtol=0, atol=0)


def test_narrow_rings_take_a_pass_a_ring_and_keep_the_known_pixels():
    picture, mask = _picture_and_hole(40)
    depth = ndimage.distance_transform_edt(mask[0].numpy() > 0.5).max()
    filled, passes = ring_fill_eval.ring_fill(Inpainter(device="cpu"), picture, mask, band=6)
    assert passes == math.ceil(depth / 6)      # a square's rings: each 6 px deeper than the last
    known = mask[0] < 0.5
    assert torch.equal(filled[:, known], picture[:, known])
    assert torch.isfinite(filled).all() and filled.min() >= 0 and filled.max() <= 1
