"""The person-search commands (robustreid index build|add|info, search, serve): a tiny scene end to end with
the colour histogram, and every input a user can get wrong as one line with exit status 2."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from search_cases import query_crop, write_tiny_camera, write_tiny_scene

from robustreid.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *texts):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robustreid "), err
    for text in texts:
        assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of cam1 (cam2 added by a test) of the tiny scene, built with the colour histogram."""
    root = tmp_path_factory.mktemp("cli")
    scene = write_tiny_scene(root / "scene")
    code = main(["index", "build", str(root / "idx"), "--histogram", "--sequences", str(scene / "cam1")])
    assert code == 0
    return root


def test_build_info_add_and_search(built, capsys):
    code, out, _ = run(capsys, "index", "info", built / "idx", "--json")
    info = json.loads(out)
    assert code == 0 and info["tracklets"] == 2 and [c["name"] for c in info["cameras"]] == ["cam1"]
    assert info["checkpoint"] == "histogram:rgb_hist_centre_gw"
    code, out, err = run(capsys, "index", "add", built / "idx", "--sequences", built / "scene" / "cam2")
    assert code == 0 and json.loads(out)["cameras"] == {"cam1": 2, "cam2": 2} and "index cam2" in err
    code, out, _ = run(capsys, "index", "info", built / "idx")
    assert code == 0 and "cam2" in out and "2 tracklets" in out
    query = query_crop(built / "q.png", 2)
    code, out, _ = run(capsys, "search", built / "idx", query, "--k", "3", "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 3 and {h["camera"] for h in hits[:2]} == {"cam1", "cam2"}
    assert hits[0]["distance"] < 0.5 < hits[2]["distance"]
    code, out, _ = run(capsys, "search", built / "idx", query, "--k", "2")
    assert code == 0 and len(out.splitlines()) == 3 and "distance" in out.splitlines()[0]


def test_mistakes_are_one_line_with_status_2(built, tmp_path, capsys):
    query = query_crop(tmp_path / "q.png", 1)
    one_line_error(*run(capsys, "index", "info", tmp_path / "nowhere")[::2], "nowhere: no such index folder")
    one_line_error(*run(capsys, "search", tmp_path / "nowhere", query)[::2], "no such index folder")
    one_line_error(*run(capsys, "search", tmp_path, query)[::2], "index.sqlite: missing")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    one_line_error(*run(capsys, "search", built / "idx", tmp_path / "bad.jpg")[::2],
                   "bad.jpg: not a readable image")
    one_line_error(*run(capsys, "search", built / "idx", tmp_path / "missing.jpg")[::2], "missing.jpg")
    one_line_error(*run(capsys, "search", built / "idx", query, "--k", "0")[::2], "k=0")
    one_line_error(*run(capsys, "index", "build", built / "idx", "--histogram", "--sequences",
                        built / "scene")[::2], "already holds an index", "index add")
    one_line_error(*run(capsys, "index", "build", tmp_path / "new", "--histogram", "--sequences",
                        tmp_path / "noseq")[::2], "noseq: no such sequence folder")
    assert not (tmp_path / "new").exists()
    one_line_error(*run(capsys, "index", "build", tmp_path / "new", "--checkpoint", tmp_path / "none.pt",
                        "--sequences", built / "scene")[::2], "none.pt: no such checkpoint")
    one_line_error(*run(capsys, "index", "add", built / "idx", "--sequences", built / "scene" / "cam1")[::2],
                   "cam1: already in the index")
    one_line_error(*run(capsys, "index", "add", built / "idx", "--crops", tmp_path / "nocrops")[::2],
                   "--crops", "no such folder")
    one_line_error(*run(capsys, "serve", built / "idx", "--host", "0.0.0.0")[::2], "--host 0.0.0.0",
                   "--token")
    one_line_error(*run(capsys, "serve", tmp_path / "nowhere")[::2], "no such index folder")


def test_a_build_that_fails_writes_nothing(tmp_path, capsys):
    scene = write_tiny_scene(tmp_path / "scene")
    broken = write_tiny_camera(tmp_path / "broken" / "cam9")
    (broken / "img1" / "000003.jpg").write_bytes(b"truncated")
    code, _, err = run(capsys, "index", "build", tmp_path / "idx", "--histogram", "--sequences",
                       scene / "cam1", broken)
    assert code == 2 and "000003.jpg" in err
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".tmp-*"))


def test_serve_answers_on_loopback_with_its_token(built):
    pytest.importorskip("uvicorn", reason="robustreid serve needs robustreid[search]")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "robustreid.cli", "serve", str(built / "idx"), "--port",
                               str(port), "--token", "t0k"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/api/cameras"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as err:
                assert err.code == 401
                assert json.loads(err.read())["detail"].startswith("missing or wrong token")
                break
            except (urllib.error.URLError, OSError):
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        request = urllib.request.Request(url, headers={"Authorization": "Bearer t0k"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())[0]["name"] == "cam1"
    finally:
        server.terminate()
        server.wait(timeout=30)
