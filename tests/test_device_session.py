"""scripts/device_session.py: the parts that decide a GPU lease's training leg, checked without a GPU.

The leg's step count comes from its own metrics (steps per second between the
last two train records), a leg past its deadline is asked to stop (SIGTERM, so
train saves) and killed only when it does not, and the training folder is
made of links to the carried photographs.
"""
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_session.py"


@pytest.fixture
def session(monkeypatch):
    spec = importlib.util.spec_from_file_location("device_session", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "device_session", module)
    spec.loader.exec_module(module)
    return module


def test_speed_from_the_last_two_train_records(session, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    assert session.steps_per_second(metrics) is None           # no file yet
    records = [{"kind": "start", "step": 0},
               {"kind": "train", "step": 25, "elapsed_s": 30.0, "images_per_s": 1.0},
               {"kind": "val", "step": 25, "val_psnr": 20.0}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert session.steps_per_second(metrics) is None           # one window: no rate yet
    records.append({"kind": "train", "step": 75, "elapsed_s": 40.0, "images_per_s": 1.0})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert session.steps_per_second(metrics) == (75, 5.0)       # 50 steps in 10 s, start-up outside
    assert session.steps_that_fit(75, 5.0, 100) == 75 + 450
    assert session.steps_that_fit(75, 5.0, -3) == 76            # past the deadline: one more step, not fewer


def test_a_leg_past_its_deadline_is_stopped_then_killed(session, tmp_path, monkeypatch):
    polite = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: (print('saving', flush=True), sys.exit(3)))\n"
              "print('up', flush=True); time.sleep(60)")
    with open(tmp_path / "log", "w") as log:
        start = time.monotonic()
        assert session.run_until([sys.executable, "-c", polite], {}, log, time.monotonic() + 5) == 3
        assert time.monotonic() - start < 30
    assert "saving" in (tmp_path / "log").read_text()
    monkeypatch.setattr(session, "SAVE_SECONDS", 1)
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    with open(tmp_path / "log2", "w") as log:
        start = time.monotonic()
        assert session.run_until([sys.executable, "-c", deaf], {}, log, time.monotonic() + 1) != 0
        assert time.monotonic() - start < 30


def test_training_folder_links_the_sources(session, tmp_path, monkeypatch):
    monkeypatch.setattr(session, "ROOT", tmp_path)
    for source in session.TRAIN_FOLDERS:
        (tmp_path / source).mkdir(parents=True)
        (tmp_path / source / "a.png").write_bytes(b"x")
    folder = session.training_folder(tmp_path / "scratch")
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(s).name for s in session.TRAIN_FOLDERS)
    assert all((folder / Path(s).name / "a.png").is_file() for s in session.TRAIN_FOLDERS)
    assert session.training_folder(tmp_path / "scratch") == folder     # a second call finds them made


def test_help_says_what_each_part_does():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "prepare" in out and "run" in out and "8 files" in out
