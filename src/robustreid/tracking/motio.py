"""MOTChallenge sequences on disk: ``seqinfo.ini``, ``img1/``, ``det/det.txt``, ``gt/gt.txt`` and results.

The layout and text formats of MOT16 (Milan et al., "MOT16: A Benchmark for Multi-Object Tracking",
arXiv:1603.00831), the benchmark of Table 6. One comma-separated line per box, 1-based frame numbers,
boxes as top-left ``x, y`` and size ``w, h`` in pixels:

    det/det.txt   frame, -1, x, y, w, h, score[, x3d, y3d, z3d]
    gt/gt.txt     frame, id, x, y, w, h, active, class, visibility
    results       frame, id, x, y, w, h, score, -1, -1, -1

In ``gt.txt``, ``active`` is 1 for a box that counts in the evaluation and 0 for one that is ignored,
``class`` is 1 for a pedestrian (others: 2 person on vehicle, 7 static person, 8 distractor,
12 reflection, ...), and ``visibility`` is the visible fraction in [0, 1].

The readers return float64 arrays with one row per line and a fixed set of columns (the names in
:data:`DET_COLUMNS`, :data:`GT_COLUMNS`, :data:`RESULT_COLUMNS`); extra columns are ignored, blank
lines skipped, and a malformed line is a ValueError naming ``file:line`` and what was expected. Files
are written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import configparser
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomicfile import write_text

__all__ = [
    "DET_COLUMNS",
    "GT_COLUMNS",
    "RESULT_COLUMNS",
    "SeqInfo",
    "MOTSequence",
    "read_seqinfo",
    "write_seqinfo",
    "read_det",
    "read_gt",
    "read_results",
    "write_det",
    "write_gt",
    "write_results",
    "load_sequence",
    "frame_rows",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

DET_COLUMNS = ("frame", "id", "x", "y", "w", "h", "score")
GT_COLUMNS = ("frame", "id", "x", "y", "w", "h", "active", "class", "visibility")
RESULT_COLUMNS = ("frame", "id", "x", "y", "w", "h", "score")

_SPLIT = re.compile(r"\s*,\s*|\s+")


@dataclass(frozen=True)
class SeqInfo:
    """The ``[Sequence]`` section of ``seqinfo.ini``."""

    name: str
    seq_length: int
    frame_rate: float = 30.0
    im_width: int = 0
    im_height: int = 0
    im_dir: str = "img1"
    im_ext: str = ".jpg"


@dataclass(frozen=True)
class MOTSequence:
    """One sequence folder: its info, detections (N, 7), ground truth (M, 9) or None, frame paths."""

    root: Path
    info: SeqInfo
    det: np.ndarray | None
    gt: np.ndarray | None

    def frame_path(self, frame: int) -> Path:
        """``img1/000001.jpg`` for frame 1 (MOTChallenge numbers frames from 1, six digits)."""
        if not 1 <= frame <= self.info.seq_length:
            raise ValueError(f"frame {frame} is outside 1..{self.info.seq_length} of {self.root}")
        return self.root / self.info.im_dir / f"{frame:06d}{self.info.im_ext}"


# ---------------------------------------------------------------------------------------- seqinfo
_INI_KEYS = {"name": "name", "seq_length": "seqLength", "frame_rate": "frameRate", "im_width": "imWidth",
             "im_height": "imHeight", "im_dir": "imDir", "im_ext": "imExt"}


def read_seqinfo(path) -> SeqInfo:
    """Read ``seqinfo.ini`` (``name`` and ``seqLength`` are required)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such seqinfo.ini")
    parser = configparser.ConfigParser(interpolation=None)  # a '%' in a value is a plain character
    parser.optionxform = str  # keep the camelCase keys
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); expected an ini file") from None
    except configparser.Error as err:
        raise ValueError(f"{path}: not a valid ini file ({' '.join(str(err).split())})") from None
    if "Sequence" not in parser:
        raise ValueError(f"{path}: expected a [Sequence] section")
    section = parser["Sequence"]
    values = {}
    for attr, key in _INI_KEYS.items():
        if key not in section:
            if attr in ("name", "seq_length"):
                raise ValueError(f"{path}: [Sequence] has no {key}")
            continue
        raw = section[key].strip()
        kind = SeqInfo.__dataclass_fields__[attr].type
        try:
            values[attr] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
        except ValueError as err:
            raise ValueError(f"{path}: {key}={raw!r} is not a valid {kind}") from err
    if values["seq_length"] < 1:
        raise ValueError(f"{path}: seqLength must be >= 1, got {values['seq_length']}")
    return SeqInfo(**values)


