"""Tokenizers for the text tasks, on the Rust `tokenizers` library (fast, with character offsets).

A checkpoint folder downloaded from a hub holds ``tokenizer.json`` (the whole pipeline:
normaliser, pre-tokenizer, model, post-processor), often ``vocab.txt`` (the WordPiece vocabulary
of BERT-family models) or ``vocab.json`` + ``merges.txt`` (GPT-2's byte-level BPE), and
``tokenizer_config.json`` (``do_lower_case``, ``add_prefix_space``, special tokens,
``model_max_length``). :func:`load_tokenizer` reads ``tokenizer.json`` when present, otherwise
assembles BERT's WordPiece pipeline from ``vocab.txt`` (Devlin et al. 2019, "BERT", Sec. 3 and
App. A.2: lowercasing, accent stripping, whitespace/punctuation splitting, greedy longest-match
WordPiece with ``##`` continuation pieces, ``[CLS] A [SEP] B [SEP]`` with segment ids 0/1), or
GPT-2's from ``vocab.json`` + ``merges.txt`` (lit_tasks.text.byte_level).

:func:`train_wordpiece` trains BERT's pipeline on a user's corpus (for pretraining from scratch)
and saves it in the same folder format, so :func:`load_tokenizer` reads it back;
lit_tasks.text.bpe.train_bpe does the same for GPT-2's.

Nothing here downloads; ``transformers`` is not used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Encoding, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as RustTokenizer

from lit_tasks.errors import ConfigError, DataError, read_json_object
from lit_tasks.safe_load import checkpoint_entry
from lit_tasks.text.byte_level import (
    MERGES_TXT, VOCAB_JSON, bpe_model_files, byte_level_from_files, is_byte_level,
)
from lit_tasks.text.seq2seq_tokens import (
    LANGUAGE_STYLES, check_language, language_codes, language_processor, language_style, sentinel_ids, tokenizer_class,
)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", VOCAB_JSON)  # the one read is the first present
# Special-token roles -> the tokenizer_config.json key and the usual spellings, tried in order
# when the config names none: BERT's WordPiece, then RoBERTa/BART/T5's and GPT-2's.
SPECIAL_TOKENS = {
    "cls": ("cls_token", ("[CLS]", "<s>")),
    "sep": ("sep_token", ("[SEP]", "</s>")),
    "pad": ("pad_token", ("[PAD]", "<pad>")),
    "mask": ("mask_token", ("[MASK]", "<mask>")),
    "unk": ("unk_token", ("[UNK]", "<unk>")),
    "bos": ("bos_token", ("<s>", "<|endoftext|>")),
    "eos": ("eos_token", ("</s>", "<|endoftext|>")),
}
BERT_SPECIAL = {role: SPECIAL_TOKENS[role][1][0] for role in ("cls", "sep", "pad", "mask", "unk")}  # [CLS] ...
SPM_MODEL_FILES = ("spiece.model", "sentencepiece.bpe.model")  # SentencePiece's own files (T5; mBART, XLM-R)
# vocab.json + merges.txt: the tokenizer_class / model_type values that mean BART's pipeline, and GPT-2's.
BART_KINDS = {"BartTokenizer", "RobertaTokenizer", "bart", "roberta"}
GPT2_KINDS = {"GPT2Tokenizer", "gpt2"}


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def folder_kind(folder: Path, config: dict[str, Any]) -> str:
    """What a folder says its tokenizer is: tokenizer_config.json's ``tokenizer_class`` (less
    ``Fast``), else config.json's ``model_type``, else ''."""
    if (kind := tokenizer_class(config)):
        return kind
    model_config = folder / "config.json"
    if not model_config.is_file():
        return ""
    model_type = read_json_object(model_config, "a model config object").get("model_type")
    return model_type if isinstance(model_type, str) else ""


