#!/usr/bin/env python3
"""A fast probe of a generator variant: the generator alone, trained on the L2 term, validated often.

    python scripts/probe_generator.py --variant residual_unet --data CORPUS/photos/train \\
        --val-data CORPUS/photos/val --steps 1500 --lr 2e-4 --ema 0.995

No discriminators and no feature network, fp32, eager, one CPU thread: a
few steps per second on a busy 2-core machine, so variants can be compared in
minutes on the same validation crops and masks (the trainer's at seed 0,
``masks.validation_masks``; until 2026-12-06 both seeded a batch of 32 at a time, so
the runs docs/training.md lists were measured on other masks).  Prints
the mean hole PSNR (random rectangles) of the raw and of the weight-averaged
generator every ``--every`` steps.  docs/training.md ("Beyond the paper")
lists the runs and their results.
"""
from __future__ import annotations

import argparse
import time

import torch

from nfinpaint import data, inference, masks
from nfinpaint.config import TrainConfig
from nfinpaint.generators import GENERATORS, build_generator
from nfinpaint.masks import blank_holes
from nfinpaint.metrics import batch_psnr
from nfinpaint.objective import Objective
from nfinpaint.weight_average import WeightAverage

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=tuple(GENERATORS), default="residual_unet")
    parser.add_argument("--size", type=int, default=24, help="crop side (default 24)")
    parser.add_argument("--data", required=True, help="training folder")
    parser.add_argument("--val-data", required=True, help="validation folder")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (cosine to 0)")
    parser.add_argument("--ema", type=float, default=0.995, help="decay of the weight average")
    parser.add_argument("--l2-form", choices=("mse", "log"), default="log")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size
    # the training recipe's own pieces: its learning-rate schedule, objective (the L2 term alone here),
    # weight average and fill
    config = TrainConfig(generator=args.variant, image_size=size, hole_size=masks.default_hole_size(size),
                         steps=args.steps, batch_size=BATCH, lr=args.lr, lr_schedule="cosine", ema_decay=args.ema,
                         l2_form=args.l2_form, use_custom_ops=False, data=args.data, val_data=args.val_data)
    objective = Objective.from_config(config)
    train, val = data.build_datasets(args.data, size, val_dir=args.val_data,
                                     names=data.OptionNames("--data", "--val-data", "--size"))
    images = torch.stack([val[i] for i in range(len(val))])
    holes = masks.validation_masks("random", range(len(images)), size, config.hole_size, seed=0)
    torch.manual_seed(0)
    generator = build_generator(args.variant, size)
    average = WeightAverage(generator, args.ema)
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(config.beta1, config.beta2))

    def score(model: torch.nn.Module) -> float:
        return float(batch_psnr(inference.fill(model, images, holes), images, holes).mean())

    start = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            print(f"step {step}: raw {score(generator):.2f} dB, average {score(average.model):.2f} dB "
                  f"({time.time() - start:.0f} s)", flush=True)
        if step == args.steps:
            break
        real = train.crops(torch.arange(step * BATCH, step * BATCH + BATCH))
        hole = masks.make_masks("random", BATCH, size, config.hole_size, seed=100_000 + step)
        _, loss = objective.reconstruction(generator(blank_holes(real, hole), hole), real, hole)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average.update(generator)


if __name__ == "__main__":
    main()
