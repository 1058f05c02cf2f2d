"""Atomic writes: all or nothing under the final name, the folder synced, leftovers of killed writers removed."""

import os
import subprocess
import sys

import pytest

from robustreid import atomicfile
from robustreid.atomicfile import TEMP_PREFIX, atomic_write, remove_stale_temp_files, write_text


def test_round_trip_and_no_temp_left(tmp_path):
    path = write_text(tmp_path / "sub" / "a.txt", "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(atomicfile.os, "fsync", lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")), real(fd)))
    write_text(tmp_path / "a.txt", "x")
    assert synced[-1] == os.path.realpath(tmp_path)  # the folder, after the file itself
    assert len(synced) == 2


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"{TEMP_PREFIX}last.pt-{dead_pid}-0123abcd"
    live = tmp_path / f"{TEMP_PREFIX}best.pt-{os.getpid()}-89abcdef"
    other = tmp_path / f"{TEMP_PREFIX}notes"  # not our naming scheme: left alone
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_stale_temp_files_of_one_target_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    mine = tmp_path / f"{TEMP_PREFIX}f.npz-{dead_pid}-0123abcd"
    other = tmp_path / f"{TEMP_PREFIX}g.npz-{dead_pid}-0123abcd"  # another target's: kept when one is named
    lookalike = tmp_path / f"{TEMP_PREFIX}f.npz-{dead_pid}-notours!"  # not 8 hex digits: not our pattern
    for p in (mine, other, lookalike):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path, name="f.npz") == [mine]
    assert other.exists() and lookalike.exists()
    assert remove_stale_temp_files(tmp_path) == [other] and lookalike.exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []  # a folder not made yet holds nothing


def test_stale_temp_folders_only_when_asked(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f"{TEMP_PREFIX}idx-{int(dead.stdout)}-0123abcd"
    live = tmp_path / f"{TEMP_PREFIX}idx-{os.getpid()}-89abcdef"  # a build still running (this process)
    (stale / "thumbs").mkdir(parents=True)
    (stale / "thumbs" / "a.jpg").write_bytes(b"x")
    live.mkdir()
    assert remove_stale_temp_files(tmp_path) == [] and stale.is_dir()  # files only, as before
    assert remove_stale_temp_files(tmp_path, name="other", folders=True) == [] and stale.is_dir()
    assert remove_stale_temp_files(tmp_path, name="idx", folders=True) == [stale]
    assert not stale.exists() and live.is_dir()


def test_temp_path_follows_the_pattern(tmp_path):
    a, b = atomicfile.temp_path(tmp_path / "x.npy"), atomicfile.temp_path(tmp_path / "x.npy")
    assert a != b and a.parent == tmp_path and a.name.startswith(f"{TEMP_PREFIX}x.npy-{os.getpid()}-")
    a.write_bytes(b"")
    assert remove_stale_temp_files(tmp_path) == [] and a.exists()  # this process is alive: kept
