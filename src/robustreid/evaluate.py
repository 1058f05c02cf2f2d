"""Feature extraction and model evaluation: checkpoint -> descriptors -> rank-1 / mAP (paper Section 4).

The paper reports rank-1 accuracy and mAP on Market1501 and DukeMTMC-reID (Tables 2-4) without re-ranking
(Section 4.3); the test descriptor is the concatenation of the L2-normalised global and local features
(Figure 4, ``ReIDNet.embed``). This module turns a model or checkpoint into those descriptors and scores:

* ``FeatureExtractor``: images (paths, PIL images, HxWx3 uint8 RGB arrays) -> ``(N, D)`` CPU float tensor,
  preprocessed exactly as at test time in training (``loaders.TestTransform`` on the model's own
  ``data_config``), batched, in eval mode, without gradients. ``backend="onnxruntime"`` runs an ``.onnx``
  export instead (``onnx_backend.OnnxEmbedder``; data config from the file's metadata), ``backend="openvino"``
  an ``.onnx`` or OpenVINO IR ``.xml`` (``openvino_backend.OpenVinoEmbedder``), same inputs and outputs;
  ``precision="bf16"`` runs the torch network under bfloat16 autocast, OpenVINO with its bf16 hint.
* ``extract_features``: dataset records -> ``(feats, pids, camids)`` through ``loaders.build_test_loader``.
* ``evaluate``: a dataset's query / gallery split -> rank-1/5/10, mAP, mINP (percent, as papers report
  them) plus the CMC curve and the ranked gallery lists of a few sampled queries for ``report.py``. The
  metrics come from ``metrics.evaluate_features``, which never holds the full distance matrix; the ranked
  lists are computed for the sampled queries only.
* ``extract_to_npz``: the ``robustreid extract`` command (images or folders -> ``features`` + ``paths``).

A model passed in is used where it is (or moved to ``device`` when one is given) and put back in the
train / eval mode it was in, so the training loop can evaluate mid-run.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .amp import autocast_dtype
from .checkpoint import load_model
from .device import resolve_device, unwrap
from .atomicfile import remove_stale_temp_files, write_bytes
from .datasets import IMAGE_EXTENSIONS, Record, ReidDataset, read_image
from .inference import CPU_MICRO_BATCH, embed_micro_batched, optimize_for_inference
from .loaders import TestTransform, build_test_loader
from .metrics import METRICS, SUMMARY_KEYS, compute_distmat, score
from .zoo import is_zoo_name

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "SUMMARY_KEYS",
    "FeatureExtractor",
    "evaluate",
    "extract_features",
    "extract_to_npz",
    "format_metrics",
    "list_images",
    "metrics_summary",
    "rank_gallery",
    "resolve_device",
]

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")



# ------------------------------------------------------------------------------------------ model / device
def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _prepare_model(checkpoint_or_model, device) -> tuple[nn.Module, torch.device]:
    """A checkpoint path or a model -> ``(model, device)`` with the model on ``device``.

    ``device=None`` keeps a given model where it is; a checkpoint goes to ``device.default_device()`` (the GPU
    when there is one).
    """
    if isinstance(checkpoint_or_model, (str, os.PathLike)):
        model = load_model(checkpoint_or_model, map_location="cpu")
    elif isinstance(checkpoint_or_model, nn.Module):
        model = unwrap(checkpoint_or_model)
        if not (hasattr(model, "embed") and hasattr(model, "data_config")):
            raise TypeError(f"{type(model).__name__} has no embed() / data_config: expected a robustreid "
                            "ReIDNet")
    else:
        raise TypeError(f"expected a checkpoint path or a ReIDNet, got {type(checkpoint_or_model).__name__}")
    keep = device is None and isinstance(checkpoint_or_model, nn.Module)
    device = _model_device(model) if keep else resolve_device(device)
    return model.to(device), device


def _prepare_onnx(path, device):
    """An ``.onnx`` path -> ``(onnx_backend.OnnxEmbedder, device)``; anything else is a clear error."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"backend 'onnxruntime' is not available for a {type(path).__name__}: it runs an "
                         "exported .onnx file, pass its path (export one with robustreid.export.export_onnx)")
    _refuse_zoo_name(path, "onnxruntime")
    from .onnx_backend import OnnxEmbedder  # onnxruntime is optional: imported only for this backend

    embedder = OnnxEmbedder(path, device=device)
    return embedder, embedder.device


