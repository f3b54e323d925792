"""Word and character error rates, computed with jiwer, summed correctly over batches and ranks."""

from __future__ import annotations

from typing import Literal

import jiwer
import torch
from torchmetrics import Metric


class ErrorRate(Metric):
    """Corpus WER (`unit="word"`) or CER (`unit="char"`): (S + D + I) / N summed over all
    utterances, where S, D, I are the substitutions, deletions and insertions of the Levenshtein
    alignment of hypothesis to reference (jiwer) and N the reference length in words or
    characters (spaces count as characters, as in jiwer's and torchmetrics' CER).

    The states are the two sums, reduced by summation under DDP, so the rate over several
    processes equals the rate over all their utterances at once (not a mean of per-rank rates).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, unit: Literal["word", "char"] = "word", **kwargs) -> None:
        super().__init__(**kwargs)
        if unit not in ("word", "char"):
            raise ValueError(f"ErrorRate: unit is {unit!r}; expected 'word' or 'char'")
        self.unit = unit
        self.add_state("errors", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[str], target: list[str]) -> None:
        """preds: hypotheses, target: references, one string per utterance."""
        if len(preds) != len(target):
            raise ValueError(f"ErrorRate: {len(preds)} hypotheses for {len(target)} references")
        if not preds:
            return
        process = jiwer.process_words if self.unit == "word" else jiwer.process_characters
        out = process(list(target), list(preds))
        self.errors += out.substitutions + out.deletions + out.insertions
        self.total += out.substitutions + out.deletions + out.hits

    def compute(self) -> torch.Tensor:
        return self.errors.double() / self.total.clamp(min=1)
