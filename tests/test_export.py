"""``python -m nfinpaint.export``: the exported files compute PyTorch's fill, run without nfinpaint.

Both generator kinds: a ``fullres`` one (random output weights, so the correction is not zero)
checked on two picture sizes, and a fixed-size paper one on its own size.  The TorchScript
file runs in a fresh Python process that never imports nfinpaint; the ONNX file runs in
onnxruntime (skipped, with the reason, when it is not installed).
"""
import importlib.util
import json
import subprocess
import warnings
import sys

import numpy as np
import pytest
import torch

from nfinpaint import export, export_graph, generator_io, inference, initial_fill, neural_fill
from nfinpaint.generator_io import save_generator
from nfinpaint.fullres_generator import FullResGenerator
from nfinpaint.generators import build_generator
from nfinpaint.initial_fill import multiscale_biharmonic_fill
from nfinpaint.networks import Generator

TOLERANCE = 1e-4         # TorchScript: the same kernels as PyTorch (measured: 0)
# onnxruntime sums in another order, and the base fill's conjugate gradients (over a hundred
# steps) carry the rounding on: measured 2.5e-4 for fullres; a quarter of an 8-bit level
ONNX_TOLERANCE = 1e-3
MAX_SIDE = 64            # a small graph: exact for pictures up to 64 px on the shorter side


