"""Corruptions against their definitions (ImageNet-C's formulas, colorsys' HSV, hand-computed images), the
summary against a hand-computed case, and the grid's routing, resume and clean scores against references."""

import colorsys
import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustreid.datasets import Record, ReidDataset, load_dataset
from robustreid.evaluate import evaluate
from robustreid.histogram import histogram_features
from robustreid.model import build_model
from robustreid.robustness import (
    BENCHMARK,
    CORRUPTIONS,
    FAMILIES,
    LOW_RESOLUTION_FACTORS,
    ColourHistogramFeatures,
    corrupt,
    image_seed,
    low_resolution,
    read_cells,
    run_robustness,
    summarize,
)
from robustreid.robustness.weather import plasma_fractal
from robustreid.synthetic import render_crop, sample_camera, sample_identity, write_market1501

pytestmark = pytest.mark.usefixtures("one_thread")

# The corruptions that draw random numbers (ImageNet-C's definitions); the others ignore the seed.
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
          "frost", "fog", "spatter", "rain", "elastic_transform"}

# Steps at which ImageNet-C's own constants do not increase the mean absolute change, measured with
# imagecorruptions 1.1.2 itself on these synthetic crops (mean over 6 seeds): snow 2 -> 3 (69.9 -> 69.8: fewer,
# larger flakes), frost 3 -> 4 (89.6 -> 85.3: the image weight drops 0.7 -> 0.65, the frost weight stays),
# spatter 3 -> 4 (7.2 -> 4.7: water drops give way to mud). Every other step must increase it.
FLAT_STEPS = {("snow", 2), ("frost", 3), ("spatter", 3)}


@pytest.fixture(scope="module")
def crop():
    """A realistic 128x64 person crop: a synthetic person in a camera's scene, with its image formation."""
    rng = np.random.default_rng(0)
    return np.asarray(render_crop(sample_identity(rng), sample_camera(rng), rng))


def mad(a, b):
    return float(np.abs(a.astype(np.float64) - b).mean())


# ------------------------------------------------------------------------------------------ the registry
def test_registry_is_the_benchmark_plus_low_resolution():
    assert len(BENCHMARK) == 20 and set(BENCHMARK) | {"low_resolution"} == set(CORRUPTIONS)
    assert [len(names) for names in FAMILIES.values()] == [4, 5, 6, 5, 1]  # CIL-ReID's families, then ours
    assert sorted(n for names in FAMILIES.values() for n in names) == sorted(CORRUPTIONS)
    with pytest.raises(ValueError, match="unknown corruption 'fisheye'"):
        corrupt(np.zeros((16, 8, 3), np.uint8), "fisheye", 1)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("shape", [(128, 64), (37, 23)])
def test_contract_shape_dtype_determinism(name, shape, crop):
    image = np.ascontiguousarray(crop[: shape[0], : shape[1]])
    before = image.copy()
    out = CORRUPTIONS[name](image, 3, 0)
    assert out.dtype == np.uint8 and out.shape == image.shape and out is not image
    np.testing.assert_array_equal(image, before)  # the input is never modified
    np.testing.assert_array_equal(CORRUPTIONS[name](image, 3, 0), out)  # same seed, same image
    other = CORRUPTIONS[name](image, 3, 1)
    assert (not np.array_equal(other, out)) if name in RANDOM else np.array_equal(other, out)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_increases_the_change(name, crop):
    change = [np.mean([mad(CORRUPTIONS[name](crop, s, seed), crop) for seed in range(3)]) for s in range(1, 6)]
    assert change[4] > change[0] > 0
    for s in range(1, 5):
        if (name, s) not in FLAT_STEPS:
            assert change[s] > change[s - 1], (name, s, change)


def test_frost_hides_the_image_more_at_every_severity(crop):
    # frost's MAD is flat from 3 to 4 (its table), but the image's share falls at every step: the correlation of
    # the frosted pixels with the clean ones drops (image weight / frost weight = 2.5, 1.33, 1, 0.93, 0.8)
    corr = [np.mean([np.corrcoef(CORRUPTIONS["frost"](crop, s, seed).ravel(), crop.ravel())[0, 1]
                     for seed in range(3)]) for s in range(1, 6)]
    assert all(np.diff(corr) < 0), corr


@pytest.mark.parametrize("bad", [0, 6, 2.0, True, "3"])
def test_severity_out_of_range_is_an_error(bad, crop):
    with pytest.raises(ValueError, match="severity"):
        CORRUPTIONS["gaussian_noise"](crop, bad, 0)


