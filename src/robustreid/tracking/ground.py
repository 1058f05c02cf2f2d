"""Ground-plane geometry of the synthetic tracking scenes: pinhole cameras over a floor.

A :class:`GroundCamera` projects world points (metres, ``y`` up, the ground is ``y = 0``) to pixels.
:func:`street_camera` is the one camera above a pavement; :func:`room_cameras` are the corner cameras of
the room of the LAB setting (Section 5.1: a room of about 5 x 6 m seen by four corner cameras).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..synthetic.camera import check_size

__all__ = ["ROOM_SIZE_M", "ROOM_DOOR_M", "STREET_ZONE_M", "GroundCamera", "street_camera", "room_cameras",
           "check_frame_size"]

ROOM_SIZE_M = (6.0, 5.0)  # (x, z) extent of the room, LAB's "about 5 x 6 metres"
ROOM_DOOR_M = (3.0, 0.3)  # where people enter and leave: the middle of the z = 0 wall
STREET_ZONE_M = (4.2, 9.5)  # depths (z) the street's people walk at: 80-190 px tall at 640x360


def check_frame_size(size) -> tuple[int, int]:
    """``size`` of a frame as ``(height, width)`` ints, at least 48 x 64; else ``ValueError``."""
    return check_size(size, minimum=(48, 64))


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
    h, w = check_frame_size(size)
    focal = 0.78 * w
    pitch = math.atan(3.0 / 4.0) - math.atan((h / 2) / focal)
    return GroundCamera(0.0, 0.0, 3.0, 0.0, pitch, focal, w, h)


def room_cameras(n: int, size: tuple[int, int] = (360, 640)) -> list[GroundCamera]:
    """``n`` (1-4) cameras 2.8 m up in the corners of the room, each aimed at its centre (as in LAB)."""
    if not 1 <= n <= 4:
        raise ValueError(f"a room has 1 to 4 corner cameras, got {n}")
    h, w = check_frame_size(size)
    sx, sz = ROOM_SIZE_M
    focal = (w / 2) / math.tan(math.radians(50))  # a 100 degree field of view covers the room's corner
    cams = []
    for x, z in ((0.0, 0.0), (sx, sz), (sx, 0.0), (0.0, sz))[:n]:  # opposite corners first
        dx, dz = sx / 2 - x, sz / 2 - z
        # the centre of the floor lands at 65% of the image height
        pitch = math.atan2(2.8, math.hypot(dx, dz)) - math.atan((0.15 * h) / focal)
        cams.append(GroundCamera(x, z, 2.8, math.atan2(dx, dz), pitch, focal, w, h))
    return cams
