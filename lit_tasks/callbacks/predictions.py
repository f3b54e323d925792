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
    """

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self.path: Path | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = "predictions.jsonl" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.jsonl"
        self.path = self.run_dir / name
        self.path.write_text("")

    def write_on_batch_end(self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        with open(self.path, "a") as f:
            for row in prediction:
                f.write(json.dumps(row) + "\n")
