"""Feature extraction and evaluation, checked against the test transform, a hand-computed distance matrix
and a slow ranking loop."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustreid.checkpoint import model_state, save_checkpoint
from robustreid.datasets import load_dataset, read_image
from robustreid.evaluate import (
    SUMMARY_KEYS,
    FeatureExtractor,
    evaluate,
    extract_features,
    extract_to_npz,
    format_metrics,
    list_images,
    metrics_summary,
    rank_gallery,
    resolve_device,
)
from robustreid.loaders import TestTransform
from robustreid.metrics import evaluate_rank
from robustreid.model import build_model
from robustreid.synthetic import write_market1501


pytestmark = pytest.mark.usefixtures("one_thread")


# A narrow network of the same skeleton: the extractor / evaluation logic does not depend on the width,
# and its forward pass takes milliseconds.
# Untrained networks with uncalibrated BatchNorm: Robust-ReID's default init (variance 1 / (3 fan_in)) shrinks the
# signal at every layer in eval mode until descriptors nearly tie; these tests check evaluation / export
# mechanics, so their tiny networks keep the variance-preserving Kaiming fan-out init.
TINY = dict(stem_channels=8, stage_channels=(32, 32, 32), stage_repeats=(0, 0, 0), feat_dim=16, conv_init="fan_out")


def tiny_model(seed=0, **options):
    torch.manual_seed(seed)
    return build_model("robustreid_1x", 3, **{**TINY, **options}).eval()


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    """Four RGB images of different sizes (PNG and JPEG), with structure so features differ."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (height, width) in enumerate([(128, 64), (100, 40), (200, 90), (160, 64)]):
        pixels = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST)
        path = folder / f"img{i}.{'png' if i % 2 == 0 else 'jpg'}"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    write_market1501(root, ids_train=2, ids_test=5, cameras=3, images_per_id_per_cam=2, distractors=3, junk=1)
    return load_dataset("market1501", root)


def reference_embed(model, images, data_config=None):
    """What the training code's test path computes: TestTransform on the model's data config, then embed."""
    transform = TestTransform(data_config or model.data_config)
    with torch.no_grad():
        return model.eval().embed(torch.stack([transform(image) for image in images]))


def test_extractor_equals_test_transform_then_embed(image_paths):
    torch.manual_seed(0)
    model = build_model("robustreid_1x").eval()
    feats = FeatureExtractor(model)(image_paths[:3])
    expected = reference_embed(model, [read_image(p) for p in image_paths[:3]])
    assert feats.shape == (3, model.feature_dim)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    torch.testing.assert_close(feats, expected)
    half = model.feature_dim // 2  # global and local branch, each L2-normalised (Figure 4)
    torch.testing.assert_close(feats[:, :half].norm(dim=1), torch.ones(3))
    torch.testing.assert_close(feats[:, half:].norm(dim=1), torch.ones(3))


def test_extractor_reads_the_models_own_data_config(image_paths):
    model = tiny_model(input_size=(128, 48))
    model.data_config = {"input_size": (128, 48), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.3, 0.25)}
    images = [read_image(p) for p in image_paths]
    feats = FeatureExtractor(model)(image_paths)
    torch.testing.assert_close(feats, reference_embed(model, images))
    default_config = {**model.data_config, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    assert not torch.allclose(feats, reference_embed(model, images, default_config), atol=1e-4)


def test_path_pil_array_and_mixed_inputs_agree(image_paths):
    extractor = FeatureExtractor(tiny_model())
    from_paths = extractor(image_paths)
    pil_images = [Image.open(p) for p in image_paths]
    arrays = [np.asarray(read_image(p)) for p in image_paths]
    torch.testing.assert_close(extractor(pil_images), from_paths)
    torch.testing.assert_close(extractor(arrays), from_paths)
    mixed = [image_paths[0], pil_images[1], arrays[2], image_paths[3]]
    torch.testing.assert_close(extractor(mixed), from_paths)
    torch.testing.assert_close(extractor(arrays[2]), from_paths[2:3])  # one image -> one row
    # A non-contiguous view (e.g. a BGR -> RGB flip of a video frame) is read by value.
    bgr = np.ascontiguousarray(arrays[1][..., ::-1])
    torch.testing.assert_close(extractor(bgr[..., ::-1]), from_paths[1:2])
    # A grayscale PIL image is converted like the loaders convert files.
    gray = Image.open(image_paths[0]).convert("L")
    torch.testing.assert_close(extractor(gray), extractor(gray.convert("RGB")))
    assert extractor([]).shape == (0, extractor.feature_dim)


def test_batching_and_train_mode_do_not_change_features(image_paths):
    model = tiny_model()
    expected = FeatureExtractor(model, batch_size=64)(image_paths)
    model.train()  # BatchNorm would use batch statistics: the extractor must switch to eval and back
    feats = FeatureExtractor(model, batch_size=3)(image_paths)
    assert model.training
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)


