"""The installed package: extension built, info command, package layout."""
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nfinpaint
from nfinpaint import _extension


def test_extension_is_built_and_registers_ops():
    _extension.require()
    info = _extension.build_info()
    assert "CPU" in info["backends"].split(",")
    assert hasattr(torch.ops.nfinpaint, "composite_l2")


REPO = Path(__file__).resolve().parents[1]


def test_kernels_install_inside_package_only():
    assert importlib.util.find_spec("nfinpaint.kernels") is not None
    # `python -m pytest` from the repository root puts the root on sys.path, so the
    # source folder kernels/ is importable there; nothing installed may be.
    spec = importlib.util.find_spec("kernels")
    assert spec is None or Path(spec.origin).resolve().parent == REPO / "kernels"
    # the installed distribution's file list (not a build's egg-info that the source tree may hold,
    # which `python -m pytest` from the root would find first)
    site = Path(importlib.util.find_spec("nfinpaint._C").origin).parents[1]
    installed = [d for d in importlib.metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "nfinpaint"]
    assert len(installed) == 1
    files = installed[0].files or []
    assert [f for f in files if str(f).startswith("nfinpaint/kernels/")]
    assert not [f for f in files if str(f).split("/")[0] == "kernels"]


@pytest.mark.parametrize("cwd", ["/", str(Path(__file__).resolve().parents[1])], ids=["elsewhere", "source-tree"])
def test_info_command_reports_build(cwd):
    # From the repository root `python -m` imports the source folder first; the
    # compiled ops and kernels must still resolve (the README's commands run there).
    out = subprocess.run([sys.executable, "-m", "nfinpaint.info"], capture_output=True, text=True,
                         check=True, cwd=cwd).stdout
    assert "nfinpaint._C" in out and "built, backends: CPU" in out
    assert "Triton kernels run on" in out
