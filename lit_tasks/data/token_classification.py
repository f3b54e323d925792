"""Token classification data (NER, part-of-speech, ...): sentences of pre-split words with one
tag per word, tokenised into sub-words once and cached.

A row (JSONL line, CSV row, or a row of a saved HF ``datasets`` split; column names
configurable)::

    {"id": "...", "tokens": ["Ada", "Lovelace", "was", "born", "in", "London", "."],
     "tags":   ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"]}

In a CSV file ``tokens`` and ``tags`` are strings of whitespace-separated items (a word cannot
hold a space there). An HF ``Sequence(ClassLabel)`` tags column gives its own names and order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.hf_datasets import check_columns, classlabel_names, column_values
from lit_tasks.data.tables import preview, read_rows, row_name, table_kind
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule, pad_sequences
from lit_tasks.errors import DataError
from lit_tasks.text.tokenizer import Tokenizer

CACHE_VERSION = 1  # bump when the cached arrays change meaning
IGNORE = -100  # label of positions that are not scored: special tokens, later sub-words, padding


@dataclass(frozen=True)
class TaggedRow:
    """One sentence: ``id`` names it in batches (``<file>#<row>``), ``where`` in messages."""

    id: str
    where: str
    words: tuple[str, ...]
    tags: tuple[str, ...] | None  # one per word, or None (unlabelled)


# ------------------------------------------------------------------------------------ reading


def _items(value: Any, where: str, column: str, what: str) -> list:
    """A JSON list, or (CSV) a string of whitespace-separated items."""
    if value is None:
        raise DataError(f"{where}: the {column!r} field is missing; every row needs a list of {what} in {column!r}.")
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: the {column!r} field is {type(value).__name__}; expected a list of {what} "
                        "(in CSV: a string of whitespace-separated items).")
    return list(value)


def parse_row(record: dict[str, Any], where: str, row_id: str, tokens_column: str, tags_column: str | None,
              names: list[str] | None = None) -> TaggedRow:
    """Check one record; ``names`` turns integer tags into names (an HF ClassLabel)."""
    for column in (tokens_column, tags_column):
        if column is not None and (column not in record or record[column] is None):
            present = sorted(str(k) for k in record if k is not None and record[k] is not None)
            raise DataError(f"{where}: the {column!r} column is missing from this row; row fields: {preview(present)}. "
                            "Set tokens_column / tags_column to the names used in the file.")
    words = _items(record[tokens_column], where, tokens_column, "words")
    if not words:
        raise DataError(f"{where}: the {tokens_column!r} list is empty; every row needs at least one word.")
    for i, w in enumerate(words):
        if not isinstance(w, str) or not w.strip():
            raise DataError(f"{where}: word {i} of {tokens_column!r} is {w!r}; every word must be a non-empty string.")
    tags = None
    if tags_column is not None:
        raw = _items(record[tags_column], where, tags_column, "tags")
        if len(raw) != len(words):
            raise DataError(f"{where}: {len(words)} words in {tokens_column!r} but {len(raw)} tags in {tags_column!r}; "
                            "expected exactly one tag per word.")
        tags = []
        for i, t in enumerate(raw):
            if names is not None and isinstance(t, int) and 0 <= t < len(names):
                t = names[t]
            if isinstance(t, bool) or not isinstance(t, (str, int)) or not str(t).strip():
                raise DataError(f"{where}: tag {i} of {tags_column!r} is {t!r}; expected a tag name such as "
                                "'B-PER' or 'O'.")
            tags.append(str(t).strip())
        tags = tuple(tags)
    return TaggedRow(row_id, where, tuple(words), tags)


def read_tagged_table(file: str | Path, tokens_column: str, tags_column: str | None) -> list[TaggedRow]:
    """Rows of a JSONL or CSV file; ``tags_column=None`` reads words only."""
    file = Path(file).expanduser()
    kind = table_kind(file)
    wanted = [tokens_column] + ([tags_column] if tags_column else [])
    rows = [
        parse_row(record, f"{file} {row_name(kind, number)}", f"{file}#{number}", tokens_column, tags_column)
        for number, record in read_rows(file, kind, wanted, "Set tokens_column / tags_column to the names used.")
    ]
    if not rows:
        raise DataError(f"{file}: no rows; expected one sentence per row with columns {preview(wanted)}.")
    return rows


def read_tagged_hf(ds, folder: str, split_name: str, tokens_column: str, tags_column: str | None) -> list[TaggedRow]:
    """Rows of one split of a saved DatasetDict; a Sequence(ClassLabel) tags column gives its names."""
    wanted = [tokens_column] + ([tags_column] if tags_column else [])
    check_columns(ds, folder, split_name, wanted, "Set tokens_column / tags_column to the names used.")
    names = classlabel_names(ds, tags_column) if tags_column else None
    columns = column_values(ds, wanted)
    base = f"{Path(folder).expanduser()}/{split_name}"
    rows = [
        parse_row({c: columns[c][i] for c in wanted}, f"hf_dataset {base} row {i}", f"{base}#{i}", tokens_column,
                  tags_column, names)
        for i in range(len(ds))
    ]
    if not rows:
        raise DataError(f"hf_dataset {folder} split {split_name!r} has no rows.")
    return rows


