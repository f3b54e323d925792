"""Exact resume: a run SIGKILLed mid-epoch and resumed with `--ckpt_path last` logs the same
per-step losses and ends with the same weights, bit for bit, as a run never interrupted."""

from __future__ import annotations

import csv
import json
import signal

import pytest
import torch
from helpers import REPO, run_cli, tiny_args


def fit_args(image_folder, runs, run_dir):
    """24 train images in batches of 4: 6 steps per epoch, 12 in all; dropout and random
    crops/flips drawn in 2 worker processes; last.ckpt every 4 steps."""
    return [*tiny_args(image_folder, runs), "--run.dir", str(run_dir), "--run.test_after_fit", "false",
            "--data.batch_size", "4", "--data.num_workers", "2", "--trainer.log_every_n_steps", "1",
            "--model.backbone_config", "{hidden_dropout_prob: 0.2}", "--run.checkpoint_every_n_steps", "4"]


def log_rows(run_dir):
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def weights(run_dir):
    # weights_only: the resume state keeps checkpoints loadable by LightningModule.load_from_checkpoint
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def kill_and_resume(tmp_path, image_folder, monkeypatch, kill_at: int, *extra: str):
    """Runs `whole` uninterrupted; runs `broken` until it SIGKILLs itself at step `kill_at`, then
    resumes it with --ckpt_path last. Returns both run folders."""
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli("fit", *fit_args(image_folder, tmp_path, whole), *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = run_cli("fit", *fit_args(image_folder, tmp_path, broken), *extra,
                     "--trainer.callbacks", "helpers.SigkillAtStep", "--trainer.callbacks.step", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == kill_at
    assert json.loads((broken / "results.json").read_text())["status"] == "running"
    resumed = run_cli("fit", *fit_args(image_folder, tmp_path, broken), *extra, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return whole, broken


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, image_folder, monkeypatch):
    # step 8 is the third batch of epoch 1: the process dies after step 8's checkpoint
    whole, broken = kill_and_resume(tmp_path, image_folder, monkeypatch, 8)
    expected, got = log_rows(whole), log_rows(broken)
    losses = [(r["step"], r["train/loss_step"]) for r in got if "train/loss_step" in r]
    assert [s for s, _ in losses] == [str(s) for s in range(12)]  # every step once, none twice
    # every step's loss and every validation metric, compared as written (bitwise); the train
    # epoch aggregates of the resumed epoch 1 only cover the steps after the resume (README)
    def exact(rows):
        return [row for row in rows if not (row["epoch"] == "1" and "train/loss_epoch" in row)]

    assert exact(got) == exact(expected)
    assert len(got) == len(expected)
    one, two = weights(whole), weights(broken)
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one), [k for k in one if not torch.equal(one[k], two[k])]
    results = json.loads((broken / "results.json").read_text())
    assert results["status"] == "finished" and [row["epoch"] for row in results["history"]] == [0, 1]


@pytest.mark.slow
def test_ddp_resume_mid_epoch_equals_uninterrupted(tmp_path, image_folder, monkeypatch):
    """Two gloo ranks, 3 steps per epoch each: killed after step 4 (mid epoch 1), resumed."""
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--data.num_workers", "0",
           "--run.checkpoint_every_n_steps", "2"]
    whole, broken = kill_and_resume(tmp_path, image_folder, monkeypatch, 4, *ddp)
    got = log_rows(broken)
    assert [r["step"] for r in got if "train/loss_step" in r] == [str(s) for s in range(6)]
    assert [r for r in got if "train/loss_epoch" not in r] == [r for r in log_rows(whole) if "train/loss_epoch" not in r]
    one, two = weights(whole), weights(broken)
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_periodic_checkpoint_options(tmp_path, image_folder):
    from datetime import timedelta

    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_tasks.cli import LitTasksCLI
    from lit_tasks.errors import ConfigError

    def periodic(*extra):
        cli = LitTasksCLI(args=[*tiny_args(image_folder, tmp_path), *extra], run=False)
        writers = [cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.filename == "last"]
        assert writers[0]._every_n_epochs == 1  # last.ckpt at every epoch end, whatever the options
        return [cb for cb in writers if cb._every_n_train_steps or cb._train_time_interval]

    assert periodic() == []
    (by_time,) = periodic("--run.checkpoint_every_minutes", "0.5")
    assert by_time._train_time_interval == timedelta(seconds=30) and by_time.dirpath.endswith("checkpoints")
    (by_steps,) = periodic("--run.checkpoint_every_n_steps", "100")
    assert by_steps._every_n_train_steps == 100
    with pytest.raises(ConfigError, match="set one of them"):
        periodic("--run.checkpoint_every_n_steps", "100", "--run.checkpoint_every_minutes", "5")
