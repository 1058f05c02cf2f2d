"""Speed of the synthetic-person generator and how far colour-histogram shortcuts get on its default set.

Prints one JSON object per line:

  render_crop          in-memory crops per second (render_crop + JPEG encoding), one process, one core;
                       images_per_s is wall-clock, images_per_cpu_s counts this process's CPU time only
                       (the fairer figure on a machine shared with other jobs)
  write_market1501     the default dataset (robustreid.synthetic.SynthParams()) written into a temp dir,
                       images per second including file writes
  colour-histogram     rank-1 / mAP (robustreid.metrics.evaluate_rank, junk dropped and same-camera
                       matches ignored as in Market1501) of retrieval by colour histograms on that set:
                         rgb_hist            joint 8x8x8 RGB histogram of the whole crop, Hellinger distance
                         rgb_hist_centre_gw  the same on the central region after gray-world colour
                                             normalisation, concatenated over 4 horizontal stripes
                                             (a stronger hand-made shortcut)

Usage: python benchmarks/bench_synthetic.py [--crops 1000] [--keep DIR]
"""

import argparse
import io
import json
import tempfile
import time

import numpy as np

from robustreid.datasets import load_dataset
from robustreid.histogram import MATCHERS, histogram_features
from robustreid.metrics import evaluate_rank
from robustreid.synthetic import (
    SynthParams, derive_rng, is_complete, render_crop, sample_camera, sample_identity, write_market1501,
)


def bench_render(num_crops):
    identities = [sample_identity(derive_rng(0, 1, k)) for k in range(50)]
    cameras = [sample_camera(derive_rng(0, 2, k)) for k in range(6)]
    render_crop(identities[0], cameras[0], derive_rng(0))  # warm the per-camera scene caches
    for camera in cameras:
        render_crop(identities[0], camera, derive_rng(0))
    start, cpu_start = time.perf_counter(), time.process_time()
    for k in range(num_crops):
        img = render_crop(identities[k % 50], cameras[k % 6], derive_rng(1, k))
        img.save(io.BytesIO(), "JPEG", quality=80)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"bench": "synthetic", "step": "render_crop", "images": num_crops, "seconds": round(seconds, 3),
            "images_per_s": round(num_crops / seconds, 1), "cpu_seconds": round(cpu_seconds, 3),
            "images_per_cpu_s": round(num_crops / cpu_seconds, 1)}


def bench_histogram(dataset, name):
    q = histogram_features(dataset.query, name).astype(np.float64)
    g = histogram_features(dataset.gallery, name).astype(np.float64)
    distmat = (q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None, :] - 2.0 * q @ g.T
    q_pids, g_pids = [r.pid for r in dataset.query], [r.pid for r in dataset.gallery]
    q_camids, g_camids = [r.camid for r in dataset.query], [r.camid for r in dataset.gallery]
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    return {"bench": "synthetic", "step": "colour-histogram", "matcher": name, "num_query": len(q),
            "num_gallery": len(g), "rank1": round(float(cmc[0]), 4), "rank5": round(float(cmc[4]), 4),
            "mAP": round(float(mAP), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=1000, help="crops rendered in memory for render_crop")
    parser.add_argument("--keep", help="write the default set here (reused if complete), not in a temp dir")
    args = parser.parse_args()

    print(json.dumps(bench_render(args.crops)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or f"{tmp}/synthetic"
        reused = is_complete(out, SynthParams())
        start, cpu_start = time.perf_counter(), time.process_time()
        manifest = write_market1501(out)  # the defaults, as `robustreid synth OUT` writes them
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        num_images = sum(manifest["counts"][s] for s in ("bounding_box_train", "query", "bounding_box_test"))
        print(json.dumps({"bench": "synthetic", "step": "write_market1501", "params": manifest["params"],
                          "images": num_images, "seconds": round(seconds, 3), "reused": reused,
                          "images_per_s": None if reused else round(num_images / seconds, 1),
                          "images_per_cpu_s": None if reused else round(num_images / cpu_seconds, 1)}),
              flush=True)
        dataset = load_dataset("market1501", out)
        for name in MATCHERS:
            print(json.dumps(bench_histogram(dataset, name)), flush=True)


if __name__ == "__main__":
    main()
