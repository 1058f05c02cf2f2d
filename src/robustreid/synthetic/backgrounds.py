"""Backgrounds: the scene behind the persons of one camera.

Each camera's scene is painted once per image size as a wide strip (:func:`_panorama`), four crops wide:
walls / facades / trees above the camera's horizon, floor or ground below (one painter per kind of
:data:`~robustreid.synthetic.camera.BACKGROUNDS`), a few far passers-by, a mild depth-of-field blur and
low-frequency shading. :func:`render_background` cuts a window out of it. Every draw comes from the
camera's ``background_seed``, so a camera always looks at the same place.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .camera import Camera, check_size
from .identity import sample_identity
from .person import VIEWS, ellipse_box, render_person
from .streams import derive_rng

__all__ = ["render_background"]


def _colour(rng: np.random.Generator, base, spread: float = 18.0) -> tuple[int, int, int]:
    """``base`` varied by a normal error of ``spread`` per channel."""
    rgb = np.asarray(base, dtype=np.float64) + rng.normal(0, spread, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _darker(c, f: float = 0.8) -> tuple[int, int, int]:
    return tuple(int(v * f) for v in c)


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _paint_corridor(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, y0: int,
                    k: float) -> None:
    """A corridor wall with doors, notice boards and windows over a receding tiled floor."""
    wall = _colour(rng, _choice(rng, [(196, 192, 180), (168, 176, 184), (206, 198, 176), (150, 150, 148),
                                      (186, 170, 150)]))
    floor = _colour(rng, _choice(rng, [(120, 112, 100), (156, 156, 150), (96, 78, 66), (128, 134, 130)]))
    d.rectangle([0, 0, w, y0], fill=wall)
    d.rectangle([0, int(y0 - 14 * k), w, y0], fill=_darker(wall, 0.85))  # wainscot
    x = int(rng.integers(0, int(30 * k) + 1))
    while x < w:
        dw = int(rng.integers(int(18 * k), int(34 * k)))
        kind = rng.random()
        if kind < 0.45:  # door with frame
            door = _colour(rng, _choice(rng, [(92, 66, 48), (120, 124, 130), (70, 80, 96)]), 12)
            d.rectangle([x - 2 * k, y0 * 0.12 - 2 * k, x + dw + 2 * k, y0], fill=_darker(wall, 0.7))
            d.rectangle([x, y0 * 0.12, x + dw, y0], fill=door)
            d.rectangle([x + dw - 5 * k, y0 * 0.55, x + dw - 3 * k, y0 * 0.6], fill=(200, 200, 190))
        elif kind < 0.75:  # notice board
            d.rectangle([x, y0 * 0.25, x + dw, y0 * 0.55], fill=_colour(rng, (226, 222, 210), 8))
            for j in range(3):
                yy = y0 * 0.3 + j * 5 * k
                d.rectangle([x + 2 * k, yy, x + dw * float(rng.uniform(0.4, 0.9)), yy + 2 * k],
                            fill=_colour(rng, (90, 90, 110), 40))
        else:  # window to the outside
            d.rectangle([x, y0 * 0.1, x + dw, y0 * 0.6], fill=_colour(rng, (200, 214, 226), 10))
            d.line([(x + dw / 2, y0 * 0.1), (x + dw / 2, y0 * 0.6)], fill=_darker(wall, 0.6),
                   width=max(1, int(2 * k)))
        x += dw + int(rng.integers(int(20 * k), int(60 * k)))
    d.line([(0, y0), (w, y0)], fill=_darker(wall, 0.45), width=max(1, int(2 * k)))
    for yy in range(y0, h):  # floor reflects the lit wall near the horizon
        t = (yy - y0) / max(h - y0, 1)
        d.line([(0, yy), (w, yy)], fill=tuple(int(f * (1.12 - 0.2 * t)) for f in floor))
    y, step = y0 + 3 * k, 4.0 * k
    while y < h:
        d.line([(0, int(y)), (w, int(y))], fill=_darker(floor, 0.82), width=1)
        y += step
        step *= 1.35


def _paint_street(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, y0: int,
                  k: float) -> None:
    """A facade with rows of windows over shop fronts, and a paved pavement."""
    facade = _colour(rng, _choice(rng, [(150, 88, 70), (196, 184, 160), (134, 134, 138), (178, 168, 150),
                                        (110, 100, 90)]))
    glass = _colour(rng, (58, 68, 82), 12)
    d.rectangle([0, 0, w, y0], fill=facade)
    shop_top = int(y0 - 26 * k)
    pitch_x, pitch_y = int(20 * k), int(17 * k)
    for wy in range(int(3 * k), max(int(4 * k), shop_top - int(14 * k)), pitch_y):
        for wx in range(int(rng.integers(0, pitch_x)), w, pitch_x):
            d.rectangle([wx - k, wy - k, wx + 11 * k, wy + 11 * k], fill=_darker(facade, 0.75))
            d.rectangle([wx, wy, wx + 10 * k, wy + 10 * k], fill=glass)
    x = 0
    while x < w:  # shop fronts: a sign band over dark glass
        sw_ = int(rng.integers(int(40 * k), int(90 * k)))
        d.rectangle([x, shop_top, x + sw_, shop_top + 7 * k], fill=_colour(rng, _choice(
            rng, [(170, 40, 40), (40, 70, 140), (230, 200, 60), (40, 120, 70), (230, 230, 230)]), 25))
        d.rectangle([x + 2 * k, shop_top + 7 * k, x + sw_ - 2 * k, y0], fill=_colour(rng, (44, 50, 58), 10))
        x += sw_ + int(rng.integers(int(4 * k), int(20 * k)))
    pave = _colour(rng, (136, 134, 128), 10)
    d.rectangle([0, y0, w, h], fill=pave)
    for px in range(0, w, max(4, int(14 * k))):
        d.line([(px, y0), (px - 12 * k, h)], fill=_darker(pave, 0.85), width=1)
    y = y0 + 5 * k
    while y < h:
        d.line([(0, int(y)), (w, int(y))], fill=_darker(pave, 0.88), width=1)
        y += 9 * k


def _paint_park(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, y0: int,
                k: float) -> None:
    """Trees and a hedge against the sky, over grass, sand or gravel."""
    sky = _colour(rng, (196, 212, 224), 10)
    d.rectangle([0, 0, w, y0], fill=sky)
    for tx in range(int(rng.integers(0, int(30 * k) + 1)), w, int(38 * k)):
        d.rectangle([tx, y0 * 0.45, tx + 4 * k, y0], fill=_colour(rng, (78, 60, 44), 8))
    for _ in range(w // 5):
        tx, ty = float(rng.uniform(0, w)), float(rng.uniform(-5 * k, y0 * 0.75))
        r = float(rng.uniform(6, 16)) * k
        d.ellipse(ellipse_box(tx, ty, r, r * 0.85), fill=_colour(rng, (58, 104, 50), 18))
    d.rectangle([0, y0 - 8 * k, w, y0], fill=_colour(rng, (46, 86, 44), 10))  # hedge
    ground = _colour(rng, _choice(rng, [(100, 138, 74), (186, 172, 140), (150, 148, 138)]), 12)
    d.rectangle([0, y0, w, h], fill=ground)


def _paint_plaza(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, y0: int,
                 k: float) -> None:
    """A glass building beyond a paved square with bollards."""
    d.rectangle([0, 0, w, y0], fill=_colour(rng, (212, 212, 206), 12))
    panel = _colour(rng, (104, 124, 144), 15)
    for wx in range(int(rng.integers(0, int(20 * k) + 1)), w, int(30 * k)):
        d.rectangle([wx, 4 * k, wx + 22 * k, y0 - 8 * k], fill=panel)
        d.line([(wx, y0 * 0.45), (wx + 22 * k, y0 * 0.45)], fill=_darker(panel, 1.3), width=1)
    stone = _colour(rng, (160, 152, 142), 12)
    d.rectangle([0, y0, w, h], fill=stone)
    y, step = y0 + 2 * k, 3.0 * k
    while y < h:
        d.line([(0, int(y)), (w, int(y))], fill=_darker(stone, 0.86), width=1)
        y += step
        step *= 1.3
    for px in range(0, w, max(4, int(16 * k))):
        d.line([(px, y0), (px + (px - w / 2) * 0.4, h)], fill=_darker(stone, 0.86), width=1)
    for bx in range(int(rng.integers(0, int(30 * k) + 1)), w, int(70 * k)):
        d.rectangle([bx, y0 - 12 * k, bx + 5 * k, y0 + 4 * k], fill=_colour(rng, (52, 52, 56), 8))


_PAINTERS = {"corridor": _paint_corridor, "street": _paint_street, "park": _paint_park}  # else: plaza


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
    y0 = int(camera.horizon * h)
    _PAINTERS.get(camera.background, _paint_plaza)(ImageDraw.Draw(img), rng, w, h, y0, k)
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
    h, w = check_size(size)
    pano = _panorama(camera, h, w)
    x0 = int(rng.integers(0, pano.shape[1] - w + 1))
    return Image.fromarray(pano[:, x0:x0 + w])
