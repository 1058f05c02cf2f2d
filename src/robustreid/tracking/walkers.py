"""Walkers: the people of a synthetic tracking scene and the timed paths they follow on the ground.

A :class:`Walker` is one person (appearance, stature) with one or more visits, each a path of timed
waypoints. :func:`plan_street` plans the street's people: crossing the view, pausing, turning back, or
meeting someone coming the other way and going back where they came from (the case where motion alone
swaps identities and appearance does not). :func:`plan_room` plans the room's: entering through the
door, walking between random spots, leaving and coming back later, so that re-entry must be decided by
appearance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..synthetic import Identity
from .ground import ROOM_DOOR_M, ROOM_SIZE_M, STREET_ZONE_M, GroundCamera

__all__ = ["Walker", "plan_street", "plan_room"]

Waypoint = tuple[float, float, float]  # (frame, x_m, z_m)


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
          pauses: dict[int, float] | None = None) -> list[Waypoint]:
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


def _walker(pid: int, identities: Callable[[int], Identity], rng: np.random.Generator,
            *visits: list[Waypoint]) -> Walker:
    return Walker(pid, identities(pid), float(rng.uniform(1.6, 1.9)), tuple(tuple(v) for v in visits))


# ------------------------------------------------------------------------------------------ street
def _edge(z: float, side: float, half_fov: float) -> float:
    """Just outside the image border on ``side`` (-1 left, +1 right, as x) at depth ``z``."""
    return side * (z * half_fov + 0.8)


def _street_meeting(rng: np.random.Generator, pid: int, t0: float, speed: float, side: float,
                    half_fov: float, fps: float, identities: Callable[[int], Identity]) -> list[Walker]:
    """Persons ``pid`` and ``pid + 1`` walk towards each other at nearly the same depth (the second just
    behind the first), stand face to face a moment, then each goes back (60%) or walks on."""
    z_near, z_far = STREET_ZONE_M
    zm, xm = rng.uniform(z_near + 0.5, z_far - 1.5), rng.uniform(-1.5, 1.5)
    pause = rng.uniform(8, 25)
    t_arrive = t0 + abs(xm - _edge(zm, side, half_fov)) / 1.3 * fps  # both reach the meeting point then
    walkers = []
    for k, (s, dz) in enumerate(((side, 0.0), (-side, rng.uniform(0.3, 0.6)))):
        z0 = zm + dz + rng.uniform(-0.8, 0.8)
        start = (_edge(z0, s, half_fov), z0)
        meet = (xm + s * 0.1, zm + dz)  # face to face, the second person just behind the first
        back = rng.random() < 0.6
        z1 = np.clip(zm + dz + rng.uniform(-1.5, 1.5), z_near, z_far)
        end = (_edge(z1, s if back else -s, half_fov), z1)
        t_start = t_arrive - math.hypot(meet[0] - start[0], meet[1] - start[1]) / speed * fps
        walkers.append(_walker(pid + k, identities, rng,
                               _path(t_start, [start, meet, end], speed, fps, {1: pause})))
    return walkers


def _street_walk(rng: np.random.Generator, kind: str, t0: float, speed: float, side: float,
                 half_fov: float, fps: float) -> list[Waypoint]:
    """One person entering on ``side``: turning back after a few steps (``kind == "return"``), or crossing
    the view (pausing half-way if ``kind == "pause"``)."""
    z_near, z_far = STREET_ZONE_M
    z0, z1 = rng.uniform(z_near, z_far, 2)
    start = (_edge(z0, side, half_fov), z0)
    if kind == "return":
        zt = np.clip(z0 + rng.uniform(-1.0, 1.0), z_near, z_far)
        turn = (side * rng.uniform(-0.3, 0.6) * zt * half_fov, zt)
        points, pauses = [start, turn, (_edge(z1, side, half_fov), z1)], {1: rng.uniform(0, 8)}
    else:
        zm = np.clip((z0 + z1) / 2 + rng.uniform(-1.0, 1.0), z_near, z_far)
        mid = (rng.uniform(-0.4, 0.4) * zm * half_fov, zm)
        points = [start, mid, (_edge(z1, -side, half_fov), z1)]
        pauses = {1: rng.uniform(10, 30)} if kind == "pause" else {}
    return _path(t0, points, speed, fps, pauses)


def plan_street(rng: np.random.Generator, camera: GroundCamera, *, frames: int, people: int, fps: float,
                identities: Callable[[int], Identity]) -> list[Walker]:
    """Walkers for the street camera: ``people`` persons whose arrivals are spread over ``frames``.

    Each crosses the view (straight, or pausing half-way), turns back after a few steps, or meets a
    person coming the other way at nearly the same depth (the farther one hidden behind the nearer),
    stands a moment, and either goes back (60%) or walks on. Paths start and end outside the view.
    """
    half_fov = (camera.width_px / 2) / camera.focal_px
    walkers: list[Walker] = []
    crossing_frames = 2 * _edge(8.0, 1.0, half_fov) / 1.3 * fps
    slot = frames / max(people, 1)
    pid = 1
    while pid <= people:
        t0 = (pid - 1 + rng.uniform(0, 1)) * slot - 0.3 * crossing_frames
        speed = rng.uniform(1.1, 1.6)
        side = 1.0 if rng.random() < 0.5 else -1.0
        kind = rng.choice(["cross", "pause", "return", "meet"], p=[0.4, 0.15, 0.15, 0.3])
        if kind == "meet" and pid < people:
            walkers.extend(_street_meeting(rng, pid, t0, speed, side, half_fov, fps, identities))
            pid += 2
        else:  # the last person has no one to meet: they cross
            path = _street_walk(rng, kind, t0, speed, side, half_fov, fps)
            walkers.append(_walker(pid, identities, rng, path))
            pid += 1
    return walkers


# ------------------------------------------------------------------------------------------ room
def _room_visit(rng: np.random.Generator, t: float, speed: float, fps: float, frames: int) -> list[Waypoint]:
    """One visit from frame ``t``: in through the door, between random spots (pausing at some) for about
    15-30% of the sequence, and out through the door."""
    sx, sz = ROOM_SIZE_M
    margin = 0.6
    door = ROOM_DOOR_M
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
    return _path(t, points, speed, fps, pauses)


def plan_room(rng: np.random.Generator, *, frames: int, people: int, fps: float,
              identities: Callable[[int], Identity]) -> list[Walker]:
    """Walkers for the room: each person enters through the door, walks between random spots (pausing
    at some), leaves through the door, and comes back after 20-35% of the sequence (at least 5 s), up to
    three visits.

    First entries are spread over the first 30% of the sequence in person order (person 1 first, so at
    least one person leaves and comes back whenever the sequence is long enough for two visits); a
    visit lasts about 15-30% of the sequence.
    """
    walkers = []
    for pid in range(1, people + 1):
        speed = rng.uniform(0.8, 1.3)
        t = (pid - 1 + rng.uniform(0.1, 0.9)) / people * 0.3 * frames  # first entries one by one
        visits = []
        while t < 0.9 * frames and len(visits) < 3:
            visit = _room_visit(rng, t, speed, fps, frames)
            visits.append(visit)
            t = visit[-1][0] + max(rng.uniform(0.2, 0.35) * frames, 5.0 * fps)
        walkers.append(_walker(pid, identities, rng, *visits))
    return walkers
