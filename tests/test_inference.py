"""robustreid.inference: BatchNorm folding, channels_last and micro-batches give the model's own descriptors."""

import pytest
import torch
from torch import nn

from robustreid.evaluate import FeatureExtractor, extract_features
from robustreid.inference import embed_micro_batched, fuse_conv_bn, optimize_for_inference
from robustreid.model import build_model
from robustreid.swag import update_bn

# narrow networks of both skeletons (Shuffle and Inception blocks): milliseconds per forward
# Untrained networks with uncalibrated BatchNorm: Robust-ReID's default init (variance 1 / (3 fan_in)) shrinks the
# signal at every layer in eval mode until descriptors nearly tie; these tests check evaluation / export
# mechanics, so their tiny networks keep the variance-preserving Kaiming fan-out init.
TINY = dict(stem_channels=8, stage_channels=(32, 32, 32), stage_repeats=(1, 1, 1), feat_dim=16, conv_init="fan_out")


pytestmark = pytest.mark.usefixtures("one_thread")


def calibrated(name: str, seed: int = 0) -> nn.Module:
    """A tiny network whose BatchNorm layers hold non-trivial statistics and affine parameters, so folding
    them is not the identity."""
    torch.manual_seed(seed)
    model = build_model(name, 5, **TINY)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    update_bn(model, [torch.randn(6, 3, 160, 64) * 0.5 + 0.3 for _ in range(2)])
    return model.eval()


@pytest.mark.parametrize("name", ["robustreid_1x", "hacnn"])
def test_fuse_conv_bn_gives_the_same_descriptors_and_leaves_the_model_alone(name):
    model = calibrated(name).train()  # the caller's mode must survive
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fused = fuse_conv_bn(model)
    assert num_bn > 10
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == num_bn
    assert model.training and not fused.training
    x = torch.randn(4, 3, 160, 64)
    with torch.no_grad():
        expected = model.eval().embed(x)
        got = fused.embed(x)
    assert (got - expected).abs().max() > 0  # rounding differs: it really ran other convolutions
    # unit-norm descriptors: float32 rounding through ~20 folded layers reaches a few 1e-5 on coordinates near 0
    # (3.5e-5 measured with the ReLU-free heads); a wrong fold is off by O(0.1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["robustreid_1x", "hacnn"])
def test_optimize_for_inference_channels_last(name):
    model = calibrated(name, seed=1)
    fast = optimize_for_inference(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original keeps its BatchNorm
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded into the convolutions
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 3, 160, 64)
    with torch.no_grad():
        expected = model.embed(x)
        got = fast.embed(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["robustreid_1x", "hacnn"])
def test_every_batchnorm_is_folded_into_the_layer_before_it(name):
    # the heads' Linear -> BatchNorm1d as well as the Conv2d -> BatchNorm2d units; BatchNorm1d with non-trivial
    # statistics and affine maps (hacnn: a ReLU after it), so a head left unfolded or folded wrongly shows
    model = calibrated(name, seed=6)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    folded = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}
    before = [(type(seq[i]), type(seq[i + 1])) for seq in model.modules() if isinstance(seq, nn.Sequential)
              for i in range(len(seq) - 1) if folded.get(type(seq[i + 1])) is type(seq[i])]
    assert {pair[1] for pair in before} == {nn.BatchNorm2d, nn.BatchNorm1d}  # both kinds are there to fold
    fast = optimize_for_inference(model)
    assert not [m for m in fast.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    heads = [h for h in ("global_head", "local_head") if hasattr(model, h)]
    assert len(heads) == 2
    with torch.no_grad():
        for h in heads:
            head, fast_head = getattr(model, h), getattr(fast, h)
            assert isinstance(fast_head[1], nn.Identity)
            v = torch.randn(6, head[0].in_features)
            expected = head(v)
            assert not torch.allclose(expected, head[0](v), atol=0.1)  # the BatchNorm is not close to the identity
            torch.testing.assert_close(fast_head(v), expected, rtol=1e-5, atol=1e-5)
        x = torch.randn(4, 3, 160, 64)
        torch.testing.assert_close(fast.embed(x.contiguous(memory_format=torch.channels_last)), model.embed(x),
                                   rtol=1e-4, atol=1e-4)


def test_embed_micro_batched_matches_one_call_slice_by_slice():
    model = calibrated("robustreid_1x", seed=2)
    x = torch.randn(7, 3, 160, 64)
    calls = []

    def embed(chunk):
        calls.append(len(chunk))
        return model.embed(chunk)

    with torch.no_grad():
        expected = model.embed(x)
        got = embed_micro_batched(embed, x, 3)
        assert calls == [3, 3, 1]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        calls.clear()
        torch.testing.assert_close(embed_micro_batched(embed, x, None), expected, rtol=1e-5, atol=1e-6)
        assert calls == [7]
        assert embed_micro_batched(model.embed, x[:0], 3).shape == (0, model.feature_dim)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="micro_batch"):
            embed_micro_batched(model.embed, x, bad)


