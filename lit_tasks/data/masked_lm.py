"""MaskedLMDataModule: BERT pretraining data (masked LM, optionally next-sentence prediction)
from a plain-text corpus, CSV/JSONL files or a saved HF ``datasets`` folder.

Devlin et al. 2019, "BERT", Sec. 3.1 and App. A.1: token sequences of up to ``max_length``
pieces are packed from consecutive sentences of a document; 15% of the pieces are chosen for
prediction, of which 80% become ``[MASK]``, 10% a random token and 10% stay unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.samplers import run_seed
from lit_tasks.data.tables import TABLE_EXTENSIONS
from lit_tasks.data.text import read_hf_split, read_text_table
from lit_tasks.data.text_base import CachedArrays, PackedRows, TextSplitDataModule
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cached arrays change meaning
EVAL_SEED = 20190524  # val/test pairs and masks depend on this and the data only, never on the run's seed
IGNORE = -100  # the label of positions that are not predicted (PyTorch's cross-entropy ignore_index)


# ------------------------------------------------------------------------------------ reading


def read_documents(file: str | Path, text_column: str = "text") -> list[list[str]]:
    """The documents of a corpus file, each a list of sentences.

    A ``.csv`` / ``.jsonl`` / ``.ndjson`` file holds one document per row in ``text_column``,
    its lines being its sentences. Any other file is plain UTF-8 text: one sentence per line,
    blank lines between documents. Blank lines inside a row are ignored.
    """
    file = Path(file).expanduser()
    if file.suffix.lower() in TABLE_EXTENSIONS:
        rows = read_text_table(file, text_column, None, None)
        return [doc for doc in (_sentences(r.text) for r in rows) if doc]
    if not file.is_file():
        raise DataError(f"{file}: the corpus file does not exist.")
    documents, current = [], []
    with open(file, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise DataError(f"{file} line {number}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
            if line:
                current.append(line)
            elif current:
                documents.append(current)
                current = []
    if current:
        documents.append(current)
    if not documents:
        raise DataError(f"{file}: no text; expected one sentence per line, blank lines between documents.")
    return documents


def _sentences(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ tokens


@dataclass
class Corpus(CachedArrays):
    """A tokenised split, without special tokens (what the cache stores).

    ids (N_tokens,) int32 word pieces of every sentence one after another; word_starts
    (N_tokens,) bool, True where a piece begins a word; sentence_starts (S + 1,) int64 token
    boundaries of the sentences; document_starts (D + 1,) int64 sentence boundaries of the documents.
    """

    ids: np.ndarray
    word_starts: np.ndarray
    sentence_starts: np.ndarray
    document_starts: np.ndarray


def tokenize_documents(documents: list[list[str]], tokenizer: Tokenizer) -> Corpus:
    """Word pieces of every sentence (no special tokens), with word boundaries from the pre-tokenizer."""
    sentences = [s for doc in documents for s in doc]
    encodings = tokenizer.encode_raw(sentences, truncation=False, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    sentence_starts = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(sentence_starts[-1]))
    word_starts = np.fromiter(  # `Encoding.word_ids` builds a new list per access: read it once per sentence
        (n == 0 or w != words[n - 1] for words in (e.word_ids for e in encodings) for n, w in enumerate(words)),
        dtype=bool, count=len(ids),
    )
    document_starts = np.concatenate([[0], np.cumsum([len(doc) for doc in documents])])
    return Corpus(ids, word_starts, sentence_starts, document_starts)


# ------------------------------------------------------------------------------------ packing


@dataclass
class Sequences(PackedRows):
    """Model inputs with special tokens, before masking.

    ids (N,) int32 and type_ids (N,) int8 of all sequences one after another; word_starts (N,)
    bool; starts (S + 1,) int64 boundaries; next_sentence (S,) int64: 0 when segment B follows
    A in its document, 1 when B is a random segment, -1 without NSP; truncated: pairs whose
    segments were cut to fit ``max_length``.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    word_starts: np.ndarray
    starts: np.ndarray
    next_sentence: np.ndarray
    truncated: int = 0


def _pieces(corpus: Corpus, limit: int) -> list[list[np.ndarray]]:
    """Per document, its sentences as index arrays into ``corpus.ids``; a sentence longer than
    ``limit`` pieces is cut into consecutive parts of at most ``limit`` (no piece is dropped)."""
    docs = []
    s = corpus.sentence_starts
    for d in range(len(corpus.document_starts) - 1):
        parts = []
        for k in range(int(corpus.document_starts[d]), int(corpus.document_starts[d + 1])):
            for a in range(int(s[k]), int(s[k + 1]), limit):
                parts.append(np.arange(a, min(a + limit, int(s[k + 1]))))
        if parts:
            docs.append(parts)
    return docs


