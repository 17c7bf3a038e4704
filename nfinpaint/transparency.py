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
    # indices of the nearest seen pixel, for every pixel (distances not needed: int32 indices only)
    nearest = ndimage.distance_transform_edt(~seen, return_distances=False, return_indices=True)
    ys, xs = np.nonzero(replace)
    from_y = torch.from_numpy(nearest[0][ys, xs]).to(image.device)
    from_x = torch.from_numpy(nearest[1][ys, xs]).to(image.device)
    ys_t, xs_t = torch.from_numpy(ys).to(image.device), torch.from_numpy(xs).to(image.device)
    out = image.clone()
    out[:, ys_t, xs_t] = image[:, from_y, from_x]
    return out, torch.from_numpy(replace)
