"""Tests for robustreid.tracking.run: tracking a sequence and a room, their evaluation, the comparison table.

The ReID model is replaced by an oracle that embeds each detection as the one-hot code of the gt person
its box covers (IoU >= 0.5; anything else gets the code of "nobody"): a perfect ReID model, so the
tests can tell what appearance adds to motion.
"""

import json
import time

import numpy as np
import pytest

from robustreid.synthetic import derive_rng, sample_camera, sample_identity
from robustreid.tracking.motio import load_sequence, read_results, write_results, xywh_to_xyxy
from robustreid.tracking.reentry import ReentryConfig
from robustreid.tracking.run import (
    ROOM_IOU_VETO_DISTANCE,
    ROOM_OCCLUDED_IOU,
    _frame_inputs,
    calibrate_reentry,
    compare_models,
    evaluate_room,
    evaluate_tracking,
    format_table,
    track_room,
    track_sequence,
)
from robustreid.tracking.scene import Walker, street_camera, write_scene, write_sequence
from robustreid.tracking.tracker import Tracker, TrackerConfig, box_iou

DIM = 16


def oracle(seq, frame, image, boxes):
    """embed_fn: the one-hot code of the gt person each box covers (code 0: nobody)."""
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    gt = seq.gt[(seq.gt[:, 0] == frame) & (seq.gt[:, 6] != 0)]
    feats = np.zeros((len(boxes), DIM))
    feats[:, 0] = 1.0
    if len(gt):
        iou = box_iou(boxes, xywh_to_xyxy(gt[:, 2:6]))
        for i, j in enumerate(iou.argmax(axis=1)):
            if iou[i, j] >= 0.5:
                feats[i] = np.eye(DIM)[int(gt[j, 1])]
    return feats


def mean_colour(crops):
    """A crop extractor: mean RGB of the upper and lower halves (a weak but real appearance model)."""
    out = []
    for c in crops:
        h = max(c.shape[0] // 2, 1)
        lower = c[h:] if c.shape[0] > 1 else c
        out.append(np.concatenate([c[:h].reshape(-1, 3).mean(0), lower.reshape(-1, 3).mean(0)]) + 1.0)
    return np.array(out)


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """Two people walk towards each other at nearly the same depth, meet (the farther one partly hidden),
    stand, and each goes back the way they came; a third crosses behind them. Motion alone predicts
    that they keep going, so it swaps their identities; appearance does not."""
    out = tmp_path_factory.mktemp("crossing")

    def person(k):
        return sample_identity(derive_rng(7, k))

    walkers = [
        Walker(1, person(1), 1.75, (((0, -2.2, 6.0), (14, -0.15, 6.0), (22, -0.15, 6.0), (40, -2.6, 6.2)),)),
        Walker(2, person(2), 1.75, (((0, 2.2, 6.5), (14, 0.15, 6.5), (22, 0.15, 6.5), (40, 2.6, 6.3)),)),
        Walker(3, person(3), 1.7, (((0, 4.0, 9.5), (40, -4.0, 9.0)),)),
    ]
    look = sample_camera(derive_rng(0, 3))
    write_sequence(out, walkers, street_camera((120, 160)), look, frames=40, seed=0)
    return out


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    out = tmp_path_factory.mktemp("room")
    write_scene(out, mode="room", cameras=2, frames=200, people=3, size=(144, 256), seed=1,
                validation_frames=120)
    return out


# ------------------------------------------------------------------------------------------ evaluation
def test_gt_as_results_scores_perfectly(crossing, tmp_path):
    gt = np.loadtxt(crossing / "gt" / "gt.txt", delimiter=",")
    active = gt[gt[:, 6] != 0]
    m = evaluate_tracking(gt, active[:, :7], 40)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["idsw"] == 0 and m["hota"] > 0.99
    write_results(tmp_path / "res.txt", active[:, :7])  # the same through files
    m = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "res.txt", 40)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0
    # swapping two people's ids half-way costs identity, not detection
    swapped = active[:, :7].copy()
    late = swapped[:, 0] > 20
    swapped[late & (active[:, 1] == 1), 1], swapped[late & (active[:, 1] == 2), 1] = 2, 1
    m = evaluate_tracking(gt, swapped, 40)
    assert m["idsw"] == 2 and m["idf1"] < 0.9 and m["mota"] < 1.0


