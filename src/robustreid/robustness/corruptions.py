"""The registry: corruption names -> functions, their families, and the seed of each corrupted image.

The benchmark's 20 corruptions (CIL-ReID, Chen, Wang, Zheng, NeurIPS 2021 Datasets and Benchmarks): ImageNet-C's
15 (Hendrycks & Dietterich, ICLR 2019), its 4 extra ones (speckle noise, Gaussian blur, spatter, saturate) and
CIL-ReID's rain, in CIL-ReID's four families; plus ``low_resolution``, the paper's own axis, as a fifth family.
Every function is ``(image HxWx3 uint8, severity 1..5, seed) -> uint8 image of the same shape``, pure and
deterministic for a given seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from .blur import defocus_blur, gaussian_blur, glass_blur, motion_blur, zoom_blur
from .digital import contrast, elastic_transform, jpeg_compression, pixelate, saturate
from .noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from .resolution import low_resolution_severity
from .weather import brightness, fog, frost, rain, snow, spatter

__all__ = ["BENCHMARK", "CORRUPTIONS", "FAMILIES", "LOW_RESOLUTION", "SIDES", "Corruption", "corrupt", "family_of",
           "image_seed"]

Corruption = Callable[[np.ndarray, int, int], np.ndarray]

LOW_RESOLUTION = "low_resolution"

FAMILIES: dict[str, list[str]] = {
    "noise": ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"],
    "blur": ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"],
    "weather": ["snow", "frost", "fog", "brightness", "spatter", "rain"],
    "digital": ["contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"],
    LOW_RESOLUTION: [LOW_RESOLUTION],
}

CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "gaussian_blur": gaussian_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "spatter": spatter, "rain": rain,
    "contrast": contrast, "elastic_transform": elastic_transform, "pixelate": pixelate,
    "jpeg_compression": jpeg_compression, "saturate": saturate,
    LOW_RESOLUTION: low_resolution_severity,
}

# The 20 corruptions whose mean the benchmark reports (everything but the low-resolution family).
BENCHMARK: tuple[str, ...] = tuple(name for family, names in FAMILIES.items() if family != LOW_RESOLUTION
                                   for name in names)

# Which split an image belongs to, part of its seed: a query and a gallery image at the same position in their
# lists never share a noise pattern (which would make them look alike).
SIDES = ("query", "gallery")


def family_of(name: str) -> str:
    """The family of a registered corruption; ``"other"`` for a name outside ``FAMILIES``."""
    return next((family for family, names in FAMILIES.items() if name in names), "other")


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``CORRUPTIONS[name](image, severity, seed)``, with an error listing the names for an unknown one."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}: expected one of {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](image, severity, seed)


def image_seed(seed: int, name: str, severity: int, side: str, index: int) -> int:
    """The seed of image ``index`` of the ``side`` split under corruption ``name`` at ``severity`` in a run seeded
    with ``seed``: a function of these alone (not of the order or the process that computes it), so a run, a
    resumed run and any number of workers corrupt every image identically."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}: expected one of {SIDES}")
    key = [int(seed), zlib.crc32(name.encode()), int(severity), SIDES.index(side), int(index)]
    return int(np.random.SeedSequence(key).generate_state(1)[0])
