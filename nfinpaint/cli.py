"""What every command (train, evaluate, inpaint) shares: bad input as one line, warnings, paths.

A command's ``main`` is ``cli.main(run, argv, parser)``: bad input (any
:class:`nfinpaint.errors.NfinpaintError`, :class:`UsageError` among them) prints one line
``error: ...`` and exits with status 2; Ctrl-C that the command does not handle
prints ``aborted`` and exits with 130; warnings print as ``warning: ...``.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from nfinpaint.errors import NfinpaintError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143   # 128 + SIGTERM, as a shell reports a process it ended


class UsageError(NfinpaintError, ValueError):
    """Bad input from the user: printed as one ``error: ...`` line, exit status 2."""


def first_line(text: str, default: str) -> str:
    """The first line of ``text`` (``default`` when it is blank)."""
    lines = text.strip().splitlines()
    return lines[0] if lines else default


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return first_line(str(exc), type(exc).__name__)


def _out_of_memory(exc: BaseException) -> str:
    where = "the GPU" if type(exc).__name__ == "OutOfMemoryError" else "the machine"
    detail = one_line(exc) if str(exc).strip() else ""
    return (f"out of memory on {where}{': ' + detail if detail else ''}; use a smaller --batch-size "
            f"(train: a new run, or --fine-tune RUN, since --resume keeps it), smaller or fewer pictures, "
            f"or another --device")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {str(message).strip().splitlines()[0] if str(message).strip() else category.__name__}\n"


class _DropCudaRuntimeNotice(logging.Filter):
    # torch's extension loader logs this on every CPU-only machine that has a CUDA toolkit;
    # it says nothing the user can act on.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


def _names_print() -> None:
    """A file name that is not valid UTF-8 (Linux names are bytes; Python holds such a byte as a
    surrogate) prints as ``\\udcff`` instead of ending the command in a UnicodeEncodeError: a terminal
    in a UTF-8 locale other than C encodes strictly."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError, AttributeError):
                stream.reconfigure(errors="backslashreplace")


def _gone(exc: OSError) -> bool:
    """Whether writing a stream failed because nobody reads it: a pipe whose reader has gone, or a
    descriptor that was closed (``2>&-``)."""
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EBADF


class _ReaderMayLeave:
    """``sys.stdout`` or ``sys.stderr`` that goes on when its reader has gone (``| head -1``,
    ``2>&1 | head -1``, ``2>&-``): what is written after is dropped, and the work goes on to write its
    files (a BrokenPipeError from a progress line, or a progress bar's on stderr, once ended a fill in a
    traceback, its output unwritten)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if not _gone(exc):
                raise
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if not _gone(exc):
                raise
            self._reader_gone()

    def _reader_gone(self) -> None:
        # the buffered text goes to /dev/null instead, as does everything after (and Python's own flush at exit)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _closed_streams_to_devnull() -> None:
    """A standard stream whose descriptor was closed before the command started (``2>&-``): Python then
    has no ``sys.stderr``, and the descriptor is free for the next file opened, where a library's own
    writes to it would land.  It is given /dev/null."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            with contextlib.suppress(OSError):
                setattr(sys, name, open(fd, "w", closefd=False))


@contextlib.contextmanager
def _readers_may_leave():
    _closed_streams_to_devnull()
    before = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (None if stream is None else _ReaderMayLeave(stream) for stream in before)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = before


def _interrupt_as_usual() -> None:
    """Ctrl-C raises KeyboardInterrupt again, handled below, once the command's imports are done (during
    them it ends the process at once: nfinpaint._abort_at_startup)."""
    import nfinpaint  # noqa: PLC0415

    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is getattr(nfinpaint, "_abort_at_startup", None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def quiet_startup() -> None:
    """One warning format for every command, no CUDA-runtime notice on CPU-only machines, and any
    file name printable (:func:`_names_print`)."""
    _names_print()
    warnings.formatwarning = _format_warning
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropCudaRuntimeNotice) for f in logger.filters):
        logger.addFilter(_DropCudaRuntimeNotice())


def warn(message: str) -> None:
    """A ``warning: ...`` line on stderr (the same format as Python warnings get)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def help_text(doc: str) -> str:
    """A module docstring as plain ``--help`` text: no reStructuredText/Markdown markup."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)     # Sphinx roles: :mod:`nfinpaint.folders`
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text.replace("``", "")).strip()


class _OneLineParser(argparse.ArgumentParser):
    """An option argparse cannot parse is bad input like any other: one ``error: ...`` line and
    status 2, saying where the options are explained (not argparse's usage block and its own line)."""

    def error(self, message: str):
        text = " ".join(str(message).split())
        self.exit(EXIT_BAD_INPUT, f"error: {text}; see {self.prog} --help\n")


