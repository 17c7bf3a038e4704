"""python -m nfinpaint.train: a tiny run end to end, bit-for-bit resume, Ctrl-C, bad input."""
import dataclasses
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _crafted import header_only_png
from _scan_traps import SCAN_TRAPS, run_within, scan_trap
from nfinpaint import _extension, ops
from nfinpaint.checkpoint import FORMAT as CHECKPOINT_FORMAT
from nfinpaint.checkpoint import list_checkpoints, rng_state
from nfinpaint.config import ConfigError, TrainConfig, load_config, to_toml
from nfinpaint.files import MARKER
from nfinpaint.generator_io import load_generator
from nfinpaint.train import main

# 16x16 crops, tiny batches, eager: seconds per run on 2 CPU cores
TINY = ["--feature-weights", "random", "--no-compile", "--batch-size", "4", "--quiet", "--threads", "1",
        "--set", "amp=none",
        "--set", "image_size=16", "--set", "hole_size=6", "--set", "local_patch_size=8",
        "--set", "g_warmup_steps=2", "--set", "d_warmup_steps=1", "--set", "use_custom_ops=false",
        "--set", "val_batches=1", "--set", "log_every=1", "--set", "val_every=1000",
        "--set", "sample_every=1000", "--set", "checkpoint_every=1000", "--set", "tensorboard=false"]


