"""The Table-5-shaped tracking comparison (paper Section 5) on synthetic scenes: no ReID vs ReID models.

Writes (or reuses) a synthetic street scene and a room (3 cameras, the scene defaults) (``robustreid.tracking.scene.write_scene``),
tracks each with the motion-only tracker and with every given checkpoint (``tracking.run.compare_models``:
a room is tracked with its shared re-entry gallery, threshold calibrated on the room's validation people),
and prints one JSON line per row plus a markdown table per scene (MOTA, IDF1, HOTA, IDSW, re-entry outcomes,
frames/s).

Usage:
    python benchmarks/tracking_table.py --model hacnn=runs/hacnn/last.pt \\
        --model robustreid_1x=runs/long1x/last.pt [--scenes runs/scenes] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robustreid.evaluate import FeatureExtractor
from robustreid.tracking.run import compare_models, format_table
from robustreid.tracking.scene import write_scene
from robustreid.zoo import is_zoo_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a ReID row: its name and checkpoint (repeatable)")
    parser.add_argument("--scenes", default="runs/scenes", help="where the scenes are written / reused")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models: dict[str, object] = {"No ReID": None}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not (is_zoo_name(path) or Path(path).is_file()):
            parser.error(f"--model {spec!r}: expected NAME=CHECKPOINT with an existing checkpoint file or zoo:NAME")
        if name in models:
            parser.error(f"--model {spec!r}: the row name {name!r} is already taken")
        models[name] = FeatureExtractor(path, device="cpu", batch_size=64, num_workers=0)

    for mode in ("street", "room"):
        scene = Path(args.scenes) / mode
        write_scene(scene, mode=mode, seed=args.seed)
        rows = compare_models(scene, models)
        for row in rows:
            print(json.dumps({"bench": "tracking_table", "scene": mode, **row}, default=str), flush=True)
        print(f"\n{mode} scene ({scene}):\n\n{format_table(rows)}", flush=True)


if __name__ == "__main__":
    main()
