"""HA-CNN and Robust-ReID: one network skeleton, built from a stage table (paper Section 2, Section 3.2, Table 1).

Data flow (Table 1, Figure 4), for a 160x64 input::

    stem conv 3x3/2 ............................................ 80x32
    stage k (k = 1, 2, 3): blocks -> HA block (soft mask x, hard theta)   40x16, 20x8, 10x4
        global: y_k = stage_k(y_{k-1}) * soft_mask_k
        local:  l_k = local_block_k(crop(y_{k-1}, theta_k) + l_{k-1})    4 x (12x14, 6x7, 3x4)
    global: pool(y_3) -> FC -> [L2]              (512-d at 1x, 960-d at 2x)
    local:  pool each l_3 region, concatenate -> FC -> [L2]
    identity classifiers on each branch feature (no bias with the Bag of Tricks)

Stage blocks. ``inception`` (HA-CNN): Inception-A then Inception-B (stride 2). ``shuffle`` (Robust-ReID):
Shuffle-B (stride 1, channel change) + N x Shuffle-A + Shuffle-B (stride 2, the stage's only down-sampling, at
its end). The local branch uses one stride-2 block per level (Inception-B or Shuffle-B) shared by the regions,
on crops of the stage's *input* (the stem output, then the previous stage's attended output) resized to
24x28, 12x14, 6x7, adding the previous level's local map, exactly as HA-CNN wires it.

Readings of Table 1 (``tables-decoded.md``) taken here, and why:
- Shuffle-B's convolution branch is out/2 wide (ShuffleNetV2's down-sampling unit); Shuffle-A's branch is
  half the channels. HA blocks are HA-CNN's (channel reduction 16, four regions).
- The local blocks have the global stage widths (128/256/384 at 1x, 240/320/480 at 2x), like HA-CNN.
- Each FC head is Linear -> BatchNorm1d, 512-d at 1x and 960-d at 2x, then L2 normalisation (Figure 4) when
  ``l2_norm`` is on. HA-CNN's head has a ReLU after the BatchNorm (``hacnn`` keeps it); the paper does not say
  whether Robust-ReID keeps it. With it every unit descriptor lies in the positive orthant and about half its
  coordinates are 0. Without it and with the default init below, Robust-ReID learned faster on the validation
  set (3 seeds, both changes together; the ReLU alone is a one-seed lead: README, "Learning study"), so
  ``head_relu`` is off.
- Convolutions start from PyTorch's own init (``conv_init="default"``, as torchvision's ShuffleNetV2, which
  sets none), not Kaiming fan-out (HA-CNN's, torchvision's ResNet's): every convolution is followed by
  BatchNorm, so the init's scale only sets each layer's effective learning rate, and fan-out gives the
  depthwise 3x3s filters of squared norm 2 / C (0.03 at C = 64). The paper gives no init; the README's
  learning study measures both.
- GeM (Eq. 6) has one learnable p per pooling layer (global, and one shared by the four regions).
This plain reading measures 2.91M parameters / 0.68 GMACs at 1x (targets 2.9M / 0.72) and 5.83M / 1.62 GMACs
at 2x (targets 6.4M / 1.68); see ``robustreid profile`` and the README for the gap at 2x.

The output never depends on ``model.training``: ``forward`` returns a ``ReIDOutput`` (branch features, logits and
the test descriptor ``embedding`` = the two L2-normalised branch features concatenated) in both modes; the
losses live outside the model. The model carries its data config (``model.data_config``: input size, mean, std).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import HarmoniousAttention, crop_regions
from .layers import POOLINGS, InceptionA, InceptionB, ShuffleA, ShuffleB, conv_bn_act, global_pool

__all__ = [
    "Architecture",
    "ReIDNet",
    "ReIDOutput",
    "WIDTHS",
    "BLOCKS",
    "MODELS",
    "arch_name",
    "DEFAULT_DATA_CONFIG",
    "build_model",
    "resolve_architecture",
    "list_models",
    "hacnn",
    "robustreid_1x",
    "robustreid_2x",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DATA_CONFIG = {"input_size": (160, 64), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}

BLOCKS = ("inception", "shuffle")
CONV_INITS = ("fan_out", "default")

# Table 1, the two widths side by side: stem channels, stage output channels, Shuffle-A repeats per stage,
# FC dimension of each head. HA-CNN's widths are those of the 1x column (its blocks ignore the repeats).
WIDTHS: dict[str, dict] = {
    "1x": dict(stem_channels=32, stage_channels=(128, 256, 384), stage_repeats=(7, 10, 7), feat_dim=512),
    "2x": dict(stem_channels=36, stage_channels=(240, 320, 480), stage_repeats=(8, 11, 8), feat_dim=960),
}


@dataclass(frozen=True)
class Architecture:
    """Everything that defines a network; each Table 2 architecture column is one field.

    block: "inception" (HA-CNN) or "shuffle" (Table 2 "Shuffle blocks", column d off);
    pooling: "avg" (HA-CNN), "max" or "gem" (Table 2 "GeM", column f off -> avg);
    l2_norm: L2-normalise each branch feature in training too (Table 2 "L2 normalization", column c off);
    stem_channels / stage_channels / stage_repeats / feat_dim: the width (Table 2 "Deeper & wider", 1x vs 2x);
    local_branch: the hard-attention local branch on / off;
    classifier_bias: identity classifiers with bias (HA-CNN) or without (Bag of Tricks, Table 2 row 1);
    head_relu: a ReLU after each FC head's BatchNorm (HA-CNN's head) or none (Robust-ReID's default here);
    conv_init: how convolution weights start, one of ``CONV_INITS`` (see ``init_conv``);
    classifier_norm: the initial norm of each identity classifier row when ``l2_norm`` is on (the logit scale of
    a unit feature; the SGD steps barely change it in a short run).
    The paper fixes none of the last three; the README's learning study measures them.
    """

    block: str = "shuffle"
    pooling: str = "gem"
    l2_norm: bool = True
    local_branch: bool = True
    classifier_bias: bool = False
    head_relu: bool = False
    conv_init: str = "default"
    classifier_norm: float = 8.0
    stem_channels: int = 32
    stage_channels: tuple[int, int, int] = (128, 256, 384)
    stage_repeats: tuple[int, int, int] = (7, 10, 7)
    feat_dim: int = 512
    num_regions: int = 4
    local_sizes: tuple[tuple[int, int], ...] = ((24, 28), (12, 14), (6, 7))
    input_size: tuple[int, int] = (160, 64)

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.conv_init not in CONV_INITS:
            raise ValueError(f"conv_init must be one of {CONV_INITS}, got {self.conv_init!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if len(self.stage_channels) != 3 or len(self.stage_repeats) != 3 or len(self.local_sizes) != 3:
            raise ValueError("stage_channels, stage_repeats and local_sizes need one entry per stage (3)")
        if any(r < 0 for r in self.stage_repeats):
            raise ValueError(f"stage_repeats must be >= 0, got {self.stage_repeats}")
        if not self.classifier_norm > 0:
            raise ValueError(f"classifier_norm must be > 0, got {self.classifier_norm}")
        if self.feat_dim <= 0 or self.num_regions <= 0:
            raise ValueError(f"feat_dim and num_regions must be positive, got {self.feat_dim}, {self.num_regions}")

    @property
    def feature_dim(self) -> int:
        """Length of the test descriptor: global (+ local) head dimension."""
        return self.feat_dim * (2 if self.local_branch else 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}")
        tuples = {"stage_channels", "stage_repeats", "input_size"}
        d = {k: (tuple(v) if k in tuples else v) for k, v in d.items()}
        # Checkpoints written before the field existed were trained with the ReLU head.
        d.setdefault("head_relu", True)
        d.setdefault("classifier_norm", 8.0)
        if "local_sizes" in d:
            d["local_sizes"] = tuple(tuple(s) for s in d["local_sizes"])
        return cls(**d)


MODELS: dict[str, Architecture] = {
    # HA-CNN as published (Li et al.'s code): ReLU after the FC head's BatchNorm, Kaiming fan-out convolutions.
    "hacnn": Architecture(block="inception", pooling="avg", l2_norm=False, classifier_bias=True, head_relu=True,
                          conv_init="fan_out", **WIDTHS["1x"]),
    "robustreid_1x": Architecture(block="shuffle", pooling="gem", l2_norm=True, **WIDTHS["1x"]),
    "robustreid_2x": Architecture(block="shuffle", pooling="gem", l2_norm=True, **WIDTHS["2x"]),
}


def init_conv(conv: nn.Conv2d, scheme: str) -> None:
    """Initialise one convolution's weight by ``scheme`` (``CONV_INITS``; the paper gives no init).

    - ``"fan_out"``: Kaiming normal over the fan-out (torchvision's ResNet), variance 2 / (out * k * k
      / groups). A filter's squared norm is then ``2 * fan_in / fan_out``: 2 for a square 1x1, but ``2 / C`` for a
      depthwise 3x3 of C channels (0.03 at C = 64).
    - ``"default"``: PyTorch's own ``Conv2d.reset_parameters`` (Kaiming uniform, a = sqrt(5)): variance
      1 / (3 * fan_in), so every filter of every layer starts with squared norm ~1/3.
    Every convolution here is followed by BatchNorm, so the init's scale does not change the network's function,
    only each layer's effective learning rate (~lr / ||w||^2).
    """
    if scheme == "fan_out":
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    elif scheme == "default":
        conv.reset_parameters()
    else:
        raise ValueError(f"conv_init must be one of {CONV_INITS}, got {scheme!r}")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ReIDOutput(NamedTuple):
    """What the network returns in train and eval mode alike.

    global_feat / local_feat: branch features ``(B, feat_dim)``, L2-normalised when ``l2_norm`` is on (the
    triplet loss uses them); global_logits / local_logits: identity logits (the ID loss uses them; None without
    classifiers); embedding: the test descriptor ``(B, feature_dim)``, each branch L2-normalised, concatenated.
    """

    global_feat: torch.Tensor
    local_feat: torch.Tensor | None
    global_logits: torch.Tensor | None
    local_logits: torch.Tensor | None
    embedding: torch.Tensor


def _stage(block: str, in_channels: int, out_channels: int, repeats: int) -> nn.Sequential:
    if block == "inception":
        return nn.Sequential(InceptionA(in_channels, out_channels), InceptionB(out_channels, out_channels))
    return nn.Sequential(
        ShuffleB(in_channels, out_channels, stride=1),
        *[ShuffleA(out_channels) for _ in range(repeats)],
        ShuffleB(out_channels, out_channels, stride=2),
    )


def _local_block(block: str, in_channels: int, out_channels: int) -> nn.Module:
    return InceptionB(in_channels, out_channels) if block == "inception" else ShuffleB(in_channels, out_channels, 2)


def _head(in_features: int, feat_dim: int, relu: bool) -> nn.Sequential:
    layers = [nn.Linear(in_features, feat_dim), nn.BatchNorm1d(feat_dim)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ReIDNet(nn.Module):
    """The HA-CNN / Robust-ReID network described by an ``Architecture`` (see the module docstring)."""

    def __init__(self, arch: Architecture, num_classes: int):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no identity classifiers), got {num_classes}")
        self.arch = arch
        self.num_classes = num_classes
        self.data_config = {**DEFAULT_DATA_CONFIG, "input_size": tuple(arch.input_size)}
        widths = (arch.stem_channels, *arch.stage_channels)

        self.stem = conv_bn_act(3, arch.stem_channels, 3, stride=2)
        self.stages = nn.ModuleList(
            _stage(arch.block, widths[k], widths[k + 1], arch.stage_repeats[k]) for k in range(3)
        )
        self.attention = nn.ModuleList(HarmoniousAttention(c, arch.num_regions) for c in arch.stage_channels)
        self.global_pool = global_pool(arch.pooling)
        self.global_head = _head(arch.stage_channels[-1], arch.feat_dim, arch.head_relu)
        if arch.local_branch:
            self.local_blocks = nn.ModuleList(_local_block(arch.block, widths[k], widths[k + 1]) for k in range(3))
            self.local_pool = global_pool(arch.pooling)
            self.local_head = _head(arch.num_regions * arch.stage_channels[-1], arch.feat_dim, arch.head_relu)
        n_branches = 2 if arch.local_branch else 1
        self.classifiers = nn.ModuleList(
            nn.Linear(arch.feat_dim, num_classes, bias=arch.classifier_bias) for _ in range(n_branches if num_classes else 0)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        arch = self.arch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init_conv(m, arch.conv_init)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_classifiers()

    def _init_classifiers(self) -> None:
        arch = self.arch
        # Bag of Tricks initialises the identity classifiers with std 0.001 on features of norm ~sqrt(dim). On
        # the unit-norm features of Robust-ReID (Figure 4) that would leave the logits, and the ID loss's gradient
        # to the features, ~0 for hundreds of iterations; rows of norm ~8 (std 8/sqrt(feat_dim)) start the
        # logits in the range of a scaled cosine classifier instead: rows of norm ``classifier_norm`` (std
        # classifier_norm / sqrt(feat_dim)). (Our choice; the paper gives no init.)
        std = arch.classifier_norm / arch.feat_dim**0.5 if arch.l2_norm else 0.001
        for clf in self.classifiers:
            nn.init.normal_(clf.weight, std=std)
            if clf.bias is not None:
                nn.init.zeros_(clf.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """New identity classifiers for ``num_classes`` identities (0: none), initialised as at construction;
        the backbone and heads keep their weights (fine-tuning a trained network on another dataset)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no identity classifiers), got {num_classes}")
        arch = self.arch
        n_branches = 2 if arch.local_branch else 1
        device = next(self.parameters()).device
        self.num_classes = num_classes
        self.classifiers = nn.ModuleList(
            nn.Linear(arch.feat_dim, num_classes, bias=arch.classifier_bias, device=device)
            for _ in range(n_branches if num_classes else 0)
        )
        self._init_classifiers()

    @property
    def feature_dim(self) -> int:
        return self.arch.feature_dim

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image batch ``(B, 3, H, W)`` -> branch features ``(global, local)`` after the FC heads (before L2)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        arch = self.arch
        stage_in = self.stem(x)
        local = None
        for k in range(3):
            y = self.stages[k](stage_in)
            mask, theta = self.attention[k](y)
            if arch.local_branch:
                crops = crop_regions(stage_in, theta, arch.local_sizes[k])
                local = self.local_blocks[k](crops if local is None else crops + local)
            stage_in = y * mask
        global_feat = self.global_head(self.global_pool(stage_in))
        if not arch.local_branch:
            return global_feat, None
        pooled = self.local_pool(local).view(x.shape[0], arch.num_regions * local.shape[1])
        return global_feat, self.local_head(pooled)

    def forward_head(self, feats: tuple[torch.Tensor, torch.Tensor | None],
                     pre_logits: bool = False) -> ReIDOutput | torch.Tensor:
        """Branch features (``forward_features``) -> ``ReIDOutput`` (the L2-normalised features of Table 2's
        "L2 norm" column, the identity logits and the test descriptor), or with ``pre_logits=True`` the test
        descriptor alone, ``(B, feature_dim)``: each branch unit-norm, concatenated."""
        branches = [f for f in feats if f is not None]
        embedding = torch.cat([F.normalize(f, dim=1) for f in branches], dim=1)
        if pre_logits:
            return embedding
        if self.arch.l2_norm:
            branches = [F.normalize(f, dim=1) for f in branches]
        logits = [clf(f) for clf, f in zip(self.classifiers, branches)] if self.classifiers else []
        logits += [None] * (2 - len(logits))
        return ReIDOutput(branches[0], branches[1] if len(branches) > 1 else None, logits[0], logits[1], embedding)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The test descriptor only (no classifiers run): ``(B, feature_dim)``, each branch unit-norm."""
        return self.forward_head(self.forward_features(x), pre_logits=True)


def arch_name(arch: Architecture) -> str:
    """The ``build_model`` name whose architecture is exactly ``arch``, else ``"custom"``."""
    return next((name for name, preset in MODELS.items() if preset == arch), "custom")


def list_models() -> list[str]:
    """Names accepted by ``build_model``."""
    return sorted(MODELS)


_OPTION_ALIASES = {"width"}


def build_model(name: str, num_classes: int = 0, **options) -> ReIDNet:
    """Build ``name`` (see ``list_models()``) with ``num_classes`` identity classifiers (0 = none).

    ``options`` switch the Table 2 architecture columns: ``block`` ("inception" / "shuffle"), ``pooling``
    ("avg" / "max" / "gem"), ``l2_norm`` (bool), ``width`` ("1x" / "2x": stem, stage widths, Shuffle-A repeats
    and head size of that Table 1 column), ``local_branch`` (bool), ``classifier_bias`` (bool), or any other
    ``Architecture`` field.
    """
    return ReIDNet(resolve_architecture(name, **options), num_classes)


def resolve_architecture(name: str, **options) -> Architecture:
    """The ``Architecture`` that ``build_model(name, **options)`` builds, without building the network."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    arch = MODELS[name]
    if "width" in options:
        width = options.pop("width")
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {sorted(WIDTHS)}, got {width!r}")
        arch = dataclasses.replace(arch, **WIDTHS[width])
    fields = {f.name for f in dataclasses.fields(Architecture)}
    unknown = set(options) - fields
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for build_model; valid: {sorted(fields | _OPTION_ALIASES)}"
        )
    return dataclasses.replace(arch, **options)


def hacnn(num_classes: int = 0, **options) -> ReIDNet:
    """The HA-CNN baseline (Li et al., CVPR 2018), Table 2 first column."""
    return build_model("hacnn", num_classes, **options)


def robustreid_1x(num_classes: int = 0, **options) -> ReIDNet:
    """Robust-ReID 1x, Table 1 (2.9M parameters, 0.72 GMACs at 160x64)."""
    return build_model("robustreid_1x", num_classes, **options)


def robustreid_2x(num_classes: int = 0, **options) -> ReIDNet:
    """Robust-ReID 2x "deeper and wider", Table 1 (6.4M parameters, 1.68 GMACs at 160x64)."""
    return build_model("robustreid_2x", num_classes, **options)
