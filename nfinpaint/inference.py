"""Filling holes with a generator: the hole blanked once, the generator run once, the result
composited once.  Training's samples and validation, evaluation, ``inpaint`` (its windows, at a
picture's own resolution or scaled to a fixed-size generator), the API and the export check all
fill through :func:`fill`."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch

from nfinpaint.errors import NfinpaintError
from nfinpaint.masks import blank_holes


class NonFiniteOutput(NfinpaintError, ValueError):
    """The generator produced NaN or infinite values: filling with them would paint garbage."""


@contextmanager
def left_as_it_was(module: torch.nn.Module | None) -> Iterator[None]:
    """Put ``module`` back as it was on leaving (each submodule's train/eval mode, and its parameters'
    and buffers' tensors: their device, dtype and layout), whatever a fill did to run it.  A fill takes a
    caller's generator and runs it in eval mode on the fill's device; a training loop that passed its own
    got it back in eval mode (BatchNorm's statistics frozen) and moved.  The tensors kept are the
    originals, so putting them back copies nothing."""
    if module is None:
        yield
        return
    modes = [(m, m.training) for m in module.modules()]
    # with its gradient, which Module.to moves too (in place: the same tensor, other data)
    params = [(m._parameters, k, p, p.data, p.grad, None if p.grad is None else p.grad.data)
              for m in module.modules() for k, p in m._parameters.items() if p is not None]
    buffers = [(m._buffers, k, b) for m in module.modules() for k, b in m._buffers.items() if b is not None]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for table, key, param, data, grad, grad_data in params:
            param.data = data
            if grad is not None:
                grad.data = grad_data
            param.grad = grad
            table[key] = param
        for table, key, buffer in buffers:
            table[key] = buffer


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
                                  "its weights are broken: use another generator file")
        return torch.where(mask > 0.5, generated.float().clamp(0, 1), image.float())
    finally:
        if was_training:
            generator.train()
