"""The building blocks of ``robustreid.layers`` against independent references: an index loop for the channel
shuffle, Eq. 6 computed by hand for GeM (and its two limits, average and max pooling), parameter counts worked out
by hand from Figure 5 / ShuffleNetV2, and the feature-map sizes of the paper's Table 1."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreid.layers import (
    POOLINGS,
    GeM,
    InceptionA,
    InceptionB,
    ShuffleA,
    ShuffleB,
    channel_shuffle,
    concat_shuffle,
    conv_bn_act,
    global_pool,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BN_EPS = 1e-5  # nn.BatchNorm2d's default: in eval mode at init a BN divides by sqrt(1 + eps)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- channel shuffle -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels,groups", [(12, 3), (12, 2), (8, 4), (6, 1), (6, 6)])
def test_channel_shuffle_matches_index_loop(channels, groups):
    x = torch.arange(2 * channels * 2 * 3, dtype=torch.float32).view(2, channels, 2, 3)
    per = channels // groups
    # docstring's rule, written as a loop: output channel i*g + j is input channel j*c + i
    expected = torch.empty_like(x)
    for i in range(per):
        for j in range(groups):
            expected[:, i * groups + j] = x[:, j * per + i]
    torch.testing.assert_close(channel_shuffle(x, groups), expected, rtol=0, atol=0)


def test_channel_shuffle_rejects_unequal_groups():
    with pytest.raises(ValueError, match="12 channels do not split into 5 equal groups"):
        channel_shuffle(torch.zeros(1, 12, 2, 2), 5)


def test_concat_shuffle_equals_cat_then_shuffle():
    a, b = torch.randn(2, 6, 3, 4), torch.randn(2, 6, 3, 4)
    # by the docstring: even output channels are a's, odd ones b's
    expected = torch.empty(2, 12, 3, 4)
    expected[:, 0::2], expected[:, 1::2] = a, b
    torch.testing.assert_close(concat_shuffle(a, b), expected, rtol=0, atol=0)
    torch.testing.assert_close(channel_shuffle(torch.cat([a, b], dim=1), 2), expected, rtol=0, atol=0)
    cl = torch.channels_last
    out = concat_shuffle(a.contiguous(memory_format=cl), b.contiguous(memory_format=cl))
    assert out.is_contiguous(memory_format=cl)  # the NHWC path keeps the layout
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one shape"):
        concat_shuffle(a, b[:, :4])


# ---- conv-bn-act ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel,stride,size,out_size", [(3, 1, (9, 6), (9, 6)), (3, 2, (9, 6), (5, 3)),
                                                          (1, 1, (9, 6), (9, 6)), (1, 2, (8, 6), (4, 3))])
def test_conv_bn_act_same_padding_and_output_size(kernel, stride, size, out_size):
    # "same" padding k // 2: the output is ceil(H / stride) x ceil(W / stride)
    block = conv_bn_act(4, 6, kernel, stride=stride)
    assert block(torch.randn(2, 4, *size)).shape == (2, 6, *out_size)
    assert tuple(math.ceil(s / stride) for s in size) == out_size


def test_conv_bn_act_is_conv_then_bn_then_relu():
    torch.manual_seed(0)
    block = conv_bn_act(4, 6, 3, stride=2).eval()
    conv, bn, act = block
    assert isinstance(conv, nn.Conv2d) and conv.bias is None  # no bias: the BatchNorm's beta is the bias
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(act, nn.ReLU)
    x = torch.randn(2, 4, 7, 5)
    # eval mode at init: running mean 0, var 1, gamma 1, beta 0
    expected = F.relu(F.conv2d(x, conv.weight, stride=2, padding=1) / math.sqrt(1 + BN_EPS))
    torch.testing.assert_close(block(x), expected)
    no_act = conv_bn_act(4, 6, 3, act=False)
    assert len(no_act) == 2 and (no_act.eval()(x) < 0).any()


def test_conv_bn_act_parameter_count_by_hand():
    # conv: out * in / groups * k * k weights; BN: gamma and beta per output channel
    assert n_params(conv_bn_act(3, 32, 3)) == 32 * 3 * 9 + 2 * 32
    assert n_params(conv_bn_act(64, 64, 3, groups=64)) == 64 * 1 * 9 + 2 * 64  # depthwise
    assert n_params(conv_bn_act(64, 128, 1)) == 128 * 64 + 2 * 128


# ---- Shuffle blocks (Figure 5), sizes of Table 1 -------------------------------------------------------------


def test_shuffle_a_keeps_the_identity_half_at_even_channels():
    torch.manual_seed(0)
    block = ShuffleA(8).eval()
    x = torch.randn(2, 8, 6, 4)
    y = block(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, 0::2], x[:, :4], rtol=0, atol=0)  # the untouched half, interleaved
    torch.testing.assert_close(y[:, 1::2], block.branch(x[:, 4:]))  # the convolved half: 1x1 -> dw 3x3 -> 1x1
    with pytest.raises(ValueError, match="ShuffleA: out_channels=7 must be divisible by 2"):
        ShuffleA(7)


def test_shuffle_b_interleaves_shortcut_and_branch():
    torch.manual_seed(0)
    block = ShuffleB(6, 10, stride=2).eval()
    x = torch.randn(2, 6, 9, 7)
    y = block(x)
    assert y.shape == (2, 10, 5, 4)
    torch.testing.assert_close(y[:, 0::2], block.shortcut(x))
    torch.testing.assert_close(y[:, 1::2], block.branch(x))
    with pytest.raises(ValueError, match="divisible by 2"):
        ShuffleB(8, 15)
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        ShuffleB(8, 16, stride=3)


def test_shuffle_parameter_counts_by_hand():
    # Shuffle-A(128) (Table 1 stage 1 at 1x): the branch on 64 channels is 1x1 (64*64) + BN (2*64),
    # depthwise 3x3 (64*9) + BN (2*64), 1x1 (64*64) + BN (2*64).
    assert n_params(ShuffleA(128)) == 64 * 64 + 128 + 64 * 9 + 128 + 64 * 64 + 128 == 9152
    # Shuffle-B(32 -> 128, stride 1) (stage 1's first block at 1x): shortcut = dw 3x3 on 32 (32*9) + BN (2*32),
    # 1x1 32 -> 64 (32*64) + BN (2*64); branch = 1x1 32 -> 64 + BN, dw 3x3 on 64 + BN, 1x1 64 -> 64 + BN.
    shortcut = 32 * 9 + 64 + 32 * 64 + 128
    branch = 32 * 64 + 128 + 64 * 9 + 128 + 64 * 64 + 128
    assert n_params(ShuffleB(32, 128)) == shortcut + branch == 9632
    # mid_channels widens only the branch's inside: 1x1 32 -> 96, dw 96, 1x1 96 -> 64
    wide = 32 * 9 + 64 + 32 * 64 + 128 + 32 * 96 + 192 + 96 * 9 + 192 + 96 * 64 + 128
    assert n_params(ShuffleB(32, 128, mid_channels=96)) == wide


# Table 1 (tables-decoded.md): stem output channels, stage widths, Shuffle-A repeats; the stages run on
# 80x32 -> 40x16 -> 20x8 -> 10x4.
TABLE1 = {"1x": (32, (128, 256, 384), (7, 10, 7)), "2x": (36, (240, 320, 480), (8, 11, 8))}
STAGE_INPUTS = ((80, 32), (40, 16), (20, 8))
STAGE_OUTPUTS = ((40, 16), (20, 8), (10, 4))


@pytest.mark.parametrize("width", ["1x", "2x"])
def test_a_stage_of_shuffle_blocks_has_table1_sizes(width):
    stem, widths, repeats = TABLE1[width]
    in_channels = stem
    for out_channels, n, size, out_size in zip(widths, repeats, STAGE_INPUTS, STAGE_OUTPUTS):
        first, last = ShuffleB(in_channels, out_channels, stride=1), ShuffleB(out_channels, out_channels, stride=2)
        x = first(torch.randn(1, in_channels, *size))
        assert x.shape == (1, out_channels, *size)  # Shuffle-B stride 1: channels change, size kept
        x = nn.Sequential(*[ShuffleA(out_channels) for _ in range(n)])(x)
        assert x.shape == (1, out_channels, *size)  # the n Shuffle-A repeats keep both
        assert last(x).shape == (1, out_channels, *out_size)  # Shuffle-B stride 2: size halved
        in_channels = out_channels


def test_local_shuffle_b_halves_the_stripes_of_table1():
    # Hard-Attn rows of Table 1: 4 x (24x28) -> 12x14 -> 6x7, and the local GeM pools 4 x (3x4) maps.
    x = torch.randn(4, 8, 24, 28)
    for size in ((12, 14), (6, 7), (3, 4)):
        x = ShuffleB(x.shape[1], 8, stride=2)(x)
        assert x.shape == (4, 8, *size)


# ---- Inception blocks of HA-CNN ---------------------------------------------------------------------------------


def test_inception_a_keeps_size_and_has_four_quarter_streams():
    block = InceptionA(32, 128)
    x = torch.randn(2, 32, 20, 8)
    assert block(x).shape == (2, 128, 20, 8)
    streams = [block.stream1(x), block.stream2(x), block.stream3(x), block.stream4(x)]
    assert [s.shape[1] for s in streams] == [32, 32, 32, 32]
    torch.testing.assert_close(block(x), torch.cat(streams, dim=1))
    with pytest.raises(ValueError, match="InceptionA: out_channels=130 must be divisible by 4"):
        InceptionA(32, 130)


def test_inception_b_halves_size_with_streams_of_a_quarter_a_quarter_and_a_half():
    block = InceptionB(32, 128)
    x = torch.randn(2, 32, 80, 32)
    assert block(x).shape == (2, 128, 40, 16)
    assert [s(x).shape[1] for s in (block.stream1, block.stream2, block.stream3)] == [32, 32, 64]
    assert block(torch.randn(1, 32, 7, 5)).shape == (1, 128, 4, 3)  # odd sizes: ceil(H / 2)
    with pytest.raises(ValueError, match="divisible by 4"):
        InceptionB(32, 126)


# ---- GeM (Eq. 6) and the pooling switch -------------------------------------------------------------------------


def _gem_by_hand(x: torch.Tensor, p: float) -> torch.Tensor:
    out = torch.empty(x.shape[:2], dtype=torch.float64)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            values = [float(v) for v in x[b, c].flatten()]
            out[b, c] = (sum(v**p for v in values) / len(values)) ** (1 / p)
    return out


@pytest.mark.parametrize("p", [3.0, 1.5, 7.0])
def test_gem_matches_equation_6_by_hand(p):
    torch.manual_seed(0)
    x = torch.rand(2, 5, 3, 4) + 0.1
    gem = GeM(p=p)
    torch.testing.assert_close(gem(x).double(), _gem_by_hand(x, p), rtol=1e-5, atol=0)


def test_gem_limits_are_average_and_max_pooling():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 3, 4) + 0.1
    gem = GeM(p=1.0)
    torch.testing.assert_close(gem(x), x.mean(dim=(2, 3)))
    previous = gem(x).detach()
    # The power mean grows with p (power-mean inequality) and tends to the maximum.
    gaps = []
    for p in (2.0, 4.0, 16.0, 64.0, 256.0):
        with torch.no_grad():
            gem.p.fill_(p)
        y = gem(x).detach()
        assert (y >= previous - 1e-6).all() and (y <= x.amax(dim=(2, 3)) + 1e-6).all()
        gaps.append(float((x.amax(dim=(2, 3)) - y).max()))
        previous = y
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01 * float(x.amax())
    # the bound at p: max * (1/n)^(1/p) <= GeM_p <= max (one of n values at the maximum)
    n = 12
    assert (y >= x.amax(dim=(2, 3)) * (1 / n) ** (1 / 256.0) - 1e-6).all()


def test_gem_does_not_overflow_and_clamps_to_eps():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 3, 4) + 0.1
    gem = GeM()
    big = x * 1e13  # x^3 is inf in float32 here; GeM is homogeneous of degree 1, so the result scales by 1e13
    torch.testing.assert_close(gem(big), gem(x) * 1e13)
    # inputs are clamped to eps: a map of non-positive values pools to eps
    assert torch.equal(gem(-torch.ones(1, 2, 3, 3)), torch.full((1, 2), 1e-6))


def test_gem_p_is_one_learnable_parameter_with_a_gradient():
    gem = GeM()
    assert [name for name, _ in gem.named_parameters()] == ["p"] and gem.p.item() == 3.0
    x = torch.rand(2, 5, 3, 4) + 0.1
    gem(x).sum().backward()
    # d/dp of the power mean is >= 0 (it grows with p), > 0 where the values are not all equal
    assert torch.isfinite(gem.p.grad) and gem.p.grad > 0
    assert "p=3.0000" in repr(gem)
    with pytest.raises(ValueError, match="p must be > 0, got 0"):
        GeM(p=0)


def test_global_pool_switch():
    x = torch.rand(2, 5, 3, 4)
    assert POOLINGS == ("avg", "max", "gem")
    torch.testing.assert_close(global_pool("avg")(x), x.mean(dim=(2, 3)))
    torch.testing.assert_close(global_pool("max")(x), x.amax(dim=(2, 3)))
    gem = global_pool("gem")
    assert isinstance(gem, GeM) and gem.p.item() == 3.0  # Robust-ReID's initial p (Eq. 6)
    assert global_pool("gem") is not gem  # each call a fresh module: one p per pooling layer
    with pytest.raises(ValueError, match=r"pooling must be one of \('avg', 'max', 'gem'\), got 'median'"):
        global_pool("median")
