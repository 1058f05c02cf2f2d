"""The search service under load (issue 31): `robustreid serve` on a loopback port, an index of --tracklets
entries, and --clients concurrent clients each sending --queries image searches one after the other.

The index: --tracklets random unit descriptors of the model's dimension (the vector search costs the same as
with real ones) in 10 made-up cameras, built once into --index (reused when it holds one of that size and
model). Each query uploads one of a few synthetic person crops (robustreid.synthetic), so every request pays
the crop's decoding and embedding by the model (--checkpoint) as a real one does.

Prints one JSON object per client count: requests, errors (any answer but 200, or no answer), seconds,
throughput (requests/s), latency p50 / p99 (ms, per request as the client sees it); then a summary against the
targets at 10^5 tracklets on 2 cores: no errors, one client p99 < 250 ms, and with the most clients a
throughput of at least 80 % of the one-client rate (the cores stay busy; requests queue rather than fail).

The server runs in its own process (its model and search on the machine's cores); the clients are threads of
this process, waiting on their sockets most of the time.

Usage: python benchmarks/bench_search_load.py [--tracklets 100000] [--checkpoint zoo:robustreid_1x]
           [--clients 1 8] [--queries 200] [--k 20] [--index runs/search/load_index] [--port 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from robustreid.search.embedding import load_embedder, normalize_rows
from robustreid.search.index import SourceTracklets, Tracklet, build_index, is_index, open_index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_index(folder: Path, n: int, embed_name: str, dim: int, cameras: int = 10,
                    seed: int = 0) -> None:
    """``n`` random unit descriptors as tracklets of ``cameras`` made-up cameras (no thumbnails)."""
    rng = np.random.default_rng(seed)
    sources = []
    per = np.array_split(np.arange(n), cameras)
    for c, rows in enumerate(per, 1):
        tracklets = [Tracklet(camera=f"cam{c}", first_frame=int(10 * i), last_frame=int(10 * i + 9),
                              first_time=float(i), last_time=float(i) + 0.9,
                              boxes=np.array([[10 * i, 0, 0, 64, 128]]), track_id=int(i))
                     for i in range(len(rows))]
        vectors = normalize_rows(rng.standard_normal((len(rows), dim), dtype=np.float32))
        sources.append(SourceTracklets(path=f"/synthetic/cam{c}", kind="sequence", tracklets=tracklets,
                                       vectors=vectors, frame_rate=10.0, camera=f"cam{c}"))
    build_index(folder, sources, checkpoint=embed_name, dim=dim)


def query_images(count: int = 8) -> list[bytes]:
    """A few person crops (robustreid.synthetic's procedural persons), as JPEG bytes."""
    from robustreid.synthetic.camera import sample_camera
    from robustreid.synthetic.crop import render_crop
    from robustreid.synthetic.identity import sample_identity

    rng = np.random.default_rng(1)
    camera = sample_camera(rng)
    out = []
    for _ in range(count):
        image = render_crop(sample_identity(rng), camera, rng)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def multipart(image: bytes, k: int) -> tuple[bytes, str]:
    boundary = "robustreidbench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client(url: str, bodies: list[tuple[bytes, str]], queries: int, offset: int, out: list) -> None:
    for q in range(queries):
        body, ctype = bodies[(offset + q) % len(bodies)]
        request = urllib.request.Request(f"{url}/api/search", data=body, method="POST",
                                         headers={"Content-Type": ctype})
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                ok = response.status == 200
        except (urllib.error.URLError, OSError):
            ok = False
        out.append((time.perf_counter() - start, ok))


def run_load(url: str, bodies, clients: int, queries: int) -> dict:
    results: list[list] = [[] for _ in range(clients)]
    threads = [threading.Thread(target=client, args=(url, bodies, queries, i, results[i]))
               for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    flat = [r for rs in results for r in rs]
    ms = np.array([s for s, _ in flat]) * 1e3
    return {"kind": "load", "clients": clients, "requests": len(flat),
            "errors": sum(not ok for _, ok in flat), "seconds": round(seconds, 2),
            "throughput_rps": round(len(flat) / seconds, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracklets", type=int, default=100_000)
    parser.add_argument("--checkpoint", default="zoo:robustreid_1x")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--queries", type=int, default=200, help="searches per client")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--index", type=Path, default=Path("runs/search/load_index"))
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    embed = load_embedder(args.checkpoint)
    if is_index(args.index):
        index = open_index(args.index)
        if len(index) != args.tracklets or index.meta["checkpoint"] != embed.name:
            sys.exit(f"{args.index} holds {len(index)} tracklets of {index.meta['checkpoint']}; "
                     f"remove it or pass another --index")
    else:
        start = time.perf_counter()
        synthetic_index(args.index, args.tracklets, embed.name, embed.dim)
        print(json.dumps({"kind": "index", "tracklets": args.tracklets, "dim": embed.dim,
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    del embed
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "robustreid.cli", "serve", str(args.index), "--port", str(port)]
    server = subprocess.Popen(command, env={**os.environ}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/info", timeout=5) as response:
                    info = json.loads(response.read())
                break
            except (urllib.error.URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    said = server.stderr.read() if server.poll() is not None else ""
                    sys.exit(f"the server did not start: {said}")
                time.sleep(0.5)
        bodies = [multipart(image, args.k) for image in query_images()]
        run_load(url, bodies, 1, args.warmup)
        rows = []
        for clients in args.clients:
            row = {"tracklets": info["tracklets"], "model": info["checkpoint"],
                   **run_load(url, bodies, clients, args.queries)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        one = next((r for r in rows if r["clients"] == 1), None)
        most = max(rows, key=lambda r: r["clients"])
        summary = {"kind": "summary", "tracklets": info["tracklets"],
                   "errors": sum(r["errors"] for r in rows),
                   "one_client_p99_ms": one["p99_ms"] if one else None, "target_one_client_p99_ms": 250,
                   "throughput_ratio": (round(most["throughput_rps"] / one["throughput_rps"], 3) if one
                                        else None),
                   "ratio_clients": most["clients"], "target_throughput_ratio": 0.8}
        print(json.dumps(summary), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
