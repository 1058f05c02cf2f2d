"""Tests for robustreid.schedule: Eq. 1 at every boundary, the SWAG cosine cycles, validation, scaling."""

import math

import pytest
import torch

from robustreid.schedule import ScheduleConfig, lr_at, swag_cycle_end, swag_snapshot_epochs

PAPER = ScheduleConfig()


def eq1(t: int) -> float:
    """Paper Eq. 1 as printed, for the 1-based epoch number t."""
    if t <= 10:
        return 3e-2 * t / 10
    if t <= 150:
        return 3e-2
    if t <= 225:
        return 3e-3
    if t <= 350:
        return 3e-4
    raise AssertionError(t)


def test_paper_defaults():
    assert (PAPER.base_lr, PAPER.warmup_epochs, PAPER.milestones, PAPER.gamma, PAPER.epochs) == (
        3e-2, 10, (150, 225), 0.1, 350,
    )
    assert (PAPER.swag_cycles, PAPER.swag_cycle_epochs, PAPER.swag_cycle_decay) == (15, 35, 0.7)
    # Section 4: "15 cycles of 35 epochs which sums up to 525 additional epochs".
    assert PAPER.swag_epochs == 525
    assert PAPER.total_epochs == 875


@pytest.mark.parametrize("t", [1, 9, 10, 11, 150, 151, 225, 226, 350])
def test_eq1_boundaries(t):
    # Convention: epoch index = t - 1.
    assert lr_at(t - 1, PAPER) == pytest.approx(eq1(t), rel=1e-12)


def test_eq1_every_epoch():
    for t in range(1, 351):
        assert lr_at(t - 1, PAPER) == pytest.approx(eq1(t), rel=1e-12), t


def test_eq1_named_values():
    assert lr_at(0, PAPER) == pytest.approx(3e-3)  # first epoch trains at 3e-2 * 1/10
    assert lr_at(9, PAPER) == pytest.approx(3e-2)
    assert lr_at(149, PAPER) == pytest.approx(3e-2)
    assert lr_at(150, PAPER) == pytest.approx(3e-3)
    assert lr_at(224, PAPER) == pytest.approx(3e-3)
    assert lr_at(225, PAPER) == pytest.approx(3e-4)
    assert lr_at(349, PAPER) == pytest.approx(3e-4)


def test_fractional_warmup_is_continuous_and_linear():
    # Per-iteration warmup: linear in the fractional epoch between the integer values of Eq. 1.
    assert lr_at(0.5, PAPER) == pytest.approx(3e-2 * 1.5 / 10)
    assert lr_at(4.25, PAPER) == pytest.approx(3e-2 * 5.25 / 10)
    grid = [i / 100 for i in range(0, 1200)]
    values = [lr_at(e, PAPER) for e in grid]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s >= -1e-15 for s in steps)  # non-decreasing through warmup
    assert max(steps) <= 3e-2 / 10 / 100 + 1e-12  # no jump larger than the linear slope
    assert lr_at(9.7, PAPER) == pytest.approx(3e-2)  # the last warmup epoch stays at the base LR


def test_fractional_steps_are_constant_within_an_epoch():
    # The whole epoch index 149 (t = 150) trains at 3e-2; t = 151 starts exactly at index 150.
    assert lr_at(149.99, PAPER) == pytest.approx(3e-2)
    assert lr_at(150.0, PAPER) == pytest.approx(3e-3)
    assert lr_at(224.5, PAPER) == pytest.approx(3e-3)
    assert lr_at(349.999, PAPER) == pytest.approx(3e-4)


def test_swag_cycle_peaks_and_floors():
    for c in range(15):
        start = 350 + 35 * c
        assert lr_at(start, PAPER) == pytest.approx(3e-3 * 0.7**c, rel=1e-12), c
        assert lr_at(start + 34, PAPER) == pytest.approx(1e-5, rel=1e-12), c
        assert lr_at(start + 34.9, PAPER) == pytest.approx(1e-5, rel=1e-12), c  # last epoch at the floor
    assert lr_at(874, PAPER) == pytest.approx(PAPER.swag_floor_lr)


