"""SWA / SWAG: moments against torch.stack references, sample covariance against the hand-derived Gaussian,
BN refresh against hand-computed batch statistics, checkpoint round trip, model averaging, clear errors."""

from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreid.model import build_model
from robustreid.swag import SWAG, bma_embed, update_bn


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def _collect_perturbed(swag: SWAG, model: nn.Module, n: int, seed: int, std: float = 0.1) -> list:
    """Collect ``n`` random perturbations of the model's weights; returns them flattened (float64)."""
    gen = torch.Generator().manual_seed(seed)
    base = [p.detach().clone() for p in model.parameters()]
    snapshots = []
    for _ in range(n):
        with torch.no_grad():
            for p, b in zip(model.parameters(), base):
                p.copy_(b + std * torch.randn(b.shape, generator=gen))
        swag.collect(model)
        snapshots.append(_flat(model))
    return snapshots


# -- moments -------------------------------------------------------------------------------------------------


def test_swa_mean_is_arithmetic_mean_of_snapshots():
    model = _tiny()
    swag = SWAG(model)
    snapshots = _collect_perturbed(swag, model, 4, seed=1)
    expected = torch.stack(snapshots).mean(0)
    assert swag.n_models == 4 and swag.mean.dtype == torch.float64
    torch.testing.assert_close(swag.mean, expected, rtol=0, atol=1e-12)
    swag.mean_into(model)
    for p, ref in zip(model.parameters(), torch.split(expected, [p.numel() for p in model.parameters()])):
        torch.testing.assert_close(p.detach(), ref.float().view(p.shape), rtol=0, atol=0)


def test_diagonal_variance_is_population_variance():
    model = _tiny()
    swag = SWAG(model)
    snapshots = _collect_perturbed(swag, model, 5, seed=2)
    expected = torch.stack(snapshots).var(0, unbiased=False)
    torch.testing.assert_close(swag.variance, expected, rtol=1e-9, atol=1e-14)
    # Identical snapshots: zero variance, never negative despite rounding in sq_mean - mean^2.
    same = SWAG(model)
    for _ in range(3):
        same.collect(model)
    assert (same.variance >= 0).all() and same.variance.max() < 1e-15


def test_float32_moments_option():
    model = _tiny()
    swag = SWAG(model, dtype=torch.float32)
    snapshots = _collect_perturbed(swag, model, 3, seed=3)
    assert swag.mean.dtype == torch.float32
    torch.testing.assert_close(swag.mean.double(), torch.stack(snapshots).mean(0), rtol=0, atol=1e-6)


def test_deviations_are_last_k_deviations_from_running_mean():
    model = _tiny()
    swag = SWAG(model, max_rank=3)
    snapshots = _collect_perturbed(swag, model, 2, seed=4)
    # Maddox et al.: D_i = theta_i - mean of theta_1..theta_i (the running mean including theta_i).
    running = [s - torch.stack(snapshots[: i + 1]).mean(0) for i, s in enumerate(snapshots)]
    assert swag.rank == 2 and swag.deviations.shape == (2, swag.num_params)
    torch.testing.assert_close(swag.deviations.double(), torch.stack(running), rtol=0, atol=1e-6)
    assert torch.equal(swag.deviations[0], torch.zeros(swag.num_params))  # first snapshot is its own mean

    snapshots += _collect_perturbed(swag, model, 3, seed=5)  # 5 collected, buffer of 3 wrapped around
    running = [s - torch.stack(snapshots[: i + 1]).mean(0) for i, s in enumerate(snapshots)]
    assert swag.n_models == 5 and swag.rank == 3
    torch.testing.assert_close(swag.deviations.double(), torch.stack(running[2:]), rtol=0, atol=1e-6)


# -- sampling ------------------------------------------------------------------------------------------------


def test_sample_with_scale_zero_is_the_mean_exactly():
    model = _tiny()
    swag = SWAG(model, max_rank=3)
    _collect_perturbed(swag, model, 4, seed=6)
    assert torch.equal(swag.sample(0.0, torch.Generator().manual_seed(0)), swag.mean)
    swag.sample_into(model, scale=0)
    sampled = _flat(model)
    swag.mean_into(model)
    assert torch.equal(sampled, _flat(model))


