"""One command that checks a CUDA GPU machine end to end and writes one Markdown report.

    python benchmarks/gpu_report.py        # from the repository root: $OUT/gpu-report.md where $OUT is set

Steps, most telling first (time on a GPU machine may be short): each timed, with
its own time limit, and its exit status and output go into the report, which is
rewritten after every step, so a step that hangs or a run cut short keeps
what the earlier steps measured:

1. build: ``pip install --no-build-isolation --no-deps .`` with ``NFINPAINT_FORCE_CUDA=1``
   (``--no-build`` skips it when the installed package is current).  ``--no-deps``: a GPU
   machine brings its own torch, often not the version pyproject pins (the H200 image here
   had torch 2.11), and has no package index to fetch the pinned one from; the extension is
   built against the torch that will load it, and the report's header names its version;
2. CUDA vs CPU agreement of every custom op (forward and gradient) and of the
   PatchMatch field, each against a stated limit (:data:`LIMITS`,
   :data:`MIN_SAME_FIELD`): the step fails when any is exceeded; and the
   device-to-device copy bandwidth (the bytes-moved bound the GB/s columns are
   a fraction of);
3. ``pytest tests -m gpu`` (the GPU tests alone, listed);
4. ``pytest benchmarks -s`` (without the CPU-only ``bench_fullres`` and ``bench_data``):
   fused ops vs eager and compiled references with
   GB/s (CUDA rows), Triton Gram vs the compiled bmm reference at N=64, C=256,
   CUDA vs CPU PatchMatch on 1024x1024, compiled channels-last step vs eager
   (bf16 on the GPU);
5. a short GPU training run of the default preset, in a fresh folder per run
   (``gpu-report-runs/<time>-<random>/`` next to the report: ``train`` refuses
   a non-empty ``--out``, so a fixed folder failed every run after the first);
6. ``pytest tests`` (everything; the ``gpu``-marked tests run since a GPU is
   visible).

A step over its limit (``--timeout-scale`` scales them all) is killed with its
whole process group and reported as TIMEOUT.  ``--budget SECONDS`` caps the whole run: each
step's limit is cut to what is left, and a step that would start with less than
:data:`MIN_STEP_SECONDS` left is reported as "not run (budget)"; it counts from the
process's start (importing torch included).  SIGTERM ends the running step (its process group) with
this process, and the report says so.  ``--only KEYS`` runs a
subset, by the keys in :data:`STEP_KEYS` (e.g. ``--only build,agreement,gpu-tests``), in the
order above.  The header lists the Python packages the package needs that the machine lacks
(``scripts/device_session.py`` carries them as wheels).  Exit status: 0 when every step
passed, 1 otherwise.  Without a CUDA GPU it refuses at once (exit status 2) and
writes nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STARTED = time.monotonic()   # --budget counts from here: importing torch and reading the GPU take time too
ROOT = Path(__file__).resolve().parents[1]
NO_GPU = ("gpu_report: no CUDA GPU is visible (torch.cuda.is_available() is False); "
          "this command checks a GPU machine and has nothing to measure here")


@dataclass
class Step:
    name: str
    command: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    output: str = ""
    timeout: float = 600.0  # seconds; the step is killed after this
    timed_out: bool = False
    key: str = ""           # what --only selects it by (STEP_KEYS)
    skipped: bool = False   # not started: the --budget was spent


def fresh_run_dir(parent: Path) -> Path:
    """A new empty folder for this run's outputs under ``parent`` (created)."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=parent))


STEP_KEYS = ("build", "agreement", "gpu-tests", "benchmarks", "train", "tests")
MIN_STEP_SECONDS = 20.0   # under --budget, a step with less left than this is not started
CPU_ONLY_BENCHMARKS = ("bench_fullres.py", "bench_data.py")


