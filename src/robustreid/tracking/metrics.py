"""Tracking metrics: CLEAR MOT (MOTA), identity (IDF1), HOTA and re-entry outcomes.

Tables 5 and 6 of the paper report MOTA and IDF1. They are computed here by the metric classes of
TrackEval (PyPI ``trackeval``, the MOTChallenge reference implementation: ``CLEAR``, ``Identity``,
``HOTA``), run directly on the per-sequence data dict they expect. The dict is built the way
TrackEval's ``MotChallenge2DBox`` builds it from ``gt.txt`` and a results file:

* similarity = box IoU between every gt box and result box of a frame;
* with ``preprocess=True`` (MOT16/17/20): result boxes matched (Hungarian, IoU >= 0.5) to a gt box of a
  distractor class (2 person on vehicle, 7 static person, 8 distractor, 12 reflection) are removed,
  whatever that gt box's ``active`` flag; then only gt boxes with ``active != 0`` and class 1
  (pedestrian) are kept. Without preprocessing, gt boxes with ``active != 0`` are kept;
* gt and result ids are relabelled to 0..n-1.

Arrays use the column order of :mod:`robustreid.tracking.motio` (gt ``frame, id, x, y, w, h, active,
class, visibility``; a 6-column gt array means every box is an active pedestrian; results ``frame, id,
x, y, w, h[, score]``).

Cross-camera IDF1 over the cameras of one room: :func:`concat_cameras` lays the cameras' sequences end
to end as one sequence (frame numbers offset), with ids that are global across cameras, so an identity
kept across cameras counts as kept.

IDF1 hides what happened at each entry to the room; :func:`reentry_outcomes` counts each open-set
decision of the re-entry gallery (:mod:`robustreid.tracking.reentry`) as a correct match, a wrong
match, a missed return (a returning person given a new identity: a false new identity), a false match
(a newcomer given an existing identity) or a correct new identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .motio import read_gt, read_results, xywh_to_xyxy
from .tracker import box_iou

__all__ = [
    "MOTMetrics",
    "ReentryOutcomes",
    "mot_eval_data",
    "evaluate_mot",
    "evaluate_mot_files",
    "concat_cameras",
    "match_tracks_to_gt",
    "reentry_outcomes",
]

PEDESTRIAN = 1
DISTRACTOR_CLASSES = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection
NUM_CLASSES = 13  # MOT16/17 class ids are 1..13


@dataclass(frozen=True)
class MOTMetrics:
    """One evaluation; rates in [0, 1] (MOTA can be negative); HOTA, DetA and AssA are averaged over
    TrackEval's localisation thresholds 0.05..0.95."""

    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    hota: float
    deta: float
    assa: float
    idsw: int
    frag: int
    tp: int
    fp: int
    fn: int
    mostly_tracked: int
    mostly_lost: int
    idtp: int
    idfp: int
    idfn: int
    num_frames: int
    num_gt_ids: int
    num_tracker_ids: int
    num_gt_dets: int
    num_tracker_dets: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReentryOutcomes:
    """Counts of re-entry decisions (see :func:`reentry_outcomes`)."""

    correct_match: int = 0
    wrong_match: int = 0
    missed_return: int = 0
    false_match: int = 0
    correct_new: int = 0
    no_gt: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------- input
def _as_gt(gt) -> np.ndarray:
    gt = np.asarray(gt, dtype=np.float64)
    if gt.size == 0:
        return np.empty((0, 9))
    if gt.ndim != 2 or gt.shape[1] < 6:
        raise ValueError(f"gt: expected shape (N, 6) or (N, >=9) (frame, id, x, y, w, h, active, class, "
                         f"visibility), got {gt.shape}")
    if gt.shape[1] < 9:
        if gt.shape[1] != 6:
            raise ValueError(f"gt: expected 6 or >= 9 columns, got {gt.shape[1]}")
        gt = np.column_stack([gt, np.ones((len(gt), 3))])  # every box an active, visible pedestrian
    return gt[:, :9]


def _as_results(results) -> np.ndarray:
    res = np.asarray(results, dtype=np.float64)
    if res.size == 0:
        return np.empty((0, 7))
    if res.ndim != 2 or res.shape[1] < 6:
        raise ValueError(f"results: expected shape (N, >=6) (frame, id, x, y, w, h[, score]), "
                         f"got {res.shape}")
    if res.shape[1] == 6:
        res = np.column_stack([res, np.ones(len(res))])
    return res[:, :7]


def _check_frames(rows: np.ndarray, name: str, num_frames: int) -> None:
    if not len(rows):
        return
    frames = rows[:, 0]
    if not np.all(frames == np.round(frames)) or frames.min() < 1 or frames.max() > num_frames:
        raise ValueError(f"{name}: frames must be integers in 1..{num_frames}, got "
                         f"{frames.min():g}..{frames.max():g}")
    pairs, counts = np.unique(rows[:, :2], axis=0, return_counts=True)
    if np.any(counts > 1):
        frame, track_id = pairs[counts > 1][0]
        raise ValueError(f"{name}: id {int(track_id)} appears twice in frame {int(frame)}")


