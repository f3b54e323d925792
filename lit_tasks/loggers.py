"""The run's loggers: wandb (offline unless an API key is set) and a CSV file.

Both continue across commands and resumes in the same run folder: the CSV file is appended
to (Lightning's own CSV logger deletes it when the folder exists) and the wandb run keeps its id
(`wandb_run_id`, resume="allow"). On a resume, :meth:`RunCSVLogger.rewind` drops the rows
logged after the checkpoint, which the resumed run logs again.

wandb never stops a run: when one of its calls fails mid-run (its service process died, its
disk is full, a network error online), :class:`GuardedWandbLogger` logs the error once,
switches wandb off for the rest of the run and records it in results.json (`logger_errors`);
training, checkpoints, the CSV log and results.json go on as if wandb had not been there.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

LOGGER_NAMES = ("wandb", "csv")
log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline() -> bool:
    """WANDB_MODE decides when set; otherwise offline unless credentials exist."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun")
    return not wandb_has_credentials()


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, keeping an existing metrics.csv and its columns."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class RunCSVLogger(CSVLogger):
    """`<run>/logs/metrics.csv`, one row per logging call, written as it is logged (a killed
    run loses no row), appended to by every later command and resume in the run folder."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="logs", version="", flush_logs_every_n_steps=1)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def row_count(self) -> int:
        """Data rows on disk (after writing what is pending)."""
        self.save()
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return 0
        with open(path, newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)

    @rank_zero_only
    def rewind(self, rows: int, step: int) -> None:
        """Keep what was on disk when a checkpoint was saved: the first `rows` rows, plus the
        training-step row of the checkpoint's own `step` (Lightning logs it just after saving).
        Rows of later steps, and validation/epoch rows of `step`, are logged again on resume."""
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, all_rows = reader.fieldnames or [], list(reader)

        def step_row(row: dict[str, str]) -> bool:
            filled = [k for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")]
            return row.get("step") == str(step) and not any(
                k.startswith(("val/", "test/")) or k.endswith("_epoch") for k in filled)

        kept = all_rows[:rows] + [row for row in all_rows[rows:rows + 1] if step_row(row)]
        tmp = path.with_name(".metrics.csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)


class GuardedWandbLogger(WandbLogger):
    """Lightning's WandbLogger whose failures are reported once and then switch it off: each
    call that reaches wandb goes through :meth:`_guarded`; after the first error, `failure`
    holds it and every later call does nothing."""

    kind = "wandb"  # the key of its error in results.json's `logger_errors`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure: str | None = None

    def _guarded(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.failure is not None:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            self.failure = f"{what} failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
            log.error(f"lit_tasks: wandb {self.failure}. wandb is switched off for the rest of this run; training, "
                      f"checkpoints, logs/metrics.csv and results.json are not affected (what wandb wrote so far "
                      f"is in {self.save_dir}/wandb)")
            return None

    def log_hyperparams(self, params: Any) -> None:
        self._guarded("log_hyperparams", super().log_hyperparams, params)

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self._guarded(f"log_metrics at step {step}", super().log_metrics, metrics, step)

    def log_table(self, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_table", super().log_table, *args, **kwargs)

    def log_text(self, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_text", super().log_text, *args, **kwargs)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_image", super().log_image, *args, **kwargs)

    def log_audio(self, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_audio", super().log_audio, *args, **kwargs)

    def log_video(self, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_video", super().log_video, *args, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guarded("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guarded("finalize", super().finalize, status)


def build_loggers(names: list[str], run_dir: Path, run_name: str, project: str) -> list[Logger]:
    """Loggers writing into the run folder. A resumed run continues its wandb run (same id)."""
    loggers: list[Logger] = []
    for name in names:
        if name == "csv":
            loggers.append(RunCSVLogger(run_dir))
        elif name == "wandb":
            id_file = run_dir / "wandb_run_id"
            if os.environ.get("WANDB_RUN_ID"):  # a wandb agent (sweep) chose the run
                run_id = os.environ["WANDB_RUN_ID"]
            elif id_file.is_file():
                run_id = id_file.read_text().strip()
            else:
                run_id = secrets.token_hex(6)
                if rank_zero_only.rank == 0:
                    id_file.write_text(run_id + "\n")
            loggers.append(GuardedWandbLogger(save_dir=str(run_dir), project=project, name=run_name, id=run_id,
                                              offline=wandb_offline(), resume="allow"))
        else:
            raise ValueError(f"run.loggers: unknown logger {name!r}; choose from {LOGGER_NAMES}")
    return loggers
