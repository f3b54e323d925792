"""The codebook perplexity of wav2vec2 pretraining, pooled over an epoch and exact under DDP."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from lit_tasks.zoo.wav2vec2_pretraining import codebook_perplexity


class CodebookPerplexity(Metric):
    """Sum over groups of exp(entropy) of the code distribution pooled over all masked frames
    seen (Eq. 4's perplexity, the number of codes in use per group; at most G * V).

    Pooling sums (G, V) probabilities and a frame count, both reduced over ranks before the
    division, so the epoch value is exact under DDP; one batch's value is the model's own
    `codevector_perplexity`.
    """

    full_state_update = False

    def __init__(self, groups: int, codes: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(groups, codes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor) -> None:
        """probs (M, G, V): the code distributions of M masked frames."""
        self.total += probs.detach().sum(0).double()
        self.count += probs.shape[0]

    def compute(self) -> torch.Tensor:
        return codebook_perplexity((self.total / self.count.clamp(min=1))[None]).float()
