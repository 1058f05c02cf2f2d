"""Filming a synthetic scene: walkers seen by one camera, written as a MOTChallenge sequence.

At each frame every walker present is projected by the :class:`~.ground.GroundCamera`; the renderer of
:mod:`robustreid.synthetic` draws them that tall, in the view given by their walking direction relative
to the camera (front, back or the side they face in the image), with a gait pose that cycles with the
distance walked and a small vertical bob (:func:`_place_walkers`). Persons are composited far to near by
the image row of their feet, so nearer people occlude farther ones (:func:`composite`); the visible
fraction of each silhouette is the ``visibility`` of ``gt.txt``. :func:`write_sequence` writes the frames,
``gt/gt.txt``, ``det/det.txt`` (:mod:`.detector`) and ``seqinfo.ini``.

Cost: the camera look (:func:`synthetic.apply_camera`) is computed once for the static background and
per person on the person's own patch (with the frame's light at that place), not on every full frame.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomicfile import write_bytes
from ..synthetic import Camera, apply_camera, derive_rng, render_background, render_person
from .detector import DetectorNoise, simulate_detections
from .ground import GroundCamera
from .motio import SeqInfo, write_det, write_gt, write_seqinfo
from .walkers import Walker

__all__ = ["MIN_ACTIVE_VISIBILITY", "composite", "write_sequence"]

MIN_ACTIVE_VISIBILITY = 0.25  # gt rows less visible than this are written with active = 0 (ignored)
_ALPHA_OPAQUE = 128  # silhouette pixels: alpha at least this
_STEP_M = 0.7  # a walking step; a gait cycle (4 poses) is two steps

# Roles: the first key after the seed. The scene's roles are 101..107 (101..103 in .scene), kept apart
# from those of robustreid.synthetic (1..8). A part of a scene (test, validation) keys its streams too.
_ROLE_BACKGROUND, _ROLE_LOOK, _ROLE_POSE, _ROLE_DETECT = 104, 105, 106, 107
PART_TEST, PART_VALIDATION = 0, 1


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


def _view_of(camera: GroundCamera, x: float, z: float, hx: float, hz: float, feet_u: float,
             ahead_u: float) -> str:
    """The view a walker at ``(x, z)`` heading ``(hx, hz)`` shows: facing the camera (front), facing away
    (back), or the side the person faces in the image (``ahead_u``: image column of a point just ahead)."""
    to_cam = np.array([camera.x_m - x, camera.z_m - z])
    facing = (hx * to_cam[0] + hz * to_cam[1]) / max(np.linalg.norm(to_cam), 1e-9)
    if facing > 0.64:
        return "front"
    if facing < -0.64:
        return "back"
    return "right" if ahead_u >= feet_u else "left"


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
        view = _view_of(camera, x, z, hx, hz, feet[0], ahead[0])
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


def _gt_boxes(placed: Sequence[_Placed], visible: np.ndarray, size: tuple[int, int]
              ) -> tuple[list[int], np.ndarray, list[float]]:
    """``(pids, boxes_xyxy (N, 4), visibility)`` of the placed persons: the tight box of each silhouette
    clipped to the ``size = (height, width)`` frame; persons with no silhouette pixel in it are left out."""
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
    return pids, np.array(boxes, dtype=np.float64).reshape(-1, 4), vis


def _remove_stale_frames(img_dir: Path, frames: int) -> None:
    """Frames of an earlier, longer run; temp files of a killed one."""
    for stale in img_dir.iterdir():
        if stale.name.startswith(".") or (stale.suffix == ".jpg" and stale.stem.isdigit()
                                          and int(stale.stem) > frames):
            stale.unlink()


def write_sequence(out, walkers: Sequence[Walker], camera: GroundCamera, look: Camera, *, frames: int,
                   fps: float = 10.0, seed: int = 0, camid: int = 1, part: int = PART_TEST,
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
        pids, boxes, vis = _gt_boxes(placed, visible, size)
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
    _remove_stale_frames(out / "img1", frames)
    write_gt(out / "gt" / "gt.txt", np.array(gt_rows, dtype=np.float64).reshape(-1, 9))
    write_det(out / "det" / "det.txt", np.array(det_rows, dtype=np.float64).reshape(-1, 7))
    write_seqinfo(out / "seqinfo.ini", SeqInfo(name=name or out.name, seq_length=frames, frame_rate=fps,
                                               im_width=size[1], im_height=size[0]))
    gt_ids = sorted({int(r[1]) for r in gt_rows})
    return {"name": name or out.name, "camid": camid, "frames": frames, "gt_rows": len(gt_rows),
            "det_rows": len(det_rows), "gt_ids": gt_ids}