def _records(run, kind="train"):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _flat(value):
    """The leaves of a JSON value."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _flat(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flat(item)]
    return [value]


def _losses(run):
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("loss", "l2", "adv", "feature"))}
            for r in _records(run)}


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data", "--preset", "--steps", "--batch-size", "--out", "--resume", "--fine-tune",
                   "--init-generator", "--device", "--seed", "--no-compile", "--feature-weights", "--config", "--set"):
        assert option in text
    assert "random" in text and "UNTRAINED" in text


def test_tiny_run_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "5", "--out", str(run), "--set", "sample_every=2", "--set", "val_every=5"]) == 0
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "checkpoints", "config.toml", "generator.pt",
                                                      "metrics.jsonl", "samples"]
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["steps"] == 5 and config["image_size"] == 16 and config["feature_weights"] == "random"
    assert config["versions"]["torch"] == torch.__version__
    assert "UNTRAINED" in (run / "config.toml").read_text()
    assert [r["stage"] for r in _records(run)] == ["generator", "generator", "discriminator", "joint", "joint"]
    joint = _records(run)[-1]
    assert {"loss_d", "loss_g", "l2", "feature", "adv_global", "adv_local"} <= set(joint)
    assert all(np.isfinite(v) for v in joint.values() if isinstance(v, float))
    vals = _records(run, "val")
    assert [v["step"] for v in vals] == [0, 5] and vals[0]["val_psnr_hole"] > 0
    start = _records(run, "start")[0]
    assert start["feature_pretrained"] is False and "untrained" in start["feature_weights"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"step_{s:07d}.png" for s in (0, 2, 4, 5)]
    grid = Image.open(run / "samples" / "step_0000005.png")
    assert grid.size[0] < grid.size[1]     # 3 columns (original | masked | filled), one row per image
    assert [s for s, _ in list_checkpoints(run)] == [5]
    generator, meta = load_generator(run)
    assert meta["preset"] == "default" and meta["image_size"] == 16 and meta["hole_size"] == 6
    assert meta["feature_pretrained"] is False and meta["complete"] is True and meta["step"] == 5
    assert generator(torch.rand(2, 3, 16, 16), torch.ones(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def test_the_ssim_term_trains_and_is_recorded(tmp_path):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "4", "--out", str(run), "--set", "ssim_weight=2.5"]) == 0
    joint = _records(run)[-1]
    assert joint["stage"] == "joint" and 0 < joint["ssim"] <= 2 and np.isfinite(joint["loss_g"])
    assert all("ssim" not in r for r in _records(run) if r["stage"] == "discriminator")
    assert load_generator(run)[1]["loss_weights"]["ssim"] == 2.5


def test_a_fullres_run_trains_with_the_window_statistics_and_base_fill_it_is_given(tmp_path):
    """window_stats = "channel" and base_iterations = 32: the run's generator normalises windows and fills
    its base as the shipped file runs (a leg from it can train as it is used), and its exported file says
    so; other generators refuse both."""
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "3", "--out", str(run), "--set", "generator=fullres",
                        "--set", "train_masks=mixed", "--set", "window_stats=channel",
                        "--set", "base_iterations=32"]) == 0
    generator, _ = load_generator(run)
    assert generator.stats == generator.config["stats"] == "channel"
    assert generator.base_iterations == generator.config["base_iterations"] == 32
    for setting in ("window_stats=channel", "base_iterations=32"):
        assert main(TINY + ["--steps", "1", "--out", str(tmp_path / "other"), "--set", setting]) == 2
    assert main(TINY + ["--steps", "1", "--out", str(tmp_path / "other"), "--set", "generator=fullres",
                        "--set", "base_iterations=0"]) == 2
    assert not (tmp_path / "other").exists()


def test_a_run_from_a_generator_that_runs_otherwise_says_how_to_train_it_as_it_runs(tmp_path, capsys):
    """The shipped generator runs each channel's window statistics and 32 base-fill steps; a leg from it with
    the preset's settings (pooled, 8) trains its weights on inputs unlike the ones it corrects when used.  The
    run may mean that, so it trains as set, and one line says which --set trains it as it runs."""
    from nfinpaint.initial_fill import LEVEL_ITERATIONS

    fullres = TINY + ["--set", "generator=fullres", "--set", "train_masks=mixed"]
    trained = tmp_path / "trained"
    assert main(fullres + ["--steps", "2", "--out", str(trained), "--set", "window_stats=channel",
                           "--set", "base_iterations=32"]) == 0
    capsys.readouterr()
    assert main(fullres + ["--steps", "1", "--init-generator", str(trained), "--out", str(tmp_path / "pooled")]) == 0
    err = capsys.readouterr().err
    assert (f"runs otherwise than this run trains it (window_stats=pooled, base_iterations={LEVEL_ITERATIONS}); "
            "--set window_stats=channel --set base_iterations=32 trains it as it runs") in err
    generator, _ = load_generator(tmp_path / "pooled")
    assert generator.stats == "pooled" and generator.base_iterations == LEVEL_ITERATIONS     # the run's settings
    assert main(fullres + ["--steps", "1", "--init-generator", str(trained), "--out", str(tmp_path / "alike"),
                           "--set", "window_stats=channel", "--set", "base_iterations=32"]) == 0
    assert "runs otherwise" not in capsys.readouterr().err
    assert main(fullres + ["--steps", "1", "--init-generator", str(trained), "--out", str(tmp_path / "half"),
                           "--set", "base_iterations=32"]) == 0
    assert "window_stats=pooled, base_iterations=32); --set window_stats=channel trains" in capsys.readouterr().err


def test_the_texture_term_trains_and_is_recorded(tmp_path):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "4", "--out", str(run), "--set", "texture_weight=0.3",
                        "--set", "feature_weight=0"]) == 0
    records = _records(run)
    generator_steps = [r for r in records if r["stage"] in ("generator", "joint")]
    assert generator_steps and all(np.isfinite(r["texture"]) and "feature" not in r for r in generator_steps)
    assert all("texture" not in r for r in records if r["stage"] == "discriminator")
    assert load_generator(run)[1]["loss_weights"]["texture"] == 0.3


def test_resume_continues_bit_for_bit(tmp_path):
    k = 4  # stops in the joint stage (warm-ups: 2 generator + 1 discriminator steps)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    # a constant learning rate: extending --steps re-shapes a cosine schedule (a function of step and
    # steps), so a run extended on resume differs from one planned that long from the start
    common = TINY + ["--seed", "3", "--set", "train_masks=random", "--set", "lr_schedule=constant"]
    # On the CPU even where a GPU is visible: CUDA's default (non-deterministic) algorithms
    # would make the two runs differ in the last bits whatever resume does.
    common += ["--device", "cpu"]
    assert main(common + ["--steps", str(2 * k), "--out", str(straight)]) == 0
    assert main(common + ["--steps", str(k), "--out", str(stopped)]) == 0
    assert main(["--resume", str(stopped), "--steps", str(2 * k), "--quiet"]) == 0
    want, got = _losses(straight), _losses(stopped)
    assert sorted(got) == list(range(1, 2 * k + 1))     # no step logged twice
    assert got == want                                  # exactly the same floats
    g_straight, _ = load_generator(straight)
    g_resumed, meta = load_generator(stopped)
    assert meta["step"] == 2 * k
    for (name, a), b in zip(g_straight.state_dict().items(), g_resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["step"] for r in _records(stopped, "resume")] == [k]


def test_fine_tune_goes_on_from_the_checkpoint_under_new_settings(tmp_path):
    k = 4
    common = TINY + ["--seed", "3", "--set", "train_masks=random", "--set", "lr_schedule=constant",
                     "--device", "cpu"]
    base, same, changed = tmp_path / "base", tmp_path / "same", tmp_path / "changed"
    assert main(common + ["--steps", str(k), "--out", str(base)]) == 0
    before = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    # only --steps changed: the new run trains exactly as resuming the old one would
    assert main(["--fine-tune", str(base), "--steps", str(2 * k), "--out", str(same), "--quiet"]) == 0
    assert {p: p.read_bytes() for p in base.rglob("*") if p.is_file()} == before      # the source run is untouched
    straight = tmp_path / "straight"
    assert main(common + ["--steps", str(2 * k), "--out", str(straight)]) == 0
    want = {step: losses for step, losses in _losses(straight).items() if step > k}
    assert _losses(same) == want
    assert [r["step"] for r in _records(same, "val")][0] == k        # validated where it starts
    # a new loss term: trained from the same weights, recorded where the run and its generator say how
    assert main(["--fine-tune", str(base / "checkpoints" / f"step_{k:07d}.pt"), "--steps", str(k + 2),
                 "--set", "ssim_weight=2.0", "--out", str(changed), "--quiet"]) == 0
    assert all("ssim" in r for r in _records(changed)) and sorted(_losses(changed)) == [k + 1, k + 2]
    meta = load_generator(changed)[1]
    origin = meta["fine_tuned_from"]
    assert origin["step"] == k and Path(origin["checkpoint"]) == (base / "checkpoints" / f"step_{k:07d}.pt").resolve()
    assert origin["changed"] == {"steps": [k, k + 2], "ssim_weight": [0.0, 2.0]}
    assert meta["loss_weights"]["ssim"] == 2.0 and meta["step"] == k + 2
    # and what the run changed from its preset, in the file itself (a bare generator.pt ships with it)
    from_preset = meta["settings_changed_from_preset"]
    assert from_preset["ssim_weight"] == [0.0, 2.0] and from_preset["image_size"][1] == 16
    assert from_preset["lr_schedule"] == ["cosine", "constant"] and "preset" not in from_preset
    assert _records(changed, "start")[0]["fine_tuned_from"] == origin
    # resuming the fine-tuned run keeps the record; fine-tuning it again chains it
    assert main(["--resume", str(changed), "--steps", str(k + 3), "--quiet"]) == 0
    assert load_generator(changed)[1]["fine_tuned_from"] == origin
    # an optimiser setting: used, not only recorded (the checkpoint's optimiser state brought its own)
    betas = tmp_path / "betas"
    assert main(["--fine-tune", str(base), "--steps", str(k + 1), "--set", "beta1=0.8", "--set", "beta2=0.95",
                 "--out", str(betas), "--quiet"]) == 0
    saved = torch.load(betas / "checkpoints" / f"step_{k + 1:07d}.pt", weights_only=True)
    assert [tuple(group["betas"]) for optimiser in saved["optimizers"].values()
            for group in optimiser["param_groups"]] == [(0.8, 0.95)] * 2
    again = tmp_path / "again"
    assert main(["--fine-tune", str(changed), "--steps", str(k + 4), "--out", str(again), "--quiet"]) == 0
    assert load_generator(again)[1]["fine_tuned_from"]["from"] == origin


def test_init_generator_starts_a_new_run_from_a_trained_generator(tmp_path):
    common = TINY + ["--set", "train_masks=random", "--device", "cpu", "--seed", "1"]    # the same validation split
    trained, started = tmp_path / "trained", tmp_path / "started"
    assert main(common + ["--steps", "3", "--out", str(trained)]) == 0
    assert main(common + ["--steps", "2", "--init-generator", str(trained), "--out", str(started)]) == 0
    scores = lambda record: {k: v for k, v in record.items() if k.startswith("val_")}   # noqa: E731
    # the new run's generator (and its weight average, which validation scores) start as the file's weights
    first, last = _records(started, "val")[0], _records(trained, "val")[-1]
    assert first["step"] == 0 and scores(first) and scores(first) == scores(last)
    origin = load_generator(started)[1]["initialised_from"]
    file = trained / "generator.pt"
    assert Path(origin["file"]) == file.resolve() and origin["step"] == 3
    assert origin["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    # how that generator was trained travels with it: a chain of runs stays in the last file
    assert origin["settings_changed_from_preset"] == load_generator(file)[1]["settings_changed_from_preset"]
    assert origin["settings_changed_from_preset"]["steps"][1] == 3
    assert origin["preset"] == load_generator(file)[1]["preset"] and "initialised_from" not in origin
    assert _records(started, "start")[0]["initialised_from"] == origin
    # a resume goes on from its checkpoint, not from the file again, and keeps the record
    assert main(["--resume", str(started), "--steps", "3", "--quiet"]) == 0
    assert load_generator(started)[1]["initialised_from"] == origin
    assert sorted(_losses(started)) == [1, 2, 3]
    again = tmp_path / "again"
    assert main(common + ["--steps", "1", "--init-generator", str(started), "--out", str(again)]) == 0
    assert load_generator(again)[1]["initialised_from"]["initialised_from"] == origin


def test_a_run_without_feature_terms_needs_no_feature_weights(tmp_path, monkeypatch, capsys):
    """--set feature_weight=0 (docs/training.md's run without the feature term) still built the VGG-19,
    downloading the ImageNet weights it never used: offline, the run stopped before its first step."""
    import nfinpaint.feature_net as feature_net

    def no_vgg(*args, **kwargs):
        raise AssertionError("the VGG-19 was built though no loss term uses it")

    monkeypatch.setattr(feature_net, "VGGFeatures", no_vgg)
    args = [a for a in TINY if a not in ("--feature-weights", "random")]       # the default: imagenet
    assert main(args + ["--set", "feature_weight=0", "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    meta = load_generator(tmp_path / "run")[1]
    assert meta["feature_pretrained"] is None and meta["feature_weights"].startswith("none")
    assert "UNTRAINED" not in (tmp_path / "run" / "config.toml").read_text()
    with pytest.raises(AssertionError, match="VGG-19 was built"):      # a feature term still needs it
        main(args + ["--set", "texture_weight=0.1", "--set", "feature_weight=0", "--steps", "1",
                     "--out", str(tmp_path / "other")])


def test_different_seeds_train_differently(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(TINY + ["--steps", "2", "--seed", "1", "--out", str(a)]) == 0
    assert main(TINY + ["--steps", "2", "--seed", "2", "--out", str(b)]) == 0
    assert _losses(a) != _losses(b)


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63), 10**18])
def test_every_seed_in_the_documented_range_trains(tmp_path, seed):
    """Validation seeds its masks with seed * 7919 + batch, which left torch's range for large seeds:
    the run died in its first validation, its folder written but without a checkpoint."""
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "1", "--seed", str(seed), "--set", "val_every=1", "--out", str(run)]) == 0
    assert load_generator(run)[1]["complete"]


def test_a_run_resumed_from_another_folder_reads_the_same_pictures(tmp_path, monkeypatch):
    """--data given relative was recorded as typed: resumed from another working folder, the run
    trained on whatever folder of that name was there."""
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for where, count in (("a", 3), ("b", 1)):
        (tmp_path / where / "imgs").mkdir(parents=True)
        for k in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / where / "imgs" / f"{k}.png")
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    assert main(TINY + ["--data", "imgs", "--steps", "1", "--out", str(run)]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert main(["--resume", str(run), "--steps", "2", "--quiet"]) == 0
    assert load_generator(run)[1]["data"] == str(tmp_path / "a" / "imgs")
    assert main(["--resume", str(run), "--steps", "3", "--quiet", "--data", str(tmp_path / "a" / "imgs")]) == 0
    # the same folder written another way (.., a link) is no change of data
    (tmp_path / "link").symlink_to(tmp_path / "a" / "imgs")
    for same in (tmp_path / "a" / "imgs" / ".." / "imgs", tmp_path / "link"):
        assert main(["--resume", str(run), "--steps", "3", "--quiet", "--data", str(same)]) == 0
    # a fine-tune given a relative --data records it absolute too
    assert main(["--fine-tune", str(run), "--steps", "4", "--quiet", "--data", "imgs", "--out", str(tmp_path / "ft")]) == 0
    assert load_generator(tmp_path / "ft")[1]["data"] == str(tmp_path / "b" / "imgs")


def test_a_run_resumed_from_another_folder_loads_the_same_feature_weights(tmp_path, monkeypatch, capsys):
    """--feature-weights given relative was recorded as typed: resumed from another working folder,
    the run's feature loss silently used whatever file of that name was there."""
    import shutil  # noqa: PLC0415

    from nfinpaint.feature_net import ROTATION_FILE  # noqa: PLC0415

    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        shutil.copy(ROTATION_FILE, tmp_path / where / "vgg.pt")
    options = [option for option in TINY if option != "random"]     # TINY's --feature-weights takes ours
    run, old = tmp_path / "run", tmp_path / "old"
    monkeypatch.chdir(tmp_path / "a")
    for out in (run, old):
        assert main(options[:1] + ["vgg.pt"] + options[1:] + ["--steps", "1", "--out", str(out)]) == 0
    assert tomllib.loads((run / "config.toml").read_text())["feature_weights"] == str(tmp_path / "a" / "vgg.pt")
    monkeypatch.chdir(tmp_path / "b")
    assert main(["--resume", str(run), "--steps", "2", "--quiet"]) == 0
    assert _records(run, "resume")[0]["feature_weights"] == f"file:{tmp_path / 'a' / 'vgg.pt'}"
    # a run recorded before the paths were made absolute: the resume names the weights it would change
    checkpoint = old / "checkpoints" / "step_0000001.pt"
    payload = torch.load(checkpoint, weights_only=False)
    payload["config"]["feature_weights"] = "vgg.pt"
    torch.save(payload, checkpoint)
    config = old / "config.toml"
    config.write_text(config.read_text().replace(str(tmp_path / "a" / "vgg.pt"), "vgg.pt"))
    capsys.readouterr()
    assert main(["--resume", str(old), "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"trained its feature loss with file:{tmp_path / 'a' / 'vgg.pt'}" in err and "--fine-tune" in err
    assert [record["kind"] for record in _records(old)].count("resume") == 0     # nothing written


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nfinpaint.train", *TINY, "--steps", "100000", "--out", str(run)],
                            stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)  # outside the source tree: import the installed package
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").exists() and len(_records(run)) >= 3:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err and "Traceback" not in err
    (step, _), = list_checkpoints(run)
    assert step >= 3
    # the end record's validation is of the step it stopped at, not step 0's
    end, = _records(run, "end")
    assert end["interrupted"] is True and _records(run, "val")[-1]["step"] == step
    assert end["val_psnr_hole"] == _records(run, "val")[-1]["val_psnr_hole"]
    _, meta = load_generator(run)
    assert meta["complete"] is False and meta["step"] == step
    assert not list(run.rglob("*.tmp*"))      # nothing half-written
    assert main(["--resume", str(run), "--steps", str(step + 1), "--quiet"]) == 0
    assert _records(run)[-1]["step"] == step + 1


def test_ctrl_c_before_the_first_step_still_leaves_a_run_to_resume(tmp_path, monkeypatch, capsys):
    """A Ctrl-C while the new run validates and draws its step-0 samples (after its first files are
    written) stops it with a step-0 checkpoint, as one during training would."""
    from nfinpaint.training_run import Run  # noqa: PLC0415

    original = Run.samples

    def interrupted_samples(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)         # Ctrl-C, delivered to this (the main) thread
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Run, "samples", interrupted_samples)
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "5", "--out", str(run)]) == 130
    assert "interrupted at step 0" in capsys.readouterr().err
    (step, _), = list_checkpoints(run)
    assert step == 0 and load_generator(run)[1]["complete"] is False
    monkeypatch.setattr(Run, "samples", original)
    assert main(["--resume", str(run), "--steps", "2", "--quiet"]) == 0
    assert sorted(_losses(run)) == [1, 2]


