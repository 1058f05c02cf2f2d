"""Losses of Robust-ReID (paper Section 3.1, Eq. 2-5).

Two losses train the network, both computed outside the model on its outputs:

* ``CrossEntropyLabelSmooth`` -- identity classification with label smoothing as in Bag of Tricks
  (Luo et al. 2019, the paper's [13]): the target distribution is ``(1 - epsilon) * onehot + epsilon / K``.
  This is exactly PyTorch's ``F.cross_entropy(..., label_smoothing=epsilon)``, which we use.
* ``TripletLoss`` -- the metric loss on the retrieval embedding, in the variants of Section 3.1:

  ========================  ===========================================  =====================
  mining                    per-anchor "positive minus negative" term    paper
  ========================  ===========================================  =====================
  ``"batch_all"``           every (p, n) pair: d(a, p) - d(a, n)         Eq. 2 on a PK batch
  ``"batch_hard"``          max_p d(a, p) - min_n d(a, n)                Eq. 3 (Hermans et al.)
  ``"batch_soft"``          sum_p w_p d(a, p) - sum_n w_n d(a, n)        Eq. 4 (Ristani et al.)
  ========================  ===========================================  =====================

  with ``w_p = softmax_p(d(a, p))`` over the anchor's positives and ``w_n = softmax_n(-d(a, n))`` over its
  negatives (weights are part of the graph, not detached). The term ``x`` goes through ``max(0, m + x)``
  for a float ``margin`` m (Eq. 2-4) or ``softplus(x)`` for ``margin=None`` (soft margin, Eq. 5). Robust-ReID
  uses ``mining="batch_soft", margin=None`` (Eq. 5); Table 2 column b uses the original loss of Eq. 2.

Conventions (documented choices, not stated in the paper):

* ``d`` is the Euclidean distance (not squared) between the features exactly as given; L2 normalisation,
  if wanted, is the model's job (paper Fig. 4).
* Positives of an anchor are the *other* samples with its pid (the anchor itself is excluded); negatives
  are the samples with a different pid.
* Anchors with no positive (their pid appears once in the batch) or no negative (the batch holds a single
  pid) are skipped; a ``ValueError`` is raised if no anchor is left.
* ``"batch_hard"`` and ``"batch_soft"`` average the per-anchor loss over the valid anchors.
  ``"batch_all"`` (our reading of Eq. 2 on a PK batch) averages the loss over *all* valid (a, p, n)
  triplets, including the ones already satisfying the margin (zero loss). On a PK batch every anchor has
  the same number of triplets, so this is also the mean over anchors of each anchor's mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .model import ReIDOutput

__all__ = ["MININGS", "CrossEntropyLabelSmooth", "TripletLoss", "triplet_loss", "ReIDCriterion"]

MININGS = ("batch_soft", "batch_hard", "batch_all")

# Squared distances are clamped to this before the square root: sqrt has an infinite slope at 0, and
# identical features (duplicate images, collapsed embeddings) would otherwise give NaN gradients.
_MIN_SQUARED_DISTANCE = 1e-12


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy with label smoothing (paper Section 3.1 "Label smoothing", as in Bag of Tricks [13]).

    The target distribution puts ``1 - epsilon + epsilon / num_classes`` on the true class and
    ``epsilon / num_classes`` on every other class, i.e. ``F.cross_entropy(label_smoothing=epsilon)``.
    ``forward(logits, pids)`` takes logits of shape ``(N, num_classes)`` and integer class indices of shape
    ``(N,)`` in ``[0, num_classes)`` and returns the mean loss (a scalar tensor).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 <= float(epsilon) < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
        self.num_classes = num_classes
        self.epsilon = float(epsilon)

    def forward(self, logits: Tensor, pids: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.size(1) != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, num_classes={self.num_classes}), got {tuple(logits.shape)}"
            )
        if pids.dim() != 1 or pids.size(0) != logits.size(0):
            raise ValueError(
                f"pids must have shape ({logits.size(0)},) to match the logits, got {tuple(pids.shape)}"
            )
        if pids.dtype.is_floating_point or pids.dtype == torch.bool:
            raise ValueError(f"pids must be integer class indices, got dtype {pids.dtype}")
        if pids.numel() > 0:
            lo, hi = int(pids.min()), int(pids.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"class index {bad} out of range: pids must be in [0, num_classes={self.num_classes})"
                )
        return F.cross_entropy(logits, pids.long(), label_smoothing=self.epsilon)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"


def _euclidean_distmat(feats: Tensor) -> Tensor:
    """(B, B) Euclidean distances between the rows of ``feats``, with a finite gradient at zero distance.

    Uses ``|a|^2 + |b|^2 - 2 a.b`` (O(B^2) memory rather than O(B^2 D)); the squared distance is clamped
    at ``_MIN_SQUARED_DISTANCE`` so that the clamp, not sqrt's infinite slope, sets the gradient at 0.
    """
    sq_norms = feats.pow(2).sum(dim=1)
    squared = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (feats @ feats.t())
    return squared.clamp_min(_MIN_SQUARED_DISTANCE).sqrt()


def _apply_margin(x: Tensor, margin: float | None) -> Tensor:
    """``softplus(x)`` for the soft margin (Eq. 5), ``max(0, margin + x)`` for a hard margin (Eq. 2-4)."""
    if margin is None:
        return F.softplus(x)
    return F.relu(margin + x)


def _check_margin(margin: float | None) -> float | None:
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise ValueError(f"margin must be None (soft margin, Eq. 5) or a float >= 0, got {margin!r}")
    margin = float(margin)
    if not margin >= 0.0 or margin == float("inf"):
        raise ValueError(f"margin must be None (soft margin, Eq. 5) or a finite float >= 0, got {margin!r}")
    return margin


def _check_mining(mining: str) -> str:
    if mining not in MININGS:
        raise ValueError(f"mining must be one of {MININGS}, got {mining!r}")
    return mining


def triplet_loss(
    feats: Tensor, pids: Tensor, mining: str = "batch_soft", margin: float | None = None
) -> Tensor:
    """Triplet loss of paper Eq. 2-5 on a batch of features ``(B, D)`` with identity labels ``pids (B,)``.

    ``mining`` is ``"batch_soft"`` (Eq. 4 / 5), ``"batch_hard"`` (Eq. 3) or ``"batch_all"`` (Eq. 2 over
    all triplets of the batch); ``margin=None`` is the soft margin (softplus, Eq. 5), a float is the hinge
    ``max(0, margin + pos - neg)``. See the module docstring for the conventions (skipped anchors, means).
    Returns a scalar tensor; raises ``ValueError`` if the batch has no anchor with both a positive and a
    negative.
    """
    mining = _check_mining(mining)
    margin = _check_margin(margin)
    if feats.dim() != 2:
        raise ValueError(f"feats must have shape (B, D), got {tuple(feats.shape)}")
    if not feats.dtype.is_floating_point:
        raise ValueError(f"feats must be floating point, got dtype {feats.dtype}")
    pids = torch.as_tensor(pids, device=feats.device)
    if pids.dim() != 1 or pids.size(0) != feats.size(0):
        raise ValueError(f"pids must have shape ({feats.size(0)},) to match feats, got {tuple(pids.shape)}")

    distmat = _euclidean_distmat(feats)
    same_pid = pids[:, None] == pids[None, :]
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=feats.device)
    is_pos = same_pid & not_self
    is_neg = ~same_pid

    # Skip anchors lacking a positive or a negative; selecting the rows first also keeps fully masked
    # rows (which would give NaN in the masked softmax, even through the backward pass) out of the graph.
    valid = is_pos.any(dim=1) & is_neg.any(dim=1)
    if not bool(valid.any()):
        raise ValueError(
            "no valid anchor in the batch: every anchor needs another sample with its pid (a positive) and "
            f"a sample with a different pid (a negative); got pids {pids.tolist()}"
        )
    distmat, is_pos, is_neg = distmat[valid], is_pos[valid], is_neg[valid]

    if mining == "batch_all":
        # (anchor, positive, negative) cube of d(a, p) - d(a, n); mean over the valid triplets (Eq. 2).
        diff = distmat[:, :, None] - distmat[:, None, :]
        is_triplet = is_pos[:, :, None] & is_neg[:, None, :]
        return _apply_margin(diff[is_triplet], margin).mean()

    neg_inf = torch.tensor(float("-inf"), dtype=distmat.dtype, device=distmat.device)
    pos_logits = torch.where(is_pos, distmat, neg_inf)  # only positives take part
    neg_logits = torch.where(is_neg, -distmat, neg_inf)  # only negatives take part
    if mining == "batch_hard":
        # Eq. 3: hardest (farthest) positive, hardest (closest) negative.
        pos_term = pos_logits.max(dim=1).values
        neg_term = -neg_logits.max(dim=1).values
    else:
        # Eq. 4: w_p = softmax over positives of d, w_n = softmax over negatives of -d. softmax subtracts
        # the row maximum, so large distances neither overflow nor underflow; masked entries get weight 0.
        pos_weights = torch.softmax(pos_logits, dim=1)
        neg_weights = torch.softmax(neg_logits, dim=1)
        pos_term = (pos_weights * distmat).sum(dim=1)
        neg_term = (neg_weights * distmat).sum(dim=1)
    return _apply_margin(pos_term - neg_term, margin).mean()


class TripletLoss(nn.Module):
    """Module form of :func:`triplet_loss`: ``TripletLoss(mining, margin)(feats, pids) -> scalar``.

    Robust-ReID uses the defaults, ``mining="batch_soft", margin=None`` (paper Eq. 5).
    """

    def __init__(self, mining: str = "batch_soft", margin: float | None = None) -> None:
        super().__init__()
        self.mining = _check_mining(mining)
        self.margin = _check_margin(margin)

    def forward(self, feats: Tensor, pids: Tensor) -> Tensor:
        return triplet_loss(feats, pids, mining=self.mining, margin=self.margin)

    def extra_repr(self) -> str:
        return f"mining={self.mining!r}, margin={self.margin}"


class ReIDCriterion(nn.Module):
    """The training objective: ID loss on each branch's logits + triplet loss on each branch's feature."""

    def __init__(self, loss_cfg, num_classes: int):
        super().__init__()
        self.id_loss = CrossEntropyLabelSmooth(num_classes, loss_cfg.label_smoothing) if loss_cfg.id_loss else None
        self.triplet = TripletLoss(loss_cfg.triplet_mining, loss_cfg.triplet_margin) if loss_cfg.triplet else None

    def forward(self, out: ReIDOutput, pids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        feats = [f for f in (out.global_feat, out.local_feat) if f is not None]
        logits = [z for z in (out.global_logits, out.local_logits) if z is not None]
        parts: dict[str, torch.Tensor] = {}
        if self.id_loss is not None:
            parts["id_loss"] = sum(self.id_loss(z.float(), pids) for z in logits)
        if self.triplet is not None:
            parts["triplet_loss"] = sum(self.triplet(f.float(), pids) for f in feats)
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}
