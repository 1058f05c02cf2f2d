"""Deployment: the test descriptor as an ONNX model, run by onnxruntime, optionally quantized to INT8.

The paper argues for small networks because they are practical to deploy and productize (Section 1) and
compares cost in parameters and FLOPs (Table 1, Section 4.4: 1.7B FLOPs at 2x vs ResNet-50's 4.1B). What is
deployed is the test path of Figure 4 only: image batch ``(B, 3, H, W)`` -> descriptor ``(B, D)``, the
global and local branch features each L2-normalised and concatenated (``ReIDNet.embed``); the identity
classifiers are training-only and are not exported.

* ``export_onnx``: a checkpoint or ``ReIDNet`` -> ``.onnx`` file with a dynamic batch axis, input ``images``
  and output ``features``. The model's data config (input size, mean, std) and architecture travel in the
  ONNX ``metadata_props``, so the file alone is enough to preprocess images (``read_onnx_metadata``). The
  export is checked against PyTorch (max abs difference, random inputs and synthetic person crops) before the
  file is written, atomically.
* ``OnnxEmbedder`` (``onnx_backend``, re-exported here): an onnxruntime session over such a file,
  ``embed(images) -> (B, D)`` like ``ReIDNet.embed``; ``evaluate.FeatureExtractor(path, backend="onnxruntime")``
  is built on it.
* ``export_openvino``: the same graph as an OpenVINO IR (``.xml`` + ``.bin``, fp32 weights), the metadata in
  the IR's ``rt_info["robustreid"]`` section, checked against PyTorch by ``openvino_backend.OpenVinoEmbedder``
  before it is written (``evaluate.FeatureExtractor(path, backend="openvino")`` runs it, or the ``.onnx``).
* ``onnx_parity``: the same dataset ranked with two feature sources (PyTorch vs ONNX, ONNX fp32 vs int8, or
  any extractor, e.g. an OpenVINO bf16 one): identical top-k gallery lists, max abs difference, and rank-1 /
  mAP of both.
* ``quantize_onnx``: onnxruntime static quantization (QDQ, per-channel int8 weights, activation ranges
  calibrated on training images preprocessed with the test transform).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` is the default. With torch 2.13 it
traces robustreid_1x in about a second on an idle core, writes opsets 16-20 and needs only ``onnx`` (torch
flags it deprecated). The ``torch.export``-based exporter (``dynamo=True``) also gives a matching model but
needs ``onnxscript``, takes 10-20 s per network and no opset below 18 (its down-conversion to 17 fails on
this graph).
``GridSample`` (the hard-attention crops, ``attention.crop_regions``) needs opset >= 16.

``onnx`` and ``onnxruntime`` are optional dependencies (``pip install 'robustreid[onnx]'``), as is ``openvino``
(``pip install 'robustreid[openvino]'``, which also brings ``onnx`` for ``export_openvino``); they are imported
only when a function here needs them, so ``import robustreid.export`` works without them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .checkpoint import load_model
from .datasets import ReidDataset, read_image
from .datasets import labels as split_labels
from .device import unwrap
from .atomicfile import write_bytes
from .evaluate import FeatureExtractor, extract_features, rank_gallery
from .loaders import TestTransform
from .metrics import compute_distmat, score
from .model import arch_name
from .onnx_backend import (  # the run-time backend; re-exported here for the export-side user
    INPUT_NAME,
    METADATA_PREFIX,
    METADATA_VERSION,
    OUTPUT_NAME,
    OnnxEmbedder,
    _check_file,
    _import,
    _load_proto,
    read_onnx_metadata,
)
from .synthetic import derive_rng, render_crop, sample_camera, sample_identity

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PARITY_ATOL",
    "OnnxEmbedder",
    "export_onnx",
    "export_openvino",
    "onnx_parity",
    "quantize_onnx",
    "read_onnx_metadata",
]

DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample (attention.crop_regions)
MAX_OPSET = 20  # the highest the TorchScript-based exporter of torch 2.13 writes
MIN_DYNAMO_OPSET = 18
PARITY_ATOL = 1e-4  # max abs difference of the descriptors (unit-norm branches) allowed by the export check
# ... unless PyTorch's own float32 result is further than that from float64: then up to this many times
# PyTorch's own error (onnxruntime and PyTorch each round differently; a wrong graph differs by 0.1-1).
PARITY_NOISE_FACTOR = 4.0
# --------------------------------------------------------------------------------------------- model in
class _Descriptor(nn.Module):
    """The deployed graph: ``images (B, 3, H, W) -> features (B, D)`` (``ReIDNet.embed``, no classifiers)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


