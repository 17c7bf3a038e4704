"""benchmarks/gpu_report.py: what can be checked without a GPU.

It must refuse cleanly where no GPU is visible (exit 2, nothing written), plan
every step it promises, write one Markdown report from step results (here
fake ones: the real steps need a GPU) after every step, fail its agreement step
beyond the stated limits, kill a step over its time limit, and train in a fresh
folder on every run.
"""
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_report.py"


@pytest.fixture
def report(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_report", module)  # dataclasses look their module up
    spec.loader.exec_module(module)  # main() runs only under __main__
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the command would run for real")
def test_refuses_without_gpu_and_writes_nothing(tmp_path):
    out = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--no-build"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "no CUDA GPU is visible" in proc.stderr
    assert not out.exists() and not (tmp_path / "gpu-report-runs").exists()


def test_the_report_goes_where_a_lent_machine_sends_files_back(report, monkeypatch, tmp_path):
    """On a lent GPU machine only what is written under $OUT comes back: the report went to the
    repository root by default, and a direct run brought nothing back."""
    monkeypatch.setenv("OUT", str(tmp_path))
    assert report.build_parser().parse_args([]).out == tmp_path / "gpu-report.md"
    monkeypatch.delenv("OUT")
    assert report.build_parser().parse_args([]).out == report.ROOT / "gpu-report.md"
    assert report.build_parser().parse_args(["--out", "x.md"]).out == Path("x.md")


def test_plan_covers_every_step(report, tmp_path):
    names = [" ".join(s.command) for s in report.plan("python", tmp_path, build=True)]
    # --no-deps: a GPU machine brings its own torch and has no index to fetch pyproject's pin from
    assert "pip install --no-build-isolation --no-deps" in names[0]
    assert any(c.endswith("pytest tests -q") for c in names)
    assert any("pytest tests -m gpu" in c for c in names)
    assert any("pytest benchmarks -s" in c for c in names)
    # the CPU-only benchmarks stay out of the GPU's report, by names that exist
    bench = next(s.command for s in report.plan("python", tmp_path, build=True) if "benchmarks" in s.command)
    ignored = [a.split("=", 1)[1] for a in bench if a.startswith("--ignore=")]
    assert ignored and all((SCRIPT.parents[1] / path).is_file() for path in ignored)
    assert any("nfinpaint.train" in c and "--device cuda" in c for c in names)
    assert any(c.endswith("--agreement") for c in names)
    assert not any("pip install" in " ".join(s.command) for s in report.plan("python", tmp_path, build=False))


def test_report_from_fake_step_results(report):
    ok = report.Step("pytest benchmarks (CUDA rows)", ["pytest", "benchmarks"], 0, 12.34,
                     "collected 4 items\n### Fused losses on cuda\n| op | ms |\n| --- | --- |\n| composite_l2 | 0.05 |\nnoise\n")
    bad = report.Step("pytest tests -m gpu", ["pytest", "tests", "-m", "gpu"], 1, 3.0, "E   AssertionError: boom\n")
    text = report.render([ok, bad, report.Step("never", ["x"])], [("GPU", "Fake H100")])
    assert text.startswith("# nfinpaint GPU report\n")
    assert "- **GPU**: Fake H100" in text
    assert "| pytest benchmarks (CUDA rows) | ok | 12.3 |" in text
    assert "| pytest tests -m gpu | FAILED (exit 1) | 3.0 |" in text
    assert "| never | not run | 0.0 |" in text
    # the benchmark's tables are lifted into the report as Markdown, other lines only in the log
    section = text.split("## pytest benchmarks (CUDA rows)")[1]
    assert "### Fused losses on cuda\n| op | ms |\n| --- | --- |\n| composite_l2 | 0.05 |\n" in section
    assert "E   AssertionError: boom" in text.split("## pytest tests -m gpu")[1]


def test_agreement_beyond_a_limit_fails_the_step(report, monkeypatch, capsys):
    m = report.Measurement
    good = [m("composite_l2", "C++/CUDA", "float32", "gradient", 1e-7, 1e-7),
            m("gram_distance", "Triton", "bfloat16", "loss", 1e-6, 1e-5)]
    table, ok = report.agreement_table(good, 1.0)
    assert ok and "FAIL" not in table and table.count("| ok |") == 3
    for bad_rows, same in ((good + [m("feature_distance", "C++/CUDA", "float32", "gradient", 1e-3, 2e-6)], 1.0),
                           (good + [m("feature_distance", "Triton", "float32", "loss", 0, float("nan"))], 1.0),
                           (good, 0.99)):
        table, ok = report.agreement_table(bad_rows, same)
        assert not ok and table.count("| FAIL |") == 1
    # The --agreement step's exit status follows the verdict.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(report, "copy_bandwidth", lambda: "bandwidth: n/a")
    monkeypatch.setattr(report, "measure_agreement", lambda: (bad_rows, 0.99))
    assert report.main(["--agreement"]) == 1
    assert "| nnf | 0.990000 | >= 0.999 | FAIL |" in capsys.readouterr().out
    monkeypatch.setattr(report, "measure_agreement", lambda: (good, 1.0))
    assert report.main(["--agreement"]) == 0


def test_each_run_trains_in_a_fresh_folder(report, tmp_path):
    # train refuses a non-empty --out: a fixed folder failed every run after the first.
    outs = []
    for _ in range(2):
        run_dir = report.fresh_run_dir(tmp_path / "gpu-report-runs")
        assert run_dir.is_dir() and not any(run_dir.iterdir())
        (train,) = [s for s in report.plan("python", run_dir, build=False) if "nfinpaint.train" in s.command]
        out = Path(train.command[train.command.index("--out") + 1])
        assert out.parent == run_dir and not out.exists()
        out.mkdir()  # what the training run leaves behind
        outs.append(out)
    assert outs[0] != outs[1]


def test_step_over_its_limit_is_killed_with_its_children(report, tmp_path):
    # The grandchild keeps the output open: a pipe read would wait for it to end.
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print('started', flush=True); time.sleep(120)")
    step = report.Step("hangs", [sys.executable, "-c", code], timeout=3)
    start = time.monotonic()
    report.run_step(step, dict(os.environ), log=tmp_path / "hangs.log")
    assert time.monotonic() - start < 60
    assert step.timed_out and step.returncode != 0 and "started" in step.output
    assert "TIMEOUT (killed after 3 s)" in report.render([step], [])
    quick = report.run_step(report.Step("quick", [sys.executable, "-c", "print('hi')"]), dict(os.environ))
    assert quick.returncode == 0 and not quick.timed_out and quick.output.strip() == "hi"


def test_report_is_written_after_every_step(report, monkeypatch, tmp_path):
    out = tmp_path / "report.md"
    # The second step reads the report: the first step's result must be in it already.
    check = (f"import sys; text = open({str(out)!r}).read(); "
             "sys.exit(0 if '| first | ok |' in text and '| third | not run |' in text else 3)")
    steps = [report.Step("first", [sys.executable, "-c", "print('one')"]),
             report.Step("second", [sys.executable, "-c", check]),
             report.Step("third", [sys.executable, "-c", "import time; time.sleep(120)"], timeout=2)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(report, "header_facts", lambda: [("GPU", "Fake")])
    monkeypatch.setattr(report, "plan", lambda *a, **k: steps)
    assert report.main(["--out", str(out), "--no-build"]) == 1  # the third step timed out
    text = out.read_text()
    assert "| second | ok |" in text and "| third | TIMEOUT (killed after 2 s) |" in text
    logs = sorted(p.name for p in (tmp_path / "gpu-report-runs").glob("*/step*.log"))
    assert logs == ["step1.log", "step2.log", "step3.log"]


def test_only_runs_the_chosen_steps_in_order(report, tmp_path):
    only = report.parse_only("gpu-tests,build,agreement")
    assert [s.key for s in report.plan("python", tmp_path, build=True, only=only)] == \
        ["build", "agreement", "gpu-tests"]
    assert [s.key for s in report.plan("python", tmp_path, build=False, only=only)] == ["agreement", "gpu-tests"]
    for bad in ("", "build,compile"):
        with pytest.raises(Exception, match="--only takes keys among"):
            report.parse_only(bad)


def test_budget_cuts_limits_and_skips_what_cannot_start(report, monkeypatch, tmp_path):
    out = tmp_path / "report.md"
    steps = [report.Step("sleeps", [sys.executable, "-c", "import time; time.sleep(120)"], timeout=600, key="a"),
             report.Step("never starts", [sys.executable, "-c", "print('ran')"], key="b")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(report, "header_facts", lambda: [("GPU", "Fake")])
    monkeypatch.setattr(report, "plan", lambda *a, **k: steps)
    monkeypatch.setattr(report, "MIN_STEP_SECONDS", 2.0)
    start = time.monotonic()
    assert report.main(["--out", str(out), "--no-build", "--budget", "3"]) == 1
    assert time.monotonic() - start < 60
    assert steps[0].timed_out and steps[0].timeout <= 3
    assert steps[1].skipped and steps[1].returncode is None
    text = out.read_text()
    assert "| never starts | not run (budget) |" in text and "- **budget**: 3 s for all steps" in text


def test_header_names_missing_packages(report, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tomli_w" else real(name, *a))
    assert report.missing_modules() == ["tomli-w"]


def test_budget_counts_from_the_process_start(report, monkeypatch, tmp_path):
    # importing torch and reading the GPU come out of the budget too: device_session stops gpu_report a
    # margin past it, and a budget counted from later could run the last step into that stop
    out = tmp_path / "report.md"
    steps = [report.Step("late", [sys.executable, "-c", "print('ran')"], key="a")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(report, "header_facts", lambda: [("GPU", "Fake")])
    monkeypatch.setattr(report, "plan", lambda *a, **k: steps)
    monkeypatch.setattr(report, "MIN_STEP_SECONDS", 2.0)
    monkeypatch.setattr(report, "STARTED", time.monotonic() - 100)   # 100 s of start-up
    assert report.main(["--out", str(out), "--no-build", "--budget", "101"]) == 1
    assert steps[0].skipped and "| late | not run (budget) |" in out.read_text()


def test_header_survives_an_unreadable_gpu(report, monkeypatch):
    # the build needs no GPU: a failing device query must not stop the report before its first step
    def broken(*a):
        raise RuntimeError("CUDA error: unknown error")

    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    facts = dict(report.header_facts())
    assert facts["GPU"].startswith("unreadable (RuntimeError('CUDA error: unknown error')")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the measurement would run for real")
def test_agreement_names_each_op_before_measuring_it(report, capsys):
    # the step's output is all a hang leaves: it must name the op it hung in (here the CPU stops at CUDA)
    with pytest.raises((RuntimeError, AssertionError)):
        report.measure_agreement()
    assert capsys.readouterr().out.splitlines()[-1] == "[agreement] composite_l2 (C++/CUDA), torch.float32 ..."


HANGING_GPU_TEST = '''import os, subprocess, sys, time
import pytest


@pytest.mark.gpu
def test_hangs(capsys):
    with capsys.disabled():      # as the agreement step names each op before it measures it
        print("[hang] about to hang", flush=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.environ["HANG_PIDS"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(120)
'''


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_ends_the_running_step_and_the_report_says_so(tmp_path):
    # device_session stops gpu_report with SIGTERM at its deadline: the step (pytest, in a session of its
    # own, with a child) must end too, or it keeps the GPU through the training leg; the report says why
    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / "gpu_report.py").write_text(SCRIPT.read_text())
    (root / "tests").mkdir()
    (root / "tests" / "test_hang.py").write_text(HANGING_GPU_TEST)
    script, out, pids = root / "benchmarks" / "gpu_report.py", tmp_path / "report.md", tmp_path / "pids"
    # a GPU "visible" whose name cannot be read (this machine's torch has no device to ask)
    driver = (f"import runpy, sys, torch; torch.cuda.is_available = lambda: True; "
              f"sys.argv = [{str(script)!r}, '--out', {str(out)!r}, '--no-build', '--only', 'gpu-tests']; "
              f"runpy.run_path({str(script)!r}, run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", driver], env=dict(os.environ, HANG_PIDS=str(pids)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pids.exists() and pids.read_text()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pids.exists(), proc.stdout.read() if proc.poll() is not None else "the step did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
    step, child = map(int, pids.read_text().split())
    time.sleep(0.5)
    assert not _alive(step) and not _alive(child)
    text = out.read_text()
    assert "| pytest tests -m gpu | FAILED (exit -9) |" in text and "stopped from outside" in text
    assert "[hang] about to hang" in text     # what the step printed before it was stopped is kept
    assert "- **GPU**: unreadable" in text
