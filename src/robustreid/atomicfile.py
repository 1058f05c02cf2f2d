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

__all__ = ["TEMP_PREFIX", "atomic_write", "write_bytes", "write_text", "remove_stale_temp_files"]

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
    _fsync_dir(path.parent)  # the rename itself survives a power loss
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder: its rename is durable enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (``.tmp-<name>-<pid>-<hex>`` whose
    process is gone); returns what was removed. A live writer's file (its pid still running) is kept, and so is
    anything not named by this module's pattern. ``name``: only the leftovers of that target file (for a folder
    the library does not own, e.g. the one ``extract --out`` writes into)."""
    removed = []
    for tmp in Path(folder).glob(f"{TEMP_PREFIX}*"):
        target, _, rest = tmp.name[len(TEMP_PREFIX):].rpartition("-")
        target, _, pid_text = target.rpartition("-")
        if not (target and pid_text.isdigit() and len(rest) == 8 and all(c in "0123456789abcdef" for c in rest)):
            continue  # not one of ours: .tmp-<name>-<pid>-<8 hex digits>
        if name is not None and target != name:
            continue
        if not tmp.is_file() or _alive(int(pid_text)):  # a writer still at work (or this process)
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
