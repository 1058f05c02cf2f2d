"""The OpenVINO inference backend: an exported descriptor model run like ``ReIDNet.embed`` by OpenVINO's CPU
plugin, in fp32 or bfloat16, with the data config read from the model itself.

``OpenVinoEmbedder`` runs either the ``.onnx`` file of ``export.export_onnx`` (OpenVINO's ONNX front end keeps
the file's ``metadata_props`` as the model's ``rt_info["framework"]``) or the OpenVINO IR (``.xml`` + ``.bin``)
written by ``export.export_openvino`` / ``robustreid export --format openvino``, which carries the same
metadata in its own ``rt_info["robustreid"]`` section, so the IR alone is enough. It is what
``evaluate.FeatureExtractor(path, backend="openvino", precision=...)`` runs. Like ``onnx_backend``, this module
only reads models; ``export`` writes them (and imports from here, never the reverse).

``precision`` sets OpenVINO's ``INFERENCE_PRECISION_HINT``: ``"fp32"`` (f32) or ``"bf16"``. A CPU without
bfloat16 instructions (AVX512-BF16 / AMX) runs the model in fp32 whatever the hint: ``execution_precision``
says what the plugin chose, and asking for bf16 there gives a ``UserWarning``.

``openvino`` is an optional dependency (``pip install 'robustreid[openvino]'``); it is imported only when a
function here needs it, so ``import robustreid.openvino_backend`` works without it.

OpenVINO does not survive ``fork``: a child forked after OpenVINO has run in its parent hangs as soon as it
runs a model, compiles one or destroys an object inherited from the parent (its thread pools' threads were not
copied). So in such a child ``shared_core()`` and an inherited ``OpenVinoEmbedder`` raise a one-line
``RuntimeError`` (use a ``spawn`` or ``forkserver`` process for OpenVINO), and the inherited Core and
embedders are kept alive there, never destroyed, so that a child which does not use OpenVINO (a DataLoader
worker decoding images) still exits cleanly (docs/TROUBLESHOOTING.md, "OpenVINO in a long process").
"""

from __future__ import annotations

import ctypes
import os
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from .inference import check_micro_batch
from .onnx_backend import METADATA_PREFIX, _parse_metadata, embed_exported

__all__ = ["PRECISIONS", "RT_INFO_SECTION", "OpenVinoEmbedder", "read_openvino_metadata", "shared_core"]

PRECISIONS = ("fp32", "bf16")
_HINTS = {"fp32": "f32", "bf16": "bf16"}  # INFERENCE_PRECISION_HINT values
RT_INFO_SECTION = "robustreid"  # the IR's rt_info section written by export.export_openvino
_FRAMEWORK_SECTION = "framework"  # where OpenVINO's ONNX front end puts an ONNX file's metadata_props
# robustreid metadata keys (without METADATA_PREFIX), as in onnx_backend / export._metadata_props
_KEYS = ("metadata_version", "arch_name", "arch", "data_config", "feature_dim", "quantization", "torch_version")
SUFFIXES = (".onnx", ".xml")

_INSTALL_HINT = "pip install 'robustreid[openvino]'"


def _import_openvino():
    """``openvino``, or a ``ModuleNotFoundError`` (named ``openvino``) saying which extra installs it."""
    try:
        import openvino
    except ImportError as exc:
        raise ModuleNotFoundError(f"openvino is not installed ({exc}); {_INSTALL_HINT}",
                                  name="openvino") from None
    return openvino


_CORE: tuple[int, object] | None = None  # (pid, openvino.Core): see shared_core
_EMBEDDERS: weakref.WeakSet = weakref.WeakSet()  # this process's live OpenVinoEmbedders: see _pin_inherited


