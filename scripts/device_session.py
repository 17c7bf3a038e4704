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
   CPU for every op, the GPU tests (correctness before speed); ``--report-steps``
   names others (``benchmarks`` adds the speed rows: about 4 minutes on an H200, the
   compiled training step's benchmark not finished in them).  Where the build
   failed, or the agreement is not ok, the leg trains with the PyTorch references
   of the loss operators and of the base fill's solver (``use_custom_ops=false``);
3. a training leg on the GPU until the deadline (skipped when no CUDA GPU is
   visible): the recipe of the shipped generator's 256-px leg (its lead for
   large holes, docs/training.md) from the shipped generator, on the training
   photographs, validated on the validation ones.  The cosine schedule needs
   the step count up front, so the leg first runs ``--calibrate-seconds`` (and
   on until two records of its joint steps: the discriminator-only warm-up is
   faster) and is stopped (SIGTERM: a checkpoint), its joint steps per second
   read from its metrics, then resumed with the steps that fit before the deadline;
4. with ``--val-seconds`` (default 0: none), in the last of them a first reading:
   ``evaluate``'s full-size protocol (512 px, 3 masks a family, the learned fill
   only) on the validation photographs, for the leg's generator and for the
   shipped one (the same evaluation takes ~13 s a generator on one CPU core here,
   and only its results.md would come back: the leg's steps are worth more);
5. writes into ``$OUT``: gpu-report.md, gpu-report-logs.txt, generator.pt
   (the leg's EMA generator, ~7 MB), metrics.jsonl, train.log (both also every
   ``SEND_EVERY`` seconds while the leg trains: a command killed outright still
   returns why it stopped), val-leg.md and val-shipped.md (with --val-seconds),
   session.md.

Nothing runs past ``--seconds``: gpu_report is stopped (SIGTERM, which ends its
running step) ``REPORT_MARGIN`` seconds past its budget, and the leg and the
evaluations at their deadlines.  session.md is written from the start and after
every step, each line also printed (the command's output comes back even when
``$OUT`` cannot be written); it says what ran, what failed and why: gpu_report's
last line when the build is not ok (no CUDA GPU, say), a training folder not
carried, too little time left for the leg, an error in the leg (its files still
go back).

What comes back is judged here as every leg is: on the validation photographs
through ``python -m nfinpaint.evaluate`` (docs/training.md's rule), never on
the test or mate photographs, which are not sent.  The leg trains as the shipped
file runs (each channel's own window statistics, 32 base-fill steps a level: the
legs trained so were the first from a shipped generator to gain on every hole
family, docs/training.md), so val-leg.md reads its file as it would ship.
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
LEG_END_MARGIN = 15                  # the resumed leg's schedule ends this long before the deadline
SEND_EVERY = 30                      # the leg's metrics and log copied into $OUT while it trains
# --leg's options that the script sets itself (or that would end the leg at once)
LEG_OWN_OPTIONS = ("--steps", "--out", "--resume", "--print-config", "--fine-tune")
# run's own options: after --leg, which takes everything after it, they went to training
RUN_OPTIONS = ("--seconds", "--check-seconds", "--report-steps", "--calibrate-seconds", "--val-seconds",
               "--scratch", "--device", "--no-report")
STOP_GRACE = 8                       # the same, when this script is stopped: the kill may follow soon
REPORT_MARGIN = 30                   # gpu_report past its --budget (start-up, last write) before it is stopped
EVAL_MIN_SECONDS = 15                # an evaluation is not started with less left
# gpu_report's rows for the steps the leg depends on (its step names, plan())
BUILD_OK = "| build (CPU + CUDA operators) | ok |"
AGREEMENT_OK = "| CUDA vs CPU agreement, copy bandwidth | ok |"
# The shipped generator's 256-px leg (docs/training.md, "Larger training crops"), trained as the shipped
# file runs (window statistics, base-fill steps; until 2026-12-05 it trained pooled on 8 steps, unlike the
# file it started from); the batch is the GPU's: four times the CPU's 8 crops a step.
LEG = ["--preset", "fullres", "--feature-weights", "rotation", "--init-generator", "shipped",
       "--no-compile", "--batch-size", "32",
       "--set", "lr=1e-4", "--set", "g_warmup_steps=0", "--set", "d_warmup_steps=100",
       "--set", "image_size=256", "--set", "hole_size=96", "--set", "local_patch_size=128",
       "--set", "window_stats=channel", "--set", "base_iterations=32",
       "--set", "checkpoint_every=100000", "--set", "val_every=1000", "--set", "sample_every=100000",
       "--set", f"val_data={VAL_FOLDER}"]


# ----------------------------------------------------------------------------- prepare (here)

def stale_wheels() -> list[Path]:
    """Wheels in .whl/ that WHEEL_SPECS does not name: all are installed there, and a second version of
    one stops the whole install (then no tomli-w, and the image's setuptools fails the build)."""
    wanted = tuple(spec.lower().replace("-", "_").replace("==", "-") + "-" for spec in WHEEL_SPECS)
    return [w for w in sorted(WHEELS.glob("*.whl")) if not w.name.lower().startswith(wanted)]


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
    if stale_wheels():
        print(f"error: .whl/ holds wheels that {' '.join(WHEEL_SPECS)} does not name, and every wheel there is "
              f"installed: remove {', '.join(w.name for w in stale_wheels())}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for c in CARRY for p in (ROOT / c).rglob("*") if p.is_file())
    # what travels besides the carried paths: tracked files and untracked ones git does not ignore
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    size += sum((ROOT / f).stat().st_size for f in tracked.split("\0") if f and (ROOT / f).is_file())
    if size > CARRY_LIMIT:
        print(f"error: {size / 2**20:.1f} MiB would travel, over the device's {CARRY_LIMIT // 2**20} MiB",
              file=sys.stderr)
        return 2
    print(f"ready: {size / 2**20:.1f} MiB travel. On the device (timeout_s 600):\n"
          f"  command: python3 scripts/device_session.py run\n"
          f"  carry:   {json.dumps(list(CARRY))}\n"
          f"With less than 600 s of device time left after the machine's start, the command runs under that: "
          f"pass --seconds 40 s under it.")
    return 0


# ----------------------------------------------------------------------------- run (there)

def steps_per_second(metrics: Path, stage: str | None = None) -> tuple[int, float] | None:
    """(last logged step, steps/s between the last two train records) of a run's metrics.jsonl; None
    before two records.  From the records' own steps and clocks: start-up and validation outside.
    ``stage``: of that stage's records alone (the leg's discriminator-only warm-up runs several times
    faster than its joint steps: a rate from it sizes the schedule several times too long)."""
    records = []
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:      # a line cut short by a kill
            pass
    train = [r for r in records if r.get("kind") == "train" and stage in (None, r.get("stage"))]
    if len(train) < 2 or train[-1]["elapsed_s"] <= train[-2]["elapsed_s"]:
        return None
    a, b = train[-2], train[-1]
    return int(b["step"]), (b["step"] - a["step"]) / (b["elapsed_s"] - a["elapsed_s"])


def steps_that_fit(done: int, rate: float, seconds: float) -> int:
    """The total step count for a resumed leg: what ``rate`` steps/s make in ``seconds``, past ``done``
    (a resume restarts the process and reloads the data: 90% of the time is counted)."""
    return done + max(1, int(rate * max(seconds, 0) * 0.9))


class Stopped(BaseException):      # through the leg's `except Exception`
    """SIGTERM reached this script: the command's time limit, which may come before ``--seconds`` (a
    slow or failed start of the machine leaves the command less than its 600 s)."""


def _stopped(signum, frame) -> None:
    raise Stopped


def run_until(command: list[str], env: dict, log, deadline: float, grace: float | None = None,
              stop_early=None, tick=None) -> int:
    """Run ``command``; at ``deadline``, or before it once ``stop_early()`` (asked every second) is true,
    ask it to stop (SIGTERM: train saves and exports), and kill it ``grace`` seconds later (default
    SAVE_SECONDS); ``tick()`` is called every second meanwhile.  Returns its exit status.  Stopped
    itself (:class:`Stopped`), it gives the command STOP_GRACE seconds to save first."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    polled = stop_early is not None or tick is not None
    try:
        while True:
            try:
                return proc.wait(timeout=1 if polled else max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                if tick is not None:
                    tick()
                if time.monotonic() >= deadline or (stop_early is not None and stop_early()):
                    break
    except Stopped:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)     # a second one would leave the command running
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
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
        # a link left by another copy of the repository (the scratch folder is shared) trained on its
        # photographs, or, dangling, stopped the leg: each link points at this copy's
        if link.is_symlink() and Path(os.readlink(link)) != ROOT / source:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(ROOT / source, target_is_directory=True)
    return folder


def last_line(text: str) -> str:
    """The last non-empty line of a log (what a failed command said last), at most 300 characters."""
    lines = text.strip().splitlines()
    return lines[-1][-300:] if lines else "(no output)"


def read_log(path: Path) -> str:
    """A log's text; empty when it was never written."""
    return path.read_text(errors="replace") if path.exists() else ""


def writable(folder: Path) -> bool:
    """Whether files can be written into ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "session.md").write_text("# device session: starting\n")
        return True
    except OSError:
        return False


def leg_problem(options: list[str]) -> str | None:
    """Why ``--leg``'s options cannot run, found here in seconds rather than on the GPU machine after its
    checks: an option the script sets itself, one of ``run``'s own swallowed by ``--leg`` (it takes
    everything after it), or what ``nfinpaint.train --print-config`` refuses.  None when they are fine."""
    own = [o for o in options if o.split("=")[0] in LEG_OWN_OPTIONS]
    if own:
        return f"--leg {' '.join(own)}: the script sets {', '.join(LEG_OWN_OPTIONS)} itself"
    swallowed = [o for o in options if o.split("=")[0] in RUN_OPTIONS]
    if swallowed:
        return f"--leg takes every option after it: put {' '.join(swallowed)} before --leg"
    if not options:
        return None
    proc = subprocess.run([sys.executable, "-m", "nfinpaint.train", *LEG, "--data", TRAIN_FOLDERS[0], *options,
                           "--print-config"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return None if proc.returncode == 0 else f"--leg {' '.join(options)}: {last_line(proc.stderr)}"


def run(args) -> int:
    start = time.monotonic()
    deadline = start + args.seconds
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    out = Path(os.environ.get("OUT") or args.out).resolve()
    fallback = None if writable(out) else out
    if fallback is not None:     # the steps still run: their notes reach the command's output
        out = scratch / "out"
        out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    notes = [f"# device session ({time.strftime('%Y-%m-%d %H:%M:%S')})", ""]

    def note(line: str) -> None:
        notes.append(f"- [{time.monotonic() - start:5.0f} s] {line}")
        print(notes[-1], flush=True)        # the command's output comes back even when no file does
        (out / "session.md").write_text("\n".join(notes) + "\n")

    note(f"run: within {args.seconds:.0f} s; files into {out}")
    if fallback is not None:
        note(f"$OUT ({fallback}) cannot be written: nothing comes back but this output")
    problem = leg_problem(args.leg)
    if problem is not None:
        note(f"stopped before the checks: {problem}")
        return 2
    note(install_wheels(env, scratch / "site"))

    signal.signal(signal.SIGTERM, _stopped)     # the command's limit: what the leg left still goes back
    run_dir = scratch / "leg"
    try:
        built, agreed = True, True
        if not args.no_report:
            report = out / "gpu-report.md"
            budget = min(args.check_seconds, deadline - time.monotonic() - 60)
            with open(scratch / "gpu-report-stdout.txt", "w") as log:    # its own lines: why it stopped, if it did
                code = run_until([sys.executable, "benchmarks/gpu_report.py", "--out", str(report),
                                  "--only", args.report_steps, "--budget", f"{budget:.0f}"], env, log,
                                 time.monotonic() + max(budget, 0) + REPORT_MARGIN, grace=10)
            logs = sorted((report.parent / "gpu-report-runs").glob("*/step*.log"))
            with open(scratch / "gpu-report-logs.txt", "wb") as merged:
                for log in [scratch / "gpu-report-stdout.txt", *logs]:
                    merged.write(f"\n===== {log} =====\n".encode() + log.read_bytes())
            copy_capped(scratch / "gpu-report-logs.txt", out / "gpu-report-logs.txt")
            # the first step is the build: its log's end says why it failed (gpu_report's own ends "wrote ...")
            first_step = last_line(read_log(logs[0] if logs else scratch / "gpu-report-stdout.txt"))
            shutil.rmtree(report.parent / "gpu-report-runs", ignore_errors=True)   # 8 files come back, at most
            built = report.exists() and BUILD_OK in report.read_text()
            agreed = report.exists() and AGREEMENT_OK in report.read_text()
            note(f"gpu_report exit {code}; build {'ok' if built else 'FAILED or not run'}; "
                 f"CUDA vs CPU agreement {'ok' if agreed else 'FAILED or not run'}")
            if not built:
                note(f"the build's last line: {first_step} (all of it: gpu-report-logs.txt)")
        missing = [f for f in (*TRAIN_FOLDERS, VAL_FOLDER) if not (ROOT / f).is_dir()]
        shutil.rmtree(run_dir, ignore_errors=True)      # an earlier call's, on a machine kept warm
        (scratch / "train.log").unlink(missing_ok=True)
        if not built and "no CUDA GPU is visible" in read_log(scratch / "gpu-report-stdout.txt"):
            note("no training leg: the operators were not built (no CUDA GPU is visible)")
            return 1
        if missing:
            note(f"no training leg: not carried: {', '.join(missing)}")
        elif deadline - args.val_seconds - time.monotonic() < 2 * SAVE_SECONDS + LEG_END_MARGIN:
            note(f"no training leg: {deadline - time.monotonic():.0f} s left")
        else:
            # a failed build (the image's torch, its compiler), or operators not to be trusted on this GPU: the
            # leg trains on the PyTorch references of the losses and of the base fill's solver
            references = not built or not agreed
            if references:
                note("the leg trains with the PyTorch references of the loss operators and of the base fill's "
                     f"solver (use_custom_ops=false): the operators {'were not built' if not built else 'disagree'}")
            try:
                run_leg(args, env, scratch, out, run_dir, deadline, note,
                        ["--set", "use_custom_ops=false"] if references else [])
            except Exception as exc:    # what the leg left still goes back
                note(f"the leg stopped on an error: {exc!r}")
        send_back(run_dir, scratch, out)
        note(f"returned: {', '.join(sorted(p.name for p in out.iterdir()))}")
        return 0 if (out / "generator.pt").exists() else 1
    except Stopped:
        note("stopped by SIGTERM (the command's time limit, before --seconds): returning what the leg left")
        send_back(run_dir, scratch, out)
        note(f"returned: {', '.join(sorted(p.name for p in out.iterdir()))}")
        return 124


def send_back(run_dir: Path, scratch: Path, out: Path, generator: bool = True) -> None:
    """The leg's files into ``out`` as they are now: a command stopped later still returns them
    (``generator``: generator.pt too; while the leg trains it is calibration's, sent already)."""
    for name in ("generator.pt", "metrics.jsonl") if generator else ("metrics.jsonl",):
        if (run_dir / name).exists() and (run_dir / name).stat().st_size <= RETURN_LIMIT:
            shutil.copy(run_dir / name, out / name)
    if (scratch / "train.log").exists():
        copy_capped(scratch / "train.log", out / "train.log")


def run_leg(args, env: dict, scratch: Path, out: Path, run_dir: Path, deadline: float, note,
            options: list[str]) -> None:
    """The training leg (LEG, then ``options``, then ``--leg``'s) until ``deadline - args.val_seconds``,
    then, with ``--val-seconds``, both generators on the validation photographs until ``deadline``."""
    leg = [sys.executable, "-m", "nfinpaint.train", *LEG, *options, "--data", str(training_folder(scratch)),
           "--device", args.device, *args.leg]
    leg_deadline = deadline - args.val_seconds       # then, with --val-seconds, the evaluations
    sent = [time.monotonic()]

    def send_now_and_then() -> None:    # the log and metrics back while it trains: a hard kill keeps them
        if time.monotonic() - sent[0] >= SEND_EVERY:
            sent[0] = time.monotonic()
            log.flush()
            send_back(run_dir, scratch, out, generator=False)

    with open(scratch / "train.log", "w") as log:
        # past --calibrate-seconds, on until two records of the joint steps give their rate
        calibrate_until = time.monotonic() + args.calibrate_seconds
        code = run_until([*leg, "--steps", "1000000", "--out", str(run_dir)], env, log, leg_deadline - SAVE_SECONDS,
                         stop_early=lambda: time.monotonic() >= calibrate_until
                         and steps_per_second(run_dir / "metrics.jsonl", "joint") is not None, tick=send_now_and_then)
        measured = steps_per_second(run_dir / "metrics.jsonl", "joint")
        send_back(run_dir, scratch, out)
        note(f"calibration: exit {code}; (last step, steps/s) = {measured}")
        if measured is not None and leg_deadline - time.monotonic() > 2 * SAVE_SECONDS + LEG_END_MARGIN:
            done, rate = measured
            # the schedule ends LEG_END_MARGIN before the deadline; a leg slower than measured is asked to stop
            # at the deadline and given SAVE_SECONDS - STOP_GRACE to save: inside the 40 s between --seconds'
            # 560 and the command's 600 (the evaluations, when asked for, wait no longer for it)
            total = steps_that_fit(done, rate, leg_deadline - LEG_END_MARGIN - time.monotonic())
            note(f"resuming to {total} steps")
            code = run_until([sys.executable, "-m", "nfinpaint.train", "--resume", str(run_dir),
                              "--steps", str(total), "--device", args.device], env, log,
                             leg_deadline, grace=max(1, SAVE_SECONDS - STOP_GRACE), tick=send_now_and_then)
            send_back(run_dir, scratch, out)
            note(f"leg: exit {code}; last logged (step, steps/s) = "
                 f"{steps_per_second(run_dir / 'metrics.jsonl')}")
        else:       # what comes back is calibration's generator: a constant rate, never annealed
            note(f"no resume: {'no rate measured' if measured is None else 'too little time left'} "
                 f"({leg_deadline - time.monotonic():.0f} s to the leg's end)")
        # a first reading, not the decision: evaluate's full-size protocol on the validation photographs,
        # the leg's generator and the shipped one (judged again here, on the CPU, before anything ships)
        if args.val_seconds <= 0:
            note("no evaluation there (--val-seconds 0): evaluate generator.pt here, on the validation photographs")
            return
        for name, checkpoint in (("val-leg.md", run_dir / "generator.pt"), ("val-shipped.md", None)):
            left = deadline - time.monotonic()
            if not (run_dir / "generator.pt").exists() or left < EVAL_MIN_SECONDS:
                note(f"{name}: not run ({f'{left:.0f} s left' if left < EVAL_MIN_SECONDS else 'no generator.pt'})")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="here: download the wheels, check the photographs, print the call")
    r = sub.add_parser("run", help="on the GPU machine: checks, then a training leg, all within --seconds")
    r.add_argument("--seconds", type=float, default=560, help="the whole run (default 560: a 600 s command)")
    r.add_argument("--check-seconds", type=float, default=180,
                   help="gpu_report's budget (default 180: build, agreement and GPU tests took 93 s on an H200; "
                        "a hang there costs the leg no more)")
    r.add_argument("--report-steps", default="build,agreement,gpu-tests",
                   help="gpu_report's --only: its steps, in its order (default %(default)s; without the build "
                        "the leg trains on the PyTorch references, use_custom_ops=false)")
    r.add_argument("--calibrate-seconds", type=float, default=90,
                   help="the leg's first part, whose speed sets its step count (default 90)")
    r.add_argument("--val-seconds", type=float, default=0,
                   help="kept at the end to evaluate the leg's and the shipped generator on the validation "
                        "photographs (default 0: none; the evaluation is run here afterwards, ~13 s a generator "
                        "on one CPU core, and the leg gets the time)")
    r.add_argument("--out", default="device-out", help="where the files go when $OUT is not set")
    r.add_argument("--scratch", default="/tmp/nfinpaint-device", help="working folder (default %(default)s)")
    r.add_argument("--device", default="cuda", help="the leg's device (default cuda; cpu to try the script)")
    r.add_argument("--no-report", action="store_true", help="skip gpu_report (to try the leg on a CPU)")
    r.add_argument("--leg", nargs=argparse.REMAINDER, default=[],
                   help="more train options for the leg, after everything else (e.g. --leg --set lr=5e-5); it "
                        "takes every option after it, so it comes last; checked with train's --print-config "
                        "before anything else runs")
    args = parser.parse_args(argv)
    return prepare() if args.command == "prepare" else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
