"""How much a network learns in a few minutes: train a fixed number of SGD (or Adam) steps, then score it.

The demo's question (README, "The demo"): which choices help ``robustreid_1x`` learn within ~150 steps on the
synthetic set. One run = a preset's network and losses, a PK loader (with or without random erasing and the
pad-and-crop), ``--steps`` steps with a linear warmup over ``--warmup`` steps from ~0 to ``--lr`` and one
decay to ``--lr / 10`` after ``--decay`` of the steps, then rank-1 / mAP on the dataset's query / gallery.
Optional ``--init``: ``fan_in`` (Kaiming normal, fan-in mode, on every convolution) or ``zero_gamma`` (the last
BatchNorm of every Shuffle-A branch starts at 0, Goyal et al. 2017). One JSON line per run (stdout, and
appended to ``--out`` if given).

Usage: python benchmarks/short_run.py --root runs/demo/data [--steps 150] [--no-augmentation] [--amp]
       [--optimizer sgd|adam] [--lr 3e-2] [--init fan_in|zero_gamma] [--out runs/short_run.jsonl]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from robustreid.config import preset
from robustreid.datasets import load_dataset
from robustreid.evaluate import evaluate, metrics_summary
from robustreid.layers import ShuffleA
from robustreid.loaders import RandomErasing, build_train_loader
from robustreid.model import build_model
from robustreid.losses import ReIDCriterion
from robustreid.train import train_step


def reinit(model: nn.Module, init: str | None) -> None:
    if init == "fan_in":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    elif init == "zero_gamma":
        for m in model.modules():
            if isinstance(m, ShuffleA):
                nn.init.zeros_(m.branch[2][1].weight)  # conv_bn_act(...)[1] is the BatchNorm


def lr_of(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr if step < args.decay * args.steps else args.lr * 0.1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="a Market1501-layout folder (e.g. the demo's runs/demo/data)")
    p.add_argument("--preset", default="robust-reid-1x")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--decay", type=float, default=0.75, help="fraction of the steps before the decay to lr/10")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--no-augmentation", action="store_true", help="random erasing off, no pad-and-crop")
    p.add_argument("--init", choices=("fan_in", "zero_gamma"), default=None)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    dataset = load_dataset("market1501", args.root)
    cfg = preset(args.preset)
    model = build_model(cfg.model, dataset.num_train_pids, **cfg.model_options())
    reinit(model, args.init)
    augment = not args.no_augmentation
    loader = build_train_loader(dataset.train, model.data_config, cfg.data.batch_p, cfg.data.batch_k, num_workers=2,
                                seed=args.seed, erasing=RandomErasing(cfg.data.random_erasing if augment else 0.0),
                                pad=cfg.data.pad if augment else 0)
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=cfg.optim.momentum,
                                    weight_decay=cfg.optim.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=cfg.optim.weight_decay)
    criterion = ReIDCriterion(cfg.loss, dataset.num_train_pids)
    step, epoch, start, recent = 0, 0, time.perf_counter(), []
    model.train()
    while step < args.steps:
        loader.sampler.set_epoch(epoch)
        epoch += 1
        for imgs, pids, _, _ in loader:
            if step == args.steps:
                break
            _, parts = train_step(model, imgs, pids, optimizer, criterion, lr_of(step, args),
                                  torch.bfloat16 if args.amp else None)
            recent = (recent + [parts])[-20:]
            step += 1
    train_seconds = time.perf_counter() - start
    scores = metrics_summary(evaluate(model, dataset, num_workers=2))
    record = {
        "preset": args.preset, "steps": args.steps, "optimizer": args.optimizer, "lr": args.lr,
        "warmup": args.warmup, "decay": args.decay, "augmentation": augment, "init": args.init, "amp": args.amp,
        "seed": args.seed, "rank1": round(scores["rank1"], 2), "rank5": round(scores["rank5"], 2),
        "mAP": round(scores["mAP"], 2), "train_seconds": round(train_seconds, 1),
        "last20_losses": {k: round(sum(r[k] for r in recent) / len(recent), 4) for k in recent[-1]},
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
