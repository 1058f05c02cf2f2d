"""Micro-batches vs one call per batch, side by side in one onnxruntime session pair, window by window.

The two ways of running a batch (``OnnxEmbedder(micro_batch=8)``, the CPU default, and ``micro_batch=None``)
alternate in windows of ``--seconds``, so both see the same machine state; the benchmark machine's shared
cores change speed in phases of 10-20 s, which one-after-the-other timings mistake for a difference between
backends. A third window per round times the machine's fp32 ceiling the same way (a ``--matmul-size``
square product in a one-node onnxruntime session, ``bench_deploy.ort_matmul``), so each variant's share of the
ceiling (2 x the network's MACs x images/s over the ceiling's GFLOP/s, medians over the rounds) is a ratio
measured side by side. Prints one JSON line per window and a summary line (best, median, worst of each).

    python benchmarks/micro_batch_ab.py MODEL.onnx [--batch-size 64] [--micro-batch 8] [--rounds 8]
        [--seconds 2] [--threads 2] [--matmul-size 2048]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from bench_deploy import ort_matmul  # same directory: the ceiling bench_deploy measures against
from robustreid.export import OnnxEmbedder
from robustreid.model import Architecture, ReIDNet
from robustreid.onnx_backend import read_onnx_metadata
from robustreid.profile import count_macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", help="an .onnx file written by robustreid export")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the ceiling's square product")
    args = parser.parse_args()
    try:
        meta = read_onnx_metadata(args.onnx)
    except (ValueError, OSError) as err:
        parser.error(f"{args.onnx}: {err}")
    macs = count_macs(ReIDNet(Architecture.from_dict(meta["arch"]), 0))
    variants = {f"micro_batch={args.micro_batch}": OnnxEmbedder(args.onnx, num_threads=args.threads,
                                                                micro_batch=args.micro_batch),
                "one call": OnnxEmbedder(args.onnx, num_threads=args.threads, micro_batch=None)}
    h, w = variants["one call"].data_config["input_size"]
    x = np.random.default_rng(0).standard_normal((args.batch_size, 3, h, w), dtype=np.float32)
    for embedder in variants.values():
        embedder.embed(x)  # warm-up
    ceiling = ort_matmul(args.matmul_size, args.threads)
    ceiling()
    calls_of = {name: (lambda e=embedder: e.embed(x)) for name, embedder in variants.items()}
    work = {name: args.batch_size for name in variants}  # images per call
    calls_of["matmul ceiling"], work["matmul ceiling"] = ceiling, 2 * args.matmul_size**3 / 1e9  # GFLOP per call
    rates: dict[str, list[float]] = {name: [] for name in calls_of}
    for round_index in range(args.rounds):
        for name, call in calls_of.items():
            calls, start = 0, time.perf_counter()
            while calls < 1 or time.perf_counter() - start < args.seconds:
                call()
                calls += 1
            rates[name].append(work[name] * calls / (time.perf_counter() - start))
            unit = "gflops_per_s" if name == "matmul ceiling" else "images_per_s"
            print(json.dumps({"bench": "micro_batch_ab", "round": round_index, "variant": name,
                              unit: round(rates[name][-1], 1)}), flush=True)
    summary = {name: {"best": round(max(r), 1), "median": round(statistics.median(r), 1), "worst": round(min(r), 1)}
               for name, r in rates.items()}
    ceiling_median = statistics.median(rates["matmul ceiling"])
    for name in variants:
        summary[name]["median_percent_of_ceiling"] = round(
            100 * 2 * macs / 1e9 * statistics.median(rates[name]) / ceiling_median, 1)
    print(json.dumps({"bench": "micro_batch_ab", "summary": summary, "gmacs": round(macs / 1e9, 3),
                      "matmul_size": args.matmul_size, "batch_size": args.batch_size, "threads": args.threads,
                      "onnx": args.onnx}))


if __name__ == "__main__":
    main()
