"""Blur corruptions (ImageNet-C's blur family plus its extra ``gaussian_blur``) and the two blur operators the
weather corruptions reuse (``streak``: ImageNet-C's motion-blur kernel; ``zoom_centre``).

Spatial constants are **halved** from ImageNet-C's (Hendrycks & Dietterich, ICLR 2019; ``imagecorruptions``
1.1.2): they were set for 224x224 images, and a person crop here is 128x64, 0.57x that height and 0.40x its
linear size by area. Halving keeps a blur of a given severity about as destructive to a person, who fills the
crop's height, as ImageNet-C's is to an object in its image; each table states the original values. Zoom blur's
factors are relative to the image's size and are kept.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d, gaussian_filter
from scipy.signal import fftconvolve

from .pixels import check_image, generator, level, to_float, to_uint8

__all__ = ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "streak", "zoom_centre"]


# ------------------------------------------------------------------------------------------------ operators
def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the two image axes, borders replicated (``skimage.filters.gaussian``'s defaults)."""
    return gaussian_filter(x, sigma=(sigma, sigma, 0)[: x.ndim], mode="nearest", truncate=4.0)


def _disk(radius: float, alias_sigma: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: the pixels within ``radius`` of the centre, anti-aliased by a 3-tap Gaussian
    of ``alias_sigma`` (OpenCV ``GaussianBlur`` with ``ksize=(3, 3)``), normalised to sum 1."""
    half = math.ceil(radius) + 1
    grid = np.arange(-half, half + 1, dtype=np.float32)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float32)
    taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * alias_sigma**2))
    taps /= taps.sum()
    for axis in (0, 1):
        disk = correlate1d(disk, taps, axis=axis, mode="constant")
    return disk / disk.sum()


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``HxWx3`` image convolved with an odd-sized 2-D kernel, borders mirrored (OpenCV's ``filter2D`` default),
    through the FFT (a few times faster than a direct 11x11 convolution)."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1)).astype(np.float32)


def streak(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageNet-C's motion blur (``_motion_blur``): the image shifted by 0 .. 2*radius pixels along ``angle``
    (degrees) and summed with one-sided Gaussian weights of ``sigma``, so the blur trails behind; shifted-in
    borders repeat the edge. ``x``: ``HxW`` or ``HxWxC`` float."""
    width = 2 * radius + 1
    weights = np.exp(-np.arange(width) ** 2 / (2 * sigma**2))
    weights = (weights / weights.sum()).astype(np.float32)
    sin, cos = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    h, w = x.shape[:2]
    padded = np.pad(x, ((width, width), (width, width)) + ((0, 0),) * (x.ndim - 2), mode="edge")
    out = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy, dx = -math.ceil(i * sin - 0.5), -math.ceil(i * cos - 0.5)
        if abs(dy) >= h or abs(dx) >= w:  # the motion left the image (ImageNet-C stops there too)
            break
        out += weights[i] * padded[width - dy: width - dy + h, width - dx: width - dx + w]
    return out


def zoom_centre(image: Image.Image, zoom: float) -> Image.Image:
    """The central ``1/zoom`` of ``image`` enlarged back to its size (bilinear): ImageNet-C's ``clipped_zoom``,
    here with the exact fractional box, so the zoom stays centred."""
    w, h = image.size
    half_w, half_h = w / (2 * zoom), h / (2 * zoom)
    box = (w / 2 - half_w, h / 2 - half_h, w / 2 + half_w, h / 2 + half_h)
    return image.resize((w, h), Image.Resampling.BILINEAR, box=box)


# ---------------------------------------------------------------------------------------------- corruptions
def defocus_blur(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Out-of-focus lens: convolution with a disk (``seed`` unused)."""
    #       disk radius, anti-alias sigma (px): ImageNet-C's (3, 0.1) (4, 0.5) (6, 0.5) (8, 0.5) (10, 0.5) halved
    TABLE = ((1.5, 0.05), (2.0, 0.25), (3.0, 0.25), (4.0, 0.25), (5.0, 0.25))
    radius, alias_sigma = TABLE[level(severity)]
    return to_uint8(_convolve(to_float(check_image(image)), _disk(radius, alias_sigma)))


def glass_blur(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Frosted glass: blur, scramble pixels locally, blur again.

    ImageNet-C swaps every pixel with one at an offset drawn uniformly from [-d, d) per axis, ``iterations``
    times, in a Python loop (seconds per image). Here each pixel takes the value at a per-axis offset drawn from
    a rounded normal, in one vectorised pass (a local diffusion, sampled with replacement rather than a
    permutation). The offsets' rms is half of ImageNet-C's total rms displacement, sqrt(iterations * E[o^2]) =
    1.0, 1.2, 2.1, 2.5, 3.3 px for its (sigma, d, iterations) = (0.7, 1, 2) (0.9, 2, 1) (1, 2, 3) (1.1, 3, 2)
    (1.5, 4, 2); the blur sigmas are halved.
    """
    #       blur sigma (px), rms offset of the scrambling (px per axis)
    TABLE = ((0.35, 0.5), (0.45, 0.6), (0.5, 1.05), (0.55, 1.25), (0.75, 1.65))
    sigma, offset = TABLE[level(severity)]
    x = _gaussian(to_float(check_image(image)), sigma)
    h, w = x.shape[:2]
    rng = generator(seed)
    rows = np.clip(np.arange(h)[:, None] + np.rint(rng.normal(0.0, offset, (h, w))).astype(np.intp), 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + np.rint(rng.normal(0.0, offset, (h, w))).astype(np.intp), 0, w - 1)
    return to_uint8(_gaussian(x[rows, cols], sigma))


def motion_blur(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Camera or subject motion: a trailing Gaussian streak at a random angle in [-45, 45] degrees."""
    #       radius (2 * radius + 1 taps), sigma of the tap weights (px):
    #       ImageNet-C's (10, 3) (15, 5) (15, 8) (15, 12) (20, 15) halved (7.5 taps rounded up to 8)
    TABLE = ((5, 1.5), (8, 2.5), (8, 4.0), (8, 6.0), (10, 7.5))
    radius, sigma = TABLE[level(severity)]
    angle = float(generator(seed).uniform(-45, 45))
    return to_uint8(streak(to_float(check_image(image)), radius, sigma, angle))


def zoom_blur(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Zooming during the exposure: the mean of the image and its centre zoomed by each factor (``seed``
    unused). The factors are relative to the image's size: ImageNet-C's, unchanged."""
    #       zoom factors (ImageNet-C)
    ZOOMS = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))
    zooms = ZOOMS[level(severity)]
    pil = Image.fromarray(check_image(image))
    out = image.astype(np.float32)
    for zoom in zooms:
        out += np.asarray(zoom_centre(pil, float(zoom)), dtype=np.float32)
    return to_uint8(out / (255.0 * (len(zooms) + 1)))


def gaussian_blur(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Gaussian blur (ImageNet-C's extra blur; ``seed`` unused)."""
    #       sigma (px): ImageNet-C's 1, 2, 3, 4, 6 halved
    SIGMA = (0.5, 1.0, 1.5, 2.0, 3.0)
    return to_uint8(_gaussian(to_float(check_image(image)), SIGMA[level(severity)]))
