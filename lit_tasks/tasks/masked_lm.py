"""Masked-LM pretraining (optionally with next-sentence prediction) of a BERT-family encoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_tasks.errors import ConfigError
from lit_tasks.metrics.perplexity import Perplexity
from lit_tasks.tasks.base import STAGES, TaskModule

IGNORE = -100  # label of positions that are not predicted (lit_tasks.data.masked_lm)


class MaskedLanguageModeling(TaskModule):
    """Pretrain BERT with the masked-LM objective (Devlin et al. 2019, Sec. 3.1, Task #1) and,
    when the data gives ``next_sentence_label``, next-sentence prediction (Task #2).

    The network is the zoo's text "pretraining" head (see TaskModule): the encoder, an MLM head
    whose decoder is the word-embedding matrix (tied) and an NSP classifier on the pooler.
    From scratch (``backbone`` preset + ``backbone_config``) the embedding gets ``vocab_size``
    rows, linked from the DataModule's tokenizer; with ``init_from`` the checkpoint's
    vocabulary must be the tokenizer's (else a ConfigError). Without NSP the pooler and NSP
    head are frozen (unused: DDP needs every trainable parameter to get a gradient).

    Batches (lit_tasks.data.masked_lm.MaskedLMDataModule): ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (B, T) long; ``labels`` (B, T) long, the original id at predicted
    positions and -100 elsewhere; ``next_sentence_label`` (B,) long with ``nsp``.

    Loss: mean cross-entropy over predicted positions (+ NSP cross-entropy). Metrics:
    ``mlm_acc`` (accuracy on predicted positions), ``perplexity`` (see :class:`Perplexity`),
    ``nsp_acc`` with NSP; checkpoints are chosen by the lowest ``val/perplexity``.

    Args:
        vocab_size: the tokenizer's vocabulary size (linked from the data).
        nsp: train next-sentence prediction (linked from the data).
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "pretraining"
    monitor = ("val/perplexity", "min")

    def __init__(self, vocab_size: int | None = None, nsp: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_vocab_net(vocab_size)
        self.nsp = nsp
        if not nsp:
            for part in (self.net.bert.pooler, self.net.nsp):
                part.requires_grad_(False)
        metrics = {"mlm_acc": MulticlassAccuracy(self.net.config.vocab_size, average="micro")}
        if nsp:
            metrics["nsp_acc"] = MulticlassAccuracy(2, average="micro")
        self.stage_metrics(metrics)
        self.perplexity = nn.ModuleDict({f"{s}_perplexity": Perplexity() for s in STAGES})

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """(MLM logits (M, V) at the M positions where ``labels`` != -100, or (B, T, V) for
        all positions without labels; NSP logits (B, 2)). Decoding only the predicted
        positions saves most of the (B, T, V) decoder work."""
        out = self.net.bert(input_ids, attention_mask, token_type_ids)
        hidden = out.last_hidden_state if labels is None else out.last_hidden_state[labels != IGNORE]  # (M, D)
        mlm = self.net.mlm(hidden, self.net.bert.embeddings.word_embeddings.weight)  # tied decoder
        return mlm, self.net.nsp(out.pooler_output)  # (M, V), (B, 2)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch["labels"]  # (B, T)
        mlm_logits, nsp_logits = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], labels)
        targets = labels[labels != IGNORE]  # (M,)
        summed = F.cross_entropy(mlm_logits.float(), targets, reduction="sum")
        loss = summed / targets.numel() if targets.numel() else summed  # a batch may predict nothing
        batch_size = labels.shape[0]
        stage_metrics = self.metrics[f"{stage}_metrics"]
        if targets.numel():
            stage_metrics["mlm_acc"].update(mlm_logits, targets)
        self.perplexity[f"{stage}_perplexity"].update(summed, targets.numel())
        if self.nsp:
            if "next_sentence_label" not in batch:
                raise ConfigError("model.nsp is true but the batches have no next_sentence_label; set data.nsp")
            nsp_labels = batch["next_sentence_label"]  # (B,)
            loss = loss + F.cross_entropy(nsp_logits, nsp_labels)
            stage_metrics["nsp_acc"].update(nsp_logits, nsp_labels)
        self.log_loss(stage, loss, batch_size)
        self.log_dict(stage_metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch_size)
        self.log(f"{stage}/perplexity", self.perplexity[f"{stage}_perplexity"], on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch_size)
        return loss
