"""One device rule for the whole package, and one way to reach the network inside DistributedDataParallel.

``default_device()``: the first CUDA device when this machine has one, else the CPU. Every command and
function that takes ``device=None`` means this default (training, evaluation, extraction, export, tracking,
the demo); a given model stays where it is unless a device is named.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["default_device", "resolve_device", "unwrap"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or None (``default_device()``) -> ``torch.device``.

    A CUDA device that this machine does not have is a ``ValueError`` naming it.
    """
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or a torch.device") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist")
    return resolved


def unwrap(model: nn.Module) -> nn.Module:
    """The network itself: DistributedDataParallel (and DataParallel) keep it in ``.module``."""
    return getattr(model, "module", model)
