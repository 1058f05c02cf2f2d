"""Make the shipped weights (``make weights``): synthetic data -> train -> evaluate -> pack into the zoo.

Every step is one of this repository's own commands (``robustreid synth``, ``robustreid train``,
``robustreid swag``, ``robustreid eval``), run as a subprocess so the model card can record it exactly as it
ran. Then ``robustreid.zoo.pack_checkpoint`` writes ``src/robustreid/zoo/<name>.safetensors`` and its card
``<name>.json``.

Data: the union of six generator seeds (``TRAIN_SEEDS``; more, ``MORE_SEEDS`` and ``WIDER_SEEDS``, for the
continued stages), disjoint from the demo's seeds (0, 1, 2) and from the validation seed (``VALIDATION_SEED``)
used to choose settings; the paper trains its tracking model on a union of three datasets for a generic
representation (Section 5), and each generator seed draws its own cameras.

Resumable: a run folder that holds a finished run is not trained again; one that holds an unfinished run is
continued with ``train --resume``; when a continued stage has finished, the stages before it are not run again
(their folders may be gone: the card shipped before holds their record). So ``make weights`` can be stopped
and started again across sessions.

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

# The continued stages: the model before them trained again from Eq. 1's peak (`train --init`, new identity
# classifiers) on a wider union, each stage from the one before.
# 1. (v3 of robustreid_1x) after the SWAG stage, on TRAIN_SEEDS + MORE_SEEDS (400 identities seen by 60
#    cameras), 11 epochs of 169 PK batches (1,859 steps): 3e-2 for 7 epochs (1 of warmup), 3e-3 for 3, 3e-4
#    for 1. Why: robustreid_1x was still underfitting (identity loss 8.2 after 3,774 steps, HA-CNN's 1.4 after
#    2,244) and its zero-shot figures trailed the held-out test of its own cameras by ~25 rank-1: more steps
#    at the peak rate, and more cameras. Its last.pt shipped, chosen on the validation set (MODEL_ZOO.md).
# 2. (v4) on that union plus WIDER_SEEDS (800 identities, 120 cameras), 6 epochs of 340 batches (2,040
#    steps): 3e-2 for 4, 3e-3 for 1, 3e-4 for 1. Why: stage 1's gain came with more cameras and identities,
#    and the identity loss still ended near chance (9.28 against 12.0). Chosen on the validation set.
MORE_SEEDS = (16, 17, 18, 19)
WIDER_SEEDS = (40, 41, 42, 43, 44, 45, 46, 47, 48, 49)  # not 20-31: the validation set and tracking scenes
_STAGE = ["--set", "schedule.swag_cycles=0", "--set", "data.color_jitter=0.8"]
# name -> [(generator seeds of the stage's union, train options beside --preset, --dataset, --root, --out,
# --init, --amp)], in the order they run, into the folders name_s2, name_s3, ...
CONTINUED_STAGES = {
    "robustreid_1x": [
        (TRAIN_SEEDS + MORE_SEEDS,
         ["--epochs", "11", "--set", "schedule.warmup_epochs=1", "--set", "schedule.milestones=[7,10]",
          *_STAGE, "--set", "eval_every_epochs=4", "--set", "seed=11"]),
        (TRAIN_SEEDS + MORE_SEEDS + WIDER_SEEDS,
         ["--epochs", "6", "--set", "schedule.warmup_epochs=1", "--set", "schedule.milestones=[4,5]",
          *_STAGE, "--set", "eval_every_epochs=3", "--set", "seed=12"]),
    ],
    # HA-CNN on the same unions with the same step budget as robustreid_1x's stages. Stage 1: 20 epochs of 169
    # batches (3,380 steps; 5,624 in all against robustreid_1x's 2,244 + 1,530 + 1,859 = 5,633) from its main
    # run's last.pt, the continued stage's shape scaled (3e-2 for 13 epochs, 3e-3 for 5, 3e-4 for 2; the
    # preset: no warmup). Stage 2: robustreid_1x's stage 2 (2,040 steps).
    "hacnn": [
        (TRAIN_SEEDS + MORE_SEEDS,
         ["--epochs", "20", "--set", "schedule.milestones=[13,18]", *_STAGE, "--set", "eval_every_epochs=5",
          "--set", "seed=11"]),
        (TRAIN_SEEDS + MORE_SEEDS + WIDER_SEEDS,
         ["--epochs", "6", "--set", "schedule.milestones=[4,5]", *_STAGE, "--set", "eval_every_epochs=3",
          "--set", "seed=12"]),
    ],
}


def model_seeds(name: str) -> tuple[int, ...]:
    """The generator seeds whose training splits ``name`` was trained on (its continued stages add some)."""
    seeds = list(TRAIN_SEEDS)
    for stage_seeds, _ in CONTINUED_STAGES.get(name, []):
        seeds += [s for s in stage_seeds if s not in seeds]
    return tuple(seeds)


def all_seeds() -> tuple[int, ...]:
    """Every training generator seed of every model, in order."""
    seeds: list[int] = []
    for name in RECIPES:
        seeds += [s for s in model_seeds(name) if s not in seeds]
    return tuple(seeds)


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
    for seed in all_seeds():
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


def stage_folder(name: str, work: Path, k: int) -> Path:
    """The run folder of continued stage ``k`` (0-based) of ``name``: ``name_s2``, ``name_s3``, ..."""
    return work / f"{name}_s{k + 2}"


def continued_stages(name: str, work: Path, amp: bool, first: int = 0) -> list[dict | None]:
    """The continued stages of ``name`` from stage ``first`` on, each into its folder from the previous one's
    last.pt (run, resumed, or reused when finished); returns their provenance. The stages before ``first`` are
    not run (a later stage has finished, ``last_finished``): theirs comes from their folders when those were
    kept, else None (``card`` takes them from the card shipped before)."""
    provenance: list[dict | None] = []
    for k, (seeds, options) in enumerate(CONTINUED_STAGES.get(name, [])):
        if k < first:
            provenance.append(finished_provenance(stage_folder(name, work, k)))
            continue
        start = stage_folder(name, work, k - 1) / "last.pt" if k else shipped_checkpoint(name, work, False)
        out = stage_folder(name, work, k)
        cmd = robustreid("train", "--preset", RECIPES[name][0], *union_args(work, seeds), "--out", rel(out),
                         "--init", rel(start), *(["--amp"] if amp else []), *options)
        provenance.append(train_run(out, cmd, amp, f"continued stage {k + 1}"))
    return provenance


def finished_provenance(run_dir: Path) -> dict | None:
    """The provenance of the finished run kept in ``run_dir`` (its summary.json and provenance.json), else
    None."""
    if (run_dir / "summary.json").is_file() and (run_dir / "provenance.json").is_file():
        return json.loads((run_dir / "provenance.json").read_text())
    return None


def last_finished(name: str, work: Path) -> int | None:
    """The index of ``name``'s last continued stage whose folder holds a finished run, None if none has. Every
    stage before it is done then, even if its folder was not kept (its record comes from the card shipped
    before, ``recorded_card``), so ``main`` runs only the stages after it."""
    for k in reversed(range(len(CONTINUED_STAGES.get(name, [])))):
        if (stage_folder(name, work, k) / "summary.json").is_file():
            return k
    return None


def recorded_card(name: str, zoo_dir) -> dict:
    """The card shipped before (``name.json`` in ``zoo_dir``, else in the package's zoo), or {}: the record of
    the stages whose folders are gone."""
    from robustreid.zoo import ZOO_DIR

    for folder in (zoo_dir, ZOO_DIR):  # a new --zoo folder has no card yet: the package's has the record
        if folder and (Path(folder) / f"{name}.json").is_file():
            return json.loads((Path(folder) / f"{name}.json").read_text())
    return {}


def shipped_checkpoint(name: str, work: Path, continued: bool = True) -> Path:
    """The file that ships: the last stage's (the last continued stage, else SWAG, else the main run's); with
    ``continued=False`` the one before the continued stages, which the first of them starts from."""
    stages = CONTINUED_STAGES.get(name, [])
    if continued and stages:
        return stage_folder(name, work, len(stages) - 1) / "last.pt"
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


def continued_card(name: str, work: Path, k: int, provenance: dict) -> dict:
    """Continued stage ``k``'s part of the card: its command, data, time, steps and curve (held-out test of
    its union)."""
    out = stage_folder(name, work, k)
    history = _history(out)
    rows = [h for h in history if h.get("kind") == "train"]
    iterations = _iterations(out)
    return {
        **provenance,
        "generator_seeds": list(CONTINUED_STAGES[name][k][0]),
        "epochs": len(rows),
        "steps": len(rows) * iterations if iterations else None,
        "train_seconds": round(sum(float(h.get("seconds", 0)) for h in rows), 1),
        "shipped": "last.pt",
        "curve": [{k: h[k] for k in ("epoch", "rank1", "mAP")} for h in history if h.get("kind") == "eval"],
    }


KEPT = "from the card shipped before: this stage's run folder was not kept"


def _kept(recorded: dict, key: str, name: str, k: int | None = None) -> dict:
    """The record of a stage not run here (``key`` of the card shipped before, item ``k`` of a list) with a
    note saying where it came from; a card without it is a one-line error naming what is missing."""
    entry = recorded.get(key)
    if k is not None:
        from robustreid.zoo import continued_stages as recorded_stages

        entries = recorded_stages(recorded)
        entry = entries[k] if k < len(entries) else None
    wanted = None if k is None else list(CONTINUED_STAGES[name][k][0])
    if entry and wanted is not None and entry.get("generator_seeds", wanted) != wanted:
        raise SystemExit(f"make_weights: {name}: the shipped card's continued stage {k + 1} trained on "
                         f"seeds {entry['generator_seeds']}, CONTINUED_STAGES says {wanted}; remove the "
                         "later stage's folder to train every stage again")
    if not entry:
        stage = key if k is None else f"{key} {k + 1}"
        raise SystemExit(f"make_weights: {name}: a later stage has finished, but the earlier stage '{stage}' "
                         "has neither a run folder nor a record in the shipped card; remove the later "
                         "stage's folder to train every stage again")
    return {**entry, "record": KEPT}


def check_records(name: str, work: Path, done: int, recorded: dict, provenance: dict | None,
                  swag_provenance: dict | None) -> None:
    """Before anything runs: every stage before continued stage ``done`` (finished) whose folder was not kept
    has its record in the card shipped before (``_kept`` exits with one line if not)."""
    if provenance is None:
        _kept(recorded, "training", name)
    if name in SWAG_STAGES and swag_provenance is None:
        _kept(recorded, "swag_stage", name)
    for k in range(done):
        if finished_provenance(stage_folder(name, work, k)) is None:
            _kept(recorded, "continued_stages", name, k)


def training_card(name: str, work: Path, provenance: dict | None, recorded: dict) -> dict:
    """The main run's part of the card: from its folder, or from the card shipped before when it was not
    kept."""
    run_dir = work / name
    if provenance is None or not (run_dir / "metrics.jsonl").is_file():
        return _kept(recorded, "training", name)
    history = _history(run_dir)
    train_rows = [h for h in history if h.get("kind") == "train"]
    iterations = _iterations(run_dir)
    return {
        **provenance,
        "epochs": len(train_rows),
        "steps": len(train_rows) * iterations if iterations else None,
        "batch": "PK 8 x 4 = 32",
        "train_seconds": round(sum(float(h.get("seconds", 0)) for h in train_rows), 1),
        "curve": [{k: h[k] for k in ("epoch", "rank1", "mAP")} for h in history if h.get("kind") == "eval"],
    }


def card(name: str, work: Path, sets: dict, provenance: dict | None, figures: dict,
         swag_provenance: dict | None = None, continued_provenance: list | None = None,
         recorded: dict | None = None) -> dict:
    """The model card. A stage run here is described from its folder; one not run here (None provenance: a
    later stage had finished) from ``recorded``, the card shipped before."""
    recorded = recorded or {}
    training = training_card(name, work, provenance, recorded)
    if name not in SWAG_STAGES:
        swag = None
    elif swag_provenance is None or not (work / f"{name}_swag" / "summary.json").is_file():
        swag = _kept(recorded, "swag_stage", name)
    else:
        swag = swag_card(name, work, swag_provenance, _iterations(work / name))
    continued = []
    for k, stage_provenance in enumerate(continued_provenance or []):
        if stage_provenance is None:
            continued.append(_kept(recorded, "continued_stages", name, k))
        else:
            continued.append(continued_card(name, work, k, stage_provenance))
    seeds = model_seeds(name)
    data = {
        f"train_s{seed}": {"command": shown(sets[f"train_s{seed}"][1]),
                           **json.loads((sets[f"train_s{seed}"][0] / "synth.json").read_text())["counts"]}
        for seed in seeds
    }
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
        "training": training,
        **({"swag_stage": swag} if swag else {}),
        **({"continued_stages": continued} if continued else {}),
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
        done = last_finished(name, work)  # the stages before it are done
        recorded = recorded_card(name, args.zoo)
        if done is None:
            provenance, swag_provenance = train(name, work, amp), swag_stage(name, work)
        else:  # from their folders where kept; the others' records are checked before anything runs
            provenance = finished_provenance(work / name)
            swag_provenance = finished_provenance(work / f"{name}_swag") if name in SWAG_STAGES else None
            check_records(name, work, done, recorded, provenance, swag_provenance)
        continued_provenance = continued_stages(name, work, amp, done or 0)
        checkpoint = shipped_checkpoint(name, work)
        print(f"{name}: evaluating {checkpoint}", flush=True)
        figures = evaluate(checkpoint, sets, model_seeds(name))
        model_card = card(name, work, sets, provenance, figures, swag_provenance, continued_provenance,
                          recorded)
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
