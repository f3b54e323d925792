"""GPT-2's byte-level BPE tokenizer: its pipeline and its files, on `tokenizers`.

Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", Sec. 2.2: text is
taken as UTF-8 bytes, so nothing is ever unknown. Each byte is written as one of 256 printable
stand-in characters (a space becomes ``Ġ``, a newline ``Ċ``); a regular expression cuts the
text into words first, so merges never cross a letter/digit/punctuation boundary::

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

(a leading space stays on the word after it); then the ranked merges join adjacent pieces,
lowest rank first. ``add_prefix_space`` puts a space before a text that has none, so its first
word is tokenised like any other (GPT-2 does not). Nothing is added around a text: GPT-2 has no
[CLS]/[SEP]; ``<|endoftext|>`` separates documents and is matched whole when written in a text.

BART (Lewis et al. 2020, "BART", Sec. 2) and RoBERTa use the same pipeline and files with
their own special tokens ``<s> <pad> </s> <unk> <mask>`` (:data:`BART_SPECIALS`), and put them
around texts: ``<s> A </s>``, and ``<s> A </s></s> B </s>`` for a pair (`tokenizers`'
RobertaProcessing); ``<mask>`` swallows the spaces before it (lstrip), so ``"a <mask>"``
masks the word `` b`` of ``"a b"`` whole. :func:`bart_pipeline` builds that.

A GPT-2 checkpoint folder may hold only ``vocab.json`` (``{token: id}``) and ``merges.txt`` (an
optional ``#version`` line, then one merge ``left right`` per line, by rank), with
``add_prefix_space`` and the special tokens in ``tokenizer_config.json``.
:func:`byte_level_from_files` builds the pipeline from them; :func:`bpe_model_files` writes them;
lit_tasks.text.bpe trains one.

Offsets are trimmed: a token's span leaves out its spaces (transformers' GPT-2 keeps them), so
``text[start:end]`` is the token's text less its leading space. With ``add_prefix_space`` they
are transformers' (untrimmed; a space put in takes the first character's span), as the
`tokenizers` library cannot tell a space put in from one in the text when trimming.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path

from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as RustTokenizer

from lit_tasks.errors import DataError

ENDOFTEXT = "<|endoftext|>"  # GPT-2's only special token: bos, eos and (standing in) pad
BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # BART/RoBERTa's, ids 0-3 in their vocabularies
VOCAB_JSON, MERGES_TXT = "vocab.json", "merges.txt"
BYTE_CHARS = frozenset(pre_tokenizers.ByteLevel.alphabet())  # the 256 stand-ins for bytes


def is_byte_level(backend: RustTokenizer) -> bool:
    """Whether ``backend`` is GPT-2's pipeline: a BPE model after the ByteLevel pre-tokenizer
    with GPT-2's regex (RoBERTa, BART and GPT-Neo use it too)."""
    pre = backend.pre_tokenizer
    return isinstance(backend.model, models.BPE) and isinstance(pre, pre_tokenizers.ByteLevel) and pre.use_regex


def byte_level_pipeline(
    vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], add_prefix_space: bool = False,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
) -> RustTokenizer:
    """GPT-2's tokenizer from its vocabulary and merges (in rank order). ``special_tokens``
    that the vocabulary holds keep their ids and are matched whole, never split."""
    tk = RustTokenizer(models.BPE(dict(vocab), list(merges)))  # no unk: every byte has a token
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    # Trimming takes the first token's space for the one put in, wherever it was: with
    # add_prefix_space it would cut a real character off a word after <|endoftext|>.
    tk.post_processor = processors.ByteLevel(add_prefix_space=add_prefix_space, trim_offsets=not add_prefix_space)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([t for t in special_tokens if t in vocab])
    return tk