def _meta(size):
    return dict(preset="test", image_size=size, hole_size=size // 3, feature_weights="random",
                feature_pretrained=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generators")
    torch.manual_seed(0)
    full = build_generator("fullres", 32)
    with torch.no_grad():
        full.to_rgb.weight.normal_(0, 0.05)
        full.to_rgb.bias.normal_(0, 0.05)
    paper = Generator(24, variant="residual").eval()
    return {"fullres": save_generator(folder / "fullres.pt", full, _meta(32)),
            "paper": save_generator(folder / "paper.pt", paper, _meta(24))}


def _inputs(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        image = torch.rand(2, 3, h, w, generator=g)
        mask = (torch.rand(2, 1, h, w, generator=g) > 0.85).float()
        mask[..., h // 3: h // 2, w // 4: w // 2] = 1
        # what lies under a hole is never read: no-data pixels stored as NaN or inf made the file's
        # whole hole NaN while it blanked holes by multiplying
        under = mask.expand_as(image) > 0.5
        image[under & (torch.rand(image.shape, generator=g) < 0.3)] = float("nan")
        image[under & (torch.rand(image.shape, generator=g) < 0.1)] = float("inf")
        out.append((image, mask))
    return out


SIZES = {"fullres": [(40, 56), (27, 61)], "paper": [(24, 24)]}


@pytest.fixture
def graph_operators(monkeypatch):
    """The eager fill with the graph's neighbour sum (a depthwise convolution; eager mode sums shifted
    slices, or on the CPU runs the compiled solver, whose stencil adds as the slices do): the same
    operators, so the graph must give the same numbers."""
    monkeypatch.setattr(initial_fill, "_neighbour_sum", initial_fill.neighbour_sum_conv)
    monkeypatch.setattr(initial_fill, "conjugate_gradients", initial_fill.conjugate_gradients_reference)


@pytest.mark.parametrize("side", [(1, 7), (9, 13), (15, 40), (33, 64), (64, 100)])
def test_graph_base_fill_is_the_recursive_one(side, graph_operators):
    g = torch.Generator().manual_seed(sum(side))
    image = torch.rand(2, 3, *side, generator=g)
    mask = (torch.rand(2, 1, *side, generator=g) > 0.6).float()
    masked = image * (1 - mask)
    expected = multiscale_biharmonic_fill(masked, mask)
    got = export_graph.multiscale_biharmonic_fill(masked, mask, MAX_SIDE)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("known, shape", [(2, (70, 90)), (5, (70, 90)), (1, (71, 93)), (1, (64, 81))])
def test_graph_base_fill_is_the_recursive_one_with_a_thin_known_frame(known, shape, graph_operators):
    """Known pixels only in a frame narrower than the coarse pixels: both fills keep it at every level
    (with odd sides too, whose last row or column of coarse pixels is made of one fine one)."""
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(known))
    mask = torch.ones(1, 1, *shape)
    mask[..., :known, :] = mask[..., -known:, :] = mask[..., :, :known] = mask[..., :, -known:] = 0
    masked = image * (1 - mask)
    expected = multiscale_biharmonic_fill(masked, mask)
    assert expected[mask.expand_as(expected) > 0].mean() > 0.35      # the frame's mean is ~0.5; grey start was 0.5 too,
    got = export_graph.multiscale_biharmonic_fill(masked, mask, MAX_SIDE)   # so the equality is the test here
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("side", [(12, 100), (100, 12), (1, 50)])
def test_graph_base_fill_is_the_recursive_one_on_a_band_across_an_elongated_picture(side, graph_operators):
    """Where the push-pull pyramid reaches a short side of 1 with cells that have nothing known under
    them: both fills go on down to 1x1 (they once stopped there and filled 0)."""
    image = torch.rand(1, 3, *side, generator=torch.Generator().manual_seed(sum(side)))
    mask = torch.zeros(1, 1, *side)
    if side[0] > side[1]:
        mask[..., : side[0] * 3 // 5, :] = 1
    else:
        mask[..., :, : side[1] * 3 // 5] = 1
    masked = image * (1 - mask)
    expected = multiscale_biharmonic_fill(masked, mask)
    assert expected[mask.expand_as(expected) > 0].mean() > 0.2      # the known pixels' mean is ~0.5; black was 0
    got = export_graph.multiscale_biharmonic_fill(masked, mask, MAX_SIDE)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("base_iterations, stats", [(8, "pooled"), (32, "pooled"), (32, "channel")])
def test_graph_whole_fill_is_the_generator_s_own(base_iterations, stats, graph_operators):
    """The graph runs the generator's base fill with the generator's own step count and window
    statistics (the shipped generator runs more steps than it trained with, and each channel's own)."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    generator = FullResGenerator(32, base_iterations=base_iterations, stats=stats).eval()
    with torch.no_grad():
        generator.to_rgb.weight.normal_(0, 0.05)
    (image, mask), = _inputs([(40, 56)], seed=base_iterations)
    with torch.no_grad():
        got = export_graph.FullResFill(generator, MAX_SIDE, mirror=False)(image, mask)
        mirrored = export_graph.FullResFill(generator, MAX_SIDE, mirror=True)(image, mask)
    torch.testing.assert_close(got, inference.fill(generator, image, mask), atol=1e-5, rtol=0)
    # with the mirror average, inpaint's fill of one window: the two passes and their mean
    torch.testing.assert_close(mirrored, neural_fill.fill_window(generator, image, mask, mirror=True),
                               atol=1e-5, rtol=0)
    assert (mirrored - got).abs().max() > 1e-3          # the mirror pass changes the fill: the test can fail


def _export(kind, fmt, checkpoints, tmp_path, capsys):
    out = tmp_path / f"{kind}{export.SUFFIXES[fmt]}"
    assert export.main(["--format", fmt, "-o", out, "--checkpoint", checkpoints[kind], "--max-side", MAX_SIDE]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference from PyTorch" in printed or "not checked" in printed
    return out


def _expected(kind, checkpoints, image, mask):
    generator, _ = generator_io.load_generator(checkpoints[kind])
    # the graph's operators (see graph_operators), here only: a fixture would also change what the
    # "paper" export traces (the generator's own forward, slices in use)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(initial_fill, "_neighbour_sum", initial_fill.neighbour_sum_conv)
        patch.setattr(initial_fill, "conjugate_gradients", initial_fill.conjugate_gradients_reference)
        return export.reference_fill(generator, image, mask).numpy()


@pytest.mark.parametrize("size, tolerance", [((128, 128), 5e-5), ((40, 56), 2e-3)])
def test_graph_fill_is_the_eager_fill_to_its_rounding(size, tolerance):
    """Eager mode's slices and the graph's convolution agree to 1e-7 a step; the biharmonic steps are
    ill-conditioned, and a small hole solved to rounding amplifies that (measured: 1.5e-5 on the 128 px
    window's salt holes, 1e-6 before the base fill kept partly known coarse pixels, 2026-12-06; 5e-4 on
    the small picture's).  With the graph's operators the eager fill is the graph's to the bit."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    generator = FullResGenerator(32, base_iterations=32).eval()
    (image, mask), = _inputs([size], seed=size[0])
    with torch.no_grad():
        got = export_graph.FullResFill(generator, MAX_SIDE * 2, mirror=False)(image, mask)
    torch.testing.assert_close(got, inference.fill(generator, image, mask), atol=tolerance, rtol=0)


FRESH_PROCESS = r"""
import json, sys
import numpy as np, torch
model = torch.jit.load(sys.argv[1])
data = np.load(sys.argv[2])
outs = {}
with torch.no_grad():
    for i in range(len(data.files) // 2):
        outs[f"out{i}"] = model(torch.from_numpy(data[f"image{i}"]), torch.from_numpy(data[f"mask{i}"])).numpy()
np.savez(sys.argv[3], **outs)
print(json.dumps({"nfinpaint_imported": any(m.split(".")[0] == "nfinpaint" for m in sys.modules)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fullres", "paper"])
def test_torchscript_file_runs_in_a_fresh_process_and_matches_pytorch(kind, checkpoints, tmp_path, capsys):
    path = _export(kind, "torchscript", checkpoints, tmp_path, capsys)
    cases = _inputs(SIZES[kind], seed=len(kind))
    arrays = {}
    for i, (image, mask) in enumerate(cases):
        arrays[f"image{i}"], arrays[f"mask{i}"] = image.numpy(), mask.numpy()
    np.savez(tmp_path / "in.npz", **arrays)
    (tmp_path / "run.py").write_text(FRESH_PROCESS)
    done = subprocess.run([sys.executable, tmp_path / "run.py", path, tmp_path / "in.npz", tmp_path / "out.npz"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"nfinpaint_imported": False}
    outs = np.load(tmp_path / "out.npz")
    for i, (image, mask) in enumerate(cases):
        diff = float(np.abs(outs[f"out{i}"] - _expected(kind, checkpoints, image, mask)).max())
        print(f"torchscript {kind} {tuple(image.shape)}: max abs difference {diff:.3g}")
        assert diff < TOLERANCE
        assert np.array_equal(outs[f"out{i}"][mask.expand_as(image).numpy() == 0],
                              image.numpy()[mask.expand_as(image).numpy() == 0])


@pytest.mark.slow
def test_a_torchscript_file_holds_no_tensor_pinned_to_the_cpu(checkpoints, tmp_path, capsys):
    """The base fill's kernel, made in the graph, was recorded as a constant moved to the CPU (402 times):
    `.cuda()` left it there, and a GPU picture met a CPU kernel. It is a buffer now, which moves."""
    import zipfile

    path = _export("fullres", "torchscript", checkpoints, tmp_path, capsys)
    with zipfile.ZipFile(path) as archive:
        code = "".join(archive.read(name).decode() for name in archive.namelist() if name.endswith(".py"))
    assert "torch.conv" in code or "_convolution" in code        # the code is what the test reads
    assert 'torch.device("cpu")' not in code and "neighbour_cross" in code


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason='onnxruntime is not installed (pip install "nfinpaint[export]")')
@pytest.mark.parametrize("kind", ["fullres", "paper"])
def test_onnx_file_runs_in_onnxruntime_and_matches_pytorch(kind, checkpoints, tmp_path, capsys):
    import onnxruntime

    path = _export(kind, "onnx", checkpoints, tmp_path, capsys)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for image, mask in _inputs(SIZES[kind], seed=7 + len(kind)):
        got = session.run(None, {"image": image.numpy(), "mask": mask.numpy()})[0]
        diff = float(np.abs(got - _expected(kind, checkpoints, image, mask)).max())
        print(f"onnx {kind} {tuple(image.shape)}: max abs difference {diff:.3g}")
        assert diff < ONNX_TOLERANCE
        known = mask.expand_as(image).numpy() == 0
        assert np.array_equal(got[known], image.numpy()[known])


@pytest.mark.parametrize("argv, expected", [
    ("--format onnx -o {tmp}/model.pt --checkpoint {ckpt}", "ends in .onnx"),
    ("--format torchscript -o {tmp} --checkpoint {ckpt}", "is a folder; give a file name such as {tmp}/inpaint.pt"),
    ("--format torchscript -o {tmp}/m.pt --checkpoint {tmp}/nosuch.pt", "no such file"),
    ("--format torchscript -o {tmp}/m.pt --checkpoint {ckpt} --max-side 8", "--max-side must be from 16 to 65,536"),
    ("--format torchscript -o {tmp}/m.pt --checkpoint {ckpt} --max-side 1000000", "--max-side must be from 16"),
    ("--format torchscript -o {tmp}/m.pt --checkpoint=", "--checkpoint is empty"),
    # -o "" (an unset shell variable) was taken for the current folder: "-o . is a folder"
    ("--format torchscript -o= --checkpoint {ckpt}", "-o is empty: give the file to write, such as inpaint.pt"),
])
def test_bad_input_is_one_line(argv, expected, checkpoints, tmp_path, capsys):
    code = export.main(argv.format(tmp=tmp_path, ckpt=checkpoints["fullres"]).split())
    err = capsys.readouterr().err.strip()
    expected = expected.format(tmp=tmp_path)
    assert code == 2 and err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not list(tmp_path.iterdir())


def test_a_torchscript_export_prints_no_deprecation_warning_of_torch_s_own(checkpoints, tmp_path, capsys):
    """torch 2.14 deprecates torch.jit.trace/save/load: an export that worked printed four
    'warning: ... Please switch to torch.compile or torch.export' lines the user can do nothing about."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export.main(["--format", "torchscript", "-o", tmp_path / "m.pt", "--checkpoint",
                            checkpoints["paper"]]) == 0
    # nor the trace's "might not generalize to other inputs" (input checks: the file runs at other sizes)
    shown = [str(w.message) for w in caught if "deprecated" in str(w.message) or "generalize" in str(w.message)]
    assert not shown, shown
    assert "wrote" in capsys.readouterr().out


def test_the_output_may_not_be_the_generator_it_exports(checkpoints, tmp_path, capsys):
    """-o naming the --checkpoint file replaced the run's generator with the exported graph."""
    import shutil  # noqa: PLC0415

    generator = tmp_path / "generator.pt"
    shutil.copy(checkpoints["fullres"], generator)
    before = generator.read_bytes()
    for checkpoint in (generator, tmp_path):          # the file, or the run folder holding it
        code = export.main(["--format", "torchscript", "-o", str(generator), "--checkpoint", str(checkpoint)])
        err = capsys.readouterr().err
        assert code == 2 and "is the generator being exported" in err and err.count("\n") == 1, err
    assert generator.read_bytes() == before


def test_onnx_without_the_extra_says_what_to_install(checkpoints, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert export.main(["--format", "onnx", "-o", tmp_path / "m.onnx", "--checkpoint", checkpoints["paper"]]) == 2
    assert 'pip install "nfinpaint[export]"' in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_the_shipped_generator_s_graph_fills_as_the_command_does_to_a_level():
    """The file against inpaint's own fill of one window (eager slices, not the graph's convolution,
    and the mirror average): within one level of 255 (docs/export.md: measured up to 1.8e-3)."""
    loaded = generator_io.open_generator(None)
    if loaded is None:
        pytest.skip("no shipped generator installed")
    module, _, _ = export.fill_module(loaded.generator, 128)
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    for h, w in ((64, 64), (37, 53), (31, 33)):
        image = torch.rand(1, 3, h, w, generator=g)
        mask = torch.zeros(1, 1, h, w)
        top, left = (int(torch.randint(0, s // 2, (), generator=g)) for s in (h, w))
        mask[..., top: top + h // 3, left: left + w // 3] = 1
        with torch.no_grad():
            got = module(image, mask)
        diff = float((got - neural_fill.fill_window(loaded.generator, image, mask)).abs().max())
        assert diff < 1 / 255, (h, w, diff)
        single = neural_fill.fill_window(loaded.generator, image, mask, mirror=False)
        assert float((got - single).abs().max()) > 1 / 255      # one pass would not do: the test can fail


def test_the_command_s_check_covers_a_block_hole_and_warns_past_a_level(checkpoints, tmp_path, capsys, monkeypatch):
    """The check after writing used scattered one-pixel holes only, which barely reach the multiscale
    base fill, and printed any difference without comment."""
    seen = {}

    def off_by_two_levels(path, fmt, image, mask):
        seen["mask"] = mask
        return export.reference_fill(generator_io.load_generator(checkpoints["fullres"])[0],
                                     torch.from_numpy(image), torch.from_numpy(mask)).numpy() + 2 / 255

    monkeypatch.setattr(export, "run_file", off_by_two_levels)
    out = tmp_path / "fill.pt"
    assert export.main(["--format", "torchscript", "-o", out, "--checkpoint", checkpoints["fullres"],
                        "--max-side", "24"]) == 0
    captured = capsys.readouterr()
    mask = seen["mask"][0, 0]
    h, w = mask.shape
    assert h <= 24 and mask[h // 3:2 * h // 3, w // 3:2 * w // 3].all()       # a block, inside --max-side
    assert "shorter side of 24 px" in captured.out and "with a block hole" in captured.out
    assert "warning: that is more than a level of 255" in captured.err


def test_a_full_disk_is_one_line_and_leaves_no_file(checkpoints, tmp_path, capsys, monkeypatch):
    """torch's zip writer, failing to write a file, throws from a C++ destructor: the process aborted
    (exit 134) and left its temporary file.  The file is written by Python from memory instead."""
    import errno  # noqa: PLC0415
    import io  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    real_save, real_write = torch.jit.save, Path.write_bytes

    def failing_save(module, target, *args, **kwargs):      # what torch does on a full disk, short of aborting
        if isinstance(target, io.BytesIO):
            return real_save(module, target, *args, **kwargs)
        real_write(Path(target), b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 109568 vs 109464")

    def full_disk_write(path, data):
        if ".tmp" in path.name:
            real_write(path, b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(torch.jit, "save", failing_save)
    monkeypatch.setattr(Path, "write_bytes", full_disk_write)
    code = export.main(["--format", "torchscript", "-o", str(tmp_path / "m.pt"), "--checkpoint", str(checkpoints["paper"])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: disk full") and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_generator_whose_fill_is_not_finite_is_refused_before_anything_is_written(tmp_path, capsys):
    """Finite weights that overflow: the check ran after the file was written, and the file stayed."""
    torch.manual_seed(0)
    generator = Generator(24, variant="residual").eval()
    with torch.no_grad():
        for p in generator.parameters():
            if p.dim() > 1:
                p.mul_(1e12)            # each layer's output 1e12 times larger: inf, then inf - inf
    checkpoint = save_generator(tmp_path / "huge.pt", generator, _meta(24))
    out = tmp_path / "out"
    out.mkdir()
    code = export.main(["--format", "torchscript", "-o", str(out / "m.pt"), "--checkpoint", str(checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and "not finite" in err and "use another generator file" in err and err.count("\n") == 1, err
    assert not list(out.iterdir())
