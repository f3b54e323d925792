"""ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum (Lin 2004, "ROUGE: A Package for Automatic
Evaluation of Summaries") as computed by Google's `rouge-score` package, averaged over examples
and exact under DDP.

What is reported, and why:

- the F-measure of each type, **in percent** (0-100), the mean over examples. Summarization
  papers and HF's summarization examples print ROUGE x 100; sacreBLEU's BLEU and chrF and our
  SQuAD scores are percentages too. HF `evaluate`'s "rouge" returns 0-1, and by default not the
  plain mean: the median of 1000 bootstrap resamples of the mean (rouge-score's
  ``BootstrapAggregator``, random), close to the mean but not equal to it.
- ``use_stemmer=True`` by default: rouge-score's Porter stemming of words longer than 3
  characters, as ROUGE-1.5.5 is usually run for summarization (its ``-m`` flag) and as HF's
  ``run_summarization.py`` example asks for. HF `evaluate`'s default is False; pass
  ``use_stemmer=False`` to match it.
- ROUGE-Lsum is the summary-level LCS over sentences, and rouge-score takes the sentences to be
  the lines of the text: predictions and references must hold one sentence per line ("\\n"
  between sentences), otherwise ROUGE-Lsum equals ROUGE-L. Splitting into sentences is the
  caller's job (the data or the task), not this module's.
- Several references: the example's score for each type is the one of the reference with the
  highest F-measure for that type (rouge-score's ``score_multi``).
- rouge-score's default tokenizer lower-cases and keeps only ``[a-z0-9]`` runs: text in other
  scripts (accented letters, Cyrillic, CJK) loses those characters, and a text made only of
  them has no tokens (F = 0). The numbers are still rouge-score's; for such languages prefer
  chrF (``lit_tasks.metrics.translation``).

Under DDP the state is the per-type sum of example F-measures and the number of examples,
summed over processes, so the mean equals the one-process mean over all examples whatever the
batch sizes and however the examples are split between ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rouge_score.rouge_scorer import RougeScorer
from torchmetrics import Metric

from lit_tasks.errors import DataError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

References = Sequence[str | Sequence[str]]  # per example: one reference, or a list of them


def reference_lists(predictions: Sequence[str], references: References, who: str) -> list[list[str]]:
    """Every example's references as a non-empty list of strings; `who` names the caller in
    errors. A plain string is one reference."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise DataError(f"{who}: predictions and references must be lists with one entry per example, not a string")
    if len(predictions) != len(references):
        raise DataError(f"{who}: {len(predictions)} predictions for {len(references)} references")
    out = []
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not isinstance(pred, str):
            raise DataError(f"{who}: prediction {i} is a {type(pred).__name__}; expected a string")
        if not refs or not all(isinstance(r, str) for r in refs):
            raise DataError(f"{who}: the references of example {i} are {refs!r}; expected a string "
                            f"or a non-empty list of strings")
        out.append(refs)
    return out


def example_fmeasures(scorer: RougeScorer, predictions: Sequence[str], references: References) -> torch.Tensor:
    """(N, 4) float64: each example's F-measure in [0, 1] for the ROUGE_TYPES, best reference."""
    rows = []
    for pred, refs in zip(predictions, reference_lists(predictions, references, "ROUGE")):
        scores = scorer.score(refs[0], pred) if len(refs) == 1 else scorer.score_multi(refs, pred)
        rows.append([scores[name].fmeasure for name in ROUGE_TYPES])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, len(ROUGE_TYPES))


class RougeMetric(Metric):
    """Mean ROUGE-1/2/L/Lsum F-measure in percent over all examples seen (module docstring).

    ``update(preds, target)``: ``preds`` one string per example, ``target`` per example a
    reference string or a list of references. ``compute()`` -> {"rouge1", "rouge2", "rougeL",
    "rougeLsum"}, float64 scalars (0 before any example).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, use_stemmer: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.use_stemmer = use_stemmer
        self.scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        self.add_state("fsum", torch.zeros(len(ROUGE_TYPES), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], target: References) -> None:
        scores = example_fmeasures(self.scorer, preds, target)  # (N, 4)
        self.fsum += scores.sum(0).to(self.fsum.device)
        self.count += scores.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        mean = 100 * self.fsum / self.count.clamp(min=1)
        return {name: mean[i] for i, name in enumerate(ROUGE_TYPES)}


def rouge_scores(predictions: list[str], references: References, use_stemmer: bool = True) -> dict[str, float]:
    """{"rouge1", "rouge2", "rougeL", "rougeLsum"}: mean F-measures in percent over the examples
    (one process; see the module docstring for the conventions)."""
    metric = RougeMetric(use_stemmer=use_stemmer)
    metric.update(predictions, references)
    return {k: v.item() for k, v in metric.compute().items()}
