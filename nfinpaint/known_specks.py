"""Known specks inside a hole: a few pixels a selection missed, filled over and then met exactly.

A magic-wand or threshold selection often misses a few pixels of the thing it selects, and leaves
them known inside the hole.  The network reads each such speck as context and answers with a light or
dark halo around it; its fill then loses to biharmonic's, which meets the speck smoothly.  Here the
network fills the hole as if the specks were hole too, and its fill is then moved, by the biharmonic
interpolation of its error at the specks (0 on the hole's rim), to meet them: smoothly, exactly.

A speck is a 4-connected known component of at most :data:`SPECK_AREA` pixels that the hole encloses
(it does not touch the picture's edge) and that lies outside the sparse rule's reach
(:func:`nfinpaint.neural_fill.sparse_weight`): where the known pixels are a sparse lattice or salt,
that rule already hands the fill to the base fill, which uses every one of them.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from nfinpaint.initial_fill import multiscale_biharmonic_fill

# The largest speck, in pixels: a 5x5 block.  Larger known islands are context the network reads well.
SPECK_AREA = 25
# Steps per level of the coarse-to-fine solve of the correction (as the sparse rule's base fill).
MEET_ITERATIONS = 128
# Pixels beyond a corrected hole's box that the solve reads (the biharmonic stencil reaches two).
_MARGIN = 4
_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = np.ones((3, 3), bool)


def find(hole: np.ndarray, sparse_weight=None) -> np.ndarray | None:
    """The specks (H, W) bool of (H, W) bool ``hole``, or None when it has none.  ``sparse_weight``:
    the sparse rule's weight function (:func:`nfinpaint.neural_fill.sparse_weight`), whose reach the
    specks stay out of."""
    known = ~hole
    labels, count = ndimage.label(known, structure=_FOUR)
    if count < 2:                   # one known region: nothing is enclosed
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = sizes <= SPECK_AREA
    small[0] = False
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small[edge] = False
    if not small.any():
        return None
    specks = small[labels]
    if sparse_weight is not None:
        weight = sparse_weight(hole)
        if weight is not None:
            # a speck any of whose neighbouring hole pixels the sparse rule weighs stays its context
            reached = ndimage.maximum_filter(weight, size=3) > 0
            touched = np.unique(labels[specks & reached])
            specks &= ~np.isin(labels, touched)
    return specks if specks.any() else None


def absorb(labels: np.ndarray, specks: np.ndarray) -> np.ndarray:
    """``labels`` (of the holes, 8-connected) with each speck given its enclosing hole's label."""
    out = labels.copy()
    grown = ndimage.grey_dilation(labels, footprint=_EIGHT)     # a speck's 8-ring is all one hole
    out[specks] = grown[specks]
    # a speck inside a speck-sized ring of specks (nested): its ring took no label yet, so repeat
    while bool((out[specks] == 0).any()):
        grown = ndimage.grey_dilation(out, footprint=_EIGHT)
        missing = specks & (out == 0)
        out[missing] = grown[missing]
    return out


def meet(filled: torch.Tensor, image: torch.Tensor, filled_over: torch.Tensor, specks: np.ndarray) -> torch.Tensor:
    """``filled`` (3, H, W), the fill of the holes ``filled_over`` (1, H, W) bool that include the
    ``specks``, moved in the holes by the biharmonic interpolation of ``image - filled`` at the specks
    (0 on the rim), so it meets them.  Each hole with specks is solved on its own box."""
    out = filled.clone()
    over = filled_over[0].numpy()
    labels, _ = ndimage.label(over, structure=_EIGHT)
    h, w = over.shape
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not specks[box].any():
            continue
        rows = slice(max(box[0].start - _MARGIN, 0), min(box[0].stop + _MARGIN, h))
        cols = slice(max(box[1].start - _MARGIN, 0), min(box[1].stop + _MARGIN, w))
        mine = torch.from_numpy(labels[rows, cols] == index)
        at_specks = torch.from_numpy(specks[rows, cols]) & mine
        # the hole of the correction: this hole without its specks; known: 0 off it, the error at the specks
        hole = (mine & ~at_specks).float()[None, None]
        error = torch.where(at_specks, image[:, rows, cols] - filled[:, rows, cols], 0.0)[None]
        correction = multiscale_biharmonic_fill(error, hole, MEET_ITERATIONS, MEET_ITERATIONS)[0]
        out[:, rows, cols] = torch.where(mine, (filled[:, rows, cols] + correction).clamp(0, 1), out[:, rows, cols])
    return out
