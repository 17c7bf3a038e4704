"""``python -m nfinpaint.export --format onnx|torchscript -o FILE``: a generator others can run without nfinpaint.

The file holds the whole fill: ``filled = model(image, mask)`` with ``image`` float32
(N, 3, H, W) in [0, 1] and ``mask`` float32 (N, 1, H, W), 1 = hole; the holes are blanked,
generated, and every pixel outside them is returned unchanged.  For a full-resolution
generator (the shipped one, ``fullres``) H and W are free, and the multiscale biharmonic
base fill is inside the graph (:mod:`nfinpaint.export_graph`) for pictures whose shorter
side is at most ``--max-side`` (default 8192), with the mean of the fill and of its mirror
image's, as ``inpaint`` fills one window.  A fixed-size generator (``paper``,
``residual``, ...) takes its own ``image_size`` squares.

The exported model fills the given picture as one window; the ``inpaint`` command's
windows around each hole, coarse pass for very thick holes and patch blend (compiled
PatchMatch operators) are not in it (crop a window around a hole yourself for large pictures).  After writing, the file is run on a
fresh random picture and the largest difference from PyTorch's fill is printed (for
how large it may be: docs/export.md).

ONNX needs the ``export`` extra (``pip install "nfinpaint[export]"``: onnx, onnxscript,
onnxruntime).  How to run the files: docs/export.md.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nfinpaint import _extension, cli, generator_io, inference, neural_fill
from nfinpaint.cli import UsageError
from nfinpaint.export_graph import MAX_SIDE, FixedFill, FullResFill
from nfinpaint.files import atomic_path
from nfinpaint.generators import is_full_resolution, needs_operators

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_OPSET = 18


MAX_SIDE_LIMIT = 65_536     # a picture side beyond any camera's


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m nfinpaint.export", __doc__)
    p.add_argument("--format", choices=sorted(SUFFIXES), required=True, help="onnx or torchscript")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="the file to write (folder created)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="trained generator: a run directory or its generator.pt (default: the shipped one)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, metavar="PX",
                   help=f"full-resolution generators: the shorter side up to which the graph's base fill is "
                        f"exact (default {MAX_SIDE}; smaller makes a smaller, faster-to-export file)")
    return p


def reference_fill(generator: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the exported file computes, in PyTorch: for a full-resolution generator ``inpaint``'s fill
    of one window (the mirror average; no coarse pass, no patch blend), else the generator's fill of the crop."""
    if is_full_resolution(generator):
        return neural_fill.fill_window(generator, image, mask)
    return inference.fill(generator, image, mask)


def fill_module(generator: torch.nn.Module, max_side: int = MAX_SIDE) -> tuple[torch.nn.Module, tuple, bool]:
    """(the whole fill as an exportable module, example inputs, whether H and W are free)."""
    generator = generator.float().eval()
    if is_full_resolution(generator):
        h, w = 48, 64
        module, dynamic = FullResFill(generator, max_side), True
    else:
        h = w = int(generator.image_size)
        module, dynamic = FixedFill(generator), False
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, h, w, generator=g)
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 4: h // 2, w // 4: w // 2] = 1
    return module.eval(), (image, mask), dynamic


@contextlib.contextmanager
def _torchscript_quiet():
    """torch (2.14) warns that torch.jit.trace, save and load are deprecated on every call: nothing
    the user of this command can act on (TorchScript is the format asked for), so not shown.  Nor is
    the trace's "might not generalize to other inputs": the branches it flags are input checks
    (an empty tensor, a shape that a fixed-size generator refuses) that the traced sizes pass, and
    tests/test_export.py runs the traced file at other sizes against the fill it records."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_torchscript(module: torch.nn.Module, example: tuple, path: Path) -> None:
    # traced, not scripted: the graph has no branch on the shape (export_graph), and the
    # trace records shape arithmetic, so other sizes run through the same graph
    with torch.no_grad(), _torchscript_quiet():
        traced = torch.jit.trace(module, example, check_trace=False)
    # into memory first: torch's zip writer, failing to write a file (a full disk), throws from a C++
    # destructor and the process aborts, the temporary file left behind; Python's own write raises
    buffer = io.BytesIO()
    with _torchscript_quiet():
        torch.jit.save(traced, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def export_onnx(module: torch.nn.Module, example: tuple, path: Path, dynamic: bool) -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format onnx needs {' and '.join(missing)}: pip install \"nfinpaint[export]\"")
    free = torch.export.Dim.DYNAMIC
    axes = {0: free, 2: free, 3: free} if dynamic else {0: free}
    with torch.no_grad():
        program = torch.onnx.export(module, example, dynamo=True, input_names=["image", "mask"],
                                    output_names=["filled"], dynamic_shapes=(axes, axes), opset_version=ONNX_OPSET,
                                    verbose=False)
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)


def run_file(path: Path, fmt: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The exported file's output for (image, mask), or None when onnxruntime is not installed."""
    if fmt == "torchscript":
        with torch.no_grad(), _torchscript_quiet():
            return torch.jit.load(str(path))(torch.from_numpy(image), torch.from_numpy(mask)).numpy()
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime  # noqa: PLC0415

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image, "mask": mask})[0]


