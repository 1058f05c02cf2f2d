"""The pixel conventions every corruption shares: argument checks, the seeded generator, float <-> uint8.

A corruption takes an ``HxWx3`` uint8 RGB crop, works on float32 intensities in [0, 1] (ImageNet-C's scale:
its constants, e.g. a noise sigma of 0.08, are on that scale) and returns uint8 of the same shape, clipped and
rounded to the nearest level (``imagecorruptions`` truncates with ``np.uint8``, a bias of half a level).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEVERITIES", "check_image", "level", "generator", "to_float", "to_uint8", "luma", "box_reduce"]

SEVERITIES = (1, 2, 3, 4, 5)

# ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY (used by ImageNet-C's snow) and PIL's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_image(image) -> np.ndarray:
    """``image`` itself if it is an HxWx3 uint8 array of at least 8x8 pixels; otherwise a ``TypeError`` (not an
    array) or ``ValueError``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an HxWx3 uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array of at least 8x8 pixels, got shape {image.shape} and "
                         f"dtype {image.dtype}")
    return image


def level(severity) -> int:
    """The 0-based row of a severity table for ``severity`` 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity={severity!r}: expected an integer from 1 to 5")
    return int(severity) - 1


def generator(seed) -> np.random.Generator:
    """The corruption's only source of randomness: ``numpy.random.default_rng(seed)``, ``seed`` an int >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected an integer >= 0")
    return np.random.default_rng(int(seed))


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return image.astype(np.float32) * np.float32(1 / 255)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] (values outside are clipped) -> uint8, rounded to the nearest level."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def luma(x: np.ndarray) -> np.ndarray:
    """``HxW`` grey level of an ``HxWx3`` float image."""
    return x @ _LUMA


def box_reduce(layer: np.ndarray, factor: int = 2) -> np.ndarray:
    """Mean of each ``factor x factor`` block: a layer drawn at ``factor`` times the crop's size brought to it."""
    h, w = layer.shape[0] // factor, layer.shape[1] // factor
    blocks = layer[: h * factor, : w * factor].reshape(h, factor, w, factor, *layer.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)
