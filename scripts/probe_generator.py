#!/usr/bin/env python3
"""A fast probe of a generator variant: the generator alone, trained on the L2 term, validated often.

    python scripts/probe_generator.py --variant residual_unet --data CORPUS/photos/train \\
        --val-data CORPUS/photos/val --steps 1500 --lr 2e-4 --ema 0.995

No discriminators and no feature network, fp32, eager, one CPU thread: a
few steps per second on a busy 2-core machine, so variants can be compared in
minutes on the same validation crops and masks (the trainer's, seed 0).  Prints
the mean hole PSNR (random rectangles) of the raw and of the weight-averaged
generator every ``--every`` steps.  docs/training.md ("Beyond the paper")
lists the runs and their results.
"""
from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from nfinpaint import data, masks
from nfinpaint.metrics import batch_psnr
from nfinpaint.generators import GENERATORS, build_generator


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
    hole_size = masks.default_hole_size(size)
    train, val = data.build_datasets(args.data, size, val_dir=args.val_data)
    images = torch.stack([val[i] for i in range(len(val))])
    holes = torch.cat([masks.make_masks("random", min(32, len(images) - b), size, hole_size, seed=b // 32)
                       for b in range(0, len(images), 32)])
    torch.manual_seed(0)
    generator = build_generator(args.variant, size)
    average = copy.deepcopy(generator).eval()
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))

    def score(model: torch.nn.Module) -> float:
        was = model.training
        model.eval()
        with torch.no_grad():
            out = model(images * (1 - holes), holes)
        model.train(was)
        return float(batch_psnr(holes * out + (1 - holes) * images, images, holes).mean())

    start = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            print(f"step {step}: raw {score(generator):.2f} dB, average {score(average):.2f} dB "
                  f"({time.time() - start:.0f} s)", flush=True)
        if step == args.steps:
            break
        real = train.crops(torch.arange(step * 32, step * 32 + 32))
        hole = masks.make_masks("random", 32, size, hole_size, seed=100_000 + step)
        out = generator(real * (1 - hole), hole)
        mse = ((out - real) ** 2 * hole).flatten(1).sum(1) / (hole.flatten(1).sum(1) * 3)
        loss = torch.log(mse + 1e-5).mean() if args.l2_form == "log" else mse.mean()
        for group in optimizer.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for a, b in zip(average.parameters(), generator.parameters()):
                a.lerp_(b, 1 - args.ema)
            for a, b in zip(average.buffers(), generator.buffers()):
                a.copy_(b)


if __name__ == "__main__":
    main()
