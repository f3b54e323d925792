"""A non-finite training loss stops the run on every process, or, when allowed, skips its step.

Before each backward pass the loss of every process is gathered (one all-gather of one number
per step), so all processes see the same losses and take the same decision at the same step:
no process steps its optimiser while another stops or skips, and DDP replicas never diverge.

- By default (``run.skip_nonfinite_loss: 0``) the first NaN or infinite loss raises a
  :class:`~lit_tasks.errors.TrainingError` naming the step and the loss, before the backward
  pass: the weights are those of the previous step and the checkpoints already written stay
  as they were. The CLI prints it as one paragraph and exits with status 1.
- With ``run.skip_nonfinite_loss: N`` up to N such steps are skipped: the backward pass runs
  (DDP expects it on every process) but the optimiser does not update the weights (gradients
  are dropped before its step; under ``16-mixed`` the grad scaler skips the step as it always
  does on non-finite gradients). Each skip is warned about, logged as
  ``train/skipped_nonfinite`` (the running count) and listed in results.json
  (``skipped_steps``); the N+1-th stops the run as above. The count is kept in checkpoints.

The step is the optimiser step counter (the ``step`` column of logs/metrics.csv). The training
loss logged for a skipped step is the non-finite value itself, so that epoch's
``train/loss_epoch`` is not finite either.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lit_tasks.errors import ConfigError, TrainingError


class NonFiniteLoss(Callback):
    """Stops on a NaN/inf training loss, or skips up to `allowed` such steps (see the module)."""

    def __init__(self, allowed: int = 0) -> None:
        if allowed < 0:
            raise ConfigError(f"run.skip_nonfinite_loss must be 0 or more, got {allowed}")
        self.allowed = allowed
        self.skipped: list[int] = []  # the steps skipped, in this run and the ones it resumed
        self._drop_update = False
        self._batch_idx = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        value = loss.detach().float().reshape(1)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:  # 16-mixed hands us the scaled loss
            value = value / scaler.get_scale()
        losses = gather(value)  # every rank's loss, the same list on every rank
        bad = [rank for rank, v in enumerate(losses) if not math.isfinite(v)]
        if not bad:
            return
        step = trainer.global_step
        where = f"step {step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"
        what = (", ".join(f"{losses[rank]} on rank {rank} of {len(losses)}" for rank in bad) if len(losses) > 1
                else str(losses[0]))
        if len(self.skipped) >= self.allowed:
            before = f"; steps skipped before: {', '.join(map(str, self.skipped))}" if self.skipped else ""
            raise TrainingError(
                f"the training loss is {what} at {where}. The run stopped before that step changed the "
                f"weights; the checkpoints written so far are kept. run.skip_nonfinite_loss allows "
                f"{self.allowed} such steps{before}. Lower the learning rate, clip gradients "
                f"(--trainer.gradient_clip_val 1.0) or look at that batch, or let up to N such steps be "
                f"skipped with --run.skip_nonfinite_loss N."
            )
        self.skipped.append(step)
        self._drop_update = True
        rank_zero_warn(f"lit_tasks: the training loss is {what} at {where}: step skipped, weights unchanged "
                       f"({len(self.skipped)} of the {self.allowed} allowed by run.skip_nonfinite_loss)")
        pl_module.log("train/skipped_nonfinite", float(len(self.skipped)), on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self._drop_update:
            return
        self._drop_update = False
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None  # the optimiser leaves parameters without a gradient untouched

    def report(self) -> dict[str, Any]:
        """What results.json says (`skipped_steps`)."""
        return {"count": len(self.skipped), "steps": list(self.skipped), "allowed": self.allowed}

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": list(self.skipped)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = list(state_dict.get("skipped", []))


def gather(value: torch.Tensor) -> list[float]:
    """The one-element `value` of every process (one all-gather), or [value] in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value.tolist()
    values = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(values, value)
    return torch.cat(values).tolist()
