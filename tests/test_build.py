"""setup.py's toolkit detection: the choices `pip install .` makes, and its errors."""
import importlib.util
import os
import shutil
import stat
from pathlib import Path

import pytest

SETUP_PY = Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture
def setup_module(monkeypatch):
    for var in ("CUDA_HOME", "CUDA_PATH", "NFINPAINT_FORCE_CPU", "NFINPAINT_FORCE_CUDA", "TORCH_CUDA_ARCH_LIST"):
        monkeypatch.delenv(var, raising=False)
    spec = importlib.util.spec_from_file_location("nfinpaint_setup", SETUP_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only; setup() runs under __main__
    return module


def fake_toolkit(root: Path, release: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "lib64").mkdir()
    (root / "lib64" / "libcudart.so").touch()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {release}, V{release}.0"\n')
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return root


def test_force_cpu_skips_cuda(setup_module, monkeypatch):
    monkeypatch.setenv("NFINPAINT_FORCE_CPU", "1")
    assert setup_module.configure_cuda() is False


def test_mismatched_toolkit_major_is_a_clear_error(setup_module, monkeypatch, tmp_path):
    # setup.py hands the toolkit to torch; torch's BuildExtension refuses a toolkit whose
    # major version differs from torch's CUDA when it compiles (_check_cuda_version).
    torch = pytest.importorskip("torch")
    if torch.version.cuda is None:
        pytest.skip("torch is a CPU-only build; no CUDA version to mismatch")
    from torch.utils import cpp_extension

    wrong_major = int(torch.version.cuda.split(".")[0]) - 1
    root = fake_toolkit(tmp_path / "cuda", f"{wrong_major}.4")
    monkeypatch.setenv("CUDA_HOME", str(root))
    assert setup_module.configure_cuda() is True
    assert os.environ["CUDA_HOME"] == str(root)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", os.environ["CUDA_HOME"])  # read at import in a build
    with pytest.raises(RuntimeError) as exc:
        cpp_extension._check_cuda_version("c++", cpp_extension.TorchVersion("13.0"))
    assert "mismatches the version" in str(exc.value) and f"{wrong_major}.4" in str(exc.value)


def test_cuda_home_that_is_not_a_toolkit_is_ignored(setup_module, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    root, how = setup_module.find_cuda_root()
    assert root != str(tmp_path)
    assert "is not a CUDA toolkit root" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH")
def test_wrapper_nvcc_outside_toolkit_resolves_real_root(setup_module, monkeypatch, tmp_path):
    # A wrapper script outside the toolkit, as on these build machines: the
    # root must come from nvcc's own report, not from the wrapper's folder.
    real_nvcc = os.path.realpath(shutil.which("nvcc"))
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {real_nvcc} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    root, how = setup_module.find_cuda_root()
    assert root is not None and setup_module.is_toolkit_root(root)
    assert not root.startswith(str(tmp_path))
