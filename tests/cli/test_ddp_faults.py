"""Distributed runs that fail end everywhere, soon, and say why; torchrun runs our CLI unchanged.

Faults are injected by the test-only callbacks of tests/faults.py (`--trainer.callbacks`).
Each test bounds its run with a subprocess timeout several times a healthy run's time on a
busy 2-core machine: a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_cli, tiny_args

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_epochs", "1"]


@pytest.fixture
def faults_importable(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))


def ended(pid: int) -> bool:
    """Whether process `pid` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def pids(folder: Path) -> dict[int, int]:
    """{global rank: pid} written by the fault callbacks at setup."""
    return {int(f.name.split("-")[1]): int(f.read_text()) for f in folder.glob("pid-*")}


def timed(run, *args, **kwargs):
    start = time.monotonic()
    result = run(*args, **kwargs)
    return result, time.monotonic() - start


@pytest.mark.slow
def test_ddp_fit_and_test_ten_times_in_a_row_with_two_workers(tmp_path, image_folder, faults_importable):
    """The hang this guards against struck in 1 of 4 runs, starting the test loader's workers
    after fit: 10 fits (each testing its best checkpoint), 2 ranks x 2 workers, one process
    group per command, in one pair of processes so that it takes about 2 minutes at most."""
    args = [*tiny_args(image_folder, tmp_path), *DDP, "--data.num_workers", "2", "--run.ddp_timeout_minutes", "1",
            "--trainer.callbacks", "faults.RecordLoaders", "--trainer.callbacks.folder", str(tmp_path / "loaders")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LIT_TASKS_RUN_DIR", None)
    result, seconds = timed(subprocess.run, [sys.executable, "-m", "faults", "loop", str(tmp_path / "runs"), "10", *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"10 DDP fit+test commands: {seconds:.0f} s")
    for i in range(10):
        results = json.loads((tmp_path / "runs" / str(i) / "results.json").read_text())
        assert results["status"] == "finished" and results["world_size"] == 2
        assert results["commands"] == ["fit", "test"] and "test/acc" in results["metrics"]
    for rank in (0, 1):
        records = [json.loads(line) for line in (tmp_path / "loaders" / f"loaders-{rank}.jsonl").read_text().splitlines()]
        assert [r["stage"] for r in records] == ["fit", "test"] * 10
        assert len({r["pid"] for r in records}) == 1  # one process per rank ran all 10 commands
        # train, val and test workers of a rank are never forked from the rank itself
        assert [r["start_methods"] for r in records] == [["forkserver", "forkserver"], ["forkserver"]] * 10


@pytest.mark.slow
def test_a_stuck_rank_ends_every_process_with_a_message_naming_the_timeout(tmp_path, image_folder, faults_importable):
    """Rank 1 stops responding at step 3, as a rank deadlocked starting a DataLoader worker did.
    Rank 0's next collective times out after run.ddp_timeout_minutes (30 s here); it says so,
    kills rank 1 and exits non-zero."""
    folder = tmp_path / "pids"
    result, seconds = timed(run_cli, "fit", *tiny_args(image_folder, tmp_path), *DDP, "--trainer.max_epochs", "3",
                            "--data.num_workers", "2", "--run.ddp_timeout_minutes", "0.5",
                            "--trainer.callbacks", "faults.StallAtStep", "--trainer.callbacks.step", "3",
                            "--trainer.callbacks.rank", "1", "--trainer.callbacks.folder", str(folder), timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("lit_tasks: error:")]
    assert message.startswith("lit_tasks: error: rank 0 of 2: a collective operation of the distributed run "
                              "failed (Timed out"), message
    assert "run.ddp_timeout_minutes" in message
    assert "lit_tasks: local rank 1 was still running 10 s after this failure: killed" in result.stderr
    assert sorted(pids(folder)) == [0, 1]  # both ranks were up: the timeout struck at the stuck step
    assert all(ended(pid) for pid in pids(folder).values())
    assert seconds < 240


@pytest.mark.slow
def test_rank_1_raising_ends_both_processes(tmp_path, image_folder, faults_importable):
    """No timeout needed (the default one is 30 minutes): rank 0 sees rank 1's connections close."""
    folder = tmp_path / "pids"
    run_dir = tmp_path / "run"
    result, seconds = timed(run_cli, "fit", *tiny_args(image_folder, tmp_path), *DDP, "--trainer.max_epochs", "3",
                            "--data.num_workers", "2", "--run.dir", str(run_dir),
                            "--trainer.callbacks", "faults.RaiseAtStep", "--trainer.callbacks.step", "3",
                            "--trainer.callbacks.rank", "1", "--trainer.callbacks.folder", str(folder), timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "RuntimeError: injected failure on rank 1" in result.stderr  # rank 1's own traceback
    assert "lit_tasks: local rank 1 exited with status 1" in result.stderr
    assert "lit_tasks: error: rank 0 of 2: a collective operation of the distributed run failed" in result.stderr
    assert sorted(pids(folder)) == [0, 1] and all(ended(pid) for pid in pids(folder).values())
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert seconds < 240


@pytest.mark.slow
def test_nan_loss_on_one_rank_stops_every_rank_at_that_step(tmp_path, image_folder, faults_importable):
    """2 steps per epoch per rank; rank 1's loss is NaN at step 3 (epoch 1): both ranks stop
    there with the same message, before the update; last.ckpt (end of epoch 0) is untouched."""
    run_dir = tmp_path / "run"
    result, seconds = timed(run_cli, "fit", *tiny_args(image_folder, tmp_path), *DDP, "--trainer.max_epochs", "3",
                            "--run.dir", str(run_dir), "--trainer.callbacks", "faults.NanAtStep",
                            "--trainer.callbacks.step", "3", "--trainer.callbacks.rank", "1", timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("lit_tasks: error:"))
    assert [e.split(": ")[2] for e in errors] == ["rank 0 of 2", "rank 1 of 2"], errors
    for error in errors:
        assert "the training loss is nan on rank 1 of 2 at step 3 (epoch 1, batch 1)" in error
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "step 3" in results["error"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 and last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert seconds < 240


def test_nan_loss_steps_skipped_when_allowed_and_stop_past_the_allowance(tmp_path, image_folder, faults_importable):
    """One process, 3 steps per epoch. Allowed 2: the NaN step 1 is skipped without touching
    the weights, counted in results.json and logged, and training goes on. Allowed 1: NaN at
    steps 1 and 2 stops at step 2."""
    args = [*tiny_args(image_folder, tmp_path), "--trainer.log_every_n_steps", "1",
            "--trainer.callbacks", "faults.NanAtStep", "--trainer.callbacks.step", "1"]
    skipped = run_cli("fit", *args, "--run.dir", str(tmp_path / "skip"), "--run.skip_nonfinite_loss", "2")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "the training loss is nan at step 1 (epoch 0, batch 1): step skipped, weights unchanged" in skipped.stderr
    results = json.loads((tmp_path / "skip" / "results.json").read_text())
    assert results["skipped_steps"] == {"count": 1, "steps": [1], "allowed": 2}
    assert results["status"] == "finished" and math.isfinite(results["metrics"]["val/loss"])
    rows = (tmp_path / "skip" / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [row.split(",")[header.index("train/loss_step")] for row in rows[1:]]
    losses = [float(v) for v in losses if v]
    assert len(losses) == 6 and str(losses[1]) == "nan"
    assert all(torch.isfinite(torch.tensor(losses[2:])))  # the weights stayed finite after the skip
    final = torch.load(tmp_path / "skip" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in final.values())

    stopped = run_cli("fit", *args, "--trainer.callbacks.times", "2", "--run.dir", str(tmp_path / "stop"),
                      "--run.skip_nonfinite_loss", "1")
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    message = stopped.stderr.strip().splitlines()[-1]
    assert message.startswith("lit_tasks: error: the training loss is nan at step 2 (epoch 0, batch 2)"), message
    assert "steps skipped before: 1" in message
    results = json.loads((tmp_path / "stop" / "results.json").read_text())
    assert results["status"] == "failed" and results["skipped_steps"]["count"] == 1


@pytest.mark.slow
def test_torchrun_runs_the_cli_unchanged(tmp_path, image_folder):
    """`torchrun --nproc_per_node 2 -m lit_tasks fit ...`: one run folder for both ranks (rank 1
    is held back until rank 0's folder exists and a second more has passed, so naming its own
    by the clock would give another one), one results.json, the metrics of a 2-device run
    launched by Lightning."""
    hold = tmp_path / "site"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(
        "import glob, os, time\n"
        "if os.environ.get('RANK') == '1':\n"
        "    while not glob.glob(os.environ['HOLD_RANK_1_UNTIL']):\n"
        "        time.sleep(0.1)\n"
        "    time.sleep(1.5)\n")
    args = [*tiny_args(image_folder, tmp_path), *DDP]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(hold),
           "HOLD_RANK_1_UNTIL": str(tmp_path / "tiny" / "*")}
    env.pop("LIT_TASKS_RUN_DIR", None)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "lit_tasks", "fit", *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["world_size"] == 2 and results["commands"] == ["fit", "test"]

    launched = run_cli("fit", *args, "--run.dir", str(tmp_path / "launched"))
    assert launched.returncode == 0, launched.stderr[-3000:]
    expected = json.loads((tmp_path / "launched" / "results.json").read_text())["metrics"]
    assert set(results["metrics"]) == set(expected)
    for key in expected:
        if key.startswith(("val/", "test/")):
            assert results["metrics"][key] == pytest.approx(expected[key], abs=1e-6), key
