"""predict writes readable rows (JSON lines with label names), not tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Appends each predict batch's rows (a list of dicts from `predict_step`) to a JSONL file.

    One process writes `predictions.jsonl`; under DDP each rank writes
    `predictions.rank<R>.jsonl` (the eval sampler gives every sample to exactly one rank).
    A task with `write_predict_outputs` writes its own files after the last batch.
    """

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self.path: Path | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = "predictions.jsonl" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.jsonl"
        self.path = self.run_dir / name
        self.path.write_text("")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A task's own predict files (a detector's COCO json and drawn images) through its
        `write_predict_outputs(run_dir, suffix)`; suffix ".rank<R>" under DDP."""
        if hasattr(pl_module, "write_predict_outputs"):
            suffix = "" if trainer.world_size == 1 else f".rank{trainer.global_rank}"
            pl_module.write_predict_outputs(self.run_dir, suffix)

    def write_on_batch_end(self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        with open(self.path, "a") as f:
            for row in prediction:
                f.write(json.dumps(row) + "\n")
