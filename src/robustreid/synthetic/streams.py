"""Random streams: every draw of the generator comes from a generator keyed by ``(seed, role, ...)``.

An image's stream depends only on its keys, never on how many images were drawn before it, so a dataset
(or a tracking scene) is the same whatever order it is written in, and one image can be redrawn alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_rng"]

# Roles keep the random streams of different purposes apart (first key after the seed). The tracking
# scenes use 101 and up (robustreid.tracking), so the two generators never share a stream.
ROLE_IDENTITY, ROLE_CAMERA, ROLE_IMAGE, ROLE_SPLIT, ROLE_TRACK = 1, 2, 3, 4, 5
ROLE_DISTRACTOR, ROLE_JUNK, ROLE_STRAY_IDENTITY = 6, 7, 8


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, *keys)``, e.g. ``(seed, role, pid, cam, index)``."""
    entropy = [int(seed), *(int(k) for k in keys)]
    if any(k < 0 for k in entropy):
        raise ValueError(f"derive_rng keys must be non-negative integers, got {entropy}")
    return np.random.default_rng(np.random.SeedSequence(entropy))