def test_a_batch_reaches_the_optimized_network_in_micro_batches(monkeypatch):
    import numpy as np

    from robustreid import evaluate

    sizes, nets = [], []
    real = evaluate.optimize_for_inference

    def spied(model):  # the network the extractor runs: record the batch each forward of its stem receives
        net = real(model)
        net.stem.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
        nets.append(net)
        return net

    monkeypatch.setattr(evaluate, "optimize_for_inference", spied)
    model = calibrated("robustreid_1x", seed=4)
    images = [np.random.default_rng(i).integers(0, 255, (32, 16, 3), dtype=np.uint8) for i in range(20)]
    extractor = FeatureExtractor(model, batch_size=16)
    feats = extractor(images)
    assert len(nets) == 1 and sizes == [8, 8, 4]  # loader batches of 16 + 4, each run as slices of 8
    plain = FeatureExtractor(model, batch_size=16, optimize=False)(images)  # whole batches, in one call each
    assert feats.shape == plain.shape == (20, model.feature_dim)
    torch.testing.assert_close(feats, plain, rtol=1e-4, atol=1e-5)  # the slices come back in order


def test_no_non_finite_descriptor_leaves_extract_to_npz(tmp_path):
    from PIL import Image

    from robustreid.evaluate import extract_to_npz

    model = calibrated("hacnn", seed=5)
    with torch.no_grad():
        model.global_head[0].bias[0] = float("nan")  # a model passed in, not loaded: no checkpoint check ran
    images = []
    for i in range(3):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (16, 32), (10 * i, 20, 30)).save(images[-1])
    with pytest.raises(ValueError, match=r"^ReIDNet gave non-finite descriptors for 3 of 3 images, the first "
                                         r".*0\.png$"):
        extract_to_npz(model, images, tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists() and not list(tmp_path.glob(".tmp-*"))


def test_extractors_optimize_by_default_with_the_same_descriptors(tmp_path):
    from robustreid.datasets import load_dataset
    from robustreid.synthetic import write_market1501

    write_market1501(tmp_path / "data", ids_train=2, ids_test=3, cameras=2, images_per_id_per_cam=2,
                     distractors=2, junk=1, seed=0)
    records = load_dataset("market1501", tmp_path / "data").gallery
    model = calibrated("robustreid_1x", seed=3)
    plain, pids, _ = extract_features(model, records, batch_size=16, num_workers=0, optimize=False)
    fast, fast_pids, _ = extract_features(model, records, batch_size=16, num_workers=0)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    assert (pids == fast_pids).all()
    paths = [r.img_path for r in records]
    extractor = FeatureExtractor(model, batch_size=16)
    assert "optimized=True" in repr(extractor)
    torch.testing.assert_close(extractor(paths), plain, rtol=1e-4, atol=1e-5)
    # a snapshot: changing the model afterwards changes optimize=False extractors only
    follower = FeatureExtractor(model, batch_size=16, optimize=False)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    torch.testing.assert_close(extractor(paths), plain, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(follower(paths), plain, atol=1e-3)