def _bad(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ")
    return err[-1]


def _bad_input_files(tmp_path):
    """The files the table below refers to ({tmp}/NAME)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small" / "s.png")
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "a.jpg").write_text("?")
    (tmp_path / "c.toml").write_text("learning_rate = 0.1\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something").write_text("x")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "backup.pt").write_bytes(b"")
    (tmp_path / "broken" / "checkpoints").mkdir(parents=True)
    (tmp_path / "broken" / "checkpoints" / "step_0000002.pt").write_bytes(np.random.default_rng(0).bytes(999))
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8)).save(tmp_path / "photos" / "p.png")
    (tmp_path / "truncval").mkdir()      # its header reads, its pixels do not
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "truncval" / "v.png")
    (tmp_path / "truncval" / "v.png").write_bytes((tmp_path / "truncval" / "v.png").read_bytes()[:60])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    # a run whose config.toml was edited by hand after its checkpoint (lr), and one in use by another process
    for name, config in (("edited", TrainConfig(lr=1e-3)), ("busyrun", TrainConfig())):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        torch.save(_checkpoint_payload(), tmp_path / name / "checkpoints" / "step_0000001.pt")
        (tmp_path / name / "config.toml").write_text(to_toml(config))
    # checkpoints damaged by hand or by another program: a mistyped config value, no RNG states
    for name, damage in (("mistyped", lambda p: p["config"].update(lr="fast")),
                         ("norng", lambda p: p.pop("rng")),
                         ("nostep", lambda p: p.update(step="one"))):
        payload = _checkpoint_payload()
        damage(payload)
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        torch.save(payload, tmp_path / name / "checkpoints" / "step_0000001.pt")
        (tmp_path / name / "config.toml").write_text(to_toml(TrainConfig()))
    (tmp_path / "ready" / "checkpoints").mkdir(parents=True)       # a run at step 2, to fine-tune
    torch.save({**_checkpoint_payload(), "step": 2}, tmp_path / "ready" / "checkpoints" / "step_0000002.pt")
    (tmp_path / "bombonly").mkdir()
    header_only_png(tmp_path / "bombonly" / "b.png", 30000, 30000)     # PIL's decompression-bomb guard
    (tmp_path / "busy").mkdir()
    held = []
    for name in ("busy", "busyrun"):     # another training's lock on the run directory
        fd = os.open(tmp_path / name / MARKER, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    return held


def _checkpoint_payload() -> dict:
    """What a checkpoint of step 1 holds, in outline (the models' states left empty)."""
    config = TrainConfig()
    models = {"generator": {}, "global_d": {}, "local_d": {}}
    if config.ema_decay > 0:                  # the weight average the config asks for
        models["generator_ema"] = {}
    return {"format": CHECKPOINT_FORMAT, "step": 1, "config": dataclasses.asdict(config), "models": models,
            "optimizers": {"generator": {}, "discriminators": {}}, "rng": rng_state()}


BAD_INPUTS = [  # (arguments, with {tmp} for the test's folder; expected part of the one-line error)
    ("--data {tmp}/empty --out {tmp}/run", "no image files found"),
    ("--data {tmp}/small --out {tmp}/run", "smaller than the 16x16 crop"),
    ("--data {tmp}/unreadable --out {tmp}/run", "could be read"),
    ("--set stepz=3 --out {tmp}/run", "unknown config key 'stepz'"),
    ("--set preset=fullres --out {tmp}/run", "preset is chosen with --preset fullres"),     # it was ignored
    ("--config {tmp}/c.toml --out {tmp}/run", "unknown config key 'learning_rate'"),
    ("--out {tmp}/taken", "already exists and is not empty"),
    ("--out {tmp}/a_file", "is a file, not a folder"),
    ("--out {tmp}/a_file/run", "is a file, not a folder"),
    ("--set image_size=25 --out {tmp}/run", "cannot take image_size=25"),
    ("--set feature_layer=conv9 --out {tmp}/run", "feature_layer must be one of"),
    ("--device tpu --out {tmp}/run", "device must be auto, cpu, cuda or cuda:N"),
    ("--set train_masks=square --out {tmp}/run", "train_masks"),
    ("--set lr=inf --out {tmp}/run", "lr must be a finite number"),
    ("--set max_crop_scale=inf --out {tmp}/run", "max_crop_scale must be a finite number"),
    ("--out=", "--out is empty"),
    ("--data {tmp}/photos --out {tmp}/photos/run", "overlaps data"),
    ("--data {tmp}/photos --set val_data={tmp}/small --out {tmp}/small/run", "overlaps val_data"),
    ("--data {tmp}/photos --set val_data={tmp}/truncval --out {tmp}/run", "validation image files could be read"),
    # a validation folder at fault was blamed on --data; a picture smaller than the crop named no setting
    ("--data {tmp}/photos --set val_data={tmp}/empty --out {tmp}/run", "point val_data at a folder of images"),
    ("--data {tmp}/photos --set val_data={tmp}/small --out {tmp}/run", "remove it from val_data "),
    ("--data {tmp}/small --out {tmp}/run", "or use a smaller image_size"),
    ("--feature-weights {tmp}/x.png --out {tmp}/run", "not a readable VGG-19 weights file"),
    ("--out {tmp}/busy", "in use by another training"),
    ("--data {tmp}/bombonly --out {tmp}/run", "none of the 1 image files could be read"),
    ("--seed 99999999999999999999999 --out {tmp}/run", "seed must be an integer from -2^63 to 2^64-1"),
    ("--seed -99999999999999999999999 --out {tmp}/run", "seed must be an integer from -2^63 to 2^64-1"),
    # refused before the run folder is written, not by running out of memory in the first step
    ("--batch-size 100000000000 --out {tmp}/run", "does not fit in memory"),
    ("--init-generator {tmp}/nope.pt --out {tmp}/run", "init_generator: generator checkpoint"),
    ("--set init_generator={tmp}/nope.pt --out {tmp}/run", "init_generator: generator checkpoint"),
    ("--init-generator= --out {tmp}/run", "--init-generator is empty"),   # it trained from a fresh generator
    ("--set init_generator= --out {tmp}/run", "--set init_generator= is empty"),
    # the embedded photographs, or a split of the training folder, silently
    ("--data= --out {tmp}/run", "--data is empty: give a folder of pictures (leave it out to train on the embedded"),
    ("--set data= --out {tmp}/run", "--set data= is empty"),
    ("--data {tmp}/photos --set val_data= --out {tmp}/run", "--set val_data= is empty: give a folder of validation"),
    # made absolute, it named the working folder ("VGG-19 weights file '/work' is a folder")
    ("--feature-weights= --out {tmp}/run", "--feature-weights is empty: give 'imagenet', 'rotation', 'random'"),
    ("--set feature_weights= --out {tmp}/run", "--set feature_weights= is empty"),
    ("--init-generator {tmp}/c.toml --out {tmp}/run", "not a readable nfinpaint generator file"),
    # the shipped generator is the fullres one: it does not fit the tiny test model
    ("--init-generator shipped --out {tmp}/run", "it is a fullres generator and this run trains"),
]
RESUME_INPUTS = [
    ("--resume {tmp}/nope", "does not exist"),
    # an empty value (an unset shell variable) was the current folder: ". holds no checkpoint", or, run
    # from inside a run directory, a resume of that run
    ("--resume=", "--resume is empty: give the run directory"),
    ("--fine-tune= --out {tmp}/run", "--fine-tune is empty: give the run directory"),
    ("--resume {tmp}/backup.pt", "accepted only inside its run directory's checkpoints/"),
    ("--resume {tmp}/empty", "holds no checkpoint"),
    ("--resume {tmp}/broken", "not a readable training checkpoint"),
    ("--resume {tmp}/broken", "; start a new run (--out), from this run's generator if it has one (--init-generator"),
    ("--resume {tmp}/edited", "config.toml was edited (lr"),
    ("--resume {tmp}/busyrun", "in use by another training"),
    ("--resume {tmp}/mistyped", "config key 'lr' in its config needs a number, got 'fast'"),
    ("--resume {tmp}/norng", "it has no 'rng' entry"),
    ("--resume {tmp}/nostep", "its step is 'one'"),
    ("--fine-tune {tmp}/nope --out {tmp}/run", "error: --fine-tune /"),   # it said "resume path ... does not exist"
    ("--config {tmp} --out {tmp}/run", "is a folder; give a TOML file"),
    ("--fine-tune {tmp}/ready --set image_size=32 --out {tmp}/run", "cannot change image_size when fine-tuning"),
    ("--fine-tune {tmp}/ready --set ema_decay=0 --out {tmp}/run", "cannot turn the weight average off"),
    ("--fine-tune {tmp}/ready --steps 2 --out {tmp}/run", "pass --steps N with N > 2"),
    ("--fine-tune {tmp}/ready --steps 9 --out {tmp}/ready", "give --out a new directory"),
    ("--fine-tune {tmp}/ready --resume {tmp}/ready --steps 9", "give one of them"),
    ("--fine-tune {tmp}/ready --preset paper --steps 9 --out {tmp}/run", "drop --preset/--config"),
    ("--fine-tune {tmp}/ready --steps 9 --set ssim_weight=-1 --out {tmp}/run", "ssim_weight must be a finite"),
    ("--fine-tune {tmp}/ready --steps 9 --init-generator shipped --out {tmp}/run", "a fine-tune starts from its"),
    # another seed drew another validation split, on regions the checkpoint trained on
    ("--fine-tune {tmp}/ready --steps 9 --seed 7 --out {tmp}/run", "cannot change seed when fine-tuning without"),
    ("--fine-tune {tmp}/ready --steps 9 --set val_fraction=0.2 --out {tmp}/run", "cannot change val_fraction when"),
]


@pytest.mark.parametrize("argv, expected", BAD_INPUTS + RESUME_INPUTS)
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)          # the default run folder (runs/) would land in the snapshot below
    held = _bad_input_files(tmp_path)
    try:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        args = ([] if argv.startswith(("--resume", "--fine-tune")) else TINY) + argv.format(tmp=tmp_path).split()
        message = _bad(args + ["--quiet"], capsys)
        assert expected in message and "weights_only" not in message, message
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
        assert not (tmp_path / "run").exists() and not (tmp_path / "photos" / "run").exists()
    finally:
        for fd in held:
            os.close(fd)


def test_resume_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "3", "--out", str(run), "--set", "checkpoint_every=2"]) == 0
    assert [s for s, _ in list_checkpoints(run)] == [2, 3]
    (run / "checkpoints" / "step_0000003.pt").write_bytes(b"\x00" * 100)   # a crash mid-write, say
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "step_0000003.pt" in err and "older checkpoint step_0000002.pt" in err
    assert [r["step"] for r in _records(run, "resume")] == [2]
    assert sorted(r["step"] for r in _records(run)) == [1, 2, 3, 4]


