"""One command that checks a CUDA GPU machine end to end and writes one Markdown report.

    python benchmarks/gpu_report.py --out gpu-report.md        # from the repository root

Steps (each timed; its exit status and output go into the report):

1. build: ``pip install --no-build-isolation .`` with ``NFINPAINT_FORCE_CUDA=1``
   (``--no-build`` skips it when the installed package is current);
2. ``pytest tests`` (everything; the ``gpu``-marked tests run since a GPU is
   visible), then ``pytest tests -m gpu`` alone for a list of the GPU tests;
3. ``pytest benchmarks -s``: fused ops vs eager and compiled references with
   GB/s (CUDA rows), Triton Gram vs the compiled bmm reference at N=64, C=256,
   CUDA vs CPU PatchMatch on 1024x1024, compiled channels-last step vs eager
   (bf16 on the GPU);
4. a short GPU training run of the default preset;
5. CUDA vs CPU agreement of every custom op and of the PatchMatch field, and
   the device-to-device copy bandwidth (the bytes-moved bound the GB/s columns
   are a fraction of).

Without a CUDA GPU it refuses at once (exit status 2) and writes nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def plan(python: str, out_dir: Path, build: bool) -> list[Step]:
    steps = []
    if build:
        steps.append(Step("build (CPU + CUDA operators)",
                          [python, "-m", "pip", "install", "--no-build-isolation", "-v", "."]))
    steps += [
        Step("pytest tests (all, GPU tests included)", [python, "-m", "pytest", "tests", "-q"]),
        Step("pytest tests -m gpu", [python, "-m", "pytest", "tests", "-m", "gpu", "-q", "-rA"]),
        Step("pytest benchmarks (CUDA rows)", [python, "-m", "pytest", "benchmarks", "-s", "-q"]),
        Step("training run, default preset, 300 steps on the GPU",
             [python, "-m", "nfinpaint.train", "--feature-weights", "random", "--steps", "300",
              "--device", "cuda", "--out", str(out_dir / "train-default")]),
        Step("CUDA vs CPU agreement, copy bandwidth", [python, str(Path(__file__).resolve()), "--agreement"]),
    ]
    return steps


def run_step(step: Step, env: dict) -> Step:
    start = time.perf_counter()
    proc = subprocess.run(step.command, cwd=ROOT, env=env, capture_output=True, text=True)
    step.seconds = time.perf_counter() - start
    step.returncode = proc.returncode
    step.output = proc.stdout + (("\n" + proc.stderr) if proc.stderr.strip() else "")
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
        result = "not run" if s.returncode is None else ("ok" if s.returncode == 0 else f"FAILED (exit {s.returncode})")
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


def agreement() -> str:
    """Markdown: CUDA vs CPU results of every custom op (forward and gradient), the
    PatchMatch field, and the measured device copy bandwidth."""
    import torch  # noqa: PLC0415

    from nfinpaint import ops, patchmatch  # noqa: PLC0415
    from nfinpaint.kernels import feature_distance as triton_fd, gram  # noqa: PLC0415

    gen = torch.Generator().manual_seed(0)
    rows = ["| op | dtype | output | max abs diff | max diff / max value |", "| --- | --- | --- | ---: | ---: |"]

    def both(fn, *args):
        """fn's outputs and gradient wrt args[0] on the CPU and on CUDA."""
        res = []
        for dev in ("cpu", "cuda"):
            x = args[0].to(dev).detach().requires_grad_()
            out = fn(x, *(a.to(dev) if torch.is_tensor(a) else a for a in args[1:]))
            loss = out if not isinstance(out, tuple) else out[1]
            (g,) = torch.autograd.grad(loss.sum(), x)
            res.append((out if not isinstance(out, tuple) else out[1], g))
        return res

    for dtype in (torch.float32, torch.bfloat16):
        g, t = (torch.rand(64, 3, 64, 64, generator=gen).to(dtype) for _ in range(2))
        m = (torch.rand(64, 1, 64, 64, generator=gen) > 0.5).to(dtype)
        f, r = (torch.randn(64, 256, 16, 16, generator=gen).to(dtype) for _ in range(2))
        w = torch.rand(64, 1, 16, 16, generator=gen).to(dtype)
        cases = [("composite_l2 (C++/CUDA)", lambda x, t, m: ops.composite_l2(x, t, m, "per_sample"), (g, t, m)),
                 ("feature_distance (C++/CUDA)", lambda x, r, w: ops.feature_distance(x, r, w, "per_sample"), (f, r, w))]
        for name, fn, args in cases:
            (lc, gc), (lg, gg) = both(fn, *args)
            for what, a, b in (("loss", lg, lc), ("gradient", gg, gc)):
                rows.append(f"| {name} | {str(dtype)[6:]} | {what} | {_max_err(a, b)[0]:.3g} | {_max_err(a, b)[1]:.3g} |")
        # Triton on CUDA against the CPU reference (the CPU has no compiled Triton path).
        fr, rr = (torch.randn(64, 256, 6, 6, generator=gen).to(dtype) for _ in range(2))
        for name, fn, ref in (("gram_distance (Triton)", gram.gram_distance, gram.gram_distance_reference),
                              ("feature_distance (Triton)", triton_fd.feature_distance, ops.feature_distance_reference)):
            x = fr.cuda().requires_grad_()
            out = fn(x, rr.cuda(), reduction="per_sample")
            (gx,) = torch.autograd.grad(out.sum(), x)
            xc = fr.clone().requires_grad_()
            rc = ref(xc, rr, reduction="per_sample")
            (gc,) = torch.autograd.grad(rc.sum(), xc)
            for what, a, b in (("loss vs CPU reference", out, rc), ("gradient vs CPU reference", gx, gc)):
                rows.append(f"| {name} | {str(dtype)[6:]} | {what} | {_max_err(a, b)[0]:.3g} | {_max_err(a, b)[1]:.3g} |")
    # PatchMatch: same seed, same field on both backends (shared per-pixel code, counter-based RNG).
    img = torch.rand(3, 256, 256, generator=gen)
    src = torch.rand(3, 256, 256, generator=gen)
    cpu_field, _ = patchmatch.nnf(img, src, seed=3)
    gpu_field, _ = patchmatch.nnf(img.cuda(), src.cuda(), seed=3)
    same = (cpu_field == gpu_field.cpu()).all(-1).float().mean().item()
    rows += ["", "| PatchMatch NNF 256x256, seed 3 | fraction of pixels with the same match on CUDA and CPU |",
             "| --- | ---: |", f"| nnf | {same:.6f} |"]
    # The bytes-moved bound: a device-to-device copy of 1 GiB (read + write).
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
    rows += ["", f"Device-to-device copy bandwidth (read + write): **{gbps:.0f} GB/s** "
             f"({torch.cuda.get_device_name()})"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-report.md", help="Markdown report to write")
    parser.add_argument("--no-build", action="store_true", help="skip `pip install .`")
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)  # step 5, in its own process
    args = parser.parse_args(argv)
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    if args.agreement:
        print(agreement())
        return 0
    env = dict(os.environ, NFINPAINT_FORCE_CUDA="1", NFI_BENCH_GRAM_SIZES="6,16,64")
    env.pop("TRITON_INTERPRET", None)
    out_dir = args.out.resolve().parent / "gpu-report-runs"
    steps = [run_step(s, env) for s in plan(sys.executable, out_dir, build=not args.no_build)]
    header = [("date", datetime.datetime.now().isoformat(timespec="seconds")),
              ("GPU", torch.cuda.get_device_name()), ("torch", torch.__version__),
              ("CUDA (torch)", str(torch.version.cuda))]
    args.out.write_text(render(steps, header))
    print(f"wrote {args.out}")
    return 0 if all(s.returncode == 0 for s in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
