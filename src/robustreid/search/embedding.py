"""What turns crops into the index's descriptors: a ReID model (a checkpoint or ``zoo:NAME``) or the colour
histogram (``robustreid.histogram``, the no-learning reference), as one ``Embedder``.

An index stores the name of its embedder (``Embedder.name``), so ``index add``, ``search`` and ``serve`` load
the same one: descriptors of two models are not comparable. It also stores the sha256 of the weights (a
shipped model's card, or the checkpoint file's own bytes), so a checkpoint replaced under the same name is
refused.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import histogram

__all__ = ["HISTOGRAM", "Embedder", "check_matches", "load_embedder", "normalize_rows"]

HISTOGRAM = "histogram"  # the name that selects the colour histogram instead of a model


def normalize_rows(x) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class Embedder:
    """``embed(list of HxWx3 uint8 RGB arrays) -> (N, dim)`` unit rows, with the name the index records."""

    name: str
    dim: int
    fn: Callable[[list[np.ndarray]], object]
    model_sha256: str | None = None

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), np.float32)
        feats = self.fn(images)
        feats = feats.detach().cpu().numpy() if hasattr(feats, "detach") else np.asarray(feats)
        if feats.shape != (len(images), self.dim):
            raise ValueError(f"embedder {self.name}: returned shape {feats.shape} for {len(images)} images, "
                             f"expected ({len(images)}, {self.dim})")
        return normalize_rows(feats)


def load_embedder(name: str, device=None) -> Embedder:
    """``"histogram"`` (or ``"histogram:rgb_hist"``) for the colour histogram; otherwise a checkpoint path or
    a shipped ``zoo:NAME`` run by ``FeatureExtractor``. Its name is the one given (a file as its absolute
    path)."""
    if name == HISTOGRAM or name.startswith(HISTOGRAM + ":"):
        matcher = name.partition(":")[2] or "rgb_hist_centre_gw"
        dim = histogram.histogram_dim(matcher)  # checks the matcher's name
        return Embedder(f"{HISTOGRAM}:{matcher}", dim, _histogram_fn(matcher))
    from ..evaluate import FeatureExtractor
    from ..zoo import is_zoo_name, load_card

    if is_zoo_name(name):
        sha = str(load_card(name)["sha256"])
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such checkpoint (expected a .pt file, a shipped zoo:NAME or "
                                    f"'{HISTOGRAM}')")
        name = str(path.resolve())
        sha = hashlib.sha256(path.read_bytes()).hexdigest()  # as zoo hashes its files (file_digest: 3.11+)
    extractor = FeatureExtractor(name, device=device, num_workers=0)
    return Embedder(name, int(extractor.feature_dim), extractor, sha)


def _histogram_fn(matcher: str) -> Callable[[list[np.ndarray]], np.ndarray]:
    """The colour histogram of image arrays (``histogram.image_histogram_features``): a crop gets the
    descriptor of the same pixels read from a file."""
    return functools.partial(histogram.image_histogram_features, matcher=matcher)


def check_matches(embed: Embedder, meta: dict, where: str) -> None:
    """``embed`` must make the descriptors of the index whose meta is ``meta`` (its dimension and the same
    weights by sha256, a shipped model's or a checkpoint file's): a ``ValueError`` naming the index
    otherwise."""
    if embed.dim != meta["dim"]:
        raise ValueError(f"{where}: holds {meta['dim']}-d descriptors of {meta['checkpoint']}, the embedder "
                         f"{embed.name} gives {embed.dim}-d ones")
    if meta.get("model_sha256") and embed.model_sha256 and embed.model_sha256 != meta["model_sha256"]:
        now = "the shipped weights are" if meta["checkpoint"].startswith("zoo:") else "the checkpoint file is"
        raise ValueError(f"{where}: built with {meta['checkpoint']} of sha256 "
                         f"{meta['model_sha256'][:12]}..., {now} now {embed.model_sha256[:12]}...; "
                         "rebuild the index")