def spm_model_error(file: Path) -> DataError:
    """The error for SentencePiece's own ``.model`` file without tokenizer.json beside it."""
    folder = file.parent
    return DataError(
        f"tokenizer: {file} is a SentencePiece model file, which lit_tasks does not read: it needs the folder's "
        "tokenizer.json. Write one with transformers (plus the sentencepiece and protobuf packages) installed: "
        f"python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{folder}')"
        f".save_pretrained('{folder}')\"; or train one with `python -m lit_tasks tokenizer --type unigram`."
    )


class Tokenizer:
    """A `tokenizers.Tokenizer` plus what our data modules need to know about it.

    ``cls``, ``sep``, ``pad``, ``mask``, ``unk``, ``bos``, ``eos``: ids of the special tokens
    (None where the vocabulary lacks one). A tokenizer without a pad token but with an eos one
    (GPT-2's) pads with eos: ``pad == eos`` and ``pad_is_eos`` (also when the config names
    the same token for both); attention masks, not the id, tell padding apart. ``vocab_size``;
    ``do_lower_case``; ``model_max_length``; ``byte_level``: GPT-2's pipeline (whose
    :meth:`encode` adds no special tokens) or BART's (``<s> A </s></s> B </s>``),
    lit_tasks.text.byte_level.

    Sequence-to-sequence extras (lit_tasks.text.seq2seq_tokens): ``sentinels``, the ids of
    T5's ``<extra_id_0>``, ``<extra_id_1>``, ... in that order ([] when none); ``languages``,
    mBART's language codes ({code: id}, {} when none), with ``src_lang`` / ``tgt_lang`` (set by
    :meth:`set_languages`; ``encode_raw(..., target=True)`` marks a text as the target's).
    """

    def __init__(self, tokenizer: RustTokenizer, config: dict[str, Any] | None = None, source: str = "<memory>"):
        self.backend = tokenizer
        self.config = dict(config or {})
        self.source = source
        self.backend.no_truncation()
        self.backend.no_padding()
        self._truncation: int | None = None
        self.special_tokens: dict[str, str] = {}
        for role, (key, spellings) in SPECIAL_TOKENS.items():
            given = _token_text(self.config.get(key))
            for text in (given,) if given else spellings:
                if tokenizer.token_to_id(text) is not None:
                    self.special_tokens[role] = text
                    break
        # No pad token: pad with eos (not written back as pad_token by files()).
        self._pad_from_eos = "pad" not in self.special_tokens and "eos" in self.special_tokens
        if self._pad_from_eos:
            self.special_tokens["pad"] = self.special_tokens["eos"]
        self.pad_is_eos = self.pad is not None and self.pad == self.eos
        self.byte_level = is_byte_level(tokenizer)
        self.do_lower_case: bool = bool(self.config.get("do_lower_case", isinstance(tokenizer.model, models.WordPiece)))
        self.sentinels: list[int] = sentinel_ids(tokenizer, self.config, source)
        self.languages: dict[str, int] = language_codes(tokenizer)
        self.language_style = language_style(tokenizer, self.config, self.languages)
        self.src_lang: str | None = None
        self.tgt_lang: str | None = None
        self._target_processor = None  # the template of targets, when they differ from sources
        if self.language_style:
            default = "en_XX" if "en_XX" in self.languages else next(iter(self.languages))  # transformers': en_XX
            self.set_languages(self.config.get("src_lang") or default, self.config.get("tgt_lang"))
        limit = self.config.get("model_max_length")
        # HF writes a huge sentinel (1e30) when the model has no limit.
        self.model_max_length: int | None = int(limit) if isinstance(limit, (int, float)) and 0 < limit < 1e9 else None

    def _id(self, role: str) -> int | None:
        text = self.special_tokens.get(role)
        return None if text is None else self.backend.token_to_id(text)

    @property
    def cls(self) -> int | None:
        return self._id("cls")

    @property
    def sep(self) -> int | None:
        return self._id("sep")

    @property
    def pad(self) -> int | None:
        return self._id("pad")

    @property
    def mask(self) -> int | None:
        return self._id("mask")

    @property
    def unk(self) -> int | None:
        return self._id("unk")

    @property
    def bos(self) -> int | None:
        return self._id("bos")

    @property
    def eos(self) -> int | None:
        return self._id("eos")

    def language_id(self, code: str) -> int:
        """The id of language ``code`` (e.g. ``en_XX``); a ConfigError naming the known codes."""
        return check_language(code, self.languages, self.source)

    def set_languages(self, src_lang: str, tgt_lang: str | None = None) -> None:
        """Mark sources as being in ``src_lang`` and targets in ``tgt_lang`` (default: the
        source's), as mBART's release places codes (lit_tasks.text.seq2seq_tokens)."""
        if not self.language_style:
            raise ConfigError(f"tokenizer {self.source} has no language codes (tokens like en_XX); src_lang/tgt_lang "
                              "apply to mBART tokenizers only.")
        tgt_lang = tgt_lang or src_lang
        check_language(src_lang, self.languages, self.source, "src_lang")
        check_language(tgt_lang, self.languages, self.source, "tgt_lang")
        eos = self.special_tokens.get("eos")
        if eos is None:
            raise DataError(f"tokenizer {self.source} has language codes but no eos token (</s>) to end a text.")
        eos_pair = (eos, self.backend.token_to_id(eos))
        self.backend.post_processor = language_processor(self.language_style, src_lang, self.languages, eos_pair)
        self._target_processor = language_processor(self.language_style, tgt_lang, self.languages, eos_pair)
        self.src_lang, self.tgt_lang = src_lang, tgt_lang

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return f"Tokenizer({self.source}, vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case})"

    # ------------------------------------------------------------------------------ encoding

    def _set_truncation(self, max_length: int | None) -> None:
        if max_length == self._truncation:
            return
        if max_length is None:
            self.backend.no_truncation()
        else:
            # longest_first: drop tokens from the longer of the two texts first (the HF default).
            self.backend.enable_truncation(max_length, strategy="longest_first")
        self._truncation = max_length

    @staticmethod
    def _as_dict(e: Encoding) -> dict[str, Any]:
        return {
            "input_ids": list(e.ids),
            "token_type_ids": list(e.type_ids),
            "attention_mask": list(e.attention_mask),
            "offsets": list(e.offsets),  # (start, end) characters into its own text; (0, 0) for specials
            "truncated": bool(e.overflowing),
        }

    def encode(
        self, text: str, pair: str | None = None, max_length: int | None = None, truncation: bool = True
    ) -> dict[str, Any]:
        """One text (or text pair) -> ``{"input_ids", "token_type_ids", "attention_mask",
        "offsets", "truncated"}`` (lists; ``truncated`` says whether tokens were dropped).

        With ``truncation`` the result has at most ``max_length`` tokens (default
        ``model_max_length``, when the config gives one), special tokens included."""
        return self.encode_batch([text], None if pair is None else [pair], max_length, truncation)[0]

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
    ) -> list[dict[str, Any]]:
        """:meth:`encode` over many texts, in parallel threads (no padding)."""
        encodings = self.encode_raw(texts, pairs, max_length, truncation)
        return [self._as_dict(e) for e in encodings]

    def encode_raw(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
        add_special_tokens: bool = True,
        target: bool = False,
    ) -> list[Encoding]:
        """The `tokenizers.Encoding` objects (for bulk use without per-item dicts);
        ``add_special_tokens=False`` gives the bare word pieces (no [CLS]/[SEP]); ``target``:
        the texts are a seq2seq model's targets (for mBART: marked with ``tgt_lang``)."""
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"encode_batch: {len(texts)} texts but {len(pairs)} pairs")
        limit = (max_length or self.model_max_length) if truncation else None
        self._set_truncation(limit)
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        if not (target and self._target_processor):
            return self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        source = self.backend.post_processor
        self.backend.post_processor = self._target_processor
        try:
            return self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self.backend.post_processor = source

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str | None]:
        return [self.backend.id_to_token(i) for i in ids]

    # ---------------------------------------------------------------------------------- saving

    def save(self, folder: str | Path) -> Path:
        """Write :meth:`files` into ``folder``: the layout of an HF checkpoint folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder

    def files(self) -> dict[str, str]:
        """{file name: text} of ``tokenizer.json``, ``tokenizer_config.json`` and ``vocab.txt``
        (WordPiece models) or ``vocab.json`` + ``merges.txt`` (byte-level BPE), what :meth:`save`
        writes and :func:`load_tokenizer` reads."""
        self._set_truncation(None)  # the saved pipeline carries no truncation setting
        files = {"tokenizer.json": self.backend.to_str(pretty=True)}
        wordpiece = isinstance(self.backend.model, models.WordPiece)
        if wordpiece:
            by_id = sorted(self.backend.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
            if [i for _, i in by_id] != list(range(len(by_id))):
                raise ValueError("tokenizer: the vocabulary ids are not contiguous; cannot write vocab.txt")
            files["vocab.txt"] = "".join(t + "\n" for t, _ in by_id)
        elif self.byte_level:
            files.update(bpe_model_files(self.backend))
        roles = {r: t for r, t in self.special_tokens.items() if not (r == "pad" and self._pad_from_eos)}
        config = {
            **self.config,
            "do_lower_case": self.do_lower_case,
            **{SPECIAL_TOKENS[role][0]: text for role, text in roles.items()},
        }
        if self.byte_level:
            config["add_prefix_space"] = bool(self.backend.pre_tokenizer.add_prefix_space)
        if self.language_style:
            config.update(src_lang=self.src_lang, tgt_lang=self.tgt_lang)
        config.setdefault("tokenizer_class", self._class_name(wordpiece))
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        files["tokenizer_config.json"] = json.dumps(config, indent=2, sort_keys=True) + "\n"
        return files

    def _class_name(self, wordpiece: bool) -> str:
        """The transformers class that reads what :meth:`files` writes (tokenizer_class)."""
        if wordpiece:
            return "BertTokenizer"
        if self.byte_level:
            roberta = isinstance(self.backend.post_processor, processors.RobertaProcessing)
            return "BartTokenizer" if roberta else "GPT2Tokenizer"
        if self.language_style:
            return next(name for name, style in LANGUAGE_STYLES.items() if style == self.language_style)
        if isinstance(self.backend.model, models.Unigram) and self.sentinels:
            return "T5Tokenizer"
        return "PreTrainedTokenizerFast"


# ---------------------------------------------------------------------------------- building


def bert_pipeline(
    vocab: dict[str, int], do_lower_case: bool = True, strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True, special: dict[str, str] | None = None,
) -> RustTokenizer:
    """BERT's WordPiece tokenizer from a vocabulary (token -> id)."""
    special = BERT_SPECIAL | (special or {})
    missing = [special[r] for r in ("cls", "sep", "unk") if special[r] not in vocab]
    if missing:
        raise DataError(f"tokenizer: the vocabulary lacks the special token(s) {', '.join(missing)}.")
    model = models.WordPiece(vocab, unk_token=special["unk"], continuing_subword_prefix="##",
                             max_input_chars_per_word=100)  # BERT's limit: longer words become [UNK]
    tk = RustTokenizer(model)
    tk.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents,  # None: strip exactly when lowercasing (BERT's rule)
        lowercase=do_lower_case,
    )
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls"], special["sep"]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tk.decoder = decoders.WordPiece(prefix="##")
    # Special tokens written in the text are matched whole, never split into pieces.
    tk.add_special_tokens([t for t in special.values() if t in vocab])
    return tk


