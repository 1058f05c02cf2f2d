"""Where the gradient goes at initialisation: the ID-loss gradient norm at every stage boundary of a fresh network.

Runs one PK batch of the synthetic set (``robustreid.synthetic`` defaults, written to a temp folder or
``--data``) through a freshly initialised network in train mode, backpropagates the ID loss of both branches
(label smoothing 0.1), and prints one JSON line per point from the head back to the input: the activation's RMS
and the norm of the loss gradient with respect to it. A growth of the gradient towards the input means the early
layers get far larger relative updates than the late ones in the first SGD steps.

``--eval-mode``: BatchNorm with running statistics (re-estimated on 4 training batches first) instead of batch
statistics, to tell the part of the growth that batch statistics cause. ``--option KEY=VALUE``: an architecture
option of ``build_model`` (e.g. ``conv_init=fan_out``, ``head_relu=true``: the network before the learning study).

Usage: python benchmarks/grad_profile.py [--model robustreid_1x] [--data DIR] [--seed 0] [--eval-mode]
       [--option KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from robustreid.attention import crop_regions
from robustreid.datasets import load_dataset
from robustreid.loaders import build_train_loader
from robustreid.model import build_model
from robustreid.swag import update_bn
from robustreid.synthetic import write_market1501


def profile(model, imgs: torch.Tensor, pids: torch.Tensor) -> list[dict]:
    """The forward of ``ReIDNet.forward_features`` with every stage boundary kept for its gradient."""
    kept: list[tuple[str, torch.Tensor]] = []

    def keep(name: str, t: torch.Tensor) -> torch.Tensor:
        t.retain_grad()
        kept.append((name, t))
        return t

    arch = model.arch
    stage_in = keep("stem", model.stem(imgs))
    local = None
    for k in range(3):
        h = stage_in
        for j, block in enumerate(model.stages[k]):
            h = keep(f"stage{k + 1}.block{j}", block(h))
        mask, theta = model.attention[k](h)
        if arch.local_branch:
            crops = crop_regions(stage_in, theta, arch.local_sizes[k])
            local = model.local_blocks[k](crops if local is None else crops + local)
        stage_in = keep(f"stage{k + 1}.attended", h * mask)
    feats = [keep("global_feat", model.global_head(model.global_pool(stage_in)))]
    if arch.local_branch:
        pooled = model.local_pool(local).view(imgs.shape[0], -1)
        feats.append(keep("local_feat", model.local_head(pooled)))
    if arch.l2_norm:
        feats = [F.normalize(f, dim=1) for f in feats]
    loss = sum(F.cross_entropy(clf(f), pids, label_smoothing=0.1) for clf, f in zip(model.classifiers, feats))
    loss.backward()
    return [{"point": name, "act_rms": float(t.detach().pow(2).mean().sqrt()), "grad_norm": float(t.grad.norm())}
            for name, t in reversed(kept)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="robustreid_1x")
    parser.add_argument("--data", help="a Market1501-layout folder (default: the synthetic set in a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-mode", action="store_true", help="BatchNorm with (re-estimated) running statistics")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    options = {k: json.loads(v) if v in ("true", "false") else v for k, _, v in (o.partition("=") for o in args.option)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "synth"
        if not args.data:
            write_market1501(root)
        dataset = load_dataset("market1501", root)
        torch.manual_seed(args.seed)
        model = build_model(args.model, dataset.num_train_pids, **options).train()
        loader = build_train_loader(dataset.train, model.data_config, num_workers=0, seed=args.seed)
        batches = iter(loader)
        imgs, pids, _, _ = next(batches)
        if args.eval_mode:
            update_bn(model, batches, max_batches=4)
            model.eval()
        rows = profile(model, imgs, pids)
    head = rows[0]["grad_norm"]
    for row in rows:
        print(json.dumps({"bench": "grad_profile", "model": args.model, "options": options,
                          "bn": "eval" if args.eval_mode else "train", **row,
                          "grad_vs_head": round(row["grad_norm"] / head, 2)}))


if __name__ == "__main__":
    main()
