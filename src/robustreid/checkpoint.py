"""Checkpoints: one plain dict, written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values (no pickled classes), so loading it cannot run code:
``{"format": "robustreid", "format_version": 1, "arch": Architecture.to_dict(), "num_classes": int,
"model": state_dict, "data_config": dict, ...}`` plus whatever the trainer adds (optimizer, epoch, RNG state,
config, SWAG state, versions). ``save_checkpoint`` writes a temporary file beside the target and renames it,
so a crash never leaves a half-written checkpoint behind. ``load_checkpoint("zoo:NAME")`` reads a shipped model
(``robustreid.zoo``) into the same dict.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .atomicfile import atomic_write
from .device import unwrap
from .model import MODELS, Architecture, ReIDNet, arch_name
from .zoo import is_zoo_name, load_zoo_state

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "model_state", "model_from_checkpoint", "load_model",
           "check_finite_weights"]

FORMAT = "robustreid"
FORMAT_VERSION = 1


def model_state(model: ReIDNet) -> dict:
    """The part of a checkpoint that rebuilds a model: architecture, class count, weights, data config."""
    model = unwrap(model)
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


# First bytes of the files a user may pass by mistake, and what to say about them.
_NOT_CHECKPOINTS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"{", "a JSON file"),
    (b"[", "a JSON file"),
)


def _what_file(path: Path) -> str | None:
    """What ``path`` is when it is plainly not a PyTorch checkpoint (a ZIP archive or a pickle), else None."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save's ZIP format, or a legacy pickle
        return None
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and b"onnx" in head.lower()):
        return "an ONNX model (evaluate it with --backend onnxruntime)"
    for magic, kind in _NOT_CHECKPOINTS:
        if head.lstrip().startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return "not a PyTorch checkpoint (neither a ZIP archive nor a pickle)"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a robustreid checkpoint safely (``weights_only=True``); a one-line ``ValueError`` naming the file and
    what it is for anything else (an image, JSON, an ONNX model, text, random bytes, a pickled object).

    ``"zoo:NAME"`` is a shipped model (``zoo.load_zoo_state``: sha256-checked safetensors, same dict format)."""
    if isinstance(path, (str, os.PathLike)) and is_zoo_name(os.fspath(path)):
        state = load_zoo_state(os.fspath(path))
        if isinstance(map_location, (str, torch.device)) and torch.device(map_location).type != "cpu":
            state["model"] = {k: v.to(map_location) for k, v in state["model"].items()}
        return state
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; pass a .pt file (e.g. {path / 'last.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    kind = _what_file(path)
    if kind is not None:
        raise ValueError(f"{path} is {kind}, not a robustreid checkpoint (.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors and plain values "
            f"(torch.load weights_only=True said: {first})"
        ) from None
    except Exception as exc:  # a damaged archive fails in many ways (RuntimeError, EOFError, KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a robustreid checkpoint (no 'format': '{FORMAT}' entry)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state['format_version']}; this robustreid reads <= {FORMAT_VERSION}")
    return state


def _arch_label(arch: Architecture) -> str:
    name = arch_name(arch)
    return "a custom architecture" if name == "custom" else name


def _named(source: str | None) -> str:
    """How a message names the checkpoint: ``checkpoint runs/a/last.pt``, ``checkpoint zoo:hacnn``."""
    return f"checkpoint {source}" if source else "checkpoint"


def check_finite_weights(state: dict, label: str = "checkpoint") -> None:
    """A one-line ``ValueError`` naming the checkpoint (``label``: ``checkpoint runs/a/last.pt``, ``--init x.pt``)
    and its first tensor holding NaN or infinite values: a network built from it would give NaN descriptors.
    One ``torch.isfinite(t).all()`` per floating tensor: milliseconds, even for robustreid_2x."""
    for key, value in state.get("model", {}).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{label} holds non-finite weights: {key} has {bad} NaN or infinite values "
                             f"of {value.numel()} (a diverged run?); use an earlier checkpoint of the run")


def _shapes(weights: dict, classifiers: bool = True) -> dict:
    return {k: tuple(v.shape) for k, v in weights.items()
            if isinstance(v, torch.Tensor) and (classifiers or not k.startswith("classifiers."))}


def _held(weights: dict, said: Architecture) -> str:
    """What a state dict holds, for a message: ``robustreid_1x with 4 identity classes``. The architecture is
    the first of the one the checkpoint names and the shipped ones (``model.MODELS``) whose tensors (all but the
    identity classifiers) have exactly these names and shapes; the class count is the classifier's row count."""
    classifier = weights.get("classifiers.0.weight")
    classes = int(classifier.shape[0]) if isinstance(classifier, torch.Tensor) and classifier.dim() == 2 else 0
    backbone = _shapes(weights, classifiers=False)
    candidates = [(_arch_label(said), said)] + [(name, arch) for name, arch in MODELS.items() if arch != said]
    held = next((name for name, arch in candidates
                 if _shapes(ReIDNet(arch, 0).state_dict(), classifiers=False) == backbone), None)
    return f"{held or 'weights of another architecture'} with {classes} identity classes"


