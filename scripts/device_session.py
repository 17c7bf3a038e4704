#!/usr/bin/env python3
"""One GPU lease, one command: check the CUDA build, then train a leg on the GPU.

A lent GPU machine gives a session about 15 minutes in all and 10 a command; it
runs its own image's Python and torch (torch 2.11 and triton 3.6 on the H200
image seen here, not pyproject's pins), reaches no package index, and sends back
at most 8 files of 16 MiB.  This script fits the work to that:

    python scripts/device_session.py prepare      # here, once: wheels into .whl/, prints the call
    python3 scripts/device_session.py run         # there, as the device's command (timeout_s 600)

``prepare`` downloads the pure-Python wheels such a machine lacks (tomli-w; a
setuptools that reads pyproject's SPDX licence field), checks that the training
photographs are here (``scripts/build_photo_corpus.py`` fetches them) and prints
the paths to carry and the command.

``run``, within ``--seconds`` (default 560):

1. installs the carried wheels into a folder on PYTHONPATH;
2. ``benchmarks/gpu_report.py --only build,agreement,gpu-tests`` within
   ``--check-seconds``: the build against the machine's torch, CUDA against
   CPU for every op, the GPU tests (correctness before speed);
3. a training leg on the GPU until the deadline (skipped when the build
   failed): the recipe of the shipped generator's 256-px leg (its lead for
   large holes, docs/training.md) from the shipped generator, on the training
   photographs, validated on the validation ones.  The cosine schedule needs
   the step count up front, so the leg first runs ``--calibrate-seconds`` and
   is stopped (SIGTERM: a checkpoint), its steps per second read from its
   metrics, then resumed with the steps that fit before the deadline;
4. in the last ``--val-seconds``, a first reading: ``evaluate``'s full-size protocol
   (512 px, 3 masks a family, the learned fill only) on the validation photographs,
   for the leg's generator and for the shipped one;
5. writes into ``$OUT``: gpu-report.md, gpu-report-logs.txt, generator.pt
   (the leg's EMA generator, ~7 MB), metrics.jsonl, train.log, val-leg.md,
   val-shipped.md, session.md.

What comes back is judged here as every leg is: on the validation photographs
through ``python -m nfinpaint.evaluate`` (docs/training.md's rule), never on
the test or mate photographs, which are not sent.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
WHEEL_SPECS = ("tomli-w==1.2.0", "setuptools==80.9.0")   # setuptools < 82: torch 2.11's own pin
TRAIN_FOLDERS = ("data/corpus/photos/train", "data/corpus/opencv")
VAL_FOLDER = "data/corpus/photos/val"
CARRY = (".whl", *TRAIN_FOLDERS, VAL_FOLDER)
CARRY_LIMIT = 64 * 2 ** 20           # what travels: the working tree and the carried paths
RETURN_LIMIT = 16 * 2 ** 20          # one file back from $OUT
SAVE_SECONDS = 40                    # a stopped leg's checkpoint and generator export
# The shipped generator's 256-px leg (docs/training.md, "Larger training crops"); the batch is the
# GPU's: four times the CPU's 8 crops a step.
LEG = ["--preset", "fullres", "--feature-weights", "rotation", "--init-generator", "shipped",
       "--no-compile", "--batch-size", "32",
       "--set", "lr=1e-4", "--set", "g_warmup_steps=0", "--set", "d_warmup_steps=100",
       "--set", "image_size=256", "--set", "hole_size=96", "--set", "local_patch_size=128",
       "--set", "checkpoint_every=100000", "--set", "val_every=1000", "--set", "sample_every=100000",
       "--set", f"val_data={VAL_FOLDER}"]


# ----------------------------------------------------------------------------- prepare (here)

def prepare() -> int:
    missing = [f for f in (*TRAIN_FOLDERS, VAL_FOLDER) if not any((ROOT / f).glob("*"))]
    if missing:
        print(f"error: no photographs in {', '.join(missing)}: run python scripts/build_photo_corpus.py",
              file=sys.stderr)
        return 2
    WHEELS.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "-d", str(WHEELS), *WHEEL_SPECS])
    if proc.returncode != 0:
        print("error: pip could not download the wheels (no package index here?)", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for c in CARRY for p in (ROOT / c).rglob("*") if p.is_file())
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout
    size += sum((ROOT / f).stat().st_size for f in tracked.split("\0") if f and (ROOT / f).is_file())
    if size > CARRY_LIMIT:
        print(f"error: {size / 2**20:.1f} MiB would travel, over the device's {CARRY_LIMIT // 2**20} MiB",
              file=sys.stderr)
        return 2
    print(f"ready: {size / 2**20:.1f} MiB travel. On the device (timeout_s 600):\n"
          f"  command: python3 scripts/device_session.py run\n"
          f"  carry:   {json.dumps(list(CARRY))}")
    return 0


# ----------------------------------------------------------------------------- run (there)

def steps_per_second(metrics: Path) -> tuple[int, float] | None:
    """(last logged step, steps/s between the last two train records) of a run's metrics.jsonl; None
    before two records.  From the records' own steps and clocks: start-up and validation outside."""
    records = [json.loads(line) for line in (metrics.read_text().splitlines() if metrics.exists() else [])]
    train = [r for r in records if r.get("kind") == "train"]
    if len(train) < 2 or train[-1]["elapsed_s"] <= train[-2]["elapsed_s"]:
        return None
    a, b = train[-2], train[-1]
    return int(b["step"]), (b["step"] - a["step"]) / (b["elapsed_s"] - a["elapsed_s"])


