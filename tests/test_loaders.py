"""Transforms, random erasing, PK sampler and DataLoader construction (Section 3.1, Section 4)."""

import io
import math
import os
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from robustreid.datasets import Record
from robustreid.loaders import (
    PKSampler,
    RandomErasing,
    ReidImageDataset,
    TestTransform,
    TrainTransform,
    _pad_crop,
    build_test_loader,
    build_train_loader,
    camera_color_jitter,
    sample_erase_box,
)

DATA_CONFIG = {"input_size": (160, 64), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
MEAN = torch.tensor(DATA_CONFIG["mean"]).view(3, 1, 1)
STD = torch.tensor(DATA_CONFIG["std"]).view(3, 1, 1)


def _random_image(height=128, width=64, seed=0):
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _batches(indices, batch_size):
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


# ----------------------------------------------------------------------------------------------------
# PK sampler

# 30 identities with 1..30 images each (some below K), indices interleaved so identities are not contiguous.
COUNTS = list(range(1, 31))
PIDS = [pid for _, pid in sorted((i * 7919 % 1000 + pid * 0.001, pid)
                                 for pid, count in enumerate(COUNTS) for i in range(count))]


def test_pk_batches_hold_p_distinct_identities_with_k_images_each():
    sampler = PKSampler(PIDS, batch_p=4, batch_k=4, seed=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) and len(indices) % 16 == 0
    # Batch count from the rule: every identity gives max(1, ceil(n / K)) chunks, batches take P of them.
    assert len(indices) // 16 == sum(max(1, math.ceil(n / 4)) for n in COUNTS) // 4
    for batch in _batches(indices, 16):
        pid_counts = Counter(PIDS[i] for i in batch)
        assert len(pid_counts) == 4 and set(pid_counts.values()) == {4}
        for j in range(0, 16, 4):  # images of one identity are consecutive
            assert len({PIDS[i] for i in batch[j:j + 4]}) == 1


def test_pk_sampler_is_deterministic_per_seed_and_epoch():
    sampler = PKSampler(PIDS, batch_p=4, batch_k=4, seed=0)
    epoch0 = list(sampler)
    assert list(PKSampler(PIDS, batch_p=4, batch_k=4, seed=0)) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and len(epoch1) == len(epoch0) == len(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    assert list(PKSampler(PIDS, batch_p=4, batch_k=4, seed=1)) != epoch0


def test_small_identities_are_resampled_with_replacement():
    pids = [0] + [1] * 2 + [2] * 9 + [3] * 8 + [4] * 6
    sampler = PKSampler(pids, batch_p=2, batch_k=4)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in _batches(list(sampler), 8):
            for j in range(0, 8, 4):
                chunk = batch[j:j + 4]
                if pids[chunk[0]] == 0:
                    assert chunk == [0, 0, 0, 0]
                elif pids[chunk[0]] == 1:
                    assert set(chunk) == {1, 2}  # both images, with repeats
                else:  # enough images: no repeats within a chunk
                    assert len(set(chunk)) == 4


def test_an_epoch_covers_each_image_about_once():
    rng = np.random.default_rng(0)
    counts = rng.integers(2, 40, size=200)  # Market-like spread of images per identity
    pids = np.repeat(np.arange(200), counts).tolist()
    sampler = PKSampler(pids, batch_p=8, batch_k=4, seed=0)
    seen = Counter(list(sampler))
    assert len(seen) / len(pids) > 0.98  # nearly every image is shown
    assert sum(n == 1 for n in seen.values()) / len(pids) > 0.85  # mostly exactly once
    assert abs(len(sampler) - len(pids)) / len(pids) < 0.1
    # Repeats only top up an identity's last chunk: at most twice for identities with >= K images.
    assert max(n for i, n in seen.items() if counts[pids[i]] >= 4) <= 2


def test_ddp_ranks_get_disjoint_identities_each_step():
    samplers = [PKSampler(PIDS, batch_p=4, batch_k=4, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in samplers:
        sampler.set_epoch(2)
    per_rank = [_batches(list(s), 16) for s in samplers]
    assert len(samplers[0]) == len(samplers[1]) == len(per_rank[0]) * 16
    assert len(per_rank[0]) == sum(max(1, math.ceil(n / 4)) for n in COUNTS) // 8
    for batch0, batch1 in zip(*per_rank):
        ids0, ids1 = {PIDS[i] for i in batch0}, {PIDS[i] for i in batch1}
        assert len(ids0) == len(ids1) == 4 and not ids0 & ids1
    # Together the ranks cover about as much as one process with twice the batch.
    covered = {i for batches in per_rank for batch in batches for i in batch}
    assert len(covered) / len(PIDS) > 0.9


def test_pk_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least batch_p"):
        PKSampler([0, 1, 2], batch_p=4)
    with pytest.raises(ValueError, match="at least batch_p"):
        PKSampler(list(range(6)), batch_p=4, num_replicas=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(PIDS, num_replicas=2, rank=2)


# ----------------------------------------------------------------------------------------------------
# Random erasing (Section 3.1: p = 0.5, 0.02 < S_e < 0.4, 0.3 < r < 3.3)


def test_erase_boxes_respect_area_and_aspect_limits():
    generator = torch.Generator().manual_seed(0)
    boxes = [sample_erase_box(160, 64, generator=generator) for _ in range(2000)]
    found = [b for b in boxes if b is not None]
    assert len(found) == len(boxes)  # 100 attempts always find a fitting box at 160x64
    areas = np.array([h * w / (160 * 64) for _, _, h, w in found])
    aspects = np.array([h / w for _, _, h, w in found])
    assert areas.min() >= 0.02 and areas.max() <= 0.4
    assert aspects.min() >= 0.3 and aspects.max() <= 3.3
    assert all(0 <= top and top + h <= 160 and 0 <= left and left + w <= 64 for top, left, h, w in found)
    # The ranges are actually explored, not a degenerate corner.
    assert areas.min() < 0.04 and areas.max() > 0.35
    assert aspects.min() < 0.5 and aspects.max() > 2.5


def test_random_erasing_probability_and_mean_fill():
    erasing = RandomErasing()
    generator = torch.Generator().manual_seed(1)
    image = torch.ones(3, 160, 64)
    erased = 0
    for _ in range(2000):
        out = erasing(image, generator)
        zero = out[0] == 0
        if zero.any():
            erased += 1
            rows, cols = zero.nonzero(as_tuple=True)
            box_area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert int(zero.sum()) == int(box_area)  # one rectangle
            assert torch.equal(out == 0, zero.expand(3, -1, -1))  # all channels, mean = 0 after normalising
            assert 0.02 <= int(box_area) / (160 * 64) <= 0.4
    assert torch.equal(image, torch.ones(3, 160, 64))  # input untouched
    assert 0.45 < erased / 2000 < 0.55


def test_random_erasing_random_fill_and_validation():
    erasing = RandomErasing(probability=1.0, fill="random")
    out = erasing(torch.zeros(3, 160, 64), torch.Generator().manual_seed(2))
    values = out[out != 0]
    assert values.numel() >= 0.02 * 3 * 160 * 64 and 0.7 < float(values.std()) < 1.3
    with pytest.raises(ValueError, match="probability"):
        RandomErasing(probability=1.5)
    with pytest.raises(ValueError, match="fill"):
        RandomErasing(fill="zeros")
    with pytest.raises(ValueError, match="area_range"):
        RandomErasing(area_range=(0.5, 0.1))


# ----------------------------------------------------------------------------------------------------
# Transforms


def test_test_transform_resizes_and_normalises_per_rgb_channel():
    rgb = (200, 100, 30)
    out = TestTransform(DATA_CONFIG)(Image.new("RGB", (40, 90), rgb))
    assert out.shape == (3, 160, 64) and out.dtype == torch.float32
    for c in range(3):
        expected = (rgb[c] / 255 - DATA_CONFIG["mean"][c]) / DATA_CONFIG["std"][c]
        assert torch.allclose(out[c], torch.full((160, 64), expected), atol=1e-5)
    image = _random_image()
    reference = np.asarray(image.resize((64, 160), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    out = TestTransform(DATA_CONFIG)(image)
    assert torch.allclose(out * STD + MEAN, torch.from_numpy(reference).permute(2, 0, 1), atol=1e-5)


def test_train_transform_without_randomness_equals_test_transform_and_flips():
    image = _random_image(seed=4)
    no_erasing = RandomErasing(probability=0.0)
    plain = TrainTransform(DATA_CONFIG, flip_probability=0.0, pad=0, erasing=no_erasing)
    flipped = TrainTransform(DATA_CONFIG, flip_probability=1.0, pad=0, erasing=no_erasing)
    reference = TestTransform(DATA_CONFIG)(image)
    assert torch.equal(plain(image), reference)
    assert torch.equal(flipped(image), reference.flip(-1))


def _jitter_reference(image: np.ndarray, u: list[float]) -> np.ndarray:
    """camera_color_jitter written out per pixel in NumPy from its five uniform draws (HWC, float64)."""
    gain, temperature, tint = 0.7 + 0.6 * u[0], 2 * u[1] - 1, 0.14 * u[2] - 0.07
    cast = np.array([1 + 0.16 * temperature, 1 + tint, 1 - 0.16 * temperature])
    cast = cast / cast.mean()
    saturation, gamma = 0.6 + 0.6 * u[3], 0.8 + 0.45 * u[4]
    out = np.empty_like(image)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            rgb = image[y, x] * gain * cast
            grey = rgb.mean()
            out[y, x] = np.clip(grey + saturation * (rgb - grey), 0, 1) ** gamma
    return out


def test_camera_color_jitter_matches_a_per_pixel_reference():
    image = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(1))
    for seed in range(4):
        u = torch.rand(5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
        got = camera_color_jitter(image, torch.Generator().manual_seed(seed))
        expected = _jitter_reference(image.permute(1, 2, 0).double().numpy(), u)
        assert got.shape == image.shape and got.dtype == image.dtype
        np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, atol=1e-5)
        assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def test_camera_color_jitter_changes_the_colour_cast_from_draw_to_draw():
    grey = torch.full((3, 8, 4), 0.5)
    g = torch.Generator().manual_seed(0)
    ratios = [float(t[0].mean() / t[2].mean()) for t in (camera_color_jitter(grey, g) for _ in range(50))]
    assert min(ratios) < 0.85 and max(ratios) > 1.15  # warm and cool casts of a grey card: +-16 % each way


def test_train_transform_colour_jitter_probability():
    image = _random_image(seed=6)
    no_erasing = RandomErasing(probability=0.0)
    plain = TrainTransform(DATA_CONFIG, flip_probability=0.0, pad=0, erasing=no_erasing)
    always = TrainTransform(DATA_CONFIG, flip_probability=0.0, pad=0, erasing=no_erasing, color_jitter=1.0)
    reference = TestTransform(DATA_CONFIG)(image)
    assert torch.equal(plain(image, torch.Generator().manual_seed(3)), reference)  # 0 = off, draws nothing
    g = torch.Generator().manual_seed(3)
    float(torch.rand((), generator=g))  # the transform's coin
    expected = camera_color_jitter(_resized_tensor(image), g)
    assert torch.allclose(always(image, torch.Generator().manual_seed(3)), (expected - MEAN) / STD, atol=1e-6)
    with pytest.raises(ValueError, match="color_jitter=1.5: expected a probability"):
        TrainTransform(DATA_CONFIG, color_jitter=1.5)


def _resized_tensor(image: Image.Image) -> torch.Tensor:
    return TestTransform(DATA_CONFIG)(image) * STD + MEAN


@pytest.mark.parametrize("pad, height, width", [(10, 16, 8), (3, 4, 5), (0, 6, 3)])
def test_pad_crop_matches_a_slow_loop(pad, height, width):
    tensor = torch.rand(3, height, width) + 1
    padded = torch.zeros(3, height + 2 * pad, width + 2 * pad)
    for y in range(height):
        for x in range(width):
            padded[:, y + pad, x + pad] = tensor[:, y, x]
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            expected = padded[:, top:top + height, left:left + width]
            assert torch.equal(_pad_crop(tensor, pad, top, left), expected)


def test_train_transform_pads_black_and_crops_a_shift():
    white = Image.new("RGB", (64, 160), (255, 255, 255))
    transform = TrainTransform(DATA_CONFIG, flip_probability=0.0, pad=10,
                               erasing=RandomErasing(probability=0.0))
    white_value, black_value = (1 - MEAN) / STD, (0 - MEAN) / STD
    generator = torch.Generator().manual_seed(0)
    shifts = set()
    for _ in range(50):
        out = transform(white, generator)
        is_white = torch.isclose(out, white_value.expand_as(out), atol=1e-5)
        is_black = torch.isclose(out, black_value.expand_as(out), atol=1e-5)
        assert bool((is_white | is_black).all())
        rows, cols = is_white[0].nonzero(as_tuple=True)
        # The white part is the image shifted by (dy, dx) in [-10, 10]: a rectangle touching two borders.
        assert int(is_white[0].sum()) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        dy = int(rows.min()) if rows.min() > 0 else int(rows.max()) - 159
        dx = int(cols.min()) if cols.min() > 0 else int(cols.max()) - 63
        assert -10 <= dy <= 10 and -10 <= dx <= 10
        shifts.add((dy, dx))
    assert len(shifts) > 25  # offsets vary


def test_train_transform_is_reproducible_with_a_generator_and_picklable():
    image = _random_image(seed=5)
    transform = TrainTransform(DATA_CONFIG)
    a = transform(image, torch.Generator().manual_seed(7))
    b = pickle.loads(pickle.dumps(transform))(image, torch.Generator().manual_seed(7))
    c = transform(image, torch.Generator().manual_seed(8))
    assert a.shape == (3, 160, 64) and torch.equal(a, b) and not torch.equal(a, c)
    assert pickle.loads(pickle.dumps(TestTransform(DATA_CONFIG)))(image).shape == (3, 160, 64)


def test_data_config_is_validated():
    with pytest.raises(ValueError, match="input_size"):
        TestTransform({"mean": (0, 0, 0), "std": (1, 1, 1)})
    with pytest.raises(ValueError, match="std"):
        TrainTransform({"input_size": (160, 64), "mean": (0, 0, 0), "std": (1, 0, 1)})


# ----------------------------------------------------------------------------------------------------
# Dataset and loaders


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    records = []
    for pid in range(10):
        for i in range(5):
            path = folder / f"{pid + 1:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg"
            buffer = io.BytesIO()
            _random_image(32, 16, seed=pid * 10 + i).save(buffer, "JPEG")
            path.write_bytes(buffer.getvalue())
            records.append(Record(str(path), pid, i % 6))
    return records


def _check_train_batch(batch, records, batch_p, batch_k):
    imgs, pids, camids, img_paths = batch
    assert imgs.shape == (batch_p * batch_k, 3, 160, 64) and imgs.dtype == torch.float32
    assert pids.dtype == torch.int64 and camids.dtype == torch.int64
    assert len(set(pids.tolist())) == batch_p and set(Counter(pids.tolist()).values()) == {batch_k}
    by_path = {r.img_path: r for r in records}
    from_records = [(by_path[p].pid, by_path[p].camid) for p in img_paths]
    assert from_records == list(zip(pids.tolist(), camids.tolist()))


def test_dataset_item_and_unreadable_image_error(records, tmp_path):
    img, pid, camid, img_path = ReidImageDataset(records, TestTransform(DATA_CONFIG))[7]
    assert img.shape == (3, 160, 64)
    assert (img_path, pid, camid) == tuple(records[7])
    bad = tmp_path / "0001_c1s1_000001_01.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    loader = build_test_loader([Record(str(bad), 1, 0)], DATA_CONFIG, batch_size=4, num_workers=0)
    with pytest.raises(ValueError, match="0001_c1s1_000001_01.jpg"):
        next(iter(loader))
    with pytest.raises(ValueError, match="no records"):
        ReidImageDataset([], TestTransform(DATA_CONFIG))


def test_train_loader_without_workers(records):
    loader = build_train_loader(records, DATA_CONFIG, batch_p=4, batch_k=4, num_workers=0, seed=0)
    assert len(loader) == len(loader.sampler) // 16 == (10 * 2) // 4
    batches = list(loader)
    assert len(batches) == len(loader)
    for batch in batches:
        _check_train_batch(batch, records, 4, 4)


def test_train_loader_without_pad_or_erasing_yields_test_images_or_their_mirror(records):
    # data.pad = 0 and random_erasing = 0 (the demo's setting): every training image is the test transform's
    # image of its file, or that image flipped; with the default pad some are shifted (black border).
    reference = {r.img_path: ReidImageDataset([r], TestTransform(DATA_CONFIG))[0][0] for r in records}
    loader = build_train_loader(records, DATA_CONFIG, batch_p=4, batch_k=4, num_workers=0,
                                erasing=RandomErasing(probability=0.0), pad=0)
    imgs, _, _, paths = next(iter(loader))
    for img, path in zip(imgs, paths):
        assert torch.equal(img, reference[path]) or torch.equal(img, reference[path].flip(-1))
    padded = build_train_loader(records, DATA_CONFIG, batch_p=4, batch_k=4, num_workers=0,
                                erasing=RandomErasing(probability=0.0))
    imgs, _, _, paths = next(iter(padded))
    same = [torch.equal(i, reference[p]) or torch.equal(i, reference[p].flip(-1)) for i, p in zip(imgs, paths)]
    assert not all(same)


def test_train_loader_with_two_workers_is_reproducible(records):
    first = []
    for _ in range(2):
        loader = build_train_loader(records, DATA_CONFIG, batch_p=4, batch_k=4, num_workers=2, seed=11)
        assert loader.persistent_workers and loader.num_workers == 2
        iterator = iter(loader)
        batches = [next(iterator), next(iterator)]
        del iterator, loader
        for batch in batches:
            _check_train_batch(batch, records, 4, 4)
        first.append(batches)
    for a, b in zip(*first):
        assert torch.equal(a[0], b[0]) and a[3] == b[3]  # same augmentation from the same seed


def test_workers_draw_different_augmentations(records):
    # One image repeated: worker 0 loads item 0, worker 1 item 1. Equal outputs would mean equal worker seeds.
    dataset = ReidImageDataset([records[0]] * 4, TrainTransform(DATA_CONFIG))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    imgs = [batch[0][0] for batch in loader]
    assert len(imgs) == 4 and not torch.equal(imgs[0], imgs[1])


def test_test_loader_keeps_order_and_last_partial_batch(records):
    loader = build_test_loader(records, DATA_CONFIG, batch_size=16, num_workers=0)
    batches = list(loader)
    assert [len(b[3]) for b in batches] == [16, 16, 16, 2]
    assert [p for b in batches for p in b[3]] == [r.img_path for r in records]
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    expected = TestTransform(DATA_CONFIG)(Image.open(records[17].img_path).convert("RGB"))
    assert torch.equal(batches[1][0][1], expected)
    assert os.path.basename(batches[0][3][0]) == os.path.basename(records[0].img_path)
