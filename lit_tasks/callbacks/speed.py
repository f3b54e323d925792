"""`run.activation_checkpointing` and `run.compile`: applied to the task's zoo blocks.

The same for every task: the options act on the modules listed in
:data:`lit_tasks.zoo.blocks.BLOCKS` wherever they sit inside the LightningModule (see
docs/scaling.md for what each one buys). Applied in ``setup``, before the optimisers are built
and a checkpoint is restored; neither changes parameter names, so checkpoints written with and
without them are interchangeable.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_tasks.errors import ConfigError
from lit_tasks.zoo.blocks import BLOCKS, checkpoint_blocks, compile_blocks


class BlockOptions(Callback):
    """Activation checkpointing and/or ``torch.compile`` of each zoo block of the model."""

    def __init__(self, activation_checkpointing: bool = False, compile: bool = False) -> None:
        self.activation_checkpointing = activation_checkpointing
        self.compile = compile

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        done = []
        if self.activation_checkpointing:
            done.append(("run.activation_checkpointing", checkpoint_blocks(pl_module)))
        if self.compile:
            done.append(("run.compile", compile_blocks(pl_module)))
        for key, count in done:
            if count == 0:
                raise ConfigError(
                    f"{key}: {type(pl_module).__name__} holds none of the zoo blocks it acts on "
                    f"({', '.join(f'{c.__module__}.{c.__name__}' for c in BLOCKS)}); drop the option"
                )
            rank_zero_info(f"{key}: applied to {count} blocks")
