"""Tests for robustreid.tracking.motio: MOTChallenge files round trip, and errors name file:line."""

import numpy as np
import pytest

from robustreid.tracking.motio import (
    SeqInfo,
    frame_rows,
    load_sequence,
    read_det,
    read_gt,
    read_results,
    read_seqinfo,
    write_det,
    write_gt,
    write_results,
    write_seqinfo,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_results_round_trip_and_format(tmp_path):
    rows = np.array([[2, 7, 10.5, 20.25, 30, 40.125, 0.875],
                     [1, 3, -4.5, 0, 12, 34, 1.0],
                     [1, 1, 100, 200, 50, 120, 0.5]])
    path = tmp_path / "out" / "MOT16-02.txt"
    write_results(path, rows)
    assert path.read_text().splitlines() == [
        "1,1,100,200,50,120,0.5,-1,-1,-1",
        "1,3,-4.5,0,12,34,1,-1,-1,-1",
        "2,7,10.5,20.25,30,40.125,0.875,-1,-1,-1",
    ]
    np.testing.assert_array_equal(read_results(path), rows[[2, 1, 0]])
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temporary file left


def test_gt_and_det_round_trip(tmp_path):
    gt = np.array([[1, 1, 912, 484, 97, 109, 0, 7, 1], [1, 2, 1338, 418, 167, 379, 1, 1, 0.86173]])
    write_gt(tmp_path / "gt.txt", gt)
    assert (tmp_path / "gt.txt").read_text().splitlines()[0] == "1,1,912,484,97,109,0,7,1"
    np.testing.assert_allclose(read_gt(tmp_path / "gt.txt"), np.round(gt, 3))
    det = np.array([[1, -1, 1359.1, 413.27, 120.26, 362.77, 2.3092],
                    [2, -1, 571.03, 402.13, 104.56, 315.68, -0.5]])
    write_det(tmp_path / "det.txt", det)
    first = (tmp_path / "det.txt").read_text().splitlines()[0]
    assert first == "1,-1,1359.1,413.27,120.26,362.77,2.309,-1,-1,-1"
    np.testing.assert_allclose(read_det(tmp_path / "det.txt"), np.round(det, 3))


def test_reads_official_lines_with_spaces_and_extra_columns(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1, -1, 1359.1, 413.27, 120.26, 362.77, 2.3092, -1, -1, -1\n\n2,-1,1,2,3,4,0.5\n")
    np.testing.assert_allclose(read_det(path), [[1, -1, 1359.1, 413.27, 120.26, 362.77, 2.3092],
                                                [2, -1, 1, 2, 3, 4, 0.5]])


@pytest.mark.parametrize("text, line, message", [
    ("1,1,0,0,10,10,1,1,1\n1,2,0,0,10\n", 2, "expected at least 9 comma-separated values"),
    ("\n1,1,0,0,10,10,1,1,1\n1,2,zero,0,10,10,1,1,1\n", 3, "expected numbers"),
    ("1.5,1,0,0,10,10,1,1,1\n", 1, "frame must be an integer >= 1"),
    ("0,1,0,0,10,10,1,1,1\n", 1, "frame must be an integer >= 1"),
    ("1,1,0,0,-10,10,1,1,1\n", 1, "box width and height must be >= 0, got w=-10.0"),
    ("1,1,0,0,10,10,1,1,1\n2,1,0,0,10,10,1,1,1\n1,1,5,5,10,10,1,1,1\n", 3,
     r"id 1 appears twice in frame 1 \(also on line 1\)"),
])
def test_malformed_gt_lines_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"gt\.txt:{line}: {message}"):
        read_gt(path)


def test_missing_files_and_bad_rows(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_results(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match=r"expected shape \(N, >=7\)"):
        write_results(tmp_path / "r.txt", np.ones((2, 5)))
    with pytest.raises(ValueError, match="frames are numbered from 1"):
        write_results(tmp_path / "r.txt", [[0, 1, 0, 0, 1, 1, 1]])


def test_seqinfo_round_trip_and_errors(tmp_path):
    info = SeqInfo(name="MOT16-02", seq_length=600, frame_rate=30, im_width=1920, im_height=1080)
    write_seqinfo(tmp_path / "seqinfo.ini", info)
    assert "seqLength=600" in (tmp_path / "seqinfo.ini").read_text()
    assert read_seqinfo(tmp_path / "seqinfo.ini") == info
    (tmp_path / "bad.ini").write_text("[Sequence]\nname=x\nseqLength=many\n")
    with pytest.raises(ValueError, match=r"bad\.ini: seqLength='many' is not a valid int"):
        read_seqinfo(tmp_path / "bad.ini")
    (tmp_path / "nolen.ini").write_text("[Sequence]\nname=x\n")
    with pytest.raises(ValueError, match=r"nolen\.ini: \[Sequence\] has no seqLength"):
        read_seqinfo(tmp_path / "nolen.ini")


def test_load_sequence(tmp_path):
    seq = tmp_path / "SYN-01"
    write_seqinfo(seq / "seqinfo.ini", SeqInfo(name="SYN-01", seq_length=3, im_ext=".png"))
    write_det(seq / "det" / "det.txt", [[1, -1, 0, 0, 10, 20, 0.9], [3, -1, 5, 5, 10, 20, 0.8]])
    loaded = load_sequence(seq)
    assert loaded.gt is None and loaded.det.shape == (2, 7)
    assert loaded.frame_path(2) == seq / "img1" / "000002.png"
    with pytest.raises(ValueError, match="outside 1..3"):
        loaded.frame_path(4)
    write_gt(seq / "gt" / "gt.txt", [[4, 1, 0, 0, 10, 20, 1, 1, 1]])
    with pytest.raises(ValueError, match=r"gt\.txt: frame 4 is past seqLength=3"):
        load_sequence(seq)


def test_seq_length_beyond_the_frames_in_img1_is_refused(tmp_path):
    seq = tmp_path / "SYN-02"
    write_seqinfo(seq / "seqinfo.ini", SeqInfo(name="SYN-02", seq_length=2_000_000, im_ext=".png"))
    assert load_sequence(seq).info.seq_length == 2_000_000  # no img1/: detections only, seqLength is trusted
    (seq / "img1").mkdir()
    for f in range(1, 11):
        (seq / "img1" / f"{f:06d}.png").write_bytes(b"frame")
    (seq / "img1" / "notes.txt").write_text("not a frame")
    with pytest.raises(ValueError) as err:
        load_sequence(seq)
    assert str(err.value) == (f"{seq / 'seqinfo.ini'}: seqLength=2000000, but {seq / 'img1'} holds 10 .png "
                              "frame(s); expected seqLength <= 10 (the number of frames)")
    write_seqinfo(seq / "seqinfo.ini", SeqInfo(name="SYN-02", seq_length=10, im_ext=".png"))
    assert load_sequence(seq).info.seq_length == 10  # exactly the frames present
    write_seqinfo(seq / "seqinfo.ini", SeqInfo(name="SYN-02", seq_length=11, im_ext=".png"))
    with pytest.raises(ValueError, match="seqLength=11, but .* holds 10 .png frame"):
        load_sequence(seq)


def test_frame_rows_and_box_formats():
    rows = np.array([[3, 1, 0, 0, 1, 1], [1, 2, 0, 0, 1, 1], [3, 3, 0, 0, 1, 1]])
    per_frame = frame_rows(rows, 4)
    assert [r[:, 1].tolist() for r in per_frame] == [[2], [], [1, 3], []]
    with pytest.raises(ValueError, match="1..2"):
        frame_rows(rows, 2)
    np.testing.assert_array_equal(xywh_to_xyxy([[10, 20, 30, 40]]), [[10, 20, 40, 60]])
    np.testing.assert_array_equal(xyxy_to_xywh([[10, 20, 40, 60]]), [[10, 20, 30, 40]])
