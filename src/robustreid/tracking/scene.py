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

Geometry: each camera is a pinhole (:class:`GroundCamera`) above the ground plane ``y = 0`` (metres).
A person is a :class:`Walker` following timed waypoints; at each frame their feet and the top of their
head are projected, :func:`synthetic.render_person` draws them that tall, in the view given by their
walking direction relative to the camera (front, back or the side they face in the image), with a gait
pose that cycles with the distance walked and a small vertical bob. Persons are composited far to near
by the image row of their feet, so nearer people occlude farther ones (:func:`composite`); the visible
fraction of each silhouette is the ``visibility`` of ``gt.txt``.

Per camera sequence the writer produces ``seqinfo.ini``, ``img1/000001.jpg``..., ``gt/gt.txt`` (global
person ids, shared by all cameras; ``active`` = visibility >= 0.25; class 1) and ``det/det.txt`` from a
simulated detector (:func:`simulate_detections`: misses that grow with occlusion, box jitter, false
positives, scores). Every random draw comes from a generator derived from ``(seed, role, ...)``
(:func:`synthetic.derive_rng`), so a scene is a pure function of its parameters; ``scene.json`` is written
last, and :func:`write_scene` reuses a complete output with the same parameters.

Cost: the camera look (:func:`synthetic.apply_camera`) is computed once for the static background and
per person on the person's own patch (with the frame's light at that place), not on every full frame.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomicfile import write_bytes
from ..synthetic import _check_size as _check_crop_size
from ..synthetic import (
    Camera,
    Identity,
    apply_camera,
    derive_rng,
    render_background,
    render_person,
    sample_camera,
    sample_identity,
)
from .motio import SeqInfo, write_det, write_gt, write_seqinfo

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
MIN_ACTIVE_VISIBILITY = 0.25  # gt rows less visible than this are written with active = 0 (ignored)
ROOM_SIZE_M = (6.0, 5.0)  # (x, z) extent of the room, LAB's "about 5 x 6 metres"
ROOM_DOOR_M = (3.0, 0.3)  # where people enter and leave: the middle of the z = 0 wall
STREET_ZONE_M = (4.2, 9.5)  # depths (z) the street's people walk at: 80-190 px tall at 640x360
_ALPHA_OPAQUE = 128  # silhouette pixels: alpha at least this
_STEP_M = 0.7  # a walking step; a gait cycle (4 poses) is two steps

# Roles: the first key after the seed, kept apart from synthetic.py's (1..8).
_ROLE_IDENTITY, _ROLE_PLAN, _ROLE_CAMERA, _ROLE_BACKGROUND = 101, 102, 103, 104
_ROLE_LOOK, _ROLE_POSE, _ROLE_DETECT = 105, 106, 107
_PART_TEST, _PART_VALIDATION = 0, 1

_DEFAULTS = {  # per mode: cameras, frames, people, size (height, width)
    "street": {"cameras": 1, "frames": 300, "people": 12, "size": (360, 640)},
    "room": {"cameras": 3, "frames": 400, "people": 6, "size": (360, 640)},
}


