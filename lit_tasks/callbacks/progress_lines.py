"""Plain progress lines for logs that are files: under `sbatch`, `nohup`, CI, `> train.log`.

A progress bar redraws one line with carriage returns; written to a file it becomes either
nothing readable or megabytes of partial lines. When stdout is not a terminal (or with
`--run.progress lines`), the bar is switched off and this callback prints one ordinary line
every `run.progress_every_n_steps` training steps and one after every validation and test:

    [train] epoch 2/10  step 400/2000  loss 0.4312  212.4 samples/s  elapsed 1m53s  eta 7m32s
    [val]   epoch 2/10  step 470/2000  val/acc=0.8123  val/loss=0.5127
    [test]  test/acc=0.8071  test/loss=0.5302

`loss` is the mean training loss over the steps since the previous line (steps skipped for a
non-finite loss or an empty batch do not count); samples/s is over the same steps and all
processes; the ETA assumes the remaining steps go at the average pace of this process so far
(validation included). Under DDP only global rank 0 prints. Lines go to stdout, flushed.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lit_tasks.callbacks.results import batch_size
from lit_tasks.durations import duration
from lit_tasks.errors import ConfigError

Progress = Literal["auto", "bar", "lines", "none"]


def use_lines(progress: Progress) -> bool:
    """"auto": lines when stdout is not a terminal, the bar when it is."""
    return progress == "lines" or (progress == "auto" and not sys.stdout.isatty())


def metric_text(metrics: dict[str, Any], prefix: str) -> str:
    """"val/acc=0.8123  val/loss=0.5127": the scalar metrics of one stage, sorted by name."""
    items = sorted((k, v) for k, v in metrics.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)
                   and v.numel() == 1)
    return "  ".join(f"{k}={v.item():.4f}" for k, v in items)


class ProgressLines(Callback):
    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"run.progress_every_n_steps must be a positive number of steps (got {every_n_steps})")
        self.every_n_steps = every_n_steps
        self._start = self._window_start = 0.0
        self._first_step = 0
        self._loss_sum: torch.Tensor | None = None
        self._loss_steps = self._samples = 0

    def _print(self, trainer: L.Trainer, text: str) -> None:
        if trainer.is_global_zero:
            print(text, flush=True)

    def _position(self, trainer: L.Trainer) -> str:
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        total = trainer.estimated_stepping_batches
        steps = f"/{int(total)}" if total != float("inf") else ""
        return f"epoch {trainer.current_epoch + 1}{epochs}  step {trainer.global_step}{steps}"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._first_step = trainer.global_step  # a resumed run: the pace counts this process's steps only
        self._reset_window()

    def _reset_window(self) -> None:
        self._loss_sum, self._loss_steps, self._samples = None, 0, 0
        self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and torch.isfinite(loss).all():
            loss = loss.detach().float()  # summed on its device: no sync per step
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_steps += 1
        self._samples += batch_size(batch) * trainer.world_size
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0 \
                and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            self._print(trainer, self._train_line(trainer))
            self._reset_window()

    def _train_line(self, trainer: L.Trainer) -> str:
        now = time.perf_counter()
        parts = [self._position(trainer)]
        if self._loss_steps:
            parts.append(f"loss {self._loss_sum.item() / self._loss_steps:.4f}")
        if self._samples and now > self._window_start:
            parts.append(f"{self._samples / (now - self._window_start):.1f} samples/s")
        parts.append(f"elapsed {duration(now - self._start)}")
        done, total = trainer.global_step - self._first_step, trainer.estimated_stepping_batches
        if done > 0 and total != float("inf"):
            parts.append(f"eta {duration((now - self._start) / done * max(0, total - trainer.global_step))}")
        return "[train] " + "  ".join(parts)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        position = f"{self._position(trainer)}  " if trainer.state.fn == "fit" else ""
        self._print(trainer, f"[val]   {position}{metric_text(trainer.callback_metrics, 'val/')}")
        self._window_start = time.perf_counter()  # validation time is not training throughput

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, f"[test]  {metric_text(trainer.callback_metrics, 'test/')}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, f"[train] done: {trainer.current_epoch} epochs, {trainer.global_step} steps in "
                             f"{duration(time.perf_counter() - self._start)}")