# ---------------------------------------------------------------------------------------- one sequence
def test_reid_oracle_beats_motion_only_at_a_meeting(crossing, tmp_path):
    motion = track_sequence(crossing, tmp_path / "motion.txt")
    reid = track_sequence(crossing, tmp_path / "oracle.txt", embed_fn=oracle)
    assert not motion["reid"] and reid["reid"] and motion["frames"] == reid["frames"] == 40
    m_motion = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "motion.txt", 40)
    m_reid = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "oracle.txt", 40)
    assert m_motion["idsw"] >= 2 and m_reid["idsw"] == 0
    assert m_reid["idf1"] > 0.9 and m_reid["idf1"] > m_motion["idf1"] + 0.15
    results = read_results(tmp_path / "oracle.txt")
    assert reid["tracks"] == len(np.unique(results[:, 1])) and results[:, 0].max() <= 40


def test_embed_seconds_is_the_time_inside_the_reid_hook(crossing, tmp_path):
    calls = []

    def slow_oracle(seq, frame, image, boxes):
        calls.append(frame)
        time.sleep(0.01)
        return oracle(seq, frame, image, boxes)

    motion = track_sequence(crossing, tmp_path / "motion.txt")
    reid = track_sequence(crossing, tmp_path / "oracle.txt", embed_fn=slow_oracle)
    assert motion["embed_seconds"] == 0.0
    assert 0.01 * len(calls) <= reid["embed_seconds"] <= reid["seconds"] and len(calls) > 20


def test_embedding_on_demand_embeds_fewer_crops_and_keeps_the_identities(crossing, tmp_path):
    frames_embedded = []

    def counting_oracle(seq, frame, image, boxes):
        frames_embedded.append(frame)
        return oracle(seq, frame, image, boxes)

    every = track_sequence(crossing, tmp_path / "every.txt", embed_fn=oracle)
    lazy = track_sequence(crossing, tmp_path / "lazy.txt", embed_fn=counting_oracle,
                          config=TrackerConfig(reid_refresh=10))
    det = np.loadtxt(crossing / "det" / "det.txt", delimiter=",")
    assert every["embedded"] == int((det[:, 6] >= TrackerConfig().min_det_score).sum())  # every candidate
    assert 0 < lazy["embedded"] < every["embedded"] / 2
    assert len(frames_embedded) == len(set(frames_embedded)) < 40  # one call per frame at most, not every frame
    m_every = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "every.txt", 40)
    m_lazy = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "lazy.txt", 40)
    assert m_lazy["idsw"] == m_every["idsw"] == 0 and m_lazy["idf1"] > 0.9
    # at refresh 1, the on-demand path is the array path the room tracker and the calibration use
    tracker, rows = Tracker(TrackerConfig()), []
    for boxes, scores, feats in _frame_inputs(load_sequence(crossing), oracle):
        rows.append(tracker.update(boxes, scores, feats).mot_rows())
    np.testing.assert_allclose(read_results(tmp_path / "every.txt"), np.concatenate(rows)[:, :7], atol=0.01)


def test_track_sequence_with_a_crop_extractor_and_progress(crossing, tmp_path):
    calls = []
    info = track_sequence(crossing, tmp_path / "colour.txt", mean_colour,
                          progress=lambda d, t: calls.append((d, t)))
    assert info["reid"] and calls[0] == (1, 40) and calls[-1] == (40, 40) and info["frames"] == 40
    # frames per second of the whole run, from the unrounded time: "seconds" is rounded to the millisecond, which
    # on a fast machine (a 26 ms run) is more than 1 % of it
    low, high = 40 / (info["seconds"] + 5e-4), 40 / max(info["seconds"] - 5e-4, 1e-9)
    assert low * 0.999 <= info["fps"] <= high * 1.001
    assert len(read_results(tmp_path / "colour.txt")) > 0


def test_motion_only_reads_no_image_and_reid_needs_a_model(crossing, tmp_path):
    copy = tmp_path / "noimg"
    for rel in ("seqinfo.ini", "det/det.txt", "gt/gt.txt"):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((crossing / rel).read_bytes())
    track_sequence(copy, tmp_path / "a.txt")  # no img1/ at all
    with pytest.raises(FileNotFoundError, match="000001.jpg"):
        track_sequence(copy, tmp_path / "b.txt", embed_fn=oracle)
    with pytest.raises(ValueError, match="use_reid is True but no extractor"):
        track_sequence(crossing, tmp_path / "c.txt", config=TrackerConfig(use_reid=True))
    with pytest.raises(ValueError, match="either extractor or embed_fn"):
        track_sequence(crossing, tmp_path / "d.txt", mean_colour, embed_fn=oracle)
    with pytest.raises(FileNotFoundError, match="no such sequence folder"):
        track_sequence(tmp_path / "missing", tmp_path / "e.txt")


