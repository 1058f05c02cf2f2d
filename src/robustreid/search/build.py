"""Index entries from video and from crops: a camera's sequence through the tracker, one entry per tracklet;
or a folder of Market1501-style crops, one entry per crop.

A sequence is tracked by ``tracking.run.tracked_frames`` (the loop of ``robustreid track``) with the ReID
model as its embedding hook. As it runs, each track keeps a running sum of the embeddings of its matched boxes
(the tracker's ``det_indices`` name them), its boxes and its largest box, so memory grows with the tracks,
not with the embeddings; its descriptor is the mean, renormalised, with no second pass over the frames. The
thumbnail is the track's largest box, cut from its frame at the end.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..tracking.motio import load_sequence, xywh_to_xyxy
from ..tracking.run import tracked_frames
from ..tracking.scene import scene_sequences
from ..tracking.tracker import CropEmbedder, TrackerConfig, crop_boxes
from .embedding import Embedder, normalize_rows
from .index import SourceTracklets, Tracklet

__all__ = [
    "CROP_PATTERN",
    "THUMBNAIL_HEIGHT",
    "crop_tracklets",
    "expand_sequences",
    "sequence_tracklets",
    "thumbnail_jpeg",
]

THUMBNAIL_HEIGHT = 128
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Market1501 / DukeMTMC-reID names: 0002_c1s1_000451_03.jpg, 0001_c2_f0046182.jpg -> pid, camera, frame
CROP_PATTERN = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+)?_f?(\d+)")
Progress = Callable[[str, int, int], None]  # (what, done, total)


def thumbnail_jpeg(image: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> bytes:
    """A crop (HxWx3 uint8) as JPEG bytes, resized to ``height`` rows (aspect kept)."""
    img = Image.fromarray(np.ascontiguousarray(image))
    width = max(1, round(img.width * height / max(img.height, 1)))
    buffer = io.BytesIO()
    img.resize((width, height), Image.BILINEAR).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def expand_sequences(paths) -> list[tuple[str, Path]]:
    """``(camera name, sequence folder)`` for each path: a MOTChallenge sequence (``seqinfo.ini``), named by
    its folder, or a scene folder (``robustreid synth-scene``: ``cam<k>/``), one entry per camera of its test
    part."""
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such sequence folder (expected a MOTChallenge sequence with "
                                    "seqinfo.ini, det/det.txt and img1/, or a scene folder)")
        if (p / "seqinfo.ini").is_file():
            out.append((p.resolve().name, p))
        else:
            out += [(folder.name, folder) for _, folder in scene_sequences(p)]
    names = [name for name, _ in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two sequences would be the camera {twice[0]!r}: give sequences in folders of "
                         "different names (the folder name is the camera name)")
    return out


@dataclass
class _TrackSum:
    """What a track gathers while the tracker runs: its result rows ``frame, x, y, w, h``, the sum and count
    of its embeddings."""

    rows: list = field(default_factory=list)
    total: np.ndarray | None = None
    count: int = 0

    def add(self, row: np.ndarray, embedding: np.ndarray | None) -> None:
        self.rows.append(row)
        if embedding is not None:
            e = np.asarray(embedding, np.float64)
            self.total = e if self.total is None else self.total + e
            self.count += 1


def sequence_tracklets(seq_dir, camera: str, embed: Embedder, *, config: TrackerConfig | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       min_boxes: int = 1) -> SourceTracklets:
    """Track one camera's sequence and return one entry per track (module docstring), by track id. Tracks
    with fewer than ``min_boxes`` boxes, or without an embedding, are left out."""
    seq_dir = Path(seq_dir)
    seq = load_sequence(seq_dir)
    if seq.det is None:
        raise FileNotFoundError(f"{seq_dir / 'det' / 'det.txt'}: the sequence has no detections")
    crops = CropEmbedder(embed)
    config = config or TrackerConfig(use_reid=True)
    tracks: dict[int, _TrackSum] = {}
    n = seq.info.seq_length

    def hook(seq_, frame, image, boxes):
        return crops(image, boxes)

    for f, out, embedded in tracked_frames(seq, hook, config):
        for row, j in zip(out.mot_rows(), out.det_indices.tolist()):
            feat = embedded.get(j)
            if feat is not None and hasattr(feat, "detach"):
                feat = feat.detach().cpu().numpy()
            tracks.setdefault(int(row[1]), _TrackSum()).add(row[[0, 2, 3, 4, 5]], feat)
        if progress is not None:
            progress(f, n)
    rate = float(seq.info.frame_rate) if seq.info.frame_rate else None
    tracklets, vectors = [], []
    for track_id, track in sorted(tracks.items()):
        if len(track.rows) < min_boxes or not track.count:
            continue
        rows = np.stack(track.rows)
        first, last = int(rows[0, 0]), int(rows[-1, 0])
        biggest = rows[np.argmax(rows[:, 3] * rows[:, 4])]
        tracklets.append(Tracklet(
            camera=camera, first_frame=first, last_frame=last,
            first_time=None if rate is None else round((first - 1) / rate, 3),
            last_time=None if rate is None else round((last - 1) / rate, 3),
            boxes=rows, thumbnail=_thumbnail(seq, biggest), track_id=track_id))
        vectors.append(normalize_rows(track.total / track.count))
    return SourceTracklets(path=str(seq_dir.resolve()), kind="sequence", tracklets=tracklets,
                           vectors=np.stack(vectors) if vectors else np.zeros((0, embed.dim), np.float32),
                           frame_rate=rate, camera=camera)


def _thumbnail(seq, row: np.ndarray) -> bytes | None:
    """The box ``row`` (``frame, x, y, w, h``) cut from its frame, as a thumbnail (None: frame unreadable)."""
    path = seq.frame_path(int(row[0]))
    try:
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"))
    except OSError:
        return None
    return thumbnail_jpeg(crop_boxes(image, xywh_to_xyxy(row[None, 1:5]))[0])


def crop_tracklets(folder, embed: Embedder, *, batch_size: int = 64,
                   progress: Callable[[int, int], None] | None = None) -> list[SourceTracklets]:
    """Market1501-style crops (``PID_cCAM..._FRAME...``) in ``folder``: one entry per crop, one source per
    camera (``c<k>``). A file whose name does not follow the pattern, or that is not a readable image, is a
    ``ValueError`` naming it, before anything is embedded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of crops")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    parsed = []
    for p in files:
        m = CROP_PATTERN.match(p.name)
        if m is None:
            raise ValueError(f"{p}: expected a Market1501-style name such as 0002_c1s1_000451_03.jpg "
                             "(PID_cCAM..._FRAME)")
        parsed.append((p, f"c{int(m.group(2))}", int(m.group(3))))
    by_camera: dict[str, tuple[list[Tracklet], list[np.ndarray]]] = {}
    for start in range(0, len(parsed), batch_size):
        batch = parsed[start:start + batch_size]
        images = [_read_crop(p) for p, _, _ in batch]
        feats = embed(images)
        for (p, camera, frame), image, feat in zip(batch, images, feats):
            h, w = image.shape[:2]
            t = Tracklet(camera=camera, first_frame=frame, last_frame=frame, first_time=None, last_time=None,
                         boxes=np.array([[frame, 0, 0, w, h]], np.float64), thumbnail=thumbnail_jpeg(image),
                         label=p.name)
            entry = by_camera.setdefault(camera, ([], []))
            entry[0].append(t)
            entry[1].append(feat)
        if progress is not None:
            progress(min(start + batch_size, len(parsed)), len(parsed))
    root = str(folder.resolve())
    return [SourceTracklets(path=f"{root}#{camera}", kind="crops", tracklets=ts, vectors=np.stack(vs),
                            camera=camera) for camera, (ts, vs) in sorted(by_camera.items())]


def _read_crop(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
