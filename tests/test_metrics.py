"""Tests for robustreid.metrics: hand-built protocol cases and a slow per-query reference loop."""

import warnings

import numpy as np
import pytest
import torch

from robustreid import metrics
from robustreid.metrics import compute_distmat, evaluate_features, evaluate_rank


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """The torchreid/fast-reid per-query loop, with a stable sort on (distance, is_match): at equal
    distance non-matches come first (the module's pessimistic tie rule). Returns (cmc, mAP, mINP)."""
    distmat = np.asarray(distmat, dtype=np.float64)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        keep = ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        is_match = (g_pids == q_pids[i])[keep]
        order = np.lexsort((is_match, distmat[i][keep]))  # last key is the primary key
        raw_cmc = is_match[order].astype(np.int64)
        if not raw_cmc.any():
            continue
        cmc = raw_cmc.cumsum()
        hardest = np.flatnonzero(raw_cmc).max()
        all_inp.append(cmc[hardest] / (hardest + 1.0))
        cmc[cmc > 1] = 1
        cmc = np.concatenate([cmc, np.ones(max(0, max_rank - len(cmc)))])
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp))


def random_split(rng, num_q, num_g, num_ids, num_cams):
    """Query/gallery labels where most queries have matches, some only same-camera ones, some none."""
    g_pids = rng.integers(0, num_ids, num_g)
    g_camids = rng.integers(0, num_cams, num_g)
    q_pids = rng.integers(0, num_ids + 3, num_q)  # a few pids absent from the gallery
    q_camids = rng.integers(0, num_cams, num_q)
    return q_pids, g_pids, q_camids, g_camids


def assert_same(result, expected):
    cmc, mean_ap, minp = result
    ref_cmc, ref_ap, ref_inp = expected
    np.testing.assert_allclose(cmc, ref_cmc, rtol=0, atol=1e-12)
    assert mean_ap == pytest.approx(ref_ap, abs=1e-12)
    assert minp == pytest.approx(ref_inp, abs=1e-12)


# One query (pid 1, camera 0) against five gallery entries; the hand ranking is in the comments.
HAND_G_PIDS = np.array([1, 2, 1, 0, 1])      # pid 0: Market1501 distractor, an ordinary non-match
HAND_G_CAMIDS = np.array([0, 1, 1, 2, 2])    # entry 0 is pid 1 in camera 0: removed for this query
HAND_DIST = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
# valid ranking: pid2 (0.2), pid1 (0.3) MATCH, pid0 (0.4), pid1 (0.5) MATCH
# AP = (1/2 + 2/4) / 2 = 0.5; CMC = [0, 1, 1, 1]; mINP = 2 matches / hardest at rank 4 = 0.5


def test_hand_case_same_camera_removed_and_distractor_counted():
    cmc, mean_ap, minp = evaluate_rank(HAND_DIST, [1], HAND_G_PIDS, [0], HAND_G_CAMIDS, max_rank=4,
                                       return_minp=True)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0, 1.0])
    assert mean_ap == pytest.approx(0.5)
    assert minp == pytest.approx(0.5)


def test_default_return_is_cmc_and_map():
    result = evaluate_rank(HAND_DIST, [1], HAND_G_PIDS, [0], HAND_G_CAMIDS, max_rank=4)
    assert len(result) == 2
    cmc, mean_ap = result
    assert isinstance(cmc, np.ndarray) and cmc.shape == (4,)
    assert isinstance(mean_ap, float)


def test_two_queries_average_and_cmc_padding():
    # Query 2 (pid 2, camera 0): pid2 cam1 entry is at 0.05 -> rank 1, AP 1, mINP 1. Query 1 has only
    # four valid gallery entries, so its CMC at rank 5 carries the 1 from rank 2.
    dist = np.vstack([HAND_DIST, [[0.9, 0.05, 0.8, 0.7, 0.6]]])
    cmc, mean_ap, minp = evaluate_rank(dist, [1, 2], HAND_G_PIDS, [0, 0], HAND_G_CAMIDS, max_rank=5,
                                       return_minp=True)
    np.testing.assert_allclose(cmc, [0.5, 1.0, 1.0, 1.0, 1.0])
    assert mean_ap == pytest.approx(0.75)
    assert minp == pytest.approx(0.75)


