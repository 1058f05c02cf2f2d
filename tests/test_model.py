"""The networks of Table 1 / Table 2: one parametrised suite over every model (the building blocks are tested in
test_layers.py and test_attention.py)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from robustreid.model import MODELS, Architecture, build_model, list_models
from robustreid.profile import count_macs, count_params

NUM_CLASSES = 7

# Paper Table 1 (params without identity classifiers, GMACs at 160x64) and the HA-CNN figures of the issue.
TARGETS = {
    "robustreid_1x": (2.9e6, 0.72),
    "robustreid_2x": (6.4e6, 1.68),
    "hacnn": (2.9e6, 0.55),
}


@pytest.fixture(scope="module", params=list_models())
def model_name(request):
    return request.param


@pytest.fixture(scope="module")
def model(model_name):
    torch.manual_seed(0)
    return build_model(model_name, NUM_CLASSES)


def test_list_models_names():
    assert list_models() == ["hacnn", "robustreid_1x", "robustreid_2x"]


def test_unknown_model_and_option_errors():
    with pytest.raises(ValueError, match="valid names: hacnn, robustreid_1x, robustreid_2x"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="unknown option"):
        build_model("hacnn", 3, colour="red")
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_model("robustreid_1x", 3, pooling="median")
    with pytest.raises(ValueError, match="width must be one of"):
        build_model("robustreid_1x", 3, width="3x")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_shapes_and_norms(model, mode):
    model.train(mode == "train")
    x = torch.randn(4, 3, 160, 64)
    out = model(x)
    arch = model.arch
    assert out.global_feat.shape == (4, arch.feat_dim)
    assert out.local_feat.shape == (4, arch.feat_dim)
    assert out.global_logits.shape == (4, NUM_CLASSES) and out.local_logits.shape == (4, NUM_CLASSES)
    assert out.embedding.shape == (4, model.feature_dim) == (4, 2 * arch.feat_dim)
    for t in out:
        assert torch.isfinite(t).all()
    # The test descriptor is two unit vectors side by side.
    g, l = out.embedding.split(arch.feat_dim, dim=1)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(l.norm(dim=1), torch.ones(4))
    if arch.l2_norm:  # Figure 4: branch features are unit-norm in training as well
        torch.testing.assert_close(out.global_feat.norm(dim=1), torch.ones(4))
        torch.testing.assert_close(out.local_feat.norm(dim=1), torch.ones(4))
    model.train()


def test_output_type_does_not_depend_on_mode(model):
    x = torch.randn(2, 3, 160, 64)
    model.eval()
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model.embed(x), out.embedding)
    model.train()
    assert type(model(x)) is type(out)


def test_backward_reaches_every_parameter(model):
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(4, 3, 160, 64))
    target = torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(out.global_logits, target) + F.cross_entropy(out.local_logits, target)
    loss = loss + out.global_feat.pow(3).sum() + out.local_feat.pow(3).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    # The spatial attention's 1x1 "scaling conv" maps one channel to one channel right before a BatchNorm, which
    # cancels its weight in training mode (HA-CNN's design): its gradient is zero up to rounding, legitimately.
    # So is the gamma of the BatchNorm before it while its beta is 0 (at init): ReLU(gamma * x) = gamma * ReLU(x),
    # and that scale is cancelled by the same BatchNorm.
    exempt = ("spatial.scale.0.weight", "spatial.conv.1.weight")
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0 and not n.endswith(exempt)]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def test_torch_export(model):
    model.eval()
    exported = torch.export.export(model, (torch.randn(2, 3, 160, 64),))
    x = torch.randn(2, 3, 160, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x).embedding, model(x).embedding)


def test_data_config_is_carried(model):
    # Input size: the paper's 160x64 (H x W; Table 1's first row, and HA-CNN's input). Mean / std: the ImageNet
    # statistics model.py documents (written out here, torchvision's values, not imported from model.py).
    assert model.data_config["input_size"] == (160, 64)
    assert tuple(model.data_config["mean"]) == (0.485, 0.456, 0.406)
    assert tuple(model.data_config["std"]) == (0.229, 0.224, 0.225)
    # and the transforms read it from the model: a 160x64 image of the mean colour normalises to ~0
    from PIL import Image

    from robustreid.loaders import TestTransform

    mean = model.data_config["mean"]
    image = Image.new("RGB", (64, 160), tuple(round(255 * m) for m in mean))
    x = TestTransform(model.data_config)(image)
    assert x.shape == (3, 160, 64)
    assert x.abs().max() < 0.5 / 255 / min(model.data_config["std"])  # within the 8-bit rounding of the colour


def test_macs_against_paper(model_name, model):
    gmacs_target = TARGETS[model_name][1]
    gmacs = count_macs(model) / 1e9
    assert abs(gmacs - gmacs_target) / gmacs_target <= 0.10, f"{model_name}: {gmacs:.3f} GMACs"


@pytest.mark.parametrize("name", [
    "hacnn",
    "robustreid_1x",
    # known gap (README, model docstring): the plain Table 1 reading has 5.83M parameters at 2x, the paper 6.4M;
    # strict, so the suite says so when a change closes it
    pytest.param("robustreid_2x", marks=pytest.mark.xfail(strict=True, reason="5.83M vs the paper's 6.4M")),
])
def test_params_against_paper(name):
    params_target = TARGETS[name][0]
    params = count_params(build_model(name, 751))
    assert abs(params - params_target) / params_target <= 0.05, f"{name}: {params / 1e6:.3f}M params"


def test_classifiers_are_excluded_from_params(model):
    clf = sum(p.numel() for p in model.classifiers.parameters())
    assert count_params(model, with_classifier=True) - count_params(model) == clf
    bias = 1 if model.arch.classifier_bias else 0
    assert clf == 2 * (model.arch.feat_dim + bias) * NUM_CLASSES


def test_macs_match_hand_count_for_the_stem():
    # 3x3 conv, 3 -> 32 channels, stride 2 on 160x64: 80*32 outputs * 32 channels * 27 MACs each.
    stem = build_model("robustreid_1x").stem
    stem.data_config = {"input_size": (160, 64)}
    stem.embed = stem.forward
    assert count_macs(stem) == 80 * 32 * 32 * 3 * 3 * 3


# ---- Table 2 architecture switches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(block="inception"),
        dict(pooling="avg"),
        dict(pooling="max"),
        dict(l2_norm=False),
        dict(width="2x", block="inception"),
        dict(local_branch=False),
        dict(classifier_bias=True),
    ],
)
def test_table2_switches(options):
    torch.manual_seed(0)
    model = build_model("robustreid_1x", NUM_CLASSES, **options)
    for key, value in options.items():
        if key != "width":
            assert getattr(model.arch, key) == value
    model.train()
    out = model(torch.randn(2, 3, 160, 64))
    assert torch.isfinite(out.embedding).all()
    if options.get("local_branch") is False:
        assert out.local_feat is None and out.local_logits is None
        assert out.embedding.shape == (2, model.arch.feat_dim)
    if options.get("l2_norm") is False:
        assert not torch.allclose(out.global_feat.norm(dim=1), torch.ones(2))
    if "width" in options:
        assert model.arch.stage_channels == (240, 320, 480) and model.arch.feat_dim == 960


def test_width_switch_reproduces_the_2x_preset():
    a = build_model("robustreid_1x", width="2x").arch
    assert a == MODELS["robustreid_2x"]


def test_presets_differ_only_where_the_paper_says():
    hacnn, r1, r2 = MODELS["hacnn"], MODELS["robustreid_1x"], MODELS["robustreid_2x"]
    diff = {f.name for f in dataclasses.fields(Architecture) if getattr(hacnn, f.name) != getattr(r1, f.name)}
    # + the two readings the paper leaves open, where HA-CNN keeps its own (README, "Learning study")
    assert diff == {"block", "pooling", "l2_norm", "classifier_bias", "head_relu", "conv_init"}
    diff = {f.name for f in dataclasses.fields(Architecture) if getattr(r1, f.name) != getattr(r2, f.name)}
    assert diff == {"stem_channels", "stage_channels", "stage_repeats", "feat_dim"}
    assert Architecture.from_dict(r2.to_dict()) == r2


def test_shuffle_stage_layout_follows_table1():
    for name, repeats in (("robustreid_1x", (7, 10, 7)), ("robustreid_2x", (8, 11, 8))):
        model = build_model(name)
        for stage, n in zip(model.stages, repeats):
            kinds = [type(b).__name__ for b in stage]
            assert kinds == ["ShuffleB"] + ["ShuffleA"] * n + ["ShuffleB"]
        # Strided convolution only in the last block of each stage (Table 1 caption): 80x32 -> 40x16 -> 20x8 -> 10x4.
        x = model.stem(torch.randn(1, 3, 160, 64))
        for stage, size in zip(model.stages, ((40, 16), (20, 8), (10, 4))):
            assert stage[-2](stage[0](x)).shape[2:] == x.shape[2:]
            x = stage(x)
            assert x.shape[2:] == size


# ---- readings the paper leaves open: convolution init, the FC head's activation ------------------------------


def test_conv_init_filter_norms_match_hand_computed_values():
    """``fan_out``: Kaiming normal over fan-out, a filter's expected squared norm 2 * fan_in / fan_out (2 / C for
    a depthwise 3x3 of C channels); ``default``: PyTorch's Kaiming uniform a=sqrt(5), variance 1 / (3 fan_in), so
    every filter's expected squared norm is 1/3 whatever the layer."""
    from torch import nn

    from robustreid.model import init_conv

    torch.manual_seed(0)
    for conv in (nn.Conv2d(256, 256, 3, padding=1, groups=256, bias=False),  # depthwise: fan_in 9, fan_out 2304
                 nn.Conv2d(128, 128, 1, bias=False),                          # square 1x1: fan_in = fan_out = 128
                 nn.Conv2d(3, 32, 3, bias=False)):                            # the stem: fan_in 27, fan_out 288
        w = conv.weight
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        init_conv(conv, "fan_out")
        expected = 2 * fan_in / fan_out
        assert w.detach().flatten(1).pow(2).sum(1).mean().item() == pytest.approx(expected, rel=0.15)
        init_conv(conv, "default")
        assert w.detach().flatten(1).pow(2).sum(1).mean().item() == pytest.approx(1 / 3, rel=0.15)
        assert w.abs().max().item() <= 1 / fan_in**0.5  # uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)]
    with pytest.raises(ValueError, match="conv_init"):
        init_conv(conv, "xavier")
    with pytest.raises(ValueError, match="conv_init"):
        build_model("robustreid_1x", conv_init="xavier")


