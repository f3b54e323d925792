"""Audio classification (keyword spotting, speaker or emotion ids): a Wav2Vec2 encoder with the
SUPERB utterance head, trained with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch

from lit_tasks.errors import ConfigError
from lit_tasks.metrics.classification import single_label_metrics
from lit_tasks.tasks.classification import LabelledTask


class AudioClassification(LabelledTask):
    """Classify audio clips into `num_classes` labels.

    The network is the zoo's audio "classification" head (see TaskModule): the encoder's last
    state (or, with `backbone_config: {use_weighted_layer_sum: true}`, a learned softmax-weighted
    sum of all hidden states), a linear projection, the mean over the clip's real frames and a
    linear classifier. Real frames are those the attention mask keeps after the feature
    encoder's length reduction (`Wav2Vec2.output_lengths`), as transformers'
    Wav2Vec2ForSequenceClassification pools. Models with a group-norm feature encoder
    (wav2vec2-base) still see the padding in the first conv's normalisation, as in
    transformers; length bucketing keeps padding small.

    Batches (lit_tasks.data.AudioDataModule, task="classification"): {"input_values": (B, T)
    float, "attention_mask": (B, T) long, "labels": (B,) long (-1: unlabelled), "paths": list}.
    Metrics: acc, f1 (macro); a confusion matrix per val/test epoch.

    Args:
        freeze_feature_encoder: do not train the conv feature encoder (usual when fine-tuning).
        num_classes, label_names, label_smoothing: see LabelledTask.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "audio", "classification"

    def __init__(self, freeze_feature_encoder: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.num_classes < 2:
            raise ConfigError(f"model.num_classes is {self.num_classes}; a classifier needs at least 2 labels "
                              "(the train data has fewer)")
        self.build_net(self.num_classes)
        if freeze_feature_encoder:
            self.net.freeze_feature_encoder()
        self.stage_metrics(single_label_metrics(self.num_classes))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_values, attention_mask)  # (B, C) logits

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if batch["labels"].numel() == 0:  # every clip of the batch was skipped as undecodable
            return None
        return self.classify(stage, self(batch["input_values"], batch["attention_mask"]), batch["labels"])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per clip: {"path", "label", "score", "top": [[name, p], ...], "true_label"}
        (true_label only when the clip has one, e.g. the test split)."""
        if not batch["paths"]:
            return []
        probs = self(batch["input_values"], batch["attention_mask"]).softmax(-1)  # (B, C)
        return self.ranked(probs, batch["labels"], "path", batch["paths"])
