"""Tests for robustreid.tracking.scene: geometry, walkers, occlusion order, the simulated detector and the
MOTChallenge scenes it writes (street and room)."""

import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image

from robustreid.synthetic import derive_rng, sample_identity
from robustreid.tracking.motio import frame_rows, load_sequence
from robustreid.tracking.scene import (
    SCENE_MANIFEST,
    STREET_ZONE_M,
    DetectorNoise,
    GroundCamera,
    Walker,
    composite,
    room_cameras,
    scene_sequences,
    simulate_detections,
    street_camera,
    write_scene,
)

TINY_STREET = {"mode": "street", "frames": 40, "people": 3, "size": (120, 160), "seed": 3}
TINY_ROOM = {"mode": "room", "cameras": 2, "frames": 200, "people": 3, "size": (144, 256), "seed": 1,
             "validation_frames": 0}


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    out = tmp_path_factory.mktemp("street")
    return out, write_scene(out, **TINY_STREET)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    out = tmp_path_factory.mktemp("room")
    return out, write_scene(out, **TINY_ROOM)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ geometry
def test_project_by_hand():
    cam = GroundCamera(x_m=0.0, z_m=0.0, height_m=2.0, yaw_rad=0.0, pitch_rad=0.0, focal_px=100.0,
                       width_px=200, height_px=100)
    # level camera looking along +z: a point at eye height 10 m ahead and 1 m along +x (to the camera's
    # left, the camera being right-handed) lands 10 px left of the centre
    uv, depth = cam.project([[1.0, 2.0, 10.0], [0.0, 0.0, 10.0]])
    np.testing.assert_allclose(uv, [[90.0, 50.0], [100.0, 70.0]])
    np.testing.assert_allclose(depth, [10.0, 10.0])
    # tilted 45 degrees down: the ground 2 m ahead is on the optical axis, sqrt(8) m away
    down = GroundCamera(0.0, 0.0, 2.0, 0.0, math.pi / 4, 100.0, 200, 100)
    uv, depth = down.project([[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(uv, [[100.0, 50.0]], atol=1e-9)
    np.testing.assert_allclose(depth, [math.sqrt(8.0)])
    # yaw 90 degrees looks along +x
    side = GroundCamera(0.0, 0.0, 2.0, math.pi / 2, 0.0, 100.0, 200, 100)
    uv, depth = side.project([[5.0, 2.0, 0.0]])
    np.testing.assert_allclose(uv, [[100.0, 50.0]], atol=1e-9)
    np.testing.assert_allclose(depth, [5.0])


def test_default_cameras_show_people_80_to_200_px_tall():
    cam = street_camera((360, 640))
    heights = []
    for z, stature in zip(STREET_ZONE_M, (1.9, 1.6)):  # the tallest nearest, the shortest farthest
        (feet, head), _ = cam.project([[0.0, 0.0, z], [0.0, stature, z]])
        assert 0 < feet[1] <= 360
        heights.append(feet[1] - head[1])
    assert 80 <= heights[1] < heights[0] <= 200
    # the room's centre is in view of every corner camera, below the image centre
    for c in room_cameras(4, (360, 640)):
        (uv,), (depth,) = c.project([[3.0, 0.0, 2.5]])
        assert depth > 0 and 0 <= uv[0] <= 640 and 180 < uv[1] < 360
    with pytest.raises(ValueError, match="1 to 4 corner cameras"):
        room_cameras(5)


def test_walker_state_interpolates_and_keeps_heading_while_paused():
    w = Walker(1, sample_identity(derive_rng(0, 1)), 1.7,
               (((0, 0.0, 0.0), (10, 2.0, 0.0), (15, 2.0, 0.0)), ((40, 5.0, 5.0), (50, 5.0, 3.0))))
    x, z, hx, hz, moving, walked = w.state(5)
    assert (x, z, hx, hz, moving, walked) == pytest.approx((1.0, 0.0, 1.0, 0.0, True, 1.0))
    x, z, hx, hz, moving, walked = w.state(12)  # paused: facing the way it came
    assert (x, z, hx, hz, moving, walked) == pytest.approx((2.0, 0.0, 1.0, 0.0, False, 2.0))
    assert w.state(20) is None and w.state(-1) is None  # between visits, before the first
    assert w.state(45)[:4] == pytest.approx((5.0, 4.0, 0.0, -1.0))
    with pytest.raises(ValueError, match="increase strictly"):
        Walker(2, w.identity, 1.7, (((0, 0, 0), (5, 1, 0)), ((5, 1, 0), (9, 2, 0))))
    with pytest.raises(ValueError, match=">= 2 waypoints"):
        Walker(2, w.identity, 1.7, (((0, 0, 0),),))


# ---------------------------------------------------------------------------------------- occlusion
def _block(w, h, rgb):
    return Image.new("RGBA", (w, h), (*rgb, 255))


@pytest.mark.parametrize("nearer_first", [True, False])
def test_composite_nearer_person_wins(nearer_first):
    background = Image.new("RGB", (60, 80), (0, 0, 0))
    far = (_block(20, 40, (255, 0, 0)), (10, 10))  # feet at row 50
    near = (_block(20, 40, (0, 0, 255)), (20, 20))  # feet at row 60: nearer to the camera
    sprites = [near, far] if nearer_first else [far, near]
    frame, owner, visible = composite(background, sprites)
    i_near, i_far = (0, 1) if nearer_first else (1, 0)
    pixels = np.asarray(frame)
    assert tuple(pixels[30, 25]) == (0, 0, 255) and owner[30, 25] == i_near  # the overlap
    assert tuple(pixels[15, 12]) == (255, 0, 0) and owner[15, 12] == i_far
    assert tuple(pixels[5, 5]) == (0, 0, 0) and owner[5, 5] == -1
    # the overlap is 10 x 30 pixels of the far block's 20 x 40
    assert visible[i_far] == pytest.approx(1 - 300 / 800) and visible[i_near] == 1.0


def test_composite_counts_pixels_outside_the_frame_as_hidden():
    half_out = (_block(20, 40, (0, 255, 0)), (-10, 0))
    _, owner, visible = composite(Image.new("RGB", (50, 50)), [half_out])
    assert visible[0] == pytest.approx(0.5) and (owner == 0).sum() == 400


# ------------------------------------------------------------------------------------------ detector
def test_detector_without_noise_returns_the_gt_boxes():
    gt = np.array([[10, 20, 30, 80], [50, 10, 70, 60.0]])
    exact = DetectorNoise(miss_rate=0.0, jitter=0.0, false_positives_per_frame=0.0, score_noise=0.0)
    boxes, scores = simulate_detections(gt, [1.0, 0.6], derive_rng(0, 1), exact, (120, 160))
    np.testing.assert_allclose(boxes, gt)
    np.testing.assert_allclose(scores, [0.95, 0.79])  # 0.55 + 0.4 * visibility
    # below the visibility range nobody is detected; in it, about the ramp's share
    boxes, _ = simulate_detections(gt, [0.1, 0.15], derive_rng(0, 2), exact, (120, 160))
    assert len(boxes) == 0
    hits = sum(len(simulate_detections(gt[:1], [0.35], derive_rng(0, 3, k), exact, (120, 160))[0])
               for k in range(400))
    assert 0.4 < hits / 400 < 0.6  # (0.35 - 0.2) / (0.5 - 0.2) = 0.5


def test_detector_false_positives_and_clipping():
    noise = DetectorNoise(miss_rate=0.0, jitter=0.0, false_positives_per_frame=3.0)
    counts = []
    for k in range(300):
        boxes, scores = simulate_detections(np.empty((0, 4)), [], derive_rng(0, 4, k), noise, (120, 160))
        assert np.all(boxes[:, [0, 2]] >= 0) and np.all(boxes[:, [0, 2]] <= 160)
        assert np.all(boxes[:, [1, 3]] >= 0) and np.all(boxes[:, [1, 3]] <= 120)
        assert np.all((scores >= 0.3) & (scores <= 0.75))
        counts.append(len(boxes))
    assert abs(np.mean(counts) - 3.0) < 0.4
    out_of_frame = np.array([[-20.0, 50, 10, 110]])
    boxes, _ = simulate_detections(out_of_frame, [1.0], derive_rng(0, 5),
                                   DetectorNoise(miss_rate=0.0, jitter=0.0, false_positives_per_frame=0.0),
                                   (100, 160))
    np.testing.assert_allclose(boxes, [[0, 50, 10, 100]])
    with pytest.raises(ValueError, match="visibility_range"):
        DetectorNoise(visibility_range=(0.6, 0.5))


# ------------------------------------------------------------------------------------------ scenes
def test_street_scene_layout_reads_back(street):
    out, manifest = street
    assert manifest["complete"] and [s["path"] for s in manifest["sequences"]] == ["cam1"]
    seq = load_sequence(out / "cam1")
    assert seq.info.seq_length == 40 and (seq.info.im_width, seq.info.im_height) == (160, 120)
    assert seq.info.frame_rate == 10
    assert sorted(p.name for p in (out / "cam1" / "img1").iterdir()) == [f"{t:06d}.jpg" for t in range(1, 41)]
    with Image.open(seq.frame_path(1)) as img:
        assert img.size == (160, 120)
    gt, det = seq.gt, seq.det
    assert set(np.unique(gt[:, 1]).astype(int)) <= {1, 2, 3} and len(gt) > 40
    assert gt[:, 0].min() >= 1 and gt[:, 0].max() <= 40 and det[:, 0].max() <= 40
    assert np.all(gt[:, 7] == 1) and np.all((gt[:, 8] >= 0) & (gt[:, 8] <= 1))
    np.testing.assert_array_equal(gt[:, 6], gt[:, 8] >= 0.25)
    assert np.all(gt[:, 2] >= 0) and np.all(gt[:, 2] + gt[:, 4] <= 160)  # boxes clipped to the frame
    assert np.all(gt[:, 3] >= 0) and np.all(gt[:, 3] + gt[:, 5] <= 120)
    assert manifest["sequences"][0]["gt_rows"] == len(gt) and manifest["sequences"][0]["det_rows"] == len(det)
    assert np.all((det[:, 6] > 0) & (det[:, 6] < 1))
    # a visible person's box is drawn: its pixels differ from the same place in a frame without them
    frames = frame_rows(gt, 40)
    t = next(k for k in range(40) if len(frames[k]) and frames[k][:, 8].max() == 1.0) + 1
    row = frames[t - 1][np.argmax(frames[t - 1][:, 8])]
    empty = next(k + 1 for k in range(40) if not any(_overlaps(row, r) for r in frames[k]))
    x, y, w, h = row[2:6].astype(int)
    with Image.open(seq.frame_path(t)) as a, Image.open(seq.frame_path(empty)) as b:
        diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))[y:y + h, x:x + w]
    assert diff.mean() > 10


def _overlaps(a, b):
    return not (a[2] + a[4] <= b[2] or b[2] + b[4] <= a[2] or a[3] + a[5] <= b[3] or b[3] + b[5] <= a[3])


def test_scene_is_deterministic_and_reused(street, tmp_path):
    out, manifest = street
    again = write_scene(tmp_path / "again", **TINY_STREET)
    assert again["sequences"] == manifest["sequences"]
    for rel in ("cam1/gt/gt.txt", "cam1/det/det.txt", "cam1/seqinfo.ini"):
        assert _digest(out / rel) == _digest(tmp_path / "again" / rel), rel
    for t in (1, 20, 40):
        name = f"cam1/img1/{t:06d}.jpg"
        with Image.open(out / name) as a, Image.open(tmp_path / "again" / name) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a complete output with the same parameters is reused, not rewritten
    stamp = (tmp_path / "again" / "cam1" / "img1" / "000001.jpg").stat().st_mtime_ns
    assert write_scene(tmp_path / "again", **TINY_STREET) == again
    assert (tmp_path / "again" / "cam1" / "img1" / "000001.jpg").stat().st_mtime_ns == stamp
    # other parameters rewrite it (fewer frames: the extra ones are gone)
    other = write_scene(tmp_path / "again", **{**TINY_STREET, "frames": 12, "seed": 4})
    assert other["params"]["frames"] == 12 and len(list((tmp_path / "again/cam1/img1").iterdir())) == 12
    assert load_sequence(tmp_path / "again" / "cam1").info.seq_length == 12
    # another seed gives another scene
    assert _digest(tmp_path / "again/cam1/gt/gt.txt") != _digest(out / "cam1/gt/gt.txt")


def test_write_scene_refuses_foreign_folders_and_bad_params(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("not a scene")
    with pytest.raises(ValueError, match="refusing to write a scene"):
        write_scene(tmp_path / "data", **TINY_STREET)
    assert (tmp_path / "data" / "keep.txt").read_text() == "not a scene"
    with pytest.raises(ValueError, match="mode must be one of"):
        write_scene(tmp_path / "x", mode="mall")
    with pytest.raises(ValueError, match="street scene has one camera"):
        write_scene(tmp_path / "x", mode="street", cameras=2)
    with pytest.raises(ValueError, match="2 to 4 corner cameras"):
        write_scene(tmp_path / "x", mode="room", cameras=5)
    with pytest.raises(ValueError, match="size must be"):
        write_scene(tmp_path / "x", mode="street", size=(10, 10))
    assert not (tmp_path / "x").exists()


def test_room_scene_has_reentries_and_global_ids(room):
    out, manifest = room
    assert [s["path"] for s in manifest["sequences"]] == ["cam1", "cam2"]
    assert [c for c, _ in scene_sequences(out)] == [1, 2]
    seqs = [load_sequence(out / f"cam{c}") for c in (1, 2)]
    assert all(s.info.seq_length == 200 for s in seqs)
    ids = [set(np.unique(s.gt[:, 1]).astype(int)) for s in seqs]
    assert ids[0] == ids[1] and ids[0] <= {1, 2, 3} and len(ids[0]) >= 2  # one person, one id everywhere
    # someone leaves the room and comes back at least 5 s (50 frames) later, seen by neither camera meanwhile
    frames_of = {}
    for s in seqs:
        for t, pid in s.gt[:, :2].astype(int):
            frames_of.setdefault(pid, set()).add(t)
    gaps = {pid: int(np.diff(sorted(ts)).max()) for pid, ts in frames_of.items()}
    assert max(gaps.values()) >= 50, gaps
    # at the same time step the cameras see the same people (their own looks: different pixels)
    t = int(seqs[0].gt[0, 0])
    assert set(seqs[0].gt[seqs[0].gt[:, 0] == t, 1]) == set(seqs[1].gt[seqs[1].gt[:, 0] == t, 1])
    with Image.open(seqs[0].frame_path(t)) as a, Image.open(seqs[1].frame_path(t)) as b:
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() > 10
    assert not (out / "validation").exists()  # validation_frames=0


def test_room_scene_validation_part_has_other_people(tmp_path):
    manifest = write_scene(tmp_path, **{**TINY_ROOM, "frames": 40, "validation_frames": 30})
    parts = {(s["part"], s["path"]) for s in manifest["sequences"]}
    assert parts == {("test", "cam1"), ("test", "cam2"), ("validation", "validation/cam1"),
                     ("validation", "validation/cam2")}
    val = scene_sequences(tmp_path, "validation")
    assert [c for c, _ in val] == [1, 2] and load_sequence(val[0][1]).info.seq_length == 30
    # same cameras (same empty background), other people
    test_gt = load_sequence(tmp_path / "cam1").gt
    val_gt = load_sequence(tmp_path / "validation" / "cam1").gt
    assert not np.array_equal(test_gt[:10, 2:6], val_gt[:10, 2:6])
    # rewritten without a validation part: the old one is removed with the rest of the previous scene
    manifest = write_scene(tmp_path, **{**TINY_ROOM, "frames": 40, "validation_frames": 0})
    assert {s["part"] for s in manifest["sequences"]} == {"test"} and not (tmp_path / "validation").exists()
    assert json.loads((tmp_path / SCENE_MANIFEST).read_text())["complete"]
