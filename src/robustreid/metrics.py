"""Ranking metrics for person re-identification: CMC, mAP and mINP.

Every accuracy in the paper (rank-1 and mAP in Tables 2-4, Section 4) follows the Market1501 evaluation
protocol of Zheng et al. [37]:

* For each query, gallery entries with the query's ``pid`` *and* ``camid`` are removed: the same person
  seen by the same camera is not a re-identification. Entries of other identities (including
  Market1501's ``pid`` 0 distractors) stay and are ordinary non-matches. Market1501's ``pid`` -1 junk
  images are dropped by the dataset reader, not here.
* A query with no remaining true match is skipped (with a warning); if none is left, it is an error.
* CMC at rank ``k`` (0-based ``cmc[k]``) is the fraction of queries whose first true match is within the
  top ``k + 1``; AP is the non-interpolated average precision over all true matches; mAP is its mean.
* mINP (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021) is the
  mean over queries of ``num_matches / (rank of the hardest match)``, 1-based rank.

Ties. Distances that are exactly equal are broken *pessimistically*: a true match is ranked after every
valid non-match at the same distance (the order among tied matches does not change any metric). The
result is therefore independent of gallery order, and a collapsed model whose features are all equal gets
the worst score rather than one set by how the gallery happens to be sorted. A stable sort on
``(distance, is_match)`` reproduces it exactly.

How it is computed. The metrics only need, for each true match, how many valid non-matches are at a
distance ``<=`` its own; sorting whole gallery rows is not required. Query rows are ranked in blocks of
~4 million query-gallery pairs. Within a block, each row's distances are histogrammed into uniform cells
spanning its closest-to-farthest match distances (one monotone float map, applied identically to the
match distances); the cumulative histogram places every non-match that does not share a cell with a
match, and the few that do are compared exactly. The counts, hence the metrics, are exact.

``evaluate_features`` never holds the full distance matrix: it computes ``chunk_size`` query rows
against the whole gallery at a time (one matmul) and ranks them before the next chunk, so its memory
beyond the features is about ``chunk_size * num_g`` distances plus a fixed ~55 MB block workspace.
Chunking the gallery as well is not needed at any realistic gallery size: a single query row against
10 million gallery entries is ~170 MB.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["METRICS", "SUMMARY_KEYS", "compute_distmat", "evaluate_rank", "evaluate_features", "score",
           "queries_with_a_match"]

METRICS = ("euclidean", "cosine")

# The scalar results of a scoring (accuracies in percent): what ``robustreid eval --json`` prints.
SUMMARY_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "num_query", "num_gallery")

# Default size of one chunk of query-gallery distances in evaluate_features / compute_distmat.
_CHUNK_BYTES = 128 * 2**20
# Query-gallery pairs ranked together (13 bytes of workspace each, ~55 MB): larger blocks mean fewer
# threaded passes, which matters on a busy machine; smaller ones gain little from the cache.
_BLOCK_ELEMENTS = 2**22
# Gallery entries per histogram cell; a few per cell keeps the exact comparisons few.
_ENTRIES_PER_CELL = 8


# --------------------------------------------------------------------------------------------- input
def _as_tensor(x, name):
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        with warnings.catch_warnings():  # read-only arrays (np.load mmap) are only ever read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}") from err


def _as_labels(x, name, length, device):
    """A 1-D int64 tensor of ``length`` pids or camids."""
    labels = _as_tensor(x, name)
    if labels.dim() != 1 or labels.numel() != length:
        raise ValueError(f"{name}: expected shape ({length},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    return labels.to(device=device, dtype=torch.int64)


def _as_feats(x, name):
    """A 2-D float32 / float64 feature matrix with at least one row (other dtypes become float32)."""
    feats = _as_tensor(x, name)
    if feats.dim() != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D (num_samples, dim) array, got shape "
                         f"{tuple(feats.shape)}")
    if feats.dtype.is_complex or feats.dtype == torch.bool:
        raise ValueError(f"{name}: expected real-valued features, got dtype {feats.dtype}")
    if feats.dtype not in (torch.float32, torch.float64):
        feats = feats.float()
    if not _all_finite(feats):
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return feats


def _all_finite(x):
    """No NaN or infinity in ``x``; the sum is the cheap test, the elementwise check the exact one."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _default_chunk_size(num_q, num_g, itemsize):
    return max(1, min(num_q, _CHUNK_BYTES // (num_g * itemsize)))


# ------------------------------------------------------------------------------------------ distances
def _prepare_feats(q_feats, g_feats, metric):
    """Validated features in one dtype on one device; L2-normalised for the cosine metric."""
    _check_metric(metric)
    q = _as_feats(q_feats, "q_feats")
    g = _as_feats(g_feats, "g_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats has dim {q.shape[1]} but g_feats has dim {g.shape[1]}")
    if q.device != g.device:
        raise ValueError(f"q_feats is on {q.device} but g_feats is on {g.device}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if metric == "cosine":
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    return q, g


def _sqnorms(x, rows_per_step=4096):
    """Squared L2 norm of each row, without an ``x``-sized temporary."""
    return torch.cat([(part * part).sum(1) for part in x.split(rows_per_step)])


def _distance_rows(q, g, g_sqnorm, metric, out):
    """Distances of the query rows ``q`` to the whole gallery ``g``, written into ``out``.

    euclidean: squared Euclidean distance ``|q|^2 + |g|^2 - 2 q.g`` (as torchreid's "euclidean"),
    clamped at 0 against rounding; ranking by it equals ranking by the Euclidean distance.
    cosine: ``1 - cos(q, g)`` on the L2-normalised features.
    """
    if metric == "cosine":
        torch.addmm(torch.ones((), dtype=q.dtype, device=q.device), q, g.T, alpha=-1, out=out)
    else:
        torch.addmm(g_sqnorm.expand(q.shape[0], -1), q, g.T, alpha=-2, out=out)
        out.add_(_sqnorms(q)[:, None]).clamp_(min=0)
    return out


def compute_distmat(q_feats, g_feats, metric="euclidean", chunk_size=None):
    """The full ``(num_q, num_g)`` query-gallery distance matrix as a torch tensor.

    Computed ``chunk_size`` query rows at a time with one matmul each, so no temporary is larger than
    the result. ``metric="euclidean"`` gives *squared* Euclidean distances (as torchreid does);
    ``"cosine"`` gives ``1 - cosine similarity``. The result is float64 if either input is float64,
    else float32, on the features' device. For evaluation prefer ``evaluate_features``, which never holds
    this matrix.
    """
    q, g = _prepare_feats(q_feats, g_feats, metric)
    num_q, num_g = q.shape[0], g.shape[0]
    if chunk_size is None:
        chunk_size = _default_chunk_size(num_q, num_g, q.element_size())
    _check_positive_int(chunk_size, "chunk_size")
    with torch.no_grad():
        g_sqnorm = _sqnorms(g) if metric == "euclidean" else None
        distmat = torch.empty((num_q, num_g), dtype=q.dtype, device=q.device)
        for start in range(0, num_q, chunk_size):
            stop = min(start + chunk_size, num_q)
            _distance_rows(q[start:stop], g, g_sqnorm, metric, out=distmat[start:stop])
    return distmat


# ---------------------------------------------------------------------------------------- the ranking
def _pad_rows(rows, values, num_rows, fill):
    """Values grouped by ascending ``rows`` -> ``(num_rows, widest group)``, padded with ``fill``."""
    counts = torch.bincount(rows, minlength=num_rows)
    out = torch.full((num_rows, max(int(counts.max()), 1)), fill, dtype=values.dtype, device=values.device)
    within = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    out[rows, within] = values
    return out


def _to_cells(dist, base, scale, num_cells, out=None):
    """Monotone non-decreasing map of distances to cells ``0 .. num_cells - 1`` (float, not yet floored).

    Gallery distances and match distances both go through exactly these elementwise ops (each one
    correctly rounded, none fused), so ``d < t`` whenever ``cell(d) < cell(t)`` and vice versa.
    """
    return torch.sub(dist, base, out=out).mul_(scale).clamp_(0, num_cells - 1)


class _RankAccumulator:
    """Ranks of every query's true matches, block by block, under the protocol and tie rule of the module
    docstring; ``result`` turns them into CMC, mAP and mINP."""

    def __init__(self, q_pids, g_pids, q_camids, g_camids, dtype, device):
        num_q, self.num_g = q_pids.numel(), g_pids.numel()
        # Every (query, gallery) pair sharing a pid, grouped by query: sorting the gallery by pid makes
        # each query's same-pid entries one contiguous run.
        g_order = torch.argsort(g_pids, stable=True)
        g_pids_sorted = g_pids[g_order]
        first = torch.searchsorted(g_pids_sorted, q_pids)
        counts = torch.searchsorted(g_pids_sorted, q_pids, right=True) - first
        self.pair_q = torch.repeat_interleave(torch.arange(num_q, device=device), counts)
        run_starts = torch.cumsum(counts, 0) - counts
        self.pair_g = g_order[first[self.pair_q] + torch.arange(self.pair_q.numel(), device=device)
                              - run_starts[self.pair_q]]
        self.pair_is_match = g_camids[self.pair_g] != q_camids[self.pair_q]
        self.pair_start = [0] + torch.cumsum(counts, 0).tolist()
        self.dtype, self.device = dtype, device
        self.num_cells = max(self.num_g // _ENTRIES_PER_CELL, 4)
        # Rows ranked together: the block's scratch buffers stay in cache between passes.
        self.block_rows = max(1, min(num_q, _BLOCK_ELEMENTS // self.num_g))
        shape = (self.block_rows, self.num_g)
        self.scratch = torch.empty(shape, dtype=dtype, device=device)
        self.cells = torch.empty(shape, dtype=torch.int64, device=device)
        self.in_match_cell = torch.empty(shape, dtype=torch.bool, device=device)
        self.first_rank, self.ap, self.inp = [], [], []

    def add(self, dist, start):
        """Rank the matches of queries ``start .. start + len(dist) - 1``, whose distances are ``dist``."""
        for row in range(0, dist.shape[0], self.block_rows):
            self._add_block(dist[row:row + self.block_rows], start + row)

    def _add_block(self, dist, start):
        num_rows, num_cells, device = dist.shape[0], self.num_cells, self.device
        if not _all_finite(dist):
            bad = start + int(torch.nonzero(~torch.isfinite(dist).all(1))[0, 0])
            raise ValueError(f"distmat: row {bad} (query {bad}) contains NaN or infinite distances")
        pairs = slice(self.pair_start[start], self.pair_start[start + num_rows])
        rows, cols, is_match = self.pair_q[pairs] - start, self.pair_g[pairs], self.pair_is_match[pairs]
        m_rows = rows[is_match]
        num_matches = torch.bincount(m_rows, minlength=num_rows)
        max_matches = max(int(num_matches.max()), 1)
        has_match = num_matches > 0
        k = torch.arange(max_matches, device=device)
        k_valid = k < num_matches[:, None]
        last = (num_matches - 1).clamp(min=0)[:, None]
        # thr[i, k]: distance of query i's k-th closest true match; +inf pads rows with fewer matches.
        thr = _pad_rows(m_rows, dist[m_rows, cols[is_match]].to(self.dtype), num_rows, float("inf"))
        thr = torch.sort(thr, dim=1).values

        # A uniform grid of cells per row over [closest match, farthest match], with a cell of margin on
        # either side. Rows whose matches share one distance borrow the block's median span: any finite
        # base and finite positive scale keep the map monotone, so this only affects speed.
        lo = torch.where(has_match, thr[:, 0], torch.zeros_like(thr[:, 0]))
        span = torch.where(has_match, thr.gather(1, last)[:, 0] - lo, torch.zeros_like(lo))
        positive = span[span > 0]
        fallback = positive.median() if positive.numel() else torch.ones((), dtype=span.dtype, device=device)
        span = torch.where(span > 0, span, fallback)
        scale = ((num_cells - 3) / span).clamp(min=1e-30, max=1e30)[:, None]
        base = lo[:, None] - 1.5 / scale

        cells = self.cells[:num_rows]
        cells.copy_(_to_cells(dist, base, scale, num_cells, out=self.scratch[:num_rows]))  # floors: >= 0
        cells[rows, cols] = num_cells  # same pid (true matches, same-camera junk): never a closer non-match
        thr_cells = _to_cells(thr, base, scale, num_cells).long().masked_fill_(~k_valid, num_cells)

        # A non-match outside every match cell lies after exactly the matches in lower cells.
        ones = torch.ones((), dtype=torch.int64, device=device)
        hist = torch.zeros((num_rows, num_cells + 1), dtype=torch.int64, device=device)
        hist.scatter_add_(1, cells, ones.expand_as(cells))
        per_cell = torch.zeros((num_rows, num_cells + 1), dtype=torch.int64, device=device)
        per_cell.scatter_add_(1, thr_cells, ones.expand_as(thr_cells))
        is_match_cell = per_cell > 0
        is_match_cell[:, num_cells] = False
        matches_below = torch.cumsum(per_cell, 1) - per_cell
        # bins[i, p]: valid non-matches of query i with exactly p match distances below theirs.
        bins = torch.zeros((num_rows, max_matches + 1), dtype=torch.int64, device=device)
        bins.scatter_add_(1, matches_below[:, :num_cells], hist[:, :num_cells].masked_fill_(
            is_match_cell[:, :num_cells], 0))
        # A non-match sharing a cell with a match is compared exactly.
        in_match_cell = torch.gather(is_match_cell, 1, cells, out=self.in_match_cell[:num_rows])
        c_rows, c_cols = torch.nonzero(in_match_cell, as_tuple=True)
        c_dist = _pad_rows(c_rows, dist[c_rows, c_cols].to(self.dtype), num_rows, float("inf"))
        bins.scatter_add_(1, torch.searchsorted(thr, c_dist), ones.expand_as(c_dist))  # +inf pads: bin m_i

        # Pessimistic ties: the k-th match (0-based) comes after every non-match at distance <= its own.
        ranks = torch.cumsum(bins, 1)[:, :max_matches] + k  # 0-based, among the valid gallery entries
        precision = (k + 1).double() / (ranks + 1)
        self.ap.append(((precision * k_valid).sum(1) / num_matches.clamp(min=1)).cpu())
        self.inp.append((num_matches / (ranks.gather(1, last)[:, 0] + 1).double()).cpu())
        self.first_rank.append(torch.where(has_match, ranks[:, 0], -1).cpu())

    def result(self, max_rank, return_minp):
        first_rank = torch.cat(self.first_rank)
        valid = first_rank >= 0
        num_valid, num_q = int(valid.sum()), first_rank.numel()
        if num_valid == 0:
            raise ValueError(f"none of the {num_q} queries has a true match (same pid, other camid) in the "
                             "gallery; check that q_pids/g_pids and q_camids/g_camids come from one split")
        if num_valid < num_q:
            warnings.warn(f"{num_q - num_valid} of {num_q} queries have no true match (same pid, other "
                          "camid) in the gallery and were skipped", UserWarning, stacklevel=3)
        hits = torch.bincount(first_rank[valid].clamp(max=max_rank), minlength=max_rank + 1)[:max_rank]
        cmc = (torch.cumsum(hits, 0).double() / num_valid).numpy()
        mean_ap = float(torch.cat(self.ap)[valid].mean())
        if return_minp:
            return cmc, mean_ap, float(torch.cat(self.inp)[valid].mean())
        return cmc, mean_ap


def _check_max_rank(max_rank, num_g):
    _check_positive_int(max_rank, "max_rank")
    if num_g < max_rank:
        warnings.warn(f"max_rank={max_rank} exceeds the gallery size {num_g}; using max_rank={num_g}",
                      UserWarning, stacklevel=3)
        return num_g
    return int(max_rank)


def _labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, device):
    return [_as_labels(x, name, n, device) for x, name, n in
            ((q_pids, "q_pids", num_q), (g_pids, "g_pids", num_g),
             (q_camids, "q_camids", num_q), (g_camids, "g_camids", num_g))]


def queries_with_a_match(q_pids, g_pids, q_camids, g_camids) -> int:
    """How many queries have a true match in the gallery: the same pid seen by another camera (the protocol of
    ``evaluate_rank``; a split where this is 0 cannot be evaluated). A cheap check before a long run."""
    q_pids, g_pids = np.asarray(q_pids).ravel(), np.asarray(g_pids).ravel()
    q_camids, g_camids = np.asarray(q_camids).ravel(), np.asarray(g_camids).ravel()
    cams_of: dict[int, set] = {}
    for pid, cam in zip(g_pids.tolist(), g_camids.tolist()):
        cams_of.setdefault(pid, set()).add(cam)
    return sum(1 for pid, cam in zip(q_pids.tolist(), q_camids.tolist()) if cams_of.get(pid, set()) - {cam})


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, return_minp=False):
    """CMC and mAP (and mINP) of a query-gallery distance matrix, Market1501 protocol (module docstring).

    Args:
        distmat: ``(num_q, num_g)`` distances, numpy array or torch tensor (any device); smaller is closer.
            It is only read.
        q_pids, g_pids, q_camids, g_camids: integer labels of length ``num_q`` / ``num_g``.
        max_rank: length of the returned CMC curve (capped at ``num_g`` with a warning).
        return_minp: also return mINP.

    Returns:
        ``(cmc, mAP)``: ``cmc`` a float64 numpy array of shape ``(max_rank,)`` with ``cmc[0]`` the rank-1
        accuracy, ``mAP`` a float; ``(cmc, mAP, mINP)`` if ``return_minp``. All are fractions in [0, 1].
        Ties are pessimistic (a match ranks after equally distant non-matches).
    """
    dist = _as_tensor(distmat, "distmat")
    if dist.dim() != 2 or dist.shape[0] == 0 or dist.shape[1] == 0:
        raise ValueError(f"distmat: expected a non-empty 2-D (num_q, num_g) array, "
                         f"got shape {tuple(dist.shape)}")
    if dist.dtype.is_complex or dist.dtype == torch.bool:
        raise ValueError(f"distmat: expected real-valued distances, got dtype {dist.dtype}")
    num_q, num_g = dist.shape
    labels = _labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, dist.device)
    max_rank = _check_max_rank(max_rank, num_g)
    # Half precision widens exactly to float32; integer distances are exact in float64.
    dtype = torch.float32 if dist.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float64
    with torch.no_grad():
        acc = _RankAccumulator(*labels, dtype=dtype, device=dist.device)
        acc.add(dist, 0)
        return acc.result(max_rank, return_minp)


def evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric="euclidean",
                      max_rank=50, return_minp=False, chunk_size=None):
    """``evaluate_rank(compute_distmat(q_feats, g_feats, metric), ...)`` without the full matrix.

    Distances are computed ``chunk_size`` query rows at a time (default: ~128 MB of them) and ranked
    before the next chunk, so memory stays ~``chunk_size * num_g`` distances beyond the features
    themselves (an MSMT17-size evaluation, 11,659 x 82,161 at 1,024-d, needs well under 2 GB). Features
    may be numpy arrays or torch tensors on any device (both on the same one); the work runs there.
    Same return values and tie rule as ``evaluate_rank``.
    """
    q, g = _prepare_feats(q_feats, g_feats, metric)
    num_q, num_g = q.shape[0], g.shape[0]
    labels = _labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, q.device)
    max_rank = _check_max_rank(max_rank, num_g)
    if chunk_size is None:
        chunk_size = _default_chunk_size(num_q, num_g, q.element_size())
    _check_positive_int(chunk_size, "chunk_size")
    chunk_size = min(int(chunk_size), num_q)
    with torch.no_grad():
        g_sqnorm = _sqnorms(g) if metric == "euclidean" else None
        acc = _RankAccumulator(*labels, dtype=q.dtype, device=q.device)
        buffer = torch.empty((chunk_size, num_g), dtype=q.dtype, device=q.device)
        for start in range(0, num_q, chunk_size):
            stop = min(start + chunk_size, num_q)
            acc.add(_distance_rows(q[start:stop], g, g_sqnorm, metric, out=buffer[: stop - start]), start)
        return acc.result(max_rank, return_minp)


def score(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric="euclidean", max_rank=50) -> dict:
    """``evaluate_features`` as the package reports it: ``SUMMARY_KEYS`` (rank-k, mAP and mINP in percent;
    rank-k beyond the gallery size is the last CMC value) plus ``cmc`` in percent, ``min(max_rank, gallery)``
    long. The one place where features and labels become the reported numbers."""
    num_gallery = len(g_pids)
    cmc, mean_ap, mean_inp = evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric=metric,
                                               max_rank=min(max_rank, num_gallery), return_minp=True)
    cmc = [100.0 * float(v) for v in cmc]
    return {"rank1": cmc[0], "rank5": cmc[min(5, len(cmc)) - 1], "rank10": cmc[min(10, len(cmc)) - 1],
            "mAP": 100.0 * float(mean_ap), "mINP": 100.0 * float(mean_inp), "num_query": len(q_pids),
            "num_gallery": num_gallery, "cmc": cmc}