def test_bad_images_and_seeds_are_errors(crop):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        CORRUPTIONS["fog"](crop.astype(np.float32), 1, 0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        CORRUPTIONS["fog"](crop[:, :, 0], 1, 0)
    with pytest.raises(TypeError, match="numpy array"):
        CORRUPTIONS["fog"](Image.fromarray(crop), 1, 0)
    with pytest.raises(ValueError, match="seed"):
        CORRUPTIONS["fog"](crop, 1, -1)


# ----------------------------------------------------------------------------- against the definitions
GREY = np.full((128, 64, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize("name, severity, expected_sd", [
    ("gaussian_noise", 1, 0.08),  # x + N(0, 0.08)
    ("speckle_noise", 1, 0.15 * 128 / 255),  # x + x N(0, 0.15)
    ("shot_noise", 1, np.sqrt(128 / 255 * 60) / 60),  # Poisson(60 x) / 60
])
def test_noise_has_imagenet_c_spread(name, severity, expected_sd):
    diff = (CORRUPTIONS[name](GREY, severity, 0).astype(np.float64) - 128) / 255
    assert abs(diff.mean()) < 0.003
    assert diff.std() == pytest.approx(expected_sd, rel=0.04)


@pytest.mark.parametrize("severity, amount", [(1, 0.03), (5, 0.27)])
def test_impulse_noise_replaces_the_stated_fraction(severity, amount):
    out = CORRUPTIONS["impulse_noise"](GREY, severity, 0)
    salt, pepper = (out == 255).mean(), (out == 0).mean()
    assert salt + pepper == pytest.approx(amount, abs=0.006)  # 24,576 values: sd of the fraction < 0.003
    assert salt == pytest.approx(pepper, abs=0.006)
    assert ((out == 0) | (out == 255) | (out == 128)).all()


def hsv_reference(image, change):
    """Every pixel through Python's colorsys: RGB -> HSV -> ``change`` -> RGB (hue 0 for greys, as skimage)."""
    out = np.empty(image.shape, dtype=np.float64)
    for index in np.ndindex(image.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*(image[index] / 255.0))
        out[index] = colorsys.hsv_to_rgb(*change(h, s, v))
    return np.rint(np.clip(out, 0, 1) * 255)


@pytest.fixture(scope="module")
def colourful():
    image = np.random.default_rng(1).integers(0, 256, (12, 10, 3)).astype(np.uint8)
    image[0, :3] = [(0, 0, 0), (90, 90, 90), (255, 255, 255)]  # black, grey, white
    return image


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_saturate_equal_hsv_by_colorsys(severity, colourful):
    shift = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    gain, offset = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))[severity - 1]
    bright = hsv_reference(colourful, lambda h, s, v: (h, s, min(v + shift, 1)))
    sat = hsv_reference(colourful, lambda h, s, v: (h, min(max(s * gain + offset, 0), 1), v))
    assert np.abs(CORRUPTIONS["brightness"](colourful, severity, 0) - bright).max() <= 1
    assert np.abs(CORRUPTIONS["saturate"](colourful, severity, 0) - sat).max() <= 1


def test_contrast_by_hand():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 4:] = 200  # channel means 100
    out = CORRUPTIONS["contrast"](image, 1, 0)  # gain 0.4: 100 -+ 40
    assert (out[:, :4] == 60).all() and (out[:, 4:] == 140).all()


def test_pixelate_is_block_means():
    image = np.random.default_rng(2).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    out = CORRUPTIONS["pixelate"](image, 5, 0)  # 0.25: 2x2 pixels of 4x4 blocks, enlarged by repetition
    means = image.reshape(2, 4, 2, 4, 3).mean(axis=(1, 3))
    # Pillow resamples one axis, then the other, rounding to uint8 in between: within 1 level
    assert np.abs(out.astype(float) - np.repeat(np.repeat(means, 4, 0), 4, 1)).max() <= 1


def test_defocus_impulse_response_is_the_disk():
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[8, 8] = 255
    out = CORRUPTIONS["defocus_blur"](image, 2, 0)[:, :, 0]  # radius 2: 13 pixels (1 + 4 + 4 + 4)
    yy, xx = np.mgrid[:16, :16]
    disk = (yy - 8) ** 2 + (xx - 8) ** 2 <= 4
    np.testing.assert_array_equal(out > 0, disk)
    assert set(out[disk].tolist()) == {20}  # 255 / 13 = 19.6