# ------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class GroundCamera:
    """A pinhole camera at ``(x_m, height_m, z_m)`` over the ground plane ``y = 0``.

    ``yaw_rad`` turns the optical axis on the ground from ``+z`` towards ``+x``; ``pitch_rad`` tilts it
    down. Image ``u`` grows to the camera's right, ``v`` downwards; the principal point is the centre.
    """

    x_m: float
    z_m: float
    height_m: float
    yaw_rad: float
    pitch_rad: float
    focal_px: float
    width_px: int
    height_px: int

    def __post_init__(self):
        if not (self.height_m > 0 and self.focal_px > 0):
            raise ValueError(f"GroundCamera: height_m and focal_px must be > 0, got {self.height_m} and "
                             f"{self.focal_px}")
        if self.width_px < 16 or self.height_px < 16:
            raise ValueError(f"GroundCamera: image must be at least 16x16 pixels, got "
                             f"{self.width_px}x{self.height_px}")

    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sy, cy = math.sin(self.yaw_rad), math.cos(self.yaw_rad)
        sp, cp = math.sin(self.pitch_rad), math.cos(self.pitch_rad)
        ahead, up = np.array([sy, 0.0, cy]), np.array([0.0, 1.0, 0.0])
        right = np.array([-cy, 0.0, sy])  # ahead x up: a right-handed camera
        return right, sp * ahead + cp * up, cp * ahead - sp * up  # right, camera up, optical axis

    def project(self, points_xyz) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> ``(uv (N, 2) pixels, depth (N,) metres along the optical axis)``."""
        p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        right, cam_up, axis = self._axes()
        d = p - np.array([self.x_m, self.height_m, self.z_m])
        depth = d @ axis
        safe = np.where(depth > 1e-6, depth, 1e-6)
        u = self.width_px / 2 + self.focal_px * (d @ right) / safe
        v = self.height_px / 2 - self.focal_px * (d @ cam_up) / safe
        return np.stack([u, v], axis=1), depth


def street_camera(size: tuple[int, int] = (360, 640)) -> GroundCamera:
    """The street camera: 3 m up, looking along ``+z``, the ground 4 m ahead on the bottom row. In the
    walking zone (:data:`STREET_ZONE_M`) people of 1.6-1.9 m are 22-53% of the image height tall
    (80-190 px at 640x360)."""
    h, w = _check_size(size)
    focal = 0.78 * w
    pitch = math.atan(3.0 / 4.0) - math.atan((h / 2) / focal)
    return GroundCamera(0.0, 0.0, 3.0, 0.0, pitch, focal, w, h)


def room_cameras(n: int, size: tuple[int, int] = (360, 640)) -> list[GroundCamera]:
    """``n`` (1-4) cameras 2.8 m up in the corners of the room, each aimed at its centre (as in LAB)."""
    if not 1 <= n <= 4:
        raise ValueError(f"a room has 1 to 4 corner cameras, got {n}")
    h, w = _check_size(size)
    sx, sz = ROOM_SIZE_M
    focal = (w / 2) / math.tan(math.radians(50))  # a 100 degree field of view covers the room's corner
    cams = []
    for x, z in ((0.0, 0.0), (sx, sz), (sx, 0.0), (0.0, sz))[:n]:  # opposite corners first
        dx, dz = sx / 2 - x, sz / 2 - z
        # the centre of the floor lands at 65% of the image height
        pitch = math.atan2(2.8, math.hypot(dx, dz)) - math.atan((0.15 * h) / focal)
        cams.append(GroundCamera(x, z, 2.8, math.atan2(dx, dz), pitch, focal, w, h))
    return cams


def _check_size(size) -> tuple[int, int]:
    return _check_crop_size(size, minimum=(48, 64))  # a frame: at least 48 x 64


# ------------------------------------------------------------------------------------------ walkers
@dataclass(frozen=True)
class Walker:
    """One person: appearance, stature and visits, each visit a path of timed waypoints.

    ``visits[k]`` is a tuple of ``(frame, x_m, z_m)`` with strictly increasing (possibly fractional)
    frames; the person is in the scene from the first to the last waypoint of each visit and moves in a
    straight line at constant speed between waypoints (two equal positions: a pause).
    """

    pid: int
    identity: Identity
    stature_m: float
    visits: tuple[tuple[tuple[float, float, float], ...], ...]

    def __post_init__(self):
        if self.pid < 1:
            raise ValueError(f"Walker.pid must be >= 1 (MOTChallenge ids), got {self.pid}")
        if not 0.5 <= self.stature_m <= 2.5:
            raise ValueError(f"Walker.stature_m must be in 0.5..2.5 metres, got {self.stature_m}")
        visits = tuple(tuple(tuple(float(v) for v in wp) for wp in visit) for visit in self.visits)
        last_end = -math.inf
        for k, visit in enumerate(visits):
            if len(visit) < 2 or any(len(wp) != 3 for wp in visit):
                raise ValueError(f"Walker {self.pid}: visit {k} needs >= 2 waypoints (frame, x_m, z_m)")
            times = [wp[0] for wp in visit]
            if any(b <= a for a, b in zip(times, times[1:])) or times[0] <= last_end:
                raise ValueError(f"Walker {self.pid}: waypoint frames must increase strictly within and "
                                 f"across visits, got visit {k} at {times}")
            last_end = times[-1]
        object.__setattr__(self, "visits", visits)

    def state(self, frame: float) -> tuple[float, float, float, float, bool, float] | None:
        """``(x_m, z_m, heading_x, heading_z, moving, metres walked in this visit)`` or None if absent."""
        for visit in self.visits:
            if not visit[0][0] <= frame <= visit[-1][0]:
                continue
            pts = np.array(visit)
            seg = np.diff(pts[:, 1:], axis=0)
            seg_len = np.hypot(seg[:, 0], seg[:, 1])
            k = min(int(np.searchsorted(pts[:, 0], frame, side="right")) - 1, len(visit) - 2)
            f = (frame - pts[k, 0]) / (pts[k + 1, 0] - pts[k, 0])
            x, z = pts[k, 1:] + f * seg[k]
            moving = seg_len[k] > 1e-9
            # heading: the current leg, or while paused the last leg walked (the next one at the start)
            walked = np.flatnonzero(seg_len > 1e-9)
            if not len(walked):
                hx, hz = 0.0, -1.0
            else:
                j = k if moving else (walked[walked < k][-1] if np.any(walked < k) else walked[0])
                hx, hz = seg[j] / seg_len[j]
            walked_m = float(seg_len[:k].sum() + f * seg_len[k])
            return float(x), float(z), float(hx), float(hz), bool(moving), walked_m
        return None


def _path(t0: float, points: Sequence[tuple[float, float]], speed: float, fps: float,
          pauses: dict[int, float] | None = None) -> list[tuple[float, float, float]]:
    """Timed waypoints walking through ``points`` at ``speed`` m/s from frame ``t0``; ``pauses[i]`` frames
    spent standing at point ``i``."""
    pauses = pauses or {}
    out, t = [], t0
    for i, (x, z) in enumerate(points):
        if i:
            px, pz = points[i - 1]
            t += max(math.hypot(x - px, z - pz) / speed * fps, 1.0)
        out.append((t, x, z))
        if pauses.get(i, 0) >= 1:
            t += pauses[i]
            out.append((t, x, z))
    return out


def plan_street(rng: np.random.Generator, camera: GroundCamera, *, frames: int, people: int, fps: float,
                identities: Callable[[int], Identity]) -> list[Walker]:
    """Walkers for the street camera: ``people`` persons whose arrivals are spread over ``frames``.

    Each crosses the view (straight, or pausing half-way), turns back after a few steps, or meets a
    person coming the other way at nearly the same depth (the farther one hidden behind the nearer),
    stands a moment, and either goes back (60%) or walks on. Paths start and end outside the view.
    """
    z_near, z_far = STREET_ZONE_M
    half_fov = (camera.width_px / 2) / camera.focal_px

    def edge(z: float, side: float) -> float:  # just outside the image border at depth z
        return side * (z * half_fov + 0.8)

    walkers: list[Walker] = []
    crossing_frames = 2 * edge(8.0, 1.0) / 1.3 * fps
    slot = frames / max(people, 1)
    pid = 1
    while pid <= people:
        t0 = (pid - 1 + rng.uniform(0, 1)) * slot - 0.3 * crossing_frames
        speed = rng.uniform(1.1, 1.6)
        side = 1.0 if rng.random() < 0.5 else -1.0
        kind = rng.choice(["cross", "pause", "return", "meet"], p=[0.4, 0.15, 0.15, 0.3])
        if kind == "meet" and pid < people:
            zm, xm = rng.uniform(z_near + 0.5, z_far - 1.5), rng.uniform(-1.5, 1.5)
            pause = rng.uniform(8, 25)
            t_arrive = t0 + abs(xm - edge(zm, side)) / 1.3 * fps  # both reach the meeting point then
            for k, (s, dz) in enumerate(((side, 0.0), (-side, rng.uniform(0.3, 0.6)))):
                z0 = zm + dz + rng.uniform(-0.8, 0.8)
                start = (edge(z0, s), z0)
                meet = (xm + s * 0.1, zm + dz)  # face to face, the second person just behind the first
                back = rng.random() < 0.6
                z1 = np.clip(zm + dz + rng.uniform(-1.5, 1.5), z_near, z_far)
                end = (edge(z1, s if back else -s), z1)
                t_start = t_arrive - math.hypot(meet[0] - start[0], meet[1] - start[1]) / speed * fps
                walkers.append(_walker(pid + k, identities, rng,
                                       _path(t_start, [start, meet, end], speed, fps, {1: pause})))
            pid += 2
            continue
        z0, z1 = rng.uniform(z_near, z_far, 2)
        start = (edge(z0, side), z0)
        if kind == "return":
            zt = np.clip(z0 + rng.uniform(-1.0, 1.0), z_near, z_far)
            turn = (side * rng.uniform(-0.3, 0.6) * zt * half_fov, zt)
            points, pauses = [start, turn, (edge(z1, side), z1)], {1: rng.uniform(0, 8)}
        else:
            zm = np.clip((z0 + z1) / 2 + rng.uniform(-1.0, 1.0), z_near, z_far)
            mid = (rng.uniform(-0.4, 0.4) * zm * half_fov, zm)
            points = [start, mid, (edge(z1, -side), z1)]
            pauses = {1: rng.uniform(10, 30)} if kind == "pause" else {}
        walkers.append(_walker(pid, identities, rng, _path(t0, points, speed, fps, pauses)))
        pid += 1
    return walkers


def plan_room(rng: np.random.Generator, *, frames: int, people: int, fps: float,
              identities: Callable[[int], Identity]) -> list[Walker]:
    """Walkers for the room: each person enters through the door, walks between random spots (pausing
    at some), leaves through the door, and comes back after 20-35% of the sequence (at least 5 s), up to
    three visits.

    First entries are spread over the first 30% of the sequence in person order (person 1 first, so at
    least one person leaves and comes back whenever the sequence is long enough for two visits); a
    visit lasts about 15-30% of the sequence.
    """
    sx, sz = ROOM_SIZE_M
    margin = 0.6
    door = ROOM_DOOR_M
    walkers = []
    for pid in range(1, people + 1):
        speed = rng.uniform(0.8, 1.3)
        t = (pid - 1 + rng.uniform(0.1, 0.9)) / people * 0.3 * frames  # first entries one by one
        visits = []
        while t < 0.9 * frames and len(visits) < 3:
            budget = rng.uniform(0.15, 0.3) * frames
            points, pauses, used = [door], {}, 0.0
            while True:
                spot = (rng.uniform(margin, sx - margin), rng.uniform(margin + 0.5, sz - margin))
                leg = math.hypot(spot[0] - points[-1][0], spot[1] - points[-1][1]) / speed * fps
                back = math.hypot(spot[0] - door[0], spot[1] - door[1]) / speed * fps
                if len(points) > 1 and used + leg + back > budget:
                    break
                points.append(spot)
                used += leg
                if rng.random() < 0.5:
                    pauses[len(points) - 1] = rng.uniform(0.0, 0.25) * budget
                    used += pauses[len(points) - 1]
            points.append(door)
            visit = _path(t, points, speed, fps, pauses)
            visits.append(visit)
            t = visit[-1][0] + max(rng.uniform(0.2, 0.35) * frames, 5.0 * fps)
        walkers.append(_walker(pid, identities, rng, *visits))
    return walkers


def _walker(pid: int, identities: Callable[[int], Identity], rng: np.random.Generator,
            *visits: list[tuple[float, float, float]]) -> Walker:
    return Walker(pid, identities(pid), float(rng.uniform(1.6, 1.9)), tuple(tuple(v) for v in visits))


# ------------------------------------------------------------------------------------- rendering
def composite(background: Image.Image, sprites: Sequence[tuple[Image.Image, tuple[int, int]]]
              ) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Paste RGBA ``sprites`` given as ``(image, (x_left, y_top))`` far to near onto ``background``.

    Far to near is by the row of the sprite's bottom (its feet: nearer people stand lower in the image),
    ties by position in ``sprites``. Returns ``(frame RGB, owner (H, W) int: index of the sprite whose
    silhouette (alpha >= 128) shows at each pixel or -1, visible (N,): fraction of each silhouette shown,
    counting pixels outside the frame as hidden)``.
    """
    frame = background.convert("RGB").copy()
    width, height = frame.size
    owner = np.full((height, width), -1, dtype=np.int32)
    totals = np.zeros(len(sprites), dtype=np.int64)
    order = sorted(range(len(sprites)), key=lambda i: (sprites[i][1][1] + sprites[i][0].size[1], i))
    for i in order:
        img, (x, y) = sprites[i]
        if img.mode != "RGBA":
            raise ValueError(f"sprites[{i}]: expected an RGBA image, got mode {img.mode}")
        x, y = int(x), int(y)
        solid = np.asarray(img.getchannel("A")) >= _ALPHA_OPAQUE
        totals[i] = int(solid.sum())
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + img.size[0], width), min(y + img.size[1], height)
        if x1 <= x0 or y1 <= y0:
            continue
        frame.paste(img, (x, y), img)
        region = owner[y0:y1, x0:x1]
        region[solid[y0 - y:y1 - y, x0 - x:x1 - x]] = i
    shown = np.bincount(owner[owner >= 0], minlength=len(sprites))[:len(sprites)]
    visible = np.divide(shown, totals, out=np.zeros(len(sprites)), where=totals > 0)
    return frame, owner, visible


