"""Perplexity of a language model over a whole epoch, exact under DDP."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class Perplexity(Metric):
    """exp(summed cross-entropy / number of predicted tokens) over the whole epoch.

    Summing (not averaging per batch) makes it exact under DDP: both sums are reduced over
    ranks before the division. torchmetrics' Perplexity would take log(softmax) again, which
    underflows for confident mistakes; here it reuses the loss already computed.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, summed_loss: torch.Tensor, count: int | torch.Tensor) -> None:
        self.total += summed_loss.detach().double()
        self.count += int(count)

    def compute(self) -> torch.Tensor:
        return torch.exp(self.total / self.count.clamp(min=1)).float()
