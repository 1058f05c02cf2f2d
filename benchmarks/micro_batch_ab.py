"""Micro-batches vs one call per batch, side by side in one onnxruntime session pair, window by window.

The two ways of running a batch (``OnnxEmbedder(micro_batch=8)``, the CPU default, and ``micro_batch=None``)
alternate in windows of ``--seconds``, so both see the same machine state; the benchmark machine's shared
cores change speed in phases of 10-20 s, which one-after-the-other timings mistake for a difference between
backends. Prints one JSON line per window and a summary line (best and median of each).

    python benchmarks/micro_batch_ab.py MODEL.onnx [--batch-size 64] [--micro-batch 8] [--rounds 8]
        [--seconds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from robustreid.export import OnnxEmbedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", help="an .onnx file written by robustreid export")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    variants = {f"micro_batch={args.micro_batch}": OnnxEmbedder(args.onnx, num_threads=args.threads,
                                                                micro_batch=args.micro_batch),
                "one call": OnnxEmbedder(args.onnx, num_threads=args.threads, micro_batch=None)}
    h, w = variants["one call"].data_config["input_size"]
    x = np.random.default_rng(0).standard_normal((args.batch_size, 3, h, w), dtype=np.float32)
    for embedder in variants.values():
        embedder.embed(x)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, embedder in variants.items():
            calls, start = 0, time.perf_counter()
            while calls < 1 or time.perf_counter() - start < args.seconds:
                embedder.embed(x)
                calls += 1
            rates[name].append(args.batch_size * calls / (time.perf_counter() - start))
            print(json.dumps({"bench": "micro_batch_ab", "round": round_index, "variant": name,
                              "images_per_s": round(rates[name][-1], 1)}), flush=True)
    print(json.dumps({"bench": "micro_batch_ab", "summary": {
        name: {"best": round(max(r), 1), "median": round(statistics.median(r), 1), "worst": round(min(r), 1)}
        for name, r in rates.items()}, "batch_size": args.batch_size, "threads": args.threads,
        "onnx": args.onnx}))


if __name__ == "__main__":
    main()
