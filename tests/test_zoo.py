"""The model zoo: shipped weights loaded by name, sha256-checked, in the checkpoint format; fine-tuning.

Tiny networks (a few thousand parameters) packed into a tmp zoo folder stand in for the shipped weights."""

import hashlib
import json

import numpy as np
import pytest
import torch

from robustreid import train, zoo
from robustreid.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, model_state
from robustreid.cli import main
from robustreid.config import apply_overrides, preset
from robustreid.datasets import load_dataset
from robustreid.model import build_model
from robustreid.synthetic import write_market1501
from robustreid.train import check_pretrained_arch, fit, load_pretrained_weights

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"stem_channels": 8, "stage_channels": (16, 16, 16), "feat_dim": 16}  # a few thousand parameters
TINY_SHUFFLE = {"stem_channels": 8, "stage_channels": (16, 32, 32), "stage_repeats": (0, 0, 0),
                "feat_dim": 16}


def trained_like(model):
    """``model`` with every tensor moved off its init (weights and BatchNorm statistics), so a test can tell
    loaded values from fresh ones."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("num_batches_tracked"):
                t.fill_(123)
    return model.eval()


@pytest.fixture
def zoo_dir(tmp_path, monkeypatch):
    """A tmp zoo with a tiny ``hacnn`` and a tiny ``robustreid_1x``, named by $ROBUSTREID_ZOO_DIR."""
    folder = tmp_path / "zoo"
    models = {"hacnn": trained_like(build_model("hacnn", 5, **TINY)),
              "robustreid_1x": trained_like(build_model("robustreid_1x", 7, **TINY_SHUFFLE))}
    card = {"data": "tests", "evaluation": {"rank1": 50.0, "mAP": 25.0, "dataset": "synthetic"}}
    for name, model in models.items():
        zoo.pack_checkpoint(model_state(model), name, card, zoo_dir=folder)
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    return folder, models


def test_format_is_the_checkpoint_format():
    assert (zoo.FORMAT, zoo.FORMAT_VERSION) == (FORMAT, FORMAT_VERSION)


def test_zoo_names():
    assert zoo.is_zoo_name("zoo:robustreid_1x") and zoo.is_zoo_name("zoo:")
    for other in ("robustreid_1x", "runs/zoo:x.pt", "ZOO:hacnn", None, 3):
        assert not zoo.is_zoo_name(other)


def test_pack_then_load_gives_the_same_tensors_and_embeddings(zoo_dir):
    folder, models = zoo_dir
    original = models["robustreid_1x"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "hacnn.json", "hacnn.safetensors", "robustreid_1x.json", "robustreid_1x.safetensors"]
    for name in ("robustreid_1x", "zoo:robustreid_1x"):
        state = zoo.load_zoo_state(name)
        assert state["format"] == FORMAT and state["num_classes"] == 7
        assert state["arch"] == json.loads(json.dumps(original.arch.to_dict()))
        expected = original.state_dict()
        assert sorted(state["model"]) == sorted(expected)
        for key, tensor in expected.items():
            assert state["model"][key].dtype == tensor.dtype and torch.equal(state["model"][key], tensor), key
    model = zoo.load_pretrained("zoo:robustreid_1x")
    assert not model.training and model.arch == original.arch and model.num_classes == 7
    images = torch.randn(3, 3, 160, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.embed(images), original.embed(images))
    out, ref = model(images), original(images)
    assert torch.equal(out.global_logits, ref.global_logits)
    assert torch.equal(out.local_logits, ref.local_logits)


def test_the_card_describes_the_file(zoo_dir):
    folder, models = zoo_dir
    text = (folder / "hacnn.json").read_text()
    card = json.loads(text)
    weights = folder / "hacnn.safetensors"
    assert card["name"] == "hacnn" and card["file"] == "hacnn.safetensors" and card["data"] == "tests"
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["size_bytes"] == weights.stat().st_size
    model = models["hacnn"]
    backbone = [p for n, p in model.named_parameters() if not n.startswith("classifiers")]
    assert card["num_params"] == sum(p.numel() for p in backbone)
    assert card["arch_name"] == "custom" and card["arch"]["block"] == "inception" and card["num_classes"] == 5
    assert card["data_config"] == {"input_size": [160, 64], "mean": [0.485, 0.456, 0.406],
                                   "std": [0.229, 0.224, 0.225]}
    assert text == zoo.card_json(card) and '"input_size": [160, 64]' in text  # stable, lists on one line
    assert list(card) == sorted(card)
    assert [c["name"] for c in zoo.list_zoo()] == ["hacnn", "robustreid_1x"]
    assert zoo.load_card("zoo:hacnn") == card


def test_an_unknown_name_lists_the_shipped_ones(zoo_dir, tmp_path):
    for name in ("zoo:foo", "foo", "zoo:../zoo/hacnn", "zoo:.hidden"):
        with pytest.raises(ValueError) as err:
            zoo.load_zoo_state(name)
        bare = name.removeprefix("zoo:")
        assert str(err.value) == f"zoo:{bare} is not a shipped model; shipped: hacnn, robustreid_1x"
    empty = tmp_path / "empty"
    with pytest.raises(ValueError, match=r"zoo:hacnn is not a shipped model; shipped: none \(no model cards"):
        zoo.load_card("hacnn", zoo_dir=empty)
    assert zoo.list_zoo(empty) == []


def test_damaged_or_missing_weights_are_refused_naming_the_file(zoo_dir):
    folder, _ = zoo_dir
    weights = folder / "robustreid_1x.safetensors"
    data = bytearray(weights.read_bytes())
    expected = hashlib.sha256(data).hexdigest()
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    for load in (zoo.load_zoo_state, zoo.load_pretrained, load_checkpoint):
        with pytest.raises(ValueError) as err:
            load("zoo:robustreid_1x")
        message = str(err.value)
        assert message.startswith(f"{weights}: sha256 ") and f"expected {expected[:12]}" in message
        assert "does not match its card" in message and "damaged" in message and "\n" not in message
    weights.unlink()
    with pytest.raises(FileNotFoundError) as err:
        zoo.load_zoo_state("zoo:robustreid_1x")
    assert str(err.value).startswith(f"{weights}: missing") and "\n" not in str(err.value)
    assert zoo.load_pretrained("hacnn").num_classes == 5  # the other model is still fine


def test_a_card_that_disagrees_with_the_weights_is_an_error(zoo_dir):
    folder, models = zoo_dir
    card_path = folder / "hacnn.json"
    card = json.loads(card_path.read_text())
    card["arch"]["pooling"] = "gem"  # the weights' metadata says avg
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not describe hacnn.safetensors: card vs weights: pooling gem"):
        zoo.load_zoo_state("hacnn")
    with pytest.raises(ValueError, match="arch_name 'robustreid_1x', the weights are 'custom'"):
        zoo.pack_checkpoint(model_state(models["hacnn"]), "x", {"arch_name": "robustreid_1x"}, zoo_dir=folder)
    assert not (folder / "x.json").exists() and not (folder / "x.safetensors").exists()


def test_pack_takes_a_checkpoint_file_and_records_its_training(tmp_path):
    model = trained_like(build_model("hacnn", 3, **TINY))
    ckpt = tmp_path / "last.pt"
    torch.save({**model_state(model), "config": {"seed": 3}, "versions": {"torch": "x"}}, ckpt)
    card_path = zoo.pack_checkpoint(ckpt, "zoo:mine", {"command": "robustreid train ..."},
                                    zoo_dir=tmp_path / "z")
    card = json.loads(card_path.read_text())
    assert card_path == tmp_path / "z" / "mine.json" and card["name"] == "mine"
    assert card["train_config"] == {"seed": 3} and card["versions"] == {"torch": "x"}
    assert card["command"] == "robustreid train ..."
    with pytest.raises(ValueError, match="zoo name"):
        zoo.pack_checkpoint(ckpt, "../up", {}, zoo_dir=tmp_path / "z")


def test_load_pretrained_with_another_class_count(zoo_dir):
    model = zoo.load_pretrained("hacnn", num_classes=11)
    assert model.num_classes == 11 and model.classifiers[0].weight.shape == (11, 16) and not model.training
    assert zoo.load_pretrained("hacnn", num_classes=5).classifiers[0].weight.shape == (5, 16)


def test_every_checkpoint_path_takes_a_zoo_name(zoo_dir):
    from robustreid.evaluate import FeatureExtractor

    _, models = zoo_dir
    state = load_checkpoint("zoo:robustreid_1x")
    assert state["format"] == FORMAT and state["zoo_card"]["name"] == "robustreid_1x"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (128, 48, 3), dtype=np.uint8) for _ in range(3)]
    by_name = FeatureExtractor("zoo:robustreid_1x", device="cpu", optimize=False)(images)
    by_model = FeatureExtractor(models["robustreid_1x"], device="cpu", optimize=False)(images)
    assert by_name.shape == (3, 32) and torch.equal(by_name, by_model)
    with pytest.raises(ValueError, match="export it first"):
        FeatureExtractor("zoo:robustreid_1x", backend="onnxruntime")


# ---- fine-tuning: every weight but the classifiers --------------------------------------------------------


def test_pretrained_weights_load_everything_but_the_classifiers():
    source = trained_like(build_model("robustreid_1x", 7, **TINY_SHUFFLE))
    run = build_model("robustreid_1x", 4, **TINY_SHUFFLE)  # the run's dataset: 4 identities
    fresh_classifiers = {k: v.clone() for k, v in run.state_dict().items() if k.startswith("classifiers.")}
    loaded = load_pretrained_weights(run, model_state(source))
    after, before = run.state_dict(), source.state_dict()
    backbone = [k for k in before if not k.startswith("classifiers.")]
    assert loaded == sorted(backbone) and any("running_mean" in k for k in backbone)
    for key in backbone:
        assert torch.equal(after[key], before[key]), key
    assert fresh_classifiers and all(torch.equal(after[k], v) for k, v in fresh_classifiers.items())
    assert run.num_classes == 4 and [c.weight.shape[0] for c in run.classifiers] == [4, 4]


def test_pretrained_weights_of_another_architecture_are_refused():
    state = model_state(build_model("hacnn", 3))
    with pytest.raises(ValueError) as err:
        check_pretrained_arch(build_model("robustreid_1x", 3).arch, state, "--init zoo:hacnn")
    message = str(err.value)
    assert message.startswith("--init zoo:hacnn is a hacnn (block=inception, pooling=avg")
    assert "this run trains robustreid_1x (block=shuffle, pooling=gem" in message and "\n" not in message
    with pytest.raises(ValueError, match="is a hacnn"):
        load_pretrained_weights(build_model("robustreid_1x", 3), state)


def test_pretrained_weights_may_have_other_classifiers():
    """The classifiers are not loaded, so a run may change their logit scale or bias: rows of its own norm."""
    source = trained_like(build_model("robustreid_1x", 7, **TINY_SHUFFLE))
    run = build_model("robustreid_1x", 5, classifier_norm=32.0, classifier_bias=True, **TINY_SHUFFLE)
    loaded = load_pretrained_weights(run, model_state(source))
    assert all(torch.equal(run.state_dict()[k], source.state_dict()[k]) for k in loaded)
    rows = torch.cat([c.weight.detach().norm(dim=1) for c in run.classifiers])
    assert abs(float(rows.mean()) - 32.0) < 8.0 and all(c.bias is not None for c in run.classifiers)
    with pytest.raises(ValueError, match=r"\(pooling=gem\), this run trains .* \(pooling=avg\)"):
        other = build_model("robustreid_1x", 5, pooling="avg", **TINY_SHUFFLE)
        load_pretrained_weights(other, model_state(source))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_market1501(root, ids_train=6, ids_test=4, cameras=2, images_per_id_per_cam=2, distractors=2, junk=1)
    return load_dataset("market1501", root)


def test_fit_fine_tunes_from_a_zoo_model_and_resumes_without_it(tiny_dataset, tmp_path, monkeypatch):
    """fit(cfg.init="zoo:...") starts at epoch 0 from the shipped weights with classifiers for the dataset;
    the epochs are stubbed (each adds 1 to the stem convolution), so the check is exact and no SGD runs."""
    folder = tmp_path / "zoo"
    source = trained_like(build_model("robustreid_1x", 3))
    zoo.pack_checkpoint(model_state(source), "robustreid_1x", {}, zoo_dir=folder)
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    cfg = apply_overrides(preset("robust-reid-1x"), {
        "data": {"batch_p": 2, "batch_k": 2, "num_workers": 0}, "eval_every_epochs": 0,
        "init": "zoo:robustreid_1x",
        "schedule": {"epochs": 2, "warmup_epochs": 0, "milestones": [], "swag_cycles": 0}})
    epochs_run = []

    def stub_epoch(net, loader, optimizer, criterion, epoch, cfg, dev, show_progress, scaler):
        if epoch in kill_at:
            raise RuntimeError("killed")
        epochs_run.append(epoch)
        with torch.no_grad():
            net.stem[0].weight.add_(1.0)
        return {"epoch": epoch, "loss": 0.0, "lr": 0.0}

    monkeypatch.setattr(train, "train_one_epoch", stub_epoch)
    quiet = {"show_progress": False, "log": lambda line: None, "final_eval": False, "check_images": False}
    kill_at = {1}
    with pytest.raises(RuntimeError, match="killed"):
        fit(cfg, tiny_dataset, tmp_path / "run", **quiet)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert epochs_run == [0] and state["epoch"] == 1 and state["config"]["init"] == "zoo:robustreid_1x"
    expected = source.state_dict()
    for key, tensor in state["model"].items():
        if key.startswith("classifiers."):
            assert tensor.shape[0] == tiny_dataset.num_train_pids == 6
        elif key == "stem.0.weight":
            assert torch.equal(tensor, expected[key] + 1.0)
        else:
            assert torch.equal(tensor, expected[key]), key
    assert state["num_classes"] == 6

    (folder / "robustreid_1x.safetensors").unlink()  # a resumed run does not read its init again
    kill_at = set()
    summary = fit(cfg, tiny_dataset, tmp_path / "run", resume=True, **quiet)
    assert epochs_run == [0, 1] and summary["config"]["init"] == "zoo:robustreid_1x"
    final = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert torch.equal(final["stem.0.weight"], expected["stem.0.weight"] + 1.0 + 1.0)  # epochs 0 and 1
    # a fresh run, though, needs its init
    with pytest.raises(FileNotFoundError, match="robustreid_1x.safetensors: missing"):
        fit(cfg, tiny_dataset, tmp_path / "run2", **quiet)
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("name", ["robustreid_1x", "hacnn"])
def test_imprinted_rows_are_each_identitys_mean_direction(tiny_dataset, name):
    """Checked against a slow loop: each image alone through the network, the means taken by hand."""
    from PIL import Image

    from robustreid.loaders import TestTransform
    from robustreid.train import imprint_classifiers

    options = TINY_SHUFFLE if name == "robustreid_1x" else {"feat_dim": 16}
    model = build_model(name, tiny_dataset.num_train_pids, **options).train()
    bias = model.classifiers[0].bias
    if bias is not None:  # hacnn's classifiers have biases: non-zero here, so zeroing them is seen
        with torch.no_grad():
            bias.fill_(1.0)
    imprint_classifiers(model, tiny_dataset.train, batch_size=5)
    assert model.training  # its mode restored
    model.eval()
    transform = TestTransform(model.data_config)
    s = model.arch.classifier_norm
    with torch.no_grad():
        outs = [model(transform(Image.open(r.img_path).convert("RGB"))[None]) for r in tiny_dataset.train]
    for k, clf in enumerate(model.classifiers):
        feats = [o[k][0] for o in outs]
        mean_norm = sum(float(f.norm()) for f in feats) / len(feats)
        for pid in range(tiny_dataset.num_train_pids):
            own = [f / f.norm() for f, r in zip(feats, tiny_dataset.train) if r.pid == pid]
            direction = sum(own) / len(own)
            expected = s * direction / direction.norm() / (1.0 if model.arch.l2_norm else mean_norm)
            torch.testing.assert_close(clf.weight[pid], expected, rtol=1e-4, atol=1e-5)
    if name == "hacnn":
        assert all(torch.equal(c.bias, torch.zeros_like(c.bias)) for c in model.classifiers)


def test_imprint_records_spread_over_cameras(tiny_dataset):
    from robustreid.train import imprint_records

    records = tiny_dataset.train  # 6 identities x 2 cameras x 2 images
    chosen = imprint_records(records, 2)
    assert len(chosen) == 12 and imprint_records(records, 0) == imprint_records(records, 4) != chosen
    for pid in range(6):
        own = [r for r in chosen if r.pid == pid]
        assert len(own) == 2 and {r.camid for r in own} == {0, 1}  # the first and last in camera order
    assert imprint_records(list(reversed(records)), 2) == chosen  # the input order does not matter


def test_imprinting_needs_weights_to_start_from(tiny_dataset, tmp_path):
    cfg = apply_overrides(preset("robust-reid-1x"), {"classifier_init": "imprint", "eval_every_epochs": 0})
    with pytest.raises(ValueError, match="classifier_init='imprint' needs weights to start from"):
        fit(cfg, tiny_dataset, tmp_path / "run", show_progress=False, log=lambda line: None,
            check_images=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="classifier_init must be 'random' or 'imprint', got 'mean'"):
        apply_overrides(preset("robust-reid-1x"), {"classifier_init": "mean"})


# ---- the command line --------------------------------------------------------------------------------------


def one_line_error(capsys, said: str) -> None:
    captured = capsys.readouterr()
    assert said in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err


def test_cli_init_of_another_architecture_stops_before_writing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "zoo"
    zoo.pack_checkpoint(model_state(build_model("hacnn", 3)), "hacnn", {}, zoo_dir=folder)
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    out = tmp_path / "run"
    common = ["train", "--preset", "robust-reid-1x", "--dataset", "market1501",
              "--root", str(tmp_path / "data"), "--out", str(out)]
    assert main(common + ["--init", "zoo:hacnn"]) == 2
    one_line_error(capsys, "--init zoo:hacnn is a hacnn (block=inception")
    assert not out.exists()
    assert main(common + ["--init", "zoo:nope"]) == 2
    one_line_error(capsys, "zoo:nope is not a shipped model; shipped: hacnn")
    assert main(["train", "--resume", str(out), "--init", "zoo:hacnn"]) == 2
    one_line_error(capsys, "--init starts a new run from other weights, --resume continues")
    assert not out.exists()


def test_cli_zoo_list_and_show(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "nothing"))
    assert main(["zoo", "list"]) == 0
    assert capsys.readouterr().out.startswith("no models are shipped in ")
    assert main(["zoo", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []

    folder = tmp_path / "zoo"
    zoo.pack_checkpoint(model_state(build_model("hacnn", 3, **TINY)), "hacnn",
                        {"evaluation": {"headline": "demo", "val": {"rank1": 1.0, "mAP": 2.0},
                                        "demo": {"rank1": 61.25, "mAP": 40.5}}}, zoo_dir=folder)
    zoo.pack_checkpoint(model_state(build_model("robustreid_1x", 3, **TINY_SHUFFLE)), "robustreid_1x", {},
                        zoo_dir=folder)
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "architecture", "params", "size", "rank-1", "mAP", "evaluated", "on"]
    card = zoo.load_card("hacnn")
    assert lines[1].split() == ["hacnn", "custom", f"{card['num_params'] / 1e6:.2f}M",
                                f"{card['size_bytes'] / 1e6:.1f}", "MB", "61.2", "40.5", "demo"]
    assert lines[2].split()[:2] == ["robustreid_1x", "custom"] and lines[2].split()[-3:] == ["-", "-", "-"]
    assert main(["zoo", "list", "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["hacnn", "robustreid_1x"]
    assert main(["zoo", "show", "zoo:hacnn"]) == 0 and json.loads(capsys.readouterr().out) == card
    assert main(["zoo", "show", "foo"]) == 2
    one_line_error(capsys, "zoo:foo is not a shipped model; shipped: hacnn, robustreid_1x")


@pytest.mark.parametrize("native", [False, True])
def test_cli_train_warns_once_about_emulated_bfloat16(native, tmp_path, monkeypatch, capsys):
    import robustreid.amp

    monkeypatch.setattr(robustreid.amp, "native_bf16", lambda device: native)
    argv = ["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(tmp_path / "missing"),
            "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main(argv + ["--amp"]) == 2  # stops at the missing dataset, after the warning
    err = capsys.readouterr().err.splitlines()
    warning = ("robustreid train: warning: --amp: this CPU has no native bfloat16 (no AVX-512 BF16 / AMX): "
               "autocast emulates it, ~10x slower than float32 here; drop --amp")
    assert (err[:1] == [warning]) != native and sum("warning" in line for line in err) == (0 if native else 1)
    assert err[-1].startswith("robustreid train: error:")
    assert main(argv) == 2  # without --amp: nothing to warn about
    assert "warning" not in capsys.readouterr().err


def test_cli_demo_passes_only_the_flags_given(monkeypatch, capsys):
    from robustreid import demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.append((out, kw)))
    assert main(["demo", "--out", "d", "--seed", "4"]) == 0
    assert seen.pop() == ("d", {"seed": 4, "amp": None})
    assert main(["demo", "--out", "d", "--checkpoint", "zoo:x", "--baseline", "b.pt", "--finetune-steps", "5",
                 "--from-scratch", "--epochs", "2", "--no-tracking", "--no-amp", "--device", "cpu"]) == 0
    assert seen.pop() == ("d", {"seed": 0, "amp": False, "checkpoint": "zoo:x", "baseline": "b.pt",
                                "finetune_steps": 5, "from_scratch": True, "epochs": 2, "tracking": False,
                                "device": "cpu"})
    assert main(["demo", "--out", "d", "--epochs", "2"]) == 2
    one_line_error(capsys, "--epochs sets the length of a run from scratch: use it with --from-scratch")
    assert not seen


# ---- the model zoo page ----------------------------------------------------------------------------------
def _hand_card(name="tiny", **extra):
    return {"name": name, "arch_name": "robustreid_1x", "num_params": 2_500_000, "size_bytes": 3 * 2**20,
            "sha256": "ab" * 32,
            "data": {"identities": 600, "images": 7065, "cameras": 18, "generator_seeds": [10, 11],
                                         "sets": {"train_s10": {"command": "robustreid synth A --seed 10"}}},
            "training": {"command": "robustreid train --preset robust-reid-1x", "commit": "abc123",
                         "steps": 1750,
                         "epochs": 7, "wall_seconds": 3600, "precision": "float32",
                         "machine": {"cpu": "AMD EPYC", "cores": 2},
                         "curve": [{"epoch": 1, "rank1": 10.0, "mAP": 5.0}]},
            "evaluation": {"demo_mean": {"rank1": 81.25, "rank5": 90.0, "mAP": 70.04},
                           "demo_s0": {"rank1": 80.0, "rank5": 90.0, "mAP": 70.0, "mINP": 40.0,
                                       "command": "robustreid eval --checkpoint X"}, "headline": "demo_mean"},
            **extra}


def test_cards_markdown_renders_each_card_with_its_commands_and_figures():
    from robustreid.zoo import cards_markdown

    text = cards_markdown([_hand_card()])
    row = next(line for line in text.splitlines() if line.startswith("| `zoo:tiny`"))
    assert "2.50 M" in row and "3.0 MB" in row and "1750 (7)" in row and "60 min, AMD EPYC, 2 cores" in row
    assert "81.2 / 70.0" in row and "`abababababab`" in row  # the mean of the demo sets, one decimal
    assert "robustreid synth A --seed 10" in text and "robustreid train --preset robust-reid-1x" in text
    assert "| demo_s0 | 80.0 | 90.0 | 70.0 | 40.0 | `robustreid eval --checkpoint X` |" in text
    assert "epoch 2: 10.0 / 5.0" in text  # curve epochs are 0-based in the log, 1-based on the page
    assert cards_markdown([]) == "No models are shipped yet.\n"


def _with_demo_mean(name, rank1, mAP):
    card = _hand_card(name)
    card["evaluation"] = {**card["evaluation"], "demo_mean": {"rank1": rank1, "rank5": 90.0, "mAP": mAP}}
    return card


def test_table2_ordering_compares_both_figures_of_the_two_cards():
    from robustreid.zoo import table2_ordering

    low, high = _with_demo_mean("hacnn", 50.0, 40.0), _with_demo_mean("robustreid_1x", 60.0, 40.0)
    ahead = table2_ordering([low, high])
    assert ahead["holds"] is True  # a tie on mAP is "at least as good"
    assert ahead["models"] == {"robustreid_1x": {"rank1": 60.0, "mAP": 40.0},
                               "hacnn": {"rank1": 50.0, "mAP": 40.0}}
    mixed = table2_ordering([_with_demo_mean("hacnn", 50.0, 45.0),
                             _with_demo_mean("robustreid_1x", 60.0, 44.9)])
    assert mixed["holds"] is False  # ahead on rank-1, behind on mAP
    assert table2_ordering([_with_demo_mean("robustreid_1x", 60.0, 50.0)]) is None  # one end only


def test_record_table2_ordering_writes_it_into_both_cards_and_only_there(tmp_path):
    import json

    from robustreid.zoo import record_table2_ordering

    extra = {"file": "x.safetensors", "arch": {}, "num_classes": 0, "data_config": {}}
    for name, figures in (("hacnn", (70.0, 60.0)), ("robustreid_1x", (60.0, 50.0)), ("other", (1.0, 1.0))):
        (tmp_path / f"{name}.json").write_text(json.dumps({**_with_demo_mean(name, *figures), **extra}))
    ordering = record_table2_ordering(tmp_path)
    assert ordering["holds"] is False
    for name in ("hacnn", "robustreid_1x"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["table2_ordering"] == ordering
    assert "table2_ordering" not in json.loads((tmp_path / "other.json").read_text())
    (tmp_path / "hacnn.json").unlink()
    assert record_table2_ordering(tmp_path) is None  # one end only: nothing to compare


def test_cards_markdown_says_whether_table2_ordering_holds():
    from robustreid.zoo import cards_markdown

    behind = cards_markdown([_with_demo_mean("hacnn", 74.92, 68.37),
                             _with_demo_mean("robustreid_1x", 60.95, 54.26)])
    assert "`robustreid_1x` 61.0 / 54.3 against `hacnn` 74.9 / 68.4: it does not hold on this data." in behind
    ahead = cards_markdown([_with_demo_mean("hacnn", 50.0, 40.0),
                            _with_demo_mean("robustreid_1x", 60.0, 45.0)])
    assert "`robustreid_1x` 60.0 / 45.0 against `hacnn` 50.0 / 40.0: it holds." in ahead
    assert "Table 2's ordering" not in cards_markdown([_hand_card()])


def test_cards_markdown_adds_the_swag_stage_to_the_steps_time_and_commands():
    from robustreid.zoo import cards_markdown

    swag = {"command": "robustreid swag --from A --out B --cycles 5", "wall_seconds": 1800, "steps": 1530,
            "epochs": 15, "shipped": "swa.pt",
            "table3_train_union_test": {"swa_mean": {"rank1": 61.0, "mAP": 49.04},  # a card's keys are sorted
                                        "start": {"rank1": 58.45, "mAP": 46.48}}}
    text = cards_markdown([_hand_card(swag_stage=swag)])
    row = next(line for line in text.splitlines() if line.startswith("| `zoo:tiny`"))
    assert "1750 (7) + 1530 (15) SWAG" in row and "60 min + 30 min SWAG, AMD EPYC" in row
    lines = text.splitlines()
    assert lines.index("robustreid swag --from A --out B --cycles 5") == \
        lines.index("robustreid train --preset robust-reid-1x") + 1  # in the order they ran
    assert "Shipped: the SWAG stage's `swa.pt`." in text
    assert "(Table 3's rows, rank-1 / mAP): before the stage 58.5 / 46.5, SWA mean 61.0 / 49.0." in text
    assert "SWAG" not in cards_markdown([_hand_card()])


def test_cards_markdown_adds_the_continued_stage_after_the_swag_stage():
    from robustreid.zoo import cards_markdown

    swag = {"command": "robustreid swag --from A --out B", "wall_seconds": 1800, "steps": 1530, "epochs": 15,
            "shipped": "last.pt"}
    continued = {"command": "robustreid train --init B/last.pt --out C", "wall_seconds": 4200, "steps": 1859,
                 "epochs": 11, "shipped": "last.pt", "curve": [{"epoch": 3, "rank1": 51.52, "mAP": 38.67}]}
    text = cards_markdown([_hand_card(swag_stage=swag, continued_stage=continued)])
    row = next(line for line in text.splitlines() if line.startswith("| `zoo:tiny`"))
    assert "1750 (7) + 1530 (15) SWAG + 1859 (11) continued" in row
    assert "60 min + 30 min SWAG + 70 min continued, AMD EPYC" in row
    lines = text.splitlines()
    main_run = lines.index("robustreid train --preset robust-reid-1x")  # the commands in the order they ran
    assert lines.index("robustreid swag --from A --out B") == main_run + 1
    assert lines.index("robustreid train --init B/last.pt --out C") == main_run + 2
    assert "Shipped: the continued stage's `last.pt` (it started from the SWAG stage's `last.pt`)." in text
    assert "Shipped: the SWAG stage's" not in text
    assert "During the continued stage (held-out test of its data, rank-1 / mAP): epoch 4: 51.5 / 38.7." \
        in text
    assert "continued" not in cards_markdown([_hand_card(swag_stage=swag)])


def test_cards_markdown_lists_every_continued_stage_in_the_order_they_ran():
    from robustreid.zoo import cards_markdown

    first = {"command": "robustreid train --init A/last.pt --out B", "wall_seconds": 4200, "steps": 1859,
             "epochs": 11, "shipped": "last.pt", "curve": [{"epoch": 3, "rank1": 51.52, "mAP": 38.67}]}
    second = {"command": "robustreid train --init B/last.pt --out C", "wall_seconds": 3000, "steps": 2040,
              "epochs": 6, "shipped": "last.pt", "curve": [{"epoch": 5, "rank1": 75.04, "mAP": 60.0}]}
    text = cards_markdown([_hand_card(continued_stages=[first, second])])
    row = next(line for line in text.splitlines() if line.startswith("| `zoo:tiny`"))
    assert "1750 (7) + 1859 (11) continued + 2040 (6) continued 2" in row
    assert "60 min + 70 min continued + 50 min continued 2, AMD EPYC" in row
    lines = text.splitlines()
    main_run = lines.index("robustreid train --preset robust-reid-1x")
    assert lines.index("robustreid train --init A/last.pt --out B") == main_run + 1
    assert lines.index("robustreid train --init B/last.pt --out C") == main_run + 2
    assert "Shipped: the continued 2 stage's `last.pt` (it started from the continued stage's `last.pt`)." \
        in text
    curves = "(held-out test of its data, rank-1 / mAP): epoch"
    assert f"During the continued stage {curves} 4: 51.5 / 38.7." in text
    assert f"During the continued 2 stage {curves} 6: 75.0 / 60.0." in text
    # a card of one stage under the old key renders as the same card with a list of one
    assert cards_markdown([_hand_card(continued_stage=first)]) == \
        cards_markdown([_hand_card(continued_stages=[first])])


def test_replace_between_markers_keeps_the_rest_and_refuses_a_page_without_them():
    from robustreid.zoo import MARKERS, replace_between_markers

    begin, end = MARKERS
    page = f"head\n{begin}\nold table\n{end}\ntail\n"
    assert replace_between_markers(page, "new\n") == f"head\n{begin}\nnew\n{end}\ntail\n"
    for broken in ("head\n", f"{end}\n{begin}\n", f"{begin}\n{begin}\n{end}\n"):
        with pytest.raises(ValueError, match="markers"):
            replace_between_markers(broken, "new\n")


def test_the_model_zoo_page_shows_the_shipped_cards():
    # docs/MODEL_ZOO.md's table is the rendering of the cards in the package (make weights rewrites both)
    from pathlib import Path

    from robustreid.zoo import ZOO_DIR, cards_markdown, list_zoo, replace_between_markers

    page = (Path(__file__).resolve().parents[1] / "docs" / "MODEL_ZOO.md").read_text()
    assert replace_between_markers(page, cards_markdown(list_zoo(ZOO_DIR))) == page


def test_cli_imprint_without_init_stops_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "robust-reid-1x", "--dataset", "market1501", "--root", str(tmp_path / "data"),
                 "--out", str(out), "--set", "classifier_init=imprint"]) == 2
    one_line_error(capsys, "classifier_init='imprint' needs weights to start from (--init)")
    assert not out.exists()
