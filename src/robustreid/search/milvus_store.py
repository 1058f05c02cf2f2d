"""The ``milvus`` vector store: the index's descriptors in Milvus, an existing vector engine, not one of ours.

``MilvusStore`` has the six calls of :mod:`robustreid.search.store` (``add``, ``search``, ``vector``, ``len``,
``save``, ``load``) and needs ``pip install 'robustreid[milvus]'`` (pymilvus and milvus-lite). Where the
vectors live:

* **Milvus Lite** (the default, and the tests): an embedded Milvus, a database folder ``milvus.db`` inside the
  index folder, opened in-process by pymilvus from a URI that is a path ending in ``.db``. One process at a
  time may open it (milvus-lite locks the folder): an ``index add`` while ``robustreid serve`` has the same
  index open fails with one line saying so. Opening it writes its lock file, so an index folder without write
  access cannot be searched with Lite (unlike the file-based kinds).
* **A Milvus server** (production): ``ROBUSTREID_MILVUS_URI=http://HOST:19530`` when the index is built puts
  its collection on that server; ``ROBUSTREID_MILVUS_TOKEN`` (``user:password`` or an API key) is read at
  every connection and never written down, and a URI with credentials in it is refused. Later commands
  (``index add``, ``search``, ``serve``) use the URI written in the index, whatever the variable says then.

Each index has one collection, ``robustreid_<32 hex digits>``: an INT64 primary key ``row`` (the store's row,
which the SQLite metadata refers to) and a FLOAT_VECTOR ``vector``, metric IP (the cosine on unit vectors),
index FLAT (exact: Lite builds FLAT as brute force, and it is what the exact store answers), consistency level
Strong. An add inserts in batches of ``INSERT_BYTES`` and then flushes the collection (Milvus Lite searched an
unflushed collection far more slowly: 3.1 s per query at 20,000 x 1024 in the issue's measurement).

**The saved file is a pointer, and the atomic add still holds.** The vectors are in the engine, not in the
index folder, so ``save(path)`` writes a small JSON file (``vectors-<g>.milvus.json``): the URI (for Lite the
database's name relative to that file, so an index folder can be renamed or moved, as ``build_index`` does
with its temporary folder), the collection, the dimension and the **committed row count** ``count``. Every
generation's pointer names the same collection; rows below ``count`` never change once an add has committed
them. An add of ``m`` rows to a store of ``count`` rows (:meth:`SearchIndex.add
<robustreid.search.index.SearchIndex.add>` loads the current generation's pointer) first deletes every row
``>= count`` (what an earlier add killed before its commit left), inserts rows ``count .. count + m - 1``,
flushes, and the index then saves the pointer of generation ``g + 1`` with ``count + m`` and commits it in
SQLite. A search only returns rows below the pointer's count (a filter expression ``row < count``), and
``vector(row)`` refuses rows at or above it, so rows of an add killed at any point (before, during or after
its insert, or after its pointer was written) are never seen by a reader of generation ``g``, and the next add
removes them; its orphaned pointer file is removed like any orphaned vectors file.

Connections are made on first use and kept per URI in the process. After ``save`` a Lite database is closed
(its lock released: the folder may be renamed, or opened by another process); the next call reopens it, which
costs milliseconds. A store made with :func:`~robustreid.search.store.make_store` and used before any
``save`` (no index folder yet) lives in a temporary Lite database of the process (or on the server named by
``ROBUSTREID_MILVUS_URI``); its first ``save`` copies its rows to ``milvus.db`` beside the saved file.

The index never drops a collection (:meth:`MilvusStore.drop` is for benchmarks): removing an index folder
removes a Lite database with it, but a collection on a server stays until it is dropped
(``MilvusClient(uri).drop_collection(name)``, the name is in the pointer file). Copies of an index folder that
uses a server share its collection: add to one of them only.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..atomicfile import atomic_write
from .checks import check_k, check_row, check_vectors

__all__ = ["LITE_DB", "TOKEN_ENV", "URI_ENV", "MilvusStore", "is_lite", "release"]

URI_ENV = "ROBUSTREID_MILVUS_URI"
TOKEN_ENV = "ROBUSTREID_MILVUS_TOKEN"
LITE_DB = "milvus.db"
POINTER_FORMAT = "robustreid-milvus-store"
ROW, VECTOR = "row", "vector"
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_SERVER_SCHEMES = ("http", "https", "tcp")
_INSTALL = "pip install 'robustreid[milvus]'"


def _pymilvus():
    try:
        import pymilvus  # optional: robustreid[milvus]
    except ImportError:
        raise ModuleNotFoundError(f"the milvus store needs the optional package pymilvus: {_INSTALL}",
                                  name="pymilvus") from None
    return pymilvus


def _lite_server_manager():
    try:
        from milvus_lite.server_manager import server_manager_instance  # optional: robustreid[milvus]
    except ImportError:
        raise ModuleNotFoundError(f"the milvus store's embedded database needs the optional package "
                                  f"milvus-lite: {_INSTALL}", name="milvus_lite") from None
    return server_manager_instance


def is_lite(uri: str) -> bool:
    """A Milvus Lite database (a path ending in ``.db``), not a server URI."""
    return "://" not in uri and uri.endswith(".db")


def _check_uri(uri) -> str:
    """``uri`` as it is kept: a Lite path made absolute, or a server URI without credentials."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"Milvus URI {uri!r}: expected a Milvus Lite path ending in .db or a server URI "
                         "http://HOST:19530")
    if is_lite(uri):
        return os.path.abspath(uri)
    parts = urlsplit(uri)
    if parts.scheme not in _SERVER_SCHEMES or not parts.hostname:
        raise ValueError(f"Milvus URI {uri!r}: expected a Milvus Lite path ending in .db or a server URI "
                         "http://HOST:19530 (https:// and tcp:// too)")
    if parts.username or parts.password:
        shown = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
        raise ValueError(f"Milvus URI {shown}: credentials in the URI would be written into the index "
                         f"folder; give them in {TOKEN_ENV} instead")
    return uri


