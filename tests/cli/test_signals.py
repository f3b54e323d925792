"""SIGTERM to a running fit (what `kill`, a container runtime and Slurm's time limit send):
the fit checkpoints at the end of the step it is in, says "preempted" in results.json, exits
with 143, and `--ckpt_path last` continues from that step. Under Slurm (variables faked, a
fake `scontrol` on PATH recording its arguments) the job requeues itself, at most
`--run.max_requeues` times. The real Slurm version is in tests/slurm/test_slurm_jobs.py."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, run_cli, tiny_args

FAKE_SCONTROL = """#!/bin/sh
echo "$@" >> "$SCONTROL_LOG"
[ "$1" = show ] && echo "JobId=$3 JobName=tiny JobState=RUNNING Reason=None Dependency=(null)"
exit 0
"""


def fit_args(image_folder, runs, *extra):
    """24 train images in batches of 4: 6 steps per epoch, 12 in all; a row per step."""
    return [*tiny_args(image_folder, runs), "--run.test_after_fit", "false", "--data.batch_size", "4",
            "--trainer.log_every_n_steps", "1", *extra]


def sigterm_at_step(args, gate, step, env=None, timeout=300, ranks=1):
    """`python -m lit_tasks fit ARGS`, paused at the end of training step `step`
    (helpers.PauseAtStep) until the test has sent it SIGTERM; returns the finished process.
    With `ranks` > 1 (DDP started by Lightning) only rank 0, the command's process, is signalled
    (as `kill PID` does); the other ranks are released from their pause without a signal."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO / "tests"), **(env or {})}
    env.pop("LIT_TASKS_RUN_DIR", None)
    command = [sys.executable, "-m", "lit_tasks", "fit", *args, "--trainer.callbacks", "helpers.PauseAtStep",
               "--trainer.callbacks.step", str(step), "--trainer.callbacks.folder", str(gate)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not all((gate / f"paused-{rank}").exists() for rank in range(ranks)):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the fit never reached the step"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        time.sleep(1)
        (gate / "go").touch()
        process.stdout_text, process.stderr_text = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process


def step_rows(run_dir):
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]


def global_step(path):
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_the_step_and_ckpt_path_last_continues(tmp_path, image_folder):
    runs = tmp_path / "runs"
    stopped = sigterm_at_step(fit_args(image_folder, runs), tmp_path / "gate", step=8)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr_text[-3000:]  # not "finished": 143
    (run_dir,) = (runs / "tiny").iterdir()
    checkpoints = run_dir / "checkpoints"
    assert global_step(checkpoints / "preempted.ckpt") == 8  # the end of the step it was in, mid epoch 1
    assert global_step(checkpoints / "last.ckpt") == 6  # the epoch-end one, untouched
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted" and "error" not in results
    (stop,) = results["stops"]
    assert stop == {"signal": "SIGTERM", "step": 8, "checkpoint": str(checkpoints / "preempted.ckpt"),
                    "requeue": "not a Slurm job, so not requeued: resume with --ckpt_path last", "requeued": False}
    assert "stopped by SIGTERM (checkpoint of step 8" in stopped.stderr_text
    assert step_rows(run_dir) == list(range(8))  # the 8 steps done, each logged (rows count from 0)

    resumed = run_cli("fit", *fit_args(image_folder, runs), "--ckpt_path", "last")  # finds the run by its name
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {checkpoints / 'preempted.ckpt'}" in resumed.stderr
    assert step_rows(run_dir) == list(range(12))  # every step once: continued with the 9th, none redone
    assert global_step(checkpoints / "last.ckpt") == 12
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and [row["epoch"] for row in results["history"]] == [0, 1]
    assert results["stops"] == [stop]  # the history of stops is kept


@pytest.mark.parametrize("restarts, requeued", [(0, True), (3, False)])
def test_sigterm_under_slurm_requeues_the_job_until_max_requeues(tmp_path, image_folder, restarts, requeued):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    log = tmp_path / "scontrol.log"
    slurm = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SCONTROL_LOG": str(log),
             "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0", "SLURM_JOB_NAME": "tiny", "SLURM_NODELIST": "localhost",
             "SLURM_RESTART_COUNT": str(restarts)}
    runs = tmp_path / "runs"
    stopped = sigterm_at_step(fit_args(image_folder, runs, "--run.max_requeues", "3"), tmp_path / "gate", step=2,
                              env=slurm)
    run_dir = runs / "tiny" / "slurm-4242"
    assert global_step(run_dir / "checkpoints" / "preempted.ckpt") == 2
    (stop,) = json.loads((run_dir / "results.json").read_text())["stops"]
    assert stop["requeued"] is requeued
    calls = log.read_text().splitlines() if log.exists() else []
    if requeued:
        assert stopped.returncode == 0, stopped.stderr_text[-3000:]
        assert calls == ["show job 4242", "requeue 4242"]  # asked whether the job was cancelled, then requeued
        assert "lit_tasks: job 4242 requeued" in stopped.stdout_text
    else:
        assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr_text[-3000:]
        assert calls == []  # never requeued past the limit
        message = "job 4242 was already restarted 3 time(s), the most --run.max_requeues (3) allows"
        assert message in stop["requeue"] and message in stopped.stderr_text


@pytest.mark.slow
def test_sigterm_to_rank_0_of_a_ddp_fit_stops_both_ranks_after_the_same_step(tmp_path, image_folder):
    """Lightning's own handler would stop rank 0 alone (and forward the signal to the other
    rank, which may be a step further): the ranks agree at the step's end and checkpoint together."""
    runs = tmp_path / "runs"
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    stopped = sigterm_at_step(fit_args(image_folder, runs, *ddp), tmp_path / "gate", step=2, ranks=2)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr_text[-3000:]
    (run_dir,) = (runs / "tiny").iterdir()
    assert global_step(run_dir / "checkpoints" / "preempted.ckpt") == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted" and results["world_size"] == 2 and results["stops"][0]["step"] == 2