def test_model_conv_init_reaches_every_convolution():
    from torch import nn

    torch.manual_seed(0)
    for scheme, depthwise_norm2 in (("fan_out", 2 / 128), ("default", 1 / 3)):
        model = build_model("robustreid_1x", conv_init=scheme)
        dw = [m.weight for m in model.stages[0].modules() if isinstance(m, nn.Conv2d) and m.groups == 128]
        norm2 = torch.cat([w.detach().flatten(1).pow(2).sum(1) for w in dw]).mean().item()
        assert norm2 == pytest.approx(depthwise_norm2, rel=0.1)


@pytest.mark.parametrize("head_relu", [True, False])
def test_head_relu_switch_sets_the_feature_range(head_relu):
    """With the ReLU every head feature is >= 0 (the positive orthant, so two unit descriptors are at most sqrt(2)
    apart); without it (a BNNeck) about half the coordinates are negative and distances reach 2."""
    torch.manual_seed(0)
    model = build_model("robustreid_1x", NUM_CLASSES, head_relu=head_relu).train()
    out = model(torch.randn(16, 3, 160, 64))
    negative = (out.global_feat < 0).float().mean().item()
    if head_relu:
        assert negative == 0.0 and (out.local_feat >= 0).all()
        assert torch.cdist(out.embedding, out.embedding).max() <= 2**0.5 * 2**0.5 + 1e-5
    else:
        assert 0.3 < negative < 0.7  # BatchNorm in train mode centres every coordinate over the batch
        assert not any(isinstance(m, torch.nn.ReLU) for m in model.global_head)


