"""Person ReID dataset readers: Market1501, DukeMTMC-reID, MSMT17 (V1 / V2) and their union.

The paper trains and evaluates on Market1501 and DukeMTMC-reID (Section 4) and trains the ReID model used for
tracking on DukeMTMC + Market1501 + MSMT17 together (Section 5.2). Every reader turns the dataset as it ships
into plain lists of ``Record(img_path, pid, camid)``:

* ``train`` pids are relabelled ``0..N-1`` in sorted order of the original ids (classifier targets);
  ``query`` / ``gallery`` keep the original ids (only equality matters for evaluation).
* ``camid`` is 0-based (``c1`` -> 0).
* Records are sorted by ``img_path`` so the order never depends on the filesystem.
* Only the file's basename is parsed, never the rest of the path.

Layouts (``root`` may be the dataset folder itself or the folder that holds it):

* Market1501 (``Market-1501-v15.09.15/``): ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` with
  names like ``0002_c1s1_000451_03.jpg``. pid ``-1`` (junk) is dropped everywhere; pid ``0`` (distractors)
  stays in the gallery and is dropped from ``train`` (distractors are many different people, not one class;
  the released training folder has none). A split left without any image (e.g. a gallery of junk only) is a
  ``ValueError`` naming the dataset, the split's folder and what was left out.
* DukeMTMC-reID (``DukeMTMC-reID/``): the same three folders, names like ``0001_c2_f0046182.jpg``.
* MSMT17 (``MSMT17_V1/`` with ``train/``, ``test/``; ``MSMT17_V2/`` with ``mask_train_v2/``,
  ``mask_test_v2/``) plus ``list_train.txt``, ``list_val.txt``, ``list_query.txt``, ``list_gallery.txt``, one
  ``PID_FOLDER/IMAGE.jpg PID`` per line (e.g. ``0000/0000_000_01_0303morning_0015_0.jpg 0``), the camera
  being the third ``_`` field of the name. ``train`` is the train + val lists (32,621 images of 1,041 ids, as
  commonly reported); query / gallery paths are relative to the test folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = [
    "DATASET_NAMES",
    "Record",
    "ReidDataset",
    "check_images",
    "dataset_from_spec",
    "load_dataset",
    "labels",
    "read_image",
    "union",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class Record(NamedTuple):
    """One image: its path, person id and 0-based camera id."""

    img_path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class ReidDataset:
    """Train / query / gallery records of one dataset (or of a union of datasets).

    ``root`` is the resolved dataset folder (for a union: the members' folders joined by ``os.pathsep``).
    """

    name: str
    root: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]

    @property
    def num_train_pids(self) -> int:
        """Number of training identities, i.e. ``num_classes`` of the classifier (pids are ``0..N-1``)."""
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def stats_table(self) -> str:
        """A printable table of ids / images / cameras per split."""
        rows = [("split", "ids", "images", "cameras")]
        for split in ("train", "query", "gallery"):
            records = getattr(self, split)
            rows.append((split, *(str(n) for n in _split_counts(records))))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"{self.name} ({self.root})"]
        for i, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
            lines.append("  " + " | ".join(cells))
            if i == 0:
                lines.append("  " + "-+-".join("-" * w for w in widths))
        return "\n".join(lines)


def _split_counts(records: Sequence[Record]) -> tuple[int, int, int]:
    return len({r.pid for r in records}), len(records), len({r.camid for r in records})


# ----------------------------------------------------------------------------------------------------
# Filename parsing (basename only)

# Market1501 "0002_c1s1_000451_03.jpg" / "-1_c1s1_000401_03.jpg"; DukeMTMC-reID "0001_c2_f0046182.jpg".
_PID_CAM_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")
# MSMT17 "0000_000_01_0303morning_0015_0.jpg": pid, index, camera (1-based), ...
_MSMT17_PATTERN = re.compile(r"^\d+_\d+_(\d+)_")


def _parse_pid_camid(img_path: str, example: str) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market1501 / DukeMTMC-reID file name."""
    basename = os.path.basename(img_path)
    match = _PID_CAM_PATTERN.match(basename)
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"cannot parse pid and camera from '{img_path}': expected a name like '{example}'")
    return int(match.group(1)), int(match.group(2)) - 1


def _parse_msmt17_camid(img_path: str, where: str) -> int:
    basename = os.path.basename(img_path)
    match = _MSMT17_PATTERN.match(basename)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"{where}: cannot parse the camera from '{basename}': "
            "expected a name like '0000_000_01_0303morning_0015_0.jpg'"
        )
    return int(match.group(1)) - 1


