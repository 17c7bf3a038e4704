"""The neural-feature network: VGG-19 truncated at a conv3 layer, frozen, ImageNet-normalised.

Weights (``weights=``):

* ``"imagenet"`` (default): torchvision's ``VGG19_Weights.IMAGENET1K_V1``,
  downloaded once and cached by torchvision (``$TORCH_HOME/hub/checkpoints``).
  Without internet and without the cached file this raises a RuntimeError
  that says how to get or point to the weights.
* a path: a torchvision vgg19 ``state_dict`` saved with ``torch.save`` (the full
  model's or only its ``features.*`` entries; entries past the chosen layer and
  the classifier are ignored).
* ``"rotation"``: conv1_1 .. conv3_1 learned offline by rotation prediction on this project's
  training photographs (:mod:`nfinpaint.feature_pretrain`), shipped in the package
  (``nfinpaint/weights/vgg19_conv3_rotation.pt``): meaningful features that need no download,
  for the layers up to ``relu3_1`` only.  Not ImageNet's: the file's meta says how they were made.
* ``"random"``: untrained weights, for tests and offline smoke runs only; it
  warns loudly and sets ``pretrained=False`` / ``weights_source`` to say so,
  which training records in its logs and checkpoints.

Default layer: ``relu3_1``.  The paper says only "conv3"; relu3_1 is the layer
of C. Li & M. Wand's MRF loss (the paper's reference [25], which it cites for
its feature constraint) and of Gatys-style texture losses, it is the
shallowest conv3 output (closest to the "lower layers ... represent styles"
motivation), and it is the cheapest: relu3_4 needs three more 256->256 convs.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from nfinpaint.errors import NfinpaintError
from nfinpaint.files import load_torch

DEFAULT_LAYER = "relu3_1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg19 (configuration "E") feature layers up to pool3
_VGG19_UPTO_CONV3 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256]
# index of each named layer in torchvision's vgg19().features
LAYER_INDEX = {"conv3_1": 10, "relu3_1": 11, "conv3_2": 12, "relu3_2": 13,
               "conv3_3": 14, "relu3_3": 15, "conv3_4": 16, "relu3_4": 17}
# the self-supervised weights that ship in the package (conv1_1 .. conv3_1)
ROTATION_FILE = Path(__file__).resolve().parent / "weights" / "vgg19_conv3_rotation.pt"
_IMAGENET_HINT = ("pass a local file with `--feature-weights PATH` (a torchvision vgg19 state_dict .pth, "
                  "e.g. the file torchvision caches as vgg19-dcbb9e9d.pth in $TORCH_HOME/hub/checkpoints on a "
                  "machine with internet), `--feature-weights rotation` for the self-supervised conv1-conv3 "
                  "weights that ship with nfinpaint (no download; not ImageNet's), or `--feature-weights random` "
                  "for an untrained smoke run")


class FeatureWeightsError(NfinpaintError, RuntimeError):
    """The requested VGG-19 weights cannot be obtained or do not fit."""


def vgg19_layers(upto: int) -> nn.Sequential:
    """torchvision's ``vgg19().features[:upto + 1]`` (same layer indices and state-dict keys), untrained."""
    layers: list[nn.Module] = []
    cin = 3
    for item in _VGG19_UPTO_CONV3:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=False)]
            cin = item
    return nn.Sequential(*layers[:upto + 1])


def _imagenet_state_dict() -> dict[str, Tensor]:
    try:
        from torchvision.models import VGG19_Weights
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as exc:  # no internet, broken cache, ...: all end the same way for the user
        raise FeatureWeightsError(
            f"could not load torchvision's ImageNet VGG-19 weights ({type(exc).__name__}: {exc}); "
            + _IMAGENET_HINT) from exc


def _file_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FeatureWeightsError(f"VGG-19 weights file {str(path)!r} {what}; " + _IMAGENET_HINT)
    state = load_torch(path, FeatureWeightsError, "VGG-19 weights file",
                       "give a torchvision vgg19 state_dict saved with torch.save, or download or copy it again")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FeatureWeightsError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict; "
                                  f"expected a torchvision vgg19 state_dict saved with torch.save")
    return state


