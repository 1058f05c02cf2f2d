"""Training end to end on a tiny synthetic set: fit, checkpoints, kill-and-resume equality, NaN stop, DDP, SWAG.

The tests that train are marked ``slow``: ``pytest -m "not slow"`` leaves them out."""

import collections
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


def _slow_scores(checkpoint, dataset) -> dict:
    """Rank-1, mAP and mINP in percent, Market1501 protocol, one query at a time: squared Euclidean distances to
    the gallery without the query's own camera view of its identity (same pid and same camid), closest first."""
    from robustreid.evaluate import extract_features

    feats, pids, cams = extract_features(checkpoint, [*dataset.query, *dataset.gallery], batch_size=32,
                                         num_workers=0, device="cpu")
    nq = len(dataset.query)
    q, q_pids, q_cams, g, g_pids, g_cams = feats[:nq], pids[:nq], cams[:nq], feats[nq:], pids[nq:], cams[nq:]
    top1, aps, inps = [], [], []
    for i in range(len(q)):
        keep = [j for j in range(len(g)) if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        dist = [float(((q[i].double() - g[j].double()) ** 2).sum()) for j in keep]
        order = sorted(range(len(keep)), key=lambda k: dist[k])
        matches = [g_pids[keep[k]] == q_pids[i] for k in order]
        if not any(matches):
            continue  # a query without a true match is not scored
        hits = [pos + 1 for pos, m in enumerate(matches) if m]  # 1-based ranks of the true matches
        top1.append(float(matches[0]))
        aps.append(sum((n + 1) / rank for n, rank in enumerate(hits)) / len(hits))
        inps.append(len(hits) / hits[-1])
    assert top1, "no query has a true match: nothing to compare"
    return {k: 100 * sum(v) / len(v) for k, v in (("rank1", top1), ("mAP", aps), ("mINP", inps))}


@pytest.mark.slow
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
    # and those numbers are the Market1501 metrics of last.pt's descriptors, computed here by a plain loop
    # (independent of robustreid.metrics, whose ranking is a histogram method)
    for key, value in _slow_scores(tmp_path / "last.pt", tiny_dataset).items():
        assert summary["final"][key] == pytest.approx(value, abs=1e-4), key
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_diverged_iterate_at_a_swag_cycle_end_never_enters_the_swag_moments(tiny_dataset, tmp_path, monkeypatch):
    import robustreid.train as train_mod
    from robustreid.swag import SWAG

    cfg = tiny_cfg(**{"schedule.epochs": 1, "schedule.milestones": [], "schedule.warmup_epochs": 0,
                      "schedule.swag_cycles": 2, "schedule.swag_cycle_epochs": 2, "swag_bma_samples": 0})
    real, real_collect = train_mod.train_one_epoch, SWAG.collect
    collected = []

    def poisoned(net, *args, **kwargs):
        stats = real(net, *args, **kwargs)
        if stats["epoch"] == 4:  # the second SWAG cycle's last epoch: its iterate blew up
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
        return stats

    def spy(self, model):
        collected.append(all(torch.isfinite(p).all() for p in model.parameters()))
        return real_collect(self, model)

    monkeypatch.setattr(train_mod, "train_one_epoch", poisoned)
    monkeypatch.setattr(SWAG, "collect", spy)
    with pytest.raises(TrainingDiverged, match="after epoch 4"):
        fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    assert collected == [True]  # the first cycle's finite snapshot only
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 4 and state["swag"]["n_models"] == 1


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



def test_time_left_at_the_pace_of_the_epochs_done():
    from robustreid.train import time_left

    # 2 epochs in 600 s -> 5 min per epoch; 3 to go -> 15 min
    assert time_left(600.0, 2, 3) == "3 epoch(s) to go: ~15.0 min at 5.0 min / epoch"


def test_train_step_is_one_sgd_step_and_refuses_a_non_finite_loss():
    from torch import nn

    from robustreid.train import TrainingDiverged, train_step

    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    x = torch.randn(4, 3)
    w0 = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=123.0)  # the step's lr replaces the optimiser's
    loss, parts = train_step(model, x, torch.zeros(4), optimizer, lambda out, _: (out.sum(), {"sum": 1.0}), 0.1)
    # d(sum(x w^T))/dw = sum of the rows of x: plain SGD moves w by -lr times that
    assert torch.allclose(model.weight.detach(), w0 - 0.1 * x.sum(0, keepdim=True))
    assert loss.item() == pytest.approx(float((x @ w0.T).sum())) and parts == {"sum": 1.0}
    w1 = model.weight.detach().clone()
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train_step(model, x, torch.zeros(4), optimizer, lambda out, _: (out.sum() * float("nan"), {}), 0.1)
    assert torch.equal(model.weight.detach(), w1)  # nothing moved

