"""Training configuration: frozen dataclasses holding the paper's values, and the Table 2 presets.

``TrainConfig`` = model (+ Table 2 architecture switches) + loss + data + optimiser + schedule (Eq. 1, SWAG) +
run settings. Presets (``PRESETS``, ``preset(name)``): ``hacnn`` (the original baseline), ``a`` ... ``i`` (Table 2
columns, each turning off what the table says), ``robust-reid-1x`` and ``robust-reid-2x`` (everything on; the
1x one is column h, the 2x one the last column). Overrides come from a TOML / JSON file and ``key=value``
strings with dotted keys (``loss.triplet_margin=0.3``, ``schedule.epochs=60``); unknown keys are an error.

Readings where Table 2 is silent (see ``../shared/paper/tables-decoded.md``):
- The "plain triplet" of columns a and b is Eq. 2 on the PK batch (``batch_all`` mining: every valid
  anchor-positive-negative triple) with margin 0.3 (Bag of Tricks' margin; the paper gives none).
- Column e ("all but soft margin") keeps the weighted (batch-soft) triplet of Eq. 4 with the hinge and margin 0.3.
- HA-CNN (first column) trains with the identity loss only, no warmup (constant 3e-2 until the Eq. 1 steps), no
  random erasing, no label smoothing, classifiers with bias.
- Columns b-f and i keep "deeper and wider" (2x); column d with Inception blocks takes the 2x widths (its depth
  is fixed by the Inception stage: one A and one B block).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schedule import ScheduleConfig

__all__ = [
    "LossConfig",
    "LoaderConfig",
    "OptimConfig",
    "TrainConfig",
    "PRESETS",
    "preset",
    "list_presets",
    "apply_overrides",
    "load_config_file",
    "config_to_dict",
    "build_config",
    "swag_stage_config",
]


_SIMPLE_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def _check_types(cfg: Any, section: str) -> None:
    """Every plain field of ``cfg`` has the type its annotation names: ``key: expected int, got 2.5``.

    Section-typed fields (``loss``, ``schedule``, ...) validate themselves. Ints are accepted for floats;
    bools are not ints here (``seed=true`` is a mistake, not 1)."""
    for f in dataclasses.fields(cfg):
        names = [n.strip() for n in str(f.type).split("|")]
        if not all(n in _SIMPLE_TYPES for n in names):
            continue
        value = getattr(cfg, f.name)
        ok = any(
            (n == "None" and value is None)
            or (n == "bool" and isinstance(value, bool))
            or (n == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (n == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (n == "str" and isinstance(value, str))
            for n in names
        )
        if not ok:
            expected = " or ".join("null" if n == "None" else n for n in names)
            raise ValueError(f"{section}{f.name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class LossConfig:
    """Losses (Section 3.1): label-smoothed identity loss on both branches' logits, triplet on both features."""

    id_loss: bool = True
    label_smoothing: float = 0.1  # epsilon; 0 = plain cross-entropy
    triplet: bool = True
    triplet_mining: str = "batch_soft"  # batch_soft (Eq. 4) | batch_hard (Eq. 3) | batch_all (Eq. 2)
    triplet_margin: float | None = None  # None = soft margin (Eq. 5); a float = hinge margin

    def __post_init__(self):
        _check_types(self, "loss.")
        if not (self.id_loss or self.triplet):
            raise ValueError("loss: at least one of id_loss and triplet must be on")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.triplet_mining not in ("batch_soft", "batch_hard", "batch_all"):
            raise ValueError(f"loss.triplet_mining must be batch_soft, batch_hard or batch_all, got {self.triplet_mining!r}")
        if self.triplet_margin is not None and self.triplet_margin < 0:
            raise ValueError(f"loss.triplet_margin must be >= 0 or None (soft margin), got {self.triplet_margin}")


