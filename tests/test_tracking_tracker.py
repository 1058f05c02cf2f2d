"""Tests for robustreid.tracking.tracker: association on hand-built frames, primitives, the embedding hook."""

import numpy as np
import pytest
import torch

from robustreid.tracking.tracker import (
    CropEmbedder,
    ReIDFeatureAdapter,
    Tracker,
    TrackerConfig,
    box_iou,
    crop_boxes,
    linear_assignment,
    occluded,
)

EA, EB, EC = np.eye(4)[:3]  # three people who look nothing alike


def box(cx, cy=200.0, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker, frames):
    """frames: list of [(cx, embedding), ...]; returns per frame {detection index: track id}."""
    out = []
    for dets in frames:
        boxes = np.array([box(cx) for cx, _ in dets]).reshape(-1, 4)
        feats = np.stack([e for _, e in dets]) if dets else None
        res = tracker.update(boxes, np.full(len(dets), 0.9), feats)
        out.append(dict(zip(res.det_indices.tolist(), res.track_ids.tolist())))
    return out


# ------------------------------------------------------------------------------------- primitives
def test_box_iou_by_hand():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [2, 2, 4, 4]]
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150; disjoint; identical; inside (4 / 100)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 0, 1, 0.04]])
    assert box_iou(np.empty((0, 4)), b).shape == (0, 4)


def test_linear_assignment_prefers_more_admissible_pairs():
    # Row 0 alone would take column 0 (0.10); matching both rows needs 0-1 and 1-0 (0.15 + 0.19).
    cost = np.array([[0.10, 0.15], [0.19, np.inf]])
    matches, rows, cols = linear_assignment(cost, max_cost=0.2)
    assert sorted(map(tuple, matches.tolist())) == [(0, 1), (1, 0)]
    assert len(rows) == len(cols) == 0
    # above the threshold nothing is matched, and empty inputs are fine
    matches, rows, cols = linear_assignment(np.array([[0.5, 0.3]]), max_cost=0.2)
    assert len(matches) == 0 and rows.tolist() == [0] and cols.tolist() == [0, 1]
    matches, rows, cols = linear_assignment(np.empty((0, 3)), max_cost=0.2)
    assert len(matches) == 0 and cols.tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------- association
def crossing_frames():
    """A walks right from x=100, B left from x=180 at 4 px / frame; they meet (same box) at frame 11
    and turn back. A constant-velocity prediction then sits on the other person."""
    frames = []
    for t in range(21):
        a, b = (100 + 4 * t, 180 - 4 * t) if t <= 10 else (140 - 4 * (t - 10), 140 + 4 * (t - 10))
        frames.append([(a, EA), (b, EB)])
    return frames


def test_crossing_paths_iou_swaps_appearance_keeps():
    motion = run(Tracker(TrackerConfig(use_reid=False)), crossing_frames())
    reid = run(Tracker(TrackerConfig(use_reid=True)), crossing_frames())
    for out in (motion, reid):
        assert out[0] == {}  # tracks are confirmed on their second hit
        assert out[1] == {0: 1, 1: 2}  # A -> 1, B -> 2
    assert motion[-1] == {0: 2, 1: 1}  # IoU alone: the identities swapped after the turn
    assert all(out == {0: 1, 1: 2} for out in reid[1:])  # appearance: never swapped


def test_occluded_by_hand():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 0, 110, 10]], dtype=float)  # IoU(0, 1) = 1/3
    assert occluded(boxes, np.arange(3), 0.3).tolist() == [True, True, False]
    assert occluded(boxes, np.arange(3), 0.4).tolist() == [False, False, False]
    assert occluded(boxes, np.array([0, 2]), 0.3).tolist() == [False, False, False]  # 1 is no candidate
    assert occluded(boxes, np.arange(3), None).tolist() == [False, False, False]


