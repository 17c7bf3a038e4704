"""What the commands share (nfinpaint.cli): one-line errors, "aborted", one warning format, paths."""
import argparse
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from nfinpaint import cli, devices
from nfinpaint.errors import NfinpaintError
from nfinpaint.stop import StopRequest


def _parser():
    return argparse.ArgumentParser(prog="x")


def test_bad_input_is_one_line_and_status_2(capsys):
    def run(args):
        raise cli.UsageError("first line\nsecond line")
    assert cli.main(run, [], _parser()) == 2
    assert capsys.readouterr().err == "error: first line\n"


def test_every_nfinpaint_error_counts_as_bad_input_and_others_do_not(capsys):
    class OwnError(NfinpaintError):
        pass

    def own(args):
        raise OwnError("bad file")
    assert cli.main(own, [], _parser()) == 2
    assert capsys.readouterr().err == "error: bad file\n"

    def bug(args):
        raise ZeroDivisionError
    with pytest.raises(ZeroDivisionError):      # a bug stays a traceback: it is not the user's input
        cli.main(bug, [], _parser())


@pytest.mark.parametrize("error, where", [(MemoryError(), "the machine"),
                                          (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"),
                                           "the GPU")])
def test_running_out_of_memory_is_one_line_and_status_2(capsys, error, where):
    def run(args):
        raise error
    assert cli.main(run, [], _parser()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: out of memory on {where}") and "--batch-size" in err
    assert err.count("\n") == 1 and "Traceback" not in err

    def other(args):
        raise RuntimeError("not memory")
    with pytest.raises(RuntimeError, match="not memory"):      # other runtime errors stay bugs
        cli.main(other, [], _parser())


def test_the_error_types_of_every_module_share_one_base():
    from nfinpaint import (api, baselines, checkpoint, config, data, feature_net, generator_io, images, inference,
                           training_run)

    for error in (cli.UsageError, config.ConfigError, images.ImageError, data.DataError, api.InpaintError,
                  checkpoint.CheckpointError, feature_net.FeatureWeightsError, baselines.MethodUnavailable,
                  generator_io.GeneratorFileError, inference.NonFiniteOutput, training_run.TrainingDiverged):
        assert issubclass(error, NfinpaintError), error
    import nfinpaint

    assert nfinpaint.NfinpaintError is NfinpaintError


def test_ctrl_c_nobody_handles_says_aborted(capsys):
    def run(args):
        raise KeyboardInterrupt
    assert cli.main(run, [], _parser()) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip() == "aborted" and "Traceback" not in err


def test_second_ctrl_c_during_training_aborts():
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_warnings_print_as_warning_lines(capsys, monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)   # restored afterwards
    cli.quiet_startup()
    line = warnings.formatwarning("skipping x.png: unreadable", UserWarning, "/some/file.py", 12)
    assert line == "warning: skipping x.png: unreadable\n"
    cli.warn("the same format")
    assert capsys.readouterr().err == "warning: the same format\n"


def test_cuda_runtime_notice_is_dropped_and_other_messages_kept(caplog):
    cli.quiet_startup()
    logger = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_help_text_has_no_markup():
    assert cli.help_text("Use ``--x`` for **bold** things.") == "Use --x for bold things."
    assert cli.help_text("Pairs: :mod:`nfinpaint.folders`, :func:`~nfinpaint.a.b`.") == \
        "Pairs: nfinpaint.folders, nfinpaint.a.b."


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is visible")
@pytest.mark.parametrize("text, message", [("tpu", "is not a device"), ("meta", "only cpu and cuda"),
                                           ("cuda", "no CUDA GPU is visible"),
                                           ("cuda:x", "is not a device")])
def test_bad_devices(text, message):
    with pytest.raises(cli.UsageError, match=message):
        devices.resolve_device(text)


def test_resolve_device_auto_and_cpu():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    assert cli.check_output_file(tmp_path / "new" / "deeper" / "out.png", "-o") == tmp_path / "new/deeper/out.png"
    with pytest.raises(cli.UsageError, match="is a folder"):
        cli.check_output_file(tmp_path, "-o")
    with pytest.raises(cli.UsageError, match="is a file, not a folder"):
        cli.check_output_file(tmp_path / "file" / "out.png", "-o")
    with pytest.raises(cli.UsageError, match="is a file, not a folder"):
        cli.check_output_folder(tmp_path / "file" / "sub", "--out")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]     # the write probe left nothing