def test_swag_cosine_midpoint():
    # Progress 1/2 of a 35-epoch cycle is 17 epochs in: LR = (peak + floor) / 2.
    for c in (0, 3, 14):
        peak = 3e-3 * 0.7**c
        assert lr_at(350 + 35 * c + 17, PAPER) == pytest.approx((peak + 1e-5) / 2, rel=1e-12)


def test_swag_matches_torch_cosine_annealing():
    # Independent reference: torch's CosineAnnealingLR over each cycle (T_max = 34 steps, eta_min = floor).
    for c in (0, 1, 7, 14):
        peak = 3e-3 * 0.7**c
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=34, eta_min=1e-5)
        for u in range(35):
            assert lr_at(350 + 35 * c + u, PAPER) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
            opt.step()
            sched.step()


def test_swag_monotone_within_cycle_and_restarts_between():
    for c in range(15):
        start = 350 + 35 * c
        values = [lr_at(start + i / 4, PAPER) for i in range(35 * 4)]
        assert all(b <= a for a, b in zip(values, values[1:])), c
        assert values[0] > values[-1]
        if c + 1 < 15:
            assert lr_at(start + 35, PAPER) > lr_at(start + 34, PAPER)  # restart to the next peak


def test_snapshot_epochs_are_the_15_cycle_ends():
    expected = tuple(350 + 35 * (c + 1) - 1 for c in range(15))
    assert swag_snapshot_epochs(PAPER) == expected
    assert expected[0] == 384 and expected[-1] == 874
    flagged = tuple(e for e in range(PAPER.total_epochs) if swag_cycle_end(e, PAPER))
    assert flagged == expected
    # At each snapshot the epoch trained at the floor LR.
    assert all(lr_at(e, PAPER) == pytest.approx(PAPER.swag_floor_lr) for e in expected)


def test_no_swag_stage():
    cfg = ScheduleConfig(swag_cycles=0)
    assert cfg.total_epochs == 350
    assert swag_snapshot_epochs(cfg) == ()
    assert not any(swag_cycle_end(e, cfg) for e in range(350))
    with pytest.raises(ValueError, match="epoch"):
        lr_at(350, cfg)


def test_no_warmup_and_no_milestones():
    cfg = ScheduleConfig(warmup_epochs=0, milestones=(), swag_cycles=0, epochs=5)
    assert [lr_at(e, cfg) for e in range(5)] == [3e-2] * 5


@pytest.mark.parametrize("epoch", [-1, -0.01, 875, 900.5, math.nan, math.inf, True, "3"])
def test_lr_at_rejects_bad_epochs(epoch):
    with pytest.raises(ValueError, match="epoch"):
        lr_at(epoch, PAPER)


@pytest.mark.parametrize("epoch", [-1, 875, 3.0, True])
def test_swag_cycle_end_rejects_bad_epochs(epoch):
    with pytest.raises(ValueError, match="epoch"):
        swag_cycle_end(epoch, PAPER)


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_lr", 0.0),
        ("base_lr", -1e-3),
        ("base_lr", math.inf),
        ("epochs", 0),
        ("epochs", 350.0),
        ("warmup_epochs", -1),
        ("warmup_epochs", 400),
        ("milestones", (225, 150)),
        ("milestones", (150, 150)),
        ("milestones", (5, 225)),  # before the end of warmup
        ("milestones", (150, 350)),  # not before the last epoch
        ("milestones", (150.5, 225)),
        ("milestones", "150"),
        ("gamma", 0.0),
        ("gamma", 1.5),
        ("swag_cycles", -1),
        ("swag_cycle_epochs", 1),
        ("swag_cycle_decay", 0.0),
        ("swag_cycle_decay", 1.2),
        ("swag_peak_lr", 0.0),
        ("swag_floor_lr", -1e-6),
        ("swag_floor_lr", 3e-5),  # above the last cycle's peak 3e-3 * 0.7**14 ~ 2.03e-5
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ScheduleConfig(**{field: value})


def test_config_is_frozen_and_milestones_become_a_tuple():
    cfg = ScheduleConfig(milestones=[150, 225])
    assert cfg.milestones == (150, 225)
    assert hash(cfg) == hash(PAPER)
    with pytest.raises(Exception):
        cfg.base_lr = 1.0  # type: ignore[misc]


