"""Tracking runs: one sequence, a room of cameras with its re-entry gallery, their evaluation, and the
Table-5-shaped comparison of ReID models (Section 5).

* :func:`track_sequence`: one MOTChallenge sequence through the online :class:`Tracker`. With a ReID
  model, the crops of a frame's candidates (detections above ``min_det_score``) are embedded in one batch
  (:class:`CropEmbedder`), or only those the tracker asks for with ``TrackerConfig.reid_refresh`` > 1
  (embedding on demand); without one, the tracker runs on motion alone (the "No ReID" row of Table 5).
* :func:`track_room`: the cameras of one room through a :class:`RoomTracker`, whose re-entry gallery
  gives every person a global identity (Section 5.1). The acceptance threshold of the gallery is set
  on the scene's **validation part** (``validation/cam*``: same room and cameras, other people) at a
  chosen false-accept rate (:func:`calibrate_reentry`), so the test people never tune it.
* :func:`evaluate_tracking` / :func:`evaluate_room`: MOTA, IDF1, HOTA, IDSW by TrackEval; for a room per
  camera and over all cameras laid end to end with global ids (cross-camera IDF1,
  :func:`concat_cameras`), plus the outcome of every re-entry decision (:func:`reentry_outcomes`).
* :func:`compare_models` and :func:`format_table`: no ReID vs each model on one scene, as a markdown
  table shaped like Table 5 (MOTA, IDF1) with HOTA, IDSW, re-entry outcomes and frames/s added.

Timings (``seconds``, ``fps``) cover reading the frames, embedding the crops and tracking; for a room
``fps`` counts camera frames (time steps x cameras) and leaves out the calibration run.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomicfile import remove_stale_temp_files, write_text
from .metrics import concat_cameras, evaluate_mot, match_tracks_to_gt, reentry_outcomes
from .motio import MOTSequence, frame_rows, load_sequence, read_gt, read_results, write_results, xywh_to_xyxy
from .reentry import ReentryConfig, RoomTracker, calibrate_threshold
from .scene import scene_sequences
from .tracker import CropEmbedder, FrameTracks, Tracker, TrackerConfig, box_iou

__all__ = [
    "EmbedFn",
    "tracked_frames",
    "track_sequence",
    "calibrate_reentry",
    "track_room",
    "ROOM_OCCLUDED_IOU",
    "ROOM_IOU_VETO_DISTANCE",
    "room_tracker_config",
    "evaluate_tracking",
    "evaluate_room",
    "compare_models",
    "format_table",
]

# embed_fn(sequence, frame, image HxWx3 uint8 RGB, boxes_xyxy (N, 4)) -> (N, D): the per-frame embedding
# hook; the sequence (its folder, info and gt) lets a test oracle look up who each box is.
EmbedFn = Callable[[MOTSequence, int, np.ndarray, np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]
REENTRY_FILE = "reentry.json"


# ------------------------------------------------------------------------------------------ inputs
def _embedder(extractor, embed_fn: EmbedFn | None) -> EmbedFn | None:
    """One per-frame hook from a crop extractor (list of crops -> (N, D)) or a ready ``embed_fn``."""
    if extractor is not None and embed_fn is not None:
        raise ValueError("give either extractor or embed_fn, not both")
    if embed_fn is not None:
        if not callable(embed_fn):
            raise ValueError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        return embed_fn
    if extractor is None:
        return None
    crops = CropEmbedder(extractor)
    return lambda seq, frame, image, boxes: crops(image, boxes)


def _read_frame(seq: MOTSequence, frame: int) -> np.ndarray:
    path = seq.frame_path(frame)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame {frame} of {seq.root} is missing")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as err:  # truncated or not an image
        raise ValueError(f"{path}: frame {frame} is not a readable image ({err})") from None


def _frame_inputs(seq: MOTSequence, embed: EmbedFn | None,
                  on_demand: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, object]]:
    """Per frame ``(boxes_xyxy, scores, embeddings or None)`` from ``det/det.txt`` (and ``img1/``).

    With ``on_demand`` the embeddings are a callable ``embed(indices) -> (len(indices), D)`` for the
    tracker to call (:meth:`Tracker.update`): the frame is decoded only when it does (or up front when
    seqinfo.ini gives no image size).

    Boxes without width or height, or (when the image size is known: seqinfo.ini, or the decoded frame when a
    ReID model reads it) without a pixel in the image, are
    dropped: a detector never reports them and neither the tracker nor the crop cutter can use them.
    """
    if seq.det is None:
        raise FileNotFoundError(f"{seq.root / 'det' / 'det.txt'}: the sequence has no detections")
    width, height = seq.info.im_width, seq.info.im_height
    for f, rows in enumerate(frame_rows(seq.det, seq.info.seq_length), start=1):
        boxes, scores = xywh_to_xyxy(rows[:, 2:6]), rows[:, 6].astype(np.float64)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        image = None
        if embed is not None and keep.any() and not (width > 0 and height > 0):
            image = _read_frame(seq, f)  # no imWidth / imHeight in seqinfo.ini: the frame gives the size
            height, width = image.shape[:2]
        if width > 0 and height > 0:
            keep &= (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
        boxes, scores = boxes[keep], scores[keep]
        feats = None
        if embed is not None and len(boxes):
            if on_demand:
                feats = _on_demand(embed, seq, f, image, boxes)
            else:
                feats = embed(seq, f, _read_frame(seq, f) if image is None else image, boxes)
        yield boxes, scores, feats


def _on_demand(embed: EmbedFn, seq: MOTSequence, frame: int, image: np.ndarray | None,
               boxes: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def embed_indices(indices: np.ndarray) -> np.ndarray:
        return embed(seq, frame, _read_frame(seq, frame) if image is None else image, boxes[indices])
    return embed_indices


# The room's trackers keep crops that overlap another person out of their banks (TrackerConfig.occluded_iou):
# those banks become the re-entry gallery. Chosen on validation rooms (docs/TRACKING.md, "Occluded crops kept
# out of the banks"); a single-camera sequence (track_sequence) keeps MOTDT's banks.
ROOM_OCCLUDED_IOU = 0.2
# The room's trackers also refuse, in the IoU step, a clean crop far from the track's bank
# (TrackerConfig.iou_veto_distance), so a track is not handed to the person who took its place. Chosen on
# validation rooms 20-31 (docs/TRACKING.md, "A veto in the IoU step"); on the validation streets its gain did
# not hold, so track_sequence keeps MOTDT's IoU step.
ROOM_IOU_VETO_DISTANCE = 0.5


def room_tracker_config(use_reid: bool = True) -> TrackerConfig:
    """The room's trackers: ``TrackerConfig(use_reid, occluded_iou=ROOM_OCCLUDED_IOU,
    iou_veto_distance=ROOM_IOU_VETO_DISTANCE)`` (the veto acts only with ``use_reid``)."""
    return TrackerConfig(use_reid=use_reid, occluded_iou=ROOM_OCCLUDED_IOU,
                         iou_veto_distance=ROOM_IOU_VETO_DISTANCE)


def _resolve_config(config: TrackerConfig | None, embed: EmbedFn | None, room: bool = False) -> TrackerConfig:
    if config is None:
        config = room_tracker_config(embed is not None) if room else TrackerConfig(use_reid=embed is not None)
    if config.use_reid and embed is None:
        raise ValueError("TrackerConfig.use_reid is True but no extractor (or embed_fn) was given; pass one, "
                         "or TrackerConfig(use_reid=False) for the motion-only tracker")
    return config


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(rows) if rows else np.empty((0, 7))


# -------------------------------------------------------------------------------------- one sequence
def tracked_frames(seq: MOTSequence, embed: EmbedFn | None,
                   config: TrackerConfig) -> Iterator[tuple[int, FrameTracks, dict[int, np.ndarray]]]:
    """One sequence through a new :class:`Tracker`, frame by frame: ``(frame, tracks, embedded)`` with
    ``embedded`` the embeddings computed in that frame by candidate index (the indices of
    ``tracks.det_indices``). The tracker asks for embeddings on demand (``embed`` None or
    ``config.use_reid`` False: motion only, no frame decoded). The loop of :func:`track_sequence`."""
    frames = _frame_inputs(seq, embed if config.use_reid else None, on_demand=True)
    tracker = Tracker(config)
    for f, (boxes, scores, feats) in enumerate(frames, 1):
        embedded: dict[int, np.ndarray] = {}
        if callable(feats):
            feats = _recording(feats, embedded)
        yield f, tracker.update(boxes, scores, feats), embedded


def _recording(embed_indices: Callable[[np.ndarray], np.ndarray],
               embedded: dict[int, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def recorded(indices: np.ndarray) -> np.ndarray:
        feats = embed_indices(indices)
        embedded.update(zip(np.asarray(indices).tolist(), feats))
        return feats
    return recorded


def track_sequence(seq_dir, out, extractor=None, *, config: TrackerConfig | None = None,
                   progress: Progress | None = None, embed_fn: EmbedFn | None = None) -> dict:
    """Track one MOTChallenge sequence and write its results file ``out`` (atomically).

    ``extractor``: a ReID model as a crop extractor (``robustreid.evaluate.FeatureExtractor`` or any
    ``list of HxWx3 uint8 RGB -> (N, D)``), or None for the motion-only tracker. ``embed_fn(sequence,
    frame, image, boxes_xyxy)`` (:data:`EmbedFn`) replaces it when embeddings come from elsewhere.
    ``config`` defaults to ``TrackerConfig(use_reid=<a model was given>)``; with ``use_reid=False`` no
    frame is decoded. ``progress(frame, frames)`` is called after each frame.

    The tracker asks for the embeddings of the candidates it uses (``Tracker.update`` with a callable):
    every candidate of every frame with ``config.reid_refresh`` 1, fewer above (embedding on demand, see
    :mod:`robustreid.tracking.tracker`); ``embedded`` counts the crops embedded and ``embed_seconds`` the
    wall-clock time spent in the ReID hook (cutting and embedding the crops; decoding the frame is not in it).

    Returns ``{"sequence", "frames", "seconds", "fps", "tracks", "results", "reid", "embedded",
    "embed_seconds"}``.
    """
    seq = load_sequence(seq_dir)
    embed = _embedder(extractor, embed_fn)
    config = _resolve_config(config, embed)
    n, rows, embedded, embed_seconds = seq.info.seq_length, [], 0, 0.0

    def counted(seq_, frame, image, boxes):
        nonlocal embedded, embed_seconds
        embedded += len(boxes)
        start = time.perf_counter()
        try:
            return embed(seq_, frame, image, boxes)
        finally:
            embed_seconds += time.perf_counter() - start

    start = time.perf_counter()
    for f, tracks, _ in tracked_frames(seq, counted, config):
        rows.append(tracks.mot_rows())
        if progress is not None:
            progress(f, n)
    seconds = time.perf_counter() - start
    results = _stack(rows)
    remove_stale_temp_files(Path(out).parent, name=Path(out).name)  # what a killed run left beside the file
    write_results(out, results)
    return {"sequence": seq.info.name, "frames": n, "seconds": round(seconds, 3),
            "fps": round(n / max(seconds, 1e-9), 2), "tracks": int(len(np.unique(results[:, 1]))),
            "results": str(out), "reid": config.use_reid, "embedded": embedded,
            "embed_seconds": round(embed_seconds, 3)}


# -------------------------------------------------------------------------------------- room: calibration
def calibrate_reentry(validation_dir, extractor=None, *, far: float = 0.05,
                      config: TrackerConfig | None = None, entry_descriptors: int = 5,
                      max_descriptors: int = 100, embed_fn: EmbedFn | None = None,
                      progress: Progress | None = None) -> dict:
    """The re-entry threshold at false-accept rate ``far``, set on a validation room (Section 5.1).

    ``validation_dir`` holds ``cam*/`` sequences with ``gt/gt.txt``: a room scene's ``validation/``
    folder, or another room scene (its test part is used). Each camera is tracked on its own, and each
    embedding a track receives is labelled with the gt person its box covers (IoU >= 0.5; none: left
    out). Each track's entry is then compared as the gallery would compare it: its query (the mean of its
    first ``entry_descriptors`` embeddings, labelled by their majority) against, per gt person, the
    embeddings the gallery would hold of that person at that moment (the entry embeddings of entries
    decided before, in the room tracker's order: time step, then camera; every embedding of tracks that
    have ended; any camera), as the nearest cosine distance.
    Same person: a genuine distance; another person: an impostor distance. :func:`calibrate_threshold`
    picks the threshold. Labelling embeddings rather than whole tracks keeps tracking errors of the
    validation run (a track that jumped to another person) out of the two distributions. (Unlike the
    gallery, persons with another live track in the same camera are not left out; that case is rare.)

    ``config`` defaults to the room's, :func:`room_tracker_config`, as in
    :func:`track_room`; embeddings of crops kept out of a bank are left out here too.

    Returns ``{"threshold", "far", "tar", "genuine", "impostor", "entries"}`` (the last three: counts).
    """
    root = Path(validation_dir)
    cams = scene_sequences(root)
    embed = _embedder(extractor, embed_fn)
    if embed is None:
        raise ValueError("calibrate_reentry needs a ReID model: pass extractor (or embed_fn)")
    config = _resolve_config(config, embed, room=True)
    seqs = [load_sequence(path) for _, path in cams]
    counter = _Counter(sum(s.info.seq_length for s in seqs), progress)
    tracks = [track for rank, seq in enumerate(seqs)
              for track in _labelled_tracks(seq, rank, embed, config, entry_descriptors, max_descriptors, counter)]
    genuine, impostor, entries = _entry_distances(tracks, entry_descriptors)
    if not genuine or not impostor:
        raise ValueError(f"{root}: the validation part gave {len(genuine)} genuine and {len(impostor)} "
                         "impostor re-entry distances; both are needed (write a longer validation part, "
                         "with more people)")
    cal = calibrate_threshold(genuine, impostor, far=far)
    return {"threshold": cal.threshold, "far": cal.far, "tar": cal.tar, "genuine": len(genuine),
            "impostor": len(impostor), "entries": entries}


class _Counter:
    """Frames done across the validation cameras, reported to ``progress``."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


