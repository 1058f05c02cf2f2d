"""How the demo should fine-tune the shipped weights: steps x learning rate x seeds, on a validation set.

The demo (``robustreid.demo``, stage 4) fine-tunes ``zoo:robustreid_1x`` on its training split for a fixed
number of SGD steps at a constant learning rate, BatchNorm frozen (``demo.finetune_config``). Those settings
are chosen here, on a synthetic set of another generator seed than the demo's (0, 1, 2) and the shipped
weights' (10-19): ``robustreid synth runs/zoo1/val_s20 --seed 20`` (the demo's sizes). Each cell fine-tunes
from the same shipped weights with ``--seeds`` sampler / classifier seeds and evaluates on that set's query /
gallery; the first row is the shipped weights as they are. Prints a markdown table (mean ± sample sd).

    python benchmarks/finetune_study.py --root runs/zoo1/val_s20 --steps 50 100 --lr 3e-3 1e-2 --seeds 0 1 2

``--set KEY=VALUE`` changes the fine-tuning recipe in every cell (``train --set``'s keys), for example
``--set loss.id_loss=false`` (triplet only: no freshly initialised classifier in the first steps) or
``--set freeze_bn=false`` (BatchNorm in train mode, the recipe before it was frozen).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time

from robustreid.amp import native_bf16
from robustreid.checkpoint import load_checkpoint, model_from_checkpoint
from robustreid.config import apply_overrides, parse_set, preset
from robustreid.datasets import load_dataset
from robustreid.demo import _iters_per_epoch, finetune_config, finetune_preset
from robustreid.evaluate import evaluate, metrics_summary
from robustreid.train import fit


def cell(state, dataset, preset_name: str, steps: int, lr: float, seed: int, amp: bool, sets: dict) -> dict:
    iters = _iters_per_epoch(dataset, preset(preset_name))
    cfg = finetune_config(steps, seed, amp, preset_name, iters_per_epoch=iters, lr=lr)
    cfg = apply_overrides(cfg, sets)
    with tempfile.TemporaryDirectory(prefix="finetune-study-") as tmp:
        start = time.perf_counter()
        fit(dataclasses.replace(cfg, init="study"), dataset, tmp, show_progress=False, log=lambda s: None,
            final_eval=False, pretrained=state)
        seconds = time.perf_counter() - start
        m = metrics_summary(evaluate(f"{tmp}/last.pt", dataset, num_workers=2))
    return {"steps": cfg.schedule.epochs * iters, "lr": lr, "seed": seed, "rank1": m["rank1"], "mAP": m["mAP"],
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="a validation set (not the demo's seeds 0-2)")
    parser.add_argument("--checkpoint", default="zoo:robustreid_1x")
    parser.add_argument("--steps", type=int, nargs="+", default=[50])
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fine-tuning recipe override for every cell (train --set's keys)")
    args = parser.parse_args()
    sets = parse_set(args.set)
    state = load_checkpoint(args.checkpoint)
    preset_name = finetune_preset(state["arch"], args.checkpoint)
    try:  # a bad --set is refused before any evaluation or training
        apply_overrides(finetune_config(iters_per_epoch=1, preset_name=preset_name), sets)
    except ValueError as exc:
        parser.error(str(exc))
    dataset = load_dataset("market1501", args.root)
    amp = native_bf16("cpu")
    zero = metrics_summary(evaluate(model_from_checkpoint(state).eval(), dataset, num_workers=2))
    print(json.dumps({"steps": 0, "rank1": zero["rank1"], "mAP": zero["mAP"]}), flush=True)
    rows = ["| steps | lr | rank-1 (mean ± sd) | mAP (mean ± sd) | per seed rank-1 / mAP | s per run |",
            "|---:|---:|---:|---:|---|---:|", f"| 0 (zero-shot) | - | {zero['rank1']:.1f} | {zero['mAP']:.1f} | | |"]
    for steps in args.steps:
        for lr in args.lr:
            cells = []
            for seed in args.seeds:
                cells.append(cell(state, dataset, preset_name, steps, lr, seed, amp, sets))
                print(json.dumps(cells[-1]), flush=True)
            r1, mp = [c["rank1"] for c in cells], [c["mAP"] for c in cells]
            sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
            rows.append(f"| {cells[0]['steps']} | {lr:g} | {statistics.mean(r1):.1f} ± {sd(r1):.1f} | "
                        f"{statistics.mean(mp):.1f} ± {sd(mp):.1f} | "
                        + ", ".join(f"{c['rank1']:.1f} / {c['mAP']:.1f}" for c in cells)
                        + f" | {statistics.mean(c['seconds'] for c in cells):.0f} |")
    if args.set:
        rows.insert(0, "fine-tuning overrides: " + " ".join(args.set) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
