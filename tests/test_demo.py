"""The demo: its two recipes (from scratch: the robust-reid-1x preset on a short Eq. 1; fine-tuning shipped weights:
a constant lower LR for whole PK epochs), its verdict, and the whole run on a tiny synthetic set, tiny scenes and
tiny-data fine-tuning of random weights packed into a temporary zoo (``ROBUSTREID_ZOO_DIR``).

The end-to-end runs train a network (one SGD step), so they are marked ``slow``."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import robustreid.demo as demo
from robustreid.checkpoint import load_checkpoint, model_state
from robustreid.config import preset
from robustreid.datasets import load_dataset
from robustreid.demo import beats, demo_config, finetune_config, finetune_preset, run_demo, verdict
from robustreid.evaluate import evaluate, metrics_summary
from robustreid.model import build_model
from robustreid.schedule import lr_at
from robustreid.tracking.motio import read_gt, read_results
from robustreid.tracking.run import evaluate_tracking
from robustreid.zoo import ENV_VAR, pack_checkpoint

TINY_DATA = dict(ids_train=8, ids_test=6, cameras=3, images_per_id_per_cam=2, distractors=4, junk=2)
TINY_SCENES = {"street": dict(mode="street", frames=20, people=2, size=(120, 160)),
               "room": dict(mode="room", cameras=2, frames=30, people=2, size=(120, 160), fps=2.0)}


# ------------------------------------------------------------------------------------------------ recipes
def test_demo_config_keeps_the_recipe_and_the_shape_of_eq1():
    cfg = demo_config(epochs=5)
    full = preset("robust-reid-1x")
    assert (cfg.model, cfg.loss, cfg.optim) == (full.model, full.loss, full.optim)
    # the data pipeline differs in the augmentation only: no random erasing, no pad-and-crop
    assert full.data.random_erasing == 0.5 and full.data.pad == 10
    assert cfg.data == dataclasses.replace(full.data, random_erasing=0.0, pad=0)
    s = cfg.schedule
    assert s.swag_cycles == 0 and s.epochs == 5
    assert lr_at(0, s) == pytest.approx(1.5e-2)       # warmup: 3e-2 * t / 2 at t = 1
    assert lr_at(0.5, s) == pytest.approx(2.25e-2)    # per-iteration ramp
    # Eq. 1's milestones 150, 225 of 350 -> round(2.14) = 2, round(3.21) = 3 of 5 epochs
    assert lr_at(1, s) == lr_at(1.9, s) == pytest.approx(3e-2)
    assert lr_at(2, s) == pytest.approx(3e-3) and lr_at(3, s) == lr_at(4.9, s) == pytest.approx(3e-4)
    assert s == dataclasses.replace(full.schedule.scaled(5), swag_cycles=0)  # what `train --epochs 5` runs
    d = demo_config().schedule  # the default 3 epochs: ramp, peak, decayed
    assert (lr_at(0.5, d), lr_at(1.5, d), lr_at(2.5, d)) == pytest.approx((2.25e-2, 3e-2, 3e-3))
    smoke = demo_config(epochs=1).schedule  # any positive count runs; one epoch at the base LR
    assert smoke.epochs == 1 and lr_at(0, smoke) == lr_at(0.9, smoke) == pytest.approx(3e-2)


def test_demo_config_of_another_preset_keeps_that_recipe():
    cfg, base = demo_config(epochs=4, preset_name="hacnn"), demo_config(epochs=4)
    full = preset("hacnn")
    assert (cfg.model, cfg.loss, cfg.optim) == (full.model, full.loss, full.optim)
    assert cfg.data == dataclasses.replace(full.data, random_erasing=0.0, pad=0)
    assert cfg.model == "hacnn" and cfg.loss != base.loss
    # the baseline has no warmup (not a Bag of Tricks item of HA-CNN): none at demo scale either
    assert full.schedule.warmup_epochs == cfg.schedule.warmup_epochs == 0
    # two epochs at 3e-2 before the first step (milestones 150, 225 of 350 -> 2, 3 of 4 epochs)
    assert lr_at(0, cfg.schedule) == lr_at(1.9, cfg.schedule) == pytest.approx(3e-2)
    assert lr_at(2, cfg.schedule) == pytest.approx(3e-3) and lr_at(3, cfg.schedule) == pytest.approx(3e-4)
    assert cfg.schedule.swag_cycles == 0
    with pytest.raises(ValueError, match="nope"):
        demo_config(preset_name="nope")


def test_finetune_config_is_the_preset_at_a_constant_lower_lr_for_whole_epochs():
    cfg = finetune_config(50, seed=3, amp=True, iters_per_epoch=51)
    full = preset("robust-reid-1x")
    assert (cfg.model, cfg.loss, cfg.optim) == (full.model, full.loss, full.optim)
    assert cfg.data == dataclasses.replace(full.data, random_erasing=0.0, pad=0)  # PK 8 x 4 kept, no augmentation
    assert (cfg.seed, cfg.amp, cfg.eval_every_epochs, cfg.init_relative_update) == (3, True, 0, 0.0)
    assert cfg.freeze_bn is demo.FINETUNE_FREEZE_BN is True  # the shipped BatchNorm statistics are kept
    assert finetune_config(50, iters_per_epoch=51, freeze_bn=False).freeze_bn is False
    assert cfg.classifier_init == demo.FINETUNE_CLASSIFIER_INIT == "imprint"  # rows at the identities' means
    assert finetune_config(50, iters_per_epoch=51, classifier_init="random").classifier_init == "random"
    s = cfg.schedule
    assert (s.epochs, s.warmup_epochs, s.milestones, s.swag_cycles, s.total_epochs) == (1, 0, (), 0, 1)
    assert demo.FINETUNE_LR < full.schedule.base_lr  # a lower peak than training from scratch (3e-2)
    for t in (0.0, 0.5, 0.99):  # constant: no warmup ramp, no step
        assert lr_at(t, s) == pytest.approx(demo.FINETUNE_LR)
    # steps -> whole epochs of the PK loader: ceil(steps / iters); never fewer steps than asked
    for steps, iters, epochs in ((50, 51, 1), (51, 51, 1), (52, 51, 2), (50, 50, 1), (1, 7, 1), (15, 7, 3)):
        cfg = finetune_config(steps, iters_per_epoch=iters)
        assert cfg.schedule.epochs == epochs == math.ceil(steps / iters)
        assert steps <= cfg.schedule.epochs * iters < steps + iters
        assert lr_at(cfg.schedule.epochs - 0.01, cfg.schedule) == pytest.approx(demo.FINETUNE_LR)
    hacnn = finetune_config(10, preset_name="hacnn", iters_per_epoch=5)
    assert (hacnn.model, hacnn.loss) == ("hacnn", preset("hacnn").loss) and hacnn.schedule.epochs == 2
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            finetune_config(bad, iters_per_epoch=5)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        finetune_config(5, iters_per_epoch=0)


def test_the_default_finetuning_is_one_epoch_on_the_demo_seeds():
    from robustreid.loaders import PKSampler
    from robustreid.synthetic.market1501 import SynthParams, _plan

    for seed, iters in ((0, 51), (1, 50), (2, 50)):  # the PK loader's length on each demo seed's training split
        params = SynthParams(**demo.DEMO_DATA, seed=seed)
        pids = [spec.pid for spec in _plan(params) if spec.split == "bounding_box_train"]
        assert PKSampler(pids, 8, 4).num_batches == iters
        assert finetune_config(demo.FINETUNE_STEPS, iters_per_epoch=iters).schedule.epochs == 1


def test_finetune_preset_follows_the_checkpoint_architecture():
    assert finetune_preset(build_model("robustreid_1x").arch.to_dict()) == "robust-reid-1x"
    assert finetune_preset(build_model("hacnn").arch) == "hacnn"
    custom = build_model("robustreid_1x", stem_channels=8, stage_channels=(32, 32, 32), stage_repeats=(0, 0, 0),
                         feat_dim=16).arch
    with pytest.raises(ValueError, match="zoo:tiny: its architecture is not one of hacnn, robustreid_1x"):
        finetune_preset(custom, "zoo:tiny")


def test_demo_cli_precision_flag_defaults_to_auto(monkeypatch):
    from robustreid.cli import main

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.append(kw["amp"]))
    for flags in ([], ["--amp"], ["--no-amp"]):
        assert main(["demo", "--out", "unused", *flags]) == 0
    assert seen == [None, True, False]  # None: run_demo picks bf16 where the device has it natively


# ------------------------------------------------------------------------------------------------ verdict
HIST = {"rank1": 34.6, "mAP": 22.0}


def test_verdict_needs_both_rank1_and_map_above_the_histogram():
    both = verdict({"rank1": 40.0, "mAP": 25.0}, HIST)
    assert both == "the fine-tuned robustreid_1x beats the colour histogram (rank-1 40.0 vs 34.6, mAP 25.0 vs 22.0)"
    below = verdict({"rank1": 3.3, "mAP": 5.5}, HIST, name="the network")
    assert below == ("the network does not beat the colour histogram: not above it on rank-1 and mAP "
                     "(rank-1 3.3 vs 34.6, mAP 5.5 vs 22.0)")
    # one metric above is not a win: the line names the one that is not
    assert "not above it on mAP (rank-1 35.0 vs 34.6, mAP 21.0 vs 22.0)" in verdict({"rank1": 35.0, "mAP": 21.0}, HIST)
    assert "not above it on rank-1 (" in verdict({"rank1": 34.0, "mAP": 30.0}, HIST)
    tie = verdict({"rank1": 34.6, "mAP": 22.0}, HIST)  # a tie does not beat it
    assert "does not beat" in tie and "on rank-1 and mAP" in tie
    assert beats({"rank1": 40.0, "mAP": 25.0}, HIST) and not beats({"rank1": 34.6, "mAP": 30.0}, HIST)


def test_verdict_reads_the_shipped_pair_either_way():
    model = {"rank1": 80.0, "mAP": 70.0}
    ahead = verdict(model, HIST, {"rank1": 60.0, "mAP": 50.0}, {"rank1": 55.0, "mAP": 45.5})
    assert ahead.endswith("; the shipped robustreid_1x is at least as good as the shipped hacnn zero-shot "
                          "(rank-1 60.0 vs 55.0, mAP 50.0 vs 45.5): Table 2's ordering")
    assert "at least as good" in verdict(model, HIST, {"rank1": 55.0, "mAP": 45.5}, {"rank1": 55.0, "mAP": 45.5})
    behind = verdict(model, HIST, {"rank1": 50.0, "mAP": 40.0}, {"rank1": 55.0, "mAP": 45.5},
                     shipped_name="the shipped A", baseline_name="the shipped B")
    assert behind.endswith("; the shipped A is behind the shipped B zero-shot on rank-1 and mAP "
                           "(rank-1 50.0 vs 55.0, mAP 40.0 vs 45.5): not Table 2's ordering on this data")
    mixed = verdict(model, HIST, {"rank1": 56.0, "mAP": 40.0}, {"rank1": 55.0, "mAP": 45.5})
    assert "is behind the shipped hacnn zero-shot on mAP (rank-1 56.0 vs 55.0" in mixed
    assert verdict(model, HIST, {"rank1": 1.0, "mAP": 1.0}) == verdict(model, HIST)  # the pair needs both


# ---------------------------------------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Random robustreid_1x and hacnn weights packed as the shipped models of a temporary zoo."""
    folder = tmp_path_factory.mktemp("zoo")
    for seed, name in enumerate(("robustreid_1x", "hacnn")):
        torch.manual_seed(seed)
        pack_checkpoint(model_state(build_model(name, 5)), name, card={}, zoo_dir=folder)
    return folder


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, zoo, one_thread):
    """The demo on a tiny set and tiny scenes, one SGD step of fine-tuning, float32: (result, out, log lines)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(zoo))
        mp.setattr(demo, "DEMO_DATA", TINY_DATA)
        mp.setattr(demo, "DEMO_SCENES", TINY_SCENES)
        out, lines = tmp_path_factory.mktemp("demo"), []
        result = run_demo(out, seed=1, finetune_steps=1, amp=False, log=lines.append)
        yield result, out, lines


@pytest.mark.slow
def test_demo_writes_every_key_of_demo_json(tiny_demo):
    result, out, lines = tiny_demo
    saved = json.loads((out / "demo.json").read_text())
    assert saved == {k: v for k, v in json.loads(json.dumps(result)).items() if k != "table"}
    for key in ("histogram", "untrained", "pretrained", "finetuned", "hacnn_pretrained"):
        assert set(saved[key]) == {"rank1", "rank5", "rank10", "mAP", "mINP", "num_query", "num_gallery"}
        assert all(0 <= saved[key][k] <= 100 for k in ("rank1", "rank5", "mAP"))
    assert (saved["seed"], saved["checkpoint"], saved["baseline"]) == (1, "zoo:robustreid_1x", "zoo:hacnn")
    assert (saved["finetune_steps"], saved["finetune_steps_run"], saved["finetune_epochs"]) == (1, 1, 1)
    assert saved["finetune_preset"] == "robust-reid-1x" and saved["amp"] is False
    assert set(saved["seconds"]) >= {"data", "baselines", "pretrained", "finetune", "baseline", "tracking", "report"}
    assert saved["total_seconds"] >= sum(saved["seconds"][k] for k in ("data", "finetune", "tracking")) > 0
    assert set(saved["tracking"]) == {"street", "room"}
    for scene, runs in saved["tracking"].items():
        assert set(runs) == {"no_reid", "reid"}
        for entry in runs.values():
            assert set(entry) == ({"MOTA", "IDF1", "HOTA", "IDSW", "reentry"} if scene == "room"
                                  else {"MOTA", "IDF1", "HOTA", "IDSW"})
    room = saved["tracking"]["room"]
    assert set(room["reid"]["reentry"]) == {"correct", "wrong", "missed"}
    assert room["no_reid"]["reentry"]["correct"] == room["no_reid"]["reentry"]["wrong"] == 0  # no gallery
    # the verdict is the function's reading of the saved figures
    assert saved["verdict"] == verdict(saved["finetuned"], saved["histogram"], saved["pretrained"],
                                       saved["hacnn_pretrained"])


@pytest.mark.slow
def test_demo_figures_match_independent_evaluations(tiny_demo, zoo, monkeypatch):
    result, out, _ = tiny_demo
    monkeypatch.setenv(ENV_VAR, str(zoo))
    dataset = load_dataset("market1501", out / "data")
    assert {r.pid for r in dataset.train} and len({r.pid for r in dataset.train}) == TINY_DATA["ids_train"]
    # the zero-shot rows: the zoo names evaluated here by name
    for key, name in (("pretrained", "zoo:robustreid_1x"), ("hacnn_pretrained", "zoo:hacnn")):
        assert result[key] == pytest.approx(metrics_summary(evaluate(name, dataset, num_workers=0)))
    # the fine-tuned row: its checkpoint, which started from the shipped weights and took one step
    finetuned = load_checkpoint(out / "finetune" / "last.pt")
    assert result["finetuned"] == pytest.approx(metrics_summary(evaluate(out / "finetune" / "last.pt", dataset,
                                                                         num_workers=0)))
    shipped = load_checkpoint("zoo:robustreid_1x")["model"]
    changed = [k for k, v in finetuned["model"].items() if not k.startswith("classifiers.")
               and v.dtype.is_floating_point and not torch.equal(v, shipped[k])]
    assert changed and finetuned["epoch"] == 1
    assert finetuned["config"]["init"] == "zoo:robustreid_1x"
    assert finetuned["config"]["schedule"]["base_lr"] == demo.FINETUNE_LR
    assert finetuned["config"]["freeze_bn"] is True
    bn = [k for k in shipped if k.endswith(("running_mean", "running_var"))]
    assert bn and all(torch.equal(finetuned["model"][k], shipped[k]) for k in bn)  # frozen: the shipped ones
    # tracking: the saved percentages are the results files scored against the ground truth
    street = evaluate_tracking(read_gt(out / "scenes" / "street" / "cam1" / "gt" / "gt.txt"),
                               read_results(out / "tracking" / "street" / "reid" / "cam1.txt"),
                               TINY_SCENES["street"]["frames"])
    for key, name in (("MOTA", "mota"), ("IDF1", "idf1"), ("HOTA", "hota")):
        assert result["tracking"]["street"]["reid"][key] == pytest.approx(100 * street[name])
    assert result["tracking"]["street"]["reid"]["IDSW"] == street["idsw"]


@pytest.mark.slow
def test_demo_prints_its_stages_tables_and_verdict_and_writes_the_report(tiny_demo):
    result, out, lines = tiny_demo
    stages = [line for line in lines if re.match(r"\[\d/\d\] ", line)]
    assert [s[:5] for s in stages] == [f"[{k}/7]" for k in range(1, 8)]
    assert "zoo:robustreid_1x zero-shot" in stages[2] and "fine-tuning" in stages[3] and "zoo:hacnn" in stages[4]
    assert sum(bool(re.match(r"  \[\d/7\] done in \d+\.\d s", line)) for line in lines) == 7
    table = result["table"].splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]] == [
        "colour histogram (no learning)", "robustreid_1x untrained (BN calibrated)",
        "robustreid_1x shipped (zero-shot)", "robustreid_1x fine-tuned 1 step", "hacnn shipped (zero-shot)"]
    assert f"{result['hacnn_pretrained']['mAP']:6.1f} |" in table[-1]
    tracking_table = next(line for line in lines if line.startswith("| scene | tracker"))
    assert "re-entries correct / wrong / missed" in tracking_table
    assert lines[-2] == result["verdict"] and lines[-1].startswith("total ")
    html = (out / "report" / "index.html").read_text()
    pictures = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(pictures) == ["cmc.png", "ranked.png", "tracking_1.png", "tracking_2.png", "tracking_3.png",
                                "training.png"]
    for name in pictures:
        with Image.open(out / "report" / name) as image:
            assert image.format == "PNG" and image.width >= 150
    assert "hacnn shipped (zero-shot)" in html and "re-entries: correct / wrong / missed" in html
    with Image.open(out / "report" / "tracking_1.png") as image:  # the street strip: frames with coloured boxes
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    from robustreid.tracking.frames import track_color

    ids = np.unique(read_results(out / "tracking" / "street" / "reid" / "cam1.txt")[:, 1]).astype(int)
    assert any((pixels == track_color(i)).all(axis=1).sum() > 20 for i in ids)


def test_a_model_that_is_not_shipped_stops_the_demo_before_it_starts(tmp_path, zoo, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(zoo))
    lines = []
    with pytest.raises(ValueError, match="zoo:nope is not a shipped model; shipped: hacnn, robustreid_1x"):
        run_demo(tmp_path / "out", baseline="zoo:nope", log=lines.append)
    (zoo / "hacnn.safetensors").rename(tmp_path / "moved")
    try:
        with pytest.raises(FileNotFoundError, match="hacnn.safetensors: missing"):
            run_demo(tmp_path / "out", log=lines.append)
    finally:
        (tmp_path / "moved").rename(zoo / "hacnn.safetensors")
    assert lines == [] and not (tmp_path / "out").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_demo_from_scratch_needs_no_zoo(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty_zoo"))
    monkeypatch.setattr(demo, "DEMO_DATA", TINY_DATA)
    lines = []
    result = run_demo(tmp_path / "out", from_scratch=True, epochs=1, tracking=False, amp=False, log=lines.append)
    saved = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert {"histogram", "untrained", "trained", "verdict", "epochs", "train_seconds", "total_seconds"} <= set(saved)
    assert "finetuned" not in saved and "tracking" not in saved and saved["from_scratch"] is True
    assert result["trained"] == pytest.approx(metrics_summary(evaluate(tmp_path / "out" / "run" / "last.pt",
                                                                       load_dataset("market1501",
                                                                                    tmp_path / "out" / "data"),
                                                                       num_workers=0)))
    assert [line[:5] for line in lines if re.match(r"\[\d/\d\] ", line)] == [f"[{k}/4]" for k in range(1, 5)]
    assert saved["verdict"].startswith("the network trained from scratch (1 epoch)")
