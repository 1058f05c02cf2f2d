"""Person renderer: one :class:`Identity` in one view, as an RGBA image, without camera effects.

:func:`render_person` draws at twice the size and reduces (cheap anti-aliasing). :func:`_figure` places
the body parts for the identity, view and pose (it makes all of the pose's random draws); the ``_draw_*``
functions each paint one part from that placement, called back to front by :func:`render_person`; the
figure is then shaded as a round body lit from above (:func:`_shade_body`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .identity import RGB, Identity

__all__ = ["VIEWS", "render_person"]

VIEWS = ("front", "back", "left", "right")
_SUPERSAMPLE = 2  # drawn at twice the size, then reduced: cheap anti-aliasing

Point = tuple[float, float]


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


def ellipse_box(cx: float, cy: float, rx: float, ry: float):
    """The bounding box ``[x0, y0, x1, y1]`` of an ellipse, as PIL's ``ellipse`` takes it."""
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


# --------------------------------------------------------------------------------------------------
# Placement: where each part goes


@dataclass(frozen=True)
class _Figure:
    """Where the parts of one person go on the supersampled canvas (canvas pixels, y downwards)."""

    identity: Identity
    view: str
    side: bool  # a side view (left / right)
    W: int  # canvas width and height
    H: int
    cx: float  # the body's axis
    head_h: float
    head_w: float
    y_top: float  # top of the head
    y_chin: float
    y_sh: float  # shoulders
    y_hip: float
    y_bottom: float  # lower edge of the upper garment
    sw: float  # shoulder half-width
    hw: float  # hip half-width
    aw: float  # arm width
    lw: float  # leg width
    right_x: float  # the person's right side: -1 image left (front view), +1 image right (back view)
    legs: tuple[tuple[Point, Point, float], ...]  # (hip, ankle, shade), far leg first
    arms: tuple[tuple[Point, Point, float], ...]  # (shoulder, wrist, shade), far arm first

    def u(self, v: float) -> float:
        """Body units (fractions of the person's height) -> canvas pixels."""
        return v * self.H


def _figure(identity: Identity, view: str, height_px: int, rng: np.random.Generator) -> _Figure:
    """Place the parts of ``identity`` seen from ``view``; ``rng`` draws the pose (stride, arm swing)."""
    H, W = height_px * _SUPERSAMPLE, math.ceil(0.55 * height_px) * _SUPERSAMPLE
    side = view in ("left", "right")
    b = identity.build
    cx = W / 2

    def u(v: float) -> float:  # body units -> canvas px
        return v * H

    head_h = u(identity.head_ratio)
    y_top = u(0.01)
    y_chin = y_top + head_h
    y_sh = y_chin + u(0.025)
    y_sole = u(0.995)
    stride = float(rng.uniform(0.12, 0.34)) if side else float(rng.uniform(0.0, 0.05))
    swing = float(rng.uniform(0.1, 0.4)) if side else float(rng.uniform(0.0, 0.06))
    leg_len = u(identity.leg_ratio)
    y_hip = y_sole - leg_len * (math.cos(stride) if side else 1.0) - u(0.015)
    sw = u((0.078 if side else 0.125) * b)  # shoulder half-width
    aw = u(0.046 * b)
    arm_len = (y_hip + u(0.06)) - (y_sh + u(0.03))

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

    return _Figure(
        identity=identity, view=view, side=side, W=W, H=H, cx=cx,
        head_h=head_h, head_w=head_h * (0.86 if side else 0.76), y_top=y_top, y_chin=y_chin, y_sh=y_sh,
        y_hip=y_hip, y_bottom=y_hip + u(identity.upper_extra), sw=sw,
        hw=u((0.072 if side else 0.098) * b), aw=aw, lw=u(0.068 * b),
        right_x=-1.0 if view == "front" else 1.0, legs=tuple(legs), arms=tuple(arms),
    )


# --------------------------------------------------------------------------------------------------
# Painting: one part each


@dataclass(frozen=True)
class _Canvas:
    """The supersampled RGBA image being drawn, its ImageDraw, and the upper garment's woven fabric."""

    image: Image.Image
    draw: ImageDraw.ImageDraw
    fabric: Image.Image | None  # stripes / checks over the whole canvas; None: a plain colour


