"""Why a room's re-entry decisions went wrong: each wrong or false decision against the ground truth.

``tracking.run.evaluate_room`` labels a track with its majority ground-truth person, and a decision is wrong
when the identity it gave belongs to another person (``tracking.metrics.reentry_outcomes``). But the decision
was made from the track's first embeddings (``ReentryConfig.entry_descriptors``), so a track that switched
people inside its camera after its entry is "wrong" even when its entry was matched to the person it showed.
This prints, for every wrong or false decision of a ``track_room`` output, the ground-truth person of the
track's first ``--first`` rows (IoU >= 0.5 with a ground-truth box; -1: none) and of its majority, beside
the same for the track that opened the identity it was given:

    appearance right: both tracks started on the same person (a track switched afterwards);
    appearance wrong: they started on different people.

It also sorts the missed returns (a returning person given a new identity) by what the decision saw: no
distance (the track had no embedding to query with, e.g. every crop overlapped another person, or there was no
candidate), a nearest candidate beyond the threshold, or one within it (the joint assignment gave that
identity to another entry, or ``ReentryConfig.margin`` found a second candidate too close), with the tracks'
lengths in rows.

Usage: python benchmarks/reentry_errors.py ROOM_SCENE TRACK_ROOM_OUTPUT [--first 5]
       e.g. runs/demo_val_s20/scenes/room runs/demo_val_s20/tracking/room/reid (``robustreid demo --seed 20``)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robustreid.tracking.metrics import match_tracks_to_gt
from robustreid.tracking.motio import load_sequence, read_results, xywh_to_xyxy
from robustreid.tracking.run import REENTRY_FILE, scene_sequences
from robustreid.tracking.tracker import box_iou


def first_persons(gt: np.ndarray, rows: np.ndarray, first: int) -> list[int]:
    """The ground-truth person under each of a track's first ``first`` rows (-1: no box with IoU >= 0.5)."""
    out = []
    for row in rows[np.argsort(rows[:, 0])][:first]:
        g = gt[(gt[:, 0] == row[0]) & (gt[:, 6] != 0)]
        iou = box_iou(xywh_to_xyxy(row[None, 2:6]), xywh_to_xyxy(g[:, 2:6]))[0] if len(g) else np.zeros(0)
        k = int(np.argmax(iou)) if len(iou) else -1
        out.append(int(g[k, 1]) if k >= 0 and iou[k] >= 0.5 else -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("room", type=Path, help="the room scene (cam*/ with gt)")
    parser.add_argument("output", type=Path, help="its track_room output (cam*.tracks.txt, reentry.json)")
    parser.add_argument("--first", type=int, default=5, help="rows that make a track's entry")
    args = parser.parse_args()
    decisions_path = args.output / REENTRY_FILE
    if not decisions_path.is_file():
        parser.error(f"{decisions_path}: no such file (expected a track_room output folder)")
    try:
        cameras = scene_sequences(args.room)
    except (FileNotFoundError, ValueError) as err:
        parser.error(f"{args.room}: {err}")
    try:
        doc = json.loads(decisions_path.read_text())
        decisions = doc["decisions"]
        threshold = doc["reentry"]["max_distance"] if doc.get("reentry") else None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        parser.error(f"{decisions_path}: expected a track_room reentry.json with a 'decisions' list and the "
                     f"'reentry' config ({type(err).__name__}: {err})")
    tracks, lengths = {}, {}  # (camid, track) -> (majority person, persons of its first rows); -> rows
    for camid, path in cameras:
        gt = load_sequence(path).gt
        if gt is None:
            parser.error(f"{path / 'gt' / 'gt.txt'}: no ground truth to trace the decisions against")
        rows = read_results(args.output / f"cam{camid}.tracks.txt")
        majority = match_tracks_to_gt(gt, rows)
        for t in np.unique(rows[:, 1]).astype(int):
            own = rows[rows[:, 1] == t]
            tracks[(camid, t)] = (majority.get(t, -1), first_persons(gt, own, args.first))
            lengths[(camid, t)] = len(own)
    opener, seen, counts = {}, set(), {"appearance right": 0, "appearance wrong": 0}
    missed: dict[str, list[int]] = {"no distance": [], "beyond the threshold": [], "within the threshold": []}
    for d in decisions:
        pid, head = tracks.get((d["camid"], d["track_id"]), (-1, []))
        if d["is_new"] and pid >= 0 and pid in seen:
            reason = ("no distance" if d["distance"] is None else
                      "beyond the threshold" if threshold is None or d["distance"] > threshold else
                      "within the threshold")
            missed[reason].append(lengths.get((d["camid"], d["track_id"]), 0))
        if d["is_new"]:
            opener[d["identity"]] = (pid, head)
        elif pid >= 0 and (pid not in seen or opener[d["identity"]][0] != pid):
            kind = "false" if pid not in seen else "wrong"
            owner, owner_head = opener[d["identity"]]
            start = max(set(head), key=head.count) if head else -1
            owner_start = max(set(owner_head), key=owner_head.count) if owner_head else -1
            verdict = "appearance right" if start == owner_start >= 0 else "appearance wrong"
            counts[verdict] += 1
            print(f"{kind}: step {d['step']} camera {d['camid']} track {d['track_id']}: majority person "
                  f"{pid}, first rows {head}; identity {d['identity']} opened by a track of majority person "
                  f"{owner}, first rows {owner_head}; distance {d['distance']:.3f} -> {verdict}")
        if pid >= 0:
            seen.add(pid)
    print(json.dumps(counts))
    print(json.dumps({"missed returns": {reason: {"count": len(n), "track rows": sum(n),
                                                  "median rows": float(np.median(n)) if n else None}
                                         for reason, n in missed.items()}}))


if __name__ == "__main__":
    main()
