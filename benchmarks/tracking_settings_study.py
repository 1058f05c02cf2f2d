"""Tracker and re-entry settings for a ReID model, chosen on validation scenes (the demo's seeds never).

The demo's tracking targets (issue 27) are a gain over the motion-only tracker on a street scene (IDF1) and
re-entries decided right in a 3-camera room (correct / wrong / missed). One scene decides nothing: a single
re-identification near a threshold changes the ids of the rest of the sequence. So every setting runs on the
scenes of ``--seeds`` (default 20-27; the demo reports seeds 0, 1, 2), written as the demo writes them
(``robustreid.demo.DEMO_SCENES``), and the summary gives mean, sample standard deviation and worst scene.

Street: the motion-only run, then per ``--street`` setting (``TrackerConfig`` fields) the IDF1 / MOTA / IDSW
and the IDF1 gain over motion only. Room: per ``--room`` setting (``TrackerConfig`` fields of the room's
trackers, over the room's defaults ``run.room_tracker_config()``), ``--far`` (the false-accept rate the
re-entry threshold is calibrated at on the room's validation people), ``--entry``
(``ReentryConfig.entry_descriptors``), ``--bank-distance`` (``ReentryConfig.bank_distance``) and ``--reentry``
(the other ``ReentryConfig`` fields: ``margin``, ``occluded_queries``), the re-entry outcomes and the room's
cross-camera IDF1. Every detection is embedded once per scene (the first
run records the embeddings by sequence, frame and box); the other settings read them back through
``embed_fn``, so they cost tracking time only.

Prints one JSON object per line (``run``: one scene x setting; ``summary``: one setting over the scenes) and,
with ``--markdown FILE``, the summaries as markdown tables.

Usage: python benchmarks/tracking_settings_study.py --checkpoint CKPT [--seeds 20 21 ...] [--keep DIR]
           [--street max_appearance_distance=0.1,0.2048 ...] [--far 0.02 0.05 0.1] [--entry 5 10]
           [--bank-distance none 0.1] [--room occluded_iou=none,0.3]
           [--reentry margin=0,0.05 occluded_queries=false,true]
           [--markdown FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_tracking import extractors, reid_model  # same directory
from robustreid.demo import DEMO_SCENES
from robustreid.tracking.motio import load_sequence
from robustreid.tracking.reentry import ReentryConfig
from robustreid.tracking.run import (
    calibrate_reentry,
    evaluate_room,
    evaluate_tracking,
    room_tracker_config,
    track_room,
    track_sequence,
)
from robustreid.tracking.scene import write_scene
from robustreid.tracking.tracker import CropEmbedder, TrackerConfig
from robustreid.zoo import is_zoo_name

FIELDS = {f.name: f.type for f in dataclasses.fields(TrackerConfig)}
# ReentryConfig fields a study may vary with --reentry (max_distance is calibrated, the others have options)
REENTRY_FIELDS = {"margin": float, "occluded_queries": bool}
# a room row's re-entry settings: these three by position, then REENTRY_FIELDS and tracker fields by name
POSITIONAL_KEYS = ("far", "entry", "bank")
ROOM_KEYS = (*POSITIONAL_KEYS, *REENTRY_FIELDS)


class EmbeddingCache:
    """``embed_fn`` that embeds a crop once and reads it back by (sequence folder, frame, box)."""

    def __init__(self, extractor):
        self.crops, self.store, self.embedded = CropEmbedder(extractor), {}, 0

    @staticmethod
    def key(seq, frame: int, box) -> tuple:
        return (str(seq.root), frame, *np.round(np.asarray(box, dtype=np.float64), 4).tolist())

    def __call__(self, seq, frame, image, boxes):
        keys = [self.key(seq, frame, b) for b in boxes]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            feats = self.crops(image, boxes[missing])
            self.embedded += len(missing)
            self.store.update((keys[i], f) for i, f in zip(missing, feats))
        return np.stack([self.store[k] for k in keys])


def _bool(v: str) -> bool:
    if v.lower() not in ("true", "false"):
        raise ValueError(v)
    return v.lower() == "true"


def parse_setting(text: str, option: str = "--street", fields: dict | None = None) -> list[dict]:
    """``field=v1,v2`` -> one override per value (``none``: None, for the optional fields) of a
    ``fields`` name (default: the TrackerConfig fields)."""
    fields = FIELDS if fields is None else fields
    name, sep, values = text.partition("=")
    if not sep or name not in fields:
        raise ValueError(
            f"{option} {text!r}: expected FIELD=V1,V2,... with FIELD one of {', '.join(fields)}"
        )
    kind = {int: int, "int": int, bool: _bool, "bool": _bool}.get(fields[name], float)
    try:
        return [{name: None if v == "none" else kind(v)} for v in values.split(",")]
    except ValueError:
        raise ValueError(f"{option} {text!r}: {name} takes {'bool' if kind is _bool else kind.__name__} "
                         "values") from None


def street_runs(seq_dir: Path, out: Path, cache: EmbeddingCache, settings: list[dict]) -> list[dict]:
    seq = load_sequence(seq_dir)

    def run(setting: dict, embed_fn) -> dict:
        config = TrackerConfig(**setting) if embed_fn else TrackerConfig(use_reid=False)
        track_sequence(seq_dir, out, embed_fn=embed_fn, config=config)
        m = evaluate_tracking(seq.gt, out, seq.info.seq_length)
        return {"setting": setting if embed_fn else "no_reid", **{k: m[k] for k in ("mota", "idf1", "idsw")}}

    base = run({}, None)
    rows = [base]
    for setting in settings:
        row = run(setting, cache)
        rows.append({**row, "d_idf1": row["idf1"] - base["idf1"]})
    return rows


def room_runs(
    room_dir: Path, out: Path, cache: EmbeddingCache, fars: list[float], entries: list[int], banks: list,
    trackers: list[dict] = ({},), reentries: list[dict] = ({},),
) -> list[dict]:
    rows = []
    settings = itertools.product(trackers, fars, entries, banks, reentries)
    for index, (tracker, far, entry, bank, extra) in enumerate(settings):
        config = dataclasses.replace(room_tracker_config(), **tracker)  # over the room's defaults
        cal = calibrate_reentry(
            room_dir / "validation", embed_fn=cache, far=far, entry_descriptors=entry, config=config
        )
        reentry = ReentryConfig(
            max_distance=float(np.clip(cal["threshold"], 0.0, 2.0)),
            entry_descriptors=entry,
            bank_distance=bank,
            **extra,
        )
        track_room(room_dir, out / f"setting{index}", embed_fn=cache, reentry=reentry, config=config)
        ev = evaluate_room(room_dir, out / f"setting{index}")
        r = ev["reentry"]
        returns = r["correct_match"] + r["wrong_match"] + r["missed_return"]
        rows.append(
            {
                "setting": {
                    "far": far, "entry": entry, **({"bank": bank} if bank is not None else {}), **extra,
                    **tracker,
                },
                "threshold": cal["threshold"],
                "tar": cal["tar"],
                "correct": r["correct_match"],
                "wrong": r["wrong_match"],
                "missed": r["missed_return"],
                "false_match": r["false_match"],
                "returns": returns,
                "correct_share": r["correct_match"] / max(returns, 1),
                "idf1": ev["overall"]["idf1"],
            }
        )
    return rows


def _stats(x) -> str:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(ddof=1) if len(x) > 1 else 0.0
    return f"{x.mean():.1f} ± {sd:.1f}"


def summarise(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    street, room = [], []
    for kind, out in (("street", street), ("room", room)):
        rows = [r for r in runs if r["kind"] == kind]
        for setting in dict.fromkeys(json.dumps(r["setting"], sort_keys=True) for r in rows):
            group = [r for r in rows if json.dumps(r["setting"], sort_keys=True) == setting]
            s = {"setting": json.loads(setting), "scenes": len(group)}
            if kind == "street":
                s.update(
                    idf1=_stats([100 * r["idf1"] for r in group]),
                    mota=_stats([100 * r["mota"] for r in group]),
                    idsw=_stats([r["idsw"] for r in group]),
                )
                if "d_idf1" in group[0]:
                    d = [100 * r["d_idf1"] for r in group]
                    s.update(d_idf1=_stats(d), d_idf1_min=round(min(d), 1), gain15=sum(x >= 15 for x in d))
            else:
                s.update(
                    {
                        k: sum(r[k] for r in group)
                        for k in ("correct", "wrong", "missed", "false_match", "returns")
                    },
                    correct_share=_stats([100 * r["correct_share"] for r in group]),
                    scenes_ok=sum(r["correct_share"] >= 0.5 and r["wrong"] <= 1 for r in group),
                    idf1=_stats([100 * r["idf1"] for r in group]),
                )
            out.append(s)
    return street, room


def room_setting(setting: dict) -> str:
    """``far, entry[, bank][, field value ...]``: the re-entry settings in that order, then tracker fields."""
    parts = [str(setting[k]) for k in POSITIONAL_KEYS if k in setting]
    named = [k for k in REENTRY_FIELDS if k in setting] + [k for k in setting if k not in ROOM_KEYS]
    return ", ".join(parts + [f"{k} {setting[k]}" for k in named])


def markdown(street: list[dict], room: list[dict], model: str, seeds: list[int]) -> str:
    lines = [
        f"ReID: {model}; scenes of seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), mean ± sd over the scenes",
        "",
        "| street setting | IDF1 | Δ IDF1 vs no ReID | worst Δ | scenes with Δ >= 15 | MOTA | IDSW |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in street:
        name = (
            s["setting"]
            if isinstance(s["setting"], str)
            else ", ".join(f"{k} {v}" for k, v in s["setting"].items())
        )
        lines.append(
            f"| {name or 'defaults'} | {s['idf1']} | {s.get('d_idf1', '')} | {s.get('d_idf1_min', '')} "
            f"| {s.get('gain15', '')} | {s['mota']} | {s['idsw']} |"
        )
    lines += [
        "",
        "| room: far, entry embeddings[, bank distance][, re-entry and tracker settings] "
        "| correct / wrong / missed (all scenes) "
        "| correct share % "
        "| scenes with >= half correct and <= 1 wrong | false matches | IDF1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in room:
        lines.append(
            f"| {room_setting(s['setting'])} "
            f"| {s['correct']} / {s['wrong']} / "
            f"{s['missed']} | {s['correct_share']} | {s['scenes_ok']} of {s['scenes']} | {s['false_match']} "
            f"| {s['idf1']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the ReID model (a checkpoint, or zoo:NAME)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(20, 28)))
    parser.add_argument(
        "--street", nargs="*", default=["max_appearance_distance=0.2048"], metavar="FIELD=V1,V2"
    )
    parser.add_argument("--far", nargs="*", type=float, default=[0.05])
    parser.add_argument("--entry", nargs="*", type=int, default=[5])
    parser.add_argument(
        "--bank-distance",
        nargs="*",
        type=lambda v: None if v == "none" else float(v),
        default=[None],
        help="ReentryConfig.bank_distance values ('none': every embedding of an ended track joins its bank)",
    )
    parser.add_argument(
        "--room",
        nargs="*",
        default=[],
        metavar="FIELD=V1,V2",
        help="TrackerConfig settings of the room's trackers (and its calibration), each crossed with the "
        "re-entry settings; 'none' is None",
    )
    parser.add_argument(
        "--reentry",
        nargs="*",
        default=[],
        metavar="FIELD=V1,V2",
        help=f"ReentryConfig settings ({', '.join(REENTRY_FIELDS)}), each crossed with the others",
    )
    parser.add_argument("--keep", help="write the scenes here (reused when complete), not in a temp dir, and "
                        "the rooms' track_room outputs under outputs/room_s<seed>/setting<k> (k: the order "
                        "of the room rows)")
    parser.add_argument("--backend", default="onnxruntime", choices=["torch", "onnxruntime", "openvino"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", metavar="FILE")
    args = parser.parse_args()
    if not is_zoo_name(args.checkpoint) and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if set(args.seeds) & {0, 1, 2}:
        parser.error(
            f"--seeds {args.seeds}: 0, 1 and 2 are the demo's (reported) scenes, not a validation set"
        )
    try:
        settings = [s for text in args.street for s in parse_setting(text)]
        room_trackers = [s for text in args.room for s in parse_setting(text, "--room")] or [{}]
        for s in settings + room_trackers:
            TrackerConfig(**s)
        reentries = [{}]
        for text in args.reentry:  # every value of one field crossed with every value of the others
            values = parse_setting(text, "--reentry", REENTRY_FIELDS)
            reentries = [{**r, **v} for r in reentries for v in values]
        for r in reentries:
            ReentryConfig(max_distance=0.0, **r)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    try:
        model, name = reid_model(args.checkpoint)
    except (ValueError, OSError) as err:
        parser.error(f"--checkpoint {args.checkpoint}: {err}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        _, _, extractor = next(extractors(model, name, [args.backend], Path(tmp)))
        runs = []
        for seed in args.seeds:
            cache = EmbeddingCache(extractor)
            street = write_scene(root / f"street_s{seed}", seed=seed, **DEMO_SCENES["street"])
            seq_dir = root / f"street_s{seed}" / street["sequences"][0]["path"]
            rows = [
                {"kind": "street", **r} for r in street_runs(seq_dir, Path(tmp) / "t.txt", cache, settings)
            ]
            write_scene(root / f"room_s{seed}", seed=seed, **DEMO_SCENES["room"])
            if args.far and args.entry:
                rows += [
                    {"kind": "room", **r}
                    for r in room_runs(
                        root / f"room_s{seed}",
                        (root / "outputs" if args.keep else Path(tmp)) / f"room_s{seed}",
                        cache,
                        args.far,
                        args.entry,
                        args.bank_distance,
                        room_trackers,
                        reentries,
                    )
                ]
            for r in rows:
                runs.append({"scene": seed, **r})
                print(json.dumps({"step": "run", **runs[-1]}), flush=True)
        street_summary, room_summary = summarise(runs)
        for s in street_summary + room_summary:
            print(json.dumps({"step": "summary", "model": name, **s}), flush=True)
        if args.markdown:
            Path(args.markdown).write_text(markdown(street_summary, room_summary, name, args.seeds))


if __name__ == "__main__":
    main()
