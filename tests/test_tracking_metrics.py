"""Tests for robustreid.tracking.metrics: hand-computed MOTA / IDF1 / HOTA, MOT16 preprocessing checked
against TrackEval's own file-based pipeline, cross-camera IDF1 and re-entry outcome counts."""

import contextlib
import io

import numpy as np
import pytest

from robustreid.tracking.metrics import (
    concat_cameras,
    evaluate_mot,
    evaluate_mot_files,
    match_tracks_to_gt,
    reentry_outcomes,
)
from robustreid.tracking.motio import write_gt, write_results


def row(frame, pid, x, extra=(1, 1, 1.0)):
    return [frame, pid, x, 0, 10, 20, *extra]


def hand_case():
    """2 gt tracks over 4 frames, far apart. Tracker: 10 follows gt 1 throughout; gt 2 is followed by 20
    (frames 1-2), then by 30 (frame 3: one ID switch), and missed in frame 4; 40 is a false positive."""
    gt = [row(t, 1, 0) for t in range(1, 5)] + [row(t, 2, 100) for t in range(1, 5)]
    res = ([row(t, 10, 0, (0.9,)) for t in range(1, 5)] + [row(1, 20, 100, (0.9,)), row(2, 20, 100, (0.9,)),
           row(3, 30, 100, (0.9,)), row(2, 40, 500, (0.9,))])
    return np.array(gt, dtype=float), np.array(res, dtype=float)


def test_mota_idf1_hota_by_hand():
    gt, res = hand_case()
    m = evaluate_mot(gt, res)
    # CLEAR: TP = 4 + 2 + 1 = 7, FN = 1 (gt 2, frame 4), FP = 1 (id 40), IDSW = 1 (20 -> 30)
    assert (m.tp, m.fn, m.fp, m.idsw) == (7, 1, 1, 1)
    assert m.mota == pytest.approx(1 - (1 + 1 + 1) / 8)  # 0.625
    # Identity: best one-to-one map 1 <-> 10 (4 frames), 2 <-> 20 (2 frames): IDTP 6, IDFN 8 - 6 = 2,
    # IDFP 8 tracker boxes - 6 = 2; IDF1 = 2 * 6 / (2 * 6 + 2 + 2)
    assert (m.idtp, m.idfn, m.idfp) == (6, 2, 2)
    assert m.idf1 == pytest.approx(12 / 16)
    # HOTA (all matched boxes have IoU 1, so every localisation threshold agrees):
    # DetA = 7 / (7 + 1 + 1); AssA = (4 * 4/4 + 2 * 2/(4+2-2) + 1 * 1/(4+1-1)) / 7 = 5.25 / 7
    assert m.deta == pytest.approx(7 / 9)
    assert m.assa == pytest.approx(0.75)
    assert m.hota == pytest.approx(np.sqrt(7 / 9 * 0.75))
    assert (m.num_frames, m.num_gt_ids, m.num_tracker_ids) == (4, 2, 4)


def test_perfect_and_empty_tracking():
    gt, _ = hand_case()
    perfect = evaluate_mot(gt, np.column_stack([gt[:, :6], np.ones(len(gt))]))
    assert (perfect.mota, perfect.idf1, perfect.hota) == (1.0, 1.0, 1.0)
    empty = evaluate_mot(gt, np.empty((0, 7)))
    assert (empty.mota, empty.idf1, empty.fn) == (0.0, 0.0, 8)
    only_fp = evaluate_mot(np.empty((0, 9)), gt[:3, :7], num_frames=4)
    assert (only_fp.fp, only_fp.mota) == (3, -3.0)


def test_mot16_preprocessing():
    # frame 1: a pedestrian (tracked), a static person (class 7, tracked: the box is dropped, no FP),
    # an inactive pedestrian (not tracked: no FN), and a tracker box on nothing (FP)
    gt = np.array([row(1, 1, 0), row(1, 2, 100, (1, 7, 1)), row(1, 3, 200, (0, 1, 1))], dtype=float)
    res = np.array([row(1, 5, 0, (1,)), row(1, 6, 100, (1,)), row(1, 7, 400, (1,))], dtype=float)
    m = evaluate_mot(gt, res)
    assert (m.tp, m.fp, m.fn, m.num_gt_dets, m.num_tracker_dets) == (1, 1, 0, 1, 2)
    raw = evaluate_mot(gt, res, preprocess=False)  # static person counts as a pedestrian
    assert (raw.tp, raw.fp, raw.fn) == (2, 1, 0)
    with pytest.raises(ValueError, match=r"class ids must be in 1..13.*\[14\]"):
        evaluate_mot(np.array([row(1, 1, 0, (1, 14, 1))]), res)
    with pytest.raises(ValueError, match="id 5 appears twice in frame 1"):
        evaluate_mot(gt, np.concatenate([res, res[:1]]))


