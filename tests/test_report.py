"""The HTML + PNG report: files written and referenced, figure data, frame colours, log validation."""

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from robustreid.datasets import load_dataset
from robustreid.evaluate import evaluate
from robustreid.model import build_model
from robustreid.report import (
    MATCH_COLOR,
    MISMATCH_COLOR,
    plot_cmc,
    plot_cmc_curves,
    plot_ranked,
    plot_training,
    read_training_log,
    write_report,
)
from robustreid.synthetic import write_market1501


pytestmark = pytest.mark.usefixtures("one_thread")


TRAINING_LOG = [
    {"epoch": 1, "loss": 5.0, "lr": 3.5e-5, "rank1": None, "mAP": None},
    {"epoch": 2, "loss": 3.0, "lr": 7.0e-5},
    {"epoch": 3, "loss": 2.0, "lr": 1.05e-4, "rank1": 40.0, "mAP": 20.0},
    {"epoch": 4, "loss": 1.5, "lr": 1.4e-4},
    {"epoch": 5, "loss": 1.2, "lr": 1.4e-4, "rank1": 55.5, "mAP": 30.25},
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    write_market1501(root, ids_train=2, ids_test=4, cameras=2, images_per_id_per_cam=2, distractors=2, junk=1)
    dataset = load_dataset("market1501", root)
    torch.manual_seed(0)
    model = build_model("robustreid_1x", 0, stem_channels=8, stage_channels=(32, 32, 32),
                        stage_repeats=(0, 0, 0), feat_dim=16)
    return evaluate(model, dataset, num_workers=0, num_samples=3, topk=5), dataset


def referenced_files(html):
    return re.findall(r'<img src="([^"]+)"', html)


def test_write_report_writes_every_referenced_png(tmp_path, evaluated):
    result, dataset = evaluated
    index = write_report(tmp_path / "report", result, dataset, training_log=TRAINING_LOG)
    html = index.read_text()
    assert index.name == "index.html"
    assert sorted(referenced_files(html)) == ["cmc.png", "ranked.png", "training.png"]
    for name in referenced_files(html):
        with Image.open(index.parent / name) as image:
            assert image.format == "PNG" and image.width > 300
    assert f"{result['rank1']:.2f}%" in html and f"{result['mAP']:.2f}%" in html
    assert f"{result['mINP']:.2f}%" in html and f"<td>{result['num_gallery']}</td>" in html
    for entry in result["ranked"]:  # every sampled query is listed by file name
        assert entry["q_img_path"].rsplit("/", 1)[-1] in html
    assert json.loads((index.parent / "result.json").read_text()) == json.loads(json.dumps(result))
    assert not list(index.parent.glob("*.tmp")) and not list(index.parent.glob(".*"))

    # A second report into the same folder replaces the files in place.
    write_report(tmp_path / "report", result, dataset)
    html = (tmp_path / "report" / "index.html").read_text()
    assert sorted(referenced_files(html)) == ["cmc.png", "ranked.png"]


def test_training_only_report_from_a_jsonl_log(tmp_path):
    log_path = tmp_path / "log.jsonl"
    log_path.write_text("\n".join(json.dumps(entry) for entry in TRAINING_LOG) + "\n\n")
    assert read_training_log(log_path) == TRAINING_LOG
    index = write_report(tmp_path / "out", training_log=log_path, title="demo <run>")
    html = index.read_text()
    assert referenced_files(html) == ["training.png"]
    assert not (tmp_path / "out" / "cmc.png").exists()
    assert "<title>demo &lt;run&gt;</title>" in html  # escaped
    assert "<td>55.50</td>" in html and "<td>30.25</td>" in html  # the evaluated epochs' table


def test_plot_cmc_draws_the_given_curve():
    cmc = [60.0, 70.0, 75.0, 80.0, 85.0, 88.0, 90.0, 91.0, 92.0, 93.0, 94.0, 95.0]
    fig = plot_cmc(cmc)
    curve, marks = fig.axes[0].lines
    np.testing.assert_array_equal(curve.get_xdata(), np.arange(1, 13))
    np.testing.assert_array_equal(curve.get_ydata(), cmc)
    np.testing.assert_array_equal(marks.get_xdata(), [1, 5, 10])
    np.testing.assert_array_equal(marks.get_ydata(), [60.0, 85.0, 93.0])
    assert "rank-10: 93.0%" in fig.axes[0].texts[0].get_text()
    marks = plot_cmc([10.0, 40.0, 100.0]).axes[0].lines[1]  # short gallery: rank-1 only
    np.testing.assert_array_equal(marks.get_xdata(), [1])
    with pytest.raises(ValueError, match="cmc"):
        plot_cmc([])


def test_plot_cmc_curves_draws_every_model_in_order():
    curves = {"histogram": [30.0, 50.0, 60.0], "fine-tuned": [70.0, 85.0, 90.0, 95.0]}
    fig = plot_cmc_curves(curves, title="three models")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["histogram (30.0%)", "fine-tuned (70.0%)"]
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), curves["fine-tuned"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["histogram (30.0%)", "fine-tuned (70.0%)"]
    assert ax.get_xlim() == (0.5, 4.5) and ax.get_title() == "three models"
    with pytest.raises(ValueError, match="fine-tuned"):
        plot_cmc_curves({"fine-tuned": []})
    with pytest.raises(ValueError, match="none"):
        plot_cmc_curves({})


def test_report_with_models_tracking_and_pictures(tmp_path, evaluated):
    result, dataset = evaluated
    models = {"colour histogram": {"rank1": 34.6, "rank5": 56.9, "mAP": 22.0, "cmc": [34.6] + [50.0] * 9},
              "net <fine-tuned>": {"rank1": 80.25, "rank5": 95.0, "mAP": 70.0, "cmc": result["cmc"]},
              "no curve": {"rank1": 1.0, "rank5": 2.0, "mAP": 3.0}}
    tracking = {"street": [{"model": "no ReID", "MOTA": 89.9, "IDF1": 76.44, "HOTA": 65.4, "IDSW": 7},
                           {"model": "ReID", "MOTA": 90.9, "IDF1": 95.2, "HOTA": 80.8, "IDSW": 3}],
                "room": [{"model": "ReID", "MOTA": 88.6, "IDF1": 39.2, "HOTA": 44.7, "IDSW": 62,
                          "reentry": {"correct": 15, "wrong": 1, "missed": 28}}]}
    picture = np.zeros((30, 50, 3), np.uint8)
    picture[:, :, 1] = 200
    index = write_report(tmp_path / "report", result, dataset, models=models, tracking=tracking,
                         tracking_images={"street <frames>": picture}, summary="it beats <the histogram>",
                         result_name="net: detailed evaluation")
    html = index.read_text()
    assert sorted(referenced_files(html)) == ["cmc.png", "ranked.png", "tracking_1.png"]
    assert html.count('src="cmc.png"') == 1  # one CMC figure: the models' curves
    with Image.open(index.parent / "tracking_1.png") as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), picture)  # saved as given, lossless
    assert "<strong>it beats &lt;the histogram&gt;</strong>" in html and "street &lt;frames&gt;" in html
    assert "<td class=\"l\">net &lt;fine-tuned&gt;</td><td>80.2</td><td>95.0</td><td>70.0</td>" in html
    assert "<h2>net: detailed evaluation</h2>" in html
    assert "<td>89.9</td><td>76.4</td><td>65.4</td><td>7</td></tr>" in html  # street: no re-entry column
    assert "<td>62</td><td>15 / 1 / 28</td>" in html
    assert html.index("Models compared") < html.index("detailed evaluation") < html.index("Tracking")


