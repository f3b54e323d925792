"""Sequence to sequence: summarization and translation with an encoder-decoder (BART, mBART, T5)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchmetrics import Metric

from lit_tasks.errors import ConfigError
from lit_tasks.generation import GenerationConfig, generate, generation_defaults
from lit_tasks.metrics.rouge import RougeMetric
from lit_tasks.metrics.translation import BleuChrfMetric
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule
from lit_tasks.zoo.base import shift_right

IGNORE = -100  # the label of padding (lit_tasks.data.seq2seq)


class SequenceToSequence(TaskModule):
    """Train an encoder-decoder to write the target text for a source text, and score what it
    generates. Summarization and Translation differ only in their metrics.

    The network is the zoo's text "seq2seq_lm" head (BART, mBART, T5). From scratch the
    embedding gets ``vocab_size`` rows (linked from the data's tokenizer); with ``init_from``
    the vocabulary must be the tokenizer's.

    Loss: cross-entropy of every real target token given the source and the target before it
    (teacher forcing; the decoder reads the labels shifted right after the model's
    ``decoder_start_token_id``), with ``label_smoothing`` (Szegedy et al. 2016, Sec. 7), weighted
    by tokens across batches and ranks. Validation and test also generate a text for every source
    with the ``generation`` options (defaults from the model's config: start, eos, pad and forced
    tokens) and score it against the target as written; scores are corpus-level over every row
    of every rank. The generated texts go to ``<stage>_predictions.jsonl`` in the run folder
    (rows in data order, the last epoch's) and to a wandb table. ``predict`` writes ``{"id", "source", "prediction"}`` rows.

    Args:
        vocab_size: the tokenizer's vocabulary size (linked from the data).
        generation: options of :class:`lit_tasks.generation.GenerationConfig` (max_new_tokens,
            num_beams, length_penalty, no_repeat_ngram_size, ...).
        label_smoothing: share of the target probability spread over the vocabulary.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "seq2seq_lm"
    METRIC: ClassVar[type[Metric]]

    def __init__(self, vocab_size: int | None = None, generation: dict[str, Any] | None = None,
                 label_smoothing: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_vocab_net(vocab_size)
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing is {label_smoothing}; expected a share in [0, 1)")
        self.label_smoothing = label_smoothing
        self.generation_options = dict(generation or {})
        self.generation_config()  # fail early on a typo or a missing start token
        self.scores = torch.nn.ModuleDict({s: self.METRIC() for s in EVAL_STAGES})
        self._predictions: dict[str, list[dict[str, Any]]] = {s: [] for s in EVAL_STAGES}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids, attention_mask, decoder_input_ids)  # (B, T, V)

    def _options(self) -> dict[str, Any]:
        """The ``generation`` options over the model config's defaults (start, eos, pad, forced ids)
        and the data's language tokens (mBART, ``Seq2SeqDataModule.decoder_tokens``)."""
        data = self.attached_data()
        language = data.decoder_tokens() if hasattr(data, "decoder_tokens") else {}
        return {**generation_defaults(self.net.config), **language, **self.generation_options}

    def generation_config(self) -> GenerationConfig:
        """The decoding options, checked (`_options`)."""
        return GenerationConfig.from_dict(self._options(), source="model.generation")

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch["labels"]
        start = self._options().get("decoder_start_token_id")  # checked once in __init__, not per step
        decoder_input_ids = shift_right(labels, start, self.net.config.pad_token_id)
        logits = self(batch["input_ids"], batch["attention_mask"], decoder_input_ids)  # (B, T, V)
        count = int((labels != IGNORE).sum())
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)
        self.log_loss(stage, loss, count)
        if stage != "train":
            self._score(stage, batch)
        return loss

    # -- generation and scores ---------------------------------------------------------------
    def tokenizer(self):
        tokenizer = getattr(self.attached_data(), "tokenizer", None)
        if tokenizer is None:
            raise ConfigError("seq2seq generation needs the data's tokenizer (a Seq2SeqDataModule)")
        return tokenizer

    def _generate(self, batch: dict[str, Any]) -> list[str]:
        """The generated text of every source of the batch (the best sequence of each)."""
        config = self.generation_config()
        if config.num_return_sequences != 1:
            raise ConfigError("model.generation.num_return_sequences must be 1 for a seq2seq task (one text per source)")
        out = generate(self.net, batch["input_ids"], batch["attention_mask"], config)  # (B, 1 + n)
        tokenizer = self.tokenizer()
        return [tokenizer.decode(row[1:].tolist()).strip() for row in out]

    def _score(self, stage: str, batch: dict[str, Any]) -> None:
        predictions = self._generate(batch)
        self.scores[stage].update(predictions, batch["targets"])
        for index, name, prediction, target in zip(batch["index"].tolist(), batch["ids"], predictions, batch["targets"]):
            self._predictions[stage].append({"index": index, "id": name, "prediction": prediction, "target": target})

    def start_epoch(self, stage: str) -> None:
        self._predictions[stage] = []

    def end_epoch(self, stage: str) -> None:
        if stage == "train":
            return
        self._predictions[stage] = self._gather(self._predictions[stage])
        scores = self.scores[stage].compute()  # reduced over processes: the same on every rank
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=True, sync_dist=False)
        self.scores[stage].reset()

    def _gather(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every process's rows on rank 0, in data order (the eval sampler gives each row to one rank)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, rows)
            rows = [r for part in parts for r in part] if self.global_rank == 0 else []
        return sorted(rows, key=lambda r: r["index"])

    def text_predictions(self, stage: str) -> list[dict[str, str]]:
        """{"id", "prediction", "target"} of every row of the last ``stage`` epoch, in data order
        (FigureLogger writes them to ``<stage>_predictions.jsonl`` and a wandb table, on rank 0)."""
        return [{k: r[k] for k in ("id", "prediction", "target")} for r in self._predictions[stage]]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        tokenizer = self.tokenizer()
        sources = [tokenizer.decode(ids[mask.bool()].tolist()) for ids, mask in zip(batch["input_ids"],
                                                                                     batch["attention_mask"])]
        return [{"id": i, "source": s, "prediction": p}
                for i, s, p in zip(batch["ids"], sources, self._generate(batch))]


class Summarization(SequenceToSequence):
    """Seq2seq with ROUGE-1/2/L/Lsum (the `rouge-score` package); checkpoints by val/rougeL."""

    METRIC = RougeMetric
    monitor = ("val/rougeL", "max")


class Translation(SequenceToSequence):
    """Seq2seq with corpus BLEU and chrF (the `sacrebleu` package); checkpoints by val/chrf."""

    METRIC = BleuChrfMetric
    monitor = ("val/chrf", "max")
