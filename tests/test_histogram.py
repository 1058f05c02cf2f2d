"""The colour-histogram baseline against a hand-computed histogram."""

import numpy as np
import pytest
from PIL import Image

from robustreid.datasets import Record
from robustreid.histogram import colour_histogram, histogram_dim, histogram_features, image_colour_histogram


def test_whole_crop_histogram_by_hand(tmp_path):
    img = np.zeros((4, 2, 3), dtype=np.uint8)
    img[:2] = (255, 0, 0)  # half red, half black
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    h = colour_histogram(str(path), centre_grayworld=False)
    expected = np.zeros(512)
    expected[(7 * 8 + 0) * 8 + 0] = 0.5  # red -> bin (7, 0, 0)
    expected[0] = 0.5
    np.testing.assert_allclose(h, np.sqrt(expected))


def test_grayworld_cancels_a_global_cast(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, size=(48, 24, 3)).astype(np.float32)
    cast = img * np.array([1.3, 1.0, 0.7])
    for name, a in (("plain.png", img), ("cast.png", cast)):
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tmp_path / name)
    records = [Record(str(tmp_path / n), 0, 0) for n in ("plain.png", "cast.png")]
    raw = histogram_features(records, "rgb_hist")
    gw = histogram_features(records, "rgb_hist_centre_gw")
    assert np.linalg.norm(gw[0] - gw[1]) < 0.5 * np.linalg.norm(raw[0] - raw[1])
    with pytest.raises(ValueError, match="matcher must be one of"):
        histogram_features(records, "hsv")


def test_histogram_dim_is_the_length_of_each_matchers_descriptor(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 24, 3)).astype(np.uint8)).save(tmp_path / "a.png")
    records = [Record(str(tmp_path / "a.png"), 0, 0)]
    assert [histogram_dim(m) for m in ("rgb_hist", "rgb_hist_centre_gw")] == [512, 2048]
    for matcher in ("rgb_hist", "rgb_hist_centre_gw"):
        assert histogram_features(records, matcher).shape == (1, histogram_dim(matcher))
    assert len(colour_histogram(str(tmp_path / "a.png"), centre_grayworld=False, bins=4)) == histogram_dim(
        "rgb_hist", bins=4)
    with pytest.raises(ValueError, match="matcher must be one of"):
        histogram_dim("hsv")


@pytest.mark.parametrize("centre_grayworld", [True, False])
def test_in_memory_histogram_equals_the_files(tmp_path, centre_grayworld):
    img = np.random.default_rng(2).integers(0, 256, (50, 26, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    from_file = colour_histogram(str(tmp_path / "a.png"), centre_grayworld)
    from_array = image_colour_histogram(img, centre_grayworld)
    from_pil = image_colour_histogram(Image.fromarray(img), centre_grayworld)
    assert from_array.shape == (histogram_dim("rgb_hist_centre_gw" if centre_grayworld else "rgb_hist"),)
    np.testing.assert_array_equal(from_array, from_file)
    np.testing.assert_array_equal(from_pil, from_array)
    np.testing.assert_array_equal(image_colour_histogram(img[:, ::2], centre_grayworld),  # a strided view
                                  image_colour_histogram(np.ascontiguousarray(img[:, ::2]), centre_grayworld))
