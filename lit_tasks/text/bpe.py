"""Training GPT-2's byte-level BPE (the pipeline and its files: lit_tasks.text.byte_level).

:func:`train_bpe` learns the merges from a corpus with the `tokenizers` library's BPE trainer,
whose alphabet is the 256 byte tokens, and saves the folder that :func:`load_tokenizer` (and
transformers' GPT2Tokenizer) reads back: tokenizer.json, vocab.json, merges.txt and
tokenizer_config.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import models, pre_tokenizers, trainers

from lit_tasks.errors import DataError
from lit_tasks.text.byte_level import BYTE_CHARS, ENDOFTEXT, byte_level_pipeline, model_merges
from lit_tasks.text.tokenizer import Tokenizer

CHUNK_CHARS = 1 << 16  # train_bpe reads files in pieces of about this many characters


def _file_chunks(paths: Sequence[Path]) -> Iterator[str]:
    """The text of ``paths`` in pieces of about CHUNK_CHARS characters. A piece ends just
    before a newline that a visible character follows: GPT-2's regex makes that newline a word
    of its own, so the pieces are split into exactly the words of the whole text."""
    for path in paths:
        chunk: list[str] = []
        size = 0
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path} line {number}: not UTF-8 text ({e.reason}).") from None
                if size >= CHUNK_CHARS and line[:1].strip():
                    yield "".join(chunk)[:-1]  # the last line's newline starts the next piece
                    chunk, size = ["\n"], 1
                chunk.append(line)
                size += len(line)
        if chunk:
            yield "".join(chunk)


def train_bpe(
    files: Sequence[str | Path], vocab_size: int, out_dir: str | Path, add_prefix_space: bool = False,
    min_frequency: int = 2, model_max_length: int = 1024,
) -> Tokenizer:
    """Train GPT-2's byte-level BPE on UTF-8 text ``files`` (read as they are: newlines,
    blank lines and indentation are text too) and save it to ``out_dir`` (tokenizer.json,
    vocab.json, merges.txt, tokenizer_config.json). See :func:`train_bpe_texts`."""
    paths = [Path(f).expanduser() for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise DataError(f"train_bpe: corpus file(s) not found: {', '.join(missing) or '(none given)'}.")
    return train_bpe_texts(_file_chunks(paths), vocab_size, out_dir, add_prefix_space, min_frequency, model_max_length)


def train_bpe_texts(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, add_prefix_space: bool = False,
    min_frequency: int = 2, model_max_length: int = 1024,
) -> Tokenizer:
    """:func:`train_bpe` on texts in memory (documents, or any pieces cut at word boundaries).

    Ids: ``<|endoftext|>`` is 0, the 256 byte tokens 1-256 (so any text encodes), then the
    merges in the order learnt, until ``vocab_size`` tokens; a pair seen fewer than
    ``min_frequency`` times is never merged. Training is deterministic: the same texts give the
    same files (ties between equally frequent pairs are broken by their token ids).
    """
    if vocab_size <= 1 + len(BYTE_CHARS):
        raise DataError(f"train_bpe: vocab_size is {vocab_size}; it must exceed {1 + len(BYTE_CHARS)} "
                        f"({ENDOFTEXT} and the {len(BYTE_CHARS)} byte tokens).")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[ENDOFTEXT],
        initial_alphabet=sorted(BYTE_CHARS), show_progress=False,
    )
    # Train the model alone, then build the full pipeline from what it learnt (as loading does).
    base = RustTokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    base.train_from_iterator(texts, trainer)
    merges = model_merges(base)
    if not merges:
        raise DataError(f"train_bpe: nothing was merged; the corpus holds no text, or no pair of bytes is seen "
                        f"{min_frequency} times (min_frequency).")
    backend = byte_level_pipeline(base.get_vocab(with_added_tokens=True), merges, add_prefix_space)
    tokenizer = Tokenizer(backend, {"model_max_length": model_max_length}, source=str(out_dir))
    tokenizer.save(out_dir)
    return tokenizer
