"""End-to-end tests of the ``robustreid`` command (run in-process through ``main``)."""

import json

import pytest

from robustreid.cli import main
from robustreid.model import build_model
from robustreid.profile import count_params
from robustreid.tracking.tracker import TrackerConfig


def test_profile_json_keys_and_values(capsys):
    assert main(["profile", "robustreid_1x", "--json", "--num-classes", "10"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"model", "params", "params_with_classifier", "gmacs", "input_size", "feature_dim"} <= set(stats)
    model = build_model("robustreid_1x", 10)
    assert stats["params"] == count_params(model)
    assert stats["params_with_classifier"] == count_params(model, with_classifier=True)
    assert stats["input_size"] == [160, 64] and stats["feature_dim"] == 1024


def test_profile_table(capsys):
    assert main(["profile", "hacnn"]) == 0
    out = capsys.readouterr().out
    assert "gmacs" in out and "160x64" in out


def test_profile_unknown_model_lists_valid_names(capsys):
    assert main(["profile", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "resnet50" in err and "robustreid_1x" in err and "Traceback" not in err


def test_scene_track_and_track_eval(tmp_path, capsys):
    scene = tmp_path / "scene"
    assert main(["synth-scene", str(scene), "--frames", "30", "--people", "3"]) == 0
    seq = next(p for p in scene.iterdir() if p.is_dir())
    results = tmp_path / "res.txt"
    assert main(["track", str(seq), "--no-reid", "--out", str(results)]) == 0
    capsys.readouterr()
    # Ground truth scored against itself is perfect; the motion-only tracker on this crossing scene is not
    gt = str(seq / "gt" / "gt.txt")
    assert main(["track-eval", "--gt", gt, "--results", gt, "--json"]) == 0
    perfect = json.loads(capsys.readouterr().out)
    assert (perfect["mota"], perfect["idf1"], perfect["num_frames"]) == (1.0, 1.0, 30)
    assert main(["track-eval", "--gt", gt, "--results", str(results), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 < metrics["idf1"] < 1 and metrics["num_frames"] == 30
    assert main(["track", str(seq), "--out", str(results)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["track", str(seq), "--no-reid", "--reid-refresh", "0", "--out", str(results)]) == 2
    assert "--reid-refresh 0: expected an integer >= 1" in capsys.readouterr().err
    assert main(["track", str(seq), "--no-reid", "--reid-refresh", "5", "--out", str(results)]) == 2
    assert "no ReID model to refresh" in capsys.readouterr().err


def test_track_passes_reid_refresh_to_the_tracker(tmp_path, capsys, monkeypatch):
    import robustreid.evaluate
    import robustreid.tracking.run

    seen = {}

    def fake_track(seq_dir, out, extractor, *, config, progress):
        seen.update(config=config, extractor=extractor)
        return {"fps": 1.0}

    monkeypatch.setattr(robustreid.tracking.run, "track_sequence", fake_track)
    monkeypatch.setattr(robustreid.evaluate, "FeatureExtractor", lambda *a, **k: "model")
    assert main(["track", str(tmp_path), "--checkpoint", "m.pt", "--reid-refresh", "7",
                 "--out", str(tmp_path / "r.txt")]) == 0
    assert seen == {"config": TrackerConfig(use_reid=True, reid_refresh=7), "extractor": "model"}


def test_config_show_and_bad_dataset_root(tmp_path, capsys):
    assert main(["config", "show", "b", "--set", "seed=4"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["seed"] == 4 and cfg["loss"]["triplet_mining"] == "batch_all"
    assert main(["data", "check", "market1501", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bounding_box_train" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    import robustreid.cli as cli

    # a checkpoint that is not one (here: a JPEG), and a folder where a file is expected
    from PIL import Image

    (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0JFIF")
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 128)).save(image)
    for path, said in ((tmp_path / "photo.pt", "photo.pt is a JPEG image"), (tmp_path, "is a folder")):
        assert main(["extract", "--checkpoint", str(path), "--out", str(tmp_path / "f.npz"), str(image)]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err

    # errors raised inside a command: an OS error names its file, a missing optional package names its extra,
    # an ini error its source; anything else (a bug) keeps its traceback
    import configparser

    cases = [
        (PermissionError(13, "Permission denied", "/data/x.jpg"), "/data/x.jpg: Permission denied"),
        (IsADirectoryError(21, "Is a directory", "runs/out"), "runs/out: Is a directory"),
        (ModuleNotFoundError("No module named 'trackeval'", name="trackeval"), "pip install 'robustreid[tracking]'"),
        (configparser.MissingSectionHeaderError("s.ini", 1, "x=1"), "s.ini"),
    ]
    for exc, said in cases:
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "_cmd_profile", boom)
        parser_main = cli.build_parser
        monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser_main(), boom))
        assert main(["profile", "hacnn"]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1 and err.startswith("robustreid profile: error:"), err
        monkeypatch.setattr(cli, "build_parser", parser_main)
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser_main(), lambda a: 1 / 0))
    with pytest.raises(ZeroDivisionError):
        main(["profile", "hacnn"])


def _with_func(parser, func):
    """The CLI parser with the ``profile`` subcommand's function replaced by ``func``."""
    real = parser.parse_args

    def parse_args(argv=None):
        args = real(argv)
        args.func = func
        return args

    parser.parse_args = parse_args
    return parser


def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import robustreid.evaluate as evaluate

    monkeypatch.setattr(evaluate, "extract_to_npz", lambda *a, **k: pytest.fail("ran before checking --out"))
    (tmp_path / "file").write_text("x")
    cases = [
        (["extract", "--checkpoint", "c.pt", "--out", str(tmp_path), "a.jpg"], "is a folder; expected a file name"),
        (["extract", "--checkpoint", "c.pt", "--out", str(tmp_path / "file" / "f.npz"), "a.jpg"], "is a file, not a folder"),
        (["demo", "--out", str(tmp_path / "file")], "is a file; expected a folder"),
        (["eval", "--checkpoint", "c.pt", "--dataset", "market1501", "--root", str(tmp_path), "--report",
          str(tmp_path / "file")], "--report"),
        (["export", "--checkpoint", "c.pt", "--out", str(tmp_path / "file" / "m.onnx")], "is a file, not a folder"),
        (["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(tmp_path), "--out",
          str(tmp_path / "file")], "is a file; expected a folder"),
    ]
    for argv, said in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_track_eval_without_the_tracking_extra_names_it(tmp_path, capsys, monkeypatch):
    import sys

    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,1,1,1\n")
    monkeypatch.setitem(sys.modules, "trackeval", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "trackeval.metrics", None)
    assert main(["track-eval", "--gt", str(gt), "--results", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'robustreid[tracking]'" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("package, backend, extra", [("openvino", "openvino", "openvino"),
                                                       ("onnxruntime", "onnxruntime", "onnx")])
def test_missing_backend_package_is_one_line_naming_the_extra(package, backend, extra, tmp_path, capsys,
                                                              monkeypatch):
    import sys

    import numpy as np
    from PIL import Image

    image = tmp_path / "crop.png"
    Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(image)
    model = tmp_path / ("m.xml" if backend == "openvino" else "m.onnx")
    monkeypatch.setitem(sys.modules, package, None)  # `import package` fails as if it were not installed
    for argv in (["extract", "--checkpoint", str(model), str(image), "--out", str(tmp_path / "f.npz"),
                  "--backend", backend],
                 ["track", str(tmp_path), "--checkpoint", str(model), "--out", str(tmp_path / "r.txt"),
                  "--backend", backend]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pip install 'robustreid[{extra}]'" in err, err


def test_progress_line_reports_rate_and_eta_once_per_tenth_in_a_log(monkeypatch):
    import io

    from robustreid import cli

    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    log = io.StringIO()  # not a terminal: whole lines, one per tenth of the work
    progress = cli.progress_line("eval", stream=log)
    for done in (10, 12, 50, 100):  # at t = 1, 2, 3, 4 s
        progress(done, 100)
    lines = log.getvalue().splitlines()
    # 10 images in 1 s -> 10/s, 90 left -> ETA 9 s; 12 is still in the same tenth as 10: no line
    assert lines == ["eval: 10/100 images, 10.0 images/s, ETA 9s", "eval: 50/100 images, 16.7 images/s, ETA 3s",
                     "eval: 100/100 images, 25.0 images/s, ETA 0s"]
