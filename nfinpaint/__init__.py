"""nfinpaint: generative image inpainting with neural features, fast.

Importing the package loads the compiled operators when they are built (so
that ``torch.ops.nfinpaint`` is populated) but does not require them: the
models and the pure-PyTorch references work without, and the code paths that
need them say so when called.
"""
from nfinpaint import _extension

__version__ = "0.1.0"

_extension._load()
