"""Make the shipped weights (``make weights``): synthetic data -> train -> evaluate -> pack into the zoo.

Every step is one of this repository's own commands (``robustreid synth``, ``robustreid train``,
``robustreid swag``, ``robustreid eval``), run as a subprocess so the model card can record it exactly as it
ran. Then ``robustreid.zoo.pack_checkpoint`` writes ``src/robustreid/zoo/<name>.safetensors`` and its card
``<name>.json``.

Data: the union of six generator seeds (``TRAIN_SEEDS``; four more, ``MORE_SEEDS``, for a continued stage),
disjoint from the demo's seeds (0, 1, 2) and from the validation seed (``VALIDATION_SEED``) used to choose
settings; the paper trains its tracking model on a union of three datasets for a generic representation
(Section 5), and each generator seed draws its own cameras.

Resumable: a run folder that holds a finished run is not trained again; one that holds an unfinished run is
continued with ``train --resume``. So ``make weights`` can be stopped and started again across sessions.

    python scripts/make_weights.py [--models robustreid_1x hacnn] [--work runs/zoo1] [--zoo DIR] [--no-pack]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Generator seeds of the training union (each: 40 training identities, 30 test identities, 6 cameras): 240
# identities seen by 36 cameras. v0 trained on 3 seeds x 200 identities (600 identities, 18 cameras) and its
# robustreid_1x barely left chance in 1,750 steps (identity loss 12.8 -> 11.8); fewer identities are seen more
# often per step, and more seeds bring more cameras (docs/MODEL_ZOO.md).
TRAIN_SEEDS = (10, 11, 12, 13, 14, 15)
TRAIN_DATA = dict(ids_train=40, ids_test=30, cameras=6)
VALIDATION_SEED = 20  # robustreid synth defaults (120 / 100 identities, 6 cameras): choosing settings
DEMO_SEEDS = (0, 1, 2)  # the demo's sets: evaluated zero-shot, never trained on

# The recipe of each shipped model: a preset and the overrides the run used. Both train 22 epochs of the union
# (~90 PK batches of 32 each: ~2,000 SGD steps): Eq. 1's shape, warmup over the first 2 epochs
# (robust-reid-1x; HA-CNN has none), 3e-2 to epoch 15, 3e-3 to epoch 20, 3e-4 for the last two; the SWAG stage
# (SWAG_STAGES, below) runs after the main run as its own command.
# Colour jitter (loaders.camera_color_jitter, probability 0.8; not in the paper): v0's descriptors found the
# query's own camera first for 92-97 % of the queries (benchmarks/camera_bias.py), so the colour cast of a
# camera must stop being a cue.
EPOCHS = 22
SCHEDULE = [
    "--set",
    "schedule.milestones=[15,20]",
    "--set",
    "schedule.swag_cycles=0",
    "--set",
    "data.color_jitter=0.8",
    "--set",
    "eval_every_epochs=5",
    "--set",
    "seed=10",
]
RECIPES = {  # name -> (preset, overrides)
    "robustreid_1x": ("robust-reid-1x", ["--set", "schedule.warmup_epochs=2", *SCHEDULE]),
    "hacnn": ("hacnn", SCHEDULE),
}

# The SWAG stage (Section 3.1; Table 2's column h is the 1x network with SWAG, HA-CNN has none) on the
# finished main run, `robustreid swag`: 5 cosine cycles of 3 epochs from 3e-3 (1,530 more SGD steps), the SWA
# mean of the 5 cycle-end snapshots with BatchNorm refreshed on the training loader. Which of its files ships
# was chosen on the validation set (seed 20, rank-1 / mAP): the stage's start 33.9 / 31.7, its SWA mean
# 36.2 / 33.0, its last SGD iterate 36.7 / 33.8, so the last iterate (last.pt) ships (docs/MODEL_ZOO.md).
SWAG_STAGES = {  # name -> (swag options, the file of the stage's folder that is kept)
    "robustreid_1x": (["--cycles", "5", "--cycle-epochs", "3", "--set", "swag_bma_samples=3"], "last.pt"),
}

# The continued stage (robustreid_1x v3), after the SWAG stage: its kept file trained again from Eq. 1's
# peak (`train --init`, new identity classifiers) on a wider union, TRAIN_SEEDS + MORE_SEEDS (400 identities
# seen by 60 cameras), 11 epochs of 169 PK batches (1,859 steps): 3e-2 for 7 epochs (1 of warmup), 3e-3 for
# 3, 3e-4 for 1. Why: robustreid_1x was still underfitting (identity loss 8.2 after 3,774 steps, HA-CNN's 1.4
# after 2,244) and its zero-shot figures trailed the held-out test of its own cameras by ~25 rank-1: more
# steps at the peak rate, and more cameras. Its last.pt ships, chosen on the validation set (MODEL_ZOO.md).
MORE_SEEDS = (16, 17, 18, 19)
CONTINUED_STAGES = {  # name -> train options (beside --preset, --dataset, --root, --out, --init, --amp)
    "robustreid_1x": ["--epochs", "11", "--set", "schedule.warmup_epochs=1",
                      "--set", "schedule.milestones=[7,10]", "--set", "schedule.swag_cycles=0",
                      "--set", "data.color_jitter=0.8", "--set", "eval_every_epochs=4", "--set", "seed=11"],
    # HA-CNN on the same union with the same step budget as robustreid_1x's three stages (2,244 + 1,530 +
    # 1,859 = 5,633 steps): 20 epochs of 169 batches (3,380 steps; 5,624 in all) from its main run's last.pt,
    # the continued stage's shape scaled (3e-2 for 13 epochs, 3e-3 for 5, 3e-4 for 2; the preset: no warmup).
    "hacnn": ["--epochs", "20", "--set", "schedule.milestones=[13,18]", "--set", "schedule.swag_cycles=0",
              "--set", "data.color_jitter=0.8", "--set", "eval_every_epochs=5", "--set", "seed=11"],
}


def model_seeds(name: str) -> tuple[int, ...]:
    """The generator seeds whose training splits ``name`` was trained on (its continued stage adds some)."""
    return TRAIN_SEEDS + (MORE_SEEDS if name in CONTINUED_STAGES else ())


def robustreid(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "robustreid"), *args]


def run(cmd: list[str], log_path: Path | None = None) -> float:
    """Run ``cmd`` (output to ``log_path`` if given), fail loudly; returns the wall time in seconds."""
    print("$ " + shown(cmd), flush=True)
    start = time.perf_counter()
    if log_path is None:
        subprocess.run(cmd, check=True, cwd=ROOT)
    else:
        with open(log_path, "a") as log:
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def shown(cmd: list[str]) -> str:
    """The command as a user would type it (``robustreid ...`` instead of the venv's absolute path)."""
    first = "robustreid" if cmd[0].endswith("/robustreid") else cmd[0]
    return shlex.join(
        [first, *[str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in cmd[1:]]]
    )


def machine() -> dict:
    """What a figure was measured on: CPU model, the vector extensions that matter for PyTorch, cores."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    import torch

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "extensions": [f for f in wanted if f in flags],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def git_commit() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def write_data(work: Path) -> dict:
    """The training union and the evaluation sets; returns {set name: (root, command)}."""
    sets = {}
    for seed in TRAIN_SEEDS + MORE_SEEDS:
        sets[f"train_s{seed}"] = (
            work / f"data_s{seed}",
            robustreid(
                "synth",
                str(work / f"data_s{seed}"),
                "--ids-train",
                str(TRAIN_DATA["ids_train"]),
                "--ids-test",
                str(TRAIN_DATA["ids_test"]),
                "--cameras",
                str(TRAIN_DATA["cameras"]),
                "--seed",
                str(seed),
            ),
        )
    sets["validation"] = (
        work / f"val_s{VALIDATION_SEED}",
        robustreid("synth", str(work / f"val_s{VALIDATION_SEED}"), "--seed", str(VALIDATION_SEED)),
    )
    for seed in DEMO_SEEDS:
        sets[f"demo_s{seed}"] = (
            work / f"demo_s{seed}",
            robustreid("synth", str(work / f"demo_s{seed}"), "--seed", str(seed)),
        )
    for root, cmd in sets.values():
        if not (root / "synth.json").is_file():  # synth itself rewrites only an incomplete set
            run(cmd)
    return sets


def rel(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (commands as a user types them)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def train_command(name: str, work: Path, amp: bool) -> list[str]:
    preset, overrides = RECIPES[name]
    return robustreid("train", "--preset", preset, *union_args(work, TRAIN_SEEDS), "--out", rel(work / name),
                      "--epochs", str(EPOCHS), *(["--amp"] if amp else []), *overrides)


def train_run(run_dir: Path, cmd: list[str], amp: bool, what: str = "run") -> dict:
    """Run ``robustreid train`` command ``cmd`` into ``run_dir``, or resume it, or reuse it when finished;
    returns its provenance (command, commit, machine, precision, wall time)."""
    provenance_path = run_dir / "provenance.json"
    if (run_dir / "summary.json").is_file():
        print(f"{run_dir}: finished {what}, not trained again", flush=True)
        return json.loads(provenance_path.read_text())
    if (run_dir / "last.pt").is_file():
        run(robustreid("train", "--resume", str(run_dir)), run_dir / "train.log")
        return json.loads(provenance_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    provenance = {
        "command": shown(cmd),
        "commit": git_commit(),
        "machine": machine(),
        "precision": "bfloat16 autocast" if amp else "float32",
    }
    provenance_path.write_text(json.dumps(provenance, indent=2))
    provenance["wall_seconds"] = run(cmd, run_dir / "train.log")
    provenance_path.write_text(json.dumps(provenance, indent=2))
    return provenance


def train(name: str, work: Path, amp: bool) -> dict:
    """The main run ``work/name`` (trained, resumed or reused); returns its provenance."""
    return train_run(work / name, train_command(name, work, amp), amp)


def swag_stage(name: str, work: Path) -> dict | None:
    """The SWAG stage of ``work/name`` into ``work/name_swag`` (run, resumed by the same command, or reused
    when finished); returns its provenance, None for a model without one."""
    if name not in SWAG_STAGES:
        return None
    options, _ = SWAG_STAGES[name]
    out = work / f"{name}_swag"
    provenance_path = out / "provenance.json"
    if (out / "summary.json").is_file():
        print(f"{out}: finished SWAG stage, not run again", flush=True)
        return json.loads(provenance_path.read_text())
    cmd = robustreid("swag", "--from", rel(work / name), "--out", rel(out), *options)
    provenance = {"command": shown(cmd), "commit": git_commit(), "machine": machine()}
    provenance["wall_seconds"] = run(cmd, work / f"{name}_swag.log")  # the command makes the folder
    provenance_path.write_text(json.dumps(provenance, indent=2))
    return provenance


def union_args(work: Path, seeds) -> list[str]:
    """``--dataset`` and ``--root`` of the union of the training sets of generator ``seeds``."""
    return ["--dataset", ",".join(["market1501"] * len(seeds)),
            "--root", ",".join(rel(work / f"data_s{seed}") for seed in seeds)]


def continued_stage(name: str, work: Path, amp: bool) -> dict | None:
    """The continued stage of ``name`` into ``work/name_s2`` (run, resumed, or reused when finished); returns
    its provenance, None for a model without one."""
    if name not in CONTINUED_STAGES:
        return None
    start = shipped_checkpoint(name, work, continued=False)
    out = work / f"{name}_s2"
    cmd = robustreid("train", "--preset", RECIPES[name][0], *union_args(work, model_seeds(name)),
                     "--out", rel(out), "--init", rel(start), *(["--amp"] if amp else []),
                     *CONTINUED_STAGES[name])
    return train_run(out, cmd, amp, "continued stage")


def shipped_checkpoint(name: str, work: Path, continued: bool = True) -> Path:
    """The file that ships: the last stage's (continued, else SWAG, else the main run's); with
    ``continued=False`` the one before the continued stage, which that stage starts from."""
    if continued and name in CONTINUED_STAGES:
        return work / f"{name}_s2" / "last.pt"
    if name in SWAG_STAGES:
        return work / f"{name}_swag" / SWAG_STAGES[name][1]
    return work / name / "last.pt"


def evaluate(checkpoint: Path, sets: dict, seeds) -> dict:
    """rank-1 / rank-5 / mAP / mINP on the held-out split of the union of ``seeds`` (the model's training
    data), the validation set and the demo sets."""
    union = ",".join(rel(sets[f"train_s{seed}"][0]) for seed in seeds)
    targets = {"train_union_test": (",".join(["market1501"] * len(seeds)), union)}
    targets.update(
        {key: ("market1501", str(root)) for key, (root, _) in sets.items() if not key.startswith("train_")}
    )
    figures = {}
    for key, (dataset, root) in targets.items():
        cmd = robustreid(
            "eval", "--checkpoint", str(checkpoint), "--dataset", dataset, "--root", root, "--json"
        )
        out = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True).stdout
        metrics = json.loads(out.strip().splitlines()[-1])
        figures[key] = {
            "command": shown(cmd),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()},
        }
        print(f"  {key}: rank-1 {metrics['rank1']:.1f} mAP {metrics['mAP']:.1f}", flush=True)
    demo = [figures[f"demo_s{seed}"] for seed in DEMO_SEEDS]
    figures["demo_mean"] = {
        k: round(sum(d[k] for d in demo) / len(demo), 2) for k in ("rank1", "rank5", "mAP")
    }
    figures["headline"] = "demo_mean"  # what `robustreid zoo list` shows
    return figures


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def swag_card(name: str, work: Path, provenance: dict, iterations: int | None) -> dict:
    """The SWAG stage's part of the card: its command, time, steps, and Table 3's rows on the held-out test of
    the union (the stage's start, the last SGD iterate, the SWA mean, the Bayesian model average)."""
    out = work / f"{name}_swag"
    history = _history(out)
    rows = [h for h in history if h.get("kind") == "train"]
    summary = json.loads((out / "summary.json").read_text())
    keys = ("rank1", "rank5", "mAP", "mINP")
    return {
        **provenance,
        "epochs": len(rows),
        "steps": len(rows) * iterations if iterations else None,
        "train_seconds": round(sum(float(h.get("seconds", 0)) for h in rows), 1),
        "shipped": SWAG_STAGES[name][1],
        "table3_train_union_test": {
            row: {k: round(summary[row][k], 2) for k in keys}
            for row in ("start", "sgd_last", "swa_mean", "bma") if row in summary
        },
        "curve": [
            {k: h[k] for k in ("epoch", "rank1", "mAP")} for h in history if h.get("kind") == "eval"
        ],
    }


def _iterations(run_dir: Path) -> int | None:
    """PK batches per epoch of a training run, from its plan line in train.log."""
    plan = re.search(r"epochs x (\d+) iterations", (run_dir / "train.log").read_text())
    return int(plan.group(1)) if plan else None


def continued_card(name: str, work: Path, provenance: dict) -> dict:
    """The continued stage's part of the card: its command, data, time, steps and curve (held-out test of the
    wider union)."""
    out = work / f"{name}_s2"
    history = _history(out)
    rows = [h for h in history if h.get("kind") == "train"]
    iterations = _iterations(out)
    return {
        **provenance,
        "generator_seeds": list(model_seeds(name)),
        "epochs": len(rows),
        "steps": len(rows) * iterations if iterations else None,
        "train_seconds": round(sum(float(h.get("seconds", 0)) for h in rows), 1),
        "shipped": "last.pt",
        "curve": [{k: h[k] for k in ("epoch", "rank1", "mAP")} for h in history if h.get("kind") == "eval"],
    }


def card(name: str, work: Path, sets: dict, provenance: dict, figures: dict,
         swag_provenance: dict | None = None, continued_provenance: dict | None = None) -> dict:
    run_dir = work / name
    history = _history(run_dir)
    train_rows = [h for h in history if h.get("kind") == "train"]
    iterations = _iterations(run_dir)
    steps = len(train_rows) * iterations if iterations else None
    swag = None if swag_provenance is None else swag_card(name, work, swag_provenance, iterations)
    seeds = model_seeds(name)
    data = {
        f"train_s{seed}": {"command": shown(sets[f"train_s{seed}"][1]),
                           **json.loads((sets[f"train_s{seed}"][0] / "synth.json").read_text())["counts"]}
        for seed in seeds
    }
    continued = None if continued_provenance is None else continued_card(name, work, continued_provenance)
    return {
        "model": name,
        "preset": RECIPES[name][0],
        "paper": "Lawen et al., Attention Network Robustification for Person ReID (Table 1, Eq. 1-5)",
        "data": {
            "generator": "robustreid.synthetic (Market1501 layout)",
            "generator_seeds": list(seeds),
            "identities": TRAIN_DATA["ids_train"] * len(seeds),
            "cameras": TRAIN_DATA["cameras"] * len(seeds),
            "images": sum(d["bounding_box_train"] for d in data.values()),
            "sets": data,
            "never_seen": f"demo seeds {list(DEMO_SEEDS)}, validation seed {VALIDATION_SEED}",
        },
        "training": {
            **provenance,
            "epochs": len(train_rows),
            "steps": steps,
            "batch": "PK 8 x 4 = 32",
            "train_seconds": round(sum(float(h.get("seconds", 0)) for h in train_rows), 1),
            "curve": [
                {k: h[k] for k in ("epoch", "rank1", "mAP")} for h in history if h.get("kind") == "eval"
            ],
        },
        **({"swag_stage": swag} if swag else {}),
        **({"continued_stage": continued} if continued else {}),
        "evaluation": figures,
        "reproduce": "make weights (python scripts/make_weights.py): data, training and these figures",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--work", default="runs/zoo1", help="data and run folders (v0 used runs/zoo)")
    parser.add_argument("--zoo", default=None, help="where to pack (default: the package's zoo folder)")
    parser.add_argument("--no-pack", action="store_true", help="train and evaluate only")
    parser.add_argument(
        "--amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast for training: auto = where the CPU computes bfloat16 natively",
    )
    args = parser.parse_args(argv)
    from robustreid.amp import native_bf16

    amp = {"on": True, "off": False, "auto": native_bf16("cpu")}[args.amp]
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sets = write_data(work)
    for name in args.models:
        provenance = train(name, work, amp)
        swag_provenance = swag_stage(name, work)
        continued_provenance = continued_stage(name, work, amp)
        checkpoint = shipped_checkpoint(name, work)
        print(f"{name}: evaluating {checkpoint}", flush=True)
        figures = evaluate(checkpoint, sets, model_seeds(name))
        model_card = card(name, work, sets, provenance, figures, swag_provenance, continued_provenance)
        (work / f"{name}.card.json").write_text(json.dumps(model_card, indent=2))
        if not args.no_pack:
            path = pack(checkpoint, name, model_card, args.zoo)
            print(f"{name}: packed {path}", flush=True)
    if not args.no_pack:
        from robustreid.zoo import record_table2_ordering

        record_table2_ordering(args.zoo)  # the issue asks the cards to say so when Table 2's ordering fails
        render_docs(args.zoo)
    return 0


def pack(checkpoint: Path, name: str, model_card: dict, zoo_dir) -> Path:
    """The run's last weights without its identity classifiers (they name the training identities, which no
    user has; fine-tuning makes new ones), packed into the zoo with the card."""
    from robustreid.checkpoint import load_checkpoint, model_from_checkpoint, model_state
    from robustreid.zoo import pack_checkpoint

    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state)
    model.reset_classifier(0)
    slim = {**model_state(model), "config": state.get("config"), "versions": state.get("versions")}
    return pack_checkpoint(slim, name, model_card, zoo_dir=zoo_dir)


def render_docs(zoo_dir) -> None:
    """docs/MODEL_ZOO.md's table, between its markers, from the shipped cards (tests/test_zoo.py checks)."""
    from robustreid.zoo import cards_markdown, list_zoo, replace_between_markers

    page = ROOT / "docs" / "MODEL_ZOO.md"
    page.write_text(replace_between_markers(page.read_text(), cards_markdown(list_zoo(zoo_dir))))


if __name__ == "__main__":
    sys.exit(main())
