"""What the test suite does where a GPU is visible, checked without one.

A subprocess runs with ``torch.cuda.is_available()`` patched to True and
``TRITON_INTERPRET`` unset, which is what a GPU machine differs in.  Triton
builds its own library (``tl.sum``...) for one mode when first imported, and a
process cannot switch (``kernels/launch.py``).  On the first H200 run the suite
had imported it for the interpreter, and every compiled Triton test and Inductor
compile failed on an assertion in Triton's compiler; now conftest imports it for
the compiler there, and the CPU-interpreter tests skip, naming why (CPU CI runs
them).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

PLUGIN = '''
import torch
torch.cuda.is_available = lambda: True  # what a GPU machine reports; loaded before conftest
'''

# conftest's set-up, then what a GPU test's compile does: TRITON_INTERPRET=0 (the per-test fixture's
# value) and Triton's compiler imported, the step that failed on the H200.
COMPILE_AFTER_CONFTEST = PLUGIN + '''
import os, sys
sys.path.insert(0, sys.argv[1])
import conftest
os.environ["TRITON_INTERPRET"] = "0"
import triton.compiler.code_generator
from nfinpaint.kernels import launch
print("library built for the interpreter:", launch.library_interpreted())
'''

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: `pytest tests` runs for real")


def _gpu_machine_env(tmp_path):
    (tmp_path / "fake_gpu_visible.py").write_text(PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return env


def test_a_gpu_machine_builds_triton_for_the_compiler(tmp_path):
    pytest.importorskip("triton")
    result = subprocess.run([sys.executable, "-c", COMPILE_AFTER_CONFTEST, str(TESTS)], capture_output=True,
                            text=True, env=_gpu_machine_env(tmp_path), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "library built for the interpreter: False" in result.stdout


@pytest.mark.slow
def test_triton_cpu_tests_skip_with_the_reason_when_a_gpu_is_visible(tmp_path):
    pytest.importorskip("triton")
    # GPU-marked tests would need a real device; the CPU-tensor Triton tests must skip, none fail.
    cmd = [sys.executable, "-m", "pytest", "-p", "fake_gpu_visible", "-p", "no:cacheprovider", "-q", "-rs",
           # opcheck's compiled checks would look for the (faked) GPU's driver: they run in the main suite
           "-m", "not gpu", "-k", "((matches_reference and fp32) or autotune or channels_last) and not opcheck",
           str(TESTS / "test_gram.py"), str(TESTS / "test_feature_distance.py")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_gpu_machine_env(tmp_path), cwd=tmp_path,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "failed" not in result.stdout
    assert "needs Triton's other mode in its own process" in result.stdout
    assert "set TRITON_INTERPRET=1 before anything imports triton" in result.stdout