def test_resume_falls_back_from_a_newest_checkpoint_with_a_flipped_bit(tmp_path, capsys):
    """A readable zip whose data fails its checksum is damaged too (torch.load would take it)."""
    from _crafted import flip_a_bit_in_the_largest_entry  # noqa: PLC0415

    run = tmp_path / "run"
    assert main(TINY + ["--steps", "3", "--out", str(run), "--set", "checkpoint_every=2"]) == 0
    flip_a_bit_in_the_largest_entry(run / "checkpoints" / "step_0000003.pt", np.random.default_rng())
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "is damaged" in err and "older checkpoint step_0000002.pt" in err, err
    assert [r["step"] for r in _records(run, "resume")] == [2]


def test_resume_drops_damaged_metrics_lines_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"kind": "train", "step": 1, "l2"\n')                  # cut short
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert "warning: " in capsys.readouterr().err
    assert [r["step"] for r in _records(run)] == [1, 2, 3]


def test_resume_with_a_folder_for_its_metrics_log_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "1", "--out", str(run)]) == 0
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    message = _bad(["--resume", str(run), "--steps", "2", "--quiet"], capsys)
    assert "metrics.jsonl is not a file" in message, message


def test_schedule_line_says_what_this_run_does(tmp_path, capsys):
    assert main(TINY + ["--steps", "2", "--set", "g_warmup_steps=300", "--set", "d_warmup_steps=40",
                        "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "schedule: 2 generator-only, 0 discriminator-only, 0 joint steps" in err
    assert "No CUDA runtime" not in err


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "1", "--out", str(run)]) == 0
    assert "cannot change batch_size" in _bad(["--resume", str(run), "--batch-size", "8"], capsys)
    assert "drop --preset" in _bad(["--resume", str(run), "--preset", "paper"], capsys)
    assert "already at step 1" in _bad(["--resume", str(run), "--steps", "0"], capsys)


