"""Atomic file writes: a temporary file in the target's folder, flushed, then ``os.replace`` over the target.

Every file robustreid writes (checkpoints, datasets, reports, feature files, MOT files, manifests) goes through
here, so a crash or a kill never leaves a half-written file under the final name. Temporary files are named
``.tmp-<name>-<pid>-<random>`` (``TEMP_PREFIX``), so a writer can recognise and remove leftovers of a killed run,
and are opened with ``"xb"`` (not ``mkstemp``, whose files are 0600), so the result gets the usual umask mode.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "atomic_write", "write_bytes", "write_text"]

TEMP_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
