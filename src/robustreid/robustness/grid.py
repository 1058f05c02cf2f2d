"""The benchmark grid: a model, or any feature function, scored on a dataset's query / gallery split clean and
under every corruption x severity, as CIL-ReID evaluates (Chen, Wang, Zheng, NeurIPS 2021 D&B).

``run_robustness`` scores the clean split once, then every cell (one corruption at one severity) with the
standard protocol (``metrics.score``: rank-1/5/10, mAP, mINP), the corruption applied to the original crop before
the model's resize, as a camera would degrade it. ``setting`` says which side is corrupted: ``"query"`` (the
default: corrupted queries against the clean gallery, embedded once), ``"gallery"``, or ``"both"``.

How it runs. One ``DataLoader`` over every (split, image, corruption, severity) still to embed, in cell order:
its workers read and corrupt the crops (each image's seed from ``corruptions.image_seed``, so results do not
depend on the number of workers, the batch size, or a restart), the main process embeds each batch
(``evaluate.FeatureExtractor``, any backend; or ``features_fn``) and scores a cell as soon as its last image
is in. Each scored cell is appended to ``out_dir/cells.jsonl`` (the file is rewritten atomically, so it always
holds whole records); a run started again on the same ``out_dir`` skips the cells already there.
``out_dir/run.json`` records what the cells were measured with (setting, seed, metric, dataset and its sizes,
model) and a run that differs is refused rather than mixed in. At the end: ``summary.json``
(``summary.summarize``) and the report (``report.write_report``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..atomicfile import remove_stale_temp_files, write_text
from ..datasets import ReidDataset, labels, read_image
from ..metrics import METRICS, SUMMARY_KEYS, score
from .corruptions import CORRUPTIONS, SIDES, Corruption, family_of, image_seed
from .features import FeaturesFn, describe, model_features
from .pixels import SEVERITIES
from .report import write_report
from .summary import summarize

__all__ = ["CELLS_FILE", "CLEAN", "RUN_FILE", "SETTINGS", "SUMMARY_FILE", "read_cells", "run_robustness"]

SETTINGS = ("query", "gallery", "both")
CELLS_FILE, RUN_FILE, SUMMARY_FILE = "cells.jsonl", "run.json", "summary.json"
CLEAN = "clean"  # the clean evaluation's record: corruption "clean", severity 0

Progress = Callable[[int, int], None]  # (images embedded, images to embed)

_CORRUPTED_SIDES = {"query": ("query",), "gallery": ("gallery",), "both": ("query", "gallery")}


# ------------------------------------------------------------------------------------------ the images
class _CorruptedCrops(Dataset):
    """Item ``k`` of ``items`` ``(side, index, corruption or None, severity)`` -> ``(HxWx3 uint8 crop, k)``: the
    crop read from disk and corrupted (in the DataLoader's workers)."""

    def __init__(self, paths: Mapping[str, Sequence[str]], items: Sequence[tuple], table: Mapping[str, Corruption],
                 seed: int):
        self.paths, self.items, self.table, self.seed = paths, items, table, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        side, index, name, severity = self.items[k]
        image = np.asarray(read_image(self.paths[side][index]))
        if name is not None:
            out = self.table[name](image, severity, image_seed(self.seed, name, severity, side, index))
            if not isinstance(out, np.ndarray) or out.shape != image.shape or out.dtype != np.uint8:
                raise ValueError(f"corruption {name!r} returned {getattr(out, 'shape', type(out).__name__)} "
                                 f"{getattr(out, 'dtype', '')} for a {image.shape} uint8 crop: expected the same "
                                 "shape, uint8")
            image = out
        return image, k


def _collate(batch):
    return [image for image, _ in batch], [k for _, k in batch]


# ---------------------------------------------------------------------------------------------- the file
def read_cells(path: str | os.PathLike) -> list[dict]:
    """The records of a ``cells.jsonl`` (none if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from None
    return records


def _claim(out_dir: Path, run: dict) -> None:
    """Write run.json, or check that the one there describes the same run."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        if (out_dir / CELLS_FILE).is_file():
            raise ValueError(f"{out_dir / CELLS_FILE} exists without {RUN_FILE}: delete it, or pass another out_dir")
        write_text(path, json.dumps(run, indent=1))
        return
    old = json.loads(path.read_text())
    changed = [key for key in run if old.get(key) != run[key]]
    if changed:
        was = ", ".join(f"{key}={old.get(key)!r}" for key in changed)
        now = ", ".join(f"{key}={run[key]!r}" for key in changed)
        raise ValueError(f"{out_dir} holds a robustness run with {was}, not {now}: pass another out_dir, or delete "
                         f"{CELLS_FILE} and {RUN_FILE} there to start over")


# ------------------------------------------------------------------------------------------- arguments
def _resolve_corruptions(corruptions) -> dict[str, Corruption]:
    if corruptions is None:
        return dict(CORRUPTIONS)
    if isinstance(corruptions, Mapping):
        table = dict(corruptions)
    elif isinstance(corruptions, str):
        raise TypeError(f"corruptions={corruptions!r}: expected a list of names, e.g. [{corruptions!r}]")
    else:
        names = list(corruptions)
        unknown = [name for name in names if name not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"unknown corruption(s) {', '.join(map(repr, unknown))}: expected names from "
                             f"{', '.join(CORRUPTIONS)}")
        table = {name: CORRUPTIONS[name] for name in names}
    if not table or CLEAN in table:
        raise ValueError(f"expected at least one corruption (and none named {CLEAN!r})")
    return table


def _check_arguments(severities, setting, seed, metric, features_fn, model_or_checkpoint) -> tuple[int, ...]:
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r}: expected one of {SETTINGS}")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: expected one of {METRICS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected an integer >= 0")
    if (features_fn is None) == (model_or_checkpoint is None):
        raise ValueError("pass either a model / checkpoint or features_fn (and the other as None)")
    severities = tuple(severities)
    if not severities or any(isinstance(s, bool) or s not in SEVERITIES for s in severities) \
            or len(set(severities)) < len(severities):
        raise ValueError(f"severities={severities!r}: expected distinct integers from 1 to 5")
    return tuple(sorted(int(s) for s in severities))


