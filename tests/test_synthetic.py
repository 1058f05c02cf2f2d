"""Tests of robustreid.synthetic: determinism, the Market1501 layout read back by the real reader,
identity consistency of the renderer, camera differences, reuse / resume of an output folder."""

import dataclasses
import json
import os
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from robustreid.datasets import load_dataset
from robustreid.synthetic import (
    VIEWS,
    SynthParams,
    apply_camera,
    contact_sheet,
    derive_rng,
    is_complete,
    render_background,
    render_crop,
    render_person,
    sample_camera,
    sample_identity,
    write_market1501,
)

# A tiny set: a few ids, seen by 2-3 of 3 cameras, two images per camera.
TINY = dict(ids_train=4, ids_test=3, cameras=3, images_per_id_per_cam=2, distractors=3, junk=2)
NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


def _all_files(root):
    return {os.path.join(split, name): open(os.path.join(root, split, name), "rb").read()
            for split in ("bounding_box_train", "query", "bounding_box_test")
            for name in sorted(os.listdir(os.path.join(root, split)))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "market"
    manifest = write_market1501(out, seed=3, **TINY)
    return out, manifest


# ---------------------------------------------------------------------------------------------------
# Determinism


def test_derive_rng_depends_only_on_keys():
    a = derive_rng(0, 3, 17, 2, 1).random(4)
    derive_rng(0, 3, 5, 1, 0).random(100)  # another stream in between changes nothing
    assert np.array_equal(a, derive_rng(0, 3, 17, 2, 1).random(4))
    assert not np.array_equal(a, derive_rng(0, 3, 17, 2, 2).random(4))
    assert not np.array_equal(a, derive_rng(1, 3, 17, 2, 1).random(4))
    with pytest.raises(ValueError, match="non-negative"):
        derive_rng(0, -1)


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    write_market1501(again, seed=3, **TINY)
    files = _all_files(out)
    assert files == _all_files(again)
    other = tmp_path / "other"
    write_market1501(other, seed=4, **TINY)
    other_files = _all_files(other)
    assert other_files != files
    common = set(files) & set(other_files)  # same name by chance must still hold other pixels
    assert all(files[k] != other_files[k] for k in common)


def test_image_does_not_depend_on_generation_order(tiny):
    from robustreid.synthetic import _plan, _render_spec

    out, _ = tiny
    params = SynthParams(seed=3, **TINY)
    for spec in reversed(_plan(params)):  # reverse order, fresh caches for nothing: same bytes
        assert _render_spec(params, spec) == (out / spec.split / spec.name).read_bytes(), spec


# ---------------------------------------------------------------------------------------------------
# The Market1501 layout, read back by the project's reader


def test_layout_read_back_by_market1501_reader(tiny):
    out, manifest = tiny
    names = {split: sorted(os.listdir(out / split))
             for split in ("bounding_box_train", "query", "bounding_box_test")}
    for split, split_names in names.items():
        for name in split_names:
            m = NAME.match(name)
            assert m, f"{split}/{name} is not a Market1501 name"
            assert 1 <= int(m.group(2)) <= TINY["cameras"]
    gallery_names = names["bounding_box_test"]
    assert sum(n.startswith("-1_") for n in gallery_names) == TINY["junk"]
    assert sum(n.startswith("0000_") for n in gallery_names) == TINY["distractors"]
    assert not any(n.startswith(("-1_", "0000_")) for n in names["bounding_box_train"] + names["query"])

    ds = load_dataset("market1501", out)
    assert ds.num_train_pids == TINY["ids_train"]
    assert {r.pid for r in ds.train} == set(range(TINY["ids_train"]))  # relabelled by the reader
    q_pids = {r.pid for r in ds.query}
    g_pids = {r.pid for r in ds.gallery}
    assert len(q_pids) == TINY["ids_test"] and 0 not in q_pids
    assert g_pids == q_pids | {0}  # test ids plus distractors; junk dropped
    assert sum(r.pid == 0 for r in ds.gallery) == TINY["distractors"]
    assert len(ds.gallery) == len(gallery_names) - TINY["junk"]
    assert len(ds.train) == len(names["bounding_box_train"]) and len(ds.query) == len(names["query"])
    for records in (ds.train, ds.query, ds.gallery):
        assert {r.camid for r in records} <= set(range(TINY["cameras"]))
    # train and test identities are disjoint (on the original 4-digit pids)
    train_pids = {int(n[:4]) for n in names["bounding_box_train"]}
    assert not train_pids & q_pids

    # query: one image per test id per camera, every id in >= 2 cameras, each with a cross-camera match
    per_pid_cam = Counter((r.pid, r.camid) for r in ds.query)
    assert set(per_pid_cam.values()) == {1}
    cams_of = defaultdict(set)
    for r in ds.query:
        cams_of[r.pid].add(r.camid)
    assert all(len(c) >= 2 for c in cams_of.values())
    gallery_cams = defaultdict(set)
    for r in ds.gallery:
        gallery_cams[r.pid].add(r.camid)
    for r in ds.query:
        assert gallery_cams[r.pid] - {r.camid}, f"query {r.img_path} has no cross-camera match"
    # the gallery holds the other images_per_id_per_cam - 1 images of each (pid, camera) of the query
    g_per_pid_cam = Counter((r.pid, r.camid) for r in ds.gallery if r.pid > 0)
    assert g_per_pid_cam == Counter({k: TINY["images_per_id_per_cam"] - 1 for k in per_pid_cam})

    assert manifest["complete"] is True
    assert manifest["counts"]["query"] == len(names["query"])
    with Image.open(ds.query[0].img_path) as img:
        assert img.size == (64, 128) and img.mode == "RGB"


def test_default_params_are_demo_sized():
    p = SynthParams()
    assert 100 <= p.ids_train <= 150 and p.ids_test == 100 and p.cameras == 6
    assert (p.height_px, p.width_px) == (128, 64)


@pytest.mark.parametrize("bad", [
    dict(cameras=1), dict(cameras=10), dict(images_per_id_per_cam=1), dict(ids_train=0),
    dict(ids_train=9000, ids_test=1000), dict(min_cameras_per_id=1), dict(height_px=16), dict(seed=-1),
    dict(junk=-1), dict(cameras=2.5),
])
def test_params_validation(bad):
    with pytest.raises(ValueError):
        SynthParams(**bad)


# ---------------------------------------------------------------------------------------------------
# Reuse, resume, rewrite


def test_complete_output_is_reused_and_resumed(tmp_path):
    out = tmp_path / "m"
    write_market1501(out, seed=1, **TINY)
    params = SynthParams(seed=1, **TINY)
    assert is_complete(out, params)
    assert not is_complete(out, dataclasses.replace(params, seed=2))
    files = _all_files(out)
    stamp = {k: os.stat(out / k).st_mtime_ns for k in files}

    write_market1501(out, seed=1, **TINY)  # complete, same params: nothing rewritten
    assert {k: os.stat(out / k).st_mtime_ns for k in files} == stamp

    victim = sorted(files)[0]
    os.remove(out / victim)  # an incomplete folder is detected and completed with the same bytes
    assert not is_complete(out, params)
    write_market1501(out, seed=1, **TINY)
    assert is_complete(out, params) and _all_files(out) == files


def test_other_params_rewrite_and_remove_stale_images(tmp_path):
    out = tmp_path / "m"
    write_market1501(out, seed=1, **TINY)
    (out / "query" / ".tmp-killed.part").write_bytes(b"half an image")  # left by a killed run
    calls = []
    manifest = write_market1501(out, seed=2, progress=lambda done, total: calls.append((done, total)), **TINY)
    total = sum(manifest["counts"][s] for s in ("bounding_box_train", "query", "bounding_box_test"))
    assert calls == [(k, total) for k in range(1, total + 1)]
    assert is_complete(out, SynthParams(seed=2, **TINY))
    fresh = tmp_path / "fresh"
    write_market1501(fresh, seed=2, **TINY)
    assert _all_files(out) == _all_files(fresh)  # no image of seed 1 left behind
    assert json.loads((out / "synth.json").read_text()) == manifest
    assert not list(out.glob("*/.tmp-*")) and not list(out.glob(".tmp-*"))


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "real" / "bounding_box_train").mkdir(parents=True)
    (tmp_path / "real" / "bounding_box_train" / "0002_c1s1_000451_03.jpg").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="refusing"):
        write_market1501(tmp_path / "real", **TINY)
    assert (tmp_path / "real" / "bounding_box_train" / "0002_c1s1_000451_03.jpg").read_bytes() == b"not ours"