def bart_pipeline(
    vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], add_prefix_space: bool = False,
    special_tokens: Sequence[str] = BART_SPECIALS, cls: str = "<s>", sep: str = "</s>", mask: str = "<mask>",
) -> RustTokenizer:
    """BART's (and RoBERTa's) tokenizer: GPT-2's, with ``cls A sep`` / ``cls A sep sep B sep``
    around texts and ``mask`` matched with the spaces before it."""
    for role, token in (("cls", cls), ("sep", sep)):
        if token not in vocab:
            raise DataError(f"tokenizer: the vocabulary lacks BART's {role} token {token!r}; expected "
                            f"{' '.join(BART_SPECIALS)} among its tokens.")
    tk = byte_level_pipeline(vocab, merges, add_prefix_space, [t for t in special_tokens if t != mask])
    # trim_offsets: a token's span leaves out its spaces, as transformers' BART.
    tk.post_processor = processors.RobertaProcessing((sep, vocab[sep]), (cls, vocab[cls]), trim_offsets=True,
                                                     add_prefix_space=add_prefix_space)
    if mask in vocab:
        tk.add_special_tokens([AddedToken(mask, lstrip=True, rstrip=False, normalized=False, special=True)])
    return tk


class _Entries(list):
    """The (key, value) pairs of a JSON object, in file order (duplicates kept)."""


