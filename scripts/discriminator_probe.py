#!/usr/bin/env python3
"""How well can fresh discriminators tell a generator's fills from photographs?

    python scripts/discriminator_probe.py --data data/corpus/train_all --val-data data/corpus/photos/val \\
        --steps 3000 --variants mean@1e-4,cells@2e-4

An adversarial term can only ask for what its discriminators see.  This trains
the two discriminators of the ``fullres`` preset from scratch against a frozen
generator (the shipped one unless ``--generator``), run as it ships, on the
preset's training crops and hole families (``--cache`` batches filled once, then
cycled), and every ``--every`` steps measures, on fixed validation crops with the
mixed families' holes (:func:`nfinpaint.masks.validation_masks`), the area under
the ROC curve of photographs against fills (0.5: chance, 1: always told apart):

- ``sample``: each picture's logit as the ``mean`` form gives it, the mean of
  the discriminator's map;
- ``cells``: the map's cells over the hole (at least half hole pixels), against
  the same cells of the photograph.

Each variant is ``FORM@LR``: ``mean`` trains with the paper's form of the loss,
``cells`` with ``adv_form = "cells"`` (:func:`nfinpaint.losses.hole_cell_weight`).
One JSON line per measurement on stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from nfinpaint import inference, masks
from nfinpaint.config import ADV_FORMS, PRESETS
from nfinpaint.crop_store import batch_items
from nfinpaint.devices import autocast_dtype
from nfinpaint.losses import hole_cell_weight
from nfinpaint.networks import GlobalDiscriminator, LocalDiscriminator, crop_patches, local_patch_origin
from nfinpaint.objective import Objective
from nfinpaint.resume import open_initial_generator
from nfinpaint.train import build_data


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a positive scores above a negative), ties counted half: the area under the ROC curve."""
    p, n = positive.flatten()[:, None], negative.flatten()[None, :]
    return float((p > n).double().mean() + 0.5 * (p == n).double().mean())


def parse_variant(text: str) -> tuple[str, float]:
    form, _, lr = text.partition("@")
    if form not in ADV_FORMS or not lr:
        raise argparse.ArgumentTypeError(f"a variant is FORM@LR with FORM one of {ADV_FORMS}, got {text!r}")
    return form, float(lr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training photographs (the generator's own)")
    p.add_argument("--val-data", required=True, help="validation photographs: where the AUC is measured")
    p.add_argument("--generator", default="shipped", help="generator file or run (default: the shipped one)")
    p.add_argument("--steps", type=int, default=3000, help="discriminator steps per variant")
    p.add_argument("--cache", type=int, default=600, help="training batches filled once and cycled")
    p.add_argument("--every", type=int, default=500, help="measure every this many steps")
    p.add_argument("--val-crops", type=int, default=64, help="validation crops measured")
    p.add_argument("--variants", type=lambda s: [parse_variant(v) for v in s.split(",")],
                   default=[("mean", 1e-4), ("cells", 2e-4)], help="FORM@LR,... (default mean@1e-4,cells@2e-4)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    generator, _ = open_initial_generator(args.generator)
    generator.eval()
    full = getattr(generator, "stats", None) is not None
    cfg = dataclasses.replace(PRESETS["fullres"], data=args.data, val_data=args.val_data, feature_weights="random",
                              **({"window_stats": generator.stats, "base_iterations": generator.base_iterations}
                                 if full else {}))
    train_ds, val_ds = build_data(cfg, False)
    size, patch = cfg.image_size, cfg.local_patch_size
    amp = autocast_dtype(cfg.amp, torch.device("cpu"))      # training's precision on this CPU

    def fill(real: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return inference.fill(generator, real, hole, amp)

    items = torch.arange(min(args.val_crops, len(val_ds)))
    val_real = torch.stack([val_ds[int(i)] for i in items])
    val_mask = masks.validation_masks("mixed", items, size, cfg.hole_size, cfg.seed)
    val_fake = fill(val_real, val_mask)
    cache, start = [], time.time()
    for step in range(args.cache):       # the trainer's crops and holes of its first steps
        real = train_ds.crops(batch_items(step, cfg.batch_size))
        seed = torch.Generator().manual_seed(hash((cfg.seed, step, 0)) & 0x7FFF_FFFF_FFFF)
        hole = masks.make_masks(cfg.train_masks, real.shape[0], size, cfg.hole_size, seed)
        cache.append((real, hole, fill(real, hole)))
    print(json.dumps({"filled_batches": args.cache, "seconds": round(time.time() - start)}), flush=True)

    def views(real, fake, hole):
        """What each discriminator sees: the crops, and the patches around their holes."""
        origins = local_patch_origin(hole, patch)
        return (real, fake, hole), tuple(crop_patches(t, origins, patch) for t in (real, fake, hole))

    def maps(d, images):
        with torch.autocast("cpu", amp, enabled=amp is not None):
            return d(images, cells=True).float()

    @torch.no_grad()
    def measure(ds) -> dict[str, float]:
        out = {}
        for name, d, (real, fake, hole) in zip(("global", "local"), ds, views(val_real, val_fake, val_mask)):
            m_real, m_fake = maps(d, real), maps(d, fake)
            over = hole_cell_weight(hole, tuple(m_real.shape[-2:])) >= 0.5
            out[f"{name}_sample"] = auc(m_real.mean((1, 2, 3)), m_fake.mean((1, 2, 3)))
            out[f"{name}_cells"] = auc(m_real[over], m_fake[over]) if over.any() else float("nan")
        return out

    for form, lr in args.variants:
        torch.manual_seed(cfg.seed)
        ds = GlobalDiscriminator(size), LocalDiscriminator(patch)
        objective = dataclasses.replace(Objective.from_config(cfg), adv_form=form)
        opt = torch.optim.Adam([q for d in ds for q in d.parameters()], lr=lr, betas=(cfg.beta1, cfg.beta2))
        name, start = f"{form}@{lr:g}", time.time()
        print(json.dumps({"variant": name, "step": 0, **measure(ds)}), flush=True)
        for step in range(1, args.steps + 1):
            real, hole, fake = cache[(step - 1) % len(cache)]
            (g_real, g_fake, g_hole), (l_real, l_fake, l_hole) = views(real, fake, hole)
            logits = [torch.cat([maps(d, r), maps(d, f)]) for d, r, f in zip(ds, (g_real, l_real), (g_fake, l_fake))]
            if form == "mean":
                logits = [t.mean((1, 2, 3)) for t in logits]
            loss = objective.discriminator_loss(*logits, g_hole, l_hole)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % args.every == 0 or step == args.steps:
                print(json.dumps({"variant": name, "step": step, "loss": round(float(loss.detach()), 4),
                                  "seconds": round(time.time() - start), **measure(ds)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