def test_occluded_crops_stay_out_of_the_banks():
    """Where the two boxes of crossing_frames overlap (IoU >= 0.3, 5 frames) each crop shows both people:
    with occluded_iou those embeddings never join a bank; without it both banks take them."""
    frames = []
    for (a, ea), (b, eb) in crossing_frames():
        both = (ea + eb) / np.sqrt(2)
        overlap = box_iou([box(a)], [box(b)])[0, 0] >= 0.3
        frames.append([(a, both if overlap else ea), (b, both if overlap else eb)])
    assert sum(box_iou([box(f[0][0])], [box(f[1][0])])[0, 0] >= 0.3 for f in frames) == 5
    kept, plain = Tracker(TrackerConfig(occluded_iou=0.3)), Tracker(TrackerConfig())
    for tracker, rows in ((kept, 16), (plain, 21)):
        out = run(tracker, frames)
        assert out[1] == out[-1] == {0: 1, 1: 2}  # the same people at the end
        assert len(tracker.track(1).descriptors) == len(tracker.track(2).descriptors) == rows
    np.testing.assert_array_equal(kept.track(1).descriptors, np.tile(EA, (16, 1)))
    np.testing.assert_array_equal(kept.track(2).descriptors, np.tile(EB, (16, 1)))
    assert np.isclose(plain.track(1).descriptors @ EB, np.sqrt(0.5)).sum() == 5
    # the overlapped crops are kept aside (a re-entry gallery may query with them), never in the bank
    np.testing.assert_allclose(kept.track(1).occluded_descriptors, np.tile((EA + EB) / np.sqrt(2), (5, 1)))
    assert plain.track(1).occluded_descriptors.shape == (0, 0)
    for _ in range(kept.config.max_frames_lost + 1):  # both end: the report hands over what was kept aside
        out = kept.update(np.empty((0, 4)), [], None)
    assert sorted(out.ended) == sorted(out.ended_occluded) == [1, 2]
    assert out.ended_occluded[2].shape == (5, 4) and out.ended[2].shape == (16, 4)
    tracker = Tracker(TrackerConfig(occluded_iou=0.3))  # each frame's report flags the overlapping rows
    flags = [tracker.update(np.array([box(a), box(b)]), [0.9, 0.9], np.stack([ea, eb])).occluded.tolist()
             for (a, ea), (b, eb) in crossing_frames()]
    assert flags[0] == [] and flags.count([True, True]) == 5 and flags.count([False, False]) == 15


@pytest.mark.parametrize("births", [True, False])
def test_occluded_births_false_starts_no_track_behind_another(births):
    """A walks alone; B appears half behind A (IoU 0.6) for 3 frames, then steps clear. Births from the
    overlapped candidate: B gets a track at once (a fragment); without them, one track once clear."""
    frames = [[(100, EA)]] * 2 + [[(100, EA), (110, EB)]] * 3 + [[(100, EA), (300, EB)]] * 3
    out = run(Tracker(TrackerConfig(occluded_iou=0.3, occluded_births=births)), frames)
    assert all(o.get(0) == 1 for o in out[1:])  # A: track 1 throughout
    if births:
        assert out[3] == {0: 1, 1: 2}  # B confirmed on its second overlapped frame
        assert out[-1] == {0: 1, 1: 3}  # that track banked no clean crop to be found by: a second track
    else:
        assert out[2:5] == [{0: 1}] * 3 and out[5] == {0: 1} and out[6] == {0: 1, 1: 2}
    with pytest.raises(ValueError, match="occluded_births must be True or False"):
        TrackerConfig(occluded_births=1)