def _prepare_openvino(path, device, precision: str):
    """An ``.onnx`` / IR ``.xml`` path -> ``(openvino_backend.OpenVinoEmbedder, device)``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"backend 'openvino' is not available for a {type(path).__name__}: it runs an exported "
                         ".onnx or OpenVINO .xml file, pass its path (robustreid export --format openvino)")
    _refuse_zoo_name(path, "openvino")
    from .openvino_backend import OpenVinoEmbedder  # openvino is optional: imported only for this backend

    embedder = OpenVinoEmbedder(path, precision=precision, device=device)
    return embedder, embedder.device


def _refuse_zoo_name(path, backend: str) -> None:
    """A shipped ``zoo:NAME`` is PyTorch weights: an exported-file backend needs the export first."""
    name = os.fspath(path)
    if is_zoo_name(name):
        raise ValueError(f"{name} names PyTorch weights of the model zoo; the {backend} backend runs an exported "
                         f"file: export it first (robustreid export --checkpoint {name} --out model.onnx), or use "
                         "backend torch")


def _check_backend(backend: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not available: expected one of {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if backend == "onnxruntime" and precision != "fp32":
        raise ValueError(f"precision={precision!r}: the onnxruntime backend runs the file as it is (fp32, or "
                         "int8 from export.quantize_onnx); use backend 'torch' or 'openvino' for bf16")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Eval mode (BatchNorm running statistics) inside, the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


Progress = Callable[[int], None]  # images just embedded


class _Steps:
    """Counts embedded images and reports ``progress(done, total)``; called with each batch's size (or, through
    ``after``, with its output)."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None):
        self.total, self.done, self.progress = total, 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def after(self, out: torch.Tensor) -> torch.Tensor:
        self(len(out))
        return out


def _offset(progress: Callable[[int, int], None] | None, start: int, total: int):
    """``progress`` of one split reported as part of ``total`` images that begin ``start`` images in."""
    return None if progress is None else (lambda done, _: progress(start + done, total))


def _embed_batches(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device,
                   amp: bool = False, optimized: bool = False, progress: Progress | None = None) -> torch.Tensor:
    """Concatenated ``model.embed`` of image batches, as one float32 CPU tensor ``(N, D)``; ``amp``: the network
    runs under autocast (bfloat16; float16 on a GPU without bfloat16), as training with ``--amp`` does.

    ``optimized``: ``model`` comes from ``_inference_model`` (BatchNorm folded, channels_last): each batch runs
    in micro-batches of ``inference.CPU_MICRO_BATCH`` NHWC images. ``progress(images done)`` after each batch."""
    feats = []
    amp_dtype = autocast_dtype(device)
    with _eval_mode(model), torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=bool(amp)):
        for imgs in batches:
            imgs = imgs.to(device, non_blocking=True)
            if optimized:
                out = embed_micro_batched(model.embed, imgs, CPU_MICRO_BATCH, channels_last=True)
            else:
                out = model.embed(imgs)
            feats.append(out.float().cpu())
            if progress is not None:
                progress(len(out))
    return torch.cat(feats) if feats else torch.empty((0, model.feature_dim))


def _inference_model(model: nn.Module, device: torch.device, optimize: bool) -> tuple[nn.Module, bool]:
    """``(network to run, optimized)``: on a CPU with ``optimize``, ``inference.optimize_for_inference(model)``
    (a copy: BatchNorm folded into the layer before it, channels_last; same descriptors up to float rounding,
    2-3x faster with the micro-batches); otherwise ``model`` itself."""
    if optimize and device.type == "cpu":
        return optimize_for_inference(model), True
    return model, False


def _check_loader_args(batch_size: int, num_workers: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r}: expected an integer >= 0")


