"""Denoising pretraining of an encoder-decoder: BART text infilling, T5 span corruption."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.token_loss import TokenLoss
from lit_tasks.zoo.base import shift_right



class DenoisingPretraining(TokenLoss, TaskModule):
    """Pretrain an encoder-decoder to rebuild text from a corrupted copy: BART's text infilling
    and sentence permutation (Lewis et al. 2020, Sec. 2.2) or T5's span corruption (Raffel et al.
    2020, Sec. 3.1.4); the corruption is the data's (lit_tasks.data.denoising.DenoisingDataModule).

    The network is the zoo's text "seq2seq_lm" head, from scratch (``backbone`` preset +
    ``backbone_config``, the embedding sized by ``vocab_size`` from the data's tokenizer) or from
    ``init_from``. Its checkpoint is a valid ``init_from`` for Summarization and Translation, which
    keep the whole model (the same head).

    Loss: cross-entropy of every target token given the corrupted source and the target before
    it (the decoder reads the labels shifted right after ``decoder_start_token_id``), weighted by
    tokens. Metrics: ``perplexity`` (exact under DDP) and ``acc`` (top-1 of target tokens);
    checkpoints are chosen by the lowest ``val/perplexity``.

    Args:
        vocab_size: the tokenizer's vocabulary size (linked from the data).
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "seq2seq_lm"
    monitor = ("val/perplexity", "min")

    def __init__(self, vocab_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_vocab_net(vocab_size)
        self.token_metrics()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids, attention_mask, decoder_input_ids)  # (B, T, V)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        config = self.net.config
        labels = batch["labels"]  # (B, T)
        logits = self(batch["input_ids"], batch["attention_mask"],
                      shift_right(labels, config.decoder_start_token_id, config.pad_token_id))
        return self.token_loss(stage, logits, labels)