class _Builder:
    """Collects sequences ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` as flat arrays."""

    def __init__(self, corpus: Corpus, cls: int, sep: int):
        self.corpus, self.cls, self.sep = corpus, cls, sep
        self.ids, self.types, self.words, self.lengths, self.next = [], [], [], [], []

    def add(self, a: np.ndarray, b: np.ndarray | None = None, is_random: int = -1) -> None:
        c = self.corpus
        segments = [a] if b is None else [a, b]
        ids = [np.array([self.cls], dtype=np.int32)]
        types = [np.zeros(1, dtype=np.int8)]
        words = [np.ones(1, dtype=bool)]
        for t, seg in enumerate(segments):
            starts = c.word_starts[seg].copy()
            starts[:1] = True  # a segment may begin inside a word (a cut sentence): its first piece opens one
            ids += [c.ids[seg], np.array([self.sep], dtype=np.int32)]
            types += [np.full(len(seg) + 1, t, dtype=np.int8)]
            words += [starts, np.ones(1, dtype=bool)]
        self.ids += ids
        self.types += types
        self.words += words
        self.lengths.append(sum(len(x) for x in ids))
        self.next.append(is_random)

    def build(self, truncated: int = 0, source: str = "masked-LM data") -> Sequences:
        if not self.lengths:
            raise DataError(f"{source}: no word pieces; every line is empty once tokenised (only whitespace or "
                            "characters the tokenizer drops, such as control characters).")
        starts = np.concatenate([[0], np.cumsum(self.lengths)])
        return Sequences(np.concatenate(self.ids), np.concatenate(self.types), np.concatenate(self.words), starts,
                         np.array(self.next, dtype=np.int64), truncated)


def pack_sentences(corpus: Corpus, max_length: int, cls: int, sep: int, source: str = "masked-LM data") -> Sequences:
    """``[CLS] s1 s2 ... [SEP]``: consecutive sentences of one document while they fit in
    ``max_length`` (RoBERTa's DOC-SENTENCES packing, Liu et al. 2019, Sec. 4.2). ``source``
    names the data in errors."""
    builder = _Builder(corpus, cls, sep)
    limit = max_length - 2
    for doc in _pieces(corpus, limit):
        current: list[np.ndarray] = []
        size = 0
        for part in doc:
            if current and size + len(part) > limit:
                builder.add(np.concatenate(current))
                current, size = [], 0
            current.append(part)
            size += len(part)
        if current:
            builder.add(np.concatenate(current))
    return builder.build(source=source)


def pack_pairs(corpus: Corpus, max_length: int, cls: int, sep: int, rng: np.random.Generator,
               source: str = "masked-LM data") -> Sequences:
    """``[CLS] A [SEP] B [SEP]`` pairs for next-sentence prediction (BERT, Sec. 3.1 Task #2 and
    its reference data script): sentences of a document are gathered until they fill
    ``max_length - 3`` pieces; A is the first 1..k-1 of them; with probability 1/2 (always when
    only one sentence was gathered) B is a run of sentences from a random other document
    (label 1) and the sentences not used are put back, otherwise B is the rest (label 0). A pair
    that is still too long loses pieces from the end of its longer segment (counted). ``source``
    names the data in errors."""
    target = max_length - 3
    docs = _pieces(corpus, target)
    if len(docs) < 2:
        raise DataError(f"{source}: next-sentence prediction (nsp) needs at least two documents, found "
                        f"{len(docs)} with word pieces (blank lines separate documents in a text file; one row is "
                        "one document in a table).")
    builder = _Builder(corpus, cls, sep)
    truncated = 0
    for d, doc in enumerate(docs):
        chunk: list[np.ndarray] = []
        size, i = 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            size += len(doc[i])
            if i == len(doc) - 1 or size >= target:
                a_end = 1 if len(chunk) < 2 else int(rng.integers(1, len(chunk)))
                a = np.concatenate(chunk[:a_end])
                if len(chunk) == 1 or rng.random() < 0.5:
                    is_random = 1
                    other = int(rng.integers(len(docs) - 1))
                    other += other >= d  # any document but this one
                    start = int(rng.integers(len(docs[other])))
                    picked, room = [], target - len(a)
                    for part in docs[other][start:]:
                        picked.append(part)
                        if sum(len(p) for p in picked) >= room:
                            break
                    b = np.concatenate(picked)
                    i -= len(chunk) - a_end  # the unused sentences start the next chunk
                else:
                    is_random, b = 0, np.concatenate(chunk[a_end:])
                if len(a) + len(b) > target:  # cut the longer segment, piece by piece, from its end
                    truncated += 1
                    la, lb = len(a), len(b)
                    while la + lb > target:
                        la, lb = (la - 1, lb) if la > lb else (la, lb - 1)
                    a, b = a[:la], b[:lb]
                builder.add(a, b, is_random)
                chunk, size = [], 0
            i += 1
    return builder.build(truncated, source)


