"""Transcripts as CTC targets: the character vocabulary, the normalisation and what happens to
characters outside the vocabulary (`AudioDataModule` with task="transcription").

The vocabulary, the first that applies: `vocab` (a vocab.json in HF `Wav2Vec2CTCTokenizer`
format, or a folder holding one); the one of the checkpoint being fine-tuned (`preprocessor`,
linked from `model.init_from`: an HF folder with a vocab.json or a lit_tasks .ckpt of a
speech-recognition run); else one built from the normalised train transcripts
(`CharVocab.build`). The CLI links its size into the model's CTC head (`vocab_size`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.safe_load import checkpoint_entry
from lit_tasks.text.char_vocab import VOCAB_FILE, CharVocab, TextNormalizer

log = logging.getLogger(__name__)

OOV_MODES = ("error", "unk", "drop")


def given_vocab(vocab: str | None, preprocessor: str | None, word_delimiter: str) -> CharVocab | None:
    """The vocabulary `vocab` names, else the one stored with `preprocessor` (None without one)."""
    if vocab is not None:
        return CharVocab.from_file(vocab, word_delimiter)
    if preprocessor is None:
        return None
    path = Path(preprocessor).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        entry = checkpoint_entry(path) or {}
        if "vocab" not in entry:
            return None  # e.g. a pretraining checkpoint: the vocabulary comes from the transcripts
        return CharVocab(entry["vocab"], entry["word_delimiter"], source=f"{path} (its vocabulary)")
    folder = path if path.is_dir() else path.parent
    return CharVocab.from_file(folder, word_delimiter) if (folder / VOCAB_FILE).is_file() else None


class TranscriptTargets:
    """Normalises transcripts (`normalize`) and encodes them with `vocab`; a character still
    outside the vocabulary is handled by `oov`: "error" raises a DataError naming the manifest
    row and the character, "unk" encodes it as the unknown token (the vocabulary needs one),
    "drop" deletes it; both count such characters."""

    def __init__(self, vocab: CharVocab, normalize: TextNormalizer, oov: str) -> None:
        if oov not in OOV_MODES:
            raise ConfigError(f"data.oov is {oov!r}; expected 'error', 'unk' or 'drop'")
        if oov == "unk" and vocab.unk_id is None:
            raise ConfigError(f"data.oov is 'unk' but {vocab.source} has no unknown token (<unk> or [UNK]); "
                              "add one or use oov 'error' or 'drop'")
        self.vocab, self.normalize, self.oov = vocab, normalize, oov

    def reference(self, text: str, where: str) -> tuple[str, int]:
        """(the normalised transcript the model should output, which WER/CER compare with; the
        number of its characters outside the vocabulary)."""
        text = self.normalize(text)
        unknown = self.vocab.unknown(text)
        if unknown and self.oov == "error":
            raise DataError(self._message(where, text, unknown))
        count = sum(c in unknown for c in text)
        if unknown and self.oov == "drop":
            text = " ".join("".join(c for c in text if c not in unknown).split())
        return text, count

    def encode(self, reference: str) -> list[int]:
        return self.vocab.encode(reference)

    def warn(self, split: str, count: int) -> None:
        if count:
            action = "mapped to the unknown token" if self.oov == "unk" else "dropped"
            log.warning("%d character(s) of the %s transcripts are outside the vocabulary (%s) and are %s "
                        "(data.oov=%r)", count, split, self.vocab.source, action, self.oov)

    def _message(self, where: str, text: str, unknown: list[str]) -> str:
        hint = ""
        if any(c.upper() in self.vocab.chars for c in unknown):
            hint = " The vocabulary has upper-case letters: set data.case to 'upper'."
        elif any(c.lower() in self.vocab.chars for c in unknown):
            hint = " The vocabulary has lower-case letters: set data.case to 'lower'."
        return (f"{where}: the transcript {text!r} has character(s) {unknown} outside the vocabulary "
                f"({self.vocab.source}, after normalisation: case={self.normalize.case!r}, removed "
                f"{self.normalize.remove_chars!r}). Fix the transcript, add the characters to data.remove_chars "
                f"or to the vocabulary, or set data.oov to 'unk' or 'drop'.{hint}")
