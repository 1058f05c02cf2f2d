"""Tracked frames as pictures: each box drawn in its track's colour on a hand-made frame, the frames picked, the
grid laid out, and a hand-made MOTChallenge sequence drawn from its results file."""

import numpy as np
import pytest
from PIL import Image

from robustreid.tracking.frames import draw_tracks, pick_frames, scene_strip, tile, track_color, tracked_frames
from robustreid.tracking.motio import SeqInfo, write_results, write_seqinfo

GREY = (90, 90, 90)


def grey_frame(height=60, width=80):
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def test_track_colors_are_fixed_per_id_and_far_apart_for_neighbours():
    assert track_color(7) == track_color(7) and all(0 <= c <= 255 for c in track_color(7))
    colors = [np.array(track_color(i)) for i in range(1, 21)]
    # consecutive ids (the tracker numbers new tracks one after the other) never look alike
    assert min(np.abs(a - b).sum() for a, b in zip(colors, colors[1:])) > 100
    assert len({tuple(c) for c in colors}) == 20


def test_draw_tracks_outlines_each_box_in_its_track_colour():
    frame = grey_frame()
    boxes = np.array([[10, 20, 20, 30], [45, 5, 25, 40]])  # x, y, w, h: the second box touches the top border
    drawn = draw_tracks(frame, boxes, [3, 12], width=2)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert (frame == GREY).all()  # the input is not drawn on
    # the box edge (x .. x + w - 1, y .. y + h - 1), 2 px wide, is the track's colour: bottom and right edges
    # (free of the id tag), outermost and inner pixel
    for (x, y, w, h), track_id in zip(boxes, (3, 12)):
        color = track_color(track_id)
        assert tuple(drawn[y + h - 1, x + w // 2]) == color  # bottom edge, outermost row
        assert tuple(drawn[y + h - 2, x + w // 2]) == color  # its second row (width 2)
        assert tuple(drawn[y + h // 2, x + w - 1]) == color  # right edge
        assert tuple(drawn[y + h - 3, x + w // 2]) == GREY  # inside the outline: the frame as it was
        assert tuple(drawn[y + h, x + w // 2]) == GREY  # just outside the box
    # the first box's tag sits above it, in its colour; the second has no room above, so its tag is inside
    assert tuple(drawn[20 - 2, 10 + 1]) == track_color(3)
    tag = drawn[5:15, 45:60].reshape(-1, 3)
    assert (tag == track_color(12)).all(axis=1).sum() > 20
    assert (drawn == GREY).all(axis=2).sum() > 0.7 * 60 * 80  # most of the frame is untouched


def test_draw_tracks_checks_its_inputs():
    with pytest.raises(ValueError, match="one id per box"):
        draw_tracks(grey_frame(), [[1, 1, 5, 5]], [1, 2])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_tracks(np.zeros((10, 10), np.uint8), [], [])
    empty = draw_tracks(grey_frame(), np.empty((0, 4)), [])
    assert (empty == GREY).all()


def test_pick_frames_spreads_over_the_tracked_part():
    rows = np.array([[f, 1, 0, 0, 5, 5, 1] for f in (10, 17, 33, 70)], dtype=float)
    assert pick_frames(rows, 100, 5) == [20, 30, 40, 50, 60]  # 10 .. 70 in 6 steps, the ends left out
    assert pick_frames(np.empty((0, 7)), 13, 3) == [4, 7, 10]  # no box: the whole sequence 1 .. 13
    assert pick_frames(rows[:1], 100, 6) == [10]  # a one-frame span gives one frame
    assert pick_frames(rows, 100, 1) == [40]
    with pytest.raises(ValueError, match="count"):
        pick_frames(rows, 100, 0)


def test_tile_lays_frames_out_in_rows_under_their_captions():
    images = [np.full((20, 30, 3), value, dtype=np.uint8) for value in (10, 60, 110, 160, 210)]
    sheet = tile(images, 3, scale=1.0, gap=4)
    assert sheet.shape == (2 * 20 + 4, 3 * 30 + 2 * 4, 3)
    assert (sheet[0:20, 34:64] == 60).all() and (sheet[24:44, 34:64] == 210).all()
    assert (sheet[24:44, 68:98] == 255).all()  # no sixth image: background
    captioned = tile(images[:2], 2, ["frame 1", "frame 2"], scale=0.5, gap=0)
    assert captioned.shape[1] == 30 and captioned.shape[0] > 10  # a caption band above the 10-px-high cells
    assert (captioned[-10:, :15] == 10).all() and (captioned[-10:, 15:] == 60).all()
    with pytest.raises(ValueError, match="one size"):
        tile([images[0], np.zeros((5, 5, 3), np.uint8)], 2)


def write_sequence(root, boxes_by_frame, size=(60, 80)):
    """A MOTChallenge sequence with grey PNG frames (exact pixels) and a results file of the given boxes."""
    height, width = size
    frames = len(boxes_by_frame)
    write_seqinfo(root / "seqinfo.ini", SeqInfo(name=root.name, seq_length=frames, frame_rate=10,
                                                 im_width=width, im_height=height, im_ext=".png"))
    (root / "img1").mkdir(parents=True)
    for f in range(1, frames + 1):
        Image.fromarray(grey_frame(height, width)).save(root / "img1" / f"{f:06d}.png")
    rows = [[f, track_id, *box, 1.0] for f, boxes in enumerate(boxes_by_frame, 1) for track_id, box in boxes]
    return np.array(rows, dtype=float)


def test_tracked_frames_and_the_scene_strip_draw_the_results_file(tmp_path):
    boxes = [[(4, (10, 20, 20, 30))], [(4, (12, 20, 20, 30)), (9, (50, 15, 20, 30))], [(9, (52, 15, 20, 30))]]
    rows = write_sequence(tmp_path / "scene" / "cam1", boxes)
    write_results(tmp_path / "results" / "cam1.txt", rows)
    (drawn,) = tracked_frames(tmp_path / "scene" / "cam1", tmp_path / "results" / "cam1.txt", [2])
    assert tuple(drawn[20 + 30 - 1, 12 + 10]) == track_color(4)  # bottom edges of the two boxes of frame 2
    assert tuple(drawn[15 + 30 - 1, 50 + 10]) == track_color(9)
    with pytest.raises(ValueError, match="outside"):
        tracked_frames(tmp_path / "scene" / "cam1", rows, [4])
    strip = scene_strip(tmp_path / "scene", tmp_path / "results", count=6, scale=1.0)
    # three frames (the whole span), one row; each shows its boxes in their track's colours
    colors = {tuple(c) for c in strip.reshape(-1, 3)}
    assert track_color(4) in colors and track_color(9) in colors
    assert strip.shape[1] == 3 * 80 + 2 * 4 and strip.shape[0] > 60
