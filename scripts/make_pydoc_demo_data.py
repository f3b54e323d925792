"""Write the bundled causal-LM corpus: Python's own help topics (``pydoc_data.topics``).

Source: the ``pydoc_data.topics`` module of the Python standard library (the text ``help()``
shows for keywords and topics, generated from the Python documentation; PSF licence). It is
read from the running interpreter, so the output depends on the Python version (3.11.7 made the
bundled files).

Steps:

1. Every topic's text is cut into paragraphs at blank lines. Topics overlap (``compound`` holds
   the text of ``for``, ``while``, ...): a paragraph already seen in an earlier topic (topics in
   name order) is dropped, so no paragraph appears in two documents and no val/test text is
   seen in training.
2. A topic with what is left is one document. Split by topic, deterministically: topics sorted
   by the SHA-1 of their name; every eighth (from the first) goes to val, every eighth (from
   the second) to test, the rest to train (58 / 10 / 10 topics, 265k / 46k / 62k characters).

Outputs (deterministic for a given Python version)::

    demo_data/pydoc_topics/{train,val,test}.jsonl    {"id": topic name, "text": the document}

    python scripts/make_pydoc_demo_data.py [--out demo_data/pydoc_topics]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def documents(topics: dict[str, str]) -> dict[str, str]:
    """Topic name -> its paragraphs not seen in an earlier topic, joined by blank lines."""
    seen: set[str] = set()
    out = {}
    for name in sorted(topics):
        kept = []
        for paragraph in topics[name].split("\n\n"):
            paragraph = paragraph.strip("\n").rstrip()
            key = " ".join(paragraph.split())
            if key and key not in seen:
                seen.add(key)
                kept.append(paragraph)
        if kept:
            out[name] = "\n\n".join(kept)
    return out


def split_of(rank: int) -> str:
    return "val" if rank % 8 == 0 else "test" if rank % 8 == 1 else "train"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo_data" / "pydoc_topics")
    args = parser.parse_args(argv)
    from pydoc_data.topics import topics

    docs = documents(topics)
    order = sorted(docs, key=lambda name: hashlib.sha1(name.encode()).hexdigest())
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "val": [], "test": []}
    for rank, name in enumerate(order):
        rows[split_of(rank)].append({"id": name, "text": docs[name]})
    for split, records in rows.items():
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        chars = sum(len(r["text"]) for r in records)
        print(f"{split}: {len(records)} topics, {chars} characters")


if __name__ == "__main__":
    main(sys.argv[1:])
