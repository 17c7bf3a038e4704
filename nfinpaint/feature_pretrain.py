"""Self-supervised weights for the feature network, learned offline from the training photographs.

    python -m nfinpaint.feature_pretrain --data data/corpus/photos/train --val-data data/corpus/photos/val \\
        -o nfinpaint/weights/vgg19_conv3_rotation.pt

Why: the paper's feature loss compares conv3 features of a VGG-19 pretrained on ImageNet.  Where
those weights cannot be downloaded, untrained features make the term carry no meaning.  This
trains VGG-19's own layers conv1_1 .. conv3_1 (the ones ``relu3_1`` needs, 0.56 M weights, 1.1 MB
in half precision) on a self-supervised task that needs no labels: **rotation prediction**
(S. Gidaris, P. Singh, N. Komodakis, "Unsupervised representation learning by predicting image
rotations", ICLR 2018).  Each crop is shown at 0, 90, 180 and 270 degrees and the network says
which; to answer, it has to find edges, their orientation and the layout of a scene (sky above,
ground below), which is what a feature loss should compare.

The trunk is torchvision's ``vgg19().features[:12]`` with He initialisation, trained with batch
normalisation after each conv that is then folded into the convs: the file has the same keys and
layers as ImageNet weights and the loss network loads it the same way.  A small head (4x4 average
pool, two linear layers) is trained with it and thrown away.  After training, conv3_1
is rescaled (ReLU is positively homogeneous, so the features only change scale) so that relu3_1 has
unit mean square on the training crops: the feature term's size then does not depend on the run.

The file holds ``{"state_dict": features.* entries, "meta": how it was trained}``;
``--feature-weights rotation`` in ``train`` loads the copy that ships in the package.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfinpaint import cli, data, files
from nfinpaint.config import batch_memory_problem, seed_problem
from nfinpaint.crop_store import batch_items
from nfinpaint.devices import autocast_dtype, resolve_device
from nfinpaint.feature_net import LAYER_INDEX, ImageNetNormalise, vgg19_layers

LAYER = "relu3_1"
# what the data errors name: this command's own options (train's are --data and its config keys)
OPTION_NAMES = data.OptionNames(data="--data", val_data="--val-data", image_size="--crop-size")


@dataclass
class PretrainConfig:
    crop_size: int = 64          # crops the rotation is predicted on
    batch_size: int = 16         # crops per step (each shown at 4 rotations)
    steps: int = 1800
    lr: float = 1e-3             # AdamW, cosine decay to 0
    weight_decay: float = 5e-4
    max_crop_scale: float = 4.0  # crops span crop_size .. 4 * crop_size source pixels
    seed: int = 0


class RotationNet(nn.Module):
    """VGG-19 conv1_1 .. relu3_1 (the trunk that ships) and a head that predicts one of 4 rotations.

    While training, each conv is followed by batch normalisation (a no-normalisation VGG learns
    slowly from scratch); :meth:`vgg_features` folds it into the convs, giving plain VGG layers."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for m in vgg19_layers(LAYER_INDEX[LAYER]):
            layers.append(m)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
                layers.append(nn.BatchNorm2d(m.out_channels))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256 * 16, 256),
                                  nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 4))
        self.normalise = ImageNetNormalise()     # the loss network's own input normalisation

    def trunk(self, images: Tensor) -> Tensor:
        return self.features(self.normalise(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.trunk(images))

    @torch.no_grad()
    def vgg_features(self) -> nn.Sequential:
        """The trunk as torchvision's ``vgg19().features[:12]``: each batch norm (its running
        statistics) folded into the conv before it.  Equal to the trunk in eval mode."""
        plain = vgg19_layers(LAYER_INDEX[LAYER])
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        norms = [m for m in self.features if isinstance(m, nn.BatchNorm2d)]
        targets = [m for m in plain if isinstance(m, nn.Conv2d)]
        for conv, norm, target in zip(convs, norms, targets):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            target.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            target.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)
        return plain.to(self.normalise.mean.device)