def test_checkpoint_arch_without_head_relu_reads_as_the_old_relu_head():
    d = MODELS["robustreid_1x"].to_dict()
    del d["head_relu"]
    assert Architecture.from_dict(d).head_relu is True


def test_reset_classifier_keeps_the_descriptor_and_changes_the_logits():
    torch.manual_seed(0)
    model = build_model("robustreid_1x", 5).eval()
    x = torch.randn(2, 3, 160, 64)
    before = model(x)
    model.reset_classifier(7)
    after = model(x)
    torch.testing.assert_close(after.embedding, before.embedding)
    assert model.num_classes == 7 and after.global_logits.shape == after.local_logits.shape == (2, 7)
    rows = model.classifiers[0].weight.detach().norm(dim=1)
    assert abs(float(rows.mean()) - model.arch.classifier_norm) < 1.0  # initialised as at construction
    model.reset_classifier(0)
    assert model(x).global_logits is None and len(model.classifiers) == 0
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        model.reset_classifier(-1)


def test_forward_head_is_the_one_descriptor_path(model):
    # forward, embed and forward_head(pre_logits=True) all build the descriptor from forward_features' branches
    model.eval()
    x = torch.randn(3, 3, 160, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        by_hand = torch.cat([f / f.norm(dim=1, keepdim=True) for f in feats if f is not None], dim=1)
        torch.testing.assert_close(model.forward_head(feats, pre_logits=True), by_hand)
        out = model.forward_head(feats)
        torch.testing.assert_close(out.embedding, by_hand)
        branch = feats[0] / feats[0].norm(dim=1, keepdim=True) if model.arch.l2_norm else feats[0]
        torch.testing.assert_close(out.global_logits, model.classifiers[0](branch))
    model.train()
