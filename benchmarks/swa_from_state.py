"""Score the SWA mean (and the last SGD iterate) of a finished SWAG run from its saved state, BN refreshed.

Loads ``RUN/last.pt`` (weights of the last SGD iterate + the SWAG state), refreshes BatchNorm statistics with
the training loader (PK batches, train augmentation, as the SWAG stage does) and evaluates; then writes the SWA
mean into the network, refreshes again and evaluates. One JSON line each. Used for the README's SWAG table.

Usage: python benchmarks/swa_from_state.py RUN --dataset market1501 --root ROOT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustreid.checkpoint import load_checkpoint, model_from_checkpoint
from robustreid.datasets import load_dataset
from robustreid.evaluate import evaluate, metrics_summary
from robustreid.loaders import build_train_loader
from robustreid.swag import SWAG, update_bn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--root", required=True)
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


if __name__ == "__main__":
    main()
