"""The demo's recipe: the robust-reid-1x preset with Eq. 1's shape kept on a short schedule."""

import pytest

from robustreid.config import preset
from robustreid.demo import demo_config
from robustreid.schedule import lr_at


def test_demo_config_keeps_the_recipe_and_the_shape_of_eq1():
    cfg = demo_config(epochs=5)
    full = preset("robust-reid-1x")
    assert (cfg.model, cfg.loss, cfg.data, cfg.optim) == (full.model, full.loss, full.data, full.optim)
    s = cfg.schedule
    assert s.swag_cycles == 0 and s.epochs == 5
    assert lr_at(0, s) == pytest.approx(1.5e-2)       # warmup: 3e-2 * t / 2 at t = 1
    assert lr_at(0.5, s) == pytest.approx(2.25e-2)    # per-iteration ramp
    assert lr_at(2, s) == lr_at(3, s) == pytest.approx(3e-2)
    assert lr_at(4, s) == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="at least 4 epochs"):
        demo_config(epochs=3)


def test_demo_config_of_another_preset_keeps_that_recipe():
    cfg, base = demo_config(epochs=4, preset_name="hacnn"), demo_config(epochs=4)
    full = preset("hacnn")
    assert (cfg.model, cfg.loss, cfg.data, cfg.optim) == (full.model, full.loss, full.data, full.optim)
    assert cfg.model == "hacnn" and cfg.loss != base.loss
    # the baseline has no warmup (not a Bag of Tricks item of HA-CNN): none at demo scale either
    assert full.schedule.warmup_epochs == cfg.schedule.warmup_epochs == 0
    assert lr_at(0, cfg.schedule) == lr_at(2, cfg.schedule) == pytest.approx(3e-2)
    assert lr_at(3, cfg.schedule) == pytest.approx(3e-3) and cfg.schedule.swag_cycles == 0
    with pytest.raises(ValueError, match="nope"):
        demo_config(preset_name="nope")
