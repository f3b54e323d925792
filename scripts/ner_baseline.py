"""Most-frequent-tag baseline for token classification: the figure a tagger should beat.

Each word gets the tag it carries most often in the train split (ties: the tag seen first);
a word never seen in train gets the most frequent tag overall (``O`` for NER). Scores are
entity precision / recall / F1 as seqeval defines them (``lit_tasks.metrics.entities``) and
tag accuracy over words, on val and test. Words are compared exactly (case-sensitive).

    python scripts/ner_baseline.py                                   # demo_data/wiki_ner
    python scripts/ner_baseline.py --data DIR --tokens-column tokens --tags-column ner_tags
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lit_tasks.data.token_classification import TaggedRow, read_tagged_table  # noqa: E402
from lit_tasks.metrics.entities import entity_counts, iob2_types  # noqa: E402


def fit_most_frequent(rows: list[TaggedRow]) -> tuple[dict[str, str], str]:
    """(word -> its most frequent train tag, the most frequent tag overall)."""
    per_word: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for row in rows:
        for word, tag in zip(row.words, row.tags):
            per_word[word][tag] += 1
            overall[tag] += 1
    # Counter.most_common keeps first-seen order among equal counts
    return {w: c.most_common(1)[0][0] for w, c in per_word.items()}, overall.most_common(1)[0][0]


def score(train: list[TaggedRow], rows: list[TaggedRow]) -> dict[str, float]:
    """Tag accuracy and entity precision/recall/F1 of the baseline on ``rows``."""
    table, default = fit_most_frequent(train)
    pred = [[table.get(w, default) for w in r.words] for r in rows]
    gold = [list(r.tags) for r in rows]
    right = sum(p == g for ps, gs in zip(pred, gold) for p, g in zip(ps, gs))
    out = {"acc": right / sum(len(g) for g in gold)}
    types = iob2_types(sorted({t for g in gold + pred for t in g}))
    if types is not None:
        correct, predicted, true = (sum(x) for x in entity_counts(pred, gold, types))
        p = correct / predicted if predicted else 0.0
        r = correct / true if true else 0.0
        out.update(entity_precision=p, entity_recall=r, entity_f1=2 * p * r / (p + r) if p + r else 0.0)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", default=str(REPO_ROOT / "demo_data" / "wiki_ner"),
                        help="folder with train.jsonl, val.jsonl, test.jsonl (or .csv)")
    parser.add_argument("--tokens-column", default="tokens")
    parser.add_argument("--tags-column", default="tags")
    args = parser.parse_args(argv)
    folder = Path(args.data)

    def split(name: str) -> list[TaggedRow]:
        (file,) = [f for f in (folder / f"{name}.jsonl", folder / f"{name}.csv") if f.is_file()][:1] or [None]
        if file is None:
            sys.exit(f"{folder} has no {name}.jsonl or {name}.csv")
        return read_tagged_table(file, args.tokens_column, args.tags_column)

    train = split("train")
    results = {name: score(train, split(name)) for name in ("val", "test")}
    print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
