"""Filling holes with a generator: the hole blanked once, the generator run once, the result
composited once.  Training's samples and validation, evaluation, ``inpaint`` (its windows, at a
picture's own resolution or scaled to a fixed-size generator), the API and the export check all
fill through :func:`fill`."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from nfinpaint.errors import NfinpaintError
from nfinpaint.masks import blank_holes


class NonFiniteOutput(NfinpaintError, ValueError):
    """The generator produced NaN or infinite values: filling with them would paint garbage."""


@torch.inference_mode()
def fill(generator: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor,
         autocast_dtype: torch.dtype | None = None, base: torch.Tensor | None = None,
         tile: int | None = None, on_tile: Callable[[], None] | None = None,
         halo: int | None = None) -> torch.Tensor:
    """Fill the holes of (N, 3, H, W) ``image`` given (N, 1, H, W) ``mask`` (1 = hole), in eval mode.

    The generator sees the image with its holes blanked; the result is its
    output (clamped to [0, 1]) in the holes and ``image``'s own pixels, exactly,
    everywhere else.  ``autocast_dtype`` runs the generator under autocast
    (training's bf16); ``base`` is a full-resolution generator's starting fill
    of the holes in place of its own smooth one, ``tile`` the largest side of its
    network's tiles (bounded memory, the same result: ``FullResGenerator.refine``), ``on_tile`` called
    after each tile, ``halo`` the context around each tile when less than the network's (``refine``).
    The result is float32.
    """
    was_training = generator.training
    if was_training:       # Module.train walks every submodule: ~1 ms a call, twice a window's pass
        generator.eval()
    try:
        context = nullcontext() if autocast_dtype is None else torch.autocast(image.device.type, autocast_dtype)
        extra = {name: value for name, value in (("base", base), ("tile", tile), ("on_tile", on_tile),
                                                 ("halo", halo)) if value is not None}
        with context:
            generated = generator(blank_holes(image, mask), mask.to(image.dtype), **extra)
        if not bool(torch.isfinite(generated).all()):
            raise NonFiniteOutput("the generator's output is not finite (NaN or infinite) for this input; "
                                  "its weights are broken: use another --checkpoint")
        return torch.where(mask > 0.5, generated.float().clamp(0, 1), image.float())
    finally:
        if was_training:
            generator.train()