def test_resume_refuses_a_data_folder_whose_files_changed(tmp_path, capsys):
    """Its crops (and a split by file) follow the files found: with one picture replaced the resume went
    on with other data, silently, and with one added a trained picture could move into validation."""
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng()
    data, run = tmp_path / "imgs", tmp_path / "run"
    data.mkdir()
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / f"{k}.png")
    assert main(TINY + ["--data", str(data), "--steps", "1", "--out", str(run)]) == 0
    assert main(["--resume", str(run), "--steps", "2", "--quiet"]) == 0           # the same files: it goes on
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(data / "1.png")      # replaced
    err = _bad(["--resume", str(run), "--steps", "3"], capsys)
    assert f"the files in {str(data)!r} changed since step_0000002.pt" in err and f"--fine-tune {run}" in err
    (data / "1.png").unlink()
    assert "changed since" in _bad(["--resume", str(run), "--steps", "3"], capsys)              # removed
    data.rename(tmp_path / "moved")
    err = _bad(["--resume", str(run), "--steps", "3"], capsys)
    assert f"the run's data folder {str(data)!r} is gone: put it back" in err and "--data NEW_PLACE" in err
    assert main(["--fine-tune", str(run), "--data", str(tmp_path / "moved"), "--steps", "3", "--quiet",
                 "--out", str(tmp_path / "ft")]) == 0                                           # the way on


def test_resume_with_another_thread_count_says_it_is_not_bit_for_bit(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "1", "--threads", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "2", "--threads", "2"]) == 0
    assert "note: the run used 1 threads, now 2: it continues, but not bit for bit" in capsys.readouterr().err
    assert main(["--resume", str(run), "--steps", "3"]) == 0      # its own count again, from the checkpoint
    assert "not bit for bit" not in capsys.readouterr().err


@pytest.mark.parametrize("case", SCAN_TRAPS)
def test_a_data_folder_with_a_link_loop_or_a_fifo_trains_on_each_picture_once(tmp_path, case):
    """Not errors: the run trains on each picture once, the warning says what was left out.  In a
    subprocess with a time limit, so that a scan that blocks on the FIFO fails instead of hanging."""
    folder, run = tmp_path / "data", tmp_path / "run"
    said = scan_trap(folder, case)
    argv = [sys.executable, "-m", "nfinpaint.train", *TINY, "--data", str(folder), "--steps", "2", "--out", str(run)]
    done = run_within(argv, tmp_path, f"train with a {case} in --data")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith(said) for line in lines), done.stderr
    assert any(line.startswith(f"data: {folder}: train 3 images") for line in lines), done.stderr
    assert [r["val_images"] for r in _records(run, "val")] == [3, 3]      # held out of each picture once


def _edit_toml(path, **values):
    """Change ``KEY = value`` lines of a run's config.toml by hand, as a user would."""
    import re  # noqa: PLC0415

    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert count == 1, key
    path.write_text(text)


def test_resume_warns_about_config_file_edits_it_does_not_keep(tmp_path, capsys):
    """Keys a resumed run may change, edited in config.toml: no error (after a hard kill the file can
    hold a newer steps than any checkpoint), but the rewrite would lose them, so one warning names each
    with the file's and the run's value and the --set that keeps it; a key whose file value the run
    uses anyway (val_every, given again with --set) or that was not edited (sample_every) is not named."""
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    _edit_toml(run / "config.toml", steps=4, val_every=5, checkpoint_every=7, log_every=3, tensorboard="true")
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--set", "val_every=5", "--quiet"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "config.toml" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {run / 'config.toml'} sets "), said
    # the run's values: TINY's, and --steps 3
    for text in ("checkpoint_every = 7 (the run keeps 1000)", "log_every = 3 (the run keeps 1)",
                 "steps = 4 (the run keeps 3)", "tensorboard = true (the run keeps false)"):
        assert text in said[0], said
    assert "val_every" not in said[0] and "sample_every" not in said[0], said
    flags = said[0].split("resume with ")[1].split()
    assert flags == ["--set", "checkpoint_every=7", "--set", "log_every=3", "--set", "steps=4",
                     "--set", "tensorboard=true"]
    written = tomllib.loads((run / "config.toml").read_text())
    assert (written["steps"], written["val_every"], written["checkpoint_every"], written["log_every"]) == (3, 5, 1000, 1)
    # the advice works: --set of those keys is accepted on resume, and the run keeps them; no edit, no warning
    assert main(["--resume", str(run), "--quiet"] + flags) == 0
    assert "config.toml" not in capsys.readouterr().err
    written = tomllib.loads((run / "config.toml").read_text())
    assert (written["steps"], written["checkpoint_every"], written["log_every"], written["tensorboard"]) == (4, 7, 3, True)
    assert _records(run)[-1]["step"] == 4


