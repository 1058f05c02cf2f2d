"""Cameras: what one camera adds to every image it takes.

A :class:`Camera` is drawn once per camera of a dataset (:func:`sample_camera`): the kind of scene it
looks at (:data:`BACKGROUNDS`, painted by :mod:`.backgrounds`), its white balance and exposure, its mix of
viewpoints, the scale and jitter of its detections, and its optics (resolution, blur, noise, JPEG quality,
occlusions). :func:`apply_camera` is its image formation on an RGB image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["BACKGROUNDS", "Camera", "sample_camera", "apply_camera", "check_size"]

BACKGROUNDS = ("corridor", "street", "park", "plaza")


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


def check_size(size, minimum: tuple[int, int] = (32, 16)) -> tuple[int, int]:
    """``size`` as ``(height_px, width_px)`` ints, each at least ``minimum``; else ``ValueError``."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height_px, width_px), got {size!r}") from None
    if h < minimum[0] or w < minimum[1]:
        raise ValueError(f"size must be at least {tuple(minimum)} pixels (height, width), got {size!r}")
    return h, w
