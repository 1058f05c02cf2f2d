"""The robustness report: ``report.md`` (tables), ``severity.png`` (metric against severity, one line per family)
and ``contact_sheet.png`` (one crop under every corruption), each written atomically.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global backend
switch), as ``robustreid.report``'s; ``report.md`` is written last, so it never references a missing figure.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..atomicfile import write_bytes, write_text
from .corruptions import CORRUPTIONS, LOW_RESOLUTION, Corruption
from .resolution import LOW_RESOLUTION_FACTORS
from .summary import METRIC_KEYS

__all__ = ["SETTING_TEXT", "contact_sheet", "format_report", "format_summary", "plot_severity", "write_report"]

SETTING_TEXT = {
    "query": "corrupted query, clean gallery",
    "gallery": "clean query, corrupted gallery",
    "both": "corrupted query and gallery",
}
_LABELS = {"rank1": "rank-1", "mAP": "mAP", "mINP": "mINP"}


def _png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _cells(metrics: Mapping | None, relative: Mapping | None) -> str:
    def number(value, fmt):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    values = [number(None if metrics is None else metrics[k], ".1f") for k in METRIC_KEYS]
    ratios = [number(None if relative is None else relative[k], ".2f") for k in METRIC_KEYS]
    return " | ".join(values + ratios)


def format_report(summary: Mapping, *, title: str, setting: str, details: str = "", sheet: bool = True) -> str:
    """The Markdown report of a ``summarize`` result: clean, mean corrupted, relative and the families in one
    table, then every corruption's mean over its severities (and its rank-1 at each severity)."""
    head = "| | " + " | ".join(_LABELS[k] for k in METRIC_KEYS) + " | " + \
        " | ".join(f"{_LABELS[k]} rel." for k in METRIC_KEYS) + " |"
    rule = "|---" + "|---:" * (2 * len(METRIC_KEYS)) + "|"
    clean = summary["clean"]
    rows = [head, rule, f"| clean | {_cells(clean, {k: 1.0 for k in METRIC_KEYS})} |"]
    if summary["mean"] is not None:
        rows.append(f"| **mean corrupted** ({len(summary['in_mean'])} corruptions) | "
                    f"{_cells(summary['mean'], summary['relative'])} |")
    for family, entry in summary["families"].items():
        rows.append(f"| {family} ({len(entry['corruptions'])}) | {_cells(entry['mean'], entry['relative'])} |")

    severities = sorted({s for c in summary["corruptions"].values() for s in c["by_severity"]})
    per = ["| corruption | family | " + " | ".join(_LABELS[k] for k in METRIC_KEYS) + " | "
           + " | ".join(f"rank-1 s{s}" for s in severities) + " |",
           "|---|---" + "|---:" * (len(METRIC_KEYS) + len(severities)) + "|"]
    for name, entry in summary["corruptions"].items():
        by = entry["by_severity"]
        per.append(f"| {name} | {entry['family']} | " + " | ".join(f"{entry['mean'][k]:.1f}" for k in METRIC_KEYS)
                   + " | " + " | ".join(f"{by[s]['rank1']:.1f}" if s in by else "-" for s in severities) + " |")

    factors = ", ".join(f"s{i} = 1/{f:g}" for i, f in enumerate(LOW_RESOLUTION_FACTORS, 1))
    text = [f"# {title}", "", f"Setting: {SETTING_TEXT[setting]}. Metrics in percent; \"rel.\" = corrupted / clean.",
            ("The mean is over corruptions of each corruption's mean over its severities; the low-resolution family "
             f"(crops downscaled by area and back, bilinear; {factors} of the height) is kept out of it."), ""]
    if details:
        text += [details, ""]
    text += ["## Summary", "", *rows, "", "![metric against severity](severity.png)", "",
             "## Per corruption (mean over severities)", "", *per, ""]
    if sheet:
        text += ["![one crop under every corruption, severity 3](contact_sheet.png)", ""]
    return "\n".join(text)


