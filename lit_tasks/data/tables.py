"""CSV and JSONL tables (manifests) read the same way by every DataModule.

A CSV has a header row; a JSONL file has one JSON object per line (blank lines allowed); both
are UTF-8. Errors name the file and the row ("row N" of a CSV, "line N" of a JSONL file, or
"line N" of the file for bytes that are not UTF-8 and CSV quoting that never closes).
"""

from __future__ import annotations

import csv
import json
import sys
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
    not JSON or not an object, bytes that are not UTF-8 or a CSV quote that is never closed is a
    DataError; `hint` says which options name the columns."""
    try:
        if kind == "csv":
            yield from _csv_rows(file, wanted, hint)
        else:
            yield from _jsonl_rows(file, wanted)
    except UnicodeDecodeError:
        raise _not_utf8(file) from None


def _csv_rows(file: Path, wanted: list[str], hint: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # A long document in one field is data, not an error (the csv module's default limit is 128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, strict=True)  # strict: a quote left open is an error, not the rest of the file
        line = 0  # the last line of the last row read
        try:
            header = reader.fieldnames or []
            absent = [c for c in wanted if c not in header]
            if absent:
                raise DataError(
                    f"{file}: the header has no column {preview(absent)}; found columns {preview(list(header))}. {hint}"
                )
            line = reader.line_num
            for number, record in enumerate(reader, start=1):
                extra = [v for v in record.get(None, []) if v.strip()]
                if extra:  # DictReader keeps the fields beyond the header under None
                    raise DataError(
                        f"{file} row {number}: {len(header) + len(record[None])} fields, but the header has "
                        f"{len(header)} columns {preview(list(header))}; the extra values are {preview(extra, 3)}. "
                        "Quote a field that holds a comma."
                    )
                line = reader.line_num
                yield number, record
        except csv.Error as e:
            runs_on = ""
            if reader.line_num > line + 1:
                runs_on = f", in the row that runs from there to line {reader.line_num}"
            raise DataError(
                f"{file} line {line + 1}: not valid CSV ({e}{runs_on}). A quoted field must end with a quote "
                'followed by a comma or the end of the line; a quote inside it is written twice ("").'
            ) from None


def _jsonl_rows(file: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{file} line {number}: not valid JSON ({e.msg} at column {e.colno}).") from None
            except RecursionError:
                raise DataError(f"{file} line {number}: not valid JSON (nested too deeply).") from None
            except ValueError as e:  # e.g. an integer of more than 4300 digits
                raise DataError(f"{file} line {number}: not valid JSON ({e}).") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{file} line {number}: expected a JSON object with {preview(wanted)}, got {type(record).__name__}."
                )
            yield number, record


def _not_utf8(file: Path) -> DataError:
    """The error for a table that is not UTF-8 text, naming its first bad line."""
    with open(file, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(
                    f"{file} line {number}: not UTF-8 text ({e.reason} at byte {e.start} of the line); "
                    "tables are read as UTF-8: re-save the file as UTF-8, or fix the line."
                )
    return DataError(f"{file}: not UTF-8 text; tables are read as UTF-8: re-save the file as UTF-8.")
