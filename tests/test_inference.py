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
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 3, 160, 64)
    with torch.no_grad():
        expected = model.embed(x)
        got = fast.embed(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


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
