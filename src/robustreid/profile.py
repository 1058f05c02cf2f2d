"""Model size and cost: parameters and multiply-accumulates (the paper's "FLOPs", Table 1).

The paper counts multiply-accumulates (its ResNet-50 "4.1B FLOPs" is ResNet-50's MAC count), so ``gmacs`` is
``torch.utils.flop_counter`` FLOPs / 2 for one image at the model's input size, through the test path
(``model.embed``: identity classifiers are not part of the deployed network). Convolutions, linear layers and
matrix products are counted; element-wise work (BN, ReLU, attention products, bilinear sampling) is not, as is usual.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs", "profile_model"]


def count_params(model: nn.Module, with_classifier: bool = False) -> int:
    """Number of parameters; the identity classifiers (``model.classifiers``) only if ``with_classifier``."""
    skip = set() if with_classifier else {id(p) for p in getattr(model, "classifiers", nn.ModuleList()).parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one forward pass of one image through ``model.embed`` (eval mode)."""
    h, w = input_size or model.data_config["input_size"]
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, h, w, device=next(model.parameters()).device)
        with FlopCounterMode(display=False) as counter:
            model.embed(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile_model(model: nn.Module) -> dict:
    """The figures ``robustreid profile`` prints: parameters, GMACs, input size, descriptor length."""
    return {
        "params": count_params(model),
        "params_with_classifier": count_params(model, with_classifier=True),
        "gmacs": count_macs(model) / 1e9,
        "input_size": list(model.data_config["input_size"]),
        "feature_dim": model.feature_dim,
    }