def plan(python: str, run_dir: Path, build: bool, timeout_scale: float = 1.0,
         only: tuple[str, ...] = STEP_KEYS) -> list[Step]:
    """The steps, in order; ``run_dir`` is this run's own (fresh) output folder."""
    steps = [
        Step("build (CPU + CUDA operators)",
             [python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-v", "."], timeout=1200,
             key="build"),
        Step("CUDA vs CPU agreement, copy bandwidth", [python, str(Path(__file__).resolve()), "--agreement"],
             timeout=300, key="agreement"),
        Step("pytest tests -m gpu", [python, "-m", "pytest", "tests", "-m", "gpu", "-q", "-rA"], timeout=900,
             key="gpu-tests"),
        # bench_fullres and bench_data time the CPU alone (2 threads, as a user's laptop): minutes of a
        # short lease that tell nothing about the GPU
        Step("pytest benchmarks (CUDA rows)", [python, "-m", "pytest", "benchmarks", "-s", "-q",
                                               *(f"--ignore=benchmarks/{name}" for name in CPU_ONLY_BENCHMARKS)],
             timeout=900, key="benchmarks"),
        Step("training run, default preset, 300 steps on the GPU",
             [python, "-m", "nfinpaint.train", "--feature-weights", "random", "--steps", "300",
              "--device", "cuda", "--out", str(run_dir / "train-default")], timeout=600, key="train"),
        Step("pytest tests (all, GPU tests included)", [python, "-m", "pytest", "tests", "-q"], timeout=1800,
             key="tests"),
    ]
    steps = [s for s in steps if s.key in only and (build or s.key != "build")]
    for step in steps:
        step.timeout *= timeout_scale
    return steps


def parse_only(text: str) -> tuple[str, ...]:
    """--only's comma-separated keys, checked against STEP_KEYS."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in STEP_KEYS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"--only takes keys among {', '.join(STEP_KEYS)}, got {text!r}")
    return keys


def run_step(step: Step, env: dict, log: Path | None = None) -> Step:
    """Run one step with its time limit.  Output goes to a file, not a pipe: a child
    that outlives a killed step (a compile worker) would keep a pipe open and block the
    read.  On timeout the step's whole process group is killed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") if log is None \
            else open(log, "w+", encoding="utf-8", errors="replace") as out:
        proc = subprocess.Popen(step.command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            step.returncode = proc.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            step.timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            step.returncode = proc.wait()
        except BaseException:
            # this process stopped (SIGTERM, Ctrl-C): its step, in a session of its own, would outlive it
            os.killpg(proc.pid, signal.SIGKILL)
            step.returncode, step.seconds = proc.wait(), time.perf_counter() - start
            out.seek(0)     # what it printed shows where it was (e.g. the op an agreement check hung on)
            step.output = out.read() + ("\n[gpu_report] stopped from outside (SIGTERM or Ctrl-C): "
                                        "the step was killed with it\n")
            raise
        else:
            # A step that passed may leave children in its group: end them too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        step.seconds = time.perf_counter() - start
        out.seek(0)
        step.output = out.read()
    if step.timed_out:
        step.output += f"\n[gpu_report] killed after {step.timeout:.0f} s (the step's time limit)\n"
    return step


def tables(output: str) -> str:
    """The Markdown tables and their headings a step printed (benchmarks print tables)."""
    keep = [line for line in output.splitlines() if line.startswith(("|", "#"))]
    return "\n".join(keep)


def render(steps: list[Step], header: list[tuple[str, str]], tail_lines: int = 40) -> str:
    lines = ["# nfinpaint GPU report", ""]
    lines += [f"- **{key}**: {value}" for key, value in header]
    lines += ["", "| step | result | seconds |", "| --- | --- | ---: |"]
    for s in steps:
        if s.timed_out:
            result = f"TIMEOUT (killed after {s.timeout:.0f} s)"
        elif s.skipped:
            result = "not run (budget)"
        else:
            result = ("not run" if s.returncode is None
                      else "ok" if s.returncode == 0 else f"FAILED (exit {s.returncode})")
        lines.append(f"| {s.name} | {result} | {s.seconds:.1f} |")
    for s in steps:
        lines += ["", f"## {s.name}", "", f"`{' '.join(s.command)}`", ""]
        found = tables(s.output)
        if found:
            lines += [found, ""]
        tail = "\n".join(s.output.rstrip().splitlines()[-tail_lines:])
        lines += ["<details><summary>output (last lines)</summary>", "", "```", tail, "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _max_err(a, b) -> tuple[float, float]:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    abs_err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = b.abs().max().item() or 1.0
    return abs_err, abs_err / scale


# Largest allowed (max |CUDA - CPU|) / max |CPU| per (op kind, dtype, output kind).
# C++/CUDA: elementwise outputs round alike (no FMA contraction on either side), so
# an fp32 gradient may differ by an ulp at most and a bf16 one by one bf16 rounding;
# losses are float32 sums in another order (the GPU tests' rtol).  Triton vs the CPU
# reference: fp32 dots run as tf32x3 (the GPU tests' 1e-4); bf16 gradients are
# stored in bf16.
LIMITS = {
    ("C++/CUDA", "float32", "composite"): 1e-6,
    ("C++/CUDA", "float32", "loss"): 1e-5,
    ("C++/CUDA", "float32", "gradient"): 1e-6,
    ("C++/CUDA", "bfloat16", "composite"): 8e-3,
    ("C++/CUDA", "bfloat16", "loss"): 1e-5,
    ("C++/CUDA", "bfloat16", "gradient"): 8e-3,
    ("C++/CUDA", "float32", "fill"): 1e-5,    # biharmonic_cg: its float64 dot products add in another order
    ("Triton", "float32", "loss"): 1e-4,
    ("Triton", "float32", "gradient"): 1e-4,
    ("Triton", "bfloat16", "loss"): 1e-4,
    ("Triton", "bfloat16", "gradient"): 2e-2,
}
# PatchMatch runs the same per-pixel code with counter-based random numbers: the
# fields should be identical; allow one pixel in a thousand.
MIN_SAME_FIELD = 0.999


@dataclass
class Measurement:
    op: str
    kind: str  # "C++/CUDA" or "Triton": which LIMITS row applies
    dtype: str
    output: str  # "composite", "loss" or "gradient"
    abs_err: float
    rel_err: float

    @property
    def limit(self) -> float:
        return LIMITS[(self.kind, self.dtype, self.output)]

    @property
    def ok(self) -> bool:
        return self.rel_err <= self.limit  # NaN fails


def agreement_table(measurements: list[Measurement], same_field: float) -> tuple[str, bool]:
    """Markdown of the agreement figures against their limits, and whether all pass."""
    rows = ["| op | dtype | output | max abs diff | max diff / max value | limit | result |",
            "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for m in measurements:
        rows.append(f"| {m.op} ({m.kind}) | {m.dtype} | {m.output} | {m.abs_err:.3g} | {m.rel_err:.3g} | "
                    f"{m.limit:.0e} | {'ok' if m.ok else 'FAIL'} |")
    field_ok = same_field >= MIN_SAME_FIELD
    rows += ["", "| PatchMatch NNF 256x256, seed 3 | fraction of pixels with the same match on CUDA and CPU "
                 "| limit | result |",
             "| --- | ---: | ---: | --- |",
             f"| nnf | {same_field:.6f} | >= {MIN_SAME_FIELD} | {'ok' if field_ok else 'FAIL'} |"]
    ok = field_ok and all(m.ok for m in measurements)
    return "\n".join(rows), ok


def measure_agreement() -> tuple[list[Measurement], float]:
    """CUDA vs CPU results of every custom op (forward and gradient), and the fraction
    of PatchMatch pixels with the same match on both."""
    import torch  # noqa: PLC0415

    from nfinpaint import ops, patchmatch  # noqa: PLC0415
    from nfinpaint.kernels import feature_distance as triton_fd, gram  # noqa: PLC0415

    gen = torch.Generator().manual_seed(0)
    found = []

    def started(what):
        """A line before each op: a step killed in a hang names the op it hung in."""
        print(f"[agreement] {what} ...", flush=True)

    def record(name, kind, dtype, pairs):
        for what, a, b in pairs:
            found.append(Measurement(name, kind, str(dtype)[6:], what, *_max_err(a, b)))

    def both(fn, *args):
        """fn's elementwise output (None for a loss-only op), loss and gradient wrt args[0] on the CPU
        and on CUDA."""
        res = []
        for dev in ("cpu", "cuda"):
            x = args[0].to(dev).detach().requires_grad_()
            out = fn(x, *(a.to(dev) if torch.is_tensor(a) else a for a in args[1:]))
            elementwise, loss = out if isinstance(out, tuple) else (None, out)
            (g,) = torch.autograd.grad(loss.sum(), x)
            res.append((None if elementwise is None else elementwise.detach(), loss, g))
        return res

    for dtype in (torch.float32, torch.bfloat16):
        g, t = (torch.rand(64, 3, 64, 64, generator=gen).to(dtype) for _ in range(2))
        m = (torch.rand(64, 1, 64, 64, generator=gen) > 0.5).to(dtype)
        f, r = (torch.randn(64, 256, 16, 16, generator=gen).to(dtype) for _ in range(2))
        w = torch.rand(64, 1, 16, 16, generator=gen).to(dtype)
        cases = [("composite_l2", lambda x, t, m: ops.composite_l2(x, t, m, "per_sample"), (g, t, m)),
                 ("feature_distance", lambda x, r, w: ops.feature_distance(x, r, w, "per_sample"), (f, r, w))]
        for name, fn, args in cases:
            started(f"{name} (C++/CUDA), {dtype}")
            (ec, lc, gc), (eg, lg, gg) = both(fn, *args)
            composite = (("composite", eg, ec),) if ec is not None else ()
            record(name, "C++/CUDA", dtype, (*composite, ("loss", lg, lc), ("gradient", gg, gc)))
        # Triton on CUDA against the CPU reference (the CPU has no compiled Triton path).
        fr, rr = (torch.randn(64, 256, 6, 6, generator=gen).to(dtype) for _ in range(2))
        for name, fn, ref in (("gram_distance", gram.gram_distance, gram.gram_distance_reference),
                              ("feature_distance", triton_fd.feature_distance, ops.feature_distance_reference)):
            started(f"{name} (Triton), {dtype}")
            x = fr.cuda().requires_grad_()
            out = fn(x, rr.cuda(), reduction="per_sample")
            (gx,) = torch.autograd.grad(out.sum(), x)
            xc = fr.clone().requires_grad_()
            rc = ref(xc, rr, reduction="per_sample")
            (gc,) = torch.autograd.grad(rc.sum(), xc)
            record(name, "Triton", dtype, (("loss", out, rc), ("gradient", gx, gc)))
    # The base fill's solver: 32 steps on random windows with a ~quarter of the pixels in holes.
    start = torch.rand(8, 3, 96, 128, generator=gen)
    hole = (torch.rand(8, 1, 96, 128, generator=gen) > 0.75).float()
    started("biharmonic_cg (C++/CUDA)")
    record("biharmonic_cg", "C++/CUDA", torch.float32,
           (("fill", torch.ops.nfinpaint.biharmonic_cg(start.cuda(), hole.cuda(), 32),
             torch.ops.nfinpaint.biharmonic_cg(start, hole, 32)),))
    # PatchMatch: same seed, same field on both backends (shared per-pixel code, counter-based RNG).
    img = torch.rand(3, 256, 256, generator=gen)
    src = torch.rand(3, 256, 256, generator=gen)
    started("PatchMatch NNF")
    cpu_field, _ = patchmatch.nnf(img, src, seed=3)
    gpu_field, _ = patchmatch.nnf(img.cuda(), src.cuda(), seed=3)
    same = (cpu_field == gpu_field.cpu()).all(-1).float().mean().item()
    return found, same


def copy_bandwidth() -> str:
    """The bytes-moved bound: a device-to-device copy of 1 GiB (read + write)."""
    import torch  # noqa: PLC0415

    src_buf = torch.empty(2**28, dtype=torch.float32, device="cuda")
    dst_buf = torch.empty_like(src_buf)
    dst_buf.copy_(src_buf)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst_buf.copy_(src_buf)
    end.record()
    torch.cuda.synchronize()
    gbps = 10 * 2 * src_buf.numel() * 4 / (start.elapsed_time(end) / 1e3) / 1e9
    return (f"Device-to-device copy bandwidth (read + write): **{gbps:.0f} GB/s** "
            f"({torch.cuda.get_device_name()})")


def agreement() -> int:
    """Step 2, in its own process: print the agreement tables (and the copy bandwidth);
    exit status 1 when any figure is beyond its limit."""
    table, ok = agreement_table(*measure_agreement())
    print(table, flush=True)  # before the bandwidth: a failure there keeps the table
    print("\n" + copy_bandwidth())
    if not ok:
        print("\nCUDA and CPU disagree beyond the stated limits (rows marked FAIL)", file=sys.stderr)
    return 0 if ok else 1


def header_facts() -> list[tuple[str, str]]:
    import torch  # noqa: PLC0415

    try:
        gpu = torch.cuda.get_device_name()
    except Exception as exc:  # noqa: BLE001  (the build needs no GPU: the steps still run and say more)
        gpu = f"unreadable ({exc!r:.200})"
    facts = [("date", datetime.datetime.now().isoformat(timespec="seconds")),
             ("GPU", gpu), ("Python", sys.version.split()[0]),
             ("torch", torch.__version__), ("CUDA (torch)", str(torch.version.cuda)),
             ("triton", _version_of("triton"))]
    missing = missing_modules()
    if missing:
        facts.append(("MISSING Python packages", ", ".join(missing) + " (carry them as wheels: "
                      "scripts/device_session.py prepare)"))
    return facts


# The runtime imports of pyproject's dependencies (torch, torchvision and triton come with a GPU machine).
RUNTIME_MODULES = {"numpy": "numpy", "PIL": "pillow", "skimage": "scikit-image", "scipy": "scipy", "tqdm": "tqdm",
                   "tomli_w": "tomli-w"}


def missing_modules() -> list[str]:
    """The distributions of :data:`RUNTIME_MODULES` that do not import here."""
    import importlib.util  # noqa: PLC0415

    return [dist for module, dist in RUNTIME_MODULES.items() if importlib.util.find_spec(module) is None]


def _version_of(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # on a lent machine, what is written under $OUT comes back: there by default, else the repository root
    default_out = Path(os.environ["OUT"]) / "gpu-report.md" if os.environ.get("OUT") else ROOT / "gpu-report.md"
    parser.add_argument("--out", type=Path, default=default_out,
                        help="Markdown report to write (default: $OUT/gpu-report.md where $OUT is set, as on a "
                             "lent GPU machine, whose $OUT comes back; else gpu-report.md in the repository root)")
    parser.add_argument("--no-build", action="store_true", help="skip `pip install .`")
    parser.add_argument("--timeout-scale", type=float, default=1.0,
                        help="multiply every step's time limit by this (default 1)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="cap on the whole run's time: each step's limit is cut to what is left (a GPU "
                             "lease is short: start with the most telling steps)")
    parser.add_argument("--only", type=parse_only, default=STEP_KEYS, metavar="KEYS",
                        help=f"comma-separated steps to run, among {','.join(STEP_KEYS)} (default: all)")
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)  # step 2, in its own process
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    if args.agreement:
        return agreement()
    env = dict(os.environ, NFINPAINT_FORCE_CUDA="1", NFI_BENCH_GRAM_SIZES="6,16,64")
    env.pop("TRITON_INTERPRET", None)
    run_dir = fresh_run_dir(args.out.resolve().parent / "gpu-report-runs")
    deadline = None if args.budget is None else STARTED + args.budget
    steps = plan(sys.executable, run_dir, build=not args.no_build, timeout_scale=args.timeout_scale,
                 only=args.only)
    header = header_facts() + [("outputs and step logs", str(run_dir))]
    if deadline is not None:
        header.append(("budget", f"{args.budget:.0f} s for all steps"))
    args.out.write_text(render(steps, header))
    for i, step in enumerate(steps):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left < MIN_STEP_SECONDS:
                step.skipped = True
                continue
            step.timeout = min(step.timeout, left)
        print(f"[gpu_report] {step.name} (limit {step.timeout:.0f} s) ...", flush=True)
        try:
            run_step(step, env, log=run_dir / f"step{i + 1}.log")
        finally:
            args.out.write_text(render(steps, header))  # after every step: a later hang keeps this
    args.out.write_text(render(steps, header))
    print(f"wrote {args.out}")
    return 0 if all(s.returncode == 0 and not s.timed_out and not s.skipped for s in steps) else 1


if __name__ == "__main__":
    # SIGTERM (scripts/device_session.py at its deadline) ends the running step with this process, and
    # the report says so
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
