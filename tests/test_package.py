"""The installed package: extension built, info command, package layout."""
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import warnings
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
    site = Path(importlib.util.find_spec("nfinpaint._C").origin).resolve().parents[1]
    if site == REPO:
        pytest.skip("nfinpaint._C was built in the source tree (pip install -e or build_ext --inplace), "
                    "which has no installed file list; checked with `pip install .`")
    installed = [d for d in importlib.metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "nfinpaint"]
    assert len(installed) == 1
    files = installed[0].files or []
    assert [f for f in files if str(f).startswith("nfinpaint/kernels/")]
    assert not [f for f in files if str(f).split("/")[0] == "kernels"]


def test_the_source_tree_runs_its_own_kernels(tmp_path):
    """Run from the source tree (PYTHONPATH, or `python -m` in its root), nfinpaint.kernels is the tree's
    kernels/ as nfinpaint is its nfinpaint/: the installed copy that fills in the compiled _C ran an edited
    kernels/ without a word until the next install.  From elsewhere, the installed copy."""
    probe = "import nfinpaint, nfinpaint.kernels.gram as g; print(nfinpaint.__file__); print(g.__file__)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    package, gram = (Path(line).resolve() for line in done.stdout.split())
    assert package == REPO / "nfinpaint" / "__init__.py" and gram == REPO / "kernels" / "gram.py", done.stderr
    env.pop("PYTHONPATH")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    package, gram = (Path(line).resolve() for line in done.stdout.split())
    if package.parent != REPO / "nfinpaint":        # installed, not as an editable link to this tree
        assert gram == package.parent / "kernels" / "gram.py", done.stderr


@pytest.mark.parametrize("cwd", ["/", str(Path(__file__).resolve().parents[1])], ids=["elsewhere", "source-tree"])
def test_info_command_reports_build(cwd):
    # From the repository root `python -m` imports the source folder first; the
    # compiled ops and kernels must still resolve (the README's commands run there).
    out = subprocess.run([sys.executable, "-m", "nfinpaint.info"], capture_output=True, text=True,
                         check=True, cwd=cwd).stdout
    assert "nfinpaint._C" in out and "built, backends: CPU" in out
    assert "Triton kernels run on" in out


def test_info_says_how_to_build_what_is_missing(monkeypatch, capsys):
    from nfinpaint import info  # noqa: PLC0415

    monkeypatch.setattr(_extension, "is_built", lambda: False)
    monkeypatch.setattr(_extension, "_load", lambda: "No module named 'nfinpaint._C'")
    assert info.main([]) == 0
    out = capsys.readouterr().out
    assert "NOT built (No module named 'nfinpaint._C')" in out and "`pip install .`" in out
    with pytest.raises(SystemExit):
        info.main(["--help"])
    assert "``" not in capsys.readouterr().out        # the docstring's markup, shown as plain text


@pytest.mark.parametrize("value, interpreter", [("1", True), ("true", True), ("ON", True), ("0", False),
                                                ("no", False)])
def test_info_reads_triton_interpret_as_the_kernels_do(monkeypatch, value, interpreter):
    """It said "none: ... set TRITON_INTERPRET=1" for TRITON_INTERPRET=true, where Triton and the
    kernels run the interpreter."""
    pytest.importorskip("triton", reason="triton is not installed")
    from nfinpaint import info  # noqa: PLC0415

    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert info.triton_mode().startswith("interpreter on the CPU") == interpreter


TRITON_BLOCKED = r"""
import sys, importlib.abc
class NoTriton(importlib.abc.MetaPathFinder):      # as on a platform without a Triton wheel
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, NoTriton())
import importlib.util
import re
importlib.util.find_spec = (lambda real: lambda name, *a: None if name.split(".")[0] == "triton" else real(name, *a))(importlib.util.find_spec)
import torch
from nfinpaint.kernels import gram, feature_distance
import nfinpaint.losses, nfinpaint.inpaint                    # the package works without Triton
a, b = torch.rand(2, 4, 5, 6), torch.rand(2, 4, 5, 6)
ref = gram.gram_distance(a, b, allow_reference_fallback=True)
assert torch.allclose(ref, gram.gram_distance_reference(a, b))
try:
    gram.gram_distance(a, b)
except RuntimeError as exc:
    print(str(exc))
"""