@pytest.mark.slow
def test_a_gallery_that_cannot_be_scored_stops_the_run_before_it_starts(tiny_dataset, tmp_path):
    one_camera = dataclasses.replace(tiny_dataset, gallery=[r for r in tiny_dataset.gallery if r.camid == 0],
                                     query=[r for r in tiny_dataset.query if r.camid == 0])
    with pytest.raises(ValueError, match=r"no query has a true match .* \(cameras \[0\]\)"):
        fit(tiny_cfg(), one_camera, tmp_path, show_progress=False, log=lambda s: None)
    assert not (tmp_path / "last.pt").exists()
    fit(tiny_cfg(**{"schedule.epochs": 1, "schedule.milestones": [], "schedule.warmup_epochs": 0}), one_camera,
        tmp_path, show_progress=False, log=lambda s: None, final_eval=False)  # no evaluation planned: it trains


@pytest.mark.slow
def test_resume_refuses_another_config(tiny_dataset, tmp_path):
    cfg = tiny_cfg(**{"schedule.epochs": 1, "schedule.milestones": [], "schedule.warmup_epochs": 0})
    fit(cfg, tiny_dataset, tmp_path, show_progress=False, log=lambda s: None)
    other = dataclasses.replace(cfg, seed=1)
    with pytest.raises(ValueError, match="another config"):
        fit(other, tiny_dataset, tmp_path, resume=True, show_progress=False, log=lambda s: None)


@pytest.mark.slow
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


@pytest.mark.slow
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


