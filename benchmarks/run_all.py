"""Run every ``bench_*.py`` script in this folder in turn and collect what they measure.

Each script prints JSON lines; they are echoed to stdout as they come and written, once all scripts are done,
to ``OUT/results.jsonl`` (each record tagged with its ``script``) and ``OUT/results.md``: the machine (CPU model,
cores, Python / torch / onnxruntime versions, date) and one markdown table per script and record kind. Both files
are written atomically. A script that fails is named at the end and makes the exit status 1; the others still
run.

    python benchmarks/run_all.py [--out runs/bench] [--only deploy train ...]      (or: make bench)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys

from robustreid.atomicfile import write_text

HERE = pathlib.Path(__file__).resolve().parent


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for module in ("torch", "onnxruntime", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def markdown(records: list[dict], info: dict) -> str:
    """One table per (script, kind): columns are the records' keys in first-seen order."""
    lines = ["# robustreid benchmarks", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["script"], str(record.get("kind", record.get("step", "")))), []).append(record)
    for (script, kind), rows in groups.items():
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns and k not in ("script", "bench", "kind")]
        lines += [f"## {script}" + (f" - {kind}" if kind else ""), "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/bench"))
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these scripts (bench_NAME.py), e.g. --only deploy train")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        names = {s.stem.removeprefix("bench_"): s for s in scripts}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}: expected some of {sorted(names)}")
        scripts = [names[n] for n in args.only]
    info = machine()
    records: list[dict] = []
    failed = []
    for script in scripts:
        print(f"# {script.name}", file=sys.stderr, flush=True)
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append({"script": script.stem, **record})
        if proc.wait():
            failed.append(script.name)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_text(args.out / "results.md", markdown(records, info))
    print(f"# wrote {args.out / 'results.jsonl'} and {args.out / 'results.md'}", file=sys.stderr)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
