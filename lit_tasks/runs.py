"""`python -m lit_tasks runs [--root runs] [--name PATTERN] [--status STATUS] [--json]`: every
run folder as one line of a table, or as JSON for scripts.

    run                     version              commands   status     wall    best               test
    vit_fashion_mnist       2026-11-25_10-42-39  fit,test   finished   4m52s   val/acc=0.8210     test/acc=0.8180

status comes from results.json ("running", "finished", "failed", "preempted"); a "running" run
whose process is gone (same host, pid no longer alive: killed, out of memory, node lost) shows
as "killed". A folder without results.json (a command that stopped before training began)
shows "no results"; one whose results.json cannot be read, "unreadable".

Filters: `--name PATTERN` keeps the runs whose name (the `run` column, e.g. `vit_fashion_mnist`
or `sweep/trial_3`) matches a glob when PATTERN has one of `*?[` (`vit_*`), else contains
PATTERN as a substring (`mnist`); case-sensitive. `--status` keeps the runs of the given
statuses; repeat it or give a comma list (`--status failed,killed`). Both together: both hold.

`--json` prints one list, one object a run, in the table's order:
    {"name", "version", "path", "status", "commands": [..], "wall_time_s": total seconds or null,
     "best": {"monitor", "mode", "score", "epoch", "step"} or null, "metrics": {name: value},
     "error": the failure's message or null, "updated": results.json's time or null}
(`[]` when nothing matches). This path imports neither torch nor Lightning, so it answers at once.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from lit_tasks.durations import duration

MARKS = ("results.json", "config.yaml")  # a folder holding one of these is a run folder
STATUSES = ("running", "finished", "failed", "preempted", "killed", "no results", "unreadable", "unknown")
GLOB_CHARS = "*?["


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_status(results: dict[str, Any]) -> str:
    status = str(results.get("status") or "unknown")
    if status == "running" and results.get("host") == socket.gethostname() and isinstance(results.get("pid"), int) \
            and not process_alive(results["pid"]):
        return "killed"
    return status


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A metric for JSON: NaN and infinities (which strict JSON lacks) become null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def wall_seconds(results: dict[str, Any]) -> float | None:
    """The run's wall time, all commands together; None when none was recorded."""
    times = results.get("wall_time_s")
    seconds = sum(v for v in times.values() if _number(v)) if isinstance(times, dict) else 0
    return seconds or None


def wall_time(seconds: float | None) -> str:
    return duration(seconds) if seconds else "-"


def read_results(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(results.json as a dict or None when absent, why it could not be read or None)."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None, None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path}: {exc}"
    return (results, None) if isinstance(results, dict) else (None, f"{path}: not a JSON object")


def record(run_dir: Path, root: Path) -> dict[str, Any]:
    """What `--json` prints for a run folder `root/<name>/<version>` (the table is made from it)."""
    results, unreadable = read_results(run_dir)
    name = str(run_dir.parent.relative_to(root)) if run_dir != root else run_dir.parent.name
    row: dict[str, Any] = {"name": name, "version": run_dir.name,
                           "path": str(run_dir), "status": "no results", "commands": [], "wall_time_s": None,
                           "best": None, "metrics": {}, "error": unreadable, "updated": None}
    if unreadable:
        return {**row, "status": "unreadable"}
    if results is None:
        return row
    best = results.get("best")
    metrics = results.get("metrics")
    commands = results.get("commands")
    return {
        **row,
        "status": run_status(results),
        "commands": [str(c) for c in commands] if isinstance(commands, list) else [],
        "wall_time_s": wall_seconds(results),
        "best": {k: _plain(best.get(k)) for k in ("monitor", "mode", "score", "epoch", "step")}
        if isinstance(best, dict) else None,
        "metrics": {k: _plain(v) for k, v in metrics.items() if _number(v)} if isinstance(metrics, dict) else {},
        "error": results.get("error"),
        "updated": results.get("updated"),
    }


def table_row(run: dict[str, Any]) -> dict[str, str]:
    best = run["best"] or {}
    monitor = best.get("monitor") or ""
    test_key = "test/" + monitor.split("/", 1)[1] if "/" in monitor else ""
    test_value = run["metrics"].get(test_key)
    return {
        "run": run["name"], "version": run["version"], "status": run["status"],
        "commands": ",".join(run["commands"]) or "-",
        "wall": wall_time(run["wall_time_s"]),
        "best": f"{monitor}={best['score']:.4f}" if _number(best.get("score")) else "-",
        "test": f"{test_key}={test_value:.4f}" if _number(test_value) else "-",
    }


def find_runs(root: Path) -> list[Path]:
    """Run folders: those holding results.json or config.yaml, anywhere under root; the walk
    does not go into a run folder (its checkpoints, logs and wandb files are not looked at)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if any(mark in files for mark in MARKS):
            found.append(Path(folder))
            subfolders.clear()
    return sorted(found, key=lambda d: (str(d.parent), d.name))


def matches(run: dict[str, Any], name: str | None, statuses: set[str]) -> bool:
    if statuses and run["status"] not in statuses:
        return False
    if name is None:
        return True
    return fnmatch.fnmatchcase(run["name"], name) if any(c in name for c in GLOB_CHARS) else name in run["name"]


def table(rows: list[dict[str, str]]) -> str:
    columns = ["run", "version", "commands", "status", "wall", "best", "test"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def parse_statuses(parser: argparse.ArgumentParser, given: list[str]) -> set[str]:
    statuses = {s.strip() for item in given for s in item.split(",") if s.strip()}
    unknown = sorted(statuses - set(STATUSES))
    if unknown:
        parser.error(f"--status {', '.join(unknown)}: not a status; one of {', '.join(STATUSES)}")
    return statuses


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks runs", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Filters:"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs", help="folder holding the runs (default: runs)")
    parser.add_argument("--name", metavar="PATTERN",
                        help="only runs whose name matches: a glob if PATTERN has * ? or [ (vit_*), "
                             "else a substring (mnist); case-sensitive")
    parser.add_argument("--status", action="append", default=[], metavar="STATUS",
                        help=f"only runs of this status; repeat it or give a comma list ({', '.join(STATUSES)})")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list, one object a run: name, version, path, status, commands, "
                             "wall_time_s, best, metrics, error, updated")
    args = parser.parse_args(argv)
    statuses = parse_statuses(parser, args.status)
    root = Path(args.root)
    runs = [record(run_dir, root) for run_dir in (find_runs(root) if root.is_dir() else [])]
    runs = [run for run in runs if matches(run, args.name, statuses)]
    if args.json:
        print(json.dumps(runs, indent=1))
    elif not runs:
        print(f"no runs under {root}/" + (" that match" if args.name or statuses else ""))
    else:
        print(table([table_row(run) for run in runs]))
