"""Weather corruptions: ImageNet-C's snow, frost, fog and brightness, its extra spatter, and CIL-ReID's rain.

Constants are ImageNet-C's (Hendrycks & Dietterich, ICLR 2019; ``imagecorruptions`` 1.1.2) and, for rain,
CIL-ReID's (Chen, Wang, Zheng, "Benchmarks for Corruption Invariant Person Re-identification", NeurIPS 2021
Datasets and Benchmarks; ``rain`` in its ``datasets/make_dataloader.py``). Two scale rules for a 128x64 crop
(ImageNet-C's images are 224x224):

* **layers drawn at twice the crop's size**: snow's flakes and spatter's drops are drawn with ImageNet-C's
  constants on a canvas twice the crop's height and width and box-reduced by 2, so they are half ImageNet-C's
  size in pixels (the halving ``blur`` applies to its kernels) while their density and statistics are
  ImageNet-C's own; frost's procedural texture is drawn the same way;
* **relative or already ReID-sized constants are kept**: fog's fractal spans the image as in ImageNet-C;
  brightness is per pixel; rain's constants were set by CIL-ReID for person crops (Market1501's 128x64).

Frost: ImageNet-C blends one of six photographs of frost on glass; here a seeded procedural texture
(``frost_texture``) takes their place, so no image files are needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import binary_erosion, correlate, distance_transform_edt, gaussian_filter, uniform_filter

from .blur import streak, zoom_centre
from .pixels import box_reduce, check_image, generator, level, luma, to_float, to_uint8

__all__ = ["snow", "frost", "fog", "brightness", "spatter", "rain", "frost_texture", "plasma_fractal"]


# ------------------------------------------------------------------------------------------------- textures
def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C's fog texture: a ``size x size`` (a power of two) diamond-square height map in [0, 1]; a
    larger ``decay`` damps the fine detail faster (smoother fog)."""
    if size < 2 or size & (size - 1):
        raise ValueError(f"size={size}: expected a power of two >= 2")
    field = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:  # mean of 4 neighbours plus noise of scale wibble^2
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = field[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        field[half:size:step, half:size:step] = wibbled_mean(squares)
        centres = field[half:size:step, half:size:step]
        corners = field[0:size:step, 0:size:step]
        field[0:size:step, half:size:step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        field[half:size:step, 0:size:step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    field -= field.min()
    return (field / field.max()).astype(np.float32)


# The frost photographs' mean colour relative to their grey level (R : G : B = 0.87 : 1 : 1.07).
_FROST_TINT = np.array([0.87, 1.0, 1.07], dtype=np.float32)


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _draw_segments(shape: tuple[int, int], x0, y0, x1, y1, shade) -> np.ndarray:
    """Straight 1-pixel segments rasterised (sampled every half pixel, nearest pixel) on a black ``shape``
    canvas; where they cross the brighter ``shade`` wins."""
    canvas = np.zeros(shape, dtype=np.float32)
    counts = np.ceil(2 * np.hypot(x1 - x0, y1 - y0)).astype(np.intp) + 1
    segment = np.repeat(np.arange(len(counts)), counts)
    t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / np.maximum(counts - 1, 1)[segment]
    xs = np.rint(x0[segment] + t * (x1 - x0)[segment]).astype(np.intp)
    ys = np.rint(y0[segment] + t * (y1 - y0)[segment]).astype(np.intp)
    inside = (xs >= 0) & (xs < shape[1]) & (ys >= 0) & (ys < shape[0])
    np.maximum.at(canvas, (ys[inside], xs[inside]), shade[segment][inside].astype(np.float32))
    return canvas


def frost_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded stand-in for ImageNet-C's frost photographs: ``height x width x 3`` float32 in [0, 1].

    Ice needles over a pale haze, calibrated on the statistics of the five photographs ImageNet-C draws from
    (grey level: mean 0.64, spatial sd 0.07-0.17; colour R : G : B = 0.87 : 1 : 1.07, a cold blue-white):

    * haze: 0.4 + 0.4 x a plasma fractal (fog's texture, decay 1.8), the uneven thickness of the ice;
    * needles: one crystal per ~900 pixels of a canvas twice the crop's size (28 on a 128x64 crop), each 3 to 6
      straight arms of 6 to 28 canvas pixels with two side branches at +-60 degrees, brightness 0.55 to 1,
      blurred (sigma 0.6) and box-reduced by 2, so they are half the photographs' pixel size as every weather
      layer here; added with weight 0.45.
    """
    h2, w2 = 2 * height, 2 * width
    crystals = max(1, (h2 * w2) // 900)
    arms = rng.integers(3, 7, crystals)
    crystal = np.repeat(np.arange(crystals), arms)
    arm = np.arange(len(crystal)) - np.repeat(np.cumsum(arms) - arms, arms)
    cx, cy = rng.uniform(0, w2, crystals)[crystal], rng.uniform(0, h2, crystals)[crystal]
    angle = rng.uniform(0, 2 * np.pi, crystals)[crystal] + 2 * np.pi * arm / arms[crystal]
    angle = angle + rng.normal(0, 0.2, len(crystal))
    length, shade = rng.uniform(6, 28, len(crystal)), rng.uniform(0.55, 1.0, len(crystal))
    ex, ey = cx + length * np.cos(angle), cy + length * np.sin(angle)
    t = rng.uniform(0.3, 0.8, (2, len(crystal)))  # where the two side branches leave the arm
    bx, by = cx + t * (ex - cx), cy + t * (ey - cy)
    b_angle = angle + np.array([[1.0], [-1.0]]) * np.pi / 3
    b_len = length * (1 - t) * 0.6
    x0 = np.concatenate([cx, bx.ravel()])
    y0 = np.concatenate([cy, by.ravel()])
    x1 = np.concatenate([ex, (bx + b_len * np.cos(b_angle)).ravel()])
    y1 = np.concatenate([ey, (by + b_len * np.sin(b_angle)).ravel()])
    canvas = _draw_segments((h2, w2), x0, y0, x1, y1, np.concatenate([shade, np.tile(shade * 0.8, 2)]))
    needles = box_reduce(gaussian_filter(canvas, 0.6))
    haze = plasma_fractal(_next_power_of_two(max(height, width)), 1.8, rng)[:height, :width]
    grey = np.clip(0.4 + 0.4 * haze + 0.45 * needles, 0.0, 1.0)
    return np.clip(grey[:, :, None] * _FROST_TINT, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- corruptions
def snow(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Falling snow: thresholded, zoomed Gaussian noise streaked downwards (angle in [-135, -45] degrees),
    added with its 180-degree rotation over an image whitened towards ``1.5 * grey + 0.5``."""
    #       flake noise mean, noise sd, zoom, threshold, streak radius, streak sigma, image weight (ImageNet-C,
    #       on the twice-size canvas: flakes and streaks half ImageNet-C's pixel size on the crop)
    TABLE = ((0.1, 0.3, 3.0, 0.5, 10, 4, 0.8), (0.2, 0.3, 2.0, 0.5, 12, 4, 0.7), (0.55, 0.3, 4.0, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
    loc, scale, zoom, threshold, radius, sigma, weight = TABLE[level(severity)]
    x = to_float(check_image(image))
    h, w = x.shape[:2]
    rng = generator(seed)
    layer = rng.normal(loc, scale, (2 * h, 2 * w)).astype(np.float32)
    layer = np.array(zoom_centre(Image.fromarray(layer), zoom), dtype=np.float32)
    layer[layer < threshold] = 0
    layer = streak(np.clip(layer, 0, 1), radius, sigma, float(rng.uniform(-135, -45)))
    layer = box_reduce(layer)[:, :, None]
    x = weight * x + (1 - weight) * np.maximum(x, luma(x)[:, :, None] * 1.5 + 0.5)
    return to_uint8(x + layer + np.rot90(layer, 2))


def frost(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Frost on the lens: ``a * image + b * frost_texture`` (a procedural texture; see ``frost_texture``)."""
    #       image weight a, frost weight b (ImageNet-C)
    TABLE = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
    a, b = TABLE[level(severity)]
    x = to_float(check_image(image))
    return to_uint8(a * x + b * frost_texture(x.shape[0], x.shape[1], generator(seed)))


def fog(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Fog: a plasma fractal added and the result rescaled by ``max / (max + strength)``."""
    #       strength, fractal decay (ImageNet-C; the fractal spans the image, whatever its size)
    TABLE = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
    strength, decay = TABLE[level(severity)]
    x = to_float(check_image(image))
    h, w = x.shape[:2]
    fractal = plasma_fractal(_next_power_of_two(max(h, w)), decay, generator(seed))[:h, :w]
    top = x.max()
    return to_uint8((x + strength * fractal[:, :, None]) * (top / (top + strength)))


def brightness(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Brighter light: ``shift`` added to the HSV value, hue and saturation kept (``seed`` unused).

    Done in RGB: at fixed hue and saturation every channel is proportional to the value ``V = max(R, G, B)``,
    so the channels are scaled by ``min(V + shift, 1) / V``; a black pixel (``V = 0``, saturation 0 in HSV)
    becomes grey ``shift``.
    """
    #       shift of the HSV value (ImageNet-C)
    SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
    shift = SHIFT[level(severity)]
    x = to_float(check_image(image))
    value = x.max(axis=2, keepdims=True)
    new_value = np.minimum(value + shift, 1.0)
    return to_uint8(np.where(value > 0, x * (new_value / np.maximum(value, 1e-12)), new_value))


# OpenCV's filter2D kernel in ImageNet-C's spatter: identity plus a diagonal gradient (an emboss).
_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
_WATER = np.array([175, 238, 238], dtype=np.float32) / 255  # pale turquoise (R, G, B)
_MUD = np.array([63, 42, 20], dtype=np.float32) / 255  # mud brown


def _equalise(values: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of a uint8 array: levels mapped through the normalised cumulative histogram."""
    hist = np.bincount(values.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    low = cdf[np.flatnonzero(hist)[0]]
    if cdf[-1] == low:  # a single level
        return values.copy()
    return np.rint((cdf - low) * 255.0 / (cdf[-1] - low)).clip(0, 255).astype(np.uint8)[values]


def _water_drops(layer: np.ndarray, intensity: float) -> np.ndarray:
    """ImageNet-C's liquid spatter shading of a thresholded layer: the distance to the drops' outlines (OpenCV
    Canny there, the wet pixels next to a dry one here), capped at 20, blurred, equalised, embossed and
    blurred again, times the layer; normalised to a maximum of ``intensity``."""
    wet = layer > 0
    outline = wet & ~binary_erosion(wet, border_value=1)
    if not outline.any():
        return np.zeros_like(layer)
    dist = np.minimum(distance_transform_edt(~outline), 20.0).astype(np.float32)
    dist = _equalise(uniform_filter(dist, 3, mode="mirror").astype(np.uint8)).astype(np.float32)
    dist = np.rint(np.clip(correlate(dist, _EMBOSS, mode="mirror"), 0, 255))
    dist = uniform_filter(dist, 3, mode="mirror")
    shade = (layer * 255).astype(np.uint8) * dist
    top = shade.max()
    return shade * (intensity / top) if top > 0 else shade


def spatter(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Drops on the lens: smoothed Gaussian noise thresholded into drops; severities 1-3 pale water drops added
    with an embossed shading, 4-5 opaque mud (ImageNet-C's extra weather corruption)."""
    #       noise mean, noise sd, smoothing sigma, threshold, water intensity | mud blur sigma, mud?
    #       (ImageNet-C, on the twice-size canvas: drops half ImageNet-C's pixel size on the crop)
    TABLE = ((0.65, 0.3, 4, 0.69, 0.6, False), (0.65, 0.3, 3, 0.68, 0.6, False), (0.65, 0.3, 2, 0.68, 0.5, False),
             (0.65, 0.3, 1, 0.65, 1.5, True), (0.67, 0.4, 1, 0.65, 1.5, True))
    loc, scale, sigma, threshold, strength, mud = TABLE[level(severity)]
    x = to_float(check_image(image))
    h, w = x.shape[:2]
    layer = gaussian_filter(generator(seed).normal(loc, scale, (2 * h, 2 * w)).astype(np.float32), sigma,
                            mode="nearest")
    layer[layer < threshold] = 0
    if not mud:
        drops = box_reduce(_water_drops(layer, strength))[:, :, None]
        return to_uint8(x + drops * _WATER)
    cover = gaussian_filter((layer > threshold).astype(np.float32), strength, mode="nearest")
    cover[cover < 0.8] = 0
    cover = box_reduce(cover)[:, :, None]
    return to_uint8(x * (1 - cover) + cover * _MUD)


def rain(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Rain (CIL-ReID's addition to the benchmark: albumentations' ``RandomRain`` then ``RandomBrightness``):
    straight grey (200) streaks of one random slant in [-10, 10] px, the whole image box-blurred, then darkened.

    Drops: drizzle (one per 770 pixels, 10 px long) at severity 1, heavy (600, 30 px) at 2-3, torrential (500,
    60 px) at 4-5, drawn on the crop itself (CIL-ReID only enlarges crops under 61 px high, to 65 px; here the
    shape is kept and drops taller than the crop are cut by its border).
    """
    #       pixels per drop, drop length (px), box blur (px), brightness shift (CIL-ReID)
    TABLE = ((770, 10, 3, -0.10), (600, 30, 4, -0.15), (600, 30, 5, -0.20), (500, 60, 6, -0.25), (500, 60, 7, -0.30))
    per_drop, length, box, shift = TABLE[level(severity)]
    h, w = check_image(image).shape[:2]
    rng = generator(seed)
    slant = int(rng.integers(-10, 11))
    n = (h * w) // per_drop
    xs = rng.integers(slant, w + 1, n) if slant < 0 else rng.integers(0, w - slant + 1, n)
    ys = rng.integers(0, max(h - length, 0) + 1, n)
    canvas = Image.fromarray(image).copy()  # drawn on: never the caller's array
    draw = ImageDraw.Draw(canvas)
    for x0, y0 in zip(xs.tolist(), ys.tolist()):
        draw.line([(x0, y0), (x0 + slant, y0 + length)], fill=(200, 200, 200), width=1)
    x = uniform_filter(to_float(np.asarray(canvas)), size=(box, box, 1), mode="mirror")
    return to_uint8(x + shift)
