"""OpenVINO backend cases, run by ``test_export.py::test_openvino_cases_in_a_child_process`` in a pytest process
of their own (this file's name keeps the main suite from collecting it): with these cases in the main pytest
process, the whole suite twice ended in a segmentation fault at a later, different test (while without them it
passed), so OpenVINO's runtime is kept out of the long-lived process. Run directly:
``pytest tests/openvino_cases.py``."""

import numpy as np
import pytest
import torch

from robustreid import export  # noqa: F401
from robustreid.datasets import load_dataset, read_image  # noqa: F401
from robustreid.evaluate import FeatureExtractor  # noqa: F401
from robustreid.export import OnnxEmbedder, export_onnx, onnx_parity, read_onnx_metadata  # noqa: F401
from robustreid.model import Architecture, build_model  # noqa: F401
from test_tracking_run import crossing, read_results, track_sequence  # noqa: F401
from test_export import BF16_ABSENT, SMALL, TINY, calibrated, float64_error, foreign_onnx, market, onnx, preprocess  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- OpenVINO
@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino", reason="the openvino extra is not installed: "
                                                   "pip install 'robustreid[openvino]'")


def openvino_embedder(path, precision="fp32", **options):
    """An OpenVinoEmbedder; asking for bf16 on a CPU without it warns (and runs fp32): not what is tested."""
    import warnings

    from robustreid.openvino_backend import OpenVinoEmbedder

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no bfloat16 support", category=UserWarning)
        return OpenVinoEmbedder(path, precision=precision, **options)


def test_openvino_fp32_from_onnx_and_ir_matches_torch(ov, market, tmp_path):
    from robustreid.export import export_openvino
    from robustreid.openvino_backend import RT_INFO_SECTION, read_openvino_metadata, shared_core

    model = calibrated("robustreid_1x", [r.img_path for r in market.train[:8]], **TINY)
    onnx_path, xml = tmp_path / "m.onnx", tmp_path / "ir" / "m.xml"
    export_onnx(model, onnx_path)
    result = export_openvino(model, xml)
    assert result["parity"]["ok"] and xml.is_file() and xml.with_suffix(".bin").is_file()
    assert result["openvino_version"] == ov.__version__

    # The metadata travels in the IR itself (its own rt_info section) and reads back as the ONNX file's.
    meta, onnx_meta = read_openvino_metadata(xml), read_onnx_metadata(onnx_path)
    assert shared_core().read_model(str(xml)).has_rt_info([RT_INFO_SECTION, "data_config"])
    for key in ("arch_name", "arch", "data_config", "feature_dim", "quantization"):
        assert meta[key] == onnx_meta[key]
    assert meta["format"] == "ir" and meta["batch_size"] is None
    assert read_openvino_metadata(onnx_path)["format"] == "onnx"

    generator = torch.Generator().manual_seed(1)
    crops = preprocess(model, [r.img_path for r in market.query[:3]])
    bound = max(1e-4, export.PARITY_NOISE_FACTOR * float64_error(model, crops))
    for path in (onnx_path, xml):
        embedder = openvino_embedder(path)
        assert embedder.data_config == model.data_config and embedder.feature_dim == model.feature_dim
        assert embedder.num_threads == torch.get_num_threads() and embedder.micro_batch is None
        for batch_size in (1, 3):
            x = torch.randn(batch_size, 3, 160, 64, generator=generator)
            got = embedder.embed(x)
            assert got.shape == (batch_size, model.feature_dim) and got.dtype == torch.float32
            torch.testing.assert_close(got, model.embed(x), atol=1e-4, rtol=0)
        assert float((embedder.embed(crops) - model.embed(crops)).abs().max()) <= bound
        x = torch.randn(11, 3, 160, 64, generator=generator)  # micro-batches of 5, 5, 1 equal one call
        torch.testing.assert_close(openvino_embedder(path, micro_batch=5).embed(x), embedder.embed(x),
                                   atol=1e-6, rtol=0)
    assert embedder.embed(torch.zeros(0, 3, 160, 64)).shape == (0, model.feature_dim)


