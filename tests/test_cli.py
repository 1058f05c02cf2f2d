"""End-to-end tests of the ``robustreid`` command (run in-process through ``main``)."""

import json

import pytest

from robustreid.cli import main
from robustreid.model import build_model
from robustreid.profile import count_macs, count_params
from robustreid.tracking.tracker import TrackerConfig


def test_profile_json_keys_and_values(capsys):
    assert main(["profile", "robustreid_1x", "--json", "--num-classes", "10"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"model", "params", "params_with_classifier", "gmacs", "input_size", "feature_dim"} <= set(stats)
    model = build_model("robustreid_1x", 10)
    assert stats["params"] == count_params(model)
    assert stats["params_with_classifier"] == count_params(model, with_classifier=True)
    assert stats["input_size"] == [160, 64] and stats["feature_dim"] == 1024
    # multiply-accumulates of the same network, and the paper's Table 1 figure (0.72 GMACs) within 10 %
    assert stats["gmacs"] == pytest.approx(count_macs(model) / 1e9, rel=1e-9)
    assert abs(stats["gmacs"] - 0.72) / 0.72 <= 0.10, stats["gmacs"]


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


# ---- issue 28: every message names its file, nothing non-finite leaves the library, checks before writes --------


def _jpeg(path, seed=0):
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 8, 3), dtype=np.uint8)).save(path)


def _market(root, query=("0003_c1s1_000001_00.jpg",), gallery=("0003_c2s1_000002_01.jpg", "0004_c1s1_000003_01.jpg")):
    """A Market1501 tree of 16x8 JPEGs: two training identities on two cameras; by default query 3 (camera 1)
    has a true match (camera 2) in the gallery."""
    train = ("0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg", "0002_c1s1_000003_00.jpg", "0002_c2s1_000004_00.jpg")
    for seed, (folder, names) in enumerate((("bounding_box_train", train), ("query", query),
                                            ("bounding_box_test", gallery))):
        for i, name in enumerate(names):
            _jpeg(root / folder / name, seed * 10 + i)
    return root


def _checkpoint(path, edit=None):
    """``build_model("hacnn", 3)`` saved at ``path``, after ``edit(state)``."""
    import torch

    from robustreid.checkpoint import model_state, save_checkpoint

    torch.manual_seed(0)
    state = model_state(build_model("hacnn", 3))
    if edit is not None:
        edit(state)
    return save_checkpoint(state, path)


