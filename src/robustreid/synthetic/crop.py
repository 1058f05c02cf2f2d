"""Crops: one detection of a person as a camera sees it.

:func:`render_crop` places a person (:mod:`.person`) in a window of the camera's scene
(:mod:`.backgrounds`), in a view drawn from the camera's mix, scaled and shifted by its jitter, possibly
occluded by another passer-by or an object, and passes it through the camera's image formation
(:func:`~robustreid.synthetic.camera.apply_camera`). :func:`render_stray` draws the bad detections of a
gallery (distractors, junk): background only, part of a body, or a person cut by the border.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .backgrounds import render_background
from .camera import Camera, apply_camera, check_size
from .identity import Identity, sample_identity
from .person import ellipse_box, render_person

__all__ = ["render_crop", "render_stray"]


def _sample_view(camera: Camera, rng: np.random.Generator) -> str:
    k = int(rng.choice(3, p=np.asarray(camera.view_probs) / sum(camera.view_probs)))
    return ("front", "back", "left" if rng.random() < 0.5 else "right")[k]


def _draw_occluder(img: Image.Image, camera: Camera, rng: np.random.Generator) -> None:
    """A static object in front of the person: a pole, or a low object (bench, car, railing, bin)."""
    w, h = img.size
    d = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(20, 220, 3))
    if rng.random() < 0.4:
        pw = int(rng.uniform(0.1, 0.25) * w)
        x = int(rng.uniform(-0.1, 0.9) * w)
        d.rectangle([x, 0, x + pw, h], fill=colour)
        d.rectangle([x + pw // 3, 0, x + pw // 3 + 1, h], fill=tuple(min(255, c + 40) for c in colour))
    else:
        top = int(rng.uniform(0.55, 0.8) * h)
        x0 = int(rng.uniform(-0.6, 0.2) * w)
        x1 = x0 + int(rng.uniform(0.8, 1.6) * w)
        if rng.random() < 0.5:  # railing: horizontal bars
            for k in range(3):
                y = top + k * (h - top) // 3
                d.rectangle([x0, y, x1, y + max(2, h // 40)], fill=colour)
            for x in range(x0, x1, max(6, w // 6)):
                d.rectangle([x, top, x + 2, h], fill=colour)
        else:
            d.rounded_rectangle([x0, top, x1, h + 4], radius=max(2, w // 10), fill=colour)


def _place_person(img: Image.Image, person: Image.Image, x_center: float, y_feet: float) -> None:
    """Paste an RGBA person (feet at y_feet) with a soft ground shadow."""
    pw, ph = person.size
    shadow = Image.new("L", img.size, 0)
    ImageDraw.Draw(shadow).ellipse(ellipse_box(x_center, y_feet, pw * 0.42, max(2.0, ph * 0.025)), fill=90)
    img.paste((0, 0, 0), (0, 0), shadow)
    img.paste(person, (int(round(x_center - pw / 2)), int(round(y_feet - ph))), person)


def render_crop(identity: Identity, camera: Camera, rng: np.random.Generator,
                size: tuple[int, int] = (128, 64)) -> Image.Image:
    """One detection crop of ``identity`` seen by ``camera``: RGB, ``size = (height_px, width_px)``.

    The person is drawn in a view drawn from the camera's mix, scaled and shifted by the camera's jitter,
    placed in a window of its scene, possibly occluded (another passer-by or an object), and passed
    through the camera's image formation (:func:`apply_camera`). JPEG compression is left to the writer.
    """
    h, w = check_size(size)
    img = render_background(camera, (h, w), rng)
    view = _sample_view(camera, rng)
    height = max(16, round(float(rng.uniform(*camera.person_scale)) * h))
    person = render_person(identity, view, height, rng)
    x_center = w / 2 + float(rng.normal(0, camera.jitter_x)) * w
    y_feet = h - float(rng.uniform(0.0, 0.07)) * h
    _place_person(img, person, x_center, y_feet)
    if rng.random() < camera.occlusion_prob:
        if rng.random() < 0.45:  # another passer-by in front
            other = sample_identity(rng)
            o_height = max(16, round(height * float(rng.uniform(0.95, 1.15))))
            o_view = _sample_view(camera, rng)
            side = 1.0 if rng.random() < 0.5 else -1.0
            o_x = x_center + side * float(rng.uniform(0.45, 0.75)) * w
            o_feet = y_feet + float(rng.uniform(0, 0.06)) * h
            _place_person(img, render_person(other, o_view, o_height, rng), o_x, o_feet)
        else:
            _draw_occluder(img, camera, rng)
    return apply_camera(img, camera, rng)


def render_stray(camera: Camera, rng: np.random.Generator, size: tuple[int, int],
                  identity: Identity) -> Image.Image:
    """A bad detection (distractor / junk): background only, part of a body, or a person cut by the border."""
    h, w = check_size(size)
    img = render_background(camera, (h, w), rng)
    kind = rng.random()
    if kind < 0.3:
        if rng.random() < 0.5:
            _draw_occluder(img, camera, rng)
    elif kind < 0.65:  # zoomed-in part of a body
        height = round(h * float(rng.uniform(1.4, 2.4)))
        person = render_person(identity, _sample_view(camera, rng), height, rng)
        y_feet = h + float(rng.uniform(-0.1, 1.0)) * (height - h)
        _place_person(img, person, w / 2 + float(rng.normal(0, 0.15)) * w, y_feet)
    else:  # person half outside the box
        height = round(h * float(rng.uniform(*camera.person_scale)))
        person = render_person(identity, _sample_view(camera, rng), height, rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        x_center = w / 2 + side * float(rng.uniform(0.35, 0.6)) * w
        _place_person(img, person, x_center, h - float(rng.uniform(0, 0.1)) * h)
    return apply_camera(img, camera, rng)
