"""A fully convolutional generator for pictures at their own resolution.

The paper's generator (``networks.Generator``) has a fixed-size fc bottleneck:
it sees 24x24 or 64x64 crops and nothing else.  People inpaint 0.2-50
megapixel photographs with holes from a thin scratch to an object hundreds of
pixels across.  :class:`FullResGenerator` keeps what worked at 24x24 (a
contrast-normalised correction of a smooth fill of the hole) and drops the fc
layer:

* base: :func:`~nfinpaint.initial_fill.multiscale_biharmonic_fill`, a
  coarse-to-fine smooth fill of holes of any size (level with scikit-image's
  biharmonic inpainting on photographs), or a base the caller passes (the
  upsampled fill of a coarser pass, see :mod:`nfinpaint.neural_fill`);
* a U-Net: a stem at full resolution, three stride-2 stages to 1/8, residual
  blocks of dilated 3x3 convolutions there (dilations 1, 2, 4, 8: a receptive
  field of about 500 pixels), and a decoder of nearest x2 upsampling + conv
  with a skip from the encoder at each resolution;
* no normalisation layer: a pixel's output does not depend on the batch or
  on how large the window around it is, so windows of any size give the
  same fill (up to the border), in training and at inference;
* the last convolution starts at zero, so an untrained generator *is* the
  base fill, and training learns the correction.

Any height and width work (the input is padded by replicating its edge to a multiple
of 8 and the output cropped back).  ``image_size`` is the side of the
training crops, which the discriminators and the window planning of
``inpaint`` read.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfinpaint.initial_fill import LEVEL_ITERATIONS, multiscale_biharmonic_fill
from nfinpaint.networks import known_channel_stats, known_stats

WIDTHS = (32, 64, 96, 128)       # full, 1/2, 1/4, 1/8 resolution
DILATIONS = (1, 2, 4, 8)         # one residual block (two convs) each, at 1/8 resolution
STRIDE = 8                       # three stride-2 stages
# Context the decoder needs around the pixels it is asked for (full-resolution pixels, on the stride
# grid): its three 3x3 convolutions each read one pixel around their output, at 1/4, 1/2 and 1/1, so
# 1 pixel at 1/8 (8 here) is the least that gives exact values; 16 leaves room.
DECODER_MARGIN = 16
# The window's contrast normalisation: "pooled", the mean and deviation of the known pixels over all
# three channels (what every generator so far trained with); "channel", each channel's own mean and the
# deviation around it (a flat colour is then a flat zero input, filled exactly, whatever its hue).
STATS = {"pooled": known_stats, "channel": known_channel_stats}


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(_conv(width, width, dilation=dilation), _act(), _conv(width, width, dilation=dilation))
        self.act = _act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class FullResGenerator(nn.Module):
    """Fully convolutional residual U-Net over a multiscale biharmonic fill (see the module doc).

    ``forward(masked, mask, base=None, tile=None)``: ``masked`` (N,3,H,W) in [0,1], ``mask``
    (N,1,H,W), 1 = hole, any H and W; whatever ``masked`` holds in the hole is
    ignored.  Returns (N,3,H,W) in [0,1]: the raw generation everywhere (compose
    with the known pixels outside).
    """

    variant = "fullres"

    def __init__(self, image_size: int = 128, *, widths: tuple[int, ...] | list[int] = WIDTHS,
                 dilations: tuple[int, ...] | list[int] = DILATIONS, base_iterations: int = LEVEL_ITERATIONS,
                 stats: str = "pooled", variant: str = "fullres"):
        super().__init__()
        if variant != self.variant:
            raise ValueError(f"FullResGenerator is variant {self.variant!r}, got {variant!r}")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 16 or image_size % STRIDE:
            raise ValueError(f"the fullres generator trains on crops whose side is a multiple of {STRIDE} "
                             f"from 16 up, got image_size={image_size!r}")
        widths, dilations = [int(w) for w in widths], [int(d) for d in dilations]
        if len(widths) != 4:
            raise ValueError(f"widths must give 4 numbers (full, 1/2, 1/4, 1/8 resolution), got {widths}")
        if not isinstance(base_iterations, int) or base_iterations < 1:
            raise ValueError(f"base_iterations must be a positive integer, got {base_iterations!r}")
        if stats not in STATS:
            raise ValueError(f"stats must be one of {', '.join(STATS)}, got {stats!r}")
        self.config = dict(image_size=image_size, widths=widths, dilations=dilations,
                           base_iterations=base_iterations, stats=stats, variant=variant)
        self.image_size = image_size
        # conjugate-gradient steps per pyramid level of the base fill: cheap in training (8); a
        # generator file may ask for more at inference (the shipped one runs 32, chosen on validation)
        self.base_iterations = base_iterations
        # how the window is normalised (STATS); a file without the key trained, and runs, pooled
        self.stats = stats
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(_conv(4, w0), _act(), _conv(w0, w0), _act())
        self.down1 = nn.Sequential(_conv(w0, w1, stride=2), _act(), _conv(w1, w1), _act())
        self.down2 = nn.Sequential(_conv(w1, w2, stride=2), _act(), _conv(w2, w2), _act())
        self.down3 = nn.Sequential(_conv(w2, w3, stride=2), _act())
        self.middle = nn.Sequential(*[_DilatedBlock(w3, d) for d in dilations])
        self.up2 = nn.Sequential(_conv(w3 + w2, w2), _act())
        self.up1 = nn.Sequential(_conv(w2 + w1, w1), _act())
        self.up0 = nn.Sequential(_conv(w1 + w0, w0), _act())
        self.to_rgb = nn.Conv2d(w0, 3, 3, padding=1)
        # Without a normalisation layer the scale of every activation comes from the init: He init
        # for the leaky ReLUs keeps it near 1 through the depth (PyTorch's default shrinks it ~3x a
        # layer, leaving the decoder's features at 1e-2 and the early layers without gradient).
        # Each residual block's last conv starts small, so the blocks start near the identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        for block in self.middle:
            block.body[-1].weight.data.mul_(0.1)
        # start as the base fill exactly; training learns the correction
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def base_fill(self, masked: Tensor, mask: Tensor) -> Tensor:
        """The smooth fill the network corrects: the coarse-to-fine biharmonic relaxation of the hole."""
        return multiscale_biharmonic_fill(masked * (1 - mask), mask, self.base_iterations)

    def forward(self, masked: Tensor, mask: Tensor, base: Tensor | None = None, tile: int | None = None,
                on_tile: Callable[[], None] | None = None, halo: int | None = None) -> Tensor:
        n, c, h, w = masked.shape
        if c != 3 or mask.shape != (n, 1, h, w):
            raise ValueError(f"FullResGenerator expects masked (N,3,H,W) and mask (N,1,H,W); got "
                             f"{tuple(masked.shape)} and {tuple(mask.shape)}")
        mask = mask.to(masked.dtype)
        filled = self.base_fill(masked, mask) if base is None else torch.where(mask > 0.5, base, masked)
        return self.refine(filled.to(masked.dtype), mask, tile=tile, on_tile=on_tile, halo=halo)

    @property
    def halo(self) -> int:
        """How far (pixels) an input pixel reaches into the correction: the dilated bottleneck's two
        3x3 convolutions per block at 1/8 resolution, plus 32 for the convolutions at 1/1 to 1/4 and
        the alignment of the stride-8 grid (measured 271 for the default dilations; tests check that
        tiles with this halo reproduce the whole pass).  A multiple of 8, as tiles must start on that grid."""
        return STRIDE * 2 * sum(self.config["dilations"]) + 32

    def refine(self, filled: Tensor, mask: Tensor, tile: int | None = None,
               on_tile: Callable[[], None] | None = None, halo: int | None = None) -> Tensor:
        """The network's pass: ``filled`` (a base fill in the hole, the known pixels outside) plus the
        correction the network predicts, clamped to [0, 1].  No branch on the shape (the padding to a
        multiple of 8 is always applied, by 0 pixels when none is needed), so the export traces it as is.

        ``tile`` (inference): the correction is computed only around the holes, in tiles that each see
        :attr:`halo` pixels of context around their output and compute at most ``tile + 2 * halo``
        pixels a side (:func:`tile_plan`: ``tile`` x ``tile`` output pixels inside the picture, more where
        the picture's border cuts the halo, each tile shrunk to the box of its own holes; the decoder runs
        on that box alone, :meth:`_correction`), so the holes get exactly the whole pass's values (to
        float rounding) in bounded memory; outside those boxes
        the result is ``filled`` itself (inference composites the known pixels back anyway).
        ``on_tile`` is called after each tile (progress).  ``halo`` (with ``tile``): less context than
        :attr:`halo` around each tile, a multiple of 8; the holes' values are then the network's on
        that much context, no longer the whole pass's (inference's windows of thin holes)."""
        if halo is not None and (tile is None or halo < 0 or halo % STRIDE):
            raise ValueError(f"halo must be a non-negative multiple of {STRIDE}, given with tile; got {halo!r}")
        h, w = filled.shape[-2], filled.shape[-1]
        # contrast normalisation: the network sees the window in units of its own known pixels'
        # spread and its correction is scaled back by it
        centre, spread = STATS[self.stats](filled, mask)
        x = torch.cat([(filled - centre) / spread, mask], dim=1)
        x = F.pad(x, (0, (STRIDE - w % STRIDE) % STRIDE, 0, (STRIDE - h % STRIDE) % STRIDE), mode="replicate")
        if tile is None:
            correction = self._correction(x)[:, :, :h, :w]
        else:
            correction = self._tiled_correction(x, mask, tile, on_tile, halo)[:, :, :h, :w]
        return (filled + spread * correction).clamp(0.0, 1.0)

    def _correction(self, x: Tensor, box: tuple[int, int, int, int] | None = None) -> Tensor:
        """The network's output for the padded input ``x``; only on ``box`` (top, bottom, left, right on the
        stride-8 grid of ``x``) when given.  The encoder must see all of ``x`` (the dilated blocks reach
        ~270 px), but the decoder, over half the network's work per pixel, is local: it runs on the box
        grown by :data:`DECODER_MARGIN`, which gives the box the whole pass's values.  A hole's box is
        a ninth of a window grown by the hole's thickness, and a scratch's tile a fraction of its halo."""
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        y = self.middle(self.down3(s2))
        if box is not None:
            top, bottom, left, right = box
            t, b = max(0, top - DECODER_MARGIN), min(x.shape[-2], bottom + DECODER_MARGIN)
            l, r = max(0, left - DECODER_MARGIN), min(x.shape[-1], right + DECODER_MARGIN)
            y, s2, s1, s0 = (f[:, :, t // k:b // k, l // k:r // k]
                             for f, k in ((y, 8), (s2, 4), (s1, 2), (s0, 1)))
        y = self.up2(torch.cat([_up(y), s2], dim=1))
        y = self.up1(torch.cat([_up(y), s1], dim=1))
        y = self.up0(torch.cat([_up(y), s0], dim=1))
        out = self.to_rgb(y)
        return out if box is None else out[:, :, top - t:bottom - t, left - l:right - l]

    def _tiled_correction(self, x: Tensor, mask: Tensor, tile: int, on_tile: Callable[[], None] | None = None,
                          halo: int | None = None) -> Tensor:
        """:meth:`_correction` of the padded input ``x`` where ``mask`` has holes, tile by tile
        (:func:`tile_plan`).  Every tile starts on the stride-8 grid, so its downsampled grids are the whole
        pass's, and reaches :attr:`halo` past its output (or to the border, where the whole pass's zero
        padding is the tile's too)."""
        out = x.new_zeros(x.shape[0], 3, x.shape[-2], x.shape[-1])
        halo = self.halo if halo is None else halo
        for box in tile_plan(mask, tile, halo):
            top, bottom, left, right = box
            t, b, l, r = tile_input(box, halo, x.shape[-2], x.shape[-1])
            out[:, :, top:bottom, left:right] = self._correction(x[:, :, t:b, l:r],
                                                                 (top - t, bottom - t, left - l, right - l))
            if on_tile is not None:
                on_tile()
        return out


