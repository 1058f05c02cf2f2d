"""Identities: the persistent appearance of one synthetic person.

An :class:`Identity` holds what stays the same from camera to camera: body proportions, skin and hair,
an optional hat, the upper garment (colour, second colour and pattern, sleeves), the lower garment,
shoes and an optional bag. :func:`sample_identity` draws one from palettes weighted towards the dark and
neutral colours of street clothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Identity", "sample_identity"]

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