@pytest.mark.parametrize("veto", [None, 0.5])
def test_iou_veto_ends_a_pair_whose_clean_crop_is_someone_else(veto):
    """A stands at x=100 for 4 frames; then B stands in A's place (same box, A gone). Appearance lets track 1
    go (cosine distance 1); the IoU step hands it to B unless the veto refuses a clean crop that far from
    the bank: then track 1 is lost and B is born as track 2."""
    frames = [[(100, EA)]] * 4 + [[(100, EB)]] * 3
    outs = [run(Tracker(TrackerConfig(iou_veto_distance=veto)), frames)]
    # embedding on demand (a callable, reid_refresh 2) would pair these boxes unembedded: with the veto it
    # embeds every candidate, so the veto sees them
    tracker = Tracker(TrackerConfig(iou_veto_distance=veto, reid_refresh=2))
    out = []
    for dets in frames:
        feats = np.stack([e for _, e in dets])
        boxes = np.array([box(cx) for cx, _ in dets])
        res = tracker.update(boxes, np.full(len(dets), 0.9), lambda i, feats=feats: feats[i])
        out.append(dict(zip(res.det_indices.tolist(), res.track_ids.tolist())))
    outs.append(out)
    for out in outs:
        assert out[1:4] == [{0: 1}] * 3
        if veto is None:
            assert out[4:] == [{0: 1}] * 3  # the switch
        else:
            assert out[4] == {} and out[5:] == [{0: 2}] * 2  # unconfirmed on its first frame, then its own


def test_iou_veto_leaves_a_track_with_an_empty_bank_alone():
    """Every crop of A overlapped C's (so A's bank stayed empty): B in A's place is paired by IoU."""
    frames = [[(100, EA), (108, EC)]] * 4 + [[(100, EB), (400, EC)]]
    out = run(Tracker(TrackerConfig(iou_veto_distance=0.5, occluded_iou=0.3)), frames)
    assert out[3][0] == 1 and out[4][0] == 1


def test_iou_veto_spares_overlapped_crops_and_the_motion_only_tracker():
    """The veto acts on clean crops of an appearance tracker only: an overlapped crop (it shows part of
    another person) and the motion-only tracker's IoU step keep the pair."""
    # IoU(100, 110) = 0.6: in the last two frames both crops are overlapped
    frames = [[(100, EA), (400, EC)]] * 4 + [[(100, EB), (110, EC)]] * 2
    out = run(Tracker(TrackerConfig(iou_veto_distance=0.5, occluded_iou=0.3)), frames)
    assert out[4][0] == 1 and out[5][0] == 1
    out = run(Tracker(TrackerConfig(iou_veto_distance=0.5)), frames)  # no occluded_iou: every crop is clean
    assert 1 not in out[4].values()
    motion_only = Tracker(TrackerConfig(use_reid=False, iou_veto_distance=0.5))
    out = run(motion_only, [[(100, EA)]] * 4 + [[(100, EB)]])
    assert out[-1] == {0: 1}
    with pytest.raises(ValueError, match="iou_veto_distance must be None or a cosine distance"):
        TrackerConfig(iou_veto_distance=3.0)


def test_lost_track_is_refound_by_appearance():
    # A walks right for 10 frames, is missed for 8 frames, reappears where it would be; B stays put.
    frames = [[(100 + 5 * t, EA), (400, EB)] for t in range(10)]
    frames += [[(400, EB)] for _ in range(8)]
    frames += [[(100 + 5 * t, EA), (400, EB)] for t in range(18, 22)]
    tracker = Tracker(TrackerConfig(max_frames_lost=30))
    out = run(tracker, frames[:18])
    assert out[9] == {0: 1, 1: 2}
    assert all(o == {0: 2} for o in out[10:18])  # A is lost, not reported
    assert {t.track_id: t.state for t in tracker.tracks} == {2: "tracked", 1: "lost"}
    out = run(tracker, frames[18:])
    assert all(o == {0: 1, 1: 2} for o in out)  # found again under its old id
    assert tracker.track(1).state == "tracked"


