"""Tracking speed on the default synthetic street scene (robustreid.tracking.scene.write_scene defaults:
300 frames of 640x360 at 10 fps, 12 people).

Prints one JSON object per line:

  scene        writing the scene (frames/s of rendering + JPEG), or "reused" when --keep holds it already
  track        robustreid.tracking.run.track_sequence frames/s, wall-clock and per CPU second of this
               process, with
                 reid=false  the motion-only tracker (no frame is decoded)
                 reid=true   an untrained robustreid_1x behind FeatureExtractor, every frame's detection
                             crops embedded in one batch (frames decoded, crops cut, embedded, tracked);
                             crops/s counts the embedded detections
               plus MOTA / IDF1 / IDSW of the run (an untrained model: a speed figure, not an accuracy one)

BatchNorm statistics of the untrained network are first set from random images (a freshly initialised
network runs far slower on denormal activations and is not what anyone deploys).

Usage: python benchmarks/bench_tracking.py [--threads 2] [--frames N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from robustreid import build_model
from robustreid.evaluate import FeatureExtractor
from robustreid.tracking.motio import load_sequence
from robustreid.tracking.run import evaluate_tracking, track_sequence
from robustreid.swag import update_bn
from robustreid.tracking.scene import write_scene


def set_bn_statistics(model: torch.nn.Module, batches: int = 4, batch_size: int = 32) -> None:
    """BatchNorm running statistics from random images (``swag.update_bn``), then eval mode."""
    h, w = model.data_config["input_size"]
    update_bn(model, [torch.randn(batch_size, 3, h, w) for _ in range(batches)])
    model.eval()


def bench_track(seq_dir: Path, out: Path, extractor) -> dict:
    seq = load_sequence(seq_dir)
    cpu = time.process_time()
    info = track_sequence(seq_dir, out, extractor)
    cpu = time.process_time() - cpu
    m = evaluate_tracking(seq.gt, out, seq.info.seq_length)
    row = {"bench": "tracking", "step": "track", "reid": info["reid"],
           "model": "robustreid_1x (untrained)" if extractor is not None else None,
           "frames": info["frames"], "detections": int(len(seq.det)), "seconds": info["seconds"],
           "frames_per_s": info["fps"], "frames_per_cpu_s": round(info["frames"] / max(cpu, 1e-9), 2),
           "mota": round(m["mota"], 4), "idf1": round(m["idf1"], 4), "idsw": m["idsw"]}
    if extractor is not None:
        row["crops_per_s"] = round(len(seq.det) / max(info["seconds"], 1e-9), 1)
        row["threads"] = torch.get_num_threads()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the ReID model")
    parser.add_argument("--frames", type=int, default=None, help="scene length (default: the scene default)")
    parser.add_argument("--keep", help="write the scene here (reused if complete), not in a temp dir")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or Path(tmp) / "street")
        existed = (out / "scene.json").is_file()
        start, cpu = time.perf_counter(), time.process_time()
        manifest = write_scene(out, mode="street", frames=args.frames)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        frames = sum(s["frames"] for s in manifest["sequences"])
        reused = existed and seconds < 0.5
        print(json.dumps({"bench": "tracking", "step": "scene", "params": manifest["params"],
                          "frames": frames, "reused": reused, "seconds": round(seconds, 3),
                          "frames_per_s": None if reused else round(frames / seconds, 1),
                          "frames_per_cpu_s": None if reused else round(frames / max(cpu, 1e-9), 1)}),
              flush=True)
        seq_dir = out / manifest["sequences"][0]["path"]
        print(json.dumps(bench_track(seq_dir, Path(tmp) / "motion.txt", None)), flush=True)
        model = build_model("robustreid_1x")
        set_bn_statistics(model)
        extractor = FeatureExtractor(model, device="cpu", batch_size=64)
        print(json.dumps(bench_track(seq_dir, Path(tmp) / "reid.txt", extractor)), flush=True)


if __name__ == "__main__":
    main()
