"""CSV and JSONL tables (manifests) read the same way by every DataModule.

A CSV has a header row; a JSONL file has one JSON object per line (blank lines allowed).
Errors name the file and the row ("row N" of a CSV, "line N" of a JSONL file).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lit_tasks.errors import DataError

TABLE_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def preview(items: list[str], n: int = 5) -> str:
    """The first `n` items, quoted, and how many there are in all."""
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def table_kind(file: Path) -> str:
    """"csv" or "jsonl" by extension; a DataError for another extension or a missing file."""
    kind = TABLE_EXTENSIONS.get(file.suffix.lower())
    if kind is None:
        raise DataError(
            f"{file}: unknown table format {file.suffix!r}; expected a .csv file (with a header row) "
            "or a .jsonl/.ndjson file (one JSON object per line)."
        )
    if not file.is_file():
        raise DataError(f"{file}: the file does not exist.")
    return kind


def row_name(kind: str, number: int) -> str:
    return f"row {number}" if kind == "csv" else f"line {number}"


def read_rows(file: Path, kind: str, wanted: list[str], hint: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, record) for each row. A CSV header lacking a `wanted` column, a line that is
    not JSON or not an object, is a DataError; `hint` says which options name the columns."""
    if kind == "csv":
        with open(file, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            absent = [c for c in wanted if c not in header]
            if absent:
                raise DataError(
                    f"{file}: the header has no column {preview(absent)}; found columns {preview(list(header))}. {hint}"
                )
            yield from enumerate(reader, start=1)
        return
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{file} line {number}: not valid JSON ({e.msg} at column {e.colno}).") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{file} line {number}: expected a JSON object with {preview(wanted)}, got {type(record).__name__}."
                )
            yield number, record
