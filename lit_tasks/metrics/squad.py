"""SQuAD exact match and F1 (Rajpurkar et al. 2016, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text", Sec. 6; v2.0: Rajpurkar et al. 2018, "Know What You Don't Know").

The rules of the official evaluation scripts (v1.1 and v2.0), written here from their
description:

- an answer is normalised by lower-casing, deleting ASCII punctuation, deleting the articles
  "a", "an", "the" (whole words) and collapsing whitespace;
- exact match: the normalised prediction equals the normalised gold answer (0 or 1);
- F1: harmonic mean of precision and recall of the bag of normalised tokens (whitespace split)
  shared by prediction and gold; when either has no token, F1 is 1 if both have none, else 0;
- a question scores the maximum over its gold answers. Gold answers that normalise to nothing
  are dropped; a question without gold answers (unanswerable, SQuAD v2) has the single gold
  answer "" and is right only when the prediction is empty too.

Scores are reported in percent, as the official scripts print them. On answerable questions
the v1.1 and v2.0 rules agree.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of one prediction against one gold answer, in [0, 1]."""
    pred, true = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not true:
        return float(pred == true)
    shared = sum((Counter(pred) & Counter(true)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(true)
    return 2 * precision * recall / (precision + recall)


def score_question(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one question in [0, 1]: the maximum over its gold answers; no gold
    answer (or only answers that normalise to nothing) means unanswerable."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match(prediction, g) for g in golds), max(f1(prediction, g) for g in golds)


def squad_scores(predictions: dict[str, str], golds: dict[str, Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over the questions of `golds` (id -> gold answers),
    plus the has_answer_* / no_answer_* breakdown when both kinds occur. A question without a
    prediction counts as answered with ""."""
    metric = SquadScores()
    for qid, answers in golds.items():
        em, f = score_question(predictions.get(qid, ""), answers)
        metric.update([em], [f], [bool(answers)])
    return {k: v.item() for k, v in metric.compute().items()}


class SquadScores(Metric):
    """Sums of per-question exact match and F1, split by whether the question has an answer;
    summed over processes under DDP (each question must be scored on exactly one process).

    `update(exact, f1, has_answer)` takes per-question values in [0, 1] (as from
    :func:`score_question`); `compute()` gives percentages: exact_match, f1 and, when the
    questions include answerable and unanswerable ones, has_answer_{exact_match,f1},
    no_answer_{exact_match,f1} and the counts has_answer_total / no_answer_total.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        # rows: has answer, no answer; columns: count, exact-match sum, F1 sum
        self.add_state("sums", default=torch.zeros(2, 3, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, exact: Sequence[float], f1: Sequence[float], has_answer: Sequence[bool]) -> None:
        if not (len(exact) == len(f1) == len(has_answer)):
            raise ValueError(f"SquadScores.update: {len(exact)} exact, {len(f1)} f1, {len(has_answer)} has_answer values")
        values = torch.tensor([[1.0, e, f] for e, f in zip(exact, f1)], dtype=torch.float64).reshape(-1, 3)
        rows = torch.tensor([0 if has else 1 for has in has_answer], dtype=torch.long)
        self.sums.index_add_(0, rows.to(self.sums.device), values.to(self.sums.device))

    def compute(self) -> dict[str, torch.Tensor]:
        count, em, f = self.sums.sum(0)
        total = count.clamp(min=1)
        out = {"exact_match": 100 * em / total, "f1": 100 * f / total}
        if (self.sums[:, 0] > 0).all():
            for row, name in ((0, "has_answer"), (1, "no_answer")):
                n, e, s = self.sums[row]
                out |= {f"{name}_exact_match": 100 * e / n, f"{name}_f1": 100 * s / n, f"{name}_total": n}
        return {k: v.float() for k, v in out.items()}