def test_low_resolution_by_hand():
    # an 8x8 image of 2x2 blocks whose columns run 0, 160, 80, 240: area-downscaled by 2 it is exactly those 4
    # columns; bilinear back, pixel j sits at (j + 0.5) / 2 - 0.5 in the small image (3/4-1/4 mixes of its
    # neighbours, the border pixels copies of the border columns)
    image = np.repeat(np.array([0, 0, 160, 160, 80, 80, 240, 240], np.uint8)[None, :, None], 8, 0).repeat(3, 2)
    expected = [0, 40, 120, 140, 100, 120, 200, 240]  # e.g. 140 = 0.75 * 160 + 0.25 * 80
    for axis_image, out in ((image, lambda o: o[:, :, 0]), (image.transpose(1, 0, 2), lambda o: o[:, :, 0].T)):
        result = out(low_resolution(np.ascontiguousarray(axis_image), 2))
        assert (result == np.array(expected)[None, :]).all(), result
    # 4x4 blocks 0, 160 downscaled by 4 (to 2x2) and back: pixel j sits at (j + 0.5) / 4 - 0.5, i.e. weights
    # 0, 0, 1/8, 3/8, 5/8, 7/8, 1, 1 on the second block
    image = np.repeat(np.array([0] * 4 + [160] * 4, np.uint8)[None, :, None], 8, 0).repeat(3, 2)
    assert (low_resolution(image, 4)[:, :, 1] == np.array([0, 0, 20, 60, 100, 140, 160, 160])[None, :]).all()
    np.testing.assert_array_equal(low_resolution(image, 1), image)
    with pytest.raises(ValueError, match="factor"):
        low_resolution(image, 0.5)


def test_low_resolution_severities_are_its_factors(crop):
    assert LOW_RESOLUTION_FACTORS == (1.5, 2.0, 3.0, 4.0, 6.0)
    for severity, factor in enumerate(LOW_RESOLUTION_FACTORS, 1):
        np.testing.assert_array_equal(CORRUPTIONS["low_resolution"](crop, severity, 0), low_resolution(crop, factor))


def test_plasma_fractal_is_a_normalised_power_of_two_map():
    field = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert field.shape == (32, 32) and field.min() == 0 and field.max() == 1
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(48, 2.0, np.random.default_rng(0))


def test_image_seed_depends_on_every_part():
    base = image_seed(0, "fog", 3, "query", 5)
    assert base == image_seed(0, "fog", 3, "query", 5)
    variants = [image_seed(1, "fog", 3, "query", 5), image_seed(0, "snow", 3, "query", 5),
                image_seed(0, "fog", 4, "query", 5), image_seed(0, "fog", 3, "gallery", 5),
                image_seed(0, "fog", 3, "query", 6)]
    assert len({base, *variants}) == 6
    with pytest.raises(ValueError, match="side"):
        image_seed(0, "fog", 3, "train", 5)


# ------------------------------------------------------------------------------------------------ summary
def cell(name, severity, rank1, family=None):
    row = {"corruption": name, "severity": severity, "rank1": rank1, "mAP": rank1 / 2, "mINP": rank1 / 4}
    return row if family is None else {**row, "family": family}


def test_summary_by_hand():
    cells = [cell("gaussian_noise", 1, 50), cell("gaussian_noise", 2, 30),  # mean 40
             cell("shot_noise", 1, 40),  # only severity 1: mean 40
             cell("defocus_blur", 1, 20), cell("defocus_blur", 2, 10),  # mean 15
             cell("low_resolution", 1, 60), cell("low_resolution", 2, 40),  # mean 50, kept out of the mean
             cell("my_warp", 1, 5, family="geometry")]  # mean 5
    summary = summarize(cells, {"rank1": 80, "mAP": 40, "mINP": 0})
    # mean of the corruptions' means (40, 40, 15, 5) = 25; the mean of the 6 cells would be 25.8
    assert summary["mean"] == {"rank1": 25.0, "mAP": 12.5, "mINP": 6.25}
    assert summary["relative"] == {"rank1": 25 / 80, "mAP": 12.5 / 40, "mINP": None}  # clean mINP 0: no ratio
    assert summary["in_mean"] == ["gaussian_noise", "shot_noise", "defocus_blur", "my_warp"]
    fams = summary["families"]
    assert list(fams) == ["noise", "blur", "low_resolution", "geometry"]
    assert fams["noise"]["mean"]["rank1"] == 40 and fams["noise"]["by_severity"][1]["rank1"] == 45
    assert fams["noise"]["by_severity"][2]["rank1"] == 30  # only gaussian_noise ran at severity 2
    assert fams["blur"]["relative"]["rank1"] == 15 / 80 and fams["low_resolution"]["mean"]["mAP"] == 25
    assert summary["corruptions"]["low_resolution"]["relative"]["rank1"] == 50 / 80
    with pytest.raises(ValueError, match="two cells"):
        summarize(cells + [cell("shot_noise", 1, 41)], {"rank1": 80, "mAP": 40, "mINP": 10})
    assert summarize([cell("low_resolution", 1, 60)], {"rank1": 80, "mAP": 40, "mINP": 10})["mean"] is None