def test_plot_training_panels_follow_the_available_series():
    fig = plot_training(TRAINING_LOG)
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "learning rate", "rank-1 / mAP"]
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [5.0, 3.0, 2.0, 1.5, 1.2])
    rank1, mean_ap = fig.axes[2].lines
    np.testing.assert_array_equal(rank1.get_xdata(), [3, 5])
    np.testing.assert_array_equal(mean_ap.get_ydata(), [20.0, 30.25])
    loss_only = plot_training([{"epoch": e, "loss": 1.0 / e} for e in range(1, 4)])
    assert [ax.get_title() for ax in loss_only.axes] == ["training loss"]


def _png_pixels(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return np.asarray(Image.open(buffer).convert("RGB")).reshape(-1, 3)


def test_ranked_frames_are_green_for_matches_and_red_otherwise(tmp_path):
    paths = []
    for i, value in enumerate((40, 120, 200)):  # grey images: no pixel of them is pure green or red
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (32, 64), (value, value, value)).save(path)
        paths.append(str(path))

    def entry(matches):
        return {"q_index": 0, "q_img_path": paths[0], "q_pid": 1, "q_camid": 0, "g_indices": [0, 1],
                "g_img_paths": paths[1:], "g_pids": [1 if m else 2 for m in matches], "g_camids": [1, 1],
                "distances": [0.25, 0.5], "matches": matches}

    def count(pixels, color):
        return int((pixels == np.array(color)).all(axis=1).sum())

    one_match = _png_pixels(plot_ranked([entry([True, False])]))
    no_match = _png_pixels(plot_ranked([entry([False, False])]))
    assert count(one_match, MATCH_COLOR) > 200 and count(one_match, MISMATCH_COLOR) > 200
    assert count(no_match, MATCH_COLOR) == 0
    assert count(no_match, MISMATCH_COLOR) > 1.5 * count(one_match, MISMATCH_COLOR)


def test_bad_inputs_are_clear_errors(tmp_path, evaluated):
    result, _ = evaluated
    with pytest.raises(ValueError, match="none of them"):
        write_report(tmp_path / "r")
    with pytest.raises(ValueError, match=r"models\['a'\] .*numeric 'rank1'"):
        write_report(tmp_path / "r", result, models={"a": {"rank1": 1.0}})
    with pytest.raises(ValueError, match="needs 'model' and numeric MOTA"):
        write_report(tmp_path / "r", result, tracking={"street": [{"model": "x", "MOTA": 1.0}]})
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        write_report(tmp_path / "r", result, tracking_images={"frames": np.zeros((4, 4), np.uint8)})
    with pytest.raises(ValueError, match="lacks .*cmc"):
        write_report(tmp_path / "r", {k: v for k, v in result.items() if k != "cmc"})
    with pytest.raises(ValueError, match="entry 1 .*numeric 'epoch'"):
        write_report(tmp_path / "r", training_log=[{"epoch": 1, "loss": 2.0}, {"loss": 1.0}])
    with pytest.raises(ValueError, match="entry 0 has loss='high'"):
        plot_training([{"epoch": 1, "loss": "high"}])
    with pytest.raises(ValueError, match="no entry has a loss"):
        plot_training([{"epoch": 1}])
    bad_log = tmp_path / "bad.jsonl"
    bad_log.write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, loss}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2"):
        read_training_log(bad_log)
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        write_report(tmp_path / "r", training_log=tmp_path / "nothere.jsonl")
    assert not (tmp_path / "r").exists()  # nothing written on bad input
