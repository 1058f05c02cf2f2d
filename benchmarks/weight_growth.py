"""How far training moved each convolution's weight norm from its initial value.

A convolution followed by BatchNorm is scale-invariant: its weights' norm does not change the output, and an
SGD step of a given learning rate moves the function less the larger the norm (effective step ~ lr / norm^2).
A layer whose norm grew 100x during training has been slowed down ~10,000x relative to its start. This prints,
for every convolution of a checkpoint, the norm of the run's own initial weights (its config's seed and model,
built as ``robustreid train`` builds them) next to the trained norm, as JSON lines, largest growth first; then
one line per identity classifier with the mean norm of its rows, initial and trained (on L2-normalised features
a row's norm is the largest logit it can give: the logit scale).

Usage: python benchmarks/weight_growth.py --checkpoint runs/long1x/last.pt [--top 10]
"""

from __future__ import annotations

import argparse
import json

import torch

from robustreid.checkpoint import load_checkpoint, model_from_checkpoint
from robustreid.model import build_model
from robustreid.train import config_from_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top", type=int, default=10, help="how many of the largest growths to print (0 = all)")
    args = p.parse_args()

    state = load_checkpoint(args.checkpoint)
    trained = model_from_checkpoint(state)
    cfg = config_from_checkpoint(state)
    torch.manual_seed(cfg.seed)  # the run's own initial weights: fit() seeds, then builds the model
    fresh = build_model(cfg.model, trained.num_classes, **cfg.model_options())
    rows, classifiers = [], []
    for (name, w0), (_, w1) in zip(fresh.state_dict().items(), trained.state_dict().items()):
        if w0.dim() == 4:
            rows.append({"conv": name, "init_norm": round(float(w0.norm()), 3),
                         "trained_norm": round(float(w1.norm()), 3), "growth": round(float(w1.norm() / w0.norm()), 2)})
        elif name.startswith("classifiers.") and name.endswith(".weight"):
            classifiers.append({"classifier": name, "init_row_norm": round(float(w0.norm(dim=1).mean()), 3),
                                "trained_row_norm": round(float(w1.norm(dim=1).mean()), 3)})
    rows.sort(key=lambda r: -r["growth"])
    for r in rows[: args.top or None] + classifiers:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
