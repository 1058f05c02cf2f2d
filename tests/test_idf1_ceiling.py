"""benchmarks/idf1_ceiling.py: the oracle giving every result box its ground-truth person (a hand case)."""

import numpy as np
import pytest

from robustreid.tracking.run import evaluate_tracking


@pytest.fixture(scope="module")
def ceiling(load_script):
    return load_script("benchmarks/idf1_ceiling.py")


def test_oracle_relabels_a_swap_and_reaches_the_detection_bound(ceiling):
    """Two people over 4 frames (8 gt boxes). The result swaps their ids after frame 2, misses person 2 in
    frame 4 and adds a box on no one in frame 1 (where an inactive gt box, not a person to find, lies):
    8 result boxes, 7 paired. The bound is 2 * 7 / (8 + 8)."""
    gt, res = [], []
    for f in range(1, 5):
        gt += [[f, 1, 0, 0, 10, 20, 1, 1, 1], [f, 2, 100, 0, 10, 20, 1, 1, 1]]
        a, b = (7, 8) if f <= 2 else (8, 7)
        res.append([f, a, 1, 0, 10, 20, 1])
        if f < 4:
            res.append([f, b, 100, 1, 10, 20, 1])
    res.append([1, 9, 300, 0, 10, 20, 1])
    gt.append([1, 3, 300, 0, 10, 20, 0, 1, 1])
    gt, res = np.array(gt, dtype=float), np.array(res, dtype=float)
    relabelled, pairs = ceiling.oracle_ids(gt, res)
    assert pairs == 7
    assert relabelled[res[:, 2] < 50, 1].tolist() == [1, 1, 1, 1]  # the left box is person 1 in every frame
    assert relabelled[(res[:, 2] > 50) & (res[:, 2] < 200), 1].tolist() == [2, 2, 2]
    assert relabelled[res[:, 2] > 200, 1][0] > 2  # the box on no one gets an id of its own
    assert evaluate_tracking(gt, res)["idf1"] < 2 * 7 / 16
    assert evaluate_tracking(gt, relabelled)["idf1"] == pytest.approx(2 * 7 / 16)
