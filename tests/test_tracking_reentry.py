"""Tests for robustreid.tracking.reentry: threshold calibration, joint matching, the room tracker."""

import numpy as np
import pytest

from robustreid.tracking.reentry import (
    ReentryConfig,
    ReentryGallery,
    RoomTracker,
    calibrate_threshold,
    consistent_rows,
    match_entries,
)
from robustreid.tracking.tracker import TrackerConfig

EA, EB, EC, ED = np.eye(5)[:4]


def box(cx, cy=200.0, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frame(*dets):
    """dets: (cx, embedding) pairs -> the (boxes, scores, embeddings) input of one camera."""
    boxes = np.array([box(cx) for cx, _ in dets]).reshape(-1, 4)
    return boxes, np.full(len(dets), 0.9), (np.stack([e for _, e in dets]) if dets else None)


# ------------------------------------------------------------------------------------ calibration
def test_calibrate_threshold_by_hand():
    impostor = np.arange(1, 11) / 10  # 0.1 .. 1.0
    genuine = [0.05, 0.15, 0.25]
    cal = calibrate_threshold(genuine, impostor, far=0.1)  # one impostor of ten may pass: 0.1
    assert 0.1 <= cal.threshold < 0.2
    assert cal.far == pytest.approx(0.1) and cal.tar == pytest.approx(2 / 3)
    cal = calibrate_threshold(genuine, impostor, far=0.0)  # no impostor may pass
    assert 0.05 <= cal.threshold < 0.1 and cal.far == 0 and cal.tar == pytest.approx(1 / 3)
    # ties: the second-closest impostor equals the closest, so accepting "one" would accept two
    cal = calibrate_threshold(genuine, [0.2, 0.2] + [0.9] * 8, far=0.1)
    assert cal.threshold < 0.2 and cal.far == 0
    with pytest.raises(ValueError, match="far must be in"):
        calibrate_threshold(genuine, impostor, far=1.0)
    with pytest.raises(ValueError, match="impostor_distances"):
        calibrate_threshold(genuine, [])


# -------------------------------------------------------------------------------- joint matching
def test_simultaneous_entries_are_matched_jointly():
    # Gallery: A = e1, B = (0.8, 0.6). Queries with cosines q1: A 0.90, B 0.88; q2: A 0.89, B 0.50,
    # i.e. distances q1: (0.10, 0.12), q2: (0.11, 0.50). Greedy gives q1 -> A and leaves q2 without a
    # match within 0.2; the joint assignment gives q1 -> B, q2 -> A (both within 0.2).
    a = np.array([1.0, 0, 0, 0])
    b = np.array([0.8, 0.6, 0, 0])
    y1 = (0.88 - 0.8 * 0.90) / 0.6
    q1 = np.array([0.90, y1, np.sqrt(1 - 0.90**2 - y1**2), 0])
    y2 = (0.50 - 0.8 * 0.89) / 0.6
    q2 = np.array([0.89, y2, 0, np.sqrt(1 - 0.89**2 - y2**2)])
    banks = [a[None], b[None]]
    assigned, dist = match_entries(np.stack([q1, q2]), banks, max_distance=0.2)
    assert assigned.tolist() == [1, 0]
    np.testing.assert_allclose(dist, [0.12, 0.11], atol=1e-12)
    # at 0.115 only A is admissible, for both: the cheaper pair q1 -> A wins and q2 stays unmatched,
    # its distance then being that of its nearest candidate
    assigned, dist = match_entries(np.stack([q1, q2]), banks, max_distance=0.115)
    assert assigned.tolist() == [0, -1]
    np.testing.assert_allclose(dist, [0.10, 0.11], atol=1e-12)
    # excluded pairs are never assigned
    allowed = np.array([[True, False], [False, True]])
    assigned, _ = match_entries(np.stack([q1, q2]), banks, max_distance=0.2, allowed=allowed)
    assert assigned.tolist() == [0, -1]
    # nearest of several stored embeddings counts
    assigned, dist = match_entries(q2[None], [np.stack([b, a])], max_distance=0.2)
    assert assigned.tolist() == [0] and dist[0] == pytest.approx(0.11)


def test_gallery_assigns_and_opens_identities():
    gallery = ReentryGallery(max_descriptors=3)
    a = gallery.new_identity(np.tile(EA, (2, 1)))
    b = gallery.new_identity(np.tile(EB, (2, 1)))
    out = gallery.assign([np.stack([EA, EA + 0.1 * EC]), np.tile(EC, (3, 1))], excluded=[], max_distance=0.2)
    assert out[0][:2] == (a, False) and out[1][:2] == (3, True)
    assert gallery.bank(a).shape == (3, 5)  # 2 + 2 embeddings, the latest 3 kept
    # an identity still inside is not a candidate, even when it looks right
    out = gallery.assign([np.tile(EB, (2, 1))], excluded=[b], max_distance=0.2)
    assert out[0][:2] == (4, True)
    with pytest.raises(ValueError, match="has no embeddings"):
        gallery.assign([np.empty((0, 0))], excluded=[], max_distance=0.2)


def test_gallery_forgets_the_identity_updated_longest_ago():
    gallery = ReentryGallery(max_descriptors=2, max_identities=2)
    a = gallery.new_identity(np.tile(EA, (1, 1)))
    b = gallery.new_identity(np.tile(EB, (1, 1)))
    gallery.add(a, np.tile(EA, (1, 1)))  # a is now the more recently updated
    c = gallery.new_identity(np.tile(EC, (1, 1)))  # a third: b goes
    assert gallery.identities == (a, c) and c == 3
    # b, seen again, no longer matches anything: it opens a new number (never reused)
    out = gallery.assign([np.tile(EB, (2, 1))], excluded=[], max_distance=0.2)
    assert out[0][:2] == (4, True) and gallery.identities == (c, 4)
    with pytest.raises(ValueError, match="max_identities must be an integer >= 1"):
        ReentryConfig(max_distance=0.3, max_identities=0)


# ------------------------------------------------------------------------------------ room tracker
def test_room_reentry_matches_the_right_identity_and_opens_a_new_one():
    cfg = TrackerConfig(max_frames_lost=3)
    room = RoomTracker([0], cfg, ReentryConfig(max_distance=0.2, entry_descriptors=3))
    noisy_a = (EA + 0.05 * ED) / np.linalg.norm(EA + 0.05 * ED)
    steps = [frame((100, EA), (400, EB)) for _ in range(10)]  # A and B inside
    steps += [frame((400, EB)) for _ in range(10)]  # A leaves (its track ends at step 14)
    steps += [frame((250, noisy_a), (400, EB), (600, EC)) for _ in range(5)]  # A returns; C is new
    for inputs in steps:
        room.step({0: inputs})
    room.finish()
    summary = [(d.step, d.track_id, d.identity, d.is_new) for d in room.decisions]
    # entries are decided on the 3rd embedding: A (track 1) and B (track 2) at step 3 open 1 and 2;
    # at step 23 the returning A (track 3) gets identity 1 back and C (track 4) opens identity 3.
    assert summary == [(3, 1, 1, True), (3, 2, 2, True), (23, 3, 1, False), (23, 4, 3, True)]
    assert room.decisions[2].distance == pytest.approx(1 - 1 / np.linalg.norm([1, 0.05]))
    rows = room.results(0)
    by_x = {round(x + 20): set(rows[rows[:, 2] == x, 1].astype(int)) for x in np.unique(rows[:, 2])}
    assert by_x == {100: {1}, 250: {1}, 400: {2}, 600: {3}}


def test_an_entry_never_takes_an_identity_whose_track_shared_its_frames():
    # A lookalike of A (same embedding) enters at step 8 while A is still in view; A leaves after step 10
    # (its track ends at step 14) and the lookalike's entry is decided on its 8th embedding, at step 15.
    # A's identity is no longer alive then, but giving it to the lookalike would put identity 1 twice in
    # frames 8-10: it opens a new identity instead.
    room = RoomTracker([0], TrackerConfig(max_frames_lost=3),
                       ReentryConfig(max_distance=0.2, entry_descriptors=8))
    steps = [frame((100, EA)) for _ in range(7)]
    steps += [frame((100, EA), (400, EA)) for _ in range(3)]
    steps += [frame((400, EA)) for _ in range(10)]
    for inputs in steps:
        room.step({0: inputs})
    room.finish()
    assert [(d.track_id, d.identity, d.is_new) for d in room.decisions] == [(1, 1, True), (2, 2, True)]
    rows = room.results(0)
    for f in np.unique(rows[:, 0]):
        ids = rows[rows[:, 0] == f, 1]
        assert len(ids) == len(set(ids)), f"frame {f}: identities {ids}"


def test_entry_query_is_the_mean_of_the_first_embeddings():
    # The entering track's first 3 embeddings are A, A, B: their mean direction (2, 1) / sqrt(5) is at
    # cosine distance 1 - 2 / sqrt(5) = 0.106 from A (accepted at 0.15), whereas the last one alone, or
    # the later ones, are at distance 1 (rejected).
    gallery = ReentryGallery()
    a = gallery.new_identity(EA[None])
    first = np.stack([EA, EA, EB])  # mean direction (2, 1) / sqrt(5): cos to A 0.894, to B 0.447
    later = np.tile(EB, (5, 1))
    out = gallery.assign([first], excluded=[], max_distance=0.15)
    assert out[0][0] == a and out[0][2] == pytest.approx(1 - 2 / np.sqrt(5))
    room = RoomTracker([0], TrackerConfig(), ReentryConfig(max_distance=0.15, entry_descriptors=3))
    room.gallery.new_identity(EA[None])  # someone who left before the sequence started
    for e in list(first) + list(later):
        room.step({0: frame((100, e / np.linalg.norm(e)))})
    assert [(d.identity, d.is_new) for d in room.decisions] == [(1, False)]


def test_consistent_rows_keeps_what_is_near_the_held_bank_by_hand():
    # held: A. Rows: A (distance 0), (A + B) / sqrt(2) (1 - 1/sqrt(2) = 0.293), B (1), -A (2)
    rows = np.stack([EA, (EA + EB) / np.sqrt(2), EB, -EA])
    assert np.array_equal(consistent_rows(rows, EA[None], 0.3), rows[:2])
    assert np.array_equal(consistent_rows(rows, EA[None], 0.29), rows[:1])
    assert np.array_equal(consistent_rows(rows, np.stack([EA, EB]), 0.0), rows[[0, 2]])  # nearest of the bank
    assert np.array_equal(consistent_rows(rows * 3.0, EA[None] * 0.5, 0.3), rows[:2] * 3.0)  # scale-free
    assert np.array_equal(consistent_rows(rows, np.empty((0, 0)), 0.1), rows)  # nothing held: all join


def test_room_bank_distance_keeps_a_switched_tracks_other_person_out_of_the_bank():
    # A enters (entry: 3 embeddings of A), then the track switches to B for 4 frames and ends. Without
    # bank_distance the identity's bank gets B's embeddings; with it (0.1) it keeps A's only.
    def run(bank_distance):
        room = RoomTracker([0], TrackerConfig(max_frames_lost=2),
                           ReentryConfig(max_distance=0.2, entry_descriptors=3, bank_distance=bank_distance))
        for e in [EA] * 5 + [EB] * 4:
            room.step({0: frame((100, e))})
        for _ in range(4):
            room.step({0: frame()})
        return room.gallery.bank(1)

    without, with_ = run(None), run(0.1)
    assert len(without) == 3 + 9 and (without @ EB > 0.99).sum() == 4  # the entry's 3 + the track's 9
    assert len(with_) == 3 + 5 and not (with_ @ EB > 0.99).any()
    with pytest.raises(ValueError, match="bank_distance"):
        ReentryConfig(max_distance=0.2, bank_distance=3.0)


def test_room_identities_are_global_across_cameras():
    room = RoomTracker([1, 2], TrackerConfig(), ReentryConfig(max_distance=0.2, entry_descriptors=2))
    for t in range(6):
        cam2 = frame((300, EA), (500, EB)) if t >= 3 else frame((500, EB))
        room.step({1: frame((100, EA)), 2: cam2})
    room.finish()
    # A inside camera 1 can appear in camera 2 under the same identity; B is new
    assert room.identity_of(1, 1) == 1 and room.identity_of(2, 1) == 2 and room.identity_of(2, 2) == 1
    assert set(room.results(2)[:, 1].astype(int)) == {1, 2}


def test_room_without_reid_opens_an_identity_per_track_and_checks_inputs():
    room = RoomTracker([0], TrackerConfig(use_reid=False, max_frames_lost=1))
    for inputs in [frame((100, EA))] * 3 + [frame()] * 3 + [frame((100, EA))] * 3:
        room.step({0: inputs})
    assert [(d.identity, d.is_new) for d in room.decisions] == [(1, True), (2, True)]
    with pytest.raises(ValueError, match=r"expected cameras \[0\]"):
        room.step({1: frame()})
    pending = RoomTracker([0], TrackerConfig(), ReentryConfig(max_distance=0.2, entry_descriptors=5))
    for _ in range(3):
        pending.step({0: frame((100, EA))})
    with pytest.raises(RuntimeError, match="call finish"):
        pending.results(0)
    assert pending.results(0, track_ids=True)[:, 1].tolist() == [1, 1]
    assert [d.identity for d in pending.finish()] == [1]
    assert pending.results(0)[:, 1].tolist() == [1, 1]
    with pytest.raises(ValueError, match="max_distance"):
        ReentryConfig(max_distance=-0.1)
    boxes, scores, _ = frame((100, EA))
    with pytest.raises(ValueError, match="camera 0: a re-entry gallery needs the detections' embeddings"):
        blind = RoomTracker([0], TrackerConfig(use_reid=False), ReentryConfig(max_distance=0.2))
        blind.step({0: (boxes, scores, None)})


def test_room_entry_whose_crops_all_overlapped_opens_a_new_identity():
    """With occluded_iou, two people side by side (IoU 0.6) for their whole stay keep empty banks: their
    entries, decided when the tracks end, open new identities; a later entry with embeddings is matched."""
    config = TrackerConfig(max_frames_lost=1, occluded_iou=0.3)
    room = RoomTracker([0], config, ReentryConfig(max_distance=0.2, entry_descriptors=2))
    for inputs in [frame((100, EA), (110, EB))] * 4 + [frame()] * 3 + [frame((300, EA))] * 4:
        room.step({0: inputs})
    room.finish()
    first, second, third = room.decisions
    assert (first.is_new, second.is_new, first.distance, second.distance) == (True, True, np.inf, np.inf)
    assert {first.identity, second.identity} == {1, 2} and third.is_new and third.identity == 3
    assert all(room.gallery.bank(i).size == 0 for i in (1, 2)) and room.gallery.bank(3).shape == (2, 5)


def test_margin_leaves_a_query_between_two_identities_unassigned():
    """q lies at cosine 0.90 of A and 0.88 of B (distances 0.10, 0.12): a margin of 0.05 cannot tell them
    apart, one of 0.01 can; a single candidate has no rival, so the margin never blocks it."""
    a, b = np.array([1.0, 0, 0, 0]), np.array([0.8, 0.6, 0, 0])
    y = (0.88 - 0.8 * 0.90) / 0.6
    q = np.array([[0.90, y, np.sqrt(1 - 0.90**2 - y**2), 0]])
    banks = [a[None], b[None]]
    assigned, dist = match_entries(q, banks, max_distance=0.2, margin=0.05)
    assert assigned.tolist() == [-1] and dist[0] == pytest.approx(0.10)  # its nearest, as when rejected
    assigned, dist = match_entries(q, banks, max_distance=0.2, margin=0.01)
    assert assigned.tolist() == [0] and dist[0] == pytest.approx(0.10)
    assert match_entries(q, banks[:1], max_distance=0.2, margin=0.5)[0].tolist() == [0]
    # the rival must be a candidate: an excluded B does not block A
    assigned, _ = match_entries(q, banks, max_distance=0.2, allowed=[[True, False]], margin=0.05)
    assert assigned.tolist() == [0]
    with np.errstate(invalid="raise"):  # a query with no allowed candidate at all: unassigned, no inf - inf
        assigned, dist = match_entries(q, banks, max_distance=0.2, allowed=[[False, False]], margin=0.05)
    assert assigned.tolist() == [-1] and dist[0] == np.inf
    for bad in (-0.1, None, "0.1"):
        with pytest.raises(ValueError, match="margin is a cosine distance"):
            ReentryConfig(max_distance=0.3, margin=bad)


def test_gallery_keep_false_matches_without_banking():
    gallery = ReentryGallery(max_descriptors=10)
    a = gallery.new_identity(np.tile(EA, (2, 1)))
    out = gallery.assign([np.tile(EA, (3, 1)), np.tile(EC, (3, 1))], excluded=[], max_distance=0.2,
                         keep=[False, False])
    assert out[0][:2] == (a, False) and out[1][:2] == (2, True)
    assert gallery.bank(a).shape == (2, 5) and gallery.bank(2).size == 0  # nothing joined, nothing opened
    with pytest.raises(ValueError, match="one bool per query"):
        gallery.assign([np.tile(EA, (1, 1))], excluded=[], max_distance=0.2, keep=[True, True])


@pytest.mark.parametrize("occluded_queries", [False, True])
def test_room_entry_whose_crops_all_overlapped_may_query_with_them(occluded_queries):
    """A is seen alone, leaves, then comes back side by side with B (IoU 0.6) for their whole stay. With
    ``occluded_queries`` A's overlapped crops find A's identity (and stay out of its bank) and B's open a new
    identity with an empty bank; without it both open new identities."""
    config = TrackerConfig(max_frames_lost=1, occluded_iou=0.3)
    reentry = ReentryConfig(max_distance=0.2, entry_descriptors=2, occluded_queries=occluded_queries)
    room = RoomTracker([0], config, reentry)
    frames = [frame((300, EA))] * 4 + [frame()] * 3 + [frame((100, EA), (110, EB))] * 4 + [frame()] * 3
    for inputs in frames:
        room.step({0: inputs})
    room.finish()
    first, *back = room.decisions
    assert first.identity == 1 and first.is_new and len(back) == 2
    by_identity = {d.identity: d for d in back}
    if occluded_queries:
        assert 1 in by_identity and not by_identity[1].is_new and by_identity[1].distance == pytest.approx(0)
        assert [d.is_new for d in back].count(True) == 1
    else:
        assert all(d.is_new and d.distance == np.inf for d in back)
    # A's clean crops only (its entry's 2, then its ended track's 4): the overlapped ones never joined
    np.testing.assert_array_equal(room.gallery.bank(1), np.tile(EA, (6, 1)))
    assert all(room.gallery.bank(d.identity).size == 0 for d in back if d.is_new)