def _misfit(weights: dict, model: ReIDNet, source: str | None) -> ValueError:
    """The checkpoint's weights do not fit the network its ``arch`` / ``num_classes`` entries name: one line
    saying what the file names, what its weights hold, and the first tensor that differs."""
    expected, found = _shapes(model.state_dict()), _shapes(weights)
    said = f"{_arch_label(model.arch)} with {model.num_classes} identity classes"
    wrong = next((k for k in found if k in expected and found[k] != expected[k]), None)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if wrong is not None:
        detail = f"{wrong} is {list(found[wrong])} in the file, {list(expected[wrong])} in that network"
    elif missing:
        detail = f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
    else:
        detail = f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}"
    return ValueError(f"{_named(source)}: its weights do not fit the network it names: the file says {said}, its "
                      f"weights hold {_held(weights, model.arch)} ({detail})")


def model_from_checkpoint(state: dict, num_classes: int | None = None, arch: Architecture | None = None, *,
                          source: str | None = None) -> ReIDNet:
    """Build the checkpoint's network and load its weights.

    ``num_classes`` / ``arch``, when given, are what the caller expects: a mismatch is a clear ``ValueError``
    (e.g. resuming a run on another dataset, or with another preset) instead of a shape error deep in PyTorch.
    ``source`` names the checkpoint in every message (its path, ``zoo:NAME``; ``load_model`` passes it). Weights
    that do not fit the ``arch`` / ``num_classes`` the file names, and non-finite weights, are refused.
    """
    missing_keys = [k for k in ("arch", "num_classes", "model") if k not in state]
    if missing_keys:
        raise ValueError(f"{_named(source)} has no {', '.join(missing_keys)} entry: it does not hold a network")
    try:
        saved_arch = Architecture.from_dict(dict(state["arch"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{_named(source)}: its arch entry is not a robustreid architecture ({exc})") from None
    saved_classes = state["num_classes"]
    if isinstance(saved_classes, bool) or not isinstance(saved_classes, int) or saved_classes < 0:
        raise ValueError(f"{_named(source)}: its num_classes entry is {saved_classes!r}, expected an integer >= 0")
    if not isinstance(state["model"], dict):
        raise ValueError(f"{_named(source)}: its model entry is a {type(state['model']).__name__}, expected a "
                         "state dict (tensor name -> tensor)")
    if arch is not None and arch != saved_arch:
        diff = {k: (v, getattr(arch, k)) for k, v in saved_arch.to_dict().items() if getattr(arch, k) != getattr(saved_arch, k)}
        raise ValueError(f"the architecture of {_named(source)} does not match the requested one: "
                         f"{{field: (checkpoint, requested)}} = {diff}")
    if num_classes is not None and num_classes != saved_classes:
        raise ValueError(f"{_named(source)} has {saved_classes} identity classes, expected {num_classes}")
    model = ReIDNet(saved_arch, saved_classes)
    if _shapes(state["model"]) != _shapes(model.state_dict()):  # a hand-edited or foreign state dict
        raise _misfit(state["model"], model, source)
    check_finite_weights(state, _named(source))
    model.load_state_dict(state["model"])
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ReIDNet:
    """The network stored in checkpoint ``path`` (a file or ``zoo:NAME``), in eval mode; every refusal names it."""
    return model_from_checkpoint(load_checkpoint(path, map_location), source=os.fspath(path)).eval()