# ---------------------------------------------------------------------------------------- image inputs
def _to_image(item, index: int) -> Image.Image:
    """One extractor input -> RGB PIL image; errors name the input's position and the path or shape."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(item)  # FileNotFoundError / ValueError naming the file
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, np.ndarray):
        _check_array(item, index)
        return Image.fromarray(np.ascontiguousarray(item), "RGB")
    raise TypeError(f"input {index}: expected an image path, a PIL image or an HxWx3 uint8 numpy array, "
                    f"got {type(item).__name__}")


def _check_array(array: np.ndarray, index: int) -> None:
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise ValueError(f"input {index}: expected an HxWx3 uint8 RGB array, got shape {array.shape} "
                         f"and dtype {array.dtype}")


def _as_input_list(inputs) -> list:
    if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray)):
        return [inputs]
    if isinstance(inputs, Iterable) and not isinstance(inputs, (bytes, Mapping)):
        return list(inputs)
    raise TypeError(f"expected an image or a list of images, got {type(inputs).__name__}")


class _InputDataset(Dataset):
    """Extractor inputs -> test-transformed ``(3, H, W)`` tensors (decoded in the loader's workers)."""

    def __init__(self, items: Sequence, transform: TestTransform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(_to_image(self.items[index], index))


# ------------------------------------------------------------------------------------------- extraction
class FeatureExtractor:
    """Images -> L2-normalised ReID descriptors ``(N, D)`` (Figure 4: global and local features concatenated).

    Args:
        checkpoint_or_model: a robustreid checkpoint path, a shipped model's name (``"zoo:robustreid_1x"``,
            ``robustreid.zoo``) or a ``ReIDNet``; with ``backend="onnxruntime"``
            the path of an ``.onnx`` file written by ``export.export_onnx`` / ``export.quantize_onnx``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``. ``None`` (default): a checkpoint
            runs on the CPU, a model where its parameters are. A given model is moved to ``device``.
        batch_size: images per forward pass.
        num_workers: DataLoader worker processes decoding the images (0: in this process).
        backend: ``"torch"`` (default), ``"onnxruntime"`` (an onnxruntime session with
            ``torch.get_num_threads()`` intra-op threads; ``self.model`` is then an ``onnx_backend.OnnxEmbedder``)
            or ``"openvino"`` (OpenVINO's CPU plugin on an ``.onnx`` or IR ``.xml``, as many threads;
            ``self.model`` is an ``openvino_backend.OpenVinoEmbedder``).
        precision: ``"fp32"`` (default) or ``"bf16"``: bfloat16 autocast for torch, the bf16 inference
            precision hint for openvino (fp32 where the CPU has no bfloat16); onnxruntime: fp32 only.
        optimize: torch backend on a CPU: run a copy of the model made here, with BatchNorm folded into the
            layer before it, channels_last, on micro-batches of ``inference.CPU_MICRO_BATCH`` images (same
            descriptors up to float rounding, 2-3x faster). The copy is a snapshot: pass ``False`` to follow a
            model whose weights keep changing (e.g. one still training).

    ``extractor(inputs)`` takes an image path (str / Path), a PIL image, an HxWx3 uint8 RGB numpy array, or a
    list mixing them, and returns a float32 CPU tensor with one row per image, in input order. Images are
    preprocessed exactly as the training code's test transform, from the model's own ``data_config``.
    """

    def __init__(self, checkpoint_or_model, device: str | torch.device | None = None, batch_size: int = 64,
                 num_workers: int = 0, backend: str = "torch", optimize: bool = True, precision: str = "fp32"):
        _check_backend(backend, precision)
        _check_loader_args(batch_size, num_workers)
        self.precision = precision
        if backend == "onnxruntime":
            self.model, self.device = _prepare_onnx(checkpoint_or_model, device)
        elif backend == "openvino":
            self.model, self.device = _prepare_openvino(checkpoint_or_model, device, precision)
        else:
            self.model, self.device = _prepare_model(checkpoint_or_model, device)
            self._net, self._optimized = _inference_model(self.model, self.device, optimize)
        self.backend = backend
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.data_config = dict(self.model.data_config)
        self.transform = TestTransform(self.data_config)

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    def __call__(self, inputs, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Descriptors ``(N, D)`` of ``inputs``; ``progress(done, total)`` (images) after each batch."""
        items = _as_input_list(inputs)
        step = _Steps(len(items), progress)
        for index, item in enumerate(items):  # cheap checks up front, before any worker starts
            if isinstance(item, np.ndarray):
                _check_array(item, index)
        pin_memory = self.backend == "torch" and self.device.type == "cuda"
        loader = DataLoader(_InputDataset(items, self.transform), batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, pin_memory=pin_memory)
        if self.backend != "torch":  # an exported file: one embed call per batch
            feats = [step.after(self.model.embed(imgs)) for imgs in loader]
            return torch.cat(feats) if feats else torch.empty((0, self.feature_dim))
        return _embed_batches(self._net, loader, self.device, amp=self.precision == "bf16",
                              optimized=self._optimized, progress=step)

    def __repr__(self) -> str:
        return (f"FeatureExtractor(backend={self.backend!r}, precision={self.precision!r}, "
                f"device={str(self.device)!r}, "
                f"batch_size={self.batch_size}, feature_dim={self.feature_dim}, "
                f"optimized={getattr(self, '_optimized', False)}, "
                f"transform={self.transform!r})")


def extract_features(model, records: Sequence[Record], batch_size: int = 128, num_workers: int = 2,
                     device: str | torch.device | None = None,
                     amp: bool = False, optimize: bool = True, backend: str = "torch",
                     precision: str = "fp32", progress: Callable[[int, int], None] | None = None,
                     ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Descriptors of dataset records, in record order: ``(feats, pids, camids)``.

    ``feats`` is a float32 CPU tensor ``(N, D)``; ``pids`` / ``camids`` are int64 numpy arrays. ``model`` is a
    ``ReIDNet`` or a checkpoint path; images go through ``loaders.build_test_loader`` (the test transform).
    ``amp``: run the network under autocast (bfloat16; float16 on a GPU without bfloat16); the descriptors are float32.
    ``optimize`` (CPU only): run a copy with BatchNorm folded, in channels_last, on micro-batches of
    ``inference.CPU_MICRO_BATCH`` images (module ``robustreid.inference``); ``False``: the model as it is.
    ``backend`` / ``precision``: as ``FeatureExtractor``'s (``model`` is then the exported file, or a
    ``FeatureExtractor``); ``precision="bf16"`` with torch is ``amp``. ``progress(done, total)``: images,
    after each batch.
    """
    _check_loader_args(batch_size, num_workers)
    _check_backend(backend, precision)
    records = list(records)
    if backend != "torch" or isinstance(model, FeatureExtractor):
        extractor = model if isinstance(model, FeatureExtractor) else FeatureExtractor(
            model, device=device, batch_size=batch_size, num_workers=num_workers, backend=backend,
            precision=precision)
        feats = extractor([r.img_path for r in records], progress)
    else:
        model, device = _prepare_model(model, device)
        loader = build_test_loader(records, model.data_config, batch_size=batch_size, num_workers=num_workers)
        net, optimized = _inference_model(model, device, optimize)
        feats = _embed_batches(net, (imgs for imgs, *_ in loader), device, amp or precision == "bf16", optimized,
                               _Steps(len(records), progress))
    pids = np.array([r.pid for r in records], dtype=np.int64)
    camids = np.array([r.camid for r in records], dtype=np.int64)
    return feats, pids, camids


# ------------------------------------------------------------------------------------------- evaluation
def rank_gallery(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, topk: int = 10,
                 metric: str = "euclidean") -> list[dict]:
    """The ``topk`` closest valid gallery entries of each query, as ``metrics.evaluate_rank`` ranks them.

    Same protocol and tie rule as the metrics: gallery entries with the query's pid *and* camid are left
    out, and at equal distance a true match comes after a non-match. Returns one dict per query with
    ``g_indices`` (into the gallery), ``distances`` and ``matches`` (same pid) lists, closest first. Meant
    for a few queries (it holds ``num_q x num_g`` distances).
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk={topk!r}: expected an integer >= 1")
    distmat = compute_distmat(q_feats, g_feats, metric)
    device = distmat.device
    q_pids, g_pids, q_camids, g_camids = (_as_labels(x, device) for x in (q_pids, g_pids, q_camids, g_camids))
    num_q, num_g = distmat.shape
    for name, labels, n in (("q_pids", q_pids, num_q), ("g_pids", g_pids, num_g),
                            ("q_camids", q_camids, num_q), ("g_camids", g_camids, num_g)):
        if labels.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) to match the features, "
                             f"got {tuple(labels.shape)}")
    same_pid = q_pids[:, None] == g_pids[None, :]
    junk = same_pid & (q_camids[:, None] == g_camids[None, :])
    matches = same_pid & ~junk
    # Sort by (distance, is_match): stable sort on the tie-breaker first, then on the distance.
    order = torch.argsort(matches.to(torch.uint8), dim=1, stable=True)
    order = order.gather(1, torch.argsort(distmat.gather(1, order), dim=1, stable=True))
    ranked = []
    for row in range(distmat.shape[0]):
        valid = order[row][~junk[row, order[row]]][:topk]
        ranked.append({
            "g_indices": valid.tolist(),
            "distances": distmat[row, valid].tolist(),
            "matches": matches[row, valid].tolist(),
        })
    return ranked


def _as_labels(labels, device: torch.device) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        return labels.to(device=device, dtype=torch.int64)
    return torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)


def _sample_queries(num_query: int, num_samples: int) -> list[int]:
    """``num_samples`` query indices spread evenly over the query list (deterministic)."""
    if num_samples <= 0:
        return []
    spread = np.linspace(0, num_query - 1, min(num_samples, num_query)).round().astype(int)
    return sorted(set(spread.tolist()))


def evaluate(model, dataset: ReidDataset, *, metric: str = "euclidean", batch_size: int = 128,
             num_workers: int = 2, device: str | torch.device | None = None, max_rank: int = 50,
             num_samples: int = 8, topk: int = 10, amp: bool = False, backend: str = "torch",
             precision: str = "fp32", progress: Callable[[int, int], None] | None = None) -> dict:
    """Rank-1/5/10, mAP and mINP of ``model`` on ``dataset``'s query / gallery split (Section 4).

    ``model``: a ``ReIDNet`` (used where it is, its train / eval mode restored) or a checkpoint path.
    ``metric``: ``"euclidean"`` (squared, the default) or ``"cosine"``; both rank identically here since every
    descriptor has the same norm. Protocol and tie rule: ``metrics.evaluate_rank``. ``amp``: extract the
    descriptors with the network under autocast (``extract_features``); distances and metrics stay float32.
    ``backend`` / ``precision``: as ``FeatureExtractor``'s; with ``"onnxruntime"`` / ``"openvino"``, ``model``
    is the exported ``.onnx`` / ``.xml`` path. ``progress(done, total)``: query + gallery images embedded.

    Returns a dict of plain Python values (JSON-serialisable):

    * ``rank1``, ``rank5``, ``rank10``, ``mAP``, ``mINP``: floats in **percent**; ``num_query``,
      ``num_gallery``: ints (``SUMMARY_KEYS``);
    * ``cmc``: the CMC curve in percent, ``cmc[k - 1]`` = rank-k, ``min(max_rank, num_gallery)`` long;
    * ``dataset``, ``metric``, ``feature_dim``;
    * ``ranked``: for ``num_samples`` queries spread over the query list, a dict with ``q_index``,
      ``q_img_path``, ``q_pid``, ``q_camid`` and the ``topk`` closest valid gallery entries (``g_indices``,
      ``g_img_paths``, ``g_pids``, ``g_camids``, ``distances``, ``matches``), closest first.
    """
    if metric not in METRICS:  # checked before the (long) extraction, as are topk and max_rank
        raise ValueError(f"metric={metric!r}: expected one of {METRICS}")
    _check_splits(dataset)
    for name, value in (("topk", topk), ("max_rank", max_rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    _check_backend(backend, precision)
    source = model  # named when its descriptors are not finite
    if backend == "torch":
        model, device = _prepare_model(model, device)
    else:  # one session / compiled model for both splits
        model = FeatureExtractor(model, device=device, batch_size=batch_size, num_workers=num_workers,
                                 backend=backend, precision=precision)
        device = model.device
    amp = amp or precision == "bf16"
    total = len(dataset.query) + len(dataset.gallery)
    q_feats, q_pids, q_camids = extract_features(model, dataset.query, batch_size, num_workers, device, amp,
                                                 progress=_offset(progress, 0, total))
    g_feats, g_pids, g_camids = extract_features(model, dataset.gallery, batch_size, num_workers, device, amp,
                                                 progress=_offset(progress, len(dataset.query), total))
    _check_finite_features(q_feats, [r.img_path for r in dataset.query], source)
    _check_finite_features(g_feats, [r.img_path for r in dataset.gallery], source)
    num_query = len(q_pids)
    q_dev, g_dev = q_feats.to(device), g_feats.to(device)
    scores = score(q_dev, g_dev, q_pids, g_pids, q_camids, g_camids, metric=metric, max_rank=max_rank)

    sampled = _sample_queries(num_query, num_samples)
    ranked = []
    if sampled:
        lists = rank_gallery(q_dev[sampled], g_dev, q_pids[sampled], g_pids, q_camids[sampled], g_camids,
                             topk=topk, metric=metric)
        for q_index, ranks in zip(sampled, lists):
            g_index = ranks["g_indices"]
            ranked.append({
                "q_index": q_index,
                "q_img_path": dataset.query[q_index].img_path,
                "q_pid": int(q_pids[q_index]),
                "q_camid": int(q_camids[q_index]),
                **ranks,
                "g_img_paths": [dataset.gallery[i].img_path for i in g_index],
                "g_pids": [int(g_pids[i]) for i in g_index],
                "g_camids": [int(g_camids[i]) for i in g_index],
            })
    return {
        **{key: scores[key] for key in SUMMARY_KEYS},
        "dataset": dataset.name,
        "metric": metric,
        "feature_dim": int(q_feats.shape[1]),
        "cmc": scores["cmc"],
        "ranked": ranked,
    }


def _check_splits(dataset: ReidDataset) -> None:
    """An empty query or gallery split is named with its dataset and root (a reader refuses most of them: a
    hand-built ``ReidDataset`` can still have one)."""
    for split in ("query", "gallery"):
        if not getattr(dataset, split):
            raise ValueError(f"{dataset.name} ({dataset.root}): the {split} split is empty, nothing to evaluate: "
                             f"expected images of identities with pid >= 0 (pid -1 is junk and left out)")


def _check_finite_features(feats: torch.Tensor, paths: Sequence[str], model) -> None:
    """A one-line ``ValueError`` naming the model and the first image whose descriptor holds NaN or inf: no
    non-finite descriptor leaves the library (a checkpoint's weights are checked on load; this catches the rest,
    e.g. an exported file or an overflow)."""
    finite = torch.isfinite(feats).all(dim=1) if feats.dim() == 2 else torch.isfinite(feats)
    if len(finite) and not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        where = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        raise ValueError(f"{where} gave non-finite descriptors for {int((~finite).sum())} of {len(finite)} images, "
                         f"the first {paths[first]}")


def metrics_summary(result: Mapping) -> dict:
    """The scalar results of ``evaluate`` (``SUMMARY_KEYS``): what ``robustreid eval --json`` prints."""
    missing = [key for key in SUMMARY_KEYS if key not in result]
    if missing:
        raise ValueError(f"result lacks {missing}: expected the dict returned by evaluate()")
    return {key: result[key] for key in SUMMARY_KEYS}


def format_metrics(result: Mapping) -> str:
    """The results of ``evaluate`` as a few aligned lines of text (accuracies in percent)."""
    summary = metrics_summary(result)
    lines = [f"{result.get('dataset', 'dataset')}: {summary['num_query']} queries, "
             f"{summary['num_gallery']} gallery images"]
    for key, label in (("rank1", "rank-1"), ("rank5", "rank-5"), ("rank10", "rank-10"), ("mAP", "mAP"),
                       ("mINP", "mINP")):
        lines.append(f"  {label:<8}{summary[key]:6.2f}%")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- extract command
def list_images(inputs) -> list[str]:
    """Image files named by ``inputs`` (a path or a list of paths), in order.

    A directory stands for its ``.jpg`` / ``.jpeg`` / ``.png`` files (not recursive), sorted by name; a
    file is taken as is. A path that does not exist raises ``FileNotFoundError`` naming it; a directory
    without images raises ``ValueError``.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise ValueError("no inputs given: expected image files or directories of images")
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in directory '{path}'")
            images.extend(found)
        elif path.is_file():
            images.append(str(path))
        else:
            raise FileNotFoundError(f"input '{path}' does not exist: expected an image file or a directory")
    return images




def extract_to_npz(checkpoint, inputs, out: str | os.PathLike, *, batch_size: int = 64, num_workers: int = 0,
                   device: str | torch.device | None = None, backend: str = "torch",
                   precision: str = "fp32", progress: Callable[[int, int], None] | None = None) -> dict:
    """Descriptors of image files / folders (``list_images``) written to ``out`` as an ``.npz``, atomically.

    The archive holds ``features`` (float32 ``(N, D)``, L2-normalised branches) and ``paths`` (``(N,)``
    unicode strings, row order); ``np.load(out)`` reads it without pickle. ``checkpoint`` is a checkpoint
    path or a ``ReIDNet`` (with ``backend`` ``"onnxruntime"`` / ``"openvino"``: the exported file; ``precision``:
    see ``FeatureExtractor``; ``progress(done, total)``: images). Returns ``{"out", "num_images", "feature_dim"}``.
    """
    paths = list_images(inputs)
    extractor = FeatureExtractor(checkpoint, device=device, batch_size=batch_size, num_workers=num_workers,
                                 backend=backend, precision=precision)
    feats = extractor(paths, progress)
    _check_finite_features(feats, paths, checkpoint)
    feats = feats.numpy().astype(np.float32, copy=False)
    buffer = io.BytesIO()
    np.savez(buffer, features=feats, paths=np.array(paths, dtype=np.str_))
    out = Path(out)
    remove_stale_temp_files(out.parent, name=out.name)  # what a killed extract left beside the file
    write_bytes(out, buffer.getvalue())
    return {"out": str(out), "num_images": len(paths), "feature_dim": int(feats.shape[1])}