def test_without_triton_the_package_imports_and_the_kernels_say_why(tmp_path):
    import os

    env = {**os.environ, "TRITON_INTERPRET": "1"}    # even the interpreter needs Triton installed
    done = subprocess.run([sys.executable, "-c", TRITON_BLOCKED], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Triton is not installed (it ships wheels for Linux only" in done.stdout, done.stdout


def test_every_imported_package_is_declared():
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[ ;<>=\[]", d)[0].lower().replace("-", "_") for d in project["dependencies"]}
    extras = {re.split(r"[ ;<>=\[]", d)[0].lower().replace("-", "_")
              for deps in project["optional-dependencies"].values() for d in deps}
    names = {"pillow": "PIL", "scikit_image": "skimage", "opencv_python_headless": "cv2", "tomli_w": "tomli_w"}
    provided = {names.get(d, d) for d in declared | extras}
    imported = set()
    for path in list((root / "nfinpaint").glob("*.py")) + list((root / "kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "nfinpaint"}
    assert third_party - provided == set()


def test_the_source_archive_holds_every_file_the_build_and_the_tests_need(tmp_path):
    """Without MANIFEST.in the sdist held the extension's listed sources only: no header (csrc/include,
    csrc/cpu/*_loops.h), and the .cu files only where a toolkit was found, so nothing built from it."""
    import tarfile

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("needs the repository's git checkout (its tracked files are the reference)")
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    wanted = {"csrc", "kernels", "nfinpaint", "tests", "scripts", "benchmarks", "docs"}
    files = [f for f in tracked if f.split("/")[0] in wanted or "/" not in f]
    source = tmp_path / "source"
    for name in files:        # a copy: the build writes its egg-info beside setup.py
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((root / name).read_bytes())
    env = dict(os.environ, NFINPAINT_FORCE_CPU="1")       # the archive must not depend on the toolkit
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=source, env=env,
                   check=True, capture_output=True, timeout=600)
    archive, = (tmp_path / "dist").glob("nfinpaint-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = {f for f in files if not f.startswith(".") and f.split("/")[0] in wanted | {"LICENSE", "MANIFEST.in"}}
    needed |= {"README.md", "LICENSE", "pyproject.toml", "setup.py"}
    assert not needed - names, f"missing from the source archive: {sorted(needed - names)}"


def test_the_extension_records_the_sources_it_was_built_from():
    from nfinpaint.sources_digest import digest

    recorded = _extension.build_info().get("sources")
    if recorded is None:
        pytest.skip("this nfinpaint._C was built before the sources' digest was recorded: reinstall it")
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    if not csrc.is_dir():
        pytest.skip("needs the source tree's csrc/")
    assert recorded == digest(csrc)


def test_a_build_older_than_its_sources_says_so(monkeypatch, tmp_path):
    """After a `git pull` that changed csrc/ without `pip install .`, the commands run from the repository
    root took the old kernels without a word."""
    info = dict(_extension.build_info(), sources="0" * 16)
    monkeypatch.setattr(_extension, "_fields", lambda: info)
    root = Path(__file__).resolve().parents[1]          # this checkout, wherever the package imports from
    if not (root / "csrc").is_dir():
        pytest.skip("needs the source tree's csrc/")
    with pytest.warns(_extension.StaleExtensionWarning, match="reinstall with `pip install .`"):
        _extension.check_sources(root)
    from nfinpaint.sources_digest import digest

    info["sources"] = digest(root / "csrc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _extension.check_sources(root)
    _extension.check_sources(tmp_path)                  # no source tree there: nothing to compare
