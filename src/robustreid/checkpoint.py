"""Checkpoints: one plain dict, written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values (no pickled classes), so loading it cannot run code:
``{"format": "robustreid", "format_version": 1, "arch": Architecture.to_dict(), "num_classes": int,
"model": state_dict, "data_config": dict, ...}`` plus whatever the trainer adds (optimizer, epoch, RNG state,
config, SWAG state, versions). ``save_checkpoint`` writes a temporary file beside the target and renames it,
so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .atomicfile import atomic_write
from .model import Architecture, ReIDNet

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "model_state", "model_from_checkpoint", "load_model"]

FORMAT = "robustreid"
FORMAT_VERSION = 1


def model_state(model: ReIDNet) -> dict:
    """The part of a checkpoint that rebuilds a model: architecture, class count, weights, data config."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch.to_dict(),
        "num_classes": model.num_classes,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a robustreid checkpoint safely (``weights_only=True``); clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors and plain values "
            f"(torch.load weights_only=True said: {first})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a robustreid checkpoint (no 'format': '{FORMAT}' entry)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state['format_version']}; this robustreid reads <= {FORMAT_VERSION}")
    return state


def model_from_checkpoint(state: dict, num_classes: int | None = None, arch: Architecture | None = None) -> ReIDNet:
    """Build the checkpoint's network and load its weights.

    ``num_classes`` / ``arch``, when given, are what the caller expects: a mismatch is a clear ``ValueError``
    (e.g. resuming a run on another dataset, or with another preset) instead of a shape error deep in PyTorch.
    """
    saved_arch = Architecture.from_dict(state["arch"])
    if arch is not None and arch != saved_arch:
        diff = {k: (v, getattr(arch, k)) for k, v in saved_arch.to_dict().items() if getattr(arch, k) != getattr(saved_arch, k)}
        raise ValueError(f"checkpoint architecture does not match the requested one: {{field: (checkpoint, requested)}} = {diff}")
    if num_classes is not None and num_classes != state["num_classes"]:
        raise ValueError(f"checkpoint has {state['num_classes']} identity classes, expected {num_classes}")
    model = ReIDNet(saved_arch, state["num_classes"])
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint weights do not fit the architecture: missing {missing}, unexpected {unexpected}")
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ReIDNet:
    """The network stored in checkpoint ``path``, in eval mode."""
    return model_from_checkpoint(load_checkpoint(path, map_location)).eval()