def test_lost_too_long_ends_and_a_new_track_starts():
    frames = [[(100 + 5 * t, EA)] for t in range(5)] + [[] for _ in range(4)] + [[(125 + 5 * 4, EA)]] * 3
    tracker = Tracker(TrackerConfig(max_frames_lost=3))
    ended = []
    for t, dets in enumerate(frames, start=1):
        boxes = np.array([box(cx) for cx, _ in dets]).reshape(-1, 4)
        res = tracker.update(boxes, np.full(len(dets), 0.9), np.stack([e for _, e in dets]) if dets else None)
        if res.ended:
            ended.append((t, res.ended))
    # last matched at frame 5; removed when frame - 5 > 3, i.e. at frame 9, with its 5 embeddings
    assert len(ended) == 1 and ended[0][0] == 9 and list(ended[0][1]) == [1]
    np.testing.assert_allclose(ended[0][1][1], np.tile(EA, (5, 1)))
    assert res.track_ids.tolist() == [2]


def test_bank_keeps_the_latest_embeddings_oldest_first():
    tracker = Tracker(TrackerConfig(use_reid=False, max_descriptors=3))
    feats = np.eye(6)[:5]
    for k in range(5):  # one person standing still, a different (orthogonal) embedding every frame
        tracker.update(np.array([box(100)]), [0.9], feats[k:k + 1])
    np.testing.assert_array_equal(tracker.track(1).descriptors, feats[2:5])


def test_appearance_match_is_gated_by_motion():
    # Same look, but the second person appears 300 px away from the predicted position: a new track.
    tracker = Tracker(TrackerConfig())
    out = run(tracker, [[(100, EA)], [(100, EA)], [(100, EA)], [], [(400, EA)], [(400, EA)]])
    assert out[2] == {0: 1}
    assert out[5] == {0: 2}
    assert {t.track_id: t.state for t in tracker.tracks} == {2: "tracked", 1: "lost"}


def test_scores_filter_candidates_and_births():
    cfg = TrackerConfig(min_det_score=0.4, min_new_track_score=0.6)
    tracker = Tracker(cfg)
    boxes = np.array([box(100), box(300)])
    # 0.5 is a candidate but too weak to start a track; 0.3 is not even a candidate
    res = tracker.update(boxes, [0.9, 0.5], np.stack([EA, EB]))
    res = tracker.update(boxes, [0.9, 0.5], np.stack([EA, EB]))
    assert res.track_ids.tolist() == [1] and res.confirmed == (1,)
    res = tracker.update(boxes, [0.5, 0.9], np.stack([EA, EB]))  # a weak detection continues track 1
    assert res.track_ids.tolist() == [1] and res.confirmed == ()
    res = tracker.update(boxes, [0.3, 0.9], np.stack([EA, EB]))
    assert res.track_ids.tolist() == [2] and res.confirmed == (2,)


def test_unconfirmed_track_is_dropped_after_a_miss():
    tracker = Tracker(TrackerConfig())
    out = run(tracker, [[(100, EA)], [], [(100, EA)], [(100, EA)]])
    assert out == [{}, {}, {}, {0: 2}]
    res = Tracker(TrackerConfig(confirm_hits=1)).update(np.array([box(100)]), [0.9], EA[None])
    assert res.track_ids.tolist() == [1] and res.confirmed == (1,)


def test_mot_rows_and_motion_only_without_embeddings():
    tracker = Tracker(TrackerConfig(use_reid=False))
    for _ in range(2):
        res = tracker.update(np.array([[10, 20, 50, 120]]), [0.8])
    np.testing.assert_allclose(res.mot_rows(), [[2, 1, 10, 20, 40, 100, 0.8]])


