"""The generator and the two discriminators of the paper (Tables 1-4), built from the image size.

Layout (see docs/model.md for the reasoning):

* ``Generator(image_size)``, the base of the fixed-size generators: ``stages`` x
  [conv3x3 + BN + ReLU, maxpool 2x2] with widths 32, 64, 128, 256 (Table 1, the
  first ``stages`` of them), fc 1024 (+BN+ReLU), "defc" 256*s*s (+BN+ReLU) reshaped
  to 256 channels at s x s, ``stages`` x [upsample x2 (nearest), conv3x3 + BN + ReLU]
  with the *last* ``stages`` of the widths 64, 64, 32, 32 (Table 2), conv3x3 to RGB.
  ``PaperGenerator`` (registry name ``paper``) ends in a sigmoid: Tables 1-2 plus the conv to
  RGB and the sigmoid that Table 2 leaves out.
  Beyond the paper (measured against it in docs/training.md): ``ResidualGenerator``
  (``residual``) predicts a correction to a biharmonic fill of the hole
  (initial_fill), in units of the crop's own contrast (input normalised by, output
  scaled by the known pixels' spread); ``ResidualUNetGenerator`` (``residual_unet``)
  adds U-Net skips from each encoder stage to the decoder stage of its resolution.
  ``stages`` = how many times the size halves to an integer >= 2, at most 4;
  at least 2 are required, so valid sizes are the multiples of 4 from 8 up.
  24x24 (the ``paper`` preset) -> 3 stages, 3x3 bottleneck, defc 2304;
  64x64 (``paper64``) -> 4 stages, 4x4 bottleneck, defc 4096 = 256x4x4 exactly
  as the tables.
* ``GlobalDiscriminator(image_size)`` (Table 3) and ``LocalDiscriminator(patch_size)``
  (Table 4): conv3x3 s1, then conv4x4 s2 (pad 1, halves the map) for as many of
  the table's stride-2 layers as keep the map >= 2, then conv4x4 s1 (pad 1) to
  one channel; LeakyReLU(0.2), no BatchNorm; the final map is averaged to one
  logit per image (no sigmoid: the losses use the logit form of the BCE).

Everything is channels-last friendly (flatten/reshape go through NHWC order, so
the fc weights mean the same in either memory format) and compiles with
``torch.compile(fullgraph=True)``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nfinpaint.initial_fill import biharmonic_fill

ENCODER_WIDTHS = (32, 64, 128, 256)            # Table 1
DECODER_WIDTHS = (64, 64, 32, 32)              # Table 2
FC_FEATURES = 1024                             # Table 1 "fc"
DEFC_CHANNELS = 256                            # Table 2 "reshape" to 256 channels
GLOBAL_D_WIDTHS = (32, (32, 64, 128, 256, 128))  # Table 3: conv3x3 s1, then conv4x4 s2 ...
LOCAL_D_WIDTHS = (64, (64, 128, 256))            # Table 4
MIN_SIZE = 8
MAX_STAGES = 4
MIN_BOTTLENECK = 2


def _halvings(size: int, limit: int, min_out: int) -> int:
    """How many times ``size`` halves exactly to a value >= min_out, at most ``limit``."""
    count = 0
    while count < limit and size % 2 == 0 and size // 2 >= min_out:
        size //= 2
        count += 1
    return count


def generator_stages(image_size: int) -> int:
    """Number of conv/pool stages the generator uses for ``image_size`` (ValueError if none fit)."""
    if not isinstance(image_size, int) or isinstance(image_size, bool):
        raise ValueError(f"image_size must be an int, got {image_size!r}")
    stages = _halvings(image_size, MAX_STAGES, MIN_BOTTLENECK)
    if image_size < MIN_SIZE or stages < 2:
        raise ValueError(
            f"the generator cannot take image_size={image_size}: valid sizes are multiples of 4 "
            f"from {MIN_SIZE} up (8, 12, 16, 20, 24, ..., 64, ...); the paper preset is 24, paper64 is 64")
    return stages


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    # bias is redundant before BatchNorm
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Generator(nn.Module):
    """The fixed-size generators' common part: the paper's encoder, fc bottleneck and decoder (Tables 1-2).

    ``forward(masked, mask)``: ``masked`` (N,3,S,S) in [0,1], ``mask`` (N,1,S,S),
    1 = hole.  Whatever ``masked`` holds inside the hole is ignored: each
    generator replaces it itself, so callers may pass the zero-filled,
    mean-filled or even the original image without leaking the hole's content.
    Returns (N,3,S,S) in [0,1], the raw generation everywhere (compose with the
    known pixels outside: see losses.composite_and_l2).

    Each subclass is one entry of ``nfinpaint.generators.GENERATORS`` (its class
    attribute ``variant`` is the registry name, stored in ``config``) and says what
    the trunk sees (``_network_input``), what its ``to_rgb`` output means
    (``_network_output``) and, for U-Net skips, which encoder features the decoder
    stages also take (``_skip_widths``, ``_encode``, ``_decode``).  The layers and
    their attribute names (``encoder``, ``fc``, ``defc``, ``decoder``, ``to_rgb``)
    are the same in every subclass, so a generator file's state dict loads by name.

    ``Generator(image_size, variant=name, ...)`` (and so ``Generator(**config)``)
    builds the class registered as ``name``; the default is :class:`PaperGenerator`.
    """

    variant: str = ""     # the registry name; set by each subclass

    def __new__(cls, *args, variant: str | None = None, **kwargs):
        if cls is Generator:
            cls = _registered_generator_class("paper" if variant is None else variant)
        return super().__new__(cls)

    def __init__(self, image_size: int, *, hole_fill: float | tuple[float, float, float] | list[float] = 0.0,
                 encoder_widths: tuple[int, ...] | list[int] = ENCODER_WIDTHS,
                 decoder_widths: tuple[int, ...] | list[int] = DECODER_WIDTHS,
                 fc_features: int = FC_FEATURES, defc_channels: int = DEFC_CHANNELS, variant: str | None = None):
        super().__init__()
        if variant is not None and variant != self.variant:
            raise ValueError(f"{type(self).__name__} is generator variant {self.variant!r}, got {variant!r}")
        stages = generator_stages(image_size)
        encoder_widths, decoder_widths = tuple(encoder_widths), tuple(decoder_widths)
        if len(encoder_widths) < stages or len(decoder_widths) < stages:
            raise ValueError(f"image_size={image_size} needs {stages} encoder and decoder widths, got "
                             f"{len(encoder_widths)} and {len(decoder_widths)}")
        if isinstance(hole_fill, (int, float)):
            fill = [float(hole_fill)] * 3
        else:
            fill = [float(v) for v in hole_fill]
            if len(fill) != 3:
                raise ValueError(f"hole_fill must be a number or 3 numbers (R, G, B), got {hole_fill!r}")
        hole_fill = fill[0] if fill.count(fill[0]) == 3 else fill
        self.config = dict(image_size=image_size, hole_fill=hole_fill,
                           encoder_widths=list(encoder_widths), decoder_widths=list(decoder_widths),
                           fc_features=fc_features, defc_channels=defc_channels, variant=self.variant)
        self.image_size = image_size
        self.stages = stages
        self.bottleneck = image_size >> stages
        self.hole_fill = hole_fill
        # not persistent: it is part of the config, not of the weights
        self.register_buffer("fill", torch.tensor(fill).view(1, 3, 1, 1), persistent=False)
        self.defc_channels = defc_channels
        enc = encoder_widths[:stages]          # Table 1 from the input side
        dec = decoder_widths[-stages:]         # Table 2 from the output side (keeps 32, 32 near RGB)
        layers: list[nn.Module] = []
        cin = 4                                # RGB + mask
        for width in enc:
            layers += [_conv_bn_relu(cin, width), nn.MaxPool2d(2)]
            cin = width
        self.encoder = nn.Sequential(*layers)
        flat = cin * self.bottleneck ** 2
        self.fc = nn.Sequential(nn.Linear(flat, fc_features, bias=False), nn.BatchNorm1d(fc_features),
                                nn.ReLU(inplace=True))
        defc = defc_channels * self.bottleneck ** 2
        self.defc = nn.Sequential(nn.Linear(fc_features, defc, bias=False), nn.BatchNorm1d(defc),
                                  nn.ReLU(inplace=True))
        layers = []
        cin = defc_channels
        for width, skip in zip(dec, self._skip_widths(enc)):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv_bn_relu(cin + skip, width)]
            cin = width
        self.decoder = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(cin, 3, 3, padding=1)

    # ----------------------------------------------------------------- what the subclasses say

    def _network_input(self, masked: Tensor, mask: Tensor) -> tuple[Tensor, object]:
        """The trunk's (N,4,S,S) input and what ``_network_output`` needs besides ``to_rgb``'s output."""
        raise NotImplementedError

    def _network_output(self, rgb: Tensor, context: object) -> Tensor:
        """The generation (N,3,S,S) in [0,1] from ``to_rgb``'s output."""
        raise NotImplementedError

    def _skip_widths(self, encoder_widths: tuple[int, ...]) -> list[int]:
        """Extra input channels of each decoder stage (from the bottleneck outwards): none."""
        return [0] * len(encoder_widths)

    def _encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The encoder's output and the features the decoder takes as skips (none)."""
        return self.encoder(x), []

    def _decode(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        return self.decoder(x)

    # ----------------------------------------------------------------- the shared forward

    def forward(self, masked: Tensor, mask: Tensor) -> Tensor:
        n, c, h, w = masked.shape
        if c != 3 or h != self.image_size or w != self.image_size or mask.shape != (n, 1, h, w):
            raise ValueError(f"Generator({self.image_size}) expects masked (N,3,{self.image_size},"
                             f"{self.image_size}) and mask (N,1,{self.image_size},{self.image_size}); "
                             f"got {tuple(masked.shape)} and {tuple(mask.shape)}")
        mask = mask.to(masked.dtype)
        x, context = self._network_input(masked, mask)
        x, skips = self._encode(x)
        # flatten/reshape in NHWC order: free for channels-last tensors, and the fc
        # weights mean the same whichever memory format the caller uses
        x = self.fc(x.permute(0, 2, 3, 1).reshape(n, -1))
        s = self.bottleneck
        x = self.defc(x).view(n, s, s, self.defc_channels).permute(0, 3, 1, 2)
        if not masked.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous()
        return self._network_output(self.to_rgb(self._decode(x, skips)), context)


class PaperGenerator(Generator):
    """Tables 1-2, plus the conv to RGB and the sigmoid they leave out: the hole is filled with
    ``hole_fill`` (default 0; a number, or 3 numbers such as the training set's mean colour), the output
    is a sigmoid."""

    variant = "paper"

    def _network_input(self, masked: Tensor, mask: Tensor) -> tuple[Tensor, None]:
        filled = masked * (1 - mask) + self.fill.to(masked.dtype) * mask
        return torch.cat([filled, mask], dim=1), None

    def _network_output(self, rgb: Tensor, context: None) -> Tensor:
        return torch.sigmoid(rgb)


class ResidualGenerator(Generator):
    """The paper's layers predicting a correction to a biharmonic fill of the hole
    (``initial_fill.biharmonic_fill``) in units of the crop's own contrast: the input is
    normalised by, and the correction scaled by, the known pixels' spread.  ``to_rgb`` starts
    at zero, so an untrained one *is* the biharmonic fill.  ``hole_fill`` is stored but unused."""

    variant = "residual"

    def __init__(self, image_size: int, **config):
        super().__init__(image_size, **config)
        # start as the initial fill exactly; training learns the correction
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def _network_input(self, masked: Tensor, mask: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        filled = biharmonic_fill(masked * (1 - mask), mask)
        # contrast normalisation: the network sees the crop in units of its own known pixels'
        # spread and its correction is scaled back by it, so a flat crop gets a tiny
        # correction and a busy one a large one (per-image PSNR is scale-free too)
        centre, spread = known_stats(filled, mask)
        return torch.cat([(filled - centre) / spread, mask], dim=1), (filled, spread)

    def _network_output(self, rgb: Tensor, context: tuple[Tensor, Tensor]) -> Tensor:
        filled, spread = context
        return (filled + spread * rgb).clamp(0.0, 1.0)


class ResidualUNetGenerator(ResidualGenerator):
    """:class:`ResidualGenerator` plus U-Net skips: each decoder stage also sees the encoder's
    pre-pooling features of its resolution (concatenated before its conv)."""

    variant = "residual_unet"

    def _skip_widths(self, encoder_widths: tuple[int, ...]) -> list[int]:
        return list(reversed(encoder_widths))

    def _encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for layer in self.encoder:
            if isinstance(layer, nn.MaxPool2d):
                skips.append(x)
            x = layer(x)
        return x, skips

    def _decode(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        for layer in self.decoder:
            if not isinstance(layer, nn.Upsample):
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x)
        return x


def _registered_generator_class(name: str) -> type[Generator]:
    """The fixed-size generator class the registry names ``name`` (for ``Generator(variant=name)``)."""
    from nfinpaint.generators import spec  # noqa: PLC0415  (the registry imports this module)
    cls = spec(name).cls
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise ValueError(f"generator {name!r} is not one of the fixed-size networks Generator builds; "
                         f"use nfinpaint.generators.build_generator or generator_from_config")
    return cls


def _known_moments(image: Tensor, mask: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean and variance of the known pixels of ``image`` over ``dims`` (kept as size 1)."""
    known = (1 - mask).expand_as(image)
    count = known.sum(dim=dims, keepdim=True).clamp_min(1)
    mean = (image * known).sum(dim=dims, keepdim=True) / count
    return mean, (((image - mean) * known) ** 2).sum(dim=dims, keepdim=True) / count


def known_stats(image: Tensor, mask: Tensor, floor: float = 1.0 / 255) -> tuple[Tensor, Tensor]:
    """Per-image mean and standard deviation (over channels and pixels) of the known pixels,
    the deviation floored at one 8-bit level; shapes (N,1,1,1)."""
    mean, var = _known_moments(image, mask, (1, 2, 3))
    return mean, var.sqrt().clamp_min(floor)


def known_channel_stats(image: Tensor, mask: Tensor, floor: float = 1.0 / 255) -> tuple[Tensor, Tensor]:
    """Each channel's mean of the known pixels, (N,C,1,1), and their deviation from it pooled over the
    channels (the root of the channels' mean variance), floored at one 8-bit level, (N,1,1,1).  Unlike
    :func:`known_stats`, a flat colour has the floor for its deviation, whatever its hue."""
    mean, var = _known_moments(image, mask, (2, 3))
    return mean, var.mean(dim=1, keepdim=True).sqrt().clamp_min(floor)


def discriminator_halvings(size: int, max_layers: int) -> int:
    """Stride-2 layers a discriminator uses for a ``size`` input: while the map stays >= 2."""
    count = 0
    while count < max_layers and size // 2 >= MIN_BOTTLENECK:
        size //= 2
        count += 1
    return count


class _Discriminator(nn.Module):
    def __init__(self, size: int, first_width: int, stride2_widths: tuple[int, ...], what: str):
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE:
            raise ValueError(f"{what} must be an int >= {MIN_SIZE}, got {size!r}")
        self.size = size
        n = discriminator_halvings(size, len(stride2_widths))
        layers: list[nn.Module] = [nn.Conv2d(3, first_width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        cin = first_width
        for width in stride2_widths[:n]:
            layers += [nn.Conv2d(cin, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = width
        # conv4x4 s1 to one channel; pad 1 maps an m x m input to (m-1) x (m-1) (2x2 -> 1x1)
        layers.append(nn.Conv2d(cin, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.stride2_layers = n
        self.final_size = (size >> n) - 1

    def forward(self, images: Tensor, cells: bool = False) -> Tensor:
        """Logits (N,): the mean of the map; with ``cells``, the map itself, (N,1,f,f) (f = final_size)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != self.size or images.shape[3] != self.size:
            raise ValueError(f"{type(self).__name__} expects (N,3,{self.size},{self.size}) images, "
                             f"got {tuple(images.shape)}")
        logits = self.net(images)
        return logits if cells else logits.mean(dim=(1, 2, 3))


class GlobalDiscriminator(_Discriminator):
    """Table 3 on the whole image; ``forward(images (N,3,S,S)) -> logits (N,)``."""

    def __init__(self, image_size: int):
        super().__init__(image_size, GLOBAL_D_WIDTHS[0], GLOBAL_D_WIDTHS[1], "image_size")
        self.config = dict(image_size=image_size)


class LocalDiscriminator(_Discriminator):
    """Table 4 on a patch centred on the hole; ``forward(patches (N,3,p,p)) -> logits (N,)``."""

    def __init__(self, patch_size: int):
        super().__init__(patch_size, LOCAL_D_WIDTHS[0], LOCAL_D_WIDTHS[1], "patch_size")
        self.config = dict(patch_size=patch_size)


def local_patch_origin(mask: Tensor, patch_size: int) -> Tensor:
    """Top-left (y, x) of a ``patch_size`` square centred on each hole's bounding box.

    ``mask`` (N,1,H,W), hole = values > 0.5.  The patch is clamped inside the
    image; a sample with no hole gets the image centre.  Where that square holds
    no hole pixel (strokes scattered around an empty middle: 3% of the fullres
    preset's thin masks), it is centred on the hole pixel nearest the box's centre
    instead: the real and the fake patch were the same pixels, a local
    discriminator's step with nothing to judge.  Returns int64 (N,2).
    Vectorised (no Python loop over N, no .item()), so it compiles.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (N,1,H,W), got {tuple(mask.shape)}")
    h, w = mask.shape[2], mask.shape[3]
    if not 1 <= patch_size <= min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for {h}x{w} masks, got {patch_size}")
    hole = mask[:, 0] > 0.5
    ys = torch.arange(h, device=mask.device)
    xs = torch.arange(w, device=mask.device)

    def twice_centre(occupied: Tensor, idx: Tensor) -> Tensor:
        """Twice the centre of each sample's occupied span, in pixel-centre units (2i + 1); the side's
        centre where none is occupied."""
        length = idx.numel()
        first = torch.where(occupied, idx, length).amin(dim=1)
        last = torch.where(occupied, idx, -1).amax(dim=1)
        return torch.where(occupied.any(dim=1), first + last + 1, length)

    def origin(twice: Tensor, length: int) -> Tensor:
        """The first index of a patch centred on ``twice`` / 2, clamped inside the side."""
        return torch.div(twice - patch_size, 2, rounding_mode="floor").clamp(0, length - patch_size)

    cy, cx = twice_centre(hole.any(dim=2), ys), twice_centre(hole.any(dim=1), xs)
    boxed = torch.stack([origin(cy, h), origin(cx, w)], dim=1)
    # each hole pixel's squared distance to the box's centre (twice it, in the same units)
    far = (2 * ys[None, :, None] + 1 - cy[:, None, None]) ** 2 + (2 * xs[None, None, :] + 1 - cx[:, None, None]) ** 2
    nearest = torch.where(hole, far, torch.iinfo(far.dtype).max).flatten(1).argmin(dim=1)
    centred = torch.stack([origin(2 * (nearest // w) + 1, h), origin(2 * (nearest % w) + 1, w)], dim=1)
    sees_hole = crop_patches(hole[:, None].to(torch.uint8), boxed, patch_size).flatten(1).amax(dim=1) > 0
    return torch.where(sees_hole[:, None] | ~hole.flatten(1).any(dim=1, keepdim=True), boxed, centred)


def crop_patches(images: Tensor, origins: Tensor, patch_size: int) -> Tensor:
    """Crop (N,C,p,p) patches at ``origins`` (N,2) (top-left y, x) by advanced indexing.

    Differentiable (the backward scatters into the crops) and compile-friendly.
    The result has channels-last strides (free to use either way).
    """
    n, _, h, w = images.shape
    if origins.shape != (n, 2):
        raise ValueError(f"origins must be ({n},2), got {tuple(origins.shape)}")
    if not 1 <= patch_size <= min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for {h}x{w} images, got {patch_size}")
    offsets = torch.arange(patch_size, device=images.device)
    origins = origins.to(device=images.device, dtype=torch.long)
    ys = origins[:, 0:1] + offsets               # (N,p)
    xs = origins[:, 1:2] + offsets
    batch = torch.arange(n, device=images.device)
    # advanced indices separated by a slice: broadcast dims (N,p,p) come first, then C
    patches = images[batch[:, None, None], :, ys[:, :, None], xs[:, None, :]]
    return patches.permute(0, 3, 1, 2)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
