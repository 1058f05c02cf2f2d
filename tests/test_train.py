"""Training end to end on a tiny synthetic set: fit, checkpoints, kill-and-resume equality, NaN stop, DDP, SWAG."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robustreid.checkpoint import load_checkpoint, load_model
from robustreid.cli import main
from robustreid.config import apply_overrides, config_to_dict, preset
from robustreid.datasets import load_dataset
from robustreid.synthetic import write_market1501
from robustreid.losses import ReIDCriterion
from robustreid.train import TrainingDiverged, fit

TINY = {
    "data": {"batch_p": 4, "batch_k": 2, "num_workers": 0, "test_batch_size": 32},
    "schedule": {"epochs": 3, "warmup_epochs": 1, "milestones": [2], "swag_cycles": 0},
    "eval_every_epochs": 0,
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_market1501(root, ids_train=8, ids_test=6, cameras=3, images_per_id_per_cam=2, distractors=4, junk=2)
    return root


@pytest.fixture(scope="module")
def tiny_dataset(tiny_root):
    return load_dataset("market1501", tiny_root)


def tiny_cfg(**overrides):
    return apply_overrides(apply_overrides(preset("robust-reid-1x"), TINY), overrides)


def test_fit_end_to_end(tiny_dataset, tmp_path, capsys):
    cfg = tiny_cfg(eval_every_epochs=1)
    summary = fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    assert set(summary["final"]) >= {"rank1", "mAP", "mINP", "num_query", "num_gallery"}
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert [x["epoch"] for x in train] == [0, 1, 2]
    assert all(x["loss"] > 0 and x["images_per_s"] > 0 for x in train)
    assert len([x for x in lines if x["kind"] == "eval"]) == 3
    # Eq. 1 scaled: epoch 0 warms up from 3e-2 * 1/1 at its end; epoch 2 is past the milestone.
    assert train[2]["lr"] == pytest.approx(3e-3)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 3 and last["config"] == config_to_dict(cfg)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "config.json").read_text()) == config_to_dict(cfg)  # written when the run starts
    model = load_model(tmp_path / "best.pt")
    assert model.num_classes == tiny_dataset.num_train_pids

    # the closing evaluation is of the last weights: evaluate() on last.pt gives the same numbers
    from robustreid.evaluate import evaluate, metrics_summary

    expected = metrics_summary(evaluate(tmp_path / "last.pt", tiny_dataset, num_workers=0))
    assert {k: summary["final"][k] for k in expected} == pytest.approx(expected)
    # `robustreid eval` reports what evaluate() computes; --amp runs the network under bf16 autocast

    for flags, amp in (([], False), (["--amp"], True)):
        assert main(["eval", "--checkpoint", str(tmp_path / "best.pt"), "--dataset", "market1501",
                     "--root", str(tiny_dataset.root), "--json", "--num-workers", "0", *flags]) == 0
        printed = json.loads(capsys.readouterr().out)
        expected = metrics_summary(evaluate(tmp_path / "best.pt", tiny_dataset, num_workers=0, amp=amp))
        assert printed == pytest.approx(expected)


def _cli_train(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "robustreid.cli", "train", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )


def test_kill_and_resume_ends_with_the_same_weights(tiny_root, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    common = ["--preset", "robust-reid-1x", "--dataset", "market1501", "--root", str(tiny_root), "--config", str(config)]

    full = _cli_train(common + ["--out", str(tmp_path / "full")])
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()[-2000:]
    killed = _cli_train(common + ["--out", str(tmp_path / "killed")])
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists() and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # somewhere in epoch 1, or while writing its checkpoint
    killed.wait()
    stopped_at = load_checkpoint(last)["epoch"]
    assert stopped_at < 3, "the run finished before it was killed: nothing was tested"

    resumed = subprocess.run([sys.executable, "-m", "robustreid.cli", "train", "--resume", str(tmp_path / "killed")],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    calls = {"n": 0}
    original = ReIDCriterion.forward

    def forward(self, out, pids):
        calls["n"] += 1
        loss, parts = original(self, out, pids)
        return (loss * float("nan"), parts) if calls["n"] > 6 else (loss, parts)  # epoch 0 has 6 batches

    monkeypatch.setattr(ReIDCriterion, "forward", forward)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1"):
        fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_weights_are_never_saved_and_resume_rewrites_the_log(tiny_dataset, tmp_path, monkeypatch):
    import robustreid.train as train_mod

    cfg = tiny_cfg(**{"schedule.epochs": 2, "schedule.milestones": [], "schedule.warmup_epochs": 0})
    real = train_mod.train_one_epoch

    def poisoned(net, *args, **kwargs):
        stats = real(net, *args, **kwargs)
        if stats["epoch"] == 1:  # a finite loss, but a weight blew up in the last step of the epoch
            with torch.no_grad():
                next(net.parameters()).fill_(float("inf"))
        return stats

    monkeypatch.setattr(train_mod, "train_one_epoch", poisoned)
    with pytest.raises(TrainingDiverged, match="after epoch 1"):
        fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1  # epoch 0's checkpoint, untouched
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # a line the checkpoint does not know (a kill between a log write and the next save) and a killed
    # writer's temporary file: resume drops both
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "epoch": 1}) + "\n")
    (tmp_path / ".tmp-last.pt-999999999-deadbeef").write_bytes(b"half")
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    fit(cfg, tiny_dataset, tmp_path, resume=True, show_progress=False, log=lambda s: None)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "train"] == [0, 1]
    assert not list(tmp_path.glob(".tmp-*"))


def test_unreadable_images_stop_the_run_before_it_starts(tiny_root, tmp_path):
    import shutil

    from robustreid.cli import _one_line

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    bad = sorted((root / "query").glob("*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    dataset = load_dataset("market1501", root)
    with pytest.raises(ValueError, match=f"1 unreadable image.*{bad.name}") as err:
        fit(tiny_cfg(), dataset, tmp_path / "run", show_progress=False, log=lambda s: None)
    assert "\n" not in str(err.value) and not (tmp_path / "run" / "last.pt").exists()
    # an image that breaks during a run (not checked): the DataLoader worker's multi-line error becomes its last line
    worker_error = ValueError(f"Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                              f"last):\n  File \"x.py\", line 1\nValueError: cannot read image '{bad}': truncated\n")
    assert _one_line(worker_error) == f"ValueError: cannot read image '{bad}': truncated"


def test_run_plan_names_every_phase():
    from robustreid.train import run_plan

    cfg = preset("robust-reid-1x")
    cfg = apply_overrides(cfg, {"schedule": dataclasses.asdict(cfg.schedule.scaled(3))})
    plan = run_plan(cfg, 44)
    assert plan.startswith("plan: 3 epochs x 44 iterations (lr 0.03, warmup 2 epochs, x0.1 after 2 epochs)")
    assert "SWAG: 2 cycles x 2 epochs, 10 BMA samples" in plan and plan.endswith("308 SGD steps in all")  # (3 + 2 * 2) * 44
    plain = run_plan(apply_overrides(cfg, {"schedule.swag_cycles": 0, "eval_every_epochs": 0}), 10)
    assert "SWAG" not in plain and "evaluation" not in plain and plain.endswith("30 SGD steps in all")


def test_a_gallery_that_cannot_be_scored_stops_the_run_before_it_starts(tiny_dataset, tmp_path):
    one_camera = dataclasses.replace(tiny_dataset, gallery=[r for r in tiny_dataset.gallery if r.camid == 0],
                                     query=[r for r in tiny_dataset.query if r.camid == 0])
    with pytest.raises(ValueError, match=r"no query has a true match .* \(cameras \[0\]\)"):
        fit(tiny_cfg(), one_camera, tmp_path, show_progress=False, log=lambda s: None)
    assert not (tmp_path / "last.pt").exists()
    fit(tiny_cfg(**{"schedule.epochs": 1, "schedule.milestones": [], "schedule.warmup_epochs": 0}), one_camera,
        tmp_path, show_progress=False, log=lambda s: None, final_eval=False)  # no evaluation planned: it trains


def test_resume_refuses_another_config(tiny_dataset, tmp_path):
    cfg = tiny_cfg(**{"schedule.epochs": 1, "schedule.milestones": [], "schedule.warmup_epochs": 0})
    fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    other = dataclasses.replace(cfg, seed=1)
    with pytest.raises(ValueError, match="another config"):
        fit(other, tiny_dataset, tmp_path, resume=True, show_progress=False, log=lambda s: None)


def test_cli_train_protects_an_existing_run(tiny_root, tmp_path, capsys):
    from robustreid.checkpoint import model_state, save_checkpoint
    from robustreid.model import build_model

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "schedule": {"epochs": 1, "warmup_epochs": 0, "milestones": [], "swag_cycles": 0}}))
    run = tmp_path / "run"
    run.mkdir()
    three = build_model("hacnn", 3)  # a run on another dataset (3 identities; the tiny set has 8)
    save_checkpoint({**model_state(three), "epoch": 1, "config": config_to_dict(preset("hacnn"))}, run / "last.pt")
    (run / "metrics.jsonl").write_text('{"kind": "train", "epoch": 0}\n')
    (run / "dataset.json").write_text('{"name": "market1501", "root": "/elsewhere"}')
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    common = ["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(tiny_root), "--config", str(config)]

    def refused(argv, said):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
        assert {f.name: f.read_bytes() for f in run.iterdir()} == before  # nothing touched

    refused(common + ["--out", str(run)], "already holds a run (last.pt, metrics.jsonl)")
    refused(["train", "--resume", str(run), "--epochs", "5"], "--epochs cannot change it")
    refused(["train", "--resume", str(run), "--set", "seed=3"], "--set cannot change it")
    refused(["train", "--resume", str(run), "--dataset", "market1501", "--root", str(tiny_root)],
            "trained on 3 identities")
    (tmp_path / "file").write_text("x")
    refused(common + ["--out", str(tmp_path / "file")], "is a file")
    # --overwrite starts over: a fresh metrics.jsonl with one epoch, the old lines gone
    assert main(common + ["--out", str(run), "--overwrite"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "train"] == [0]
    assert load_checkpoint(run / "last.pt")["num_classes"] == 8


def test_swag_stage_on_a_finished_run(tiny_root, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "schedule": {**TINY["schedule"], "epochs": 1, "milestones": [],
                                                       "warmup_epochs": 0}}))
    run, run2 = tmp_path / "run", tmp_path / "run2"
    assert main(["train", "--preset", "robust-reid-1x", "--dataset", "market1501", "--root", str(tiny_root),
                 "--out", str(run), "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["swag", "--from", str(run), "--out", str(run2), "--cycles", "2", "--cycle-epochs", "2",
                 "--set", "swag_bma_samples=2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"start", "sgd_last", "swa_mean", "bma", "final"} <= set(summary)
    # the stage starts from the finished run's weights: the same evaluation as that run's final one
    finished = json.loads((run / "summary.json").read_text())["final"]
    assert summary["start"]["mAP"] == pytest.approx(finished["mAP"], abs=1e-6)
    state = load_checkpoint(run2 / "last.pt")
    assert state["epoch"] == 1 + 2 * 2
    assert state["swag"]["n_models"] == 2
    log = [json.loads(x) for x in (run2 / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log if x["kind"] == "train"] == [1, 2, 3, 4]
    assert [x.get("swag_snapshots") for x in log if x["kind"] == "train"] == [None, 1, None, 2]


def test_torchrun_two_cpu_processes(tiny_root, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "schedule": {**TINY["schedule"], "epochs": 1, "milestones": [],
                                                       "warmup_epochs": 0}}))
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "robustreid.cli",
         "train", "--preset", "robust-reid-1x", "--dataset", "market1501", "--root", str(tiny_root),
         "--out", str(out), "--config", str(config), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1
    # 8 identities, 2 ranks x P=4: one global batch of 8 ids per step, 3 steps, 16 images per rank per step.
    train = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert len(train) == 1


def test_a_grad_scaler_step_equals_the_plain_step(tiny_dataset):
    # The float16 path (CUDA without bfloat16) scales the loss by a power of two and unscales the gradients
    # before the step: in float32 that is exact, so one epoch with the scaler ends with the plain epoch's weights.
    from robustreid.loaders import build_train_loader
    from robustreid.model import build_model
    from robustreid.train import train_one_epoch

    cfg = tiny_cfg()
    weights = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = build_model(cfg.model, tiny_dataset.num_train_pids)
        loader = build_train_loader(tiny_dataset.train, model.data_config, 4, 2, num_workers=0, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        criterion = ReIDCriterion(cfg.loss, tiny_dataset.num_train_pids)
        train_one_epoch(model, loader, optimizer, criterion, 1, cfg, torch.device("cpu"), False, scaler)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_amp_dtype_per_device():
    from robustreid.amp import autocast_dtype, native_bf16, needs_grad_scaler

    assert autocast_dtype("cpu") == torch.bfloat16 and not needs_grad_scaler("cpu")
    assert isinstance(native_bf16("cpu"), bool) and native_bf16("meta") is False
    if torch.cuda.is_available():
        assert needs_grad_scaler("cuda") == (not torch.cuda.is_bf16_supported())


# ---- balanced init (train.balance_init) ---------------------------------------------------------------------


def _plain_net(widths=(3, 8, 8, 8), num_classes=5):
    from torch import nn

    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Sequential(nn.Linear(widths[-1], 6), nn.BatchNorm1d(6)), nn.Linear(6, num_classes))


def test_scale_invariant_layers_are_the_ones_followed_by_batchnorm():
    from torch import nn

    from robustreid.model import build_model
    from robustreid.train import scale_invariant_layers

    net = _plain_net()
    found = scale_invariant_layers(net)
    assert found == [net[0], net[3], net[6], net[11][0]]  # three convolutions and the head's Linear, not the classifier
    model = build_model("robustreid_1x", 7)
    found = scale_invariant_layers(model)
    assert sum(isinstance(m, nn.Conv2d) for m in found) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert all(clf not in found for clf in model.classifiers)


def test_balance_init_caps_every_relative_update_and_keeps_the_function():
    """Against a hand-computed reference: after the rescaling, one SGD step at lr moves no scale-invariant layer by
    more than ``target`` of its norm (the fast ones by exactly ``target``), slower layers are untouched, and the
    network's output (train mode, batch statistics) is the same up to BatchNorm's eps."""
    import torch.nn.functional as F

    from robustreid.train import balance_init, scale_invariant_layers

    torch.manual_seed(0)
    net = _plain_net().train()
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 5, (16,))
    layers = scale_invariant_layers(net)
    lr = 0.1

    def relative_updates():
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        return [lr * float(m.weight.grad.norm() / m.weight.detach().norm()) for m in layers]

    before_r, before_out = relative_updates(), net(x).detach()
    norms = [float(m.weight.norm()) for m in layers]
    target = sorted(before_r)[1]  # between the slowest layer and the rest
    scales = balance_init(net, lambda: F.cross_entropy(net(x), y), lr, target)
    assert all(m.weight.grad is None for m in layers)  # no gradient left behind for the first optimiser step
    after_r = relative_updates()
    for r0, r1, s, n0, m in zip(before_r, after_r, scales, norms, layers):
        assert s == pytest.approx(max(1.0, (r0 / target) ** 0.5))
        assert float(m.weight.norm()) == pytest.approx(n0 * s, rel=1e-5)
        assert r1 == pytest.approx(min(r0, target), rel=1e-3)
    assert torch.allclose(net(x), before_out, atol=1e-3)


def test_fit_balances_a_fresh_run_only(tiny_dataset, tmp_path, monkeypatch):
    import robustreid.train as train

    calls = []
    real = train.balance_init
    monkeypatch.setattr(train, "balance_init", lambda *a, **k: calls.append(a[2:]) or real(*a, **k))
    cfg = tiny_cfg(init_relative_update=1e-2, schedule={"epochs": 1, "warmup_epochs": 0, "milestones": []})
    fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None, final_eval=False)
    assert calls == [(cfg.schedule.base_lr, 1e-2)]
    with pytest.raises(ValueError, match="init_relative_update"):
        tiny_cfg(init_relative_update=-1)