def tile_plan(mask: Tensor, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """The output boxes (top, bottom, left, right) that :meth:`FullResGenerator.refine` computes, in
    tiles of at most ``tile`` output pixels a side with ``halo`` pixels of context, for the holes of
    ``mask`` (N, 1, H, W): the holes' box cut by :func:`tile_spans`, each piece shrunk to the box of
    its own holes on the stride-8 grid (a scratch across a tile computes a band, not the tile) and
    left out when it has none.  Every box starts on the stride-8 grid and ends on it or at the border
    of the input padded to a multiple of 8."""
    if tile < STRIDE:
        raise ValueError(f"tile must be at least {STRIDE} pixels, got {tile}")
    tile -= tile % STRIDE
    holes = mask.amax(dim=(0, 1)) > 0.5
    size_h, size_w = padded(holes.shape[0]), padded(holes.shape[1])
    rows, cols = torch.nonzero(holes, as_tuple=True)
    if rows.numel() == 0:
        return []
    boxes = []
    for top, bottom in tile_spans(int(rows.min()), int(rows.max()), size_h, tile, halo):
        for left, right in tile_spans(int(cols.min()), int(cols.max()), size_w, tile, halo):
            r, c = torch.nonzero(holes[top:bottom, left:right], as_tuple=True)
            if r.numel() == 0:
                continue        # scattered holes (scratches) leave tiles of their box empty
            r0, r1, c0, c1 = int(r.min()) + top, int(r.max()) + top + 1, int(c.min()) + left, int(c.max()) + left + 1
            boxes.append((r0 - r0 % STRIDE, min(bottom, r1 + (-r1) % STRIDE),
                          c0 - c0 % STRIDE, min(right, c1 + (-c1) % STRIDE)))
    return boxes


def padded(size: int) -> int:
    """``size`` rounded up to the stride-8 grid: the side of the input the network's pass sees."""
    return size + (-size) % STRIDE


def tile_input(box: tuple[int, int, int, int], halo: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The input rows and columns (top, bottom, left, right) that the tile of output ``box`` computes in a
    padded input of ``height`` x ``width``: the box grown by ``halo``, cut at the border."""
    top, bottom, left, right = box
    return max(0, top - halo), min(height, bottom + halo), max(0, left - halo), min(width, right + halo)


def tile_spans(first: int, last: int, size: int, tile: int, halo: int) -> list[tuple[int, int]]:
    """The output spans, along one axis of ``size`` pixels, of the tiles that cover ``first``..``last``:
    each starts on the stride-8 grid and computes its span plus up to ``halo`` pixels of context on each
    side (cut at 0 and ``size``), at most ``tile + 2 * halo`` pixels in all; each as long as that allows,
    from the first on, which makes the fewest tiles.  Every cut between two tiles computes ``2 * halo``
    pixels twice, so the fewest cuts compute the least: tiles of ``tile`` output pixels took a 1024x768
    picture's holes in two pieces, 1.5x its area, where one piece (768 + 2 * 272 pixels a side) does."""
    start, stop = first - first % STRIDE, min(size, last + 1 + (-(last + 1)) % STRIDE)
    spans = []
    while start < stop:
        low = max(0, start - halo)          # where the tile's computation starts
        end = stop if size - low <= tile + 2 * halo else min(stop, low + tile + halo)
        end = stop if end == stop else end - end % STRIDE      # at least start + tile: tile >= STRIDE
        spans.append((start, end))
        start = end
    return spans


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