@pytest.mark.skipif(Path(torch.hub.get_dir(), "checkpoints", "vgg19-dcbb9e9d.pth").exists(),
                    reason="the ImageNet VGG-19 weights are cached here")
def test_imagenet_weights_offline_say_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))   # no cached weights, no network
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    args = [a for a in TINY if a not in ("--feature-weights", "random")]
    message = _bad(args + ["--out", str(tmp_path / "run")], capsys)
    assert "--feature-weights random" in message and "--feature-weights PATH" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not (_extension.is_built() and hasattr(ops, "composite_l2")),
                    reason="the custom operators are not built/merged")
def test_custom_ops_and_references_train_the_same(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(TINY + ["--steps", "4", "--out", str(a)]) == 0
    assert main(TINY + ["--steps", "4", "--out", str(b), "--set", "use_custom_ops=true"]) == 0
    for (step, want), got in zip(_losses(a).items(), _losses(b).values()):
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (step, key)


@pytest.mark.slow
def test_compiled_step_matches_eager(tmp_path):
    """The one compile test: compiled joint steps (both updates, the graph break between
    them) agree with eager ones; only the joint stage, to keep the compile short."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    args = TINY + ["--steps", "2", "--set", "image_size=8", "--set", "hole_size=4", "--set", "local_patch_size=8",
                   "--set", "g_warmup_steps=0", "--set", "d_warmup_steps=0"]
    assert main(args + ["--out", str(eager)]) == 0
    assert main([a for a in args if a != "--no-compile"] + ["--out", str(compiled)]) == 0
    want, got = _losses(eager), _losses(compiled)
    assert sorted(got) == sorted(want)
    for step in want:
        for key in want[step]:
            assert got[step][key] == pytest.approx(want[step][key], rel=1e-3, abs=1e-5), (step, key)


def test_a_diverging_run_stops_with_one_line_and_exports_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    # steps 1-2 are finite and checkpointed; a huge learning rate then overflows the weights
    message = _bad(TINY + ["--steps", "8", "--out", str(run), "--set", "lr=1e30", "--set", "checkpoint_every=1",
                           "--set", "lr_schedule=constant"], capsys)
    assert "the loss is not finite" in message and "nothing of this step was saved" in message, message
    diverged, = _records(run, "diverged")
    steps = [s for s, _ in list_checkpoints(run)]
    assert steps and max(steps) < diverged["step"]          # only checkpoints from before it
    # strict JSON (jq, JSON.parse): the losses that are not finite are null, not Python's bare NaN
    strict = [json.loads(line, parse_constant=pytest.fail) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert None in [value for record in strict if record["kind"] == "diverged" for value in _flat(record)]
    assert f"step_{max(steps):07d}.pt" in message
    assert not (run / "generator.pt").exists()
    for _, path in list_checkpoints(run):
        state = torch.load(path, weights_only=True)["models"]["generator"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_step_that_leaves_weights_not_finite_saves_and_exports_nothing(tmp_path, capsys, monkeypatch):
    """The loss is computed before the update, so a finite loss can come with weights that are not:
    the step is caught before a checkpoint or generator.pt could carry them on."""
    from nfinpaint import train as train_module  # noqa: PLC0415

    step_of = train_module.Trainer.train_step
    calls = []

    def poisoned(self, real, mask, stage):
        out = step_of(self, real, mask, stage)
        calls.append(stage)
        if len(calls) == 3:      # an update that overflows one weight of a discriminator
            weight = next(self.local_d.parameters()).data
            weight[(0,) * weight.dim()] = float("inf")
        return out

    monkeypatch.setattr(train_module.Trainer, "train_step", poisoned)
    run = tmp_path / "run"
    message = _bad(TINY + ["--steps", "6", "--out", str(run), "--set", "checkpoint_every=1"], capsys)
    assert "at step 3" in message and "the weights are not finite after its update" in message, message
    assert [s for s, _ in list_checkpoints(run)] == [1, 2] and "step_0000002.pt" in message
    assert not (run / "generator.pt").exists()


@pytest.mark.parametrize("value", ["1e39", "-1e39"])
def test_a_setting_beyond_float32_is_refused(tmp_path, capsys, value):
    message = _bad(TINY + ["--steps", "1", "--out", str(tmp_path / "run"), "--set", f"lr={value}"], capsys)
    assert "lr must be a finite number (within float32's range" in message
    assert not (tmp_path / "run").exists()


def test_resuming_from_an_older_checkpoint_starts_a_new_branch(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "6", "--out", str(run), "--set", "checkpoint_every=2"]) == 0
    assert [s for s, _ in list_checkpoints(run)] == [4, 6]
    stale = run / "checkpoints" / ".step_0000008.x1y2.pt.tmp.pt"   # a checkpoint write killed by kill -9
    stale.write_bytes(b"half")
    capsys.readouterr()
    assert main(["--resume", str(run / "checkpoints" / "step_0000004.pt"), "--steps", "5", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "a new branch starts here" in err and "removed" in err and not stale.exists()
    assert [s for s, _ in list_checkpoints(run)] == [4, 5]
    aside, = (run / "abandoned").iterdir()
    assert sorted(p.name for p in aside.iterdir()) == ["generator.pt", "metrics.jsonl", "step_0000006.pt"]
    # the run now continues the new branch (from step 5), not the abandoned step 6
    assert main(["--resume", str(run), "--steps", "6", "--quiet"]) == 0
    assert [r["step"] for r in _records(run, "resume")] == [4, 5]
    assert sorted(r["step"] for r in _records(run)) == [1, 2, 3, 4, 5, 6]


def test_a_run_directory_is_taken_by_one_process(tmp_path):
    from nfinpaint.run_dir import RunLock

    first = RunLock(tmp_path / "run", new=True)
    with pytest.raises(ConfigError, match="in use by another training"):
        RunLock(tmp_path / "run", new=False)
    first.release()
    RunLock(tmp_path / "run", new=False).release()      # free again once the first let go
    (tmp_path / "run" / "generator.pt").write_text("")  # (config.toml, metrics.jsonl, samples/ alone: a run
    with pytest.raises(ConfigError, match="written by another run"):   # stopped before its first checkpoint)
        RunLock(tmp_path / "run", new=True)


def test_a_checkpoint_with_a_retired_key_resumes(tmp_path, capsys):
    """Checkpoints of older versions hold num_workers (crops are now cut in batches): it is dropped,
    as in config files, and the run goes on from it."""
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    (_, path), = list_checkpoints(run)
    payload = torch.load(path, weights_only=True)
    payload["config"]["num_workers"] = 4
    torch.save(payload, path)
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--quiet"]) == 0, capsys.readouterr().err
    assert [r["step"] for r in _records(run, "resume")] == [2]
    assert "num_workers" not in (run / "config.toml").read_text()


def test_a_run_that_stopped_before_its_first_checkpoint_is_replaced_not_a_dead_end(tmp_path, capsys):
    """kill -9, out of memory or a full disk before the first checkpoint (every 200 steps by default) left
    config.toml, metrics.jsonl and samples/: --out refused the folder as not empty ("continue it with
    --resume"), and --resume refused it as holding no checkpoint."""
    import shutil

    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    shutil.rmtree(run / "checkpoints")                  # what such a stop leaves: no checkpoint, no export
    (run / "generator.pt").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".step_0000002.x1y2.pt.tmp.pt").write_bytes(b"PK")     # a write it killed
    capsys.readouterr()
    message = _bad(["--resume", str(run)], capsys)
    assert "stopped before its first one" in message and f"--out {run}" in message, message
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    assert "note: replacing" in capsys.readouterr().err
    assert [r["kind"] for r in _records(run, "start")] == ["start"] and list_checkpoints(run)
    assert not (run / "checkpoints" / ".step_0000002.x1y2.pt.tmp.pt").exists()
    # a folder that holds anything else, at its top or in its folders, or a checkpoint, is not replaced
    (run / "generator.pt").unlink()
    shutil.rmtree(run / "checkpoints")
    for mine in (run / "notes.txt", run / "samples" / "notes.txt", run / "checkpoints" / "best.pt"):
        mine.parent.mkdir(exist_ok=True)
        mine.write_text("mine")
        assert "already exists and is not empty" in _bad(TINY + ["--steps", "2", "--out", str(run)], capsys)
        assert mine.exists()
        mine.unlink()
    # a folder no run wrote is not offered to --resume, which would only refuse it next
    holiday = tmp_path / "holiday"
    holiday.mkdir()
    (holiday / "beach.jpg").write_bytes(b"x")
    message = _bad(TINY + ["--steps", "2", "--out", str(holiday)], capsys)
    assert "no training run's folder" in message and "--resume" not in message, message


def test_a_resume_at_its_checkpoints_step_does_not_validate_it_again(tmp_path, capsys):
    """A finished run resumed with no steps left (or one whose export failed after its last checkpoint)
    validated that step again: two val records of one step in metrics.jsonl."""
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    first = _records(run, "val")
    capsys.readouterr()
    assert main(["--resume", str(run), "--quiet"]) == 0
    assert _records(run, "val") == first and [r["step"] for r in first] == [0, 2]
    assert f"val_psnr_hole {first[-1]['val_psnr_hole']:.2f}" in capsys.readouterr().err
    assert _records(run, "end")[-1]["val_psnr_hole"] == first[-1]["val_psnr_hole"]


def test_a_resume_that_compiles_where_the_run_did_not_says_it_is_not_bit_for_bit(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    (_, path), = list_checkpoints(run)
    payload = torch.load(path, weights_only=True)
    assert payload["compiled"] is False
    payload["compiled"] = True          # as a run on a GPU, or with compile=always, saved it
    torch.save(payload, path)
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert "note: the run's step was compiled, now it is not: it continues, but not bit for bit" in \
        capsys.readouterr().err


def test_the_precision_that_ran_is_recorded_and_a_resume_in_another_says_so(tmp_path, capsys):
    """amp = "auto" chooses bf16 or fp32 by the machine, and only the console said which: config.toml
    says "auto", and a resume on a machine that chose the other went on in it without a word."""
    from nfinpaint.devices import autocast_dtype  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator  # noqa: PLC0415

    run = tmp_path / "run"
    assert main(TINY + ["--steps", "2", "--out", str(run)]) == 0
    ran = "bf16" if autocast_dtype(load_config(None, run / "config.toml").amp, torch.device("cpu")) else "fp32"
    (_, path), = list_checkpoints(run)
    payload = torch.load(path, weights_only=True)
    assert payload["precision"] == ran == _records(run, "start")[0]["precision"]
    assert load_generator(run / "generator.pt")[1]["precision"] == ran
    payload["precision"] = other = {"bf16": "fp32", "fp32": "bf16"}[ran]     # as another machine saved it
    torch.save(payload, path)
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert f"note: the run trained in {other}, now in {ran}" in capsys.readouterr().err


def test_a_checkpoint_from_before_the_weight_average_resumes(tmp_path, capsys):
    """A checkpoint written before ema_decay, generator, l2_form and lr_schedule existed (a paper-era
    run: no generator_ema) was refused for lacking the EMA that TrainConfig's default asks for; a resume
    reads such keys as training did before them (config.PAPER_METHOD)."""
    from nfinpaint.config import PAPER_METHOD

    run = tmp_path / "run"
    assert main(TINY + ["--preset", "paper", "--steps", "2", "--out", str(run)]) == 0
    (_, path), = list_checkpoints(run)
    payload = torch.load(path, weights_only=True)
    assert "generator_ema" not in payload["models"]
    for key in PAPER_METHOD:
        payload["config"].pop(key)
    torch.save(payload, path)
    capsys.readouterr()
    assert main(["--resume", str(run), "--steps", "3", "--quiet"]) == 0, capsys.readouterr().err
    assert [r["step"] for r in _records(run, "resume")] == [2]


@pytest.mark.parametrize("kind", ["oserror", "torch", "torch, quota"])
def test_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, capsys, monkeypatch, kind):
    """No space left while a checkpoint is written: one line that says so, no half-written file.
    torch.save's zip writer reports ENOSPC as a RuntimeError that has lost the errno ("torch"); the file
    is then written again through Python's own file, which raises it (files.save_torch): over a disk
    quota the file system is far from full, and the run ended in a traceback ("torch, quota")."""
    import errno
    import io
    import shutil

    from nfinpaint import checkpoint, files

    real_save = torch.save

    def full_disk_save(obj, path, *args, **kwargs):
        if isinstance(path, io.BytesIO):
            return real_save(obj, path, *args, **kwargs)
        Path(path).write_bytes(b"partial")
        if kind == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 109568 vs 109464")

    def no_space_write(path, data):
        path.write_bytes(b"partial")
        raise OSError(errno.EDQUOT if kind == "torch, quota" else errno.ENOSPC, "no space")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    monkeypatch.setattr(files, "_write_bytes", no_space_write)
    if kind == "torch":
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(files.shutil, "disk_usage", lambda p: usage._replace(free=0))
    run = tmp_path / "run"
    message = _bad(TINY + ["--steps", "2", "--out", str(run)], capsys)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert message.startswith("error: disk full: no space left on the device writing ") and "step_0000002.pt" \
        in message, message
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not list_checkpoints(run)


def test_a_full_disk_after_a_checkpoint_says_to_resume(tmp_path, capsys, monkeypatch):
    """A later checkpoint meets the full disk: the line says how this run goes on (--resume), and the
    earlier checkpoint it names resumes."""
    import errno  # noqa: PLC0415

    from nfinpaint import checkpoint  # noqa: PLC0415

    real_save, saved = checkpoint.save_torch, []

    def full_on_the_second(obj, path):
        saved.append(path)
        if len(saved) >= 2:
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, path)

    monkeypatch.setattr(checkpoint, "save_torch", full_on_the_second)
    run = tmp_path / "run"
    message = _bad(TINY + ["--steps", "3", "--out", str(run), "--set", "checkpoint_every=1"], capsys)
    assert message.startswith("error: disk full") and f"run again with --resume {run}" in message, message
    assert "(from its checkpoint of step 1)" in message, message
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    assert main(["--resume", str(run), "--quiet"]) == 0
    assert [r["step"] for r in _records(run, "resume")] == [1]


