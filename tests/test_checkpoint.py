"""Checkpoints: atomic round trip, safe loading, clear refusals."""

import re

import pytest
import torch

from robustreid.checkpoint import load_checkpoint, load_model, model_from_checkpoint, model_state, save_checkpoint
from robustreid.model import build_model


class Payload:  # an arbitrary class: pickling it makes a checkpoint that weights_only must refuse
    pass


def test_round_trip_restores_weights_and_arch(tmp_path):
    torch.manual_seed(0)
    model = build_model("robustreid_1x", 5, pooling="avg").eval()
    path = save_checkpoint({**model_state(model), "epoch": 3}, tmp_path / "run" / "last.pt")
    assert path.exists() and not list(path.parent.glob(".tmp-*"))
    state = load_checkpoint(path)
    assert state["epoch"] == 3
    restored = load_model(path)
    assert restored.arch == model.arch and restored.num_classes == 5
    x = torch.randn(2, 3, 160, 64)
    with torch.no_grad():
        torch.testing.assert_close(restored(x).embedding, model(x).embedding)


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    state = {**model_state(build_model("hacnn", 2)), "extra": Payload()}
    torch.save(state, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)


def test_refuses_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a robustreid checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("name, content, said", [
    ("photo.pt", b"\xff\xd8\xff\xe0\x00\x10JFIF", "is a JPEG image"),
    ("scores.pt", b'{"rank1": 1.0}', "is a JSON file"),
    ("model.onnx", b"\x08\x08\x12\x07pytorch", "is an ONNX model .*--backend onnxruntime"),
    ("notes.pt", b"epoch 3 done\n", "is a text file"),
    ("empty.pt", b"", "is an empty file"),
    ("noise.pt", bytes(range(256)) * 4, "not a PyTorch checkpoint"),
    ("cut.pt", None, "not a readable PyTorch checkpoint"),
])
def test_names_the_file_and_what_it_is(tmp_path, name, content, said):
    path = tmp_path / name
    if content is None:  # a real checkpoint cut in half (a kill mid-copy)
        full = save_checkpoint(model_state(build_model("hacnn", 2)), tmp_path / "full.pt").read_bytes()
        content = full[: len(full) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{name}.*{said}|{name} {said}") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)  # one line
    with pytest.raises(ValueError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_state_dict_that_does_not_fit_is_one_line():
    state = model_state(build_model("hacnn", 3))
    state["model"]["classifiers.0.weight"] = torch.zeros(4, 7)  # hand-edited: the wrong shape
    with pytest.raises(ValueError, match="do not fit .*classifiers.0.weight") as err:
        model_from_checkpoint(state)
    assert "\n" not in str(err.value)


def test_refuses_mismatched_classes_and_arch():
    state = model_state(build_model("robustreid_1x", 5))
    with pytest.raises(ValueError, match="5 identity classes, expected 7"):
        model_from_checkpoint(state, num_classes=7)
    with pytest.raises(ValueError, match="pooling"):
        model_from_checkpoint(state, arch=build_model("robustreid_1x", 5, pooling="max").arch)


def test_every_refusal_names_the_checkpoint(tmp_path):
    state = model_state(build_model("hacnn", 3))
    for source in ("runs/a/last.pt", "zoo:hacnn"):
        with pytest.raises(ValueError, match=f"^checkpoint {source} has 3 identity classes, expected 7$"):
            model_from_checkpoint(state, num_classes=7, source=source)
        with pytest.raises(ValueError, match=f"^the architecture of checkpoint {source} does not match"):
            model_from_checkpoint(state, arch=build_model("robustreid_1x").arch, source=source)
    # load_model names the file it read; what the file says against what its weights hold
    wide = model_state(build_model("robustreid_1x", 4))
    path = save_checkpoint({**wide, "arch": state["arch"], "num_classes": 3}, tmp_path / "swapped.pt")
    with pytest.raises(ValueError) as err:
        load_model(path)
    assert str(err.value).startswith(f"checkpoint {path}: its weights do not fit the network it names: the file "
                                     "says hacnn with 3 identity classes, its weights hold robustreid_1x with 4 "
                                     "identity classes (")
    path = save_checkpoint({k: v for k, v in state.items() if k != "model"}, tmp_path / "empty.pt")
    said = f"^checkpoint {re.escape(str(path))} has no model entry: it does not hold a network$"
    with pytest.raises(ValueError, match=said):
        load_model(path)
    path = save_checkpoint({**state, "model": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(ValueError, match=f"^checkpoint {re.escape(str(path))}: its model entry is a list, expected"):
        load_model(path)


def test_non_finite_weights_are_refused_on_load(tmp_path):
    state = model_state(build_model("hacnn", 3))
    first = "attention.1.soft.channel.squeeze.1.running_mean"  # a buffer deep inside: buffers are weights too
    original = state["model"][first].clone()
    state["model"][first][:2] = torch.tensor([float("nan"), float("-inf")])
    path = save_checkpoint(state, tmp_path / "diverged.pt")
    said = f"^checkpoint {re.escape(str(path))} holds non-finite weights: {first} has 2 NaN or infinite values of "
    with pytest.raises(ValueError, match=said):
        load_model(path)
    with pytest.raises(ValueError, match="^checkpoint holds non-finite weights"):  # no source given
        model_from_checkpoint(state)
    # the check is what lets a finite checkpoint through: the same file repaired loads
    state["model"][first] = original
    assert load_model(save_checkpoint(state, tmp_path / "repaired.pt")).num_classes == 3


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"format": "robustreid", "epoch": 1}, tmp_path / "last.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"format": "robustreid", "epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
