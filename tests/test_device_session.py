"""scripts/device_session.py: the parts that decide a GPU lease's training leg, checked without a GPU.

The leg's step count comes from its own metrics (steps per second between the
last two train records), a leg past its deadline is asked to stop (SIGTERM, so
train saves) and killed only when it does not, and the training folder is
made of links to the carried photographs.
"""
import importlib.util
import signal
import json
import os
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
    # links another copy of the repository left, live or dangling, are made this copy's
    other = tmp_path / "other"
    for source, dangling in zip(session.TRAIN_FOLDERS, (False, True)):
        link = folder / Path(source).name
        link.unlink()
        (other / source).mkdir(parents=True, exist_ok=True)
        link.symlink_to(other / source, target_is_directory=True)
        if dangling:
            (other / source).rmdir()
    session.training_folder(tmp_path / "scratch")
    assert all((folder / Path(s).name).resolve() == (tmp_path / s).resolve() for s in session.TRAIN_FOLDERS)


def test_help_says_what_each_part_does():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "prepare" in out and "run" in out and "8 files" in out


# ----------------------------------------------------------------------------- a whole run, on fakes

# A repository whose gpu_report, train and evaluate are fakes, each behaving as FAKE_REPORT, FAKE_TRAIN and
# FAKE_EVAL say: the run's own logic (deadlines, notes, returned files) on the CPU in seconds.
FAKE_REPORT = '''import os, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
mode = os.environ.get("FAKE_REPORT", "ok")
print("session.md before the report:", (out.parent / "session.md").exists(), flush=True)
print("only:", sys.argv[sys.argv.index("--only") + 1], flush=True)
if mode == "nocuda":
    print("gpu_report: no CUDA GPU is visible", file=sys.stderr)
    sys.exit(2)
runs = out.parent / "gpu-report-runs" / "20260101-000000-x"
runs.mkdir(parents=True)
(runs / "step1.log").write_text("compiled\\n")
agreement = "FAILED (exit 1)" if mode in ("disagree", "nobuild") else "ok"
build = "FAILED (exit 1)" if mode == "nobuild" else "ok"
out.write_text(f"| build (CPU + CUDA operators) | {build} | 1.0 |\\n"
               f"| CUDA vs CPU agreement, copy bandwidth | {agreement} | 1.0 |\\n| pytest tests -m gpu | ok | 1.0 |\\n")
if mode == "hang":
    time.sleep(60)
sys.exit(1)
'''
FAKE_TRAIN = '''import json, os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1] if name in args else None
mode = os.environ.get("FAKE_TRAIN", "ok")
print("train", *args, flush=True)
if mode == "crash":
    sys.exit("Traceback: CUDA error: an illegal memory access")
run = Path(opt("--out") or opt("--resume"))
run.mkdir(parents=True, exist_ok=True)
step = int((run / "step").read_text()) if (run / "step").exists() else 0
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
t0 = time.monotonic()
warmup = int(os.environ.get("FAKE_WARMUP", "50"))   # discriminator-only steps: 100 a second, joint ones 50
with open(run / "metrics.jsonl", "a") as f:
    while step < int(opt("--steps")) and not stop:
        stage = "discriminator" if step < warmup else "joint"
        time.sleep(0.05 if stage == "discriminator" else 0.1)
        step += 5
        f.write(json.dumps({"kind": "train", "step": step, "stage": stage,
                            "elapsed_s": time.monotonic() - t0}) + "\\n")
        f.flush()
    if mode == "torn":
        f.write('{"kind": "train", "st')
(run / "step").write_text(str(step))
(run / "generator.pt").write_bytes(b"weights")
sys.exit(130 if stop else 0)
'''
FAKE_EVALUATE = '''import os, sys, time
from pathlib import Path
args = sys.argv[1:]
print("generator.pt back before the evaluation:", (Path(os.environ["OUT"]) / "generator.pt").exists())
if os.environ.get("FAKE_EVAL") == "slow":
    time.sleep(60)
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True)
(out / "results.md").write_text("| gan | 30.0 |\\n")
'''


