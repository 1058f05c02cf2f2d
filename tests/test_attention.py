"""Harmonious attention (``robustreid.attention``) against independent references: hand-built weights whose output
is worked out by hand, the invariances each branch's description implies (the spatial map sees only the
cross-channel mean, the channel map only the per-channel spatial means), the (0, 1) range of the soft mask, the
even stripe layout of the hard attention, and ``crop_regions`` against the textbook spatial transformer
(``F.affine_grid`` + ``F.grid_sample``, one region at a time)."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustreid.attention import (
    ChannelAttention,
    HardAttention,
    HarmoniousAttention,
    SoftAttention,
    SpatialAttention,
    crop_regions,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BN_EPS = 1e-5  # eval mode at init, a BatchNorm divides by sqrt(1 + eps)


def _with_same_channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Another tensor with the same cross-channel mean at every pixel: add a zero-mean-over-channels field."""
    noise = torch.randn_like(x)
    return x + noise - noise.mean(dim=1, keepdim=True)


def _with_same_spatial_means(x: torch.Tensor) -> torch.Tensor:
    """Another tensor with the same spatial mean in every channel: shuffle the pixels of each map."""
    b, c, h, w = x.shape
    flat = x.flatten(2)
    perm = torch.randperm(h * w)
    return flat[..., perm].view(b, c, h, w)


# ---- spatial attention -----------------------------------------------------------------------------------------


def test_spatial_attention_hand_built_identity_path():
    att = SpatialAttention().eval()
    with torch.no_grad():
        att.conv[0].weight.zero_()
        att.conv[0].weight[0, 0, 1, 1] = 1.0  # a 3x3 kernel that only passes its centre
        att.scale[0].weight.fill_(1.0)
    # per-pixel channel mean 0.7 everywhere, channels far from it: conv picks it, BN / 1x1 / BN pass it
    x = _with_same_channel_mean(torch.full((2, 6, 8, 5), 0.7))
    expected = torch.full((2, 1, 8, 5), 0.7 / (1 + BN_EPS))  # two BatchNorms, each / sqrt(1 + eps)
    torch.testing.assert_close(att(x), expected)
    assert torch.equal(att(-x.abs() - 0.1), torch.zeros(2, 1, 8, 5))  # negative mean: cut by the ReLUs


def test_spatial_attention_sees_only_the_cross_channel_mean():
    torch.manual_seed(0)
    att = SpatialAttention().train()
    x = torch.randn(3, 8, 10, 6)
    y = att(x)
    assert y.shape == (3, 1, 10, 6)  # one channel, the input's size (resized back after the stride-2 conv)
    torch.testing.assert_close(att(_with_same_channel_mean(x)), y)
    assert not torch.allclose(att(x.flip(2)), y)  # but it does see where things are


# ---- channel attention ------------------------------------------------------------------------------------------


def test_channel_attention_hand_built():
    att = ChannelAttention(16, reduction=16).eval()  # 16 -> 1 -> 16
    with torch.no_grad():
        att.squeeze[0].weight.fill_(1 / 16)  # the hidden unit: the mean of the 16 channel means
        att.excite[0].weight.fill_(1.0)  # every channel gets it back
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 3) + 0.3
    means = x.mean(dim=(2, 3))
    expected = F.relu(means.mean(dim=1)) / (1 + BN_EPS)
    out = att(x)
    assert out.shape == (2, 16, 1, 1)
    torch.testing.assert_close(out.flatten(1), expected[:, None].expand(2, 16))


def test_channel_attention_sees_only_spatial_means():
    torch.manual_seed(0)
    att = ChannelAttention(32).train()
    x = torch.randn(4, 32, 6, 5)
    y = att(x)
    assert y.shape == (4, 32, 1, 1) and (y >= 0).all()  # squeeze-and-excitation ending in ReLU
    torch.testing.assert_close(att(_with_same_spatial_means(x)), y)
    assert att.squeeze[0].out_channels == 2  # reduction 16: 32 -> 2 -> 32
    with pytest.raises(ValueError, match="channels=24 must be divisible by reduction=16"):
        ChannelAttention(24)


# ---- soft attention ---------------------------------------------------------------------------------------------


def test_soft_attention_mask_is_in_the_open_unit_interval():
    torch.manual_seed(0)
    att = SoftAttention(32).train()
    x = torch.randn(4, 32, 10, 4) * 3
    with torch.no_grad():
        mask = att(x)
    assert mask.shape == x.shape
    assert 0 < float(mask.min()) and float(mask.max()) < 1
    # not a constant: spatial and channel maps vary
    assert float(mask.std()) > 0.01


@pytest.mark.parametrize("beta,value", [(0.0, 0.5), (math.log(3), 0.75), (-math.log(3), 0.25)])
def test_soft_attention_ends_in_a_sigmoid(beta, value):
    # with the mixing 1x1 conv zeroed, BN(0) = beta in eval mode, so every mask entry is sigmoid(beta)
    att = SoftAttention(16).eval()
    with torch.no_grad():
        att.mix[0].weight.zero_()
        att.mix[1].bias.fill_(beta)
    mask = att(torch.randn(2, 16, 6, 4))
    torch.testing.assert_close(mask, torch.full((2, 16, 6, 4), value))


def test_soft_attention_is_the_product_of_spatial_and_channel_maps():
    torch.manual_seed(0)
    att = SoftAttention(16).eval()
    x = torch.randn(2, 16, 6, 4)
    product = att.spatial(x) * att.channel(x)  # (B, 1, H, W) * (B, C, 1, 1) -> (B, C, H, W)
    assert product.shape == x.shape
    conv, bn = att.mix
    expected = torch.sigmoid((F.conv2d(product, conv.weight)) / math.sqrt(1 + BN_EPS))
    torch.testing.assert_close(att(x), expected)