# --------------------------------------------------------------------------------------------------- grid
NUM_PIDS = 4


def shift_identity(image, severity, seed):
    """A fake corruption: marks the crop so that ``identity_features`` reads it as the next person."""
    out = image.copy()
    out[0, 0, 1] = severity
    return out


class IdentityFeatures:
    """One-hot of the person encoded in the crop (pixel [0, 0, 0] = 10 x pid), moved to the next person by the
    fake corruption; remembers every crop it saw as ``(side, index, severity)`` (pixels [0, 0, 2], [1, 0, 0])."""

    def __init__(self, fail_on_call=None):
        self.seen, self.calls, self.fail_on_call = [], 0, fail_on_call

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("killed")
        feats = np.zeros((len(images), NUM_PIDS), dtype=np.float32)
        for row, image in enumerate(images):
            severity = int(image[0, 0, 1])
            self.seen.append(("query" if image[0, 0, 2] == 0 else "gallery", int(image[1, 0, 0]), severity))
            feats[row, (image[0, 0, 0] // 10 + (severity > 0)) % NUM_PIDS] = 1
        return feats


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """4 persons: one query each (camera 0), two gallery crops each (camera 1); 8x8 PNGs encoding who they are."""
    folder = tmp_path_factory.mktemp("coded")
    splits = {"query": [], "gallery": []}
    for side, per_pid in (("query", 1), ("gallery", 2)):
        for pid in range(NUM_PIDS):
            for _ in range(per_pid):
                index = len(splits[side])
                image = np.full((8, 8, 3), 100, dtype=np.uint8)
                image[0, 0] = (10 * pid, 0, 0 if side == "query" else 1)
                image[1, 0, 0] = index
                path = folder / f"{side}{index}.png"
                Image.fromarray(image).save(path)
                splits[side].append(Record(str(path), pid, 0 if side == "query" else 1))
    return ReidDataset("coded", str(folder), [], splits["query"], splits["gallery"])


@pytest.mark.parametrize("setting, sides, rank1", [
    ("query", ["query"], 0.0),  # corrupted queries look like the next person; the gallery does not
    ("gallery", ["gallery"], 0.0),
    ("both", ["query", "gallery"], 100.0),  # both moved alike: matches again
])
def test_settings_route_the_corrupted_side(setting, sides, rank1, coded, tmp_path):
    features = IdentityFeatures()
    result = run_robustness(None, coded, tmp_path, corruptions={"shift": shift_identity}, severities=(1, 2),
                            setting=setting, features_fn=features, num_workers=0, batch_size=3)
    sizes = {"query": NUM_PIDS, "gallery": 2 * NUM_PIDS}
    expected = [(side, i, 0) for side in ("query", "gallery") for i in range(sizes[side])]  # clean, once
    expected += [(side, i, s) for s in (1, 2) for side in sides for i in range(sizes[side])]
    assert features.seen == expected
    cells = read_cells(tmp_path / "cells.jsonl")
    assert [(c["corruption"], c["severity"]) for c in cells] == [("clean", 0), ("shift", 1), ("shift", 2)]
    assert cells[0]["rank1"] == 100.0 and cells[0]["mAP"] == 100.0
    assert [c["rank1"] for c in cells[1:]] == [rank1, rank1]
    assert all(c["setting"] == setting and c["family"] in ("clean", "other") for c in cells)
    assert result["summary"] == summarize(cells[1:], cells[0]) and result["cells_run"] == 3


def test_a_killed_run_resumes_where_it_stopped(coded, tmp_path):
    args = dict(corruptions={"shift": shift_identity}, severities=(1, 2), features_fn=None, num_workers=0,
                batch_size=4)
    # 4 clean queries, 8 clean gallery crops, then 4 queries per severity: batches 1-3 clean, 4 severity 1, 5 severity 2
    with pytest.raises(RuntimeError, match="killed"):
        run_robustness(None, coded, tmp_path, **{**args, "features_fn": IdentityFeatures(fail_on_call=5)})
    assert [(c["corruption"], c["severity"]) for c in read_cells(tmp_path / "cells.jsonl")] == [("clean", 0),
                                                                                                ("shift", 1)]
    features = IdentityFeatures()
    result = run_robustness(None, coded, tmp_path, **{**args, "features_fn": features})
    # the clean gallery again (the corrupted queries are scored against it), then severity 2 only
    assert features.seen == [("gallery", i, 0) for i in range(8)] + [("query", i, 2) for i in range(4)]
    assert result["cells_run"] == 1
    assert [(c["corruption"], c["severity"]) for c in read_cells(tmp_path / "cells.jsonl")] == [
        ("clean", 0), ("shift", 1), ("shift", 2)]
    again = IdentityFeatures()
    assert run_robustness(None, coded, tmp_path, **{**args, "features_fn": again})["cells_run"] == 0
    assert again.calls == 0
    with pytest.raises(ValueError, match="setting='query', not setting='both'"):
        run_robustness(None, coded, tmp_path, **{**args, "features_fn": again, "setting": "both"})


def test_bad_arguments_are_errors(coded, tmp_path):
    features = IdentityFeatures()
    with pytest.raises(ValueError, match="unknown corruption"):
        run_robustness(None, coded, tmp_path, corruptions=["fog", "haze"], features_fn=features)
    with pytest.raises(ValueError, match="setting"):
        run_robustness(None, coded, tmp_path, setting="neither", features_fn=features)
    with pytest.raises(ValueError, match="severities"):
        run_robustness(None, coded, tmp_path, severities=(0, 1), features_fn=features)
    with pytest.raises(ValueError, match="metric"):
        run_robustness(None, coded, tmp_path, metric="manhattan", features_fn=features)
    with pytest.raises(ValueError, match="either a model"):
        run_robustness(None, coded, tmp_path)
    assert features.calls == 0


def test_colour_histogram_features_equal_the_files_histograms(tmp_path, crop):
    records = []
    for i, suffix in enumerate(("png", "jpg", "png")):
        path = tmp_path / f"c{i}.{suffix}"
        Image.fromarray(CORRUPTIONS["fog"](crop, i + 1, i)).save(path)
        records.append(Record(str(path), i, 0))
    arrays = [np.asarray(Image.open(r.img_path).convert("RGB")) for r in records]
    for matcher in ("rgb_hist", "rgb_hist_centre_gw"):
        np.testing.assert_array_equal(ColourHistogramFeatures(matcher)(arrays), histogram_features(records, matcher))


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    write_market1501(root, ids_train=2, ids_test=5, cameras=3, images_per_id_per_cam=2, distractors=3, junk=1)
    return load_dataset("market1501", root)


def test_model_grid_clean_cell_equals_evaluate_and_writes_the_report(market, tmp_path):
    torch.manual_seed(0)
    model = build_model("robustreid_1x", 3, stem_channels=8, stage_channels=(32, 32, 32), stage_repeats=(0, 0, 0),
                        feat_dim=16, conv_init="fan_out").eval()
    seen = []
    result = run_robustness(model, market, tmp_path, corruptions=["gaussian_noise", "low_resolution"],
                            severities=(5,), num_workers=2, batch_size=16,
                            progress=lambda done, total: seen.append((done, total)))
    cells = read_cells(tmp_path / "cells.jsonl")
    reference = evaluate(model, market, num_workers=0)
    for key in ("rank1", "mAP", "mINP"):
        assert cells[0][key] == pytest.approx(reference[key], abs=1e-6)
    assert [c["corruption"] for c in cells] == ["clean", "gaussian_noise", "low_resolution"]
    total = 3 * len(market.query) + len(market.gallery)  # clean query and gallery, then 2 corrupted queries
    assert seen[-1] == (total, total) and all(b[0] > a[0] for a, b in zip(seen, seen[1:]))
    report = (tmp_path / "report.md").read_text()
    assert "| clean |" in report and "| gaussian_noise | noise |" in report and "low_resolution (1)" in report
    for png in ("severity.png", "contact_sheet.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["run"]["features"] == "ReIDNet (torch, fp32)" and saved["mean"]["rank1"] == pytest.approx(
        result["summary"]["mean"]["rank1"])