def test_a_folder_that_takes_no_files_whatever_its_mode_bits_say_is_refused_before_any_work(tmp_path):
    """As root, access() says yes to /sys; export traced the model for seconds, then failed to write."""
    if not (os.access("/sys", os.W_OK) and Path("/sys/kernel").is_dir()):
        pytest.skip("needs /sys with write access by mode bits (root on Linux)")
    with pytest.raises(cli.UsageError, match=r"cannot create a file in /sys/kernel"):
        cli.check_output_file("/sys/kernel/inpaint.pt", "-o")
    with pytest.raises(cli.UsageError, match=r"cannot create a file in /sys"):
        cli.check_output_folder("/sys/nfinpaint-out", "--out")


# Ctrl-C while `import torch` runs (seconds, before cli.main can catch anything), made certain by an
# import hook that raises where the key press would land
_CTRL_C_IN_TORCH_IMPORT = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
"""


def _python(tmp_path, *args, argv0=None):
    (tmp_path / "sitecustomize.py").write_text(_CTRL_C_IN_TORCH_IMPORT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    if argv0 is not None:        # a console script: its file name is sys.argv[0]
        args = ("-c", f"import sys; sys.argv[0] = {argv0!r}; import nfinpaint")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("how", ["python -m", "python -mNAME", "python -Bm", "console script"])
def test_ctrl_c_while_a_command_imports_torch_says_aborted(tmp_path, how):
    if how == "python -m":
        result = _python(tmp_path, "-m", "nfinpaint.inpaint", "--help")
    elif how == "python -mNAME":
        result = _python(tmp_path, "-mnfinpaint.inpaint", "--help")
    elif how == "python -Bm":
        result = _python(tmp_path, "-Bm", "nfinpaint.inpaint", "--help")
    else:
        result = _python(tmp_path, argv0=os.path.join("venv", "bin", "nfinpaint-inpaint"))
    assert result.returncode == cli.EXIT_INTERRUPTED, result.stderr
    assert result.stderr.strip() == "aborted"


# Ctrl-C as the signal itself, delivered while a command imports its own modules (after the package,
# before cli.main): a KeyboardInterrupt there gave a traceback or a half-imported numpy
_SIGINT_IN_COMMAND_IMPORT = """
import signal
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "nfinpaint.cli":
            signal.raise_signal(signal.SIGINT)

sys.meta_path.insert(0, CtrlC())
"""


@pytest.mark.parametrize("command", ["inpaint", "evaluate", "train"])
def test_ctrl_c_while_a_command_imports_its_modules_says_aborted(tmp_path, command):
    (tmp_path / "sitecustomize.py").write_text(_SIGINT_IN_COMMAND_IMPORT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    # Ctrl-C as a terminal delivers it: a shell starts a background job (`bash .ci/run &`) with SIGINT
    # ignored, which its children inherit, and an ignored SIGINT is not the command's to handle
    result = subprocess.run([sys.executable, "-m", f"nfinpaint.{command}", "--help"], capture_output=True,
                            text=True, env=env, timeout=300,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert result.returncode == cli.EXIT_INTERRUPTED, result.stderr
    assert result.stderr.strip() == "aborted" and "usage" not in result.stdout


def test_ctrl_c_after_the_imports_is_a_keyboard_interrupt_again(capsys):
    """cli.main hands Ctrl-C back to Python's handler (which the package replaced for a command's imports)."""
    import nfinpaint

    before = signal.signal(signal.SIGINT, nfinpaint._abort_at_startup)
    try:
        def run(args):
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            signal.raise_signal(signal.SIGINT)
        assert cli.main(run, [], _parser()) == cli.EXIT_INTERRUPTED
        assert capsys.readouterr().err.strip() == "aborted"
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_command_whose_reader_has_gone_still_writes_its_file(tmp_path):
    """`inpaint ... | head -1`: a progress line to a closed pipe (BrokenPipeError) ended the fill in a
    traceback, its output unwritten. The reader here is gone before the first line."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng()
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 15:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "nfinpaint.inpaint", str(tmp_path / "p.png"),
                                 str(tmp_path / "m.png"), "-o", str(tmp_path / "out.png"), "--method", "biharmonic"],
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert Image.open(tmp_path / "out.png").size == (56, 40)


