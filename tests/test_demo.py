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