# --------------------------------------------------------------------------------------------- the grid
def _plan(todo: list[tuple], clean_done: bool, setting: str, sizes: Mapping[str, int]):
    """``(units, items)``: a unit is one split of one cell, ``(cell, side)``, in scoring order (the clean
    features first: scored if the clean cell is not done yet, and needed anyway as the uncorrupted side of
    the cells to run); an item is one image of a unit, ``(side, index, corruption or None, severity)``."""
    corrupted = _CORRUPTED_SIDES[setting]
    units = [((CLEAN, 0), side) for side in SIDES if not clean_done or (todo and side not in corrupted)]
    units += [(cell, side) for cell in todo for side in corrupted]
    items = [(side, index, None if cell[0] == CLEAN else cell[0], cell[1])
             for cell, side in units for index in range(sizes[side])]
    return units, items


def _score_cells(units, items, loader, embed: FeaturesFn, sides, metric: str, skip_clean: bool,
                 progress: Progress | None, record: Callable[[tuple, dict], None]) -> int:
    """Embed the loader's batches, and score each cell (``record(cell, metrics)``) as soon as its images are in;
    returns the number of cells scored."""
    unit_of = np.repeat(np.arange(len(units)), [len(sides[side]) for _, side in units])
    missing = [len(sides[side]) for _, side in units]
    cell_units: dict[tuple, list[int]] = {}
    for u, (cell, _) in enumerate(units):
        cell_units.setdefault(cell, []).append(u)
    clean = {side: u for u, (cell, side) in enumerate(units) if cell == (CLEAN, 0)}
    pending = [cell for cell in cell_units if not (skip_clean and cell == (CLEAN, 0))]
    (q_pids, q_camids), (g_pids, g_camids) = labels(sides["query"]), labels(sides["gallery"])
    feats: dict[int, np.ndarray] = {}
    embedded = scored = 0
    for images, ks in loader:
        out = np.asarray(embed(images), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(images):
            raise ValueError(f"the features of {len(images)} images have shape {out.shape}: expected ({len(images)}, D)")
        for row, k in enumerate(ks):
            u = int(unit_of[k])
            if u not in feats:
                feats[u] = np.empty((len(sides[units[u][1]]), out.shape[1]), dtype=np.float32)
            feats[u][items[k][1]] = out[row]
            missing[u] -= 1
        embedded += len(images)
        if progress is not None:
            progress(embedded, len(items))
        while pending and all(missing[u] == 0 for u in cell_units[pending[0]]):
            cell = pending.pop(0)
            own = {units[u][1]: feats[u] for u in cell_units[cell]}
            q_feats, g_feats = (own[side] if side in own else feats[clean[side]] for side in SIDES)
            record(cell, score(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, metric=metric))
            scored += 1
            if cell != (CLEAN, 0):  # the clean features stay: other cells reuse them
                for u in cell_units[cell]:
                    del feats[u]
    return scored


def run_robustness(model_or_checkpoint, dataset: ReidDataset, out_dir: str | os.PathLike, *,
                   corruptions: Iterable[str] | Mapping[str, Corruption] | None = None,
                   severities: Sequence[int] = SEVERITIES, setting: str = "query", backend: str = "torch",
                   precision: str = "fp32", device=None, batch_size: int = 64, num_workers: int = 2, seed: int = 0,
                   metric: str = "euclidean", progress: Progress | None = None,
                   features_fn: FeaturesFn | None = None, title: str | None = None) -> dict:
    """Score ``dataset``'s query / gallery clean and under every corruption x severity; write the cells, the
    summary and the report to ``out_dir`` (module docstring).

    Args:
        model_or_checkpoint: a checkpoint path, a ``ReIDNet``, an exported ``.onnx`` / ``.xml`` (with
            ``backend``) or a ``FeatureExtractor``; ``None`` when ``features_fn`` is given.
        corruptions: names from ``CORRUPTIONS`` (default: all 21, the benchmark's 20 and low resolution) or a
            mapping name -> corruption function (e.g. one of your own).
        severities: the severities to run, from 1..5.
        setting: ``"query"`` (corrupted query, clean gallery), ``"gallery"`` or ``"both"``.
        backend, precision, device, batch_size: as ``FeatureExtractor``'s; ``batch_size`` is also the loader's.
        num_workers: processes reading and corrupting crops (0: in this process).
        seed: the run's seed; every image's corruption seed derives from it (``corruptions.image_seed``).
        metric: ``"euclidean"`` or ``"cosine"`` (``metrics.score``).
        progress: ``progress(done, total)`` in images embedded, after each batch.
        features_fn: ``images -> (N, D)`` descriptors instead of a model, e.g. ``ColourHistogramFeatures()``.
        title: the report's title.

    Returns ``{"summary", "out_dir", "cells" (path), "report" (path), "cells_run", "seconds"}``.
    """
    start = time.perf_counter()
    table = _resolve_corruptions(corruptions)
    severities = _check_arguments(severities, setting, seed, metric, features_fn, model_or_checkpoint)
    sides = {"query": list(dataset.query), "gallery": list(dataset.gallery)}
    if not sides["query"] or not sides["gallery"]:
        raise ValueError(f"dataset {dataset.name} has {len(sides['query'])} query and {len(sides['gallery'])} gallery "
                         "images: expected both")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)
    scorer = describe(model_or_checkpoint, features_fn, backend, precision)
    run = {"setting": setting, "seed": int(seed), "metric": metric, "dataset": dataset.name,
           "num_query": len(sides["query"]), "num_gallery": len(sides["gallery"]), "features": scorer}
    _claim(out_dir, run)

    cells_path = out_dir / CELLS_FILE
    records = read_cells(cells_path)
    done = {(r["corruption"], int(r["severity"])) for r in records}
    todo = [(name, s) for name in table for s in severities if (name, s) not in done]
    units, items = _plan(todo, (CLEAN, 0) in done, setting, {side: len(r) for side, r in sides.items()})
    last = [time.perf_counter()]

    def record(cell: tuple, metrics: dict) -> None:  # one more line in cells.jsonl, the file replaced atomically
        now = time.perf_counter()
        records.append({"corruption": cell[0], "family": CLEAN if cell[0] == CLEAN else family_of(cell[0]),
                        "severity": cell[1], "setting": setting, "seed": int(seed),
                        **{key: metrics[key] for key in SUMMARY_KEYS}, "seconds": round(now - last[0], 2)})
        write_text(cells_path, "".join(json.dumps(r) + "\n" for r in records))
        last[0] = now

    cells_run = 0
    if items:
        embed = features_fn or model_features(model_or_checkpoint, backend, precision, device, batch_size)
        paths = {side: [r.img_path for r in records_] for side, records_ in sides.items()}
        loader = DataLoader(_CorruptedCrops(paths, items, table, int(seed)), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, collate_fn=_collate)
        cells_run = _score_cells(units, items, loader, embed, sides, metric, (CLEAN, 0) in done, progress, record)

    by_key = {(r["corruption"], int(r["severity"])): r for r in records}
    summary = summarize([by_key[(name, s)] for name in table for s in severities], by_key[(CLEAN, 0)])
    write_text(out_dir / SUMMARY_FILE, json.dumps({"run": run, **summary}, indent=1))
    details = (f"Features: {scorer}. Dataset {dataset.name}: {run['num_query']} queries, {run['num_gallery']} gallery "
               f"images; seed {seed}; {len(table)} corruptions x {len(severities)} severities.")
    report = write_report(out_dir, summary, image=np.asarray(read_image(sides["query"][0].img_path)),
                          corruptions=table, title=title or f"Robustness on {dataset.name}", setting=setting,
                          details=details, seed=int(seed))
    return {"summary": summary, "out_dir": str(out_dir), "cells": str(cells_path), "report": str(report),
            "cells_run": cells_run, "seconds": time.perf_counter() - start}
