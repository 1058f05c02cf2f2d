"""The Market1501 layout: a synthetic dataset written as the real one is laid out on disk.

:func:`write_market1501` writes ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with
Market1501 file names (``0002_c1s1_000451_03.jpg``), including junk images (pid ``-1``) and distractors
(pid ``0000``) in the gallery, and a ``synth.json`` manifest (:mod:`.manifest`) written last so that a
complete output is reused (:func:`is_complete`). :func:`_plan` lists every image as a :class:`_Spec`
(a pure function of :class:`SynthParams`); :func:`_render_spec` draws one from its own random stream
(``(seed, role, pid, cam, index)``), so the files do not depend on the order they are written in.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..atomicfile import TEMP_PREFIX, write_bytes
from .camera import Camera, check_size, sample_camera
from .crop import render_crop, render_stray
from .identity import Identity, sample_identity
from .manifest import Manifest
from .streams import (
    ROLE_CAMERA,
    ROLE_DISTRACTOR,
    ROLE_IDENTITY,
    ROLE_IMAGE,
    ROLE_JUNK,
    ROLE_SPLIT,
    ROLE_STRAY_IDENTITY,
    ROLE_TRACK,
    derive_rng,
)

__all__ = ["SynthParams", "write_market1501", "is_complete"]

GENERATOR_VERSION = 1  # bump whenever the pixels change, so that older outputs are not reused
MANIFEST_NAME = "synth.json"
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
# "generator" is the id of the module that first wrote synth.json; kept so existing outputs are reused
_MANIFEST = Manifest(MANIFEST_NAME, "robustreid.synthetic", GENERATOR_VERSION)


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a synthetic dataset; equal params give identical files.

    Defaults are sized for a demo that trains in about five minutes on two CPU cores: 120 train ids seen
    by 2-6 of 6 cameras (4 on average, as in Market1501 where each id is seen by >= 2 cameras) with 3
    images per camera give ~1.4k train images (Market1501: 12.9k for 751 ids), enough PK batches
    (P=16, K=4) per epoch for the loss to move; 100 test ids give ~400 queries (one per id per camera)
    and ~800 gallery images, plus 100 distractors and 60 junk images (Market1501's gallery is ~14%
    distractors and ~19% junk). Writing it takes seconds.
    """

    ids_train: int = 120
    ids_test: int = 100
    cameras: int = 6
    seed: int = 0
    images_per_id_per_cam: int = 3
    min_cameras_per_id: int = 2
    distractors: int = 100
    junk: int = 60
    height_px: int = 128
    width_px: int = 64

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"{f.name} must be an integer, got {v!r}")
            object.__setattr__(self, f.name, int(v))  # plain ints: the params go to synth.json
        if self.ids_train < 1 or self.ids_test < 1:
            raise ValueError(f"ids_train and ids_test must be >= 1, got {self.ids_train} and {self.ids_test}")
        if self.ids_train + self.ids_test > 9999:
            raise ValueError(f"ids_train + ids_test must fit 4-digit pids (<= 9999), "
                             f"got {self.ids_train + self.ids_test}")
        if not 2 <= self.cameras <= 9:
            raise ValueError(f"cameras must be in 2..9 (Market1501 names use one digit, c1..c9), "
                             f"got {self.cameras}")
        if not 2 <= self.min_cameras_per_id <= self.cameras:
            raise ValueError(f"min_cameras_per_id must be in 2..cameras={self.cameras} so every query has a "
                             f"cross-camera match, got {self.min_cameras_per_id}")
        if not 2 <= self.images_per_id_per_cam <= 50:
            raise ValueError(f"images_per_id_per_cam must be in 2..50 (one goes to query, the rest to the "
                             f"gallery), got {self.images_per_id_per_cam}")
        if not (0 <= self.distractors <= 5000 and 0 <= self.junk <= 5000):
            raise ValueError(f"distractors and junk must be in 0..5000, "
                             f"got {self.distractors} and {self.junk}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_size((self.height_px, self.width_px))


@dataclass(frozen=True)
class _Spec:
    """One planned image: where it goes, its Market1501 name, and what keys its random stream."""

    split: str
    name: str
    kind: str  # "person" | "distractor" | "junk"
    pid: int
    cam: int  # 1-based, as in the file name
    index: int


def _split_pids(params: SynthParams) -> tuple[list[int], list[int]]:
    """Train and test pids, interleaved in 1..ids_train+ids_test as Market1501's are."""
    perm = derive_rng(params.seed, ROLE_SPLIT).permutation(params.ids_train + params.ids_test) + 1
    return sorted(int(p) for p in perm[:params.ids_train]), sorted(int(p) for p in perm[params.ids_train:])


def _person_specs(params: SynthParams, pid: int, is_test: bool) -> list[_Spec]:
    """The images of one identity: the cameras that see it, a sequence and frames per camera, and the
    split (test ids: the first image per camera is the query, the others go to the gallery)."""
    rng = derive_rng(params.seed, ROLE_TRACK, pid)
    n_cams = int(rng.integers(params.min_cameras_per_id, params.cameras + 1))
    cams = sorted(int(c) + 1 for c in rng.choice(params.cameras, n_cams, replace=False))
    specs = []
    for cam in cams:
        seq = int(rng.integers(1, 7))
        frame0 = int(rng.integers(0, 150_000))
        for index in range(params.images_per_id_per_cam):
            bbox = int(rng.integers(1, 9))
            name = f"{pid:04d}_c{cam}s{seq}_{frame0 + 12 * index:06d}_{bbox:02d}.jpg"
            if is_test:
                split = "query" if index == 0 else "bounding_box_test"
            else:
                split = "bounding_box_train"
            specs.append(_Spec(split, name, "person", pid, cam, index))
    return specs


def _stray_specs(params: SynthParams) -> list[_Spec]:
    """The gallery's distractors (pid ``0000``) and junk images (pid ``-1``)."""
    specs = []
    for kind, role, count, prefix in (("distractor", ROLE_DISTRACTOR, params.distractors, "0000"),
                                      ("junk", ROLE_JUNK, params.junk, "-1")):
        for k in range(count):
            rng = derive_rng(params.seed, role, k)
            cam = int(rng.integers(1, params.cameras + 1))
            seq, bbox = int(rng.integers(1, 7)), int(rng.integers(1, 9))
            name = f"{prefix}_c{cam}s{seq}_{200_000 + 100 * k:06d}_{bbox:02d}.jpg"
            specs.append(_Spec("bounding_box_test", name, kind, 0 if kind == "distractor" else -1, cam, k))
    return specs


def _plan(params: SynthParams) -> list[_Spec]:
    """Every image of the dataset, in a fixed order; pure function of ``params``."""
    train_pids, test_pids = _split_pids(params)
    specs = []
    for split_pids, is_test in ((train_pids, False), (test_pids, True)):
        for pid in split_pids:
            specs.extend(_person_specs(params, pid, is_test))
    return specs + _stray_specs(params)


@lru_cache(maxsize=4096)
def identity_of(seed: int, pid: int) -> Identity:
    """The appearance of ``pid`` in every dataset written with ``seed``."""
    return sample_identity(derive_rng(seed, ROLE_IDENTITY, pid))


@lru_cache(maxsize=64)
def camera_of(seed: int, cam: int) -> Camera:
    """Camera ``cam`` (1-based) of every dataset written with ``seed``."""
    return sample_camera(derive_rng(seed, ROLE_CAMERA, cam))


def _render_spec(params: SynthParams, spec: _Spec) -> bytes:
    """The JPEG bytes of one planned image."""
    size = (params.height_px, params.width_px)
    camera = camera_of(params.seed, spec.cam)
    if spec.kind == "person":
        rng = derive_rng(params.seed, ROLE_IMAGE, spec.pid, spec.cam, spec.index)
        img = render_crop(identity_of(params.seed, spec.pid), camera, rng, size)
    else:
        role = ROLE_DISTRACTOR if spec.kind == "distractor" else ROLE_JUNK
        rng = derive_rng(params.seed, ROLE_IMAGE, role, spec.index)
        stray = sample_identity(derive_rng(params.seed, ROLE_STRAY_IDENTITY, role, spec.index))
        img = render_stray(camera, rng, size, stray)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(camera.jpeg_quality[0], camera.jpeg_quality[1] + 1)))
    return buf.getvalue()


