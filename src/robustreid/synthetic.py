"""Synthetic persons: procedural person crops written in the real Market1501 layout.

No person dataset or pretrained weight can be downloaded on the machines this project is developed on,
and the paper's results (Sec. 4, Tables 2-4) are all on Market1501 / DukeMTMC-reID. This module draws
persons procedurally so that the whole pipeline (datasets -> loaders -> train -> evaluate -> tracking)
can be seen working in minutes, through the same reader as the real data.

Two layers, kept apart so that a tracking scene can reuse the first one:

* the renderer: an :class:`Identity` is the persistent appearance of one person (body proportions,
  skin and hair, upper and lower clothing with a pattern, shoes, an optional bag);
  :func:`render_person` draws it in one view (``front``, ``back``, ``left``, ``right``) as an RGBA image
  on a transparent background. A :class:`Camera` is what one camera adds: its background, illumination
  and colour cast, its mix of viewpoints, scale and crop jitter, resolution, blur, noise, JPEG quality
  and occlusions; :func:`render_crop` places a person in a camera's scene and applies those effects.
* the dataset writer: :func:`write_market1501` writes ``bounding_box_train/``, ``query/`` and
  ``bounding_box_test/`` with Market1501 file names (``0002_c1s1_000451_03.jpg``), including junk
  images (pid ``-1``) and distractors (pid ``0000``) in the gallery, and a ``synth.json`` manifest
  written last so that a complete output is reused (:func:`is_complete`).

Every image is drawn from its own random generator derived from ``(seed, role, pid, cam, index)``
(:func:`derive_rng`), so the result does not depend on generation order.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .atomicfile import TEMP_PREFIX, write_bytes

__all__ = [
    "VIEWS",
    "BACKGROUNDS",
    "Identity",
    "Camera",
    "SynthParams",
    "derive_rng",
    "sample_identity",
    "sample_camera",
    "render_person",
    "render_background",
    "apply_camera",
    "render_crop",
    "write_market1501",
    "is_complete",
    "contact_sheet",
]

VIEWS = ("front", "back", "left", "right")
BACKGROUNDS = ("corridor", "street", "park", "plaza")
GENERATOR_VERSION = 1  # bump whenever the pixels change, so that older outputs are not reused
MANIFEST_NAME = "synth.json"
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")

# Roles keep the random streams of different purposes apart (first key after the seed).
_ROLE_IDENTITY, _ROLE_CAMERA, _ROLE_IMAGE, _ROLE_SPLIT, _ROLE_TRACK = 1, 2, 3, 4, 5
_ROLE_DISTRACTOR, _ROLE_JUNK, _ROLE_STRAY_IDENTITY = 6, 7, 8

RGB = tuple[int, int, int]

# Palettes: plausible clothing colours, dark and neutral ones more frequent, as in street scenes.
_UPPER_PALETTE = (
    ((22, 22, 26), 3.0), ((60, 60, 66), 2.0), ((125, 125, 130), 1.5), ((190, 190, 192), 1.2),
    ((236, 236, 232), 2.5), ((28, 36, 80), 1.5), ((45, 85, 170), 1.2), ((135, 175, 220), 1.0),
    ((175, 30, 38), 1.0), ((110, 24, 42), 0.8), ((228, 118, 38), 0.6), ((232, 202, 55), 0.6),
    ((40, 118, 62), 0.8), ((102, 106, 52), 0.7), ((190, 168, 118), 0.8), ((112, 74, 44), 0.7),
    ((232, 145, 172), 0.7), ((104, 60, 142), 0.6), ((30, 126, 132), 0.6),
)
_LOWER_PALETTE = (
    ((22, 22, 26), 3.5), ((62, 62, 68), 1.5), ((128, 128, 132), 1.0), ((30, 38, 78), 1.5),
    ((58, 84, 128), 2.5), ((110, 140, 180), 1.0), ((186, 166, 120), 1.0), ((215, 200, 168), 0.6),
    ((98, 70, 46), 0.7), ((96, 100, 54), 0.6), ((232, 232, 228), 0.5), ((150, 30, 40), 0.4),
)
_SHOE_PALETTE = (
    ((20, 20, 22), 3.0), ((238, 238, 238), 2.0), ((96, 64, 40), 1.0), ((120, 120, 124), 1.0),
    ((180, 40, 40), 0.4), ((40, 70, 150), 0.4),
)
_HAIR_PALETTE = (
    ((16, 14, 14), 4.0), ((48, 32, 22), 2.0), ((92, 62, 36), 1.0), ((180, 146, 90), 0.5),
    ((150, 150, 150), 0.4), ((120, 52, 30), 0.3),
)
_SKIN_LIGHT, _SKIN_DARK = np.array([244, 210, 184.0]), np.array([96, 64, 46.0])

_PATTERNS = ("plain", "stripes", "checks", "logo", "open_jacket", "chest_band")
_PATTERN_P = (0.32, 0.16, 0.12, 0.16, 0.14, 0.10)


# --------------------------------------------------------------------------------------------------
# Random streams


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, *keys)``, e.g. ``(seed, role, pid, cam, index)``."""
    entropy = [int(seed), *(int(k) for k in keys)]
    if any(k < 0 for k in entropy):
        raise ValueError(f"derive_rng keys must be non-negative integers, got {entropy}")
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _pick(rng: np.random.Generator, palette, jitter: float = 0.12) -> RGB:
    """A palette colour, slightly varied in brightness and hue so identities sharing an entry differ."""
    weights = np.array([w for _, w in palette], dtype=np.float64)
    rgb = np.array(palette[rng.choice(len(palette), p=weights / weights.sum())][0], dtype=np.float64)
    rgb = rgb * rng.uniform(1 - jitter, 1 + jitter) + rng.normal(0, 6, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _distinct(rng: np.random.Generator, palette, other: RGB, min_dist: float = 90.0) -> RGB:
    """A palette colour clearly different from ``other`` (for a pattern's second colour)."""
    for _ in range(20):
        rgb = _pick(rng, palette)
        if np.linalg.norm(np.subtract(rgb, other)) >= min_dist:
            return rgb
    return tuple(255 - v for v in other)


# --------------------------------------------------------------------------------------------------
# Identity: the persistent appearance


@dataclass(frozen=True)
class Identity:
    """Persistent appearance of one person; lengths are fractions of the person's height."""

    build: float  # width factor, 1.0 = average
    head_ratio: float  # head height / body height
    leg_ratio: float  # hip-to-sole / body height
    skin_rgb: RGB
    hair_rgb: RGB
    hair_style: str  # "short" | "long" | "bald"
    hat_rgb: RGB | None
    upper_rgb: RGB
    upper_rgb2: RGB  # second colour of the pattern
    upper_pattern: str  # one of _PATTERNS
    pattern_period: float  # stripe / check period, fraction of height
    logo_shape: str  # "circle" | "square" | "diamond" | "bars"
    long_sleeves: bool
    upper_extra: float  # how far the top reaches below the hip
    lower_rgb: RGB
    lower_kind: str  # "trousers" | "shorts" | "skirt"
    shoes_rgb: RGB
    bag_kind: str  # "none" | "backpack" | "shoulder" | "handbag"
    bag_rgb: RGB
    bag_on_right: bool  # carried on the person's right side


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person's persistent appearance."""
    upper = _pick(rng, _UPPER_PALETTE)
    lower_kind = str(rng.choice(["trousers", "shorts", "skirt"], p=[0.72, 0.14, 0.14]))
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * rng.beta(1.3, 1.8) + rng.normal(0, 5, 3)
    return Identity(
        build=float(rng.uniform(0.85, 1.2)),
        head_ratio=float(rng.uniform(0.12, 0.14)),
        leg_ratio=float(rng.uniform(0.45, 0.5)),
        skin_rgb=tuple(int(v) for v in np.clip(skin, 0, 255)),
        hair_rgb=_pick(rng, _HAIR_PALETTE, jitter=0.08),
        hair_style=str(rng.choice(["short", "long", "bald"], p=[0.55, 0.37, 0.08])),
        hat_rgb=_pick(rng, _UPPER_PALETTE) if rng.random() < 0.15 else None,
        upper_rgb=upper,
        upper_rgb2=_distinct(rng, _UPPER_PALETTE, upper),
        upper_pattern=str(rng.choice(_PATTERNS, p=_PATTERN_P)),
        pattern_period=float(rng.uniform(0.035, 0.065)),
        logo_shape=str(rng.choice(["circle", "square", "diamond", "bars"])),
        long_sleeves=bool(rng.random() < 0.55),
        upper_extra=float(rng.uniform(0.0, 0.07)),
        lower_rgb=_pick(rng, _LOWER_PALETTE),
        lower_kind=lower_kind,
        shoes_rgb=_pick(rng, _SHOE_PALETTE, jitter=0.06),
        bag_kind=str(rng.choice(["none", "backpack", "shoulder", "handbag"], p=[0.4, 0.3, 0.2, 0.1])),
        bag_rgb=_pick(rng, _UPPER_PALETTE),
        bag_on_right=bool(rng.random() < 0.5),
    )


# --------------------------------------------------------------------------------------------------
# Renderer: one person, RGBA, no camera effects


def _limb(p0, p1, w0: float, w1: float):
    """Quadrilateral of a limb from p0 (width w0) to p1 (width w1)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    return [
        (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2), (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
        (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2), (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
    ]


def _lerp(p0, p1, t: float):
    return (p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t)


def _shade(rgb: RGB, f: float) -> tuple[int, int, int, int]:
    return (*(int(min(255, v * f)) for v in rgb), 255)


def _ellipse(cx: float, cy: float, rx: float, ry: float):
    return [cx - rx, cy - ry, cx + rx, cy + ry]


def _pattern_fill(identity: Identity, size: tuple[int, int], unit: float) -> Image.Image:
    """The upper garment's fabric over the whole canvas (stripes / checks are woven in body units)."""
    w, h = size
    c1 = np.array(identity.upper_rgb + (255,), dtype=np.uint8)
    c2 = np.array(identity.upper_rgb2 + (255,), dtype=np.uint8)
    period = identity.pattern_period * unit
    if identity.upper_pattern == "stripes":
        on = ((np.arange(h) / period) % 1.0 < 0.5)[:, None] & np.ones((1, w), dtype=bool)
    elif identity.upper_pattern == "checks":
        yy = (np.arange(h) / period).astype(int)[:, None]
        xx = (np.arange(w) / period).astype(int)[None, :]
        on = (yy + xx) % 2 == 0
    else:
        return Image.new("RGBA", size, tuple(int(v) for v in c1))
    return Image.fromarray(np.where(on[..., None], c2, c1), "RGBA")


def render_person(identity: Identity, view: str, height_px: int, rng: np.random.Generator) -> Image.Image:
    """Draw ``identity`` seen from ``view`` as an RGBA image ``height_px`` tall on a transparent background.

    The canvas is ``ceil(0.55 * height_px)`` wide, feet on the bottom row. ``rng`` only varies the pose
    (stride, arm swing); the appearance is the identity's. A back view shows a backpack and hides a front
    logo or an open jacket; ``left`` / ``right`` are side views facing that way in the image.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if int(height_px) < 16:
        raise ValueError(f"height_px must be >= 16, got {height_px}")
    ss = 2  # drawn at twice the size, then reduced: cheap anti-aliasing
    height_px = int(height_px)
    out_w = math.ceil(0.55 * height_px)
    H, W = height_px * ss, out_w * ss
    canvas = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    side = view in ("left", "right")
    b = identity.build
    cx = W / 2

    def u(v: float) -> float:  # body units -> canvas px
        return v * H

    head_h = u(identity.head_ratio)
    head_w = head_h * (0.86 if side else 0.76)
    y_top = u(0.01)
    y_chin = y_top + head_h
    y_sh = y_chin + u(0.025)
    y_sole = u(0.995)
    stride = float(rng.uniform(0.12, 0.34)) if side else float(rng.uniform(0.0, 0.05))
    swing = float(rng.uniform(0.1, 0.4)) if side else float(rng.uniform(0.0, 0.06))
    leg_len = u(identity.leg_ratio)
    y_hip = y_sole - leg_len * (math.cos(stride) if side else 1.0) - u(0.015)
    y_bottom = y_hip + u(identity.upper_extra)
    sw = u((0.078 if side else 0.125) * b)  # shoulder half-width
    hw = u((0.072 if side else 0.098) * b)  # hip half-width
    aw = u(0.046 * b)
    lw = u(0.068 * b)
    arm_len = (y_hip + u(0.06)) - (y_sh + u(0.03))

    skin = identity.skin_rgb
    lower = identity.lower_rgb
    # The person's right side is on the image left in a front view and on the image right in a back view.
    right_x = -1.0 if view == "front" else 1.0

    # ---- legs and shoes: (hip point, ankle point, shade) per leg, far leg first
    legs = []
    if side:
        fwd = float(rng.choice([-1.0, 1.0]))  # which leg is forward: the near or the far one
        for sgn, shade in ((fwd, 0.78), (-fwd, 1.0)):
            hip = (cx, y_hip)
            ankle = (cx + math.sin(stride) * sgn * leg_len, y_sole - u(0.03))
            legs.append((hip, ankle, shade))
    else:
        spread = u(float(rng.uniform(0.0, 0.02)))
        lift = u(float(rng.uniform(0.0, 0.02)))
        for sgn in (-1.0, 1.0):
            hip = (cx + sgn * u(0.045 * b), y_hip)
            ankle = (cx + sgn * (u(0.05 * b) + spread), y_sole - u(0.03) - (lift if sgn > 0 else 0.0))
            legs.append((hip, ankle, 1.0))

    def draw_leg(hip, ankle, shade):
        draw.polygon(_limb(hip, ankle, lw, lw * 0.72), fill=_shade(skin, shade))
        if identity.lower_kind == "trousers":
            draw.polygon(_limb(hip, ankle, lw, lw * 0.74), fill=_shade(lower, shade))
        elif identity.lower_kind == "shorts":
            draw.polygon(_limb(hip, _lerp(hip, ankle, 0.45), lw * 1.08, lw * 0.98), fill=_shade(lower, shade))
        sx = ankle[0] + (u(0.03) * (1 if view == "right" else -1) if side else 0.0)
        draw.ellipse(_ellipse(sx, ankle[1] + u(0.012), u(0.055 if side else 0.04) * b, u(0.02)),
                     fill=_shade(identity.shoes_rgb, shade))

    # ---- arms: (shoulder point, wrist point, shade)
    arms = []
    if side:
        for sgn, shade in ((1.0, 0.75), (-1.0, 1.0)):
            sh = (cx, y_sh + u(0.03))
            wrist = (cx + math.sin(swing) * sgn * arm_len, sh[1] + math.cos(swing) * arm_len)
            arms.append((sh, wrist, shade))
    else:
        for sgn in (-1.0, 1.0):
            sh = (cx + sgn * (sw - aw * 0.5), y_sh + u(0.03))
            wrist = (cx + sgn * (sw + u(0.012) + u(swing)), sh[1] + arm_len)
            arms.append((sh, wrist, 1.0))

    fabric = _pattern_fill(identity, (W, H), H) if identity.upper_pattern in ("stripes", "checks") else None

    def paste_fabric(polygon):  # woven fabric through a polygon mask, limited to the polygon's box
        x0 = max(0, int(min(x for x, _ in polygon)))
        y0 = max(0, int(min(y for _, y in polygon)))
        x1 = min(W, int(math.ceil(max(x for x, _ in polygon))) + 1)
        y1 = min(H, int(math.ceil(max(y for _, y in polygon))) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
        canvas.paste(fabric.crop((x0, y0, x1, y1)), (x0, y0), mask)

    def draw_arm(sh, wrist, shade):
        draw.polygon(_limb(sh, wrist, aw, aw * 0.8), fill=_shade(skin, shade))
        end = wrist if identity.long_sleeves else _lerp(sh, wrist, 0.4)
        sleeve = _limb(sh, end, aw * 1.1, aw * 0.95)
        if fabric is None or shade != 1.0:
            draw.polygon(sleeve, fill=_shade(identity.upper_rgb, shade))
        else:
            paste_fabric(sleeve)
        draw.ellipse(_ellipse(wrist[0], wrist[1] + u(0.012), u(0.02), u(0.024)), fill=_shade(skin, shade))

    def draw_hair_back():  # long hair falling behind the shoulders (front / side views)
        if identity.hair_style != "long":
            return
        x0 = cx - head_w * 0.62 if not side else cx - head_w * (0.7 if view == "right" else 0.3)
        x1 = x0 + head_w * (1.24 if not side else 1.0)
        draw.rounded_rectangle([x0, y_top + head_h * 0.2, x1, y_sh + u(0.08)], radius=head_w * 0.3,
                               fill=_shade(identity.hair_rgb, 1.0))

    def draw_backpack_body():
        if identity.bag_kind != "backpack":
            return
        if side:
            back = -1 if view == "right" else 1
            x_in = cx + back * sw * 0.7
            x_out = cx + back * (sw + u(0.075))
            draw.rounded_rectangle([min(x_in, x_out), y_sh + u(0.02), max(x_in, x_out), y_sh + u(0.21)],
                                   radius=u(0.02), fill=_shade(identity.bag_rgb, 0.95))
        elif view == "back":
            draw.rounded_rectangle([cx - sw * 0.78, y_sh + u(0.015), cx + sw * 0.78, y_sh + u(0.22)],
                                   radius=u(0.025), fill=_shade(identity.bag_rgb, 1.0))
            draw.rectangle([cx - sw * 0.5, y_sh + u(0.12), cx + sw * 0.5, y_sh + u(0.17)],
                           fill=_shade(identity.bag_rgb, 0.8))

    # ---- draw, back to front
    if side:
        draw_arm(*arms[0])
        draw_leg(*legs[0])
        draw_backpack_body()
    if view != "back":
        draw_hair_back()
    for leg in legs[(1 if side else 0):]:
        draw_leg(*leg)
    if identity.lower_kind == "skirt":
        draw.polygon([(cx - hw, y_hip - u(0.02)), (cx + hw, y_hip - u(0.02)),
                      (cx + hw * 1.45, y_hip + u(0.2)), (cx - hw * 1.45, y_hip + u(0.2))],
                     fill=_shade(lower, 1.0))
    else:  # crotch block so the legs join the hips
        draw.polygon([(cx - hw, y_hip - u(0.02)), (cx + hw, y_hip - u(0.02)),
                      (cx + hw * 0.9, y_hip + u(0.07)), (cx - hw * 0.9, y_hip + u(0.07))],
                     fill=_shade(lower, 1.0))

    # torso (upper garment with its fabric)
    torso = [(cx - sw * 0.35, y_sh), (cx + sw * 0.35, y_sh), (cx + sw, y_sh + u(0.02)),
             (cx + hw * 1.02, y_bottom), (cx - hw * 1.02, y_bottom), (cx - sw, y_sh + u(0.02))]
    neck = [cx - head_w * 0.18, y_chin - u(0.01), cx + head_w * 0.18, y_sh + u(0.01)]
    draw.rectangle(neck, fill=_shade(skin, 0.9))
    if fabric is None:
        draw.polygon(torso, fill=_shade(identity.upper_rgb, 1.0))
    else:
        paste_fabric(torso)
    pat = identity.upper_pattern
    c2 = _shade(identity.upper_rgb2, 1.0)
    if pat == "chest_band":  # the torso polygon between two heights
        yb0, yb1 = y_sh + u(0.07), y_sh + u(0.12)

        def x_at(y, sgn):  # torso side edge at height y
            t = (y - (y_sh + u(0.02))) / max(y_bottom - (y_sh + u(0.02)), 1.0)
            return cx + sgn * (sw + (hw * 1.02 - sw) * t)

        band = [(x_at(yb0, -1), yb0), (x_at(yb0, 1), yb0), (x_at(yb1, 1), yb1), (x_at(yb1, -1), yb1)]
        draw.polygon(band, fill=c2)
    elif pat == "open_jacket" and view != "back":
        if side:
            front = 1 if view == "right" else -1
            x0, x1 = sorted((cx + front * sw * 0.55, cx + front * sw * 0.95))
        else:
            x0, x1 = cx - sw * 0.3, cx + sw * 0.3
        draw.polygon([(x0, y_sh + u(0.005)), (x1, y_sh + u(0.005)), (x1, y_bottom), (x0, y_bottom)], fill=c2)
    elif pat == "logo" and view == "front":
        r = u(0.04)
        ly = y_sh + u(0.09)
        if identity.logo_shape == "circle":
            draw.ellipse(_ellipse(cx, ly, r, r), fill=c2)
        elif identity.logo_shape == "square":
            draw.rectangle(_ellipse(cx, ly, r * 0.9, r * 0.9), fill=c2)
        elif identity.logo_shape == "diamond":
            draw.polygon([(cx, ly - r * 1.2), (cx + r, ly), (cx, ly + r * 1.2), (cx - r, ly)], fill=c2)
        else:
            for k in range(3):
                y = ly - r + k * r * 0.8
                draw.rectangle([cx - r * 1.2, y, cx + r * 1.2, y + r * 0.45], fill=c2)

    # bag straps and bags seen over the torso
    bag = _shade(identity.bag_rgb, 1.0)
    strap_w = max(2, int(u(0.018)))
    if identity.bag_kind == "backpack":
        if view == "back":
            draw_backpack_body()
        elif view == "front":
            for sgn in (-1, 1):
                x = cx + sgn * sw * 0.55
                draw.line([(x, y_sh + u(0.005)), (x + sgn * u(0.01), y_sh + u(0.17))],
                          fill=bag, width=strap_w)
        elif side:
            f = 1 if view == "right" else -1
            x = cx + f * sw * 0.1
            draw.line([(x, y_sh), (x - f * u(0.02), y_sh + u(0.16))], fill=bag, width=strap_w)
    elif identity.bag_kind == "shoulder":
        bx = cx + (right_x if identity.bag_on_right else -right_x) * (hw + u(0.03)) if not side else cx
        sx = cx - (bx - cx) * 0.8 if not side else cx
        draw.line([(sx, y_sh + u(0.005)), (bx, y_hip - u(0.01))], fill=bag, width=strap_w)
        draw.rounded_rectangle(_ellipse(bx, y_hip + u(0.01), u(0.05), u(0.042)), radius=u(0.01), fill=bag)

    if side:
        draw_arm(*arms[1])
    else:
        for arm in arms:
            draw_arm(*arm)
    if identity.bag_kind == "handbag":
        hand = arms[1] if side else arms[0 if (right_x if identity.bag_on_right else -right_x) < 0 else 1]
        wx, wy = hand[1]
        draw.line([(wx, wy), (wx, wy + u(0.03))], fill=bag, width=strap_w)
        draw.rounded_rectangle(_ellipse(wx, wy + u(0.07), u(0.045), u(0.04)), radius=u(0.01), fill=bag)

    # ---- head, hair, hat
    hcx = cx + (u(0.012) * (1 if view == "right" else -1) if side else 0.0)
    head_box = [hcx - head_w / 2, y_top, hcx + head_w / 2, y_top + head_h]
    hair = _shade(identity.hair_rgb, 1.0)
    draw.ellipse(head_box, fill=_shade(skin, 1.0))
    if identity.hair_style != "bald":
        grow = u(0.006)
        hair_box = [head_box[0] - grow, head_box[1] - grow, head_box[2] + grow, head_box[3] - head_h * 0.1]
        if view == "back":
            draw.ellipse(hair_box, fill=hair)
            if identity.hair_style == "long":
                fall = [hcx - head_w * 0.6, y_top + head_h * 0.3, hcx + head_w * 0.6, y_sh + u(0.09)]
                draw.rounded_rectangle(fall, radius=head_w * 0.3, fill=hair)
        else:
            draw.ellipse(hair_box, fill=hair)
            if side:
                f = 1 if view == "right" else -1
                face = _ellipse(hcx + f * head_w * 0.2, y_top + head_h * 0.62, head_w * 0.32, head_h * 0.36)
            else:
                face = _ellipse(hcx, y_top + head_h * 0.62, head_w * 0.4, head_h * 0.37)
            draw.ellipse(face, fill=_shade(skin, 1.0))
    if view == "front":
        for sgn in (-1, 1):
            draw.ellipse(_ellipse(hcx + sgn * head_w * 0.18, y_top + head_h * 0.56, u(0.008), u(0.006)),
                         fill=(40, 30, 30, 255))
    elif side:
        f = 1 if view == "right" else -1
        draw.ellipse(_ellipse(hcx + f * head_w * 0.3, y_top + head_h * 0.56, u(0.006), u(0.006)),
                     fill=(40, 30, 30, 255))
    if identity.hat_rgb is not None:
        hat = _shade(identity.hat_rgb, 1.0)
        grow = u(0.01)
        draw.chord([head_box[0] - grow, head_box[1] - grow, head_box[2] + grow, head_box[3] - head_h * 0.15],
                   180, 360, fill=hat)
        if view == "front":
            brim = [hcx - head_w * 0.5, y_top + head_h * 0.36, hcx + head_w * 0.5, y_top + head_h * 0.44]
            draw.rectangle(brim, fill=hat)
        elif side:
            f = 1 if view == "right" else -1
            x0, x1 = sorted((hcx, hcx + f * head_w * 0.85))
            draw.rectangle([x0, y_top + head_h * 0.36, x1, y_top + head_h * 0.44], fill=hat)

    # ---- shading: round body (darker towards the silhouette's sides), light from above
    arr = np.asarray(canvas.reduce(ss), dtype=np.float32)
    xs = np.abs(np.arange(out_w, dtype=np.float32) + 0.5 - cx / ss) / max(sw * 1.4 / ss, 1.0)
    col = 1.0 - 0.28 * np.clip(xs, 0, 1) ** 2
    row = 1.06 - 0.12 * np.arange(height_px, dtype=np.float32) / height_px
    arr[..., :3] *= (row[:, None] * col[None, :])[..., None]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


# --------------------------------------------------------------------------------------------------
# Camera: scene and image formation


@dataclass(frozen=True)
class Camera:
    """What one camera adds to every crop it sees (background, light, viewpoint, optics, occlusion)."""

    background: str  # one of BACKGROUNDS
    background_seed: int
    horizon: float  # floor starts at this fraction of the crop height
    gain: float  # global illumination
    cast_rgb: tuple[float, float, float]  # per-channel colour cast (white balance error)
    gamma: float
    saturation: float
    light_gradient: float  # relative brightness change across the crop
    light_angle_rad: float
    view_probs: tuple[float, float, float]  # front, back, side
    person_scale: tuple[float, float]  # person height / crop height
    jitter_x: float  # std of the horizontal offset, fraction of crop width
    downscale: tuple[float, float]  # resolution factor before upsampling back
    blur_radius_px: tuple[float, float]
    noise_sigma: float
    jpeg_quality: tuple[int, int]
    occlusion_prob: float


def sample_camera(rng: np.random.Generator) -> Camera:
    """Draw one camera: its scene, white balance, exposure, viewpoint mix and image quality."""
    temperature = float(rng.uniform(-1.0, 1.0))  # warm (tungsten) .. cool (shade, LED)
    tint = float(rng.uniform(-0.07, 0.07))  # green (fluorescent) .. magenta
    cast = np.array([1 + 0.16 * temperature, 1 + tint, 1 - 0.16 * temperature]) * rng.uniform(0.96, 1.04, 3)
    lo_scale = float(rng.uniform(0.72, 0.86))
    lo_down = float(rng.uniform(0.4, 0.9))
    lo_q = int(rng.integers(35, 75))
    return Camera(
        background=str(rng.choice(BACKGROUNDS)),
        background_seed=int(rng.integers(0, 2**31)),
        horizon=float(rng.uniform(0.45, 0.72)),
        gain=float(rng.uniform(0.65, 1.25)),
        cast_rgb=tuple(float(c) for c in cast / cast.mean()),
        gamma=float(rng.uniform(0.8, 1.25)),
        saturation=float(rng.uniform(0.6, 1.15)),
        light_gradient=float(rng.uniform(0.0, 0.5)),
        light_angle_rad=float(rng.uniform(0, 2 * math.pi)),
        view_probs=tuple(float(p) for p in rng.dirichlet([1.5, 1.5, 1.5])),
        person_scale=(lo_scale, float(min(1.0, lo_scale + rng.uniform(0.08, 0.16)))),
        jitter_x=float(rng.uniform(0.02, 0.08)),
        downscale=(lo_down, float(min(1.0, lo_down + 0.25))),
        blur_radius_px=(0.0, float(rng.uniform(0.3, 1.2))),
        noise_sigma=float(rng.uniform(0.008, 0.035)),
        jpeg_quality=(lo_q, int(min(95, lo_q + 25))),
        occlusion_prob=float(rng.uniform(0.1, 0.35)),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.normal(0, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(small, "F").resize((w + 2 * cell, h + 2 * cell), Image.BILINEAR)
    return np.asarray(img)[cell:cell + h, cell:cell + w]


@lru_cache(maxsize=64)
def _panorama(camera: Camera, height_px: int, width_px: int) -> np.ndarray:
    """A wide strip of the camera's scene (uint8, height_px x 4*width_px x 3); crops are windows of it.

    Drawn once per camera and size: walls / facades / trees above the camera's horizon, floor or ground
    below, a few far passers-by, mild depth-of-field blur and low-frequency shading.
    """
    rng = derive_rng(camera.background_seed)
    h, w = height_px, width_px * 4
    k = h / 128.0  # scene units are pixels of a 128-pixel-tall crop
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    y0 = int(camera.horizon * h)

    def col(base, spread=18.0):
        rgb = np.asarray(base, dtype=np.float64) + rng.normal(0, spread, 3)
        return tuple(int(v) for v in np.clip(rgb, 0, 255))

    def darker(c, f=0.8):
        return tuple(int(v * f) for v in c)

    def choice(options):
        return options[int(rng.integers(len(options)))]

    if camera.background == "corridor":
        wall = col(choice([(196, 192, 180), (168, 176, 184), (206, 198, 176), (150, 150, 148),
                           (186, 170, 150)]))
        floor = col(choice([(120, 112, 100), (156, 156, 150), (96, 78, 66), (128, 134, 130)]))
        d.rectangle([0, 0, w, y0], fill=wall)
        d.rectangle([0, int(y0 - 14 * k), w, y0], fill=darker(wall, 0.85))  # wainscot
        x = int(rng.integers(0, int(30 * k) + 1))
        while x < w:
            dw = int(rng.integers(int(18 * k), int(34 * k)))
            kind = rng.random()
            if kind < 0.45:  # door with frame
                door = col(choice([(92, 66, 48), (120, 124, 130), (70, 80, 96)]), 12)
                d.rectangle([x - 2 * k, y0 * 0.12 - 2 * k, x + dw + 2 * k, y0], fill=darker(wall, 0.7))
                d.rectangle([x, y0 * 0.12, x + dw, y0], fill=door)
                d.rectangle([x + dw - 5 * k, y0 * 0.55, x + dw - 3 * k, y0 * 0.6], fill=(200, 200, 190))
            elif kind < 0.75:  # notice board
                d.rectangle([x, y0 * 0.25, x + dw, y0 * 0.55], fill=col((226, 222, 210), 8))
                for j in range(3):
                    yy = y0 * 0.3 + j * 5 * k
                    d.rectangle([x + 2 * k, yy, x + dw * float(rng.uniform(0.4, 0.9)), yy + 2 * k],
                                fill=col((90, 90, 110), 40))
            else:  # window to the outside
                d.rectangle([x, y0 * 0.1, x + dw, y0 * 0.6], fill=col((200, 214, 226), 10))
                d.line([(x + dw / 2, y0 * 0.1), (x + dw / 2, y0 * 0.6)], fill=darker(wall, 0.6),
                       width=max(1, int(2 * k)))
            x += dw + int(rng.integers(int(20 * k), int(60 * k)))
        d.line([(0, y0), (w, y0)], fill=darker(wall, 0.45), width=max(1, int(2 * k)))
        for yy in range(y0, h):  # floor reflects the lit wall near the horizon
            t = (yy - y0) / max(h - y0, 1)
            d.line([(0, yy), (w, yy)], fill=tuple(int(f * (1.12 - 0.2 * t)) for f in floor))
        y, step = y0 + 3 * k, 4.0 * k
        while y < h:
            d.line([(0, int(y)), (w, int(y))], fill=darker(floor, 0.82), width=1)
            y += step
            step *= 1.35
    elif camera.background == "street":
        facade = col(choice([(150, 88, 70), (196, 184, 160), (134, 134, 138), (178, 168, 150),
                             (110, 100, 90)]))
        glass = col((58, 68, 82), 12)
        d.rectangle([0, 0, w, y0], fill=facade)
        shop_top = int(y0 - 26 * k)
        pitch_x, pitch_y = int(20 * k), int(17 * k)
        for wy in range(int(3 * k), max(int(4 * k), shop_top - int(14 * k)), pitch_y):
            for wx in range(int(rng.integers(0, pitch_x)), w, pitch_x):
                d.rectangle([wx - k, wy - k, wx + 11 * k, wy + 11 * k], fill=darker(facade, 0.75))
                d.rectangle([wx, wy, wx + 10 * k, wy + 10 * k], fill=glass)
        x = 0
        while x < w:  # shop fronts: a sign band over dark glass
            sw_ = int(rng.integers(int(40 * k), int(90 * k)))
            d.rectangle([x, shop_top, x + sw_, shop_top + 7 * k], fill=col(choice(
                [(170, 40, 40), (40, 70, 140), (230, 200, 60), (40, 120, 70), (230, 230, 230)]), 25))
            d.rectangle([x + 2 * k, shop_top + 7 * k, x + sw_ - 2 * k, y0], fill=col((44, 50, 58), 10))
            x += sw_ + int(rng.integers(int(4 * k), int(20 * k)))
        pave = col((136, 134, 128), 10)
        d.rectangle([0, y0, w, h], fill=pave)
        for px in range(0, w, max(4, int(14 * k))):
            d.line([(px, y0), (px - 12 * k, h)], fill=darker(pave, 0.85), width=1)
        y = y0 + 5 * k
        while y < h:
            d.line([(0, int(y)), (w, int(y))], fill=darker(pave, 0.88), width=1)
            y += 9 * k
    elif camera.background == "park":
        sky = col((196, 212, 224), 10)
        d.rectangle([0, 0, w, y0], fill=sky)
        for tx in range(int(rng.integers(0, int(30 * k) + 1)), w, int(38 * k)):
            d.rectangle([tx, y0 * 0.45, tx + 4 * k, y0], fill=col((78, 60, 44), 8))
        for _ in range(w // 5):
            tx, ty = float(rng.uniform(0, w)), float(rng.uniform(-5 * k, y0 * 0.75))
            r = float(rng.uniform(6, 16)) * k
            d.ellipse(_ellipse(tx, ty, r, r * 0.85), fill=col((58, 104, 50), 18))
        d.rectangle([0, y0 - 8 * k, w, y0], fill=col((46, 86, 44), 10))  # hedge
        ground = col(choice([(100, 138, 74), (186, 172, 140), (150, 148, 138)]), 12)
        d.rectangle([0, y0, w, h], fill=ground)
    else:  # plaza: a glass building beyond a paved square
        d.rectangle([0, 0, w, y0], fill=col((212, 212, 206), 12))
        panel = col((104, 124, 144), 15)
        for wx in range(int(rng.integers(0, int(20 * k) + 1)), w, int(30 * k)):
            d.rectangle([wx, 4 * k, wx + 22 * k, y0 - 8 * k], fill=panel)
            d.line([(wx, y0 * 0.45), (wx + 22 * k, y0 * 0.45)], fill=darker(panel, 1.3), width=1)
        stone = col((160, 152, 142), 12)
        d.rectangle([0, y0, w, h], fill=stone)
        y, step = y0 + 2 * k, 3.0 * k
        while y < h:
            d.line([(0, int(y)), (w, int(y))], fill=darker(stone, 0.86), width=1)
            y += step
            step *= 1.3
        for px in range(0, w, max(4, int(16 * k))):
            d.line([(px, y0), (px + (px - w / 2) * 0.4, h)], fill=darker(stone, 0.86), width=1)
        for bx in range(int(rng.integers(0, int(30 * k) + 1)), w, int(70 * k)):
            d.rectangle([bx, y0 - 12 * k, bx + 5 * k, y0 + 4 * k], fill=col((52, 52, 56), 8))
    for _ in range(int(rng.integers(1, 4))):  # far passers-by, standing on the horizon
        far_h = max(16, int(h * float(rng.uniform(0.3, 0.5))))
        far = render_person(sample_identity(rng), VIEWS[int(rng.integers(4))], far_h, rng)
        img.paste(far, (int(rng.uniform(0, w - far.width)), int(y0 + 0.08 * far_h - far_h)), far)
    img = img.filter(ImageFilter.GaussianBlur(0.7 * k))  # the scene is out of focus behind the person
    arr = np.asarray(img, dtype=np.float32)
    arr *= (1.0 + 0.1 * _smooth_noise(rng, h, w, max(2, int(8 * k))))[..., None]
    arr += rng.normal(0, 3, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def render_background(camera: Camera, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A window of the camera's scene, ``size = (height_px, width_px)``, without camera effects."""
    h, w = _check_size(size)
    pano = _panorama(camera, h, w)
    x0 = int(rng.integers(0, pano.shape[1] - w + 1))
    return Image.fromarray(pano[:, x0:x0 + w])


def apply_camera(img: Image.Image, camera: Camera, rng: np.random.Generator) -> Image.Image:
    """Image formation of ``camera`` on an RGB crop: resolution, blur, light, colour cast, gamma, noise."""
    w, h = img.size
    f = float(rng.uniform(*camera.downscale))
    if f < 0.97:
        small = (max(8, round(w * f)), max(8, round(h * f)))
        img = img.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    radius = float(rng.uniform(*camera.blur_radius_px))
    if radius > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    a = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    angle = camera.light_angle_rad
    ramp = 1.0 + camera.light_gradient * (math.cos(angle) * xs + math.sin(angle) * ys)
    gain = camera.gain * float(rng.uniform(0.88, 1.12))
    a *= (gain * ramp)[..., None] * np.asarray(camera.cast_rgb, dtype=np.float32)
    gray = a.mean(axis=-1, keepdims=True)
    a = gray + camera.saturation * (a - gray)
    np.clip(a, 0.0, 1.0, out=a)
    a = _gamma_lut(camera.gamma)[(a * 255.0 + 0.5).astype(np.uint8)]  # a ** gamma, through a table
    a += rng.standard_normal(a.shape, dtype=np.float32) * (255.0 * camera.noise_sigma)
    np.clip(a, 0.0, 255.0, out=a)
    return Image.fromarray((a + 0.5).astype(np.uint8), "RGB")


@lru_cache(maxsize=64)
def _gamma_lut(gamma: float) -> np.ndarray:
    return (np.linspace(0.0, 1.0, 256, dtype=np.float64) ** gamma * 255.0).astype(np.float32)


def _sample_view(camera: Camera, rng: np.random.Generator) -> str:
    k = int(rng.choice(3, p=np.asarray(camera.view_probs) / sum(camera.view_probs)))
    return ("front", "back", "left" if rng.random() < 0.5 else "right")[k]


def _draw_occluder(img: Image.Image, camera: Camera, rng: np.random.Generator) -> None:
    """A static object in front of the person: a pole, or a low object (bench, car, railing, bin)."""
    w, h = img.size
    d = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(20, 220, 3))
    if rng.random() < 0.4:
        pw = int(rng.uniform(0.1, 0.25) * w)
        x = int(rng.uniform(-0.1, 0.9) * w)
        d.rectangle([x, 0, x + pw, h], fill=colour)
        d.rectangle([x + pw // 3, 0, x + pw // 3 + 1, h], fill=tuple(min(255, c + 40) for c in colour))
    else:
        top = int(rng.uniform(0.55, 0.8) * h)
        x0 = int(rng.uniform(-0.6, 0.2) * w)
        x1 = x0 + int(rng.uniform(0.8, 1.6) * w)
        if rng.random() < 0.5:  # railing: horizontal bars
            for k in range(3):
                y = top + k * (h - top) // 3
                d.rectangle([x0, y, x1, y + max(2, h // 40)], fill=colour)
            for x in range(x0, x1, max(6, w // 6)):
                d.rectangle([x, top, x + 2, h], fill=colour)
        else:
            d.rounded_rectangle([x0, top, x1, h + 4], radius=max(2, w // 10), fill=colour)


def _place_person(img: Image.Image, person: Image.Image, x_center: float, y_feet: float) -> None:
    """Paste an RGBA person (feet at y_feet) with a soft ground shadow."""
    pw, ph = person.size
    shadow = Image.new("L", img.size, 0)
    ImageDraw.Draw(shadow).ellipse(_ellipse(x_center, y_feet, pw * 0.42, max(2.0, ph * 0.025)), fill=90)
    img.paste((0, 0, 0), (0, 0), shadow)
    img.paste(person, (int(round(x_center - pw / 2)), int(round(y_feet - ph))), person)


def render_crop(identity: Identity, camera: Camera, rng: np.random.Generator,
                size: tuple[int, int] = (128, 64)) -> Image.Image:
    """One detection crop of ``identity`` seen by ``camera``: RGB, ``size = (height_px, width_px)``.

    The person is drawn in a view drawn from the camera's mix, scaled and shifted by the camera's jitter,
    placed in a window of its scene, possibly occluded (another passer-by or an object), and passed
    through the camera's image formation (:func:`apply_camera`). JPEG compression is left to the writer.
    """
    h, w = _check_size(size)
    img = render_background(camera, (h, w), rng)
    view = _sample_view(camera, rng)
    height = max(16, round(float(rng.uniform(*camera.person_scale)) * h))
    person = render_person(identity, view, height, rng)
    x_center = w / 2 + float(rng.normal(0, camera.jitter_x)) * w
    y_feet = h - float(rng.uniform(0.0, 0.07)) * h
    _place_person(img, person, x_center, y_feet)
    if rng.random() < camera.occlusion_prob:
        if rng.random() < 0.45:  # another passer-by in front
            other = sample_identity(rng)
            o_height = max(16, round(height * float(rng.uniform(0.95, 1.15))))
            o_view = _sample_view(camera, rng)
            side = 1.0 if rng.random() < 0.5 else -1.0
            o_x = x_center + side * float(rng.uniform(0.45, 0.75)) * w
            o_feet = y_feet + float(rng.uniform(0, 0.06)) * h
            _place_person(img, render_person(other, o_view, o_height, rng), o_x, o_feet)
        else:
            _draw_occluder(img, camera, rng)
    return apply_camera(img, camera, rng)


def _render_stray(camera: Camera, rng: np.random.Generator, size: tuple[int, int],
                  identity: Identity) -> Image.Image:
    """A bad detection (distractor / junk): background only, part of a body, or a person cut by the border."""
    h, w = _check_size(size)
    img = render_background(camera, (h, w), rng)
    kind = rng.random()
    if kind < 0.3:
        if rng.random() < 0.5:
            _draw_occluder(img, camera, rng)
    elif kind < 0.65:  # zoomed-in part of a body
        height = round(h * float(rng.uniform(1.4, 2.4)))
        person = render_person(identity, _sample_view(camera, rng), height, rng)
        y_feet = h + float(rng.uniform(-0.1, 1.0)) * (height - h)
        _place_person(img, person, w / 2 + float(rng.normal(0, 0.15)) * w, y_feet)
    else:  # person half outside the box
        height = round(h * float(rng.uniform(*camera.person_scale)))
        person = render_person(identity, _sample_view(camera, rng), height, rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        x_center = w / 2 + side * float(rng.uniform(0.35, 0.6)) * w
        _place_person(img, person, x_center, h - float(rng.uniform(0, 0.1)) * h)
    return apply_camera(img, camera, rng)


def _check_size(size, minimum: tuple[int, int] = (32, 16)) -> tuple[int, int]:
    """``size`` as ``(height_px, width_px)`` ints, each at least ``minimum``; else ``ValueError``."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height_px, width_px), got {size!r}") from None
    if h < minimum[0] or w < minimum[1]:
        raise ValueError(f"size must be at least {tuple(minimum)} pixels (height, width), got {size!r}")
    return h, w


# --------------------------------------------------------------------------------------------------
# Dataset writer: the Market1501 layout


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
        _check_size((self.height_px, self.width_px))


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
    perm = derive_rng(params.seed, _ROLE_SPLIT).permutation(params.ids_train + params.ids_test) + 1
    return sorted(int(p) for p in perm[:params.ids_train]), sorted(int(p) for p in perm[params.ids_train:])


def _plan(params: SynthParams) -> list[_Spec]:
    """Every image of the dataset, in a fixed order; pure function of ``params``."""
    train_pids, test_pids = _split_pids(params)
    specs = []
    for split_pids, is_test in ((train_pids, False), (test_pids, True)):
        for pid in split_pids:
            rng = derive_rng(params.seed, _ROLE_TRACK, pid)
            n_cams = int(rng.integers(params.min_cameras_per_id, params.cameras + 1))
            cams = sorted(int(c) + 1 for c in rng.choice(params.cameras, n_cams, replace=False))
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
    for kind, role, count, prefix in (("distractor", _ROLE_DISTRACTOR, params.distractors, "0000"),
                                      ("junk", _ROLE_JUNK, params.junk, "-1")):
        for k in range(count):
            rng = derive_rng(params.seed, role, k)
            cam = int(rng.integers(1, params.cameras + 1))
            seq, bbox = int(rng.integers(1, 7)), int(rng.integers(1, 9))
            name = f"{prefix}_c{cam}s{seq}_{200_000 + 100 * k:06d}_{bbox:02d}.jpg"
            specs.append(_Spec("bounding_box_test", name, kind, 0 if kind == "distractor" else -1, cam, k))
    return specs


@lru_cache(maxsize=4096)
def _identity_of(seed: int, pid: int) -> Identity:
    """The appearance of ``pid`` in every dataset written with ``seed``."""
    return sample_identity(derive_rng(seed, _ROLE_IDENTITY, pid))


@lru_cache(maxsize=64)
def _camera_of(seed: int, cam: int) -> Camera:
    """Camera ``cam`` (1-based) of every dataset written with ``seed``."""
    return sample_camera(derive_rng(seed, _ROLE_CAMERA, cam))


def _render_spec(params: SynthParams, spec: _Spec) -> bytes:
    """The JPEG bytes of one planned image."""
    size = (params.height_px, params.width_px)
    camera = _camera_of(params.seed, spec.cam)
    if spec.kind == "person":
        rng = derive_rng(params.seed, _ROLE_IMAGE, spec.pid, spec.cam, spec.index)
        img = render_crop(_identity_of(params.seed, spec.pid), camera, rng, size)
    else:
        role = _ROLE_DISTRACTOR if spec.kind == "distractor" else _ROLE_JUNK
        rng = derive_rng(params.seed, _ROLE_IMAGE, role, spec.index)
        stray = sample_identity(derive_rng(params.seed, _ROLE_STRAY_IDENTITY, role, spec.index))
        img = _render_stray(camera, rng, size, stray)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(camera.jpeg_quality[0], camera.jpeg_quality[1] + 1)))
    return buf.getvalue()




def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == __name__ else None


def _manifest(params: SynthParams, complete: bool, counts: dict | None = None) -> bytes:
    doc = {"generator": __name__, "version": GENERATOR_VERSION, "complete": complete,
           "params": asdict(params), "counts": counts or {}}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def is_complete(out: str | os.PathLike, params: SynthParams) -> bool:
    """True if ``out`` holds a finished dataset written by this generator version with ``params``."""
    out = Path(out)
    manifest = _read_manifest(out)
    if manifest is None or not manifest.get("complete") or manifest.get("version") != GENERATOR_VERSION:
        return False
    if manifest.get("params") != asdict(params):
        return False
    counts = manifest.get("counts", {})
    for split in SPLIT_DIRS:
        d = out / split
        if not d.is_dir() or sum(1 for p in d.iterdir() if p.suffix == ".jpg") != counts.get(split):
            return False
    return True


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
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a directory")
    if is_complete(out, params):
        return json.loads((out / MANIFEST_NAME).read_text())
    previous = _read_manifest(out)
    if previous is None and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"refusing to write a synthetic dataset into {out}: it is not empty and has no "
                         f"{MANIFEST_NAME} from a previous synthetic run (choose an empty or new folder)")
    resume = previous is not None and previous.get("params") == asdict(params) \
        and previous.get("version") == GENERATOR_VERSION
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLIT_DIRS:
        (out / split).mkdir(exist_ok=True)
    write_bytes(out / MANIFEST_NAME, _manifest(params, complete=False))

    specs = _plan(params)
    wanted = {split: set() for split in SPLIT_DIRS}
    for done, spec in enumerate(specs, start=1):
        wanted[spec.split].add(spec.name)
        path = out / spec.split / spec.name
        if not (resume and path.is_file()):  # else written atomically by an interrupted run: same bytes
            write_bytes(path, _render_spec(params, spec))
        if progress is not None:
            progress(done, len(specs))
    for split in SPLIT_DIRS:  # images of a previous run with other params, temp files of a killed one
        for p in (out / split).iterdir():
            if (p.suffix == ".jpg" and p.name not in wanted[split]) or p.name.startswith(TEMP_PREFIX):
                p.unlink()

    counts = {split: len(names) for split, names in wanted.items()}
    counts.update({"distractors": params.distractors, "junk": params.junk,
                   "ids_train": params.ids_train, "ids_test": params.ids_test})
    write_bytes(out / MANIFEST_NAME, _manifest(params, complete=True, counts=counts))
    return json.loads((out / MANIFEST_NAME).read_text())


# --------------------------------------------------------------------------------------------------
# Contact sheet


def contact_sheet(path: str | os.PathLike, *, seed: int = 0, num_ids: int = 6, cameras: int = 6,
                  size: tuple[int, int] = (128, 64), colors: int | None = 256) -> Path:
    """Write a PNG grid of synthetic persons to ``path`` and return the path.

    One row per identity: the identities and cameras (c1..c{cameras}) of a dataset written with ``seed``
    (pids 1..num_ids). The first three columns are the clean renders (front, back, side on grey, no camera
    effects), the others one crop per camera. ``colors`` quantises the sheet to that many colours to keep
    the file small (``None``: full RGB). ``docs/synthetic_contact_sheet.png`` is
    ``contact_sheet("docs/synthetic_contact_sheet.png")``.
    """
    if num_ids < 1 or not 2 <= cameras <= 9:
        raise ValueError(f"num_ids must be >= 1 and cameras in 2..9, got {num_ids} and {cameras}")
    if colors is not None and not 2 <= colors <= 256:
        raise ValueError(f"colors must be in 2..256 or None, got {colors}")
    h, w = _check_size(size)
    gap, label_h, n_clean = 2, 12, 3
    cols = n_clean + cameras
    sheet = Image.new("RGB", (cols * (w + gap) + gap * 3, label_h + num_ids * (h + gap)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)

    def x_of(c: int) -> int:
        return gap + c * (w + gap) + (gap * 3 if c >= n_clean else 0)

    for c, label in enumerate(["front", "back", "side"] + [f"c{k}" for k in range(1, cameras + 1)]):
        d.text((x_of(c) + 2, 0), label, fill=(0, 0, 0))
    for r, pid in enumerate(range(1, num_ids + 1)):
        identity = _identity_of(seed, pid)
        y = label_h + r * (h + gap)
        for c, view in enumerate(("front", "back", "right")):
            person = render_person(identity, view, round(h * 0.9), derive_rng(seed, _ROLE_IMAGE, pid, 0, c))
            cell = Image.new("RGB", (w, h), (150, 150, 150))
            cell.paste(person, ((w - person.width) // 2, h - person.height - 2), person)
            sheet.paste(cell, (x_of(c), y))
        for k in range(1, cameras + 1):
            rng = derive_rng(seed, _ROLE_IMAGE, pid, k, 1)
            sheet.paste(render_crop(identity, _camera_of(seed, k), rng, (h, w)), (x_of(n_clean + k - 1), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if colors is not None:
        sheet = sheet.quantize(colors, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return path
