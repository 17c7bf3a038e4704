"""The generator registry: every generator by name, read by config validation, training, loading,
inpainting and the probe script.  A new generator is one class and one entry here.

Each entry names the generator's class (whose ``variant`` class attribute is the registry name, stored
in the ``config`` dict of its file; ``cls(image_size, **config)`` builds it), which crop sizes it
takes, whether it fills windows of any size at a picture's own resolution (``full_resolution``)
or only its fixed ``image_size``, and the smallest batch it trains on (``min_batch``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nfinpaint.fullres_generator import FullResGenerator
from nfinpaint.networks import PaperGenerator, ResidualGenerator, ResidualUNetGenerator, generator_stages


@dataclass(frozen=True)
class GeneratorSpec:
    cls: type[nn.Module]                     # cls(image_size, **stored_config) builds it; cls.variant = name
    summary: str
    check_size: Callable[[int], object]      # raises ValueError for crop sizes it cannot take
    full_resolution: bool
    min_batch: int = 1                       # items per process a training step needs (BatchNorm1d: 2)
    needs_operators: bool = True             # its base fill runs the compiled solver (nfinpaint::biharmonic_cg)

    @property
    def name(self) -> str:
        return self.cls.variant

    def build(self, image_size: int, **config) -> nn.Module:
        """A new generator for ``image_size`` crops; ``config``: the rest of its stored config."""
        return self.cls(image_size, **config)


def _fullres_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 16 or image_size % 8:
        raise ValueError(f"the fullres generator trains on crops whose side is a multiple of 8 from 16 up, "
                         f"got image_size={image_size!r}")


GENERATORS: dict[str, GeneratorSpec] = {entry.name: entry for entry in (
    # the fixed-size ones normalise their fully connected layers over the batch: one item has no spread
    GeneratorSpec(PaperGenerator, "the paper's encoder-decoder (Tables 1-2), fixed size", generator_stages, False, 2,
                  needs_operators=False),
    GeneratorSpec(ResidualGenerator, "the paper's network correcting a biharmonic fill, fixed size",
                  generator_stages, False, 2),
    GeneratorSpec(ResidualUNetGenerator, "residual, with U-Net skips, fixed size", generator_stages, False, 2),
    GeneratorSpec(FullResGenerator, "fully convolutional residual U-Net over a multiscale biharmonic fill, any size",
                  _fullres_size, True),
)}


def spec(name: str) -> GeneratorSpec:
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[name]


def build_generator(name: str, image_size: int, **config) -> nn.Module:
    """A new (untrained) generator ``name`` for ``image_size`` training crops; ``config``: settings of
    its own (a full-resolution generator's ``stats`` and ``base_iterations``)."""
    return spec(name).build(image_size, **config)


def generator_from_config(config: dict) -> nn.Module:
    """Rebuild a generator from the ``config`` dict it stores (``variant`` names its registry entry)."""
    config = dict(config)
    name = config.pop("variant", "paper")
    image_size = config.pop("image_size")
    return spec(name).build(image_size, **config)


def _spec_of(generator: nn.Module) -> GeneratorSpec:
    return spec(getattr(generator, "config", {}).get("variant", "paper"))


def is_full_resolution(generator: nn.Module) -> bool:
    """Whether ``generator`` fills windows of any size at their own resolution."""
    return _spec_of(generator).full_resolution


def needs_operators(generator: nn.Module) -> bool:
    """Whether ``generator`` runs the compiled operators (its base fill's solver): it cannot run without
    the extension."""
    return _spec_of(generator).needs_operators
