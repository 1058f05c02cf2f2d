"""Building blocks of HA-CNN and Robust-ReID.

- ``conv_bn_act``: convolution + BatchNorm (+ ReLU), the unit both networks are made of.
- ``InceptionA`` / ``InceptionB``: the blocks of the HA-CNN baseline (Li et al., CVPR 2018, Fig. 2); B halves the
  spatial size.
- ``ShuffleA`` / ``ShuffleB``: the blocks that replace them in Robust-ReID (paper Section 3.2, Figure 5), the
  two ShuffleNetV2 units (Ma et al., ECCV 2018). Shuffle-A splits the channels into two equal halves, keeps
  one as it is and runs 1x1 -> depthwise 3x3 -> 1x1 on the other, then shuffles. Shuffle-B runs convolutions on
  both halves and so can change the channel count (stride 1) or halve the spatial size (stride 2).
- ``GeM``: generalised-mean pooling (paper Eq. 6, Radenovic et al.), with a learnable exponent initialised to 3.
- ``global_pool``: the pooling switch of Table 2 column f (avg / max / gem).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "channel_shuffle",
    "concat_shuffle",
    "conv_bn_act",
    "InceptionA",
    "InceptionB",
    "ShuffleA",
    "ShuffleB",
    "GeM",
    "global_pool",
    "POOLINGS",
]

POOLINGS = ("avg", "max", "gem")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet's channel shuffle).

    ``(B, g*c, H, W) -> (B, c*g, H, W)`` where output channel ``i*g + j`` is input channel ``j*c + i``.
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels do not split into {groups} equal groups")
    x = x.view(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)


def concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``channel_shuffle(torch.cat([a, b], 1), 2)`` in one copy: output channel ``2i`` is ``a[:, i]``, ``2i+1``
    is ``b[:, i]``. Stacking on a new axis after the channels interleaves them without the extra pass."""
    if a.shape != b.shape:
        raise ValueError(f"concat_shuffle: both halves need one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    batch, channels, height, width = a.shape
    if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        # NHWC storage: interleave along the innermost (channel) axis, keep the channels_last layout.
        nhwc = torch.stack([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)], dim=-1)
        return nhwc.view(batch, height, width, 2 * channels).permute(0, 3, 1, 2)
    return torch.stack([a, b], dim=2).reshape(batch, 2 * channels, height, width)


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """``kernel_size`` x ``kernel_size`` convolution ("same" padding, no bias), BatchNorm, optional ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _check_divisible(block: str, out_channels: int, parts: int) -> None:
    if out_channels % parts:
        raise ValueError(f"{block}: out_channels={out_channels} must be divisible by {parts}")


class InceptionA(nn.Module):
    """HA-CNN Inception-A (stride 1): three 1x1 -> 3x3 streams and an avg-pool -> 1x1 stream, each out/4 wide."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        _check_divisible("InceptionA", out_channels, 4)
        mid = out_channels // 4
        self.stream1 = nn.Sequential(conv_bn_act(in_channels, mid, 1), conv_bn_act(mid, mid, 3))
        self.stream2 = nn.Sequential(conv_bn_act(in_channels, mid, 1), conv_bn_act(mid, mid, 3))
        self.stream3 = nn.Sequential(conv_bn_act(in_channels, mid, 1), conv_bn_act(mid, mid, 3))
        self.stream4 = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn_act(in_channels, mid, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.stream1(x), self.stream2(x), self.stream3(x), self.stream4(x)], dim=1)


