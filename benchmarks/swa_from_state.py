"""Score the last SGD iterate, the SWA mean and SWAG BMA of a finished SWAG run from its saved state.

Loads ``RUN/last.pt`` (weights of the last SGD iterate + the SWAG state), refreshes BatchNorm statistics with
the training loader (PK batches, train augmentation, as the SWAG stage does) and evaluates; then writes the SWA
mean into the network, refreshes again and evaluates; then (``--bma-samples S`` > 0) averages the descriptors of
S SWAG samples (``--scale``), each BN-refreshed the same way (``swag.bma_embed``, as the stage's ``bma`` row).
One JSON line each. Used for the README's SWAG table.

Usage: python benchmarks/swa_from_state.py RUN --dataset market1501 --root ROOT [--bma-samples 4 --scale 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from robustreid.checkpoint import load_checkpoint, model_from_checkpoint
from robustreid.datasets import load_dataset
from robustreid.evaluate import evaluate, extract_features, metrics_summary
from robustreid.loaders import build_train_loader
from robustreid.metrics import evaluate_features
from robustreid.swag import SWAG, bma_embed, update_bn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--root", required=True)
    parser.add_argument("--bma-samples", type=int, default=4, help="SWAG samples to average (0 = skip BMA)")
    parser.add_argument("--scale", type=float, default=0.5, help="SWAG sample scale (the stage's swag_scale)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, args.root)
    state = load_checkpoint(args.run / "last.pt")
    if state.get("swag") is None:
        parser.error(f"{args.run / 'last.pt'} holds no SWAG state: expected the output of `robustreid swag`")
    model = model_from_checkpoint(state)
    loader = build_train_loader(dataset.train, model.data_config, num_workers=2)
    swag = SWAG(model, max_rank=state["swag"]["max_rank"])
    swag.load_state_dict(state["swag"])
    for name in ("last SGD iterate", "SWA mean"):
        if name == "SWA mean":
            swag.mean_into(model)
        update_bn(model, loader)
        m = metrics_summary(evaluate(model.eval(), dataset, num_workers=2))
        print(json.dumps({"bench": "swa_from_state", "model": name, "snapshots": swag.n_models,
                          **{k: round(m[k], 1) for k in ("rank1", "rank5", "mAP")}}), flush=True)
    if args.bma_samples > 0:
        def extract(net):
            q, _, _ = extract_features(net, dataset.query, num_workers=2)
            g, _, _ = extract_features(net, dataset.gallery, num_workers=2)
            return torch.cat([q, g])

        feats = bma_embed(model, swag, extract, num_samples=args.bma_samples, bn_batches=loader,
                          scale=args.scale, seed=args.seed)
        nq = len(dataset.query)
        q_pids, g_pids = (np.array([r.pid for r in rs]) for rs in (dataset.query, dataset.gallery))
        q_cams, g_cams = (np.array([r.camid for r in rs]) for rs in (dataset.query, dataset.gallery))
        cmc, mAP = evaluate_features(feats[:nq], feats[nq:], q_pids, g_pids, q_cams, g_cams)
        print(json.dumps({"bench": "swa_from_state", "model": f"SWAG BMA S={args.bma_samples}",
                          "scale": args.scale, "snapshots": swag.n_models, "rank1": round(100 * float(cmc[0]), 1),
                          "rank5": round(100 * float(cmc[4]), 1), "mAP": round(100 * float(mAP), 1)}), flush=True)


if __name__ == "__main__":
    main()