def _relabel(records: Iterable[Record]) -> list[Record]:
    """Map training pids to ``0..N-1`` in sorted order of the original pids."""
    records = list(records)
    label_of = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=label_of[r.pid]) for r in records]


# ----------------------------------------------------------------------------------------------------
# Root resolution


def _resolve_dataset_dir(
    name: str, root: str | os.PathLike, folder_names: Sequence[str], missing_in: Callable[[Path], list[str]],
    layout: str,
) -> Path:
    """Return ``root`` or ``root/<usual folder name>``, whichever holds the full layout.

    ``missing_in(folder)`` lists the layout entries absent from ``folder``. The error names the missing
    entries of the closest candidate and the expected layout, on one line.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset root '{root}' is not a folder; expected {layout}")
    candidates = [root] + [root / folder for folder in folder_names if (root / folder).is_dir()]
    missing = {candidate: missing_in(candidate) for candidate in candidates}
    for candidate in candidates:
        if not missing[candidate]:
            return candidate.resolve()
    closest = min(candidates, key=lambda c: len(missing[c]))
    looked = ", ".join(f"'{c}'" for c in candidates)
    raise FileNotFoundError(
        f"{name}: missing {', '.join(missing[closest])} in '{closest}' (looked in {looked}); "
        f"expected {layout}"
    )


# ----------------------------------------------------------------------------------------------------
# Market1501 and DukeMTMC-reID


@dataclass(frozen=True)
class _FolderLayout:
    """A dataset whose splits are folders of images named ``PID_cCAM...``."""

    folder_names: tuple[str, ...]  # the dataset folder's usual names, to accept its parent as root
    example: str

    def describe(self) -> str:
        return (
            f"ROOT/bounding_box_train/, ROOT/query/, ROOT/bounding_box_test/ with images named like "
            f"'{self.example}', ROOT being '{self.folder_names[0]}' or its parent"
        )


_SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _list_images(folder: Path) -> list[str]:
    paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in '{folder}'")
    return paths


def _read_folder_split(name: str, split: str, folder: Path, example: str) -> list[Record]:
    is_train = split == "train"
    records, dropped = [], {-1: 0, 0: 0}
    images = _list_images(folder)
    for img_path in images:
        pid, camid = _parse_pid_camid(img_path, example)
        if pid == -1 or (is_train and pid == 0):  # junk everywhere; distractors are not a training class
            dropped[pid] += 1
            continue
        if pid < -1:
            raise ValueError(f"invalid pid {pid} in '{img_path}': expected -1 (junk), 0 (distractor) or > 0")
        records.append(Record(img_path, pid, camid))
    if not records:  # every image left out: say which split of which folder, and why
        why = " and ".join(f"{n} {'junk (pid -1)' if pid == -1 else 'distractors (pid 0, not a training class)'}"
                           for pid, n in dropped.items() if n)
        raise ValueError(f"{name}: the {split} split '{folder}' has no usable image: all {len(images)} of its "
                         f"images are left out, {why}; expected images of persons with pid > 0 (e.g. '{example}')")
    return records


def _read_folder_layout(name: str, root: str | os.PathLike, layout: _FolderLayout) -> ReidDataset:
    def missing_in(folder: Path) -> list[str]:
        return [f"'{sub}/'" for sub in _SPLIT_FOLDERS.values() if not (folder / sub).is_dir()]

    dataset_dir = _resolve_dataset_dir(name, root, layout.folder_names, missing_in, layout.describe())
    splits = {split: _read_folder_split(name, split, dataset_dir / sub, layout.example)
              for split, sub in _SPLIT_FOLDERS.items()}
    return ReidDataset(name, str(dataset_dir), _relabel(splits["train"]), splits["query"], splits["gallery"])


_MARKET1501 = _FolderLayout(("Market-1501-v15.09.15", "Market-1501", "Market1501", "market1501"),
                            "0002_c1s1_000451_03.jpg")
_DUKEMTMCREID = _FolderLayout(("DukeMTMC-reID", "dukemtmc-reid", "DukeMTMC", "dukemtmcreid"),
                              "0001_c2_f0046182.jpg")


def _read_market1501(root: str | os.PathLike) -> ReidDataset:
    return _read_folder_layout("market1501", root, _MARKET1501)


def _read_dukemtmcreid(root: str | os.PathLike) -> ReidDataset:
    return _read_folder_layout("dukemtmcreid", root, _DUKEMTMCREID)


# ----------------------------------------------------------------------------------------------------
# MSMT17

_MSMT17_FOLDER_NAMES = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")
# (train folder, test folder) per release; V2 (faces blurred) ships lower-case "v2", some copies upper-case.
_MSMT17_IMAGE_FOLDERS = (
    ("train", "test"), ("mask_train_v2", "mask_test_v2"), ("mask_train_V2", "mask_test_V2"),
)
_MSMT17_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
_MSMT17_LAYOUT = (
    "ROOT/train/ and ROOT/test/ (V1) or ROOT/mask_train_v2/ and ROOT/mask_test_v2/ (V2), plus "
    "ROOT/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt with lines like "
    "'0000/0000_000_01_0303morning_0015_0.jpg 0', ROOT being 'MSMT17_V1' / 'MSMT17_V2' or its parent"
)


def _msmt17_image_folders(folder: Path) -> tuple[str, str] | None:
    for train_dir, test_dir in _MSMT17_IMAGE_FOLDERS:
        if (folder / train_dir).is_dir() and (folder / test_dir).is_dir():
            return train_dir, test_dir
    return None


def _msmt17_missing(folder: Path) -> list[str]:
    missing = []
    if _msmt17_image_folders(folder) is None:
        missing.append("'train/' + 'test/' (or 'mask_train_v2/' + 'mask_test_v2/')")
    return missing + [f"'{name}'" for name in _MSMT17_LISTS if not (folder / name).is_file()]


def _read_msmt17_list(list_path: Path, image_dir: Path) -> list[Record]:
    """Parse ``PID_FOLDER/IMAGE.jpg PID`` lines; the pid comes from the list, the camera from the name."""
    records = []
    with open(list_path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{list_path}:{line_number}"
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(
                    f"{where}: expected 'PID_FOLDER/IMAGE.jpg PID' "
                    f"(e.g. '0000/0000_000_01_0303morning_0015_0.jpg 0'), got {line.strip()!r}"
                )
            relative_path, pid = fields
            camid = _parse_msmt17_camid(relative_path, where)
            records.append(Record(str(image_dir.joinpath(*relative_path.split("/"))), int(pid), camid))
    if not records:
        raise ValueError(f"'{list_path}' lists no images; expected lines like "
                         "'0000/0000_000_01_0303morning_0015_0.jpg 0'")
    return records


def _read_msmt17(root: str | os.PathLike) -> ReidDataset:
    dataset_dir = _resolve_dataset_dir("msmt17", root, _MSMT17_FOLDER_NAMES, _msmt17_missing, _MSMT17_LAYOUT)
    train_dir, test_dir = _msmt17_image_folders(dataset_dir)
    train = _read_msmt17_list(dataset_dir / "list_train.txt", dataset_dir / train_dir)
    train += _read_msmt17_list(dataset_dir / "list_val.txt", dataset_dir / train_dir)
    query = _read_msmt17_list(dataset_dir / "list_query.txt", dataset_dir / test_dir)
    gallery = _read_msmt17_list(dataset_dir / "list_gallery.txt", dataset_dir / test_dir)
    train, query, gallery = sorted(train), sorted(query), sorted(gallery)
    return ReidDataset("msmt17", str(dataset_dir), _relabel(train), query, gallery)


# ----------------------------------------------------------------------------------------------------
# Public entry points

_READERS: dict[str, Callable[[str | os.PathLike], ReidDataset]] = {
    "market1501": _read_market1501,
    "dukemtmcreid": _read_dukemtmcreid,
    "msmt17": _read_msmt17,
}
DATASET_NAMES = tuple(_READERS)


def _shift(records: Iterable[Record], pid_offset: int, cam_offset: int) -> list[Record]:
    return [Record(r.img_path, r.pid + pid_offset, r.camid + cam_offset) for r in records]


def union(datasets: Sequence[ReidDataset]) -> ReidDataset:
    """Merge datasets for multi-dataset training (Section 5.2: DukeMTMC + Market1501 + MSMT17).

    Each member's pids and camids are shifted past the previous members' so that identities and cameras of
    different datasets never collide: training pids stay ``0..N-1`` (members in the given order), query /
    gallery pids are shifted by the previous members' largest test pid + 1, camids by their largest camid + 1
    (so ``num_train_cams`` is the sum when every camera appears in training). The merged query / gallery can
    be evaluated as one retrieval problem; cross-dataset pairs are all negatives.
    """
    datasets = list(datasets)
    if not datasets:
        raise ValueError("union() needs at least one dataset, got none")
    if len(datasets) == 1:
        return datasets[0]
    train, query, gallery = [], [], []
    pid_offset = test_pid_offset = cam_offset = 0
    for dataset in datasets:
        train += _shift(dataset.train, pid_offset, cam_offset)
        query += _shift(dataset.query, test_pid_offset, cam_offset)
        gallery += _shift(dataset.gallery, test_pid_offset, cam_offset)
        all_records = dataset.train + dataset.query + dataset.gallery
        pid_offset += max((r.pid for r in dataset.train), default=-1) + 1
        test_pid_offset += max((r.pid for r in dataset.query + dataset.gallery), default=-1) + 1
        cam_offset += max((r.camid for r in all_records), default=-1) + 1
    return ReidDataset(
        name="+".join(d.name for d in datasets),
        root=os.pathsep.join(d.root for d in datasets),
        train=_relabel(train),  # a no-op for readers' output (pids 0..N-1); makes any input contiguous
        query=query,
        gallery=gallery,
    )


def load_dataset(
    name: str | Sequence[str], root: str | os.PathLike | Sequence[str | os.PathLike]
) -> ReidDataset:
    """Read a dataset from disk; several names give their :func:`union` (multi-dataset training).

    ``name`` is one of ``DATASET_NAMES`` (case-insensitive) or a list of them; ``root`` is the dataset folder
    or its parent, or a list of roots (one per name), or one folder holding all of the named datasets.

    >>> load_dataset(["market1501", "dukemtmcreid", "msmt17"], "data/")  # doctest: +SKIP
    """
    names = [name] if isinstance(name, str) else list(name)
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not names:
        raise ValueError("load_dataset() needs at least one dataset name, got none")
    if len(roots) == 1:
        roots = roots * len(names)
    if len(roots) != len(names):
        raise ValueError(
            f"load_dataset() got {len(names)} names but {len(roots)} roots: give one root, or one per name"
        )
    datasets = []
    for dataset_name, dataset_root in zip(names, roots):
        reader = _READERS.get(str(dataset_name).lower())
        if reader is None:
            raise ValueError(f"unknown dataset '{dataset_name}': expected one of {', '.join(DATASET_NAMES)}")
        datasets.append(reader(dataset_root))
    return union(datasets)


def dataset_from_spec(spec: dict) -> ReidDataset:
    """A run folder's ``dataset.json`` (``{"name": "market1501,dukemtmcreid", "root": "a,b"}``, the CLI's
    comma-separated ``--dataset`` / ``--root``) -> the dataset, or the union of the named ones."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("root"), str):
        raise ValueError(f'a dataset spec is {{"name": "market1501[,...]", "root": "DIR[,...]"}}, got {spec!r}')
    names, roots = spec["name"].split(","), spec["root"].split(",")
    return load_dataset(names, roots if len(roots) > 1 else roots[0])


