"""The benchmark's figures from its cells: means over severities and corruptions, per family, and relative to clean.

A cell is one corruption at one severity, scored with the standard protocol; the figures follow ImageNet-C's
and CIL-ReID's convention: a corruption's figure is the mean over its severities, the benchmark's the mean over
corruptions of those (every corruption weighs the same, whatever severities it was run at), a family's the
mean over its corruptions. Relative robustness is corrupted / clean, per metric. The low-resolution family,
the paper's own axis, is reported as a family but kept out of the overall mean, so that the mean compares with
CIL-ReID's 20-corruption tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .corruptions import FAMILIES, LOW_RESOLUTION, family_of

__all__ = ["METRIC_KEYS", "summarize"]

METRIC_KEYS = ("rank1", "mAP", "mINP")  # percent, as metrics.score reports them


def _mean(rows: Iterable[Mapping]) -> dict:
    rows = list(rows)
    return {key: sum(float(row[key]) for row in rows) / len(rows) for key in METRIC_KEYS}


def _relative(metrics: Mapping | None, clean: Mapping) -> dict | None:
    """``metrics / clean`` per metric; ``None`` for a metric whose clean value is 0 (no ratio)."""
    if metrics is None:
        return None
    return {key: (metrics[key] / clean[key] if clean[key] else None) for key in METRIC_KEYS}


def summarize(cells: Iterable[Mapping], clean: Mapping) -> dict:
    """The summary of a robustness grid.

    ``cells``: records with ``corruption``, ``severity`` (1..5), optionally ``family`` (default: the registry's)
    and the ``METRIC_KEYS``; ``clean``: the clean evaluation's ``METRIC_KEYS``. Returns (plain values)::

        {"clean": {...}, "mean": {...} | None, "relative": {...} | None, "in_mean": [names],
         "families": {family: {"corruptions": [names], "mean", "relative", "by_severity": {severity: {...}}}},
         "corruptions": {name: {"family", "mean", "relative", "by_severity": {severity: {...}}}}}

    ``mean`` / ``relative``: over every corruption outside the low-resolution family (``None`` when there is
    none). A family's ``by_severity``: the mean over its corruptions run at that severity. Families are in
    ``FAMILIES``' order, then any other in order of appearance. Two cells for one corruption and severity are an
    error.
    """
    clean = {key: float(clean[key]) for key in METRIC_KEYS}
    grouped: dict[str, dict] = {}
    for cell in cells:
        name, severity = cell["corruption"], int(cell["severity"])
        entry = grouped.setdefault(name, {"family": cell.get("family") or family_of(name), "by_severity": {}})
        if severity in entry["by_severity"]:
            raise ValueError(f"two cells for corruption {name!r} at severity {severity}")
        entry["by_severity"][severity] = {key: float(cell[key]) for key in METRIC_KEYS}

    corruptions = {}
    for name, entry in grouped.items():
        by_severity = dict(sorted(entry["by_severity"].items()))
        mean = _mean(by_severity.values())
        corruptions[name] = {"family": entry["family"], "mean": mean, "relative": _relative(mean, clean),
                             "by_severity": by_severity}

    present = [c["family"] for c in corruptions.values()]
    order = [f for f in FAMILIES if f in present] + [f for f in dict.fromkeys(present) if f not in FAMILIES]
    families = {}
    for family in order:
        names = [name for name, c in corruptions.items() if c["family"] == family]
        mean = _mean(corruptions[name]["mean"] for name in names)
        severities = sorted({s for name in names for s in corruptions[name]["by_severity"]})
        by_severity = {s: _mean(corruptions[name]["by_severity"][s] for name in names
                                if s in corruptions[name]["by_severity"]) for s in severities}
        families[family] = {"corruptions": names, "mean": mean, "relative": _relative(mean, clean),
                            "by_severity": by_severity}

    in_mean = [name for name, c in corruptions.items() if c["family"] != LOW_RESOLUTION]
    mean = _mean(corruptions[name]["mean"] for name in in_mean) if in_mean else None
    return {"clean": clean, "mean": mean, "relative": _relative(mean, clean), "in_mean": in_mean,
            "families": families, "corruptions": corruptions}