def _copy_sequence(src, dst):
    for f in src.rglob("*"):
        if f.is_file():
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / f.relative_to(src)).write_bytes(f.read_bytes())
    return dst


def test_bad_tracking_inputs_name_the_file(crossing, tmp_path):
    # a truncated frame: one line naming the frame, and no results file written
    cut = _copy_sequence(crossing, tmp_path / "cut")
    frame = cut / "img1" / "000003.jpg"
    frame.write_bytes(frame.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"000003.jpg: frame 3 is not a readable image"):
        track_sequence(cut, tmp_path / "cut.txt", mean_colour)
    assert not (tmp_path / "cut.txt").exists()
    # '%' in a seqinfo value is a plain character; non-UTF-8 seqinfo and det files are named
    pct = _copy_sequence(crossing, tmp_path / "pct")
    ini = pct / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("name=", "name=100%"))
    assert track_sequence(pct, tmp_path / "pct.txt")["frames"] == 40
    ini.write_bytes(ini.read_bytes().replace(b"100%", b"caf\xe9"))
    with pytest.raises(ValueError, match=r"seqinfo.ini: not UTF-8 text"):
        track_sequence(pct, tmp_path / "pct2.txt")
    det = _copy_sequence(crossing, tmp_path / "det") / "det" / "det.txt"
    det.write_bytes(b"\xff\xfe" + det.read_bytes())
    with pytest.raises(ValueError, match=r"det.txt: not UTF-8 text"):
        track_sequence(det.parent.parent, tmp_path / "det.txt")


def test_boxes_outside_the_frame_without_image_size_are_dropped(crossing, tmp_path):
    seq = _copy_sequence(crossing, tmp_path / "nosize")
    ini = seq / "seqinfo.ini"
    ini.write_text("\n".join(line for line in ini.read_text().splitlines() if not line.startswith("im")))
    det = seq / "det" / "det.txt"
    det.write_text(det.read_text() + "5,-1,5000,5000,40,80,0.9,-1,-1,-1\n")  # far outside a 160x120 frame
    seen = []

    def extractor(crops):
        seen.extend(c.shape for c in crops)
        return mean_colour(crops)

    track_sequence(seq, tmp_path / "r.txt", extractor)
    assert seen and all(h > 0 and w > 0 for h, w, _ in seen)


# ------------------------------------------------------------------------------------------ room
def test_calibration_on_the_validation_part(room):
    cal = calibrate_reentry(room / "validation", embed_fn=oracle, far=0.05)
    # the oracle's genuine distances are 0 and its impostor distances 1: any threshold in between works
    assert cal["genuine"] > 0 and cal["impostor"] > 0 and cal["entries"] > 0
    assert 0.0 < cal["threshold"] < 1.0 + 1e-9 and cal["tar"] == 1.0 and cal["far"] == 0.0
    with pytest.raises(ValueError, match="needs a ReID model"):
        calibrate_reentry(room / "validation")


def test_calibration_keeps_a_bounded_part_of_each_track(room):
    # only a track's entry (first entry_descriptors) and its last max_descriptors embeddings are ever compared,
    # so only those are kept, however long the validation run
    from robustreid.tracking.motio import load_sequence
    from robustreid.tracking.run import _Counter, _labelled_tracks
    from robustreid.tracking.scene import scene_sequences
    from robustreid.tracking.tracker import TrackerConfig

    (_, path), *_ = scene_sequences(room / "validation")
    seq = load_sequence(path)
    tracks = _labelled_tracks(seq, 0, oracle, TrackerConfig(use_reid=True), 3, 4, _Counter(seq.info.seq_length, None))
    long_tracks = [t for t in tracks if t.tail and t.tail[-1][0] - t.head[0][0] >= 10]
    assert long_tracks  # the check below is about tracks longer than the bound
    for t in tracks:
        assert 1 <= len(t.head) <= 3 and 1 <= len(t.tail) <= 4
        frames = [f for f, _, _ in t.tail]
        assert frames == sorted(frames) and t.head[0][0] <= frames[0]
        assert all(abs(np.linalg.norm(e) - 1.0) < 1e-9 for _, _, e in t.head + list(t.tail))