@pytest.mark.parametrize("stderr", ["the same pipe", "closed"])
def test_a_folder_run_whose_stderr_has_no_reader_still_writes_its_files(tmp_path, stderr):
    """`inpaint --images ... 2>&1 | head -1` and `2>&-`: the folder's progress bar on stderr ended the run
    in a BrokenPipeError (or EBADF) before its first picture, nothing written."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng()
    for folder in ("img", "mask"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "img" / f"p{i}.png")
        mask = np.zeros((40, 56), np.uint8)
        mask[10:20, 15:30] = 255
        Image.fromarray(mask).save(tmp_path / "mask" / f"p{i}.png")
    read, write = os.pipe()
    os.close(read)
    command = [sys.executable, "-m", "nfinpaint.inpaint", "--images", str(tmp_path / "img"), "--masks",
               str(tmp_path / "mask"), "-o", str(tmp_path / "out"), "--method", "biharmonic"]
    try:
        if stderr == "closed":
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                                    preexec_fn=lambda: os.close(2))
        else:
            result = subprocess.run(command, stdout=write, stderr=write, timeout=300)
    finally:
        os.close(write)
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]


@pytest.mark.parametrize("program", ["my_program.py", "nfinpaint-tool.py", "arguments -m nfinpaint.pt"])
def test_ctrl_c_while_a_program_imports_nfinpaint_stays_its_own(tmp_path, program):
    """A program's Ctrl-C is its own (its except and finally blocks run), whatever its name or arguments:
    the handler for commands was installed for a program named nfinpaint-*, or given `-m nfinpaint.X`."""
    if program.startswith("arguments"):
        result = _python(tmp_path, "-c", "import nfinpaint", "-m", "nfinpaint.pt")
    else:
        result = _python(tmp_path, argv0=program)
    assert "Traceback" in result.stderr and "KeyboardInterrupt" in result.stderr
    assert result.returncode != 0 and "aborted" not in result.stderr


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_file(tmp_path, capsys):
    from nfinpaint.files import atomic_path

    def run(args):
        with atomic_path(tmp_path / "out.png") as tmp:
            tmp.write_bytes(b"half an image")
            signal.raise_signal(signal.SIGTERM)      # kill PID, mid-write
    assert cli.main(run, [], _parser()) == cli.EXIT_TERMINATED
    assert capsys.readouterr().err.strip() == "aborted"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL     # restored afterwards


@pytest.mark.parametrize("module, argv, expected", [
    ("inpaint", ["a.png", "m.png", "-o", "f.png", "--dilate", "abc"], "argument --dilate: invalid int value: 'abc'"),
    ("export", ["-o", "x.pt"], "the following arguments are required: --format"),
    ("evaluate", ["--crops", "diagonal"], "argument --crops: invalid choice: 'diagonal'"),
    ("info", ["--bogus"], "unrecognized arguments: --bogus"),
    ("train", ["--steps", "1.5"], "argument --steps: invalid int value: '1.5'"),
])
def test_a_malformed_command_line_is_one_error_line_too(capsys, module, argv, expected):
    """argparse printed its usage block (up to 9 lines) and 'python -m ...: error:' for an option it
    could not parse, unlike every other bad input: one 'error:' line, status 2, and where --help is."""
    import importlib

    main = importlib.import_module(f"nfinpaint.{module}").main
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err and f"python -m nfinpaint.{module} --help" in err, err


def test_a_file_name_that_is_not_utf_8_prints_on_a_strict_terminal(monkeypatch):
    """Linux file names are bytes: one that is not UTF-8 reaches Python as surrogates, which a
    terminal in a UTF-8 locale (en_US.UTF-8: errors="strict") cannot encode; 'wrote <name>' ended
    in a UnicodeEncodeError traceback, status 1, after the file was written."""
    import io  # noqa: PLC0415

    streams = {name: io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict") for name in ("out", "err")}
    monkeypatch.setattr(sys, "stdout", streams["out"])
    monkeypatch.setattr(sys, "stderr", streams["err"])
    name = os.fsdecode(b"photo-\xff.png")

    def run(args):
        print(f"wrote {name}")
        cli.warn(f"{name} is odd")
        raise cli.UsageError(f"{name}: not a readable image")

    assert cli.main(run, [], _parser()) == 2
    for stream in streams.values():
        stream.flush()
    assert streams["out"].buffer.getvalue() == b"wrote photo-\\udcff.png\n"
    assert streams["err"].buffer.getvalue() == (b"warning: photo-\\udcff.png is odd\n"
                                                b"error: photo-\\udcff.png: not a readable image\n")


def test_the_commands_that_abort_at_startup_are_pyproject_s_console_scripts():
    import tomllib
    from pathlib import Path

    import nfinpaint

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert set(nfinpaint._COMMANDS) == set(pyproject["project"]["scripts"])


def _one_gpu(monkeypatch, cuda_kernels_missing=None):
    """A machine with one CUDA GPU, as resolve_device sees it (none is here)."""
    from nfinpaint import _extension

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(_extension, "cuda_kernels_missing", lambda device=None: cuda_kernels_missing)


@pytest.mark.parametrize("text", ["cuda:1", "cuda:7"])
def test_a_gpu_index_past_the_machines_gpus_is_refused(monkeypatch, text):
    """It was accepted, and the command failed after loading in torch's "invalid device ordinal"."""
    _one_gpu(monkeypatch)
    assert devices.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(cli.UsageError, match="this machine has 1 CUDA GPU"):
        devices.resolve_device(text)


