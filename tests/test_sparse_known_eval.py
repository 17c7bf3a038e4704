"""scripts/sparse_known_eval.py: the sparse masks it draws, and a run over a small folder."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sparse_known_eval.py"
spec = importlib.util.spec_from_file_location("sparse_known_eval", SCRIPT)
sparse_known_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sparse_known_eval)


@pytest.mark.parametrize("step", [2, 4])
def test_a_lattice_knows_every_nth_pixel_from_the_top_left(step):
    hole = sparse_known_eval.sparse_mask("lattice", step, (9, 14), np.random.default_rng())
    known = np.argwhere(~hole)
    assert (known % step == 0).all() and len(known) == len(range(0, 9, step)) * len(range(0, 14, step))


def test_salt_covers_its_share_of_the_pixels():
    hole = sparse_known_eval.sparse_mask("salt", 0.9, (200, 300), np.random.default_rng())
    assert abs(hole.mean() - 0.9) < 0.01


def test_the_sparse_rule_brings_the_learned_fill_back_on_sparse_masks(tmp_path, capsys):
    """The shipped generator, through Inpainter: with the rule far better than without it (at 512 px
    level with biharmonic, docs/evaluation.md; on these 80 px ramps the base fill's replicated borders
    keep it a little behind scikit-image's)."""
    rng = np.random.default_rng()
    y, x = np.mgrid[0:60, 0:80]
    for k in range(2):
        smooth = np.stack([x * 3, y * 4, (x + y) * 2], -1) + rng.integers(0, 10, (60, 80, 3))
        Image.fromarray(smooth.clip(0, 255).astype(np.uint8)).save(tmp_path / f"{k}.png")
    assert sparse_known_eval.main(["--data", str(tmp_path), "--size", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(sparse_known_eval.MASKS)
    for line in lines:      # "...: learned fill P / S, without the sparse rule P / S, biharmonic P / S"
        learned, without, biharmonic = (float(part.split()[-3]) for part in line.split(", "))
        assert learned > without + 0.5 and learned > biharmonic - 2, line