# ---------------------------------------------------------------------------------------------------
# Renderer: identity consistency, views


def _plain(identity, **changes):
    """The identity with a plain long-sleeved top, trousers, short hair, no bag: easy regions to measure."""
    base = dict(upper_pattern="plain", lower_kind="trousers", bag_kind="none", hair_style="short",
                hat_rgb=None, long_sleeves=True)
    return dataclasses.replace(identity, **{**base, **changes})


def _region_mean(person, y0, y1):
    """Mean RGB of the opaque pixels in the central third of the columns, rows y0..y1 (fractions)."""
    a = np.asarray(person, dtype=np.float64)
    h, w = a.shape[:2]
    box = a[int(y0 * h):int(y1 * h), w // 3: 2 * w // 3]
    opaque = box[..., 3] == 255
    assert opaque.sum() > 20
    return box[..., :3][opaque].mean(axis=0)


def test_render_person_shape_and_transparency():
    identity = sample_identity(derive_rng(0, 1))
    for view in VIEWS:
        person = render_person(identity, view, 128, derive_rng(0, 2))
        assert person.mode == "RGBA" and person.height == 128 and person.width == 71
        alpha = np.asarray(person)[..., 3]
        assert alpha[0, 0] == 0 and alpha[-1, 0] == 0 and alpha[0, -1] == 0  # transparent corners
        assert alpha[-4:].max() == 255 and alpha[:4].max() == 255  # feet near the bottom, head at the top
    with pytest.raises(ValueError, match="view"):
        render_person(identity, "top", 128, derive_rng(0, 2))
    with pytest.raises(ValueError, match="height_px"):
        render_person(identity, "front", 8, derive_rng(0, 2))


def test_identity_keeps_its_clothing_colours_across_views_and_poses():
    rng = derive_rng(0, 99)
    identities = [_plain(sample_identity(rng)) for _ in range(6)]
    for k, identity in enumerate(identities):
        for view in VIEWS:
            person = render_person(identity, view, 128, derive_rng(1, k, VIEWS.index(view)))
            torso = _region_mean(person, 0.24, 0.4)
            legs = _region_mean(person, 0.72, 0.88)
            # independent reference: the identity's own colours, up to the renderer's shading (0.8 .. 1.05)
            for measured, ref in ((torso, identity.upper_rgb), (legs, identity.lower_rgb)):
                ratio = (measured + 4) / (np.asarray(ref, dtype=np.float64) + 4)
                assert np.all((ratio > 0.72) & (ratio < 1.1)), (k, view, measured, ref)
    # two identities with clearly different tops are told apart by the same measurement
    a = _plain(identities[0], upper_rgb=(200, 30, 30))
    b = _plain(identities[0], upper_rgb=(30, 60, 200))
    ta = _region_mean(render_person(a, "front", 128, derive_rng(2)), 0.24, 0.4)
    tb = _region_mean(render_person(b, "front", 128, derive_rng(2)), 0.24, 0.4)
    assert np.linalg.norm(ta - tb) > 150


def test_two_renders_of_one_identity_are_closer_than_two_identities():
    rng = derive_rng(5, 5)
    people = [sample_identity(rng) for _ in range(8)]

    def signature(identity, seed):
        person = render_person(identity, "front", 128, derive_rng(seed))
        return np.concatenate([_region_mean(person, 0.24, 0.4), _region_mean(person, 0.72, 0.88)])

    same = [np.linalg.norm(signature(p, 1) - signature(p, 2)) for p in people]
    diff = [np.linalg.norm(signature(p, 1) - signature(q, 1)) for p, q in zip(people, people[1:])]
    assert max(same) < 25 and np.median(diff) > 3 * max(same)


def test_back_view_shows_backpack_and_hides_front_logo():
    identity = _plain(sample_identity(derive_rng(0, 7)), upper_rgb=(230, 230, 230), lower_rgb=(40, 40, 40),
                      skin_rgb=(200, 170, 150), hair_rgb=(20, 20, 20), shoes_rgb=(20, 20, 20))
    logo = dataclasses.replace(identity, upper_pattern="logo", logo_shape="square", upper_rgb2=(200, 20, 20))
    bag = dataclasses.replace(identity, bag_kind="backpack", bag_rgb=(20, 150, 20))

    def redness(person):
        a = np.asarray(person, dtype=np.int32)
        return int(((a[..., 0] > 150) & (a[..., 1] < 60) & (a[..., 3] == 255)).sum())

    def greenness(person):
        a = np.asarray(person, dtype=np.int32)
        return int(((a[..., 1] > 110) & (a[..., 0] < 60) & (a[..., 3] == 255)).sum())

    assert redness(render_person(logo, "front", 128, derive_rng(1))) > 30
    assert redness(render_person(logo, "back", 128, derive_rng(1))) == 0
    assert greenness(render_person(bag, "back", 128, derive_rng(1))) > 5 * max(
        1, greenness(render_person(bag, "front", 128, derive_rng(1))))


# ---------------------------------------------------------------------------------------------------
# Cameras


def test_cameras_differ_in_scene_and_colour_cast():
    cameras = [sample_camera(derive_rng(0, 2, cam)) for cam in range(1, 7)]
    grey = Image.new("RGB", (64, 128), (128, 128, 128))
    casts = []
    for camera in cameras:
        out = np.asarray(apply_camera(grey, camera, derive_rng(3)), dtype=np.float64).reshape(-1, 3).mean(0)
        casts.append(out / out.mean())
        # the red/blue balance of the output follows the camera's cast
        assert np.sign(out[0] - out[2]) == np.sign(camera.cast_rgb[0] - camera.cast_rgb[2]) or \
            abs(camera.cast_rgb[0] - camera.cast_rgb[2]) < 0.02
    backgrounds = [np.asarray(render_background(c, (128, 64), derive_rng(4)), dtype=np.float64)
                   for c in cameras]
    for i in range(len(cameras)):
        for j in range(i + 1, len(cameras)):
            assert np.abs(backgrounds[i] - backgrounds[j]).mean() > 10, (i, j)
    pairwise = [np.abs(casts[i] - casts[j]).max() for i in range(6) for j in range(i + 1, 6)]
    assert np.median(pairwise) > 0.05


def test_render_crop_is_deterministic_and_sized():
    identity = sample_identity(derive_rng(0, 1))
    camera = sample_camera(derive_rng(0, 2))
    a = render_crop(identity, camera, derive_rng(7), (128, 64))
    render_crop(identity, camera, derive_rng(8), (128, 64))
    b = render_crop(identity, camera, derive_rng(7), (128, 64))
    assert a.size == (64, 128) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    c = render_crop(identity, camera, derive_rng(8), (128, 64))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    big = render_crop(identity, camera, derive_rng(7), (256, 128))
    assert big.size == (128, 256)
    with pytest.raises(ValueError, match="size"):
        render_crop(identity, camera, derive_rng(7), (20, 10))


def test_contact_sheet(tmp_path):
    path = contact_sheet(tmp_path / "docs" / "sheet.png", num_ids=2, cameras=3)
    with Image.open(path) as img:
        assert img.height >= 2 * 128 and img.width >= 6 * 64
    assert not list((tmp_path / "docs").glob(".tmp-*"))
