"""Speech recognition: a Wav2Vec2 encoder with a linear CTC head over characters (Baevski et al.
2020, Sec. 4), trained with the CTC loss and evaluated with WER and CER."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lit_tasks.errors import CheckpointError, ConfigError, DataError
from lit_tasks.metrics.asr import ErrorRate
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule
from lit_tasks.tasks.ctc_decoding import greedy_decode, prefix_beam_search
from lit_tasks.text.char_vocab import VOCAB_FILE, CharVocab, TextNormalizer
from lit_tasks.zoo.wav2vec2 import ctc_loss

log = logging.getLogger("lit_tasks")

SPLITS_OF = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}


class SpeechRecognition(TaskModule):
    """Transcribe speech into characters with CTC.

    **Vocabulary** (the CTC head's outputs), the first that applies: `vocab` (a vocab.json in HF
    `Wav2Vec2CTCTokenizer` format, or a folder holding one); the vocab.json of the `init_from`
    folder; else, when fit sets up, one built from the normalised train transcripts
    (`CharVocab.build`: "<pad>", "<unk>", the word delimiter, then the characters in sorted
    order). The pad token is the CTC blank. The vocabulary is stored in every checkpoint, so
    validate/test/predict from a checkpoint need neither `vocab` nor training data.

    **Normalisation** (`TextNormalizer`), of the training targets and of the references WER and
    CER compare with: change the case (`case`: "lower", "upper" or "keep"), delete `remove_chars`,
    collapse whitespace.
    A character still outside the vocabulary is handled by `oov`: "error" (default) stops at
    set-up with a DataError naming the manifest file, row and character; "unk" encodes it as the
    unknown token (the vocabulary needs one) and "drop" deletes it; both count such characters
    per split and log a warning. The transcripts of the splits a command uses are checked before
    the first step.

    **Decoding**: `decoder="greedy"` (best path) or `"beam"` (CTC prefix beam search without a
    language model, `beam_width` prefixes); used for the val/test metrics and predict.

    **Loss**: CTC (blank = pad id, `zero_infinity`: clips too short for their transcript add no
    loss), each utterance's loss divided by its target length, averaged over the batch.

    Batches (lit_tasks.data.AudioDataModule, task="transcription"): {"input_values": (B, T)
    float, "attention_mask": (B, T) long, "text": list of B transcripts ("" if unknown),
    "paths": list of B paths}.

    Args:
        vocab: vocab.json (or a folder with one); see above.
        word_delimiter: the vocabulary's token for the space between words.
        case, remove_chars: text normalisation.
        oov: what to do with transcript characters outside the vocabulary.
        decoder, beam_width: how frame scores become text.
        freeze_feature_encoder: do not train the conv feature encoder (usual when fine-tuning).
        log_samples: val/test clips sent to wandb with their reference and predicted transcripts.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "audio", "ctc"
    monitor = ("val/wer", "min")

    def __init__(
        self,
        vocab: str | None = None,
        word_delimiter: str = "|",
        case: Literal["lower", "upper", "keep"] = "lower",
        remove_chars: str = '.,?!;:"',
        oov: Literal["error", "unk", "drop"] = "error",
        decoder: Literal["greedy", "beam"] = "greedy",
        beam_width: int = 8,
        freeze_feature_encoder: bool = False,
        log_samples: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if oov not in ("error", "unk", "drop"):
            raise ConfigError(f"model.oov is {oov!r}; expected 'error', 'unk' or 'drop'")
        if decoder not in ("greedy", "beam"):
            raise ConfigError(f"model.decoder is {decoder!r}; expected 'greedy' or 'beam'")
        if beam_width < 1:
            raise ConfigError(f"model.beam_width is {beam_width}; expected an integer >= 1")
        if case not in ("lower", "upper", "keep"):
            raise ConfigError(f"model.case is {case!r}; expected 'lower', 'upper' or 'keep'")
        self.normalize = TextNormalizer(case, remove_chars)
        self.word_delimiter, self.oov = word_delimiter, oov
        self.decoder, self.beam_width, self.log_samples = decoder, beam_width, log_samples
        init_from = self.hparams.init_from
        if vocab is None and init_from is not None and (Path(init_from) / VOCAB_FILE).is_file():
            vocab = init_from
        self.vocab: CharVocab | None = None
        # Without a vocabulary yet, the head keeps the preset's / checkpoint's size until `setup`.
        self.build_net()
        if freeze_feature_encoder:
            self.net.freeze_feature_encoder()
        if vocab is not None:
            self._set_vocab(CharVocab.from_file(vocab, word_delimiter))
        self.wer = nn.ModuleDict({s: ErrorRate("word") for s in EVAL_STAGES})
        self.cer = nn.ModuleDict({s: ErrorRate("char") for s in EVAL_STAGES})
        self.oov_counts: dict[str, int] = {}
        self._samples: dict[str, list[dict[str, Any]]] = {}
        self._unchecked_stage: str | None = None

    # -- vocabulary --------------------------------------------------------------------------
    def _set_vocab(self, vocab: CharVocab) -> None:
        if self.oov == "unk" and vocab.unk_id is None:
            raise ConfigError(f"model.oov is 'unk' but {vocab.source} has no unknown token (<unk> or [UNK]); "
                              "add one or use oov 'error' or 'drop'")
        self.vocab = vocab
        head = self.net.lm_head
        if head.out_features != len(vocab):  # a fresh output layer of the vocabulary's size
            self.net.lm_head = torch.nn.Linear(head.in_features, len(vocab)).to(head.weight.device)
            torch.nn.init.normal_(self.net.lm_head.weight, std=self.net.wav2vec2.config.initializer_range)
            torch.nn.init.zeros_(self.net.lm_head.bias)

    def setup(self, stage: str) -> None:
        """Build the vocabulary from the train transcripts (fit, none given) and check that the
        transcripts of the splits `stage` uses can be encoded."""
        data = self.attached_data()
        if self.vocab is None:
            if stage == "fit" and hasattr(data, "transcripts"):
                self._set_vocab(CharVocab.build((self.normalize(t) for t in data.transcripts("train")), self.word_delimiter))
        self._unchecked_stage = stage
        if self.vocab is not None:  # else on_load_checkpoint checks, once it has the checkpoint's vocabulary
            self._check_stage_transcripts()

    def _require_vocab(self) -> None:
        """Before the first step: a vocabulary from the config, the train data or the checkpoint."""
        if self.vocab is None:
            raise ConfigError("SpeechRecognition has no vocabulary: set model.vocab to a vocab.json, fine-tune "
                              "from a folder with one (model.init_from), fit (builds it from the train "
                              "transcripts) or give --ckpt_path of a trained model")

    def on_train_start(self) -> None:
        self._require_vocab()

    def on_validation_start(self) -> None:
        self._require_vocab()

    def on_test_start(self) -> None:
        self._require_vocab()

    def on_predict_start(self) -> None:
        self._require_vocab()

    def _check_stage_transcripts(self) -> None:
        data = self.attached_data()
        stage, self._unchecked_stage = self._unchecked_stage, None
        if stage is not None and hasattr(data, "records"):
            for split in SPLITS_OF.get(stage, ()):
                if data.has_split(split):
                    self._check_transcripts(split, data.records(split))

    def _check_transcripts(self, split: str, records: list) -> None:
        count = 0
        for record in records:
            unknown = self.vocab.unknown(self.normalize(record.text))
            if unknown and self.oov == "error":
                raise DataError(self._oov_message(record.where, record.text, unknown))
            count += sum(c in unknown for c in self.normalize(record.text))
        self.oov_counts[split] = count
        if count:
            action = "mapped to the unknown token" if self.oov == "unk" else "dropped"
            log.warning("%d character(s) of the %s transcripts are outside the vocabulary (%s) and are %s "
                        "(model.oov=%r)", count, split, self.vocab.source, action, self.oov)

    def _oov_message(self, where: str, text: str, unknown: list[str]) -> str:
        hint = ""
        if any(c.upper() in self.vocab.chars for c in unknown):
            hint = " The vocabulary has upper-case letters: set model.case to 'upper'."
        elif any(c.lower() in self.vocab.chars for c in unknown):
            hint = " The vocabulary has lower-case letters: set model.case to 'lower'."
        return (f"{where}: the transcript {text!r} has character(s) {unknown} outside the vocabulary "
                f"({self.vocab.source}, after normalisation: case={self.normalize.case!r}, removed "
                f"{self.normalize.remove_chars!r}). Fix the transcript, add the characters to model.remove_chars "
                f"or to the vocabulary, or set model.oov to 'unk' or 'drop'.{hint}")

    def _reference(self, text: str, where: str) -> str:
        """The normalised transcript the model should output (what WER/CER compare with)."""
        text = self.normalize(text)
        unknown = self.vocab.unknown(text)
        if unknown and self.oov == "error":
            raise DataError(self._oov_message(where, text, unknown))
        if unknown and self.oov == "drop":
            text = " ".join("".join(c for c in text if c not in unknown).split())
        return text

    # -- steps -------------------------------------------------------------------------------
    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_values, attention_mask)  # (B, T', V) logits

    def _frames(self, batch: dict[str, Any], num_frames: int) -> torch.Tensor:
        """(B,) real frames per clip after the feature encoder's length reduction."""
        return self.net.wav2vec2.output_lengths(batch["attention_mask"].sum(-1)).clamp(0, num_frames)

    def decode(self, log_probs: torch.Tensor, frames: torch.Tensor) -> list[str]:
        """(B, T', V) log-probabilities and (B,) real frames -> B transcripts."""
        texts = []
        for row, n in zip(log_probs, frames.tolist()):
            if self.decoder == "beam":
                ids = prefix_beam_search(row[:n], self.vocab.pad_id, self.beam_width)[0][0]
            else:
                ids = greedy_decode(row[:n], self.vocab.pad_id)
            texts.append(self.vocab.decode(ids))
        return texts

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """(CTC loss, (B, T', V) logits, (B,) real frames, B normalised reference transcripts)."""
        references = [self._reference(t, p) for t, p in zip(batch["text"], batch["paths"])]
        ids = [torch.tensor(self.vocab.encode(r), dtype=torch.long) for r in references]
        labels = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-100)  # (B, U)
        logits = self(batch["input_values"], batch["attention_mask"])  # (B, T', V)
        frames = self._frames(batch, logits.shape[1])
        loss = ctc_loss(logits, frames, labels.to(logits.device), blank=self.vocab.pad_id, reduction="mean",
                        zero_infinity=True)
        return loss, logits, frames, references

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if not batch["paths"]:  # every clip of the batch was skipped as undecodable
            return None
        loss, logits, frames, references = self.loss(batch)
        self.log_loss(stage, loss, len(references))  # utterance-weighted
        if stage == "train":
            return loss
        predictions = self.decode(logits.float().log_softmax(-1), frames)
        self.wer[stage].update(predictions, references)
        self.cer[stage].update(predictions, references)
        self.log(f"{stage}/wer", self.wer[stage], on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/cer", self.cer[stage], on_step=False, on_epoch=True, prog_bar=True)
        self._keep_samples(stage, batch, references, predictions)
        return loss

    def _keep_samples(self, stage: str, batch: dict[str, Any], references: list[str], predictions: list[str]) -> None:
        """The first `log_samples` clips of the epoch (peak-scaled audio), for `audio_samples`."""
        kept = self._samples.setdefault(stage, [])
        if self.trainer.sanity_checking:
            return
        for i in range(min(len(references), self.log_samples - len(kept))):
            audio = batch["input_values"][i, : int(batch["attention_mask"][i].sum())].float().cpu()
            kept.append({"path": batch["paths"][i], "audio": (audio / audio.abs().max().clamp(min=1e-6)).numpy(),
                         "sampling_rate": getattr(self.trainer.datamodule, "sampling_rate", 16000),
                         "reference": references[i], "prediction": predictions[i]})

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per clip: {"path", "text"} and, when the clip has a transcript, "reference"
        (normalised) besides it."""
        if not batch["paths"]:
            return []
        logits = self(batch["input_values"], batch["attention_mask"])
        texts = self.decode(logits.float().log_softmax(-1), self._frames(batch, logits.shape[1]))
        rows = []
        for path, text, given in zip(batch["paths"], texts, batch["text"]):
            rows.append({"path": path, "text": text, **({"reference": self.normalize(given)} if given else {})})
        return rows

    def start_epoch(self, stage: str) -> None:
        self._samples.pop(stage, None)

    def audio_samples(self, stage: str) -> list[dict[str, Any]]:
        """Up to `log_samples` clips of the last `stage` epoch: {"path", "audio" (N,) float in
        [-1, 1], "sampling_rate", "reference", "prediction"} (logged by FigureLogger)."""
        return self._samples.get(stage, [])

    # -- checkpoints -------------------------------------------------------------------------
    def task_metadata(self) -> dict[str, Any]:
        if self.vocab is None:
            return {}
        return {"vocab": self.vocab.tokens, "word_delimiter": self.vocab.word_delimiter,
                "normalizer": {"case": self.normalize.case, "remove_chars": self.normalize.remove_chars},
                "tokenizer_files": self.vocab.tokenizer_files()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's vocabulary (none configured; it sizes the head) or check that it
        is the configured one, then compare the architecture."""
        meta = checkpoint.get("lit_tasks", {})
        if "vocab" not in meta:
            raise CheckpointError("the checkpoint was not written by lit_tasks' SpeechRecognition (no vocabulary)")
        saved = CharVocab(meta["vocab"], meta["word_delimiter"], source="the checkpoint's vocabulary")
        if self.vocab is None:
            self._set_vocab(saved)
            self._check_stage_transcripts()
        elif saved != self.vocab:
            raise CheckpointError(f"the checkpoint was trained with another vocabulary than {self.vocab.source} "
                                  f"({len(meta['vocab'])} vs {len(self.vocab)} tokens); drop model.vocab to use "
                                  "the checkpoint's")
        super().on_load_checkpoint(checkpoint)
