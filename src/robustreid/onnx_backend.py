"""The onnxruntime inference backend: an exported descriptor model (``export.export_onnx``) run like
``ReIDNet.embed``, with the data config read from the file's metadata.

``OnnxEmbedder`` is what ``evaluate.FeatureExtractor(path, backend="onnxruntime")`` runs; ``read_onnx_metadata``
reads what an exported file carries. Writing, checking and quantizing models is ``export``'s job; this module
only reads them, so the run-time path does not depend on the export path (``export`` imports from here).

``onnx`` and ``onnxruntime`` are optional dependencies (``pip install 'robustreid[onnx]'``); they are imported
only when a function here needs them, so ``import robustreid.onnx_backend`` works without them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .device import default_device
from .inference import CPU_MICRO_BATCH, check_micro_batch, embed_micro_batched
from .loaders import TestTransform

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "METADATA_PREFIX", "METADATA_VERSION", "OnnxEmbedder", "read_onnx_metadata"]

INPUT_NAME = "images"
OUTPUT_NAME = "features"
METADATA_PREFIX = "robustreid."
METADATA_VERSION = 1

_INSTALL_HINT = "install the optional ONNX dependencies: pip install 'robustreid[onnx]' (onnx, onnxruntime)"


def _import(name: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        # ModuleNotFoundError named after the package: the CLI prints it as one line naming the extra
        raise ModuleNotFoundError(f"{name} is not installed ({exc}); {_INSTALL_HINT}",
                                  name=name.split(".")[0]) from None


# ------------------------------------------------------------------------------------------- metadata
def _parse_metadata(props: Mapping[str, str], source: str) -> dict:
    """ONNX ``metadata_props`` -> ``{"arch_name", "arch", "data_config", "feature_dim", "metadata_version",
    "quantization"}``; a file without them is a ``ValueError`` naming it."""
    required = ("metadata_version", "arch_name", "arch", "data_config", "feature_dim")
    missing = [key for key in required if METADATA_PREFIX + key not in props]
    if missing:
        keys = ", ".join(METADATA_PREFIX + k for k in missing)
        raise ValueError(f"{source} has no robustreid metadata ({keys} missing): expected an ONNX file "
                         "written by robustreid's export_onnx / quantize_onnx")
    try:
        version = int(props[METADATA_PREFIX + "metadata_version"])
        arch = json.loads(props[METADATA_PREFIX + "arch"])
        data_config = json.loads(props[METADATA_PREFIX + "data_config"])
        feature_dim = int(props[METADATA_PREFIX + "feature_dim"])
        quantization = json.loads(props.get(METADATA_PREFIX + "quantization", "null"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: unreadable robustreid metadata ({exc})") from None
    if version > METADATA_VERSION:
        raise ValueError(f"{source} has robustreid metadata version {version}; this robustreid reads "
                         f"<= {METADATA_VERSION}")
    TestTransform(data_config)  # ValueError if the stored data config is not usable
    return {"metadata_version": version, "arch_name": props[METADATA_PREFIX + "arch_name"], "arch": arch,
            "data_config": {**data_config, "input_size": tuple(data_config["input_size"]),
                            "mean": tuple(data_config["mean"]), "std": tuple(data_config["std"])},
            "feature_dim": feature_dim, "quantization": quantization}


def _check_file(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the path of an .onnx file, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    return path


def _load_proto(path: Path):
    onnx = _import("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise ValueError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    if not proto.graph.node:  # protobuf parses some non-ONNX bytes (e.g. an empty file) as an empty model
        raise ValueError(f"{path} is not an ONNX model (no graph nodes)")
    return proto


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The robustreid metadata of an exported ``.onnx`` file, plus its opset and input batch size.

    Returns ``{"arch_name", "arch" (Architecture.to_dict()), "data_config" (input_size, mean, std),
    "feature_dim", "metadata_version", "quantization" (None for fp32), "opset", "batch_size"}`` where
    ``batch_size`` is None for a dynamic batch axis. ``FileNotFoundError`` / ``ValueError`` name the file.
    """
    path = _check_file(path)
    proto = _load_proto(path)
    meta = _parse_metadata({p.key: p.value for p in proto.metadata_props}, str(path))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    meta["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    meta["batch_size"] = int(dim.dim_value) if dim.HasField("dim_value") else None
    return meta


# --------------------------------------------------------------------------------------------- runtime
def _default_onnx_device(ort) -> torch.device:
    """The package's device rule (``device.default_device``) for onnxruntime: the GPU when there is one and this
    onnxruntime has its provider, else the CPU."""
    gpu = default_device().type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
    return torch.device("cuda" if gpu else "cpu")


def embed_exported(embedder, images: torch.Tensor | np.ndarray, infer) -> torch.Tensor:
    """``embed`` of an exported model (``OnnxEmbedder``, ``openvino_backend.OpenVinoEmbedder``): check the batch
    against ``embedder.data_config``'s input size, then run ``infer`` (a float32 ``(b, 3, H, W)`` array ->
    ``(b, D)`` array) on micro-batches of ``embedder.micro_batch`` images, or, for a model with a fixed batch
    size ``embedder.batch_size``, on chunks of that size, the last one zero-padded."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    array = np.ascontiguousarray(array, dtype=np.float32)
    expected = (3, *embedder.data_config["input_size"])
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        shape = ", ".join(map(str, expected))
        raise ValueError(f"{embedder.path.name}: expected images of shape (B, {shape}), got {tuple(array.shape)}")
    if len(array) == 0:
        return torch.empty((0, embedder.feature_dim))
    if embedder.batch_size is None:
        run = lambda batch: torch.from_numpy(np.asarray(infer(np.ascontiguousarray(batch.numpy()))))  # noqa: E731
        return embed_micro_batched(run, torch.from_numpy(array), embedder.micro_batch)
    chunks = []
    for start in range(0, len(array), embedder.batch_size):
        chunk = array[start:start + embedder.batch_size]
        padded = np.zeros((embedder.batch_size, *expected), np.float32)
        padded[:len(chunk)] = chunk
        chunks.append(np.asarray(infer(padded))[:len(chunk)])
    return torch.from_numpy(np.concatenate(chunks))


class OnnxEmbedder:
    """An onnxruntime session over an exported descriptor model: ``embed(images) -> (B, D)`` float32.

    Args:
        path: an ``.onnx`` file written by ``export_onnx`` or ``quantize_onnx`` (its metadata gives
            ``data_config`` and ``feature_dim``).
        device: ``None`` / ``"cpu"`` (CPUExecutionProvider) or ``"cuda"`` / ``"cuda:N"``
            (CUDAExecutionProvider, when this onnxruntime build has it).
        num_threads: intra-op threads; ``None`` takes ``torch.get_num_threads()``, as the torch backend uses.
        micro_batch: on the CPU, a batch runs as slices of at most this many images, whose activations stay
            in cache (``inference.CPU_MICRO_BATCH``; robustreid_1x fp32, batch 64, alternating on the
            benchmark machine: median 98 vs 75 images/s in one call, ``benchmarks/micro_batch_ab.py``);
            ``None``: one call per batch (always so on CUDA).

    A model exported with a fixed batch size is run on chunks of that size, the last one zero-padded.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None,
                 num_threads: int | None = None, micro_batch: int | None = CPU_MICRO_BATCH):
        ort = _import("onnxruntime")
        self.path = _check_file(path)
        try:
            self.device = _default_onnx_device(ort) if device is None else torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or a torch.device") from None
        if self.device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        elif self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0})]
        else:
            raise ValueError(f"device {str(self.device)!r}: this onnxruntime has providers "
                             f"{ort.get_available_providers()}; expected 'cpu' "
                             "(or 'cuda' with CUDAExecutionProvider)")
        check_micro_batch(micro_batch)
        self.micro_batch = micro_batch if self.device.type == "cpu" else None
        self.num_threads = torch.get_num_threads() if num_threads is None else int(num_threads)
        if self.num_threads < 1:
            raise ValueError(f"num_threads={num_threads!r}: expected an integer >= 1")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{self.path} is not a loadable ONNX model ({exc})") from None
        self.metadata = _parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.data_config = dict(self.metadata["data_config"])
        self.feature_dim = self.metadata["feature_dim"]
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.batch_size = model_input.shape[0] if isinstance(model_input.shape[0], int) else None

    def embed(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Preprocessed images ``(B, 3, H, W)`` at the model's input size -> float32 CPU tensor ``(B, D)``."""
        return embed_exported(self, images, lambda array: self.session.run(None, {self.input_name: array})[0])

    __call__ = embed

    def __repr__(self) -> str:
        return (f"OnnxEmbedder(path='{self.path}', arch={self.metadata['arch_name']!r}, "
                f"feature_dim={self.feature_dim}, threads={self.num_threads}, micro_batch={self.micro_batch})")


# ---------------------------------------------------------------------------------------------- export
