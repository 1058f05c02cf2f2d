"""Digital corruptions: ImageNet-C's contrast, elastic transform, pixelate and JPEG, and its extra saturate.

Constants are ImageNet-C's (Hendrycks & Dietterich, ICLR 2019) as packaged by ``imagecorruptions`` 1.1.2, the
version CIL-ReID evaluates with (its elastic transform is the package's size-relative rewrite, not the
original affine + elastic one). All of them are per pixel or relative to the image's size: nothing is rescaled
for 128x64 crops.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates

from .pixels import check_image, generator, level, to_float, to_uint8

__all__ = ["contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"]

# The HSV hue of a grey pixel is 0 (red) in skimage and colorsys: a saturation offset tints greys red.
_GREY_HUE_WEIGHTS = np.array([0.0, 1.0, 1.0], dtype=np.float32)


def contrast(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Lower contrast: each channel pulled towards its mean, ``(x - mean) * gain + mean`` (``seed`` unused)."""
    #      gain (ImageNet-C)
    GAIN = (0.4, 0.3, 0.2, 0.1, 0.05)
    gain = GAIN[level(severity)]
    x = to_float(check_image(image))
    mean = x.mean(axis=(0, 1), keepdims=True)
    return to_uint8((x - mean) * gain + mean)


def elastic_transform(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Local elastic warp: each pixel sampled (bilinear, borders reflected) at an offset field of uniform noise
    in +-0.5 % of the height, Gaussian-smoothed with sigma 1 % of each side (truncated at 3 sigma), times
    ``alpha``."""
    #       alpha, the displacement gain: 250 x (0.05, 0.065, 0.085, 0.1, 0.12) (imagecorruptions 1.1.2)
    ALPHA = (12.5, 16.25, 21.25, 25.0, 30.0)
    alpha = ALPHA[level(severity)]
    x = to_float(check_image(image))
    h, w = x.shape[:2]
    rng = generator(seed)
    sigma, limit = (0.01 * h, 0.01 * w), 0.005 * h
    dx = gaussian_filter(rng.uniform(-limit, limit, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian_filter(rng.uniform(-limit, limit, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    coords = np.stack([np.arange(h)[:, None] + dy, np.arange(w)[None, :] + dx])
    warped = [map_coordinates(x[:, :, c], coords, order=1, mode="reflect") for c in range(3)]
    return to_uint8(np.stack(warped, axis=2))


def pixelate(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Pixelation: box-downscaled to a fraction of the size, enlarged back with nearest neighbour (``seed``
    unused)."""
    #       size fraction (ImageNet-C)
    SCALE = (0.6, 0.5, 0.4, 0.3, 0.25)
    scale = SCALE[level(severity)]
    h, w = check_image(image).shape[:2]
    small = Image.fromarray(image).resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST)).copy()


def jpeg_compression(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """JPEG at a low quality (Pillow's encoder, 4:2:0 chroma subsampling; ``seed`` unused)."""
    #         JPEG quality (ImageNet-C)
    QUALITY = (25, 18, 15, 10, 7)
    buffer = io.BytesIO()
    Image.fromarray(check_image(image)).save(buffer, "JPEG", quality=QUALITY[level(severity)])
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def saturate(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Saturation changed in HSV: ``S' = clip(S * gain + offset, 0, 1)``, hue and value kept (``seed`` unused).

    Done in RGB: at fixed hue and value each channel is ``V * (1 - S * k)`` with ``k = (V - c) / (V - min)``
    fixed by the hue, so ``c' = V * (1 - S' * k)``. As in ImageNet-C (skimage's HSV), a grey pixel has hue 0, red:
    the offsets of severities 4 and 5 tint greys red.
    """
    #       gain, offset (ImageNet-C): severities 1-2 desaturate, 3-5 oversaturate
    TABLE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))
    gain, offset = TABLE[level(severity)]
    x = to_float(check_image(image))
    value = x.max(axis=2, keepdims=True)
    chroma = value - x.min(axis=2, keepdims=True)
    sat = np.where(value > 0, chroma / np.maximum(value, 1e-12), 0.0)
    new_sat = np.clip(sat * gain + offset, 0.0, 1.0)
    k = np.where(chroma > 0, (value - x) / np.maximum(chroma, 1e-12), _GREY_HUE_WEIGHTS)
    return to_uint8(value * (1 - new_sat * k))