def test_query_without_valid_match_is_skipped_with_warning():
    # Query 2 (pid 3) only appears in the gallery in its own camera -> no valid match.
    g_pids = np.append(HAND_G_PIDS, 3)
    g_camids = np.append(HAND_G_CAMIDS, 1)
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.9], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    with pytest.warns(UserWarning, match="1 of 2 queries"):
        cmc, mean_ap, minp = evaluate_rank(dist, [1, 3], g_pids, [0, 1], g_camids, max_rank=4,
                                           return_minp=True)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0, 1.0])
    assert mean_ap == pytest.approx(0.5)
    assert minp == pytest.approx(0.5)


def test_all_queries_invalid_raises():
    with pytest.raises(ValueError, match="none of the 2 queries"):
        evaluate_rank(np.zeros((2, 3)), [7, 8], [1, 2, 7], [0, 0], [0, 1, 0], max_rank=3)


def test_queries_with_a_match_agrees_with_evaluate_rank():
    # the two hand cases above: 1 of 2 queries valid, then none (all same-camera or absent)
    g_pids, g_camids = np.append(HAND_G_PIDS, 3), np.append(HAND_G_CAMIDS, 1)
    assert metrics.queries_with_a_match([1, 3], g_pids, [0, 1], g_camids) == 1
    assert metrics.queries_with_a_match([7, 8], [1, 2, 7], [0, 0], [0, 1, 0]) == 0
    # against a slow loop on random labels
    rng = np.random.default_rng(0)
    q_pids, q_cams = rng.integers(0, 6, 40), rng.integers(0, 3, 40)
    g_pids, g_cams = rng.integers(-1, 6, 30), rng.integers(0, 3, 30)
    slow = sum(any(gp == qp and gc != qc for gp, gc in zip(g_pids, g_cams)) for qp, qc in zip(q_pids, q_cams))
    assert metrics.queries_with_a_match(q_pids, g_pids, q_cams, g_cams) == slow


def test_score_reports_evaluate_features_in_percent():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(6, 8)), rng.normal(size=(9, 8))
    q_pids, g_pids = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 0, 1, 2, 3, 3, -1])
    q_cams, g_cams = np.zeros(6, dtype=int), np.ones(9, dtype=int)
    cmc, mean_ap, mean_inp = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, max_rank=9, return_minp=True)
    out = metrics.score(q, g, q_pids, g_pids, q_cams, g_cams)  # max_rank 50 > 9 gallery entries: the CMC is 9 long
    assert set(metrics.SUMMARY_KEYS) | {"cmc"} == set(out)
    assert out["cmc"] == pytest.approx(100 * cmc) and len(out["cmc"]) == 9
    assert (out["rank1"], out["rank5"], out["rank10"]) == pytest.approx((100 * cmc[0], 100 * cmc[4], 100 * cmc[8]))
    assert (out["mAP"], out["mINP"]) == pytest.approx((100 * mean_ap, 100 * mean_inp))
    assert (out["num_query"], out["num_gallery"]) == (6, 9)


def test_ties_are_pessimistic():
    # Match and non-match both at distance 1: the match ranks second.
    cmc, mean_ap, minp = evaluate_rank([[1.0, 1.0]], [1], [1, 2], [0], [1, 1], max_rank=2, return_minp=True)
    np.testing.assert_array_equal(cmc, [0.0, 1.0])
    assert mean_ap == pytest.approx(0.5)
    assert minp == pytest.approx(0.5)
    # Gallery order does not matter.
    assert evaluate_rank([[1.0, 1.0]], [1], [2, 1], [0], [1, 1], max_rank=2)[1] == pytest.approx(0.5)
    # Two tied matches after a tied non-match and a closer non-match: ranks 3 and 4.
    # AP = (1/3 + 2/4) / 2; mINP = 2/4.
    cmc, mean_ap, minp = evaluate_rank([[2.0, 1.0, 2.0, 2.0]], [1], [1, 5, 6, 1], [0], [1, 1, 1, 2],
                                       max_rank=4, return_minp=True)
    np.testing.assert_array_equal(cmc, [0.0, 0.0, 1.0, 1.0])
    assert mean_ap == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert minp == pytest.approx(0.5)