def test_single_snapshot_samples_the_mean():
    model = _tiny()
    swag = SWAG(model, max_rank=4)
    swag.collect(model)  # K_eff = 1: zero variance and a zero deviation, no division by K_eff - 1 = 0
    assert torch.equal(swag.sample(1.0, torch.Generator().manual_seed(0)), swag.mean)


def _empirical_cov_ok(samples, mean, cov, sigmas: float = 5.0) -> bool:
    """Every entry of the sample covariance (about the known mean) within ``sigmas`` standard errors of cov.

    For a Gaussian, the product (x_i - m_i)(x_j - m_j) has variance cov_ii cov_jj + cov_ij^2.
    """
    centred = samples - mean
    empirical = centred.T @ centred / len(samples)
    std_err = ((torch.outer(cov.diag(), cov.diag()) + cov**2) / len(samples)).sqrt()
    return bool(((empirical - cov).abs() <= sigmas * std_err + 1e-15).all())


def _draw(swag: SWAG, n: int, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([swag.sample(scale, gen) for _ in range(n)])


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_diagonal_samples_have_the_diagonal_variance(scale):
    model = nn.Linear(2, 2)
    swag = SWAG(model, max_rank=0)
    snapshots = _collect_perturbed(swag, model, 4, seed=7)
    assert swag.rank == 0 and swag.deviations.shape == (0, swag.num_params)
    var = torch.stack(snapshots).var(0, unbiased=False)
    samples = _draw(swag, 20000, scale, seed=8)
    # Hand-derived: theta = mean + sqrt(scale) sqrt(var) z1 -> N(mean, scale * diag(var)).
    assert _empirical_cov_ok(samples, swag.mean, scale * torch.diag(var))
    assert not _empirical_cov_ok(samples, swag.mean, 2 * scale * torch.diag(var))  # the check has power


@pytest.mark.parametrize("max_rank, n_collected", [(5, 3), (2, 4)])
def test_low_rank_samples_have_the_swag_covariance(max_rank, n_collected):
    model = nn.Linear(2, 2)
    swag = SWAG(model, max_rank=max_rank)
    snapshots = _collect_perturbed(swag, model, n_collected, seed=9)
    stack = torch.stack(snapshots)
    var = stack.var(0, unbiased=False)
    k = min(n_collected, max_rank)
    dev = torch.stack([stack[i] - stack[: i + 1].mean(0) for i in range(n_collected)])[-k:]
    scale = 0.5
    # Maddox et al. Section 3: Cov = scale * (diag(var) + D^T D / (K_eff - 1)), K_eff = deviations held.
    cov = scale * (torch.diag(var) + dev.T @ dev / (k - 1))
    samples = _draw(swag, 20000, scale, seed=10)
    assert _empirical_cov_ok(samples, swag.mean, cov)
    assert not _empirical_cov_ok(samples, swag.mean, scale * torch.diag(var))  # low-rank term is present
    if max_rank > n_collected:  # dividing by the maximum rank instead of the count held is detected
        wrong = scale * (torch.diag(var) + dev.T @ dev / (max_rank - 1))
        assert not _empirical_cov_ok(samples, swag.mean, wrong)


# -- BatchNorm refresh ---------------------------------------------------------------------------------------


class _Out(NamedTuple):
    feat: torch.Tensor
    logits: torch.Tensor


class _BNNet(nn.Module):
    """A single BatchNorm layer returning a NamedTuple, like ReIDNet's ReIDOutput."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3, momentum=0.3)

    def forward(self, x):
        y = self.bn(x)
        return _Out(y, y.mean((2, 3)))


def _image_batches(n: int, seed: int = 0) -> list[tuple]:
    gen = torch.Generator().manual_seed(seed)
    shift, spread = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 1.0])
    batches = []
    for b in range(n):
        imgs = torch.randn(6, 3, 4, 5, generator=gen) * spread.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1) + b
        img_paths = [f"{b}_{i}.jpg" for i in range(6)]
        batches.append((imgs, torch.arange(6), torch.zeros(6, dtype=torch.long), img_paths))
    return batches


def _hand_bn_stats(batches: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Average over batches of each channel's batch mean and unbiased batch variance, by explicit sums."""
    means, variances = [], []
    for imgs, *_ in batches:
        values = imgs.double().transpose(0, 1).reshape(3, -1)  # (channels, batch * H * W)
        m = values.shape[1]
        mean = values.sum(1) / m
        means.append(mean)
        variances.append(((values - mean[:, None]) ** 2).sum(1) / (m - 1))
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


@pytest.mark.parametrize("max_batches", [None, 2])
def test_update_bn_sets_running_stats_of_the_data(max_batches):
    model = _BNNet().eval()
    model.bn.running_mean.fill_(7.0)
    batches = _image_batches(4)
    update_bn(model, batches, max_batches=max_batches)
    mean, var = _hand_bn_stats(batches[:max_batches])
    torch.testing.assert_close(model.bn.running_mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.bn.running_var.double(), var, rtol=1e-5, atol=1e-5)
    assert model.bn.momentum == 0.3 and not model.training  # restored
    model.train()
    update_bn(model, (imgs for imgs, *_ in batches))  # bare image tensors from a generator work too
    assert model.training


def test_update_bn_refuses_empty_input_without_touching_the_model():
    model = _BNNet()
    model.bn.running_mean.fill_(7.0)
    with pytest.raises(ValueError, match="no batches"):
        update_bn(model, iter([]))
    assert torch.equal(model.bn.running_mean, torch.full((3,), 7.0))
    with pytest.raises(ValueError, match="max_batches"):
        update_bn(model, _image_batches(1), max_batches=0)


# -- checkpointing -------------------------------------------------------------------------------------------


def test_state_dict_round_trip_resumes_identically(tmp_path):
    model = _tiny()
    swag = SWAG(model, max_rank=2)
    _collect_perturbed(swag, model, 3, seed=11)
    torch.save(swag.state_dict(), tmp_path / "swag.pt")
    state = torch.load(tmp_path / "swag.pt", weights_only=True)
    resumed = SWAG(_tiny(seed=5), max_rank=2)
    resumed.load_state_dict(state)
    assert resumed.n_models == 3 and resumed.rank == 2
    def same_sample(scale, seed):
        gen_a, gen_b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        return torch.equal(swag.sample(scale, gen_a), resumed.sample(scale, gen_b))

    assert same_sample(0.5, seed=3)
    swag.collect(model)  # one more cycle on both: the wrapped ring buffer continues identically
    resumed.collect(model)
    for key in ("mean", "sq_mean", "deviations"):
        assert torch.equal(swag.state_dict()[key], resumed.state_dict()[key])
    assert same_sample(1.0, seed=4)


def test_load_state_dict_refuses_mismatches():
    model = _tiny()
    swag = SWAG(model, max_rank=2)
    swag.collect(model)
    state = swag.state_dict()
    with pytest.raises(ValueError, match="max_rank=2, this SWAG has 3"):
        SWAG(model, max_rank=3).load_state_dict(state)
    with pytest.raises(ValueError, match="other parameters"):
        SWAG(nn.Linear(3, 4), max_rank=2).load_state_dict(state)
    with pytest.raises(ValueError, match="not a SWAG state"):
        SWAG(model, max_rank=2).load_state_dict({"model": {}})


# -- errors --------------------------------------------------------------------------------------------------


def test_errors():
    model = _tiny()
    swag = SWAG(model, max_rank=2)
    with pytest.raises(ValueError, match="no snapshot collected"):
        swag.sample()
    with pytest.raises(ValueError, match="no snapshot collected"):
        swag.sample_into(model)
    with pytest.raises(ValueError, match="no snapshot collected"):
        swag.mean_into(model)
    with pytest.raises(ValueError, match=r"#0 is '0.weight' \[5, 3\] in the model, expected '0.weight' \[4"):
        swag.collect(nn.Sequential(nn.Linear(3, 5)))
    with pytest.raises(ValueError, match="has 2 parameter tensors, expected 6"):
        swag.collect(nn.Sequential(nn.Linear(3, 4)))
    swag.collect(model)
    with pytest.raises(ValueError, match="do not match"):
        swag.mean_into(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
        swag.sample(-0.1)
    for bad in (1, -1, 2.0):
        with pytest.raises(ValueError, match="max_rank must be 0"):
            SWAG(model, max_rank=bad)
    with pytest.raises(ValueError, match="no parameters"):
        SWAG(nn.ReLU())


# -- Bayesian model averaging --------------------------------------------------------------------------------


def test_bma_embed_averages_normalised_descriptors_of_samples():
    model = nn.Linear(3, 2)  # no BatchNorm: descriptors are x W^T + b, computed by hand below
    swag = SWAG(model, max_rank=2)
    _collect_perturbed(swag, model, 3, seed=12, std=0.5)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(13))
    before = _flat(model)
    out = bma_embed(model, swag, lambda m: m(x), num_samples=4, bn_batches=None, scale=1.0, seed=21)

    gen = torch.Generator().manual_seed(21)  # bma_embed's samples come from this generator, in order
    acc = torch.zeros(5, 2, dtype=torch.float64)
    for _ in range(4):
        w = swag.sample(1.0, gen).float()
        feats = x @ w[:6].view(2, 3).T + w[6:]
        acc += (feats / feats.norm(dim=1, keepdim=True)).double()
    expected = acc / acc.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(_flat(model), before)  # the model's own weights are restored


def test_bma_embed_scale_zero_is_the_bn_refreshed_swa_model():
    model = _tiny()
    swag = SWAG(model)
    _collect_perturbed(swag, model, 3, seed=14)
    batches = [(torch.randn(8, 3, generator=torch.Generator().manual_seed(i)), None) for i in range(3)]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(15))
    model.train()
    out = bma_embed(model, swag, lambda m: m(x), num_samples=2, bn_batches=batches, scale=0.0, seed=0)
    assert model.training

    reference = _tiny(seed=9)
    swag.mean_into(reference)
    update_bn(reference, batches)
    with torch.no_grad():
        expected = F.normalize(reference.eval()(x), dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_bma_embed_on_reidnet_restores_the_model():
    torch.manual_seed(0)
    # The real network and its ReIDOutput, narrowed so the test stays fast.
    model = build_model(
        "robustreid_1x", 3, stem_channels=8, stage_channels=(16, 32, 48), stage_repeats=(1, 1, 1), feat_dim=16
    )
    swag = SWAG(model, max_rank=2)
    _collect_perturbed(swag, model, 2, seed=16, std=1e-3)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    imgs = torch.randn(2, 3, 160, 64)
    train_batches = [(imgs, torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long), ["a.jpg", "b.jpg"])]
    out = bma_embed(model, swag, lambda m: m.embed(imgs), num_samples=2, bn_batches=train_batches, seed=0)
    assert out.shape == (2, model.feature_dim)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert model.training


