"""The run's loggers continue across commands and resumes in one run folder."""

from __future__ import annotations

import csv

from lit_tasks.loggers import RunCSVLogger, build_loggers


def rows(logger):
    with open(f"{logger.log_dir}/metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def test_csv_log_is_appended_to_not_replaced(tmp_path):
    first = RunCSVLogger(tmp_path)
    first.log_metrics({"train/loss_step": 1.0}, step=0)
    assert first.row_count() == 1  # written as logged
    second = RunCSVLogger(tmp_path)  # a later command in the same run folder
    second.log_metrics({"val/acc": 0.5}, step=1)
    second.save()
    assert rows(second) == [{"step": "0", "train/loss_step": "1.0"}, {"step": "1", "val/acc": "0.5"}]


def test_rewind_keeps_the_checkpoint_steps_row_and_drops_later_ones(tmp_path):
    logger = RunCSVLogger(tmp_path)
    for step in range(3):
        logger.log_metrics({"train/loss_step": float(step)}, step=step)
    mark = logger.row_count()  # checkpoint written at the end of step 3, before its row is logged
    logger.log_metrics({"train/loss_step": 3.0}, step=3)
    logger.log_metrics({"val/acc": 0.9}, step=3)
    logger.log_metrics({"train/loss_step": 4.0}, step=4)
    logger.save()
    RunCSVLogger(tmp_path).rewind(mark, step=3)
    kept = [(r["step"], r.get("train/loss_step")) for r in rows(logger)]
    assert kept == [("0", "0.0"), ("1", "1.0"), ("2", "2.0"), ("3", "3.0")]


def test_wandb_run_id_is_kept_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    (first,) = build_loggers(["wandb"], tmp_path, "tiny", "p")
    (again,) = build_loggers(["wandb"], tmp_path, "tiny", "p")
    assert first._id == again._id == (tmp_path / "wandb_run_id").read_text().strip()
    assert first._wandb_init["resume"] == "allow"
