"""Extractive question answering data (SQuAD v1.1 / v2.0 style): questions over contexts,
split into overlapping token windows, with answer spans mapped to token positions.

A row (JSONL line, or a row of a saved HF ``datasets`` split, column names configurable)::

    {"id": "q1", "context": "...", "question": "...",
     "answers": {"text": ["Denver Broncos"], "answer_start": [177]}}

``answers`` may also be a list of ``{"text", "answer_start"}`` objects. An empty answer list
means the question has no answer in its context (SQuAD v2). ``answer_start`` counts characters
of ``context`` from 0, and ``context[answer_start:answer_start + len(text)]`` must be ``text``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer as RustTokenizer
from torch.utils.data import Dataset, DistributedSampler

from lit_tasks.data.hf_datasets import check_columns, column_values
from lit_tasks.data.samplers import distributed_eval_sampler
from lit_tasks.data.tables import preview, read_rows, row_name, table_kind
from lit_tasks.data.text import TextCollate
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule, text_field
from lit_tasks.errors import DataError
from lit_tasks.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class QARow:
    """One question. ``answers``: gold texts (empty: unanswerable; None: not given, predict);
    ``starts``: their character offsets in ``context``; ``where`` names the row in messages."""

    id: str
    where: str
    context: str
    question: str
    answers: tuple[str, ...] | None
    starts: tuple[int, ...] | None


# ------------------------------------------------------------------------------------ reading


def _answers_field(value: Any, where: str, column: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(texts, starts) from {"text": [...], "answer_start": [...]} or [{"text", "answer_start"}, ...]."""
    expected = (f'expected {{"text": [...], "answer_start": [...]}} (or a list of {{"text", "answer_start"}} '
                "objects; empty lists for an unanswerable question)")
    if isinstance(value, list) and all(isinstance(a, dict) for a in value):
        value = {"text": [a.get("text") for a in value], "answer_start": [a.get("answer_start") for a in value]}
    if not isinstance(value, dict) or not isinstance(value.get("text"), list) \
            or not isinstance(value.get("answer_start"), list):
        raise DataError(f"{where}: the {column!r} field is {str(value)[:200]}; {expected}.")
    texts, starts = value["text"], value["answer_start"]
    if len(texts) != len(starts):
        raise DataError(f"{where}: the {column!r} field has {len(texts)} texts but {len(starts)} answer_start values.")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: the {column!r} field holds the answer text {text!r}; expected a non-empty string.")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DataError(f"{where}: the {column!r} field holds answer_start {start!r}; expected an integer >= 0.")
    return tuple(texts), tuple(starts)


def _misplaced_answer(context: str, texts: tuple[str, ...], starts: tuple[int, ...]) -> str | None:
    """A message for the first answer whose text is not at its answer_start, else None."""
    for text, start in zip(texts, starts):
        found = context[start : start + len(text)]
        if found != text:
            elsewhere = context.find(text)
            hint = f"; the text occurs at character {elsewhere}" if elsewhere >= 0 else "; the text is not in the context"
            return f"answer {text!r} is not at answer_start {start} (the context there reads {found!r}{hint})"
    return None


def parse_row(record: dict[str, Any], where: str, columns: dict[str, str | None], default_id: str,
              labelled: bool) -> QARow | str:
    """A checked QARow, or the reason its answer is misplaced (the caller errors or skips).

    ``columns``: {"id", "context", "question", "answers"} -> column name (id None: ``default_id``).
    ``labelled``: answers are required (train/val/test) rather than optional (predict)."""
    wanted = [c for key, c in columns.items() if c and (key != "answers" or labelled)]
    for column in wanted:
        if column not in record:
            raise DataError(f"{where}: the {column!r} column is missing from this row; row fields: "
                            f"{preview(sorted(str(k) for k in record))}.")
    context = text_field(record[columns["context"]], where, columns["context"])
    question = text_field(record[columns["question"]], where, columns["question"])
    qid = default_id
    if columns["id"]:
        raw = record[columns["id"]]
        if isinstance(raw, bool) or not isinstance(raw, (str, int)) or not str(raw).strip():
            raise DataError(f"{where}: the {columns['id']!r} field is {raw!r}; expected a non-empty string or integer.")
        qid = str(raw)
    texts = starts = None
    if columns["answers"] in record and record[columns["answers"]] is not None:
        texts, starts = _answers_field(record[columns["answers"]], where, columns["answers"])
        problem = _misplaced_answer(context, texts, starts)
        if problem:
            return problem
    elif labelled:
        raise DataError(f"{where}: the {columns['answers']!r} field is missing; every row of a labelled split "
                        "needs answers (empty lists for an unanswerable question).")
    return QARow(qid, where, context, question, texts, starts)


