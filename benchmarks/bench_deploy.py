"""Deployment speed and accuracy: PyTorch variants vs onnxruntime fp32 / int8 vs OpenVINO fp32 / bf16 / int8,
against the machine's ceiling, and the one table of the deployment issue (every backend: rank-1 / mAP change
against PyTorch fp32, top-10 agreement, images/s at each batch size, the recommended path).

One JSON object per line on stdout:

* ``kind="matmul_peak"``: fp32 (and bf16) rate of an N x N matrix product with ``--threads`` threads, in
  PyTorch (``torch.mm``) and in onnxruntime (a one-node ``MatMul`` graph); the faster fp32 one is the ceiling
  the networks are measured against (on the benchmark machine the two were within 1 % of each other);
* ``kind="speed"``: images/s of the test descriptor (``ReIDNet.embed``) per (model, backend, batch size) with
  achieved GFLOP/s = 2 x MACs x images/s (MACs from ``robustreid.profile.count_macs``) and its fraction of the
  fp32 matmul peak. Backends: ``torch-eager`` (fp32, the batch in one call), ``torch-channels_last``,
  ``torch-optimized`` (``robustreid.inference``: BatchNorm folded, channels_last, micro-batches of
  ``CPU_MICRO_BATCH`` images, as ``FeatureExtractor`` runs by default), ``torch-bf16`` (autocast over
  torch-optimized), ``torch-compile`` (inductor, in a child process killed after ``--compile-timeout`` s),
  ``ort-fp32`` and ``ort-int8`` (``export.OnnxEmbedder`` with its default CPU micro-batches; int8: static
  QDQ quantization calibrated on training images), ``ort-fp32-one-call`` (the batch in one session call),
  ``ov-fp32`` / ``ov-bf16`` (``openvino_backend.OpenVinoEmbedder`` on the IR of ``export.export_openvino``,
  ``INFERENCE_PRECISION_HINT`` f32 / bf16; ``execution_precision`` says what the CPU plugin ran: fp32 where the
  CPU has no bfloat16) and ``ov-int8`` (OpenVINO running the ort-int8 QDQ file: OpenVINO's own quantizer, NNCF,
  is a separate heavy package and is not used). OpenVINO runs one request per batch; ``--ov-micro-batch 0 8``
  also times micro-batches of 8 (backend name ``ov-fp32-mb8`` ...), the A/B that decides whether the
  embedder should split batches. Each record's ``micro_batch`` says how a batch was split (null: one call);
* ``kind="export"`` / ``kind="quantize"``: file sizes, times and the export's parity figures;
* ``kind="accuracy"``: ``export.onnx_parity`` of PyTorch fp32 (``FeatureExtractor``, as evaluation runs it)
  against every other backend and precision (torch-bf16, ort-fp32, ort-int8, ov-fp32, ov-bf16, ov-int8) on the
  query / gallery split: identical top-10 lists, rank-1 / mAP of both, and whether it stays within 0.5 points;
* ``kind="table"``: one row per timed backend joining its accuracy record and its speeds, ``recommended``
  on the fastest row (at the largest batch size) within 0.5 points of fp32 on both rank-1 and mAP.

Every line carries ``load_avg_1min``: the machine may be shared, and a busy core makes every figure smaller.

Weights: by default each network is untrained with its BatchNorm statistics set from the training images
(train-mode forwards without gradients): a freshly initialised network runs far slower (denormal activations)
and is not what anyone deploys. Accuracy deltas of an untrained network mean little: pass ``--checkpoint`` (a
trained model) and ``--data`` (a Market1501-layout root) to measure the ones that matter. Without ``--data`` a
small synthetic dataset is written to a temporary folder.

    python benchmarks/bench_deploy.py [--models hacnn robustreid_1x robustreid_2x] [--batch-sizes 1 64]
        [--backends ...] [--threads 2] [--seconds 2] [--repeats 3] [--compile-models robustreid_1x]
        [--compile-timeout 420] [--checkpoint PATH] [--data ROOT] [--markdown results.md]
        [--ov-micro-batch 0 8] [--no-compile] [--no-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustreid.atomicfile import write_text
from robustreid.checkpoint import load_model, model_state, save_checkpoint
from robustreid.datasets import load_dataset, read_image
from robustreid.inference import CPU_MICRO_BATCH, embed_micro_batched, optimize_for_inference
from robustreid.loaders import TestTransform
from robustreid.model import arch_name, build_model, list_models
from robustreid.profile import count_macs
from robustreid.swag import update_bn
from robustreid.synthetic import write_market1501
from robustreid.zoo import is_zoo_name

TORCH_BACKENDS = ("torch-eager", "torch-channels_last", "torch-optimized", "torch-bf16", "torch-compile")
ORT_BACKENDS = ("ort-fp32", "ort-fp32-one-call", "ort-int8")
OV_BACKENDS = ("ov-fp32", "ov-bf16", "ov-int8")
FILE_BACKENDS = (*ORT_BACKENDS, *OV_BACKENDS)
MAX_DROP_POINTS = 0.5  # a reduced precision is kept only if rank-1 and mAP drop by at most this many points
REFERENCE = "torch-fp32"  # the accuracy reference: FeatureExtractor(checkpoint), as evaluation runs it


def emit(record: dict) -> dict:
    record = {"bench": "deploy", **record, "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(record), flush=True)
    return record


# ------------------------------------------------------------------------------------------------ timing
def rate(fn, min_seconds: float, min_calls: int = 2, repeats: int = 3) -> float:
    """Calls per second of ``fn`` after one warm-up call: the best of ``repeats`` windows of at least
    ``min_calls`` calls and ``min_seconds`` each (this machine's neighbours come and go: a window can lose a
    third of its speed to them, so the fastest window is the machine's own rate, as ``timeit`` takes).
    On the benchmark machine the same onnxruntime session alternated between ~65 and ~111 images/s in phases
    of 10-20 s (no CPU steal recorded: a busy neighbour on shared cores), so ``--repeats`` x ``--seconds``
    should span a few phases for figures that matter."""
    fn()
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < min_seconds:
            fn()
            calls += 1
        best = max(best, calls / (time.perf_counter() - start))
    return best


def ort_matmul(n: int, threads: int):
    """A call running one ``n x n`` fp32 product in an onnxruntime session of one ``MatMul`` node (2 n^3 flops)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a, b = (helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ab")
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": np.random.randn(n, n).astype(np.float32), "b": np.random.randn(n, n).astype(np.float32)}
    return lambda: session.run(None, feed)


def ort_matmul_peak(n: int, threads: int, seconds: float) -> float:
    """GFLOP/s of an ``n x n`` fp32 product in an onnxruntime session of one ``MatMul`` node."""
    return 2 * n**3 * rate(ort_matmul(n, threads), seconds / 3) / 1e9


def matmul_peak(n: int, dtype: torch.dtype, seconds: float) -> float:
    """GFLOP/s of an ``n x n`` by ``n x n`` product (2 n^3 flops), best of three runs."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 * rate(lambda: torch.mm(a, b), seconds / 3) / 1e9


# ----------------------------------------------------------------------------------------------- weights
def image_batch(records, data_config, limit: int) -> torch.Tensor:
    transform = TestTransform(data_config)
    step = max(1, len(records) // limit)
    return torch.stack([transform(read_image(r.img_path)) for r in records[::step][:limit]])


def calibrate_bn(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> None:
    """BatchNorm running statistics = cumulative averages over ``images`` (``swag.update_bn``), eval mode."""
    update_bn(model, [b for b in images.split(batch_size) if len(b) > 1])
    model.eval()


# ------------------------------------------------------------------------------------------------ speed
def torch_runner(model, backend: str, x: torch.Tensor):
    """``(callable running one batch through backend, micro_batch)``."""
    if backend == "torch-eager":
        return (lambda: model.embed(x)), None
    if backend == "torch-channels_last":
        model_cl = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        return (lambda: model_cl.embed(x_cl)), None
    fast = optimize_for_inference(model)
    if backend == "torch-optimized":
        return (lambda: embed_micro_batched(fast.embed, x, CPU_MICRO_BATCH, channels_last=True)), CPU_MICRO_BATCH
    if backend == "torch-bf16":
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return embed_micro_batched(fast.embed, x, CPU_MICRO_BATCH, channels_last=True)
        return run, CPU_MICRO_BATCH
    raise ValueError(f"unknown torch backend {backend!r}")


def speed_record(name, backend, batch_size, images_per_s, gmacs, peak, threads, **extra) -> dict:
    gflops = 2 * gmacs * images_per_s
    return {"kind": "speed", "model": name, "backend": backend, "batch_size": batch_size,
            "images_per_s": round(images_per_s, 2), "ms_per_image": round(1000 / images_per_s, 2),
            "gmacs": round(gmacs, 4), "gflops_per_s": round(gflops, 2),
            "fraction_of_fp32_peak": round(gflops / peak, 4) if peak else None, "threads": threads, **extra}


def compile_child(args) -> None:
    """In a child process: ``torch.compile`` the descriptor of ``--compile-child`` and time it."""
    torch.set_num_threads(args.threads)
    model = load_model(args.compile_child).eval()

    class Descriptor(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net.embed(images)

    compiled = torch.compile(Descriptor(model).eval(), dynamic=False)
    h, w = model.data_config["input_size"]
    for bs in args.batch_sizes:
        x = torch.randn(bs, 3, h, w)
        start = time.perf_counter()
        with torch.no_grad():
            diff = float((compiled(x) - model.embed(x)).abs().max())
        compile_s = time.perf_counter() - start
        with torch.no_grad():
            calls = rate(lambda: compiled(x), args.seconds, repeats=args.repeats)
        emit(speed_record(args.compile_name, "torch-compile", bs, calls * bs, args.compile_gmacs,
                          args.compile_peak, args.threads, compile_seconds=round(compile_s, 1),
                          max_abs_diff_vs_eager=diff))


def run_compiled(model, name, gmacs, peak, threads, args, tmp: Path) -> list[dict]:
    """Time ``torch.compile`` in a child process (compilation cannot be interrupted in this one)."""
    ckpt = save_checkpoint(model_state(model), tmp / f"{name}-compile.pt")
    cmd = [sys.executable, __file__, "--compile-child", str(ckpt), "--compile-name", name,
           "--compile-gmacs", str(gmacs), "--compile-peak", str(peak), "--threads", str(threads),
           "--seconds", str(args.seconds), "--repeats", str(args.repeats),
           "--batch-sizes", *map(str, args.batch_sizes)]
    # One compile worker: the pool of inductor's parallel compile would outlive a timed-out child.
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    skipped = None
    try:
        out = subprocess.run(cmd, env=env, timeout=args.compile_timeout, check=True,
                             stdout=subprocess.PIPE).stdout
    except subprocess.TimeoutExpired as exc:
        out, skipped = exc.stdout, f"did not finish within {args.compile_timeout} s (child killed)"
    except subprocess.CalledProcessError as exc:
        out, skipped = exc.stdout, f"child failed with exit code {exc.returncode}"
    records = []
    for line in (out or b"").decode().splitlines():  # the child's finished measurements
        print(line, flush=True)
        records.append(json.loads(line))
    if skipped:
        records.append(emit({"kind": "speed", "model": name, "backend": "torch-compile", "skipped": skipped}))
    return records


def ort_speed(path: Path, x: torch.Tensor, threads: int, one_call: bool):
    """``(callable running one batch through an OnnxEmbedder, micro_batch)``."""
    from robustreid.export import OnnxEmbedder

    embedder = OnnxEmbedder(path, num_threads=threads, micro_batch=None if one_call else CPU_MICRO_BATCH)
    array = x.numpy()
    return (lambda: embedder.embed(array)), embedder.micro_batch


def ov_speed(path: Path, x: torch.Tensor, threads: int, precision: str, micro_batch: int | None):
    """``(callable running one batch through an OpenVinoEmbedder, micro_batch, execution precision)``."""
    import warnings

    from robustreid.openvino_backend import OpenVinoEmbedder

    with warnings.catch_warnings():  # no bf16 on this CPU: recorded as execution_precision instead
        warnings.simplefilter("ignore", UserWarning)
        embedder = OpenVinoEmbedder(path, precision=precision, num_threads=threads, micro_batch=micro_batch)
    array = x.numpy()
    return (lambda: embedder.embed(array)), embedder.micro_batch, embedder.execution_precision


# ---------------------------------------------------------------------------------------------- report
def accuracy_key(backend: str) -> str:
    """The accuracy record a timed backend shares: the same model and precision, split or not."""
    base = re.sub(r"-(one-call|mb\d+)$", "", backend)
    return REFERENCE if base == "torch-optimized" else base


def deployment_table(records: list[dict]) -> list[dict]:
    """One ``kind="table"`` row per (model, timed backend) at the largest thread count: accuracy change
    against PyTorch fp32, top-10 agreement, images/s per batch size; ``recommended`` marks the fastest
    (largest batch size) of the rows within ``MAX_DROP_POINTS`` of fp32 on rank-1 and mAP."""
    speeds = [r for r in records if r.get("kind") == "speed" and "images_per_s" in r]
    if not speeds:
        return []
    threads = max(r["threads"] for r in speeds)
    accuracy = {(r["model"], r["candidate_backend"]): r for r in records if r.get("kind") == "accuracy"}
    rows = {}
    for r in speeds:
        if r["threads"] != threads:
            continue
        row = rows.setdefault((r["model"], r["backend"]), {
            "kind": "table", "model": r["model"], "backend": r["backend"], "threads": threads,
            "execution_precision": r.get("execution_precision"), "images_per_s": {}})
        row["images_per_s"][r["batch_size"]] = r["images_per_s"]
    for (model, backend), row in rows.items():
        key = accuracy_key(backend)
        acc = accuracy.get((model, key))
        if key == REFERENCE:
            row.update(delta_rank1=0.0, delta_mAP=0.0, top10_agreement=1.0, within_points=True)
        elif acc is not None:
            row.update(delta_rank1=round(acc["delta_rank1"], 2), delta_mAP=round(acc["delta_mAP"], 2),
                       top10_agreement=round(1 - acc["queries_differing"] / acc["num_query"], 4),
                       top10_agreement_beyond_ties=round(
                           1 - acc["queries_differing_beyond_ties"] / acc["num_query"], 4),
                       within_points=acc[f"within_{MAX_DROP_POINTS}_points"])
        else:  # fp32 variants of the reference (eager, channels_last) share its accuracy; others unmeasured
            same = backend in ("torch-eager", "torch-channels_last")
            row.update(delta_rank1=0.0 if same else None, delta_mAP=0.0 if same else None,
                       top10_agreement=None, within_points=True if same else None)
    for model in {m for m, _ in rows}:
        ok = [row for (m, _), row in rows.items() if m == model and row["within_points"]]
        largest = max(b for row in ok for b in row["images_per_s"]) if ok else None
        best = max(ok, key=lambda row: row["images_per_s"].get(largest, 0.0), default=None)
        for (m, _), row in rows.items():
            if m == model:
                row["recommended"] = row is best
    return [emit(row) for row in rows.values()]


def write_markdown(records: list[dict], path: Path) -> None:
    speeds = [r for r in records if r.get("kind") == "speed" and "images_per_s" in r]
    sizes = sorted({r["batch_size"] for r in speeds})
    lines = [f"fp32 matmul peak ({r['n']}x{r['n']}): torch {r['fp32_gflops_per_s']}, onnxruntime "
             f"{r.get('ort_fp32_gflops_per_s', '-')} GFLOP/s with {r['threads']} thread(s) (torch bf16: "
             f"{r['bf16_gflops_per_s']}); load average {r['load_avg_1min']}."
             for r in records if r.get("kind") == "matmul_peak"]
    columns = " | ".join(f"img/s @ b{b} | % peak @ b{b}" for b in sizes)
    lines += ["", f"| model | backend | threads | {columns} | load avg |",
              "|---|---|---:|" + "---:|---:|" * len(sizes) + "---:|"]
    rows = {}
    for r in speeds:
        rows.setdefault((r["model"], r["backend"], r["threads"]), {})[r["batch_size"]] = r
    for (model, backend, threads), by_size in rows.items():
        cells = []
        for b in sizes:
            r = by_size.get(b)
            cells += ["-", "-"] if r is None else [f"{r['images_per_s']:.1f}",
                                                   f"{100 * r['fraction_of_fp32_peak']:.1f}"]
        load = max(r["load_avg_1min"] for r in by_size.values())
        lines.append(f"| {model} | {backend} | {threads} | " + " | ".join(cells) + f" | {load} |")
    accuracy = [r for r in records if r.get("kind") == "accuracy"]
    if accuracy:
        lines += ["", "| model | reference -> candidate | rank-1 | mAP | Δ rank-1 | Δ mAP | "
                  "top-10 identical (queries differing beyond ties) | min cosine |",
                  "|---|---|---:|---:|---:|---:|---|---:|"]
        for r in accuracy:
            ref, cand = r["reference"], r["candidate"]
            lines.append(f"| {r['model']} | {r['reference_backend']} -> {r['candidate_backend']} | "
                         f"{ref['rank1']:.2f} -> {cand['rank1']:.2f} | {ref['mAP']:.2f} -> {cand['mAP']:.2f} | "
                         f"{r['delta_rank1']:+.2f} | {r['delta_mAP']:+.2f} | "
                         f"{r['identical_topk']} ({r['queries_differing_beyond_ties']}) | "
                         f"{r['min_cosine']:.3f} |")
    table = [r for r in records if r.get("kind") == "table"]
    if table:
        sizes = sorted({b for r in table for b in r["images_per_s"]})
        lines += ["", f"Deployment table ({table[0]['threads']} threads; changes against {REFERENCE}; "
                  f"recommended: the fastest within {MAX_DROP_POINTS} points on rank-1 and mAP)", "",
                  "| model | backend | runs | Δ rank-1 | Δ mAP | top-10 agreement | "
                  + " | ".join(f"img/s @ b{b}" for b in sizes) + " | |",
                  "|---|---|---|---:|---:|---:|" + "---:|" * len(sizes) + "---|"]

        def fmt(value, spec):
            return "-" if value is None else format(value, spec)

        for r in table:
            cells = [fmt(r["images_per_s"].get(b), ".1f") for b in sizes]
            lines.append(f"| {r['model']} | {r['backend']} | {r.get('execution_precision') or '-'} | "
                         f"{fmt(r['delta_rank1'], '+.2f')} | {fmt(r['delta_mAP'], '+.2f')} | "
                         f"{fmt(r['top10_agreement'], '.1%')} | " + " | ".join(cells)
                         + f" | {'recommended' if r['recommended'] else ''} |")
    write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------- main
def export_files(model, name: str, dataset, tmp: Path, use_ort: bool, use_ov: bool) -> tuple[dict, list[dict]]:
    """``{backend: model file}`` for ``model`` (onnxruntime: .onnx and its int8 QDQ quantization; OpenVINO: the
    IR, and the int8 QDQ .onnx), and the export / quantize records."""
    from robustreid.export import export_onnx, export_openvino, quantize_onnx

    files, records = {}, []
    if use_ort:
        files = {"ort-fp32": tmp / f"{name}.onnx", "ort-int8": tmp / f"{name}-int8.onnx"}
        files["ort-fp32-one-call"] = files["ort-fp32"]
        start = time.perf_counter()
        exported = export_onnx(model, files["ort-fp32"])
        records.append(emit({"kind": "export", "model": name, "format": "onnx",
                             "seconds": round(time.perf_counter() - start, 1),
                             **{k: exported[k] for k in ("bytes", "opset", "exporter", "parity")}}))
        start = time.perf_counter()
        quantized = quantize_onnx(files["ort-fp32"], files["ort-int8"], [r.img_path for r in dataset.train])
        records.append(emit({"kind": "quantize", "model": name, "seconds": round(time.perf_counter() - start, 1),
                             **{k: v for k, v in quantized.items() if k != "out"}}))
    if use_ov:
        files["ov-fp32"] = files["ov-bf16"] = tmp / f"{name}.xml"
        start = time.perf_counter()
        exported = export_openvino(model, files["ov-fp32"])
        records.append(emit({"kind": "export", "model": name, "format": "openvino",
                             "seconds": round(time.perf_counter() - start, 1),
                             **{k: exported[k] for k in ("bytes", "opset", "openvino_version", "parity")}}))
        if "ort-int8" in files:
            files["ov-int8"] = files["ort-int8"]
    return files, records


def time_backends(model, name, files, gmacs, peak, threads, weights, args) -> list[dict]:
    """One speed record per (backend, batch size) at ``threads`` threads (``torch-compile`` runs apart)."""
    h, w = model.data_config["input_size"]
    records = []
    runs = []  # (backend name in the records, backend, OpenVINO micro-batch)
    for backend in args.backends:
        if backend == "torch-compile" or (backend in FILE_BACKENDS and backend not in files):
            continue
        if backend in OV_BACKENDS:
            runs += [(backend if not mb else f"{backend}-mb{mb}", backend, mb or None) for mb in args.ov_micro_batch]
        else:
            runs.append((backend, backend, None))
    for label, backend, ov_micro_batch in runs:
        for bs in args.batch_sizes:
            x = torch.randn(bs, 3, h, w)
            extra = {}
            if backend in ORT_BACKENDS:
                fn, micro_batch = ort_speed(files[backend], x, threads, backend == "ort-fp32-one-call")
            elif backend in OV_BACKENDS:
                precision = "bf16" if backend == "ov-bf16" else "fp32"
                fn, micro_batch, extra["execution_precision"] = ov_speed(files[backend], x, threads, precision,
                                                                         ov_micro_batch)
            else:
                fn, micro_batch = torch_runner(model, backend, x)
                extra["execution_precision"] = "bf16" if backend == "torch-bf16" else "fp32"
            with torch.no_grad():
                ips = rate(fn, args.seconds, repeats=args.repeats) * bs
            records.append(emit(speed_record(name, label, bs, ips, gmacs, peak, threads, weights=weights,
                                             micro_batch=micro_batch if micro_batch and micro_batch < bs
                                             else None, **extra)))
        model.to(memory_format=torch.contiguous_format)  # undo torch-channels_last
    return records


class CachedFeatures:
    """An extractor (image paths -> (N, D)) that computes each list of paths once: the reference of every
    comparison is extracted once, not once per candidate."""

    def __init__(self, extractor):
        self.extractor, self.cache = extractor, {}

    def __call__(self, paths):
        key = tuple(paths)
        if key not in self.cache:
            self.cache[key] = self.extractor(list(paths))
        return self.cache[key]


def compare_accuracy(model, name, files, dataset, weights, data_root, backends) -> list[dict]:
    """``onnx_parity`` of PyTorch fp32 against every other backend and precision on the query / gallery split."""
    import warnings

    from robustreid.evaluate import FeatureExtractor
    from robustreid.export import onnx_parity

    candidates = {"torch-bf16": lambda: FeatureExtractor(model, precision="bf16")}
    for backend in ("ort-fp32", "ort-int8"):
        if backend in files:
            candidates[backend] = lambda path=files[backend]: FeatureExtractor(path, backend="onnxruntime")
    for backend in OV_BACKENDS:
        if backend in files:
            precision = "bf16" if backend == "ov-bf16" else "fp32"
            candidates[backend] = lambda path=files[backend], p=precision: FeatureExtractor(
                path, backend="openvino", precision=p)
    wanted = {accuracy_key(b) for b in backends}
    reference = CachedFeatures(FeatureExtractor(model))
    records = []
    for cand_name, build in candidates.items():
        if cand_name not in wanted:
            continue
        with warnings.catch_warnings():  # no bf16 on this CPU: the record says what ran
            warnings.simplefilter("ignore", UserWarning)
            extractor = build()
        parity = onnx_parity(reference, extractor, dataset)
        keep = min(parity["delta_rank1"], parity["delta_mAP"]) >= -MAX_DROP_POINTS
        runs = getattr(extractor.model, "execution_precision", extractor.precision)
        records.append(emit({"kind": "accuracy", "model": name, "weights": weights,
                             "dataset": str(data_root or "synthetic market1501 (40 test ids, 4 cameras)"),
                             "reference_backend": REFERENCE, "candidate_backend": cand_name,
                             "execution_precision": runs, **parity, f"within_{MAX_DROP_POINTS}_points": keep}))
    return records


def load_models(args, dataset) -> list[tuple[str, torch.nn.Module, str]]:
    """``(name, model, weights description)``: the checkpoint, or each untrained model BN-calibrated."""
    if args.checkpoint:
        model = load_model(args.checkpoint)  # named by architecture and run folder, not "last"
        where = args.checkpoint if is_zoo_name(args.checkpoint) else Path(args.checkpoint).resolve().parent.name
        name = f"{arch_name(model.arch)} ({where})"
        return [(name, model, f"checkpoint {args.checkpoint}")]
    models = []
    for name in args.models:
        model = build_model(name)
        calibrate_bn(model, image_batch(dataset.train, model.data_config, 128))
        models.append((name, model, "untrained, BN statistics from the training images"))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--backends", nargs="+", default=[*TORCH_BACKENDS, *FILE_BACKENDS],
                        choices=[*TORCH_BACKENDS, *FILE_BACKENDS])
    parser.add_argument("--ov-micro-batch", nargs="+", type=int, default=[0],
                        help="OpenVINO micro-batch sizes to time (0: one request per batch, the default); "
                             "e.g. 0 8 for the A/B")
    parser.add_argument("--threads", nargs="+", type=int, default=[2],
                        help="intra-op thread counts to time (torch and onnxruntime alike)")
    parser.add_argument("--setup-threads", type=int, default=1,
                        help="threads for everything but the timings (BN calibration, export, quantization, "
                             "accuracy): one thread is never starved by a busy core")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum length of one timing window")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per measurement; the best counts")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--compile-models", nargs="*", default=["robustreid_1x"],
                        help="models also timed with torch.compile at the largest thread count "
                             "(slow to compile)")
    parser.add_argument("--compile-timeout", type=float, default=600.0)
    parser.add_argument("--checkpoint", help="a trained checkpoint instead of untrained BN-calibrated models")
    parser.add_argument("--data", help="Market1501-layout root (default: a small synthetic set, temporary)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the onnx_parity comparisons")
    parser.add_argument("--no-compile", action="store_true", help="skip torch-compile (minutes of compiling)")
    parser.add_argument("--markdown", type=Path, help="also write a markdown table here")
    parser.add_argument("--compile-child", help=argparse.SUPPRESS)
    parser.add_argument("--compile-name", help=argparse.SUPPRESS)
    parser.add_argument("--compile-gmacs", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--compile-peak", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_child:
        args.threads = args.threads[0]
        compile_child(args)
        return
    torch.manual_seed(0)
    torch.set_num_threads(args.setup_threads)
    try:
        import onnxruntime
    except ImportError as exc:
        onnxruntime = None
        emit({"kind": "note", "skipped": f"onnxruntime backends ({exc}); pip install 'robustreid[onnx]'"})
    try:
        import openvino
    except ImportError as exc:
        openvino = None
        emit({"kind": "note", "skipped": f"OpenVINO backends ({exc}); pip install 'robustreid[openvino]'"})
    if args.no_compile:
        args.backends = [b for b in args.backends if b != "torch-compile"]
    # ov-int8 runs the onnxruntime-quantized file, so it needs both
    use_ort = onnxruntime is not None and any(b in ORT_BACKENDS or b == "ov-int8" for b in args.backends)
    use_ov = openvino is not None and any(b in OV_BACKENDS for b in args.backends)
    versions = {"torch": torch.__version__, "onnxruntime": getattr(onnxruntime, "__version__", None),
                "openvino": getattr(openvino, "__version__", None),
                "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    records, peaks = [], {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = {"fp32_gflops_per_s": round(matmul_peak(args.matmul_size, torch.float32, args.seconds), 1),
                "bf16_gflops_per_s": round(matmul_peak(args.matmul_size, torch.bfloat16, args.seconds), 1)}
        if onnxruntime is not None:
            peak["ort_fp32_gflops_per_s"] = round(ort_matmul_peak(args.matmul_size, threads, args.seconds), 1)
        records.append(emit({"kind": "matmul_peak", "n": args.matmul_size, "threads": threads, **peak,
                             **versions}))
        peaks[threads] = max(records[-1]["fp32_gflops_per_s"], records[-1].get("ort_fp32_gflops_per_s", 0))

    with tempfile.TemporaryDirectory(prefix="robustreid-bench-deploy-") as tmp:
        tmp = Path(tmp)
        if args.data is None:
            write_market1501(tmp / "market", ids_train=40, ids_test=40, cameras=4, images_per_id_per_cam=2,
                             distractors=20, junk=10)
        dataset = load_dataset("market1501", args.data or tmp / "market")
        for name, model, weights in load_models(args, dataset):
            model.eval()
            gmacs = count_macs(model) / 1e9
            files = {}
            if use_ort or use_ov:  # export and quantize once; the files are timed at every thread count
                files, made = export_files(model, name, dataset, tmp, use_ort, use_ov)
                records += made
            for threads in args.threads:
                torch.set_num_threads(threads)
                records += time_backends(model, name, files, gmacs, peaks[threads], threads, weights, args)
            if "torch-compile" in args.backends and name in args.compile_models:
                threads = max(args.threads)
                records += run_compiled(model, name, gmacs, peaks[threads], threads, args, tmp)
            torch.set_num_threads(args.setup_threads)
            if not args.no_accuracy:
                records += compare_accuracy(model, name, files, dataset, weights, args.data, args.backends)
    records += deployment_table(records)
    if args.markdown:
        write_markdown(records, args.markdown)


if __name__ == "__main__":
    main()