def test_bad_frames_and_config():
    tracker = Tracker(TrackerConfig())
    with pytest.raises(ValueError, match="embeddings: required"):
        tracker.update(np.array([box(100)]), [0.9])
    with pytest.raises(ValueError, match=r"expected shape \(1, D\)"):
        tracker.update(np.array([box(100)]), [0.9], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"scores: expected shape \(1,\)"):
        tracker.update(np.array([box(100)]), [0.9, 0.8], EA[None])
    with pytest.raises(ValueError, match=r"boxes_xyxy\[0\]"):
        tracker.update(np.array([[10, 10, 5, 20]]), [0.9], EA[None])
    with pytest.raises(ValueError, match="all zeros"):
        tracker.update(np.array([box(100)]), [0.9], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="max_iou_distance"):
        TrackerConfig(max_iou_distance=1.5)
    with pytest.raises(ValueError, match="max_frames_lost"):
        TrackerConfig(max_frames_lost=-1)
    with pytest.raises(ValueError, match=r"occluded_iou must be None or in \(0, 1\], got 0"):
        TrackerConfig(occluded_iou=0)


# ------------------------------------------------------------------------------ embedding on demand
class Recorder:
    """embed(indices) over one frame's embeddings, recording which detections were asked for."""

    def __init__(self):
        self.asked: list[list[int]] = []
        self.feats = None

    def __call__(self, indices):
        self.asked[-1].extend(int(i) for i in indices)
        return self.feats[indices] * 3.0  # not unit norm: the tracker normalises


def run_on_demand(tracker, frames, recorder):
    out = []
    for dets in frames:
        boxes = np.array([box(cx) for cx, _ in dets]).reshape(-1, 4)
        recorder.feats = np.stack([e for _, e in dets]) if dets else np.empty((0, 4))
        recorder.asked.append([])
        res = tracker.update(boxes, np.full(len(dets), 0.9), recorder)
        out.append(dict(zip(res.det_indices.tolist(), res.track_ids.tolist())))
    return out


def test_on_demand_with_refresh_1_is_motdt():
    # A callable with reid_refresh=1 embeds every candidate of every frame: the tracks and banks of the
    # array path. A low-score detection first in every frame (never a candidate, never asked for) makes
    # candidate positions differ from detection indices.
    frames = crossing_frames() + [[(300, EC)], [], [(304, EC), (100, EA)]]
    noise = (600, np.eye(4)[3])
    array_tracker, lazy_tracker, asked = Tracker(TrackerConfig()), Tracker(TrackerConfig()), []
    for dets in frames:
        dets = [noise] + dets
        boxes = np.array([box(cx) for cx, _ in dets])
        scores = np.array([0.1] + [0.9] * (len(dets) - 1))
        feats = np.stack([e for _, e in dets])
        a = array_tracker.update(boxes, scores, feats)
        b = lazy_tracker.update(boxes, scores, lambda idx: (asked.append(sorted(idx.tolist())), feats[idx])[1])
        assert a.det_indices.tolist() == b.det_indices.tolist() and a.track_ids.tolist() == b.track_ids.tolist()
    assert asked == [list(range(1, len(dets) + 1)) for dets in frames if dets]
    for t in array_tracker.tracks:
        np.testing.assert_array_equal(t.descriptors, lazy_tracker.track(t.track_id).descriptors)


def test_on_demand_embeds_only_where_appearance_decides():
    # Two people far apart walk right for 12 frames (IoU between frames ~0.8): after the births (frame 1)
    # only refreshes every 5 frames are embedded. Then they cross as in crossing_frames: every frame where
    # their boxes reach each other is embedded in full, and appearance keeps the identities.
    cfg = TrackerConfig(reid_refresh=5)
    apart = [[(100 + 4 * t, EA), (400 + 4 * t, EB)] for t in range(12)]
    rec = Recorder()
    out = run_on_demand(Tracker(cfg), apart, rec)
    # frame 1: births; frame 2: unconfirmed tracks match by IoU (steps 3-5 need the embeddings: the
    # tracks are not confirmed yet, last embedding at frame 2); from frame 3 on the pairs are certain,
    # refreshed when the last embedding is 5 frames old: frames 7 and 12
    assert rec.asked[:2] == [[0, 1], [0, 1]]
    assert rec.asked[2:] == [[], [], [], [], [0, 1], [], [], [], [], [0, 1]]
    assert all(o == {0: 1, 1: 2} for o in out[1:])

    rec = Recorder()
    out = run_on_demand(Tracker(cfg), crossing_frames(), rec)
    assert all(o == {0: 1, 1: 2} for o in out[1:])  # never swapped (IoU alone swaps them)
    a_b_iou = [box_iou([box(a)], [box(b)])[0, 0] for (a, _), (b, _) in crossing_frames()]
    for t in range(2, 21):
        if a_b_iou[t] >= 0.3 or a_b_iou[t - 1] >= 0.3:  # a prediction can reach the other person
            assert sorted(rec.asked[t]) == [0, 1], t


