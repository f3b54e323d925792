"""TextDataModule: text classification (single- or multi-label, single texts or pairs) from
CSV/JSONL files or a saved HF ``datasets`` folder, tokenised once and cached."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.hf_datasets import check_columns, classlabel_names, column_values
from lit_tasks.data.tables import preview, read_rows, row_name, table_kind
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule, pad_sequences, text_field
from lit_tasks.errors import DataError
from lit_tasks.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class TextRow:
    """One example: ``id`` names it in batches (``<file>#<row>``), ``where`` in messages."""

    id: str
    where: str
    text: str
    pair: str | None
    labels: tuple[str, ...] | None  # one label, several (multi-label), or None (unlabelled)


# ------------------------------------------------------------------------------------ reading


def _label_field(value: Any, where: str, column: str, multi_label: bool, separator: str) -> tuple[str, ...]:
    if value is None:
        raise DataError(f"{where}: the {column!r} field is missing; every row of a labelled split needs a label.")
    if multi_label:
        if isinstance(value, str):  # CSV (or a JSONL string): "a|b|c"; "" = no label applies
            parts = [p.strip() for p in value.split(separator)] if value.strip() else []
        elif isinstance(value, list):
            parts = value
        else:
            raise DataError(
                f"{where}: the {column!r} field is {value!r}; expected a list of labels or a string "
                f"of labels separated by {separator!r}."
            )
        out = []
        for p in parts:
            if isinstance(p, bool) or not isinstance(p, (str, int)) or not str(p).strip():
                raise DataError(
                    f"{where}: the {column!r} field {value!r} holds the label {p!r}; every label must be a "
                    f"non-empty string or an integer (separator {separator!r})."
                )
            out.append(str(p).strip())
        return tuple(sorted(set(out)))
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            f"{where}: the {column!r} field is {value!r} ({type(value).__name__}); expected a class name "
            "(string) or an integer (multi_label=True takes lists)."
        )
    if not str(value).strip():
        raise DataError(f"{where}: the {column!r} field is empty; every row of a labelled split needs a label.")
    return (str(value).strip(),)


def read_text_table(
    file: str | Path, text_column: str, pair_column: str | None, label_column: str | None,
    multi_label: bool = False, separator: str = "|",
) -> list[TextRow]:
    """Rows of a CSV (with a header) or JSONL file; ``label_column=None`` reads texts only."""
    file = Path(file).expanduser()
    kind = table_kind(file)
    wanted = [text_column] + ([pair_column] if pair_column else []) + ([label_column] if label_column else [])
    rows: list[TextRow] = []

    def add(number: int, record: dict[str, Any]) -> None:
        where = f"{file} {row_name(kind, number)}"
        for column in wanted:
            if column not in record or (kind == "csv" and record[column] is None):
                raise DataError(
                    f"{where}: the {column!r} column is missing from this row; row fields: "
                    f"{preview(sorted(k for k in record if k is not None))}."
                )
        text = text_field(record[text_column], where, text_column)
        pair = text_field(record[pair_column], where, pair_column) if pair_column else None
        labels = None
        if label_column:
            labels = _label_field(record[label_column], where, label_column, multi_label, separator)
        rows.append(TextRow(f"{file}#{number}", where, text, pair, labels))

    for number, record in read_rows(file, kind, wanted, "Set text_column / text_pair_column / label_column to the names used in the file."):
        add(number, record)
    if not rows:
        raise DataError(f"{file}: no rows; expected one row per text with columns {preview(wanted)}.")
    return rows


def read_hf_split(
    ds, folder: str, split_name: str, text_column: str, pair_column: str | None, label_column: str | None,
    multi_label: bool, separator: str,
) -> list[TextRow]:
    """Rows of one split of a saved DatasetDict; ClassLabel columns give their names."""
    wanted = [text_column] + ([pair_column] if pair_column else []) + ([label_column] if label_column else [])
    check_columns(ds, folder, split_name, wanted,
                  "Set text_column / text_pair_column / label_column to the names used.")
    columns = column_values(ds, wanted)
    names = classlabel_names(ds, label_column) if label_column else None
    base = f"{Path(folder).expanduser()}/{split_name}"
    rows = []
    for i in range(len(ds)):
        where = f"hf_dataset {base} row {i}"
        text = text_field(columns[text_column][i], where, text_column)
        pair = text_field(columns[pair_column][i], where, pair_column) if pair_column else None
        labels = None
        if label_column:
            value = columns[label_column][i]
            if names is not None:
                if value == -1:
                    value = None
                else:
                    value = [names[v] for v in value] if isinstance(value, list) else names[value]
            labels = _label_field(value, where, label_column, multi_label, separator)
        rows.append(TextRow(f"{base}#{i}", where, text, pair, labels))
    if not rows:
        raise DataError(f"hf_dataset {folder} split {split_name!r} has no rows.")
    return rows


