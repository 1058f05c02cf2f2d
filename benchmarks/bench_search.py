"""The vector stores of robustreid.search side by side at growing sizes: which one is the default.

For each size of --sizes and each store of --stores (robustreid.search.store.STORES: exact, faiss-flat,
faiss-ivf, faiss-hnsw, milvus), on the same unit vectors:

  build      seconds to make the store and add every vector (one add, as `index build` does), and the resident
             memory it added (RSS from /proc, MB; the vectors matrix itself is counted once, before any store)
  query      latency of one query at a time (as the service searches), p50 / p99 in ms over --queries queries,
             k = --k; and recall@k against the exact answer (the exact store's rows)
  file       the size of the saved store (MB) and the seconds to save and load it

milvus is measured only when --stores names it (robustreid[milvus]): its collection goes into a Milvus Lite
database in the temporary folder (in this process: its memory counts in build_rss_mb, its folder in file_mb),
or, with ROBUSTREID_MILVUS_URI=http://HOST:19530 set, onto that server (its memory and disk are the server's,
not counted here; the collection is dropped at the end). "load" is reading the pointer, connecting and loading
the collection until the first query answers.

The approximate stores can be searched with several settings from one build (--ivf-nprobe, --hnsw-ef): one row
each, so the recall / latency trade-off shows in one run.

Prints one JSON object per (size, store). The vectors are random unit vectors (--dim, default 1024: the
robustreid_1x descriptor), independent (the worst case for approximate stores) or, with --clusters C, spread
around C centres as a gallery of C persons is. Queries are either stored vectors plus noise (--queries-from
data, the default: a re-identification query lies near its person's tracklets; --noise sets how near) or
fresh random vectors (--queries-from random).

Memory: 10^6 x 1024 float32 is 4.1 GB for the matrix alone, and each FAISS store holds its own copy (HNSW adds
its graph); building HNSW at 10^6 x 1024 on 2 cores takes a long time (see docs/SEARCH.md).

Usage: python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--dim 1024]
           [--stores exact faiss-flat faiss-ivf faiss-hnsw milvus] [--queries 200] [--k 10] [--threads 2]
           [--ivf-nprobe 16 64 256] [--hnsw-ef 64 128 256] [--clusters 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robustreid.search.store import STORES, load_store, make_store, top_k


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def disk_mb(path: Path) -> float:
    """A file's size, or a folder's (every file below it), in MB."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def new_store(kind: str, dim: int, folder: Path):
    """An empty store of ``kind``; milvus's collection in a Lite database in ``folder`` (or on the server
    ROBUSTREID_MILVUS_URI names), so that its save writes the pointer only, as in an index."""
    if kind == "milvus":
        from robustreid.search.milvus_store import URI_ENV

        return STORES["milvus"](dim, uri=os.environ.get(URI_ENV) or str(folder / "milvus.db"))
    return make_store(kind, dim)


def unit_vectors(n: int, dim: int, rng: np.random.Generator, chunk: int = 65536) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_vectors(n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator,
                      chunk: int = 65536) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (a gallery of persons, each seen in many
    tracklets): centre + ``spread`` * N(0, I / dim), renormalised."""
    centres = unit_vectors(clusters, dim, rng)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        block = centres[rng.integers(0, clusters, m)] + spread * noise
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_queries(vectors: np.ndarray, count: int, source: str, noise: float, rng) -> np.ndarray:
    if source == "random":
        return unit_vectors(count, vectors.shape[1], rng)
    rows = rng.choice(len(vectors), size=count, replace=False)
    q = vectors[rows] + noise * rng.standard_normal((count, vectors.shape[1]), dtype=np.float32) / np.sqrt(
        vectors.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_answers(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 262144) -> np.ndarray:
    """The exact top-k rows of each query, computed in chunks of the matrix (bounded memory)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_r = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(vectors), chunk):
        s, r = top_k(queries @ vectors[start:start + chunk].T, k)
        best_s, order = np.concatenate([best_s, s], 1), np.concatenate([best_r, r + start], 1)
        idx = np.lexsort((order, -best_s), axis=1)[:, :k]
        best_s, best_r = np.take_along_axis(best_s, idx, 1), np.take_along_axis(order, idx, 1)
    return best_r


