"""What the token-predicting pretraining tasks share (causal LM, seq2seq denoising): cross-entropy
of every target token, weighted by tokens, with top-1 accuracy and perplexity exact under DDP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_tasks.metrics.perplexity import Perplexity
from lit_tasks.tasks.base import STAGES

IGNORE = -100  # the label of padding


class TokenLoss:
    """A mixin for TaskModule subclasses whose ``net.config.vocab_size`` scores every token."""

    def token_metrics(self) -> None:
        """The ``acc`` stage metrics and one Perplexity per stage (``perplexity.<stage>_perplexity``)."""
        self.stage_metrics({"acc": MulticlassAccuracy(self.net.config.vocab_size, average="micro", ignore_index=IGNORE)})
        self.perplexity = nn.ModuleDict({f"{s}_perplexity": Perplexity() for s in STAGES})

    def token_loss(self, stage: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of logits (B, T, V) against targets (B, T) (-100: not scored),
        logged with the accuracy and the perplexity of ``stage``."""
        count = int((targets != IGNORE).sum())
        summed = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")
        loss = summed / max(count, 1)
        self.perplexity[f"{stage}_perplexity"].update(summed, count)
        self.log_loss(stage, loss, count)
        self.log_metrics(stage, count, logits.flatten(0, 1), targets.flatten())
        self.log(f"{stage}/perplexity", self.perplexity[f"{stage}_perplexity"], on_step=False, on_epoch=True,
                 prog_bar=True)
        return loss
