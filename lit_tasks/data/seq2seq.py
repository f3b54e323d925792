"""Seq2SeqDataModule: source -> target text pairs (summarization, translation) from CSV/JSONL files or
a saved HF ``datasets`` folder, for encoder-decoder models (BART, mBART, T5).

Both sides are tokenised with the tokenizer's own special-token template (BART: ``<s> ... </s>``,
T5: ``... </s>``, mBART: ``... </s> <lang>``; eos is appended where the tokenizer has no template),
each cut to its own length limit with the special tokens kept (a cut row is counted and logged
per side, never silent). The target ids are the
``labels``; shifting them right into the decoder's input is the task's job, since the start
token belongs to the model (``decoder_start_token_id``). Evaluation compares generated text with
the target *text* as written (``targets`` in the batch), not with its possibly cut tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.text import TextRow, read_hf_split, read_text_table
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule, pad_sequences
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.tokenizer import Tokenizer

CACHE_VERSION = 1  # bump when the cached arrays change meaning
TRAINED_TYPES = ("bart-bpe", "unigram")  # what train_tokenizer_vocab_size can train (BART's BPE, T5's Unigram)
IGNORE = -100  # the label of padding (PyTorch's cross-entropy ignore_index)


@dataclass
class PairRows(PackedRows):
    """A tokenised split: source ids of every row one after another (``ids``, ``starts``), the
    target ids likewise (``target_ids``, ``target_starts``; empty rows when the split has no
    targets, predict), and the ``where`` of each row cut to a length limit with the side cut."""

    ids: np.ndarray
    starts: np.ndarray
    target_ids: np.ndarray
    target_starts: np.ndarray
    truncated_rows: list[str]


def _encode_side(tokenizer: Tokenizer, texts: list[str], max_length: int,
                 target: bool) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(flat ids, starts, cut per text): ``texts`` with the tokenizer's template (its target one for
    ``target``: mBART's target language), at most ``max_length`` tokens each, with eos appended
    when the template has none (a GPT-2-style tokenizer)."""
    appends = tokenizer.eos not in tokenizer.encode_raw(["a"], truncation=False, target=target)[0].ids
    encodings = tokenizer.encode_raw(texts, max_length=max_length - 1 if appends else max_length, target=target)
    rows = [e.ids + [tokenizer.eos] if appends else e.ids for e in encodings]
    lengths = [len(r) for r in rows]
    ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=sum(lengths))
    return ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), [bool(e.overflowing) for e in encodings]


def encode_pairs(rows: list[TextRow], tokenizer: Tokenizer, prefix: str, max_source_length: int,
                 max_target_length: int, targets: bool) -> PairRows:
    """Sources (``prefix`` + text) and, with ``targets``, targets tokenised with the tokenizer's
    template and cut to their limits (special tokens kept)."""
    ids, starts, cut = _encode_side(tokenizer, [prefix + r.text for r in rows], max_source_length, False)
    truncated = [f"{r.where} (source)" for r, c in zip(rows, cut) if c]
    if not targets:
        return PairRows(ids, starts, np.zeros(0, np.int32), np.zeros(len(rows) + 1, np.int64), truncated)
    target_ids, target_starts, cut = _encode_side(tokenizer, [r.pair for r in rows], max_target_length, True)
    truncated += [f"{r.where} (target)" for r, c in zip(rows, cut) if c]
    return PairRows(ids, starts, target_ids, target_starts, truncated)


class PairDataset(Dataset):
    """One row: {"input_ids": (S,) int array, "labels": (T,) int array, "target": the target text or
    None, "id", "index"}."""

    def __init__(self, encoded: PairRows, rows: list[TextRow]):
        self.encoded, self.rows = encoded, rows

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> dict[str, Any]:
        e, row = self.encoded, self.rows[index]
        labels = e.target_ids[e.target_starts[index]:e.target_starts[index + 1]]
        return {"input_ids": e.ids[e.span(index)], "labels": labels, "target": row.pair, "id": row.id,
                "index": int(index)}


