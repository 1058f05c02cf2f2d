"""Embedding on demand (``TrackerConfig.reid_refresh``) against MOTDT's every-crop ReID, over many scenes.

One street scene decides nothing here: a single re-identification near the appearance threshold
(``max_appearance_distance``) changes which ids the rest of the sequence gets, and IDF1 moves by points.
So each setting runs on ``--scenes`` synthetic street scenes (seeds ``--first-seed`` on; the README's
tracking tables use seed 0, so the default seeds 1-8 are a validation set) and the table gives the mean
and spread of the change against ``reid_refresh=1`` on the same scene.

Every detection of a scene is embedded once, during its ``reid_refresh=1`` run (the tracker asks for every
candidate there); the other settings read those embeddings back by frame and box through
``track_sequence(embed_fn=...)``, so they cost tracking time only. (A crop's embedding does not depend on
the other crops of its batch beyond float rounding: on the default scene the cached and the live runs give
the same MOTA / IDF1 / IDSW at every setting measured in the README.) "crops" counts what the model would
embed, so crops / crops at refresh 1 is the ReID work left.

Prints one JSON object per line (``run``: one scene x setting; ``summary``: one setting over the scenes) and,
with ``--markdown FILE``, the summary as a markdown table.

Usage: python benchmarks/reid_refresh_study.py --checkpoint CKPT [--scenes 8] [--first-seed 1]
           [--reid-refresh 2 3 5 10] [--certain-iou 0.5] [--keep DIR] [--backend onnxruntime] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_tracking import extractors, reid_model  # same directory: the benchmark that times these settings
from robustreid.tracking.motio import load_sequence
from robustreid.tracking.run import evaluate_tracking, track_sequence
from robustreid.tracking.scene import write_scene
from robustreid.tracking.tracker import CropEmbedder, TrackerConfig
from robustreid.zoo import is_zoo_name


def _key(frame: int, box: np.ndarray) -> tuple:
    return (frame, *np.round(np.asarray(box, dtype=np.float64), 4).tolist())


REFERENCE = {"reid_refresh": 1}


def study_scene(seq_dir: Path, out: Path, extractor, settings: list[dict]) -> list[dict]:
    """The refresh-1 run (embedding every candidate, recorded) and every setting read from the record."""
    seq = load_sequence(seq_dir)
    crops, cache = CropEmbedder(extractor), {}

    def run(embed_fn, setting: dict) -> dict:
        info = track_sequence(seq_dir, out, embed_fn=embed_fn, config=TrackerConfig(**setting))
        m = evaluate_tracking(seq.gt, out, seq.info.seq_length)
        return {"setting": setting, "crops": info["embedded"],
                **{k: m[k] for k in ("mota", "idf1", "hota", "idsw")}}

    def live(seq, frame, image, boxes):
        feats = crops(image, boxes)
        cache.update((_key(frame, b), f) for b, f in zip(boxes, feats))
        return feats

    def cached(seq, frame, image, boxes):
        return np.stack([cache[_key(frame, b)] for b in boxes])

    return [run(live, REFERENCE)] + [run(cached, setting) for setting in settings]


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def summarise(runs: list[dict], settings: list[dict]) -> list[dict]:
    """Per setting: the change against refresh 1 on the same scene, mean and sample standard deviation."""
    base = {r["scene"]: r for r in runs if r["setting"] == REFERENCE}
    out = []
    for setting in [REFERENCE] + settings:
        rows = [r for r in runs if r["setting"] == setting]
        d = {k: np.array([100 * (r[k] - base[r["scene"]][k]) for r in rows]) for k in ("mota", "idf1", "hota")}
        frac = np.array([r["crops"] / base[r["scene"]]["crops"] for r in rows])
        out.append({"setting": setting, "scenes": len(rows), "crops_fraction": round(float(frac.mean()), 4),
                    **{f"d_{k}_mean": round(float(v.mean()), 3) for k, v in d.items()},
                    **{f"d_{k}_sd": round(_sd(v), 3) for k, v in d.items()},
                    "d_idf1_min": round(float(d["idf1"].min()), 3),
                    "d_idf1_per_scene": [round(float(x), 2) for x in d["idf1"]],
                    "idsw_mean": round(float(np.mean([r["idsw"] for r in rows])), 2)})
    return out


def markdown(summary: list[dict], model: str) -> str:
    lines = [f"ReID: {model}; change against reid_refresh 1 on the same scene, mean ± sd over the scenes",
             "", "| setting | scenes | crops embedded | Δ MOTA | Δ IDF1 | Δ HOTA | worst Δ IDF1 | IDSW (mean) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        name = ", ".join(f"{k} {v}" for k, v in s["setting"].items())
        lines.append(f"| {name} | {s['scenes']} | {100 * s['crops_fraction']:.0f} % "
                     f"| {s['d_mota_mean']:+.2f} ± {s['d_mota_sd']:.2f} | {s['d_idf1_mean']:+.2f} ± {s['d_idf1_sd']:.2f} "
                     f"| {s['d_hota_mean']:+.2f} ± {s['d_hota_sd']:.2f} | {s['d_idf1_min']:+.2f} | {s['idsw_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the ReID model (a trained run's last.pt, or zoo:NAME)")
    parser.add_argument("--scenes", type=int, default=8, help="street scenes, one per seed")
    parser.add_argument("--first-seed", type=int, default=1, help="seed of the first scene (0 is the reported one)")
    parser.add_argument("--reid-refresh", nargs="+", type=int, default=[2, 3, 5, 10], metavar="K")
    parser.add_argument("--certain-iou", nargs="+", type=float, default=[0.5], metavar="IOU")
    parser.add_argument("--backend", default="onnxruntime", choices=["torch", "onnxruntime", "openvino"],
                        help="backend of the refresh-1 runs (every backend gives the same tracks)")
    parser.add_argument("--keep", help="write the scenes here (reused when complete), not in a temp dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", metavar="FILE", help="also write the summary as a markdown table here")
    args = parser.parse_args()
    if not is_zoo_name(args.checkpoint) and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if args.scenes < 1 or min(args.reid_refresh) < 2:
        parser.error("--scenes must be >= 1 and every --reid-refresh >= 2 (1 is the reference)")
    if not all(0 < c <= 1 for c in args.certain_iou):
        parser.error(f"--certain-iou {args.certain_iou}: expected values in (0, 1]")
    torch.set_num_threads(args.threads)
    try:
        model, name = reid_model(args.checkpoint)
    except (ValueError, OSError) as err:
        parser.error(f"--checkpoint {args.checkpoint}: {err}")
    settings = [{"reid_refresh": k, "certain_iou": c} for c in args.certain_iou for k in args.reid_refresh]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        _, _, extractor = next(extractors(model, name, [args.backend], Path(tmp)))
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.scenes):
            manifest = write_scene(root / f"street_s{seed}", mode="street", seed=seed)
            seq_dir = root / f"street_s{seed}" / manifest["sequences"][0]["path"]
            for row in study_scene(seq_dir, Path(tmp) / "tracks.txt", extractor, settings):
                runs.append({"scene": seed, **row})
                print(json.dumps({"step": "run", **runs[-1]}), flush=True)
        summary = summarise(runs, settings)
        for s in summary:
            print(json.dumps({"step": "summary", "model": name, **s}), flush=True)
        if args.markdown:
            Path(args.markdown).write_text(markdown(summary, name))


if __name__ == "__main__":
    main()
