"""Low resolution, the paper's own robustness axis (Section 5: a network trained on 160x64 input stays accurate
on small, low-resolution crops).

``low_resolution(image, factor)`` is the crop a camera with ``factor`` times fewer pixels per side would give,
brought back to the original size: area-averaged down (each new pixel the mean of the ``factor x factor``
pixels it covers, as a sensor with larger pixels integrates the light; Pillow's ``BOX``, fractional coverage at
the borders when ``factor`` does not divide the size), bilinear up (Pillow's ``BILINEAR``, the interpolation
the model's own resize to its 160x64 input uses).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .pixels import check_image, level

__all__ = ["LOW_RESOLUTION_FACTORS", "low_resolution", "low_resolution_severity"]

# Severity -> factor: 1/2, 1/3, 1/4 and 1/6 of the height (the paper's question: 64, 43, 32 and 21 pixel tall
# persons from a 128-pixel crop) at severities 2-5, and a mild 1/1.5 at severity 1, so the family has five
# levels like every other one.
LOW_RESOLUTION_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0)


def low_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` area-downscaled to ``1/factor`` of its height and width (rounded, at least 1 pixel) and
    bilinearly upscaled back to its shape. ``factor`` >= 1; 1 returns a copy."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) or not factor >= 1:
        raise ValueError(f"factor={factor!r}: expected a number >= 1 (2 keeps half of the height)")
    h, w = check_image(image).shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    if size == (w, h):
        return image.copy()
    small = Image.fromarray(image).resize(size, Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR)).copy()


def low_resolution_severity(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """``low_resolution`` at ``LOW_RESOLUTION_FACTORS[severity - 1]`` (``seed`` unused): the registry's
    ``'low_resolution'``."""
    #          factor: 1/1.5, 1/2, 1/3, 1/4, 1/6 of the height
    FACTORS = LOW_RESOLUTION_FACTORS
    return low_resolution(image, FACTORS[level(severity)])