# Run under torchrun in place of `python -m robustreid.cli`: the same CLI, with the library's own train_one_epoch
# wrapped so that each rank records the image paths of every batch it trained on and its parameters before and after
# the epoch (fit keeps no per-rank weights: only rank 0 writes checkpoints).
_DDP_RECORDER = """
import os, sys
import torch
import robustreid.train as train
from robustreid.cli import main

rank, record_dir, real, steps = int(os.environ["RANK"]), sys.argv[1], train.train_one_epoch, []


class Recorder:
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # sampler, batch_size, ...
        return getattr(self._loader, name)

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            steps.append([str(p) for p in batch[3]])
            yield batch


def params(net):
    return {n: p.detach().clone() for n, p in getattr(net, "module", net).named_parameters()}


def recording(net, loader, *args, **kwargs):
    before = params(net)
    stats = real(net, Recorder(loader), *args, **kwargs)
    torch.save({"before": before, "after": params(net), "steps": steps}, os.path.join(record_dir, f"rank{rank}.pt"))
    return stats


train.train_one_epoch = recording
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_root, tiny_dataset, tmp_path):
    """Two gloo ranks for one epoch: both end with the same parameters (and rank 0 saves them), and they trained on
    disjoint images. A single-process run with the global batch of 16 is no exact reference: DDP averages the
    gradients of two 8-image losses (triplets mined and BatchNorm statistics taken within each rank's 8 images),
    which is not the gradient of one 16-image loss; so the test checks the synchronisation itself."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "schedule": {**TINY["schedule"], "epochs": 1, "milestones": [],
                                                       "warmup_epochs": 0}}))
    script, records, out = tmp_path / "ddp_recorder.py", tmp_path / "records", tmp_path / "ddp"
    script.write_text(_DDP_RECORDER)
    records.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(records),
         "train", "--preset", "robust-reid-1x", "--dataset", "market1501", "--root", str(tiny_root),
         "--out", str(out), "--config", str(config), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1
    train = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert len(train) == 1
    r0, r1 = (torch.load(records / f"rank{r}.pt") for r in (0, 1))

    # Weights: DDP broadcasts rank 0's at the start and all-reduces every gradient, so the ranks take identical
    # steps. The epoch must have moved the weights (else equality would prove nothing); SGD with weight decay
    # moves every non-zero parameter, so nearly all of them. Parameters only: BatchNorm running statistics
    # are not all-reduced (each rank updates rank 0's broadcast copy with its own batch) and legitimately differ.
    assert r0["after"].keys() == r1["after"].keys() == r0["before"].keys()
    for name in r0["before"]:
        assert torch.equal(r0["before"][name], r1["before"][name]), name
        assert torch.equal(r0["after"][name], r1["after"][name]), f"{name}: the ranks' weights diverged"
        assert torch.equal(state["model"][name], r0["after"][name]), f"{name}: last.pt is not the trained weights"
    moved = [n for n in r0["before"] if not torch.equal(r0["before"][n], r0["after"][n])]
    assert len(moved) >= 0.9 * len(r0["before"]), "the epoch barely changed the weights"

    # Samples. PKSampler cuts each identity's shuffled images into chunks of K = 2 and every global step takes one
    # chunk of P * world = 8 distinct identities, rank r those at [r * P, (r + 1) * P): so in a step the ranks never
    # share an identity. On this set every identity has an even number of images (no chunk is topped up with
    # repeats: the chunks partition the images) and at least as many chunks as there are steps (no identity runs
    # out, so no fresh random chunk): each image is then used at most once in the epoch, by one rank only.
    pid_of = {str(r.img_path): r.pid for r in tiny_dataset.train}
    per_id = collections.Counter(pid_of.values())
    assert len(per_id) == 8 and all(n % 2 == 0 for n in per_id.values())
    num_steps = sum(n // 2 for n in per_id.values()) // 8
    assert min(n // 2 for n in per_id.values()) >= num_steps >= 2
    assert len(r0["steps"]) == len(r1["steps"]) == num_steps
    for step0, step1 in zip(r0["steps"], r1["steps"]):
        ids0, ids1 = [pid_of[p] for p in step0], [pid_of[p] for p in step1]
        assert len(step0) == len(step1) == 8 and len(set(ids0)) == len(set(ids1)) == 4  # P x K each
        assert not set(ids0) & set(ids1), "the ranks shared an identity in one step"
        assert set(ids0) | set(ids1) == set(per_id)  # 8 identities in all: one chunk of each
    seen0, seen1 = [p for step in r0["steps"] for p in step], [p for step in r1["steps"] for p in step]
    assert not set(seen0) & set(seen1), "the ranks trained on the same image"
    assert len(set(seen0 + seen1)) == len(seen0 + seen1) == 16 * num_steps  # and no image twice


class SpyScaler(torch.amp.GradScaler):
    """A real grad scaler that records which of its methods ran, in order (and the optimizer it stepped)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.stepped = [], []

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        self.stepped.append(optimizer)
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append("update")
        return super().update(new_scale)


def test_setup_builds_a_grad_scaler_for_float16_amp_only(tiny_dataset, monkeypatch):
    from robustreid import train

    cpu = torch.device("cpu")
    assert train._setup(tiny_cfg(amp=True), tiny_dataset, cpu, 0, 1)[-1] is None  # bfloat16 on a CPU: none
    # float16 autocast (CUDA without bfloat16), simulated: a scaler with --amp, none without
    for amp, fp16, built in ((True, True, True), (False, True, False), (True, False, False)):
        monkeypatch.setattr(train, "needs_grad_scaler", lambda dev, fp16=fp16: fp16)
        scaler = train._setup(tiny_cfg(amp=amp), tiny_dataset, cpu, 0, 1)[-1]
        assert isinstance(scaler, torch.amp.GradScaler) is built, (amp, fp16)


def test_fit_trains_with_the_grad_scaler_it_built(tiny_dataset, tmp_path, monkeypatch):
    from robustreid import train

    class Stop(Exception):
        pass

    received = []

    def first_epoch(*args, **kwargs):  # train_one_epoch's last positional argument is the scaler
        received.append(args[-1])
        raise Stop

    monkeypatch.setattr(train, "train_one_epoch", first_epoch)
    for fp16 in (True, False):
        monkeypatch.setattr(train, "needs_grad_scaler", lambda dev, fp16=fp16: fp16)
        with pytest.raises(Stop):
            fit(tiny_cfg(amp=True, init_relative_update=0.0), tiny_dataset, tmp_path / str(fp16), device="cpu",
                show_progress=False, log=lambda s: None, check_images=False, final_eval=False)
    assert isinstance(received[0], torch.amp.GradScaler) and received[1] is None


def test_classifier_lr_factor_scales_only_the_classifiers_step():
    """Plain SGD (no momentum, no decay): the classifiers move factor times as far as with factor 1, every
    other weight exactly as far; factor 1 keeps one group. Refused at <= 0."""
    from robustreid.config import LossConfig, OptimConfig
    from robustreid.model import build_model
    from robustreid.train import param_groups, train_step

    torch.manual_seed(0)
    imgs, pids = torch.randn(8, 3, 64, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    moves = []
    for factor in (1.0, 10.0):
        torch.manual_seed(1)
        model = build_model("hacnn", 4, stem_channels=8, stage_channels=(16, 16, 16), stage_repeats=(1, 1, 1),
                            feat_dim=16, input_size=(64, 32)).train()
        groups = param_groups(model, factor)
        assert len(groups) == (1 if factor == 1.0 else 2)
        optimizer = torch.optim.SGD(groups, lr=0.1)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        train_step(model, imgs, pids, optimizer, ReIDCriterion(LossConfig(), 4), 0.05, None)
        moves.append({n: p.detach() - start[n] for n, p in model.named_parameters()})
    heads = [n for n in moves[0] if n.startswith("classifiers.")]
    assert heads and all(moves[0][n].abs().sum() > 0 for n in heads)
    for n in moves[0]:
        expected = moves[0][n] * (10.0 if n in heads else 1.0)
        torch.testing.assert_close(moves[1][n], expected, rtol=1e-4, atol=1e-7)
    for bad in (0.0, float("inf")):
        with pytest.raises(ValueError, match="classifier_lr_factor must be > 0"):
            OptimConfig(classifier_lr_factor=bad)


def test_train_step_runs_backward_and_step_through_the_scaler():
    # float16's path (scale, step, update), run in float32 on the CPU: a power-of-two scale that the step
    # divides out again is exact, so the weights equal those of the plain step
    from robustreid.config import LossConfig
    from robustreid.model import build_model
    from robustreid.train import train_step

    torch.manual_seed(0)
    imgs, pids = torch.randn(8, 3, 64, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    weights, scalers = [], [None, SpyScaler("cpu", init_scale=2.0**12)]
    for scaler in scalers:
        torch.manual_seed(1)
        model = build_model("hacnn", 4, stem_channels=8, stage_channels=(16, 16, 16), stage_repeats=(1, 1, 1),
                            feat_dim=16, input_size=(64, 32)).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        start = [p.detach().clone() for p in model.parameters()]
        train_step(model, imgs, pids, optimizer, ReIDCriterion(LossConfig(), 4), 0.1, None, scaler)
        assert any(not torch.equal(a, p) for a, p in zip(start, model.parameters()))  # a step was taken
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert scalers[1].calls == ["scale", "step", "update"] and scalers[1].stepped == [optimizer]
    assert torch.equal(weights[0], weights[1])


@pytest.mark.slow
def test_a_grad_scaler_step_equals_the_plain_step(tiny_dataset):
    # The float16 path (CUDA without bfloat16) scales the loss by a power of two and unscales the gradients
    # before the step: in float32 that is exact, so one epoch with the scaler ends with the plain epoch's weights.
    # The spy shows the scaler really stepped every iteration (equal weights alone would not: an ignored scaler
    # gives them too).
    from robustreid.loaders import build_train_loader
    from robustreid.model import build_model
    from robustreid.train import train_one_epoch

    cfg = tiny_cfg()
    weights = []
    for scaler in (None, SpyScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = build_model(cfg.model, tiny_dataset.num_train_pids)
        loader = build_train_loader(tiny_dataset.train, model.data_config, 4, 2, num_workers=0, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        criterion = ReIDCriterion(cfg.loss, tiny_dataset.num_train_pids)
        train_one_epoch(model, loader, optimizer, criterion, 1, cfg, torch.device("cpu"), False, scaler)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert len(loader) >= 2 and scaler.calls == ["scale", "step", "update"] * len(loader)
    assert torch.equal(weights[0], weights[1])


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
    norms = [float(m.weight.detach().norm()) for m in layers]
    target = sorted(before_r)[1]  # between the slowest layer and the rest
    scales = balance_init(net, lambda: F.cross_entropy(net(x), y), lr, target)
    assert all(m.weight.grad is None for m in layers)  # no gradient left behind for the first optimiser step
    after_r = relative_updates()
    for r0, r1, s, n0, m in zip(before_r, after_r, scales, norms, layers):
        assert s == pytest.approx(max(1.0, (r0 / target) ** 0.5))
        assert float(m.weight.detach().norm()) == pytest.approx(n0 * s, rel=1e-5)
        assert r1 == pytest.approx(min(r0, target), rel=1e-3)
    assert torch.allclose(net(x), before_out, atol=1e-3)


@pytest.mark.slow
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


@pytest.mark.slow
def test_freeze_bn_trains_the_weights_and_keeps_every_batchnorm_statistic(tiny_dataset, tmp_path):
    from torch import nn

    from robustreid.model import build_model

    def bn_stats(state):
        return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}

    torch.manual_seed(0)
    start = build_model("robustreid_1x", tiny_dataset.num_train_pids).state_dict()
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in build_model("robustreid_1x", 3).modules())
    assert len(bn_stats(start)) == 3 * n_bn > 0
    schedule = {"epochs": 1, "warmup_epochs": 0, "milestones": []}
    for freeze in (True, False):
        out = tmp_path / f"freeze_{freeze}"
        pretrained = {"model": start, "arch": build_model("robustreid_1x", 3).arch.to_dict()}
        fit(tiny_cfg(freeze_bn=freeze, schedule=schedule), tiny_dataset, out, show_progress=False,
            final_eval=False, pretrained=pretrained)
        state = load_checkpoint(out / "last.pt")["model"]
        moved = {k for k, v in bn_stats(state).items() if not torch.equal(v, start[k])}
        conv = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
        assert not torch.equal(state[conv], start[conv])  # the weights trained either way
        if freeze:
            assert moved == set()  # eval-mode BatchNorm: running statistics used, never updated
        else:
            assert len(moved) == len(bn_stats(start))  # train mode: every statistic follows the batches
