"""What every task shares: the optimiser, the lr schedule, and hooks for run reporting.

A task is a LightningModule that holds the system (network, loss, metrics,
optimiser), not the network's internals. Subclasses implement `_step` and declare
the metric checkpoints are chosen by in `monitor`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn


def warmup_cosine(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
    """lr multiplier: linear warm-up from 0, then cosine decay to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norms, position embeddings, tokens and layer scales are not decayed."""
    return param.ndim <= 1 or name.endswith((".position_embeddings", ".cls_token", "position_embedding"))


class TaskModule(L.LightningModule):
    """Shared base of the tasks: AdamW + warm-up/cosine, optional layer-wise lr decay.

    Args:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay (not applied to biases and norms).
        warmup_fraction: share of all optimiser steps spent warming up linearly.
        min_lr_ratio: the cosine ends at lr * min_lr_ratio.
        layer_decay: layer-wise lr decay (BEiT, Bao et al. 2022, sec. 3): the head gets lr,
            a block d layers below it lr * layer_decay**d; None turns it off.
    """

    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")  # (metric, "min"|"max")

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        self.layer_decay = layer_decay

    # -- the network, for layer-wise decay ------------------------------------------------
    def layer_scale(self, name: str) -> float:
        """lr multiplier of parameter `name`; tasks with a zoo backbone override `layer_depth`."""
        if self.layer_decay is None:
            return 1.0
        depth, deepest = self.layer_depth(name)
        return self.layer_decay ** (deepest - depth)

    def layer_depth(self, name: str) -> tuple[int, int]:
        """(depth of parameter `name`, depth of the head) for layer-wise lr decay."""
        raise NotImplementedError(f"{type(self).__name__} does not support layer_decay")

    def configure_optimizers(self) -> dict[str, Any]:
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            decay = 0.0 if no_weight_decay(name, param) else self.weight_decay
            groups.setdefault((decay, self.layer_scale(name)), []).append(param)
        param_groups = [
            {"params": params, "weight_decay": decay, "lr": self.lr * scale}
            for (decay, scale), params in groups.items()
        ]
        optimizer = torch.optim.AdamW(param_groups, lr=self.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(int(self.warmup_fraction * total), total, self.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- reporting hooks read by lit_tasks.callbacks --------------------------------------
    def figures(self, stage: str) -> dict[str, Any]:
        """matplotlib figures describing the last `stage` epoch, by name (logged and saved)."""
        return {}

    def export_metadata(self) -> dict[str, Any]:
        """What `lit_tasks export` needs besides the weights (stored in every checkpoint)."""
        return {}

    def data_preprocessor(self) -> dict[str, Any] | None:
        """The attached DataModule's HF `preprocessor_config.json` dict (image and audio data
        describe their resizing / sampling rate and normalisation), or None without one."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return datamodule.preprocessor_config() if hasattr(datamodule, "preprocessor_config") else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lit_tasks"] = {"task": type(self).__qualname__, **self.export_metadata()}