def labels(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """``(pids, camids)`` of ``records`` as int64 arrays, the label arrays the metrics take."""
    return (np.array([r.pid for r in records], dtype=np.int64).reshape(-1),
            np.array([r.camid for r in records], dtype=np.int64).reshape(-1))


def read_image(img_path: str | os.PathLike) -> Image.Image:
    """Fully decode an image file as RGB; a missing or unreadable file raises an error naming it."""
    try:
        with Image.open(img_path) as image:
            if image.mode in ("I;16", "I;16L", "I;16B", "I"):  # 16/32-bit grey: convert("RGB") would clip to white
                grey = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
                image = Image.fromarray(np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return image.convert("RGB")  # convert() loads every pixel, so truncation is detected here
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: '{img_path}'") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image '{img_path}': {err}") from err


def check_images(dataset_or_records: ReidDataset | Iterable[Record],
                 progress: Callable[[int, int], None] | None = None) -> list[tuple[str, str]]:
    """Decode every image; return ``(img_path, error text)`` for each missing, unreadable or truncated file.

    Used by ``robustreid data check NAME ROOT`` and before training (``train.fit``). Accepts a dataset (all
    splits) or any records / paths. ``progress(done, total)`` is called every 500 images and at the end.
    """
    if isinstance(dataset_or_records, ReidDataset):
        records = dataset_or_records.train + dataset_or_records.query + dataset_or_records.gallery
    else:
        records = dataset_or_records
    paths = list(dict.fromkeys(r.img_path if isinstance(r, Record) else str(r) for r in records))
    failures = []
    for done, img_path in enumerate(paths, start=1):
        try:
            read_image(img_path)
        except (FileNotFoundError, ValueError) as err:
            failures.append((img_path, str(err.__cause__ or err)))
        if progress is not None and (done % 500 == 0 or done == len(paths)):
            progress(done, len(paths))
    return failures
