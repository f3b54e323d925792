"""Entity precision/recall/F1 (lit_tasks.metrics.entities) against seqeval's default mode."""

from __future__ import annotations

import random

import pytest
import torch

from lit_tasks.metrics.entities import EntityScores, entity_spans, iob2_types

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

# (gold sentences, predicted sentences): the edge cases of IOB2 decoding
CASES = {
    "exact": ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]]),
    "I without B starts an entity": ([["O", "I-PER", "I-PER", "O"]], [["O", "B-PER", "I-PER", "O"]]),
    "I at the sentence start": ([["I-LOC", "O"]], [["B-LOC", "O"]]),
    "adjacent entities of one type": ([["B-PER", "B-PER", "I-PER"]], [["B-PER", "I-PER", "I-PER"]]),
    "type change inside a span": ([["B-PER", "I-LOC", "I-LOC"]], [["B-PER", "B-LOC", "I-LOC"]]),
    "entity at the end": ([["O", "O", "B-ORG", "I-ORG"]], [["O", "O", "B-ORG", "I-ORG"]]),
    "cut short at the end": ([["O", "B-ORG", "I-ORG"]], [["O", "B-ORG", "O"]]),
    "wrong type same span": ([["B-ORG", "I-ORG"]], [["B-LOC", "I-LOC"]]),
    "no entities predicted": ([["B-PER", "O"], ["O", "B-LOC"]], [["O", "O"], ["O", "O"]]),
    "no entities at all": ([["O", "O"]], [["O", "O"]]),
    "only false positives": ([["O", "O", "O"]], [["B-LOC", "O", "I-PER"]]),
    "several sentences": ([["B-PER"], ["I-PER", "B-LOC"], ["O", "B-ORG", "I-ORG"]],
                          [["B-PER"], ["B-PER", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]),
}


def as_batch(sentences: list[list[str]], width: int) -> torch.Tensor:
    """(B, width) tag indices: [CLS]-like -100 at 0, the tags, then -100 padding."""
    out = torch.full((len(sentences), width), -100)
    for i, tags in enumerate(sentences):
        out[i, 1 : 1 + len(tags)] = torch.tensor([NAMES.index(t) for t in tags])
    return out


def update(metric: EntityScores, gold, pred) -> EntityScores:
    width = max(len(s) for s in gold) + 3
    target = as_batch(gold, width)
    preds = as_batch(pred, width).clamp(min=0)  # the model predicts something at ignored positions too
    metric.update(preds, target)
    return metric


def ours(gold, pred) -> dict[str, float]:
    return {k: v.item() for k, v in update(EntityScores(NAMES), gold, pred).compute().items()}


def reference(gold, pred) -> dict[str, float]:
    kw = {"zero_division": 0}
    out = {"precision": seqeval_metrics.precision_score(gold, pred, **kw),
           "recall": seqeval_metrics.recall_score(gold, pred, **kw), "f1": seqeval_metrics.f1_score(gold, pred, **kw)}
    report = seqeval_metrics.classification_report(gold, pred, output_dict=True, **kw)
    for kind in ("PER", "LOC", "ORG"):
        out[f"f1_{kind}"] = report[kind]["f1-score"] if kind in report else 0.0
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_cases_equal_seqeval(name):
    gold, pred = CASES[name]
    for sentence in gold + pred:
        assert sorted((t, a, b - 1) for t, a, b in entity_spans(sentence)) == sorted(get_entities(sentence))
    assert ours(gold, pred) == pytest.approx(reference(gold, pred), abs=1e-6)


def test_random_sequences_equal_seqeval():
    rng = random.Random(0)
    for _ in range(200):
        gold = [[rng.choice(NAMES) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 4))]
        pred = [[rng.choice(NAMES) if rng.random() < 0.4 else t for t in s] for s in gold]
        assert ours(gold, pred) == pytest.approx(reference(gold, pred), abs=1e-6), (gold, pred)


def test_counts_add_up_across_processes():
    """The state is summed across ranks (``dist_reduce_fx="sum"``, which ``merge_state`` applies
    as a sync does): two halves merged score like the whole."""
    gold, pred = CASES["several sentences"]
    whole = ours(gold, pred)
    assert ours(gold[:1], pred[:1]) != pytest.approx(whole)
    first, second = update(EntityScores(NAMES), gold[:1], pred[:1]), update(EntityScores(NAMES), gold[1:], pred[1:])
    first.merge_state(second)
    assert {k: v.item() for k, v in first.compute().items()} == pytest.approx(whole)


def test_iob2_types_tells_entity_tags_from_other_tag_sets():
    assert iob2_types(NAMES) == ["LOC", "ORG", "PER"]
    assert iob2_types(["NOUN", "VERB", "O"]) is None
    assert iob2_types(["O"]) is None
    with pytest.raises(ValueError, match="not IOB2"):
        EntityScores(["NOUN", "VERB"])
