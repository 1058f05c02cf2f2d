"""The demo's recipe: the robust-reid-1x preset with Eq. 1's shape kept on a short schedule, augmentation off."""

import dataclasses

import pytest

from robustreid.config import preset
from robustreid.demo import demo_config
from robustreid.schedule import lr_at


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


def test_demo_cli_precision_flag_defaults_to_auto(monkeypatch):
    import robustreid.demo as demo
    from robustreid.cli import main

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.append(kw["amp"]))
    for flags in ([], ["--amp"], ["--no-amp"]):
        assert main(["demo", "--out", "unused", *flags]) == 0
    assert seen == [None, True, False]  # None: run_demo picks bf16 where the device has it natively


def test_verdict_needs_both_rank1_and_map_above_the_histogram():
    from robustreid.demo import verdict

    hist = {"rank1": 34.6, "mAP": 22.0}
    assert verdict({"rank1": 40.0, "mAP": 25.0}, hist, 3).startswith("the trained network beats the colour histogram")
    assert "rank-1 40.0 vs 34.6, mAP 25.0 vs 22.0" in verdict({"rank1": 40.0, "mAP": 25.0}, hist, 3)
    below = verdict({"rank1": 3.3, "mAP": 5.5}, hist, 3)
    assert below.startswith("the trained network is still below the colour histogram on rank-1 and mAP")
    assert "3 epochs are too few" in below and "rank-1 3.3 vs 34.6, mAP 5.5 vs 22.0" in below
    # one metric above is not a win: the line names the one still below
    assert "below the colour histogram on mAP (" in verdict({"rank1": 35.0, "mAP": 21.0}, hist, 3)
    assert "below the colour histogram on rank-1 (" in verdict({"rank1": 34.0, "mAP": 30.0}, hist, 3)
    assert "below" in verdict({"rank1": 34.6, "mAP": 22.0}, hist, 3)  # a tie does not beat it