def test_bma_embed_errors():
    model = nn.Linear(3, 2)
    swag = SWAG(model)
    swag.collect(model)
    with torch.no_grad():
        model.weight.add_(1.0)  # differs from the SWAG mean: restoring it after an error is visible
    before = _flat(model)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        bma_embed(model, swag, lambda m: torch.zeros(2, 2), num_samples=0, bn_batches=None)
    with pytest.raises(ValueError, match=r"must return an \(N, D\) tensor"):
        bma_embed(model, swag, lambda m: torch.zeros(2), num_samples=1, bn_batches=None)
    assert torch.equal(_flat(model), before)


# -- the SWAG stage of a finished run (robustreid swag): every check before the first byte is written ---------


def _market(root):
    """A Market1501 tree of 16x8 JPEGs: two training identities on two cameras, query 3 with a true match."""
    import numpy as np
    from PIL import Image

    names = {"bounding_box_train": ("0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg", "0002_c1s1_000003_00.jpg",
                                    "0002_c2s1_000004_00.jpg"),
             "query": ("0003_c1s1_000001_00.jpg",),
             "bounding_box_test": ("0003_c2s1_000002_01.jpg", "0004_c1s1_000003_01.jpg")}
    for i, (folder, files) in enumerate(names.items()):
        (root / folder).mkdir(parents=True)
        for j, name in enumerate(files):
            pixels = np.random.default_rng(10 * i + j).integers(0, 255, (16, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / name)
    return root


@pytest.fixture
def finished_run(tmp_path):
    """``(run folder, its last.pt dict, the dataset)``: a "finished" hacnn run on ``_market`` (weights untrained:
    only the checks are tested)."""
    import json

    from robustreid.checkpoint import model_state, save_checkpoint
    from robustreid.config import config_to_dict, preset
    from robustreid.datasets import load_dataset

    root = _market(tmp_path / "market")
    cfg = preset("hacnn")
    torch.manual_seed(0)
    state = {**model_state(build_model(cfg.model, 2, **cfg.model_options())), "config": config_to_dict(cfg),
             "epoch": cfg.schedule.epochs}
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(state, run / "last.pt")
    (run / "dataset.json").write_text(json.dumps({"name": "market1501", "root": str(root)}))
    return run, state, load_dataset("market1501", root)


def _stage_cfg(state, cycles=2):
    from robustreid.config import swag_stage_config
    from robustreid.train import config_from_checkpoint

    return swag_stage_config(config_from_checkpoint(state), cycles, 2)


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_swag_stage_refuses_before_anything_is_written(finished_run, tmp_path):
    import dataclasses
    import re

    from robustreid.checkpoint import save_checkpoint
    from robustreid.config import config_to_dict
    from robustreid.datasets import load_dataset
    from robustreid.swag import check_swag_stage

    run, state, dataset = finished_run
    cfg, out = _stage_cfg(state), tmp_path / "stage"
    before = _tree(tmp_path)
    assert check_swag_stage(cfg, state, dataset, run, out) is False  # a fresh stage
    same = tmp_path / "market" / ".." / "run"  # the run folder, spelled otherwise
    with pytest.raises(ValueError, match=f"^{re.escape(str(same))} is the finished run's own folder: the SWAG "
                                         "stage writes a run folder of its own$"):
        check_swag_stage(cfg, state, dataset, run, same)
    with pytest.raises(ValueError, match="^device 'bogus': expected 'cpu', 'cuda', 'cuda:N'"):
        check_swag_stage(cfg, state, dataset, run, out, device="bogus")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(run / 'last.pt'))} was trained on 3 identities, the dataset market1501 "
                                         r"has 2: the SWAG stage continues its identity classifiers$"):
        check_swag_stage(cfg, {**state, "num_classes": 3}, dataset, run, out)
    bad = tmp_path / "market" / "query" / "0003_c1s1_000001_00.jpg"
    good = bad.read_bytes()
    bad.write_bytes(good[:50])  # truncated
    with pytest.raises(ValueError, match=r"^1 unreadable image\(s\) in market1501: .*0003_c1s1_000001_00\.jpg"):
        check_swag_stage(cfg, state, load_dataset("market1501", tmp_path / "market"), run, out)
    bad.write_bytes(good)
    assert _tree(tmp_path) == before and not out.exists()  # nothing written by any of them

    # an --out that holds a run: this stage's own last.pt is resumed, another run's is refused
    out.mkdir()
    save_checkpoint({**state, "config": config_to_dict(cfg)}, out / "last.pt")
    assert check_swag_stage(cfg, state, dataset, run, out) is True
    other = dataclasses.replace(cfg, seed=cfg.seed + 1)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(out / 'last.pt'))} holds another run \(its config is not this SWAG "
                                         r"stage's\)"):
        check_swag_stage(other, state, dataset, run, out)


