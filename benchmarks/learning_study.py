"""Why does robustreid_1x learn slowly? Settings x seeds at a fixed step budget (issue 16, README "Learning study").

One run = ``robustreid.demo.demo_config`` (the demo's recipe: 3 epochs, Eq. 1's shape, augmentation off, bf16
where native) or, with ``--schedule train``, what ``robustreid train --epochs N --set schedule.swag_cycles=0`` runs
(the preset's Eq. 1 scaled to N epochs), with one setting's config overrides on top, trained by
``robustreid.train.fit`` (the same code path as the demo and the CLI), then scored on the dataset's query /
gallery twice: as trained, and after re-estimating every BatchNorm's running statistics on the training images
with the test transform (hypothesis 5: stale statistics). For the first seed of each setting it also measures
the per-layer relative update ``||w_{t+1} - w_t|| / ||w_t||`` over the first ``--update-steps`` SGD steps
(hypothesis 1: init scale vs effective learning rate), median per layer group.

Each run appends one JSON line to ``--out``; a finished study prints a table of mean and standard deviation
over seeds per setting (``--summarize FILE`` prints it again from the JSON lines). Choose settings on a
validation set (``robustreid synth runs/val_data --seed 1``), report on the default set (the demo's data).

Usage:
    python benchmarks/learning_study.py --root runs/val_data --settings old,new --seeds 0 1 2 \\
        --out runs/study/val.jsonl
    python benchmarks/learning_study.py --summarize runs/study/val.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from robustreid.amp import native_bf16
from robustreid.checkpoint import load_model
from robustreid.config import apply_overrides, parse_set, preset
from robustreid.datasets import load_dataset
from robustreid.demo import demo_config
from robustreid.evaluate import evaluate, metrics_summary
from robustreid.loaders import RandomErasing, build_test_loader, build_train_loader
from robustreid.model import build_model
from robustreid.schedule import lr_at
from robustreid.swag import update_bn
from robustreid.losses import ReIDCriterion
from robustreid.train import fit, param_groups, train_step

# Each setting: overrides on top of the recipe. "old" is the network as it was before the study (Kaiming
# fan-out init, ReLU after each FC head's BatchNorm); the others change one or two readings the paper leaves open.
SETTINGS: dict[str, dict] = {
    "preset": {},  # the preset's network as robustreid builds it now (for hacnn: HA-CNN's own init and head)
    "old": {"conv_init": "fan_out", "head_relu": True},
    "default_init": {"conv_init": "default", "head_relu": True},
    "no_head_relu": {"conv_init": "fan_out", "head_relu": False},
    "new": {"conv_init": "default", "head_relu": False},
    # hypothesis 1, the cure: each scale-invariant layer's norm set so one SGD step at 3e-2 moves it by 1e-2 / 3e-3
    "new+balanced1e-2": {"conv_init": "default", "head_relu": False, "init_relative_update": 1e-2},
    "new+balanced3e-3": {"conv_init": "default", "head_relu": False, "init_relative_update": 3e-3},
    # the ID loss's logit scale: classifier rows of norm 32 instead of 8 (a row's relative SGD step is
    # ~lr * ||grad|| / norm: 7e-5 per step at norm 8, so in a short run the classifier hardly moves)
    "new+clf32": {"conv_init": "default", "head_relu": False, "classifier_norm": 32.0},
}


def _group(name: str, module: nn.Module) -> str:
    """A layer group for the relative-update table: stem, stage k depthwise / pointwise, attention, local, head."""
    if name.startswith("stem"):
        return "stem"
    if isinstance(module, nn.Conv2d):
        kind = "depthwise" if module.groups > 1 else ("1x1" if module.kernel_size == (1, 1) else "kxk")
        part = name.split(".")
        if part[0] == "stages":
            return f"stage{int(part[1]) + 1} {kind}"
        return f"{part[0]} {kind}"
    return name.split(".")[0]


@torch.no_grad()
def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def relative_updates(cfg, dataset, steps: int) -> dict:
    """Median over each layer group of the mean over ``steps`` SGD steps of ``||dw|| / ||w||`` (conv / linear weights)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, dataset.num_train_pids, **cfg.model_options())
    loader = build_train_loader(dataset.train, model.data_config, cfg.data.batch_p, cfg.data.batch_k, num_workers=0,
                                seed=cfg.seed, erasing=RandomErasing(cfg.data.random_erasing), pad=cfg.data.pad)
    optimizer = torch.optim.SGD(param_groups(model, cfg.optim.classifier_lr_factor), lr=lr_at(0, cfg.schedule),
                                momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    criterion = ReIDCriterion(cfg.loss, dataset.num_train_pids)
    modules = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    ratios: dict[str, list[float]] = defaultdict(list)
    initial_norms = {n: float(m.weight.norm()) for n, m in modules.items()}
    loader.sampler.set_epoch(0)
    model.train()
    for step, (imgs, pids, _, _) in enumerate(loader):
        if step == steps:
            break
        before = _snapshot(model)
        train_step(model, imgs, pids, optimizer, criterion, lr_at(step / len(loader), cfg.schedule),
                   torch.bfloat16 if cfg.amp else None)
        with torch.no_grad():
            for n, m in modules.items():
                ratios[n].append(float((m.weight - before[n]).norm() / before[n].norm().clamp_min(1e-12)))
    per_group: dict[str, list[float]] = defaultdict(list)
    for n, values in ratios.items():
        if initial_norms[n] == 0:  # zero-initialised (the hard-attention regressors): no relative scale
            continue
        per_group[_group(n, modules[n])].append(sum(values) / len(values))
    return {g: statistics.median(v) for g, v in sorted(per_group.items())}


def recipe(args, setting: str, seed: int):
    overrides = json.loads(json.dumps(SETTINGS[setting]))  # a deep copy
    overrides.update(parse_set(args.set))
    if args.schedule == "demo":
        cfg = demo_config(args.epochs, args.amp, seed, args.preset)
    else:  # what `robustreid train --preset P --epochs N --set schedule.swag_cycles=0` runs
        base = preset(args.preset)
        schedule = dataclasses.asdict(base.schedule.scaled(args.epochs))
        cfg = apply_overrides(base, {"schedule": {**schedule, "swag_cycles": 0}, "amp": args.amp, "seed": seed,
                                     "eval_every_epochs": 0})
    return apply_overrides(cfg, overrides)


def run_one(args, dataset, setting: str, seed: int) -> dict:
    cfg = recipe(args, setting, seed)
    run_dir = Path(args.runs) / f"{Path(args.root).name}-{args.preset}-{args.schedule}{args.epochs}-{setting}-s{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run, not a resume: fit would append to the old metrics.jsonl
    start = time.perf_counter()
    fit(cfg, dataset, run_dir, show_progress=False, log=lambda *_: None, final_eval=False)
    train_seconds = time.perf_counter() - start
    net = load_model(run_dir / "last.pt")
    trained = metrics_summary(evaluate(net, dataset, num_workers=2))
    update_bn(net, build_test_loader(dataset.train, net.data_config, 64, 0))
    refreshed = metrics_summary(evaluate(net, dataset, num_workers=2))
    record = {"root": str(args.root), "preset": args.preset, "schedule": args.schedule, "setting": setting,
              "overrides": SETTINGS[setting], "set": args.set, "seed": seed, "epochs": cfg.schedule.epochs,
              "amp": cfg.amp, "train_seconds": round(train_seconds, 1),
              **{k: round(trained[k], 2) for k in ("rank1", "rank5", "mAP")},
              "bn_refresh": {k: round(refreshed[k], 2) for k in ("rank1", "mAP")}}
    if args.update_steps and seed == args.seeds[0]:
        record["relative_update"] = {g: round(v, 5) for g, v in relative_updates(cfg, dataset, args.update_steps).items()}
    return record


def summarize(path: str | Path) -> str:
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        key = (Path(r["root"]).name, r["preset"], f'{r["schedule"]} {r["epochs"]}', r["setting"], " ".join(r["set"]))
        runs[key].append(r)

    def stat(values):
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        return f"{mean:5.1f} ± {sd:4.1f}"

    lines = ["| data | preset | schedule, epochs | setting | seeds | rank-1 | mAP | rank-1 / mAP, BN re-estimated | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (data, preset_name, schedule, setting, extra), rs in runs.items():
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(
            f"| {data} | {preset_name} | {schedule} | {setting}{' ' + extra if extra else ''} | {seeds} | {stat([r['rank1'] for r in rs])} | "
            f"{stat([r['mAP'] for r in rs])} | {stat([r['bn_refresh']['rank1'] for r in rs])} / "
            f"{stat([r['bn_refresh']['mAP'] for r in rs])} | {statistics.fmean(r['train_seconds'] for r in rs):.0f} |")
    updates = [(f"{k[1]} {k[2]} {k[3]}", r["relative_update"]) for k, rs in runs.items() for r in rs
               if "relative_update" in r]
    if updates:
        groups = sorted({g for _, u in updates for g in u})
        lines += ["", "Relative update ||dw|| / ||w|| per step (mean of the first steps, median over the group's layers):",
                  "", "| group | " + " | ".join(s for s, _ in updates) + " |", "|---|" + "---|" * len(updates)]
        lines += [f"| {g} | " + " | ".join(f"{u.get(g, float('nan')):.2e}" for _, u in updates) + " |" for g in groups]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", help="a Market1501-layout folder (validation: robustreid synth DIR --seed 1)")
    p.add_argument("--preset", default="robust-reid-1x")
    p.add_argument("--settings", default="old,new", help=f"comma-separated, of: {', '.join(SETTINGS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--schedule", choices=("demo", "train"), default="demo",
                   help="demo: demo_config(epochs); train: the preset's Eq. 1 scaled to --epochs, no SWAG")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: where the CPU computes bf16 natively, as the demo)")
    p.add_argument("--update-steps", type=int, default=10, help="steps of the relative-update measurement (0 = off)")
    p.add_argument("--runs", default="runs/study/runs", help="folder for the runs' checkpoints")
    p.add_argument("--out", default="runs/study/study.jsonl")
    p.add_argument("--summarize", metavar="FILE", help="print the table of FILE's runs and exit")
    args = p.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    if not args.root:
        p.error("--root is required")
    unknown = [s for s in args.settings.split(",") if s not in SETTINGS]
    if unknown:
        p.error(f"unknown settings {unknown}; valid: {', '.join(SETTINGS)}")
    if args.amp is None:
        args.amp = native_bf16("cpu")
    dataset = load_dataset("market1501", args.root)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seed-major: every setting has a first result early
        for setting in args.settings.split(","):
            record = run_one(args, dataset, setting, seed)
            line = json.dumps(record)
            print(line, flush=True)
            with open(args.out, "a") as f:
                f.write(line + "\n")
    print(summarize(args.out))


if __name__ == "__main__":
    main()
