"""First-sentence baseline for extractive QA: answer every question with the first sentence of
its context, scored with our SQuAD exact match / F1 (lit_tasks.metrics.squad, percent).

The reference figure a fine-tuned QA model should beat by far on the same files. A sentence
ends at ".", "!" or "?" followed by whitespace (or at the end of the context). Unanswerable
questions count as wrong, since the baseline always answers. Rows are read and checked by the
QA DataModule's own reader.

    python scripts/qa_first_sentence_baseline.py                          # demo_data/wiki_qa val + test
    python scripts/qa_first_sentence_baseline.py FILE.jsonl ... [--id-column id ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lit_tasks.data.question_answering import collect_rows, table_records  # noqa: E402
from lit_tasks.metrics.squad import squad_scores  # noqa: E402

SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_sentence(context: str) -> str:
    return SENTENCE_END.split(context.strip(), maxsplit=1)[0]


def evaluate(file: Path, columns: dict[str, str | None]) -> dict[str, float]:
    rows, _ = collect_rows(table_records(file, columns), str(file), columns, labelled=True, skip_bad_answers=False)
    predictions = {r.id: first_sentence(r.context) for r in rows}
    return squad_scores(predictions, {r.id: list(r.answers) for r in rows})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        default=[REPO_ROOT / "demo_data/wiki_qa/val.jsonl", REPO_ROOT / "demo_data/wiki_qa/test.jsonl"])
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--context-column", default="context")
    parser.add_argument("--question-column", default="question")
    parser.add_argument("--answers-column", default="answers")
    args = parser.parse_args(argv)
    columns = {"id": args.id_column, "context": args.context_column, "question": args.question_column,
               "answers": args.answers_column}
    for file in args.files:
        scores = evaluate(file, columns)
        print(json.dumps({"file": str(file), **{k: round(v, 2) for k, v in scores.items()}}))


if __name__ == "__main__":
    main()
