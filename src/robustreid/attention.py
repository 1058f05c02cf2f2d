"""Harmonious attention (HA block) of HA-CNN (Li et al., CVPR 2018, Section 3.1), used unchanged by Robust-ReID.

Each HA block (Table 1 rows "Soft-Attn k" / "Hard-Attn k") looks at a stage's output and returns
- a *soft* attention mask of the same shape, the product of a spatial map (one channel, from the cross-channel
  mean) and a channel map (squeeze-and-excitation with reduction 16), mixed by a 1x1 convolution and squashed
  by a sigmoid; the global stream is multiplied by it;
- *hard* attention: one translation (tx, ty) per region for ``num_regions`` horizontal stripes, predicted from
  the pooled features by a linear layer whose weights start at zero and whose bias places the stripes at
  evenly spaced heights. ``crop_regions`` cuts the stripes (full width, 1/num_regions of the height) out of a
  feature map with a bilinear spatial transformer; the local branch runs on them.

Choices where the HA-CNN description leaves room (both keep the parameter count):
- the sigmoid is applied to conv + BN of the mixed map (no ReLU before it, so the mask spans (0, 1));
- the stripes are sampled once, straight at the local branch's resolution (e.g. 24x28), rather than sampled at
  the source resolution and then resized.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_bn_act

__all__ = [
    "SpatialAttention",
    "ChannelAttention",
    "SoftAttention",
    "HardAttention",
    "HarmoniousAttention",
    "crop_regions",
]


class SpatialAttention(nn.Module):
    """Cross-channel mean -> 3x3 conv stride 2 -> bilinear resize back -> 1x1 scaling conv: ``(B, 1, H, W)``."""

    def __init__(self):
        super().__init__()
        self.conv = conv_bn_act(1, 1, 3, stride=2)
        self.scale = conv_bn_act(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean(dim=1, keepdim=True))
        y = F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.scale(y)


class ChannelAttention(nn.Module):
    """Global average pool -> 1x1 conv (C -> C/r) -> 1x1 conv (C/r -> C): ``(B, C, 1, 1)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if channels % reduction:
            raise ValueError(f"ChannelAttention: channels={channels} must be divisible by reduction={reduction}")
        self.squeeze = conv_bn_act(channels, channels // reduction, 1)
        self.excite = conv_bn_act(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.excite(self.squeeze(x.mean(dim=(2, 3), keepdim=True)))


class SoftAttention(nn.Module):
    """Soft attention mask in (0, 1): sigmoid(BN(1x1 conv(spatial x channel))), same shape as the input."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention(channels, reduction)
        self.mix = conv_bn_act(channels, channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mix(self.spatial(x) * self.channel(x)))


class HardAttention(nn.Module):
    """Region translations ``(B, num_regions, 2)`` in [-1, 1] (normalised (tx, ty)), tanh(linear(pool(x))).

    Initialised to the even layout: zero weights, biases ``atanh(ty)`` so that stripe ``i`` starts exactly at
    ``ty = -1 + (2i + 1) / num_regions`` (-0.75, -0.25, 0.25, 0.75 for four stripes), tx = 0: the four stripes
    tile the image. (HA-CNN's public code puts ``ty`` itself in the bias, so its stripes start at tanh(ty).)
    """

    def __init__(self, channels: int, num_regions: int = 4):
        super().__init__()
        self.num_regions = num_regions
        self.fc = nn.Linear(channels, 2 * num_regions)
        with torch.no_grad():
            self.fc.weight.zero_()
            ty = torch.tensor([-1 + (2 * i + 1) / num_regions for i in range(num_regions)])
            self.fc.bias.copy_(torch.stack([torch.zeros_like(ty), torch.atanh(ty)], dim=1).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x.mean(dim=(2, 3)))).view(-1, self.num_regions, 2)


class HarmoniousAttention(nn.Module):
    """HA block: ``x -> (soft_mask, theta)``; the caller multiplies ``x`` by the mask and crops with ``theta``."""

    def __init__(self, channels: int, num_regions: int = 4, reduction: int = 16):
        super().__init__()
        self.soft = SoftAttention(channels, reduction)
        self.hard = HardAttention(channels, num_regions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.soft(x), self.hard(x)


def crop_regions(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample ``R`` horizontal stripes of ``x`` at translations ``theta``, each resized to ``size`` (h, w).

    ``x``: ``(B, C, H, W)``; ``theta``: ``(B, R, 2)`` normalised centre offsets (tx, ty) in [-1, 1]; a stripe
    spans the full width and 1/R of the height (HA-CNN's scale factors s_w = 1, s_h = 1/R). Bilinear sampling,
    zero outside the map, differentiable in ``x`` and ``theta``. Returns ``(B * R, C, h, w)``, region-major within
    each image (image 0 region 0, image 0 region 1, ...). The R sampling grids are stacked along the height so
    ``grid_sample`` runs once without copying ``x``.
    """
    batch, channels = x.shape[:2]
    num_regions = theta.shape[1]
    h, w = size
    # Normalised output coordinates (pixel centres, align_corners=False), mapped by x' = s x + t.
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
    theta = theta.to(x.dtype)
    gx = xs.view(1, 1, 1, w) + theta[..., 0].view(batch, num_regions, 1, 1)
    gy = ys.view(1, 1, h, 1) / num_regions + theta[..., 1].view(batch, num_regions, 1, 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # (B, R, h, w, 2)
    out = F.grid_sample(x, grid.view(batch, num_regions * h, w, 2), mode="bilinear", align_corners=False)
    return out.view(batch, channels, num_regions, h, w).transpose(1, 2).reshape(batch * num_regions, channels, h, w)