def bench_store(kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int,
                folder: Path, settings: list[int] | None = None) -> list[dict]:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    store = new_store(kind, vectors.shape[1], folder)
    if kind == "exact":
        store = STORES["exact"](vectors.shape[1], vectors)  # the matrix as it is: no copy (as a loaded .npy)
    else:
        store.add(vectors)
    build = time.perf_counter() - start
    added = rss_mb() - before
    rows_out = []
    for setting in settings or [None]:
        if setting is not None:  # a search-time knob of an approximate store: nprobe (IVF), efSearch (HNSW)
            target = store._index.hnsw if kind == "faiss-hnsw" else store._index
            setattr(target, "efSearch" if kind == "faiss-hnsw" else "nprobe", setting)
        rows_out.append(query_figures(store, queries, truth, k) | (
            {} if setting is None else {("ef_search" if kind == "faiss-hnsw" else "nprobe"): setting}))
    start = time.perf_counter()
    path = store.save(folder / f"{kind}{STORES[kind].suffix}")
    save = time.perf_counter() - start
    del store  # one copy of the vectors at a time beside the matrix (4.1 GB each at 10^6 x 1024)
    gc.collect()
    start = time.perf_counter()
    loaded = load_store(kind, path)
    loaded.search(queries[:1], k)
    load = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    extra = {}
    if kind == "milvus":  # the pointer, plus the Lite database it names (a server's disk is not counted)
        from robustreid.search.milvus_store import is_lite, release

        lite = is_lite(loaded.uri)
        size += disk_mb(Path(loaded.uri)) if lite else 0.0
        extra = {"engine": "milvus-lite" if lite else "milvus-server"}
        loaded.drop()
        release(loaded.uri)
        if lite:
            shutil.rmtree(loaded.uri, ignore_errors=True)
    del loaded
    path.unlink()
    common = {"kind": "store", "store": kind, "build_seconds": round(build, 3),
              "build_rss_mb": round(added, 1), "file_mb": round(size, 1), "save_seconds": round(save, 3),
              "load_seconds": round(load, 3)} | extra
    return [common | row for row in rows_out]


def query_figures(store, queries: np.ndarray, truth: np.ndarray, k: int) -> dict:
    """One query at a time (as the service searches): latency p50 / p99 and recall@k against ``truth``."""
    store.search(queries[:5], k)  # warm up
    latencies, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, rows = store.search(q[None], k)
        latencies.append(time.perf_counter() - t0)
        found.append(rows[0])
    recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))
    ms = np.array(latencies) * 1e3
    return {"query_p50_ms": round(float(np.percentile(ms, 50)), 3),
            "query_p99_ms": round(float(np.percentile(ms, 99)), 3), f"recall_at_{k}": round(recall, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--stores", nargs="+", default=None, help="default: every store that can be imported")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--queries-from", choices=["data", "random"], default="data")
    parser.add_argument("--noise", type=float, default=1.0,
                        help="query = stored vector + noise * N(0, I/dim)")
    parser.add_argument("--clusters", type=int, default=0,
                        help="0 (default): independent random vectors; C: vectors around C centres (persons)")
    parser.add_argument("--spread", type=float, default=0.8,
                        help="with --clusters: centre + spread * N(0, I/dim)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--ivf-nprobe", type=int, nargs="+", default=None,
                        help="faiss-ivf: search with each of these nprobe (default: the store's, nlist / 16)")
    parser.add_argument("--hnsw-ef", type=int, nargs="+", default=None,
                        help="faiss-hnsw: search with each of these efSearch (default: the store's, 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None,
                        help="where the saved stores go for the file figures (default: the system temporary "
                             "folder; 10^6 x 1024 needs about 4.2 GB free there)")
    args = parser.parse_args()
    stores = args.stores or ["exact"]
    if args.stores is None:
        try:
            import faiss

            stores += ["faiss-flat", "faiss-ivf", "faiss-hnsw"]
        except ImportError:
            note = {"kind": "note", "note": "faiss-cpu not installed: exact store only"}
            print(json.dumps(note), flush=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-search-", dir=args.tmp) as tmp:
        for n in args.sizes:
            start = time.perf_counter()
            vectors = (clustered_vectors(n, args.dim, args.clusters, args.spread, rng) if args.clusters
                       else unit_vectors(n, args.dim, rng))
            queries = make_queries(vectors, min(args.queries, n), args.queries_from, args.noise, rng)
            truth = exact_answers(vectors, queries, args.k)
            print(json.dumps({"kind": "data", "size": n, "dim": args.dim, "clusters": args.clusters,
                              "queries": len(queries),
                              "queries_from": args.queries_from, "noise": args.noise, "threads": args.threads,
                              "matrix_mb": round(vectors.nbytes / 1e6, 1),
                              "seconds": round(time.perf_counter() - start, 2)}), flush=True)
            for kind in stores:
                settings = {"faiss-ivf": args.ivf_nprobe, "faiss-hnsw": args.hnsw_ef}.get(kind)
                for row in bench_store(kind, vectors, queries, truth, args.k, Path(tmp), settings):
                    print(json.dumps({"size": n, "dim": args.dim, **row}), flush=True)
            del vectors


if __name__ == "__main__":
    main()
