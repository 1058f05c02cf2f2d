"""The tracklet index (robustreid.search.index, .build): answers on a hand-made index, atomic adds under a
raise and a real kill, entries from a tiny tracked scene and from crops."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from search_cases import (
    COLOURS,
    colour_embedder,
    colour_index,
    colour_sources,
    expected_order,
    query_crop,
    write_tiny_scene,
)

from robustreid.search.build import crop_tracklets, expand_sequences, sequence_tracklets
from robustreid.search.embedding import load_embedder, normalize_rows
from robustreid.search.index import SearchIndex, SourceTracklets, Tracklet, create_index, open_index
from robustreid.search.query import decode_image, search_image

ROOT = Path(__file__).resolve().parents[1]
VECTORS = normalize_rows(list(COLOURS.values()))


def disk_state(folder: Path) -> dict:
    """What an add may change: the files (names and bytes) and every table's rows (after opening the index,
    which removes what a killed add left)."""
    index = open_index(folder)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != ".lock"}
    with index._read() as con:
        tables = {t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                  for t in ("meta", "cameras", "sources", "tracklets")}
    return {"files": files, "tables": {t: [tuple(r) for r in rows] for t, rows in tables.items()}}


def one_more_source(name: str = "cam3") -> SourceTracklets:
    t = Tracklet(camera=name, first_frame=1, last_frame=2, first_time=0.0, last_time=0.1,
                 boxes=np.array([[1, 0, 0, 10, 20], [2, 1, 0, 10, 20]]), thumbnail=b"\xff\xd8jpeg",
                 track_id=7)
    return SourceTracklets(path=f"/made/up/{name}", kind="sequence", tracklets=[t],
                           vectors=normalize_rows([[0.0, 0.6, 0.8]]), frame_rate=10.0, camera=name)


@pytest.mark.parametrize("store", ["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf"])
def test_search_finds_the_computable_order(tmp_path, store):
    if store != "exact":
        pytest.importorskip("faiss", reason="faiss-cpu is not installed (robustreid[faiss])")
    index = colour_index(tmp_path / "idx", store=store)
    vectors = VECTORS
    for query in [(1, 0, 0), (0.1, 0.2, 1.0), (0.5, 0.5, 0.0)]:
        hits = index.search(normalize_rows([query]), k=5)[0]
        order = expected_order(query, vectors)
        if store == "exact":  # ties (equal scores) in row order
            assert [h.tracklet_id - 1 for h in hits] == order
        scores = vectors @ normalize_rows([query])[0]  # any store: the same scores rank by rank
        np.testing.assert_allclose([1 - h.distance for h in hits], scores[order], atol=1e-5)
        np.testing.assert_allclose([scores[h.tracklet_id - 1] for h in hits], scores[order], atol=1e-5)
    hit = index.search(normalize_rows([(1, 0, 0)]), k=1)[0][0]
    summary = (hit.camera, hit.label, hit.first_frame, hit.last_frame, hit.distance)
    assert summary == ("cam1", "red", 1, 6, 0.0)
    info = index.info()
    assert info["tracklets"] == 5 and [(c["name"], c["tracklets"]) for c in info["cameras"]] == [
        ("cam1", 3), ("cam2", 2)]
    assert index.tracklet(999) is None and index.thumbnail_path(999) is None
    assert index.thumbnail_path(1).read_bytes()[:2] == b"\xff\xd8"
    np.testing.assert_allclose(index.vector(4), VECTORS[3], atol=1e-6)
    index.add([one_more_source()])  # a second generation of the same store kind
    assert open_index(tmp_path / "idx").search(normalize_rows([(0, 0.6, 0.8)]), k=1)[0][0].camera == "cam3"


def test_add_refuses_a_source_twice_and_other_dimensions_writing_nothing(tmp_path):
    index = colour_index(tmp_path / "idx")
    before = disk_state(tmp_path / "idx")
    with pytest.raises(ValueError, match="/made/up/cam1: already in the index"):
        index.add([colour_sources()[0]])
    bad = one_more_source()
    bad.vectors = np.ones((1, 5), np.float32)
    with pytest.raises(ValueError, match=r"descriptors of shape \(1, 5\), the index expects \(1, 3\)"):
        index.add([bad])
    assert disk_state(tmp_path / "idx") == before
    with pytest.raises(ValueError, match="idx holds an index; build into a new folder"):
        colour_index(tmp_path / "idx")


@pytest.mark.parametrize("stage", ["thumbnails", "vectors", "committed"])
def test_an_add_that_fails_midway_leaves_the_index_as_it_was(tmp_path, stage):
    folder = tmp_path / "idx"
    index = colour_index(folder)
    before = disk_state(folder)

    def fail(name):
        if name == stage:
            raise KeyboardInterrupt  # what Ctrl-C does at that point
    with pytest.raises(KeyboardInterrupt):
        index.add([one_more_source()], on_stage=fail)
    reopened = open_index(folder)  # removes what the failed add left
    if stage == "committed":  # the commit happened: the add is complete, the old vectors file is an orphan
        assert len(reopened) == 6
        assert sorted(p.name for p in folder.glob("vectors-*")) == ["vectors-000002.npy"]
    else:
        assert disk_state(folder) == before
    result = reopened.add([one_more_source("cam4")])  # the next add works
    assert result["tracklets"] == 1 and len(open_index(folder)) == (7 if stage == "committed" else 6)
    assert len(reopened.store()) == len(reopened)


def add_killed_at(folder, stage: str = "vectors") -> subprocess.CompletedProcess:
    """``one_more_source()`` added to the index in ``folder`` by a child process that SIGKILLs itself when the
    add reaches ``stage``."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_search_index import one_more_source
        from robustreid.search.index import open_index
        def kill(stage):
            if stage == {stage!r}:
                os.kill(os.getpid(), signal.SIGKILL)
        open_index({str(folder)!r}).add([one_more_source()], on_stage=kill)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120,
                          check=False)


