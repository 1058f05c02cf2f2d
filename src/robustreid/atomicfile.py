"""Atomic file writes: a temporary file in the target's folder, flushed, then ``os.replace`` over the target.

Every file robustreid writes (checkpoints, datasets, reports, feature files, MOT files, manifests) goes through
here, so a crash or a kill never leaves a half-written file under the final name. Temporary files are named
``.tmp-<name>-<pid>-<random>`` (``TEMP_PREFIX``), so a writer can recognise and remove leftovers of a killed run,
and are opened with ``"xb"`` (not ``mkstemp``, whose files are 0600), so the result gets the usual umask mode.
A writer that builds a whole folder the same way (made under :func:`temp_path`, renamed when complete) has its
leftovers removed by ``remove_stale_temp_files(..., folders=True)``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "atomic_write", "remove_stale_temp_files", "temp_path", "write_bytes", "write_text"]

TEMP_PREFIX = ".tmp-"


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.tmp-<name>-<pid>-<8 hex digits>`` (module docstring)."""
    path = Path(path)
    return path.parent / f"{TEMP_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
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


def remove_stale_temp_files(folder: str | os.PathLike, name: str | None = None, *,
                            folders: bool = False) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (``.tmp-<name>-<pid>-<hex>`` whose
    process is gone); returns what was removed. A live writer's file (its pid still running) is kept, and so is
    anything not named by this module's pattern. ``name``: only the leftovers of that target file (for a folder
    the library does not own, e.g. the one ``extract --out`` writes into). ``folders``: also remove temporary
    folders of that pattern (a folder built whole and renamed, e.g. a search index); off, only files go."""
    removed = []
    for tmp in Path(folder).glob(f"{TEMP_PREFIX}*"):
        target, _, rest = tmp.name[len(TEMP_PREFIX):].rpartition("-")
        target, _, pid_text = target.rpartition("-")
        if not (target and pid_text.isdigit() and len(rest) == 8 and all(c in "0123456789abcdef" for c in rest)):
            continue  # not one of ours: .tmp-<name>-<pid>-<8 hex digits>
        if name is not None and target != name:
            continue
        is_folder = folders and tmp.is_dir() and not tmp.is_symlink()
        if not (tmp.is_file() or is_folder) or _alive(int(pid_text)):  # a writer at work (or this process)
            continue
        if is_folder:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
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