class MLMDataset(Dataset):
    """Sequences -> ``{"input_ids", "token_type_ids", "word_starts", "next_sentence", "index", "seed"}``.

    Training indices come from :class:`lit_tasks.data.samplers.ResumableSampler` as
    :class:`~lit_tasks.data.samplers.SeededIndex` (a seed per run, epoch and index: masks drawn
    anew each epoch, the same after a resume); a plain int index (val/test) has seed None."""

    def __init__(self, sequences: Sequences):
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, span = self.sequences, self.sequences.span(index)
        return {"input_ids": s.ids[span], "token_type_ids": s.type_ids[span], "word_starts": s.word_starts[span],
                "next_sentence": int(s.next_sentence[index]), "index": int(index), "seed": getattr(index, "seed", None)}


# ------------------------------------------------------------------------------------ masking


class MaskingCollate:
    """Masks sequences (BERT, Sec. 3.1 Task #1) and pads them to the longest of the batch.

    Of the non-special pieces (never [CLS], [SEP], [PAD], [UNK], [MASK]) round(p * n) (at least
    one) are chosen; with ``whole_word`` whole words are chosen (every piece of a word, a
    word that would overshoot the count is skipped, as in BERT's whole-word masking). Of the
    chosen pieces 80% become [MASK], 10% a random non-special token, 10% stay. Labels hold the
    original id at chosen positions and -100 elsewhere (padding included).

    Randomness: each sequence draws from its own generator, seeded by the item's ``seed`` in
    training (the sampler's per-(run seed, epoch, index) seed: new masks every epoch, the same
    for the same run seed whatever the batch size, worker count, rank or a resume) and by
    ``(EVAL_SEED, index)`` for val/test items (no seed): evaluation masks are the same in every
    epoch and every run, so val metrics are comparable.
    """

    def __init__(self, tokenizer: Tokenizer, probability: float = 0.15, whole_word: bool = False):
        self.pad, self.mask = tokenizer.pad, tokenizer.mask
        special = [tokenizer.backend.token_to_id(t) for t in tokenizer.special_tokens.values()]
        self.is_special = np.zeros(tokenizer.vocab_size, dtype=bool)
        self.is_special[[i for i in special if i is not None]] = True
        self.normal_ids = np.flatnonzero(~self.is_special)
        self.probability, self.whole_word = probability, whole_word

    @staticmethod
    def rng(index: int, seed: int | None) -> np.random.Generator:
        return np.random.default_rng([EVAL_SEED, index] if seed is None else seed)

    def mask_sequence(self, ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator):
        """(masked ids, labels) of one sequence: ids (T,) int, word_starts (T,) bool."""
        ids = ids.astype(np.int64)
        labels = np.full(len(ids), IGNORE, dtype=np.int64)
        candidates = np.flatnonzero(~self.is_special[ids])
        if len(candidates) == 0:
            return ids, labels
        count = max(1, int(round(self.probability * len(candidates))))
        if self.whole_word:
            word = np.cumsum(word_starts)[candidates]  # word number of each candidate piece
            bounds = np.flatnonzero(np.diff(word)) + 1
            words = np.split(candidates, bounds)
            chosen, total = [], 0
            for w in rng.permutation(len(words)):
                if total + len(words[w]) <= count:
                    chosen.append(words[w])
                    total += len(words[w])
                if total == count:
                    break
            chosen = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
        else:
            chosen = np.sort(rng.choice(candidates, size=count, replace=False))
        labels[chosen] = ids[chosen]
        draw = rng.random(len(chosen))
        ids[chosen[draw < 0.8]] = self.mask
        swap = chosen[(draw >= 0.8) & (draw < 0.9)]
        ids[swap] = rng.choice(self.normal_ids, size=len(swap))
        return ids, labels

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(x["input_ids"]) for x in items)
        n = len(items)
        input_ids = torch.full((n, width), self.pad, dtype=torch.long)
        token_type_ids = torch.zeros((n, width), dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        for k, x in enumerate(items):
            t = len(x["input_ids"])
            ids, lab = self.mask_sequence(x["input_ids"], x["word_starts"], self.rng(x["index"], x["seed"]))
            input_ids[k, :t] = torch.from_numpy(ids)
            labels[k, :t] = torch.from_numpy(lab)
            token_type_ids[k, :t] = torch.from_numpy(x["token_type_ids"].astype(np.int64))
            attention_mask[k, :t] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "labels": labels}
        if items[0]["next_sentence"] >= 0:
            batch["next_sentence_label"] = torch.tensor([x["next_sentence"] for x in items], dtype=torch.long)
        return batch


