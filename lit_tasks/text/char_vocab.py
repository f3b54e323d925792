"""Character vocabularies for CTC speech recognition, in HF's `Wav2Vec2CTCTokenizer` format,
and the text normalisation applied to transcripts before they are encoded.

A `vocab.json` maps tokens to ids, e.g. facebook/wav2vec2-base-960h's
{"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, ...}:
- the pad token ("<pad>" or "[PAD]") is the CTC blank;
- the word delimiter ("|") stands for the space between words;
- single characters are the output symbols; an unknown-token ("<unk>" or "[UNK]") is optional;
- other multi-character tokens ("<s>", "</s>") are never produced from text and are dropped
  when decoding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lit_tasks.errors import ConfigError

PAD_TOKENS = ("<pad>", "[PAD]")
UNK_TOKENS = ("<unk>", "[UNK]")
VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


@dataclass(frozen=True)
class TextNormalizer:
    """What a transcript goes through before it is encoded (and before WER/CER compare it):

    1. `case`: "lower" lower-cases it, "upper" upper-cases it (vocabularies of capitals, such as
       the English wav2vec2-base-960h's), "keep" leaves it (case-sensitive scripts);
    2. delete every character of `remove_chars` (by default . , ? ! ; : and double quotes);
    3. collapse runs of whitespace into one space and strip both ends.

    Characters still outside the vocabulary after this are handled by the data's `oov` mode.
    """

    case: Literal["lower", "upper", "keep"] = "lower"
    remove_chars: str = '.,?!;:"'

    def __call__(self, text: str) -> str:
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        if self.remove_chars:
            text = text.translate({ord(c): None for c in self.remove_chars})
        return " ".join(text.split())


class CharVocab:
    """Token <-> id map of a CTC head. `tokens`: {token: id} with ids 0 .. n-1."""

    def __init__(self, tokens: dict[str, int], word_delimiter: str = "|", source: str = "vocab") -> None:
        self.source = source
        if not tokens:
            raise ConfigError(f"{source}: the vocabulary is empty")
        bad = [t for t, i in tokens.items() if not isinstance(t, str) or not t or isinstance(i, bool) or not isinstance(i, int)]
        if bad:
            raise ConfigError(f"{source}: expected {{token: integer id}}, but entries {bad[:5]} are not")
        if sorted(tokens.values()) != list(range(len(tokens))):
            raise ConfigError(f"{source}: the ids must be 0 .. {len(tokens) - 1}, each once; got {sorted(tokens.values())[:20]}")
        pads = [t for t in PAD_TOKENS if t in tokens]
        if not pads:
            raise ConfigError(f"{source}: no pad token ({' or '.join(PAD_TOKENS)}); CTC uses it as the blank")
        if word_delimiter not in tokens:
            raise ConfigError(f"{source}: no word delimiter {word_delimiter!r}; add it (it stands for the space "
                              "between words) or set data.word_delimiter to the vocabulary's")
        self.tokens = dict(tokens)
        self.id_to_token = {i: t for t, i in tokens.items()}
        self.word_delimiter = word_delimiter
        self.pad_id = tokens[pads[0]]
        self.unk_id = next((tokens[t] for t in UNK_TOKENS if t in tokens), None)
        self.delimiter_id = tokens[word_delimiter]
        self.chars = {t: i for t, i in tokens.items() if len(t) == 1 and t != word_delimiter}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and (self.tokens, self.word_delimiter) == (other.tokens, other.word_delimiter)

    @classmethod
    def from_file(cls, path: str | Path, word_delimiter: str = "|") -> CharVocab:
        """Read a vocab.json, or the vocab.json inside a checkpoint folder."""
        path = Path(path).expanduser()
        file = path / VOCAB_FILE if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"data.vocab: {file} does not exist; expected a vocab.json ({{token: id}})")
        try:
            tokens = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"data.vocab: {file} is not valid JSON ({e})") from None
        if not isinstance(tokens, dict):
            raise ConfigError(f"data.vocab: {file} holds a {type(tokens).__name__}; expected {{token: id}}")
        return cls(tokens, word_delimiter, source=str(file))

    @classmethod
    def build(cls, texts: Iterable[str], word_delimiter: str = "|") -> CharVocab:
        """{"<pad>": 0, "<unk>": 1, delimiter: 2, then the characters of the (normalised) `texts`
        in sorted order}; the space becomes the delimiter."""
        chars = sorted({c for text in texts for c in text} - {" "})
        if word_delimiter in chars:
            raise ConfigError(f"the transcripts contain the word delimiter {word_delimiter!r} itself; set "
                              "data.word_delimiter to a character they do not use")
        tokens = ["<pad>", "<unk>", word_delimiter, *chars]
        return cls({t: i for i, t in enumerate(tokens)}, word_delimiter, source="vocabulary built from the train transcripts")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.tokenizer_files()[VOCAB_FILE])
        return path

    def tokenizer_files(self) -> dict[str, str]:
        """{file name: text} of an HF `Wav2Vec2CTCTokenizer` folder: vocab.json and
        tokenizer_config.json naming our pad (the CTC blank), unknown and word-delimiter tokens.
        Sentence markers ("<s>", "</s>") are named only when the vocabulary has them, so a
        tokenizer loaded from the folder has exactly these ids."""
        def present(token: str) -> str | None:
            return token if token in self.tokens else None

        config = {
            "tokenizer_class": "Wav2Vec2CTCTokenizer",
            "pad_token": self.id_to_token[self.pad_id],
            "unk_token": self.id_to_token[self.unk_id] if self.unk_id is not None else None,
            "word_delimiter_token": self.word_delimiter,
            "bos_token": present("<s>"),
            "eos_token": present("</s>"),
            "do_lower_case": False,
        }
        return {VOCAB_FILE: json.dumps(self.tokens, ensure_ascii=False, indent=1) + "\n",
                TOKENIZER_CONFIG_FILE: json.dumps(config, ensure_ascii=False, indent=2) + "\n"}

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of normalised `text` that have no token (in order of appearance)."""
        return list(dict.fromkeys(c for c in text if c != " " and c not in self.chars))

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids; spaces become the delimiter, unknown characters `unk_id`
        (callers check `unknown` first when there is none)."""
        return [self.delimiter_id if c == " " else self.chars.get(c, self.unk_id) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """ids (already CTC-collapsed, blanks removed) -> text; the delimiter becomes a space,
        tokens other than characters are dropped, whitespace is collapsed."""
        out = []
        for i in ids:
            token = self.id_to_token[int(i)]
            if i == self.delimiter_id:
                out.append(" ")
            elif len(token) == 1:
                out.append(token)
        return re.sub(r"\s+", " ", "".join(out)).strip()