def test_a_build_without_cuda_kernels_runs_auto_on_the_cpu_and_refuses_cuda(monkeypatch):
    """torch from pip brings no nvcc, so `pip install .` may build the CPU operators only: on a GPU the
    README's first command then failed in the dispatcher's "Could not run ... 'CUDA' backend"."""
    from nfinpaint import _extension

    _one_gpu(monkeypatch, cuda_kernels_missing=_extension._CUDA_HINT)
    with pytest.warns(devices.CpuOnlyBuildWarning, match="running on the CPU although a CUDA GPU is visible"):
        assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(cli.UsageError, match="built without CUDA kernels.*NFINPAINT_FORCE_CUDA=1.*--device cpu"):
        devices.resolve_device("cuda")


def test_work_without_compiled_operators_takes_the_gpu_whatever_the_build(monkeypatch):
    """Feature pretraining runs VGG and torch's own ops: a CPU-only build refused it the GPU."""
    from nfinpaint import _extension

    _one_gpu(monkeypatch, cuda_kernels_missing=_extension._CUDA_HINT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert devices.resolve_device("auto", operators=False) == torch.device("cuda", 0)
        assert devices.resolve_device("cuda", operators=False) == torch.device("cuda", 0)


def test_an_operator_asked_for_on_a_gpu_by_a_build_without_cuda_kernels_says_why(monkeypatch):
    from nfinpaint import _extension

    if not _extension.is_built():
        pytest.fail("the compiled extension (nfinpaint._C) is not built")
    monkeypatch.setattr(_extension, "has_cuda_kernels", lambda: False)
    _extension.require("cpu")
    assert _extension.cuda_kernels_missing() == _extension._CUDA_HINT
    with pytest.raises(RuntimeError, match="built without CUDA kernels"):
        _extension.require(torch.device("cuda", 0))


@pytest.mark.parametrize("archs, capability, runs", [
    ("8.0;9.0+PTX", (8, 0), True), ("8.0;9.0+PTX", (8, 6), True), ("8.0;9.0+PTX", (8, 9), True),
    ("8.0;9.0+PTX", (9, 0), True), ("8.0;9.0+PTX", (10, 0), True), ("8.0;9.0+PTX", (12, 0), True),
    ("8.0;9.0+PTX", (7, 5), False), ("8.0;9.0+PTX", (7, 0), False), ("8.6", (8, 0), False),
    ("8.0;9.0", (10, 0), False), ("7.5 8.0", (7, 5), True), ("9.0a", (9, 0), True), ("9.0a", (10, 0), False),
    ("10.0a", (10, 3), False), ("", (7, 5), True),
    # torch's names: Ampere is 8.0;8.6+PTX (it counted as running anywhere), Volta+Tegra 7.2 alone
    ("Ampere", (7, 5), False), ("Ampere", (8, 9), True), ("Turing;Hopper", (7, 5), True),
    ("Volta+Tegra", (7, 0), False), ("Volta+Tegra", (7, 2), True), ("sm_90", (7, 5), True),
])
def test_which_gpus_a_builds_archs_run_on(archs, capability, runs):
    """The default build without a visible GPU (8.0;9.0+PTX) has no kernels a T4 (7.5) or V100 (7.0) can
    run: "no kernel image is available" at the first launch. Machine code runs on its major version
    at the same or a higher minor one; PTX on any GPU at least its version."""
    from nfinpaint import _extension

    assert _extension.runs_on(archs, capability) is runs