# ------------------------------------------------------------------------------------ data dict
def mot_eval_data(gt, results, num_frames: int | None = None, preprocess: bool = True) -> dict:
    """The per-sequence data dict that TrackEval's metric classes read (see the module docstring)."""
    gt, res = _as_gt(gt), _as_results(results)
    if num_frames is None:
        num_frames = int(max(gt[:, 0].max() if len(gt) else 0, res[:, 0].max() if len(res) else 0, 1))
    _check_frames(gt, "gt", num_frames)
    _check_frames(res, "results", num_frames)
    if preprocess and len(gt):
        bad = np.setdiff1d(np.unique(gt[:, 7]), np.arange(1, NUM_CLASSES + 1))
        if len(bad):
            raise ValueError(f"gt: class ids must be in 1..{NUM_CLASSES} for MOTChallenge preprocessing, got "
                             f"{bad.astype(int).tolist()} (pass preprocess=False for other data)")
    gt_frame, res_frame = gt[:, 0].astype(np.int64), res[:, 0].astype(np.int64)

    gt_ids, tracker_ids, gt_dets, tracker_dets, confidences, similarity = [], [], [], [], [], []
    for t in range(1, num_frames + 1):
        g, r = gt[gt_frame == t], res[res_frame == t]
        sim = box_iou(xywh_to_xyxy(g[:, 2:6]), xywh_to_xyxy(r[:, 2:6]))
        remove = np.zeros(len(r), dtype=bool)
        if preprocess and len(g) and len(r):
            score = np.where(sim >= 0.5 - np.finfo(float).eps, sim, 0.0)
            rows, cols = linear_sum_assignment(-score)
            ok = score[rows, cols] > np.finfo(float).eps
            distractor = np.isin(g[rows[ok], 7], DISTRACTOR_CLASSES)
            remove[cols[ok][distractor]] = True
        keep_g = g[:, 6] != 0
        if preprocess:
            keep_g &= g[:, 7] == PEDESTRIAN
        g, r = g[keep_g], r[~remove]
        gt_ids.append(g[:, 1].astype(np.int64))
        tracker_ids.append(r[:, 1].astype(np.int64))
        gt_dets.append(g[:, 2:6])
        tracker_dets.append(r[:, 2:6])
        confidences.append(r[:, 6])
        similarity.append(sim[keep_g][:, ~remove])

    gt_ids, num_gt_ids = _relabel(gt_ids)
    tracker_ids, num_tracker_ids = _relabel(tracker_ids)
    return {
        "num_timesteps": num_frames,
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": int(sum(len(x) for x in gt_ids)),
        "num_tracker_dets": int(sum(len(x) for x in tracker_ids)),
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "gt_dets": gt_dets,
        "tracker_dets": tracker_dets,
        "tracker_confidences": confidences,
        "similarity_scores": similarity,
        "seq": "sequence",
    }


