"""DenoisingDataModule: sequence-to-sequence pretraining data, a corrupted text to its original.

Two objectives, each a pure function on token-id arrays drawing from an explicit
``np.random.Generator``:

- BART (Lewis et al. 2019, "BART", Sec. 2.2 and 3): :func:`permute_sentences` then
  :func:`text_infilling`; the model reads ``<s> noised </s>`` and predicts ``<s> original </s>``.
- T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", Sec. 3.1.4):
  :func:`span_corruption`; inputs ``kept text with sentinels </s>``, targets
  ``sentinel span sentinel span ... </s>``.

Closeness to fairseq's ``DenoisingDataset`` (what BART was trained with): the order is the same
(permute the sentences, then mask spans) and a span, of Poisson length, becomes one ``<mask>``,
a zero-length span inserting one. Deliberate differences, all from the paper's description
rather than that code: spans count tokens, not whole words; exactly ``round(ratio * n)`` tokens
are masked (fairseq takes ``ceil``, and its spans may overlap and merge, so it masks a little
less); spans never touch (at least one kept token between two masks, so a mask always stands
for one span); no share of the masks is replaced by random tokens (fairseq's ``mask_random``,
0.1 in the settings reported for bart.large, with lambda 3.5, is not in the paper) and no
document rotation (BART's best setting has none). The sentence unit is a line of the corpus (one sentence per line in a text file, the
lines of a row in a table), not a split at full stops, which is language dependent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_tasks.data.masked_lm import Corpus, read_documents, tokenize_documents
from lit_tasks.data.text import read_hf_split
from lit_tasks.data.text_base import PackedRows, TextSplitDataModule, pad_sequences
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cached arrays change meaning
EVAL_SEED = 20191029  # val/test noise depends on this and the row index only, never on the run's seed
IGNORE = -100  # the label of padding (PyTorch's cross-entropy ignore_index)
OBJECTIVES = ("bart", "t5")
NEEDED_TOKENS = {"bart": {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "mask": "<mask>"},  # role -> usual spelling
                 "t5": {"eos": "</s>", "pad": "<pad>"}}


# ------------------------------------------------------------------------------------ BART


def permute_sentences(sentences: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The sentences in a uniformly random order (BART's sentence permutation; one may stay put)."""
    return [sentences[i] for i in rng.permutation(len(sentences))]


def infilling_spans(n: int, rng: np.random.Generator, ratio: float = 0.3,
                    poisson_lambda: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, lengths) of BART's text-infilling spans over ``n`` tokens.

    ``round(ratio * n)`` tokens are masked: span lengths are drawn from Poisson(``poisson_lambda``)
    until they cover that many, the last one shortened to hit it exactly. The ``n - masked``
    kept tokens leave ``n - masked + 1`` gaps (before the first, between two, after the last);
    each span goes into its own gap, chosen at random, so two spans never touch. ``gaps[i]``
    is the number of kept tokens before span ``i``, ascending. Spans that find no gap (only
    in very short texts) are merged: zero-length ones dropped first, then the last two joined.
    """
    masked = int(round(ratio * n))
    if masked == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lengths: list[int] = []
    while sum(lengths) < masked:
        lengths += rng.poisson(poisson_lambda, size=max(4, int(masked / poisson_lambda))).tolist()
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), masked)) + 1]
    lengths[-1] -= sum(lengths) - masked
    room = n - masked + 1
    while len(lengths) > room:
        if 0 in lengths:
            lengths.remove(0)
        else:
            lengths[-2] += lengths.pop()
    order = rng.permutation(len(lengths))  # the shortened last span goes anywhere
    gaps = np.sort(rng.choice(room, size=len(lengths), replace=False))
    return gaps.astype(np.int64), np.asarray(lengths, dtype=np.int64)[order]


def text_infilling(ids: np.ndarray, rng: np.random.Generator, mask_id: int, ratio: float = 0.3,
                   poisson_lambda: float = 3.0) -> np.ndarray:
    """BART's text infilling (Sec. 2.2): spans of Poisson(``poisson_lambda``) length, covering
    ``round(ratio * len(ids))`` tokens, each replaced by a single ``mask_id``; a zero-length
    span inserts one. ids (T,) -> (T',) int64, special tokens not included (the caller adds
    ``<s>``/``</s>``). See :func:`infilling_spans` for how spans are placed."""
    ids = np.asarray(ids, dtype=np.int64)
    gaps, lengths = infilling_spans(len(ids), rng, ratio, poisson_lambda)
    out, pos, kept = [], 0, 0
    for gap, length in zip(gaps.tolist(), lengths.tolist()):
        out.append(ids[pos: pos + gap - kept])
        pos += gap - kept
        kept = gap
        out.append(np.array([mask_id], dtype=np.int64))
        pos += length
    out.append(ids[pos:])
    return np.concatenate(out)


# ------------------------------------------------------------------------------------ T5


def t5_noise_counts(length: int, density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """(noise tokens, noise spans) of T5's span corruption of ``length`` >= 2 tokens:
    ``round(length * density)`` kept within [1, length - 1], and ``round(noise / mean)`` >= 1 spans."""
    noise = min(max(int(round(length * density)), 1), length - 1)
    return noise, max(int(round(noise / mean_span_length)), 1)


def t5_lengths(length: int, density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """(inputs, targets) lengths, each with its ``</s>``, of ``length`` raw tokens: inputs hold the
    kept tokens and one sentinel per span, targets one sentinel per span and the noise tokens."""
    noise, spans = t5_noise_counts(length, density, mean_span_length)
    return length - noise + spans + 1, noise + spans + 1


def t5_raw_length(max_length: int, density: float = 0.15, mean_span_length: float = 3.0) -> int:
    """The longest raw text whose corrupted inputs (with ``</s>``) fit in ``max_length`` tokens:
    568 for T5's 512 (the inputs length does not shrink as the raw length grows)."""
    if t5_lengths(2, density, mean_span_length)[0] > max_length:
        raise ConfigError(f"data.max_length is {max_length}; T5 inputs of even 2 tokens need "
                          f"{t5_lengths(2, density, mean_span_length)[0]}.")
    length = 2
    while t5_lengths(length + 1, density, mean_span_length)[0] <= max_length:
        length += 1
    return length


