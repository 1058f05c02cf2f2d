"""Speed and peak memory of robustreid.metrics at Market1501 and MSMT17 test-split sizes.

Prints one JSON object per line. Each measurement runs in a fresh subprocess so that its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the whole process: Python, torch, the random
features and the evaluation) is its own; ``rss_before_mb`` is the same peak read just before the timed
call, i.e. after the features were made. Features are random normal rows, L2-normalised, float32;
labels mimic each split (identities spread over cameras, plus Market1501's pid-0 distractors).
Timings are the best of ``--repeats`` runs (at most 2 at MSMT17 size) with
``torch.set_num_threads(--threads)``; each record carries the 1-minute load average when it started,
since threaded torch ops slow down sharply when other processes compete for the same cores.

Steps:
  gemm               q_feats @ g_feats.T alone, in the same query chunks evaluate_features uses
                     (the floor for any features -> metrics path)
  compute_distmat    the full distance matrix (Market1501 only: at MSMT17 it is 3.8 GB)
  evaluate_features  features -> (cmc, mAP, mINP), never holding the full matrix (euclidean)
  evaluate_features_cosine  the same with metric="cosine" (makes L2-normalised copies of the features)
  evaluate_rank      distance matrix -> metrics (Market1501 only)
  argsort_loop       the torchreid-style per-query np.argsort loop on a distance matrix, timed on the
                     first --loop-queries queries and extrapolated linearly to all queries. Untimed
                     checks on those queries: evaluate_rank's mAP minus the loop's, and minus the same
                     loop with evaluate_rank's tie rule (a stable sort on (distance, is_match)); float32
                     distances do tie, and np.argsort orders ties arbitrarily.

Usage: python benchmarks/bench_metrics.py [--cases market1501 msmt17] [--threads 2] [--repeats 3]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from robustreid.metrics import _default_chunk_size, compute_distmat, evaluate_features, evaluate_rank

# (num_q, num_g, num_ids, num_cams, num_distractors): the test splits after dropping junk.
CASES = {
    "market1501": (3368, 15913, 750, 6, 2798),
    "msmt17": (11659, 82161, 3060, 15, 0),
}
DIM = 1024
STEPS = {
    "market1501": ("gemm", "compute_distmat", "evaluate_features", "evaluate_features_cosine",
                   "evaluate_rank", "argsort_loop"),
    "msmt17": ("gemm", "evaluate_features", "evaluate_features_cosine", "argsort_loop"),
}


def make_split(case, seed=0):
    num_q, num_g, num_ids, num_cams, num_distractors = CASES[case]
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_g - num_distractors),
                             np.zeros(num_distractors, dtype=np.int64)])
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_camids, q_camids = rng.integers(0, num_cams, num_g), rng.integers(0, num_cams, num_q)
    generator = torch.Generator().manual_seed(seed)
    feats = []
    for n in (num_q, num_g):
        x = torch.randn(n, DIM, generator=generator)
        x.div_(x.norm(dim=1, keepdim=True))  # in place: no second copy of the gallery
        feats.append(x)
    return feats[0], feats[1], q_pids, g_pids, q_camids, g_camids


def argsort_loop(distmat, q_pids, g_pids, q_camids, g_camids, pessimistic_ties=False):
    """torchreid's eval_market1501 loop, per query: full argsort, remove same pid+camid, AP."""
    aps = []
    for i in range(distmat.shape[0]):
        if pessimistic_ties:
            order = np.lexsort((g_pids == q_pids[i], distmat[i]))
        else:
            order = np.argsort(distmat[i])
        matches = g_pids[order] == q_pids[i]
        keep = ~(matches & (g_camids[order] == q_camids[i]))
        raw_cmc = matches[keep]
        if not raw_cmc.any():
            continue
        precision = raw_cmc.cumsum() / np.arange(1.0, raw_cmc.size + 1)
        aps.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return float(np.mean(aps))


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, out


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_step(case, step, repeats, loop_queries):
    """Run one measurement in this process and return its JSON record."""
    q_feats, g_feats, q_pids, g_pids, q_camids, g_camids = make_split(case)
    labels = (q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = q_feats.shape[0], g_feats.shape[0]
    chunk_size = _default_chunk_size(num_q, num_g, q_feats.element_size())  # as in evaluate_features
    record = {"case": case, "step": step, "num_q": num_q, "num_g": num_g, "dim": DIM,
              "threads": torch.get_num_threads(), "repeats": repeats,
              "load_average_1min_at_start": os.getloadavg()[0]}  # other processes share the cores
    extra = {}
    if step in ("evaluate_rank", "argsort_loop"):
        rows = slice(None) if step == "evaluate_rank" else slice(0, loop_queries)
        distmat = compute_distmat(q_feats[rows], g_feats, "euclidean")
    rss_before = peak_rss_mb()

    if step == "gemm":
        out = torch.empty(chunk_size, num_g)

        def fn():
            for start in range(0, num_q, chunk_size):
                q = q_feats[start:start + chunk_size]
                torch.mm(q, g_feats.T, out=out[: q.shape[0]])
        extra["chunk_size"] = chunk_size
    elif step == "compute_distmat":
        def fn():
            return compute_distmat(q_feats, g_feats, "euclidean")
    elif step.startswith("evaluate_features"):
        metric = "cosine" if step.endswith("cosine") else "euclidean"

        def fn():
            return evaluate_features(q_feats, g_feats, *labels, metric=metric, return_minp=True)
    elif step == "evaluate_rank":
        def fn():
            return evaluate_rank(distmat, *labels, return_minp=True)
    else:
        distmat_np = distmat.numpy()
        sub_labels = (q_pids[:loop_queries], g_pids, q_camids[:loop_queries], g_camids)

        def fn():
            return argsort_loop(distmat_np, *sub_labels)
    seconds, times, out = best_time(fn, repeats)

    if step.startswith("evaluate_"):
        cmc, mean_ap, minp = out
        extra.update(rank1=float(cmc[0]), mAP=mean_ap, mINP=minp)
    if step == "argsort_loop":
        fast_ap = evaluate_rank(distmat, *sub_labels, max_rank=1)[1]
        pessimistic_ap = argsort_loop(distmat_np, *sub_labels, pessimistic_ties=True)
        extra.update(timed_queries=loop_queries, timed_seconds=round(seconds, 4),
                     extrapolated_to_all_queries=True,
                     evaluate_rank_mAP_minus_loop_mAP=fast_ap - out,
                     evaluate_rank_mAP_minus_pessimistic_loop_mAP=fast_ap - pessimistic_ap)
        seconds, times = seconds * num_q / loop_queries, [t * num_q / loop_queries for t in times]
    record.update(seconds=round(seconds, 4), all_seconds=[round(t, 4) for t in times],
                  rss_before_mb=round(rss_before, 1), peak_rss_mb=round(peak_rss_mb(), 1), **extra)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["market1501", "msmt17"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-queries", type=int, default=300)
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.step:
        print(json.dumps(run_step(args.case, args.step, args.repeats, args.loop_queries)), flush=True)
        return
    for case in args.cases:
        results = {}
        for step in STEPS[case]:
            repeats = min(args.repeats, 2) if case == "msmt17" else args.repeats
            cmd = [sys.executable, __file__, "--case", case, "--step", step, "--threads", str(args.threads),
                   "--repeats", str(repeats), "--loop-queries", str(args.loop_queries)]
            stdout = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            line = stdout.strip().splitlines()[-1]
            print(line, flush=True)
            results[step] = json.loads(line)
        seconds = {step: record["seconds"] for step, record in results.items()}
        summary = {"case": case, "step": "summary",
                   "evaluate_features_over_gemm": seconds["evaluate_features"] / seconds["gemm"],
                   "argsort_loop_over_evaluate_features":
                       seconds["argsort_loop"] / seconds["evaluate_features"]}
        if "evaluate_rank" in seconds:
            summary["argsort_loop_over_evaluate_rank"] = seconds["argsort_loop"] / seconds["evaluate_rank"]
        summary = {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