class Seq2SeqCollate:
    """Right-pads sources with ``pad`` and labels with -100 to the longest of the batch."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids = pad_sequences([x["input_ids"] for x in items], self.pad)
        lengths = torch.tensor([len(x["input_ids"]) for x in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None] < lengths[:, None]).long()  # (B, S)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "index": torch.tensor([x["index"] for x in items]), "ids": [x["id"] for x in items]}
        if all(len(x["labels"]) for x in items):
            batch["labels"] = pad_sequences([x["labels"] for x in items], IGNORE)
        if all(x["target"] is not None for x in items):
            batch["targets"] = [x["target"] for x in items]
        return batch


class Seq2SeqDataModule(TextSplitDataModule):
    """Source -> target pairs for summarization and translation.

    Sources (one of): ``train_file`` / ``val_file`` / ``test_file``, CSV (with a header) or JSONL
    with the texts in ``source_column`` and ``target_column``; or ``hf_dataset``, a saved HF
    ``DatasetDict`` with those columns. ``predict_file`` needs the source column only. An empty
    or missing source or target is an error naming the file and row.

    Each side is cut to its length limit (``max_source_length`` / ``max_target_length``); cut
    rows are counted per split in ``truncated`` and logged, naming rows and sides. The tokenizer
    is ``tokenizer``, one trained on the train split's sources and targets
    (``train_tokenizer_vocab_size``) or the ``preprocessor``'s; ``vocab_size`` is linked into
    the model.

    Batches::

        {
          "input_ids":      (B, S) int64, sources, right-padded with the pad id,
          "attention_mask": (B, S) int64, 1 for tokens, 0 for padding,
          "labels":         (B, T) int64, targets, -100 on padding (not for predict),
          "targets":        B target texts as written (not for predict),
          "index":          (B,) int64 row index in the split, "ids": B row names,
        }

    Args:
        source_column: the column (CSV header, JSONL key or HF column) of the source text.
        target_column: the column of the target text; not read from predict_file.
        source_prefix: text put before every source, e.g. T5's task prefix "summarize: ";
            "": none.
        train_tokenizer_vocab_size: train a tokenizer of this many tokens (of
            train_tokenizer_type) on the train split's sources and targets, kept in cache_dir
            (required), instead of loading one; not with tokenizer. None: load tokenizer (or
            the preprocessor's).
        train_tokenizer_type: what train_tokenizer_vocab_size trains: "bart-bpe", BART's
            byte-level BPE; "unigram", T5's SentencePiece Unigram with 100 sentinels.
        source_lang: mBART tokenizers only: the language code of the sources (e.g. en_XX),
            which the tokenizer puts on that side; a code it lacks is an error. None: the
            tokenizer's src_lang (tokenizer_config.json; default en_XX).
        target_lang: mBART tokenizers only: the language code of the targets (e.g. de_DE).
            None: source_lang when that is given, else the tokenizer's tgt_lang.
        max_source_length: the most tokens of a source, special tokens included (>= 2).
        max_target_length: the most tokens of a target, special tokens included (>= 2).
        train_file, val_file, test_file, predict_file, hf_dataset, tokenizer, preprocessor,
            batch_size, eval_batch_size, num_workers, group_by_length, cache_dir: see
            TextSplitDataModule.
    """

    cache_name, arrays = "s2s", PairRows
    truncation = "cut"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        hf_dataset: str | None = None,
        source_column: str = "source",
        target_column: str = "target",
        source_prefix: str = "",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        train_tokenizer_vocab_size: int | None = None,
        train_tokenizer_type: Literal["bart-bpe", "unigram"] = "bart-bpe",
        source_lang: str | None = None,
        target_lang: str | None = None,
        max_source_length: int = 256,
        max_target_length: int = 64,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = False,
        cache_dir: str | None = None,
    ):
        if train_tokenizer_type not in TRAINED_TYPES:
            raise ConfigError(f"Seq2SeqDataModule: data.train_tokenizer_type is {train_tokenizer_type!r}; expected one "
                              f"of {list(TRAINED_TYPES)}.")
        for key, value in (("max_source_length", max_source_length), ("max_target_length", max_target_length)):
            if value < 2:
                raise ConfigError(f"Seq2SeqDataModule: data.{key} is {value}; expected at least 2 tokens.")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=predict_file,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor,
                         max_length=max_source_length, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, group_by_length=group_by_length, cache_dir=cache_dir,
                         train_tokenizer_vocab_size=train_tokenizer_vocab_size)
        self.save_hyperparameters()
        self.source_column, self.target_column, self.source_prefix = source_column, target_column, source_prefix
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.trained_tokenizer_kind = train_tokenizer_type
        self.source_lang, self.target_lang = source_lang, target_lang

    # --------------------------------------------------------------------------- sources

    def _read_file(self, file: str, labelled: bool) -> list[TextRow]:
        return read_text_table(file, self.source_column, self.target_column if labelled else None, None)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[TextRow]:
        return read_hf_split(ds, self.hf_dataset, name, self.source_column,
                             self.target_column if labelled else None, None, False, "|")

    def _check_train_data(self, stage_or_split: str | None) -> None:
        """Only predict works without training data (from a model that has its tokenizer)."""
        if stage_or_split != "predict" and not (self.files["train"] or self._hf is not None):
            raise DataError("Seq2SeqDataModule: no training data given; set data.train_file or data.hf_dataset.")

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "split": split, "columns": [self.source_column, self.target_column],
                "prefix": self.source_prefix, "labelled": self._labelled(split),
                "languages": [self.source_lang, self.target_lang],
                "lengths": [self.max_source_length, self.max_target_length]}

    # --------------------------------------------------------------------------- tokenizer

    def _tokenizer_texts(self) -> Iterable[str]:
        for row in self.rows("train"):
            yield row.text
            yield row.pair

    def _open_tokenizer(self) -> Tokenizer:
        tokenizer = super()._open_tokenizer()
        if self.source_lang or self.target_lang:
            try:
                tokenizer.set_languages(self.source_lang or tokenizer.src_lang, self.target_lang)
            except ConfigError as e:
                raise ConfigError(f"data.source_lang / data.target_lang: {e}") from None
        if tokenizer.eos is None:
            raise DataError(f"tokenizer {tokenizer.source} has no end-of-sequence token (eos_token in "
                            "tokenizer_config.json, e.g. </s>); seq2seq targets end with one.")
        return tokenizer

    def decoder_tokens(self) -> dict[str, int]:
        """What mBART's language codes ask of the decoder: a target written ``tokens </s> code``
        (mBART-cc25) is decoded from the code (``decoder_start_token_id``); one written ``code tokens
        </s>`` (mBART-50) starts with the code (``forced_bos_token_id``). {} for other tokenizers."""
        tk = self.tokenizer
        if not tk.language_style:
            return {}
        code = tk.language_id(tk.tgt_lang)
        return {"decoder_start_token_id": code} if tk.language_style == "suffix" else {"forced_bos_token_id": code}

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (linked into the model's embedding and LM head)."""
        return self.tokenizer.vocab_size

    # --------------------------------------------------------------------------- rows

    def _encode(self, split: str) -> PairRows:
        return encode_pairs(self.rows(split), self.tokenizer, self.source_prefix, self.max_source_length,
                            self.max_target_length, self._labelled(split))

    def _make_dataset(self, split: str) -> PairDataset:
        return PairDataset(self.encoded(split), self.rows(split))

    def _collate(self, split: str) -> Seq2SeqCollate:
        return Seq2SeqCollate(self.tokenizer.pad)