def collect_rows(records, source: str, columns: dict[str, str | None], labelled: bool,
                 skip_bad_answers: bool) -> tuple[list[QARow], list[str]]:
    """Rows from (where, default id, record) triples; duplicate ids are a DataError.
    A misplaced answer is a DataError, or with ``skip_bad_answers`` the row is left out and
    its ``where`` returned in the second list."""
    rows, skipped, seen = [], [], {}
    for where, default_id, record in records:
        row = parse_row(record, where, columns, default_id, labelled)
        if isinstance(row, str):
            if not skip_bad_answers:
                raise DataError(f"{where}: {row}. Fix the row, or set data.skip_bad_answers=true to leave such "
                                "rows out (they are counted and logged).")
            skipped.append(f"{where}: {row}")
            continue
        if row.id in seen:
            raise DataError(f"{where}: the id {row.id!r} was already used by {seen[row.id]}; question ids must be "
                            "unique (answers are collected per id).")
        seen[row.id] = where
        rows.append(row)
    if not rows:
        raise DataError(f"{source}: no rows; expected one row per question with columns "
                        f"{preview([c for c in columns.values() if c])}.")
    return rows, skipped


def table_records(file: Path, columns: dict[str, str | None]):
    """(where, default id, record) of each row of a JSONL/CSV file."""
    kind = table_kind(file)
    wanted = [c for key, c in columns.items() if c and key != "answers"]
    hint = "Set id_column / context_column / question_column / answers_column to the names used in the file."
    for number, record in read_rows(file, kind, wanted, hint):
        yield f"{file} {row_name(kind, number)}", f"{file}#{number}", record


def hf_records(ds, base: str, columns: dict[str, str | None]):
    """(where, default id, record) of each row of a saved HF split."""
    names = [c for c in columns.values() if c and c in ds.column_names]
    values = column_values(ds, names)
    for i in range(len(ds)):
        yield f"hf_dataset {base} row {i}", f"{base}#{i}", {c: values[c][i] for c in names}


# ------------------------------------------------------------------------------- tokenised data


