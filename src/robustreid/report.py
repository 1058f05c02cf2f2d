"""The visual report: one HTML page with PNG figures of an evaluation and, optionally, of a training run.

What a reader checks in a ReID paper's results, drawn from ``evaluate.evaluate``'s result (Section 4):

* a header table with rank-1/5/10, mAP and mINP (percent), query and gallery sizes;
* optionally a table of several models side by side (``models``: rank-1 / rank-5 / mAP), and then ``cmc.png``
  holds every given model's CMC curve;
* ``cmc.png``: the CMC curve, rank-1/5/10 marked;
* ``ranked.png``: for the sampled queries, the query image beside its top-k gallery images (same protocol
  as the metrics: same-camera images of the query's identity are left out), each framed green (same
  identity) or red (another identity), with its distance;
* ``training.png`` (when a training log is given): loss, learning rate (Eq. 1 warm-up and steps, then the
  SWAG cycles) and rank-1 / mAP against the epoch, from the trainer's JSON-lines log;
* ``result.json``: the evaluation result as returned;
* optionally tracking results (``tracking``: MOTA / IDF1 / HOTA / IDSW and re-entry counts per scene and
  model) with pictures of tracked frames (``tracking_images``: HxWx3 uint8 arrays, saved as
  ``tracking_<k>.png``).

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global backend
switch), and every file is written atomically (temporary file in the same folder, then ``os.replace``);
``index.html`` is written last, so it never references a missing figure.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .atomicfile import write_bytes
from .datasets import ReidDataset, read_image
from .metrics import SUMMARY_KEYS

__all__ = ["plot_cmc", "plot_cmc_curves", "plot_ranked", "plot_training", "read_training_log", "write_report"]

MATCH_COLOR = (44, 160, 44)  # green: same identity
MISMATCH_COLOR = (214, 39, 40)  # red: another identity
QUERY_COLOR = (31, 119, 180)  # blue: the query
THUMB_SIZE = (128, 64)  # (H, W) of each image in the ranked lists: the 2:1 aspect of a person crop
TRAINING_KEYS = ("loss", "lr", "rank1", "mAP")
TRACKING_KEYS = ("MOTA", "IDF1", "HOTA", "IDSW")  # of a tracking row; the first three in percent
REENTRY_KEYS = ("correct", "wrong", "missed")  # of a tracking row's optional "reentry" counts
_METRIC_NAMES = {"euclidean": "squared Euclidean", "cosine": "1 - cosine similarity"}


# ------------------------------------------------------------------------------------------------ files


def _save_png(fig: Figure, path: Path, dpi: int = 100) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_bytes(path, buffer.getvalue())


def read_training_log(path: str | os.PathLike) -> list[dict]:
    """The trainer's JSON-lines log (one object per line: ``epoch``, ``loss``, ``lr``, ``rank1``, ``mAP``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist")
    entries = []
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {line_number}: not a JSON object ({err.msg})") from None
    return _check_training_log(entries, str(path))