def steps_that_fit(done: int, rate: float, seconds: float) -> int:
    """The total step count for a resumed leg: what ``rate`` steps/s make in ``seconds``, past ``done``
    (a resume restarts the process and reloads the data: 90% of the time is counted)."""
    return done + max(1, int(rate * max(seconds, 0) * 0.9))


def run_until(command: list[str], env: dict, log, deadline: float, grace: float | None = None) -> int:
    """Run ``command``; at ``deadline`` ask it to stop (SIGTERM: train saves and exports), and kill it
    ``grace`` seconds later (default SAVE_SECONDS).  Returns its exit status."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=SAVE_SECONDS if grace is None else grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def copy_capped(src: Path, dst: Path) -> None:
    """``src`` to ``dst``, keeping its last RETURN_LIMIT bytes (a log's end says the most)."""
    data = src.read_bytes() if src.exists() else b""
    dst.write_bytes(data[-(RETURN_LIMIT - 1024):])


def install_wheels(env: dict, site: Path) -> str:
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return "no carried wheels (.whl/): none installed"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)],
                          capture_output=True, text=True)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return f"wheels {', '.join(w.name for w in wheels)}: exit {proc.returncode} {proc.stderr[-500:]}"


def training_folder(scratch: Path) -> Path:
    """One --data folder of links to the training sources (the corpus's train_all, made here: carried
    links would point at nothing)."""
    folder = scratch / "train_all"
    folder.mkdir(parents=True, exist_ok=True)
    for source in TRAIN_FOLDERS:
        link = folder / Path(source).name
        if not link.exists():
            link.symlink_to(ROOT / source, target_is_directory=True)
    return folder