def parser(prog: str, doc: str, **kwargs) -> argparse.ArgumentParser:
    return _OneLineParser(prog=prog, description=help_text(doc),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler), raised where Ctrl-C would be, so that it unwinds the same
    way: temporary files are removed (files.atomic_path), nothing half-written stays."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM raises :class:`Terminated` (the main thread only can take signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(run: Callable[[argparse.Namespace], int | None], argv: Sequence[str] | None,
         arg_parser: argparse.ArgumentParser) -> int:
    """Parse ``argv``, call ``run(args)``; returns the exit status: ``run``'s (0 for None), 2 after
    one ``error:`` line for bad input, 130 after ``aborted`` for an unhandled Ctrl-C (143 for SIGTERM)."""
    quiet_startup()
    _interrupt_as_usual()
    with _readers_may_leave():      # the error lines below too: a reader gone is no reason for a traceback
        args = arg_parser.parse_args(None if argv is None else [str(a) for a in argv])
        try:
            with sigterm_as_interrupt():
                code = run(args)
        except NfinpaintError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except (MemoryError, RuntimeError) as exc:
            # the machine's or a GPU's memory (torch.OutOfMemoryError is a RuntimeError, matched by name so
            # this module need not import torch): not a bug, and nothing the user can read in a traceback
            if not isinstance(exc, MemoryError) and type(exc).__name__ != "OutOfMemoryError":
                raise
            print(f"error: {_out_of_memory(exc)}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            print("\naborted", file=sys.stderr, flush=True)
            return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    return 0 if code is None else code


# --------------------------------------------------------------------------- output paths


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


_NAME_MAX = 255     # bytes in one file name on Linux, macOS and Windows file systems


def check_output_file(path: str | os.PathLike, option: str, example: str = "filled.png") -> Path:
    """Fail now, before any work, if the file ``path`` cannot be written (its folder may be missing);
    ``example``: a file name of the kind the command writes, for the message.  An empty name (an unset
    shell variable) is refused as such: as a path it is the current folder, and "is a folder" hid the cause."""
    if not str(path).strip():
        raise UsageError(f"{option} is empty: give the file to write, such as {example}")
    path = Path(path)
    if len(os.fsencode(path.name)) > _NAME_MAX:
        raise UsageError(f"{option} {path}: the file name is {len(os.fsencode(path.name))} bytes long; "
                         f"file systems take at most {_NAME_MAX}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name such as {path / example}")
    check_output_folder(path.parent, option, of=path)
    return path


def check_output_folder(path: str | os.PathLike, option: str, *, of: Path | None = None) -> Path:
    """Fail now if folder ``path`` cannot be created or written: a plain file on the way, no permission."""
    path = Path(path)
    existing = _nearest_existing(path)
    shown = of if of is not None else path
    if not existing.is_dir():
        raise UsageError(f"{option} {shown}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {shown}: no permission to write in {existing}")
    # access() answers for the mode bits; a file system that takes no new files whatever they say
    # (/sys or /proc as root, a read-only mount) only shows it when one is made, so make one
    from nfinpaint.files import create_new, temp_names  # noqa: PLC0415  (files imports this module)

    probe = None
    try:
        # named before it is made, so a Ctrl-C at any point leaves no probe behind
        for probe in temp_names(existing, ".nfinpaint-probe-", ""):
            if create_new(probe):
                break
    except OSError as exc:
        raise UsageError(f"{option} {shown}: cannot create a file in {existing} "
                         f"({exc.strerror or type(exc).__name__})") from None
    finally:
        if probe is not None:
            probe.unlink(missing_ok=True)
    return path


def open_generator_option(checkpoint: str | None, *, wanted: bool, needed_by: str | None, hint: str = "",
                          stream=None):
    """The generator of a command's ``--checkpoint``; without one, the shipped default when
    ``wanted`` (said in one line on ``stream``, stderr by default), else None.  ``needed_by``
    names what cannot run without a generator (a :class:`UsageError` when there is none)."""
    from nfinpaint import generator_io  # noqa: PLC0415  (torch models: only when a command asks)

    if checkpoint is not None:
        if not str(checkpoint).strip():     # an unset shell variable: not "no --checkpoint"
            raise UsageError("--checkpoint is empty: give a run directory or generator.pt, or leave the option "
                             "out to use the shipped default")
        if not Path(checkpoint).exists():
            raise UsageError(f"--checkpoint {checkpoint}: no such file or directory")
        try:
            return generator_io.open_generator(checkpoint)
        except generator_io.GeneratorFileError as exc:
            raise UsageError(f"--checkpoint {checkpoint}: {one_line(exc)}") from None
    if not wanted:
        return None
    loaded = generator_io.open_generator(None)
    if loaded is not None:
        print(f"note: no --checkpoint given: using the shipped default generator {loaded.describe()}",
              file=stream or sys.stderr)
    elif needed_by:
        raise UsageError(f"{needed_by} needs --checkpoint PATH (a run directory or generator.pt): this installation "
                         f"has no shipped default generator (nfinpaint/{generator_io.DEFAULT_GENERATOR}){hint}")
    return loaded
