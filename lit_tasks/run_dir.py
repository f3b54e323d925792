"""Where a run lives: `<root>/<name>/<version>/` with config, results, checkpoints, logs and plots.

    runs/convnext_fashion_mnist/2026-11-25_10-42-39/
        config.yaml        the resolved config of the first command run here
        results.json       final and best metrics, checkpoints, versions, timing
        checkpoints/       best.ckpt, last.ckpt
        logs/metrics.csv   CSV logger;   wandb/   the wandb (offline) run
        curves.png, confusion_matrix.png, predictions.jsonl

`--ckpt_path best` means checkpoints/best.ckpt; `--ckpt_path last` the run's newest state: the
newer of checkpoints/last.ckpt (epoch ends, periodic checkpoints) and checkpoints/preempted.ckpt
(written when a SIGTERM or the Slurm requeue signal stopped the fit). Without `--run.dir` they
look in the newest run of this name that has one.
All processes of a distributed job must agree on the folder: the first process exports
it in LIT_TASKS_RUN_DIR (inherited by the processes Lightning launches); under SLURM the
job id names the version, so every task of the job computes the same one. A requeued Slurm
job (same job id, SLURM_RESTART_COUNT > 0) given no --ckpt_path continues from the same newest
state, as `--ckpt_path last` would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lit_tasks.errors import CheckpointError

ENV_VAR = "LIT_TASKS_RUN_DIR"
CKPT_ALIASES = ("best", "last")


def new_version() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        array_task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{job}" + (f"_{array_task}" if array_task else "")
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def claim_new(root: Path, name: str) -> Path:
    """Create and return a fresh run folder `root/name/<version>`.

    Two runs started in the same second (two seeds at once, parallel sweep trials) would get the
    same timestamp: the folder is created here, and the second run takes `<version>_2` (then
    `_3`, ...), so they never write each other's checkpoints. A Slurm version is the job's, shared
    on purpose by its tasks and by its requeued restarts."""
    base = Path(root) / name / new_version()
    if os.environ.get("SLURM_JOB_ID"):
        return base
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")


# the files `--ckpt_path ALIAS` may mean: "last" is the newest state, whichever file holds it
ALIAS_FILES = {"best": ("best",), "last": ("last", "preempted")}


def checkpoint_path(run_dir: Path, alias: str) -> Path:
    return run_dir / "checkpoints" / f"{alias}.ckpt"


def alias_checkpoint(run_dir: Path, alias: str) -> Path | None:
    """The file `--ckpt_path alias` means in run_dir (the newest of its candidates), or None."""
    files = [checkpoint_path(run_dir, name) for name in ALIAS_FILES[alias]]
    files = [file for file in files if file.is_file()]
    return max(files, key=lambda file: file.stat().st_mtime) if files else None


def requeued_checkpoint(run_dir: Path) -> str | None:
    """The checkpoint a requeued Slurm job continues from, or None (not requeued, or none yet)."""
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    file = alias_checkpoint(run_dir, "last")
    return str(file) if file else None


def find_run_with(root: Path, name: str, alias: str) -> Path:
    """The newest run under root/name holding the checkpoint `alias` means, or a CheckpointError."""
    runs = root / name
    found = {d: alias_checkpoint(d, alias) for d in runs.iterdir() if d.is_dir()} if runs.is_dir() else {}
    candidates = {d: file for d, file in found.items() if file is not None}
    if not candidates:
        names = " or ".join(f"checkpoints/{n}.ckpt" for n in ALIAS_FILES[alias])
        raise CheckpointError(
            f"--ckpt_path {alias}: no run under {runs}/ has a {names} yet "
            f"(train first, or pass --run.dir or a checkpoint file)"
        )
    return max(candidates, key=lambda d: candidates[d].stat().st_mtime)


def resolve(root: str, name: str, run_dir: str | None, ckpt_path: str | None) -> tuple[Path, str | None]:
    """Decide the run folder and the checkpoint file for one command.

    Returns (run_dir, ckpt_path) with aliases `best`/`last` turned into files.
    """
    inherited = os.environ.get(ENV_VAR)
    if inherited:
        chosen = Path(inherited)
    elif run_dir:
        chosen = Path(run_dir)
    elif ckpt_path in CKPT_ALIASES:
        chosen = find_run_with(Path(root), name, ckpt_path)
    elif ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        chosen = Path(ckpt_path).parent.parent  # a checkpoint inside a run folder: keep writing there
    else:
        chosen = claim_new(Path(root), name)
    if ckpt_path is None:
        ckpt_path = requeued_checkpoint(chosen)
    if ckpt_path in CKPT_ALIASES:
        file = alias_checkpoint(chosen, ckpt_path)
        if file is None:
            raise CheckpointError(
                f"--ckpt_path {ckpt_path}: the run folder {chosen} has no checkpoints/{ckpt_path}.ckpt yet "
                f"(nothing to resume: drop --ckpt_path to start from scratch, or pass another run's --run.dir)"
            )
        ckpt_path = str(file)
    elif ckpt_path and not Path(ckpt_path).is_file():
        raise CheckpointError(f"--ckpt_path {ckpt_path}: no such file")
    chosen.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = str(chosen.resolve())
    return chosen.resolve(), ckpt_path