def rotations(crops: Tensor) -> tuple[Tensor, Tensor]:
    """Each crop at 0, 90, 180, 270 degrees (the batch four times over) and the labels 0..3."""
    turned = torch.cat([torch.rot90(crops, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=crops.device).repeat_interleave(crops.shape[0])
    return turned, labels


@torch.no_grad()
def accuracy(model: RotationNet, crops: Tensor, chunk: int = 64) -> float:
    model.eval()
    right = total = 0
    for start in range(0, crops.shape[0], chunk):
        turned, labels = rotations(crops[start:start + chunk])
        right += int((model(turned).argmax(1) == labels).sum())
        total += labels.numel()
    model.train()
    return right / max(total, 1)


@torch.no_grad()
def unit_scale(features: nn.Sequential, inputs: Tensor) -> float:
    """Rescale conv3_1 of plain VGG ``features`` so relu3_1 has unit mean square on ``inputs``
    (ImageNet-normalised images); returns the factor applied."""
    energy = features(inputs).float().pow(2).mean().item()
    factor = 1.0 / math.sqrt(max(energy, 1e-12))
    conv = features[LAYER_INDEX["conv3_1"]]
    conv.weight.mul_(factor)
    conv.bias.mul_(factor)
    return factor


def pretrain(config: PretrainConfig, train_crops, val_crops: Tensor, *, device: torch.device,
             amp: str = "auto", log=print) -> tuple[nn.Sequential, dict]:
    """Train a :class:`RotationNet` on ``train_crops`` (a ``RandomCrops``: ``crops(items)``); returns
    its trunk as plain, unit-scaled VGG-19 layers and a dict of what was measured."""
    torch.manual_seed(config.seed)
    model = RotationNet().to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    dtype = autocast_dtype(amp, device)
    val_crops = val_crops.to(device)
    start, history = time.perf_counter(), []
    for step in range(config.steps):
        crops = train_crops.crops(batch_items(step, config.batch_size)).to(device)
        turned, labels = rotations(crops)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(turned.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits.float(), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % max(1, config.steps // 10) == 0 or step + 1 == config.steps:
            val = accuracy(model, val_crops)
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "val_accuracy": round(val, 4)})
            log(f"step {step + 1}/{config.steps}: loss {loss.item():.3f}, validation rotation accuracy "
                f"{val:.1%} ({time.perf_counter() - start:.0f} s)")
    train_sample = train_crops.crops(batch_items(10**6, 256)).to(device)
    report = {"val_accuracy": accuracy(model, val_crops), "train_accuracy": accuracy(model, train_sample),
              "history": history, "seconds": round(time.perf_counter() - start, 1)}
    model.eval()
    features = model.vgg_features()
    report["conv3_1_rescale"] = unit_scale(features, model.normalise(train_sample))
    return features, report


def weights_file(features: nn.Sequential, meta: dict) -> dict:
    """What the file holds: the trunk's torchvision-named entries in half precision, and the meta."""
    state = {f"features.{k}": v.detach().to("cpu", torch.float16) for k, v in features.state_dict().items()}
    return {"state_dict": state, "meta": meta}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m nfinpaint.feature_pretrain", __doc__)
    p.add_argument("--data", required=True, help="folder of training photographs")
    p.add_argument("--val-data", required=True, help="folder of validation photographs (rotation accuracy)")
    p.add_argument("-o", "--output", required=True, help="weights file to write (.pt)")
    defaults = PretrainConfig()
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimisation steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="crops per step, each at 4 rotations (default %(default)s)")
    p.add_argument("--crop-size", type=int, default=defaults.crop_size,
                   help="side of the crops the rotation is predicted on (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    return p


def run(args: argparse.Namespace) -> None:
    output = cli.check_output_file(args.output, "-o", example="vgg19_conv3.pt")
    problem = seed_problem(args.seed, "--seed")
    if problem:
        raise cli.UsageError(problem)
    if args.steps < 1 or args.batch_size < 1:
        raise cli.UsageError("--steps and --batch-size must be at least 1")
    if args.crop_size < 16:
        raise cli.UsageError(f"--crop-size must be at least 16 (relu3_1 is a quarter of it), got {args.crop_size}")
    # an absurd batch refused before any data is read, not by running out of memory in the first step:
    # training's check (each crop is shown at 4 rotations)
    memory_problem = batch_memory_problem(args.batch_size, args.crop_size, args.device, name="--batch-size",
                                          images_per_item=4,
                                          counted="a lower bound: each crop at its 4 rotations, ten planes a pixel")
    if memory_problem:
        raise cli.UsageError(memory_problem)
    for option, folder in (("--data", args.data), ("--val-data", args.val_data)):
        if folder and Path(folder).is_dir() and Path(folder).resolve() in output.resolve().parents:
            raise cli.UsageError(f"-o {args.output} is inside {option} {folder}: it would replace or sit among "
                                 f"the photographs; write it outside that folder")
    if output.suffix.lower() != ".pt":        # a torch archive under another name (.png, say) misleads
        raise cli.UsageError(f"-o {args.output}: the weights file ends in .pt (e.g. vgg19_conv3.pt)")
    config = PretrainConfig(crop_size=args.crop_size, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    device = resolve_device(args.device, operators=False)      # VGG and torch's own ops only
    train_crops, val_crops = data.build_datasets(args.data, config.crop_size, val_dir=args.val_data,
                                                 seed=config.seed, max_rotation=0.0,
                                                 max_crop_scale=config.max_crop_scale, names=OPTION_NAMES)
    val = torch.stack([val_crops[i] for i in range(len(val_crops))])
    print(f"rotation pretraining of VGG-19 conv1_1..{LAYER}: {len(train_crops.store)} training photographs, "
          f"{val.shape[0]} validation crops, {config.steps} steps of {config.batch_size}x4 crops on {device}",
          flush=True)
    features, report = pretrain(config, train_crops, val, device=device,
                                log=lambda line: print(line, flush=True))
    meta = {"task": "rotation prediction (0/90/180/270 degrees), Gidaris et al. 2018", "layer": LAYER,
            "data": str(args.data), "val_data": str(args.val_data), "config": asdict(config),
            "val_rotation_accuracy": round(report["val_accuracy"], 4),
            "train_rotation_accuracy": round(report["train_accuracy"], 4),
            "conv3_1_rescale": report["conv3_1_rescale"], "seconds": report["seconds"],
            "history": report["history"], "torch": str(torch.__version__)}
    with files.atomic_path(output) as tmp:
        files.save_torch(weights_file(features, meta), tmp)
    print(f"wrote {output}: validation rotation accuracy {report['val_accuracy']:.1%} "
          f"(training crops {report['train_accuracy']:.1%}, chance 25%)")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(run, argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
