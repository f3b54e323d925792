"""Extractive baselines for summarization JSONL splits, scored with our ROUGE
(``lit_tasks.metrics.rouge.rouge_scores``: mean F-measure in percent, Porter stemming).

The reference figures a fine-tuned summarizer should beat on the same files:

- **lead sentence**: the source's first sentence. A sentence ends at ``.``, ``!`` or ``?``
  followed by whitespace (not after "e.g." or "i.e.") or at the end of the first line (the
  bundled sources hold one paragraph a line);
- **first N words**: the source's first N whitespace-separated words, N in ``--n`` chosen on
  val by ROUGE-L; the test figures are for that N.

Each prediction is one line, so ROUGE-Lsum equals ROUGE-L here (one-line synopses as targets).

    python scripts/summarization_baselines.py                    # demo_data/debian_summaries
    python scripts/summarization_baselines.py --data DIR --source-column text --target-column summary
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lit_tasks.errors import DataError  # noqa: E402
from lit_tasks.metrics.rouge import rouge_scores  # noqa: E402

SENTENCE_BREAK = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<=[.!?])\s+")


def read_pairs(file: Path, source_column: str = "source", target_column: str = "target") -> tuple[list[str], list[str]]:
    """(sources, targets) of a JSONL file; a row without a non-empty string in either column is a
    DataError naming the file, line and column."""
    sources, targets = [], []
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            for column in (source_column, target_column):
                if not isinstance(row.get(column), str) or not row[column].strip():
                    raise DataError(f"{file}, line {line_no}: column {column!r} is {row.get(column)!r}; "
                                    f"expected a non-empty string")
            sources.append(row[source_column])
            targets.append(row[target_column])
    if not sources:
        raise DataError(f"{file}: no rows")
    return sources, targets


def lead_sentence(source: str) -> str:
    first_line = source.strip().split("\n", 1)[0]
    return SENTENCE_BREAK.split(first_line, maxsplit=1)[0].strip()


def first_words(source: str, n: int) -> str:
    return " ".join(source.split()[:n])


def choose_n(sources: list[str], targets: list[str], candidates: list[int]) -> tuple[int, dict[str, float]]:
    """The N of ``candidates`` with the best ROUGE-L on (sources, targets), and its scores; ties
    go to the smallest N."""
    best_n, best = None, None
    for n in candidates:
        scores = rouge_scores([first_words(s, n) for s in sources], targets)
        if best is None or scores["rougeL"] > best["rougeL"]:
            best_n, best = n, scores
    return best_n, best


def report(baseline: str, split: str, scores: dict[str, float], **extra) -> dict:
    row = {"baseline": baseline, "split": split, **extra, **{k: round(v, 2) for k, v in scores.items()}}
    print(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "demo_data" / "debian_summaries",
                        help="folder with val.jsonl and test.jsonl")
    parser.add_argument("--source-column", default="source")
    parser.add_argument("--target-column", default="target")
    parser.add_argument("--n", type=int, nargs="+", default=list(range(1, 31)), help="first-N candidates")
    args = parser.parse_args(argv)
    splits = {s: read_pairs(args.data / f"{s}.jsonl", args.source_column, args.target_column) for s in ("val", "test")}
    rows = [report("lead sentence", split, rouge_scores([lead_sentence(s) for s in sources], targets))
            for split, (sources, targets) in splits.items()]
    n, val_scores = choose_n(*splits["val"], args.n)
    rows.append(report("first N words", "val", val_scores, n=n))
    sources, targets = splits["test"]
    rows.append(report("first N words", "test", rouge_scores([first_words(s, n) for s in sources], targets), n=n))
    return rows


if __name__ == "__main__":
    main()