def format_summary(summary: Mapping) -> str:
    """The summary table as plain text for a terminal: clean, mean corrupted and each family, rank-1 / mAP / mINP
    (percent) and their relative values."""
    def row(label: str, metrics: Mapping | None, relative: Mapping | None) -> str:
        values = " ".join("      -" if metrics is None else f"{metrics[k]:7.1f}" for k in METRIC_KEYS)
        ratios = " ".join("    -" if relative is None or relative[k] is None else f"{relative[k]:5.2f}"
                          for k in METRIC_KEYS)
        return f"{label:<24} {values}   {ratios}"

    lines = [f"{'':<24} " + " ".join(f"{_LABELS[k]:>7}" for k in METRIC_KEYS) + "   relative (corrupted / clean)",
             row("clean", summary["clean"], None)]
    if summary["mean"] is not None:
        lines.append(row(f"mean corrupted ({len(summary['in_mean'])})", summary["mean"], summary["relative"]))
    lines += [row(f"  {family}", entry["mean"], entry["relative"]) for family, entry in summary["families"].items()]
    return "\n".join(lines)


def plot_severity(summary: Mapping) -> bytes:
    """PNG: rank-1, mAP and mINP against severity, one line per family, the clean value dashed."""
    fig = Figure(figsize=(4.2 * len(METRIC_KEYS), 4.0))
    axes = fig.subplots(1, len(METRIC_KEYS))
    for ax, key in zip(axes, METRIC_KEYS):
        for family, entry in summary["families"].items():
            severities = sorted(entry["by_severity"])
            label = f"{family} (1/{', 1/'.join(f'{f:g}' for f in LOW_RESOLUTION_FACTORS)})" \
                if family == LOW_RESOLUTION else family
            ax.plot(severities, [entry["by_severity"][s][key] for s in severities], marker="o", label=label,
                    linestyle="--" if family == LOW_RESOLUTION else "-")
        ax.axhline(summary["clean"][key], color="black", linestyle=":", label="clean")
        ax.set_xticks([1, 2, 3, 4, 5])
        ax.set_xlabel("severity")
        ax.set_ylabel(f"{_LABELS[key]} (%)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return _png(fig)


def contact_sheet(image: np.ndarray, corruptions: Mapping[str, Corruption] = CORRUPTIONS, severity: int = 3,
                  seed: int = 0, columns: int = 11) -> bytes:
    """PNG: ``image`` clean, then under every corruption of ``corruptions`` at ``severity`` (seed ``seed``),
    each labelled with its name."""
    tiles = [("clean", image)] + [(name, fn(image, severity, seed)) for name, fn in corruptions.items()]
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    h, w = image.shape[:2]
    scale = 1.6 / h  # inches per pixel: a tile 1.6 in tall
    fig = Figure(figsize=(columns * (w * scale + 0.15), rows * (h * scale + 0.35)))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (name, tile) in zip(axes, tiles):
        ax.imshow(tile, interpolation="nearest")
        ax.set_title(name.replace("_", " "), fontsize=7)
    fig.suptitle(f"severity {severity}", fontsize=9)
    fig.tight_layout()
    return _png(fig, dpi=110)


def write_report(out_dir: str | os.PathLike, summary: Mapping, *, image: np.ndarray | None = None,
                 corruptions: Mapping[str, Corruption] = CORRUPTIONS, title: str = "Robustness",
                 setting: str = "query", details: str = "", seed: int = 0) -> Path:
    """``severity.png``, ``contact_sheet.png`` (when an ``image`` is given: one crop under ``corruptions`` at
    severity 3) and then ``report.md`` in ``out_dir``; returns the path of ``report.md``."""
    out_dir = Path(out_dir)
    write_bytes(out_dir / "severity.png", plot_severity(summary))
    if image is not None:
        write_bytes(out_dir / "contact_sheet.png", contact_sheet(image, corruptions, 3, seed))
    text = format_report(summary, title=title, setting=setting, details=details, sheet=image is not None)
    return write_text(out_dir / "report.md", text)