def test_wrong_array_shape_or_dtype_is_a_clear_error():
    extractor = FeatureExtractor(tiny_model())
    with pytest.raises(ValueError, match=r"input 0: .*HxWx3 uint8.*shape \(10, 10\)"):
        extractor(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"input 1: .*shape \(10, 10, 4\)"):
        extractor([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 4), np.uint8)])
    with pytest.raises(ValueError, match=r"shape \(10, 10, 3\) and dtype float32"):
        extractor(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="input 0: .*got int"):
        extractor([3])


def test_missing_or_unreadable_file_names_the_path(tmp_path):
    extractor = FeatureExtractor(tiny_model())
    missing = tmp_path / "nobody_c1s1_000001_01.jpg"
    with pytest.raises(FileNotFoundError, match="nobody_c1s1_000001_01.jpg"):
        extractor([str(missing)])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        extractor(broken)


def test_checkpoint_path_input(tmp_path, image_paths):
    model = tiny_model(seed=3)
    checkpoint = save_checkpoint(model_state(model), tmp_path / "tiny.pt")
    expected = FeatureExtractor(model)(image_paths)
    torch.testing.assert_close(FeatureExtractor(checkpoint)(image_paths), expected)
    torch.testing.assert_close(FeatureExtractor(str(checkpoint), device="cpu")(image_paths), expected)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        FeatureExtractor(tmp_path / "absent.pt")


def test_backend_and_device_validation():
    model = tiny_model()
    with pytest.raises(ValueError, match="backend 'onnxruntime' is not available"):
        FeatureExtractor(model, backend="onnxruntime")
    with pytest.raises(ValueError, match="device 'gpu0'"):
        FeatureExtractor(model, device="gpu0")
    with pytest.raises(ValueError, match="batch_size=0"):
        FeatureExtractor(model, batch_size=0)
    from robustreid.device import default_device

    # one rule: None is the GPU when the machine has one, else the CPU
    assert resolve_device(None) == default_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert FeatureExtractor(model, device=torch.device("cpu")).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_extract_features_follows_record_order(market):
    model = tiny_model()
    records = market.gallery
    feats, pids, camids = extract_features(model, records, batch_size=4, num_workers=0)
    torch.testing.assert_close(feats, FeatureExtractor(model)([r.img_path for r in records]))
    assert pids.tolist() == [r.pid for r in records] and camids.tolist() == [r.camid for r in records]
    assert pids.dtype == np.int64 and camids.dtype == np.int64


def test_progress_counts_every_image_once_per_batch(market, image_paths):
    model = tiny_model()
    calls = []
    extract_features(model, market.gallery, batch_size=4, num_workers=0, progress=lambda d, t: calls.append((d, t)))
    n = len(market.gallery)
    assert calls == [(min(k, n), n) for k in range(4, n + 4, 4)]  # one call per batch of 4, the last one short
    calls.clear()
    FeatureExtractor(model, batch_size=3)(image_paths, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 4), (4, 4)]
    calls.clear()
    evaluate(model, market, num_workers=0, batch_size=5, progress=lambda d, t: calls.append((d, t)))
    q, total = len(market.query), len(market.query) + len(market.gallery)
    assert calls[-1] == (total, total) and all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and (q, total) in calls  # query, then gallery