@dataclass
class _LabelledTrack:
    """What calibration keeps of one validation track, bounded whatever its length: the first ``need``
    embeddings (its entry) and the last ``max_descriptors`` (the bank the gallery holds once it has ended),
    each unit-norm with its gt label (-1: no gt box), plus the frame its entry is decided and its end."""

    head: list = field(default_factory=list)  # [(frame, label, unit embedding)], at most need
    tail: deque = field(default_factory=deque)  # the same, at most max_descriptors
    end: float = math.inf
    rank: int = 0  # camera order

    def arrays(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        items = self.head if part == "head" else self.tail
        return np.stack([e for _, _, e in items]), np.array([lab for _, lab, _ in items])

    def entry_order(self) -> tuple[int, int]:
        """When the room tracker decides this entry: the frame of its last entry embedding, then camera."""
        return self.head[-1][0], self.rank


def _labelled_tracks(seq, rank: int, embed: EmbedFn, config: TrackerConfig, need: int, max_descriptors: int,
                     counter: _Counter) -> list[_LabelledTrack]:
    """Track one validation camera; label each embedding a track receives with the gt person its box covers
    (IoU >= 0.5)."""
    if seq.gt is None:
        raise FileNotFoundError(f"{seq.root / 'gt' / 'gt.txt'}: a validation sequence needs ground truth")
    gt_frames = frame_rows(seq.gt[seq.gt[:, 6] != 0], seq.info.seq_length)
    tracker = Tracker(config)
    tracks: dict[int, _LabelledTrack] = {}
    for f, (boxes, scores, feats) in enumerate(_frame_inputs(seq, embed), start=1):
        out = tracker.update(boxes, scores, feats)
        if feats is not None and len(out.track_ids):
            feats = np.asarray(feats.detach().cpu() if hasattr(feats, "detach") else feats, np.float64)
            gt = gt_frames[f - 1]
            iou = box_iou(out.boxes_xyxy, xywh_to_xyxy(gt[:, 2:6]))
            for k, (track_id, j) in enumerate(zip(out.track_ids, out.det_indices)):
                if out.occluded[k]:  # kept out of the track's bank, so never in the gallery either
                    continue
                best = int(np.argmax(iou[k])) if iou.shape[1] else -1
                label = int(gt[best, 1]) if best >= 0 and iou[k, best] >= 0.5 else -1
                track = tracks.setdefault(int(track_id), _LabelledTrack(tail=deque(maxlen=max_descriptors),
                                                                        rank=rank))
                item = (f, label, feats[j] / np.linalg.norm(feats[j]))
                if len(track.head) < need:
                    track.head.append(item)
                track.tail.append(item)
        for t in out.ended:
            if int(t) in tracks:
                tracks[int(t)].end = f
        counter.tick()
    return list(tracks.values())


def _entry_distances(tracks: list[_LabelledTrack], need: int) -> tuple[list[float], list[float], int]:
    """Each labelled entry's query against, per gt person, what the gallery would hold of them at that moment
    (:func:`calibrate_reentry`): the genuine and impostor nearest cosine distances, and the entries scored."""
    genuine, impostor, entries = [], [], 0
    for i, track in enumerate(tracks):
        emb, labels = track.arrays("head")
        if not (labels >= 0).any():
            continue
        pid = int(np.bincount(labels[labels >= 0]).argmax())
        query = emb.mean(axis=0)
        query /= np.linalg.norm(query)
        held: dict[int, list[np.ndarray]] = {}
        for j, other in enumerate(tracks):
            if j == i:
                continue
            if other.end < track.entry_order()[0]:  # ended: its whole (most recent) bank is in the gallery
                emb_j, labels_j = other.arrays("tail")
            elif other.entry_order() < track.entry_order():  # decided earlier: its entry embeddings are
                emb_j, labels_j = other.arrays("head")
            else:
                continue
            for person in np.unique(labels_j[labels_j >= 0]):
                held.setdefault(int(person), []).append(emb_j[labels_j == person])
        if not held:
            continue
        entries += 1
        for person, banks in held.items():
            d = 1.0 - float(np.max(np.concatenate(banks) @ query))
            (genuine if person == pid else impostor).append(d)
    return genuine, impostor, entries


# -------------------------------------------------------------------------------------- room: tracking
def track_room(room_dir, out_dir, extractor=None, *, config: TrackerConfig | None = None,
               reentry: ReentryConfig | None = None, far: float = 0.05, validation_dir=None,
               progress: Progress | None = None, embed_fn: EmbedFn | None = None) -> dict:
    """Track every camera of a room at once with one re-entry gallery; write per camera results.

    Writes under ``out_dir``: ``cam<k>.txt`` (MOTChallenge results with global identities),
    ``cam<k>.tracks.txt`` (the same boxes with the camera's own track ids) and ``reentry.json`` (the
    trackers' and the gallery's configs, its calibration and every entry decision). Without a model
    (``extractor`` and ``embed_fn`` None) every confirmed track opens a new identity and the trackers use
    motion only: the "No ReID" row. ``config`` defaults to :func:`room_tracker_config` (``use_reid``: a model
    was given): crops overlapping another person stay out of the banks the gallery gets, and the IoU step
    refuses a clean crop of someone else. With a model, ``reentry`` (a :class:`ReentryConfig`) is used if
    given; otherwise its threshold is calibrated at ``far`` on ``validation_dir`` (default:
    ``room_dir/validation``) by :func:`calibrate_reentry`. All cameras must have the same number of frames
    (synchronised).

    Returns ``{"cameras", "frames", "camera_frames", "seconds", "fps", "identities", "decisions",
    "calibration", "results"}``.
    """
    cams = scene_sequences(room_dir)
    seqs = {camid: load_sequence(path) for camid, path in cams}
    lengths = {camid: s.info.seq_length for camid, s in seqs.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{room_dir}: the cameras of a room must have the same number of frames, "
                         f"got {lengths}")
    n = next(iter(lengths.values()))
    embed = _embedder(extractor, embed_fn)
    config = _resolve_config(config, embed, room=True)
    calibration = None
    if embed is None:
        if reentry is not None:
            raise ValueError("a re-entry gallery needs embeddings: pass extractor (or embed_fn) with reentry")
    elif reentry is None:
        val = Path(validation_dir) if validation_dir is not None else Path(room_dir) / "validation"
        if not val.is_dir():
            raise FileNotFoundError(f"{val}: no validation part to calibrate the re-entry threshold on "
                                    "(write the room with validation_frames > 0, or pass validation_dir "
                                    "or reentry)")
        defaults = ReentryConfig(max_distance=0.0)  # the gallery's query and bank sizes, calibrated as used
        calibration = calibrate_reentry(val, embed_fn=embed, far=far, config=config,
                                        entry_descriptors=defaults.entry_descriptors,
                                        max_descriptors=defaults.max_descriptors)
        reentry = ReentryConfig(max_distance=float(np.clip(calibration["threshold"], 0.0, 2.0)))
    room = RoomTracker([c for c, _ in cams], config, reentry)
    inputs = {camid: _frame_inputs(seq, embed) for camid, seq in seqs.items()}
    start = time.perf_counter()
    for t in range(1, n + 1):
        room.step({camid: next(it) for camid, it in inputs.items()})
        if progress is not None:
            progress(t, n)
    room.finish()
    seconds = time.perf_counter() - start

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)  # the room's own folder: killed writers' leftovers go
    results = {}
    for camid, _ in cams:
        results[camid] = str(out_dir / f"cam{camid}.txt")
        write_results(out_dir / f"cam{camid}.txt", room.results(camid))
        write_results(out_dir / f"cam{camid}.tracks.txt", room.results(camid, track_ids=True))
    doc = {"tracker": asdict(config), "reentry": asdict(reentry) if reentry else None,
           "calibration": calibration,
           "decisions": [{**asdict(d), "distance": d.distance if math.isfinite(d.distance) else None}
                         for d in room.decisions]}
    write_text(out_dir / REENTRY_FILE, json.dumps(doc, indent=2) + "\n")
    identities = {d.identity for d in room.decisions}
    return {"cameras": [c for c, _ in cams], "frames": n, "camera_frames": n * len(cams),
            "seconds": round(seconds, 3), "fps": round(n * len(cams) / max(seconds, 1e-9), 2),
            "identities": len(identities), "decisions": len(room.decisions), "calibration": calibration,
            "results": results}




