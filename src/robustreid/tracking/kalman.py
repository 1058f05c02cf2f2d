"""Constant-velocity Kalman filter on a box's (cx, cy, aspect, h), the motion model of the online tracker.

Section 5.2 of the paper plugs the ReID model into the tracker of Long et al. (ICME 2018, "MOTDT"),
whose motion model is the filter of SORT / DeepSORT (Wojke et al., ICIP 2017): the state is

    x = (cx, cy, a, h, vcx, vcy, va, vh)        a = w / h (aspect ratio), h = box height in pixels

with a constant-velocity transition (one frame = one time step) and an identity observation of the
first four entries. Process and measurement noise scale with the box height ``h``, so one set of
weights serves near and far people:

    initial std    position 2 * w_pos * h,   velocity 10 * w_vel * h   (aspect: 1e-2 and 1e-5)
    process std    position     w_pos * h,   velocity      w_vel * h   (aspect: 1e-2 and 1e-5)
    measurement    position     w_pos * h                              (aspect: 1e-1)

with ``w_pos = 1/20`` and ``w_vel = 1/160`` by default. Association gates a detection by the squared
Mahalanobis distance of its measurement to the predicted one, compared to the 95% quantile of the
chi-square distribution with 4 degrees of freedom (:data:`CHI2_95_4DOF` = 9.4877).

Everything here is a pure function of numpy arrays; :class:`KalmanFilter` only holds the two weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHI2_95_4DOF",
    "KalmanFilter",
    "xyxy_to_xyah",
    "xyah_to_xyxy",
]

# 95% quantile of the chi-square distribution with 4 degrees of freedom (scipy.stats.chi2.ppf(0.95, 4)).
CHI2_95_4DOF = 9.4877

_NDIM = 4  # measured quantities: cx, cy, a, h
# x_{t+1} = F x_t: each measured quantity advances by its velocity in one frame.
_F = np.eye(2 * _NDIM)
_F[:_NDIM, _NDIM:] = np.eye(_NDIM)
# z = H x: the measurement is the first half of the state.
_H = np.eye(_NDIM, 2 * _NDIM)


def xyxy_to_xyah(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(..., 4) boxes (x1, y1, x2, y2) -> (..., 4) measurements (cx, cy, w / h, h)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    if np.any(h <= 0) or np.any(w <= 0):
        raise ValueError(f"boxes must have x2 > x1 and y2 > y1, got {boxes[(h <= 0) | (w <= 0)].tolist()}")
    return np.stack([boxes[..., 0] + w / 2, boxes[..., 1] + h / 2, w / h, h], axis=-1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(..., >=4) states or measurements (cx, cy, a, h, ...) -> (..., 4) boxes (x1, y1, x2, y2)."""
    xyah = np.asarray(xyah, dtype=np.float64)
    h = xyah[..., 3]
    w = xyah[..., 2] * h
    cx, cy = xyah[..., 0], xyah[..., 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


@dataclass(frozen=True)
class KalmanFilter:
    """The filter's noise weights; the state lives with the caller as ``(mean (8,), covariance (8, 8))``."""

    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160

    def __post_init__(self):
        for name in ("std_weight_position", "std_weight_velocity"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"KalmanFilter.{name} must be a positive number, got {value!r}")

    # ------------------------------------------------------------------------------- noise models
    def _measurement_std(self, h: float) -> np.ndarray:
        wp = self.std_weight_position
        return np.array([wp * h, wp * h, 1e-1, wp * h])

    def _process_std(self, h: float) -> np.ndarray:
        wp, wv = self.std_weight_position, self.std_weight_velocity
        return np.array([wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h])

    # ------------------------------------------------------------------------------------- steps
    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track from one (cx, cy, a, h) measurement: zero velocity, height-scaled uncertainty."""
        z = _as_measurement(measurement)
        h = z[3]
        wp, wv = self.std_weight_position, self.std_weight_velocity
        pos, vel = 2 * wp * h, 10 * wv * h
        std = np.array([pos, pos, 1e-2, pos, vel, vel, 1e-5, vel])
        return np.concatenate([z, np.zeros(_NDIM)]), np.diag(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``x <- F x``, ``P <- F P F^T + Q`` with ``Q`` scaled by the current height."""
        q = np.diag(self._process_std(mean[3]) ** 2)
        return _F @ mean, _F @ covariance @ _F.T + q

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted measurement ``H x`` and its covariance ``S = H P H^T + R``."""
        r = np.diag(self._measurement_std(mean[3]) ** 2)
        return _H @ mean, _H @ covariance @ _H.T + r

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct with one (cx, cy, a, h) measurement: ``K = P H^T S^-1``, ``x += K y``, ``P -= K S K^T``."""
        z = _as_measurement(measurement)
        projected, s = self.project(mean, covariance)
        # K^T = S^-1 (H P) solved with a Cholesky factor (S is symmetric positive definite).
        chol = np.linalg.cholesky(s)
        gain = _cho_solve(chol, (covariance @ _H.T).T).T
        innovation = z - projected
        return mean + gain @ innovation, covariance - gain @ s @ gain.T

    def gating_distance(self, mean: np.ndarray, covariance: np.ndarray,
                        measurements: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance ``(z - Hx)^T S^-1 (z - Hx)`` of each of (M, 4) measurements.

        Compare with :data:`CHI2_95_4DOF` to keep detections inside the track's 95% confidence region.
        """
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, _NDIM)
        projected, s = self.project(mean, covariance)
        chol = np.linalg.cholesky(s)
        # Solve L y = (z - Hx)^T; then d^2 = |y|^2.
        y = np.linalg.solve(chol, (z - projected).T)
        return np.sum(y * y, axis=0)


def _as_measurement(measurement) -> np.ndarray:
    z = np.asarray(measurement, dtype=np.float64)
    if z.shape != (_NDIM,) or not np.all(np.isfinite(z)) or z[3] <= 0:
        raise ValueError(f"a measurement is (cx, cy, aspect, h) with h > 0, got {z.tolist()}")
    return z


def _cho_solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``(L L^T) x = b`` given the lower Cholesky factor ``L``."""
    return np.linalg.solve(chol.T, np.linalg.solve(chol, b))
