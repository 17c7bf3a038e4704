"""Image grids like the paper's Figures 2-4: original | masked | one column per method.

Training's sample grids (original | masked | filled) and evaluation's
figures are both these grids.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from nfinpaint.files import atomic_path
from nfinpaint.images import tensor_to_pil

MIN_CELL = 96  # small images (24x24) are enlarged, pixel-exact, to at least this size
GAP = 2
HEADER = 16


def masked_view(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The input as the method sees it, with the hole painted white."""
    return torch.where(mask > 0.5, torch.ones_like(image), image)


def comparison_grid(originals: torch.Tensor, masks: torch.Tensor,
                    filled: Mapping[str, torch.Tensor], scale: int | None = None) -> Image.Image:
    """One row per image: original, masked, then ``filled[label]`` for each label, with a header.

    ``originals`` is (N, 3, H, W), ``masks`` (N, 1, H, W), each ``filled`` value
    (N, 3, H, W); cells are enlarged by an integer ``scale`` (nearest neighbour,
    so pixels stay visible) to at least :data:`MIN_CELL` pixels by default.
    """
    n, _, h, w = originals.shape
    columns: list[tuple[str, Sequence[torch.Tensor]]] = [
        ("original", originals),
        ("masked", [masked_view(originals[i], masks[i]) for i in range(n)]),
    ]
    columns += list(filled.items())
    if scale is None:
        scale = max(1, math.ceil(MIN_CELL / max(1, min(h, w))))
    cw, ch = w * scale, h * scale
    width = len(columns) * (cw + GAP) + GAP
    height = HEADER + n * (ch + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for col, (label, cells) in enumerate(columns):
        x = GAP + col * (cw + GAP)
        draw.text((x + 2, 2), _fit(draw, font, label, cw - 4), fill=(0, 0, 0), font=font)
        for row in range(n):
            cell = tensor_to_pil(cells[row]).resize((cw, ch), Image.NEAREST)
            canvas.paste(cell, (x, HEADER + row * (ch + GAP)))
    return canvas


def save_comparison_grid(path: str | os.PathLike, originals: torch.Tensor, masks: torch.Tensor,
                         filled: Mapping[str, torch.Tensor]) -> Path:
    """:func:`comparison_grid` written to ``path`` as PNG, atomically."""
    path = Path(path)
    grid = comparison_grid(originals.detach().float().cpu(), masks.detach().float().cpu(),
                           {label: cells.detach().float().cpu() for label, cells in filled.items()})
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


def _fit(draw: ImageDraw.ImageDraw, font, text: str, width: int) -> str:
    """``text`` shortened with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