def test_on_demand_mixes_refreshes_and_crowded_candidates_in_one_call():
    # C walks alone (certain, refresh due every 3 frames); A and B stand 10 px apart (never certain).
    # Every call then holds C's refresh first, then A and B; each track's newest embedding must be its own.
    cfg = TrackerConfig(reid_refresh=3)
    tracker, rec = Tracker(cfg), Recorder()
    frames = [[(100, EA), (110, EB), (400 + 4 * t, EC)] for t in range(9)]
    out = run_on_demand(tracker, frames, rec)
    assert all(o == {0: 1, 1: 2, 2: 3} for o in out[1:])
    assert rec.asked[2] == [0, 1] and rec.asked[4] == [2, 0, 1]  # C refreshed at frame 5 (last: frame 2)
    for track_id, code in ((1, EA), (2, EB), (3, EC)):
        np.testing.assert_array_equal(tracker.track(track_id).descriptors[-1], code)


def test_on_demand_never_pairs_a_detection_twice():
    # IoU step reach 0.7, certain_iou 0.5: A-d0 0.9 and B-d1 0.83 are the only pairs in reach; A-d1 (0.6)
    # and B-d0 (0.56) pass certain_iou alone. Each track must end with one detection, each once.
    cfg = TrackerConfig(reid_refresh=5, max_iou_distance=0.3, gating_threshold=1e-9)
    tracker = Tracker(cfg)
    first = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=float)
    for _ in range(3):  # confirm both tracks, standing still
        tracker.update(first, [0.9, 0.9], np.stack([EA, EB]))
    dets = np.array([[0, 0, 10, 9], [0, 0, 10, 6]], dtype=float)
    res = tracker.update(dets, [0.9, 0.9], lambda idx: np.stack([EA, EB])[idx])
    assert sorted(res.det_indices.tolist()) == [0, 1] and sorted(res.track_ids.tolist()) == [1, 2]
    assert [t.hits for t in tracker.tracks] == [4, 4]


def test_on_demand_asks_when_a_lost_track_is_near():
    # B stood beside A (boxes touching, IoU 0) and is lost from frame 4. Its Kalman gate widens while it
    # is lost: by frame 5 A's detection is inside it (squared Mahalanobis 7.7 < 9.49; 15.2 at frame 4),
    # so it could be B coming back and is embedded although IoU alone would pair it with A.
    cfg = TrackerConfig(reid_refresh=100)
    tracker, rec = Tracker(cfg), Recorder()
    run_on_demand(tracker, [[(100, EA), (140, EB)]] * 3 + [[(100, EA)]] * 4, rec)
    assert [t.state for t in tracker.tracks] == ["tracked", "lost"]
    assert rec.asked[3:] == [[], [0], [0], [0]]
    # far from the lost track, the same detection needs no embedding
    tracker, rec = Tracker(cfg), Recorder()
    run_on_demand(tracker, [[(100, EA), (400, EB)]] * 3 + [[(100, EA)]] * 4, rec)
    assert rec.asked[3:] == [[], [], [], []]


