"""An exponential moving average of a model's weights: what training validates, samples and exports
when ``ema_decay`` > 0 (beyond the paper), and what ``scripts/probe_generator.py`` scores."""
from __future__ import annotations

import copy

import torch


class WeightAverage:
    """``model``: a frozen copy in eval mode whose weights follow the trained model's; BatchNorm
    statistics (buffers) are the trained model's current ones."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model`` after one of its updates (outside a compiled step)."""
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