def read_vocab(file: Path) -> dict[str, int]:
    """``vocab.txt``: one token per line, the line number (from 0) is its id."""
    vocab: dict[str, int] = {}
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f):
            token = line.rstrip("\n").rstrip("\r")
            if not token:
                raise DataError(f"tokenizer: {file} line {number + 1} is empty; expected one token per line.")
            if token in vocab:
                raise DataError(
                    f"tokenizer: {file} line {number + 1}: token {token!r} already appears on line {vocab[token] + 1}."
                )
            vocab[token] = number
    if not vocab:
        raise DataError(f"tokenizer: {file} is empty; expected one token per line.")
    return vocab


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint folder (or a ``tokenizer.json`` / ``vocab.txt`` /
    ``vocab.json`` file, or a lit_tasks ``.ckpt``, which stores the files of the tokenizer it
    was trained with).

    ``tokenizer.json`` wins: it holds the whole pipeline (T5's and mBART's SentencePiece
    Unigram/BPE included), and tokenizer_config.json names the special tokens; for mBART its
    ``tokenizer_class`` (MBartTokenizer or MBart50Tokenizer, else where tokenizer.json's template
    puts the language code) says where language codes go, and ``src_lang`` / ``tgt_lang`` which
    ones (default en_XX), as transformers does. Otherwise ``vocab.txt`` becomes BERT's WordPiece pipeline, with
    ``do_lower_case`` / ``strip_accents`` / ``tokenize_chinese_chars`` and the special tokens
    taken from ``tokenizer_config.json`` when the folder has one; or ``vocab.json`` +
    ``merges.txt`` GPT-2's byte-level BPE, with ``add_prefix_space`` (default false) and the
    special tokens from ``tokenizer_config.json``, ``<|endoftext|>`` always among them; BART's
    pipeline (``<s> A </s>``, lit_tasks.text.byte_level) instead when the folder says so
    (:func:`folder_kind`: a Bart/Roberta ``tokenizer_class``, else a bart/roberta ``model_type``
    in config.json) or, saying nothing, its vocabulary has ``<s>`` and ``</s>`` but no
    ``<|endoftext|>``. SentencePiece's ``spiece.model`` alone is refused with the way to write
    its tokenizer.json.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise DataError(
            f"tokenizer: {given} does not exist; expected a checkpoint/tokenizer folder holding "
            f"tokenizer.json or vocab.txt, or {VOCAB_JSON} + {MERGES_TXT}."
        )
    if given.is_file() and given.suffix == ".ckpt":
        return checkpoint_tokenizer(given)
    folder = given if given.is_dir() else given.parent
    config_file = folder / "tokenizer_config.json"
    config = read_json_object(config_file, "a tokenizer config object") if config_file.is_file() else {}
    if given.is_file():
        file = given
        if file.name in SPM_MODEL_FILES or file.suffix == ".model":
            raise spm_model_error(file)
        if file.name not in (*TOKENIZER_FILES, MERGES_TXT) and file.suffix not in (".json", ".txt"):
            raise DataError(f"tokenizer: {file} is neither a tokenizer.json nor a vocab.txt file, nor GPT-2's "
                            f"{VOCAB_JSON} / {MERGES_TXT}.")
    else:
        found = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
        spm = [folder / name for name in SPM_MODEL_FILES if (folder / name).is_file()]
        if spm and not (folder / "tokenizer.json").is_file():
            raise spm_model_error(spm[0])
        if not found:
            present = sorted(p.name for p in folder.iterdir())[:8]
            raise DataError(
                f"tokenizer: the folder {folder} has neither tokenizer.json nor vocab.txt "
                f"(found: {', '.join(present) or 'nothing'}), nor GPT-2's {VOCAB_JSON} + {MERGES_TXT}. Point "
                "`tokenizer` at a checkpoint folder with one of them, or train one with "
                "lit_tasks.text.train_wordpiece or train_bpe."
            )
        file = found[0]
    if file.name in (VOCAB_JSON, MERGES_TXT):
        named = {key: token for key, _ in SPECIAL_TOKENS.values() if (token := _token_text(config.get(key)))}
        kind = folder_kind(folder, config)
        bart = True if kind in BART_KINDS else False if kind in GPT2_KINDS else None  # None: by the vocabulary
        backend = byte_level_from_files(folder / VOCAB_JSON, folder / MERGES_TXT,
                                        bool(config.get("add_prefix_space", False)), named, bart)
        file = folder / VOCAB_JSON
    elif file.suffix == ".json":
        try:
            backend = RustTokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a plain Exception on a malformed file
            raise DataError(f"tokenizer: {file} cannot be read by the tokenizers library ({e}).") from None
        if isinstance(backend.normalizer, normalizers.BertNormalizer) and "do_lower_case" not in config:
            config["do_lower_case"] = bool(getattr(backend.normalizer, "lowercase", True))
    else:
        special = {role: _token_text(config.get(SPECIAL_TOKENS[role][0])) or text for role, text in BERT_SPECIAL.items()}
        strip = config.get("strip_accents")
        backend = bert_pipeline(
            read_vocab(file), do_lower_case=bool(config.get("do_lower_case", True)),
            strip_accents=None if strip is None else bool(strip),
            tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)), special=special,
        )
    return Tokenizer(backend, config, source=str(file))