# ------------------------------------------------------------------------------- tokenised data


@dataclass
class TaggedEncoded(PackedRows):
    """A tokenised split as flat arrays (what the cache stores).

    ids (N_tokens,) int32 all input ids one after another; word_ids (N_tokens,) int32 the word
    each token comes from (-1: [CLS]/[SEP]); labels (N_tokens,) int16 the tag index on the first
    sub-word of each word, -100 elsewhere (and everywhere in unlabelled rows); starts (N + 1,)
    int64 row boundaries; row_ids (N,) str; truncated_rows: the ``where`` of each row cut to
    ``max_length``; num_words (N,) int32 words in each row (kept or not).
    """

    ids: np.ndarray
    word_ids: np.ndarray
    labels: np.ndarray
    starts: np.ndarray
    row_ids: np.ndarray
    num_words: np.ndarray
    truncated_rows: list[str]


def encode_tagged(rows: list[TaggedRow], tokenizer: Tokenizer, max_length: int, label_names: list[str] | None,
                  split: str) -> TaggedEncoded:
    """``[CLS] pieces of word 0, pieces of word 1, ... [SEP]``, cut to ``max_length`` tokens.

    Each distinct word is tokenised once on its own (as a pre-split word is: BERT's
    pre-tokenizer still splits punctuation inside it); the word's tag goes on its first piece.
    A word the tokenizer reduces to nothing (e.g. only control characters) becomes [UNK]. A tag that is not a train tag is a DataError naming its row. Words beyond the cut lose
    their tags (the row is counted in ``truncated_rows``).
    """
    cls, sep = tokenizer.cls, tokenizer.sep
    if cls is None or sep is None:
        raise DataError(f"tokenizer {tokenizer.source} has no [CLS]/[SEP] tokens; token classification needs a "
                        "BERT-style tokenizer.")
    vocabulary = sorted({w for r in rows for w in r.words})
    encodings = tokenizer.encode_raw(vocabulary, truncation=False, add_special_tokens=False)
    pieces = {w: e.ids or [tokenizer.unk] for w, e in zip(vocabulary, encodings)}  # nothing left: [UNK]
    index = {name: i for i, name in enumerate(label_names or [])}
    room = max_length - 2
    ids, word_ids, labels, lengths, truncated = [], [], [], [], []
    for row in rows:
        row_ids, row_words, row_labels = [cls], [-1], [IGNORE]
        for w, word in enumerate(row.words):
            p = pieces[word]
            label = IGNORE
            if row.tags is not None and label_names is not None:
                tag = row.tags[w]
                if tag not in index:
                    raise DataError(
                        f"{row.where}: tag {tag!r} (word {w}, {word!r}) of the {split} split never occurs in the "
                        f"train data ({len(label_names)} tags: {preview(label_names, 12)}). A model cannot predict "
                        "a tag it was not trained on; fix the tag or add training rows."
                    )
                label = index[tag]
            row_ids += p
            row_words += [w] * len(p)
            row_labels += [label] + [IGNORE] * (len(p) - 1)
        if len(row_ids) - 1 > room:
            truncated.append(row.where)
            row_ids, row_words, row_labels = row_ids[: room + 1], row_words[: room + 1], row_labels[: room + 1]
        ids += row_ids + [sep]
        word_ids += row_words + [-1]
        labels += row_labels + [IGNORE]
        lengths.append(len(row_ids) + 1)
    return TaggedEncoded(
        np.array(ids, dtype=np.int32), np.array(word_ids, dtype=np.int32), np.array(labels, dtype=np.int16),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), np.array([r.id for r in rows], dtype=str),
        np.array([len(r.words) for r in rows], dtype=np.int32), truncated,
    )


class TaggedDataset(Dataset):
    """A :class:`TaggedEncoded` split -> ``{"input_ids", "word_ids", "labels": (T,), "id"}``
    (plus ``"words"`` when the rows are given: predict)."""

    def __init__(self, encoded: TaggedEncoded, rows: list[TaggedRow] | None = None):
        self.encoded, self.rows = encoded, rows

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, span = self.encoded, self.encoded.span(i)
        item = {"input_ids": e.ids[span], "word_ids": e.word_ids[span], "labels": e.labels[span],
                "id": str(e.row_ids[i]), "num_words": int(e.num_words[i])}
        if self.rows is not None:
            item["words"] = list(self.rows[i].words)
        return item


