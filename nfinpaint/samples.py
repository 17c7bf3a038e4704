"""Sample grids written during training: one row per image, original | masked | filled."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from nfinpaint.images import save_image


def sample_grid(original: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor, *, scale: int = 4,
                pad: int = 2) -> torch.Tensor:
    """(3, H', W') grid of N rows x 3 columns: original, masked (hole shown white), filled.

    Tiny training crops are enlarged ``scale`` times (nearest) so the samples
    can be looked at.
    """
    original, mask, filled = (t.detach().float().cpu().contiguous() for t in (original, mask, filled))
    masked = original * (1 - mask) + mask
    n, _, h, w = original.shape
    tiles = torch.stack([original, masked, filled], dim=1).clamp(0, 1)  # (N, 3 cols, 3, h, w)
    if scale > 1:
        tiles = F.interpolate(tiles.flatten(0, 1), scale_factor=scale, mode="nearest").unflatten(0, (n, 3))
        h, w = h * scale, w * scale
    grid = torch.ones(3, n * (h + pad) + pad, 3 * (w + pad) + pad)
    for r in range(n):
        for c in range(3):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            grid[:, top:top + h, left:left + w] = tiles[r, c]
    return grid


def save_samples(path: str | os.PathLike, original: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> None:
    save_image(sample_grid(original, mask, filled), path)