def test_one_openvino_core_per_process_and_no_cpu_pinning(ov, market, tmp_path, monkeypatch):
    # docs/TROUBLESHOOTING.md "OpenVINO in a long process": one Core per process, OpenVINO's pinning off
    from robustreid import openvino_backend
    from robustreid.openvino_backend import shared_core

    model = calibrated("robustreid_1x", [r.img_path for r in market.train[:8]], **TINY)
    export_onnx(model, tmp_path / "m.onnx")
    first, second = openvino_embedder(tmp_path / "m.onnx"), openvino_embedder(tmp_path / "m.onnx")
    core = shared_core()
    assert shared_core() is core and openvino_backend._CORE == (openvino_backend.os.getpid(), core)
    for embedder in (first, second):
        assert embedder.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert {first, second} <= set(openvino_backend._EMBEDDERS)  # what a forked child keeps alive

    # Made by another process (a fork's parent): refused in one line, the inherited Core neither replaced nor
    # dropped (test_export.py's test_openvino_in_a_forked_child_is_refused_and_exits_cleanly forks for real)
    inherited = (-1, core)
    monkeypatch.setattr(openvino_backend, "_CORE", inherited)
    refused = r"started in process -1 before .* cannot run in a forked child.*'spawn'"
    with pytest.raises(RuntimeError, match=refused) as info:
        shared_core()
    assert "\n" not in str(info.value) and openvino_backend._CORE is inherited
    monkeypatch.setattr(first, "_pid", -1)
    with pytest.raises(RuntimeError, match=r"OpenVinoEmbedder\(m\.onnx\)\.embed: .*" + refused):
        first.embed(torch.zeros(1, 3, 160, 64))


def test_openvino_bf16_keeps_rankings_and_extractor_matches_torch(ov, market, tmp_path):
    from robustreid.export import export_openvino
    from robustreid.openvino_backend import shared_core

    model = calibrated("robustreid_1x", [r.img_path for r in market.train], **SMALL)
    xml = tmp_path / "small.xml"
    export_openvino(model, xml)
    records = market.query + market.gallery
    paths = [r.img_path for r in records]
    reference = FeatureExtractor(model, batch_size=16)(paths)
    fp32 = FeatureExtractor(xml, batch_size=16, backend="openvino")
    assert fp32.model.precision == fp32.model.execution_precision == "fp32"
    fp32_feats = fp32(paths)
    torch.testing.assert_close(fp32_feats, reference, atol=1e-4, rtol=0)

    # bf16: 8 mantissa bits, so a looser bound on each descriptor and the same nearest neighbours.
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no bfloat16 support", category=UserWarning)
        bf16 = FeatureExtractor(xml, batch_size=16, backend="openvino", precision="bf16")
    capabilities = shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in capabilities:  # the hint is ignored: bf16 would be compared with fp32, nothing to learn
        assert bf16.model.execution_precision == "fp32"
        pytest.skip(f"{BF16_ABSENT} (OpenVINO's OPTIMIZATION_CAPABILITIES: {capabilities}): the bf16 hint runs "
                    "fp32, the bf16 numerics are not tested")
    assert bf16.model.execution_precision == "bf16"
    got = bf16(paths)
    assert got.shape == reference.shape and float((got - reference).abs().max()) < 0.05
    assert float(torch.nn.functional.cosine_similarity(got, reference).min()) > 0.99
    # really bfloat16: off fp32 by far more than fp32's own rounding (1e-4 above), not the fp32 output again
    assert float((got - fp32_feats).abs().max()) > 1e-3
    parity = onnx_parity(model, bf16, market, topk=1, tie_tol=0.05)
    assert parity["queries_differing_beyond_ties"] == 0 and abs(parity["delta_rank1"]) <= 100 / len(market.query)


def test_openvino_clear_errors(ov, tmp_path):
    from robustreid.export import export_openvino
    from robustreid.openvino_backend import OpenVinoEmbedder, read_openvino_metadata

    torch.manual_seed(0)
    model = build_model("robustreid_1x", **TINY).eval()
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        OpenVinoEmbedder(tmp_path / "missing.xml")
    text = tmp_path / "notes.xml"
    text.write_text("not an OpenVINO IR\n")
    with pytest.raises(FileNotFoundError, match=r"notes\.bin does not exist"):
        OpenVinoEmbedder(text)
    text.with_suffix(".bin").write_bytes(b"")
    for path in (text, tmp_path / "notes.onnx"):
        path.write_text("not a model\n")
        with pytest.raises(ValueError, match=f"{path.name} is not a model OpenVINO can read") as info:
            FeatureExtractor(path, backend="openvino")
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"model\.pt: expected an \.onnx file or an OpenVINO IR \.xml"):
        read_openvino_metadata(tmp_path / "model.pt")

    foreign = foreign_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="foreign.onnx has no robustreid metadata"):
        OpenVinoEmbedder(foreign)

    with pytest.raises(ValueError, match="backend 'openvino' is not available for a ReIDNet"):
        FeatureExtractor(model, backend="openvino")
    with pytest.raises(ValueError, match="ending in .xml"):
        export_openvino(model, tmp_path / "m.onnx")
    path = tmp_path / "tiny.onnx"
    export_onnx(model, path, check=False)
    with pytest.raises(ValueError, match="precision='fp16'"):
        OpenVinoEmbedder(path, precision="fp16")
    with pytest.raises(ValueError, match="precision='bf16': the onnxruntime backend"):
        FeatureExtractor(path, backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="device 'cuda'.*CPU only"):
        OpenVinoEmbedder(path, device="cuda")
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 160, 64\)"):
        OpenVinoEmbedder(path).embed(torch.zeros(2, 3, 128, 64))


