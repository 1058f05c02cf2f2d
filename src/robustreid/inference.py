"""Inference-time speed-ups that leave the descriptors unchanged up to float rounding.

Where the CPU time of ``ReIDNet.embed`` goes (``benchmarks/time_profile.py``, ``robustreid_1x``, batch 64,
2 threads): the stage-1 maps (64-128 channels at 80x32) of a 64-image batch are 40-80 MB each, far larger
than the caches, so the 1x1 convolutions, BatchNorm and the channel shuffles all wait on memory. Three
changes, none of which touches the weights' meaning:

* **micro-batches** (:func:`embed_micro_batched`): a large batch runs as slices of ``CPU_MICRO_BATCH``
  images whose maps stay in cache. In eval mode every image's descriptor is independent of the others in
  its batch, so this changes nothing but speed;
* **BatchNorm folded into the layer before it** (:func:`fuse_conv_bn`): eval-mode BatchNorm is an affine map
  per channel, which the preceding convolution (``BatchNorm2d``, ``torch.nn.utils.fusion.fuse_conv_bn_eval``)
  or linear layer (the FC heads' ``BatchNorm1d``, ``fuse_linear_bn_eval``) absorbs;
* **channels_last** (NHWC) storage, where oneDNN's 1x1 and depthwise convolutions are fastest and
  ``layers.concat_shuffle`` interleaves channels in place.

:func:`optimize_for_inference` applies the last two to a copy of the model; ``evaluate.FeatureExtractor``
and ``evaluate.extract_features`` use all three on the CPU. Together: 23.1 -> 69.9 images/s for the trained
``robustreid_1x`` at batch 64 (``benchmarks/bench_deploy.py``, rows torch-eager and torch-optimized).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

CPU_MICRO_BATCH = 8  # images per forward on a CPU: the largest power of two whose stage-1 maps stay in cache


# (layer, the BatchNorm after it) -> the folding function
_FOLDS = {(nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn_eval, (nn.Linear, nn.BatchNorm1d): fuse_linear_bn_eval}


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm that directly follows the layer it normalises
    inside an ``nn.Sequential`` folded into that layer: ``Conv2d`` -> ``BatchNorm2d`` (``layers.conv_bn_act``)
    and ``Linear`` -> ``BatchNorm1d`` (``model._head``) become one convolution / linear layer with bias, the
    BatchNorm ``nn.Identity``. A BatchNorm elsewhere (none in ``ReIDNet``), or one without running statistics,
    is left in place. The model given is left untouched."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            layer, bn = module[i], module[i + 1]
            fold = _FOLDS.get((type(layer), type(bn)))
            if fold is not None and bn.track_running_stats:
                module[i] = fold(layer, bn)
                module[i + 1] = nn.Identity()
    return fused


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` for inference only: eval mode, BatchNorm folded into the convolution or linear layer
    before it (:func:`fuse_conv_bn`; in ``ReIDNet`` that is every BatchNorm) and, with ``channels_last``, NHWC
    parameters. Its ``embed`` gives the original's descriptors up to float rounding; it cannot be trained (the
    folded BatchNorm layers are gone)."""
    fused = fuse_conv_bn(model)
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def check_micro_batch(micro_batch) -> None:
    """``micro_batch`` must be ``None`` (no split) or an integer >= 1; anything else is a ``ValueError``."""
    if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)
                                    or micro_batch < 1):
        raise ValueError(f"micro_batch={micro_batch!r}: expected an integer >= 1 or None")


def embed_micro_batched(embed: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                        micro_batch: int | None, channels_last: bool = False) -> torch.Tensor:
    """``embed(images)`` computed on slices of at most ``micro_batch`` images (``None``: in one call).

    ``channels_last``: each slice is handed over in NHWC storage (for a model from
    :func:`optimize_for_inference`). For an eval-mode network the result equals one call up to float rounding.
    """
    check_micro_batch(micro_batch)
    step = len(images) if micro_batch is None else micro_batch
    outputs = []
    for start in range(0, len(images), max(step, 1)):
        chunk = images[start:start + step]
        if channels_last and chunk.dim() == 4:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        outputs.append(embed(chunk))
    if not outputs:  # no images: one call keeps the caller's output shape (0, D)
        return embed(images)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
