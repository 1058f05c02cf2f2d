"""Noise corruptions (ImageNet-C's noise family plus its extra ``speckle_noise``), per pixel and per channel.

Constants are ImageNet-C's (Hendrycks & Dietterich, ICLR 2019, as packaged by ``imagecorruptions`` 1.1.2), on
[0, 1] intensities. Noise is per pixel, so none of them depends on the crop's size: nothing is rescaled here.
"""

from __future__ import annotations

import numpy as np

from .pixels import check_image, generator, level, to_float, to_uint8

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


def gaussian_noise(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise (sensor read noise): ``x + N(0, sigma)``."""
    #       sigma (ImageNet-C)
    SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
    sigma = SIGMA[level(severity)]
    x = to_float(check_image(image))
    noise = generator(seed).standard_normal(x.shape, dtype=np.float32)
    return to_uint8(x + sigma * noise)


def shot_noise(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Poisson (photon) noise: ``Poisson(x * lam) / lam``; fewer photons, ``lam``, is stronger noise."""
    #       lam: photons at full intensity (ImageNet-C)
    PHOTONS = (60, 25, 12, 5, 3)
    lam = PHOTONS[level(severity)]
    x = to_float(check_image(image))
    return to_uint8(generator(seed).poisson(x * lam).astype(np.float32) / lam)


def impulse_noise(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Salt-and-pepper noise: a fraction ``amount`` of the values (each channel of each pixel on its own, as
    ``skimage.util.random_noise(mode='s&p')``) set to 0 or 1 with equal odds."""
    #        amount: fraction of values replaced (ImageNet-C)
    AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
    amount = AMOUNT[level(severity)]
    x = to_float(check_image(image))
    rng = generator(seed)
    flipped = rng.random(x.shape, dtype=np.float32) < amount
    salt = rng.random(x.shape, dtype=np.float32) < 0.5
    x[flipped] = salt[flipped]
    return to_uint8(x)


def speckle_noise(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Multiplicative Gaussian noise: ``x + x * N(0, sigma)`` (ImageNet-C's extra noise)."""
    #       sigma (ImageNet-C)
    SIGMA = (0.15, 0.2, 0.35, 0.45, 0.6)
    sigma = SIGMA[level(severity)]
    x = to_float(check_image(image))
    noise = generator(seed).standard_normal(x.shape, dtype=np.float32)
    return to_uint8(x + x * sigma * noise)
