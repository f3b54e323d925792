"""Speech recognition: a Wav2Vec2 encoder with a linear CTC head over characters (Baevski et al.
2020, Sec. 4), trained with the CTC loss and evaluated with WER and CER."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.metrics.asr import ErrorRate
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule
from lit_tasks.tasks.ctc_decoding import greedy_decode, prefix_beam_search
from lit_tasks.text.char_vocab import CharVocab
from lit_tasks.zoo.wav2vec2 import ctc_loss


class SpeechRecognition(TaskModule):
    """Transcribe speech into characters with CTC.

    **Vocabulary**: the data's (`AudioDataModule` with task="transcription" builds it, or reads
    `data.vocab` or the vocab.json of the `init_from` folder, and normalises and encodes the
    transcripts); its size `vocab_size` is linked into the CTC head, the pad token is the CTC
    blank. The vocabulary is stored in every checkpoint, so validate/test/predict from a
    checkpoint need no training data, and data whose vocabulary differs from the checkpoint's
    is refused.

    **Decoding**: `decoder="greedy"` (best path) or `"beam"` (CTC prefix beam search without a
    language model, `beam_width` prefixes); used for the val/test metrics and predict.

    **Loss**: CTC (blank = pad id, `zero_infinity`: clips too short for their transcript add no
    loss), each utterance's loss divided by its target length, averaged over the batch.

    Batches (lit_tasks.data.AudioDataModule, task="transcription"): {"input_values": (B, T)
    float, "attention_mask": (B, T) long, "labels": (B, U) long transcript ids (-100 after the
    end), "text": list of B normalised transcripts ("" if unknown), "paths": list of B paths}.

    Args:
        vocab_size: the CTC head's outputs (linked from the data's vocabulary).
        decoder: how frame scores become text: "greedy" (best path) or "beam" (prefix beam search).
        beam_width: prefixes kept by the beam decoder (unused by greedy).
        freeze_feature_encoder: do not train the conv feature encoder (usual when fine-tuning).
        log_samples: val/test clips sent to wandb with their reference and predicted transcripts.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "audio", "ctc"
    monitor = ("val/wer", "min")

    def __init__(
        self,
        vocab_size: int | None = None,
        decoder: Literal["greedy", "beam"] = "greedy",
        beam_width: int = 8,
        freeze_feature_encoder: bool = False,
        log_samples: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if decoder not in ("greedy", "beam"):
            raise ConfigError(f"model.decoder is {decoder!r}; expected 'greedy' or 'beam'")
        if beam_width < 1:
            raise ConfigError(f"model.beam_width is {beam_width}; expected an integer >= 1")
        self.decoder, self.beam_width, self.log_samples = decoder, beam_width, log_samples
        self.vocab: CharVocab | None = None  # from the data at setup, or from the checkpoint
        # Without vocab_size (predict from a checkpoint) the head keeps the preset's / folder's
        # size until the checkpoint's vocabulary resizes it.
        self.build_net(vocab_size)
        if freeze_feature_encoder:
            self.net.freeze_feature_encoder()
        self.wer = nn.ModuleDict({s: ErrorRate("word") for s in EVAL_STAGES})
        self.cer = nn.ModuleDict({s: ErrorRate("char") for s in EVAL_STAGES})
        self._samples: dict[str, list[dict[str, Any]]] = {}

    # -- vocabulary --------------------------------------------------------------------------
    def _take_vocab(self, vocab: CharVocab) -> None:
        """Use `vocab` (the data's or the checkpoint's, whichever comes first: it sizes the head);
        the other, when it comes, must be the same."""
        if self.vocab is not None and vocab != self.vocab:
            raise CheckpointError(f"the checkpoint was trained with another vocabulary than the data's "
                                  f"({len(vocab)} vs {len(self.vocab)} tokens: {vocab.source}, {self.vocab.source}); "
                                  "use the data (train transcripts or data.vocab) the checkpoint was trained with")
        self.vocab = vocab
        head = self.net.lm_head
        if head.out_features != len(vocab):  # a fresh output layer of the vocabulary's size
            self.net.lm_head = nn.Linear(head.in_features, len(vocab)).to(head.weight.device)
            nn.init.normal_(self.net.lm_head.weight, std=self.net.wav2vec2.config.initializer_range)
            nn.init.zeros_(self.net.lm_head.bias)

    def check_data(self, data: Any) -> None:
        """Take the data's vocabulary (transcription data that has one)."""
        if getattr(data, "vocab", None) is not None:
            self._take_vocab(data.vocab)

    def _require_vocab(self) -> None:
        """Before the first step: a vocabulary from the data or the checkpoint."""
        if self.vocab is None:
            raise ConfigError("SpeechRecognition has no vocabulary: use transcription data with a train_file "
                              "(or data.vocab), or give --ckpt_path of a trained model")

    def on_train_start(self) -> None:
        self._require_vocab()

    def on_validation_start(self) -> None:
        self._require_vocab()

    def on_test_start(self) -> None:
        self._require_vocab()

    def on_predict_start(self) -> None:
        self._require_vocab()

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

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(CTC loss, (B, T', V) logits, (B,) real frames)."""
        logits = self(batch["input_values"], batch["attention_mask"])  # (B, T', V)
        frames = self._frames(batch, logits.shape[1])
        loss = ctc_loss(logits, frames, batch["labels"], blank=self.vocab.pad_id, reduction="mean",
                        zero_infinity=True)
        return loss, logits, frames

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if not batch["paths"]:  # every clip of the batch was skipped as undecodable
            return None
        loss, logits, frames = self.loss(batch)
        references = batch["text"]
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
            rows.append({"path": path, "text": text, **({"reference": given} if given else {})})
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
                "tokenizer_files": self.vocab.tokenizer_files()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's vocabulary (none from the data; it sizes the head) or check that
        it is the data's, then compare the architecture."""
        meta = checkpoint.get("lit_tasks", {})
        if "vocab" not in meta:
            raise CheckpointError("the checkpoint was not written by lit_tasks' SpeechRecognition (no vocabulary)")
        self._take_vocab(CharVocab(meta["vocab"], meta["word_delimiter"], source="the checkpoint's vocabulary"))
        super().on_load_checkpoint(checkpoint)