def test_a_killed_add_leaves_the_index_as_it_was(tmp_path):
    folder = tmp_path / "idx"
    colour_index(folder)
    before = disk_state(folder)
    proc = add_killed_at(folder, "vectors")
    assert proc.returncode == -9, proc.stderr.decode()
    # killed midway: the new generation's files are there
    assert (folder / "vectors-000002.npy").is_file() and (folder / "thumbs" / "000002").is_dir()
    assert disk_state(folder) == before  # opening removed the orphans; the database never saw the add
    assert not (folder / "vectors-000002.npy").exists()
    assert open_index(folder).add([one_more_source()])["tracklets"] == 1
    assert len(open_index(folder)) == 6


def test_a_tracked_scene_gives_one_entry_per_person_and_camera(tmp_path):
    scene = write_tiny_scene(tmp_path / "scene")
    cams = expand_sequences([scene])
    assert [name for name, _ in cams] == ["cam1", "cam2"]
    embed = load_embedder("histogram")
    sources = [sequence_tracklets(folder, name, embed) for name, folder in cams]
    assert [len(s.tracklets) for s in sources] == [2, 2]
    for s in sources:
        assert s.vectors.shape == (2, embed.dim)
        np.testing.assert_allclose(np.linalg.norm(s.vectors, axis=1), 1.0, atol=1e-5)
        for t in s.tracklets:
            assert t.thumbnail[:2] == b"\xff\xd8" and t.last_frame == 8 and t.last_time == pytest.approx(0.7)
    index = create_index(tmp_path / "idx", checkpoint=embed.name, dim=embed.dim)
    index.add(sources)
    for pid in (1, 2):
        image = decode_image(query_crop(tmp_path / f"q{pid}.png", pid).read_bytes())
        hits = search_image(index, embed, image, k=4)
        top_two = {(h.camera, index.tracklet(h.tracklet_id)["boxes"][0][2]) for h in hits[:2]}
        assert top_two == {("cam1", 8.0 if pid == 1 else 50.0), ("cam2", 8.0 if pid == 1 else 50.0)}  # its y


def test_crops_give_one_entry_each_and_a_wrong_name_is_refused(tmp_path):
    from PIL import Image

    crops = tmp_path / "crops"
    crops.mkdir()
    for name, colour in [("0001_c1s1_000100_00.jpg", "red"), ("0001_c2s1_000200_00.jpg", "orange"),
                         ("0002_c1s1_000300_00.jpg", "blue")]:
        Image.fromarray(np.full((32, 16, 3), np.array(COLOURS[colour]) * 255, np.uint8)).save(crops / name)
    sources = crop_tracklets(crops, colour_embedder())
    assert [(s.camera, len(s.tracklets)) for s in sources] == [("c1", 2), ("c2", 1)]
    first = sources[0].tracklets[0]
    assert first.label == "0001_c1s1_000100_00.jpg" and first.first_frame == 100
    (crops / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="holiday.jpg: expected a Market1501-style name"):
        crop_tracklets(crops, colour_embedder())


def test_an_index_refuses_an_embedder_it_was_not_built_with():
    from robustreid.search.embedding import Embedder, check_matches

    meta = {"dim": 3, "checkpoint": "zoo:robustreid_1x", "model_sha256": "a" * 64}
    check_matches(Embedder("zoo:robustreid_1x", 3, np.asarray, "a" * 64), meta, "idx")
    with pytest.raises(ValueError, match=r"idx: built with zoo:robustreid_1x of sha256 aaaaaaaaaaaa\.\.\., "
                                         r"the shipped weights are now bbbbbbbbbbbb\.\.\.; rebuild"):
        check_matches(Embedder("zoo:robustreid_1x", 3, np.asarray, "b" * 64), meta, "idx")
    with pytest.raises(ValueError, match="idx: holds 3-d descriptors of zoo:robustreid_1x, the embedder x"):
        check_matches(Embedder("x", 4, np.asarray), meta, "idx")


