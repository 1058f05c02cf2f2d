"""Tracking results as pictures: video frames with each box drawn in its track's colour and labelled with its
id.

What a reader checks of a tracker at a glance is whether a person keeps their colour (id) from frame to frame,
and in a room from camera to camera. This module draws that, with Pillow, from the MOTChallenge files the
tracker writes (:mod:`.motio`):

* :func:`track_color`: a fixed, well-spread colour per track id (golden-ratio hues), the same in every frame
  and camera, so one identity is one colour across a figure;
* :func:`draw_tracks`: one frame (HxWx3 uint8 RGB) with boxes (``x, y, w, h``) outlined and labelled;
* :func:`pick_frames`: ``count`` frames spread over the part of a sequence where the results have boxes;
* :func:`tracked_frames`: those frames of a sequence read from ``img1/`` and drawn with a results file;
* :func:`tile`: frames laid out in a grid with a caption above each;
* :func:`scene_strip`: the picture of a tracked scene in the demo's report: one camera's frames in a row (a
  street), or every camera of a room at the same moments (a row per moment, a column per camera).

Every function returns a new array; inputs are never drawn on.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .motio import frame_rows, load_sequence, read_results
from .scene import scene_sequences

__all__ = ["track_color", "draw_tracks", "pick_frames", "tracked_frames", "tile", "scene_strip"]

_GOLDEN = 0.618033988749895  # hue step between consecutive ids: successive ids land far apart on the wheel


def track_color(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of ``track_id``: hue ``id * 0.618...`` (mod 1), saturation 0.85, value 0.95."""
    hue = (int(track_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _text_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (ITU-R BT.601 luma)."""
    return (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 140 else (255, 255, 255)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected an HxWx3 uint8 RGB array, got shape {image.shape} "
                         f"dtype {image.dtype}")
    return image


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (a scalable font where FreeType is present)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def draw_tracks(image, boxes_xywh, track_ids: Sequence[int], *, width: int = 2,
                font_size: int | None = None) -> np.ndarray:
    """``image`` with each box outlined ``width`` px wide in :func:`track_color` of its id, the id written on
    a tag of that colour above the box's top-left corner (inside the box when there is no room above).

    ``boxes_xywh``: ``(N, 4)`` left, top, width, height in pixels (MOTChallenge columns 2-5); ``track_ids``: N
    ints. The outline lies inside the box: its outermost pixels are the box's edge ``(x, y) .. (x + w - 1,
    y + h - 1)``. ``font_size`` (pixels) defaults to a twentieth of the image height (at least 10), so the ids
    stay legible when the frame is shown at half size. Returns a new HxWx3 uint8 array.
    """
    image = _check_image(image)
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    ids = [int(i) for i in track_ids]
    if len(ids) != len(boxes):
        raise ValueError(f"got {len(boxes)} boxes and {len(ids)} track ids; expected one id per box")
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    canvas = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size if font_size is not None else max(10, round(image.shape[0] / 20)))
    for (x, y, w, h), track_id in zip(boxes, ids):
        if not (w > 0 and h > 0):
            continue
        color = track_color(track_id)
        left, top = int(round(x)), int(round(y))
        right, bottom = int(round(x + w)) - 1, int(round(y + h)) - 1
        draw.rectangle([left, top, right, bottom], outline=color, width=width)
        label = str(track_id)
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), label, font=font)
        tag_w, tag_h = tx1 - tx0 + 4, ty1 - ty0 + 4
        tag_top = top - tag_h if top - tag_h >= 0 else top
        draw.rectangle([left, tag_top, left + tag_w - 1, tag_top + tag_h - 1], fill=color)
        draw.text((left + 2 - tx0, tag_top + 2 - ty0), label, fill=_text_color(color), font=font)
    return np.asarray(canvas)


def pick_frames(results: np.ndarray, num_frames: int, count: int = 6) -> list[int]:
    """``count`` frame numbers (1-based, ascending, distinct) evenly spread inside the span from the first
    to the last frame of ``results`` (MOTChallenge rows, frame in column 0) that hold a box
    (``1..num_frames`` when none does): the span cut into ``count + 1`` equal steps, its two ends left out
    (people are entering or leaving there). Fewer than ``count`` when the span is shorter."""
    if count < 1 or num_frames < 1:
        raise ValueError(f"count and num_frames must be >= 1, got count={count}, num_frames={num_frames}")
    results = np.asarray(results)
    frames = results[:, 0].astype(np.int64) if len(results) else np.empty(0, np.int64)
    first, last = (int(frames.min()), int(frames.max())) if len(frames) else (1, num_frames)
    picked = np.unique(np.round(np.linspace(first, last, count + 2)[1:-1]).astype(np.int64))
    return [int(f) for f in picked]


def tracked_frames(seq_dir, results, frames: Sequence[int], *, width: int = 2) -> list[np.ndarray]:
    """Frames ``frames`` (1-based) of the MOTChallenge sequence ``seq_dir``, each drawn with its rows of
    ``results`` (a results file's path or its ``(N, 7)`` rows: frame, id, x, y, w, h, score) by
    :func:`draw_tracks`."""
    seq = load_sequence(seq_dir)
    rows = read_results(results) if not isinstance(results, np.ndarray) else results
    per_frame = frame_rows(rows, seq.info.seq_length)
    drawn = []
    for f in frames:
        if not 1 <= f <= seq.info.seq_length:
            raise ValueError(f"frame {f} is outside 1..{seq.info.seq_length} of {seq.root}")
        path = seq.frame_path(f)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: frame {f} of {seq.root} is missing")
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"))
        r = per_frame[f - 1]
        drawn.append(draw_tracks(image, r[:, 2:6], r[:, 1].astype(np.int64), width=width))
    return drawn


def tile(images: Sequence[np.ndarray], columns: int, captions: Sequence[str] | None = None, *,
         scale: float = 0.5, gap: int = 4, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``images`` (HxWx3 uint8, all the same size) resized by ``scale`` and laid out row by row, ``columns``
    per row, ``gap`` px apart, each under its caption (if given). Returns one HxWx3 uint8 array."""
    if not images:
        raise ValueError("tile: expected at least one image, got none")
    if columns < 1 or not 0 < scale <= 4:
        raise ValueError(f"tile: columns must be >= 1 and scale in (0, 4], got columns={columns}, "
                         f"scale={scale}")
    images = [_check_image(im) for im in images]
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"tile: images must have one size, got {sorted({im.shape for im in images})}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"tile: got {len(images)} images and {len(captions)} captions")
    height, width = images[0].shape[:2]
    cell_w, cell_h = max(1, round(width * scale)), max(1, round(height * scale))
    font = ImageFont.load_default()
    caption_h = 0
    if captions is not None:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        caption_h = max(probe.textbbox((0, 0), c, font=font)[3] for c in captions) + 6
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    size = (cols * cell_w + (cols - 1) * gap, rows * (cell_h + caption_h) + (rows - 1) * gap)
    sheet = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(sheet)
    for k, image in enumerate(images):
        x = (k % columns) * (cell_w + gap)
        y = (k // columns) * (cell_h + caption_h + gap)
        if captions is not None:
            draw.text((x + 2, y + 2), captions[k], fill=(0, 0, 0), font=font)
        cell = Image.fromarray(image).resize((cell_w, cell_h), Image.Resampling.BILINEAR)
        sheet.paste(cell, (x, y + caption_h))
    return np.asarray(sheet)


def scene_strip(scene_dir, results_dir, count: int = 6, *, scale: float = 0.5) -> np.ndarray:
    """About ``count`` tracked frames of a scene in one picture, boxes coloured and labelled by track id.

    ``results_dir`` holds ``cam<k>.txt`` per camera of the scene's test part (what ``run.track_room`` and
    ``run.compare_models`` write). One camera: ``count`` frames spread over the tracked part
    (:func:`pick_frames`), 3 per row. Several (a room, whose results carry global identities): ``count //
    cameras`` moments (at least 1), each a row of the cameras at that moment, so one person keeps one colour
    across the row when the re-entry gallery matched them."""
    cams = scene_sequences(scene_dir)
    results = {camid: read_results(Path(results_dir) / f"cam{camid}.txt") for camid, _ in cams}
    length = load_sequence(cams[0][1]).info.seq_length
    if len(cams) == 1:
        camid, path = cams[0]
        frames = pick_frames(results[camid], length, count)
        return tile(tracked_frames(path, results[camid], frames), min(3, len(frames)),
                    [f"cam {camid}, frame {f}" for f in frames], scale=scale)
    every = np.concatenate([r for r in results.values() if len(r)] or [np.empty((0, 7))])
    moments = pick_frames(every, length, max(1, count // len(cams)))
    images, captions = [], []
    for f in moments:
        for camid, path in cams:
            images += tracked_frames(path, results[camid], [f])
            captions.append(f"cam {camid}, frame {f}")
    return tile(images, len(cams), captions, scale=scale)
