"""A query: an image (bytes from a file or an upload) checked and decoded, embedded, searched in an index.

The checks come before any pixel is decoded where they can: the byte count (``MAX_UPLOAD_BYTES``), then the
size in the image header against ``MAX_PIXELS`` (a decompression bomb: a small file that decodes to
gigabytes), then the decode itself. Only the formats of ``FORMATS`` are opened (Pillow's rarer plugins are
not exposed to uploads), and any error while opening or decoding is a "not a readable image". Each failure
is a :class:`QueryError` with a one-line message and the HTTP status the service answers with (413 too large,
400 not an image); the command line prints the same line.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .embedding import Embedder
from .index import Hit, SearchIndex

__all__ = [
    "FORMATS",
    "MAX_K",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "QueryError",
    "check_k",
    "decode_image",
    "search_image",
    "search_tracklet",
]

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a person crop is a few kB; a whole 4K frame as PNG fits
MAX_PIXELS = 4096 * 4096  # below Pillow's own MAX_IMAGE_PIXELS, so the header check here comes first
FORMATS = ("JPEG", "PNG", "BMP", "WEBP")  # the formats a query may be in
MAX_K = 1000


class QueryError(ValueError):
    """A query the caller can fix; ``status`` is the HTTP status the service answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise QueryError(f"k={k!r}: expected an integer from 1 to {MAX_K}", 422)
    return int(k)


def decode_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
                 name: str = "image") -> np.ndarray:
    """``data`` (an encoded image) -> HxWx3 uint8 RGB, or a :class:`QueryError` (module docstring)."""
    if len(data) > max_bytes:
        raise QueryError(f"{name}: {len(data)} bytes, more than the limit of {max_bytes}", 413)
    if not data:
        raise QueryError(f"{name}: empty; expected an image file ({', '.join(FORMATS)})")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise QueryError(f"{name}: {width}x{height} pixels, more than the limit of {max_pixels}", 413)
            if width < 1 or height < 1:
                raise QueryError(f"{name}: {width}x{height} pixels, an empty image")
            return np.asarray(img.convert("RGB"))
    except QueryError:
        raise
    except Image.DecompressionBombError as err:  # a header over twice Pillow's own limit: refused at open
        raise QueryError(f"{name}: {err}".splitlines()[0], 413) from None
    except Exception as err:  # noqa: BLE001 - not an image, another format, truncated, a plugin's own error
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise QueryError(f"{name}: not a readable image ({reason})") from None


def search_image(index: SearchIndex, embed: Embedder, image: np.ndarray, k: int = 20) -> list[Hit]:
    """The ``k`` tracklets nearest to the person in ``image`` (a crop, HxWx3 uint8 RGB)."""
    k = check_k(k)
    return index.search(embed([image]), k)[0]


def search_tracklet(index: SearchIndex, tracklet_id: int, k: int = 20) -> list[Hit] | None:
    """The ``k`` tracklets nearest to a stored one (itself first); None for an unknown id."""
    k = check_k(k)
    vector = index.vector(tracklet_id)
    return None if vector is None else index.search(vector[None], k)[0]
