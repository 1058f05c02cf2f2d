"""The tracklet index: one folder holding the metadata in SQLite and the descriptors in a vector store.

Layout of an index folder::

    index.sqlite             meta (checkpoint, dim, store kind, generation, vectors file), cameras, sources,
                             tracklets (camera, track id, first / last frame and time, boxes as JSON,
                             thumbnail file, vector row)
    vectors-<generation>.npy the descriptors (.faiss for the FAISS kinds; for milvus a .milvus.json pointer to
                             the collection, robustreid.search.store)
    milvus.db/               milvus only, Milvus Lite (the default; not with a server): the collection
    thumbs/<generation>/     one JPEG per tracklet added in that generation

**Adding is atomic** (:meth:`SearchIndex.add`). The thumbnails go to a new ``thumbs/<g+1>/`` and all
descriptors (old and new) to a new ``vectors-<g+1>`` file first; then one SQLite transaction inserts the rows
and moves the ``generation`` / ``vectors_file`` pointer; only after the commit is the old vectors file
removed. A run killed before the commit leaves the database as it was (SQLite's journal undoes a half
transaction), and the files of generation ``g+1`` are orphans: the next writer (or an opening reader, when
no add runs) removes every vectors file but the current one and every ``thumbs/<n>/`` with ``n`` above the
current generation (:func:`_remove_orphans`). It does so under the lock file that serialises writers and
with the meta read under that lock, so it never removes the files of an add that committed. A read-only
index is read without the lock (and nothing is cleaned up).

Readers (:meth:`SearchIndex.search`) check the generation at each call and reload the store when an ``add``
committed since, so a running server sees new cameras without a restart. An add removes the previous
generation's vectors file after its commit, so a reader that read the meta just before may find that file
gone: it reads the meta again and loads the new file (:meth:`SearchIndex.store`). A store already loaded stays
usable (the exact store's memory map keeps the removed file's data; the FAISS kinds are in memory; a milvus
store's rows below its committed count never change).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomicfile import remove_stale_temp_files, temp_path, write_bytes
from .store import DEFAULT_STORE, STORES, load_store, make_store, store_suffix

__all__ = [
    "DB_FILE",
    "FORMAT_VERSION",
    "Hit",
    "SearchIndex",
    "SourceTracklets",
    "Tracklet",
    "build_index",
    "create_index",
    "is_index",
    "open_index",
]

DB_FILE = "index.sqlite"
THUMBS_DIR = "thumbs"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
MAX_ID = 2**63 - 1  # SQLite's largest integer: a tracklet id above it is no row (and no OverflowError)
# every store kind's file (.npy, .faiss, .milvus.json): what _remove_orphans may remove
_SUFFIXES = sorted({re.escape(cls.suffix) for cls in STORES.values()})
_VECTORS = re.compile(r"^vectors-(\d{6})(" + "|".join(_SUFFIXES) + ")$")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cameras (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE sources (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
                      camera_id INTEGER REFERENCES cameras(id), frame_rate REAL, generation INTEGER NOT NULL);
CREATE TABLE tracklets (id INTEGER PRIMARY KEY, camera_id INTEGER NOT NULL REFERENCES cameras(id),
                        source_id INTEGER NOT NULL REFERENCES sources(id), track_id INTEGER,
                        first_frame INTEGER NOT NULL, last_frame INTEGER NOT NULL, first_time REAL,
                        last_time REAL, num_boxes INTEGER NOT NULL, boxes TEXT NOT NULL, thumbnail TEXT,
                        label TEXT, vector_row INTEGER UNIQUE NOT NULL);
CREATE INDEX tracklets_camera ON tracklets(camera_id, first_frame);
"""


@dataclass
class Tracklet:
    """One entry to add: a tracked person in one camera (or one crop). ``boxes``: rows ``frame, x, y, w, h``;
    times in seconds from the start of the source (None where the source has no frame rate); ``thumbnail``:
    JPEG bytes; ``label``: free text (a crop's file name)."""

    camera: str
    first_frame: int
    last_frame: int
    first_time: float | None
    last_time: float | None
    boxes: np.ndarray
    thumbnail: bytes | None = None
    track_id: int | None = None
    label: str | None = None