# ---------------------------------------------------------------------------------------- evaluation
def evaluate_tracking(gt, results, num_frames: int | None = None) -> dict:
    """MOTA, IDF1, HOTA, IDSW (and every count of :class:`MOTMetrics`) of one sequence.

    ``gt`` and ``results`` are arrays in the MOTChallenge column order or paths of ``gt.txt`` and a
    results file; ``num_frames`` is the sequence length (default: the last frame present).
    """
    gt = read_gt(gt) if isinstance(gt, (str, os.PathLike)) else gt
    results = read_results(results) if isinstance(results, (str, os.PathLike)) else results
    return evaluate_mot(gt, results, num_frames).as_dict()


def evaluate_room(room_dir, results_dir) -> dict:
    """Per camera and cross-camera metrics of a :func:`track_room` output, plus re-entry outcomes.

    ``overall`` evaluates the cameras laid end to end (:func:`concat_cameras`): its IDF1 is the
    cross-camera IDF1, where a person keeps one identity across cameras only if the gallery gave them one.
    ``reentry`` classifies each decision of ``reentry.json`` against the gt person its track covers.
    """
    results_dir = Path(results_dir)
    per_camera, joined, gt_pids, identities, is_new = {}, [], [], [], []
    decisions_path = results_dir / REENTRY_FILE
    if not decisions_path.is_file():
        raise FileNotFoundError(f"{decisions_path}: no re-entry decisions (expected a track_room output)")
    try:
        decisions = json.loads(decisions_path.read_text())["decisions"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{decisions_path}: expected a JSON object with a 'decisions' list "
                         f"({err})") from None
    pid_of = {}
    for camid, path in scene_sequences(room_dir):
        seq = load_sequence(path)
        if seq.gt is None:
            raise FileNotFoundError(f"{path / 'gt' / 'gt.txt'}: no ground truth to evaluate against")
        results = read_results(results_dir / f"cam{camid}.txt")
        per_camera[camid] = evaluate_mot(seq.gt, results, seq.info.seq_length).as_dict()
        joined.append((seq.gt, results, seq.info.seq_length))
        pid_of[camid] = match_tracks_to_gt(seq.gt, read_results(results_dir / f"cam{camid}.tracks.txt"))
    for d in decisions:
        gt_pids.append(pid_of.get(d["camid"], {}).get(d["track_id"], -1))
        identities.append(d["identity"])
        is_new.append(d["is_new"])
    gt, results, n = concat_cameras(joined)
    return {"cameras": per_camera, "overall": evaluate_mot(gt, results, n).as_dict(),
            "reentry": reentry_outcomes(gt_pids, identities, is_new).as_dict()}


