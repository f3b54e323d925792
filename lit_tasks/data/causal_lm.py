"""CausalLMDataModule: next-token prediction data (GPT-2 pretraining and fine-tuning) from text
files, CSV/JSONL or a saved HF ``datasets`` folder, and prompts to continue for ``predict``.

Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", Sec. 2: the model
reads byte-level BPE tokens and learns p(token | every token before it). Documents are
tokenised without special tokens and either packed, one after another with the end-of-text
token between them, into blocks of ``max_length`` tokens (every token is trained on, none is
padded but the last block's tail), or kept one per row (cut to ``max_length``, counted) and
padded. The shift by one happens in the task: ``labels`` are the input ids, -100 on padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.tables import TABLE_EXTENSIONS
from lit_tasks.data.text import read_hf_split, read_text_table
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.tokenizer import Tokenizer

CACHE_VERSION = 1  # bump when the cached arrays change meaning
IGNORE = -100  # the label of padding (PyTorch's cross-entropy ignore_index)
PACKINGS = ("blocks", "rows")


@dataclass(frozen=True)
class Document:
    """One text: ``id`` names it in predictions (``<file>#<row>``), ``where`` in messages."""

    id: str
    where: str
    text: str


def read_corpus(file: str | Path, text_column: str = "text", prompts: bool = False) -> list[Document]:
    """The documents of a corpus file, or the prompts of a prompts file (``prompts``).

    CSV / JSONL (``.csv``, ``.jsonl``, ``.ndjson``): one document (prompt) per row, the text in
    ``text_column``, taken as it is (newlines and indentation kept). Any other file is UTF-8
    text: documents are separated by blank lines, their lines kept as written; a prompts file
    holds one prompt per non-blank line.
    """
    file = Path(file).expanduser()
    if file.suffix.lower() in TABLE_EXTENSIONS:
        return [Document(r.id, r.where, r.text) for r in read_text_table(file, text_column, None, None)]
    if not file.is_file():
        raise DataError(f"{file}: the text file does not exist.")
    documents: list[Document] = []
    lines: list[str] = []
    first = 0

    def close() -> None:
        if lines:
            where = f"{file} line {first}"
            documents.append(Document(f"{file}#{first}", where, "\n".join(lines)))
            lines.clear()

    with open(file, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{file} line {number}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
            if not line.strip() or prompts:
                close()
            if line.strip():
                if not lines:
                    first = number
                lines.append(line.rstrip())
        close()
    if not documents:
        raise DataError(f"{file}: no text; expected " + ("one prompt per line." if prompts
                                                         else "documents separated by blank lines."))
    return documents


@dataclass
class TokenRows(PackedRows):
    """A tokenised split (what the cache stores): ids (N,) int32 of every row one after another,
    starts (R + 1,) int64 row boundaries (blocks or documents), row_ids (R,) the document each row
    comes from (for predictions; a block names its first document), truncated_rows: the ``where``
    of every document cut to ``max_length`` (rows packing only)."""

    ids: np.ndarray
    starts: np.ndarray
    row_ids: list[str]
    truncated_rows: list[str]


def encode_documents(documents: list[Document], tokenizer: Tokenizer, packing: str, max_length: int,
                     end: int | None) -> TokenRows:
    """``documents`` as rows of at most ``max_length`` tokens. ``end`` (the end-of-text id) follows
    every document; None adds nothing (prompts). ``packing`` "blocks": the documents one after
    another cut into blocks of ``max_length``; "rows": one row per document, cut to fit."""
    encodings = tokenizer.encode_raw([d.text for d in documents], truncation=False, add_special_tokens=False)
    pieces = [np.asarray(e.ids + ([] if end is None else [end]), dtype=np.int32) for e in encodings]
    if not any(len(p) for p in pieces):
        raise DataError(f"{documents[0].where}: no tokens; every text is empty once tokenised.")
    if packing == "blocks":
        stream = np.concatenate(pieces)
        starts = np.append(np.arange(0, len(stream), max_length), len(stream))
        doc_of_token = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
        row_ids = [documents[int(doc_of_token[s])].id for s in starts[:-1]]
        return TokenRows(stream, starts.astype(np.int64), row_ids, [])
    kept = [p[:max_length] for p in pieces]
    truncated = [d.where for d, p in zip(documents, pieces) if len(p) > max_length]
    starts = np.concatenate([[0], np.cumsum([len(p) for p in kept])]).astype(np.int64)
    return TokenRows(np.concatenate(kept), starts, [d.id for d in documents], truncated)


class RowsDataset(Dataset):
    """TokenRows -> {"input_ids": (T,) int array, "id": the row's document}."""

    def __init__(self, rows: TokenRows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.rows.ids[self.rows.span(index)], "id": self.rows.row_ids[index]}


class CausalCollate:
    """Pads rows to the longest of the batch with ``pad``: on the right for training and
    evaluation (``labels`` = the ids, -100 on padding), on the left for prompts (``left``:
    the last prompt token of every row is at the end, where generation continues)."""

    def __init__(self, pad: int, left: bool = False):
        self.pad, self.left = pad, left

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(x["input_ids"]) for x in items)
        input_ids = torch.full((len(items), width), self.pad, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for k, x in enumerate(items):
            t = len(x["input_ids"])
            where = slice(width - t, width) if self.left else slice(0, t)
            input_ids[k, where] = torch.from_numpy(x["input_ids"].astype(np.int64))
            attention_mask[k, where] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "ids": [x["id"] for x in items]}
        if not self.left:
            batch["labels"] = input_ids.masked_fill(attention_mask == 0, IGNORE)
        return batch


class CausalLMDataModule(TextSplitDataModule):
    """Causal language modelling batches from a text corpus, and prompts for ``predict``.

    Sources (one of): ``train_file`` / ``val_file`` / ``test_file``, UTF-8 text with blank lines
    between documents (lines kept as written), or CSV/JSONL with one document per row in
    ``text_column``; or ``hf_dataset`` with a ``text_column`` of documents.

    Tokenizer (one of): ``tokenizer``, a folder holding ``tokenizer.json`` or ``vocab.json`` +
    ``merges.txt`` (a downloaded GPT-2's, or one written by ``python -m lit_tasks tokenizer
    --type bpe``); or ``train_tokenizer_vocab_size``: a byte-level BPE of that size trained on
    the train split (see ``trained_tokenizer``). The end-of-text token (``eos``) separates
    documents; a tokenizer without a pad token pads with it (GPT-2's), the attention mask
    telling padding apart. ``vocab_size`` is linked into ``model.vocab_size``.

    Batches::

        {
          "input_ids":      (B, T) int64, padded with the pad id (right; left for predict),
          "attention_mask": (B, T) int64, 1 for tokens, 0 for padding,
          "labels":         (B, T) int64, the input ids, -100 on padding (not for predict),
          "ids":            B row names ("<file>#<row or line>"),
        }

    Args:
        text_column: the column (CSV header, JSONL key or HF column) holding a document (or a
            prompt in a CSV/JSONL predict_file); plain-text files have none.
        predict_file: prompts to continue, one per non-blank line (text) or per row (CSV/JSONL,
            text_column), kept whole; None: predict continues the beginnings of the test
            documents (prompt_length).
        packing: "blocks" packs the documents, each followed by end-of-text, into blocks of
            max_length tokens (GPT-2's pretraining: nothing padded but the last block's tail);
            "rows" keeps one document per row with its end-of-text (so the model learns to
            stop), cut to max_length (counted in truncated) and padded.
        max_length: tokens per block ("blocks"), or the most per row ("rows"), end-of-text
            tokens included.
        prompt_length: without predict_file, the tokens at the start of each test document
            that predict keeps as its prompt.
        train_file, val_file, test_file, hf_dataset, tokenizer, preprocessor,
            train_tokenizer_vocab_size, batch_size, eval_batch_size, num_workers, cache_dir:
            see TextSplitDataModule.
    """

    cache_name, arrays = "clm", TokenRows
    truncation = "cut (rows packing)"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        hf_dataset: str | None = None,
        text_column: str = "text",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        train_tokenizer_vocab_size: int | None = None,
        packing: Literal["blocks", "rows"] = "blocks",
        max_length: int = 128,
        prompt_length: int = 16,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
    ):
        if packing not in PACKINGS:
            raise ConfigError(f"CausalLMDataModule: data.packing is {packing!r}; expected one of {list(PACKINGS)}.")
        if max_length < 2:
            raise ConfigError(f"CausalLMDataModule: data.max_length is {max_length}; a row needs at least 2 tokens.")
        if prompt_length < 1:
            raise ConfigError(f"CausalLMDataModule: data.prompt_length is {prompt_length}; expected >= 1.")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=predict_file,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=False, cache_dir=cache_dir, train_tokenizer_vocab_size=train_tokenizer_vocab_size)
        self.save_hyperparameters()
        self.text_column = text_column
        self.packing, self.prompt_length = packing, prompt_length

    # --------------------------------------------------------------------------- sources

    def _read_file(self, file: str, labelled: bool) -> list[Document]:
        return read_corpus(file, self.text_column, prompts=not labelled)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[Document]:
        rows = read_hf_split(ds, self.hf_dataset, name, self.text_column, None, None, False, "|")
        return [Document(r.id, r.where, r.text) for r in rows]

    def _check_train_data(self, stage_or_split: str | None) -> None:
        """Only predict works without training data (from a model that has its tokenizer)."""
        if stage_or_split != "predict" and not (self.files["train"] or self._hf is not None):
            raise DataError("CausalLMDataModule: no training data given; set data.train_file or data.hf_dataset.")

    def _cache_settings(self, split: str) -> dict[str, Any]:
        prompts = split == "predict"
        return {"version": CACHE_VERSION, "split": split, "text": self.text_column,
                "packing": "prompts" if prompts else self.packing,
                "max_length": self.prompt_length if prompts and not self.files["predict"] else self.max_length}

    # --------------------------------------------------------------------------- tokenizer

    def _tokenizer_texts(self) -> Iterable[str]:
        return (d.text for d in self.rows("train"))

    def _open_tokenizer(self) -> Tokenizer:
        tokenizer = super()._open_tokenizer()
        if tokenizer.eos is None:
            raise DataError(f"tokenizer {tokenizer.source} has no end-of-text token (eos_token in "
                            "tokenizer_config.json, e.g. <|endoftext|>); causal LM data puts one after every document.")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (linked into the model's embedding and LM head)."""
        return self.tokenizer.vocab_size

    # --------------------------------------------------------------------------- rows

    def _encode(self, split: str) -> TokenRows:
        documents, tk = self.rows(split), self.tokenizer
        if split != "predict":
            return encode_documents(documents, tk, self.packing, self.max_length, tk.eos)
        # Prompts are kept whole (the task cuts what its context cannot hold), the beginnings of
        # test documents cut to prompt_length on purpose: neither counts as truncated.
        limit = np.iinfo(np.int32).max if self.files["predict"] else self.prompt_length
        return dataclasses.replace(encode_documents(documents, tk, "rows", limit, None), truncated_rows=[])

    def _make_dataset(self, split: str) -> RowsDataset:
        return RowsDataset(self.encoded(split))

    def _collate(self, split: str) -> CausalCollate:
        return CausalCollate(self.tokenizer.pad, left=split == "predict")