# ---- hard attention ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("regions,ty", [(4, [-0.75, -0.25, 0.25, 0.75]), (2, [-0.5, 0.5]), (1, [0.0])])
def test_hard_attention_starts_at_the_even_layout(regions, ty):
    torch.manual_seed(0)
    att = HardAttention(24, num_regions=regions)
    theta = att(torch.randn(3, 24, 5, 4) * 10)
    assert theta.shape == (3, regions, 2)
    expected = torch.tensor([[0.0, t] for t in ty]).expand(3, regions, 2)
    torch.testing.assert_close(theta, expected)  # whatever the input: the weights start at zero


def test_hard_attention_layout_is_tx_ty_per_region():
    att = HardAttention(8, num_regions=3)
    bias = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    with torch.no_grad():
        att.fc.bias.copy_(bias)
    theta = att(torch.randn(2, 8, 4, 4))
    torch.testing.assert_close(theta[0], torch.tanh(bias).view(3, 2))  # region i: (tx, ty) = tanh(bias[2i:2i+2])
    torch.manual_seed(0)
    with torch.no_grad():
        att.fc.weight.normal_(0, 10)
    x = torch.randn(2, 8, 4, 4)
    theta = att(x)
    assert (theta.abs() <= 1).all() and not torch.allclose(theta[0], theta[1])  # now it depends on the input ...
    torch.testing.assert_close(att(_with_same_spatial_means(x)), theta)  # ... through the pooled features only


def test_harmonious_attention_on_table1_sizes():
    # Table 1: an HA block after each stage (1x widths at 40x16, 20x8, 10x4), four regions
    for channels, size in ((128, (40, 16)), (256, (20, 8)), (384, (10, 4))):
        block = HarmoniousAttention(channels)
        x = torch.randn(2, channels, *size)
        mask, theta = block(x)
        assert mask.shape == x.shape and theta.shape == (2, 4, 2)


# ---- crop_regions: the spatial transformer -------------------------------------------------------------------


def _crop_by_affine_grid(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Reference: one affine transform per (image, region), [[s_w, 0, tx], [0, s_h, ty]] with s_w = 1 and
    s_h = 1 / R (HA-CNN's stripes), sampled by PyTorch's own spatial-transformer functions."""
    batch, channels = x.shape[:2]
    regions = theta.shape[1]
    crops = []
    for b in range(batch):
        for r in range(regions):
            tx, ty = theta[b, r].tolist()
            matrix = torch.tensor([[[1.0, 0.0, tx], [0.0, 1.0 / regions, ty]]], dtype=x.dtype)
            grid = F.affine_grid(matrix, [1, channels, *size], align_corners=False)
            crops.append(F.grid_sample(x[b:b + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.cat(crops)


@pytest.mark.parametrize("regions,size", [(4, (5, 7)), (4, (24, 28)), (2, (3, 3)), (1, (6, 4))])
def test_crop_regions_matches_affine_grid_reference(regions, size):
    # float64: the two compute the sampling coordinates in a different order, which in float32 moves a sample by
    # ~1e-6 (a visible difference next to the zero padding); in float64 they agree to rounding
    torch.manual_seed(0)
    x = torch.randn(3, 5, 12, 9, dtype=torch.float64)
    theta = torch.rand(3, regions, 2, dtype=torch.float64) * 2 - 1
    out = crop_regions(x, theta, size)
    assert out.shape == (3 * regions, 5, *size)  # region-major within each image
    torch.testing.assert_close(out, _crop_by_affine_grid(x, theta, size), rtol=0, atol=1e-12)


def test_crop_regions_initial_layout_equals_row_slices():
    # At initialisation the hard attention places 4 full-width stripes at evenly spaced heights; with an output
    # of exactly a quarter of the rows, sampling lands on pixel centres and each crop is a slice of the map.
    x = torch.randn(2, 3, 8, 4)
    theta = HardAttention(3)(torch.randn(2, 3, 5, 5))
    crops = crop_regions(x, theta, (2, 4)).view(2, 4, 3, 2, 4)
    for r in range(4):
        torch.testing.assert_close(crops[:, r], x[:, :, 2 * r : 2 * r + 2])


def test_crop_regions_translation_moves_the_window():
    x = torch.arange(16.0).view(1, 1, 16, 1).expand(1, 1, 16, 2).contiguous()
    # One region (scale 1 in height): a shift of ty = 2 * 4/16 moves the window down by 4 rows.
    crop = crop_regions(x, torch.tensor([[[0.0, 0.5]]]), (8, 2))
    assert crop.shape == (1, 1, 8, 2)
    # Output pixel i samples input row 2i + 4.5 (half-way between rows 2i+4 and 2i+5) while inside the map;
    # past the bottom edge the zero padding comes in.
    torch.testing.assert_close(crop[0, 0, :6, 0], torch.tensor([4.0, 6, 8, 10, 12, 14]) + 0.5)
    assert float(crop[0, 0, 7, 0]) == 0.0
    # tx = 1 shifts by half the width: on an 8-column ramp, output column j (of 4) samples input column
    # 2j + 0.5 + 4, i.e. 4.5 and 6.5, then past the right edge (zeros)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    shifted = crop_regions(ramp, torch.tensor([[[1.0, 0.0]]]), (4, 4))
    torch.testing.assert_close(shifted[0, 0], torch.tensor([4.5, 6.5, 0.0, 0.0]).expand(4, 4))


def test_crop_regions_is_differentiable_in_features_and_translations():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, requires_grad=True)
    theta = (torch.rand(2, 4, 2) * 1.2 - 0.6).requires_grad_()
    crop_regions(x, theta, (4, 6)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert theta.grad is not None and (theta.grad[..., 1].abs() > 0).all()