def _paste_fabric(c: _Canvas, polygon) -> None:
    """Woven fabric through a polygon mask, limited to the polygon's box."""
    W, H = c.image.size
    x0 = max(0, int(min(x for x, _ in polygon)))
    y0 = max(0, int(min(y for _, y in polygon)))
    x1 = min(W, int(math.ceil(max(x for x, _ in polygon))) + 1)
    y1 = min(H, int(math.ceil(max(y for _, y in polygon))) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
    c.image.paste(c.fabric.crop((x0, y0, x1, y1)), (x0, y0), mask)


def _fill_upper(c: _Canvas, f: _Figure, polygon, shade: float) -> None:
    """A piece of the upper garment: its fabric in full light, else its plain (shaded) colour."""
    if c.fabric is None or shade != 1.0:
        c.draw.polygon(polygon, fill=_shade(f.identity.upper_rgb, shade))
    else:
        _paste_fabric(c, polygon)


def _draw_leg(c: _Canvas, f: _Figure, hip: Point, ankle: Point, shade: float) -> None:
    identity, u, lw = f.identity, f.u, f.lw
    c.draw.polygon(_limb(hip, ankle, lw, lw * 0.72), fill=_shade(identity.skin_rgb, shade))
    if identity.lower_kind == "trousers":
        c.draw.polygon(_limb(hip, ankle, lw, lw * 0.74), fill=_shade(identity.lower_rgb, shade))
    elif identity.lower_kind == "shorts":
        c.draw.polygon(_limb(hip, _lerp(hip, ankle, 0.45), lw * 1.08, lw * 0.98),
                       fill=_shade(identity.lower_rgb, shade))
    sx = ankle[0] + (u(0.03) * (1 if f.view == "right" else -1) if f.side else 0.0)
    shoe_rx = u(0.055 if f.side else 0.04) * identity.build
    c.draw.ellipse(ellipse_box(sx, ankle[1] + u(0.012), shoe_rx, u(0.02)),
                   fill=_shade(identity.shoes_rgb, shade))


def _draw_arm(c: _Canvas, f: _Figure, sh: Point, wrist: Point, shade: float) -> None:
    identity, u, aw = f.identity, f.u, f.aw
    c.draw.polygon(_limb(sh, wrist, aw, aw * 0.8), fill=_shade(identity.skin_rgb, shade))
    end = wrist if identity.long_sleeves else _lerp(sh, wrist, 0.4)
    _fill_upper(c, f, _limb(sh, end, aw * 1.1, aw * 0.95), shade)
    c.draw.ellipse(ellipse_box(wrist[0], wrist[1] + u(0.012), u(0.02), u(0.024)),
                   fill=_shade(identity.skin_rgb, shade))


def _draw_hair_back(c: _Canvas, f: _Figure) -> None:
    """Long hair falling behind the shoulders (front / side views)."""
    if f.identity.hair_style != "long":
        return
    cx, head_w = f.cx, f.head_w
    x0 = cx - head_w * 0.62 if not f.side else cx - head_w * (0.7 if f.view == "right" else 0.3)
    x1 = x0 + head_w * (1.24 if not f.side else 1.0)
    c.draw.rounded_rectangle([x0, f.y_top + f.head_h * 0.2, x1, f.y_sh + f.u(0.08)], radius=head_w * 0.3,
                             fill=_shade(f.identity.hair_rgb, 1.0))


def _draw_backpack_body(c: _Canvas, f: _Figure) -> None:
    """The backpack itself: beside the back in a side view, over it in a back view."""
    if f.identity.bag_kind != "backpack":
        return
    cx, sw, y_sh, u, bag_rgb = f.cx, f.sw, f.y_sh, f.u, f.identity.bag_rgb
    if f.side:
        back = -1 if f.view == "right" else 1
        x_in = cx + back * sw * 0.7
        x_out = cx + back * (sw + u(0.075))
        c.draw.rounded_rectangle([min(x_in, x_out), y_sh + u(0.02), max(x_in, x_out), y_sh + u(0.21)],
                                 radius=u(0.02), fill=_shade(bag_rgb, 0.95))
    elif f.view == "back":
        c.draw.rounded_rectangle([cx - sw * 0.78, y_sh + u(0.015), cx + sw * 0.78, y_sh + u(0.22)],
                                 radius=u(0.025), fill=_shade(bag_rgb, 1.0))
        c.draw.rectangle([cx - sw * 0.5, y_sh + u(0.12), cx + sw * 0.5, y_sh + u(0.17)],
                         fill=_shade(bag_rgb, 0.8))


def _draw_hips(c: _Canvas, f: _Figure) -> None:
    """A skirt, or a crotch block so the legs join the hips."""
    cx, hw, y_hip, u = f.cx, f.hw, f.y_hip, f.u
    flare, drop = (1.45, 0.2) if f.identity.lower_kind == "skirt" else (0.9, 0.07)
    c.draw.polygon([(cx - hw, y_hip - u(0.02)), (cx + hw, y_hip - u(0.02)),
                    (cx + hw * flare, y_hip + u(drop)), (cx - hw * flare, y_hip + u(drop))],
                   fill=_shade(f.identity.lower_rgb, 1.0))


def _draw_torso(c: _Canvas, f: _Figure) -> None:
    """The neck and the upper garment with its fabric."""
    cx, sw, hw, y_sh, u = f.cx, f.sw, f.hw, f.y_sh, f.u
    torso = [(cx - sw * 0.35, y_sh), (cx + sw * 0.35, y_sh), (cx + sw, y_sh + u(0.02)),
             (cx + hw * 1.02, f.y_bottom), (cx - hw * 1.02, f.y_bottom), (cx - sw, y_sh + u(0.02))]
    neck = [cx - f.head_w * 0.18, f.y_chin - u(0.01), cx + f.head_w * 0.18, y_sh + u(0.01)]
    c.draw.rectangle(neck, fill=_shade(f.identity.skin_rgb, 0.9))
    _fill_upper(c, f, torso, 1.0)


def _draw_front_pattern(c: _Canvas, f: _Figure) -> None:
    """The upper garment's second colour: a chest band, an open jacket's inside, or a front logo."""
    identity, cx, sw, hw, y_sh, y_bottom, u = f.identity, f.cx, f.sw, f.hw, f.y_sh, f.y_bottom, f.u
    pat = identity.upper_pattern
    c2 = _shade(identity.upper_rgb2, 1.0)
    if pat == "chest_band":  # the torso polygon between two heights
        yb0, yb1 = y_sh + u(0.07), y_sh + u(0.12)

        def x_at(y, sgn):  # torso side edge at height y
            t = (y - (y_sh + u(0.02))) / max(y_bottom - (y_sh + u(0.02)), 1.0)
            return cx + sgn * (sw + (hw * 1.02 - sw) * t)

        band = [(x_at(yb0, -1), yb0), (x_at(yb0, 1), yb0), (x_at(yb1, 1), yb1), (x_at(yb1, -1), yb1)]
        c.draw.polygon(band, fill=c2)
    elif pat == "open_jacket" and f.view != "back":
        if f.side:
            front = 1 if f.view == "right" else -1
            x0, x1 = sorted((cx + front * sw * 0.55, cx + front * sw * 0.95))
        else:
            x0, x1 = cx - sw * 0.3, cx + sw * 0.3
        c.draw.polygon([(x0, y_sh + u(0.005)), (x1, y_sh + u(0.005)), (x1, y_bottom), (x0, y_bottom)],
                       fill=c2)
    elif pat == "logo" and f.view == "front":
        r = u(0.04)
        ly = y_sh + u(0.09)
        if identity.logo_shape == "circle":
            c.draw.ellipse(ellipse_box(cx, ly, r, r), fill=c2)
        elif identity.logo_shape == "square":
            c.draw.rectangle(ellipse_box(cx, ly, r * 0.9, r * 0.9), fill=c2)
        elif identity.logo_shape == "diamond":
            c.draw.polygon([(cx, ly - r * 1.2), (cx + r, ly), (cx, ly + r * 1.2), (cx - r, ly)], fill=c2)
        else:
            for k in range(3):
                y = ly - r + k * r * 0.8
                c.draw.rectangle([cx - r * 1.2, y, cx + r * 1.2, y + r * 0.45], fill=c2)


def _strap_width(f: _Figure) -> int:
    return max(2, int(f.u(0.018)))


def _draw_bag_over_torso(c: _Canvas, f: _Figure) -> None:
    """Bag straps and bags seen over the torso: a backpack (its body from behind, its straps otherwise),
    or a shoulder bag on its strap across the chest."""
    identity, cx, sw, y_sh, u = f.identity, f.cx, f.sw, f.y_sh, f.u
    bag = _shade(identity.bag_rgb, 1.0)
    strap_w = _strap_width(f)
    if identity.bag_kind == "backpack":
        if f.view == "back":
            _draw_backpack_body(c, f)
        elif f.view == "front":
            for sgn in (-1, 1):
                x = cx + sgn * sw * 0.55
                c.draw.line([(x, y_sh + u(0.005)), (x + sgn * u(0.01), y_sh + u(0.17))],
                            fill=bag, width=strap_w)
        elif f.side:
            front = 1 if f.view == "right" else -1
            x = cx + front * sw * 0.1
            c.draw.line([(x, y_sh), (x - front * u(0.02), y_sh + u(0.16))], fill=bag, width=strap_w)
    elif identity.bag_kind == "shoulder":
        right_x = f.right_x
        bx = cx + (right_x if identity.bag_on_right else -right_x) * (f.hw + u(0.03)) if not f.side else cx
        sx = cx - (bx - cx) * 0.8 if not f.side else cx
        c.draw.line([(sx, y_sh + u(0.005)), (bx, f.y_hip - u(0.01))], fill=bag, width=strap_w)
        c.draw.rounded_rectangle(ellipse_box(bx, f.y_hip + u(0.01), u(0.05), u(0.042)), radius=u(0.01),
                                 fill=bag)


def _draw_handbag(c: _Canvas, f: _Figure) -> None:
    """A handbag hanging from the hand on the bag's side (the near hand in a side view)."""
    identity, u = f.identity, f.u
    if identity.bag_kind != "handbag":
        return
    bag = _shade(identity.bag_rgb, 1.0)
    strap_w = _strap_width(f)
    bag_x = f.right_x if identity.bag_on_right else -f.right_x
    hand = f.arms[1] if f.side else f.arms[0 if bag_x < 0 else 1]
    wx, wy = hand[1]
    c.draw.line([(wx, wy), (wx, wy + u(0.03))], fill=bag, width=strap_w)
    c.draw.rounded_rectangle(ellipse_box(wx, wy + u(0.07), u(0.045), u(0.04)), radius=u(0.01), fill=bag)


def _head_x(f: _Figure) -> float:
    """The head's centre line: a little towards where the person faces in a side view."""
    return f.cx + (f.u(0.012) * (1 if f.view == "right" else -1) if f.side else 0.0)


def _head_box(f: _Figure) -> list[float]:
    hcx = _head_x(f)
    return [hcx - f.head_w / 2, f.y_top, hcx + f.head_w / 2, f.y_top + f.head_h]


def _draw_head(c: _Canvas, f: _Figure) -> None:
    """Head, hair (with long hair falling down the back in a back view), face and eyes."""
    identity, view, u = f.identity, f.view, f.u
    hcx, head_box, head_w, head_h, y_top = _head_x(f), _head_box(f), f.head_w, f.head_h, f.y_top
    skin = identity.skin_rgb
    hair = _shade(identity.hair_rgb, 1.0)
    c.draw.ellipse(head_box, fill=_shade(skin, 1.0))
    if identity.hair_style != "bald":
        grow = u(0.006)
        hair_box = [head_box[0] - grow, head_box[1] - grow, head_box[2] + grow, head_box[3] - head_h * 0.1]
        c.draw.ellipse(hair_box, fill=hair)
        if view == "back":
            if identity.hair_style == "long":
                fall = [hcx - head_w * 0.6, y_top + head_h * 0.3, hcx + head_w * 0.6, f.y_sh + u(0.09)]
                c.draw.rounded_rectangle(fall, radius=head_w * 0.3, fill=hair)
        else:
            if f.side:
                front = 1 if view == "right" else -1
                face = ellipse_box(hcx + front * head_w * 0.2, y_top + head_h * 0.62, head_w * 0.32,
                                   head_h * 0.36)
            else:
                face = ellipse_box(hcx, y_top + head_h * 0.62, head_w * 0.4, head_h * 0.37)
            c.draw.ellipse(face, fill=_shade(skin, 1.0))
    if view == "front":
        for sgn in (-1, 1):
            c.draw.ellipse(ellipse_box(hcx + sgn * head_w * 0.18, y_top + head_h * 0.56, u(0.008), u(0.006)),
                           fill=(40, 30, 30, 255))
    elif f.side:
        front = 1 if view == "right" else -1
        c.draw.ellipse(ellipse_box(hcx + front * head_w * 0.3, y_top + head_h * 0.56, u(0.006), u(0.006)),
                       fill=(40, 30, 30, 255))


def _draw_hat(c: _Canvas, f: _Figure) -> None:
    """A cap over the hair, its brim towards where the person faces."""
    if f.identity.hat_rgb is None:
        return
    hcx, head_box, head_w, head_h, y_top = _head_x(f), _head_box(f), f.head_w, f.head_h, f.y_top
    hat = _shade(f.identity.hat_rgb, 1.0)
    grow = f.u(0.01)
    c.draw.chord([head_box[0] - grow, head_box[1] - grow, head_box[2] + grow, head_box[3] - head_h * 0.15],
                 180, 360, fill=hat)
    if f.view == "front":
        brim = [hcx - head_w * 0.5, y_top + head_h * 0.36, hcx + head_w * 0.5, y_top + head_h * 0.44]
        c.draw.rectangle(brim, fill=hat)
    elif f.side:
        front = 1 if f.view == "right" else -1
        x0, x1 = sorted((hcx, hcx + front * head_w * 0.85))
        c.draw.rectangle([x0, y_top + head_h * 0.36, x1, y_top + head_h * 0.44], fill=hat)


def _shade_body(image: Image.Image, f: _Figure) -> Image.Image:
    """Reduce the canvas to the output size and shade it: a round body (darker towards the silhouette's
    sides), light from above."""
    ss = _SUPERSAMPLE
    out_w, height_px = f.W // ss, f.H // ss
    arr = np.asarray(image.reduce(ss), dtype=np.float32)
    xs = np.abs(np.arange(out_w, dtype=np.float32) + 0.5 - f.cx / ss) / max(f.sw * 1.4 / ss, 1.0)
    col = 1.0 - 0.28 * np.clip(xs, 0, 1) ** 2
    row = 1.06 - 0.12 * np.arange(height_px, dtype=np.float32) / height_px
    arr[..., :3] *= (row[:, None] * col[None, :])[..., None]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


# --------------------------------------------------------------------------------------------------
# The renderer


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
    f = _figure(identity, view, int(height_px), rng)
    image = Image.new("RGBA", (f.W, f.H), (0, 0, 0, 0))
    woven = identity.upper_pattern in ("stripes", "checks")
    c = _Canvas(image, ImageDraw.Draw(image), _pattern_fill(identity, (f.W, f.H), f.H) if woven else None)

    # back to front
    if f.side:  # the far arm and leg, and a backpack beside the back
        _draw_arm(c, f, *f.arms[0])
        _draw_leg(c, f, *f.legs[0])
        _draw_backpack_body(c, f)
    if view != "back":
        _draw_hair_back(c, f)
    for leg in f.legs[(1 if f.side else 0):]:
        _draw_leg(c, f, *leg)
    _draw_hips(c, f)
    _draw_torso(c, f)
    _draw_front_pattern(c, f)
    _draw_bag_over_torso(c, f)
    for arm in f.arms[(1 if f.side else 0):]:
        _draw_arm(c, f, *arm)
    _draw_handbag(c, f)
    _draw_head(c, f)
    _draw_hat(c, f)
    return _shade_body(image, f)