def _one_error_line(capsys, command="swag"):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"robustreid {command}: error: ") and "Traceback" not in err, err
    assert sum(line.startswith("robustreid ") for line in lines) == 1, err
    return lines[-1]


def test_swag_command_checks_everything_before_writing(finished_run, tmp_path, capsys):
    from robustreid.cli import main

    run, _, _ = finished_run
    out = tmp_path / "stage"
    before = _tree(run)
    assert main(["swag", "--from", str(run), "--out", str(out), "--device", "bogus"]) == 2
    assert "device 'bogus'" in _one_error_line(capsys) and not out.exists()
    assert main(["swag", "--from", str(run), "--out", str(run)]) == 2
    assert "is the finished run's own folder" in _one_error_line(capsys)
    assert _tree(run) == before


def test_a_diverged_swag_stage_ends_in_one_line(finished_run, tmp_path, capsys, monkeypatch):
    from robustreid import train
    from robustreid.cli import main

    def diverging_fit(cfg, dataset, out, **kwargs):
        raise train.TrainingDiverged("loss became nan at epoch 41 iteration 0 (lr 0.003); training stopped, the "
                                     "last checkpoint is unchanged")

    monkeypatch.setattr(train, "fit", diverging_fit)
    run, _, _ = finished_run
    assert main(["swag", "--from", str(run), "--out", str(tmp_path / "stage"), "--cycles", "2"]) == 1  # as train
    assert _one_error_line(capsys) == ("robustreid swag: error: loss became nan at epoch 41 iteration 0 (lr 0.003); "
                                       "training stopped, the last checkpoint is unchanged")