def _check_training_log(entries: Sequence, where: str = "training log") -> list[dict]:
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"{where}: expected a list of dicts (epoch, loss, lr, rank1, mAP), "
                         f"got {type(entries).__name__}")
    checked = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not _is_number(entry.get("epoch")):
            raise ValueError(f"{where}: entry {index} is {entry!r}; expected a dict with a numeric 'epoch'")
        for key in TRAINING_KEYS:
            if entry.get(key) is not None and not _is_number(entry[key]):
                raise ValueError(f"{where}: entry {index} has {key}={entry[key]!r}; "
                                 "expected a number or null")
        checked.append(dict(entry))
    return checked


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------- figures
def plot_cmc(cmc: Sequence[float], title: str = "CMC") -> Figure:
    """The CMC curve (``cmc[k - 1]`` = rank-k accuracy in percent), rank-1/5/10 marked."""
    cmc = np.asarray(cmc, dtype=float)
    if cmc.ndim != 1 or cmc.size == 0:
        raise ValueError(f"cmc: expected a non-empty 1-D sequence of accuracies, got shape {cmc.shape}")
    ranks = np.arange(1, cmc.size + 1)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ranks, cmc, color="#1f77b4", lw=2, marker="o" if cmc.size <= 20 else None, ms=3)
    marked = [k for k in (1, 5, 10) if k <= cmc.size]
    ax.plot(marked, cmc[np.array(marked) - 1], "o", color="#d62728", ms=6, zorder=3)
    # The values in a box where the curve is not: lower right for a high curve, upper left for a low one.
    high = cmc[0] >= 50
    ax.text(0.97 if high else 0.03, 0.05 if high else 0.95,
            "\n".join(f"rank-{k}: {cmc[k - 1]:.1f}%" for k in marked), transform=ax.transAxes,
            ha="right" if high else "left", va="bottom" if high else "top", fontsize=9, family="monospace",
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#bbb"))
    low = max(0.0, math.floor((cmc.min() - 5) / 10) * 10)
    ax.set(xlim=(0.5, cmc.size + 0.5), ylim=(low, 101), xlabel="rank", ylabel="matching rate (%)",
           title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig


def plot_cmc_curves(curves: Mapping[str, Sequence[float]], title: str = "CMC") -> Figure:
    """Several models' CMC curves on one plot (``curves``: name -> ``cmc``, ``cmc[k - 1]`` = rank-k in
    percent), in the given order, each labelled with its rank-1 in the legend."""
    if not curves:
        raise ValueError("curves: expected at least one model's CMC curve, got none")
    arrays = {}
    for name, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=float)
        if cmc.ndim != 1 or cmc.size == 0:
            raise ValueError(f"curves[{name!r}]: expected a non-empty 1-D sequence of accuracies, "
                             f"got shape {cmc.shape}")
        arrays[name] = cmc
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    longest = max(c.size for c in arrays.values())
    for name, cmc in arrays.items():
        ranks = np.arange(1, cmc.size + 1)
        ax.plot(ranks, cmc, lw=2, marker="o" if cmc.size <= 20 else None, ms=3,
                label=f"{name} ({cmc[0]:.1f}%)")
    low = max(0.0, math.floor((min(c.min() for c in arrays.values()) - 5) / 10) * 10)
    ax.set(xlim=(0.5, longest + 0.5), ylim=(low, 101), xlabel="rank", ylabel="matching rate (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right", title="model (rank-1)", title_fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _thumbnail(img_path: str, color: tuple[int, int, int], border: int = 5) -> np.ndarray:
    """The image resized to ``THUMB_SIZE`` inside a ``border``-pixel frame of ``color``."""
    height, width = THUMB_SIZE
    image = np.asarray(read_image(img_path).resize((width, height), Image.Resampling.BILINEAR))
    framed = np.empty((height + 2 * border, width + 2 * border, 3), dtype=np.uint8)
    framed[...] = color
    framed[border:border + height, border:border + width] = image
    return framed


def _distance_decimals(distances: Sequence[float]) -> int:
    """Decimals that show the largest distance with 3 significant digits (2 to 8), the same for all."""
    largest = max((abs(d) for d in distances if math.isfinite(d)), default=1.0)
    return 2 if largest == 0 else int(np.clip(2 - math.floor(math.log10(largest)), 2, 8))


def plot_ranked(ranked: Sequence[Mapping], topk: int | None = None) -> Figure:
    """One row per query: the query (blue frame), then its closest gallery images, closest first.

    Gallery frames are green for the query's identity and red otherwise; each image shows its rank and
    distance above and its identity below (cameras numbered from 1, as in the file names).
    """
    if not ranked:
        raise ValueError("ranked: expected at least one query's ranked list, got none")
    topk = max(len(r["g_indices"]) for r in ranked) if topk is None else topk
    topk = max(topk, 1)
    cell_w, cell_h = 0.95, 2.35  # inches per image, text included
    fig = Figure(figsize=(cell_w * (topk + 1.3), cell_h * len(ranked) + 0.1))
    grid = fig.add_gridspec(len(ranked), topk + 2, width_ratios=[1, 0.3] + [1] * topk,
                            left=0.01, right=0.99, top=1 - 0.3 / fig.get_figheight(),
                            bottom=0.3 / fig.get_figheight(), wspace=0.08, hspace=0.45)
    text = dict(ha="center", fontsize=8.5)
    decimals = _distance_decimals([d for entry in ranked for d in entry["distances"]])
    for row, entry in enumerate(ranked):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(_thumbnail(entry["q_img_path"], QUERY_COLOR))
        ax.set_axis_off()
        ax.set_title(f"query #{entry['q_index']}", fontsize=9, fontweight="bold", color="#1f4e79")
        ax.text(0.5, -0.05, f"id {entry['q_pid']} · cam {entry['q_camid'] + 1}", transform=ax.transAxes,
                va="top", **text)
        gallery = zip(entry["g_img_paths"], entry["distances"], entry["matches"], entry["g_pids"],
                      entry["g_camids"])
        for rank, (path, dist, match, pid, camid) in enumerate(gallery, 1):
            if rank > topk:
                break
            ax = fig.add_subplot(grid[row, rank + 1])
            ax.imshow(_thumbnail(path, MATCH_COLOR if match else MISMATCH_COLOR))
            ax.set_axis_off()
            ax.set_title(f"#{rank}  {dist:.{decimals}f}", fontsize=8.5)
            ax.text(0.5, -0.05, f"id {pid} · cam {camid + 1}", transform=ax.transAxes, va="top",
                    color="#1d6b1d" if match else "#a11d1e", **text)
    return fig


def _series(log: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(e["epoch"], e[key]) for e in log if e.get(key) is not None and math.isfinite(e[key])]
    epochs, values = zip(*points) if points else ((), ())
    return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)


def plot_training(log: Sequence[Mapping]) -> Figure:
    """Loss, learning rate and rank-1 / mAP (percent) against the epoch; panels without data are left out."""
    log = _check_training_log(log)
    panels = [key for key in ("loss", "lr") if _series(log, key)[0].size]
    if _series(log, "rank1")[0].size or _series(log, "mAP")[0].size:
        panels.append("accuracy")
    if not panels:
        raise ValueError("training log: no entry has a loss, lr, rank1 or mAP value to plot")
    fig = Figure(figsize=(4.3 * len(panels), 3.3), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        if panel == "accuracy":
            for key, label, color in (("rank1", "rank-1", "#1f77b4"), ("mAP", "mAP", "#ff7f0e")):
                epochs, values = _series(log, key)
                if epochs.size:
                    ax.plot(epochs, values, marker="o", ms=3, color=color,
                            label=f"{label} ({values[-1]:.1f}%)")
            ax.set(ylabel="accuracy (%)", title="rank-1 / mAP")
            ax.legend(fontsize=8, loc="lower right")
        else:
            epochs, values = _series(log, panel)
            ax.plot(epochs, values, color="#2ca02c" if panel == "loss" else "#9467bd", lw=1.5,
                    marker="o" if epochs.size <= 30 else None, ms=3)
            ax.set(ylabel=panel, title="training loss" if panel == "loss" else "learning rate")
            if panel == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1160px; color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f4f6f8; font-weight: 600; }
td.l, th.l { text-align: left; }
table.metrics td { font-size: 1.25em; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; border: 3px solid; }
code { font-size: 0.9em; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence], cls: str = "", left: int = 0) -> str:
    """An HTML table; the first ``left`` columns are left-aligned. Cells are escaped."""
    def cell(tag, i, value):
        align = ' class="l"' if i < left else ""
        return f"<{tag}{align}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    table_class = f' class="{cls}"' if cls else ""
    return f"<table{table_class}><tr>{head}</tr>{body}</table>"


