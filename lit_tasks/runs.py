"""`python -m lit_tasks runs [--root runs]`: every run folder as one line of a table.

    run                     version              commands   status     wall    best               test/acc
    vit_fashion_mnist       2026-11-25_10-42-39  fit,test   finished   4m52s   val/acc=0.8210     0.8180

status comes from results.json ("running", "finished", "failed", "preempted"); a "running" run
whose process is gone (same host, pid no longer alive: killed, out of memory, node lost) shows
as "killed". A folder without results.json (a command that stopped before training began)
shows "no results".
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_status(results: dict[str, Any]) -> str:
    status = results.get("status", "unknown")
    if status == "running" and results.get("host") == socket.gethostname() and isinstance(results.get("pid"), int) \
            and not process_alive(results["pid"]):
        return "killed"
    return status


def wall_time(results: dict[str, Any]) -> str:
    seconds = sum(v for v in results.get("wall_time_s", {}).values() if isinstance(v, (int, float)))
    if not seconds:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def describe(run_dir: Path, root: Path) -> dict[str, str]:
    """One table row for a run folder `root/<name>/<version>`."""
    path = run_dir / "results.json"
    try:
        results = json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        results = {"status": "unreadable results.json"}
    row = {"run": str(run_dir.parent.relative_to(root)), "version": run_dir.name}
    if results is None:
        return {**row, "commands": "-", "status": "no results", "wall": "-", "best": "-", "test": "-"}
    best = results.get("best") or {}
    metrics = results.get("metrics", {})
    monitor = best.get("monitor", "")
    test_key = "test/" + monitor.split("/", 1)[1] if "/" in monitor else ""
    test_value = metrics.get(test_key)
    return {
        **row,
        "commands": ",".join(results.get("commands", [])) or "-",
        "status": run_status(results),
        "wall": wall_time(results),
        "best": f"{monitor}={best['score']:.4f}" if isinstance(best.get("score"), (int, float)) else "-",
        "test": f"{test_key}={test_value:.4f}" if isinstance(test_value, (int, float)) else "-",
    }


def find_runs(root: Path) -> list[Path]:
    """Run folders: those holding results.json or config.yaml, anywhere under root."""
    marks = {p.parent for name in ("results.json", "config.yaml") for p in root.rglob(name)}
    return sorted(marks, key=lambda d: (str(d.parent), d.name))


def table(rows: list[dict[str, str]]) -> str:
    columns = ["run", "version", "commands", "status", "wall", "best", "test"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs", help="folder holding the runs (default: runs)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    runs = find_runs(root) if root.is_dir() else []
    if not runs:
        print(f"no runs under {root}/")
        return
    print(table([describe(run_dir, root) for run_dir in runs]))