def test_extract_features_amp_runs_the_network_in_reduced_precision(market):
    """``amp=True``: the same network under bfloat16 autocast on CPU. The descriptors come back float32, close to
    the fp32 ones (bf16 keeps 8 mantissa bits: cosine > 0.99) but not equal (the autocast really ran)."""
    model = tiny_model()
    records = market.gallery
    fp32, _, _ = extract_features(model, records, batch_size=4, num_workers=0)
    bf16, _, _ = extract_features(model, records, batch_size=4, num_workers=0, amp=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert float((bf16 - fp32).abs().max()) > 1e-4
    assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=1).min() > 0.99


def slow_ranked_list(distmat_row, q_pid, q_camid, g_pids, g_camids, topk):
    """Valid gallery entries sorted by (distance, is_match): the pessimistic tie rule, as a plain loop."""
    entries = []
    for j, (pid, camid) in enumerate(zip(g_pids, g_camids)):
        if pid == q_pid and camid == q_camid:
            continue  # same identity, same camera: not a re-identification
        entries.append((float(distmat_row[j]), pid == q_pid, j))
    return [j for _, _, j in sorted(entries)[:topk]]


def test_evaluate_matches_evaluate_rank_on_the_full_distmat(market):
    model = tiny_model(seed=1).train()
    result = evaluate(model, market, num_workers=0, batch_size=5, num_samples=4, topk=6)
    assert model.training  # restored

    extractor = FeatureExtractor(model)
    q_feats = extractor([r.img_path for r in market.query]).double()
    g_feats = extractor([r.img_path for r in market.gallery]).double()
    distmat = ((q_feats[:, None, :] - g_feats[None, :, :]) ** 2).sum(-1)  # squared Euclidean, by hand
    q_pids = np.array([r.pid for r in market.query])
    g_pids = np.array([r.pid for r in market.gallery])
    q_camids = np.array([r.camid for r in market.query])
    g_camids = np.array([r.camid for r in market.gallery])
    cmc, mean_ap, mean_inp = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                                           max_rank=len(g_pids), return_minp=True)

    assert set(SUMMARY_KEYS) <= set(result)
    assert result["num_query"] == len(market.query) and result["num_gallery"] == len(market.gallery)
    assert result["rank1"] == pytest.approx(100 * cmc[0])
    assert result["rank5"] == pytest.approx(100 * cmc[4])
    assert result["rank10"] == pytest.approx(100 * cmc[9])
    assert result["mAP"] == pytest.approx(100 * mean_ap)
    assert result["mINP"] == pytest.approx(100 * mean_inp)
    assert len(result["cmc"]) == min(50, len(g_pids))
    np.testing.assert_allclose(result["cmc"], 100 * cmc[: len(result["cmc"])])
    assert result["feature_dim"] == model.feature_dim and result["metric"] == "euclidean"

    ranked = result["ranked"]
    q_indices = [entry["q_index"] for entry in ranked]  # spread over the query list, ends included
    assert len(q_indices) == 4 and q_indices == sorted(set(q_indices))
    assert q_indices[0] == 0 and q_indices[-1] == len(market.query) - 1
    for entry in ranked:
        i = entry["q_index"]
        expected = slow_ranked_list(distmat[i].numpy(), q_pids[i], q_camids[i], g_pids, g_camids, topk=6)
        assert entry["g_indices"] == expected
        np.testing.assert_allclose(entry["distances"], distmat[i, expected].numpy(), rtol=1e-4, atol=1e-6)
        assert entry["matches"] == [bool(g_pids[j] == q_pids[i]) for j in expected]
        assert entry["g_img_paths"] == [market.gallery[j].img_path for j in expected]
        assert entry["q_img_path"] == market.query[i].img_path
        # The first entry is a match exactly when this query is a rank-1 hit for the metrics.
        single_cmc, _ = evaluate_rank(distmat[i:i + 1], q_pids[i:i + 1], g_pids, q_camids[i:i + 1], g_camids,
                                      max_rank=1)
        assert entry["matches"][0] == bool(single_cmc[0] == 1.0)
    json.dumps(result)  # plain data

    cosine = evaluate(model, market, metric="cosine", num_workers=0, num_samples=0)
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):  # equal-norm descriptors: same ranking
        assert cosine[key] == pytest.approx(result[key])
    assert cosine["ranked"] == []
    with pytest.raises(ValueError, match="metric='manhattan'"):
        evaluate(model, market, metric="manhattan")