@dataclass(frozen=True)
class LoaderConfig:
    """Input pipeline (Section 4): P identities x K images per batch, random erasing probability, and the
    zero-padding (pixels per side) before the random crop back to the input size (0 = no pad-and-crop).
    ``TrainConfig.data`` holds one; the network's input size / mean / std are ``ReIDNet.data_config``."""

    batch_p: int = 8
    batch_k: int = 4
    random_erasing: float = 0.5  # probability; 0 = off
    pad: int = 10  # Bag of Tricks' 10 px (at 256x128); 0 = off
    color_jitter: float = 0.0  # probability of a random camera photometry (loaders.camera_color_jitter); 0 = off
    num_workers: int = 2
    test_batch_size: int = 128

    def __post_init__(self):
        _check_types(self, "data.")
        if self.batch_p < 2 or self.batch_k < 2:
            raise ValueError(f"data.batch_p and data.batch_k must be >= 2 for the triplet loss, got {self.batch_p}, {self.batch_k}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"data.random_erasing must be a probability in [0, 1], got {self.random_erasing}")
        if self.pad < 0:
            raise ValueError(f"data.pad must be >= 0 pixels, got {self.pad}")
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"data.color_jitter must be a probability in [0, 1], got {self.color_jitter}")
        if self.num_workers < 0 or self.test_batch_size < 1:
            raise ValueError("data.num_workers must be >= 0 and data.test_batch_size >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """SGD (Section 4): momentum 0.9, weight decay 5e-4; learning rates come from ``schedule``.

    ``classifier_lr_factor``: the identity classifiers learn at this multiple of the schedule's rate (not in
    the paper; fast-reid's ``HEADS_LR_FACTOR``). On unit-norm features a classifier row of norm 8 turns by
    at most lr / 8 per image of its identity, so at 1 the rows hardly leave their random init. Yet at 10 the
    shipped model's first stage did not learn faster (one seed, 1,020 steps: docs/REPRODUCTION.md, "Third
    round"), so the default stays 1."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    classifier_lr_factor: float = 1.0

    def __post_init__(self):
        _check_types(self, "optim.")
        if not 0.0 <= self.momentum < 1.0 or self.weight_decay < 0:
            raise ValueError(f"optim: momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum}, {self.weight_decay}")
        if not (math.isfinite(self.classifier_lr_factor) and self.classifier_lr_factor > 0):
            raise ValueError("optim.classifier_lr_factor must be > 0 and finite, got "
                             f"{self.classifier_lr_factor}")


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe. ``model`` names a network (``robustreid.list_models()``); the architecture
    switches left at ``None`` keep that network's own setting."""

    model: str = "robustreid_2x"
    block: str | None = None
    pooling: str | None = None
    l2_norm: bool | None = None
    width: str | None = None
    classifier_bias: bool | None = None
    local_branch: bool | None = None
    head_relu: bool | None = None
    conv_init: str | None = None
    classifier_norm: float | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    data: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # SWAG (Section 3.1: "SWA solution and diagonal covariance"): diagonal only by default, sampled at scale 1
    # (Maddox et al.'s SWAG-Diagonal); max_rank K > 1 adds the low-rank term (then scale 0.5 is theirs).
    swag_max_rank: int = 0
    swag_bma_samples: int = 10  # Bayesian model averaging samples at the final evaluation (0 = SWA mean only)
    swag_scale: float = 1.0
    eval_every_epochs: int = 10  # 0 = only at the end
    seed: int = 0
    # Data-dependent init (train.balance_init): each scale-invariant layer starts with the norm at which one SGD
    # step at base_lr moves it by this fraction of its norm; 0 = the network's own init. Not in the paper.
    init_relative_update: float = 0.0
    # The weights a fresh run starts from (a checkpoint path or a shipped "zoo:NAME"; robustreid train --init):
    # every weight but the identity classifiers, at epoch 0 of this schedule. None = the network's own init.
    init: str | None = None
    # Fine-tuning with the BatchNorm statistics of the weights it starts from: every BatchNorm layer stays in
    # eval mode during training (its running mean / variance are used and not updated; its affine weights still
    # learn). Not in the paper; a common choice for short fine-tuning on small batches. False = the usual
    # train mode, where each batch's statistics normalise and replace the running ones.
    freeze_bn: bool = False
    # The new identity classifiers of a fine-tuning run (``init``): "random" (the network's init) or "imprint"
    # (each row the mean direction of its identity's features under the starting weights:
    # train.imprint_classifiers). Not in the paper.
    classifier_init: str = "random"
    imprint_per_identity: int = 4  # images per identity an imprinted row averages (0 = all; over its cameras)
    amp: bool = False  # autocast: bfloat16 on CPU and on CUDA that has it, else float16 (robustreid.amp)
    deterministic: bool = False

    def __post_init__(self):
        from .model import list_models

        _check_types(self, "")
        for name, section in (("loss", LossConfig), ("data", LoaderConfig), ("optim", OptimConfig), ("schedule", ScheduleConfig)):
            if not isinstance(getattr(self, name), section):
                raise ValueError(f"{name}: expected a {section.__name__}, got {getattr(self, name)!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (0.0 < self.swag_scale < float("inf")):
            raise ValueError(f"swag_scale must be a positive finite number (the SWAG sampling scale), got {self.swag_scale}")
        if self.model not in list_models():
            raise ValueError(f"model must be one of {list_models()}, got {self.model!r}")
        if not 0.0 <= self.init_relative_update < 1.0:
            raise ValueError(f"init_relative_update must be in [0, 1) (0 = off), got {self.init_relative_update}")
        if self.imprint_per_identity < 0:
            raise ValueError(f"imprint_per_identity must be >= 0 (0 = all), got {self.imprint_per_identity}")
        if self.classifier_init not in ("random", "imprint"):
            raise ValueError(f"classifier_init must be 'random' or 'imprint', got {self.classifier_init!r}")
        if self.eval_every_epochs < 0 or self.swag_max_rank < 0 or self.swag_bma_samples < 0:
            raise ValueError("eval_every_epochs, swag_max_rank and swag_bma_samples must be >= 0")

    def model_options(self) -> dict:
        """The architecture switches that are set, as ``build_model`` keyword arguments."""
        keys = ("block", "pooling", "l2_norm", "width", "classifier_bias", "local_branch", "head_relu", "conv_init", "classifier_norm")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


# ---- presets: Table 2 -----------------------------------------------------------------------------------

_PLAIN_TRIPLET = dict(triplet_mining="batch_all", triplet_margin=0.3)  # Eq. 2, columns a and b
_NO_BOT = dict(warmup_epochs=0)

_ROBUST_2X = TrainConfig(model="robustreid_2x")
_ROBUST_2X_NO_SWAG = dataclasses.replace(_ROBUST_2X, schedule=ScheduleConfig(swag_cycles=0))


def _with(base: TrainConfig, *, loss: dict | None = None, schedule: dict | None = None, **fields) -> TrainConfig:
    if loss:
        fields["loss"] = dataclasses.replace(base.loss, **loss)
    if schedule:
        fields["schedule"] = dataclasses.replace(base.schedule, **schedule)
    return dataclasses.replace(base, **fields)


PRESETS: dict[str, TrainConfig] = {
    # The original baseline: HA-CNN, identity loss only, no Bag of Tricks.
    "hacnn": _with(
        TrainConfig(model="hacnn"),
        loss=dict(label_smoothing=0.0, triplet=False),
        schedule=dict(swag_cycles=0, **_NO_BOT),
        data=LoaderConfig(random_erasing=0.0),
    ),
    # a: HA-CNN + Bag of Tricks (warmup, random erasing, label smoothing, no-bias classifiers), plain triplet.
    "a": _with(
        TrainConfig(model="hacnn", classifier_bias=False), loss=_PLAIN_TRIPLET, schedule=dict(swag_cycles=0)
    ),
    # b .. f: column i (2x, no SWAG) with one item off.
    "b": _with(_ROBUST_2X_NO_SWAG, loss=_PLAIN_TRIPLET),
    "c": _with(_ROBUST_2X_NO_SWAG, l2_norm=False),
    "d": _with(_ROBUST_2X_NO_SWAG, block="inception"),
    "e": _with(_ROBUST_2X_NO_SWAG, loss=dict(triplet_margin=0.3)),
    "f": _with(_ROBUST_2X_NO_SWAG, pooling="avg"),
    # g: all but deeper and wider; h: g + SWAG; i: all but SWAG.
    "g": dataclasses.replace(_ROBUST_2X_NO_SWAG, model="robustreid_1x"),
    "h": TrainConfig(model="robustreid_1x"),
    "i": _ROBUST_2X_NO_SWAG,
    "robust-reid-1x": TrainConfig(model="robustreid_1x"),
    "robust-reid-2x": _ROBUST_2X,
}


def list_presets() -> list[str]:
    return list(PRESETS)


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# ---- overrides --------------------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> dict:
    """A config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Turn ``value`` (from a file or a ``key=value`` string) into the type of the field's current value."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if text.lower() in ("none", "null"):
            return None
        try:
            value = json.loads(text.lower() if text.lower() in ("true", "false") else text)
        except json.JSONDecodeError:
            value = text
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], _prefix: str = "") -> TrainConfig:
    """Return ``cfg`` with ``overrides`` applied; keys are field names, nested via dicts or dotted names."""
    nested: dict[str, dict] = {}
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, dict):
            nested.setdefault(head, {}).update(value)
        else:
            flat[head] = value
    names = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for key in list(flat) + list(nested):
        if key not in names:
            raise ValueError(f"unknown config key {_prefix + key!r}; valid keys here: {', '.join(sorted(names))}")
    for key, value in flat.items():
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            raise ValueError(f"config key {_prefix + key!r} is a section; set its fields, e.g. {_prefix + key}.FIELD=VALUE")
        changes[key] = _coerce(value, current, _prefix + key)
    for key, sub in nested.items():
        current = getattr(cfg, key)
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"config key {_prefix + key!r} has no sub-keys")
        changes[key] = apply_overrides(current, sub, _prefix + key + ".")
    try:
        return dataclasses.replace(cfg, **changes)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid config: {exc}") from None


def parse_set(items: list[str]) -> dict[str, str]:
    """``["loss.triplet_margin=0.3", ...]`` -> ``{"loss.triplet_margin": "0.3"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def load_config_file(path: str | Path) -> dict:
    """Read overrides from a TOML (``.toml``) or JSON (``.json``) file: a table of keys at the top level
    (``{"seed": 3, "loss": {...}}``). Anything else (not UTF-8, invalid syntax, a list at the top level) is a
    one-line ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix not in (".json", ".toml"):
        raise ValueError(f"config file {path}: expected a .toml or .json file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"config file {path}: not UTF-8 text (byte {exc.start}); expected a {path.suffix} file of "
                         "overrides") from None
    if path.suffix == ".json":
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError(f"{path}: TOML config files need Python >= 3.11; use a .json file") from None
        try:
            overrides = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
    if not isinstance(overrides, dict):  # TOML always gives a table; JSON may hold a list, a number, ...
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(overrides), "a number")
        raise ValueError(f"config file {path}: its top level is {kind}, expected a table of keys "
                         '(e.g. {"seed": 3, "loss": {"triplet_margin": 0.3}})')
    return overrides


def build_config(preset_name: str, config_file: str | Path | None = None, epochs: int | None = None,
                 sets: list[str] | dict[str, Any] | None = None, amp: bool = False) -> TrainConfig:
    """The recipe ``robustreid train`` runs: the preset, then the file's overrides (``load_config_file``), then
    Eq. 1 shrunk to ``epochs`` (``ScheduleConfig.scaled``), then ``sets`` (``["key=value", ...]`` as
    ``--set`` takes them, or a ``{"key": value}`` dict), then ``amp``. Later steps win."""
    cfg = preset(preset_name)
    if config_file:
        cfg = apply_overrides(cfg, load_config_file(config_file))
    overrides = dict(sets) if isinstance(sets, dict) else parse_set(list(sets or []))
    if epochs is not None:
        cfg = dataclasses.replace(cfg, schedule=cfg.schedule.scaled(epochs))
    if amp:
        overrides["amp"] = True
    return apply_overrides(cfg, overrides)


def swag_stage_config(cfg: TrainConfig, cycles: int | None = None, cycle_epochs: int | None = None,
                      default_cycles: int = 15) -> TrainConfig:
    """``cfg`` with a SWAG stage to run after its finished main stage (``robustreid swag``): ``cycles`` cycles of
    ``cycle_epochs`` epochs; a run trained without SWAG gets ``default_cycles`` (Section 3.1's 15) unless told."""
    schedule = cfg.schedule
    if cycles or schedule.swag_cycles == 0:
        schedule = dataclasses.replace(schedule, swag_cycles=cycles or default_cycles)
    if cycle_epochs:
        schedule = dataclasses.replace(schedule, swag_cycle_epochs=cycle_epochs)
    return dataclasses.replace(cfg, schedule=schedule)