# ------------------------------------------------------------------------------- tokenised data


@dataclass
class Encoded(PackedRows):
    """A tokenised split as flat arrays (what the cache stores).

    ids (N_tokens,) int32 all input ids one after another; type_ids likewise (int8);
    starts (N + 1,) int64 row boundaries; labels (N,) int64 or (N, C) float32 (-1 / empty:
    unlabelled); row_ids (N,) str; truncated_rows: the ``where`` of each truncated row.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    starts: np.ndarray
    labels: np.ndarray
    row_ids: np.ndarray
    truncated_rows: list[str]


def encode_rows(
    rows: list[TextRow], tokenizer: Tokenizer, max_length: int, label_names: list[str] | None,
    multi_label: bool, split: str, source: str,
) -> Encoded:
    """Tokenise rows (truncating to ``max_length`` tokens) and map labels to indices; a label
    that is not a train label is a DataError naming its row."""
    pairs = [r.pair for r in rows] if rows[0].pair is not None else None
    encodings = tokenizer.encode_raw([r.text for r in rows], pairs, max_length)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(starts[-1]))
    type_ids = np.fromiter((t for e in encodings for t in e.type_ids), dtype=np.int8, count=int(starts[-1]))
    truncated = [r.where for r, e in zip(rows, encodings) if e.overflowing]
    index = {name: i for i, name in enumerate(label_names or [])}
    if multi_label:
        labels = np.zeros((len(rows), len(index)), dtype=np.float32)
    else:
        labels = np.full(len(rows), -1, dtype=np.int64)
    for n, row in enumerate(rows):
        if row.labels is None or label_names is None:
            continue
        for label in row.labels:
            if label not in index:
                raise DataError(
                    f"{row.where}: label {label!r} of the {split} split never occurs in the train data "
                    f"({len(label_names)} classes: {preview(label_names)}). A model cannot predict a class "
                    "it was not trained on; fix the label or add training rows."
                )
            if multi_label:
                labels[n, index[label]] = 1.0
            else:
                labels[n] = index[label]
    if label_names is not None and split in ("val", "test") and rows[0].labels is not None:
        seen = set(np.flatnonzero(labels.sum(0))) if multi_label else set(labels.tolist())
        missing = [label_names[i] for i in range(len(label_names)) if i not in seen]
        if missing:
            log.warning(
                "%s (%s split) has no rows for %d train class(es): %s; per-class metrics for them will be empty.",
                source, split, len(missing), preview(missing),
            )
    return Encoded(ids, type_ids, starts, labels, np.array([r.id for r in rows], dtype=str), truncated)


class TextDataset(Dataset):
    """An :class:`Encoded` split -> ``{"input_ids": (T,), "token_type_ids": (T,), "labels", "id"}``."""

    def __init__(self, encoded: Encoded):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, span = self.encoded, self.encoded.span(i)
        return {"input_ids": e.ids[span], "token_type_ids": e.type_ids[span], "labels": e.labels[i],
                "id": str(e.row_ids[i])}


class TextCollate:
    """Pad to the longest sequence of the batch (dynamic padding) with ``pad_id``."""

    def __init__(self, pad_id: int, multi_label: bool):
        self.pad_id, self.multi_label = pad_id, multi_label

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids = pad_sequences([x["input_ids"] for x in items], self.pad_id)
        token_type_ids = pad_sequences([x["token_type_ids"] for x in items], 0)
        attention_mask = pad_sequences([np.ones(len(x["input_ids"]), dtype=np.int64) for x in items], 0)
        labels = np.stack([x["labels"] for x in items])
        return {
            "input_ids": input_ids,  # (B, T) long, padded with the tokenizer's pad id
            "attention_mask": attention_mask,  # (B, T) long, 1 = token, 0 = padding
            "token_type_ids": token_type_ids,  # (B, T) long, 0 = first text, 1 = pair text
            "labels": torch.from_numpy(labels.astype(np.float32 if self.multi_label else np.int64)),  # (B,) or (B, C)
            "ids": [x["id"] for x in items],
        }


# --------------------------------------------------------------------------------- DataModule


class TextDataModule(TextSplitDataModule):
    """Text classification data, tokenised once and padded per batch.

    Sources (give ``train_file`` or ``hf_dataset``): CSV (with a header) or JSONL files with
    ``text_column``, optionally ``text_pair_column``, and ``label_column`` (not needed in
    ``predict_file``); or a saved HF ``DatasetDict``, where a ``ClassLabel`` (or sequence of
    ``ClassLabel``) column gives the class names, in its own order.

    Labels: single-label rows hold one class name (or integer); with ``multi_label`` any number.
    ``label_names`` (sorted unique train labels, numerically when all are integers, or the
    ClassLabel names, keeping the dataset's numbering) and ``num_classes`` are available right
    after construction; a val/test label that train lacks is a DataError naming its row.

    Texts are tokenised with ``tokenizer`` or else the ``preprocessor`` checkpoint's (so a
    fine-tuned checkpoint brings its own tokenizer; an explicit ``tokenizer`` wins, as explicit
    arguments do over the preprocessor in ImageDataModule), to at most ``max_length`` tokens,
    special tokens included. A model trained from scratch (GPT-2 with a last-token head) can
    have a byte-level BPE trained on the train texts instead (``train_tokenizer_vocab_size``).
    Longer texts are truncated (longest text of a pair first); the count per split is in
    ``truncated`` and logged with the first rows affected.

    Batches (train, val, test and predict alike)::

        {
          "input_ids":      (B, T) int64, padded with the tokenizer's pad id to the longest row,
          "attention_mask": (B, T) int64, 1 for tokens, 0 for padding,
          "token_type_ids": (B, T) int64, 0 for the first text (and [CLS]), 1 for the pair text,
          "labels":         (B,) int64 class indices (-1 where unlabelled: predict_file), or with
                            multi_label (B, C) float32 multi-hot targets (all 0 where unlabelled),
          "ids":            list[str] of B row ids, "<file>#<row>" (HF: "<dataset>/<split>#<row>"),
        }

    Under multi-process data parallelism the val/test/predict loaders use an unpadded
    distributed sampler: every row is evaluated once.

    Args:
        text_column: the column (CSV header, JSONL key or HF column) holding the text.
        text_pair_column: the column of a second text, encoded with the first as a pair
            (token_type_ids 1); None: single texts.
        label_column: the column of the class: a name or an integer, with multi_label a list
            of them (or a string of them); not read from predict_file.
        multi_label: each row holds any number of labels (none: no label applies), batched as
            (B, C) multi-hot targets; False: exactly one label per row.
        label_separator: what separates the labels of a multi_label field given as a string
            (a CSV cell, e.g. "sports|politics"; an empty cell means no label applies).
        train_file, val_file, test_file, predict_file, hf_dataset, tokenizer, preprocessor,
            max_length, batch_size, eval_batch_size, num_workers, group_by_length, cache_dir,
            train_tokenizer_vocab_size: see TextSplitDataModule.
    """

    cache_name, arrays, truncation = "text", Encoded, "truncated"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        hf_dataset: str | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        multi_label: bool = False,
        label_separator: str = "|",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = False,
        cache_dir: str | None = None,
        train_tokenizer_vocab_size: int | None = None,
    ):
        if (val_file or test_file) and not train_file:
            raise DataError("TextDataModule: val_file/test_file need train_file (the train file defines the classes).")
        if max_length < 2:
            raise DataError(f"TextDataModule: max_length is {max_length}; it must leave room for [CLS] and [SEP].")
        if not label_separator:
            raise DataError("TextDataModule: label_separator must not be empty.")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=predict_file,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=group_by_length, cache_dir=cache_dir,
                         train_tokenizer_vocab_size=train_tokenizer_vocab_size)
        self.save_hyperparameters()
        self.text_column, self.text_pair_column, self.label_column = text_column, text_pair_column, label_column
        self.multi_label, self.label_separator = multi_label, label_separator
        self.label_names: list[str] = self._train_classes(label_column, lambda row: row.labels)
        self.num_classes: int = len(self.label_names)

    def _tokenizer_texts(self) -> Iterable[str]:
        return (text for row in self.rows("train") for text in (row.text, row.pair) if text)

    def _read_file(self, file: str, labelled: bool) -> list[TextRow]:
        return read_text_table(file, self.text_column, self.text_pair_column, self.label_column if labelled else None,
                               self.multi_label, self.label_separator)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[TextRow]:
        return read_hf_split(ds, self.hf_dataset, name, self.text_column, self.text_pair_column,
                             self.label_column if labelled else None, self.multi_label, self.label_separator)

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION, "split": split, "text": self.text_column, "pair": self.text_pair_column,
            "label": self.label_column, "multi_label": self.multi_label, "separator": self.label_separator,
            "max_length": self.max_length, "label_names": self.label_names, "labelled": self._labelled(split),
        }

    def _encode(self, split: str) -> Encoded:
        rows = self.rows(split)
        labelled = rows[0].labels is not None
        return encode_rows(rows, self.tokenizer, self.max_length, self.label_names if labelled else None,
                           self.multi_label, split, self._source(split))

    def _make_dataset(self, split: str) -> TextDataset:
        return TextDataset(self.encoded(split))

    def _collate(self, split: str) -> TextCollate:
        return TextCollate(self.tokenizer.pad, self.multi_label)
