"""A simulated person detector: the ``det.txt`` of the synthetic tracking scenes, drawn from their ground
truth (misses that grow with occlusion, box jitter, false positives, scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DetectorNoise", "simulate_detections"]


@dataclass(frozen=True)
class DetectorNoise:
    """The simulated detector. A person is detected with probability ``1 - miss_rate`` times a ramp from
    0 to 1 as their visibility goes over ``visibility_range``; each box edge moves by a normal error of
    ``jitter`` times the box width (x) or height (y); ``false_positives_per_frame`` (Poisson mean) boxes
    of person shape land anywhere; scores are ``0.55 + 0.4 * visibility`` plus noise for true detections,
    uniform in 0.3..0.75 for false ones."""

    miss_rate: float = 0.05
    visibility_range: tuple[float, float] = (0.2, 0.5)
    jitter: float = 0.04
    false_positives_per_frame: float = 0.3
    score_noise: float = 0.08

    def __post_init__(self):
        lo, hi = self.visibility_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError("DetectorNoise.visibility_range must be 0 <= lo < hi <= 1, got "
                             f"{self.visibility_range}")
        for name in ("miss_rate", "jitter", "false_positives_per_frame", "score_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "miss_rate" and value > 1):
                raise ValueError(f"DetectorNoise.{name} must be a finite number >= 0 (miss_rate <= 1), "
                                 f"got {value!r}")


def simulate_detections(gt_boxes_xyxy, visibility, rng: np.random.Generator, noise: DetectorNoise,
                        size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Detections of one frame from its ground truth: ``(boxes_xyxy (N, 4), scores (N,))``.

    True detections first (in gt order), then false positives; every box is clipped to the ``size =
    (height, width)`` frame, and boxes smaller than 2 x 4 pixels after clipping are dropped. The same
    number of random draws is made whatever is detected, so one frame's noise never shifts another's.
    """
    height, width = size
    gt = np.asarray(gt_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    vis = np.asarray(visibility, dtype=np.float64).reshape(-1)
    if len(vis) != len(gt):
        raise ValueError(f"visibility: expected {len(gt)} values (one per gt box), got {len(vis)}")
    lo, hi = noise.visibility_range
    p_detect = (1.0 - noise.miss_rate) * np.clip((vis - lo) / (hi - lo), 0.0, 1.0)
    detected = rng.random(len(gt)) < p_detect
    wh = np.column_stack([gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]])
    boxes = gt + rng.normal(0.0, 1.0, (len(gt), 4)) * noise.jitter * np.tile(wh, 2)
    scores = 0.55 + 0.4 * vis + rng.normal(0.0, noise.score_noise, len(gt))
    n_fp = int(rng.poisson(noise.false_positives_per_frame))
    fp_h = rng.uniform(0.25, 0.6, n_fp) * height
    fp_x = rng.uniform(0.0, 1.0, n_fp) * (width - 0.4 * fp_h)
    fp_bottom = rng.uniform(0.4, 1.0, n_fp) * height
    fp = np.column_stack([fp_x, fp_bottom - fp_h, fp_x + 0.4 * fp_h, fp_bottom])
    fp_scores = rng.uniform(0.3, 0.75, n_fp)
    boxes = np.concatenate([boxes[detected], fp])
    scores = np.concatenate([scores[detected], fp_scores])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 4)
    return boxes[keep], np.clip(scores[keep], 0.01, 0.99)