def is_complete(out: str | os.PathLike, params: SynthParams) -> bool:
    """True if ``out`` holds a finished dataset written by this generator version with ``params``."""
    out = Path(out)
    manifest = _MANIFEST.read(out)
    if not _MANIFEST.finished(manifest, asdict(params)):
        return False
    counts = manifest.get("counts", {})
    for split in SPLIT_DIRS:
        d = out / split
        if not d.is_dir() or sum(1 for p in d.iterdir() if p.suffix == ".jpg") != counts.get(split):
            return False
    return True


def _write_images(out: Path, params: SynthParams, resume: bool,
                  progress: Callable[[int, int], None] | None) -> dict[str, set[str]]:
    """Write every planned image (on resume, keep those already written); return the names per split."""
    specs = _plan(params)
    wanted = {split: set() for split in SPLIT_DIRS}
    for done, spec in enumerate(specs, start=1):
        wanted[spec.split].add(spec.name)
        path = out / spec.split / spec.name
        if not (resume and path.is_file()):  # else written atomically by an interrupted run: same bytes
            write_bytes(path, _render_spec(params, spec))
        if progress is not None:
            progress(done, len(specs))
    return wanted


def _remove_stale(out: Path, wanted: dict[str, set[str]]) -> None:
    """Remove images of a previous run with other params, and temp files of a killed one."""
    for split in SPLIT_DIRS:
        for p in (out / split).iterdir():
            if (p.suffix == ".jpg" and p.name not in wanted[split]) or p.name.startswith(TEMP_PREFIX):
                p.unlink()