def _metrics_section(result: Mapping, dataset: ReidDataset | None) -> list[str]:
    parts = [_table(["rank-1", "rank-5", "rank-10", "mAP", "mINP", "queries", "gallery"],
                    [[f"{result['rank1']:.2f}%", f"{result['rank5']:.2f}%", f"{result['rank10']:.2f}%",
                      f"{result['mAP']:.2f}%", f"{result['mINP']:.2f}%", result["num_query"],
                      result["num_gallery"]]], cls="metrics")]
    metric = str(result.get("metric", "?"))
    notes = [f"distance: {html.escape(_METRIC_NAMES.get(metric, metric))}"]
    if "feature_dim" in result:
        notes.append(f"descriptor: {int(result['feature_dim'])}-d")
    notes.append("queries without a cross-camera match in the gallery are not counted (Market1501 protocol)")
    parts.append(f"<p class=\"sub\">{'; '.join(notes)}.</p>")
    if dataset is not None:
        rows = []
        for split in ("train", "query", "gallery"):
            records = getattr(dataset, split)
            rows.append([split, len({r.pid for r in records}), len(records), len({r.camid for r in records})])
        parts.append(_table(["split", "identities", "images", "cameras"], rows, left=1))
    return parts


def _ranked_rows(ranked: Sequence[Mapping]) -> list[list]:
    rows = []
    for entry in ranked:
        first = next((i for i, m in enumerate(entry["matches"], 1) if m), None)
        rows.append([entry["q_index"], os.path.basename(entry["q_img_path"]), entry["q_pid"],
                     entry["q_camid"] + 1, first if first is not None else f"> {len(entry['matches'])}",
                     sum(entry["matches"])])
    return rows


