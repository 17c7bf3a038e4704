"""nfinpaint: generative image inpainting with neural features, fast.

Importing the package loads the compiled operators when they are built (so
that ``torch.ops.nfinpaint`` is populated) but does not require them: the
models and the pure-PyTorch references work without, and the code paths that
need them say so when called.
"""
import os
import pkgutil
import re
import sys

# `python -m nfinpaint.train` in the repository root imports this source folder,
# which holds neither the compiled _C nor the Triton kernels (kernels/ installs
# as nfinpaint.kernels): let submodules also resolve from the installed copy.
__path__ = pkgutil.extend_path(__path__, __name__)


def _tree_kernels() -> None:
    """In a source tree (kernels/ and setup.py beside this folder), ``nfinpaint.kernels`` is the tree's
    kernels/, not the installed copy that the line above finds: an edit there, or a pull that changed it,
    ran the installed kernels without a word until the next ``pip install .``.  (Its ``__init__`` imports
    nothing: this costs no import of triton.)"""
    import importlib.util

    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    init = os.path.join(tree, "kernels", "__init__.py")
    if f"{__name__}.kernels" in sys.modules or not (os.path.isfile(init)
                                                    and os.path.isfile(os.path.join(tree, "setup.py"))):
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.kernels", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    globals()["kernels"] = module       # what the import system binds after a submodule's import


_tree_kernels()


# the console scripts of pyproject.toml's [project.scripts]
_COMMANDS = ("nfinpaint-train", "nfinpaint-evaluate", "nfinpaint-inpaint", "nfinpaint-serve")


# the interpreter's flags that take no value, then its -m
_M_FLAGS = r"-[bBdEiIOPqsSuv]*m"


def _run_as_command() -> bool:
    """Whether this process is an nfinpaint command (``python -m nfinpaint.X`` or an ``nfinpaint-X``
    script) rather than a program that imports the package.  Only the interpreter's own ``-m`` counts
    (a program's arguments may hold ``-m nfinpaint.pt``): while ``-m``'s module is being found, which
    is when this package is imported, ``sys.argv`` is ``["-m", *its arguments]``, so the module's name
    is the word of ``sys.orig_argv`` just before them."""
    argv = sys.argv or [""]
    if argv[0] == "-m":
        orig = getattr(sys, "orig_argv", [])
        at = len(orig) - len(argv)
        if not 0 < at < len(orig):
            return False
        # -m and the name as two words, or as one (-mnfinpaint.X), after flags that take no value (-Bm)
        return bool(re.fullmatch(_M_FLAGS, orig[at - 1]) and orig[at].startswith("nfinpaint.")
                    or re.fullmatch(_M_FLAGS + r"nfinpaint\..+", orig[at]))
    name = os.path.basename(argv[0])
    return name in _COMMANDS or name.removesuffix(".exe") in _COMMANDS or name.removesuffix("-script.py") in _COMMANDS


def _abort_at_startup(signum, frame) -> None:
    """A command's Ctrl-C before its ``cli.main`` runs: while it imports torch, scipy, ... (a second
    or more), nothing is written yet, so it ends there, saying "aborted" as it does later.  Raised as
    KeyboardInterrupt inside an import, it gave a traceback, or left numpy half-imported and ended in
    a RecursionError."""
    print("\naborted", file=sys.stderr, flush=True)
    os._exit(130)


if _run_as_command():
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:    # cli.main puts it back
        signal.signal(signal.SIGINT, _abort_at_startup)

try:
    # importing torch takes seconds: a command's Ctrl-C then says "aborted" as it does later
    # (cli.main), not a traceback through torch's import; a program's import keeps the exception
    from nfinpaint import _extension  # noqa: E402

    _extension._load()
except KeyboardInterrupt:
    if not _run_as_command():
        raise
    print("\naborted", file=sys.stderr, flush=True)
    raise SystemExit(130) from None

__version__ = "0.1.0"


def __getattr__(name):
    # the array API loads on first use, so that `import nfinpaint` stays cheap
    if name in ("Inpainter", "InpaintError", "fill_holes"):
        from nfinpaint import api  # noqa: PLC0415

        return getattr(api, name)
    if name == "NfinpaintError":     # the base of every error raised for input nfinpaint cannot use
        from nfinpaint.errors import NfinpaintError  # noqa: PLC0415

        return NfinpaintError
    raise AttributeError(f"module 'nfinpaint' has no attribute {name!r}")