def write_market1501(out: str | os.PathLike, *, ids_train: int = 120, ids_test: int = 100,
                     cameras: int = 6, seed: int = 0, images_per_id_per_cam: int = 3,
                     min_cameras_per_id: int = 2, distractors: int = 100, junk: int = 60,
                     height_px: int = 128, width_px: int = 64,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a synthetic dataset in the Market1501 layout under ``out`` and return its manifest.

    ``out/bounding_box_train``: every image of the train ids. ``out/query``: one image per test id per
    camera; ``out/bounding_box_test``: the other images of the test ids, plus distractors (pid ``0000``)
    and junk (``-1_...``). Names follow Market1501: ``{pid:04d}_c{cam}s{seq}_{frame:06d}_{bbox:02d}.jpg``
    with 1-based cameras. Each test id is seen by >= ``min_cameras_per_id`` cameras, so every query has a
    cross-camera match. See :class:`SynthParams` for the defaults.

    Files are written atomically; ``synth.json`` is written first as incomplete and last as complete.
    A complete output with the same params is reused as is; an interrupted one with the same params is
    resumed; one with other params is rewritten (stale images removed). A non-empty ``out`` without our
    manifest is refused, so a real dataset is never overwritten. ``progress(done, total)``, if given, is
    called after each image.
    """
    params = SynthParams(ids_train=ids_train, ids_test=ids_test, cameras=cameras, seed=seed,
                         images_per_id_per_cam=images_per_id_per_cam, min_cameras_per_id=min_cameras_per_id,
                         distractors=distractors, junk=junk, height_px=height_px, width_px=width_px)
    out = Path(out)
    previous = _MANIFEST.read(out)
    _MANIFEST.check_writable(out, previous, "a synthetic dataset")
    if is_complete(out, params):
        return previous
    resume = _MANIFEST.same_run(previous, asdict(params))
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLIT_DIRS:
        (out / split).mkdir(exist_ok=True)
    _MANIFEST.write(out, asdict(params), complete=False, counts={})
    wanted = _write_images(out, params, resume, progress)
    _remove_stale(out, wanted)
    counts = {split: len(names) for split, names in wanted.items()}
    counts.update({"distractors": params.distractors, "junk": params.junk,
                   "ids_train": params.ids_train, "ids_test": params.ids_test})
    _MANIFEST.write(out, asdict(params), complete=True, counts=counts)
    return _MANIFEST.read(out)
