"""Re-entry gallery: open-set re-identification of people entering a room (Section 5.1, Table 5).

In the paper's indoor experiment, each time a person enters the room the ReID model compares them with
"several images per person that is currently not tracked inside the room", and either assigns one of
those identities or opens a new one: the gallery may not hold the person at all (open set), and a
wrong assignment removes the right identity from the candidates of later entries.

Here, a track's entry is decided once it has ``entry_descriptors`` embeddings (or when it ends, if
sooner): its query is the L2-normalised mean of those first embeddings, and its distance to a gallery
identity is the cosine distance to the nearest of that identity's stored embeddings. The entries
decided at the same time step in one camera are matched to the candidate identities jointly
(Hungarian, :func:`match_entries`); a pair is accepted when its distance is at most ``max_distance``,
a threshold set on a validation split at a chosen false-accept rate (:func:`calibrate_threshold`).
An unmatched entry opens a new identity.

Several cameras of one room share one gallery (:class:`RoomTracker`), so identities are global across
cameras. Without calibration between the cameras, "inside" is judged per camera: the candidates for an
entry in camera ``c`` are the identities with no live track in ``c`` (an identity walking in view of
camera 1 may appear in camera 2); with one camera this is exactly the paper's "not inside the room".
Cameras are decided in order, so an identity opened in camera 1 at this step is a candidate in
camera 2 at the same step. When a track ends, its embedding bank joins its identity's gallery entry
(the most recent ``max_descriptors`` embeddings are kept); with ``ReentryConfig.bank_distance`` (0.1 by
default), only its embeddings within that cosine distance of what the identity already holds join
(:func:`consistent_rows`), so a track that switched to another person inside its camera does not bring that
person into the bank.

Without a :class:`ReentryConfig` (``reentry=None``) every confirmed track opens a new identity: the
"without ReID" row of Table 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .tracker import FrameTracks, Tracker, TrackerConfig, appearance_distance, linear_assignment

__all__ = [
    "ReentryConfig",
    "ThresholdCalibration",
    "EntryDecision",
    "calibrate_threshold",
    "match_entries",
    "consistent_rows",
    "ReentryGallery",
    "RoomTracker",
]


@dataclass(frozen=True)
class ReentryConfig:
    """``max_distance``: accept a gallery identity at cosine distance <= this (see
    :func:`calibrate_threshold`); ``entry_descriptors``: embeddings averaged into a query;
    ``max_descriptors``: embeddings kept per gallery identity; ``max_identities``: identities the gallery
    holds at most (the one updated longest ago is forgotten first), so memory and matching time stay bounded
    however long the room is watched. ``bank_distance``: when a track ends, only its embeddings at cosine
    distance <= this from the nearest embedding its identity already holds join the identity's bank (None:
    all of them). Not in the paper (it says only that the gallery holds "several images per person"). Chosen
    on validation rooms: a first version on seeds 20-25 took the wrong re-entries from 25 to 18 at 0.1 (23 at
    0.2), and this one on seeds 26-31 from 17 to 13 at 0.1 and at 0.2, the correct ones unchanged
    (docs/TRACKING.md). ``margin`` (:func:`match_entries`) and ``occluded_queries`` (a track that ended with
    no clean crop, every one overlapping another person, queries with its overlapped crops, which never join a
    bank) are off: on validation rooms 20-25 every margin removed more correct re-entries than wrong ones
    (0.06: 130 / 20 -> 119 / 12 correct / wrong) and the overlapped queries added wrong ones as fast as
    correct ones (141 / 30), neither bringing a room nearer the target (docs/TRACKING.md, "Rules tried
    against the room's errors")."""

    max_distance: float
    entry_descriptors: int = 5
    max_descriptors: int = 100
    max_identities: int = 1000
    bank_distance: float | None = 0.1
    margin: float = 0.0
    occluded_queries: bool = False

    def __post_init__(self):
        if not (np.isfinite(self.max_distance) and 0.0 <= self.max_distance <= 2.0):
            raise ValueError("ReentryConfig.max_distance is a cosine distance in [0, 2], got "
                             f"{self.max_distance!r}")
        if self.bank_distance is not None and not (np.isfinite(self.bank_distance)
                                                   and 0.0 <= self.bank_distance <= 2.0):
            raise ValueError("ReentryConfig.bank_distance is a cosine distance in [0, 2] or None, got "
                             f"{self.bank_distance!r}")
        if (isinstance(self.margin, bool) or not isinstance(self.margin, (int, float))
                or not (np.isfinite(self.margin) and 0.0 <= self.margin <= 2.0)):
            raise ValueError(f"ReentryConfig.margin is a cosine distance in [0, 2], got {self.margin!r}")
        if not isinstance(self.occluded_queries, bool):
            raise ValueError("ReentryConfig.occluded_queries must be True or False, got "
                             f"{self.occluded_queries!r}")
        for name in ("entry_descriptors", "max_descriptors", "max_identities"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ReentryConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class ThresholdCalibration:
    """``threshold``: accept when distance <= threshold; ``far`` / ``tar``: the fraction of impostor /
    genuine distances of the calibration split that it accepts."""

    threshold: float
    far: float
    tar: float


@dataclass(frozen=True)
class EntryDecision:
    """One entry: track ``track_id`` of camera ``camid`` was given ``identity`` at time step ``step``;
    ``is_new`` when it opened a new identity; ``distance`` to the assigned identity, or to the nearest
    candidate when none was accepted (``inf`` when there was no candidate)."""

    step: int
    camid: int
    track_id: int
    identity: int
    is_new: bool
    distance: float


# ------------------------------------------------------------------------------------ pure functions
def calibrate_threshold(genuine_distances, impostor_distances, far: float = 0.01) -> ThresholdCalibration:
    """The largest threshold accepting at most ``far`` of the impostor distances (``distance <= t``).

    With ``n`` impostor distances, ``floor(far * n)`` of them may be accepted; the threshold sits just
    below the next one, so ties never push the false-accept rate above ``far``. The genuine distances
    give the true-accept rate reached at that threshold.
    """
    genuine = _as_distances(genuine_distances, "genuine_distances")
    impostor = np.sort(_as_distances(impostor_distances, "impostor_distances"))
    if not 0.0 <= far < 1.0:
        raise ValueError(f"far must be in [0, 1), got {far!r}")
    allowed = int(np.floor(far * len(impostor) + 1e-9))
    threshold = float(np.nextafter(impostor[allowed], -np.inf))
    return ThresholdCalibration(threshold=threshold,
                                far=float(np.mean(impostor <= threshold)),
                                tar=float(np.mean(genuine <= threshold)))


def match_entries(query_feats, gallery_banks: Sequence[np.ndarray], max_distance: float,
                  allowed=None, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Jointly assign (Q, D) unit queries to gallery identities, each given as an (n_g, D) bank.

    ``allowed`` (Q, G) bool marks the candidate pairs (all when None). ``margin``: a query whose second
    nearest allowed identity is less than this farther than its nearest is left unassigned (a ratio test in
    the manner of Lowe's, on distances: two identities it cannot tell apart). Returns ``(assigned (Q,),
    distance (Q,))``: the gallery index given to each query or -1, and its distance to that identity
    (to its nearest allowed identity when unassigned; ``inf`` when it had none). At most one query per
    identity; the assignment has the most pairs within ``max_distance``, then the least total distance.
    """
    q = np.asarray(query_feats, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"query_feats: expected shape (Q, D), got {q.shape}")
    dist = appearance_distance(gallery_banks, q).T if len(gallery_banks) else np.full((len(q), 0), np.inf)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != dist.shape:
            raise ValueError(f"allowed: expected shape {dist.shape} (queries, gallery), got {allowed.shape}")
        dist = np.where(allowed, dist, np.inf)
    assigned = np.full(len(q), -1, dtype=np.int64)
    distance = dist.min(axis=1) if dist.shape[1] else np.full(len(q), np.inf)
    if margin > 0 and dist.shape[1] > 1:
        nearest2 = np.partition(dist, 1, axis=1)[:, :2]
        with np.errstate(invalid="ignore"):  # a row with no allowed candidate: inf - inf, never matched
            close = nearest2[:, 1] - nearest2[:, 0] < margin
        dist = np.where(close[:, None], np.inf, dist)
    matches, _, _ = linear_assignment(dist, max_distance)
    assigned[matches[:, 0]] = matches[:, 1]
    distance[matches[:, 0]] = dist[matches[:, 0], matches[:, 1]]
    return assigned, distance


def consistent_rows(descriptors, held, max_distance: float) -> np.ndarray:
    """The rows of (n, D) ``descriptors`` whose cosine distance to the nearest row of (m, D) ``held`` is at
    most ``max_distance`` (all of them when ``held`` is empty): what an ended track may add to its identity's
    bank without bringing in someone else (a track that switched people keeps its later rows out)."""
    d, h = np.asarray(descriptors, dtype=np.float64), np.asarray(held, dtype=np.float64)
    if h.size == 0 or d.size == 0:
        return d
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    return d[1.0 - (dn @ hn.T).max(axis=1) <= max_distance]


# --------------------------------------------------------------------------------------- gallery
class ReentryGallery:
    """Identities with their stored embeddings; identity numbers start at 1 and are never reused.

    At most ``max_identities`` are held: opening one more forgets the identity updated longest ago (its
    number is not reused; if it comes back, :meth:`add` starts a new bank under the same number)."""

    def __init__(self, max_descriptors: int = 100, max_identities: int = 1000):
        self.max_descriptors = max_descriptors
        self.max_identities = max_identities
        self._banks: dict[int, np.ndarray] = {}  # insertion order = least recently updated first
        self._next = 1

    @property
    def identities(self) -> tuple[int, ...]:
        return tuple(self._banks)

    def bank(self, identity: int) -> np.ndarray:
        return self._banks[identity]

    def new_identity(self, descriptors=None) -> int:
        identity = self._next
        self._next += 1
        while len(self._banks) >= self.max_identities:
            del self._banks[next(iter(self._banks))]  # the least recently updated
        self._banks[identity] = np.empty((0, 0))
        if descriptors is not None:
            self.add(identity, descriptors)
        return identity

    def add(self, identity: int, descriptors) -> None:
        """Append (n, D) embeddings to an identity, keeping its most recent ``max_descriptors``."""
        d = np.asarray(descriptors, dtype=np.float64)
        if d.size == 0:
            return
        bank = self._banks.pop(identity, np.empty((0, 0)))  # re-inserted last: the most recently updated
        bank = d if bank.size == 0 else np.concatenate([bank, d])
        self._banks[identity] = bank[-self.max_descriptors:]

    def assign(self, queries: Sequence[np.ndarray], excluded: Iterable[int], max_distance: float,
               margin: float = 0.0, keep: Sequence[bool] | None = None) -> list[tuple[int, bool, float]]:
        """Decide simultaneous entries, each given as its (n_q, D) first embeddings; ``excluded``
        identities are not candidates; ``margin`` as in :func:`match_entries`. Returns ``(identity, is_new,
        distance)`` per query; the queries' embeddings are added to the identities they get, except where
        ``keep`` (one bool per query; all True when None) is False."""
        if not queries:
            return []
        for i, d in enumerate(queries):
            if np.asarray(d).size == 0:
                raise ValueError(f"entry {i} has no embeddings: re-entry needs the tracker to be given "
                                 "embeddings")
        means = np.stack([np.asarray(d, dtype=np.float64).mean(axis=0) for d in queries])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        excluded = set(excluded)
        candidates = [g for g in self._banks if g not in excluded and self._banks[g].size]
        assigned, distance = match_entries(means, [self._banks[g] for g in candidates], max_distance,
                                           margin=margin)
        keep = [True] * len(queries) if keep is None else [bool(k) for k in keep]
        if len(keep) != len(queries):
            raise ValueError(f"keep: expected one bool per query ({len(queries)}), got {len(keep)}")
        out = []
        for d, a, dist, k in zip(queries, assigned, distance, keep):
            if a >= 0:
                identity = candidates[a]
                if k:
                    self.add(identity, d)
                out.append((identity, False, float(dist)))
            else:
                out.append((self.new_identity(d if k else None), True, float(dist)))
        return out


# ------------------------------------------------------------------------------------------- room
class RoomTracker:
    """One :class:`Tracker` per camera of a room and one shared :class:`ReentryGallery`.

    Call :meth:`step` once per synchronised time step with every camera's detections, then
    :meth:`finish`, then :meth:`results` per camera (MOTChallenge rows with global identities).
    """

    def __init__(self, camids: Sequence[int], tracker_config: TrackerConfig | None = None,
                 reentry: ReentryConfig | None = None):
        camids = [int(c) for c in camids]
        if not camids or len(set(camids)) != len(camids):
            raise ValueError(f"camids: expected distinct camera ids, got {camids}")
        self.camids = sorted(camids)
        self.reentry = reentry
        self.trackers = {c: Tracker(tracker_config) for c in self.camids}
        self.gallery = ReentryGallery(reentry.max_descriptors if reentry else 1,
                                      reentry.max_identities if reentry else 1)
        self.decisions: list[EntryDecision] = []
        self.step_index = 0
        self._identity: dict[int, dict[int, int]] = {c: {} for c in self.camids}  # camid -> track -> id
        self._pending: dict[int, list[int]] = {c: [] for c in self.camids}  # confirmed, no identity yet
        self._live: dict[int, dict[int, int]] = {c: {} for c in self.camids}  # camid -> identity -> tracks
        # camid -> track -> first step with a row; camid -> identity -> last step one of its tracks was alive
        self._first_step: dict[int, dict[int, int]] = {c: {} for c in self.camids}
        self._left_at: dict[int, dict[int, int]] = {c: {} for c in self.camids}
        self._rows: dict[int, list[np.ndarray]] = {c: [] for c in self.camids}

    def identity_of(self, camid: int, track_id: int) -> int | None:
        return self._identity[camid].get(track_id)

    def step(self, frame_inputs: Mapping[int, tuple]) -> dict[int, FrameTracks]:
        """``frame_inputs[camid] = (boxes_xyxy, scores, embeddings or None)`` for every camera."""
        if set(frame_inputs) != set(self.camids):
            raise ValueError(f"frame_inputs: expected cameras {self.camids}, got {sorted(frame_inputs)}")
        if self.reentry is not None:
            for c in self.camids:
                boxes, _, feats = frame_inputs[c]
                if feats is None and len(np.asarray(boxes).reshape(-1, 4)):
                    raise ValueError(f"camera {c}: a re-entry gallery needs the detections' embeddings, "
                                     "got None")
        self.step_index += 1
        outputs = {c: self.trackers[c].update(*frame_inputs[c]) for c in self.camids}
        for c in self.camids:
            out = outputs[c]
            self._pending[c].extend(out.confirmed)
            rows = out.mot_rows()
            self._rows[c].append(rows)
            for track_id in rows[:, 1].astype(int).tolist():
                self._first_step[c].setdefault(track_id, self.step_index)
        self._decide(outputs, final=False)
        for c in self.camids:  # ended tracks leave the camera; their embeddings join the gallery
            for track_id, bank in outputs[c].ended.items():
                identity = self._identity[c][track_id]
                if (self.reentry is not None and self.reentry.bank_distance is not None
                        and identity in self.gallery.identities):
                    bank = consistent_rows(bank, self.gallery.bank(identity), self.reentry.bank_distance)
                self.gallery.add(identity, bank)
                self._live[c][identity] -= 1
                self._left_at[c][identity] = self.step_index
                if not self._live[c][identity]:
                    del self._live[c][identity]
        return outputs

    def finish(self) -> list[EntryDecision]:
        """Decide the entries still waiting for embeddings (end of the sequence); returns them."""
        before = len(self.decisions)
        self._decide({}, final=True)
        return self.decisions[before:]

    def results(self, camid: int, track_ids: bool = False) -> np.ndarray:
        """(N, 7) rows ``frame, identity, x, y, w, h, score`` of one camera, identities global; with
        ``track_ids=True`` the camera's own track ids instead (to tie :attr:`decisions` to ground truth
        with :func:`robustreid.tracking.metrics.match_tracks_to_gt`)."""
        if camid not in self._rows:
            raise ValueError(f"camid: expected one of {self.camids}, got {camid!r}")
        rows = np.concatenate(self._rows[camid]) if self._rows[camid] else np.empty((0, 7))
        if track_ids:
            return rows
        if any(self._pending.values()):
            raise RuntimeError(f"{sum(map(len, self._pending.values()))} tracks are waiting for their "
                               "entry embeddings; call finish() first")
        rows = rows.copy()
        rows[:, 1] = [self._identity[camid][int(t)] for t in rows[:, 1]]
        return rows

    def _decide(self, outputs: Mapping[int, FrameTracks], final: bool) -> None:
        need = self.reentry.entry_descriptors if self.reentry else 0
        fallback = self.reentry is not None and self.reentry.occluded_queries
        for c in self.camids:
            ended = outputs[c].ended if c in outputs else {}
            ended_occluded = outputs[c].ended_occluded if c in outputs else {}
            ready, banks, clean = [], [], []
            for track_id in self._pending[c]:
                if track_id in ended:
                    bank, aside = ended[track_id], ended_occluded.get(track_id, np.empty((0, 0)))
                else:
                    track = self.trackers[c].track(track_id)
                    bank, aside = track.descriptors, track.occluded_descriptors
                if final or track_id in ended or len(bank) >= need:
                    ready.append(track_id)
                    # a track with no clean crop at all may query with its overlapped ones (never banked)
                    use_aside = fallback and not np.asarray(bank).size and np.asarray(aside).size
                    bank = aside if use_aside else bank
                    banks.append(bank[:need] if need else bank)
                    clean.append(not use_aside)
            if not ready:
                continue
            if self.reentry is None:
                results = [(self.gallery.new_identity(), True, float("inf")) for _ in ready]
            else:
                # not candidates: identities alive in this camera, and those that left it after the entering
                # tracks' first rows (their rows would share frames: one identity twice in a frame)
                since = min(self._first_step[c].get(t, self.step_index) for t in ready)
                excluded = set(self._live[c]) | {g for g, step in self._left_at[c].items() if step >= since}
                seen = [i for i, bank in enumerate(banks) if np.asarray(bank).size]
                decided = self.gallery.assign([banks[i] for i in seen], excluded=excluded,
                                              max_distance=self.reentry.max_distance,
                                              margin=self.reentry.margin, keep=[clean[i] for i in seen])
                results = dict(zip(seen, decided))
                # a track that ends (or the sequence does) before any of its crops could join its bank (each
                # overlapped another person: TrackerConfig.occluded_iou) has nothing to match: a new identity
                results = [results[i] if i in results else (self.gallery.new_identity(), True, float("inf"))
                           for i in range(len(ready))]
            for track_id, (identity, is_new, distance) in zip(ready, results):
                self._identity[c][track_id] = identity
                self._live[c][identity] = self._live[c].get(identity, 0) + 1
                self._pending[c].remove(track_id)
                self.decisions.append(EntryDecision(self.step_index, c, track_id, identity, is_new, distance))


def _as_distances(x, name: str) -> np.ndarray:
    d = np.asarray(x, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"{name}: expected a non-empty array of finite distances, got {d.size} values")
    return d
