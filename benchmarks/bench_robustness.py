"""Speed of the corruptions on person crops, and what it means for the robustness grid.

Prints one JSON object per line:

  corruption   for each of robustreid.robustness.CORRUPTIONS: milliseconds per call on a 128x64 synthetic crop
               (robustreid.synthetic.render_crop), the mean over severities 1-5 and --repeats seeds each, wall
               clock and this process's CPU time (the fairer figure on a machine shared with other jobs)
  total        the mean over corruptions, and the CPU seconds the corruptions of the default grid cost:
               --queries images (the demo set's ~395) x 21 corruptions x 5 severities; the grid spreads them over
               its DataLoader workers, beside the network's embedding of as many images

With --grid DATA and --checkpoint CKPT (or --histogram), also one line for the default grid itself
(robustreid.robustness.run_robustness, corrupted query, clean gallery) on the Market1501-layout dataset DATA,
written to a temporary folder: wall seconds, images embedded per second.

Usage: python benchmarks/bench_robustness.py [--repeats 20] [--queries 395]
       python benchmarks/bench_robustness.py --grid runs/demo/data --checkpoint runs/demo/run/last.pt \
           [--backend onnxruntime] [--num-workers 2] [--batch-size 64]
"""

import argparse
import json
import tempfile
import time

import numpy as np

from robustreid.robustness import CORRUPTIONS, ColourHistogramFeatures, run_robustness
from robustreid.synthetic import render_crop, sample_camera, sample_identity


def bench_corruptions(repeats: int, queries: int) -> None:
    rng = np.random.default_rng(0)
    crop = np.asarray(render_crop(sample_identity(rng), sample_camera(rng), rng))
    means = []
    for name, fn in CORRUPTIONS.items():
        fn(crop, 3, 0)  # warm up (imports, caches)
        start, cpu_start = time.perf_counter(), time.process_time()
        for severity in range(1, 6):
            for seed in range(repeats):
                fn(crop, severity, seed)
        calls = 5 * repeats
        ms = 1000 * (time.perf_counter() - start) / calls
        cpu_ms = 1000 * (time.process_time() - cpu_start) / calls
        means.append(cpu_ms)
        print(json.dumps({"bench": "robustness", "step": "corruption", "corruption": name, "shape": list(crop.shape),
                          "ms_per_call": round(ms, 3), "cpu_ms_per_call": round(cpu_ms, 3)}), flush=True)
    mean = float(np.mean(means))
    print(json.dumps({"bench": "robustness", "step": "total", "mean_cpu_ms_per_call": round(mean, 3),
                      "default_grid_calls": queries * len(CORRUPTIONS) * 5,
                      "default_grid_corruption_cpu_s": round(queries * len(CORRUPTIONS) * 5 * mean / 1000, 1)}),
          flush=True)


def bench_grid(data: str, checkpoint: str | None, histogram: bool, backend: str, num_workers: int,
               batch_size: int) -> None:
    from robustreid.datasets import load_dataset

    dataset = load_dataset("market1501", data)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = [0]
        result = run_robustness(None if histogram else checkpoint, dataset, out, backend=backend,
                                num_workers=num_workers, batch_size=batch_size,
                                features_fn=ColourHistogramFeatures() if histogram else None,
                                progress=lambda d, total: done.__setitem__(0, d))
        seconds = time.perf_counter() - start
    print(json.dumps({"bench": "robustness", "step": "grid", "features": "colour histogram" if histogram else checkpoint,
                      "backend": backend, "num_workers": num_workers, "batch_size": batch_size,
                      "num_query": len(dataset.query), "num_gallery": len(dataset.gallery), "images": done[0],
                      "seconds": round(seconds, 1), "images_per_s": round(done[0] / seconds, 1),
                      "mean_rank1": round(result["summary"]["mean"]["rank1"], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="seeds per severity (default 20)")
    parser.add_argument("--queries", type=int, default=395, help="query images of the grid to cost (default 395)")
    parser.add_argument("--grid", metavar="DATA", help="also time the default grid on this Market1501-layout set")
    parser.add_argument("--checkpoint", help="the model of --grid (or an exported file with --backend)")
    parser.add_argument("--histogram", action="store_true", help="--grid with the colour histogram, no model")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "openvino"])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    bench_corruptions(args.repeats, args.queries)
    if args.grid:
        if not (args.checkpoint or args.histogram):
            parser.error("--grid needs --checkpoint or --histogram")
        bench_grid(args.grid, args.checkpoint, args.histogram, args.backend, args.num_workers, args.batch_size)


if __name__ == "__main__":
    main()