@pytest.fixture
def fake_repo(session, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for path, text in {"benchmarks/gpu_report.py": FAKE_REPORT, "nfinpaint/__init__.py": "",
                       "nfinpaint/train.py": FAKE_TRAIN, "nfinpaint/evaluate.py": FAKE_EVALUATE}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for folder in (*session.TRAIN_FOLDERS, session.VAL_FOLDER):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.png").write_bytes(b"x")
    monkeypatch.setattr(session, "ROOT", root)
    monkeypatch.setattr(session, "WHEELS", root / ".whl")           # not carried: none installed
    for name, seconds in (("SAVE_SECONDS", 1), ("REPORT_MARGIN", 2), ("EVAL_MIN_SECONDS", 1), ("LEG_END_MARGIN", 1),
                          ("SEND_EVERY", 1)):
        monkeypatch.setattr(session, name, seconds)
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    for name in ("FAKE_REPORT", "FAKE_TRAIN", "FAKE_EVAL", "FAKE_WARMUP"):
        monkeypatch.delenv(name, raising=False)
    return root


def run_session(session, tmp_path, seconds=10, calibrate=1.5, extra=()):
    """``run`` on the fakes within ``seconds``: (exit status, wall seconds, session.md, $OUT's files)."""
    start = time.monotonic()
    code = session.main(["run", "--seconds", str(seconds), "--calibrate-seconds", str(calibrate), "--val-seconds", "3",
                         "--scratch", str(tmp_path / "scratch"), "--device", "cpu", *extra])
    out = Path(os.environ["OUT"])
    text = (out / "session.md").read_text() if (out / "session.md").exists() else ""
    return code, time.monotonic() - start, text, sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def test_a_whole_run_returns_at_most_8_small_files(session, fake_repo, tmp_path):
    code, wall, text, files = run_session(session, tmp_path)     # no .whl/: the scratch folder is made anyway
    assert code == 0 and wall < 10 + 5, text
    assert files == sorted(["gpu-report.md", "gpu-report-logs.txt", "session.md", "generator.pt", "metrics.jsonl",
                            "train.log", "val-leg.md", "val-shipped.md"])
    assert all((tmp_path / "out" / f).stat().st_size < 16 * 2 ** 20 for f in files)
    assert "build ok" in text and "resuming to" in text and "val-shipped.md: evaluate exit 0" in text
    assert "use_custom_ops" not in (tmp_path / "out" / "train.log").read_text()
    # the leg's files go back as soon as it stops: a command cut short in the evaluations still returns them
    log = (tmp_path / "out" / "train.log").read_text()
    assert "generator.pt back before the evaluation: True" in log and "False" not in log
    # session.md was there before gpu_report started: a kill during it still leaves a note
    assert "session.md before the report: True" in (tmp_path / "out" / "gpu-report-logs.txt").read_text()
    assert "only: build,agreement,gpu-tests\n" in (tmp_path / "out" / "gpu-report-logs.txt").read_text()


def test_report_steps_reach_gpu_report(session, fake_repo, tmp_path):
    code, _, text, _ = run_session(session, tmp_path, extra=["--report-steps", "build,gpu-tests,benchmarks"])
    assert code == 0, text
    assert "only: build,gpu-tests,benchmarks\n" in (tmp_path / "out" / "gpu-report-logs.txt").read_text()


def test_no_cuda_says_why_and_skips_the_leg(session, fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_REPORT", "nocuda")
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 1 and wall < 10
    assert "no CUDA GPU is visible" in text and "no training leg: the operators were not built" in text
    assert "no CUDA GPU is visible" in (tmp_path / "out" / "gpu-report-logs.txt").read_text()


def test_a_hanging_report_is_stopped_within_the_run(session, fake_repo, tmp_path, monkeypatch):
    # gpu_report past its budget and margin is stopped; what is left is too short for a leg
    monkeypatch.setenv("FAKE_REPORT", "hang")
    code, wall, text, files = run_session(session, tmp_path, seconds=6)
    assert wall < 6 + 5, text
    assert "build ok" in text and "no training leg:" in text and "s left" in text
    assert "gpu-report.md" in files and "gpu-report-runs" not in files


def test_a_torn_metrics_line_or_a_crash_still_returns_the_leg(session, fake_repo, tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"kind": "train", "step": 5, "elapsed_s": 1.0}\n{"kind": "train", "step": 15, '
                       '"elapsed_s": 2.0}\n{"kind": "train", "st')      # a kill in the middle of a write
    assert session.steps_per_second(metrics) == (15, 10.0)
    monkeypatch.setenv("FAKE_TRAIN", "torn")
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 0 and wall < 10 + 5 and "generator.pt" in files and "train.log" in files, text
    monkeypatch.setenv("FAKE_TRAIN", "crash")
    monkeypatch.setenv("OUT", str(tmp_path / "out2"))                  # the device empties $OUT for each command
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 1 and "calibration: exit 1; (last step, steps/s) = None" in text
    assert "val-leg.md: not run (no generator.pt)" in text
    assert "illegal memory access" in (tmp_path / "out2" / "train.log").read_text()


def test_an_uncarried_training_folder_skips_the_leg(session, fake_repo, tmp_path):
    import shutil

    shutil.rmtree(fake_repo / session.TRAIN_FOLDERS[0])
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 1 and f"no training leg: not carried: {session.TRAIN_FOLDERS[0]}" in text
    assert "no carried wheels" in text


def test_out_that_cannot_be_written_still_runs_and_prints(session, fake_repo, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("OUT", str(tmp_path / "file" / "out"))        # cannot be made
    code, wall, text, files = run_session(session, tmp_path)
    printed = capsys.readouterr().out
    assert code == 0 and "cannot be written" in printed and "resuming to" in printed


def test_prepare_refuses_stale_wheels_and_counts_untracked_files(session, tmp_path, monkeypatch):
    real_run = subprocess.run
    monkeypatch.setattr(session, "ROOT", tmp_path)
    monkeypatch.setattr(session, "WHEELS", tmp_path / ".whl")
    monkeypatch.setattr(session.subprocess, "run", lambda cmd, **kw: real_run(cmd, **kw) if cmd[0] == "git" else
                        subprocess.CompletedProcess(cmd, 0))            # pip download: the wheels are there
    for folder in (*session.TRAIN_FOLDERS, session.VAL_FOLDER):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "a.png").write_bytes(b"x")
    (tmp_path / ".whl").mkdir()
    for name in ("tomli_w-1.2.0-py3-none-any.whl", "setuptools-80.9.0-py3-none-any.whl"):
        (tmp_path / ".whl" / name).write_bytes(b"w")
    real_run(["git", "init", "-q", str(tmp_path)], check=True)
    assert session.prepare() == 0
    # an untracked file git does not ignore travels too
    (tmp_path / "big.bin").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(session, "CARRY_LIMIT", 4096)
    assert session.prepare() == 2
    (tmp_path / "big.bin").unlink()
    # another setuptools beside the one named: both would be installed, and pip refuses two versions
    (tmp_path / ".whl" / "setuptools-82.0.0-py3-none-any.whl").write_bytes(b"w")
    assert session.stale_wheels() == [tmp_path / ".whl" / "setuptools-82.0.0-py3-none-any.whl"]
    assert session.prepare() == 2


def test_calibration_measures_the_joint_steps(session, fake_repo, tmp_path, monkeypatch):
    # the leg's 100 discriminator-only steps run several times faster than its joint ones: a calibration
    # that ends among them sized the schedule several times too long (seen on the CPU: 1225 steps planned,
    # 107 run), so the leg was stopped early in its cosine schedule
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in (
        {"kind": "train", "step": 50, "stage": "discriminator", "elapsed_s": 1.0},
        {"kind": "train", "step": 100, "stage": "discriminator", "elapsed_s": 2.0},
        {"kind": "train", "step": 125, "stage": "joint", "elapsed_s": 4.0})))
    assert session.steps_per_second(metrics) == (125, 12.5)
    assert session.steps_per_second(metrics, "joint") is None
    with open(metrics, "a") as f:
        f.write(json.dumps({"kind": "train", "step": 150, "stage": "joint", "elapsed_s": 6.0}) + "\n")
    assert session.steps_per_second(metrics, "joint") == (150, 12.5)
    monkeypatch.setenv("FAKE_WARMUP", "150")        # 1.5 s of warm-up, longer than the calibration's 0.5 s
    code, wall, text, files = run_session(session, tmp_path, calibrate=0.5)
    line = next(line for line in text.splitlines() if "calibration:" in line)
    step, rate = eval(line.split(" = ")[1])
    assert step > 150 and 30 < rate < 70, line                      # the joint steps' 50 a second
    assert code == 0 and wall < 10 + 5 and "resuming to" in text


