"""Presets follow Table 2 exactly; overrides are typed and refuse unknown keys."""

import dataclasses
import json
import re

import pytest

from robustreid.config import (
    PRESETS, TrainConfig, apply_overrides, build_config, config_to_dict, load_config_file, parse_set, preset,
    swag_stage_config,
)
from robustreid.model import build_model

# Table 2 as decoded in shared/paper/tables-decoded.md: which items are ON in each column.
ITEMS = ("bot", "soft_triplet", "l2", "shuffle", "soft_margin", "gem", "wide", "swag")
TABLE2 = {
    "hacnn": (0, 0, 0, 0, 0, 0, 0, 0),
    "a": (1, 0, 0, 0, 0, 0, 0, 0),
    "b": (1, 0, 1, 1, 0, 1, 1, 0),
    "c": (1, 1, 0, 1, 1, 1, 1, 0),
    "d": (1, 1, 1, 0, 1, 1, 1, 0),
    "e": (1, 1, 1, 1, 0, 1, 1, 0),
    "f": (1, 1, 1, 1, 1, 0, 1, 0),
    "g": (1, 1, 1, 1, 1, 1, 0, 0),
    "h": (1, 1, 1, 1, 1, 1, 0, 1),
    "i": (1, 1, 1, 1, 1, 1, 1, 0),
    "robust-reid-2x": (1, 1, 1, 1, 1, 1, 1, 1),
    "robust-reid-1x": (1, 1, 1, 1, 1, 1, 0, 1),
}


def items_of(cfg: TrainConfig) -> tuple:
    arch = build_model(cfg.model, 2, **cfg.model_options()).arch
    bot = (
        cfg.schedule.warmup_epochs > 0
        and cfg.data.random_erasing == 0.5
        and cfg.loss.label_smoothing == 0.1
        and not arch.classifier_bias
    )
    return (
        int(bot),
        int(cfg.loss.triplet and cfg.loss.triplet_mining == "batch_soft"),
        int(arch.l2_norm),
        int(arch.block == "shuffle"),
        int(cfg.loss.triplet and cfg.loss.triplet_margin is None),
        int(arch.pooling == "gem"),
        int(arch.feat_dim == 960 and arch.stage_channels == (240, 320, 480)),
        int(cfg.schedule.swag_cycles > 0),
    )


@pytest.mark.parametrize("name", list(TABLE2))
def test_presets_match_table2(name):
    assert items_of(preset(name)) == TABLE2[name], dict(zip(ITEMS, items_of(preset(name))))


def test_every_preset_is_covered_and_paper_recipe_values():
    assert set(PRESETS) == set(TABLE2)
    cfg = preset("robust-reid-2x")
    assert (cfg.data.batch_p, cfg.data.batch_k) == (8, 4)
    assert (cfg.optim.momentum, cfg.optim.weight_decay) == (0.9, 5e-4)
    assert (cfg.schedule.base_lr, cfg.schedule.warmup_epochs, cfg.schedule.milestones, cfg.schedule.epochs) == (
        3e-2, 10, (150, 225), 350)
    assert (cfg.schedule.swag_cycles, cfg.schedule.swag_cycle_epochs, cfg.schedule.swag_cycle_decay) == (15, 35, 0.7)
    # Columns a and b use the plain triplet of Eq. 2.
    assert preset("b").loss.triplet_mining == "batch_all" and preset("b").loss.triplet_margin == 0.3
    assert preset("hacnn").loss.triplet is False


def test_presets_differ_only_in_their_column():
    i = config_to_dict(preset("i"))
    for col, changed in {"c": {"l2_norm"}, "d": {"block"}, "f": {"pooling"}, "g": {"model"}, "e": {"loss"},
                         "b": {"loss"}, "robust-reid-2x": {"schedule"}}.items():
        other = config_to_dict(preset(col))
        assert {k for k in i if i[k] != other[k]} == changed, col


def test_overrides_dotted_and_nested_and_typed():
    cfg = apply_overrides(preset("i"), parse_set(["loss.triplet_margin=0.3", "schedule.epochs=60", "amp=true",
                                                   "schedule.milestones=[20,40]", "schedule.warmup_epochs=5"]))
    assert cfg.loss.triplet_margin == 0.3 and cfg.schedule.epochs == 60 and cfg.amp is True
    assert cfg.schedule.milestones == (20, 40)
    assert apply_overrides(cfg, {"loss": {"triplet_margin": "none"}}).loss.triplet_margin is None
    assert isinstance(apply_overrides(cfg, {"schedule.base_lr": "1"}).schedule.base_lr, float)


def test_unknown_and_bad_values_are_errors():
    with pytest.raises(ValueError, match="unknown config key 'loss.margin'"):
        apply_overrides(preset("i"), {"loss.margin": 1})
    with pytest.raises(ValueError, match="unknown config key 'lr'"):
        apply_overrides(preset("i"), {"lr": 1})
    with pytest.raises(ValueError, match="amp: expected true or false"):
        apply_overrides(preset("i"), {"amp": "maybe"})
    with pytest.raises(ValueError, match="triplet_mining"):
        apply_overrides(preset("i"), {"loss.triplet_mining": "batch_random"})
    with pytest.raises(ValueError, match="data.pad must be >= 0 pixels, got -1"):
        apply_overrides(preset("i"), {"data.pad": "-1"})
    assert apply_overrides(preset("i"), {"data.pad": "0"}).data.pad == 0
    with pytest.raises(ValueError, match=r"data.color_jitter must be a probability in \[0, 1\], got 2"):
        apply_overrides(preset("i"), {"data.color_jitter": "2"})
    assert preset("i").data.color_jitter == 0.0  # the paper's recipe has none
    assert apply_overrides(preset("i"), {"data.color_jitter": "0.8"}).data.color_jitter == 0.8
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["epochs"])
    with pytest.raises(ValueError, match="unknown preset 'z'"):
        preset("z")