def test_collapsed_features_score_worst_case():
    # All features equal: every match ties every non-match, so each ranks after all non-matches.
    q_feats, g_feats = np.ones((2, 4)), np.ones((6, 4))
    g_pids, g_camids = np.array([1, 1, 2, 2, 3, 3]), np.array([1, 2, 1, 2, 1, 2])
    cmc, mean_ap, minp = evaluate_features(q_feats, g_feats, [1, 2], g_pids, [0, 0], g_camids, max_rank=6,
                                           return_minp=True)
    np.testing.assert_array_equal(cmc, [0, 0, 0, 0, 1, 1])
    assert mean_ap == pytest.approx((1 / 5 + 2 / 6) / 2)
    assert minp == pytest.approx(2 / 6)


def test_max_rank_larger_than_gallery_is_capped_with_warning():
    with pytest.warns(UserWarning, match="max_rank=50 exceeds the gallery size 5"):
        cmc, _ = evaluate_rank(HAND_DIST, [1], HAND_G_PIDS, [0], HAND_G_CAMIDS)
    assert cmc.shape == (5,)


@pytest.fixture(params=[1, 3500, None], ids=["one_row_blocks", "few_row_blocks", "default_blocks"])
def block_elements(request, monkeypatch):
    """Rank one query row, a few rows (3500 // num_g), or (default) all rows of these tests at a time."""
    if request.param is not None:
        monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", request.param)
    return request.param


def test_evaluate_rank_matches_reference_loop(block_elements):
    rng = np.random.default_rng(0)
    labels = random_split(rng, num_q=64, num_g=700, num_ids=40, num_cams=4)
    distmat = rng.random((64, 700))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_rank(distmat, *labels, max_rank=20, return_minp=True)
        expected = reference_rank(distmat, *labels, max_rank=20)
    assert_same(result, expected)


def test_evaluate_rank_with_many_ties_matches_reference_loop(block_elements):
    # Small-integer distances: nearly every match ties with non-matches and other matches.
    rng = np.random.default_rng(1)
    labels = random_split(rng, num_q=50, num_g=500, num_ids=25, num_cams=3)
    distmat = rng.integers(0, 6, (50, 500)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_rank(distmat, *labels, max_rank=10, return_minp=True)
        expected = reference_rank(distmat, *labels, max_rank=10)
    assert_same(result, expected)


@pytest.mark.parametrize("as_input", [
    lambda d: d,                                            # float64 numpy, read-only
    lambda d: torch.from_numpy(d).float(),                  # float32 tensor
    lambda d: d.astype(np.float16),                         # widened to float32
    lambda d: d.astype(np.int32),                           # integer distances
    lambda d: np.asfortranarray(d),                         # non-contiguous rows
], ids=["float64", "float32_tensor", "float16", "int32", "fortran_order"])
def test_evaluate_rank_input_types(as_input):
    rng = np.random.default_rng(7)
    labels = random_split(rng, num_q=20, num_g=200, num_ids=10, num_cams=3)
    distmat = rng.integers(0, 50, (20, 200)).astype(np.float64)  # exact in every dtype above
    distmat.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_rank(as_input(distmat), *labels, max_rank=10, return_minp=True)
        expected = reference_rank(distmat, *labels, max_rank=10)
    assert_same(result, expected)


def test_evaluate_rank_does_not_modify_distmat():
    distmat = torch.rand(6, 40, dtype=torch.float64)
    before = distmat.clone()
    evaluate_rank(distmat, np.arange(6), np.arange(40) % 8, np.zeros(6, int), np.ones(40, int), max_rank=5)
    assert torch.equal(distmat, before)


def test_evaluate_rank_single_match_and_clustered_queries():
    # Every query has exactly one match, or matches packed into a tiny distance range: the
    # degenerate cases of the cell grid.
    rng = np.random.default_rng(2)
    num_q, num_g = 40, 2000
    g_pids = np.arange(num_g) + 100
    g_pids[:40] = np.arange(40)            # query i's only match is gallery entry i ...
    g_pids[40:60] = np.arange(20)          # ... except queries 0-19, which get a second one
    q_pids, q_camids, g_camids = np.arange(num_q), np.zeros(num_q, int), np.ones(num_g, int)
    distmat = rng.random((num_q, num_g))
    distmat[:20, 40:60] = distmat[:20, :1] + 1e-12 * rng.random((20, 1))
    distmat[5, 1000:1100] = distmat[5, 5]  # non-matches tied exactly with query 5's match
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, return_minp=True)
    assert_same(result, reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50))