def run(args: argparse.Namespace) -> None:
    output = cli.check_output_file(args.output, "-o", example=f"inpaint{SUFFIXES[args.format]}")
    if output.suffix.lower() != SUFFIXES[args.format]:
        raise UsageError(f"-o {args.output}: a {args.format} file's name ends in {SUFFIXES[args.format]}")
    if not 16 <= args.max_side <= MAX_SIDE_LIMIT:
        # the graph unrolls a level of its base fill per halving of it: 1e30 was still exporting after minutes
        raise UsageError(f"--max-side must be from 16 to {MAX_SIDE_LIMIT:,} pixels, got {args.max_side}")
    loaded = cli.open_generator_option(args.checkpoint, wanted=True, needed_by="export",
                                       hint="; pass --checkpoint PATH")
    source = generator_io.resolve_generator_path(loaded.path)
    if output.exists() and output.samefile(source):
        raise UsageError(f"-o {args.output} is the generator being exported ({source}): writing it would replace "
                         f"that file; choose another name, such as {output.with_name('inpaint' + output.suffix)}")
    module, example, dynamic = fill_module(loaded.generator, args.max_side)
    size = (f"any height and width; PyTorch's numbers up to a shorter side of {args.max_side} px, beyond it "
            f"drifting from them (docs/export.md)" if dynamic else "fixed size")
    print(f"exporting {loaded.describe()} as {args.format} ({size})")
    # a fresh picture of another size than the example when the size is free, within --max-side, and
    # with a block hole besides scattered pixels: single-pixel holes barely reach the multiscale base
    # fill, so a check on them alone passed files whose base fill was off by levels
    h, w = (min(37, args.max_side), 53) if dynamic else example[0].shape[-2:]
    g = torch.Generator().manual_seed(1)
    image, mask = torch.rand(2, 3, h, w, generator=g), (torch.rand(2, 1, h, w, generator=g) > 0.8).float()
    mask[..., h // 3:2 * h // 3, w // 3:2 * w // 3] = 1
    # the file needs no extension (its base fill is tensor steps); PyTorch's fill to check it by does
    checkable = not needs_operators(loaded.generator) or _extension.is_built()
    # PyTorch's own fill, before anything is written: a generator whose fills are not finite is refused
    # with no file left
    expected = reference_fill(loaded.generator, image, mask).numpy() if checkable else None
    if args.format == "onnx":
        export_onnx(module, example, output, dynamic)
    else:
        export_torchscript(module, example, output)
    if expected is None:
        print(f"wrote {output} (not checked: PyTorch's fill to check it against needs the compiled operators, "
              f"which are not built: `pip install .`)")
        return
    got = run_file(output, args.format, image.numpy(), mask.numpy())
    if got is None:
        print(f"wrote {output} (not checked: onnxruntime is not installed)")
        return
    difference = float(np.abs(got - expected).max())
    print(f"wrote {output}: max abs difference from PyTorch {difference:.3g} on a {w}x{h} picture with a block hole")
    if difference > 1 / 255:    # the graph's own rounding stays below half a level (docs/export.md)
        cli.warn(f"that is more than a level of 255: this file does not fill as PyTorch does; "
                 f"report it with the command you ran")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 after one ``error:`` line for bad input."""
    return cli.main(run, argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