def _refuse_forked(owner_pid: int, what: str) -> None:
    """A one-line ``RuntimeError`` if ``what`` belongs to OpenVINO in process ``owner_pid``, not this one."""
    if owner_pid != os.getpid():
        raise RuntimeError(
            f"{what}: OpenVINO was started in process {owner_pid} before this process ({os.getpid()}) was "
            "forked from it; OpenVINO cannot run in a forked child (it hangs); use a 'spawn' or 'forkserver' "
            "process for it, e.g. multiprocessing.get_context('spawn') or "
            "DataLoader(..., multiprocessing_context='spawn')")


def shared_core():
    """This process's one ``openvino.Core``, made on first use.

    Every reader, embedder and export in the library uses it instead of a new ``Core`` per call: a process
    that made a new Core per model (the test suite, a long service) is where crashes beside PyTorch were
    reported (docs/TROUBLESHOOTING.md, "OpenVINO in a long process"), and the Core holds the plugin's thread
    pool, so one per process is also what OpenVINO's own samples do.

    In a child forked after its parent made the Core, this raises a one-line ``RuntimeError`` and leaves the
    inherited Core alone: a new Core, or destroying the inherited one, hangs there (``_pin_inherited``). Run
    OpenVINO in a ``spawn`` or ``forkserver`` process instead."""
    global _CORE
    if _CORE is None:
        _CORE = (os.getpid(), _import_openvino().Core())
    _refuse_forked(_CORE[0], "openvino_backend.shared_core()")
    return _CORE[1]


def _pin_inherited() -> None:
    """In a forked child (``os.register_at_fork``): one reference more, never released, on the Core and every
    embedder inherited from the parent. Their destructors wait for thread-pool threads that were not copied
    by fork, so the child must never run them: not when the child drops them, and not at interpreter exit
    (which clears module globals, so a module-level list would not do; a leaked reference does)."""
    inherited = ([_CORE[1]] if _CORE is not None else []) + list(_EMBEDDERS)
    for obj in inherited:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_pin_inherited)


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the path of an .onnx or OpenVINO .xml file, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: expected an .onnx file or an OpenVINO IR .xml (with its .bin beside it)")
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise FileNotFoundError(f"{path.with_suffix('.bin')} does not exist: an OpenVINO IR .xml needs its "
                                ".bin beside it")
    return path


def _read_model(core, path: Path):
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:  # OpenVINO's front ends: several lines of C++ context; keep the gist
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()
                 and not line.strip().startswith("Exception from") and not line.strip().startswith("Check ")]
        reason = lines[0] if lines else type(exc).__name__
        raise ValueError(f"{path} is not a model OpenVINO can read ({reason})") from None


def _model_metadata(model, source: str) -> dict:
    """The robustreid metadata of an OpenVINO ``Model``: its ``rt_info["robustreid"]`` section (an IR from
    ``export_openvino``), else the ONNX ``metadata_props`` the ONNX front end put in ``rt_info["framework"]``."""
    for section, prefix in ((RT_INFO_SECTION, ""), (_FRAMEWORK_SECTION, METADATA_PREFIX)):
        props = {METADATA_PREFIX + key: model.get_rt_info([section, prefix + key]).astype(str)
                 for key in _KEYS if model.has_rt_info([section, prefix + key])}
        if props:
            break
    return _parse_metadata(props, source)  # ValueError naming the file when there is none


def read_openvino_metadata(path: str | os.PathLike) -> dict:
    """The robustreid metadata of an ``.onnx`` file or OpenVINO IR ``.xml``, as OpenVINO reads it.

    Returns ``{"arch_name", "arch", "data_config" (input_size, mean, std), "feature_dim", "metadata_version",
    "quantization" (None for fp32), "format" ("onnx" | "ir"), "batch_size"}`` (``batch_size`` None for a
    dynamic batch axis). ``FileNotFoundError`` / ``ValueError`` name the file.
    """
    path = _check_path(path)
    model = _read_model(shared_core(), path)
    meta = _model_metadata(model, str(path))
    meta["format"] = "ir" if path.suffix.lower() == ".xml" else "onnx"
    meta["batch_size"] = _static_batch(model)
    return meta


def _static_batch(model) -> int | None:
    dim = model.input(0).get_partial_shape()[0]
    return dim.get_length() if dim.is_static else None