# ------------------------------------------------------------------------------------------- connections
class _Connection:
    def __init__(self, client):
        self.client = client
        self.loaded: set[str] = set()  # collections this connection has loaded (searchable)


_connections: dict[str, _Connection] = {}
_connections_lock = threading.Lock()


def _connection(uri: str) -> _Connection:
    """The process's connection to ``uri`` (made on first use)."""
    with _connections_lock:
        conn = _connections.get(uri)
        if conn is None:
            conn = _connections[uri] = _Connection(_connect(uri))
        return conn


def _connect(uri: str):
    pymilvus = _pymilvus()
    token = ""
    if is_lite(uri):
        _lite_server_manager()
        if not os.path.isdir(os.path.dirname(uri)):
            raise FileNotFoundError(f"{os.path.dirname(uri)}: no such folder (for the Milvus Lite database "
                                    f"{uri})")
        _check_lite_free(uri)
    else:
        token = os.environ.get(TOKEN_ENV, "")
    try:
        return pymilvus.MilvusClient(uri=uri, token=token)
    except Exception as err:  # pymilvus's own exceptions; a connection a user can fix, one line
        raise ConnectionError(f"{uri}: cannot connect to Milvus ({_first_line(err)})") from None


def _check_lite_free(uri: str) -> None:
    """One line, instead of milvus-lite's logged traceback, when another process has the database open
    (milvus-lite holds an exclusive ``flock`` on ``<db>/LOCK`` while it is open)."""
    lock = os.path.join(uri, "LOCK")
    if not os.path.isfile(lock):
        return
    with open(lock, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConnectionError(f"{uri}: this Milvus Lite database is open in another process (Milvus Lite "
                                  f"serves one process at a time; for a server and adds at once, build the "
                                  f"index on a Milvus server: {URI_ENV})") from None
        fcntl.flock(f, fcntl.LOCK_UN)


def release(uri: str) -> None:
    """Close the process's connection to ``uri``; for Milvus Lite also close the database (its lock)."""
    with _connections_lock:
        conn = _connections.pop(uri, None)
        if conn is not None:
            try:
                conn.client.close()
            except Exception:  # closing what may be half gone: nothing to report
                pass
        if is_lite(uri):
            try:
                manager = _lite_server_manager()
            except ModuleNotFoundError:
                return
            manager.release_server(uri)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


_temporary_dir: str | None = None


def _temporary_db() -> str:
    """The process's temporary Lite database (stores searched before their first save), removed at exit."""
    global _temporary_dir
    if _temporary_dir is None:
        _temporary_dir = tempfile.mkdtemp(prefix="robustreid-milvus-")
        atexit.register(_remove_temporary, _temporary_dir)
    return os.path.join(_temporary_dir, LITE_DB)


def _remove_temporary(folder: str) -> None:
    release(os.path.join(folder, LITE_DB))
    shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ store
class MilvusStore:
    """The index's vectors in a Milvus collection (module docstring): Milvus Lite or a server."""

    kind = "milvus"
    suffix = ".milvus.json"
    INDEX_TYPE = "FLAT"
    METRIC = "IP"
    INSERT_BYTES = 16 << 20  # vectors per insert call: well below a server's gRPC message limit
    READ_ROWS = 4096  # rows per query when reading them all back (a query returns at most 16,384)
    MAX_TOPK = 16384  # Milvus's limit on k (and on queries per search call)

    def __init__(self, dim: int, uri: str | None = None, collection: str | None = None, count: int = 0):
        """An empty store (``collection`` None: made at the first ``add`` or ``save``, on ``uri``, else on
        ``ROBUSTREID_MILVUS_URI``, else in ``milvus.db`` beside the first saved file), or one already in
        ``collection`` at ``uri`` of which rows ``0..count-1`` are committed."""
        _pymilvus()  # a missing package is said at once, not after an index's sequences were tracked
        self.dim = int(dim)
        self._uri = None if uri is None else _check_uri(uri)
        self._collection = collection
        self._count = int(count)
        self._temporary = False

    @property
    def uri(self) -> str | None:
        return self._uri

    @property
    def collection(self) -> str | None:
        return self._collection

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------------------------- the collection
    def _client(self, beside: Path | None = None):
        """The connection's client, the collection made (first use) and loaded (first use per process)."""
        if self._collection is None:
            self._create(beside)
        conn = _connection(self._uri)
        if self._collection not in conn.loaded:
            if not conn.client.has_collection(self._collection):
                raise ValueError(f"{self._uri}: no collection {self._collection} (this store's vectors; "
                                 "dropped, or another server?)")
            conn.client.load_collection(self._collection)
            conn.loaded.add(self._collection)
        return conn.client

    def _create(self, beside: Path | None) -> None:
        if self._uri is None:
            uri = os.environ.get(URI_ENV) or (str(beside / LITE_DB) if beside is not None else None)
            self._temporary = uri is None
            self._uri = _check_uri(uri if uri is not None else _temporary_db())
        pymilvus = _pymilvus()
        client = _connection(self._uri).client
        name = f"robustreid_{uuid.uuid4().hex}"
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ROW, pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        index = client.prepare_index_params()
        index.add_index(field_name=VECTOR, index_type=self.INDEX_TYPE, metric_type=self.METRIC)
        client.create_collection(name, schema=schema, consistency_level="Strong")
        # not waiting for the index of an empty collection (the wait asks for a timestamp Lite does not
        # serve, and its server logs a traceback for that)
        client.create_index(name, index, sync=False)
        self._collection = name

    # ------------------------------------------------------------------------------------------ the calls
    def add(self, vectors) -> None:
        v = check_vectors(vectors, self.dim)
        client = self._client()
        # rows at or above the committed count are what an add killed before its commit left (module docs)
        client.delete(self._collection, filter=f"{ROW} >= {self._count}")
        step = max(1, self.INSERT_BYTES // (4 * self.dim))
        for start in range(0, len(v), step):
            block = v[start:start + step]
            client.insert(self._collection, [{ROW: self._count + start + i, VECTOR: row}
                                             for i, row in enumerate(block)])
        if len(v):
            client.flush(self._collection)
        self._count += len(v)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = check_vectors(queries, self.dim), check_k(k)
        k = min(k, len(self), self.MAX_TOPK)
        scores = np.full((len(q), k), -np.inf, np.float32)  # a row Milvus leaves out: -1, as FAISS pads
        rows = np.full((len(q), k), -1, np.int64)
        if k == 0 or not len(q):
            return scores, rows
        client = self._client()
        for start in range(0, len(q), self.MAX_TOPK):
            result = client.search(self._collection, data=q[start:start + self.MAX_TOPK], limit=k,
                                   filter=f"{ROW} < {self._count}", output_fields=[ROW], anns_field=VECTOR,
                                   search_params={"metric_type": self.METRIC})
            for i, hits in enumerate(result):
                for j, hit in enumerate(hits[:k]):
                    rows[start + i, j], scores[start + i, j] = int(hit.id), float(hit.distance)
        return scores, rows

    def vector(self, row: int) -> np.ndarray:
        row = check_row(row, len(self))
        got = self._client().get(self._collection, ids=[row], output_fields=[VECTOR])
        if not got:
            raise ValueError(f"{self._uri}: row {row} is missing from collection {self._collection} "
                             f"(expected rows 0..{len(self) - 1})")
        return np.asarray(got[0][VECTOR], dtype=np.float32)

    @property
    def vectors(self) -> np.ndarray:
        """Every committed row, in row order (read back in chunks)."""
        out = np.empty((len(self), self.dim), np.float32)
        if not len(self):
            return out
        client, seen = self._client(), 0
        for start in range(0, len(self), self.READ_ROWS):
            stop = min(start + self.READ_ROWS, len(self))
            for item in client.query(self._collection, filter=f"{ROW} >= {start} and {ROW} < {stop}",
                                     output_fields=[ROW, VECTOR], limit=stop - start):
                out[int(item[ROW])] = item[VECTOR]
                seen += 1
        if seen != len(self):
            raise ValueError(f"{self._uri}: collection {self._collection} holds {seen} of the rows "
                             f"0..{len(self) - 1}")
        return out

    def drop(self) -> None:
        """Drop this store's collection from the engine (benchmarks; nothing in the index drops one)."""
        if self._collection is not None:
            _connection(self._uri).client.drop_collection(self._collection)
            self._collection, self._count = None, 0

    def save(self, path) -> Path:
        """Write the pointer file (module docstring) atomically; a Lite database is closed after it."""
        path = Path(path)
        if self._collection is None:
            self._client(beside=path.parent)  # a new store: its collection is made now
        elif self._temporary:
            self._move(os.environ.get(URI_ENV) or str(path.parent / LITE_DB))
        uri = self._uri
        if is_lite(uri) and os.path.dirname(uri) == os.path.abspath(path.parent):
            uri = os.path.basename(uri)  # relative: the index folder may be renamed or moved
        pointer = {"format": POINTER_FORMAT, "version": 1, "uri": uri, "collection": self._collection,
                   "dim": self.dim, "count": self._count, "metric": self.METRIC, "index": self.INDEX_TYPE}
        out = atomic_write(path, lambda f: f.write((json.dumps(pointer, indent=1) + "\n").encode()))
        if is_lite(self._uri):
            release(self._uri)
        return out

    def _move(self, uri: str) -> None:
        """Copy the rows of a store in the temporary database to a new collection at ``uri``."""
        rows, old_uri, old_name = self.vectors, self._uri, self._collection
        self._uri, self._collection, self._count, self._temporary = _check_uri(uri), None, 0, False
        self.add(rows)
        _connection(old_uri).client.drop_collection(old_name)

    @classmethod
    def load(cls, path) -> MilvusStore:
        """The store a pointer file names (nothing is connected until the first call that needs it)."""
        path = Path(path)
        try:
            pointer = json.loads(path.read_text())
        except UnicodeDecodeError as err:
            raise ValueError(f"not UTF-8 JSON ({err.reason})") from None
        if not isinstance(pointer, dict) or pointer.get("format") != POINTER_FORMAT:
            raise ValueError(f"expected a JSON object with \"format\": \"{POINTER_FORMAT}\"")
        uri, name, dim, count = (pointer.get(key) for key in ("uri", "collection", "dim", "count"))
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"uri {uri!r}: expected a Milvus URI or a Lite database name")
        if not isinstance(name, str) or not _COLLECTION.match(name):
            raise ValueError(f"collection {name!r}: expected a Milvus collection name")
        for key, value, low in (("dim", dim, 1), ("count", count, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} {value!r}: expected an integer >= {low}")
        if is_lite(uri) and not os.path.isabs(uri):
            uri = str(path.parent / uri)
        return cls(dim, uri=uri, collection=name, count=count)