def _training_rows(log: Sequence[Mapping]) -> list[list]:
    def fmt(value, spec):
        return "" if value is None else format(value, spec)

    return [[fmt(e["epoch"], "g"), fmt(e.get("loss"), ".4f"), fmt(e.get("lr"), ".2e"),
             fmt(e.get("rank1"), ".2f"), fmt(e.get("mAP"), ".2f")]
            for e in log if e.get("rank1") is not None or e.get("mAP") is not None]


def _model_rows(models: Mapping[str, Mapping]) -> list[list]:
    def pct(m, key):
        return "" if m.get(key) is None else f"{m[key]:.1f}"

    return [[name, pct(m, "rank1"), pct(m, "rank5"), pct(m, "mAP")] for name, m in models.items()]


def _check_models(models: Mapping[str, Mapping]) -> None:
    if not isinstance(models, Mapping):
        raise ValueError(f"models: expected a dict name -> metrics, got {type(models).__name__}")
    for name, m in models.items():
        if not isinstance(m, Mapping) or not all(_is_number(m.get(key)) for key in ("rank1", "mAP")):
            raise ValueError(f"models[{name!r}] is {m!r}; expected a dict with numeric 'rank1' and 'mAP' "
                             "(percent)")


def _check_tracking(tracking: Mapping[str, Sequence[Mapping]]) -> None:
    if not isinstance(tracking, Mapping):
        raise ValueError(f"tracking: expected a dict scene -> rows, got {type(tracking).__name__}")
    for scene, rows in tracking.items():
        for row in rows:
            if not isinstance(row, Mapping) or "model" not in row or \
                    not all(_is_number(row.get(key)) for key in TRACKING_KEYS):
                raise ValueError(f"tracking[{scene!r}]: row {row!r} needs 'model' and numeric "
                                 f"{', '.join(TRACKING_KEYS)}")


def _tracking_table(rows: Sequence[Mapping]) -> str:
    room = any(row.get("reentry") for row in rows)
    header = ["model", "MOTA", "IDF1", "HOTA", "IDSW"]
    if room:
        header.append("re-entries: correct / wrong / missed")
    cells = []
    for row in rows:
        line = [row["model"], *(f"{row[k]:.1f}" for k in TRACKING_KEYS[:3]), int(row["IDSW"])]
        if room:
            reentry = row.get("reentry") or {}
            line.append(" / ".join("-" if reentry.get(k) is None else str(reentry[k]) for k in REENTRY_KEYS))
        cells.append(line)
    return _table(header, cells, left=1)


