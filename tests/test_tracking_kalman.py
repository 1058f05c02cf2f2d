"""Tests for robustreid.tracking.kalman against predict / update / gating worked out by hand.

With a block structure where each measured quantity i only couples to its own velocity, the filter
splits into four independent 2x2 problems: position variance ``a``, cross term ``b``, velocity
variance ``c``. The expected values below use those scalar formulas, not the module's matrix code.
"""

import numpy as np
import pytest

from robustreid.tracking.kalman import CHI2_95_4DOF, KalmanFilter, xyah_to_xyxy, xyxy_to_xyah


def test_box_conversions_by_hand():
    # box (10, 20) - (50, 120): w = 40, h = 100, centre (30, 70), aspect 0.4
    np.testing.assert_allclose(xyxy_to_xyah([10, 20, 50, 120]), [30, 70, 0.4, 100])
    np.testing.assert_allclose(xyah_to_xyxy([30, 70, 0.4, 100]), [10, 20, 50, 120])
    boxes = np.array([[0.5, 1.0, 3.5, 9.0], [100, 200, 150, 300]])
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(boxes)), boxes)
    with pytest.raises(ValueError, match="x2 > x1"):
        xyxy_to_xyah([10, 20, 10, 120])


def test_initiate_by_hand():
    kf = KalmanFilter()  # w_pos = 1/20, w_vel = 1/160
    mean, cov = kf.initiate([50, 80, 0.5, 100])
    np.testing.assert_array_equal(mean, [50, 80, 0.5, 100, 0, 0, 0, 0])
    # position std 2 * 100 / 20 = 10; velocity std 10 * 100 / 160 = 6.25; aspect 1e-2 and 1e-5
    expected = np.diag([100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10, 39.0625])
    np.testing.assert_allclose(cov, expected, rtol=1e-12, atol=0)


def _predicted():
    """A state with velocity (2, -1, 0, 3) and the initial covariance of a 100 px tall box, advanced
    one frame; returns the filter input and the hand-computed prediction."""
    kf = KalmanFilter()
    mean = np.array([50, 80, 0.5, 100, 2, -1, 0, 3], dtype=float)
    cov = np.diag([100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10, 39.0625])
    # process noise (h = 100): position (100/20)^2 = 25, velocity (100/160)^2 = 0.390625,
    # aspect 1e-4, aspect velocity 1e-10
    a = {0: 100 + 39.0625 + 25, 1: 100 + 39.0625 + 25, 2: 1e-4 + 1e-10 + 1e-4, 3: 100 + 39.0625 + 25}
    b = {0: 39.0625, 1: 39.0625, 2: 1e-10, 3: 39.0625}
    c = {0: 39.0625 + 0.390625, 1: 39.0625 + 0.390625, 2: 1e-10 + 1e-10, 3: 39.0625 + 0.390625}
    return kf, mean, cov, np.array([52, 79, 0.5, 103, 2, -1, 0, 3]), a, b, c


def test_predict_by_hand():
    kf, mean, cov, expected_mean, a, b, c = _predicted()
    new_mean, new_cov = kf.predict(mean, cov)
    np.testing.assert_allclose(new_mean, expected_mean)
    expected = np.zeros((8, 8))
    for i in range(4):
        expected[i, i], expected[i + 4, i + 4] = a[i], c[i]
        expected[i, i + 4] = expected[i + 4, i] = b[i]
    np.testing.assert_allclose(new_cov, expected, rtol=1e-12, atol=1e-18)


def test_update_and_gating_by_hand():
    kf, mean, cov, _, a, b, c = _predicted()
    mean, cov = kf.predict(mean, cov)  # now mean = (52, 79, 0.5, 103, ...)
    z = np.array([55.0, 77.0, 0.52, 101.0])
    # measurement noise from the predicted height 103: position (103/20)^2, aspect 1e-1^2
    r = {0: (103 / 20) ** 2, 1: (103 / 20) ** 2, 2: 1e-2, 3: (103 / 20) ** 2}
    x = {0: 52.0, 1: 79.0, 2: 0.5, 3: 103.0}
    v = {0: 2.0, 1: -1.0, 2: 0.0, 3: 3.0}
    new_mean, new_cov = kf.update(mean, cov, z)
    d2 = 0.0
    for i in range(4):
        s = a[i] + r[i]
        y = z[i] - x[i]
        assert new_mean[i] == pytest.approx(x[i] + a[i] / s * y, rel=1e-12)
        assert new_mean[i + 4] == pytest.approx(v[i] + b[i] / s * y, rel=1e-12)
        assert new_cov[i, i] == pytest.approx(a[i] - a[i] ** 2 / s, rel=1e-9)
        assert new_cov[i, i + 4] == pytest.approx(b[i] - a[i] * b[i] / s, rel=1e-9)
        assert new_cov[i + 4, i + 4] == pytest.approx(c[i] - b[i] ** 2 / s, rel=1e-9)
        d2 += y * y / s
    # nothing couples different quantities
    mask = np.ones((8, 8), dtype=bool)
    for i in range(4):
        mask[[i, i, i + 4, i + 4], [i, i + 4, i, i + 4]] = False
    assert np.all(new_cov[mask] == 0)
    # gating distance of z (and of a far-away measurement) against the predicted state
    far = np.array([152.0, 79.0, 0.5, 103.0])  # 100 px to the right: 100^2 / (164.0625 + 26.5225)
    gate = kf.gating_distance(mean, cov, np.stack([z, far]))
    assert gate[0] == pytest.approx(d2, rel=1e-9)
    assert gate[1] == pytest.approx(100.0**2 / (a[0] + r[0]), rel=1e-9)
    assert gate[0] < CHI2_95_4DOF < gate[1]


def test_chi2_threshold_value():
    # P(chi2_4 <= x) = 1 - exp(-x/2) (1 + x/2) for 4 degrees of freedom
    x = CHI2_95_4DOF
    assert 1 - np.exp(-x / 2) * (1 + x / 2) == pytest.approx(0.95, abs=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        KalmanFilter(std_weight_position=0)
    with pytest.raises(ValueError, match="h > 0"):
        KalmanFilter().initiate([1, 2, 0.5, -3])
