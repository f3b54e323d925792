"""The decisions of a fit stopped by a signal, without a cluster: whether the Slurm job is
requeued (the restart cap, a cancelled job, the signal) and what `--ckpt_path last` resumes."""

from __future__ import annotations

import os
import signal
import time

import pytest
from helpers import tiny_args

from lit_tasks import run_dir
from lit_tasks.callbacks.preemption import DEFAULT_MAX_REQUEUES, RequeueOnSignal, requeue_decision
from lit_tasks.errors import CheckpointError, ConfigError

JOB = {"SLURM_JOB_ID": "42"}
RUNNING = {"JobState": "RUNNING", "Reason": "None"}
TIME_LIMIT = {"JobState": "COMPLETING", "Reason": "TimeLimit"}  # `scontrol show job` at the time limit
CANCELLED = {"JobState": "COMPLETING", "Reason": "None"}  # ... after `scancel JOBID`


def decide(signum=signal.SIGTERM, max_requeues=3, restarts=None, fields=RUNNING, **env):
    asked = []

    def job_fields(job_id):
        asked.append(job_id)
        return fields

    env = {**JOB, **env, **({"SLURM_RESTART_COUNT": str(restarts)} if restarts is not None else {})}
    job_id, why = requeue_decision(signum, max_requeues, env=env, job_fields=job_fields)
    return job_id, why, asked


@pytest.mark.parametrize("restarts, requeued", [(None, True), (0, True), (2, True), (3, False), (7, False)])
def test_restarts_are_capped_by_max_requeues(restarts, requeued):
    job_id, why, _ = decide(restarts=restarts)
    assert (job_id == "42") is requeued
    if requeued:
        assert f"restart {(restarts or 0) + 1} of at most 3" in why
    else:
        assert f"already restarted {restarts} time(s), the most --run.max_requeues (3) allows" in why
        assert "--ckpt_path last" in why


def test_no_cap_and_a_cap_of_zero():
    assert decide(max_requeues=None, restarts=1000)[0] == "42"
    assert decide(max_requeues=0, restarts=0)[0] is None  # 0: never requeue


@pytest.mark.parametrize("fields, requeued", [
    (RUNNING, True),      # a `kill`, or `scancel --signal=TERM`: the job itself runs on
    (TIME_LIMIT, True),   # the time limit, without --signal=USR1@...
    ({"JobState": "COMPLETING", "Reason": "Preempted"}, True),
    (CANCELLED, False),   # `scancel JOBID`: the user wants it gone
    ({"JobState": "CANCELLED", "Reason": "None"}, False),
    ({}, True),           # scontrol did not answer: try (a failed requeue says so)
])
def test_a_sigterm_requeues_unless_slurm_is_cancelling_the_job(fields, requeued):
    job_id, why, asked = decide(fields=fields)
    assert asked == ["42"] and (job_id == "42") is requeued
    if not requeued:
        assert "cancelled" in why and f"JobState={fields['JobState']}" in why


def test_the_slurm_requeue_signal_always_requeues_below_the_cap():
    job_id, _, asked = decide(signum=signal.SIGUSR1, fields=CANCELLED)  # scancel --signal=USR1: asked for
    assert job_id == "42" and asked == []


def test_not_a_slurm_job_and_an_array_task():
    job_id, why = requeue_decision(signal.SIGTERM, 3, env={}, job_fields=lambda job: {})
    assert job_id is None and "not a Slurm job" in why
    job_id, _, asked = decide(SLURM_ARRAY_JOB_ID="40", SLURM_ARRAY_TASK_ID="3")
    assert job_id == "40_3" and asked == ["40_3"]  # the task, never the whole array


def test_max_requeues_option(tmp_path, image_folder):
    from lit_tasks.cli import LitTasksCLI

    def callback(*extra):
        cli = LitTasksCLI(args=[*tiny_args(image_folder, tmp_path), *extra], run=False)
        (found,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, RequeueOnSignal)]
        return found

    assert callback().max_requeues == DEFAULT_MAX_REQUEUES == 10
    assert callback("--run.max_requeues", "2").max_requeues == 2
    assert callback("--run.max_requeues", "null").max_requeues is None
    with pytest.raises(ConfigError, match="run.max_requeues must be 0 or more"):
        callback("--run.max_requeues", "-1")


def test_ckpt_path_last_is_the_newer_of_last_and_preempted(tmp_path, monkeypatch):
    monkeypatch.setenv(run_dir.ENV_VAR, "")  # resolve() exports the folder: gone again after the test
    folder = tmp_path / "tiny" / "v1"
    (folder / "checkpoints").mkdir(parents=True)
    last, preempted = folder / "checkpoints" / "last.ckpt", folder / "checkpoints" / "preempted.ckpt"
    preempted.write_bytes(b"x")  # a run stopped by SIGTERM before its first epoch end: preempted only
    assert run_dir.resolve(str(tmp_path), "tiny", None, "last") == (folder.resolve(), str(preempted.resolve()))
    os.environ.pop(run_dir.ENV_VAR)
    last.write_bytes(b"x")
    os.utime(preempted, (time.time() - 60, time.time() - 60))  # resumed since, and a newer last.ckpt written
    assert run_dir.resolve(str(tmp_path), "tiny", None, "last")[1] == str(last.resolve())
    os.environ.pop(run_dir.ENV_VAR)
    os.utime(last, (time.time() - 120, time.time() - 120))  # stopped again since: preempted.ckpt is newest
    assert run_dir.resolve(str(tmp_path), "tiny", str(folder), "last")[1] == str(preempted)  # --run.dir given
    os.environ.pop(run_dir.ENV_VAR)
    with pytest.raises(CheckpointError, match="checkpoints/best.ckpt yet"):
        run_dir.resolve(str(tmp_path), "tiny", None, "best")  # best means best.ckpt only