def test_validation_crops_come_from_every_validation_picture(tmp_path, monkeypatch):
    """val_batches batches were the split's first crops, grouped by picture: the fullres preset
    validated on two of the corpus's four validation photographs."""
    from nfinpaint import train as train_module  # noqa: PLC0415

    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]
    for folder, pictures in (("train", [(128, 128, 128)] * 2), ("val", colours)):
        (tmp_path / folder).mkdir()
        for k, colour in enumerate(pictures):
            Image.fromarray(np.full((48, 48, 3), colour, np.uint8)).save(tmp_path / folder / f"{k}.png")
    seen = []
    validate = train_module.Trainer.validate

    def recording(self, batches):        # the crops of the batches validate reads (val_batches = 1)
        seen.append([tuple(int(v) for v in (crop[:, 0, 0] * 255).round()) for crop in next(iter(batches))[1]])
        return validate(self, batches)

    monkeypatch.setattr(train_module.Trainer, "validate", recording)
    assert main(TINY + ["--data", str(tmp_path / "train"), "--set", f"val_data={tmp_path / 'val'}", "--steps", "1",
                        "--set", "val_batches=1", "--out", str(tmp_path / "run")]) == 0
    assert len(seen) == 2 and seen[0] == seen[1]     # at steps 0 and 1, the same crops
    assert sorted(seen[0]) == sorted(colours)       # one batch of 4: a crop of each picture