@dataclass
class SourceTracklets:
    """What one source (a camera's sequence, or a folder of crops) adds: its tracklets and their descriptors
    (one unit row each, in the same order)."""

    path: str
    kind: str  # "sequence" or "crops"
    tracklets: list[Tracklet]
    vectors: np.ndarray
    frame_rate: float | None = None
    camera: str | None = None  # a sequence's camera (None for crops: each crop names its own)


@dataclass(frozen=True)
class Hit:
    """One search result: the tracklet's row in ``tracklets`` plus its score."""

    tracklet_id: int
    camera: str
    first_frame: int
    last_frame: int
    first_time: float | None
    last_time: float | None
    distance: float  # cosine distance, 1 - cos, in [0, 2]
    label: str | None = None

    def as_dict(self) -> dict:
        return {"tracklet_id": self.tracklet_id, "camera": self.camera, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "first_time": self.first_time, "last_time": self.last_time,
                "distance": round(self.distance, 6), "label": self.label}


def is_index(folder) -> bool:
    return (Path(folder) / DB_FILE).is_file()


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # explicit BEGIN / COMMIT
    con.row_factory = sqlite3.Row
    return con


@contextlib.contextmanager
def _writer_lock(folder: Path, blocking: bool = True):
    """The lock file serialising writers (adds, orphan removal); yields False if taken, not ``blocking``.
    Opening it needs write access to the folder (an ``OSError`` otherwise)."""
    with open(folder / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def create_index(folder, *, checkpoint: str, dim: int, store: str = DEFAULT_STORE,
                 model_sha256: str | None = None) -> SearchIndex:
    """A new, empty index in ``folder`` (created; it must not hold an index already)."""
    folder = Path(folder)
    if store not in STORES:
        raise ValueError(f"store {store!r}: expected one of {', '.join(STORES)}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r}: expected an integer >= 1")
    if is_index(folder):
        raise ValueError(f"{folder} already holds an index ({DB_FILE}); add to it with "
                         "`robustreid index add`")
    folder.mkdir(parents=True, exist_ok=True)
    vectors_file = f"vectors-{0:06d}{store_suffix(store)}"
    make_store(store, dim).save(folder / vectors_file)
    tmp = temp_path(folder / DB_FILE)
    con = _connect(tmp)
    try:
        con.executescript(_SCHEMA)
        meta = {"format_version": FORMAT_VERSION, "checkpoint": checkpoint, "dim": dim, "store": store,
                "model_sha256": model_sha256 or "", "generation": 0, "vectors_file": vectors_file}
        con.execute("BEGIN")
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        con.execute("COMMIT")
    finally:
        con.close()
    os.replace(tmp, folder / DB_FILE)  # the database appears whole or not at all
    return SearchIndex(folder)


def open_index(folder) -> SearchIndex:
    """The index in ``folder``; a missing folder or database is a ``FileNotFoundError`` naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such index folder (make one with `robustreid index build`)")
    if not is_index(folder):
        raise FileNotFoundError(f"{folder / DB_FILE}: missing; {folder} is not an index folder "
                                "(make one with `robustreid index build`)")
    return SearchIndex(folder)


class SearchIndex:
    """An opened index folder (module docstring). Thread-safe: each call opens its own SQLite connection."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.db_path = self.folder / DB_FILE
        self._store = None
        self._store_generation = -1
        self._lock = threading.Lock()
        self.meta = self._read_meta()
        try:
            with _writer_lock(self.folder, blocking=False) as free:
                if free:  # no add running: what a killed one left can go
                    self.meta = self._read_meta()  # under the lock: files of an add committed since stay
                    _remove_orphans(self.folder, self.meta)
        except OSError:  # a read-only index: no lock file can be made, nothing removed; reading needs neither
            pass

    # ------------------------------------------------------------------------------------------- reading
    def _read_meta(self) -> dict:
        try:
            with contextlib.closing(_connect(self.db_path)) as con:
                rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.db_path}: not a readable index database ({err})") from None
        try:
            meta = {"format_version": int(rows["format_version"]), "checkpoint": rows["checkpoint"],
                    "dim": int(rows["dim"]), "store": rows["store"],
                    "model_sha256": rows["model_sha256"] or None, "generation": int(rows["generation"]),
                    "vectors_file": rows["vectors_file"]}
        except (KeyError, ValueError) as err:
            raise ValueError(f"{self.db_path}: its meta table is incomplete ({err})") from None
        if meta["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{self.db_path}: index format {meta['format_version']}, this robustreid reads "
                             f"{FORMAT_VERSION}")
        return meta

    @contextlib.contextmanager
    def _read(self):
        con = _connect(self.db_path)
        try:
            yield con
        finally:
            con.close()

    def store(self):
        """The vector store of the current generation (reloaded when an add committed since the last call).

        An add that commits between reading the meta and loading its vectors file removes that file: the
        meta is read again and the new file loaded (module docstring)."""
        for attempt in range(2):
            meta = self._read_meta()
            with self._lock:
                if self._store is not None and meta["generation"] == self._store_generation:
                    return self._store
                try:
                    store = load_store(meta["store"], self.folder / meta["vectors_file"])
                except FileNotFoundError:
                    if attempt:
                        raise
                    continue  # removed by an add committed since the meta was read
                self._store, self._store_generation, self.meta = store, meta["generation"], meta
                return store

    def source_paths(self) -> set[str]:
        """The sources already indexed (a sequence's resolved folder; crops as ``FOLDER#CAMERA``)."""
        with self._read() as con:
            return {r[0] for r in con.execute("SELECT path FROM sources")}

    def __len__(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM tracklets").fetchone()[0])

    def info(self) -> dict:
        """Counts per camera, plus the meta: what ``robustreid index info`` prints."""
        cameras = self.cameras()
        with self._read() as con:
            sources = int(con.execute("SELECT COUNT(*) FROM sources").fetchone()[0])
        return {"folder": str(self.folder), "checkpoint": self.meta["checkpoint"], "dim": self.meta["dim"],
                "store": self.meta["store"], "model_sha256": self.meta["model_sha256"],
                "generation": self.meta["generation"], "sources": sources,
                "tracklets": sum(c["tracklets"] for c in cameras), "cameras": cameras}

    def cameras(self) -> list[dict]:
        """Per camera: ``id, name, tracklets, first_frame, last_frame, first_time, last_time``."""
        with self._read() as con:
            rows = con.execute(
                "SELECT c.id, c.name, COUNT(t.id) AS tracklets, MIN(t.first_frame) AS first_frame, "
                "MAX(t.last_frame) AS last_frame, MIN(t.first_time) AS first_time, "
                "MAX(t.last_time) AS last_time "
                "FROM cameras c LEFT JOIN tracklets t ON t.camera_id = c.id GROUP BY c.id ORDER BY c.name"
            ).fetchall()
        return [dict(r) for r in rows]

    _COLUMNS = ("t.id, c.name AS camera, t.track_id, t.first_frame, t.last_frame, t.first_time, t.last_time, "
                "t.num_boxes, t.thumbnail, t.label, t.vector_row, s.path AS source")
    _FROM = "FROM tracklets t JOIN cameras c ON c.id = t.camera_id JOIN sources s ON s.id = t.source_id"

    def tracklet(self, tracklet_id: int, boxes: bool = True) -> dict | None:
        """One tracklet's row (``boxes`` as a list of ``[frame, x, y, w, h]``), or None."""
        if not 0 <= int(tracklet_id) <= MAX_ID:
            return None
        with self._read() as con:
            row = con.execute(f"SELECT {self._COLUMNS}, t.boxes {self._FROM} WHERE t.id = ?",
                              (int(tracklet_id),)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["boxes"] = json.loads(out["boxes"]) if boxes else None
        return out

    def thumbnail_path(self, tracklet_id: int) -> Path | None:
        """The thumbnail file of a tracklet (found through its row: no caller's path reaches the disk)."""
        row = self.tracklet(tracklet_id, boxes=False)
        if row is None or not row["thumbnail"]:
            return None
        thumbs = (self.folder / THUMBS_DIR).resolve()
        path = (thumbs / row["thumbnail"]).resolve()
        return path if path.is_relative_to(thumbs) and path.is_file() else None

    def vector(self, tracklet_id: int) -> np.ndarray | None:
        """A stored tracklet's descriptor (to search with it), or None for an unknown id."""
        row = self.tracklet(tracklet_id, boxes=False)
        if row is None:
            return None
        return self.store().vector(row["vector_row"])

    def search(self, queries, k: int = 20) -> list[list[Hit]]:
        """The ``k`` nearest tracklets of each query descriptor (rows of ``queries``), nearest first."""
        queries = np.asarray(queries, dtype=np.float32)
        scores, rows = self.store().search(queries, k)
        wanted = sorted({int(r) for r in rows.ravel() if r >= 0})
        by_row = {}
        with self._read() as con:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for r in con.execute(f"SELECT {self._COLUMNS} {self._FROM} WHERE t.vector_row IN ({marks})",
                                     chunk):
                    by_row[r["vector_row"]] = r
        hits = []
        for q_scores, q_rows in zip(scores, rows):
            hits.append([Hit(tracklet_id=by_row[r]["id"], camera=by_row[r]["camera"],
                             first_frame=by_row[r]["first_frame"], last_frame=by_row[r]["last_frame"],
                             first_time=by_row[r]["first_time"], last_time=by_row[r]["last_time"],
                             distance=float(np.clip(1.0 - s, 0.0, 2.0)), label=by_row[r]["label"])
                         for s, r in zip(q_scores.tolist(), q_rows.tolist()) if r in by_row])
        return hits

    # ------------------------------------------------------------------------------------------- adding
    def add(self, sources: Sequence[SourceTracklets],
            on_stage: Callable[[str], None] | None = None) -> dict:
        """Add the tracklets of ``sources`` atomically (module docstring); returns counts.

        A source already in the index (same resolved path) or descriptors of another dimension are a
        ``ValueError`` before anything is written. ``on_stage(name)`` is called at ``"thumbnails"``,
        ``"vectors"`` (both written, nothing committed), ``"committed"`` and ``"done"``: progress, and the
        place where the tests kill an add.
        """
        stage = on_stage or (lambda name: None)
        dim = self.meta["dim"]
        for src in sources:
            if src.kind not in ("sequence", "crops"):
                raise ValueError(f"{src.path}: source kind {src.kind!r}, expected 'sequence' or 'crops'")
            vectors = np.asarray(src.vectors, dtype=np.float32)
            if vectors.shape != (len(src.tracklets), dim):
                raise ValueError(f"{src.path}: descriptors of shape {vectors.shape}, the index expects "
                                 f"({len(src.tracklets)}, {dim}) (one {dim}-d row per tracklet; an index "
                                 f"holds one model's descriptors: {self.meta['checkpoint']})")
        paths = [src.path for src in sources]
        if len(set(paths)) != len(paths):
            raise ValueError(f"a source is given twice: {min(p for p in paths if paths.count(p) > 1)}")
        with _writer_lock(self.folder):
            meta = self._read_meta()
            _remove_orphans(self.folder, meta)
            with self._read() as con:
                known = {r[0] for r in con.execute("SELECT path FROM sources")}
            for p in paths:
                if p in known:
                    raise ValueError(f"{p}: already in the index {self.folder}")
            gen = meta["generation"] + 1
            thumbs = self._write_thumbnails(sources, gen)
            stage("thumbnails")
            store = load_store(meta["store"], self.folder / meta["vectors_file"])
            base = len(store)
            new = [np.asarray(s.vectors, np.float32) for s in sources if len(s.tracklets)]
            if new:  # (the exact store concatenates into a new array: the memory-mapped file stays as it is)
                store.add(np.concatenate(new))
            vectors_file = f"vectors-{gen:06d}{store_suffix(meta['store'])}"
            store.save(self.folder / vectors_file)
            stage("vectors")
            added = self._commit(sources, thumbs, base, gen, vectors_file)
            stage("committed")
            (self.folder / meta["vectors_file"]).unlink(missing_ok=True)
            self.meta = self._read_meta()
        stage("done")
        return {"sources": len(sources), "tracklets": added, "generation": gen}

    def _write_thumbnails(self, sources: Sequence[SourceTracklets], gen: int) -> list[list[str | None]]:
        folder = self.folder / THUMBS_DIR / f"{gen:06d}"
        names, k = [], 0
        for src in sources:
            names.append([])
            for t in src.tracklets:
                if t.thumbnail is None:
                    names[-1].append(None)
                    continue
                write_bytes(folder / f"{k}.jpg", t.thumbnail)  # never half a JPEG under its name
                names[-1].append(f"{gen:06d}/{k}.jpg")
                k += 1
        return names

    def _commit(self, sources, thumbs, base: int, gen: int, vectors_file: str) -> int:
        row = base
        with contextlib.closing(_connect(self.db_path)) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                camera_ids = dict(con.execute("SELECT name, id FROM cameras").fetchall())

                def camera_id(name: str) -> int:
                    if name not in camera_ids:
                        cursor = con.execute("INSERT INTO cameras (name) VALUES (?)", (name,))
                        camera_ids[name] = cursor.lastrowid
                    return camera_ids[name]

                for src, names in zip(sources, thumbs):
                    source_id = con.execute(
                        "INSERT INTO sources (path, kind, camera_id, frame_rate, generation) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (src.path, src.kind, camera_id(src.camera) if src.camera else None, src.frame_rate,
                         gen)).lastrowid
                    for t, thumb in zip(src.tracklets, names):
                        boxes = np.asarray(t.boxes, dtype=np.float64).reshape(-1, 5)
                        con.execute(
                            "INSERT INTO tracklets (camera_id, source_id, track_id, first_frame, last_frame, "
                            "first_time, last_time, num_boxes, boxes, thumbnail, label, vector_row) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (camera_id(t.camera), source_id, t.track_id, int(t.first_frame),
                             int(t.last_frame), t.first_time, t.last_time, len(boxes), _boxes_json(boxes),
                             thumb, t.label, row))
                        row += 1
                con.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
                con.execute("UPDATE meta SET value = ? WHERE key = 'vectors_file'", (vectors_file,))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return row - base