@pytest.mark.parametrize("key, value, message", [
    ("swag_bma_samples", "2.5", "swag_bma_samples: expected int, got 2.5"),
    ("swag_scale", "-1", "swag_scale must be a positive finite number"),
    ("swag_scale", "abc", "swag_scale: expected float, got 'abc'"),
    ("seed", "-1", "seed must be >= 0, got -1"),
    ("seed", "true", "seed: expected int, got True"),
    ("data.num_workers", "1.5", "data.num_workers: expected int, got 1.5"),
    ("l2_norm", "5", "l2_norm: expected bool or null, got 5"),
    ("loss.triplet_margin", "wide", "loss.triplet_margin: expected float or null, got 'wide'"),
    ("optim.momentum", "[0.9]", "optim.momentum: expected float, got \\[0.9\\]"),
])
def test_wrong_types_and_ranges_fail_when_the_config_is_built(key, value, message):
    # caught when the run is configured, not after the SWAG cycles that would first use the value
    with pytest.raises(ValueError, match=message):
        apply_overrides(preset("robust-reid-1x"), {key: value})


def test_right_types_are_coerced_not_refused():
    cfg = apply_overrides(preset("robust-reid-1x"), {"data.num_workers": "2.0", "swag_scale": "1", "l2_norm": "null",
                                                     "loss.triplet_margin": "0.3"})
    assert (cfg.data.num_workers, cfg.swag_scale, cfg.l2_norm, cfg.loss.triplet_margin) == (2, 1.0, None, 0.3)


def test_config_round_trips_through_dict():
    for name in PRESETS:
        cfg = preset(name)
        assert apply_overrides(TrainConfig(), config_to_dict(cfg)) == cfg


def test_config_files(tmp_path):
    (tmp_path / "c.toml").write_text('seed = 3\n[schedule]\nepochs = 40\nmilestones = [20, 30]\n')
    (tmp_path / "c.json").write_text(json.dumps({"loss": {"label_smoothing": 0.2}}))
    cfg = apply_overrides(preset("g"), load_config_file(tmp_path / "c.toml"))
    assert cfg.seed == 3 and cfg.schedule.epochs == 40
    assert apply_overrides(cfg, load_config_file(tmp_path / "c.json")).loss.label_smoothing == 0.2
    (tmp_path / "bad.toml").write_text("seed = = 3")
    with pytest.raises(ValueError, match="bad.toml"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config_file(tmp_path / "nope.toml")
    assert dataclasses.is_dataclass(cfg)


def test_config_file_that_is_not_a_table_or_not_utf8_is_one_line_naming_it(tmp_path):
    for name, text, kind in (("list.json", "[1, 2]", "a list"), ("number.json", "3", "a number"),
                             ("null.json", "null", "null"), ("text.json", '"seed=3"', "a string")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"^config file {re.escape(str(tmp_path / name))}: its top level is "
                                             rf"{kind}, expected a table of keys") as err:
            load_config_file(tmp_path / name)
        assert "\n" not in str(err.value)
    for name, latin1 in (("latin.toml", b"seed = 3 # caf\xe9"), ("latin.json", b'{"seed": 3, "note": "caf\xe9"}')):
        (tmp_path / name).write_bytes(latin1)
        at = latin1.index(0xE9)
        with pytest.raises(ValueError, match=rf"^config file {re.escape(str(tmp_path / name))}: not UTF-8 text "
                                             rf"\(byte {at}\)"):
            load_config_file(tmp_path / name)
    (tmp_path / "ok.json").write_text('{"seed": 3}')  # a table loads as it is
    assert load_config_file(tmp_path / "ok.json") == {"seed": 3}


def test_build_config_applies_preset_file_epochs_sets_in_that_order(tmp_path):
    # the file sets 7 epochs and a margin; --epochs 3 rescales Eq. 1 from the file's schedule; --set wins last
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"schedule": {"base_lr": 0.01}, "loss": {"triplet_margin": 0.5}}))
    cfg = build_config("robust-reid-1x", path, 3, ["loss.triplet_margin=0.2", "seed=4"], amp=True)
    expected = preset("robust-reid-1x")
    expected = apply_overrides(expected, {"schedule": {"base_lr": 0.01}, "loss": {"triplet_margin": 0.5}})
    assert cfg.schedule == expected.schedule.scaled(3) and cfg.schedule.epochs == 3 and cfg.schedule.base_lr == 0.01
    assert cfg.loss.triplet_margin == 0.2 and cfg.seed == 4 and cfg.amp is True
    # a --set of a schedule field comes after the scaling, so it is not rescaled away
    assert build_config("robust-reid-1x", None, 3, {"schedule.warmup_epochs": 0}).schedule.warmup_epochs == 0
    assert build_config("hacnn") == preset("hacnn")


def test_swag_stage_config_adds_or_edits_the_cycles():
    no_swag = apply_overrides(preset("robust-reid-1x"), {"schedule": {"swag_cycles": 0}})
    assert swag_stage_config(no_swag).schedule.swag_cycles == 15  # Section 3.1's default for a run without SWAG
    assert swag_stage_config(no_swag, 2, 3).schedule.swag_cycles == 2
    with_swag = preset("robust-reid-1x")
    edited = swag_stage_config(with_swag, cycle_epochs=4)
    assert edited.schedule.swag_cycles == with_swag.schedule.swag_cycles and edited.schedule.swag_cycle_epochs == 4
    assert dataclasses.replace(edited, schedule=with_swag.schedule) == with_swag  # nothing else changes
