"""Manifests: the JSON file a generator writes beside its output, so that a finished output is reused.

Both generators, the Market1501 writer (``synth.json``) and the tracking scenes (``scene.json``), follow
one protocol, kept here: the manifest names the generator, its version and the parameters; it is written
first with ``complete: false`` and last with ``complete: true``, so a finished output with the same
parameters can be reused as is and an interrupted one recognised; a non-empty folder without a manifest
of ours is refused, so data this project did not write is never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomicfile import write_bytes

__all__ = ["Manifest"]


@dataclass(frozen=True)
class Manifest:
    """The manifest of one generator: its file name, the generator id written in it, its version."""

    name: str  # file name beside the output, e.g. "synth.json"
    generator: str  # written as "generator"; a manifest naming another generator is not ours
    version: int  # bump whenever the output of a given set of parameters changes

    def read(self, out: Path) -> dict | None:
        """The manifest in folder ``out`` if there is one of this generator (any version), else None."""
        try:
            doc = json.loads((Path(out) / self.name).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) and doc.get("generator") == self.generator else None

    def write(self, out: Path, params: dict, *, complete: bool, **sections) -> None:
        """Write the manifest into ``out`` atomically; ``sections`` are the generator's own keys."""
        doc = {"generator": self.generator, "version": self.version, "complete": complete, "params": params,
               **sections}
        write_bytes(Path(out) / self.name, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())

    def same_run(self, doc: dict | None, params: dict) -> bool:
        """``doc`` (as read) was written by this version with ``params``, finished or not."""
        return doc is not None and doc.get("version") == self.version and doc.get("params") == params

    def finished(self, doc: dict | None, params: dict) -> bool:
        """``doc`` (as read) records a finished output of this version with ``params``."""
        return self.same_run(doc, params) and bool(doc.get("complete"))

    def check_writable(self, out: Path, previous: dict | None, what: str) -> None:
        """Refuse (``ValueError``) an ``out`` that is a file, or a non-empty folder without a manifest of
        this generator (``previous``, as read); ``what`` names the output in the message."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"output {out} exists and is not a directory")
        if previous is None and out.is_dir() and any(out.iterdir()):
            raise ValueError(f"refusing to write {what} into {out}: it is not empty and has no {self.name} "
                             f"from a previous run of this generator (choose an empty or new folder)")