def test_a_failed_build_trains_on_the_references(session, fake_repo, tmp_path, monkeypatch):
    """A build that failed on the machine (its own torch, its compiler) trained nothing: the fullres base fill
    needed the compiled solver.  use_custom_ops=false now covers the solver too, and the lease still trains."""
    monkeypatch.setenv("FAKE_REPORT", "nobuild")
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 0 and "build FAILED or not run" in text and "the operators were not built" in text, text
    assert "--set use_custom_ops=false --data" in (tmp_path / "out" / "train.log").read_text()
    assert "generator.pt" in files


def test_a_failed_agreement_trains_on_the_references(session, fake_repo, tmp_path, monkeypatch):
    # CUDA ops beyond their limits give wrong losses and gradients: a leg trained on them would be wasted
    monkeypatch.setenv("FAKE_REPORT", "disagree")
    code, wall, text, files = run_session(session, tmp_path)
    assert code == 0 and "CUDA vs CPU agreement FAILED or not run" in text and "use_custom_ops=false" in text
    log = (tmp_path / "out" / "train.log").read_text()
    assert "--set use_custom_ops=false --data" in log                       # the first run; --resume keeps it


def test_the_rows_read_are_gpu_reports(session, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_report", SCRIPT.parents[1] / "benchmarks" / "gpu_report.py")
    report = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_report", report)
    spec.loader.exec_module(report)
    steps = report.plan("python", tmp_path, build=True, only=("build", "agreement"))
    for step in steps:
        step.returncode = 0
    text = report.render(steps, [])
    assert session.BUILD_OK in text and session.AGREEMENT_OK in text


def test_evaluations_that_overrun_are_stopped_at_the_deadline(session, fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EVAL", "slow")
    code, wall, text, files = run_session(session, tmp_path, seconds=8)
    assert wall < 8 + 5 and "val-leg.md: evaluate exit -15" in text and "val-shipped.md: evaluate exit -15" in text
    assert code == 0 and "generator.pt" in files and "val-leg.md" not in files


def test_the_leg_trains_the_shipped_generator_as_it_runs(session):
    """The leg starts from the shipped generator: its window statistics and base-fill steps must be the
    file's (a leg trained otherwise learns to correct inputs the file never gives it), so shipping a
    generator that runs otherwise fails here until the leg follows."""
    from nfinpaint import generator_io

    shipped = generator_io.open_generator(None)
    if shipped is None:
        pytest.skip("this installation ships no generator")
    settings = dict(session.LEG[i + 1].split("=", 1) for i, a in enumerate(session.LEG) if a == "--set")
    assert session.LEG[session.LEG.index("--init-generator") + 1] == "shipped"
    assert settings["window_stats"] == shipped.generator.stats
    assert int(settings["base_iterations"]) == shipped.generator.base_iterations


def test_a_run_stopped_by_its_commands_limit_returns_what_the_leg_left(session, fake_repo, tmp_path):
    """SIGTERM (the command's limit, which a slow start of the machine brings before --seconds) ended the
    script at once: the resumed leg's generator stayed in the scratch folder, $OUT kept calibration's,
    and session.md did not say why."""
    import threading

    def unhandled(signum, frame):        # a run without its own handler fails here, not the whole pytest
        raise AssertionError("the run installed no SIGTERM handler")

    before = signal.signal(signal.SIGTERM, unhandled)
    timer = threading.Timer(6.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code, wall, text, files = run_session(session, tmp_path, seconds=40)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
    assert code == 124 and wall < 6 + session.STOP_GRACE + 5, text
    assert "resuming to" in text and "stopped by SIGTERM" in text and "generator.pt" in files, text
    calibrated = int(text.split("(last step, steps/s) = (")[1].split(",")[0])
    records = [json.loads(line) for line in (Path(os.environ["OUT"]) / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] > calibrated       # the resumed leg's, sent back after the stop


def test_by_default_the_leg_gets_the_evaluations_time(session, fake_repo, tmp_path):
    """The two evaluations took ~95 s of a 560 s command on the GPU machine, and only their results.md came
    back (what ship_generator --eval cannot use): by default the leg trains until the deadline."""
    start = time.monotonic()
    code = session.main(["run", "--seconds", "10", "--calibrate-seconds", "1.5", "--scratch", str(tmp_path / "scratch"),
                         "--device", "cpu"])
    out = Path(os.environ["OUT"])
    text = (out / "session.md").read_text()
    assert code == 0 and time.monotonic() - start < 10 + 5, text
    assert "no evaluation there (--val-seconds 0)" in text and not list(out.glob("val-*.md"))
    assert {"generator.pt", "metrics.jsonl", "train.log"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("leg, said", [(["--set", "lr=5e-5", "--seconds", "300"], "put --seconds before --leg"),
                                       (["--steps", "5"], "the script sets --steps"),
                                       (["--out=x"], "the script sets --steps, --out")])
def test_leg_options_are_checked_before_anything_runs(session, fake_repo, tmp_path, leg, said):
    """--leg takes every option after it: `run --leg --set lr=5e-5 --seconds 300` handed --seconds to
    training, which refused it after the GPU checks had used ~100 s; --steps and --out were overridden."""
    code = session.main(["run", "--seconds", "10", "--scratch", str(tmp_path / "scratch"), "--device", "cpu",
                         "--leg", *leg])
    text = (Path(os.environ["OUT"]) / "session.md").read_text()
    assert code == 2 and f"stopped before the checks: " in text and said in text, text
    assert "gpu_report" not in text


def test_a_leg_option_training_refuses_is_found_in_seconds(session):
    problem = session.leg_problem(["--set", "no_such_setting=1"])
    assert problem is not None and "no_such_setting" in problem
    assert session.leg_problem(["--set", "lr=5e-5"]) is None