def random_segmentation(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """(segments,) positive lengths summing to ``items``, every such split equally likely: the
    ``segments - 1`` places where a new segment begins are distinct positions among 1..items-1."""
    cuts = np.sort(rng.choice(items - 1, size=segments - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [items]])).astype(np.int64)


def random_spans_noise_mask(length: int, rng: np.random.Generator, density: float = 0.15,
                            mean_span_length: float = 3.0) -> np.ndarray:
    """(length,) bool, True on noise: T5's noise layout (Sec. 3.1.4).

    The counts of :func:`t5_noise_counts` are fixed by the length alone; the noise tokens are
    cut into that many spans by :func:`random_segmentation`, the kept tokens into as many
    runs, and the two alternate, a kept run first (so the text always ends in noise, as in T5).
    """
    noise, spans = t5_noise_counts(length, density, mean_span_length)
    kept_runs = random_segmentation(length - noise, spans, rng)
    noise_runs = random_segmentation(noise, spans, rng)
    return np.repeat(np.tile([False, True], spans), np.stack([kept_runs, noise_runs], axis=1).reshape(-1))


def _runs_to_sentinels(ids: np.ndarray, drop: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """``ids`` with every run of ``drop`` positions replaced by the next sentinel, in order."""
    first = drop & ~np.concatenate([[False], drop[:-1]])  # the first position of each run
    out = ids.copy()
    out[first] = sentinels[: int(first.sum())]
    return out[~drop | first]


def span_corruption(ids: np.ndarray, rng: np.random.Generator, sentinel_ids: Iterable[int],
                    noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """T5's span corruption of ids (T,), T >= 2 -> (inputs, targets) int64, without ``</s>``
    (the caller appends it to both).

    Noise spans (:func:`random_spans_noise_mask`) become ``sentinel_ids[0], [1], ...`` in the
    inputs; the targets are the kept runs so replaced, i.e. ``sentinel_0 span_0 sentinel_1
    span_1 ...``. A last sentinel closes the targets only when the text ends with kept tokens,
    which T5's layout never does. Needs as many sentinels as spans.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"span_corruption needs at least 2 tokens, got {len(ids)}")
    sentinels = np.asarray(list(sentinel_ids), dtype=np.int64)
    spans = t5_noise_counts(len(ids), noise_density, mean_span_length)[1]
    if spans > len(sentinels):
        raise ValueError(f"span_corruption of {len(ids)} tokens makes {spans} spans but has {len(sentinels)} sentinels")
    noise = random_spans_noise_mask(len(ids), rng, noise_density, mean_span_length)
    return _runs_to_sentinels(ids, noise, sentinels), _runs_to_sentinels(ids, ~noise, sentinels)


# ------------------------------------------------------------------------------------ rows


@dataclass
class Rows(PackedRows):
    """Packed rows, before noise and special tokens: ids (N,) int32 of every row one after
    another; starts (R + 1,) int64 row boundaries; sentence_lengths (S,) int64, the tokens of
    each sentence (or part of one) in order (T5: a row is one); row_sentences (R + 1,) int64,
    each row's range of sentences; cut_sentences: sentences longer than a row, cut into parts;
    short_rows: 1 when a last row too short to corrupt was dropped (T5)."""

    ids: np.ndarray
    starts: np.ndarray
    sentence_lengths: np.ndarray
    row_sentences: np.ndarray
    cut_sentences: int = 0
    short_rows: int = 0


def pack_rows(corpus: Corpus, capacity: int, source: str = "denoising data") -> Rows:
    """Consecutive sentences of one document while they fit in ``capacity`` tokens (RoBERTa's
    DOC-SENTENCES packing); a sentence longer than ``capacity`` is cut into parts of at most
    that, each a sentence of its own (counted). ``source`` names the data in errors."""
    s = corpus.sentence_starts
    rows: list[list[tuple[int, int]]] = []  # each row: (start, end) token ranges of its sentences
    cut = 0
    for d in range(len(corpus.document_starts) - 1):
        current, size = [], 0
        for k in range(int(corpus.document_starts[d]), int(corpus.document_starts[d + 1])):
            a, b = int(s[k]), int(s[k + 1])
            cut += b - a > capacity
            for start in range(a, b, capacity):
                part = (start, min(start + capacity, b))
                if current and size + part[1] - part[0] > capacity:
                    rows.append(current)
                    current, size = [], 0
                current.append(part)
                size += part[1] - part[0]
        if current:
            rows.append(current)
    if not rows:
        raise DataError(f"{source}: no tokens; every line is empty once tokenised.")
    parts = [p for r in rows for p in r]
    ids = np.concatenate([corpus.ids[a:b] for a, b in parts]).astype(np.int32)
    sentence_lengths = np.array([b - a for a, b in parts], dtype=np.int64)
    row_sentences = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sentence_lengths)])[row_sentences]
    return Rows(ids, starts, sentence_lengths, row_sentences, cut)


def pack_stream(corpus: Corpus, length: int, source: str = "denoising data") -> Rows:
    """T5's packing: every document's tokens one after another, no separator, cut into rows of
    ``length``; a last row of a single token cannot be span-corrupted and is dropped (counted)."""
    ids = corpus.ids.astype(np.int32)
    if len(ids) < 2:
        raise DataError(f"{source}: {len(ids)} token(s) in all; span corruption needs at least 2.")
    ends = np.append(np.arange(length, len(ids), length), len(ids))
    short = int(ends[-1] - (ends[-2] if len(ends) > 1 else 0) < 2)
    if short:
        ends, ids = ends[:-1], ids[: ends[-2]]
    starts = np.concatenate([[0], ends]).astype(np.int64)
    return Rows(ids, starts, np.diff(starts), np.arange(len(starts), dtype=np.int64), 0, short)


class RowsDataset(Dataset):
    """Rows -> ``{"ids": (T,) int32, "sentence_lengths": (S,) int64, "index", "seed"}``.

    Training indices come from :class:`lit_tasks.data.samplers.ResumableSampler` as
    ``SeededIndex`` (a seed per run, epoch and index); a plain int index (val/test) has seed None."""

    def __init__(self, rows: Rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.rows
        sentences = slice(int(r.row_sentences[index]), int(r.row_sentences[index + 1]))
        return {"ids": r.ids[r.span(index)], "sentence_lengths": r.sentence_lengths[sentences],
                "index": int(index), "seed": getattr(index, "seed", None)}


# ------------------------------------------------------------------------------------ collate


class DenoisingCollate:
    """Corrupts each row and pads the batch: ``input_ids`` with ``pad``, ``labels`` with -100.

    Randomness: each row draws from its own generator, seeded by the item's ``seed`` in training
    (the sampler's per-(run seed, epoch, index) seed: new noise every epoch, the same whatever
    the batch, worker or a mid-epoch resume) and by ``(EVAL_SEED, index)`` for val/test items:
    evaluation noise is the same in every epoch and run. A subclass gives :meth:`pair`.
    """

    def __init__(self, pad: int):
        self.pad = pad

    @staticmethod
    def rng(index: int, seed: int | None) -> np.random.Generator:
        return np.random.default_rng([EVAL_SEED, index] if seed is None else seed)

    def pair(self, item: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) int64 arrays of one row, special tokens included."""
        raise NotImplementedError

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [self.pair(x, self.rng(x["index"], x["seed"])) for x in items]
        input_ids = pad_sequences([s for s, _ in pairs], self.pad)  # (B, S)
        attention_mask = torch.zeros_like(input_ids)
        for k, (s, _) in enumerate(pairs):
            attention_mask[k, : len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": pad_sequences([t for _, t in pairs], IGNORE),  # (B, T)
                "index": torch.tensor([int(x["index"]) for x in items], dtype=torch.long)}


class BartCollate(DenoisingCollate):
    """``<s> infilled(permuted) </s>`` -> ``<s> original </s>``. Zero-length spans can make a
    source longer than its row; one over ``max_length`` is cut there (its last token kept
    ``</s>``), counted in ``cut_sources`` and logged."""

    def __init__(self, bos: int, eos: int, pad: int, mask: int, max_length: int, ratio: float = 0.3,
                 poisson_lambda: float = 3.0, permute: bool = True):
        super().__init__(pad)
        self.bos, self.eos, self.mask, self.max_length = bos, eos, mask, max_length
        self.ratio, self.poisson_lambda, self.permute = ratio, poisson_lambda, permute
        self.cut_sources = 0

    def pair(self, item: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ids = item["ids"].astype(np.int64)
        body = ids
        if self.permute:
            body = np.concatenate(permute_sentences(np.split(ids, np.cumsum(item["sentence_lengths"])[:-1]), rng))
        noised = text_infilling(body, rng, self.mask, self.ratio, self.poisson_lambda)
        if len(noised) + 2 > self.max_length:
            self.cut_sources += 1
            log.warning("denoising: row %d is %d tokens after infilling (zero-length spans insert masks); cut to "
                        "max_length=%d (%d rows cut so far in this process).", int(item["index"]), len(noised) + 2,
                        self.max_length, self.cut_sources)
            noised = noised[: self.max_length - 2]
        return np.concatenate([[self.bos], noised, [self.eos]]), np.concatenate([[self.bos], ids, [self.eos]])


class T5Collate(DenoisingCollate):
    """``inputs </s>`` -> ``targets </s>`` of :func:`span_corruption`; the row length was chosen
    (:func:`t5_raw_length`) so that inputs always fit."""

    def __init__(self, eos: int, pad: int, sentinels: list[int], density: float = 0.15, mean_span_length: float = 3.0):
        super().__init__(pad)
        self.eos, self.sentinels = eos, list(sentinels)
        self.density, self.mean_span_length = density, mean_span_length

    def pair(self, item: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        inputs, targets = span_corruption(item["ids"], rng, self.sentinels, self.density, self.mean_span_length)
        return np.append(inputs, self.eos), np.append(targets, self.eos)


# --------------------------------------------------------------------------------- DataModule


class DenoisingDataModule(TextSplitDataModule):
    """Denoising pretraining batches for encoder-decoders (BART, T5) from a text corpus.

    Sources (one of): ``train_file`` / ``val_file`` / ``test_file``, plain text with one sentence
    per line and blank lines between documents, or CSV/JSONL with one document per row in
    ``text_column`` (its lines are its sentences); or ``hf_dataset``, a
    ``DatasetDict.save_to_disk`` folder with a ``text_column`` of documents.

    Tokenizer: ``tokenizer``, one trained on the train split's sentences
    (``train_tokenizer_vocab_size``) or the ``preprocessor``'s. ``objective`` "bart" needs bos,
    eos, pad and mask tokens; "t5" needs pad, eos and sentinels (``<extra_id_0>``, ...:
    ``Tokenizer.sentinels``), at least as many as the spans of the longest row.

    Rows and noise:

    - bart: consecutive sentences of one document (fairseq's ``complete_doc`` blocks; a sentence
      longer than a row is cut into parts, counted in ``cut_sentences``), up to ``max_length - 2``
      tokens (``<s>`` and ``</s>`` added); sentences are permuted, then
      ``mask_ratio`` of the tokens masked in spans of Poisson(``poisson_lambda``) length
      (:func:`text_infilling`); ``permute_sentences=False`` infills only. Labels are
      ``<s> row </s>``; a source made longer than ``max_length`` by inserted masks is cut and
      counted (the collate's ``cut_sources``, logged).
    - t5: as T5 does, the documents' tokens one after another (no separator) cut into rows of
      :func:`t5_raw_length` tokens (568 for ``max_length=512``), the longest whose inputs
      ``kept + sentinels + </s>`` fit in ``max_length``; targets are then at most
      ``target_length`` (114 for 512). ``noise_density``, ``mean_span_length`` as in T5. A last
      row of one token cannot be corrupted: dropped and counted in ``short_rows``. Rows shorter
      than about 30 tokens (``max_length`` under ~28) get one span, which T5's layout always puts
      at the end: their noise hardly varies.

    Noise is drawn per row in the collate: see :class:`DenoisingCollate` (reproducible,
    resumable mid-epoch, fixed for val/test).

    Batches::

        {
          "input_ids":      (B, S) int64, the corrupted text, padded with the pad id,
          "attention_mask": (B, S) int64, 1 for tokens, 0 for padding,
          "labels":         (B, T) int64, what the decoder predicts, padded with -100,
          "index":          (B,) int64, the row of the split,
        }

    Args:
        text_column: the column (CSV header, JSONL key or HF column) holding a document, its
            lines its sentences; plain-text files have none.
        objective: "bart": sentence permutation and text infilling (mask_ratio, poisson_lambda,
            permute_sentences); "t5": span corruption with sentinels (noise_density,
            mean_span_length).
        max_length: the most tokens of an input row: <s> and </s> included (bart), the
            corrupted text with its sentinels and </s> (t5).
        mask_ratio: bart: the share of a row's n tokens (<s> and </s> not counted)
            that is masked, round(mask_ratio * n) exactly; 0 < mask_ratio < 1.
        poisson_lambda: bart: the mean length (tokens) of a masked span, Poisson distributed;
            each span becomes one <mask>.
        permute_sentences: bart: shuffle the sentences of a row before infilling; False:
            infilling only.
        noise_density: t5: the share of a row's tokens corrupted (T5's 0.15); 0 < density < 1.
        mean_span_length: t5: the mean length (tokens) of a corrupted span (T5's 3), >= 1; each
            span becomes one sentinel.
        train_tokenizer_vocab_size: train a tokenizer of this many tokens on the train split's
            sentences, kept in cache_dir (required), instead of loading one: BART's byte-level
            BPE (bart) or T5's SentencePiece Unigram with 100 sentinels (t5); not with
            tokenizer. None: load tokenizer (or the preprocessor's).
        train_file, val_file, test_file, hf_dataset, tokenizer, preprocessor, batch_size,
            eval_batch_size, num_workers, cache_dir: see TextSplitDataModule.
    """

    cache_name, arrays = "denoise", Corpus

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        hf_dataset: str | None = None,
        text_column: str = "text",
        tokenizer: str | None = None,
        preprocessor: str | None = None,
        train_tokenizer_vocab_size: int | None = None,
        objective: Literal["bart", "t5"] = "bart",
        max_length: int = 128,
        mask_ratio: float = 0.3,
        poisson_lambda: float = 3.0,
        permute_sentences: bool = True,
        noise_density: float = 0.15,
        mean_span_length: float = 3.0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
    ):
        name = "DenoisingDataModule"
        if objective not in OBJECTIVES:
            raise ConfigError(f"{name}: data.objective is {objective!r}; expected one of {list(OBJECTIVES)}.")
        if not (train_file or hf_dataset):
            raise ConfigError(f"{name}: no training data; set data.train_file or data.hf_dataset.")
        if not 0 < mask_ratio < 1:
            raise ConfigError(f"{name}: data.mask_ratio is {mask_ratio}; expected 0 < ratio < 1.")
        if poisson_lambda <= 0:
            raise ConfigError(f"{name}: data.poisson_lambda is {poisson_lambda}; expected > 0.")
        if not 0 < noise_density < 1:
            raise ConfigError(f"{name}: data.noise_density is {noise_density}; expected 0 < density < 1.")
        if mean_span_length < 1:
            raise ConfigError(f"{name}: data.mean_span_length is {mean_span_length}; expected >= 1.")
        if objective == "bart" and max_length < 3:
            raise ConfigError(f"{name}: data.max_length is {max_length}; BART rows need <s>, a token and </s>.")
        super().__init__(train_file=train_file, val_file=val_file, test_file=test_file, predict_file=None,
                         hf_dataset=hf_dataset, tokenizer=tokenizer, preprocessor=preprocessor, max_length=max_length,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         group_by_length=False, cache_dir=cache_dir,
                         train_tokenizer_vocab_size=train_tokenizer_vocab_size)
        self.save_hyperparameters()
        self.text_column, self.objective = text_column, objective
        self.trained_tokenizer_kind = "unigram" if objective == "t5" else "bart-bpe"
        self.mask_ratio, self.poisson_lambda, self.permute_sentences = mask_ratio, poisson_lambda, permute_sentences
        self.noise_density, self.mean_span_length = noise_density, mean_span_length
        if objective == "t5":
            try:
                self.row_length = t5_raw_length(max_length, noise_density, mean_span_length)
            except ConfigError as e:
                raise ConfigError(f"{name}: {e}") from None
        else:
            self.row_length = max_length - 2
        self.cut_sentences: dict[str, int] = {}  # split -> sentences longer than a row (bart)
        self.short_rows: dict[str, int] = {}  # split -> a last row too short to corrupt (t5), dropped

    @property
    def target_length(self) -> int:
        """The longest ``labels`` row: ``max_length`` (bart), T5's targets of a full row (t5)."""
        if self.objective == "bart":
            return self.max_length
        return t5_lengths(self.row_length, self.noise_density, self.mean_span_length)[1]

    # --------------------------------------------------------------------------- sources

    def has_split(self, split: str) -> bool:
        return split != "predict" and super().has_split(split)

    def _read_file(self, file: str, labelled: bool) -> list[list[str]]:
        return read_documents(file, self.text_column)

    def _read_hf(self, name: str, ds, labelled: bool) -> list[list[str]]:
        rows = read_hf_split(ds, self.hf_dataset, name, self.text_column, None, None, False, "|")
        return [doc for doc in ([ln.strip() for ln in r.text.splitlines() if ln.strip()] for r in rows) if doc]

    def _cache_settings(self, split: str) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "split": split, "text": self.text_column}

    # --------------------------------------------------------------------------- tokenizer

    def _tokenizer_texts(self) -> Iterable[str]:
        for document in self.rows("train"):
            yield from document

    def _open_tokenizer(self) -> Tokenizer:
        tokenizer = super()._open_tokenizer()
        roles = NEEDED_TOKENS[self.objective]
        absent = [role for role in roles if getattr(tokenizer, role) is None]
        if absent:
            raise DataError(f"tokenizer {tokenizer.source} lacks the special token(s) {', '.join(absent)} that "
                            f"{self.objective} denoising needs ({', '.join(roles.values())}).")
        if self.objective == "t5":
            have = len(tokenizer.sentinels)
            need = t5_noise_counts(self.row_length, self.noise_density, self.mean_span_length)[1]
            if have < need:
                raise DataError(f"tokenizer {tokenizer.source} has {have} sentinel token(s) (<extra_id_0>, ...); T5 "
                                f"span corruption of rows of {self.row_length} tokens (max_length={self.max_length}) "
                                f"needs {need}.")
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (linked into the model's embedding and LM head)."""
        return self.tokenizer.vocab_size

    # --------------------------------------------------------------------------- rows

    def rows_of(self, split: str) -> Rows:
        """The split's packed rows (the tokens from ``cache_dir`` when its fingerprint matches)."""
        source = f"{Path(self._source(split)).expanduser()} ({split} split)"
        if self.objective == "t5":
            rows = pack_stream(self.encoded(split), self.row_length, source)
        else:
            rows = pack_rows(self.encoded(split), self.row_length, source=source)
        self.cut_sentences[split], self.short_rows[split] = rows.cut_sentences, rows.short_rows
        if rows.cut_sentences:
            log.warning("%s split: %d sentence(s) longer than a row of %d tokens were cut into parts.",
                        split, rows.cut_sentences, self.row_length)
        if rows.short_rows:
            log.warning("%s split: the last row is a single token, which cannot be span-corrupted; dropped.", split)
        return rows

    def _encode(self, split: str) -> Corpus:
        return tokenize_documents(self._read(split), self.tokenizer)

    def _make_dataset(self, split: str) -> RowsDataset:
        if split == "predict":
            raise DataError("DenoisingDataModule: denoising pretraining has no predict step; use fit, validate or "
                            "test.")
        return RowsDataset(self.rows_of(split))

    def _collate(self, split: str) -> DenoisingCollate:
        tk = self.tokenizer
        if self.objective == "bart":
            return BartCollate(tk.bos, tk.eos, tk.pad, tk.mask, self.max_length, self.mask_ratio, self.poisson_lambda,
                               self.permute_sentences)
        return T5Collate(tk.eos, tk.pad, tk.sentinels, self.noise_density, self.mean_span_length)