def write_seqinfo(path, info: SeqInfo) -> None:
    frame_rate = int(info.frame_rate) if float(info.frame_rate).is_integer() else info.frame_rate
    lines = ["[Sequence]", f"name={info.name}", f"imDir={info.im_dir}", f"frameRate={frame_rate}",
             f"seqLength={info.seq_length}", f"imWidth={info.im_width}", f"imHeight={info.im_height}",
             f"imExt={info.im_ext}", ""]
    write_text(path, "\n".join(lines))


# -------------------------------------------------------------------------------------- text files
def read_det(path) -> np.ndarray:
    """``det/det.txt`` -> (N, 7) ``frame, id, x, y, w, h, score``."""
    return _read_rows(path, DET_COLUMNS, unique_ids=False)


def read_gt(path) -> np.ndarray:
    """``gt/gt.txt`` -> (N, 9) ``frame, id, x, y, w, h, active, class, visibility``; ids unique per frame."""
    return _read_rows(path, GT_COLUMNS, unique_ids=True)


def read_results(path) -> np.ndarray:
    """A tracker's results file -> (N, 7) ``frame, id, x, y, w, h, score``; ids unique per frame."""
    return _read_rows(path, RESULT_COLUMNS, unique_ids=True)


def write_det(path, rows) -> None:
    """(N, >=7) ``frame, id, x, y, w, h, score`` -> ``det.txt`` lines ``..., score, -1, -1, -1``."""
    rows = _check_rows(rows, DET_COLUMNS)
    _write_lines(path, rows, (True, True, False, False, False, False, False), tail=",-1,-1,-1")


def write_gt(path, rows) -> None:
    """(N, 9) ``frame, id, x, y, w, h, active, class, visibility`` -> ``gt.txt``."""
    rows = _check_rows(rows, GT_COLUMNS)
    _write_lines(path, rows, (True, True, False, False, False, False, True, True, False))


def write_results(path, rows) -> None:
    """(N, >=7) ``frame, id, x, y, w, h, score`` -> results lines ``..., score, -1, -1, -1``, sorted by
    frame then id."""
    rows = _check_rows(rows, RESULT_COLUMNS)
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    _write_lines(path, rows, (True, True, False, False, False, False, False), tail=",-1,-1,-1")