def test_a_build_removes_what_a_killed_build_left(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".tmp-idx-{dead}-0123abcd"
    (stale / "thumbs").mkdir(parents=True)
    live = tmp_path / f".tmp-idx-{os.getpid()}-0123abcd"  # a build still running (this process): kept
    live.mkdir()
    colour_index(tmp_path / "idx")
    assert not stale.exists() and live.is_dir() and len(open_index(tmp_path / "idx")) == 5


def stale_first_read(monkeypatch, stale: dict) -> list:
    """``SearchIndex._read_meta`` answers ``stale`` at its first call (the meta read just before an add
    committed), the database's meta after; returns the list of calls."""
    real, calls = SearchIndex._read_meta, []

    def read_meta(self):
        calls.append(self)
        return dict(stale) if len(calls) == 1 else real(self)
    monkeypatch.setattr(SearchIndex, "_read_meta", read_meta)
    return calls


def test_opening_never_removes_the_files_of_an_add_committed_meanwhile(tmp_path, monkeypatch):
    folder = tmp_path / "idx"
    stale = colour_index(folder).meta
    open_index(folder).add([one_more_source()])  # generation 2: vectors-000002.npy is the live file
    calls = stale_first_read(monkeypatch, stale)
    opened = open_index(folder)  # its first meta read saw generation 1; the cleanup must not trust it
    assert len(calls) >= 2 and (folder / "vectors-000002.npy").is_file()
    assert opened.meta["generation"] == 2
    monkeypatch.undo()
    assert len(open_index(folder).store()) == 6


def test_a_reader_whose_vectors_file_an_add_removed_loads_the_new_one(tmp_path, monkeypatch):
    folder = tmp_path / "idx"
    reader = colour_index(folder)
    stale = dict(reader.meta)
    open_index(folder).add([one_more_source()])  # removes vectors-000001.npy after its commit
    assert not (folder / stale["vectors_file"]).exists()
    calls = stale_first_read(monkeypatch, stale)
    assert len(reader.store()) == 6 and len(calls) == 2  # FileNotFoundError, meta read again, new file
    hit = reader.search(normalize_rows([(0, 0.6, 0.8)]), k=1)[0][0]
    assert hit.camera == "cam3"


def test_a_read_only_index_is_searched_without_cleanup(tmp_path, monkeypatch):
    from robustreid.search import index as index_module

    folder = tmp_path / "idx"
    colour_index(folder)
    (folder / ".lock").unlink()
    orphan = folder / "vectors-000009.npy"  # what a killed add left; nobody may remove it here
    orphan.write_bytes(b"x")
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    if os.geteuid() == 0:  # root writes through chmod: the lock file's open fails as it would for a user
        def no_lock(path, *args, **kwargs):
            if Path(path).name == ".lock":
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, *args, **kwargs)
        monkeypatch.setattr(index_module, "open", no_lock, raising=False)
    try:
        index = open_index(folder)
        assert index.info()["tracklets"] == 5 and orphan.exists()
        assert index.search(normalize_rows([(1, 0, 0)]), k=1)[0][0].label == "red"
        np.testing.assert_array_equal(index.vector(4), VECTORS[3])
        assert index.thumbnail_path(1).is_file()
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_changed_checkpoint_file_is_refused(tmp_path, monkeypatch):
    import hashlib

    import robustreid.evaluate
    from robustreid.search.embedding import check_matches

    class FakeExtractor:
        feature_dim = 3

        def __init__(self, name, **kwargs):
            self.name = name

        def __call__(self, images):
            return np.ones((len(images), 3))

    monkeypatch.setattr(robustreid.evaluate, "FeatureExtractor", FakeExtractor)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights one")
    built = load_embedder(str(checkpoint))
    assert built.model_sha256 == hashlib.sha256(b"weights one").hexdigest()
    meta = {"dim": 3, "checkpoint": built.name, "model_sha256": built.model_sha256}
    check_matches(load_embedder(str(checkpoint)), meta, "idx")
    checkpoint.write_bytes(b"weights two")
    with pytest.raises(ValueError, match=r"idx: built with .*model\.pt of sha256 [0-9a-f]{12}\.\.\., the "
                                         r"checkpoint file is now [0-9a-f]{12}\.\.\.; rebuild the index"):
        check_matches(load_embedder(str(checkpoint)), meta, "idx")
