"""Tracking speed on the default synthetic street scene (robustreid.tracking.scene.write_scene defaults:
300 frames of 640x360 at 10 fps, 12 people).

Prints one JSON object per line:

  scene        writing the scene (frames/s of rendering + JPEG), or "reused" when --keep holds it already
  track        robustreid.tracking.run.track_sequence frames/s, wall-clock and per CPU second of this
               process, with
                 reid=false  the motion-only tracker (no frame is decoded)
                 reid=true   the ReID model (--checkpoint, or an untrained robustreid_1x) on each --backends
                             (torch / onnxruntime / openvino: the checkpoint exported once to ONNX) and each
                             --reid-refresh (1: every candidate of every frame embedded, MOTDT; k > 1:
                             embedding on demand, TrackerConfig.reid_refresh); frames decoded, crops cut,
                             embedded in one call per frame, tracked; "embedded" counts the crops embedded
               and "embed_seconds" the part of "seconds" spent cutting and embedding crops (the ReID hook);
               plus MOTA / IDF1 / HOTA / IDSW of the run and their change against torch at --reid-refresh 1
               (an untrained model: a speed figure, not an accuracy one)
  table        with --markdown FILE: the rows as one markdown table, written there

Each row is one pass over the scene, one after the other in this process (no alternation: a rough
figure on a shared machine); the frames are read once before the first so no row pays the cold disk.
BatchNorm statistics of an untrained network are first set from random images (a freshly initialised
network runs far slower on denormal activations and is not what anyone deploys).

Usage: python benchmarks/bench_tracking.py [--threads 2] [--frames N] [--keep DIR]
           [--checkpoint CKPT] [--backends torch onnxruntime openvino] [--reid-refresh 1 5] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from robustreid import build_model
from robustreid.checkpoint import load_model
from robustreid.evaluate import FeatureExtractor
from robustreid.export import export_onnx
from robustreid.model import arch_name
from robustreid.swag import update_bn
from robustreid.tracking.motio import load_sequence
from robustreid.tracking.run import evaluate_tracking, track_sequence
from robustreid.tracking.scene import write_scene
from robustreid.tracking.tracker import TrackerConfig
from robustreid.zoo import is_zoo_name


def set_bn_statistics(model: torch.nn.Module, batches: int = 4, batch_size: int = 32) -> None:
    """BatchNorm running statistics from random images (``swag.update_bn``), then eval mode."""
    h, w = model.data_config["input_size"]
    update_bn(model, [torch.randn(batch_size, 3, h, w) for _ in range(batches)])
    model.eval()


def bench_track(seq_dir: Path, out: Path, extractor, model_name: str | None = None, backend: str | None = None,
                reid_refresh: int = 1) -> dict:
    seq = load_sequence(seq_dir)
    config = TrackerConfig(use_reid=extractor is not None, reid_refresh=reid_refresh)
    cpu = time.process_time()
    info = track_sequence(seq_dir, out, extractor, config=config)
    cpu = time.process_time() - cpu
    m = evaluate_tracking(seq.gt, out, seq.info.seq_length)
    row = {"bench": "tracking", "step": "track", "reid": info["reid"], "model": model_name, "backend": backend,
           "reid_refresh": reid_refresh if extractor is not None else None,
           "frames": info["frames"], "detections": int(len(seq.det)), "embedded": info["embedded"],
           "seconds": info["seconds"], "frames_per_s": info["fps"],
           "frames_per_cpu_s": round(info["frames"] / max(cpu, 1e-9), 2),
           "mota": round(m["mota"], 6), "idf1": round(m["idf1"], 6), "hota": round(m["hota"], 6), "idsw": m["idsw"]}
    if extractor is not None:
        row["crops_per_s"] = round(info["embedded"] / max(info["seconds"], 1e-9), 1)
        row["embed_seconds"] = info["embed_seconds"]  # inside the ReID hook: cutting + embedding the crops
        row["threads"] = torch.get_num_threads()
    return row


def markdown(rows: list[dict]) -> str:
    ref = next((r for r in rows if r["backend"] == "torch" and r["reid_refresh"] == 1), None)
    lines = ["| ReID | backend | refresh (frames) | crops embedded | frames/s | time in ReID | MOTA | IDF1 | HOTA "
             "| IDSW | Δ MOTA / Δ IDF1 vs torch, refresh 1 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        delta = "-"
        if ref is not None and r["reid"]:
            delta = f"{100 * (r['mota'] - ref['mota']):+.1f} / {100 * (r['idf1'] - ref['idf1']):+.1f}"
        lines.append(f"| {r['model'] or 'none'} | {r['backend'] or '-'} | {r['reid_refresh'] or '-'} "
                     f"| {r['embedded']} of {r['detections']} | {r['frames_per_s']:.1f} "
                     f"| {100 * r.get('embed_seconds', 0) / max(r['seconds'], 1e-9):.0f} % | {100 * r['mota']:.1f} "
                     f"| {100 * r['idf1']:.1f} | {100 * r['hota']:.1f} | {r['idsw']} | {delta} |")
    return "\n".join(lines) + "\n"


def reid_model(checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    """The ReID model and its name (as bench_deploy names it: architecture (run folder)); an untrained
    robustreid_1x without a checkpoint. A file that is not a checkpoint is a ValueError."""
    if checkpoint:
        model = load_model(checkpoint)
        where = checkpoint if is_zoo_name(checkpoint) else Path(checkpoint).resolve().parent.name
        return model, f"{arch_name(model.arch)} ({where})"
    model = build_model("robustreid_1x")
    set_bn_statistics(model)
    return model, "robustreid_1x (untrained)"


def extractors(model: torch.nn.Module, name: str, backends: list[str], tmp: Path):
    """(model name, backend, FeatureExtractor) for each backend, the model exported once to ONNX."""
    onnx = None
    for backend in backends:
        if backend == "torch":
            yield name, backend, FeatureExtractor(model, device="cpu", batch_size=64)
            continue
        if onnx is None:
            onnx = tmp / "reid.onnx"
            export_onnx(model, onnx)
        yield name, backend, FeatureExtractor(onnx, device="cpu", batch_size=64, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the ReID model")
    parser.add_argument("--frames", type=int, default=None, help="scene length (default: the scene default)")
    parser.add_argument("--keep", help="write the scene here (reused if complete), not in a temp dir")
    parser.add_argument("--checkpoint", help="the ReID model, a checkpoint or zoo:NAME (default: an untrained "
                        "robustreid_1x)")
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnxruntime", "openvino"])
    parser.add_argument("--reid-refresh", nargs="+", type=int, default=[1], metavar="K",
                        help="TrackerConfig.reid_refresh values to run (1 = every crop of every frame)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the rows as a markdown table here")
    args = parser.parse_args()
    if min(args.reid_refresh) < 1:
        parser.error(f"--reid-refresh {min(args.reid_refresh)}: expected integers >= 1")
    if args.checkpoint and not is_zoo_name(args.checkpoint) and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    torch.set_num_threads(args.threads)  # the onnxruntime / OpenVINO embedders take the same count
    try:
        model, name = reid_model(args.checkpoint)
    except (ValueError, OSError) as err:
        parser.error(f"--checkpoint {args.checkpoint}: {err}")

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
        for frame in sorted((seq_dir / "img1").iterdir()):
            frame.read_bytes()  # warm the page cache
        rows = [bench_track(seq_dir, Path(tmp) / "motion.txt", None)]
        print(json.dumps(rows[-1]), flush=True)
        for name, backend, extractor in extractors(model, name, args.backends, Path(tmp)):
            for k in args.reid_refresh:
                rows.append(bench_track(seq_dir, Path(tmp) / "reid.txt", extractor, name, backend, k))
                print(json.dumps(rows[-1]), flush=True)
        if args.markdown:
            Path(args.markdown).write_text(markdown(rows))
            print(json.dumps({"bench": "tracking", "step": "table", "markdown": args.markdown}), flush=True)


if __name__ == "__main__":
    main()
