"""What a checkpoint needs besides Lightning's own state for a resumed run to continue exactly.

Lightning's checkpoint holds the model, optimisers, lr schedulers, the precision plugin's
scaler, the loop progress (epoch, step, batch inside the epoch) and the state of a stateful
training loader (:class:`lit_tasks.data.samplers.ResumableLoader`: seed, epoch, batches done).
This callback adds, under the checkpoint key ``"resume"``:

    rng       python, numpy, torch (and CUDA) RNG states of the saving process (global rank 0;
              under DDP every rank is given rank 0's states, as seed_everything gives every
              rank the same seed)
    log_rows  data rows of logs/metrics.csv on disk when the checkpoint was written
    log_step  the logger step at that moment

and, when a fit resumes from such a checkpoint, restores the RNG states at ``on_train_start``
(after the sanity check, right before the next training batch) and rewinds metrics.csv to the
checkpoint, so rows logged after it by the interrupted process are not duplicated.

It also hands the training loaders their saved state at ``on_train_start``. Lightning 2.6 loads
it only when it builds the loaders after restoring the loops, but a task whose
``configure_optimizers`` reads ``trainer.estimated_stepping_batches`` (ours, for the lr schedule)
makes it build them earlier, and the state is silently dropped. Loading twice is harmless: the
loaders read it when their first batch is drawn.

A checkpoint written from the main loop at the end of a training step (``ModelCheckpoint``
with ``every_n_train_steps`` / ``train_time_interval``, or ``trainer.save_checkpoint`` in a
callback's ``on_train_batch_end``, as a preemption handler should) resumes bit for bit.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.fabric.utilities.types import _Stateful
from lightning.pytorch.callbacks import Callback

from lit_tasks.loggers import RunCSVLogger


class ResumeState(Callback):
    """Saves RNG states and the CSV log position in checkpoints; restores them on resume."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] = []

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        csv_loggers = [lg for lg in trainer.loggers if isinstance(lg, RunCSVLogger)]
        rows = csv_loggers[0].row_count() if csv_loggers and trainer.is_global_zero else None
        checkpoint["resume"] = {
            "rng": rng_states(),
            "log_rows": rows,
            "log_step": trainer.fit_loop.epoch_loop._batches_that_stepped,
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get("resume")
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self._loader_states = fit_loop.get("state_dict", {}).get("combined_loader", [])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        states, self._loader_states = self._loader_states, []
        loaders = [loader for loader in _flatten(trainer.train_dataloader) if isinstance(loader, _Stateful)]
        if states and len(states) == len(loaders):
            for loader, loader_state in zip(loaders, states):
                loader.load_state_dict(loader_state)
        state, self._loaded = self._loaded, None
        if state is None:
            return
        set_rng_states(state["rng"])
        if state.get("log_rows") is not None:
            for logger in trainer.loggers:
                if isinstance(logger, RunCSVLogger):
                    logger.rewind(state["log_rows"], state["log_step"])


def rng_states() -> dict[str, Any]:
    """This process's RNG states, in types `torch.load(weights_only=True)` accepts (numpy's
    key array as a tensor), so checkpoints stay loadable by `load_from_checkpoint`."""
    states = _collect_rng_states(include_cuda=True)
    name, keys, position, has_gauss, gauss = states["numpy"]
    states["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    name, keys, position, has_gauss, gauss = states["numpy"]
    _set_rng_states({**states, "numpy": (name, keys.numpy().astype(np.uint32), position, has_gauss, gauss)})


def _flatten(iterables: Any) -> list[Any]:
    """The loaders of `trainer.train_dataloader` (one, or a list/tuple/dict of them)."""
    if isinstance(iterables, dict):
        return [x for value in iterables.values() for x in _flatten(value)]
    if isinstance(iterables, (list, tuple)):
        return [x for value in iterables for x in _flatten(value)]
    return [] if iterables is None else [iterables]