def _image_png(image) -> bytes:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"tracking_images: expected HxWx3 uint8 RGB arrays, got shape {array.shape} "
                         f"dtype {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_report(out_dir: str | os.PathLike, result: Mapping | None = None,
                 dataset: ReidDataset | None = None, *,
                 training_log: Sequence[Mapping] | str | os.PathLike | None = None,
                 title: str | None = None, summary: str | None = None,
                 models: Mapping[str, Mapping] | None = None, result_name: str | None = None,
                 tracking: Mapping[str, Sequence[Mapping]] | None = None,
                 tracking_images: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write ``index.html`` and its figures into ``out_dir``; return the HTML file's path.

    Args:
        out_dir: created if needed; files of the same names are replaced atomically.
        result: the dict returned by ``evaluate.evaluate`` (metrics, ``cmc``, ``ranked``), or None for a
            training-only report.
        dataset: the evaluated ``ReidDataset``, for its name and split sizes (optional).
        training_log: the trainer's log, a list of dicts with ``epoch`` and any of ``loss``, ``lr``,
            ``rank1``, ``mAP`` (accuracies in percent, as ``evaluate`` returns them), or the path of its
            JSON-lines file; plotted when given.
        title: the page title (default: "Robust-ReID evaluation on <dataset>").
        summary: a paragraph under the title (e.g. a one-line verdict).
        models: name -> metrics (``rank1``, ``rank5``, ``mAP`` in percent, optionally ``cmc``), in table
            order: a "models compared" table; when any has a ``cmc`` curve, ``cmc.png`` shows all those curves
            (``plot_cmc_curves``) instead of ``result``'s alone.
        result_name: what ``result`` evaluated, for the heading of its detailed section.
        tracking: scene name -> rows, each ``{"model", "MOTA", "IDF1", "HOTA", "IDSW"}`` (the first three in
            percent) and optionally ``"reentry": {"correct", "wrong", "missed"}``; one table per scene.
        tracking_images: caption -> HxWx3 uint8 RGB picture (e.g. ``tracking.frames.tile`` of tracked frames),
            shown under the tracking tables as ``tracking_1.png``, ``tracking_2.png``, ...
    """
    if result is None and training_log is None and not models and not tracking:
        raise ValueError("write_report needs an evaluation result, a training log, models or tracking "
                         "results; got none of them")
    if result is not None:
        missing = [key for key in (*SUMMARY_KEYS, "cmc", "ranked") if key not in result]
        if missing:
            raise ValueError(f"result lacks {missing}: expected the dict returned by evaluate()")
    if training_log is not None:
        training_log = (read_training_log(training_log) if isinstance(training_log, (str, os.PathLike))
                        else _check_training_log(training_log))
    if models:
        _check_models(models)
    if tracking:
        _check_tracking(tracking)
    pictures = [(caption, _image_png(image)) for caption, image in (tracking_images or {}).items()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = dataset.name if dataset is not None else (result or {}).get("dataset")
    if title is None:
        title = f"Robust-ReID {'evaluation' if result is not None else 'training'}"
        title += f" on {name}" if name else ""

    body = [f"<h1>{html.escape(title)}</h1>"]
    if dataset is not None:
        body.append(f"<p class=\"sub\">dataset <code>{html.escape(dataset.name)}</code> at "
                    f"<code>{html.escape(dataset.root)}</code></p>")
    if summary:
        body.append(f"<p><strong>{html.escape(summary)}</strong></p>")
    curves = {name: m["cmc"] for name, m in (models or {}).items() if m.get("cmc") is not None}
    if models:
        body.append("<h2>Models compared</h2>")
        body.append(_table(["model", "rank-1 (%)", "rank-5 (%)", "mAP (%)"], _model_rows(models), left=1))
        if curves:
            queries = f", {result['num_query']} queries" if result is not None else ""
            _save_png(plot_cmc_curves(curves, title=f"CMC{queries}"), out_dir / "cmc.png")
            body.append('<img src="cmc.png" alt="CMC curves of the models compared" width="640">')
    if result is not None:
        if result_name:
            body.append(f"<h2>{html.escape(result_name)}</h2>")
        body += _metrics_section(result, dataset)
        if not curves:
            _save_png(plot_cmc(result["cmc"], title=f"CMC, {result['num_query']} queries"),
                      out_dir / "cmc.png")
            body.append('<h2>CMC curve</h2><img src="cmc.png" alt="CMC curve" width="640">')
        if result["ranked"]:
            _save_png(plot_ranked(result["ranked"]), out_dir / "ranked.png")
            body.append("<h2>Ranked gallery lists</h2>")
            body.append('<p class="legend">Query beside its closest gallery images (rank, distance above; '
                        "identity and camera below). Same-camera images of the query's identity are left "
                        'out, as in the metrics. <span style="border-color:#2ca02c">same identity</span>'
                        '<span style="border-color:#d62728">other identity</span></p>')
            body.append('<img src="ranked.png" alt="ranked gallery lists of sampled queries">')
            body.append(_table(["query", "file", "id", "cam", "first match", "matches shown"],
                               _ranked_rows(result["ranked"]), left=2))
        write_bytes(out_dir / "result.json", json.dumps(dict(result), indent=1).encode())
    if tracking or pictures:
        body.append("<h2>Tracking</h2>")
        for scene, rows in (tracking or {}).items():
            body.append(f"<h3>{html.escape(scene)}</h3>")
            body.append(_tracking_table(rows))
        for k, (caption, png) in enumerate(pictures, 1):
            write_bytes(out_dir / f"tracking_{k}.png", png)
            body.append(f'<p class="sub">{html.escape(caption)}</p>'
                        f'<img src="tracking_{k}.png" alt="{html.escape(caption, quote=True)}">')
    if training_log is not None:
        _save_png(plot_training(training_log), out_dir / "training.png")
        body.append('<h2>Training</h2><img src="training.png" alt="training curves">')
        rows = _training_rows(training_log)
        if rows:
            body.append(_table(["epoch", "loss", "lr", "rank-1 (%)", "mAP (%)"], rows))
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style>'
    page = (f'<!doctype html>\n<html lang="en"><head>{head}</head>\n<body>\n' + "\n".join(body)
            + "\n</body></html>\n")
    index = out_dir / "index.html"
    write_bytes(index, page.encode("utf-8"))
    return index