def checkpoint_tokenizer(file: Path) -> Tokenizer:
    """The tokenizer a lit_tasks checkpoint was trained with (its stored tokenizer files)."""
    files = (checkpoint_entry(file) or {}).get("tokenizer_files") or {}
    if "tokenizer.json" not in files:
        raise DataError(f"tokenizer: the checkpoint {file} stores no tokenizer (it was not trained on text by "
                        "lit_tasks); set data.tokenizer to a tokenizer folder.")
    try:
        config = json.loads(files.get("tokenizer_config.json", "{}"))
        backend = RustTokenizer.from_str(files["tokenizer.json"])
    except Exception as e:  # json or the tokenizers library on a damaged entry
        raise DataError(f"tokenizer: the tokenizer stored in {file} cannot be read ({e}).") from None
    return Tokenizer(backend, config, source=f"{file} (its tokenizer)")


def corpus_paths(files: Sequence[str | Path], who: str) -> list[Path]:
    """The corpus files a tokenizer trainer reads, each checked to exist (`who` names the trainer)."""
    paths = [Path(f).expanduser() for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise DataError(f"{who}: corpus file(s) not found: {', '.join(missing) or '(none given)'}.")
    return paths


def file_lines(paths: Sequence[Path]) -> Iterator[str]:
    """The lines of UTF-8 text files, one after another; other bytes are a DataError naming file and line."""
    for path in paths:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path} line {number}: not UTF-8 text ({e.reason}).") from None