def run(args) -> int:
    start = time.monotonic()
    deadline = start + args.seconds
    out = Path(os.environ.get("OUT") or args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    notes = [f"# device session ({time.strftime('%Y-%m-%d %H:%M:%S')})", "",
             f"- {install_wheels(env, scratch / 'site')}"]

    def note(line: str) -> None:
        notes.append(f"- [{time.monotonic() - start:5.0f} s] {line}")
        (out / "session.md").write_text("\n".join(notes) + "\n")

    built = True
    if not args.no_report:
        report = out / "gpu-report.md"
        budget = min(args.check_seconds, deadline - time.monotonic() - 60)
        code = subprocess.run([sys.executable, "benchmarks/gpu_report.py", "--out", str(report),
                               "--only", "build,agreement,gpu-tests", "--budget", f"{budget:.0f}"],
                              cwd=ROOT, env=env).returncode
        logs = sorted((report.parent / "gpu-report-runs").glob("*/step*.log"))
        with open(scratch / "gpu-report-logs.txt", "wb") as merged:
            for log in logs:
                merged.write(f"\n===== {log} =====\n".encode() + log.read_bytes())
        copy_capped(scratch / "gpu-report-logs.txt", out / "gpu-report-logs.txt")
        shutil.rmtree(report.parent / "gpu-report-runs", ignore_errors=True)   # 8 files come back, at most
        built = report.exists() and "| build (CPU + CUDA operators) | ok |" in report.read_text()
        note(f"gpu_report exit {code}; build {'ok' if built else 'FAILED or not run'}")
    if not built:
        note("no training leg: the operators were not built")
        return 1

    run_dir = scratch / "leg"
    shutil.rmtree(run_dir, ignore_errors=True)
    leg = [sys.executable, "-m", "nfinpaint.train", *LEG, "--data", str(training_folder(scratch)),
           "--device", args.device, *args.leg]
    leg_deadline = deadline - args.val_seconds       # then both generators on the validation photographs
    with open(scratch / "train.log", "w") as log:
        calibrate_until = min(time.monotonic() + args.calibrate_seconds, leg_deadline - SAVE_SECONDS)
        code = run_until([*leg, "--steps", "1000000", "--out", str(run_dir)], env, log, calibrate_until)
        measured = steps_per_second(run_dir / "metrics.jsonl")
        note(f"calibration: exit {code}; (last step, steps/s) = {measured}")
        if measured is not None and leg_deadline - time.monotonic() > 2 * SAVE_SECONDS:
            done, rate = measured
            total = steps_that_fit(done, rate, leg_deadline - SAVE_SECONDS - time.monotonic())
            note(f"resuming to {total} steps")
            code = run_until([sys.executable, "-m", "nfinpaint.train", "--resume", str(run_dir),
                              "--steps", str(total), "--device", args.device], env, log,
                             leg_deadline - SAVE_SECONDS)
            note(f"leg: exit {code}; last logged (step, steps/s) = "
                 f"{steps_per_second(run_dir / 'metrics.jsonl')}")
        # a first reading, not the decision: evaluate's full-size protocol on the validation photographs,
        # the leg's generator and the shipped one (judged again here, on the CPU, before anything ships)
        for name, checkpoint in (("val-leg.md", run_dir / "generator.pt"), ("val-shipped.md", None)):
            left = deadline - time.monotonic()
            if not (run_dir / "generator.pt").exists() or left < 15:
                break
            folder = scratch / name.removesuffix(".md")
            shutil.rmtree(folder, ignore_errors=True)
            command = [sys.executable, "-m", "nfinpaint.evaluate", "--data", VAL_FOLDER, "--size", "512",
                       "--repeats", "3", "--methods", "gan", "--device", args.device, "--no-progress",
                       "--figures", "0", "--out", str(folder)]
            code = run_until(command + ([] if checkpoint is None else ["--checkpoint", str(checkpoint)]), env, log,
                             time.monotonic() + (left if checkpoint is None else left / 2), grace=2)
            if (folder / "results.md").exists():
                shutil.copy(folder / "results.md", out / name)
            note(f"{name}: evaluate exit {code}")
    for name in ("generator.pt", "metrics.jsonl"):
        if (run_dir / name).exists() and (run_dir / name).stat().st_size <= RETURN_LIMIT:
            shutil.copy(run_dir / name, out / name)
    copy_capped(scratch / "train.log", out / "train.log")
    note(f"returned: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0 if (out / "generator.pt").exists() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="here: download the wheels, check the photographs, print the call")
    r = sub.add_parser("run", help="on the GPU machine: checks, then a training leg, all within --seconds")
    r.add_argument("--seconds", type=float, default=560, help="the whole run (default 560: a 600 s command)")
    r.add_argument("--check-seconds", type=float, default=300, help="gpu_report's budget (default 300)")
    r.add_argument("--calibrate-seconds", type=float, default=90,
                   help="the leg's first part, whose speed sets its step count (default 90)")
    r.add_argument("--val-seconds", type=float, default=60,
                   help="kept at the end to evaluate the leg's and the shipped generator on the validation "
                        "photographs (default 60)")
    r.add_argument("--out", default="device-out", help="where the files go when $OUT is not set")
    r.add_argument("--scratch", default="/tmp/nfinpaint-device", help="working folder (default %(default)s)")
    r.add_argument("--device", default="cuda", help="the leg's device (default cuda; cpu to try the script)")
    r.add_argument("--no-report", action="store_true", help="skip gpu_report (to try the leg on a CPU)")
    r.add_argument("--leg", nargs=argparse.REMAINDER, default=[],
                   help="more train options for the leg, after everything else (e.g. --leg --set lr=5e-5)")
    args = parser.parse_args(argv)
    return prepare() if args.command == "prepare" else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
