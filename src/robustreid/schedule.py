"""Learning-rate schedule of Robust-ReID: warmup and steps (paper Eq. 1), then SWAG cycles (Section 3.1).

One pure function, :func:`lr_at`, gives the learning rate at any (possibly fractional) epoch; the training
loop only does ``param_group["lr"] = lr_at(epoch, cfg)``. Two stages follow each other:

1. Main stage, paper Eq. 1 (Section 3.1 "Warmup", Section 4 "Implementation details": 350 epochs)::

       lr(t) = 3e-2 * t / 10   if t <= 10
               3e-2            if 10 < t <= 150
               3e-3            if 150 < t <= 225
               3e-4            if 225 < t <= 350

2. SWAG stage (Section 3.1 "SWAG", Section 4): "cosine annealing learning rate scheduler with cycles = 15
   of 35 epochs and cycle decay factor of 0.7 after each cycle", "at the end of each cycle we average the
   weights" -- 525 epochs after the main 350. Cycle ``c`` (0-based) anneals along a half cosine from
   ``swag_peak_lr * swag_cycle_decay**c`` at its first epoch down to ``swag_floor_lr`` at its last epoch;
   a snapshot is collected at the end of every cycle (:func:`swag_cycle_end`, :func:`swag_snapshot_epochs`).

Epoch convention. ``epoch`` is the 0-based epoch index: ``0 .. epochs-1`` for the main stage, then
``epochs .. total_epochs-1`` for SWAG. A fractional part (``epoch + it / iters_per_epoch``) is allowed for
per-iteration updates. Eq. 1's ``t`` is the 1-based epoch number, ``t = floor(epoch) + 1``: epoch index 0
trains at 3e-3, index 9 at 3e-2, index 149 at 3e-2, index 150 at 3e-3, index 225 at 3e-4. During warmup
the ramp uses the unfloored ``epoch + 1`` (capped at ``warmup_epochs``) so it is continuous in the
fractional epoch and equals Eq. 1 at every integer index; after warmup the steps are piecewise constant
per epoch (a whole epoch trains at one Eq. 1 value). In a SWAG cycle of ``L`` epochs the position is
``u = epoch - start_of_cycle`` in ``[0, L)``, the progress ``min(u / (L - 1), 1)``: the first epoch trains
at the cycle's peak, the last epoch entirely at the floor, and the snapshot is taken at its end (as in the
original SWA, where the model is collected at the iteration with the lowest learning rate).

SWAG learning rates (not given in the paper; our choice, exposed as config fields):

* ``swag_peak_lr = 3e-3`` (first cycle's peak): Eq. 1's middle plateau, a tenth of the base LR. The SWAG
  stage is a post-process of a converged model (Section 4.1: "SWAG is used in this study as a post process
  for models that already achieve high accuracy"): restarting at the base LR 3e-2 would throw the model
  out of its basin, while 10x the final LR (3e-4) still lets the cycles explore around the minimum.
* ``swag_floor_lr = 1e-5``: cycle decay applies to the peak, the floor stays constant (the common reading
  of "cosine annealing with cycle decay"). It must not exceed the last cycle's peak,
  ``3e-3 * 0.7**14 ~= 2.0e-5``, so every cycle anneals downwards; it is kept non-zero so that the last
  epoch of each cycle, which trains at the floor, is not wasted.

:meth:`ScheduleConfig.scaled` shrinks the whole recipe proportionally for short (demo) runs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = ["ScheduleConfig", "lr_at", "swag_cycle_end", "swag_snapshot_epochs"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate recipe: Eq. 1 (warmup + steps) then SWAG cosine cycles; the paper's values by default.

    Epoch-valued fields count epochs, LR-valued fields are learning rates. ``milestones`` hold Eq. 1's
    ``t`` thresholds: the LR is multiplied by ``gamma`` for each milestone ``m`` with ``t > m``.
    ``swag_cycles = 0`` disables the SWAG stage.
    """

    base_lr: float = 3e-2
    warmup_epochs: int = 10
    milestones: tuple[int, ...] = (150, 225)
    gamma: float = 0.1
    epochs: int = 350
    swag_cycles: int = 15
    swag_cycle_epochs: int = 35
    swag_cycle_decay: float = 0.7
    swag_peak_lr: float = 3e-3
    swag_floor_lr: float = 1e-5

    def __post_init__(self) -> None:
        if not _is_real(self.base_lr) or not (0.0 < self.base_lr < math.inf):
            raise ValueError(f"base_lr must be a positive finite float, got {self.base_lr!r}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if not _is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"warmup_epochs must be an int in [0, epochs={self.epochs}], got {self.warmup_epochs!r}"
            )
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise ValueError(f"milestones must be a sequence of ints, got {self.milestones!r}")
        milestones = tuple(self.milestones)
        if not all(_is_int(m) for m in milestones):
            raise ValueError(f"milestones must be ints, got {milestones!r}")
        milestones = tuple(int(m) for m in milestones)
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
        if milestones and not (self.warmup_epochs <= milestones[0] and milestones[-1] < self.epochs):
            raise ValueError(
                f"milestones must lie in [warmup_epochs={self.warmup_epochs}, epochs={self.epochs}), "
                f"got {milestones!r}"
            )
        object.__setattr__(self, "milestones", milestones)  # a list becomes a (hashable) tuple
        if not _is_real(self.gamma) or not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not _is_int(self.swag_cycles) or self.swag_cycles < 0:
            raise ValueError(f"swag_cycles must be an int >= 0 (0 disables SWAG), got {self.swag_cycles!r}")
        if not _is_int(self.swag_cycle_epochs) or self.swag_cycle_epochs < 2:
            raise ValueError(
                "swag_cycle_epochs must be an int >= 2 (a cycle anneals from its peak at the first epoch "
                f"to the floor at the last), got {self.swag_cycle_epochs!r}"
            )
        if not _is_real(self.swag_cycle_decay) or not 0.0 < self.swag_cycle_decay <= 1.0:
            raise ValueError(f"swag_cycle_decay must be in (0, 1], got {self.swag_cycle_decay!r}")
        if not _is_real(self.swag_peak_lr) or not (0.0 < self.swag_peak_lr < math.inf):
            raise ValueError(f"swag_peak_lr must be a positive finite float, got {self.swag_peak_lr!r}")
        last_peak = self.swag_peak_lr * self.swag_cycle_decay ** max(self.swag_cycles - 1, 0)
        if not _is_real(self.swag_floor_lr) or not 0.0 <= self.swag_floor_lr <= last_peak:
            raise ValueError(
                f"swag_floor_lr must be in [0, last cycle's peak = swag_peak_lr * swag_cycle_decay ** "
                f"(swag_cycles - 1) = {last_peak:.3g}] so every cycle anneals downwards, "
                f"got {self.swag_floor_lr!r}"
            )

    @property
    def swag_epochs(self) -> int:
        """Epochs of the SWAG stage (paper: 15 cycles x 35 = 525)."""
        return self.swag_cycles * self.swag_cycle_epochs

    @property
    def total_epochs(self) -> int:
        """Main epochs plus SWAG epochs (paper: 350 + 525 = 875); valid epoch indices are below this."""
        return self.epochs + self.swag_epochs

    def scaled(
        self, epochs: int, *, swag_cycles: int | None = None, swag_cycle_epochs: int | None = None
    ) -> ScheduleConfig:
        """The same recipe shrunk (or stretched) to ``epochs`` main epochs, e.g. for a short demo.

        Warmup, milestones and the SWAG cycle length are multiplied by ``f = epochs / self.epochs`` and
        rounded, with two floors for short runs (a reading: the paper only gives the 350-epoch schedule):

        * a warmup keeps at least 2 epochs (Eq. 1 with a 1-epoch warmup is no warmup: t = 1 already gives the
          base LR), or ``epochs`` if fewer: the ramp base/2 -> base over epoch 0, then the base LR;
        * every milestone lies at epoch 2 or later, at or after the warmup and after the previous one, so a short
          run has two epochs before its first step (the ramp and one at the peak, or two at the peak without a
          warmup); a milestone pushed to ``epochs`` or beyond is dropped (the later ones first).

        So ``scaled(3)`` is ramp, peak, base * gamma: the demo's shape (README, "Learning study": Eq. 1 shrunk
        without the floors, one epoch ramping to 3e-2 then 3e-3 and 3e-4, learned nothing in 132 steps where
        this shape reached 7.0 +- 2.7 rank-1 over 3 seeds); ``scaled(1)`` and ``scaled(2)`` run (a smoke test). A cycle keeps at least 2 epochs.
        Unless given, ``swag_cycles`` stays the recipe's count (15); if the cycle length is given or hits its
        2-epoch minimum, the count is instead chosen so the SWAG stage keeps about ``f`` times its length
        (capped at the recipe's count). Learning rates, ``gamma`` and the cycle decay are unchanged.
        """
        if not _is_int(epochs) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        factor = epochs / self.epochs
        warmup_epochs = round(self.warmup_epochs * factor)
        if self.warmup_epochs > 0:
            warmup_epochs = max(warmup_epochs, 2)
        warmup_epochs = min(warmup_epochs, epochs)
        milestones: list[int] = []
        for m in self.milestones:
            m = max(round(m * factor), warmup_epochs, 2, milestones[-1] + 1 if milestones else 0)
            if m < epochs:
                milestones.append(m)
        scaled_cycle_epochs = round(self.swag_cycle_epochs * factor)
        keep_cycle_count = swag_cycle_epochs is None and scaled_cycle_epochs >= 2
        if swag_cycle_epochs is None:
            swag_cycle_epochs = max(2, scaled_cycle_epochs)
        if swag_cycles is None and keep_cycle_count:
            swag_cycles = self.swag_cycles
        elif swag_cycles is None:
            # Cycles cannot shrink proportionally: fewer of them keep the stage ~f times its length.
            wanted_swag_epochs = self.swag_epochs * factor
            swag_cycles = min(self.swag_cycles, round(wanted_swag_epochs / swag_cycle_epochs))
            if self.swag_cycles > 0:
                swag_cycles = max(1, swag_cycles)
        try:
            return dataclasses.replace(
                self,
                epochs=epochs,
                warmup_epochs=warmup_epochs,
                milestones=tuple(milestones),
                swag_cycles=swag_cycles,
                swag_cycle_epochs=swag_cycle_epochs,
            )
        except ValueError as err:
            raise ValueError(f"cannot scale the schedule to epochs={epochs}: {err}") from None