class ImageNetNormalise(nn.Module):
    """Images in [0, 1] -> normalised by ImageNet's mean and std: the input VGG-19's layers expect."""

    def __init__(self):
        super().__init__()
        # not persistent: a state_dict holds only the VGG weights
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


class VGGFeatures(nn.Module):
    """Frozen VGG-19 features up to ``layer``; ``forward(images in [0,1]) -> (N,256,H/4,W/4)``.

    Parameters never require grad, but gradients flow through to the input
    (the generator).  The module stays in eval mode whatever ``.train()`` says.
    """

    def __init__(self, layer: str = DEFAULT_LAYER, weights: str | os.PathLike = "imagenet"):
        super().__init__()
        if layer not in LAYER_INDEX:
            raise ValueError(f"layer must be one of {sorted(LAYER_INDEX)}, got {layer!r}")
        self.layer = layer
        self.normalise = ImageNetNormalise()
        self.features = vgg19_layers(LAYER_INDEX[layer])
        if isinstance(weights, str) and weights == "random":
            warnings.warn("VGG-19 feature network has RANDOM, UNTRAINED weights (--feature-weights random): "
                          "the feature loss is meaningless for quality; use only for tests and smoke runs",
                          UserWarning, stacklevel=2)
            self.pretrained = False
            self.weights_source = "random (untrained)"
        else:
            if isinstance(weights, str) and weights == "imagenet":
                state = _imagenet_state_dict()
                source = "torchvision:VGG19_Weights.IMAGENET1K_V1"
            elif isinstance(weights, str) and weights == "rotation":
                if LAYER_INDEX[layer] > LAYER_INDEX["relu3_1"]:
                    raise FeatureWeightsError(f"the shipped rotation weights stop at conv3_1; layer {layer!r} "
                                              f"needs ImageNet weights or a full VGG-19 file")
                if not ROTATION_FILE.is_file():
                    raise FeatureWeightsError(f"this installation lacks the shipped rotation weights "
                                              f"({ROTATION_FILE}); reinstall nfinpaint, or make them with "
                                              f"python -m nfinpaint.feature_pretrain")
                state = _file_state_dict(ROTATION_FILE)
                source = "nfinpaint:rotation (self-supervised on the photograph corpus, not ImageNet)"
            else:
                path = Path(weights).expanduser()
                state = _file_state_dict(path)
                source = f"file:{path.resolve()}"
            self._load_features(state, source)
            self.pretrained = True
            self.weights_source = source
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def _load_features(self, state: dict, source: str) -> None:
        own = self.features.state_dict()
        picked, named = {}, {}          # named: each entry's key as the file has it
        for key in own:
            for candidate in (f"features.{key}", key):
                if candidate in state:
                    picked[key], named[key] = state[candidate], candidate
                    break
        missing = [f"features.{k}" for k in own if k not in picked]
        if missing:
            raise FeatureWeightsError(f"{source} is not a torchvision vgg19 state_dict: missing {missing[:4]}"
                                      f"{' ...' if len(missing) > 4 else ''}")
        foreign = [f"{named[k]} is a {type(picked[k]).__name__}, not a tensor" for k in own
                   if not isinstance(picked[k], Tensor)]
        if foreign:
            raise FeatureWeightsError(f"{source} is not a torchvision vgg19 state_dict: {'; '.join(foreign[:3])}")
        wrong = [f"features.{k}: {tuple(picked[k].shape)} != {tuple(own[k].shape)}"
                 for k in own if tuple(picked[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise FeatureWeightsError(f"{source} does not fit VGG-19: {wrong[:3]}")
        # a NaN here made the feature term NaN at step 1, and training then blamed its learning rate
        broken = [named[k] for k in own if not bool(picked[k].float().isfinite().all())]
        if broken:
            raise FeatureWeightsError(f"{source} holds values that are not finite (NaN or inf) in {broken[:3]}: "
                                      f"a damaged file or a bad conversion; download or copy it again")
        self.features.load_state_dict(picked)

    def train(self, mode: bool = True) -> "VGGFeatures":
        # frozen feature extractor: always eval, whatever the enclosing model does
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(self.normalise(images))

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, pretrained={self.pretrained}, weights_source={self.weights_source!r}"
