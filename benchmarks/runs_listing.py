"""How long `python -m lit_tasks runs` takes over 100 run folders, against `python -c pass`.

Builds 100 run folders in a temporary directory, shaped like fit's (results.json with a
20-epoch history and a full config, config.yaml, checkpoints/, logs/metrics.csv; statuses
mixed), then times, as subprocesses, `python -c pass` (the interpreter's own start, the
reference), `python -m lit_tasks runs` and `python -m lit_tasks runs --json`, interleaved, and
prints the medians and the ratio to the reference. Target: under 2 s for the listing.

    python benchmarks/runs_listing.py                 # 100 runs, 7 repetitions
    python benchmarks/runs_listing.py --runs 1000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATUSES = ("finished", "finished", "failed", "preempted", "running")


def make_run(run_dir: Path, i: int) -> None:
    """One run folder as fit leaves it (checkpoints are small stand-ins: they are never read)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "logs").mkdir()
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"\0" * 1024)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"\0" * 1024)
    history = [{"epoch": e, "step": 100 * (e + 1), "train/loss": 2.0 / (e + 1), "val/loss": 2.1 / (e + 1),
                "val/acc": e / 20, "val/f1": e / 21} for e in range(20)]
    (run_dir / "logs" / "metrics.csv").write_text("epoch,step,val/acc\n" + "".join(
        f"{row['epoch']},{row['step']},{row['val/acc']}\n" for row in history))
    model_args = {"backbone": "vit-test", "lr": 0.002, "label_names": [f"c{k}" for k in range(10)]}
    config = {"seed_everything": 42, "trainer": {f"option_{k}": None for k in range(40)},
              "model": {"class_path": "lit_tasks.tasks.ImageClassification", "init_args": model_args},
              "data": {"class_path": "lit_tasks.data.ImageDataModule", "init_args": {"root": "demo_data/fashion_mnist"}},
              "run": {"root": "runs", "name": None}}
    (run_dir / "config.yaml").write_text(json.dumps(config))
    results = {"status": STATUSES[i % len(STATUSES)], "pid": 1, "host": "elsewhere", "commands": ["fit", "test"],
               "metrics": {**history[-1], "test/acc": 0.8}, "config": config, "history": history,
               "best": {"monitor": "val/acc", "mode": "max", "score": 0.95, "epoch": 19, "step": 2000},
               "wall_time_s": {"fit": 300.0 + i, "test": 5.0}, "seed": 42}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.runs):
            make_run(root / f"model_{i % 7}_data" / f"2026-01-01_00-00-{i:03d}", i)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "runs": [sys.executable, "-m", "lit_tasks", "runs", "--root", tmp],
            "runs --json": [sys.executable, "-m", "lit_tasks", "runs", "--root", tmp, "--json"],
        }
        for command in commands.values():  # warm-up: the file cache and the bytecode
            timed(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.reps):  # interleaved, so a busy moment of the host hits all alike
            for name, command in commands.items():
                times[name].append(timed(command))
    reference = statistics.median(times["python -c pass"])
    print(f"{args.runs} run folders, median of {args.reps} (seconds; ratio to `python -c pass`)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:16s} {median:6.3f} s   x{median / reference:5.1f}")


if __name__ == "__main__":
    main()