def test_floor_constraint_follows_the_cycle_count():
    # With 5 cycles the last peak is 3e-3 * 0.7**4 ~ 7.2e-4, so a 3e-4 floor is allowed.
    cfg = ScheduleConfig(swag_cycles=5, swag_floor_lr=3e-4)
    assert lr_at(350 + 4 * 35, cfg) == pytest.approx(3e-3 * 0.7**4)


def test_scaled_is_proportional():
    cfg = PAPER.scaled(700)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.milestones) == (700, 20, (300, 450))
    assert (cfg.swag_cycles, cfg.swag_cycle_epochs) == (15, 70)
    assert PAPER.scaled(350) == PAPER
    short = PAPER.scaled(35)  # f = 1/10
    assert (short.warmup_epochs, short.milestones) == (2, (15, 22))  # 10 -> 1 raised to 2 (see docstring)
    assert (short.swag_cycles, short.swag_cycle_epochs) == (15, 4)  # 35 -> 3.5 -> 4 epochs per cycle
    # Learning rates, gamma and the decay are unchanged; the shape of Eq. 1 is kept.
    assert (short.base_lr, short.gamma, short.swag_peak_lr, short.swag_floor_lr) == (3e-2, 0.1, 3e-3, 1e-5)
    assert lr_at(0, short) == pytest.approx(1.5e-2)
    assert lr_at(1, short) == pytest.approx(3e-2)
    assert lr_at(14, short) == pytest.approx(3e-2)
    assert lr_at(15, short) == pytest.approx(3e-3)
    assert lr_at(22, short) == pytest.approx(3e-4)
    assert lr_at(35, short) == pytest.approx(3e-3)  # first SWAG peak
    assert swag_snapshot_epochs(short) == tuple(35 + 4 * (c + 1) - 1 for c in range(15))


def test_scaled_demo_and_overrides():
    demo = PAPER.scaled(10)
    assert (demo.epochs, demo.warmup_epochs, demo.milestones) == (10, 2, (4, 6))
    assert demo.swag_cycle_epochs == 2
    assert demo.swag_epochs == pytest.approx(525 * 10 / 350, abs=2)  # SWAG keeps ~its share of training
    custom = PAPER.scaled(10, swag_cycles=3, swag_cycle_epochs=5)
    assert (custom.swag_cycles, custom.swag_cycle_epochs, custom.total_epochs) == (3, 5, 25)
    assert swag_snapshot_epochs(custom) == (14, 19, 24)
    # Only the cycle length given: the count keeps the SWAG stage near 525 * 10 / 350 = 15 epochs.
    assert PAPER.scaled(10, swag_cycle_epochs=5).swag_cycles == 3



def test_scaled_short_runs_keep_a_ramp_and_an_epoch_at_the_peak():
    # Eq. 1 x 3/350: warmup 0.09 -> 2 epochs, milestones 1.29, 1.93 -> 2 (at the warmup's end), 3 (dropped)
    three = PAPER.scaled(3)
    assert (three.warmup_epochs, three.milestones) == (2, (2,))
    assert [lr_at(e, three) for e in (0, 0.5, 1, 1.99, 2, 2.99)] == pytest.approx(
        [1.5e-2, 2.25e-2, 3e-2, 3e-2, 3e-3, 3e-3])
    four = PAPER.scaled(4)  # 1.71, 2.57 -> 2, 3
    assert (four.warmup_epochs, four.milestones) == (2, (2, 3))
    two, one = PAPER.scaled(2), PAPER.scaled(1)  # a smoke test runs: ramp + peak, or one epoch at the peak
    assert (two.warmup_epochs, two.milestones, one.warmup_epochs, one.milestones) == (2, (), 1, ())
    assert (lr_at(0, two), lr_at(1, two), lr_at(0, one)) == pytest.approx((1.5e-2, 3e-2, 3e-2))
    # without a warmup (HA-CNN's schedule) the first step still comes after two epochs
    no_warmup = ScheduleConfig(warmup_epochs=0)
    assert no_warmup.scaled(3).milestones == (2,) and no_warmup.scaled(3).warmup_epochs == 0


@pytest.mark.parametrize("epochs", [0, -1, 3.5, True])
def test_scaled_rejects_non_positive_or_fractional(epochs):
    with pytest.raises(ValueError, match="epochs"):
        PAPER.scaled(epochs)