class OpenVinoEmbedder:
    """An OpenVINO CPU model over an exported descriptor: ``embed(images) -> (B, D)`` float32, each branch
    L2-normalised (as ``ReIDNet.embed``).

    Args:
        path: an ``.onnx`` file written by ``export_onnx`` / ``quantize_onnx`` or an IR ``.xml`` written by
            ``export_openvino`` (its metadata gives ``data_config`` and ``feature_dim``).
        precision: ``"fp32"`` or ``"bf16"`` (``INFERENCE_PRECISION_HINT``; see ``execution_precision``).
        device: ``None`` or ``"cpu"``: OpenVINO's CPU plugin is the only device used here.
        num_threads: ``INFERENCE_NUM_THREADS``; ``None`` takes ``torch.get_num_threads()``, as the torch and
            onnxruntime backends do. One stream: a batch is one inference request.
        micro_batch: a batch runs as slices of at most this many images; ``None`` (default): one request per
            batch (``benchmarks/bench_deploy.py --ov-micro-batch`` measures both).

    A model with a fixed batch size is run on chunks of that size, the last one zero-padded.
    """

    def __init__(self, path: str | os.PathLike, precision: str = "fp32", device: str | torch.device | None = None,
                 num_threads: int | None = None, micro_batch: int | None = None):
        ov = _import_openvino()
        self.path = _check_path(path)
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
        if device is not None and str(device) != "cpu":
            raise ValueError(f"device {str(device)!r}: the openvino backend runs on the CPU only (device 'cpu')")
        check_micro_batch(micro_batch)
        self.device = torch.device("cpu")
        self.precision = precision
        self.micro_batch = micro_batch
        self.num_threads = torch.get_num_threads() if num_threads is None else num_threads
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 1:
            raise ValueError(f"num_threads={num_threads!r}: expected an integer >= 1")
        core = shared_core()
        model = _read_model(core, self.path)
        self.metadata = _model_metadata(model, str(self.path))
        self.data_config = dict(self.metadata["data_config"])
        self.feature_dim = self.metadata["feature_dim"]
        self.batch_size = _static_batch(model)
        # ENABLE_CPU_PINNING off: OpenVINO would pin its threads (and the calling thread) to cores that
        # PyTorch's OpenMP threads in the same process use too
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "INFERENCE_NUM_THREADS": self.num_threads,
                  "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise ValueError(f"{self.path}: OpenVINO could not compile the model "
                             f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})") from None
        executed = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.execution_precision = "bf16" if executed == ov.Type.bf16 else "fp32"
        if precision == "bf16" and self.execution_precision != "bf16":
            warnings.warn(f"{self.path.name}: this CPU has no bfloat16 support in OpenVINO "
                          f"({', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}); "
                          "it runs in fp32", UserWarning, stacklevel=2)
        self._request = self.compiled.create_infer_request()
        self._pid = os.getpid()  # the process whose OpenVINO threads run this model (see _pin_inherited)
        _EMBEDDERS.add(self)

    def embed(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Preprocessed images ``(B, 3, H, W)`` at the model's input size -> float32 CPU tensor ``(B, D)``.

        In a child forked after this embedder was made: a one-line ``RuntimeError`` (OpenVINO would hang)."""
        _refuse_forked(self._pid, f"OpenVinoEmbedder({self.path.name}).embed")
        return embed_exported(self, images, self._infer)

    __call__ = embed

    def _infer(self, array: np.ndarray) -> np.ndarray:
        """One inference request; the output is copied out of the request's reused buffer."""
        return np.array(self._request.infer({0: array}, share_inputs=True)[0], dtype=np.float32)

    def __repr__(self) -> str:
        return (f"OpenVinoEmbedder(path='{self.path}', arch={self.metadata['arch_name']!r}, "
                f"feature_dim={self.feature_dim}, precision={self.precision!r} "
                f"(runs {self.execution_precision}), threads={self.num_threads}, micro_batch={self.micro_batch})")