# --------------------------------------------------------------------------------- DataModule


class MaskedLMDataModule(TextSplitDataModule):
    """Masked-LM (and optionally next-sentence) pretraining batches from a text corpus.

    Sources (one of):

    - ``train_file`` / ``val_file`` / ``test_file``: plain text, one sentence per line and a
      blank line between documents; or CSV/JSONL (``.csv``, ``.jsonl``, ``.ndjson``) with one
      document per row in ``text_column`` (its lines are its sentences);
    - ``hf_dataset``: a ``DatasetDict.save_to_disk`` folder (splits ``train``, ``validation`` or
      ``val``, ``test``) with a ``text_column`` of documents.

    Tokenizer (one of): ``tokenizer``, a folder holding ``tokenizer.json`` or ``vocab.txt`` (a
    checkpoint's, or one written by ``python -m lit_tasks tokenizer``); or
    ``train_tokenizer_vocab_size``: a WordPiece tokenizer trained on the train split (the folder
    is logged and is a valid ``tokenizer`` for later runs). ``vocab_size`` is the tokenizer's;
    the CLI links it into ``model.vocab_size``.

    Sequences are built once per split from consecutive sentences of one document, up to
    ``max_length`` pieces (a longer sentence is cut into parts, nothing is dropped); ``nsp``
    pairs: see :func:`pack_pairs` (pairs cut to fit are counted in ``truncated``). Train pairs
    depend on the run's seed; val/test pairs and masks do not (fixed for comparable metrics).
    Masking is dynamic: see :class:`MaskingCollate` (``mlm_probability``, ``whole_word_mask``);
    training masks are seeded per run seed, epoch and sample by the resumable training sampler
    (:mod:`lit_tasks.data.samplers`), so a run resumed mid-epoch sees the masks it would have.

    Batches::

        {
          "input_ids":      (B, T) int64, masked, padded with the tokenizer's pad id,
          "attention_mask": (B, T) int64, 1 for tokens, 0 for padding,
          "token_type_ids": (B, T) int64, 0 for [CLS] A [SEP], 1 for B [SEP],
          "labels":         (B, T) int64, the original id where a piece is to be predicted, -100 elsewhere,
          "next_sentence_label": (B,) int64, 0 B follows A, 1 B is random (only with nsp),
        }

    ``cache_dir`` keeps each tokenised split in a file named by a fingerprint of the data, the
    tokenizer files and ``text_column``. Under data parallelism training order is sharded by
    rank and val/test rows are each evaluated once.

    Args:
        text_column: the column (CSV header, JSONL key or HF column) holding a document, its
            lines its sentences; plain-text files have none.
        train_tokenizer_vocab_size: train a lowercasing WordPiece tokenizer of this many tokens
            on the train split, kept in cache_dir/tokenizer-<fingerprint>/ (cache_dir required)
            and reused while the train data is unchanged. Give exactly one of this and
            tokenizer.
        nsp: next-sentence prediction: rows are [CLS] A [SEP] B [SEP] pairs, B the true
            continuation of A or, half the time, a segment of another document, with a
            next_sentence_label; False: [CLS] sentences... [SEP] rows, masked LM only.
        mlm_probability: the share of a row's non-special pieces chosen for prediction (at
            least one), of which 80% become [MASK], 10% a random token, 10% stay; 0 < p < 1.
        whole_word_mask: choose whole words (every piece of a word) instead of single pieces.
        train_file, val_file, test_file, hf_dataset, tokenizer, max_length, batch_size,
            eval_batch_size, num_workers, cache_dir: see TextSplitDataModule.
    """

    cache_name, arrays, trained_tokenizer_kind = "mlm", Corpus, "WordPiece"

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        hf_dataset: str | None = None,
        text_column: str = "text",
        tokenizer: str | None = None,
        train_tokenizer_vocab_size: int | None = None,
        max_length: int = 128,
        nsp: bool = False,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
    ):
        if train_file and hf_dataset:
            raise ConfigError("MaskedLMDataModule: give one data source, data.train_file or data.hf_dataset, not both.")
        if not (train_file or hf_dataset):
            raise ConfigError("MaskedLMDataModule: no training data; set data.train_file or data.hf_dataset.")
        if (tokenizer is None) == (train_tokenizer_vocab_size is None):
            raise ConfigError("MaskedLMDataModule: set exactly one of data.tokenizer (a tokenizer folder) and "
                              "data.train_tokenizer_vocab_size (train one on the train split).")
        if max_length < (5 if nsp else 3):
            raise ConfigError(f"MaskedLMDataModule: data.max_length is {max_length}; too short for the special tokens.")
        if not 0 < mlm_probability < 1:
            raise ConfigError(f"MaskedLMDataModule: data.mlm_probability is {mlm_probability}; expected 0 < p < 1.")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=None,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=None, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=False, cache_dir=cache_dir, train_tokenizer_vocab_size=train_tokenizer_vocab_size)
        self.save_hyperparameters()
        self.text_column = text_column
        self.nsp, self.mlm_probability, self.whole_word_mask = nsp, mlm_probability, whole_word_mask

    # --------------------------------------------------------------------------- sources

    def has_split(self, split: str) -> bool:
        return split != "predict" and super().has_split(split)

    def documents(self, split: str) -> list[list[str]]:
        """The split's documents, each a list of sentences (read anew on each call)."""
        return self._read(split)

    def _read_file(self, file: str, labelled: bool) -> list[list[str]]:
        return read_documents(file, self.text_column)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[list[str]]:
        rows = read_hf_split(ds, self.hf_dataset, name, self.text_column, None, None, False, "|")
        return [doc for doc in (_sentences(r.text) for r in rows) if doc]

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "split": split, "text": self.text_column}

    # --------------------------------------------------------------------------- tokenizer

    def _tokenizer_texts(self) -> Iterable[str]:
        return (sentence for doc in self.documents("train") for sentence in doc)

    def _open_tokenizer(self) -> Tokenizer:
        tokenizer = super()._open_tokenizer()
        absent = [role for role in ("cls", "sep", "pad", "mask") if getattr(tokenizer, role) is None]
        if absent:
            raise DataError(f"tokenizer {tokenizer.source} lacks the special token(s) {', '.join(absent)} that masked-LM "
                            "pretraining needs ([CLS], [SEP], [PAD], [MASK]).")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (linked into the model's embedding and MLM decoder)."""
        return self.tokenizer.vocab_size

    # --------------------------------------------------------------------------- sequences

    def corpus(self, split: str) -> Corpus:
        """The split's word pieces, from ``cache_dir`` when its fingerprint matches."""
        return self.encoded(split)

    def _encode(self, split: str) -> Corpus:
        return tokenize_documents(self.documents(split), self.tokenizer)

    def sequences(self, split: str) -> Sequences:
        corpus, tk = self.corpus(split), self.tokenizer
        source = f"{Path(self._source(split)).expanduser()} ({split} split)"
        if self.nsp:
            seed = EVAL_SEED if split != "train" else run_seed()
            seqs = pack_pairs(corpus, self.max_length, tk.cls, tk.sep, np.random.default_rng(seed), source)
        else:
            seqs = pack_sentences(corpus, self.max_length, tk.cls, tk.sep, source)
        self.truncated[split] = seqs.truncated
        if seqs.truncated:
            log.info("%s split: %d of %d sentence pairs were cut to max_length=%d pieces.",
                     split, seqs.truncated, len(seqs), self.max_length)
        return seqs

    # ------------------------------------------------------------------------- Lightning hooks

    def _make_dataset(self, split: str) -> MLMDataset:
        if split == "predict":
            raise DataError("MaskedLMDataModule: masked-LM pretraining has no predict step; use fit, validate or test.")
        return MLMDataset(self.sequences(split))

    def _collate(self, split: str) -> MaskingCollate:
        # training: a resumable loader (mid-epoch resume), its sampler seeds each sample's masks
        return MaskingCollate(self.tokenizer, self.mlm_probability, self.whole_word_mask)