# ---------------------------------------------------------------------------------------- comparison
_OUTCOMES = ("correct_match", "wrong_match", "missed_return", "false_match", "correct_new")


def compare_models(scene_dir, models: Mapping[str, object], *, out_dir=None, far: float = 0.05,
                   progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """One row per model of a Table-5-shaped comparison on a scene (a room, or one sequence).

    ``models`` maps a row name to a crop extractor (e.g. ``FeatureExtractor``) or None (motion only, no
    re-entry gallery: the "No ReID" row). A room is tracked with :func:`track_room` (threshold calibrated
    on its validation part at ``far``) and scored over all cameras; a single sequence with
    :func:`track_sequence`. Results go to ``out_dir/<name>/`` (a temporary folder when None).
    ``progress(name, done, total)`` reports frames. Each row: ``model, reid, mota, idf1, hota, idsw``,
    the re-entry outcome counts (None for a single sequence), ``threshold``, ``frames``, ``seconds``,
    ``fps``; a room's rows also hold ``cameras``: per camera ``{"mota", "idf1", "hota", "idsw"}``.
    """
    if not models:
        raise ValueError("models: expected at least one entry (name -> extractor or None)")
    cams = scene_sequences(scene_dir)
    is_room = len(cams) > 1
    with tempfile.TemporaryDirectory(prefix="robustreid-compare-") as tmp:
        base = Path(out_dir) if out_dir is not None else Path(tmp)
        rows, used = [], set()
        for name, extractor in models.items():
            folder = _slug(name, used)
            report = (lambda d, t, name=name: progress(name, d, t)) if progress is not None else None
            row = {"model": name, "reid": extractor is not None}
            if is_room:
                info = track_room(scene_dir, base / folder, extractor, far=far, progress=report)
                ev = evaluate_room(scene_dir, base / folder)
                metrics, outcomes = ev["overall"], ev["reentry"]
                row["threshold"] = info["calibration"]["threshold"] if info["calibration"] else None
                frames = info["camera_frames"]
            else:
                camid, path = cams[0]
                out = base / folder / f"cam{camid}.txt"
                info = track_sequence(path, out, extractor, progress=report)
                seq = load_sequence(path)
                if seq.gt is None:
                    raise FileNotFoundError(f"{path / 'gt' / 'gt.txt'}: no ground truth to evaluate against")
                metrics, outcomes = evaluate_tracking(seq.gt, read_results(out), seq.info.seq_length), None
                row["threshold"] = None
                frames = info["frames"]
            row.update({k: metrics[k] for k in ("mota", "idf1", "hota", "idsw")})
            row.update({k: (outcomes[k] if outcomes else None) for k in _OUTCOMES})
            row.update({"frames": frames, "seconds": info["seconds"], "fps": info["fps"]})
            if is_room:
                row["cameras"] = {c: {k: m[k] for k in ("mota", "idf1", "hota", "idsw")}
                                  for c, m in ev["cameras"].items()}
            rows.append(row)
    return rows


def _slug(name: str, used: set) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "model"
    candidate, k = slug, 2
    while candidate in used:
        candidate, k = f"{slug}_{k}", k + 1
    used.add(candidate)
    return candidate


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`compare_models` rows: MOTA, IDF1, HOTA in percent (one decimal, as in
    Table 5), IDSW, re-entry outcomes (correct / wrong / missed return / false match / correct new)
    when the scene is a room, and frames/s."""
    room = any(r.get("correct_match") is not None for r in rows)
    head = ["Model", "MOTA", "IDF1", "HOTA", "IDSW"]
    if room:
        head.append("Re-entry: correct / wrong / missed / false / new")
    head.append("frames/s")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [str(r["model"])] + [f"{100 * r[k]:.1f}" for k in ("mota", "idf1", "hota")] + [str(r["idsw"])]
        if room:
            cells.append(" / ".join("-" if r.get(k) is None else str(r[k]) for k in _OUTCOMES))
        cells.append(f"{r['fps']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