@dataclass
class Windows(PackedRows):
    """A tokenised split as flat arrays (what the cache stores); N windows, several per question.

    ids (N_tokens,) int32 and type_ids (N_tokens,) int8: every window's tokens one after another;
    offsets (N_tokens, 2) int32: the characters [start, end) of ``context`` each token covers,
    -1 for question, special and padding tokens; starts (N + 1,) int64 window boundaries;
    positions (N, 2) int64: token index of the (first) answer's start and end in the window,
    0 and 0 ([CLS]) when the answer is not inside the window or the question has none;
    example (N,) int64: the question (row index) of each window.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    positions: np.ndarray
    example: np.ndarray


def answer_positions(offsets: np.ndarray, text: str, start: int) -> tuple[int, int]:
    """Token indices (first, last) covering the characters [start, start + len(text)) in a
    window whose context tokens have ``offsets`` (T, 2) (-1 elsewhere); (0, 0) when the window
    does not hold the whole answer."""
    end = start + len(text)
    context = np.flatnonzero(offsets[:, 0] >= 0)
    if len(context) == 0 or offsets[context[0], 0] > start or offsets[context[-1], 1] < end:
        return 0, 0
    first = context[offsets[context, 1] > start][0]  # the first token ending after the answer starts
    last = context[offsets[context, 0] < end][-1]  # the last token starting before it ends
    return int(first), int(last)


def encode_windows(rows: list[QARow], tokenizer: Tokenizer, max_length: int, doc_stride: int) -> Windows:
    """Tokenise ``[CLS] question [SEP] context [SEP]`` per row; a context that does not fit in
    ``max_length`` tokens is cut into windows that share ``doc_stride`` tokens with the next
    one (only the context is cut). A question too long to leave the context more than
    ``doc_stride`` tokens is a DataError naming its row."""
    pipeline = RustTokenizer.from_str(tokenizer.backend.to_str())  # our own copy, free to configure
    pipeline.no_truncation()
    pipeline.no_padding()
    specials = pipeline.num_special_tokens_to_add(True)
    questions = pipeline.encode_batch([r.question for r in rows], add_special_tokens=False)
    for row, q in zip(rows, questions):
        room = max_length - specials - len(q.ids)
        if room <= doc_stride:
            raise DataError(
                f"{row.where}: the question is {len(q.ids)} tokens long; with max_length={max_length} it leaves "
                f"{room} tokens for the context, which must be more than doc_stride={doc_stride}. Raise "
                "data.max_length, lower data.doc_stride or shorten the question."
            )
    pipeline.enable_truncation(max_length, stride=doc_stride, strategy="only_second")
    encodings = pipeline.encode_batch([(r.question, r.context) for r in rows])
    ids, type_ids, offsets, lengths, positions, example = [], [], [], [], [], []
    for n, (row, first) in enumerate(zip(rows, encodings)):
        for window in [first, *first.overflowing]:
            offs = np.array(window.offsets, dtype=np.int32).reshape(-1, 2)
            offs[np.array([s != 1 for s in window.sequence_ids])] = -1  # only context tokens keep offsets
            ids.append(np.array(window.ids, dtype=np.int32))
            type_ids.append(np.array(window.type_ids, dtype=np.int8))
            offsets.append(offs)
            lengths.append(len(window.ids))
            answered = bool(row.answers)  # None (predict) or () (unanswerable): [CLS]
            positions.append(answer_positions(offs, row.answers[0], row.starts[0]) if answered else (0, 0))
            example.append(n)
    return Windows(
        np.concatenate(ids), np.concatenate(type_ids), np.concatenate(offsets),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.array(positions, dtype=np.int64).reshape(-1, 2), np.array(example, dtype=np.int64),
    )


class QADataset(Dataset):
    """Window ``i`` of a split, with what post-processing needs about its question."""

    def __init__(self, windows: Windows, rows: list[QARow]):
        self.windows, self.rows = windows, rows
        self.num_windows = np.bincount(windows.example, minlength=len(rows))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        w, span = self.windows, self.windows.span(i)
        row = self.rows[int(w.example[i])]
        return {
            "input_ids": w.ids[span], "token_type_ids": w.type_ids[span], "offsets": w.offsets[span],
            "labels": w.positions[i], "id": row.id, "num_windows": int(self.num_windows[w.example[i]]),
            "context": row.context, "answers": None if row.answers is None else list(row.answers),
        }


class QACollate:
    """:class:`TextCollate` (dynamic padding) plus answer positions, offsets and question data."""

    def __init__(self, pad_id: int):
        self.text = TextCollate(pad_id, multi_label=False)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.text(items)
        positions = batch.pop("labels")  # (B, 2)
        offsets = torch.full((*batch["input_ids"].shape, 2), -1, dtype=torch.long)
        for n, x in enumerate(items):
            offsets[n, : len(x["offsets"])] = torch.from_numpy(x["offsets"].astype(np.int64))
        return {
            **batch,  # input_ids, attention_mask, token_type_ids (B, T) long; ids: question id per window
            "start_positions": positions[:, 0].contiguous(),  # (B,) long, 0 = [CLS] (no answer here)
            "end_positions": positions[:, 1].contiguous(),  # (B,) long
            "offsets": offsets,  # (B, T, 2) long context characters per token, -1 outside the context
            "num_windows": torch.tensor([x["num_windows"] for x in items]),  # (B,) windows of the question
            "contexts": [x["context"] for x in items],
            "answers": [x["answers"] for x in items],  # gold texts ([] unanswerable), None when not given
        }


class QuestionShardSampler(DistributedSampler):
    """Evaluation under data parallelism: rank ``r`` of ``W`` gets every window of questions
    ``r, r + W, ...`` in order, so each question is decided on one process (no padding)."""

    def __init__(self, example: np.ndarray, num_replicas: int, rank: int):
        super().__init__(range(len(example)), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.indices = np.flatnonzero(example % num_replicas == rank).tolist()
        self.num_samples = self.total_size = len(self.indices)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------------- DataModule


class QuestionAnsweringDataModule(TextSplitDataModule):
    """Extractive QA data, tokenised once into windows and padded per batch.

    Sources (give ``train_file`` or ``hf_dataset``): ``train_file`` / ``val_file`` /
    ``test_file`` / ``predict_file`` in JSONL (a ``predict_file``, which needs no answers, may
    also be CSV), or a saved HF ``DatasetDict`` in the same columns (SQuAD's layout).

    Each question and its context become ``[CLS] question [SEP] context [SEP]`` windows of at
    most ``max_length`` tokens; a long context is cut into several windows, consecutive ones
    sharing ``doc_stride`` tokens (the overlap, as in HF's run_qa). Training uses every window,
    with the first gold answer's start/end tokens as targets, or [CLS] (index 0) when the answer
    is not inside the window or the question has none. An answer whose text is not found at its
    ``answer_start`` is a DataError naming the file and row, or left out (``skip_bad_answers``).

    The tokenizer is ``tokenizer`` or else the ``preprocessor`` checkpoint folder's.

    Batches::

        {"input_ids", "attention_mask", "token_type_ids": (B, T) long,
         "start_positions", "end_positions": (B,) long answer token indices (0: no answer here),
         "offsets": (B, T, 2) long context characters [start, end) per token, -1 elsewhere,
         "ids": list of B question ids, "num_windows": (B,) long windows of each window's question,
         "contexts": list of B context strings,
         "answers": list of B gold answer lists ([] unanswerable; None when the file has none)}

    Evaluation loaders keep each question's windows together and in order; under data
    parallelism each question's windows go to one process.

    Args:
        id_column: the column of the question ids (strings or integers, unique: answers are
            collected per id); None: the row ids "<file>#<line>" (HF: "<dataset>/<split>#<row>").
        context_column: the column of the context, the text the answer is taken from.
        question_column: the column of the question.
        answers_column: the column of the gold answers, {"text": [...], "answer_start": [...]}
            or a list of {"text", "answer_start"} objects, answer_start counting characters of
            the context from 0; empty lists: unanswerable (SQuAD v2). Optional in predict_file.
        max_length: tokens per window, [CLS] question [SEP] context [SEP] included.
        doc_stride: tokens of context that consecutive windows of a long context share;
            0 <= doc_stride < max_length.
        skip_bad_answers: leave out a row whose answer text is not at its answer_start
            (counted per split in skipped and logged); False: a DataError naming the row.
        train_file, val_file, test_file, predict_file, hf_dataset, tokenizer, preprocessor,
            batch_size, eval_batch_size, num_workers, group_by_length, cache_dir: see
            TextSplitDataModule.
    """

    cache_name, arrays = "qa", Windows

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        hf_dataset: str | None = None,
        id_column: str | None = "id",
        context_column: str = "context",
        question_column: str = "question",
        answers_column: str = "answers",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        max_length: int = 384,
        doc_stride: int = 128,
        skip_bad_answers: bool = False,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = False,
        cache_dir: str | None = None,
    ):
        if doc_stride < 0 or doc_stride >= max_length:
            raise DataError(f"QuestionAnsweringDataModule: doc_stride is {doc_stride}; it must be >= 0 and smaller "
                            f"than max_length={max_length} (it is the overlap of consecutive windows).")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=predict_file,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=group_by_length, cache_dir=cache_dir)
        self.save_hyperparameters()
        self.columns = {"id": id_column, "context": context_column, "question": question_column,
                        "answers": answers_column}
        self.doc_stride, self.skip_bad_answers = doc_stride, skip_bad_answers
        self.skipped: dict[str, list[str]] = {}  # split -> rows left out by skip_bad_answers, with the reason

    def _read(self, split: str) -> list[QARow]:
        """The records of the file or HF split (``_read_file`` / ``_read_hf``) checked into
        questions: ids unique, misplaced answers an error or left out (``skip_bad_answers``)."""
        records = super()._read(split)
        rows, skipped = collect_rows(records, self._source(split), self.columns, self._labelled(split),
                                     self.skip_bad_answers)
        self.skipped[split] = skipped
        if skipped:
            log.warning("%s split (%s): %d row(s) left out because an answer is not at its answer_start "
                        "(skip_bad_answers); first: %s", split, self._source(split), len(skipped),
                        "; ".join(skipped[:3]))
        return rows

    def _read_file(self, file: str, labelled: bool):
        return table_records(Path(file).expanduser(), self.columns)

    def _read_hf(self, name: str, ds, labelled: bool):
        wanted = [c for key, c in self.columns.items() if c and (key != "answers" or labelled)]
        check_columns(ds, self.hf_dataset, name, wanted,
                      "Set id_column / context_column / question_column / answers_column to the names used.")
        return hf_records(ds, f"{Path(self.hf_dataset).expanduser()}/{name}", self.columns)

    def windows(self, split: str) -> Windows:
        """The tokenised split, from ``cache_dir`` when its fingerprint matches."""
        return self.encoded(split)

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "split": split, "columns": self.columns, "max_length": self.max_length,
                "doc_stride": self.doc_stride, "skip_bad_answers": self.skip_bad_answers,
                "labelled": self._labelled(split), "source": self._source(split)}

    def _encode(self, split: str) -> Windows:
        return encode_windows(self.rows(split), self.tokenizer, self.max_length, self.doc_stride)

    def _make_dataset(self, split: str) -> QADataset:
        rows = self.rows(split)
        return QADataset(self.windows(split), rows)

    def _collate(self, split: str) -> QACollate:
        return QACollate(self.tokenizer.pad)

    def _eval_sampler(self, dataset: QADataset) -> QuestionShardSampler | None:
        """All windows of a question on one rank (None: one process)."""
        plain = distributed_eval_sampler(dataset, getattr(self, "trainer", None))
        return None if plain is None else QuestionShardSampler(dataset.windows.example, plain.num_replicas, plain.rank)