def test_on_demand_without_reid_embeds_every_candidate_for_the_banks():
    tracker, rec = Tracker(TrackerConfig(use_reid=False, reid_refresh=5)), Recorder()
    run_on_demand(tracker, [[(100 + 4 * t, EA)] for t in range(6)], rec)
    assert rec.asked == [[0]] * 6 and len(tracker.track(1).descriptors) == 6


def test_on_demand_error_leaves_the_tracker_as_it_was():
    tracker = Tracker(TrackerConfig())
    tracker.update(np.array([box(100)]), [0.9], EA[None])
    mean = tracker.track(1).mean.copy()

    def broken(idx):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        tracker.update(np.array([box(104)]), [0.9], broken)
    assert tracker.frame_id == 1
    np.testing.assert_array_equal(tracker.track(1).mean, mean)
    res = tracker.update(np.array([box(104)]), [0.9], EA[None])  # the retry is frame 2
    assert res.frame_id == 2 and res.track_ids.tolist() == [1]


def test_on_demand_checks_what_embed_returns():
    tracker = Tracker(TrackerConfig())
    with pytest.raises(ValueError, match=r"returned shape \(1, 4\); expected \(2, D\)"):
        tracker.update(np.array([box(100), box(300)]), [0.9, 0.9], lambda idx: np.ones((1, 4)))
    with pytest.raises(ValueError, match="reid_refresh"):
        TrackerConfig(reid_refresh=0)
    with pytest.raises(ValueError, match="certain_iou"):
        TrackerConfig(certain_iou=0.0)


# --------------------------------------------------------------------------------- embedding hook
def _image():
    """A 20x30 RGB image whose pixel (r, c) is (r, c, 7)."""
    rows, cols = np.mgrid[0:20, 0:30]
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def test_crop_boxes_rounds_outward_and_clips():
    crops = crop_boxes(_image(), [[2.5, 3.2, 6.1, 8.0], [-5, -5, 3, 2], [25, 15, 40, 40]])
    assert [c.shape for c in crops] == [(5, 5, 3), (2, 3, 3), (5, 5, 3)]
    assert crops[0][0, 0].tolist() == [3, 2, 7] and crops[0][-1, -1].tolist() == [7, 6, 7]
    assert crops[2][0, 0].tolist() == [15, 25, 7]
    with pytest.raises(ValueError, match=r"boxes_xyxy\[1\].*no pixel inside the 30x20 image"):
        crop_boxes(_image(), [[0, 0, 5, 5], [31, 0, 40, 10]])


def mean_colour_extractor(calls):
    def extractor(crops):
        calls.append(len(crops))
        return torch.tensor(np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]), dtype=torch.float32)
    return extractor


def test_crop_embedder_batches_and_normalises():
    calls = []
    embed = CropEmbedder(mean_colour_extractor(calls))
    boxes = [[0, 0, 10, 10], [20, 10, 30, 20]]
    feats = embed(_image(), boxes)
    assert calls == [2] and feats.dtype == np.float32 and feats.shape == (2, 3)
    expected = np.array([[4.5, 4.5, 7], [14.5, 24.5, 7]])
    np.testing.assert_allclose(feats, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    assert embed(_image(), np.empty((0, 4))).shape == (0, 3)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        embed(_image().astype(np.float32), boxes)
    with pytest.raises(ValueError, match=r"extractor returned shape \(1, 3\) for 2 crops"):
        CropEmbedder(lambda crops: np.ones((1, 3)))(_image(), boxes)


def test_get_features_adapter_takes_bgr():
    rgb = _image()
    boxes = np.array([[0, 0, 10, 10], [20, 10, 30, 20]], dtype=float)
    adapter = ReIDFeatureAdapter(mean_colour_extractor([]))
    feats = adapter.get_features(boxes, np.ascontiguousarray(rgb[..., ::-1]))
    np.testing.assert_allclose(feats, CropEmbedder(mean_colour_extractor([]))(rgb, boxes), rtol=1e-6)
