"""End-to-end tests of the ``robustreid`` command (run in-process through ``main``)."""

import json

import pytest

from robustreid.cli import main
from robustreid.model import build_model
from robustreid.profile import count_params


def test_profile_json_keys_and_values(capsys):
    assert main(["profile", "robustreid_1x", "--json", "--num-classes", "10"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"model", "params", "params_with_classifier", "gmacs", "input_size", "feature_dim"} <= set(stats)
    model = build_model("robustreid_1x", 10)
    assert stats["params"] == count_params(model)
    assert stats["params_with_classifier"] == count_params(model, with_classifier=True)
    assert stats["input_size"] == [160, 64] and stats["feature_dim"] == 1024


def test_profile_table(capsys):
    assert main(["profile", "hacnn"]) == 0
    out = capsys.readouterr().out
    assert "gmacs" in out and "160x64" in out


def test_profile_unknown_model_lists_valid_names(capsys):
    assert main(["profile", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "resnet50" in err and "robustreid_1x" in err and "Traceback" not in err
