"""Test set-up shared by every test module.

- Triton: tests on CPU tensors run the kernels in the CPU interpreter; tests
  marked ``@pytest.mark.gpu`` run them compiled.  Our kernels read
  ``TRITON_INTERPRET`` at call time (``kernels/launch.py``), so it is set per
  test here, but Triton's own library (``tl.sum``...) takes one mode for the
  whole process when first imported: the compiler where a GPU is visible, the
  interpreter elsewhere (or as ``TRITON_INTERPRET`` says when set).  A test that
  needs the other mode raises ``TritonModeError`` and is skipped with its
  reason: a GPU machine's run skips the interpreter tests, which CPU CI runs.
- Tests marked ``@pytest.mark.gpu`` skip with a reason when no GPU is visible.
- Inductor compiles in this process (``TORCHINDUCTOR_COMPILE_THREADS=1``): a
  pool of compile workers keeps the environment it started with, so after a
  CPU test set ``TRITON_INTERPRET=1`` a GPU ``torch.compile`` test could build
  its kernels in interpreter mode.
"""
import os

os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # before torch reads it (see above)

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")
try:
    import triton.language  # noqa: E402, F401 - takes its mode now, from the line above
except ImportError:         # no Triton wheel for this platform
    pass

from nfinpaint.kernels.launch import TritonModeError  # noqa: E402


@pytest.fixture(autouse=True)
def _triton_mode(request, monkeypatch):
    # CPU-tensor tests ask for the interpreter (the compiled path takes CUDA tensors
    # only); GPU tests must compile, or they test the interpreter.
    monkeypatch.setenv("TRITON_INTERPRET", "0" if "gpu" in request.keywords else "1")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except Exception as exc:
        cause = exc         # opcheck and pytest.raises wrap it: look down the chain
        while cause is not None and not isinstance(cause, TritonModeError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        pytest.skip(f"needs Triton's other mode in its own process: {cause}")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def record_grids(monkeypatch):
    """``record_grids(kernel, ...)`` replaces the Triton kernels' launch by a recorder: no kernel
    runs, and the returned list collects the grid each launch would have used."""
    grids = []

    def patch(*kernels):
        for kernel in kernels:
            def launch(grid, *args, meta=None, _kernel=kernel, **constexprs):
                meta = meta or _kernel.interpret_meta
                grids.append(grid(meta))
                return meta
            monkeypatch.setattr(kernel, "launch", launch)
        return grids

    return patch


@pytest.fixture(scope="session")
def fullres_checkpoint(tmp_path_factory):
    """A small full-resolution generator file whose output layer is not zero (an untrained one *is*
    its smooth base fill, which would hide bugs in what is built around it)."""
    from nfinpaint.generator_io import save_generator  # noqa: PLC0415
    from nfinpaint.generators import build_generator  # noqa: PLC0415

    torch.manual_seed(0)
    g = build_generator("fullres", 32)
    with torch.no_grad():
        g.to_rgb.weight.normal_(0, 0.05)
        g.to_rgb.bias.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("gen") / "generator.pt"
    save_generator(path, g, dict(preset="fullres", image_size=32, hole_size=16, feature_weights="random",
                                 feature_pretrained=False))
    return path