def train_wordpiece(
    files: Sequence[str | Path], vocab_size: int, out_dir: str | Path, lowercase: bool = True,
    min_frequency: int = 2, model_max_length: int = 512,
) -> Tokenizer:
    """Train BERT's WordPiece pipeline on plain-text ``files`` (each line is text) and save it
    to ``out_dir`` (tokenizer.json, vocab.txt, tokenizer_config.json).

    The special tokens take ids 0-4: ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
    """
    paths = corpus_paths(files, "train_wordpiece")
    return train_wordpiece_texts(file_lines(paths), vocab_size, out_dir, lowercase, min_frequency, model_max_length)


def train_wordpiece_texts(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, lowercase: bool = True,
    min_frequency: int = 2, model_max_length: int = 512,
) -> Tokenizer:
    """:func:`train_wordpiece` on texts already in memory (e.g. a JSONL column).

    ``lowercase`` (BERT's uncased models) also strips accents; ``min_frequency``: a pair of
    pieces seen fewer times is never merged. The vocabulary holds at most ``vocab_size``
    tokens, more only when the corpus has more distinct characters (every one is kept).
    """
    if vocab_size < 6:
        raise DataError(f"train_wordpiece: vocab_size is {vocab_size}; it must exceed the 5 special tokens.")
    special = [BERT_SPECIAL[r] for r in ("pad", "unk", "cls", "sep", "mask")]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special,
        continuing_subword_prefix="##", show_progress=False,
    )
    # Train on the model alone, then wrap it in the full pipeline built from the learned vocab.
    base = RustTokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    base.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None)
    base.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    base.train_from_iterator(texts, trainer)
    if base.get_vocab_size() <= len(special):
        raise DataError("train_wordpiece: the corpus holds no text; expected non-empty lines.")
    backend = bert_pipeline(base.get_vocab(with_added_tokens=True), do_lower_case=lowercase)
    config = {"do_lower_case": lowercase, "model_max_length": model_max_length}
    tokenizer = Tokenizer(backend, config, source=str(out_dir))
    tokenizer.save(out_dir)
    return tokenizer