@dataclass(frozen=True)
class _Placed:
    pid: int
    sprite: Image.Image  # RGBA, feet on the bottom row
    x: int  # top-left corner in the frame
    y: int


def _place_walkers(walkers: Sequence[Walker], camera: GroundCamera, frame: int, seed: int,
                   part: int) -> list[_Placed]:
    """Every walker present at ``frame`` and in front of ``camera``, drawn at its projected size."""
    placed = []
    for w in walkers:
        state = w.state(frame)
        if state is None:
            continue
        x, z, hx, hz, moving, walked = state
        (feet, head, ahead), depth = camera.project(
            [[x, 0.0, z], [x, w.stature_m, z], [x + 0.2 * hx, 0.0, z + 0.2 * hz]])
        if depth.min() < 0.3:
            continue
        height = int(round(feet[1] - head[1]))
        if height < 16 or height > 4 * camera.height_px:
            continue
        # view: facing the camera, facing away, or the side the person faces in the image
        to_cam = np.array([camera.x_m - x, camera.z_m - z])
        facing = (hx * to_cam[0] + hz * to_cam[1]) / max(np.linalg.norm(to_cam), 1e-9)
        if facing > 0.64:
            view = "front"
        elif facing < -0.64:
            view = "back"
        else:
            view = "right" if ahead[0] >= feet[0] else "left"
        phase = int(walked / (_STEP_M / 2)) % 4 if moving else 0
        sprite = render_person(w.identity, view, height, derive_rng(seed, _ROLE_POSE, part, w.pid, phase))
        bob = -round(0.012 * height * abs(math.sin(math.pi * walked / _STEP_M))) if moving else 0
        placed.append(_Placed(w.pid, sprite, int(round(feet[0] - sprite.size[0] / 2)),
                              int(round(feet[1] + bob - height))))
    return placed