def _boxes_json(boxes: np.ndarray) -> str:
    rows = [[int(b[0])] + [round(float(v), 2) for v in b[1:]] for b in boxes]
    return json.dumps(rows, separators=(",", ":"))


def _remove_orphans(folder: Path, meta: dict) -> list[Path]:
    """Remove what a killed add left: vectors files other than the current one, thumbnail folders of
    generations above the current one, and temporary files (callers hold the writer lock)."""
    removed = []
    for path in folder.iterdir():
        if _VECTORS.match(path.name) and path.name != meta["vectors_file"]:
            path.unlink(missing_ok=True)
            removed.append(path)
    thumbs = folder / THUMBS_DIR
    if thumbs.is_dir():
        for path in thumbs.iterdir():
            if path.is_dir() and path.name.isdigit() and int(path.name) > meta["generation"]:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    removed += remove_stale_temp_files(folder)
    return removed


def build_index(folder, sources: Sequence[SourceTracklets], *, checkpoint: str, dim: int,
                store: str = DEFAULT_STORE, model_sha256: str | None = None,
                on_stage: Callable[[str], None] | None = None) -> SearchIndex:
    """A new index in ``folder`` holding ``sources``, which appears whole or not at all: it is made in a
    temporary folder beside ``folder`` and renamed onto it (``folder`` must not exist or be empty)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        what = "holds an index" if is_index(folder) else "is not an empty folder"
        raise ValueError(f"{folder} {what}; build into a new folder, or add to an index with "
                         "`robustreid index add`")
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder.parent, name=folder.name, folders=True)  # what killed builds left
    tmp = temp_path(folder)
    try:
        create_index(tmp, checkpoint=checkpoint, dim=dim, store=store, model_sha256=model_sha256).add(
            sources, on_stage=on_stage)
        os.replace(tmp, folder)  # onto a missing or empty folder: atomic on POSIX
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_index(folder)