def load_sequence(root) -> MOTSequence:
    """A MOTChallenge sequence folder: ``seqinfo.ini`` plus ``det/det.txt`` and ``gt/gt.txt`` if present.

    When the image folder (``imDir``, ``img1/``) is there, ``seqLength`` may not exceed the frames it holds
    (files ending in ``imExt``): a declared length the folder cannot have is a ``ValueError`` naming
    ``seqinfo.ini``, the declared and the present count, instead of a tracker walking frames that do not exist.
    Without the folder (detections only, the motion-only tracker reads no image) ``seqLength`` is trusted, as are
    gaps inside it (a missing frame is named when it is read)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such sequence folder")
    info = read_seqinfo(root / "seqinfo.ini")
    _check_frame_count(root, info)
    det_path, gt_path = root / "det" / "det.txt", root / "gt" / "gt.txt"
    det = read_det(det_path) if det_path.is_file() else None
    gt = read_gt(gt_path) if gt_path.is_file() else None
    for name, rows, path in (("det", det, det_path), ("gt", gt, gt_path)):
        if rows is not None and len(rows) and rows[:, 0].max() > info.seq_length:
            raise ValueError(f"{path}: frame {int(rows[:, 0].max())} is past seqLength={info.seq_length} "
                             f"of {root / 'seqinfo.ini'}")
    return MOTSequence(root=root, info=info, det=det, gt=gt)


def _check_frame_count(root: Path, info: SeqInfo) -> None:
    """``seqLength`` against the frames in the image folder, when there is one (one directory listing)."""
    folder = root / info.im_dir
    if not folder.is_dir():
        return
    ext = info.im_ext.lower()
    with os.scandir(folder) as entries:
        present = sum(1 for e in entries if e.name.lower().endswith(ext) and e.is_file())
    if info.seq_length > present:
        raise ValueError(f"{root / 'seqinfo.ini'}: seqLength={info.seq_length}, but {folder} holds {present} "
                         f"{info.im_ext} frame(s); expected seqLength <= {present} (the number of frames)")


def frame_rows(rows: np.ndarray, num_frames: int) -> list[np.ndarray]:
    """Split rows (frame in column 0, frames 1..num_frames) into one array per frame (index 0 = frame 1)."""
    rows = np.asarray(rows)
    frames = rows[:, 0].astype(np.int64) if len(rows) else np.empty(0, np.int64)
    if len(frames) and (frames.min() < 1 or frames.max() > num_frames):
        raise ValueError(f"frames must be in 1..{num_frames}, got {frames.min()}..{frames.max()}")
    order = np.argsort(frames, kind="stable")
    bounds = np.searchsorted(frames[order], np.arange(1, num_frames + 2))
    return [rows[order[bounds[i]:bounds[i + 1]]] for i in range(num_frames)]


def xywh_to_xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])


def xyxy_to_xywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


# -------------------------------------------------------------------------------------- internals
def _read_rows(path, columns: Sequence[str], unique_ids: bool) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    expected = ",".join(columns)
    rows, lines = [], []
    try:
        text_lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); expected lines of {expected}") from None
    for lineno, line in enumerate(text_lines, start=1):
        text = line.strip()
        if not text:
            continue
        fields = _SPLIT.split(text)
        if len(fields) < len(columns):
            raise ValueError(f"{path}:{lineno}: expected at least {len(columns)} comma-separated values "
                             f"({expected}), got {len(fields)}: {text!r}")
        try:
            values = [float(v) for v in fields[:len(columns)]]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected numbers ({expected}), got {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{lineno}: expected finite numbers, got {text!r}")
        frame, track_id, _, _, w, h = values[:6]
        if not (frame.is_integer() and frame >= 1):
            raise ValueError(f"{path}:{lineno}: frame must be an integer >= 1, got {fields[0]!r}")
        if not track_id.is_integer():
            raise ValueError(f"{path}:{lineno}: id must be an integer, got {fields[1]!r}")
        if w < 0 or h < 0:
            raise ValueError(f"{path}:{lineno}: box width and height must be >= 0, got w={w}, h={h}")
        rows.append(values)
        lines.append(lineno)
    out = np.array(rows, dtype=np.float64).reshape(-1, len(columns))
    if unique_ids and len(out):
        key = out[:, 0] * (2**32) + out[:, 1]
        order = np.argsort(key, kind="stable")
        dup = np.flatnonzero(np.diff(key[order]) == 0)
        if len(dup):
            first, second = lines[order[dup[0]]], lines[order[dup[0] + 1]]
            raise ValueError(f"{path}:{second}: id {int(out[order[dup[0]], 1])} appears twice in frame "
                             f"{int(out[order[dup[0]], 0])} (also on line {first})")
    return out


def _check_rows(rows, columns: Sequence[str]) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return rows.reshape(0, len(columns))
    if rows.ndim != 2 or rows.shape[1] < len(columns):
        raise ValueError(f"rows: expected shape (N, >={len(columns)}) with columns {', '.join(columns)}, "
                         f"got {rows.shape}")
    rows = rows[:, :len(columns)]
    if not np.all(np.isfinite(rows)):
        raise ValueError("rows: expected finite values")
    for name in ("frame", "id"):
        col = rows[:, columns.index(name)]
        if not np.all(col == np.round(col)):
            raise ValueError(f"rows: the {name} column must hold integers")
    if np.any(rows[:, 0] < 1):
        raise ValueError("rows: frames are numbered from 1")
    return rows


def _format(value: float, integer: bool) -> str:
    if integer:
        return str(int(round(value)))
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _write_lines(path, rows: np.ndarray, integer: Sequence[bool], tail: str = "") -> None:
    lines = [",".join(_format(v, i) for v, i in zip(row, integer)) + tail for row in rows]
    write_text(path, "".join(line + "\n" for line in lines))