def _cpu_copy(checkpoint_or_model) -> nn.Module:
    """A checkpoint path or ``ReIDNet`` -> a CPU copy in eval mode (the caller's model is left untouched)."""
    if isinstance(checkpoint_or_model, (str, os.PathLike)):
        return load_model(checkpoint_or_model, map_location="cpu")
    if not isinstance(checkpoint_or_model, nn.Module):
        raise TypeError(f"expected a checkpoint path or a ReIDNet, got {type(checkpoint_or_model).__name__}")
    model = unwrap(checkpoint_or_model)
    if not (hasattr(model, "embed") and hasattr(model, "data_config") and hasattr(model, "arch")):
        raise TypeError(f"{type(model).__name__} has no embed() / data_config / arch: "
                        "expected a robustreid ReIDNet")
    return copy.deepcopy(model).cpu().eval()


def _plain_data_config(data_config: Mapping) -> dict:
    return {"input_size": [int(v) for v in data_config["input_size"]],
            "mean": [float(v) for v in data_config["mean"]], "std": [float(v) for v in data_config["std"]]}


# ------------------------------------------------------------------------------------------- metadata
def _metadata_props(model: nn.Module) -> dict[str, str]:
    """What an exported file carries besides the graph (ONNX ``metadata_props``: string -> string)."""
    return {
        f"{METADATA_PREFIX}metadata_version": str(METADATA_VERSION),
        f"{METADATA_PREFIX}arch_name": arch_name(model.arch),
        f"{METADATA_PREFIX}arch": json.dumps(model.arch.to_dict()),
        f"{METADATA_PREFIX}data_config": json.dumps(_plain_data_config(model.data_config)),
        f"{METADATA_PREFIX}feature_dim": str(int(model.feature_dim)),
        f"{METADATA_PREFIX}torch_version": torch.__version__,
    }


def _check_opset(opset, dynamo: bool) -> int:
    low = MIN_DYNAMO_OPSET if dynamo else MIN_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= MAX_OPSET:
        raise ValueError(f"opset={opset!r}: expected an integer in [{low}, {MAX_OPSET}] "
                         f"({'the torch.export-based exporter' if dynamo else 'GridSample needs >= 16'})")
    return opset


