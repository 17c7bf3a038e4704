"""Colours nobody sees: the known pixels of a picture under alpha 0.

A cut-out's transparent surround keeps whatever colour its exporter left there: the old background
(background-removal tools leave it), black, white.  Read as context, that colour leaked into every
hole beside the cut-out's edge, so the fill of what the user sees depended on what they cannot see:
a blue disc on a transparent surround, with a hole across its rim, came back with a rim of the
hidden colour (up to 167 levels off the disc's blue under a hidden green).

For the fill, each such pixel reads as the nearest visible known pixel's colour, the "alpha
bleeding" that texture tools do for the same reason; the pixels themselves come back unchanged.
Only alpha 0 is hidden: a faint pixel's colour is still its own (alpha is not premultiplied here).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def hidden_pixels(alpha: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) bool: where ``alpha`` (H, W), of any dtype, is 0 (or below, for float)."""
    alpha = alpha.numpy(force=True) if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    return alpha <= 0


def seen_context(image: torch.Tensor, hole: torch.Tensor, hidden: np.ndarray | torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(``image`` (C, H, W) with each hidden known pixel's colour replaced by the nearest visible known
    pixel's, the (H, W) bool tensor of the pixels replaced), for ``hole`` (H, W) bool and ``hidden``
    (H, W) bool.  ``image`` itself and None when nothing is replaced: no hidden known pixel, or no
    visible known pixel to take a colour from."""
    hole_np = hole.numpy(force=True).astype(bool)
    hidden_np = hidden.numpy(force=True) if isinstance(hidden, torch.Tensor) else np.asarray(hidden)
    if hidden_np.shape != hole_np.shape:
        raise ValueError(f"the transparency is {hidden_np.shape[1]}x{hidden_np.shape[0]} but the picture is "
                         f"{hole_np.shape[1]}x{hole_np.shape[0]} (width x height)")
    replace = hidden_np.astype(bool) & ~hole_np
    seen = ~hidden_np.astype(bool) & ~hole_np
    if not replace.any() or not seen.any():
        return image, None
    # indices of the nearest seen pixel, for every pixel (distances not needed: int32 indices only), kept
    # as flat indices of the pixels replaced alone: on a 50-megapixel cut-out the rest is gigabytes
    nearest = ndimage.distance_transform_edt(~seen, return_distances=False, return_indices=True)
    to = np.flatnonzero(replace)
    width = replace.shape[1]
    source = nearest[0].reshape(-1)[to].astype(np.int64) * width + nearest[1].reshape(-1)[to]
    del nearest
    out = image.contiguous().clone()
    flat = out.view(out.shape[0], -1)
    flat[:, torch.from_numpy(to).to(out.device)] = flat[:, torch.from_numpy(source).to(out.device)]
    return out, torch.from_numpy(replace)
