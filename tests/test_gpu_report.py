"""benchmarks/gpu_report.py: what can be checked without a GPU.

It must refuse cleanly where no GPU is visible (exit 2, nothing written), plan
every step the issue lists, and write one Markdown report from step results
(here fake ones: the real steps need a GPU).
"""
import importlib.util
import subprocess
import sys
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


def test_plan_covers_every_step(report, tmp_path):
    names = [" ".join(s.command) for s in report.plan("python", tmp_path, build=True)]
    assert "pip install --no-build-isolation" in names[0]
    assert any(c.endswith("pytest tests -q") for c in names)
    assert any("pytest tests -m gpu" in c for c in names)
    assert any("pytest benchmarks -s" in c for c in names)
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