def _random_sequence(seed, num_frames=30):
    rng = np.random.default_rng(seed)
    gt, res = [], []
    for pid in range(1, 7):
        x0, y0 = rng.uniform(0, 500, 2)
        vx, vy = rng.uniform(-6, 6, 2)
        cls = 7 if pid == 6 else 1
        for t in range(1, num_frames + 1):
            if rng.random() < 0.1:
                continue
            x, y = x0 + vx * t, y0 + vy * t
            gt.append([t, pid, x, y, 40, 100, 0 if (pid == 5 and t < 6) else 1, cls, 1.0])
            if rng.random() < 0.85:
                tid = pid if t < num_frames // 2 else pid + 10 * (pid % 2)
                res.append([t, tid, x + rng.normal(0, 5), y + rng.normal(0, 10), 40, 100, 0.9])
    for t in range(1, num_frames + 1):
        if rng.random() < 0.3:
            res.append([t, 99, *rng.uniform(0, 500, 2), 40, 100, 0.5])
    return np.array(gt), np.array(res)


def test_matches_trackeval_file_pipeline(tmp_path):
    """The same files through TrackEval's MotChallenge2DBox dataset + Evaluator (the reference)."""
    trackeval = pytest.importorskip("trackeval")
    num_frames = 30
    gt, res = _random_sequence(0, num_frames)
    write_gt(tmp_path / "gt" / "seq" / "gt" / "gt.txt", gt)
    write_results(tmp_path / "trk" / "mine" / "data" / "seq.txt", res)
    dataset_cfg = dict(GT_FOLDER=str(tmp_path / "gt"), TRACKERS_FOLDER=str(tmp_path / "trk"),
                       SKIP_SPLIT_FOL=True, SEQ_INFO={"seq": num_frames}, TRACKERS_TO_EVAL=["mine"],
                       PRINT_CONFIG=False)
    eval_cfg = dict(USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                    OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False, PLOT_CURVES=False)
    with contextlib.redirect_stdout(io.StringIO()):
        out, _ = trackeval.Evaluator(eval_cfg).evaluate(
            [trackeval.datasets.MotChallenge2DBox(dataset_cfg)],
            [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
             trackeval.metrics.Identity({"PRINT_CONFIG": False})])
    ref = out["MotChallenge2DBox"]["mine"]["seq"]["pedestrian"]
    m = evaluate_mot_files(tmp_path / "gt" / "seq" / "gt" / "gt.txt",
                           tmp_path / "trk" / "mine" / "data" / "seq.txt", num_frames=num_frames)
    assert m.mota == pytest.approx(ref["CLEAR"]["MOTA"])
    assert (m.idsw, m.fp, m.fn) == (ref["CLEAR"]["IDSW"], ref["CLEAR"]["CLR_FP"], ref["CLEAR"]["CLR_FN"])
    assert m.idf1 == pytest.approx(ref["Identity"]["IDF1"])
    assert m.hota == pytest.approx(np.mean(ref["HOTA"]["HOTA"]))
    assert 0 < m.idsw and 0 < m.fp and m.mota < 1  # the case exercises every error kind


def test_cross_camera_idf1():
    # One person, 3 frames in each of two cameras. Same global id in both cameras: IDF1 1.
    # A new id in the second camera: each camera alone is perfect, but over the room IDTP = 3,
    # IDFN = 3, IDFP = 3 -> IDF1 = 6 / 12.
    gt_cam = np.array([row(t, 1, 0) for t in range(1, 4)], dtype=float)
    same = np.column_stack([gt_cam[:, :6], np.ones(3)])
    other = same.copy()
    other[:, 1] = 2
    gt, res, n = concat_cameras([(gt_cam, same, 3), (gt_cam, same, 3)])
    assert n == 6 and gt[:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert evaluate_mot(gt, res, n).idf1 == 1.0
    gt, res, n = concat_cameras([(gt_cam, same, 3), (gt_cam, other, 3)])
    assert evaluate_mot(gt_cam, other, 3).idf1 == 1.0
    assert evaluate_mot(gt, res, n).idf1 == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"sequences\[0\] gt: frames must be integers in 1..2, got 1..3"):
        concat_cameras([(gt_cam, same, 2)])


def test_match_tracks_to_gt():
    gt = np.array([row(t, 1, 0) for t in range(1, 5)] + [row(t, 2, 100) for t in range(1, 5)], dtype=float)
    # track 7 covers gt 1 for 3 frames and gt 2 for 1; track 8 covers nothing
    res = np.array([row(1, 7, 0, (1,)), row(2, 7, 0, (1,)), row(3, 7, 0, (1,)), row(4, 7, 100, (1,)),
                    row(1, 8, 300, (1,))], dtype=float)
    assert match_tracks_to_gt(gt, res) == {7: 1, 8: -1}


def test_reentry_outcomes_by_hand():
    # decisions in order: person 1 opens id 1; person 2 opens id 2; person 1 returns -> id 1 (correct);
    # person 2 returns -> id 1 (wrong); person 1 returns -> new id 3 (missed return);
    # person 3 arrives -> id 2 (false match); person 4 -> new id 4 (correct new); a track on no one
    pids = [1, 2, 1, 2, 1, 3, 4, -1]
    identities = [1, 2, 1, 1, 3, 2, 4, 5]
    is_new = [True, True, False, False, True, False, True, True]
    out = reentry_outcomes(pids, identities, is_new)
    assert out.as_dict() == {"correct_match": 1, "wrong_match": 1, "missed_return": 1, "false_match": 1,
                             "correct_new": 3, "no_gt": 1}
    with pytest.raises(ValueError, match="identity 9 matched before any decision opened it"):
        reentry_outcomes([1], [9], [False])