def lr_at(epoch: float, cfg: ScheduleConfig) -> float:
    """Learning rate at the 0-based (possibly fractional) ``epoch`` index (paper Eq. 1, then SWAG cycles).

    See the module docstring for the epoch convention (Eq. 1's ``t = floor(epoch) + 1``). Raises
    ``ValueError`` for an epoch outside ``[0, cfg.total_epochs)``.
    """
    if not _is_real(epoch) or not 0.0 <= epoch < cfg.total_epochs:
        raise ValueError(
            f"epoch must be a number in [0, total_epochs={cfg.total_epochs}) "
            f"(main stage [0, {cfg.epochs}), SWAG after), got {epoch!r}"
        )
    epoch = float(epoch)
    if epoch < cfg.epochs:
        t = math.floor(epoch) + 1  # Eq. 1's 1-based epoch number
        if t <= cfg.warmup_epochs:
            # Linear warmup 3e-2 * t / 10, evaluated at the unfloored epoch + 1 so a per-iteration ramp is
            # continuous; the cap keeps the last warmup epoch at the base LR.
            return cfg.base_lr * min(epoch + 1.0, cfg.warmup_epochs) / cfg.warmup_epochs
        num_decays = sum(1 for m in cfg.milestones if t > m)
        return cfg.base_lr * cfg.gamma**num_decays

    swag_epoch = epoch - cfg.epochs
    cycle = min(int(swag_epoch // cfg.swag_cycle_epochs), cfg.swag_cycles - 1)
    position = swag_epoch - cycle * cfg.swag_cycle_epochs  # in [0, swag_cycle_epochs)
    progress = min(position / (cfg.swag_cycle_epochs - 1), 1.0)  # the last epoch trains at the floor
    peak = cfg.swag_peak_lr * cfg.swag_cycle_decay**cycle
    return cfg.swag_floor_lr + (peak - cfg.swag_floor_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def swag_cycle_end(epoch: int, cfg: ScheduleConfig) -> bool:
    """True if the 0-based ``epoch`` index is the last epoch of a SWAG cycle.

    The loop calls it after training epoch ``epoch`` and, if true, collects a SWAG snapshot (Section 3.1:
    "at the end of each cycle we average the weights").
    """
    if not _is_int(epoch) or not 0 <= epoch < cfg.total_epochs:
        raise ValueError(f"epoch must be an int index in [0, total_epochs={cfg.total_epochs}), got {epoch!r}")
    swag_epoch = int(epoch) - cfg.epochs
    return swag_epoch >= 0 and (swag_epoch + 1) % cfg.swag_cycle_epochs == 0


def swag_snapshot_epochs(cfg: ScheduleConfig) -> tuple[int, ...]:
    """The 0-based epoch indices after which a SWAG snapshot is collected (one per cycle, in order)."""
    return tuple(cfg.epochs + (c + 1) * cfg.swag_cycle_epochs - 1 for c in range(cfg.swag_cycles))