def _relabel(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map the ids that occur to 0..n-1 (TrackEval indexes its count arrays with them)."""
    flat = np.concatenate(ids_per_frame) if ids_per_frame else np.empty(0, np.int64)
    uniq = np.unique(flat)
    return [np.searchsorted(uniq, x).astype(np.int64) for x in ids_per_frame], len(uniq)


# ------------------------------------------------------------------------------------ evaluation
def evaluate_mot(gt, results, num_frames: int | None = None, preprocess: bool = True) -> MOTMetrics:
    """MOTA, IDF1, HOTA and their counts for one sequence, by TrackEval's metric classes.

    ``num_frames`` defaults to the last frame present in ``gt`` or ``results``.
    """
    try:
        from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as err:  # depends on the environment; the CLI names the extra that installs it
        raise ModuleNotFoundError("tracking metrics need the 'trackeval' package: "
                                  "pip install 'robustreid[tracking]'", name="trackeval") from err
    data = mot_eval_data(gt, results, num_frames, preprocess)
    clear = CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)
    ident = Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)
    hota = HOTA().eval_sequence(data)
    if data["num_tracker_dets"] == 0 or data["num_gt_dets"] == 0:
        # TrackEval returns early on an empty side without filling in the rates (MOTA, IDF1, ...).
        clear = CLEAR._compute_final_fields(dict(clear))
        ident = Identity._compute_final_fields(dict(ident))
    return MOTMetrics(
        mota=float(clear["MOTA"]), motp=float(clear["MOTP"]),
        idf1=float(ident["IDF1"]), idp=float(ident["IDP"]), idr=float(ident["IDR"]),
        hota=float(np.mean(hota["HOTA"])), deta=float(np.mean(hota["DetA"])),
        assa=float(np.mean(hota["AssA"])),
        idsw=int(clear["IDSW"]), frag=int(clear["Frag"]),
        tp=int(clear["CLR_TP"]), fp=int(clear["CLR_FP"]), fn=int(clear["CLR_FN"]),
        mostly_tracked=int(clear["MT"]), mostly_lost=int(clear["ML"]),
        idtp=int(ident["IDTP"]), idfp=int(ident["IDFP"]), idfn=int(ident["IDFN"]),
        num_frames=int(data["num_timesteps"]), num_gt_ids=int(data["num_gt_ids"]),
        num_tracker_ids=int(data["num_tracker_ids"]), num_gt_dets=int(data["num_gt_dets"]),
        num_tracker_dets=int(data["num_tracker_dets"]),
    )


def evaluate_mot_files(gt_path, results_path, num_frames: int | None = None,
                       preprocess: bool = True) -> MOTMetrics:
    """:func:`evaluate_mot` on a ``gt.txt`` and a results file (``num_frames``: the sequence's
    ``seqLength``; by default the last frame present)."""
    return evaluate_mot(read_gt(gt_path), read_results(results_path), num_frames, preprocess)


def concat_cameras(sequences: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, int]:
    """``[(gt, results, num_frames), ...]`` of one room's cameras, ids global across cameras -> one
    ``(gt, results, num_frames)`` sequence, camera ``k``'s frames shifted after cameras ``0..k-1``."""
    gts, ress, offset = [], [], 0
    for k, (gt, res, num_frames) in enumerate(sequences):
        gt, res = _as_gt(gt).copy(), _as_results(res).copy()
        num_frames = int(num_frames)
        _check_frames(gt, f"sequences[{k}] gt", num_frames)
        _check_frames(res, f"sequences[{k}] results", num_frames)
        gt[:, 0] += offset
        res[:, 0] += offset
        gts.append(gt)
        ress.append(res)
        offset += num_frames
    if not gts:
        raise ValueError("sequences: expected at least one camera")
    return np.concatenate(gts), np.concatenate(ress), offset


# ------------------------------------------------------------------------------------ re-entry
def match_tracks_to_gt(gt, results, iou_threshold: float = 0.5) -> dict[int, int]:
    """The gt id each result track covers most often (per-frame Hungarian on IoU >= ``iou_threshold``
    with the active gt boxes); -1 for a track that never covers one."""
    gt, res = _as_gt(gt), _as_results(results)
    gt = gt[gt[:, 6] != 0]
    counts: dict[int, dict[int, int]] = {int(t): {} for t in np.unique(res[:, 1])}
    for t in np.unique(res[:, 0]):
        g, r = gt[gt[:, 0] == t], res[res[:, 0] == t]
        if not len(g):
            continue
        iou = box_iou(xywh_to_xyxy(r[:, 2:6]), xywh_to_xyxy(g[:, 2:6]))
        rows, cols = linear_sum_assignment(-iou)
        for i, j in zip(rows, cols):
            if iou[i, j] >= iou_threshold:
                c = counts[int(r[i, 1])]
                c[int(g[j, 1])] = c.get(int(g[j, 1]), 0) + 1
    # most frequent gt id; ties to the smaller id
    return {tid: (min(c, key=lambda p: (-c[p], p)) if c else -1) for tid, c in counts.items()}


def reentry_outcomes(gt_pids: Sequence[int], identities: Sequence[int],
                     is_new: Sequence[bool]) -> ReentryOutcomes:
    """Classify re-entry decisions, given in the order they were made.

    Decision ``k`` gave the track of gt person ``gt_pids[k]`` (-1: the track covers no person) the
    identity ``identities[k]``, new if ``is_new[k]``. An identity belongs to the person whose decision
    opened it. A person is *returning* if an earlier decision concerned them. Then:
    returning + their own identity -> correct_match; returning + another's identity -> wrong_match;
    returning + new identity -> missed_return; first seen + existing identity -> false_match;
    first seen + new identity -> correct_new; gt -1 -> no_gt.
    """
    if not len(gt_pids) == len(identities) == len(is_new):
        raise ValueError(f"gt_pids, identities and is_new must have one entry per decision, got lengths "
                         f"{len(gt_pids)}, {len(identities)}, {len(is_new)}")
    owner: dict[int, int] = {}
    seen: set[int] = set()
    counts = dict.fromkeys(ReentryOutcomes.__dataclass_fields__, 0)
    for k, (pid, identity, new) in enumerate(zip(gt_pids, identities, is_new)):
        pid, identity = int(pid), int(identity)
        if new:
            if identity in owner:
                raise ValueError(f"decision {k}: identity {identity} is marked new but was opened before")
            owner[identity] = pid
        elif identity not in owner:
            raise ValueError(f"decision {k}: identity {identity} matched before any decision opened it")
        if pid < 0:
            outcome = "no_gt"
        elif new:
            outcome = "missed_return" if pid in seen else "correct_new"
        elif pid not in seen:
            outcome = "false_match"
        else:
            outcome = "correct_match" if owner[identity] == pid else "wrong_match"
        counts[outcome] += 1
        if pid >= 0:
            seen.add(pid)
    return ReentryOutcomes(**counts)