def _dead_pid():
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def _one_error_line(capsys, command, after_progress=False):
    """The error line on stderr, checked to be the only line (``after_progress``: the last line, after the
    dataset table and the image-check progress ``train`` prints first), without a traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 or (after_progress and lines), err
    assert lines[-1].startswith(f"robustreid {command}: error: ") and "Traceback" not in err, err
    assert sum(line.startswith("robustreid ") for line in lines) == 1, err
    return lines[-1]


def test_extract_refusals_name_the_checkpoint_and_write_nothing(tmp_path, capsys):
    image, out = tmp_path / "a.jpg", tmp_path / "f.npz"
    _jpeg(image)

    def nan(state):
        state["model"]["global_head.0.weight"][0, :3] = float("nan")

    def poison_bn(state):
        state["model"]["global_head.1.running_var"][5] = float("inf")

    cases = [
        (lambda s: s.pop("model"), "nomodel.pt", "checkpoint {} has no model entry: it does not hold a network"),
        (lambda s: s.pop("arch"), "noarch.pt", "checkpoint {} has no arch entry"),
        (lambda s: s.update(num_classes=4), "classes.pt",
         ("checkpoint {}: its weights do not fit the network it names: the file says hacnn with 4 identity classes, "
          "its weights hold hacnn with 3 identity classes (classifiers.0.weight is [3, 512] in the file, [4, 512] "
          "in that network)")),
        (lambda s: s.update(arch=build_model("robustreid_1x").arch.to_dict()), "arch.pt",
         ("checkpoint {}: its weights do not fit the network it names: the file says robustreid_1x with 3 identity "
          "classes, its weights hold hacnn with 3 identity classes (")),
        (nan, "nan.pt", ("checkpoint {} holds non-finite weights: global_head.0.weight has 3 NaN or infinite values "
                         "of 196608")),
        (poison_bn, "inf.pt", "checkpoint {} holds non-finite weights: global_head.1.running_var has 1 NaN"),
    ]
    for edit, name, said in cases:
        path = _checkpoint(tmp_path / name, edit)
        assert main(["extract", "--checkpoint", str(path), str(image), "--out", str(out)]) == 2, name
        assert said.format(path) in _one_error_line(capsys, "extract"), name
        assert not out.exists() and not list(tmp_path.glob(".tmp-*")), name


def test_train_checks_everything_before_writing(tmp_path, capsys):
    root = _market(tmp_path / "market")
    out = tmp_path / "run"
    base = ["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(root), "--out", str(out)]
    # a device this machine cannot have: nothing created
    assert main(base + ["--device", "bogus"]) == 2
    assert "device 'bogus'" in _one_error_line(capsys, "train") and not out.exists()
    # --init with non-finite weights: refused before the folder exists
    nan_init = _checkpoint(tmp_path / "nan.pt", lambda s: s["model"]["stem.0.weight"].fill_(float("inf")))
    assert main(base + ["--init", str(nan_init)]) == 2
    assert f"--init {nan_init.resolve()} holds non-finite weights: stem.0.weight" in _one_error_line(capsys, "train")
    assert not out.exists()
    # --overwrite of a run with a bad device or a dataset no evaluation could score: the old run stays as it was
    out.mkdir()
    for name in ("last.pt", "metrics.jsonl", "dataset.json"):
        (out / name).write_text(f"old {name}")
    assert main(base + ["--overwrite", "--device", "cuda:7"]) == 2
    _one_error_line(capsys, "train")
    one_camera = _market(tmp_path / "one_camera", gallery=("0003_c1s1_000002_01.jpg",))  # the query's camera only
    argv = ["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(one_camera), "--out", str(out),
            "--overwrite"]
    assert main(argv) == 2
    assert "no query has a true match" in _one_error_line(capsys, "train", after_progress=True)
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: f"old {n}" for n in ("last.pt", "metrics.jsonl",
                                                                                      "dataset.json")}


def test_a_diverged_run_ends_in_one_line(tmp_path, capsys, monkeypatch):
    from robustreid import train

    def diverging_fit(cfg, dataset, out, **kwargs):
        raise train.TrainingDiverged("loss became nan at epoch 1 iteration 0 (lr 0.03); training stopped, the last "
                                     "checkpoint is unchanged")

    monkeypatch.setattr(train, "fit", diverging_fit)
    root = _market(tmp_path / "market")
    argv = ["train", "--preset", "hacnn", "--dataset", "market1501", "--root", str(root), "--out", str(tmp_path / "r")]
    assert main(argv) == 1  # the run failed; not a usage error
    err = _one_error_line(capsys, "train", after_progress=True)
    assert err == ("robustreid train: error: loss became nan at epoch 1 iteration 0 (lr 0.03); training stopped, "
                   "the last checkpoint is unchanged")


def test_config_files_that_are_not_a_table_or_not_utf8_are_one_line(tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin.toml").write_bytes(b"seed = 3\n# caf\xe9\n")
    for name, said in (("list.json", "its top level is a list, expected a table of keys"),
                       ("latin.toml", "not UTF-8 text (byte 14)")):
        assert main(["config", "show", "hacnn", "--config", str(tmp_path / name)]) == 2
        assert f"config file {tmp_path / name}: {said}" in _one_error_line(capsys, "config")


def test_a_junk_only_or_empty_split_names_the_split_and_root(tmp_path, capsys, monkeypatch):
    root = _market(tmp_path / "market", gallery=("-1_c1s1_000002_01.jpg", "-1_c2s1_000003_01.jpg"))
    assert main(["eval", "--checkpoint", "c.pt", "--dataset", "market1501", "--root", str(root)]) == 2
    assert (f"market1501: the gallery split '{root.resolve() / 'bounding_box_test'}' has no usable image: all 2 of "
            "its images are left out, 2 junk (pid -1)") in _one_error_line(capsys, "eval")
    # a dataset built elsewhere with an empty split: named before any model is loaded
    from robustreid import cli
    from robustreid.datasets import Record, ReidDataset

    records = [Record(str(tmp_path / "x.jpg"), 1, 0)]
    monkeypatch.setattr(cli, "_load_dataset", lambda spec: ReidDataset("mine", "/data/mine", records, records, []))
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--dataset", "x", "--root", "y"]) == 2
    assert "mine (/data/mine): the gallery split is empty" in _one_error_line(capsys, "eval")


def test_track_refuses_a_seq_length_the_folder_cannot_have(tmp_path, capsys):
    seq = tmp_path / "seq"
    (seq / "det").mkdir(parents=True)
    (seq / "det" / "det.txt").write_text("1,-1,10,10,20,40,0.9\n")
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=seq\nseqLength=2000000\nimDir=img1\nimExt=.jpg\n")
    for f in range(1, 11):
        _jpeg(seq / "img1" / f"{f:06d}.jpg")
    out = tmp_path / "res.txt"
    assert main(["track", str(seq), "--no-reid", "--out", str(out)]) == 2
    assert (f"{seq / 'seqinfo.ini'}: seqLength=2000000, but {seq / 'img1'} holds 10 .jpg frame(s)"
            in _one_error_line(capsys, "track"))
    assert not out.exists()


def test_killed_writers_leftovers_go_where_extract_and_eval_write(tmp_path, capsys, monkeypatch):
    import os

    dead = _dead_pid()
    image, out = tmp_path / "a.jpg", tmp_path / "out" / "f.npz"
    _jpeg(image)
    out.parent.mkdir()
    stale = out.parent / f".tmp-f.npz-{dead}-0123abcd"
    other = out.parent / f".tmp-g.npz-{dead}-0123abcd"  # another file's: not this command's to clear
    live = out.parent / f".tmp-f.npz-{os.getpid()}-89abcdef"  # a live writer's
    for p in (stale, other, live):
        p.write_bytes(b"half")
    assert main(["extract", "--checkpoint", str(_checkpoint(tmp_path / "c.pt")), str(image), "--out", str(out)]) == 0
    assert out.is_file() and not stale.exists() and other.exists() and live.exists()
    capsys.readouterr()

    # eval --report: every leftover of a killed writer in the report folder goes before the report is written
    from robustreid import cli, evaluate, report
    from robustreid.metrics import SUMMARY_KEYS

    folder = tmp_path / "report"
    folder.mkdir()
    leftovers = [folder / f".tmp-index.html-{dead}-0123abcd", folder / f".tmp-cmc.png-{dead}-4567cdef"]
    for p in leftovers + [folder / ".tmp-notes"]:
        p.write_bytes(b"half")
    seen = []
    monkeypatch.setattr(cli, "_load_dataset", lambda spec: type("D", (), {"name": "d"})())
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: {key: 1 for key in SUMMARY_KEYS})
    monkeypatch.setattr(report, "write_report",
                        lambda d, *a, **k: seen.append(sorted(os.listdir(d))) or os.path.join(d, "index.html"))
    assert main(["eval", "--checkpoint", "c.pt", "--dataset", "x", "--root", "y", "--report", str(folder)]) == 0
    assert seen == [[".tmp-notes"]]  # not our naming scheme: left alone