def _scene_background(look: Camera, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The camera's scene (:func:`synthetic.render_background`) with the wall / facade base at row
    ``look.horizon * height``. The scene is drawn for a person crop, where it spans the crop's height;
    here its part above the horizon keeps that scale (70% of a window ``horizon / 0.7`` rows tall) and
    its ground is stretched down to the bottom row, so walls and far passers-by stay small."""
    h, w = size
    top = int(np.clip(round(look.horizon * h), 8, h - 8))
    window_h = max(32, round(top / 0.7))
    pano = render_background(replace(look, horizon=top / window_h), (window_h, w), rng)
    out = Image.new("RGB", (w, h))
    out.paste(pano.crop((0, 0, w, top)), (0, 0))
    out.paste(pano.crop((0, top, w, window_h)).resize((w, h - top), Image.BILINEAR), (0, top))
    return out


def _look_sprite(p: _Placed, raw_background: Image.Image, look: Camera, look_seed: np.random.SeedSequence
                 ) -> Image.Image:
    """The sprite as the camera sees it: :func:`synthetic.apply_camera` on its patch of the raw scene,
    with the light of the frame at that place (the camera's gradient evaluated at the patch centre)."""
    width, height = raw_background.size
    sw, sh = p.sprite.size
    x0, y0 = max(p.x, 0), max(p.y, 0)
    x1, y1 = min(p.x + sw, width), min(p.y + sh, height)
    if x1 <= x0 or y1 <= y0:
        return p.sprite
    patch = raw_background.crop((x0, y0, x1, y1))
    patch.paste(p.sprite, (p.x - x0, p.y - y0), p.sprite)
    cx, cy = (x0 + x1) / 2 / width - 0.5, (y0 + y1) / 2 / height - 0.5
    angle = look.light_angle_rad
    light = 1.0 + look.light_gradient * (math.cos(angle) * cx + math.sin(angle) * cy)
    seen = apply_camera(patch, replace(look, light_gradient=0.0, gain=look.gain * light),
                        np.random.default_rng(look_seed))
    out = p.sprite.copy()
    out.paste(seen, (x0 - p.x, y0 - p.y))
    out.putalpha(p.sprite.getchannel("A"))
    return out


# ---------------------------------------------------------------------------------------- detector
@dataclass(frozen=True)
class DetectorNoise:
    """The simulated detector. A person is detected with probability ``1 - miss_rate`` times a ramp from
    0 to 1 as their visibility goes over ``visibility_range``; each box edge moves by a normal error of
    ``jitter`` times the box width (x) or height (y); ``false_positives_per_frame`` (Poisson mean) boxes
    of person shape land anywhere; scores are ``0.55 + 0.4 * visibility`` plus noise for true detections,
    uniform in 0.3..0.75 for false ones."""

    miss_rate: float = 0.05
    visibility_range: tuple[float, float] = (0.2, 0.5)
    jitter: float = 0.04
    false_positives_per_frame: float = 0.3
    score_noise: float = 0.08

    def __post_init__(self):
        lo, hi = self.visibility_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError("DetectorNoise.visibility_range must be 0 <= lo < hi <= 1, got "
                             f"{self.visibility_range}")
        for name in ("miss_rate", "jitter", "false_positives_per_frame", "score_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "miss_rate" and value > 1):
                raise ValueError(f"DetectorNoise.{name} must be a finite number >= 0 (miss_rate <= 1), "
                                 f"got {value!r}")


def simulate_detections(gt_boxes_xyxy, visibility, rng: np.random.Generator, noise: DetectorNoise,
                        size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Detections of one frame from its ground truth: ``(boxes_xyxy (N, 4), scores (N,))``.

    True detections first (in gt order), then false positives; every box is clipped to the ``size =
    (height, width)`` frame, and boxes smaller than 2 x 4 pixels after clipping are dropped. The same
    number of random draws is made whatever is detected, so one frame's noise never shifts another's.
    """
    height, width = size
    gt = np.asarray(gt_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    vis = np.asarray(visibility, dtype=np.float64).reshape(-1)
    if len(vis) != len(gt):
        raise ValueError(f"visibility: expected {len(gt)} values (one per gt box), got {len(vis)}")
    lo, hi = noise.visibility_range
    p_detect = (1.0 - noise.miss_rate) * np.clip((vis - lo) / (hi - lo), 0.0, 1.0)
    detected = rng.random(len(gt)) < p_detect
    wh = np.column_stack([gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]])
    boxes = gt + rng.normal(0.0, 1.0, (len(gt), 4)) * noise.jitter * np.tile(wh, 2)
    scores = 0.55 + 0.4 * vis + rng.normal(0.0, noise.score_noise, len(gt))
    n_fp = int(rng.poisson(noise.false_positives_per_frame))
    fp_h = rng.uniform(0.25, 0.6, n_fp) * height
    fp_x = rng.uniform(0.0, 1.0, n_fp) * (width - 0.4 * fp_h)
    fp_bottom = rng.uniform(0.4, 1.0, n_fp) * height
    fp = np.column_stack([fp_x, fp_bottom - fp_h, fp_x + 0.4 * fp_h, fp_bottom])
    fp_scores = rng.uniform(0.3, 0.75, n_fp)
    boxes = np.concatenate([boxes[detected], fp])
    scores = np.concatenate([scores[detected], fp_scores])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 4)
    return boxes[keep], np.clip(scores[keep], 0.01, 0.99)


# ------------------------------------------------------------------------------------------ writer
def write_sequence(out, walkers: Sequence[Walker], camera: GroundCamera, look: Camera, *, frames: int,
                   fps: float = 10.0, seed: int = 0, camid: int = 1, part: int = _PART_TEST,
                   name: str | None = None, noise: DetectorNoise | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Film ``walkers`` with ``camera`` (seen with ``look``) into the MOTChallenge folder ``out``.

    Writes ``img1/000001.jpg``..., ``gt/gt.txt`` (``frame, pid, x, y, w, h, active, 1, visibility``:
    the tight box of the silhouette clipped to the frame, ``active`` when at least 25% of it is seen),
    ``det/det.txt`` (:func:`simulate_detections`) and ``seqinfo.ini`` last. ``seed``, ``part`` and
    ``camid`` key the random streams (poses, camera look, detector noise). Returns a summary dict.
    """
    out = Path(out)
    frames = int(frames)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    noise = noise if noise is not None else DetectorNoise()
    size = (camera.height_px, camera.width_px)
    raw_background = _scene_background(look, size, derive_rng(seed, _ROLE_BACKGROUND, camid))
    look_seed = np.random.SeedSequence([seed, _ROLE_LOOK, camid])  # one look for the whole sequence
    background = apply_camera(raw_background, look, np.random.default_rng(look_seed))
    quality = int(round(sum(look.jpeg_quality) / 2))
    (out / "img1").mkdir(parents=True, exist_ok=True)
    gt_rows, det_rows = [], []
    for t in range(1, frames + 1):
        placed = _place_walkers(walkers, camera, t, seed, part)
        sprites = [(_look_sprite(p, raw_background, look, look_seed), (p.x, p.y)) for p in placed]
        image, _, visible = composite(background, sprites)
        boxes, vis, pids = [], [], []
        for p, v in zip(placed, visible):
            alpha = np.asarray(p.sprite.getchannel("A")) >= _ALPHA_OPAQUE
            rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
            if not len(rows):
                continue
            x0, y0 = max(p.x + cols[0], 0), max(p.y + rows[0], 0)
            x1, y1 = min(p.x + cols[-1] + 1, size[1]), min(p.y + rows[-1] + 1, size[0])
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            boxes.append([x0, y0, x1, y1])
            vis.append(round(float(v), 3))
            pids.append(p.pid)
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        for pid, b, v in zip(pids, boxes, vis):
            gt_rows.append([t, pid, b[0], b[1], b[2] - b[0], b[3] - b[1],
                            int(v >= MIN_ACTIVE_VISIBILITY), 1, v])
        det_boxes, scores = simulate_detections(boxes, vis, derive_rng(seed, _ROLE_DETECT, part, camid, t),
                                                noise, size)
        for b, s in zip(det_boxes, scores):
            det_rows.append([t, -1, b[0], b[1], b[2] - b[0], b[3] - b[1], s])
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        write_bytes(out / "img1" / f"{t:06d}.jpg", buf.getvalue())
        if progress is not None:
            progress(t, frames)
    for stale in (out / "img1").iterdir():  # frames of an earlier, longer run; temp files of a killed one
        if stale.name.startswith(".") or (stale.suffix == ".jpg" and stale.stem.isdigit()
                                          and int(stale.stem) > frames):
            stale.unlink()
    write_gt(out / "gt" / "gt.txt", np.array(gt_rows, dtype=np.float64).reshape(-1, 9))
    write_det(out / "det" / "det.txt", np.array(det_rows, dtype=np.float64).reshape(-1, 7))
    write_seqinfo(out / "seqinfo.ini", SeqInfo(name=name or out.name, seq_length=frames, frame_rate=fps,
                                               im_width=size[1], im_height=size[0]))
    gt_ids = sorted({int(r[1]) for r in gt_rows})
    return {"name": name or out.name, "camid": camid, "frames": frames, "gt_rows": len(gt_rows),
            "det_rows": len(det_rows), "gt_ids": gt_ids}




# ----------------------------------------------------------------------------------------- scenes
def _resolve(mode, cameras, frames, people, seed, size, fps, validation_frames) -> dict:
    """The full, validated parameter set of a scene (the defaults of ``mode`` filled in)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    d = _DEFAULTS[mode]
    params = {"mode": mode, "cameras": d["cameras"] if cameras is None else cameras,
              "frames": d["frames"] if frames is None else frames,
              "people": d["people"] if people is None else people, "seed": seed,
              "size": list(_check_size(d["size"] if size is None else size)), "fps": float(fps)}
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


def _plan(params: dict) -> list[tuple[str, int, int, int, GroundCamera, Camera, list[Walker]]]:
    """``(folder, part, camid, frames, geometry, look, walkers)`` of every sequence of a scene."""
    seed, mode, fps, size = params["seed"], params["mode"], params["fps"], tuple(params["size"])
    geometries = [street_camera(size)] if mode == "street" else room_cameras(params["cameras"], size)
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
    parts = [("", _PART_TEST, params["frames"])]
    if mode == "room" and params["validation_frames"]:
        parts.append(("validation", _PART_VALIDATION, params["validation_frames"]))
    plan = []
    for folder, part, frames in parts:
        def identity(pid: int, part: int = part) -> Identity:
            return sample_identity(derive_rng(seed, _ROLE_IDENTITY, part, pid))

        rng = derive_rng(seed, _ROLE_PLAN, part)
        if mode == "street":
            walkers = plan_street(rng, geometries[0], frames=frames, people=params["people"], fps=fps,
                                  identities=identity)
        else:
            walkers = plan_room(rng, frames=frames, people=params["people"], fps=fps, identities=identity)
        for camid, (geo, look) in enumerate(zip(geometries, looks), start=1):
            plan.append((str(Path(folder) / f"cam{camid}") if folder else f"cam{camid}", part, camid, frames,
                         geo, look, walkers))
    return plan


def _read_manifest(out: Path) -> dict | None:
    try:
        doc = json.loads((out / SCENE_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("generator") == __name__ else None


def _manifest_bytes(params: dict, complete: bool, sequences: list[dict]) -> bytes:
    doc = {"generator": __name__, "version": GENERATOR_VERSION, "complete": complete, "params": params,
           "sequences": sequences}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def is_complete_scene(out, params: dict) -> bool:
    """True if ``out`` holds a finished scene of this generator version written with ``params`` (the
    resolved parameters, as in the manifest's ``params``)."""
    out = Path(out)
    doc = _read_manifest(out)
    if doc is None or not doc.get("complete") or doc.get("version") != GENERATOR_VERSION \
            or doc.get("params") != params:
        return False
    for seq in doc.get("sequences", []):
        root = out / seq["path"]
        if not all((root / f).is_file() for f in ("seqinfo.ini", "gt/gt.txt", "det/det.txt")):
            return False
        if sum(1 for p in (root / "img1").glob("*.jpg")) != seq["frames"]:
            return False
    return bool(doc.get("sequences"))


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
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a directory")
    if is_complete_scene(out, params):
        return _read_manifest(out)
    previous = _read_manifest(out)
    if previous is None and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"refusing to write a scene into {out}: it is not empty and has no {SCENE_MANIFEST} "
                         "from a previous scene (choose an empty or new folder)")
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:  # remove only the sequence folders that our previous run wrote
        for seq in previous.get("sequences", []):
            path = (out / seq["path"]).resolve()
            if path.is_dir() and out.resolve() in path.parents:
                shutil.rmtree(path)
        if (out / "validation").is_dir() and not any((out / "validation").iterdir()):
            (out / "validation").rmdir()
    plan = _plan(params)
    # listed already, so that a rewrite after an interruption knows which folders are ours
    write_bytes(out / SCENE_MANIFEST, _manifest_bytes(params, complete=False,
                                                       sequences=[{"path": p[0]} for p in plan]))
    total, done = sum(p[3] for p in plan), 0
    sequences = []
    for folder, part, camid, seq_frames, geo, look, walkers in plan:
        def seq_progress(k: int, n: int, base: int = done) -> None:
            if progress is not None:
                progress(base + k, total)

        name = f"{params['mode']}-s{params['seed']}-{folder.replace('/', '-')}"
        summary = write_sequence(out / folder, walkers, geo, look, frames=seq_frames, fps=params["fps"],
                                 seed=params["seed"], camid=camid, part=part, name=name,
                                 progress=seq_progress)
        done += seq_frames
        sequences.append({"path": folder, "part": "validation" if part == _PART_VALIDATION else "test",
                          "camid": camid, "frames": seq_frames, "gt_rows": summary["gt_rows"],
                          "det_rows": summary["det_rows"], "gt_ids": summary["gt_ids"],
                          "camera": asdict(geo)})
    write_bytes(out / SCENE_MANIFEST, _manifest_bytes(params, complete=True, sequences=sequences))
    return _read_manifest(out)


def scene_sequences(scene_dir, part: str = "test") -> list[tuple[int, Path]]:
    """``(camid, folder)`` of the sequences of one part (``"test"`` or ``"validation"``) of a scene.

    With a ``scene.json``, its list; otherwise the sub-folders ``cam<k>`` holding a ``seqinfo.ini`` (under
    ``validation/`` for that part), or ``scene_dir`` itself if it is a sequence folder (camid 1).
    """
    root = Path(scene_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such scene folder")
    doc = _read_manifest(root)
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