def _entry_lines(text: str) -> list[int]:
    """The line (from 1) of each key of the JSON object ``text`` (valid JSON), in order."""
    decoder, space = json.JSONDecoder(), re.compile(r"[ \t\n\r]*")
    newlines = [m.start() for m in re.finditer("\n", text)]
    lines: list[int] = []
    pos = space.match(text).end() + 1  # past "{"
    while text[(pos := space.match(text, pos).end())] != "}":
        lines.append(bisect_right(newlines, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)  # the key
        pos = space.match(text, pos).end() + 1  # past ":"
        _, pos = decoder.raw_decode(text, space.match(text, pos).end())  # the value
        pos = space.match(text, pos).end()
        pos += text[pos] == ","
    return lines


def read_vocab_json(file: Path) -> dict[str, int]:
    """``vocab.json``: a JSON object of token -> id (distinct non-negative integers)."""
    try:
        text = file.read_text(encoding="utf-8")
        entries = json.loads(text, object_pairs_hook=_Entries)
    except UnicodeDecodeError as e:
        raise DataError(f"tokenizer: {file} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    except json.JSONDecodeError as e:
        raise DataError(f"tokenizer: {file} line {e.lineno}: not valid JSON ({e.msg}).") from None
    if not isinstance(entries, _Entries):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(entries), "a number")
        raise DataError(f"tokenizer: {file} line 1: holds {kind}; expected an object of token -> id, as GPT-2's "
                        "vocab.json.")

    def line(index: int) -> int:  # found only on error: files are big, mistakes rare
        return _entry_lines(text)[index]

    first: dict[str, int] = {}  # token -> the index of its entry
    holder: dict[int, int] = {}  # id -> the index of the entry that has it
    for index, (token, value) in enumerate(entries):
        problem = None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            shown = "an object" if isinstance(value, _Entries) else json.dumps(value)[:40]
            problem = f"has the id {shown}; expected a non-negative integer."
        elif token in first:
            problem = f"already appears on line {line(first[token])}."
        elif value in holder:
            other = holder[value]
            problem = f"has the id {value}, as {entries[other][0]!r} on line {line(other)} does; ids must be distinct."
        if problem:
            raise DataError(f"tokenizer: {file} line {line(index)}: token {token!r} {problem}")
        first[token], holder[value] = index, index
    vocab = dict(entries)
    if not vocab:
        raise DataError(f"tokenizer: {file} is an empty object; expected token -> id entries.")
    return vocab


def read_merges(file: Path, vocab: Mapping[str, int]) -> list[tuple[str, str]]:
    """``merges.txt``: an optional ``#version`` first line, then one merge ``left right`` per
    line, by rank (blank lines may end the file); both tokens and their concatenation must be
    in ``vocab``."""
    merges: dict[tuple[str, str], int] = {}
    blank = 0  # the first of the blank lines seen since the last merge
    with open(file, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError as e:
                raise DataError(f"tokenizer: {file} line {number}: not UTF-8 text ({e.reason}).") from None
            if number == 1 and line.startswith("#version"):
                continue
            if not line:  # blank lines may end the file, nowhere else
                blank = blank or number
                continue
            if blank:
                raise DataError(f"tokenizer: {file} line {blank} is blank, yet merges follow; expected one merge "
                                "per line.")
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise DataError(f"tokenizer: {file} line {number}: {line[:60]!r} is not a merge; expected two "
                                "tokens separated by one space (e.g. 'Ġ t').")
            pair = (parts[0], parts[1])
            for token in (*pair, "".join(pair)):
                if token not in vocab:
                    raise DataError(f"tokenizer: {file} line {number}: the merge {line!r} needs the token "
                                    f"{token!r}, which {VOCAB_JSON} lacks.")
            if pair in merges:
                raise DataError(f"tokenizer: {file} line {number}: the merge {line!r} repeats line {merges[pair]}.")
            merges[pair] = number
    return list(merges)


def byte_level_from_files(
    vocab_file: Path, merges_file: Path, add_prefix_space: bool = False, named: Mapping[str, str] | None = None,
    bart: bool | None = None,
) -> RustTokenizer:
    """GPT-2's pipeline from ``vocab.json`` and ``merges.txt``, or BART's when ``bart`` (None:
    when the vocabulary holds ``<s>`` and ``</s>`` but not ``<|endoftext|>``). ``named``: the
    special tokens that tokenizer_config.json names (its key -> token); each must be in the
    vocabulary."""
    if not vocab_file.is_file():
        raise DataError(f"tokenizer: {merges_file} has no {VOCAB_JSON} beside it; a byte-level BPE tokenizer "
                        "needs both.")
    if not merges_file.is_file():
        raise DataError(f"tokenizer: {vocab_file} has no {MERGES_TXT} beside it; a byte-level BPE tokenizer "
                        f"needs both (a {VOCAB_JSON} alone is a character vocabulary, e.g. for CTC).")
    vocab = read_vocab_json(vocab_file)
    missing = sorted(BYTE_CHARS - vocab.keys())
    if missing:
        raise DataError(f"tokenizer: {vocab_file} lacks {len(missing)} of the 256 byte tokens of a byte-level BPE "
                        f"(e.g. {', '.join(map(repr, missing[:5]))}): text holding those bytes could not be encoded.")
    merges = read_merges(merges_file, vocab)
    named = dict(named or {})
    for key, token in named.items():
        if token not in vocab:
            raise DataError(f"tokenizer: {merges_file.parent / 'tokenizer_config.json'} names {key} {token!r}, "
                            f"which {vocab_file} lacks.")
    if bart is None:
        bart = "<s>" in vocab and "</s>" in vocab and ENDOFTEXT not in vocab
    if bart:
        roles = {key: named.get(f"{key}_token", default) for key, default in (("cls", "<s>"), ("sep", "</s>"),
                                                                            ("mask", "<mask>"))}
        specials = dict.fromkeys([*(t for t in BART_SPECIALS if t in vocab), *named.values()])
        return bart_pipeline(vocab, merges, add_prefix_space, list(specials), **roles)
    specials = dict.fromkeys([*([ENDOFTEXT] if ENDOFTEXT in vocab else []), *named.values()])
    return byte_level_pipeline(vocab, merges, add_prefix_space, list(specials))


def model_merges(backend: RustTokenizer) -> list[tuple[str, str]]:
    """The merges of a BPE ``backend``, by rank."""
    merges = json.loads(backend.to_str())["model"]["merges"]  # ["a", "b"] pairs; "a b" before tokenizers 0.20
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def bpe_model_files(backend: RustTokenizer) -> dict[str, str]:
    """{``vocab.json``: ..., ``merges.txt``: ...} of a BPE ``backend`` (added tokens included
    in the vocabulary, one per line by id; merges by rank)."""
    by_id = sorted(backend.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    return {
        VOCAB_JSON: json.dumps(dict(by_id), ensure_ascii=False, indent=2) + "\n",
        MERGES_TXT: "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in model_merges(backend)),
    }