def test_track_room_oracle_vs_no_reid(room, tmp_path):
    none = track_room(room, tmp_path / "none")
    reid = track_room(room, tmp_path / "oracle", embed_fn=oracle)
    assert none["calibration"] is None and reid["calibration"]["genuine"] > 0
    assert none["cameras"] == reid["cameras"] == [1, 2] and reid["camera_frames"] == 400
    for name in ("cam1.txt", "cam2.txt", "cam1.tracks.txt", "cam2.tracks.txt", "reentry.json"):
        assert (tmp_path / "oracle" / name).is_file()
    doc = json.loads((tmp_path / "oracle" / "reentry.json").read_text())
    assert doc["reentry"]["max_distance"] == pytest.approx(reid["calibration"]["threshold"])
    assert doc["tracker"]["occluded_iou"] == ROOM_OCCLUDED_IOU and doc["tracker"]["use_reid"]  # the room's
    assert doc["tracker"]["iou_veto_distance"] == ROOM_IOU_VETO_DISTANCE
    assert len(doc["decisions"]) == reid["decisions"]

    ev_none, ev_reid = evaluate_room(room, tmp_path / "none"), evaluate_room(room, tmp_path / "oracle")
    # without ReID every entry opens an identity: each return is missed, nothing is matched
    assert ev_none["reentry"]["missed_return"] >= 2 and ev_none["reentry"]["correct_match"] == 0
    # with the oracle, people keep their identity across cameras and visits
    assert ev_reid["reentry"]["correct_match"] >= 2
    assert ev_reid["reentry"]["wrong_match"] + ev_reid["reentry"]["false_match"] <= 1
    assert reid["identities"] < none["identities"]
    assert ev_reid["overall"]["idf1"] > ev_none["overall"]["idf1"] + 0.2
    assert set(ev_reid["cameras"]) == {1, 2}
    # per camera, the global ids are the camera's tracks relabelled: same boxes, same detection metrics
    for c in (1, 2):
        a = read_results(tmp_path / "oracle" / f"cam{c}.txt")
        b = read_results(tmp_path / "oracle" / f"cam{c}.tracks.txt")
        boxes = [0, 2, 3, 4, 5]
        np.testing.assert_array_equal(np.sort(a[:, boxes], axis=0), np.sort(b[:, boxes], axis=0))


def test_track_room_with_a_given_threshold_and_missing_validation(room, tmp_path):
    info = track_room(room, tmp_path / "fixed", embed_fn=oracle, reentry=ReentryConfig(max_distance=0.5))
    assert info["calibration"] is None
    with pytest.raises(FileNotFoundError, match="no validation part"):
        track_room(room, tmp_path / "x", embed_fn=oracle, validation_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs embeddings"):
        track_room(room, tmp_path / "y", reentry=ReentryConfig(max_distance=0.5))


# ------------------------------------------------------------------------------------------ table
def test_compare_models_and_table(crossing, room, tmp_path):
    rows = compare_models(crossing, {"No ReID": None, "mean colour": mean_colour}, out_dir=tmp_path / "seq")
    assert [r["model"] for r in rows] == ["No ReID", "mean colour"]
    assert [r["reid"] for r in rows] == [False, True]
    direct = evaluate_tracking(crossing / "gt" / "gt.txt", tmp_path / "seq" / "No_ReID" / "cam1.txt", 40)
    assert rows[0]["idf1"] == direct["idf1"] and rows[0]["mota"] == direct["mota"]
    assert rows[0]["correct_match"] is None and rows[0]["frames"] == 40
    table = format_table(rows)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| Model | MOTA | IDF1 | HOTA | IDSW |") and "Re-entry" not in lines[0]
    assert len(lines) == 4 and lines[2].startswith(f"| No ReID | {100 * rows[0]['mota']:.1f} | "
                                                   f"{100 * rows[0]['idf1']:.1f} |")

    rows = compare_models(room, {"No ReID": None, "oracle?": mean_colour})
    assert rows[1]["threshold"] is not None and set(rows[1]["cameras"]) == {1, 2}
    assert rows[0]["missed_return"] >= 2
    table = format_table(rows)
    assert "Re-entry: correct / wrong / missed / false / new" in table
    r = rows[0]
    assert (f"| {r['correct_match']} / {r['wrong_match']} / {r['missed_return']} / {r['false_match']} / "
            f"{r['correct_new']} |") in table
    with pytest.raises(ValueError, match="at least one entry"):
        compare_models(room, {})
