"""What the grid embeds images with: a model through ``evaluate.FeatureExtractor`` (any backend), or a feature
function such as ``ColourHistogramFeatures``, the colour-histogram baseline; and how a run names it."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..evaluate import FeatureExtractor
from ..histogram import MATCHERS, image_histogram_features

__all__ = ["ColourHistogramFeatures", "FeaturesFn", "describe", "model_features"]

FeaturesFn = Callable[[list], np.ndarray]  # images (HxWx3 uint8 arrays) -> (N, D) descriptors


class ColourHistogramFeatures:
    """A ``features_fn`` for the grid: the colour-histogram matcher (``robustreid.histogram``, the demo's
    no-learning baseline) on image arrays, by ``histogram.image_histogram_features``: the descriptors are
    exactly those of the same pixels read from a file."""

    def __init__(self, matcher: str = "rgb_hist_centre_gw"):
        if matcher not in MATCHERS:
            raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
        self.matcher = matcher

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return image_histogram_features(images, self.matcher)

    def __repr__(self) -> str:
        return f"ColourHistogramFeatures({self.matcher!r})"


def model_features(model_or_checkpoint, backend: str = "torch", precision: str = "fp32", device=None,
                   batch_size: int = 64) -> FeaturesFn:
    """``images -> (N, D)`` descriptors of a checkpoint, ``ReIDNet``, exported file or ``FeatureExtractor`` (used
    as it is); the images are preprocessed as at test time (the model's own resize and normalisation)."""
    extractor = model_or_checkpoint if isinstance(model_or_checkpoint, FeatureExtractor) else FeatureExtractor(
        model_or_checkpoint, device=device, batch_size=batch_size, num_workers=0, backend=backend,
        precision=precision)
    return lambda images: extractor(images).numpy()


def describe(model_or_checkpoint, features_fn, backend: str, precision: str) -> str:
    """What the features come from, as a run records it (a resumed run must name the same): a file's absolute
    path or a name (``zoo:...``) with the backend, a model's class, a feature function's or object's name."""
    if features_fn is not None:
        if type(features_fn).__repr__ is not object.__repr__ and not hasattr(features_fn, "__qualname__"):
            return f"features_fn {features_fn!r}"  # an object that names itself, e.g. ColourHistogramFeatures
        named = features_fn if hasattr(features_fn, "__qualname__") else type(features_fn)  # a function, a class
        return f"features_fn {named.__module__}.{named.__qualname__}"
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        path = Path(model_or_checkpoint)
        return f"{path.resolve() if path.exists() else os.fspath(model_or_checkpoint)} ({backend}, {precision})"
    if isinstance(model_or_checkpoint, FeatureExtractor):
        return f"FeatureExtractor ({model_or_checkpoint.backend}, {model_or_checkpoint.precision})"
    return f"{type(model_or_checkpoint).__name__} ({backend}, {precision})"
