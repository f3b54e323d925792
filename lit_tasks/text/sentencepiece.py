"""T5's SentencePiece Unigram tokenizer on `tokenizers`: its pipeline and its training.

Kudo 2018, "Subword Regularization" (the Unigram language model, Sec. 3) and Kudo & Richardson
2018, "SentencePiece": a text is split at whitespace, each word gets ``▁``
in front (so spaces are pieces' first characters and decoding restores them), and each word is
cut into the pieces of highest total log-probability. T5 (Raffel et al. 2020, Sec. 2.2) appends
``</s>`` to every text (``A </s> B </s>`` for a pair) and keeps ``<pad>`` = 0, ``</s>`` = 1,
``<unk>`` = 2, the pieces, then ``extra_ids`` sentinels at the top of the vocabulary in reverse
order (``<extra_id_0>`` last).

Checkpoints ship this pipeline in ``tokenizer.json``, which lit_tasks.text.load_tokenizer
reads; :func:`train_unigram` trains one and saves it so. (A folder with only SentencePiece's
own ``spiece.model`` is refused by the loader, with the way to write its tokenizer.json.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as RustTokenizer

from lit_tasks.errors import DataError
from lit_tasks.text.tokenizer import Tokenizer, corpus_paths, file_lines

T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: pad, eos, unk
METASPACE = "▁"
SCORE_DIGITS = 8  # decimals kept of the trained log-probabilities (see _ordered)
TAIL_STEP = 1e-4  # the score step between the characters the Unigram trainer appends


def unigram_pipeline(pieces: Sequence[tuple[str, float]], extra_ids: int = 0) -> RustTokenizer:
    """T5's tokenizer from its pieces ((piece, log-probability), ``<pad> </s> <unk>`` first),
    with ``extra_ids`` sentinels put after them in reverse order."""
    head = [p for p, _ in pieces[:3]]
    if head != list(T5_SPECIALS):
        raise DataError(f"tokenizer: a T5 Unigram vocabulary starts with {' '.join(T5_SPECIALS)}; this one with "
                        f"{' '.join(head)}.")
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]
    vocab = [*pieces, *((s, 0.0) for s in sentinels)]
    tk = RustTokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    # No normaliser: transformers' T5Tokenizer has none without SentencePiece's precompiled table,
    # and it reads a saved folder with its own pipeline. Runs of whitespace (newlines too) are one
    # separator, as SentencePiece's default normaliser makes them.
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
    ])
    tk.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                      special_tokens=[("</s>", 1)])
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in (*T5_SPECIALS, *reversed(sentinels))])
    return tk


def _ordered(vocab: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """The trained pieces with their scores rounded to SCORE_DIGITS decimals and sorted (highest
    first, then by text), after the three specials, so that the same corpus gives the same file.

    The trainer sums in a varying order (its scores change in the last bits), and appends the
    corpus's characters it did not keep with the lowest scores, 1e-4 apart, in a varying order:
    those characters get those scores in the order of their text."""
    scored = sorted((round(float(score), SCORE_DIGITS), piece) for piece, score in vocab[len(T5_SPECIALS):])
    tail = 0  # the appended characters: single ones, each within 1e-4 per place of the lowest score
    while (tail < len(scored) and len(scored[tail][1]) == 1
           and scored[tail][0] - scored[0][0] <= TAIL_STEP * (tail + 1) + 1e-9):
        tail += 1
    chars = sorted(piece for _, piece in scored[:tail])
    scored[:tail] = [(score, char) for (score, _), char in zip(scored[:tail], reversed(chars))]
    return [(t, 0.0) for t in T5_SPECIALS] + [(p, s) for s, p in sorted(scored, key=lambda sp: (-sp[0], sp[1]))]


def train_unigram(
    files: Sequence[str | Path], vocab_size: int, out_dir: str | Path, extra_ids: int = 100,
    model_max_length: int = 512,
) -> Tokenizer:
    """Train T5's Unigram pipeline on UTF-8 text ``files`` (one text per line) and save it to
    ``out_dir`` (tokenizer.json, tokenizer_config.json). See :func:`train_unigram_texts`."""
    paths = corpus_paths(files, "train_unigram")
    return train_unigram_texts(file_lines(paths), vocab_size, out_dir, extra_ids, model_max_length)


def train_unigram_texts(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, extra_ids: int = 100, model_max_length: int = 512,
) -> Tokenizer:
    """:func:`train_unigram` on texts in memory.

    ``vocab_size`` counts everything: ``<pad> </s> <unk>`` (ids 0-2), the learnt pieces (the
    trainer may keep fewer than asked when the corpus is small), then the ``extra_ids``
    sentinels, ``<extra_id_0>`` last. Training is deterministic: the same texts give the same
    files (:func:`_ordered`)."""
    if extra_ids < 0:
        raise DataError(f"train_unigram: extra_ids is {extra_ids}; expected 0 or more sentinels.")
    if vocab_size <= len(T5_SPECIALS) + extra_ids:
        raise DataError(f"train_unigram: vocab_size is {vocab_size}; it must exceed {len(T5_SPECIALS) + extra_ids} "
                        f"({' '.join(T5_SPECIALS)} and the {extra_ids} sentinels).")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size - extra_ids, special_tokens=list(T5_SPECIALS),
                                      unk_token="<unk>", show_progress=False)
    base = unigram_pipeline([(t, 0.0) for t in T5_SPECIALS])
    base.train_from_iterator(texts, trainer)
    pieces = _ordered(json.loads(base.to_str())["model"]["vocab"])
    if len(pieces) <= len(T5_SPECIALS):
        raise DataError("train_unigram: the corpus holds no text; expected non-empty lines.")
    backend = unigram_pipeline(pieces, extra_ids)
    config = {"model_max_length": model_max_length, "extra_ids": extra_ids, "eos_token": "</s>",
              "pad_token": "<pad>", "unk_token": "<unk>", "tokenizer_class": "T5Tokenizer",
              "extra_special_tokens": [f"<extra_id_{i}>" for i in range(extra_ids)]}
    tokenizer = Tokenizer(backend, config, source=str(out_dir))
    tokenizer.save(out_dir)
    return tokenizer