class TaggedCollate:
    """Pad every sequence to the longest of the batch (dynamic padding)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids = pad_sequences([x["input_ids"] for x in items], self.pad_id)
        batch = {
            "input_ids": input_ids,  # (B, T) long
            "attention_mask": pad_sequences([np.ones(len(x["input_ids"]), dtype=np.int64) for x in items], 0),
            "token_type_ids": torch.zeros_like(input_ids),  # (B, T) long, one text: all 0
            "labels": pad_sequences([x["labels"] for x in items], IGNORE),  # (B, T) long
            "word_ids": pad_sequences([x["word_ids"] for x in items], -1),  # (B, T) long
            "num_words": torch.tensor([x["num_words"] for x in items]),  # (B,) long
            "ids": [x["id"] for x in items],
        }
        if "words" in items[0]:
            batch["words"] = [x["words"] for x in items]
        return batch


# --------------------------------------------------------------------------------- DataModule


class TokenClassificationDataModule(TextSplitDataModule):
    """One tag per word (IOB2 entity tags, part-of-speech, ...), tokenised once and padded per batch.

    Sources (give ``train_file`` or ``hf_dataset``): ``train_file`` / ``val_file`` /
    ``test_file`` / ``predict_file`` in JSONL or CSV; or a saved HF ``DatasetDict`` (CoNLL-2003's
    layout: ``tokens`` and ``ner_tags``, a ``Sequence(ClassLabel)``).

    ``label_names`` (the sorted distinct train tags, or the ClassLabel names) and
    ``num_classes`` are available right after construction. A val/test tag that train lacks, a
    row whose word and tag counts differ, an empty word list or a missing column is a DataError
    naming the file and row.

    Words are tokenised with ``tokenizer`` (or the ``preprocessor`` checkpoint folder, which
    the CLI links to ``model.init_from``) into ``[CLS] pieces... [SEP]`` of at most
    ``max_length`` tokens; a word's tag sits on its first piece, the others are ignored
    (-100). Rows cut to ``max_length`` are counted per split in ``truncated`` and logged; the
    words cut off are neither trained on nor scored (nor predicted).

    Batches::

        {"input_ids", "attention_mask", "token_type_ids": (B, T) long (padding: pad id / 0 / 0),
         "labels":    (B, T) long tag index on each word's first piece, -100 elsewhere
                      (special tokens, later pieces, padding, unlabelled rows),
         "word_ids":  (B, T) long the word of each token, -1 for [CLS], [SEP] and padding,
         "num_words": (B,) long words in each row (including any cut off),
         "ids":       list of B row ids "<file>#<row>" (HF: "<dataset>/<split>#<row>"),
         "words":     list of B word lists (predict batches only)}

    Under multi-process data parallelism, evaluation uses an unpadded sampler: every row is
    scored once.

    Args:
        tokens_column: the column of a row's words: a list of strings (JSONL, HF), or in CSV
            one string of whitespace-separated words.
        tags_column: the column of one tag per word (names such as "B-PER"; an HF ClassLabel's
            indices give its names), in CSV whitespace-separated; "ner_tags" for CoNLL-2003.
            Not read from predict_file.
        train_file, val_file, test_file, predict_file, hf_dataset, tokenizer, preprocessor,
            max_length, batch_size, eval_batch_size, num_workers, group_by_length, cache_dir:
            see TextSplitDataModule.
    """

    cache_name, arrays = "tokens", TaggedEncoded
    truncation = "cut (their last words are neither trained on nor scored)"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        hf_dataset: str | None = None,
        tokens_column: str = "tokens",
        tags_column: str = "tags",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = False,
        cache_dir: str | None = None,
    ):
        if (val_file or test_file) and not train_file:
            raise DataError("TokenClassificationDataModule: val_file/test_file need train_file (it defines the tags).")
        if max_length < 3:
            raise DataError(f"TokenClassificationDataModule: max_length is {max_length}; it must leave room for "
                            "[CLS], one word piece and [SEP].")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=predict_file,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=group_by_length, cache_dir=cache_dir)
        self.save_hyperparameters()
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.label_names: list[str] = self._train_classes(tags_column, lambda row: row.tags)
        self.num_classes: int = len(self.label_names)

    def _read_file(self, file: str, labelled: bool) -> list[TaggedRow]:
        return read_tagged_table(file, self.tokens_column, self.tags_column if labelled else None)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[TaggedRow]:
        return read_tagged_hf(ds, self.hf_dataset, name, self.tokens_column, self.tags_column if labelled else None)

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "split": split, "tokens": self.tokens_column, "tags": self.tags_column,
                "max_length": self.max_length, "label_names": self.label_names, "labelled": self._labelled(split),
                "source": self._source(split)}

    def _encode(self, split: str) -> TaggedEncoded:
        return encode_tagged(self.rows(split), self.tokenizer, self.max_length,
                             self.label_names if self._labelled(split) else None, split)

    def _make_dataset(self, split: str) -> TaggedDataset:
        rows = self.rows(split) if split == "predict" else None  # predict writes the words back
        return TaggedDataset(self.encoded(split), rows)

    def _collate(self, split: str) -> TaggedCollate:
        return TaggedCollate(self.tokenizer.pad)