class InceptionB(nn.Module):
    """HA-CNN Inception-B (stride 2): 1x1 -> 3x3/2, 1x1 -> 3x3 -> 3x3/2 (out/4 each), max-pool/2 -> 1x1 (out/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        _check_divisible("InceptionB", out_channels, 4)
        mid = out_channels // 4
        self.stream1 = nn.Sequential(conv_bn_act(in_channels, mid, 1), conv_bn_act(mid, mid, 3, stride=2))
        self.stream2 = nn.Sequential(
            conv_bn_act(in_channels, mid, 1), conv_bn_act(mid, mid, 3), conv_bn_act(mid, mid, 3, stride=2)
        )
        self.stream3 = nn.Sequential(nn.MaxPool2d(3, 2, 1), conv_bn_act(in_channels, 2 * mid, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.stream1(x), self.stream2(x), self.stream3(x)], dim=1)


def _shuffle_branch(in_channels: int, mid_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The convolution branch of both Shuffle blocks: 1x1 -> depthwise 3x3 (stride) -> 1x1 (Figure 5)."""
    return nn.Sequential(
        conv_bn_act(in_channels, mid_channels, 1),
        conv_bn_act(mid_channels, mid_channels, 3, stride=stride, groups=mid_channels, act=False),
        conv_bn_act(mid_channels, out_channels, 1),
    )


class ShuffleA(nn.Module):
    """Shuffle-A (Figure 5): channel split; ``identity`` half untouched, ``branch`` half 1x1 -> dw 3x3 -> 1x1.

    Keeps channels and spatial size, so it can be repeated (Table 1: 7/10/7 times at 1x, 8/11/8 at 2x).
    """

    def __init__(self, channels: int):
        super().__init__()
        _check_divisible("ShuffleA", channels, 2)
        half = channels // 2
        self.branch = _shuffle_branch(half, half, half, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity, rest = x.chunk(2, dim=1)
        return concat_shuffle(identity, self.branch(rest))


class ShuffleB(nn.Module):
    """Shuffle-B (Figure 5): both halves convolved, so it can change channels and/or down-sample.

    ``shortcut``: depthwise 3x3 (stride) -> 1x1 to out/2; ``branch``: 1x1 -> depthwise 3x3 (stride) -> 1x1 to
    out/2; concatenated and shuffled. ``mid_channels`` is the width inside ``branch`` (default out/2, as in
    ShuffleNetV2's down-sampling unit).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, mid_channels: int | None = None):
        super().__init__()
        _check_divisible("ShuffleB", out_channels, 2)
        if stride not in (1, 2):
            raise ValueError(f"ShuffleB: stride must be 1 or 2, got {stride}")
        half = out_channels // 2
        mid = half if mid_channels is None else mid_channels
        self.shortcut = nn.Sequential(
            conv_bn_act(in_channels, in_channels, 3, stride=stride, groups=in_channels, act=False),
            conv_bn_act(in_channels, half, 1),
        )
        self.branch = _shuffle_branch(in_channels, mid, half, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return concat_shuffle(self.shortcut(x), self.branch(x))


class GeM(nn.Module):
    """Generalised-mean pooling, paper Eq. 6: ``(mean_i x_i^p)^(1/p)`` over each map, p learnable (init 3).

    p -> 1 is average pooling, p -> inf max pooling. One exponent per layer, shared by all channels.
    Inputs are clamped to ``eps`` so the fractional power stays finite, and scaled by their maximum so the
    power cannot overflow. ``(B, C, H, W) -> (B, C)``.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM: p must be > 0, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Computed as m * mean((x / m)^p)^(1/p) with m the map's maximum, which is the same value but cannot
        # overflow: early in training (BatchNorm running statistics not settled) activations of 1e13 occur,
        # and their cube is inf in float32.
        x = x.clamp(min=self.eps)
        peak = x.amax(dim=(2, 3), keepdim=True).detach()
        return (x / peak).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p) * peak.flatten(1)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}"


class _AvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _MaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


_POOLS = {"avg": _AvgPool, "max": _MaxPool, "gem": GeM}


def global_pool(kind: str) -> nn.Module:
    """Global pooling ``(B, C, H, W) -> (B, C)``: ``avg`` (HA-CNN), ``max`` or ``gem`` (Robust-ReID, Eq. 6)."""
    if kind not in _POOLS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
    return _POOLS[kind]()
