"""Synthetic tracking scenes in the MOTChallenge layout: the embedded data of the tracking demo (Section 5).

The paper measures the ReID model inside a tracker on real video (Section 5.1: the LAB sequence, a room
about 5 x 6 m seen by four corner cameras at 15 Hz, people entering, walking around and leaving; Section
5.2: MOT16). No such video can be downloaded where this project is developed, so this module films the
procedural persons of :mod:`robustreid.synthetic` walking on a ground plane:

* **street** mode: one camera above a pavement; people enter at an image border and cross, pause, turn
  back, or meet someone coming the other way and go back where they came from (the case where motion
  alone swaps identities and appearance does not).
* **room** mode (the LAB setting of Table 5): 2-4 cameras in the corners of one 6 x 5 m room, each with
  its own look (white balance, exposure, blur, noise, JPEG quality from :func:`synthetic.sample_camera`);
  people enter through a door, walk between random spots, pause, leave through the door and come back
  a while later (a gap of 20-35% of the sequence and at least 5 s: 80-140 frames by default), so
  their re-entry must be decided by ReID. The room also holds a **validation** part: the same room and
  cameras, other people (another random stream), for calibrating the re-entry threshold without
  touching the test people.

The parts, in import order: :mod:`.ground` (pinhole cameras over the ground plane), :mod:`.walkers` (people
and their timed paths), :mod:`.detector` (the simulated detector), :mod:`.film` (rendering and writing
one camera's sequence); this module resolves a scene's parameters, plans its sequences and writes them.

Per camera sequence the writer produces ``seqinfo.ini``, ``img1/000001.jpg``..., ``gt/gt.txt`` (global
person ids, shared by all cameras; ``active`` = visibility >= 0.25; class 1) and ``det/det.txt`` from a
simulated detector. Every random draw comes from a generator derived from ``(seed, role, ...)``
(:func:`synthetic.derive_rng`), so a scene is a pure function of its parameters; ``scene.json``
(:mod:`robustreid.synthetic.manifest`) is written last, and :func:`write_scene` reuses a complete output
with the same parameters.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..synthetic import Camera, Identity, derive_rng, sample_camera, sample_identity
from ..synthetic.manifest import Manifest
from .detector import DetectorNoise, simulate_detections
from .film import MIN_ACTIVE_VISIBILITY, PART_TEST, PART_VALIDATION, composite, write_sequence  # noqa: F401
from .ground import (
    ROOM_DOOR_M,  # noqa: F401  (importable from here, as before the split)
    ROOM_SIZE_M,
    STREET_ZONE_M,
    GroundCamera,
    check_frame_size,
    room_cameras,
    street_camera,
)
from .walkers import Walker, plan_room, plan_street

__all__ = [
    "MODES",
    "SCENE_MANIFEST",
    "STREET_ZONE_M",
    "GroundCamera",
    "Walker",
    "DetectorNoise",
    "street_camera",
    "room_cameras",
    "plan_street",
    "plan_room",
    "composite",
    "simulate_detections",
    "write_sequence",
    "write_scene",
    "is_complete_scene",
    "scene_sequences",
]

MODES = ("street", "room")
SCENE_MANIFEST = "scene.json"
GENERATOR_VERSION = 1  # bump whenever the output of a given set of parameters changes
# "generator" is the id of the module that first wrote scene.json; kept so existing outputs are reused
_MANIFEST = Manifest(SCENE_MANIFEST, "robustreid.tracking.scene", GENERATOR_VERSION)

# Roles: the first key after the seed (104..107 are in .film), kept apart from robustreid.synthetic's (1..8).
_ROLE_IDENTITY, _ROLE_PLAN, _ROLE_CAMERA = 101, 102, 103

_DEFAULTS = {  # per mode: cameras, frames, people, size (height, width)
    "street": {"cameras": 1, "frames": 300, "people": 12, "size": (360, 640)},
    "room": {"cameras": 3, "frames": 400, "people": 6, "size": (360, 640)},
}


def _resolve(mode, cameras, frames, people, seed, size, fps, validation_frames) -> dict:
    """The full, validated parameter set of a scene (the defaults of ``mode`` filled in)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    d = _DEFAULTS[mode]
    params = {"mode": mode, "cameras": d["cameras"] if cameras is None else cameras,
              "frames": d["frames"] if frames is None else frames,
              "people": d["people"] if people is None else people, "seed": seed,
              "size": list(check_frame_size(d["size"] if size is None else size)), "fps": float(fps)}
    for key in ("cameras", "frames", "people", "seed"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        params[key] = int(value)
    if mode == "street" and params["cameras"] != 1:
        raise ValueError(f"a street scene has one camera, got cameras={params['cameras']} (use mode='room')")
    if mode == "room" and not 2 <= params["cameras"] <= 4:
        raise ValueError(f"a room scene has 2 to 4 corner cameras, got cameras={params['cameras']}")
    if params["frames"] < 10 or params["people"] < 1 or params["seed"] < 0:
        raise ValueError(f"frames must be >= 10, people >= 1 and seed >= 0, got frames={params['frames']}, "
                         f"people={params['people']}, seed={params['seed']}")
    if not (math.isfinite(params["fps"]) and 1.0 <= params["fps"] <= 60.0):
        raise ValueError(f"fps must be in 1..60, got {fps!r}")
    if mode == "room":
        vf = params["frames"] // 2 if validation_frames is None else validation_frames
        if isinstance(vf, bool) or not isinstance(vf, (int, np.integer)) or not (vf == 0 or vf >= 10):
            raise ValueError(f"validation_frames must be 0 (none) or an integer >= 10, got {vf!r}")
        params["validation_frames"] = int(vf)
    elif validation_frames:
        raise ValueError("validation_frames is for room scenes (it calibrates the re-entry threshold)")
    return params


class _Sequence(NamedTuple):
    """One camera sequence of a scene, as planned."""

    folder: str  # relative to the scene folder: "cam1", "validation/cam2", ...
    part: int  # PART_TEST or PART_VALIDATION
    camid: int
    frames: int
    camera: GroundCamera
    look: Camera
    walkers: list[Walker]


def _looks(params: dict, geometries: list[GroundCamera]) -> list[Camera]:
    """Each camera's look (:func:`synthetic.sample_camera`), its scene a street or the room's corridor
    walls, with the background's horizon where the camera sees the far wall / facade meet the ground."""
    seed, mode, size = params["seed"], params["mode"], tuple(params["size"])
    looks = []
    for camid, geo in enumerate(geometries, start=1):
        look = sample_camera(derive_rng(seed, _ROLE_CAMERA, camid))
        # the background's wall / facade stands on the ground 15 m down the street, or in the room's
        # corner opposite the camera
        if mode == "street":
            background, far_point = "street", (0.0, 15.0)
        else:
            background, far_point = "corridor", (ROOM_SIZE_M[0] - geo.x_m, ROOM_SIZE_M[1] - geo.z_m)
        far_v = geo.project([[far_point[0], 0.0, far_point[1]]])[0][0, 1]
        looks.append(replace(look, background=background, horizon=float(np.clip(far_v / size[0], 0.1, 0.6))))
    return looks


def _identities(seed: int, part: int) -> Callable[[int], Identity]:
    """The appearance of each person id of one part of a scene."""
    def identity(pid: int) -> Identity:
        return sample_identity(derive_rng(seed, _ROLE_IDENTITY, part, pid))

    return identity


def _plan(params: dict) -> list[_Sequence]:
    """Every sequence of a scene: per part (test, then validation), one per camera."""
    seed, mode, fps, size = params["seed"], params["mode"], params["fps"], tuple(params["size"])
    geometries = [street_camera(size)] if mode == "street" else room_cameras(params["cameras"], size)
    looks = _looks(params, geometries)
    parts = [("", PART_TEST, params["frames"])]
    if mode == "room" and params["validation_frames"]:
        parts.append(("validation", PART_VALIDATION, params["validation_frames"]))
    plan = []
    for folder, part, frames in parts:
        rng = derive_rng(seed, _ROLE_PLAN, part)
        if mode == "street":
            walkers = plan_street(rng, geometries[0], frames=frames, people=params["people"], fps=fps,
                                  identities=_identities(seed, part))
        else:
            walkers = plan_room(rng, frames=frames, people=params["people"], fps=fps,
                                identities=_identities(seed, part))
        for camid, (geo, look) in enumerate(zip(geometries, looks), start=1):
            plan.append(_Sequence(str(Path(folder) / f"cam{camid}") if folder else f"cam{camid}", part, camid,
                                  frames, geo, look, walkers))
    return plan


def is_complete_scene(out, params: dict) -> bool:
    """True if ``out`` holds a finished scene of this generator version written with ``params`` (the
    resolved parameters, as in the manifest's ``params``)."""
    out = Path(out)
    doc = _MANIFEST.read(out)
    if not _MANIFEST.finished(doc, params):
        return False
    for seq in doc.get("sequences", []):
        root = out / seq["path"]
        if not all((root / f).is_file() for f in ("seqinfo.ini", "gt/gt.txt", "det/det.txt")):
            return False
        if sum(1 for p in (root / "img1").glob("*.jpg")) != seq["frames"]:
            return False
    return bool(doc.get("sequences"))


def _remove_previous(out: Path, previous: dict) -> None:
    """Remove only the sequence folders that our previous run wrote (and an emptied validation/)."""
    for seq in previous.get("sequences", []):
        path = (out / seq["path"]).resolve()
        if path.is_dir() and out.resolve() in path.parents:
            shutil.rmtree(path)
    if (out / "validation").is_dir() and not any((out / "validation").iterdir()):
        (out / "validation").rmdir()


def _write_sequences(out: Path, params: dict, plan: list[_Sequence],
                     progress: Callable[[int, int], None] | None) -> list[dict]:
    """Film every planned sequence; return their manifest entries."""
    total, done = sum(s.frames for s in plan), 0
    sequences = []
    for s in plan:
        def seq_progress(k: int, n: int, base: int = done) -> None:
            if progress is not None:
                progress(base + k, total)

        name = f"{params['mode']}-s{params['seed']}-{s.folder.replace('/', '-')}"
        summary = write_sequence(out / s.folder, s.walkers, s.camera, s.look, frames=s.frames,
                                 fps=params["fps"], seed=params["seed"], camid=s.camid, part=s.part,
                                 name=name, progress=seq_progress)
        done += s.frames
        sequences.append({"path": s.folder, "part": "validation" if s.part == PART_VALIDATION else "test",
                          "camid": s.camid, "frames": s.frames, "gt_rows": summary["gt_rows"],
                          "det_rows": summary["det_rows"], "gt_ids": summary["gt_ids"],
                          "camera": asdict(s.camera)})
    return sequences


def write_scene(out, *, mode: str = "street", cameras: int | None = None, frames: int | None = None,
                people: int | None = None, seed: int = 0, size: tuple[int, int] | None = None,
                fps: float = 10.0, validation_frames: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a synthetic tracking scene under ``out`` and return its manifest (``scene.json``).

    ``mode="street"``: one sequence ``out/cam1`` (defaults: 300 frames of 640x360 at 10 fps, 12 people).
    ``mode="room"``: ``out/cam1`` .. ``out/cam{cameras}`` of the same people at the same time steps, plus
    ``out/validation/cam*`` with other people for calibrating the re-entry threshold (defaults: 3
    cameras, 400 frames, 6 people, ``validation_frames = frames // 2``; 0 writes no validation part).
    ``size`` is ``(height, width)``. Person ids in ``gt.txt`` are global (the same person has the same id
    in every camera of a part).

    A complete output with the same parameters is reused as is; an incomplete one, or one with other
    parameters, is rewritten (its sequence folders removed first). A non-empty ``out`` without our
    manifest is refused, so other data is never overwritten. ``progress(done, total)`` counts frames.
    """
    params = _resolve(mode, cameras, frames, people, seed, size, fps, validation_frames)
    out = Path(out)
    previous = _MANIFEST.read(out)
    _MANIFEST.check_writable(out, previous, "a scene")
    if is_complete_scene(out, params):
        return previous
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        _remove_previous(out, previous)
    plan = _plan(params)
    # listed already, so that a rewrite after an interruption knows which folders are ours
    _MANIFEST.write(out, params, complete=False, sequences=[{"path": s.folder} for s in plan])
    sequences = _write_sequences(out, params, plan, progress)
    _MANIFEST.write(out, params, complete=True, sequences=sequences)
    return _MANIFEST.read(out)


def scene_sequences(scene_dir, part: str = "test") -> list[tuple[int, Path]]:
    """``(camid, folder)`` of the sequences of one part (``"test"`` or ``"validation"``) of a scene.

    With a ``scene.json``, its list; otherwise the sub-folders ``cam<k>`` holding a ``seqinfo.ini`` (under
    ``validation/`` for that part), or ``scene_dir`` itself if it is a sequence folder (camid 1).
    """
    root = Path(scene_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such scene folder")
    doc = _MANIFEST.read(root)
    if doc is not None and doc.get("complete"):
        seqs = [(int(s["camid"]), root / s["path"]) for s in doc["sequences"] if s["part"] == part]
    else:
        base = root / "validation" if part == "validation" else root
        seqs = []
        if base.is_dir():
            for d in base.iterdir():
                if d.is_dir() and d.name.startswith("cam") and d.name[3:].isdigit() \
                        and (d / "seqinfo.ini").is_file():
                    seqs.append((int(d.name[3:]), d))
        if not seqs and part == "test" and (root / "seqinfo.ini").is_file():
            seqs = [(1, root)]
    if not seqs:
        raise FileNotFoundError(f"{root}: no {part} sequences (expected cam<k>/seqinfo.ini"
                                f"{' under validation/' if part == 'validation' else ''} or a scene.json)")
    return sorted(seqs)
