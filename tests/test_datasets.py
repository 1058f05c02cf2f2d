"""Dataset readers on small trees built in each dataset's real on-disk layout."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from robustreid.datasets import (
    DATASET_NAMES, Record, ReidDataset, check_images, dataset_from_spec, load_dataset, read_image, union,
)


def _jpeg_bytes(height=16, width=8, seed=0):
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = _jpeg_bytes()


def _write(folder, names, data=JPEG):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


MARKET_TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0002_c3s1_000551_01.jpg",
                "0007_c6s1_000101_02.jpg", "0007_c1s2_000201_01.jpg", "0005_c4s2_000050_01.jpg"]
MARKET_QUERY = ["0002_c4s1_000001_00.jpg", "0009_c5s1_000001_00.jpg"]
MARKET_GALLERY = ["0002_c1s1_000002_01.jpg", "0009_c2s1_000002_01.jpg", "0000_c3s1_000003_01.jpg",
                  "-1_c1s1_000004_01.jpg"]


def make_market(parent, folder="Market-1501-v15.09.15"):
    root = os.path.join(parent, folder)
    _write(os.path.join(root, "bounding_box_train"), MARKET_TRAIN)
    _write(os.path.join(root, "query"), MARKET_QUERY)
    _write(os.path.join(root, "bounding_box_test"), MARKET_GALLERY)
    _write(os.path.join(root, "bounding_box_test"), ["Thumbs.db"], b"not an image")  # ignored: not an image
    return root


DUKE_TRAIN = ["0001_c2_f0046182.jpg", "0001_c5_f0051234.jpg", "0010_c8_f0000001.jpg"]
DUKE_QUERY = ["0001_c1_f0000002.jpg"]
DUKE_GALLERY = ["0001_c3_f0000003.jpg", "0100_c7_f0000004.jpg"]


def make_duke(parent, folder="DukeMTMC-reID"):
    root = os.path.join(parent, folder)
    _write(os.path.join(root, "bounding_box_train"), DUKE_TRAIN)
    _write(os.path.join(root, "query"), DUKE_QUERY)
    _write(os.path.join(root, "bounding_box_test"), DUKE_GALLERY)
    return root


MSMT_LISTS = {  # list file -> lines "PID_FOLDER/IMAGE PID"
    "list_train.txt": ["0003/0003_000_01_0303morning_0015_0.jpg 3",
                       "0008/0008_000_15_0113morning_0001_0.jpg 8"],
    "list_val.txt": ["0003/0003_001_03_0303noon_0020_1.jpg 3",
                     "0011/0011_000_07_0302afternoon_0100_2.jpg 11"],
    "list_query.txt": ["0000/0000_000_02_0113noon_0001_0.jpg 0"],
    "list_gallery.txt": ["0000/0000_001_04_0114noon_0002_0.jpg 0",
                         "0001/0001_000_11_0114morning_0003_1.jpg 1"],
}


def make_msmt17(parent, version="V1"):
    root = os.path.join(parent, f"MSMT17_{version}")
    train_dir, test_dir = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    for list_name, lines in MSMT_LISTS.items():
        image_dir = train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir
        for line in lines:
            pid_folder, name = line.split()[0].split("/")
            _write(os.path.join(root, image_dir, pid_folder), [name])
        with open(os.path.join(root, list_name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


def _names(records):
    return [os.path.basename(r.img_path) for r in records]


def test_market1501_counts_relabelling_camids_junk_and_distractors(tmp_path):
    # A parent folder whose name looks like a Market file name: only basenames may be parsed.
    parent = tmp_path / "0042_c7s1_misleading"
    root = make_market(str(parent))
    dataset = load_dataset("market1501", root)
    assert isinstance(dataset, ReidDataset)
    # Training pids 2, 5, 7 -> 0, 1, 2; cameras c1..c6 -> 0..5; sorted by path.
    assert [tuple(r[1:]) for r in dataset.train] == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 0), (2, 5)]
    assert _names(dataset.train) == sorted(MARKET_TRAIN)
    assert dataset.num_train_pids == 3 and dataset.num_train_cams == 5
    # Query / gallery keep original pids; junk (-1) dropped, distractors (0) kept.
    assert [tuple(r[1:]) for r in dataset.query] == [(2, 3), (9, 4)]
    assert sorted((r.pid, r.camid) for r in dataset.gallery) == [(0, 2), (2, 0), (9, 1)]
    assert all(isinstance(r, Record) and os.path.isabs(r.img_path) and os.path.isfile(r.img_path)
               for r in dataset.train + dataset.query + dataset.gallery)
    assert os.path.samefile(dataset.root, root)


def test_parent_root_resolves_to_the_same_dataset(tmp_path):
    make_market(str(tmp_path))
    make_duke(str(tmp_path))
    for name in ("market1501", "dukemtmcreid"):
        from_parent = load_dataset(name, tmp_path)
        from_folder = load_dataset(name, from_parent.root)
        assert from_parent == from_folder


def test_dukemtmcreid_layout(tmp_path):
    dataset = load_dataset("DukeMTMCreID", make_duke(str(tmp_path)))  # case-insensitive name
    assert [tuple(r[1:]) for r in dataset.train] == [(0, 1), (0, 4), (1, 7)]
    assert [tuple(r[1:]) for r in dataset.query] == [(1, 0)]
    assert [tuple(r[1:]) for r in dataset.gallery] == [(1, 2), (100, 6)]
    assert dataset.num_train_pids == 2 and dataset.num_train_cams == 3


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_train_is_train_plus_val_with_camera_from_name(tmp_path, version):
    root = make_msmt17(str(tmp_path), version)
    dataset = load_dataset("msmt17", tmp_path)  # parent of MSMT17_V1 / MSMT17_V2
    assert os.path.samefile(dataset.root, root)
    train_dir = "train" if version == "V1" else "mask_train_v2"
    test_dir = "test" if version == "V1" else "mask_test_v2"
    # list pids 3, 3, 8, 11 -> 0, 0, 1, 2; cameras 01, 03, 15, 07 -> 0, 2, 14, 6
    assert [tuple(r[1:]) for r in dataset.train] == [(0, 0), (0, 2), (1, 14), (2, 6)]
    assert all(os.path.isfile(r.img_path) and f"{os.sep}{train_dir}{os.sep}" in r.img_path
               for r in dataset.train)
    assert [tuple(r[1:]) for r in dataset.query] == [(0, 1)]
    assert [tuple(r[1:]) for r in dataset.gallery] == [(0, 3), (1, 10)]
    assert all(f"{os.sep}{test_dir}{os.sep}" in r.img_path for r in dataset.query + dataset.gallery)
    assert dataset.num_train_pids == 3 and dataset.num_train_cams == 4


def test_union_makes_pids_and_camids_disjoint(tmp_path):
    market = load_dataset("market1501", make_market(str(tmp_path / "a")))
    duke = load_dataset("dukemtmcreid", make_duke(str(tmp_path / "b")))
    merged = load_dataset(["market1501", "dukemtmcreid"], [tmp_path / "a", tmp_path / "b"])
    assert merged == union([market, duke])
    assert merged.name == "market1501+dukemtmcreid"
    # Train: Market pids 0..2 then Duke pids 3..4; Duke cameras shifted by Market's 6 cameras.
    assert merged.train[: len(market.train)] == market.train
    assert [tuple(r[1:]) for r in merged.train[len(market.train):]] == [(3, 7), (3, 10), (4, 13)]
    assert merged.num_train_pids == 5 and merged.num_train_cams == 5 + 3
    # Test pids shifted past Market's largest test pid (9), so no identity is shared across datasets.
    assert [tuple(r[1:]) for r in merged.query] == [(2, 3), (9, 4), (11, 6)]
    assert {r.pid for r in merged.gallery} == {0, 2, 9, 11, 110}
    # One parent holding both datasets works as a single root.
    make_market(str(tmp_path / "both"))
    make_duke(str(tmp_path / "both"))
    together = load_dataset(["market1501", "dukemtmcreid"], tmp_path / "both")
    assert [r[1:] for r in together.train] == [r[1:] for r in merged.train]


def test_a_run_folders_dataset_spec_reloads_the_same_dataset(tmp_path):
    # dataset.json holds the CLI's comma-separated --dataset / --root: one pair, a pair per name, or one parent
    make_market(str(tmp_path / "a"))
    make_duke(str(tmp_path / "b"))
    assert dataset_from_spec({"name": "market1501", "root": str(tmp_path / "a")}) == load_dataset("market1501", tmp_path / "a")
    merged = load_dataset(["market1501", "dukemtmcreid"], [tmp_path / "a", tmp_path / "b"])
    assert dataset_from_spec({"name": "market1501,dukemtmcreid", "root": f"{tmp_path / 'a'},{tmp_path / 'b'}"}) == merged
    with pytest.raises(ValueError, match="a dataset spec is"):
        dataset_from_spec({"name": ["market1501"], "root": str(tmp_path)})
    with pytest.raises(ValueError, match="2 names but 3 roots"):
        dataset_from_spec({"name": "market1501,dukemtmcreid", "root": "x,y,z"})


def test_union_of_three_including_msmt17(tmp_path):
    make_market(str(tmp_path))
    make_duke(str(tmp_path))
    make_msmt17(str(tmp_path))
    merged = load_dataset(["dukemtmcreid", "market1501", "msmt17"], tmp_path)
    assert sorted({r.pid for r in merged.train}) == list(range(2 + 3 + 3))
    assert [r.camid for r in merged.train[-4:]] == [8 + 6 + c for c in (0, 2, 14, 6)]


def test_stats_table_lists_ids_images_cameras_per_split(tmp_path):
    table = load_dataset("market1501", make_market(str(tmp_path))).stats_table()
    rows = {}
    for line in table.splitlines()[1:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 4 and cells[1].isdigit():
            rows[cells[0]] = tuple(int(c) for c in cells[1:])
    assert rows == {"train": (3, 6, 5), "query": (2, 2, 2), "gallery": (3, 3, 3)}
    assert table.splitlines()[0].startswith("market1501")


def test_missing_split_folder_error_names_it_and_the_layout(tmp_path):
    root = make_market(str(tmp_path))
    os.rename(os.path.join(root, "query"), os.path.join(root, "queries"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert "'query/'" in message and "bounding_box_train" in message and "0002_c1s1_000451_03.jpg" in message
    assert "bounding_box_test/'," not in message.split("expected")[0]  # only the missing folder is named
    assert "\n" not in message


def test_missing_root_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_dataset("dukemtmcreid", tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="market1501, dukemtmcreid, msmt17"):
        load_dataset("cuhk03", tmp_path)
    with pytest.raises(ValueError, match="one per name"):
        load_dataset(["market1501", "msmt17"], [tmp_path, tmp_path, tmp_path])
    assert DATASET_NAMES == ("market1501", "dukemtmcreid", "msmt17")


def test_missing_msmt17_list_file_is_named(tmp_path):
    root = make_msmt17(str(tmp_path))
    os.remove(os.path.join(root, "list_val.txt"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("msmt17", root)
    message = str(info.value)
    assert "'list_val.txt'" in message and "list_train.txt'" not in message.split("expected")[0]
    assert "\n" not in message


def test_malformed_names_and_lines_are_reported(tmp_path):
    root = make_market(str(tmp_path / "m"))
    _write(os.path.join(root, "query"), ["holiday_photo.jpg"])
    with pytest.raises(ValueError, match="holiday_photo.jpg"):
        load_dataset("market1501", root)

    root = make_msmt17(str(tmp_path / "s"))
    with open(os.path.join(root, "list_query.txt"), "a") as f:
        f.write("0000/0000_002_05_0113noon_0003_0.jpg\n")  # no pid
    with pytest.raises(ValueError, match=r"list_query.txt:2"):
        load_dataset("msmt17", root)


def test_empty_split_folder_is_an_error(tmp_path):
    root = make_duke(str(tmp_path))
    for name in DUKE_QUERY:
        os.remove(os.path.join(root, "query", name))
    with pytest.raises(ValueError, match="query"):
        load_dataset("dukemtmcreid", root)


def test_a_split_left_without_images_names_the_split_the_folder_and_why(tmp_path):
    root = make_market(str(tmp_path / "m"))
    gallery = os.path.join(root, "bounding_box_test")
    for name in MARKET_GALLERY:
        os.remove(os.path.join(gallery, name))
    _write(gallery, ["-1_c1s1_000004_01.jpg", "-1_c2s1_000005_01.jpg"])  # junk only
    with pytest.raises(ValueError) as err:
        load_dataset("market1501", root)
    assert str(err.value) == (f"market1501: the gallery split '{os.path.realpath(gallery)}' has no usable image: "
                              "all 2 of its images are left out, 2 junk (pid -1); expected images of persons with "
                              "pid > 0 (e.g. '0002_c1s1_000451_03.jpg')")
    # training images of junk and distractors only: both counted; distractors stay usable in the gallery
    root = make_duke(str(tmp_path / "d"))
    train = os.path.join(root, "bounding_box_train")
    for name in DUKE_TRAIN:
        os.remove(os.path.join(train, name))
    _write(train, ["-1_c1_f0000001.jpg", "0000_c2_f0000002.jpg", "0000_c3_f0000003.jpg"])
    with pytest.raises(ValueError, match=r"dukemtmcreid: the train split .*bounding_box_train' has no usable image: "
                                         r"all 3 of its images are left out, 1 junk \(pid -1\) and 2 distractors "
                                         r"\(pid 0, not a training class\)"):
        load_dataset("dukemtmcreid", root)


def test_check_images_finds_truncated_corrupt_and_missing_files(tmp_path):
    good = _jpeg_bytes(64, 32, seed=1)
    _write(tmp_path, ["good.jpg"], good)
    _write(tmp_path, ["truncated.jpg"], good[: len(good) // 2])
    _write(tmp_path, ["garbage.jpg"], b"definitely not a jpeg")
    records = [Record(str(tmp_path / name), 1, 0)
               for name in ("good.jpg", "truncated.jpg", "garbage.jpg", "missing.jpg")]
    failures = check_images(records)
    assert [os.path.basename(path) for path, _ in failures] == ["truncated.jpg", "garbage.jpg", "missing.jpg"]
    assert "truncated" in failures[0][1]
    assert all(text for _, text in failures)
    assert read_image(records[0].img_path).size == (32, 64)
    with pytest.raises(ValueError, match="truncated.jpg"):
        read_image(records[1].img_path)


def test_16_bit_grey_images_keep_their_range(tmp_path):
    from PIL import Image

    grey = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16)  # 0, 1/4, 1/2, 1 of the 16-bit range
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(read_image(tmp_path / "g16.png"))
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb[..., 0].tolist() == [[0, 64], [128, 255]]  # not clipped to white by convert("RGB")


def test_check_images_reports_progress(tmp_path):
    _write(tmp_path, [f"{i}.jpg" for i in range(3)], _jpeg_bytes(64, 32, seed=1))
    calls = []
    check_images([tmp_path / f"{i}.jpg" for i in (0, 1, 2, 1)], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 3)]  # every 500 images and at the end; a repeated path is read once


def test_check_images_on_a_whole_dataset(tmp_path):
    root = make_market(str(tmp_path))
    assert check_images(load_dataset("market1501", root)) == []
    bad = os.path.join(root, "bounding_box_test", "0009_c2s1_000002_01.jpg")
    with open(bad, "wb") as f:
        f.write(JPEG[:40])
    assert [path for path, _ in check_images(load_dataset("market1501", root))] == [bad]
