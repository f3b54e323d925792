"""Post-processing of extractive QA: from per-token start/end logits of a question's windows to
one answer span (Devlin et al. 2019, "BERT", Sec. 4.2 for SQuAD v1.1 and 4.3 for v2.0).

Per window (:func:`window_candidates`): the ``n_best`` highest start and end logits among
context tokens are paired; a pair is a candidate span when end >= start and it has at most
``max_answer_length`` tokens; its score is start logit + end logit. The window's null score is
the [CLS] (index 0) start + end logit.

Per question (:class:`AnswerCollector`, :func:`decide`): the candidates of all windows are
pooled, the best span wins; with ``null_answers`` (SQuAD v2) the question gets no answer when
the lowest null score of its windows beats the best span's score by more than ``null_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

Span = tuple[float, int, int]  # (score, first character, end character) in the context


@torch.no_grad()
def window_candidates(
    start_logits: torch.Tensor, end_logits: torch.Tensor, offsets: torch.Tensor, n_best: int, max_answer_length: int
) -> tuple[list[list[Span]], list[float]]:
    """Candidate spans of each window, best first, and each window's null score.

    start_logits, end_logits: (B, T); offsets: (B, T, 2) context characters [start, end) per
    token, -1 outside the context (question, special and padding tokens).
    """
    start_logits, end_logits, offsets = start_logits.float(), end_logits.float(), offsets.long()
    context = offsets[..., 0] >= 0  # (B, T)
    k = min(n_best, start_logits.shape[1])
    starts = start_logits.masked_fill(~context, -math.inf).topk(k, dim=-1)  # (B, k)
    ends = end_logits.masked_fill(~context, -math.inf).topk(k, dim=-1)  # (B, k)
    score = starts.values[:, :, None] + ends.values[:, None, :]  # (B, k, k): start i, end j
    length = ends.indices[:, None, :] - starts.indices[:, :, None]  # (B, k, k) tokens - 1
    valid = (length >= 0) & (length < max_answer_length) & score.isfinite()
    best = score.masked_fill(~valid, -math.inf).flatten(1).topk(k, dim=-1)  # (B, k) over pairs
    first = starts.indices.gather(1, best.indices // k)  # (B, k) token of each pair's start
    last = ends.indices.gather(1, best.indices % k)  # (B, k)
    char_start = offsets[..., 0].gather(1, first).tolist()  # (B, k)
    char_end = offsets[..., 1].gather(1, last).tolist()
    scores = best.values.tolist()
    spans = [
        [(s, a, e) for s, a, e in zip(scores[b], char_start[b], char_end[b]) if s > -math.inf]
        for b in range(len(scores))
    ]
    null = (start_logits[:, 0] + end_logits[:, 0]).tolist()  # (B,) [CLS]
    return spans, null


@dataclass
class Question:
    """What is known of one question so far: its windows' candidate spans and null scores."""

    id: str
    context: str
    answers: list[str] | None  # gold texts ([] unanswerable), None when not given
    num_windows: int
    seen: int = 0
    null: float = math.inf  # the lowest null score of its windows
    spans: list[Span] = field(default_factory=list)

    def merge(self, other: Question) -> None:
        self.seen += other.seen
        self.null = min(self.null, other.null)
        self.spans += other.spans


class AnswerCollector:
    """Pools the windows of each question (by id) until all of them have been seen."""

    def __init__(self) -> None:
        self.pending: dict[str, Question] = {}

    def add(self, batch: dict[str, Any], spans: list[list[Span]], null: list[float]) -> list[Question]:
        """Add a batch's windows; returns the questions whose last window was in it."""
        done = []
        for i, qid in enumerate(batch["ids"]):
            q = self.pending.get(qid)
            if q is None:
                q = self.pending[qid] = Question(qid, batch["contexts"][i], batch["answers"][i],
                                                 int(batch["num_windows"][i]))
            q.merge(Question(qid, q.context, q.answers, q.num_windows, 1, null[i], spans[i]))
            if q.seen >= q.num_windows:
                done.append(self.pending.pop(qid))
        return done

    def drain(self) -> list[Question]:
        """The questions still missing windows (an evaluation cut short), and forget them."""
        left, self.pending = list(self.pending.values()), {}
        return left


def merge_questions(parts: list[Question]) -> list[Question]:
    """Questions gathered from several processes, one per id (their windows pooled)."""
    merged: dict[str, Question] = {}
    for q in parts:
        if q.id in merged:
            merged[q.id].merge(q)
        else:
            merged[q.id] = Question(q.id, q.context, q.answers, q.num_windows, q.seen, q.null, list(q.spans))
    return list(merged.values())


def decide(q: Question, null_answers: bool, null_threshold: float) -> dict[str, Any]:
    """{"id", "answer", "score", "start", "end"}: the answer text and its characters [start, end)
    in the context ("" and None, None for no answer). ``score`` is the probability of the choice
    among the question's distinct candidate spans (and the null answer, with ``null_answers``)."""
    best: dict[tuple[int, int], float] = {}
    for score, a, e in q.spans:  # overlapping windows propose the same span twice: keep its best score
        best[(a, e)] = max(score, best.get((a, e), -math.inf))
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    scores = [s for _, s in ranked] + ([q.null] if null_answers and math.isfinite(q.null) else [])
    if ranked and not (null_answers and q.null - ranked[0][1] > null_threshold):
        (a, e), chosen = ranked[0]
        answer, start, end = q.context[a:e], a, e
    else:
        answer, start, end, chosen = "", None, None, q.null
    top = max(scores) if scores else 0.0
    total = sum(math.exp(s - top) for s in scores)
    probability = math.exp(chosen - top) / total if scores and math.isfinite(chosen) else 1.0
    return {"id": q.id, "answer": answer, "score": round(probability, 6), "start": start, "end": end}
