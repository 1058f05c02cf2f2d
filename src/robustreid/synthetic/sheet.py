"""Contact sheet: a PNG grid of synthetic persons, to see what the generator draws.

One row per identity of a dataset written with a given seed: its clean renders (front, back, side, no
camera effects), then one crop per camera. ``docs/synthetic_contact_sheet.png`` is made with it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageDraw

from ..atomicfile import write_bytes
from .camera import check_size
from .crop import render_crop
from .market1501 import camera_of, identity_of
from .person import render_person
from .streams import ROLE_IMAGE, derive_rng

__all__ = ["contact_sheet"]


def contact_sheet(path: str | os.PathLike, *, seed: int = 0, num_ids: int = 6, cameras: int = 6,
                  size: tuple[int, int] = (128, 64), colors: int | None = 256) -> Path:
    """Write a PNG grid of synthetic persons to ``path`` and return the path.

    One row per identity: the identities and cameras (c1..c{cameras}) of a dataset written with ``seed``
    (pids 1..num_ids). The first three columns are the clean renders (front, back, side on grey, no camera
    effects), the others one crop per camera. ``colors`` quantises the sheet to that many colours to keep
    the file small (``None``: full RGB). ``docs/synthetic_contact_sheet.png`` is
    ``contact_sheet("docs/synthetic_contact_sheet.png")``.
    """
    if num_ids < 1 or not 2 <= cameras <= 9:
        raise ValueError(f"num_ids must be >= 1 and cameras in 2..9, got {num_ids} and {cameras}")
    if colors is not None and not 2 <= colors <= 256:
        raise ValueError(f"colors must be in 2..256 or None, got {colors}")
    h, w = check_size(size)
    gap, label_h, n_clean = 2, 12, 3
    cols = n_clean + cameras
    sheet = Image.new("RGB", (cols * (w + gap) + gap * 3, label_h + num_ids * (h + gap)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)

    def x_of(c: int) -> int:
        return gap + c * (w + gap) + (gap * 3 if c >= n_clean else 0)

    for c, label in enumerate(["front", "back", "side"] + [f"c{k}" for k in range(1, cameras + 1)]):
        d.text((x_of(c) + 2, 0), label, fill=(0, 0, 0))
    for r, pid in enumerate(range(1, num_ids + 1)):
        identity = identity_of(seed, pid)
        y = label_h + r * (h + gap)
        for c, view in enumerate(("front", "back", "right")):
            person = render_person(identity, view, round(h * 0.9), derive_rng(seed, ROLE_IMAGE, pid, 0, c))
            cell = Image.new("RGB", (w, h), (150, 150, 150))
            cell.paste(person, ((w - person.width) // 2, h - person.height - 2), person)
            sheet.paste(cell, (x_of(c), y))
        for k in range(1, cameras + 1):
            rng = derive_rng(seed, ROLE_IMAGE, pid, k, 1)
            sheet.paste(render_crop(identity, camera_of(seed, k), rng, (h, w)), (x_of(n_clean + k - 1), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if colors is not None:
        sheet = sheet.quantize(colors, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return path
