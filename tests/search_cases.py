"""Shared cases of the person-search tests (``tests/test_search_*.py``): a hand-made index whose answers are
known, an embedder that makes them computable, and a tiny two-camera scene in the MOTChallenge layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from robustreid.search.build import thumbnail_jpeg
from robustreid.search.embedding import Embedder, normalize_rows
from robustreid.search.index import SourceTracklets, Tracklet, build_index
from robustreid.tracking.motio import SeqInfo, write_det, write_gt, write_seqinfo

# the hand-made index: descriptor directions in RGB space; a solid-colour query's nearest are computable
COLOURS = {"red": (1.0, 0.0, 0.0), "orange": (0.8, 0.6, 0.0), "green": (0.0, 1.0, 0.0),
           "blue": (0.0, 0.0, 1.0), "purple": (0.6, 0.0, 0.8)}


def mean_colour(images) -> np.ndarray:
    """The fake model: an image's descriptor is its mean RGB colour (3-d)."""
    return np.stack([np.asarray(im, np.float32).reshape(-1, 3).mean(axis=0) + 1e-3 for im in images])


def colour_embedder() -> Embedder:
    return Embedder("fake:mean-colour", 3, mean_colour)


def solid(colour, size=(48, 24)) -> np.ndarray:
    rgb = np.array(colour, np.float32)
    return np.broadcast_to((rgb / rgb.max() * 255).astype(np.uint8), (*size, 3)).copy()


def expected_order(query_rgb, vectors: np.ndarray) -> list[int]:
    """Row order by cosine to ``query_rgb``, ties to the smaller row: what the index must answer."""
    q = normalize_rows(np.asarray(query_rgb, np.float32) + 1e-3)
    scores = vectors @ q
    return sorted(range(len(vectors)), key=lambda i: (-round(float(scores[i]), 6), i))


def colour_sources() -> list[SourceTracklets]:
    """Two cameras; each colour is one tracklet (cam1: red, orange, green; cam2: blue, purple)."""
    cams = {"cam1": ["red", "orange", "green"], "cam2": ["blue", "purple"]}
    sources = []
    for k, (camera, names) in enumerate(cams.items()):
        tracklets = []
        for j, name in enumerate(names):
            first = 1 + 10 * j
            tracklets.append(Tracklet(camera=camera, first_frame=first, last_frame=first + 5,
                                      first_time=first / 10, last_time=(first + 5) / 10,
                                      boxes=np.array([[f, 10, 10, 24, 48] for f in range(first, first + 6)]),
                                      thumbnail=thumbnail_jpeg(solid(COLOURS[name])), track_id=j + 1,
                                      label=name))
        vectors = normalize_rows([COLOURS[n] for n in names])
        sources.append(SourceTracklets(path=f"/made/up/{camera}", kind="sequence", tracklets=tracklets,
                                       vectors=vectors, frame_rate=10.0, camera=camera))
    return sources


def colour_index(folder, store: str = "exact"):
    """The hand-made index in ``folder``; rows (and tracklet ids - 1) in COLOURS order."""
    return build_index(folder, colour_sources(), checkpoint="fake:mean-colour", dim=3, store=store)


# ------------------------------------------------------------------------------------------ tiny scene
PEOPLE = {1: ((200, 30, 30), (30, 30, 120)), 2: ((40, 170, 40), (220, 200, 40))}  # pid: (top, bottom) colours


def person(pid: int, h: int = 40, w: int = 16) -> np.ndarray:
    top, bottom = PEOPLE[pid]
    crop = np.zeros((h, w, 3), np.uint8)
    crop[: h // 2], crop[h // 2:] = top, bottom
    return crop


def write_tiny_camera(folder, frames: int = 8, shift: int = 0) -> Path:
    """One camera: two people walking across a grey 96x160 background; boxes as detections and as ground
    truth."""
    folder = Path(folder)
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    dets, gts = [], []
    for f in range(1, frames + 1):
        img = np.full((96, 160, 3), 128, np.uint8)
        for pid, (x0, y, step) in {1: (8 + shift, 8, 6), 2: (130 - shift, 50, -6)}.items():
            x = x0 + step * (f - 1)
            img[y:y + 40, x:x + 16] = person(pid)
            dets.append([f, -1, x, y, 16, 40, 0.95])
            gts.append([f, pid, x, y, 16, 40, 1, 1, 1.0])
        Image.fromarray(img).save(folder / "img1" / f"{f:06d}.jpg", quality=95)
    write_seqinfo(folder / "seqinfo.ini", SeqInfo(name=folder.name, seq_length=frames, frame_rate=10.0,
                                                  im_width=160, im_height=96))
    write_det(folder / "det" / "det.txt", np.array(dets, np.float64))
    write_gt(folder / "gt" / "gt.txt", np.array(gts, np.float64))
    return folder


def write_tiny_scene(root) -> Path:
    """``cam1`` and ``cam2`` of the same two people."""
    root = Path(root)
    write_tiny_camera(root / "cam1")
    write_tiny_camera(root / "cam2", shift=4)
    return root


def query_crop(path, pid: int) -> Path:
    """A crop of person ``pid`` as a PNG file (a query)."""
    Image.fromarray(np.kron(person(pid), np.ones((2, 2, 1), np.uint8))).save(path)
    return Path(path)
