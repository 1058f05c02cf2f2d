"""The milvus vector store (robustreid.search.milvus_store) on Milvus Lite, with the exact store as the
independent reference: the same answers, rows as added, the pointer file, a killed add, the index and the
command line with --store milvus, and the one-line errors (a missing package, a locked database, a URI)."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from search_cases import COLOURS, colour_index, expected_order, query_crop, write_tiny_scene
from test_search_index import add_killed_at, one_more_source

from robustreid.search.embedding import normalize_rows
from robustreid.search.index import open_index
from robustreid.search.store import STORES, load_store, make_store

pytest.importorskip("pymilvus", reason="pymilvus is not installed (robustreid[milvus])")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (robustreid[milvus])")

from robustreid.search import milvus_store  # noqa: E402
from robustreid.search.milvus_store import URI_ENV, MilvusStore  # noqa: E402

INSTALL = "pip install 'robustreid[milvus]'"
VECTORS = normalize_rows(list(COLOURS.values()))


@pytest.fixture(autouse=True)
def no_server_from_the_environment(monkeypatch):
    monkeypatch.delenv(URI_ENV, raising=False)  # every store here is in a Lite database under tmp_path


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).standard_normal((n, dim)))


def exact_store(vectors: np.ndarray):
    store = make_store("exact", vectors.shape[1])
    store.add(vectors)
    return store


def count_rows(store: MilvusStore) -> int:
    """Rows in the collection, committed or not (the engine's count, not the store's)."""
    client = store._client()  # connected and loaded
    return int(client.query(store.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_same_top_k_rows_and_scores_as_the_exact_store(tmp_path):
    vectors, queries = unit_vectors(600, 16), unit_vectors(20, 16, seed=1)
    store = MilvusStore(16, uri=str(tmp_path / "m.db"))
    store.add(vectors[:250])
    store.add(vectors[250:])  # two adds: rows continue
    assert len(store) == 600
    for k in (1, 10):
        scores, rows = store.search(queries, k)
        want_scores, want_rows = exact_store(vectors).search(queries, k)
        assert rows.shape == scores.shape == (20, k) and scores.dtype == np.float32 and rows.dtype == np.int64
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    _, rows = store.search(queries[:1], 1000)  # k beyond the rows: all of them, as the exact store
    assert sorted(rows[0].tolist()) == list(range(600))
    empty = MilvusStore(16, uri=str(tmp_path / "m.db"))
    assert empty.search(queries, 5)[1].shape == (20, 0)
    with pytest.raises(ValueError, match="expected 16 columns"):
        store.add(np.ones((2, 3)))
    with pytest.raises(ValueError, match="k=0"):
        store.search(queries, 0)


def test_a_stored_row_is_the_row_added(tmp_path):
    vectors = unit_vectors(50, 8, seed=2)
    store = MilvusStore(8, uri=str(tmp_path / "m.db"))
    store.add(vectors)
    exact = exact_store(vectors)
    for row in (0, 17, 49):
        assert store.vector(row).dtype == np.float32
        np.testing.assert_array_equal(store.vector(row), exact.vector(row))
    np.testing.assert_array_equal(store.vectors, vectors)
    for bad in (-1, 50, True):
        with pytest.raises(IndexError, match="rows 0..49"):
            store.vector(bad)


def test_save_writes_a_pointer_and_load_gives_the_same_answers(tmp_path):
    vectors, queries = unit_vectors(200, 8, seed=3), unit_vectors(5, 8, seed=4)
    store = make_store("milvus", 8)  # no folder yet: a temporary database until the first save
    store.add(vectors)
    folder = tmp_path / "a"
    folder.mkdir()
    path = store.save(folder / f"v{STORES['milvus'].suffix}")
    pointer = json.loads(path.read_text())
    assert path.name == "v.milvus.json" and (folder / "milvus.db").is_dir()  # rows copied beside it
    assert {k: pointer[k] for k in ("uri", "dim", "count", "metric", "index")} == {
        "uri": "milvus.db", "dim": 8, "count": 200, "metric": "IP", "index": "FLAT"}
    again = load_store("milvus", path)
    assert len(again) == 200 and again.dim == 8 and again.collection == pointer["collection"]
    np.testing.assert_array_equal(again.search(queries, 5)[1], exact_store(vectors).search(queries, 5)[1])
    milvus_store.release(again.uri)  # closed (as after a save): the folder can move,
    folder.rename(tmp_path / "b")  # and the Lite database is named relative to the pointer
    moved = load_store("milvus", tmp_path / "b" / path.name)
    assert moved.uri == str(tmp_path / "b" / "milvus.db")
    np.testing.assert_array_equal(moved.vectors, vectors)
    (tmp_path / "bad.milvus.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.milvus.json: not a readable milvus vector file"):
        load_store("milvus", tmp_path / "bad.milvus.json")
    with pytest.raises(FileNotFoundError):
        load_store("milvus", tmp_path / "missing.milvus.json")


def test_rows_of_an_add_that_never_committed_are_not_seen_and_are_replaced(tmp_path):
    """A killed add, at the store: it inserted rows at and above the committed count, but the pointer with
    the new count was never committed. Readers of the committed pointer never see them; the next add
    deletes them and reuses their row numbers."""
    old, lost, new = unit_vectors(100, 8, seed=5), unit_vectors(50, 8, seed=6), unit_vectors(30, 8, seed=7)
    store = MilvusStore(8, uri=str(tmp_path / "m.db"))
    store.add(old)
    committed = store.save(tmp_path / "g1.milvus.json")
    killed = load_store("milvus", committed)
    killed.add(lost)  # rows 100..149, flushed; its pointer is never committed
    assert count_rows(killed) == 150

    reader = load_store("milvus", committed)
    assert len(reader) == 100
    scores, rows = reader.search(lost, 10)
    assert rows.max() < 100 and scores.max() < 0.999  # none of the lost rows, though each is a perfect match
    np.testing.assert_array_equal(rows, exact_store(old).search(lost, 10)[1])
    with pytest.raises(IndexError, match="rows 0..99"):
        reader.vector(120)

    writer = load_store("milvus", committed)  # the next add, from the committed pointer
    writer.add(new)
    assert len(writer) == 130 and count_rows(writer) == 130  # the lost rows are gone, 100..129 reused
    scores, rows = writer.search(new[:3], 1)
    assert rows[:, 0].tolist() == [100, 101, 102] and np.allclose(scores, 1.0, atol=1e-5)
    np.testing.assert_array_equal(writer.vector(100), new[0])
    everything = np.concatenate([old, new])
    np.testing.assert_array_equal(writer.search(lost, 10)[1], exact_store(everything).search(lost, 10)[1])


def test_the_index_builds_searches_and_adds_with_the_milvus_store(tmp_path):
    folder = tmp_path / "idx"
    index = colour_index(folder, store="milvus")
    assert index.info()["store"] == "milvus"
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == [
        "index.sqlite", "milvus.db", "thumbs", "vectors-000001.milvus.json"]
    for query in [(1, 0, 0), (0.1, 0.2, 1.0), (0.5, 0.5, 0.0)]:
        hits = index.search(normalize_rows([query]), k=5)[0]
        order = expected_order(query, VECTORS)
        scores = VECTORS @ normalize_rows([query])[0]
        np.testing.assert_allclose([1 - h.distance for h in hits], scores[order], atol=1e-5)
        np.testing.assert_allclose([scores[h.tracklet_id - 1] for h in hits], scores[order], atol=1e-5)
    np.testing.assert_allclose(index.vector(4), VECTORS[3], atol=1e-6)
    index.add([one_more_source()])  # generation 2: the same collection, the count 6
    assert sorted(p.name for p in folder.glob("vectors-*")) == ["vectors-000002.milvus.json"]
    reopened = open_index(folder)
    assert len(reopened.store()) == len(reopened) == 6
    assert reopened.search(normalize_rows([(0, 0.6, 0.8)]), k=1)[0][0].camera == "cam3"


def test_a_killed_add_leaves_the_index_usable_and_the_next_add_works(tmp_path):
    """SIGKILL after the new rows were inserted and flushed and the new pointer written, before the commit."""
    folder = tmp_path / "idx"
    colour_index(folder, store="milvus")
    query = normalize_rows([(0, 0.6, 0.8)])  # the killed add's vector: a perfect match if it were seen
    before = [(h.tracklet_id, round(h.distance, 5)) for h in open_index(folder).search(query, k=5)[0]]
    milvus_store.release(str(folder / "milvus.db"))  # Lite serves one process: let the child open it
    proc = add_killed_at(folder, "vectors")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert (folder / "vectors-000002.milvus.json").is_file()  # killed after its pointer was written
    index = open_index(folder)  # removes the orphaned pointer
    assert sorted(p.name for p in folder.glob("vectors-*")) == ["vectors-000001.milvus.json"]
    assert len(index) == len(index.store()) == 5
    assert count_rows(index.store()) == 6  # the killed add's row is in the engine, but not seen:
    assert [(h.tracklet_id, round(h.distance, 5)) for h in index.search(query, k=5)[0]] == before
    assert index.add([one_more_source("cam4")])["tracklets"] == 1  # deletes it and takes its row number
    assert count_rows(index.store()) == len(index) == 6
    hit = open_index(folder).search(query, k=1)[0][0]
    assert (hit.camera, round(hit.distance, 5)) == ("cam4", 0.0)


def test_the_command_line_gives_the_exact_stores_answers(tmp_path, capsys):
    from robustreid.cli import main

    scene = write_tiny_scene(tmp_path / "scene")
    query = query_crop(tmp_path / "q.png", 2)
    answers = {}
    for store in ("exact", "milvus"):
        out = tmp_path / store
        assert main(["index", "build", str(out), "--histogram", "--sequences", str(scene / "cam1"),
                     "--store", store]) == 0
        assert main(["index", "add", str(out), "--sequences", str(scene / "cam2")]) == 0
        capsys.readouterr()
        assert main(["search", str(out), str(query), "--k", "4", "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        answers[store] = [(h["tracklet_id"], h["camera"], round(h["distance"], 4)) for h in hits]
    assert len(answers["exact"]) == 4 and answers["milvus"] == answers["exact"]
    assert (tmp_path / "milvus" / "milvus.db").is_dir()


def test_the_server_uri_comes_from_the_environment_and_carries_no_credentials(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "engine.db"  # a Lite path stands in for a server here
    shared.parent.mkdir()
    monkeypatch.setenv(URI_ENV, str(shared))
    index = colour_index(tmp_path / "idx", store="milvus")
    pointer = json.loads((tmp_path / "idx" / "vectors-000001.milvus.json").read_text())
    assert pointer["uri"] == str(shared) and not (tmp_path / "idx" / "milvus.db").exists()
    monkeypatch.delenv(URI_ENV)  # an index keeps the URI it was built with
    assert index.search(VECTORS[:1], k=1)[0][0].label == "red"
    with pytest.raises(ValueError, match=r"^Milvus URI http://milvus.example:19530: credentials") as err:
        MilvusStore(4, uri="http://user:secret@milvus.example:19530")
    assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="expected a Milvus Lite path ending in .db or a server URI"):
        MilvusStore(4, uri="ftp://milvus.example")


def test_a_database_open_in_another_process_is_one_line(tmp_path):
    store = MilvusStore(4, uri=str(tmp_path / "m.db"))
    store.add(np.eye(4, dtype=np.float32))
    store.save(tmp_path / "v.milvus.json")  # closes the database
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(tmp_path / "m.db" / "LOCK")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConnectionError, match=r"m\.db: this Milvus Lite database is open in another "):
            load_store("milvus", tmp_path / "v.milvus.json").search(np.eye(4)[:1], 1)
    finally:
        holder.communicate("", timeout=30)
    assert load_store("milvus", tmp_path / "v.milvus.json").search(np.eye(4)[:1], 1)[1].tolist() == [[0]]


def test_a_missing_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from robustreid.cli import _one_line

    monkeypatch.setitem(sys.modules, "pymilvus", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'robustreid\[milvus\]'") as err:
        make_store("milvus", 4)
    assert _one_line(err.value) == f"this needs the optional package pymilvus: {INSTALL}"
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "milvus_lite.server_manager", None)
    with pytest.raises(ModuleNotFoundError, match=r"milvus-lite: pip install 'robustreid\[milvus\]'") as err:
        MilvusStore(4, uri=str(tmp_path / "new.db")).add(np.eye(4))
    assert _one_line(err.value) == f"this needs the optional package milvus_lite: {INSTALL}"
