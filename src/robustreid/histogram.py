"""The colour-histogram matcher: the shortcut baseline a ReID network must beat.

Retrieval by colour alone, with no learning. ``rgb_hist`` is a joint 8x8x8 RGB histogram of the whole crop;
``rgb_hist_centre_gw`` (the stronger one) keeps the central region, undoes a global colour cast with the
gray-world assumption and concatenates the histograms of 4 horizontal stripes. Histograms are square-rooted
so that the Euclidean distance between them is the Hellinger distance. The demo and
``benchmarks/bench_synthetic.py`` report it next to the network, so a dataset on which colour alone wins is
noticed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .datasets import Record

__all__ = ["MATCHERS", "colour_histogram", "histogram_dim", "histogram_features", "image_colour_histogram",
           "image_histogram_features"]

MATCHERS = ("rgb_hist", "rgb_hist_centre_gw")


def colour_histogram(img_path: str, centre_grayworld: bool = True, bins: int = 8) -> np.ndarray:
    """Square-rooted, normalised joint RGB histogram(s) of one image file (see the module docstring)."""
    with Image.open(img_path) as image:
        return image_colour_histogram(image, centre_grayworld, bins)


def image_colour_histogram(image: Image.Image | np.ndarray, centre_grayworld: bool = True,
                           bins: int = 8) -> np.ndarray:
    """``colour_histogram`` of an in-memory image: a PIL image (converted to RGB) or an HxWx3 uint8 RGB array
    (any other array is read as ``Image.fromarray`` reads it). The same pixels give the same descriptor as
    when read from a file."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    else:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            image = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    a = np.asarray(image, dtype=np.float32)
    if centre_grayworld:
        h, w = a.shape[:2]
        a = a[h // 12: h - h // 12, w // 4: w - w // 4]
        a = a / np.maximum(a.reshape(-1, 3).mean(axis=0), 1.0) * 110.0  # gray-world: undo the colour cast
    parts = np.array_split(a, 4, axis=0) if centre_grayworld else [a]
    feats = []
    for part in parts:
        q = np.clip(part * (bins / 256.0), 0, bins - 1).astype(np.int64)
        hist = np.bincount(((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel(), minlength=bins**3)
        feats.append(np.sqrt(hist / hist.sum()))
    return np.concatenate(feats)


def histogram_dim(matcher: str = "rgb_hist_centre_gw", bins: int = 8) -> int:
    """The length of a ``matcher``'s descriptor: ``bins**3`` per stripe (4 stripes for ``rgb_hist_centre_gw``)."""
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
    return bins**3 * (4 if matcher == "rgb_hist_centre_gw" else 1)


def histogram_features(records: Sequence[Record], matcher: str = "rgb_hist_centre_gw") -> np.ndarray:
    """``(N, D)`` histogram descriptors of ``records``; Euclidean distance between rows = Hellinger distance."""
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
    return np.stack([colour_histogram(r.img_path, matcher == "rgb_hist_centre_gw") for r in records]).astype(np.float32)


def image_histogram_features(images: Sequence[Image.Image | np.ndarray],
                             matcher: str = "rgb_hist_centre_gw") -> np.ndarray:
    """``histogram_features`` of in-memory images (PIL images or HxWx3 uint8 arrays, by
    ``image_colour_histogram``): the rows the same pixels read from files would get."""
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
    centre_grayworld = matcher == "rgb_hist_centre_gw"
    return np.stack([image_colour_histogram(image, centre_grayworld) for image in images]).astype(np.float32)