def numpy_distmat(q_feats, g_feats, metric):
    q, g = np.asarray(q_feats, np.float64), np.asarray(g_feats, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1 - q @ g.T
    return ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_compute_distmat_matches_numpy(metric):
    rng = np.random.default_rng(3)
    q_feats, g_feats = rng.normal(size=(13, 8)), rng.normal(size=(29, 8))
    for chunk_size in (1, 5, None):
        distmat = compute_distmat(q_feats, g_feats, metric, chunk_size=chunk_size)
        assert isinstance(distmat, torch.Tensor) and distmat.dtype == torch.float64
        np.testing.assert_allclose(distmat.numpy(), numpy_distmat(q_feats, g_feats, metric), atol=1e-12)
    distmat32 = compute_distmat(torch.from_numpy(q_feats).float(), g_feats.astype(np.float32), metric)
    assert distmat32.dtype == torch.float32
    np.testing.assert_allclose(distmat32.numpy(), numpy_distmat(q_feats, g_feats, metric), atol=1e-4)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 16, None])
def test_evaluate_features_matches_reference_loop(metric, chunk_size, monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 5 * 600)  # blocks of 5 rows inside each chunk
    rng = np.random.default_rng(4)
    labels = random_split(rng, num_q=48, num_g=600, num_ids=30, num_cams=4)
    centers = rng.normal(size=(33, 16))   # features cluster by pid so rankings are not random
    q_feats = centers[labels[0]] + rng.normal(size=(48, 16))
    g_feats = centers[labels[1]] + rng.normal(size=(600, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_features(q_feats, g_feats, *labels, metric=metric, max_rank=20, return_minp=True,
                                   chunk_size=chunk_size)
        expected = reference_rank(numpy_distmat(q_feats, g_feats, metric), *labels, max_rank=20)
        from_matrix = evaluate_rank(compute_distmat(q_feats, g_feats, metric), *labels, max_rank=20,
                                    return_minp=True)
    assert_same(result, expected)
    assert_same(from_matrix, expected)
    assert 0.0 < expected[1] < 1.0  # the case is neither trivial nor hopeless


def test_evaluate_features_float32_tensors_with_ties():
    # Small-integer features give exact float32 distances with many ties.
    rng = np.random.default_rng(5)
    labels = random_split(rng, num_q=30, num_g=300, num_ids=15, num_cams=3)
    q_feats = torch.from_numpy(rng.integers(-2, 3, (30, 6))).float().requires_grad_()
    g_feats = torch.from_numpy(rng.integers(-2, 3, (300, 6))).float()
    labels_t = [torch.from_numpy(x) for x in labels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_features(q_feats, g_feats, *labels_t, max_rank=10, return_minp=True, chunk_size=8)
        expected = reference_rank(numpy_distmat(q_feats.detach(), g_feats, "euclidean"), *labels,
                                  max_rank=10)
    assert_same(result, expected)


def test_realistic_market_like_split_matches_reference():
    # Market1501-like labels: six cameras, several images per camera, pid 0 distractors.
    rng = np.random.default_rng(6)
    ids = np.arange(1, 61)
    g_pids = np.concatenate([np.repeat(ids, 12), np.zeros(150, int)])
    g_camids = rng.integers(0, 6, g_pids.size)
    q_pids, q_camids = np.repeat(ids, 2), rng.integers(0, 6, 120)
    feats = rng.normal(size=(61, 32))
    q_feats = feats[q_pids] + 0.8 * rng.normal(size=(120, 32))
    g_feats = feats[g_pids] + 0.8 * rng.normal(size=(g_pids.size, 32))
    g_feats[g_pids == 0] = rng.normal(size=(150, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric="cosine",
                                   return_minp=True, chunk_size=25)
        expected = reference_rank(numpy_distmat(q_feats, g_feats, "cosine"), q_pids, g_pids, q_camids,
                                  g_camids, max_rank=50)
    assert_same(result, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(8)
    labels = random_split(rng, num_q=40, num_g=300, num_ids=20, num_cams=3)
    q_feats, g_feats = torch.randn(40, 16, dtype=torch.float64), torch.randn(300, 16, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        on_cpu = evaluate_features(q_feats, g_feats, *labels, max_rank=10, return_minp=True)
        on_cuda = evaluate_features(q_feats.cuda(), g_feats.cuda(), *labels, max_rank=10, return_minp=True)
    assert_same(on_cuda, on_cpu)


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate_rank(np.zeros(5), [1], [1] * 5, [0], [1] * 5), r"distmat: expected .* shape \(5,\)"),
    (lambda: evaluate_rank(np.zeros((2, 5)), [1], [1] * 5, [0], [1] * 5), r"q_pids: expected shape \(2,\)"),
    (lambda: evaluate_rank(np.zeros((1, 5)), [1], [1] * 4, [0], [1] * 5), r"g_pids: expected shape \(5,\)"),
    (lambda: evaluate_rank(np.zeros((1, 5)), [1], [1] * 5, [0], [1] * 5, max_rank=0), "max_rank"),
    (lambda: evaluate_features(np.zeros((1, 4)), np.zeros((3, 4)), [1], [1] * 3, [0], [1] * 3, max_rank=3,
                               chunk_size=0), "chunk_size"),
    (lambda: evaluate_rank(np.zeros((1, 5)), [1.5], [1] * 5, [0], [1] * 5), "q_pids: expected integer"),
    (lambda: evaluate_rank(np.zeros((1, 5)), ["a"], [1] * 5, [0], [1] * 5), "q_pids"),
    (lambda: evaluate_rank([[0, 1, 2], [0, 1, float("nan")]], [1, 1], [1, 2, 3], [0, 0], [1, 1, 1],
                           max_rank=3), r"row 1 \(query 1\) contains NaN"),
    (lambda: evaluate_features(np.zeros((1, 4)), np.zeros((3, 5)), [1], [1] * 3, [0], [1] * 3),
     "q_feats has dim 4 but g_feats has dim 5"),
    (lambda: evaluate_features(np.zeros((1, 4)), np.zeros((3, 4)), [1], [1] * 3, [0], [1] * 3,
                               metric="l1"), "metric: expected one of"),
    (lambda: evaluate_features(np.zeros(4), np.zeros((3, 4)), [1], [1] * 3, [0], [1] * 3), "q_feats"),
    (lambda: evaluate_features(np.full((1, 4), np.inf), np.zeros((3, 4)), [1], [1] * 3, [0], [1] * 3),
     "q_feats: features contain NaN"),
    (lambda: compute_distmat(np.zeros((0, 4)), np.zeros((3, 4))), "q_feats: expected a non-empty"),
])
def test_bad_input_raises_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
