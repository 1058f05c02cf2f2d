"""Online multi-person tracker in the style of Long et al. (ICME 2018, "MOTDT"), with a ReID hook.

Section 5 of the paper measures the ReID model by what it adds to an online tracker (Tables 5-6). This
module is that tracker, written from the MOTDT description; the detector and the ReID network stay
with the caller, who passes per frame ``(boxes_xyxy (N, 4), scores (N,), embeddings (N, D) or None)``.

One frame of :meth:`Tracker.update`, in order:

1. Every live track advances its Kalman state one frame (:mod:`robustreid.tracking.kalman`).
2. Detections scoring below ``min_det_score`` are dropped: the rest are the frame's candidates.
3. Confirmed *tracked* tracks are matched to candidates by appearance: the cost is the minimum cosine
   distance between the candidate's embedding and the track's bank of up to ``max_descriptors`` stored
   embeddings, set to infinity where the Kalman gate rejects the pair (squared Mahalanobis distance
   above ``gating_threshold``, chi-square 95% for 4 dof); pairs costlier than
   ``max_appearance_distance`` are not matched.
4. *Lost* tracks (unmatched for at most ``max_frames_lost`` frames) are matched to the remaining
   candidates the same way: a person who was occluded or missed is found again under the old id.
5. Confirmed tracked tracks still unmatched are matched by IoU of their predicted box (cost
   ``1 - IoU`` up to ``max_iou_distance``); then unconfirmed tracks (born in the previous frame) by IoU.
6. Remaining candidates scoring at least ``min_new_track_score`` start new, unconfirmed tracks; a track
   is confirmed (and reported) once it has been matched in ``confirm_hits`` consecutive frames, and an
   unconfirmed track that misses a frame is dropped.
7. Unmatched confirmed tracks become lost; lost tracks older than ``max_frames_lost`` frames end.

Every assignment is a Hungarian assignment (``scipy.optimize.linear_sum_assignment``) that matches as
many admissible pairs as possible and, among those, minimises the total cost (:func:`linear_assignment`).

**Embedding on demand** (not in MOTDT; ``reid_refresh`` > 1 and ``embeddings`` given as a callable
``embed(indices) -> (len(indices), D)``): before step 3, a confirmed tracked track and a candidate that
steps 3-5 would pair whatever their appearance are matched without an embedding. Such a pair has IoU
at least ``certain_iou`` (and within the IoU step's reach); the track has no other candidate within its
reach (IoU or Kalman gate), and the candidate is within the reach of no other live track (tracked, lost
or unconfirmed). The track's bank gets a new embedding only when its last is ``reid_refresh`` frames
old, so a bank of ``max_descriptors`` spans about ``reid_refresh`` times more frames. Every other
candidate is embedded (one call per frame) and goes through steps 3-7 as above. The ReID model then
runs where appearance can decide something: people near each other, lost and new tracks. With
``use_reid=False`` a callable embeds every candidate (the banks still feed a re-entry gallery). The
sparser banks change later appearance decisions: on the street scene the tracks differ from MOTDT's
(README, "Tracking speed with ReID").

**Occluded crops** (not in MOTDT; ``occluded_iou``, off by default): a candidate overlapping another one is
matched as usual, but its embedding stays out of the track's bank (``TrackerConfig``).

**A veto in the IoU step** (not in MOTDT; ``iou_veto_distance``, off by default): step 5 refuses a clean
candidate whose embedding is far from the whole bank of the track it would be paired with (``TrackerConfig``).

``use_reid=False`` is the motion-only baseline of Table 5: steps 3-4 are skipped and lost tracks join
the IoU step after the tracked ones (otherwise nothing could ever bring them back). Embeddings, when
given, are still stored in the banks, so a re-entry gallery (:mod:`robustreid.tracking.reentry`) can
use them. What MOTDT has and this tracker leaves out: its R-FCN candidate classifier and the candidates
it scores from track predictions (this tracker only follows detections), and the NMS between the two.

The embedding hook. :func:`crop_boxes` cuts each detection out of a frame; :class:`CropEmbedder` turns
any ``extractor(list of HxWx3 uint8 RGB arrays) -> (N, D)`` (such as ``robustreid.evaluate
.FeatureExtractor``) into the ``embed_fn(image, boxes_xyxy) -> (N, D)`` the caller uses per frame, one
batch per frame; :class:`ReIDFeatureAdapter` exposes the same model as ``get_features(xyxys,
bgr_image)``, the interface of BoxMOT's ReID backends, so the model plugs into trackers built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .kalman import CHI2_95_4DOF, KalmanFilter, xyah_to_xyxy, xyxy_to_xyah

__all__ = [
    "TrackerConfig",
    "Track",
    "FrameTracks",
    "Tracker",
    "box_iou",
    "occluded",
    "linear_assignment",
    "appearance_distance",
    "crop_boxes",
    "CropEmbedder",
    "ReIDFeatureAdapter",
]


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrackerConfig:
    """Every threshold of the tracker; the defaults are MOTDT's.

    ``max_appearance_distance`` is a cosine distance (``1 - cos``) between L2-normalised embeddings.
    MOTDT thresholds the Euclidean distance at 0.64; on unit vectors ``|a - b|^2 = 2 (1 - cos)``, so the
    same boundary is ``0.64^2 / 2 = 0.2048``.

    ``reid_refresh`` and ``certain_iou`` set embedding on demand (module docstring); they act only when
    :meth:`Tracker.update` gets its embeddings as a callable (``tracking.run.track_sequence`` and
    ``robustreid track`` do; the room tracker and the re-entry calibration embed every candidate) and
    ``use_reid`` is on. ``reid_refresh=1`` embeds every candidate of every frame (MOTDT). ``certain_iou`` is
    an IoU (a similarity), unlike ``max_iou_distance`` (``1 - IoU``); a pair needs both.

    ``occluded_iou`` (not in MOTDT; None = off): a candidate whose IoU with another candidate of the frame
    is at least this is matched as usual, but its embedding does not join the track's bank, since its crop
    shows part of another person. A bank's distance is its nearest embedding, so one such crop lets the
    track match the other person later (a switch where people cross) and puts two people in the bank a
    re-entry gallery inherits. ``occluded_births`` (not in MOTDT): with False, such a candidate starts no
    track either (a person hidden behind another is found again by their own track, or born once in the
    clear); it needs ``occluded_iou``, without which no candidate counts as overlapped.
    On validation rooms it removed most one-or-two-frame fragments (missed re-entries 122 -> 33) but cost room
    IDF1 (71.1 -> 69.0, lower on 4 of 6) and added wrong re-entries (20 -> 24), so it stays True
    (docs/TRACKING.md, "Rules tried against the room's errors").

    ``iou_veto_distance`` (not in MOTDT; None = off; needs ``use_reid``): the IoU step (5) refuses a pair
    when the candidate's crop is clean (not overlapped, as ``occluded_iou`` judges) and its embedding lies
    farther than this cosine distance from every embedding in the track's bank. Where two people cross, the
    IoU step can hand a track to the other person once appearance (step 3) has let it go; a clean crop of
    someone else then ends the pair instead, so the track goes lost and the candidate starts its own (which a
    re-entry gallery can then match). A track with an empty bank, or an overlapped candidate, is matched by
    IoU as before. The veto reads every pair's embedding, so with it embedding on demand pairs nothing
    unembedded: every candidate is embedded, as with ``reid_refresh=1``. The room's trackers use 0.5
    (``tracking.run.room_tracker_config``; docs/TRACKING.md, "A veto in the IoU step").
    """

    use_reid: bool = True
    min_det_score: float = 0.4
    min_new_track_score: float = 0.6
    max_appearance_distance: float = 0.2048
    max_iou_distance: float = 0.7
    gating_threshold: float = CHI2_95_4DOF
    max_frames_lost: int = 30
    max_descriptors: int = 100
    confirm_hits: int = 2
    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160
    reid_refresh: int = 1
    certain_iou: float = 0.5
    occluded_iou: float | None = None
    occluded_births: bool = True
    iou_veto_distance: float | None = None

    def __post_init__(self):
        for name in ("use_reid", "occluded_births"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrackerConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if not 0.0 <= self.max_appearance_distance <= 2.0:
            raise ValueError("TrackerConfig.max_appearance_distance is a cosine distance in [0, 2], got "
                             f"{self.max_appearance_distance!r}")
        if not 0.0 <= self.max_iou_distance < 1.0:
            raise ValueError(f"TrackerConfig.max_iou_distance (1 - IoU) must be in [0, 1), got "
                             f"{self.max_iou_distance!r}")
        if not self.gating_threshold > 0:
            raise ValueError(f"TrackerConfig.gating_threshold must be > 0, got {self.gating_threshold!r}")
        if not 0.0 < self.certain_iou <= 1.0:
            raise ValueError(f"TrackerConfig.certain_iou must be in (0, 1], got {self.certain_iou!r}")
        if self.iou_veto_distance is not None and not 0.0 <= self.iou_veto_distance <= 2.0:
            raise ValueError(f"TrackerConfig.iou_veto_distance must be None or a cosine distance in [0, 2], "
                             f"got {self.iou_veto_distance!r}")
        if self.occluded_iou is not None and not 0.0 < self.occluded_iou <= 1.0:
            raise ValueError(f"TrackerConfig.occluded_iou must be None or in (0, 1], "
                             f"got {self.occluded_iou!r}")
        for name, low in (("max_frames_lost", 0), ("max_descriptors", 1), ("confirm_hits", 1),
                          ("reid_refresh", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"TrackerConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("min_det_score", "min_new_track_score"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"TrackerConfig.{name} must be a finite number, got {getattr(self, name)!r}")
        KalmanFilter(self.std_weight_position, self.std_weight_velocity)  # validates the weights


# ------------------------------------------------------------------------------------- primitives
def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, 4) x (B, 4) boxes (x1, y1, x2, y2) -> (A, B) intersection over union (0 for empty boxes)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def occluded(boxes_xyxy: np.ndarray, pool: np.ndarray, min_iou: float | None) -> np.ndarray:
    """(N,) bool: the detections of ``pool`` (indices into ``boxes_xyxy``) whose IoU with another detection
    of ``pool`` is at least ``min_iou`` (``TrackerConfig.occluded_iou``); all False when it is None."""
    flags = np.zeros(len(boxes_xyxy), dtype=bool)
    if min_iou is None or len(pool) < 2:
        return flags
    iou = box_iou(boxes_xyxy[pool], boxes_xyxy[pool])
    np.fill_diagonal(iou, 0.0)
    flags[pool] = iou.max(axis=1) >= min_iou
    return flags


def linear_assignment(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian assignment restricted to pairs with ``cost <= max_cost``.

    Returns ``(matches (K, 2) [row, col], unmatched_rows, unmatched_cols)``. Inadmissible pairs (above
    ``max_cost``, infinite or NaN) get a cost larger than any sum of admissible ones, so the solution
    has the most admissible pairs possible and, among those, the least total cost.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    rows, cols = cost.shape
    if cost.size == 0:
        return np.empty((0, 2), dtype=np.int64), np.arange(rows), np.arange(cols)
    admissible = np.isfinite(cost) & (cost <= max_cost)
    finite = np.where(admissible, cost, 0.0)
    big = (np.abs(finite).sum() + 1.0) * 2.0
    r, c = linear_sum_assignment(np.where(admissible, finite, big))
    keep = admissible[r, c]
    matches = np.stack([r[keep], c[keep]], axis=1).astype(np.int64)
    return (matches, np.setdiff1d(np.arange(rows), matches[:, 0]),
            np.setdiff1d(np.arange(cols), matches[:, 1]))


def appearance_distance(banks: Sequence[np.ndarray], feats: np.ndarray) -> np.ndarray:
    """(T,) banks of (n_t, D) unit embeddings x (N, D) unit embeddings -> (T, N) cosine distance to the
    nearest embedding of each bank (``1 - max cos``); an empty bank is at infinite distance."""
    feats = np.asarray(feats, dtype=np.float64)
    dist = np.full((len(banks), feats.shape[0]), np.inf)
    sizes = np.array([len(b) for b in banks], dtype=np.int64)
    rows = np.flatnonzero(sizes)
    if len(rows) and feats.shape[0]:
        # one product for all banks (a single BLAS call per association step), then a max per bank
        sims = np.concatenate([banks[i] for i in rows]) @ feats.T
        starts = np.concatenate([[0], np.cumsum(sizes[rows])[:-1]])
        dist[rows] = 1.0 - np.maximum.reduceat(sims, starts, axis=0)
    return dist


# ---------------------------------------------------------------------------------------- tracks
class Track:
    """One person's track: Kalman state, embedding bank and lifecycle (read its attributes; the
    :class:`Tracker` is the only writer)."""

    TRACKED, LOST, REMOVED = "tracked", "lost", "removed"

    def __init__(self, track_id: int, mean: np.ndarray, covariance: np.ndarray, frame_id: int,
                 max_descriptors: int):
        self.track_id = track_id
        self.mean, self.covariance = mean, covariance
        self.state = Track.TRACKED
        self.confirmed = False
        self.hits = 1  # consecutive matched frames while unconfirmed; total matches afterwards
        self.start_frame = frame_id
        self.last_frame = frame_id  # last frame the track was matched to a detection
        self._max_descriptors = max_descriptors
        self._bank: np.ndarray | None = None  # ring buffer (max_descriptors, D), allocated on first use
        self._num_seen = 0  # embeddings ever added
        self.last_embedded = -1  # frame of the last embedding added (-1: none yet)
        self._occluded_first: list[np.ndarray] = []  # the first max_descriptors crops kept out of the bank

    @property
    def box_xyxy(self) -> np.ndarray:
        """The box of the current Kalman state (after ``predict``: the predicted box)."""
        return xyah_to_xyxy(self.mean[:4])

    @property
    def descriptors(self) -> np.ndarray:
        """(n, D) stored unit embeddings, oldest first (n = 0 when no embeddings were given)."""
        if self._bank is None:
            return np.empty((0, 0))
        if self._num_seen <= self._max_descriptors:
            return self._bank[:self._num_seen].copy()
        pos = self._num_seen % self._max_descriptors
        return np.concatenate([self._bank[pos:], self._bank[:pos]])

    @property
    def occluded_descriptors(self) -> np.ndarray:
        """(n, D) the first unit embeddings kept out of the bank because their crop overlapped another
        person (``TrackerConfig.occluded_iou``), oldest first, at most ``max_descriptors``; (0, 0) if none.
        A re-entry gallery may query with them when a track has nothing else (``ReentryConfig``)."""
        return np.stack(self._occluded_first) if self._occluded_first else np.empty((0, 0))

    def _stored(self) -> np.ndarray:
        """The stored embeddings in ring order (no copy): enough for a nearest-neighbour distance."""
        if self._bank is None:
            return np.empty((0, 0))
        return self._bank[:min(self._num_seen, self._max_descriptors)]

    def _add_descriptor(self, feat: np.ndarray, frame_id: int) -> None:
        self.last_embedded = frame_id
        if self._bank is None:
            self._bank = np.empty((self._max_descriptors, feat.shape[0]))
        self._bank[self._num_seen % self._max_descriptors] = feat
        self._num_seen += 1

    def _add_occluded(self, feat: np.ndarray) -> None:
        if len(self._occluded_first) < self._max_descriptors:
            self._occluded_first.append(np.array(feat, dtype=np.float64))

    def __repr__(self) -> str:
        return (f"Track(id={self.track_id}, state={self.state}, confirmed={self.confirmed}, "
                f"frames={self.start_frame}-{self.last_frame})")


@dataclass(frozen=True)
class FrameTracks:
    """What one :meth:`Tracker.update` reports.

    ``track_ids``, ``boxes_xyxy`` (the matched detections' boxes), ``scores`` and ``det_indices``
    (indices into the frame's input detections) describe the confirmed tracks matched in this frame,
    by increasing id. ``confirmed`` lists the ids confirmed in this frame (they are also in
    ``track_ids``); ``ended`` maps the id of each confirmed track that ended in this frame (lost for
    more than ``max_frames_lost`` frames) to its embedding bank (n, D). ``occluded`` flags the rows whose
    detection overlapped another candidate (``TrackerConfig.occluded_iou``; all False when it is None):
    their embeddings did not join the bank. ``ended_occluded`` maps each ended track's id to the embeddings
    kept out of its bank (``Track.occluded_descriptors``).
    """

    frame_id: int
    track_ids: np.ndarray
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    det_indices: np.ndarray
    confirmed: tuple[int, ...] = ()
    ended: dict[int, np.ndarray] = field(default_factory=dict)
    occluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    ended_occluded: dict[int, np.ndarray] = field(default_factory=dict)

    def mot_rows(self) -> np.ndarray:
        """(M, 7) MOTChallenge result rows ``frame, id, x, y, w, h, score`` (top-left x, y)."""
        b = self.boxes_xyxy.reshape(-1, 4)
        return np.column_stack([np.full(len(b), self.frame_id), self.track_ids, b[:, 0], b[:, 1],
                                b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], self.scores]).astype(np.float64)


# --------------------------------------------------------------------------------------- tracker
class Tracker:
    """The online tracker (module docstring); one instance per camera / video sequence."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config if config is not None else TrackerConfig()
        self.kalman = KalmanFilter(self.config.std_weight_position, self.config.std_weight_velocity)
        self.frame_id = 0
        self._tracked: list[Track] = []  # matched in the last frame (confirmed or not)
        self._lost: list[Track] = []
        self._next_id = 1
        self._occluded = np.zeros(0, dtype=bool)  # this frame's candidates kept out of the banks

    @property
    def tracks(self) -> list[Track]:
        """Live tracks (tracked, then lost), including unconfirmed ones."""
        return self._tracked + self._lost

    def track(self, track_id: int) -> Track:
        """The live track with this id (KeyError once it has ended)."""
        for t in self.tracks:
            if t.track_id == track_id:
                return t
        raise KeyError(f"no live track with id {track_id}")

    def update(self, boxes_xyxy, scores, embeddings=None) -> FrameTracks:
        """Advance one frame with its detections (see the module docstring for the steps).

        ``embeddings``: an (N, D) array (one row per detection), None (motion only), or a callable
        ``embed(indices) -> (len(indices), D)`` (anything callable that is not an array: an ``nn.Module``
        passed by mistake would be called with indices). ``indices`` is an int64 array of rows of
        ``boxes_xyxy``, not sorted, never a detection below ``min_det_score``; the callable is called at
        most once per frame, and not at all when no candidate needs an embedding: the tracker embeds only
        the candidates it uses (all of them when ``reid_refresh`` is 1, see the module docstring
        otherwise). For a BoxMOT-style backend: ``lambda idx: adapter.get_features(boxes[idx], bgr_frame)``
        (:class:`ReIDFeatureAdapter`). If the callable raises, the tracker is left as it was before the call.
        """
        embed = embeddings if callable(embeddings) else None
        boxes, scores, feats = self._check_frame(boxes_xyxy, scores, embeddings)
        cfg = self.config
        before = (self.frame_id, [(t.mean, t.covariance) for t in self.tracks] if embed is not None else [])
        self.frame_id += 1
        measurements = xyxy_to_xyah(boxes) if len(boxes) else np.empty((0, 4))

        # 1. predict
        for t in self.tracks:
            t.mean, t.covariance = self.kalman.predict(t.mean, t.covariance)

        # 2. candidates
        pool = np.flatnonzero(scores >= cfg.min_det_score)
        self._occluded = occluded(boxes, pool, cfg.occluded_iou)
        matched: dict[int, int] = {}  # track id -> detection index
        tracked = [t for t in self._tracked if t.confirmed]
        unconfirmed = [t for t in self._tracked if not t.confirmed]
        lost = list(self._lost)
        if embed is not None and len(pool):
            try:
                tracked, pool, feats = self._embed_on_demand(embed, tracked, pool, measurements, boxes, matched)
            except BaseException:
                self.frame_id = before[0]  # nothing matched yet: undo the prediction
                for t, (mean, cov) in zip(self.tracks, before[1]):
                    t.mean, t.covariance = mean, cov
                raise

        # 3-4. appearance, tracked then lost
        if cfg.use_reid:
            tracked, pool = self._associate(tracked, pool, "appearance", measurements, feats, boxes, matched)
            lost, pool = self._associate(lost, pool, "appearance", measurements, feats, boxes, matched)
        # 5. IoU: remaining tracked (and lost, motion-only), then unconfirmed
        tracked, pool = self._associate(tracked, pool, "iou", measurements, feats, boxes, matched)
        if not cfg.use_reid:
            lost, pool = self._associate(lost, pool, "iou", measurements, feats, boxes, matched)
        unconfirmed, pool = self._associate(unconfirmed, pool, "iou", measurements, feats, boxes, matched)

        # 6. births
        newly_confirmed = [t.track_id for t in self._tracked if t.track_id in matched and t.confirmed
                           and t.hits == cfg.confirm_hits]
        born = []
        for j in pool:
            if scores[j] < cfg.min_new_track_score or (self._occluded[j] and not cfg.occluded_births):
                continue
            mean, cov = self.kalman.initiate(measurements[j])
            t = Track(self._next_id, mean, cov, self.frame_id, cfg.max_descriptors)
            self._next_id += 1
            if feats is not None:
                self._store(t, feats[j], j)
            if cfg.confirm_hits == 1:
                t.confirmed = True
                newly_confirmed.append(t.track_id)
            matched[t.track_id] = int(j)
            born.append(t)

        # 7. lifecycle
        ended: dict[int, np.ndarray] = {}
        ended_occluded: dict[int, np.ndarray] = {}
        still_tracked, still_lost = [], []
        for t in self._tracked + self._lost:
            if t.track_id in matched:
                t.state = Track.TRACKED
                still_tracked.append(t)
            elif not t.confirmed:
                t.state = Track.REMOVED  # an unconfirmed track must be matched in consecutive frames
            elif self.frame_id - t.last_frame > cfg.max_frames_lost:
                t.state = Track.REMOVED
                ended[t.track_id] = t.descriptors
                ended_occluded[t.track_id] = t.occluded_descriptors
            else:
                t.state = Track.LOST
                still_lost.append(t)
        self._tracked = still_tracked + born
        self._lost = still_lost

        out = sorted((t for t in self._tracked if t.confirmed), key=lambda t: t.track_id)
        det_idx = np.array([matched[t.track_id] for t in out], dtype=np.int64)
        return FrameTracks(
            frame_id=self.frame_id,
            track_ids=np.array([t.track_id for t in out], dtype=np.int64),
            boxes_xyxy=boxes[det_idx].reshape(-1, 4),
            scores=scores[det_idx],
            det_indices=det_idx,
            confirmed=tuple(sorted(newly_confirmed)),
            ended=ended,
            occluded=self._occluded[det_idx],
            ended_occluded=ended_occluded,
        )

    # ----------------------------------------------------------------------------------- internals
    def _embed_on_demand(self, embed, tracked: list[Track], pool: np.ndarray, measurements: np.ndarray,
                         boxes: np.ndarray, matched: dict[int, int]) -> tuple[list[Track], np.ndarray, np.ndarray]:
        """Match the certain pairs, embed what the rest of the frame needs in one call (module docstring);
        return the tracked tracks and candidates left, and (N, D) embeddings (zero rows where a detection
        was not embedded: no step reads them)."""
        cfg = self.config
        certain: list[tuple[Track, int]] = []
        if cfg.use_reid and cfg.reid_refresh > 1 and cfg.iou_veto_distance is None:
            certain = self._certain_pairs(tracked, pool, measurements, boxes)
        refresh = [j for t, j in certain if self.frame_id - t.last_embedded >= cfg.reid_refresh]
        done = {j for _, j in certain}
        rest = np.array([j for j in pool if j not in done], dtype=np.int64)
        wanted = np.array(refresh + rest.tolist(), dtype=np.int64)
        feats = np.zeros((len(boxes), 0))
        if len(wanted):
            got = _as_numpy(embed(wanted.copy())).astype(np.float64)
            if got.ndim != 2 or got.shape[0] != len(wanted) or got.shape[1] == 0:
                raise ValueError(f"embed({len(wanted)} indices) returned shape {got.shape}; expected "
                                 f"({len(wanted)}, D)")
            got = _l2_normalize(got, "embeddings")
            feats = np.zeros((len(boxes), got.shape[1]))
            feats[wanted] = got
        for t, j in certain:
            self._apply_match(t, measurements[j], feats[j] if j in refresh else None, j)
            matched[t.track_id] = j
        paired = {t.track_id for t, _ in certain}
        return [t for t in tracked if t.track_id not in paired], rest, feats

    def _certain_pairs(self, tracked: list[Track], pool: np.ndarray, measurements: np.ndarray,
                       boxes: np.ndarray) -> list[tuple[Track, int]]:
        """(track, detection) pairs steps 3-5 would match whatever the embeddings (module docstring): IoU
        at least ``certain_iou`` and within the IoU step's reach; no other candidate within the track's
        reach (IoU, or its Kalman gate: step 3), and the candidate within no other live track's reach."""
        if not tracked:
            return []
        cfg = self.config
        reach = 1.0 - cfg.max_iou_distance
        iou = box_iou(np.stack([t.box_xyxy for t in tracked]), boxes[pool])
        gated = np.stack([self.kalman.gating_distance(t.mean, t.covariance, measurements[pool])
                          for t in tracked]) <= cfg.gating_threshold
        near = (iou >= reach) | gated
        mine = {t.track_id for t in tracked}
        others = [t for t in self.tracks if t.track_id not in mine]
        crowded = np.zeros(len(pool), dtype=bool)
        for t in others:  # lost tracks compete by appearance inside their gate, any track by IoU
            crowded |= box_iou(t.box_xyxy[None], boxes[pool])[0] >= reach
            if t.confirmed:
                crowded |= self.kalman.gating_distance(t.mean, t.covariance, measurements[pool]) <= cfg.gating_threshold
        ok = ((iou >= max(cfg.certain_iou, reach)) & (near.sum(axis=1, keepdims=True) == 1)
              & (near.sum(axis=0) == 1) & ~crowded)
        return [(tracked[i], int(pool[k])) for i, k in zip(*np.nonzero(ok))]

    def _associate(self, tracks: list[Track], pool: np.ndarray, kind: str, measurements: np.ndarray,
                   feats: np.ndarray | None, boxes: np.ndarray,
                   matched: dict[int, int]) -> tuple[list[Track], np.ndarray]:
        """Match ``tracks`` to the detections in ``pool``; apply the matches; return what is left."""
        if not tracks or not len(pool):
            return tracks, pool
        cfg = self.config
        if kind == "appearance":
            cost = appearance_distance([t._stored() for t in tracks], feats[pool])
            for i, t in enumerate(tracks):
                gate = self.kalman.gating_distance(t.mean, t.covariance, measurements[pool])
                cost[i, gate > cfg.gating_threshold] = np.inf
            max_cost = cfg.max_appearance_distance
        else:
            cost = 1.0 - box_iou(np.stack([t.box_xyxy for t in tracks]), boxes[pool])
            max_cost = cfg.max_iou_distance
            if cfg.use_reid and cfg.iou_veto_distance is not None and feats is not None and feats.shape[1]:
                cost[self._vetoed(tracks, pool, feats)] = np.inf
        matches, rest_tracks, rest_dets = linear_assignment(cost, max_cost)
        for i, k in matches:
            j = int(pool[k])
            self._apply_match(tracks[i], measurements[j], None if feats is None else feats[j], j)
            matched[tracks[i].track_id] = j
        return [tracks[i] for i in rest_tracks], pool[rest_dets]

    def _vetoed(self, tracks: list[Track], pool: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """(T, P) pairs the IoU step refuses (``TrackerConfig.iou_veto_distance``): a clean candidate farther
        than the veto distance from the track's whole bank (an empty bank vetoes nothing)."""
        dist = appearance_distance([t._stored() for t in tracks], feats[pool])
        clean = ~self._occluded[pool]
        return np.isfinite(dist) & (dist > self.config.iou_veto_distance) & clean[None, :]

    def _apply_match(self, track: Track, measurement: np.ndarray, feat: np.ndarray | None, det: int) -> None:
        track.mean, track.covariance = self.kalman.update(track.mean, track.covariance, measurement)
        if feat is not None:
            self._store(track, feat, det)
        track.hits += 1
        track.last_frame = self.frame_id
        if not track.confirmed and track.hits >= self.config.confirm_hits:
            track.confirmed = True

    def _store(self, track: Track, feat: np.ndarray, det: int) -> None:
        """A matched detection's embedding: into the track's bank, or aside if its crop overlaps another."""
        if self._occluded[det]:
            track._add_occluded(feat)
        else:
            track._add_descriptor(feat, self.frame_id)

    def _check_frame(self, boxes_xyxy, scores, embeddings):
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes_xyxy: expected shape (N, 4), got {boxes.shape}")
        n = len(boxes)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores: expected shape ({n},) to match boxes_xyxy, got {scores.shape}")
        if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
            raise ValueError("boxes_xyxy and scores must be finite")
        bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
        if len(bad):
            raise ValueError(f"boxes_xyxy[{bad[0]}] = {boxes[bad[0]].tolist()}: expected x2 > x1 and y2 > y1")
        if callable(embeddings):
            return boxes, scores, None  # embedded on demand (_embed_on_demand)
        if embeddings is None:
            if self.config.use_reid and n:
                raise ValueError("embeddings: required when TrackerConfig.use_reid is True "
                                 "(pass use_reid=False for the motion-only tracker)")
            return boxes, scores, None
        feats = _as_numpy(embeddings).astype(np.float64)
        if n == 0:
            return boxes, scores, None
        if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] == 0:
            raise ValueError(f"embeddings: expected shape ({n}, D) to match boxes_xyxy, got {feats.shape}")
        return boxes, scores, _l2_normalize(feats, "embeddings")


# ---------------------------------------------------------------------------- the embedding hook
def crop_boxes(image: np.ndarray, boxes_xyxy) -> list[np.ndarray]:
    """The (h, w, C) pixels of each box, clipped to the image (boxes are outward-rounded to pixels).

    Returns views into ``image``. A box with no pixel inside the image is a ValueError.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image: expected an HxWxC array, got shape {image.shape}")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    height, width = image.shape[:2]
    crops = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            raise ValueError(f"boxes_xyxy[{i}] = {[x1, y1, x2, y2]}: expected finite coordinates")
        c0, r0 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c1, r1 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"boxes_xyxy[{i}] = {[x1, y1, x2, y2]} has no pixel inside the "
                             f"{width}x{height} image")
        crops.append(image[r0:r1, c0:c1])
    return crops


class CropEmbedder:
    """``embed_fn(image, boxes_xyxy) -> (N, D)`` float32 unit rows, from any batch extractor.

    ``extractor`` takes a list of HxWx3 uint8 RGB arrays and returns an (N, D) array or tensor, e.g.
    ``robustreid.evaluate.FeatureExtractor``; all crops of a frame go through it in one call.
    """

    def __init__(self, extractor: Callable[[list[np.ndarray]], object]):
        if not callable(extractor):
            raise ValueError(f"extractor must be callable, got {type(extractor).__name__}")
        self.extractor = extractor
        self.dim: int | None = None  # learnt from the first non-empty batch

    def __call__(self, image: np.ndarray, boxes_xyxy) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected an HxWx3 uint8 RGB array, got shape {image.shape}, "
                             f"dtype {image.dtype}")
        crops = crop_boxes(image, boxes_xyxy)
        if not crops:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        feats = _as_numpy(self.extractor(crops)).astype(np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(crops):
            raise ValueError(f"extractor returned shape {feats.shape} for {len(crops)} crops; "
                             "expected (num_crops, D)")
        self.dim = feats.shape[1]
        return _l2_normalize(feats, "extractor output").astype(np.float32)


class ReIDFeatureAdapter:
    """The ReID model behind ``get_features(xyxys, img) -> (N, D) numpy``, with ``img`` an HxWx3 uint8
    **BGR** frame (OpenCV order), the interface BoxMOT's trackers call on their ReID backend."""

    def __init__(self, extractor: Callable[[list[np.ndarray]], object]):
        self.embedder = CropEmbedder(extractor)

    def get_features(self, xyxys, img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"img: expected an HxWx3 BGR array, got shape {img.shape}")
        return self.embedder(np.ascontiguousarray(img[..., ::-1]), xyxys)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, wherever it lives
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _l2_normalize(feats: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{name}: expected finite values")
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros; "
                         "an embedding must have a direction")
    return feats / norms
