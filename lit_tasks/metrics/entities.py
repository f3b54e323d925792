"""Entity-level precision, recall and F1 over IOB2 tag sequences, as seqeval computes them.

Entities are decoded by the CoNLL-2000 ``conlleval`` rules, which are seqeval's default
(non-strict) mode:

- ``B-X`` always starts an entity of type X;
- ``I-X`` continues the open entity when that entity has type X; otherwise (after ``O``, at
  the start, or after an entity of another type) it starts a new entity of type X;
- ``O``, a ``B-``, or an ``I-`` of another type closes the open entity.

A predicted entity is correct when its type, first and last token all equal a gold entity's.
Scores are micro-averaged over all entities of all sentences: precision = correct / predicted,
recall = correct / gold, F1 their harmonic mean; a ratio with nothing to divide by is 0 (seqeval's
``zero_division`` default). Per-type scores use the same formulas on one type's entities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

Span = tuple[str, int, int]  # (type, first token, one past the last token)


def split_tag(tag: str) -> tuple[str, str]:
    """("B" | "I" | "O", type): "B-PER" -> ("B", "PER"), "O" -> ("O", "")."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def iob2_types(label_names: Sequence[str]) -> list[str] | None:
    """The sorted entity types of an IOB2 tag set ("O", "B-X", "I-X"), or None when some
    label is not of that form (e.g. part-of-speech tags): there are no entities to score."""
    types = set()
    for name in label_names:
        prefix, kind = split_tag(str(name))
        if prefix == "O":
            continue
        if prefix not in ("B", "I") or not kind:
            return None
        types.add(kind)
    return sorted(types) if types else None


def entity_spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one sentence's tags, by the rules in the module docstring."""
    spans: list[Span] = []
    start, kind = None, ""
    for i, tag in enumerate([*tags, "O"]):  # the final "O" closes an entity at the end
        prefix, this = split_tag(tag)
        continues = prefix == "I" and start is not None and this == kind
        if start is not None and not continues:
            spans.append((kind, start, i))
            start = None
        if prefix in ("B", "I") and not continues:
            start, kind = i, this
    return spans


def entity_counts(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], types: Sequence[str]):
    """(correct, predicted, gold) entity counts per type, as three lists, over sentences."""
    index = {t: i for i, t in enumerate(types)}
    correct, predicted, true = [0] * len(types), [0] * len(types), [0] * len(types)
    for p_tags, g_tags in zip(pred, gold, strict=True):
        p, g = set(entity_spans(p_tags)), set(entity_spans(g_tags))
        for kind, *_ in p:
            predicted[index[kind]] += 1
        for kind, *_ in g:
            true[index[kind]] += 1
        for kind, *_ in p & g:
            correct[index[kind]] += 1
    return correct, predicted, true


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b is 0."""
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


class EntityScores(Metric):
    """Entity precision / recall / F1 of tag-index sequences (see the module docstring).

    ``update(preds, target)``: ``preds`` and ``target`` (B, T) long tag indices into
    ``label_names``; positions where ``target == ignore_index`` (special tokens, padding,
    sub-words after a word's first) are removed first, so each row becomes its sentence's
    word-level tag sequence. The state is three count vectors (correct, predicted, gold per
    type) summed across processes, so the result under data parallelism equals the result of
    one process over all rows.

    ``compute()`` -> {"precision", "recall", "f1"} (micro over all entities) and
    ``"f1_<TYPE>"`` per entity type.
    """

    full_state_update = False

    def __init__(self, label_names: Sequence[str], ignore_index: int = -100, **kwargs) -> None:
        super().__init__(**kwargs)
        types = iob2_types(label_names)
        if types is None:
            raise ValueError(f"EntityScores: the labels {list(label_names)[:8]} are not IOB2 tags (O, B-X, I-X)")
        self.label_names, self.types, self.ignore_index = [str(n) for n in label_names], types, ignore_index
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.zeros(len(types), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != self.ignore_index  # (B, T)
        pred_rows, gold_rows = [], []
        for p, t, k in zip(preds.tolist(), target.tolist(), keep.tolist()):
            pred_rows.append([self.label_names[x] for x, m in zip(p, k) if m])
            gold_rows.append([self.label_names[x] for x, m in zip(t, k) if m])
        counts = entity_counts(pred_rows, gold_rows, self.types)
        for state, values in zip((self.correct, self.predicted, self.gold), counts):
            state += torch.tensor(values, dtype=torch.long, device=state.device)

    def compute(self) -> dict[str, torch.Tensor]:
        correct, predicted, gold = (x.double() for x in (self.correct, self.predicted, self.gold))
        p, r = _ratio(correct.sum(), predicted.sum()), _ratio(correct.sum(), gold.sum())
        out = {"precision": p.float(), "recall": r.float(), "f1": _ratio(2 * p * r, p + r).float()}
        p_t, r_t = _ratio(correct, predicted), _ratio(correct, gold)
        f1_t = _ratio(2 * p_t * r_t, p_t + r_t)
        out.update({f"f1_{kind}": f1_t[i].float() for i, kind in enumerate(self.types)})
        return out
