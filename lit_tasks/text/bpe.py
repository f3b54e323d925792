"""Training GPT-2's byte-level BPE (the pipeline and its files: lit_tasks.text.byte_level).

:func:`train_bpe` learns the merges from a corpus with the `tokenizers` library's BPE trainer,
whose alphabet is the 256 byte tokens, and saves the folder that :func:`load_tokenizer` (and
transformers' GPT2Tokenizer) reads back: tokenizer.json, vocab.json, merges.txt and
tokenizer_config.json. With ``specials=BART_SPECIALS`` it is BART's pipeline instead
(``<s> <pad> </s> <unk> <mask>``, texts as ``<s> A </s>``), which transformers' BartTokenizer reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import models, pre_tokenizers, trainers

from lit_tasks.errors import DataError
from lit_tasks.text.byte_level import (
    BART_SPECIALS, BYTE_CHARS, ENDOFTEXT, bart_pipeline, byte_level_pipeline, model_merges,
)
from lit_tasks.text.tokenizer import Tokenizer, corpus_paths

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
    min_frequency: int = 2, model_max_length: int = 1024, specials: Sequence[str] = (ENDOFTEXT,),
) -> Tokenizer:
    """Train GPT-2's byte-level BPE on UTF-8 text ``files`` (read as they are: newlines,
    blank lines and indentation are text too) and save it to ``out_dir`` (tokenizer.json,
    vocab.json, merges.txt, tokenizer_config.json). See :func:`train_bpe_texts`."""
    paths = corpus_paths(files, "train_bpe")
    return train_bpe_texts(_file_chunks(paths), vocab_size, out_dir, add_prefix_space, min_frequency, model_max_length,
                           specials)


def train_bpe_texts(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, add_prefix_space: bool = False,
    min_frequency: int = 2, model_max_length: int = 1024, specials: Sequence[str] = (ENDOFTEXT,),
) -> Tokenizer:
    """:func:`train_bpe` on texts in memory (documents, or any pieces cut at word boundaries).

    Ids: ``specials`` first (GPT-2's ``<|endoftext|>`` = 0; or BART's :data:`BART_SPECIALS`
    ``<s> <pad> </s> <unk> <mask>`` = 0-4, which makes it BART's pipeline), the 256 byte tokens
    next (so any text encodes), then the merges in the order learnt, until ``vocab_size`` tokens; a pair seen fewer than
    ``min_frequency`` times is never merged. Training is deterministic: the same texts give the
    same files (ties between equally frequent pairs are broken by their token ids).
    """
    specials = list(specials)
    bart = "<s>" in specials and "</s>" in specials
    if not bart and specials != [ENDOFTEXT]:
        raise DataError(f"train_bpe: specials {specials} are neither GPT-2's [{ENDOFTEXT!r}] nor contain BART's "
                        f"<s> and </s> (e.g. {list(BART_SPECIALS)}).")
    if vocab_size <= len(specials) + len(BYTE_CHARS):
        raise DataError(f"train_bpe: vocab_size is {vocab_size}; it must exceed {len(specials) + len(BYTE_CHARS)} "
                        f"({' '.join(specials)} and the {len(BYTE_CHARS)} byte tokens).")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
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
    vocab = base.get_vocab(with_added_tokens=True)
    if bart:
        backend = bart_pipeline(vocab, merges, add_prefix_space, specials)
        config = {"model_max_length": model_max_length, "tokenizer_class": "BartTokenizer"}
    else:
        backend = byte_level_pipeline(vocab, merges, add_prefix_space)
        config = {"model_max_length": model_max_length}
    tokenizer = Tokenizer(backend, config, source=str(out_dir))
    tokenizer.save(out_dir)
    return tokenizer
