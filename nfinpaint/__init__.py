"""nfinpaint: generative image inpainting with neural features, fast.

Importing the package loads the compiled operators when they are built (so
that ``torch.ops.nfinpaint`` is populated) but does not require them: the
models and the pure-PyTorch references work without, and the code paths that
need them say so when called.
"""
import pkgutil

# `python -m nfinpaint.train` in the repository root imports this source folder,
# which holds neither the compiled _C nor the Triton kernels (kernels/ installs
# as nfinpaint.kernels): let submodules also resolve from the installed copy.
__path__ = pkgutil.extend_path(__path__, __name__)

from nfinpaint import _extension  # noqa: E402

__version__ = "0.1.0"

_extension._load()


def __getattr__(name):
    # the array API loads on first use, so that `import nfinpaint` stays cheap
    if name in ("Inpainter", "InpaintError", "fill_holes"):
        from nfinpaint import api  # noqa: PLC0415

        return getattr(api, name)
    if name == "NfinpaintError":     # the base of every error raised for input nfinpaint cannot use
        from nfinpaint.errors import NfinpaintError  # noqa: PLC0415

        return NfinpaintError
    raise AttributeError(f"module 'nfinpaint' has no attribute {name!r}")