@pytest.mark.parametrize("preset", ["default", "fullres"])
def test_validation_numbers_do_not_depend_on_the_batch_size(preset):
    """Random and family holes were seeded by the batch's index: the same generator on the same crops
    reported 0.5-1.9 dB apart at another batch size (a run under torchrun has a smaller one a process)."""
    from nfinpaint import distributed  # noqa: PLC0415
    from nfinpaint.train import Trainer, build_feature_net  # noqa: PLC0415

    size, seed = (16 if preset == "default" else 32), int(np.random.randint(99))
    config = load_config(preset, None, {"image_size": size, "hole_size": 6, "local_patch_size": 8,
                                        "feature_weights": "random", "compile": "never", "amp": "none",
                                        "use_custom_ops": False, "device": "cpu", "seed": seed})
    trainer = Trainer(config, build_feature_net(config), distributed.DistInfo())
    crops = torch.rand(8, 3, size, size)
    items = [int(i) for i in torch.randperm(50)[:8]]       # the crops' indices in a validation set
    whole = trainer.validate([(items, crops)])
    assert whole["val_images"] == 8 and {"val_psnr_hole_random"} <= set(whole), seed
    for size_of_batch in (2, 3):
        batches = [(items[i:i + size_of_batch], crops[i:i + size_of_batch]) for i in range(0, 8, size_of_batch)]
        assert trainer.validate(batches) == whole, (seed, size_of_batch)


def test_quiet_draws_no_bar_while_a_large_folder_is_decoded(tmp_path, capsys):
    """--quiet still drew the "decoding training images" bar for folders of 20 files or more."""
    rng = np.random.default_rng()
    (tmp_path / "imgs").mkdir()
    for k in range(30):        # 20 or more train files, after the split by file holds some out
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{k}.png")
    for quiet, out in ((False, "loud"), (True, "quiet")):
        options = [option for option in TINY if option != "--quiet" or quiet]
        assert main(options + ["--data", str(tmp_path / "imgs"), "--steps", "1", "--out", str(tmp_path / out)]) == 0
        assert ("decoding" in capsys.readouterr().err) is not quiet


def test_a_resume_that_sees_fewer_gpus_restores_the_random_states_it_has(monkeypatch):
    """One CUDA random state is saved per visible GPU; set_rng_state_all indexed GPUs that a resume with
    CUDA_VISIBLE_DEVICES=0 (or on a 1-GPU machine) does not see: IndexError."""
    from nfinpaint import checkpoint

    state = checkpoint.rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.__setitem__(device, s))
    checkpoint.set_rng_state(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])


@pytest.mark.parametrize("generator", ["residual", "fullres"])
def test_a_generator_whose_base_fill_needs_the_extension_trains_without_it_only_on_the_references(
        tmp_path, capsys, monkeypatch, generator):
    """Without the extension such a run is refused before its folder is written, and `--set use_custom_ops=false`
    trains it: the base fill's solver then runs its PyTorch reference too (it was the extension's whatever that
    setting said, and the hint ended in a traceback at the first validation; a GPU machine whose build failed
    trained nothing)."""
    from nfinpaint import _extension, initial_fill

    monkeypatch.setattr(_extension, "_load", lambda: "No module named 'nfinpaint._C' (test)")
    message = _bad(TINY + ["--steps", "1", "--out", str(tmp_path / "run"), "--set", f"generator={generator}",
                           "--set", "use_custom_ops=true"], capsys)
    assert f"the {generator} generator's base fill needs the compiled operators" in message
    assert "--set use_custom_ops=false" in message and not (tmp_path / "run").exists()
    calls = []
    monkeypatch.setattr(initial_fill, "conjugate_gradients_reference",
                        (lambda real: lambda *a, **k: calls.append(1) or real(*a, **k))(
                            initial_fill.conjugate_gradients_reference))
    assert main(TINY + ["--steps", "1", "--out", str(tmp_path / "run"), "--set", f"generator={generator}",
                              "--set", "use_custom_ops=false"]) == 0
    assert calls and (tmp_path / "run" / "generator.pt").exists()


def test_the_reference_solver_is_the_operators_steps(monkeypatch):
    """Inside reference_solver() the compiled operator is never called, and the fill is the tensor steps'."""
    from nfinpaint import _extension, initial_fill

    g = torch.Generator().manual_seed(int(torch.randint(1 << 30, ())))
    image = torch.rand(2, 3, 70, 90, generator=g)
    mask = (torch.rand(2, 1, 70, 90, generator=g) < 0.3).float()

    def no_operator(device=None):
        raise AssertionError("the compiled operator was asked for")

    monkeypatch.setattr(_extension, "require", no_operator)
    with initial_fill.reference_solver():
        reference = initial_fill.multiscale_biharmonic_fill(image * (1 - mask), mask)
    monkeypatch.undo()
    compiled = initial_fill.multiscale_biharmonic_fill(image * (1 - mask), mask)
    torch.testing.assert_close(reference, compiled, atol=1e-4, rtol=0)


def test_a_joint_step_with_cell_logits_and_a_faster_discriminator():
    """adv_form = "cells" and d_lr: each optimiser takes its own learning rate, both discriminators'
    weights move in the discriminator update and the generator's in its own, every loss finite."""
    from nfinpaint import distributed  # noqa: PLC0415
    from nfinpaint.config import load_config  # noqa: PLC0415
    from nfinpaint.train import Trainer, build_feature_net  # noqa: PLC0415

    config = load_config("fullres", None, {"image_size": 64, "hole_size": 20, "local_patch_size": 32,
                                           "feature_weights": "random", "compile": "never", "amp": "none",
                                           "use_custom_ops": False, "device": "cpu", "batch_size": 2,
                                           "adv_form": "cells", "lr": 1e-4, "d_lr": 3e-4, "steps": 10})
    trainer = Trainer(config, build_feature_net(config), distributed.DistInfo())
    trainer.set_lr(5)
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(config.lr_at(5))
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(3 * config.lr_at(5))
    models = {name: trainer.models[name] for name in ("generator", "global_d", "local_d")}   # not the average
    before = {name: [p.detach().clone() for p in model.parameters()] for name, model in models.items()}
    real = torch.rand(2, 3, 64, 64)
    out = trainer.train_step(real, trainer.train_masks(0, 2), "joint")
    assert {"loss_d", "adv_global", "adv_local", "l2"} <= set(out)
    assert all(bool(torch.isfinite(v)) for v in out.values()), out
    for name, model in models.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], model.parameters())), name
