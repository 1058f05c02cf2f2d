"""Tests for robustreid.losses against the paper's Eq. 2-5 and label smoothing computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustreid.losses import MININGS, CrossEntropyLabelSmooth, TripletLoss, triplet_loss

MARGINS = [None, 0.3]


# ----------------------------------------------------------------------------- references (slow loops)
def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _apply(x: float, margin):
    return _softplus(x) if margin is None else max(0.0, margin + x)


def _softmax_weighted_sum(values: list[float], sign: float, shift: bool) -> float:
    """sum_j w_j v_j with w_j = exp(sign * v_j) / sum_k exp(sign * v_k) (Eq. 4), optionally max-shifted."""
    offset = max(sign * v for v in values) if shift else 0.0
    exps = [math.exp(sign * v - offset) for v in values]  # math.exp raises OverflowError past ~709
    return sum(e * v for e, v in zip(exps, values)) / sum(exps)


def reference_triplet(feats: torch.Tensor, pids: list[int], mining: str, margin, shift: bool = False):
    """Eq. 2-5 with explicit loops over anchors, positives and negatives, in python floats (float64)."""
    x = feats.double().tolist()
    d = [[math.sqrt(sum((u - v) ** 2 for u, v in zip(xi, xj))) for xj in x] for xi in x]
    per_anchor, per_triplet = [], []
    for a in range(len(x)):
        pos = [d[a][p] for p in range(len(x)) if p != a and pids[p] == pids[a]]
        neg = [d[a][n] for n in range(len(x)) if pids[n] != pids[a]]
        if not pos or not neg:
            continue
        if mining == "batch_all":
            per_triplet += [_apply(dp - dn, margin) for dp in pos for dn in neg]
        elif mining == "batch_hard":
            per_anchor.append(_apply(max(pos) - min(neg), margin))
        else:
            pos_term = _softmax_weighted_sum(pos, +1.0, shift)
            neg_term = _softmax_weighted_sum(neg, -1.0, shift)
            per_anchor.append(_apply(pos_term - neg_term, margin))
    values = per_triplet if mining == "batch_all" else per_anchor
    return sum(values) / len(values)


def pk_batch(num_pids: int, num_instances: int, dim: int, seed: int, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(num_pids * num_instances, dim, generator=gen, dtype=dtype) * scale
    pids = torch.arange(num_pids).repeat_interleave(num_instances)
    return feats, pids


# ----------------------------------------------------------------------------- triplet: vs the equations
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("margin", MARGINS)
def test_triplet_matches_loops_on_pk_batch(mining, margin):
    for seed in range(3):
        feats, pids = pk_batch(3, 4, 5, seed)
        got = triplet_loss(feats, pids, mining=mining, margin=margin)
        assert got.dtype == torch.float64 and got.dim() == 0
        assert got.item() == pytest.approx(reference_triplet(feats, pids.tolist(), mining, margin), rel=1e-10)


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("margin", MARGINS)
def test_triplet_matches_loops_on_unbalanced_batch(mining, margin):
    # pid 2 appears once (anchor skipped, still a negative for the others); pid 3 has 4 instances.
    pids = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
    feats = torch.randn(len(pids), 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    got = triplet_loss(feats, torch.tensor(pids), mining=mining, margin=margin)
    assert got.item() == pytest.approx(reference_triplet(feats, pids, mining, margin), rel=1e-10)


# 1-D points x = [0, 1, 3, 7], pids [0, 0, 1, 1]; distances d01=1 d02=3 d03=7 d12=2 d13=6 d23=4.
# Per anchor (positive, negatives): a0 (1; 3, 7), a1 (1; 2, 6), a2 (4; 3, 2), a3 (4; 7, 6).
HAND_FEATS = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
HAND_PIDS = torch.tensor([0, 0, 1, 1])


def _sp(x):
    return math.log(1.0 + math.exp(x))


def test_triplet_hand_computed_batch_hard():
    # max positive - min negative: a0 1-3=-2, a1 1-2=-1, a2 4-2=2, a3 4-6=-2.
    hinge = triplet_loss(HAND_FEATS, HAND_PIDS, mining="batch_hard", margin=0.5)
    assert hinge.item() == pytest.approx((0 + 0 + 2.5 + 0) / 4)
    soft = triplet_loss(HAND_FEATS, HAND_PIDS, mining="batch_hard", margin=None)
    assert soft.item() == pytest.approx((_sp(-2) + _sp(-1) + _sp(2) + _sp(-2)) / 4)


def test_triplet_hand_computed_batch_soft():
    # One positive per anchor (w_p = 1); negatives softmin-weighted, e.g. a0: (3e^-3 + 7e^-7)/(e^-3 + e^-7).
    q, r = math.exp(-4), math.exp(-1)
    x = [
        1 - (3 + 7 * q) / (1 + q),
        1 - (2 + 6 * q) / (1 + q),
        4 - (2 + 3 * r) / (1 + r),
        4 - (6 + 7 * r) / (1 + r),
    ]
    soft = triplet_loss(HAND_FEATS, HAND_PIDS, mining="batch_soft", margin=None)
    assert soft.item() == pytest.approx(sum(_sp(v) for v in x) / 4, rel=1e-12)
    hinge = triplet_loss(HAND_FEATS, HAND_PIDS, mining="batch_soft", margin=0.5)
    assert hinge.item() == pytest.approx(sum(max(0.0, 0.5 + v) for v in x) / 4, rel=1e-12)


def test_triplet_hand_computed_batch_all():
    # Eq. 2 over the 8 triplets; only a2's (3; 0) and (3; 1) violate m=0.5: 4-3+0.5 and 4-2+0.5.
    loss = triplet_loss(HAND_FEATS, HAND_PIDS, mining="batch_all", margin=0.5)
    assert loss.item() == pytest.approx((1.5 + 2.5) / 8)


def test_triplet_skips_anchor_without_positive():
    # x = [0, 1, 3], pids [0, 0, 1]: anchor 2 has no positive; a0: 1-3=-2, a1: 1-2=-1.
    feats, pids = HAND_FEATS[:3], torch.tensor([0, 0, 1])
    loss = triplet_loss(feats, pids, mining="batch_hard", margin=1.5)
    assert loss.item() == pytest.approx((0.0 + 0.5) / 2)


@pytest.mark.parametrize("pids", [[0, 1, 2, 3], [5, 5, 5, 5]])
def test_triplet_raises_without_valid_anchor(pids):
    with pytest.raises(ValueError, match="no valid anchor"):
        triplet_loss(HAND_FEATS, torch.tensor(pids))


# ----------------------------------------------------------------------------- numerical safety
def test_batch_soft_large_distances_stay_finite_and_exact():
    feats, pids = pk_batch(3, 4, 8, seed=0, scale=1e3)  # distances in the thousands
    dist = torch.cdist(feats, feats)
    assert dist.max() > 1000
    # A naive exp-softmax overflows here, even in float64 ...
    naive = torch.exp(dist) / torch.exp(dist).sum(dim=1, keepdim=True)
    assert torch.isnan(naive).any()
    with pytest.raises(OverflowError):
        reference_triplet(feats, pids.tolist(), "batch_soft", None, shift=False)
    for margin in MARGINS:
        got = triplet_loss(feats, pids, mining="batch_soft", margin=margin)
        assert torch.isfinite(got)
        # ... while ours equals the (max-shifted, hence exact) hand computation ...
        want = reference_triplet(feats, pids.tolist(), "batch_soft", margin, shift=True)
        assert got.item() == pytest.approx(want, rel=1e-10)
        # ... and the limit of the soft weights when the distance gaps are huge: batch-hard.
        hard = triplet_loss(feats, pids, mining="batch_hard", margin=margin)
        assert got.item() == pytest.approx(hard.item(), rel=1e-3)


def test_batch_soft_large_distances_float32():
    feats64, pids = pk_batch(3, 4, 8, seed=1, scale=1e3)
    feats = feats64.float().requires_grad_()
    loss = triplet_loss(feats, pids, mining="batch_soft", margin=None)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()
    want = reference_triplet(feats64.float().double(), pids.tolist(), "batch_soft", None, shift=True)
    assert loss.item() == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("margin", MARGINS)
def test_triplet_gradient_matches_finite_differences(mining, margin):
    # gradcheck compares autograd with finite differences of the loss: it fails if, e.g., the soft
    # weights of Eq. 4 were detached (their change would be missing from the analytic gradient).
    feats, pids = pk_batch(3, 3, 4, seed=3)
    feats.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: triplet_loss(f, pids, mining=mining, margin=margin), (feats,))


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("margin", MARGINS)
def test_triplet_gradient_finite_with_duplicate_features(mining, margin):
    base, pids = pk_batch(2, 3, 5, seed=4, dtype=torch.float32)
    dup = base.clone()
    dup[1] = dup[0]  # a positive identical to its anchor (distance 0)
    dup[2] = dup[0]
    dup[4] = dup[3]
    for feats in (dup, torch.ones(6, 5)):  # also: every feature identical (collapsed embedding)
        feats = feats.clone().requires_grad_()
        loss = triplet_loss(feats, pids, mining=mining, margin=margin)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(feats.grad).all()
    # All identical: every distance is 0, so the loss is softplus(0) = ln 2, or the margin itself.
    assert loss.item() == pytest.approx(math.log(2.0) if margin is None else margin, abs=1e-5)


def test_triplet_gradient_pulls_positive_and_pushes_negative():
    feats = HAND_FEATS.clone().requires_grad_()
    triplet_loss(feats, HAND_PIDS, mining="batch_soft", margin=None).backward()
    # Anchor 2 (x=3) violates the margin: its positive x=7 is farther than its negatives. Gradient descent
    # moves x=7 towards 3 (positive gradient) and x=3 towards 7 / away from its negatives 0, 1.
    assert feats.grad[3, 0] > 0
    assert feats.grad[2, 0] < 0


def test_triplet_module_matches_function_and_validates():
    feats, pids = pk_batch(2, 4, 3, seed=5)
    module = TripletLoss(mining="batch_hard", margin=0.3)
    assert module(feats, pids).item() == triplet_loss(feats, pids, "batch_hard", 0.3).item()
    assert TripletLoss().mining == "batch_soft" and TripletLoss().margin is None  # paper's Eq. 5
    with pytest.raises(ValueError, match="mining"):
        TripletLoss(mining="hard")
    for bad in (-0.1, float("nan"), float("inf"), "0.3", True):
        with pytest.raises(ValueError, match="margin"):
            TripletLoss(margin=bad)
    with pytest.raises(ValueError, match="feats"):
        triplet_loss(feats[0], pids)
    with pytest.raises(ValueError, match="pids"):
        triplet_loss(feats, pids[:-1])


# ----------------------------------------------------------------------------- label smoothing
def reference_label_smooth(logits: torch.Tensor, pids: list[int], epsilon: float) -> float:
    """-sum_k q_k log p_k with q_k = 1 - eps + eps/K on the true class, eps/K elsewhere; mean over rows."""
    rows = logits.double().tolist()
    total = 0.0
    for row, pid in zip(rows, pids):
        num_classes = len(row)
        log_norm = math.log(sum(math.exp(v) for v in row))
        for k, v in enumerate(row):
            q = (1 - epsilon + epsilon / num_classes) if k == pid else epsilon / num_classes
            total -= q * (v - log_norm)
    return total / len(rows)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_formula_and_torch(epsilon):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 3
    pids = torch.tensor([0, 4, 2, 2, 1, 3])
    got = CrossEntropyLabelSmooth(num_classes=5, epsilon=epsilon)(logits, pids)
    assert got.item() == pytest.approx(reference_label_smooth(logits, pids.tolist(), epsilon), rel=1e-12)
    torch_loss = F.cross_entropy(logits, pids, label_smoothing=epsilon)
    assert got.item() == pytest.approx(torch_loss.item(), rel=1e-12)


def test_label_smoothing_hand_cases():
    ls = CrossEntropyLabelSmooth(num_classes=4, epsilon=0.1)
    # Uniform logits: every class has probability 1/4, the loss is log 4 whatever the smoothing.
    assert ls(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item() == pytest.approx(math.log(4))
    # logits [log 2, 0, 0, 0]: p = [2/5, 1/5, 1/5, 1/5]; q = [0.925, 0.025, 0.025, 0.025].
    logits = torch.tensor([[math.log(2), 0.0, 0.0, 0.0]])
    want = -(0.925 * math.log(2 / 5) + 3 * 0.025 * math.log(1 / 5))
    assert ls(logits, torch.tensor([0])).item() == pytest.approx(want, rel=1e-6)


def test_label_smoothing_gradient_flows():
    logits = torch.randn(4, 3, requires_grad=True)
    CrossEntropyLabelSmooth(3)(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_label_smoothing_validation():
    ls = CrossEntropyLabelSmooth(num_classes=3)
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"class index 3 out of range.*num_classes=3"):
        ls(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="class index -1"):
        ls(logits, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="num_classes=3"):
        ls(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pids"):
        ls(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        ls(logits, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_classes"):
        CrossEntropyLabelSmooth(num_classes=0)
    with pytest.raises(ValueError, match="epsilon"):
        CrossEntropyLabelSmooth(num_classes=3, epsilon=1.0)