def _export_proto(model: nn.Module, opset: int, dynamic_batch: bool, dynamo: bool):
    """Trace ``model.embed`` into an ONNX ``ModelProto``."""
    onnx = _import("onnx")
    wrapper = _Descriptor(model).eval()
    h, w = model.data_config["input_size"]
    # Trace with 2 images when the batch is dynamic, so no size-1 dimension gets specialised.
    sample = torch.zeros(2 if dynamic_batch else 1, 3, h, w)
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and TracerWarnings from shape checks such as
        # concat_shuffle's `a.shape != b.shape`: constant for a given architecture, so safe to trace.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        if dynamo:
            _import("onnxscript")
            dynamic_shapes = {"images": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
            program = torch.onnx.export(wrapper, (sample,), None, dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=dynamic_shapes, verbose=False, report=False)
            return program.model_proto
        buffer = io.BytesIO()
        dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        torch.onnx.export(wrapper, (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _synthetic_crops(count: int = 4, size: tuple[int, int] = (128, 64), seed: int = 0) -> list[Image.Image]:
    """``count`` synthetic person crops (``synthetic.render_crop``) drawn in memory, to check the export."""
    crops = []
    for index in range(count):
        rng = derive_rng(seed, 9, index)
        crops.append(render_crop(sample_identity(rng), sample_camera(rng), rng, size))
    return crops


def _parity_inputs(data_config: Mapping, batch_sizes: Sequence[int], images: Sequence) -> dict:
    """Check inputs: standard-normal batches (one per batch size) and the preprocessed ``images``."""
    h, w = data_config["input_size"]
    generator = torch.Generator().manual_seed(0)
    inputs = {f"random_b{b}": torch.randn(b, 3, h, w, generator=generator) for b in batch_sizes}
    transform = TestTransform(data_config)
    inputs["images"] = torch.stack([transform(read_image(i) if isinstance(i, (str, os.PathLike)) else
                                              i.convert("RGB")) for i in images])
    return inputs


def export_onnx(checkpoint_or_model, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, check: bool = True, check_images: Sequence | None = None,
                atol: float = PARITY_ATOL, dynamo: bool = False) -> dict:
    """Export the test descriptor (``ReIDNet.embed``, Figure 4) of a checkpoint or model to ONNX at ``out``.

    The graph has one input ``images`` ``(B, 3, H, W)`` (normalised as ``loaders.TestTransform`` does) and one
    output ``features`` ``(B, D)``; ``B`` is a dynamic axis unless ``dynamic_batch=False`` (then fixed to 1).
    The data config, architecture (name and ``Architecture.to_dict()``) and descriptor length are stored as
    metadata (``read_onnx_metadata``). With ``check`` (default) the model is run by onnxruntime before it is
    written: on random batches (of 1 and 3 images when the batch is dynamic) and on ``check_images`` (image
    paths or PIL images; default four synthetic person crops) its descriptors must be within ``atol`` of
    PyTorch's, else ``RuntimeError`` and nothing is written. A deep network can amplify float32 rounding
    beyond ``atol`` (an untrained, BN-calibrated robustreid_1x on synthetic crops: PyTorch float32 is 2.5e-4
    from float64), so each input's bound is ``max(atol, PARITY_NOISE_FACTOR x`` PyTorch's own float32 error
    against a float64 copy of the model``)``; both errors are reported. The file is written atomically.

    ``dynamo=True`` uses the ``torch.export``-based exporter (needs ``onnxscript`` and ``opset >= 18``).

    Returns ``{"out", "bytes", "opset", "dynamic_batch", "exporter", "arch_name", "feature_dim",
    "input_size", "parity"}`` with ``parity`` = ``{"max_abs_diff", "torch_fp32_error", "tolerance"}`` (each
    ``{input name: float}``) plus ``"atol"`` and ``"ok"`` (``None`` without ``check``).
    """
    opset = _check_opset(opset, dynamo)
    if not (isinstance(atol, (int, float)) and atol > 0):
        raise ValueError(f"atol={atol!r}: expected a positive number")
    model = _cpu_copy(checkpoint_or_model)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory: expected an .onnx file path")
    proto = _export_proto(model, opset, dynamic_batch, dynamo)
    onnx = _import("onnx")
    onnx.helper.set_model_props(proto, _metadata_props(model))
    proto.doc_string = (f"robustreid {arch_name(model.arch)} test descriptor: images (B, 3, H, W) -> "
                        "features (B, D), each branch L2-normalised (ReIDNet.embed)")
    data = proto.SerializeToString()

    parity = None
    if check:
        batch_sizes = (1, 3) if dynamic_batch else (1,)
        images = _synthetic_crops() if check_images is None else list(check_images)
        inputs = _parity_inputs(model.data_config, batch_sizes, images)
        parity = _parity_check(model, data, inputs, atol)
        if not parity["ok"]:
            raise RuntimeError(f"ONNX export of {arch_name(model.arch)} does not match PyTorch: max abs "
                               f"differences {parity['max_abs_diff']} exceed {parity['tolerance']} (PyTorch "
                               f"float32 vs float64: {parity['torch_fp32_error']}); {out} was not written")
    write_bytes(out, data)
    return {"out": str(out), "bytes": len(data), "opset": opset, "dynamic_batch": bool(dynamic_batch),
            "exporter": "dynamo" if dynamo else "torchscript", "arch_name": arch_name(model.arch),
            "feature_dim": int(model.feature_dim), "input_size": list(model.data_config["input_size"]),
            "parity": parity}


def _parity_check(model: nn.Module, data: bytes, inputs: Mapping[str, torch.Tensor], atol: float) -> dict:
    """Max abs difference of onnxruntime's descriptors (model bytes ``data``) to ``model.embed`` per input,
    with PyTorch's own float32 error (vs a float64 copy) and the resulting bound (see ``export_onnx``)."""
    with tempfile.TemporaryDirectory() as tmp:  # OnnxEmbedder reads a file, like every user of the export
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        return _parity(model, OnnxEmbedder(path).embed, inputs, atol)


def _parity(model: nn.Module, embed, inputs: Mapping[str, torch.Tensor], atol: float) -> dict:
    """``embed``'s descriptors against ``model.embed`` per input (bounds: see ``export_onnx``)."""
    model64 = copy.deepcopy(model).double()
    diffs, noise, bound = {}, {}, {}
    for name, x in inputs.items():
        with torch.no_grad():
            expected = model.embed(x)
            noise[name] = float((expected.double() - model64.embed(x.double())).abs().max())
        diffs[name] = float((embed(x) - expected).abs().max())
        bound[name] = max(float(atol), PARITY_NOISE_FACTOR * noise[name])
    return {"max_abs_diff": diffs, "torch_fp32_error": noise, "tolerance": bound, "atol": float(atol),
            "ok": all(diffs[name] <= bound[name] for name in diffs)}


def export_openvino(checkpoint_or_model, out: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                    dynamic_batch: bool = True, check: bool = True, check_images: Sequence | None = None,
                    atol: float = PARITY_ATOL) -> dict:
    """Export the test descriptor of a checkpoint or model to an OpenVINO IR: ``out`` (``.xml``) and the
    ``.bin`` of the same name beside it.

    The graph is ``export_onnx``'s (traced to ONNX in memory, then read by OpenVINO's ONNX front end), saved
    with fp32 weights (``save_model(compress_to_fp16=False)``: the precision is chosen when the model is run,
    ``OpenVinoEmbedder(precision=...)``). The metadata (data config, architecture, descriptor length) goes in
    the IR's ``rt_info["robustreid"]`` section, so the IR alone is enough (``read_openvino_metadata``). With
    ``check`` (default) the IR is run by OpenVINO in fp32 before it is written, against PyTorch, with the
    bounds of ``export_onnx``; a mismatch is a ``RuntimeError`` and nothing is written. Both files are
    written atomically, the ``.bin`` first.

    Returns ``{"out", "bin", "bytes", "opset", "dynamic_batch", "arch_name", "feature_dim", "input_size",
    "openvino_version", "parity"}`` (``parity`` as in ``export_onnx``).
    """
    from .openvino_backend import RT_INFO_SECTION, OpenVinoEmbedder, _import_openvino, shared_core

    ov = _import_openvino()
    opset = _check_opset(opset, dynamo=False)
    if not (isinstance(atol, (int, float)) and atol > 0):
        raise ValueError(f"atol={atol!r}: expected a positive number")
    out = Path(out)
    if out.suffix.lower() != ".xml" or out.is_dir():
        raise ValueError(f"output {out}: expected an OpenVINO IR file path ending in .xml "
                         "(its .bin goes beside it)")
    model = _cpu_copy(checkpoint_or_model)
    onnx = _import("onnx")
    proto = _export_proto(model, opset, dynamic_batch, dynamo=False)
    props = _metadata_props(model)
    onnx.helper.set_model_props(proto, props)
    with tempfile.TemporaryDirectory(prefix="robustreid-openvino-") as tmp:
        onnx_path, xml = Path(tmp) / "model.onnx", Path(tmp) / "model.xml"
        onnx_path.write_bytes(proto.SerializeToString())
        ov_model = shared_core().read_model(str(onnx_path))
        for key, value in props.items():
            ov_model.set_rt_info(value, [RT_INFO_SECTION, key.removeprefix(METADATA_PREFIX)])
        ov_model.set_rt_info(ov.__version__, [RT_INFO_SECTION, "openvino_version"])
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        parity = None
        if check:
            batch_sizes = (1, 3) if dynamic_batch else (1,)
            images = _synthetic_crops() if check_images is None else list(check_images)
            inputs = _parity_inputs(model.data_config, batch_sizes, images)
            parity = _parity(model, OpenVinoEmbedder(xml, num_threads=torch.get_num_threads()).embed, inputs,
                             atol)
            if not parity["ok"]:
                raise RuntimeError(f"OpenVINO export of {arch_name(model.arch)} does not match PyTorch: max abs "
                                   f"differences {parity['max_abs_diff']} exceed {parity['tolerance']}; "
                                   f"{out} was not written")
        xml_bytes, bin_bytes = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    write_bytes(out.with_suffix(".bin"), bin_bytes)
    write_bytes(out, xml_bytes)
    return {"out": str(out), "bin": str(out.with_suffix(".bin")), "bytes": len(xml_bytes) + len(bin_bytes),
            "opset": opset, "dynamic_batch": bool(dynamic_batch), "arch_name": arch_name(model.arch),
            "feature_dim": int(model.feature_dim), "input_size": list(model.data_config["input_size"]),
            "openvino_version": ov.__version__, "parity": parity}


# ---------------------------------------------------------------------------------------------- parity
def _features(source, records, batch_size: int) -> torch.Tensor:
    """Descriptors of ``records`` by a ``ReIDNet`` / checkpoint (torch), an ``.onnx`` file (onnxruntime), an
    OpenVINO IR ``.xml`` (openvino, fp32) or an extractor (image paths -> ``(N, D)``, e.g. a
    ``FeatureExtractor``)."""
    suffix = Path(source).suffix.lower() if isinstance(source, (str, os.PathLike)) else None
    if suffix in (".onnx", ".xml"):
        backend = "onnxruntime" if suffix == ".onnx" else "openvino"
        extractor = FeatureExtractor(source, batch_size=batch_size, backend=backend)
        return extractor([r.img_path for r in records])
    if callable(source) and not isinstance(source, nn.Module):
        return torch.as_tensor(source([r.img_path for r in records]), dtype=torch.float32)
    return extract_features(source, records, batch_size=batch_size, num_workers=0)[0]


def _compare_rankings(reference, candidate, labels, topk: int, tie_tol: float, chunk: int = 256) -> dict:
    """Top-``topk`` gallery lists of every query from two ``(q_feats, g_feats)`` pairs, compared.

    A candidate list that differs from the reference list only by swapping gallery entries whose reference
    distances are within ``tie_tol`` of each other is a near-tie (the k-th smallest reference distances of
    both lists agree within ``tie_tol`` for every k): rounding, not a different ranking.
    """
    (ref_q, ref_g), (cand_q, cand_g) = reference, candidate
    q_pids, g_pids, q_camids, g_camids = labels
    differing, gaps, noise = 0, [], 0.0
    for start in range(0, len(ref_q), chunk):
        part = slice(start, start + chunk)
        ref_dist = compute_distmat(ref_q[part], ref_g)
        noise = max(noise, float((ref_dist - compute_distmat(cand_q[part], cand_g)).abs().max()))
        ranked = [rank_gallery(q, g, q_pids[part], g_pids, q_camids[part], g_camids, topk=topk)
                  for q, g in ((ref_q[part], ref_g), (cand_q[part], cand_g))]
        for row, (ref_list, cand_list) in enumerate(zip(*ranked)):
            if ref_list["g_indices"] != cand_list["g_indices"]:
                differing += 1
                # The reference's distances of the candidate's list, against its own top-k distances.
                seen = ref_dist[row, cand_list["g_indices"]].sort().values
                gaps.append(float((seen - torch.tensor(ref_list["distances"], dtype=seen.dtype)).abs().max()))
    return {"identical_topk": differing == 0, "queries_differing": differing,
            "queries_differing_beyond_ties": sum(gap > tie_tol for gap in gaps),
            "max_tie_gap": max(gaps, default=0.0), "tie_tol": tie_tol, "max_distance_diff": noise}


def onnx_parity(reference, candidate, dataset: ReidDataset, *, topk: int = 10, batch_size: int = 64,
                tie_tol: float = 1e-3) -> dict:
    """Rank ``dataset``'s query / gallery split with two feature sources and compare the results.

    ``reference`` / ``candidate``: a ``ReIDNet`` or checkpoint path (PyTorch), an ``.onnx`` path
    (onnxruntime), an OpenVINO IR ``.xml`` path (OpenVINO fp32) or an extractor (image paths -> ``(N, D)``,
    e.g. ``FeatureExtractor(path, backend="openvino", precision="bf16")``): a checkpoint vs its export, or an
    fp32 export vs its int8 quantization. Every query's
    top-``topk`` gallery list (``evaluate.rank_gallery``) is compared. Returns:

    * ``identical_topk``, ``queries_differing``: exact equality of the lists;
    * ``queries_differing_beyond_ties``: lists that differ by more than swapping entries whose reference
      (squared Euclidean) distances are within ``tie_tol`` (0: every difference is a near-tie swapped by
      rounding); ``max_tie_gap``: the largest such distance gap among differing lists;
    * ``max_distance_diff`` (query-gallery distances), ``max_abs_diff`` (descriptors), ``min_cosine`` (per
      image, query and gallery);
    * ``reference``, ``candidate``: ``{"rank1", "mAP"}`` in percent; ``delta_rank1``, ``delta_mAP``
      (candidate minus reference); ``topk``, ``num_query``, ``num_gallery``.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk={topk!r}: expected an integer >= 1")
    if not (isinstance(tie_tol, (int, float)) and tie_tol >= 0):
        raise ValueError(f"tie_tol={tie_tol!r}: expected a number >= 0")
    (q_pids, q_camids), (g_pids, g_camids) = split_labels(dataset.query), split_labels(dataset.gallery)
    labels = (q_pids, g_pids, q_camids, g_camids)
    results, feats = {}, {}
    for role, source in (("reference", reference), ("candidate", candidate)):
        feats[role] = tuple(_features(source, split, batch_size)
                            for split in (dataset.query, dataset.gallery))
        scores = score(*feats[role], q_pids, g_pids, q_camids, g_camids, max_rank=topk)
        results[role] = {"rank1": scores["rank1"], "mAP": scores["mAP"]}
    rankings = _compare_rankings(feats["reference"], feats["candidate"], labels, topk, float(tie_tol))
    ref_all, cand_all = torch.cat(feats["reference"]), torch.cat(feats["candidate"])
    return {
        **rankings,
        "max_abs_diff": float((ref_all - cand_all).abs().max()),
        "min_cosine": float(torch.nn.functional.cosine_similarity(ref_all, cand_all, dim=1).min()),
        "topk": topk,
        "num_query": len(q_pids),
        "num_gallery": len(g_pids),
        **results,
        "delta_rank1": results["candidate"]["rank1"] - results["reference"]["rank1"],
        "delta_mAP": results["candidate"]["mAP"] - results["reference"]["mAP"],
    }


# -------------------------------------------------------------------------------------------- quantize
def _calibration_batches(images: Sequence, data_config: Mapping, batch_size: int, max_images: int):
    """Evenly spaced ``images``, test-transformed, as float32 arrays of exactly ``batch_size`` images (all of
    one size: onnxruntime's histogram calibrators need that), or one smaller batch if there are fewer images.
    At most ``max_images`` are used; returns ``(batches, number of images used)``."""
    images = list(images)
    if not images:
        raise ValueError("calibration_images is empty: expected image paths or PIL images "
                         "(e.g. the training images)")
    count = min(len(images), max_images)
    count = count if count < batch_size else count - count % batch_size
    picked = range(count)
    if count < len(images):
        picked = np.linspace(0, len(images) - 1, count).round().astype(int)
    transform = TestTransform(data_config)
    tensors = []
    for index in picked:
        image = images[index]
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image)  # FileNotFoundError / ValueError naming the file
        elif not isinstance(image, Image.Image):
            raise TypeError(f"calibration image {index}: expected a path or a PIL image, "
                            f"got {type(image).__name__}")
        tensors.append(transform(image.convert("RGB")))
    batch = torch.stack(tensors).numpy()
    return [batch[i:i + batch_size] for i in range(0, len(batch), batch_size)], count


def _check_quantize_args(quantization, fp32_path: Path, meta: dict, calibrate_method: str,
                         activation_type: str, op_types, max_images: int, batch_size: int, calibration_stride: int | None):
    """``quantize_onnx``'s arguments, checked before any work; returns onnxruntime's calibration methods and
    activation types by name."""
    if meta["quantization"] is not None:
        raise ValueError(f"{fp32_path} is already quantized ({meta['quantization']}): "
                         "expected an fp32 export")
    method = quantization.CalibrationMethod
    methods = {"minmax": method.MinMax, "entropy": method.Entropy, "percentile": method.Percentile}
    types = {"int8": quantization.QuantType.QInt8, "uint8": quantization.QuantType.QUInt8}
    if calibrate_method not in methods:
        raise ValueError(f"calibrate_method={calibrate_method!r}: expected one of {sorted(methods)}")
    if activation_type not in types:
        raise ValueError(f"activation_type={activation_type!r}: expected one of {sorted(types)}")
    if op_types is not None and (isinstance(op_types, str) or not op_types
                                 or not all(isinstance(t, str) for t in op_types)):
        raise ValueError(f"op_types={op_types!r}: expected None or a non-empty list of ONNX operator names "
                         "such as ['Conv', 'Gemm']")
    for name, value in (("max_images", max_images), ("batch_size", batch_size),
                        ("calibration_stride", 1 if calibration_stride is None else calibration_stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1" +
                             (" or None" if name == "calibration_stride" else ""))
    return methods, types


def _calibration_reader(quantization, batches: list):
    """An onnxruntime ``CalibrationDataReader`` over ``batches``; ``set_range`` serves one pass of
    ``calibration_stride`` of them."""

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(batches))

        def __len__(self):
            return len(batches)

        def set_range(self, start_index: int, end_index: int):
            self._batches = iter(batches[start_index:end_index])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return _Reader()


def quantize_onnx(fp32_path: str | os.PathLike, out: str | os.PathLike, calibration_images: Sequence, *,
                  per_channel: bool = True, max_images: int = 64, batch_size: int = 32,
                  calibrate_method: str = "percentile", activation_type: str = "uint8",
                  reduce_range: bool = False, op_types: Sequence[str] | None = ("Conv",),
                  keep_first_conv: bool = True, calibration_stride: int | None = None) -> dict:
    """Static INT8 quantization of an exported model (onnxruntime, QDQ format), written atomically to ``out``.

    Activation ranges are calibrated on ``calibration_images`` (image paths or PIL images, e.g. the training
    set; at most ``max_images``, evenly spaced) preprocessed with the model's own test transform (data config
    from the file's metadata); weights are int8, per output channel by default. The graph is first
    pre-processed (shape inference, fusions) by ``onnxruntime.quantization.quant_pre_process``. The metadata
    is kept, plus ``robustreid.quantization`` (method, format, calibration size) so ``read_onnx_metadata``
    tells int8 from fp32. ``calibrate_method``: ``"minmax"``, ``"entropy"`` or ``"percentile"`` (the histogram
    methods are several times slower to calibrate and need far more memory). ``op_types``: the operator types
    quantized (None: every type onnxruntime can, which includes the attention products, GeM's ``Pow``,
    ``Resize`` and ``GridSample``); ``keep_first_conv``: leave
    the stem convolution, which sees the raw pixels, in fp32. ``calibration_stride``: batches per calibration
    pass (onnxruntime's ``CalibStridedMinMax``; ``None``, the default: one pass over all). The histogram
    calibrators keep every activation of a pass before binning it, so one pass needs memory in proportion to
    ``max_images``; several passes bound it, at some cost in accuracy. The defaults are the most accurate
    setting measured on the README's 40-epoch robustreid_1x (README, "Export"), and none measured is reliably
    within half a point of fp32: check with ``onnx_parity``.
    ``activation_type``: ``"uint8"`` (default: onnxruntime's fast U8S8 x86 kernels) or ``"int8"`` (S8S8). On
    x86 CPUs without VNNI, U8S8 products can saturate: ``reduce_range=True`` (7-bit weights) avoids it; check
    accuracy with ``onnx_parity``.

    Returns ``{"out", "bytes", "fp32_bytes", "calibration_images", "per_channel", "calibrate_method",
    "activation_type", "reduce_range", "op_types", "fp32_nodes", "calibration_stride"}``.
    """
    onnx = _import("onnx")
    quantization = _import("onnxruntime.quantization")
    fp32_path = _check_file(fp32_path)
    meta = read_onnx_metadata(fp32_path)
    methods, types = _check_quantize_args(quantization, fp32_path, meta, calibrate_method, activation_type,
                                          op_types, max_images, batch_size, calibration_stride)
    extra_options = {} if calibration_stride is None else {"CalibStridedMinMax": calibration_stride}
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory: expected an .onnx file path")
    if meta["batch_size"] is not None:
        batch_size = meta["batch_size"]  # a fixed-batch model takes only batches of its size
        max_images = max(max_images, batch_size)
    batches, num_images = _calibration_batches(calibration_images, meta["data_config"], batch_size,
                                               max_images)
    if meta["batch_size"] is not None and num_images < batch_size:
        raise ValueError(f"{fp32_path} takes batches of {batch_size} images: expected at least {batch_size} "
                         f"calibration images, got {num_images}")

    with tempfile.TemporaryDirectory(prefix="robustreid-quant-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quantization.quant_pre_process(str(fp32_path), str(prepared))
        convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        excluded = convs[:1] if keep_first_conv else []
        # the histogram calibrators print progress on stdout, which is the CLI's JSON channel: send it to stderr
        with contextlib.redirect_stdout(sys.stderr):
            quantization.quantize_static(
                str(prepared), str(quantized), _calibration_reader(quantization, batches),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=per_channel, activation_type=types[activation_type],
                weight_type=quantization.QuantType.QInt8, calibrate_method=methods[calibrate_method],
                reduce_range=bool(reduce_range), op_types_to_quantize=None if op_types is None else list(op_types),
                nodes_to_exclude=excluded, extra_options=extra_options,
            )
        proto = onnx.load(str(quantized))
    settings = {"method": "static", "format": "QDQ", "per_channel": bool(per_channel), "weight_type": "int8",
                "activation_type": activation_type, "reduce_range": bool(reduce_range),
                "calibrate_method": calibrate_method,
                "op_types": None if op_types is None else list(op_types), "fp32_nodes": excluded,
                "calibration_images": num_images, "calibration_stride": calibration_stride,
                "onnxruntime_version": _import("onnxruntime").__version__}
    props = {p.key: p.value for p in _load_proto(fp32_path).metadata_props}
    props[f"{METADATA_PREFIX}quantization"] = json.dumps(settings)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    data = proto.SerializeToString()
    write_bytes(out, data)
    return {"out": str(out), "bytes": len(data), "fp32_bytes": fp32_path.stat().st_size,
            "calibration_images": num_images, "per_channel": bool(per_channel),
            "calibrate_method": calibrate_method, "activation_type": activation_type,
            "reduce_range": bool(reduce_range), "op_types": None if op_types is None else list(op_types),
            "fp32_nodes": excluded, "calibration_stride": calibration_stride}