def test_rank_gallery_hand_case_ties_and_junk():
    q_feats = torch.tensor([[0.0, 0.0]])
    g_feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, -1.0]])
    g_pids = [7, 7, 3, 4, 7]
    g_camids = [0, 1, 1, 1, 2]
    # g0: same pid and camera (left out); g1, g2, g4 at squared distance 1; g3 at 4.
    (ranked,) = rank_gallery(q_feats, g_feats, [7], g_pids, [0], g_camids, topk=10)
    assert ranked["g_indices"] == [2, 1, 4, 3]  # the tied non-match first, then the tied matches
    assert ranked["distances"] == [1.0, 1.0, 1.0, 4.0]
    assert ranked["matches"] == [False, True, True, False]
    (top2,) = rank_gallery(q_feats, g_feats, [7], g_pids, [0], g_camids, topk=2)
    assert top2["g_indices"] == [2, 1]
    with pytest.raises(ValueError, match="g_camids"):
        rank_gallery(q_feats, g_feats, [7], g_pids, [0], g_camids[:3])


def test_summary_and_text():
    result = {"rank1": 91.25, "rank5": 96.0, "rank10": 97.5, "mAP": 80.126, "mINP": 50.0, "num_query": 4,
              "num_gallery": 9, "dataset": "market1501", "cmc": [91.25]}
    summary = metrics_summary(result)
    assert list(summary) == list(SUMMARY_KEYS)
    assert "cmc" not in summary and "dataset" not in summary
    text = format_metrics(result)
    assert "rank-1   91.25%" in text and "mAP      80.13%" in text and "4 queries, 9 gallery" in text
    with pytest.raises(ValueError, match="mINP"):
        metrics_summary({k: v for k, v in result.items() if k != "mINP"})


def test_extract_to_npz_round_trip(tmp_path, image_paths):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, path in enumerate(reversed(image_paths)):  # names sort differently from the write order
        Image.open(path).save(folder / f"crop_{i}{'.PNG' if i == 0 else '.png'}")
    (folder / "notes.txt").write_text("not an image")
    model = tiny_model(seed=2)
    checkpoint = save_checkpoint(model_state(model), tmp_path / "tiny.pt")
    extra = image_paths[0]
    out = tmp_path / "out" / "feats.npz"

    info = extract_to_npz(checkpoint, [folder, extra], out, batch_size=3)
    expected_paths = sorted(str(p) for p in folder.glob("crop_*")) + [extra]
    assert list_images([folder, extra]) == expected_paths
    with np.load(out, allow_pickle=False) as archive:
        assert archive["paths"].tolist() == expected_paths
        feats = archive["features"]
    assert feats.dtype == np.float32 and feats.shape == (5, model.feature_dim)
    np.testing.assert_allclose(feats, FeatureExtractor(model)(expected_paths).numpy(), rtol=1e-5, atol=1e-6)
    assert info == {"out": str(out), "num_images": 5, "feature_dim": model.feature_dim}
    assert sorted(p.name for p in out.parent.iterdir()) == ["feats.npz"]  # no temporary file left

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in directory .*empty"):
        extract_to_npz(checkpoint, tmp_path / "empty", tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="ghost.jpg"):
        extract_to_npz(checkpoint, [tmp_path / "ghost.jpg"], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
