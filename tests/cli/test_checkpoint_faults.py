"""Faults around checkpoints and loggers, through in-process CLI runs resuming one trained run
(a copy per test): the newest checkpoint damaged, a full disk while a checkpoint is written,
a stray temporary file of a writer killed mid-save, wandb failing mid-run."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from helpers import FillsUp, make_image_folder, tiny_args

from lit_tasks import checkpoint_io
from lit_tasks.run_dir import ENV_VAR
from lit_tasks.commands import main


def args(images, run_dir, *extra):
    """6 steps per epoch (24 images in batches of 4), a log row per step, no test after fit."""
    return ["fit", *tiny_args(images, run_dir.parent), "--run.dir", str(run_dir), "--run.test_after_fit", "false",
            "--data.batch_size", "4", "--trainer.log_every_n_steps", "1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(images, a run folder after its first epoch of 2: best.ckpt and last.ckpt at step 6)."""
    os.environ.pop(ENV_VAR, None)  # a run folder another test's resolve() exported is not ours
    root = tmp_path_factory.mktemp("trained")
    images = make_image_folder(root / "images", {"train": 8, "val": 5, "test": 4})
    main(args(images, root / "runs" / "first", "--trainer.max_epochs", "1"))
    return images, root / "runs" / "first"


@pytest.fixture
def run(trained, tmp_path):
    images, first = trained
    copy = shutil.copytree(first, tmp_path / "runs" / "run")
    return images, copy, copy / "checkpoints"


def global_step(path):
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_newest_checkpoint_damaged_stops_and_lists_the_intact_ones_newest_first(run, capsys):
    images, run_dir, checkpoints = run
    last, best = checkpoints / "last.ckpt", checkpoints / "best.ckpt"
    preempted, older = checkpoints / "preempted.ckpt", checkpoints / "epoch0.ckpt"
    whole = last.read_bytes()
    preempted.write_bytes(whole[: len(whole) // 2])  # the newest state, cut in half (copied half-way)
    older.write_bytes(whole[:1000])  # damaged too: never offered
    now = time.time()
    for age, file in enumerate((preempted, older, last, best)):
        os.utime(file, (now - 100 * age, now - 100 * age))
    before = contents(checkpoints)

    with pytest.raises(SystemExit) as stopped:
        main(args(images, run_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"lit_tasks: error: checkpoint {preempted} cannot be read") and "truncated" in message
    assert re.search(r"intact checkpoints of \S+, newest first: last\.ckpt \([-\d: ]+\), best\.ckpt \([-\d: ]+\)\.",
                     message), message
    assert "epoch0.ckpt" not in message and f"--ckpt_path {last}" in message
    assert "does not fall back to an older checkpoint by itself" in message
    assert contents(checkpoints) == before  # nothing changed, renamed or deleted

    main(args(images, run_dir, "--trainer.max_epochs", "2", "--ckpt_path", str(last)))  # the alternative named
    assert global_step(last) == 12 and preempted.read_bytes() == before["preempted.ckpt"]


def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_previous_one(run, capsys, monkeypatch):
    images, run_dir, checkpoints = run
    before = contents(checkpoints)
    # every checkpoint write from now on finds the disk full after 2 kB (the next is at the end of epoch 1)
    monkeypatch.setattr(checkpoint_io, "open", lambda file, mode: FillsUp(open(file, mode), 2000, errno.ENOSPC),
                        raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(args(images, run_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    written = re.search(r"cannot write checkpoint (\S+\.ckpt): no space is left on the device", message)
    assert written, message
    assert os.path.dirname(written.group(1)) == str(checkpoints)
    assert "is full" in message and "is unchanged" in message and "--ckpt_path last" in message
    assert contents(checkpoints) == before  # previous checkpoints whole, no partial or temporary file
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "no space is left on the device" in results["error"]


def test_a_stray_temporary_of_a_killed_writer_does_not_confuse_ckpt_path_last(run):
    images, run_dir, checkpoints = run
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stray = checkpoints / f".last.ckpt.tmp-{socket.gethostname()}-{dead.pid}"
    stray.write_bytes((checkpoints / "last.ckpt").read_bytes()[:5000])  # what a SIGKILL mid-save leaves
    main(args(images, run_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert global_step(checkpoints / "last.ckpt") == 12  # resumed from last.ckpt (step 6), ran epoch 1
    assert not stray.exists()  # removed by the next checkpoint write: its writer is dead
    assert json.loads((run_dir / "results.json").read_text())["status"] == "finished"


def test_wandb_failing_mid_run_leaves_training_the_csv_log_and_results_intact(trained, tmp_path, monkeypatch, caplog):
    import wandb
    from wandb.sdk.wandb_run import Run

    images, _ = trained
    calls = []
    real_log = Run.log

    def failing_log(self, data, *rest, **kwargs):  # wandb's service dies after the 3rd call
        calls.append(data)
        if len(calls) > 3:
            raise BrokenPipeError("wandb service process is gone")
        return real_log(self, data, *rest, **kwargs)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(Run, "log", failing_log)
    run_dir = tmp_path / "runs" / "wandb"
    try:
        main(args(images, run_dir, "--run.loggers", "[wandb, csv]", "--trainer.max_epochs", "2"))
    finally:
        wandb.finish()
    assert len(calls) == 4  # wandb was not called again after it failed
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and [row["epoch"] for row in results["history"]] == [0, 1]
    assert "val/acc" in results["metrics"] and results["best"]["monitor"] == "val/acc"
    error = results["logger_errors"]["wandb"]
    assert error.startswith("log_metrics at step") and "BrokenPipeError: wandb service process is gone" in error
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r.get("train/loss_step")] == list(range(12))  # every step's row
    assert sum(1 for r in rows if r.get("val/acc")) == 2
    assert global_step(run_dir / "checkpoints" / "last.ckpt") == 12
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lit_tasks: wandb")]
    assert len(reports) == 1 and "switched off for the rest of this run" in reports[0]  # said once
