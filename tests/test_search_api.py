"""The search service (robustreid.search.service) through FastAPI's TestClient: answers on the hand-made
index, every error path as a one-line JSON 4xx, the token, and concurrent requests."""

import io
import json
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from search_cases import COLOURS, colour_embedder, colour_index, expected_order, mean_colour, solid

from robustreid.search.embedding import Embedder, normalize_rows

pytest.importorskip("fastapi", reason="the service needs robustreid[search] (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient

from robustreid.search.service import create_app

VECTORS = normalize_rows(list(COLOURS.values()))


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search") / "idx"
    colour_index(folder)
    return folder


@pytest.fixture(scope="module")
def client(index_dir):
    app = create_app(index_dir, embedder=colour_embedder(), max_upload_bytes=20_000, max_pixels=200 * 200)
    return TestClient(app, raise_server_exceptions=False)


def upload(client, image_bytes: bytes, k="5", headers=None, name="q.png"):
    return client.post("/api/search", files={"image": (name, image_bytes, "image/png")}, data={"k": k},
                       headers=headers or {})


def check_error(response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and "\n" not in body["detail"]
    assert "Traceback" not in response.text and text in body["detail"], body["detail"]


@pytest.mark.parametrize("colour", [(255, 0, 0), (40, 60, 250), (120, 120, 10)])
def test_an_uploaded_crop_gets_the_computable_hits(client, colour):
    response = upload(client, png(solid(colour)))
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert [h["tracklet_id"] - 1 for h in hits] == expected_order(colour, VECTORS)[:5]
    first = hits[0]
    assert set(first) == {"tracklet_id", "camera", "first_frame", "last_frame", "first_time", "last_time",
                          "distance", "label", "thumbnail_url"}
    assert first["thumbnail_url"] == f"/thumbnails/{first['tracklet_id']}"


def test_search_with_a_stored_tracklet(client):
    by_path = client.post("/api/search/tracklet/4", params={"k": 3}).json()
    by_form = client.post("/api/search", data={"tracklet": "4", "k": "3"}).json()
    assert by_path["hits"] == by_form["hits"]
    expected = [i + 1 for i in expected_order(VECTORS[3], VECTORS)[:3]]
    assert [h["tracklet_id"] for h in by_path["hits"]] == expected
    assert by_path["hits"][0]["distance"] == 0.0 and by_path["hits"][0]["label"] == "blue"


def test_tracklets_cameras_thumbnails_and_the_page(client):
    t = client.get("/api/tracklets/2").json()
    summary = (t["camera"], t["label"], t["first_frame"], t["last_frame"], t["num_boxes"])
    assert summary == ("cam1", "orange", 11, 16, 6)
    assert t["boxes"][0] == [11, 10, 10, 24, 48]
    cams = client.get("/api/cameras").json()
    assert [(c["name"], c["tracklets"]) for c in cams] == [("cam1", 3), ("cam2", 2)]
    thumb = client.get("/thumbnails/2")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[1] == 128
    page = client.get("/")
    assert page.status_code == 200 and "<title>robustreid search</title>" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every asset from this server
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/info").json()["tracklets"] == 5


def test_error_paths_are_one_line_json(client):
    check_error(upload(client, b"x" * 30_000), 413, "more than the limit of 20000")
    check_error(upload(client, b"this is not an image"), 400, "q.png: not a readable image")
    check_error(upload(client, png(solid((255, 0, 0), size=(300, 300)))), 413, "300x300 pixels")
    check_error(upload(client, b""), 400, "empty")
    check_error(upload(client, png(solid((255, 0, 0))), k="0"), 422, "k=0")
    check_error(upload(client, png(solid((255, 0, 0))), k="many"), 422, "k:")
    check_error(upload(client, png(solid((255, 0, 0))), k="5000"), 422, "from 1 to 1000")
    check_error(client.post("/api/search", data={"k": "3"}), 422, "expected one of the fields image")
    check_error(client.post("/api/search", files={"image": ("q.png", png(solid((1, 0, 0))), "image/png")},
                            data={"tracklet": "1"}), 422, "expected one of the fields")
    check_error(client.post("/api/search", data={"tracklet": "abc"}), 422, "tracklet:")
    check_error(client.post("/api/search", data={"tracklet": "99"}), 404, "no tracklet 99")
    check_error(client.post("/api/search/tracklet/99"), 404, "no tracklet 99")
    check_error(client.get("/api/tracklets/99"), 404, "no tracklet 99")
    check_error(client.get("/api/tracklets/x"), 422, "tracklet_id:")
    check_error(client.get("/thumbnails/99"), 404, "no thumbnail for tracklet 99")
    check_error(client.get("/thumbnails/..%2Findex.sqlite"), 404, "Not Found")  # no route takes a path
    assert client.get("/thumbnails/../index.sqlite").status_code == 404
    check_error(client.get("/api/nothing"), 404, "Not Found")
    headers = {"content-type": "multipart/form-data"}
    malformed = client.post("/api/search", content=b"--x\r\n", headers=headers)
    check_error(malformed, 400, "")


def test_a_chunked_upload_over_the_limit_is_refused(client):
    def body():
        yield b'--xx\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n\r\n'
        for _ in range(20):
            yield b"a" * 10_000

    response = client.post("/api/search", content=body(),
                           headers={"content-type": "multipart/form-data; boundary=xx"})
    assert "content-length" not in response.request.headers
    check_error(response, 413, "over the limit")


def test_the_token(index_dir):
    client = TestClient(create_app(index_dir, token="s3cret", embedder=colour_embedder()),
                        raise_server_exceptions=False)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        check_error(upload(client, png(solid((255, 0, 0))), headers=headers), 401, "missing or wrong token")
        check_error(client.get("/api/cameras", headers=headers), 401, "token")
        check_error(client.get("/thumbnails/1", headers=headers), 401, "token")
    good = {"Authorization": "Bearer s3cret"}
    assert upload(client, png(solid((255, 0, 0))), headers=good).status_code == 200
    assert client.get("/thumbnails/1", headers=good).status_code == 200
    assert client.get("/").status_code == 200  # the page loads and then asks for the token


def test_an_embedder_of_another_dimension_is_refused(index_dir):
    from robustreid.search.embedding import Embedder

    with pytest.raises(ValueError, match="holds 3-d descriptors of fake:mean-colour, the embedder other"):
        create_app(index_dir, embedder=Embedder("other", 4, lambda ims: np.ones((len(ims), 4))))


def test_concurrent_searches_queue_and_all_succeed(client):
    images = [png(solid(c)) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 0)] * 3]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda b: upload(client, b), images))
    assert [r.status_code for r in responses] == [200] * len(images)
    first = [r.json()["hits"][0]["label"] for r in responses[:4]]
    assert first == ["red", "green", "blue", "orange"]
    assert json.loads(responses[4].text)["hits"] == responses[0].json()["hits"]


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (IHDR, with its CRC fixed) claims ``width`` x ``height`` pixels."""
    data = bytearray(png(solid((255, 0, 0), size=(4, 4))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("size", [(50_000, 50_000), (1000, 1000)])
def test_the_pixel_limit_is_checked_before_decoding(client, monkeypatch, size):
    data = png_claiming(*size)

    def no_decoding(self):
        raise AssertionError("decoded")
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    check_error(upload(client, data), 413, "pixels")
    if size == (1000, 1000):  # under Pillow's own limit: this module's check, with its message
        check_error(upload(client, data), 413, "1000x1000 pixels, more than the limit of 40000")


def test_the_default_pixel_limit_comes_before_decoding(monkeypatch):
    from robustreid.search.query import MAX_PIXELS, QueryError, decode_image

    side = int(MAX_PIXELS**0.5) + 1  # over MAX_PIXELS, under Pillow's own MAX_IMAGE_PIXELS
    assert side * side < Image.MAX_IMAGE_PIXELS
    data = png_claiming(side, side)
    monkeypatch.setattr(Image.Image, "load", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(QueryError, match=f"{side}x{side} pixels, more than the limit") as err:
        decode_image(data)
    assert err.value.status == 413


def test_corrupt_files_and_other_formats_are_400(client, monkeypatch):
    good = png(solid((255, 0, 0), size=(64, 32)))
    check_error(upload(client, good[: len(good) // 2]), 400, "not a readable image")  # truncated
    broken = bytearray(good)
    broken[60:90] = b"\0" * 30  # a corrupt compressed stream
    check_error(upload(client, bytes(broken)), 400, "not a readable image")
    for fmt in ("GIF", "TIFF", "ICO"):  # formats Pillow reads, not accepted for a query
        buffer = io.BytesIO()
        Image.fromarray(solid((255, 0, 0))).save(buffer, format=fmt)
        check_error(upload(client, buffer.getvalue(), name=f"q.{fmt.lower()}"), 400, "not a readable image")
    from PIL import PngImagePlugin

    for error in (struct.error("unpack requires a buffer of 4 bytes"), IndexError("index out of range"),
                  TypeError("bad operand")):  # what rarer plugins raise while decoding crafted files

        def crafted(self, error=error):
            raise error
        monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", crafted)
        check_error(upload(client, good), 400, f"not a readable image ({error})")


@pytest.mark.parametrize("bad", [2**63, 2**64 + 5, -1])
def test_ids_out_of_sqlites_range_are_422(client, bad):
    check_error(client.get(f"/api/tracklets/{bad}"), 422, "tracklet_id:")
    check_error(client.post(f"/api/search/tracklet/{bad}"), 422, "tracklet_id:")
    check_error(client.get(f"/thumbnails/{bad}"), 422, "tracklet_id:")
    check_error(client.post("/api/search", data={"tracklet": str(bad), "k": "3"}), 422, "tracklet:")


def test_the_largest_id_is_a_404(client):
    top = 2**63 - 1
    check_error(client.get(f"/api/tracklets/{top}"), 404, f"no tracklet {top}")
    check_error(client.post("/api/search", data={"tracklet": str(top)}), 404, f"no tracklet {top}")
    check_error(client.get(f"/thumbnails/{top}"), 404, "no thumbnail")


def test_every_api_and_thumbnail_route_needs_the_token(index_dir):
    app = create_app(index_dir, token="s3cret", embedder=colour_embedder())
    client = TestClient(app, raise_server_exceptions=False)
    guarded = [r for r in app.routes if r.path.startswith(("/api", "/thumbnails"))]
    assert len(guarded) >= 6
    for route in guarded:
        path = route.path.replace("{tracklet_id}", "1")
        for method in route.methods:
            check_error(client.request(method, path), 401, "missing or wrong token")
            ok = client.request(method, path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code != 401, (method, path)
    assert client.get("/openapi.json").status_code == 401  # no schema to anyone without the token
    assert client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).status_code == 404
    # the token is checked before the body is read: a malformed body gets the 401, not the parser's 400
    malformed = client.post("/api/search", content=b"--x\r\n",
                            headers={"content-type": "multipart/form-data"})
    check_error(malformed, 401, "token")
    assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200


def test_one_model_run_at_a_time_with_8_clients(index_dir):
    active, peak, lock = 0, 0, threading.Lock()

    def counting(images):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)  # long enough for the other threads to arrive
        with lock:
            active -= 1
        return mean_colour(images)

    app = create_app(index_dir, embedder=Embedder("fake:mean-colour", 3, counting))
    client = TestClient(app, raise_server_exceptions=False)
    images = [png(solid(c)) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 0)] * 6]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda b: upload(client, b), images))
    assert [r.status_code for r in responses] == [200] * len(images)
    assert peak == 1


def test_the_command_line_and_the_api_answer_the_same(tmp_path, capsys):
    from search_cases import query_crop, write_tiny_scene

    from robustreid.cli import main

    scene = write_tiny_scene(tmp_path / "scene")
    assert main(["index", "build", str(tmp_path / "idx"), "--histogram", "--sequences", str(scene)]) == 0
    client = TestClient(create_app(tmp_path / "idx"), raise_server_exceptions=False)  # the index's embedder
    capsys.readouterr()
    for pid in (1, 2):
        query = query_crop(tmp_path / f"q{pid}.png", pid)
        assert main(["search", str(tmp_path / "idx"), str(query), "--k", "4", "--json"]) == 0
        by_cli = json.loads(capsys.readouterr().out)["hits"]
        response = upload(client, query.read_bytes(), k="4")
        assert response.status_code == 200, response.text
        by_api = [{k: v for k, v in h.items() if k != "thumbnail_url"} for h in response.json()["hits"]]
        assert len(by_cli) == 4 and by_api == by_cli
