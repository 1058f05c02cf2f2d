"""Synthetic persons: procedural person crops written in the real Market1501 layout.

No person dataset or pretrained weight can be downloaded on the machines this project is developed on,
and the paper's results (Sec. 4, Tables 2-4) are all on Market1501 / DukeMTMC-reID. This package draws
persons procedurally so that the whole pipeline (datasets -> loaders -> train -> evaluate -> tracking)
can be seen working in minutes, through the same reader as the real data.

Its modules, each importing only from the ones before it:

* ``streams``: :func:`derive_rng`, every random draw keyed by ``(seed, role, pid, cam, index)``, so the
  result does not depend on generation order.
* ``identity``: an :class:`Identity` is the persistent appearance of one person (body proportions, skin
  and hair, upper and lower clothing with a pattern, shoes, an optional bag); :func:`sample_identity`.
* ``person``: :func:`render_person` draws an identity in one view (:data:`VIEWS`: front, back, left,
  right) as an RGBA image on a transparent background.
* ``camera``: a :class:`Camera` is what one camera adds (its background kind, illumination and colour
  cast, mix of viewpoints, scale and crop jitter, resolution, blur, noise, JPEG quality, occlusions);
  :func:`sample_camera`, :func:`apply_camera` (its image formation).
* ``backgrounds``: the camera's scene (:data:`BACKGROUNDS`), :func:`render_background`.
* ``crop``: :func:`render_crop` places a person in a camera's scene and applies its effects.
* ``manifest``: the JSON manifest written beside generated data (here ``synth.json``, and the tracking
  scenes' ``scene.json``), so that a complete output is reused.
* ``market1501``: :func:`write_market1501` writes ``bounding_box_train/``, ``query/`` and
  ``bounding_box_test/`` with Market1501 file names, including junk images (pid ``-1``) and distractors
  (pid ``0000``) in the gallery; :func:`is_complete`.
* ``sheet``: :func:`contact_sheet`, a PNG grid of identities and cameras.

A tracking scene (:mod:`robustreid.tracking.scene`) reuses the renderer and the cameras.
"""

from .backgrounds import render_background
from .camera import BACKGROUNDS, Camera, apply_camera, sample_camera
from .crop import render_crop
from .identity import Identity, sample_identity
from .market1501 import (
    GENERATOR_VERSION,  # noqa: F401
    MANIFEST_NAME,  # noqa: F401
    SPLIT_DIRS,  # noqa: F401
    SynthParams,
    _plan,  # noqa: F401  (tests check single images against the plan)
    _render_spec,  # noqa: F401
    is_complete,
    write_market1501,
)
from .person import VIEWS, render_person
from .sheet import contact_sheet
from .streams import derive_rng

__all__ = [
    "VIEWS",
    "BACKGROUNDS",
    "Identity",
    "Camera",
    "SynthParams",
    "derive_rng",
    "sample_identity",
    "sample_camera",
    "render_person",
    "render_background",
    "apply_camera",
    "render_crop",
    "write_market1501",
    "is_complete",
    "contact_sheet",
]