def test_export_command_openvino_and_eval_on_it(ov, market, tmp_path, capsys):
    """`robustreid export --format openvino` writes a checked IR that ranks like the checkpoint; `eval` and
    `extract` run it with --backend openvino (fp32 and bf16) and give the checkpoint's figures."""
    import json
    from pathlib import Path

    from robustreid.checkpoint import model_state, save_checkpoint
    from robustreid.cli import main

    model = calibrated("robustreid_1x", [r.img_path for r in market.train], **SMALL)
    checkpoint = save_checkpoint(model_state(model), tmp_path / "small.pt")
    xml = tmp_path / "m.xml"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "openvino", "--out", str(xml),
                 "--dataset", "market1501", "--root", str(market.root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["export"]["parity"]["ok"] and xml.is_file() and xml.with_suffix(".bin").is_file()
    assert result["rankings"]["queries_differing_beyond_ties"] == 0

    data = ["--dataset", "market1501", "--root", str(market.root), "--json", "--num-workers", "0"]
    assert main(["eval", "--checkpoint", str(checkpoint), *data]) == 0
    torch_scores = json.loads(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(xml), "--backend", "openvino", *data]) == 0
    ov_scores = json.loads(capsys.readouterr().out)
    assert abs(ov_scores["mAP"] - torch_scores["mAP"]) < 0.01 and ov_scores["rank1"] == torch_scores["rank1"]
    out = tmp_path / "feats.npz"
    assert main(["extract", "--checkpoint", str(xml), "--backend", "openvino", "--precision", "bf16",
                 str(Path(market.query[0].img_path).parent), "--out", str(out), "--num-workers", "0"]) == 0
    assert np.load(out)["features"].shape == (len(market.query), model.feature_dim)
    capsys.readouterr()

    assert main(["export", "--checkpoint", str(checkpoint), "--format", "openvino",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ending in .xml for --format openvino" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "nope.xml"), "--backend", "openvino", *data]) == 2
    err = capsys.readouterr().err
    assert "nope.xml" in err and len(err.strip().splitlines()) == 1


def test_track_on_the_openvino_backend_one_reid_call_per_frame(crossing, tmp_path):
    """The tracker on an exported model (OpenVINO IR): one embed call per frame for all its crops, and the
    torch backend's tracks."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'robustreid[openvino]'")
    pytest.importorskip("onnx", reason="export --format openvino needs onnx: pip install 'robustreid[openvino]'")
    import torch

    from robustreid.evaluate import FeatureExtractor
    from robustreid.export import export_openvino
    from robustreid.model import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("robustreid_1x", stem_channels=8, stage_channels=(32, 32, 32), stage_repeats=(0, 0, 0),
                            feat_dim=16, conv_init="fan_out").eval()
        xml = tmp_path / "tiny.xml"
        export_openvino(model, xml)
        extractor = FeatureExtractor(xml, backend="openvino")
        frames, embeds = [], []
        embed = extractor.model.embed
        extractor.model.embed = lambda images: embeds.append(len(images)) or embed(images)

        def counted(crops):  # what the tracker hands over per frame
            frames.append(len(crops))
            return extractor(crops)

        track_sequence(crossing, tmp_path / "ov.txt", counted)
        track_sequence(crossing, tmp_path / "torch.txt", FeatureExtractor(model))
    finally:
        torch.set_num_threads(threads)
    assert 0 < len(frames) <= 40
    assert embeds == frames and max(frames) > 1  # every frame's crops in one call
    np.testing.assert_allclose(read_results(tmp_path / "ov.txt"), read_results(tmp_path / "torch.txt"), atol=1e-6)
