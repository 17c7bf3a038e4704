"""Provenance: what produced a run, an evaluation or a generator file, recorded in each of them
(config.toml, checkpoints, generator.pt, an evaluation's config.json)."""
from __future__ import annotations

import platform

import torch

import nfinpaint
from nfinpaint import _extension


def versions() -> dict[str, str]:
    """What produced a run or an evaluation: package and library versions, extension
    backends, device; recorded in config.toml, checkpoints, generator.pt and config.json."""
    import numpy
    import scipy
    import skimage
    import torchvision

    out = {"nfinpaint": nfinpaint.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
           "scikit-image": skimage.__version__, "cuda": torch.version.cuda or "none"}
    out["nfinpaint._C"] = _extension.build_info()["backends"] if _extension.is_built() else "not built"
    try:
        import cv2
    except ImportError:
        pass
    else:
        out["opencv"] = cv2.__version__
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    # plain str: torch.__version__ is a str subclass that weights_only loading refuses
    return {key: str.__str__(value) for key, value in out.items()}
