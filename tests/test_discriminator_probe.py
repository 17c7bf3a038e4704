"""scripts/discriminator_probe.py: its AUC against the Mann-Whitney statistic, and a run over small folders."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "discriminator_probe.py"
spec = importlib.util.spec_from_file_location("discriminator_probe", SCRIPT)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_auc_is_the_mann_whitney_statistic_over_its_pairs():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng()
    pos, neg = rng.integers(0, 6, 40).astype(float), rng.integers(0, 5, 30).astype(float)   # with ties
    u = stats.mannwhitneyu(pos, neg).statistic
    assert probe.auc(torch.tensor(pos), torch.tensor(neg)) == pytest.approx(u / (len(pos) * len(neg)))
    assert probe.auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_a_variant_names_a_form_and_a_learning_rate():
    assert probe.parse_variant("cells@2e-4") == ("cells", 2e-4)
    for bad in ("pixels@1e-4", "mean", "mean@"):
        with pytest.raises(Exception, match="FORM@LR"):
            probe.parse_variant(bad)


def test_a_short_probe_of_the_shipped_generator(tmp_path, capsys):
    rng = np.random.default_rng()
    for split, count in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for k in range(count):
            pixels = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / f"{k}.png")
    assert probe.main(["--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"), "--steps", "2",
                       "--cache", "1", "--every", "1", "--val-crops", "4", "--variants", "mean@1e-4,cells@1e-4",
                       "--threads", "1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    measured = [r for r in records if "variant" in r]
    assert [(r["variant"], r["step"]) for r in measured] == [(v, s) for v in ("mean@0.0001", "cells@0.0001")
                                                              for s in (0, 1, 2)]
    for r in measured:
        assert 0 <= r["global_sample"] <= 1 and 0 <= r["local_sample"] <= 1
