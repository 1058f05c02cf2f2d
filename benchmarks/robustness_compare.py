"""Several finished robustness runs side by side: the table and the figure of docs/ROBUSTNESS.md.

Reads each run's ``summary.json`` (written by ``robustreid robustness ... --out DIR``) and prints one Markdown
table: per model, clean, mean corrupted (the benchmark's 20), each family's mean, and relative robustness
(corrupted / clean) for rank-1 and mAP. With --plot, one PNG: mAP against severity, one panel per family, one
line per model, severity 0 = clean (drawn with matplotlib's object-oriented API, as robustreid's reports).

    python benchmarks/robustness_compare.py --runs histogram=runs/robust/histogram hacnn=runs/robust/hacnn \
        robustreid_1x=runs/robust/robustreid_1x [--plot docs/images/robustness_map.png] [--metric mAP]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from matplotlib.figure import Figure


def fail(message: str) -> None:
    print(f"robustness_compare: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_runs(specs: list[str]) -> dict[str, dict]:
    runs = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            fail(f"--runs {spec!r}: expected NAME=DIR")
        path = Path(folder) / "summary.json"
        try:
            runs[name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"{path}: expected the summary.json of a finished robustness run ({type(exc).__name__})")
    return runs


def table(runs: dict[str, dict]) -> str:
    """One row per model: clean, mean corrupted and each family, rank-1 / mAP, and mAP relative to clean."""
    families = list(next(iter(runs.values()))["families"])
    head = ["model", "clean", "mean corrupted (20)", *families, "mAP rel. (mean corrupted)",
            *[f"mAP rel. {f}" for f in families]]
    rows = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, s in runs.items():
        def pair(m):
            return f"{m['rank1']:.1f} / {m['mAP']:.1f}"
        fam = s["families"]
        cells = [f"`{name}`", pair(s["clean"]), pair(s["mean"]), *[pair(fam[f]["mean"]) for f in families],
                 f"{s['relative']['mAP']:.2f}", *[f"{fam[f]['relative']['mAP']:.2f}" for f in families]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(runs: dict[str, dict], metric: str = "mAP") -> bytes:
    families = list(next(iter(runs.values()))["families"])
    fig = Figure(figsize=(3.0 * len(families), 3.4))
    axes = fig.subplots(1, len(families), sharey=True)
    for ax, family in zip(axes, families):
        for name, s in runs.items():
            by = s["families"][family]["by_severity"]
            severities = sorted(int(k) for k in by)
            ax.plot([0, *severities], [s["clean"][metric], *[by[str(k)][metric] for k in severities]],
                    marker="o", label=name)
        ax.set_title(family)
        ax.set_xticks([0, 1, 2, 3, 4, 5])
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel(f"{metric} (%), corrupted query")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="NAME=DIR")
    parser.add_argument("--plot", help="write the PNG here")
    parser.add_argument("--metric", default="mAP", choices=("rank1", "mAP", "mINP"))
    args = parser.parse_args()
    runs = read_runs(args.runs)
    print(table(runs))
    if args.plot:
        Path(args.plot).write_bytes(plot(runs, args.metric))
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
