"""Text classification: a BERT-family encoder with a sequence-classification head, for single
texts or text pairs, one label per text (cross-entropy) or any number (multi-label, BCE)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAccuracy, MultilabelExactMatch, MultilabelF1Score

from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.metrics.classification import single_label_metrics
from lit_tasks.tasks.classification import TOP, LabelledTask


class TextClassification(LabelledTask):
    """Classify texts (or text pairs) into `num_classes` labels.

    The network is the zoo's text "sequence_classification" head (see TaskModule), e.g.
    `init_from` all-MiniLM-L6-v2, whose classifier is re-initialised when it has another number
    of labels. The CLI links `init_from` to the DataModule's `preprocessor`, so the folder's
    tokenizer is used unless `data.tokenizer` names another. `num_classes` and `label_names`
    come from the data.

    Batches (lit_tasks.data.TextDataModule): {"input_ids", "attention_mask", "token_type_ids":
    (B, T) long, "labels": (B,) long class indices (-1: unlabelled) or, multi-label, (B, C)
    float multi-hot, "ids": list of B row ids}.

    Multi-class: cross-entropy (with `label_smoothing`); metrics acc (top-1), f1 (macro).
    Multi-label (`multi_label`, which must equal `data.multi_label`): binary cross-entropy per
    label; a label is predicted when its sigmoid is >= `threshold`; metrics acc (per label),
    exact_match (all labels of a row right) and f1 (macro over labels). Checkpoints are chosen
    by val/acc (multi-class) or val/f1 (multi-label).

    Args:
        multi_label: any number of labels per text (sigmoid + BCE) instead of exactly one.
        threshold: multi-label decision threshold on each label's sigmoid.
        num_classes, label_names, label_smoothing: see LabelledTask.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "sequence_classification"

    def __init__(self, multi_label: bool = False, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        n = self.num_classes
        if not multi_label and n < 2:
            raise ConfigError(f"model.num_classes is {n}; a multi-class model needs at least 2 labels "
                              "(the train data has fewer; for yes/no per label use multi_label)")
        if multi_label and self.label_smoothing:
            raise ConfigError("model.label_smoothing applies to multi-class cross-entropy; set it to 0 with multi_label")
        if not 0 < threshold < 1:
            raise ConfigError(f"model.threshold is {threshold}; expected a probability strictly between 0 and 1")
        self.multi_label, self.threshold = multi_label, threshold
        self.build_net(n)
        if multi_label:
            self.monitor = ("val/f1", "max")
            self.confusion = nn.ModuleDict()
            self.stage_metrics({"acc": MultilabelAccuracy(n, threshold=threshold, average="micro"),
                                "exact_match": MultilabelExactMatch(n, threshold=threshold),
                                "f1": MultilabelF1Score(n, threshold=threshold, average="macro")})
        else:
            self.stage_metrics(single_label_metrics(n))

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        if getattr(data, "multi_label", self.multi_label) != self.multi_label:
            raise ConfigError(f"model.multi_label is {self.multi_label} but data.multi_label is {data.multi_label}; "
                              "set both to the same value")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if not hasattr(self.net.config, "type_vocab_size"):  # no segment embeddings (GPT-2): the ids would be
            token_type_ids = None  # embedded as tokens, as HF does, and shift every input
        return self.net(input_ids, attention_mask, token_type_ids)  # (B, C) logits

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        labels = batch["labels"]
        if (labels.ndim == 2) != self.multi_label:
            raise ConfigError(f"model.multi_label is {self.multi_label} but the data gives "
                              f"{'multi-hot' if labels.ndim == 2 else 'single'} labels; set model.multi_label and "
                              "data.multi_label to the same value")
        return self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, C)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels, logits = batch["labels"], self._logits(batch)  # (B,) long or (B, C) float; (B, C)
        if not self.multi_label:
            return self.classify(stage, logits, labels)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.log_loss(stage, loss, labels.shape[0])
        self.log_metrics(stage, labels.shape[0], logits.sigmoid(), labels.long())
        return loss

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per text: {"id", "label", "score", "top": [[name, p], ...], "true_label"} or,
        multi-label, {"id", "labels": names with p >= threshold, "scores": their p, "top",
        "true_labels"}. true_label(s) only for rows that have labels (the test split)."""
        labels, logits = batch["labels"], self._logits(batch)
        if not self.multi_label:
            return self.ranked(logits.softmax(-1), labels, "id", batch["ids"])
        probs = logits.sigmoid()  # (B, C)
        top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
        rows = []
        for i, row_id in enumerate(batch["ids"]):
            chosen = sorted((p, j) for j, p in enumerate(probs[i].tolist()) if p >= self.threshold)[::-1]
            row = {"id": row_id, "labels": [self.label_names[j] for _, j in chosen],
                   "scores": [round(p, 6) for p, _ in chosen],
                   "top": [[self.label_names[j], round(p, 6)] for j, p in zip(top.indices[i].tolist(), top.values[i].tolist())]}
            true = labels[i].nonzero().flatten().tolist()
            if true:
                row["true_labels"] = [self.label_names[j] for j in true]
            rows.append(row)
        return rows

    def task_metadata(self) -> dict[str, Any]:
        return {**super().task_metadata(), "multi_label": self.multi_label, "threshold": self.threshold}

    def check_checkpoint(self, meta: dict[str, Any]) -> None:
        kind = meta.get("multi_label", False)
        if kind != self.multi_label:
            raise CheckpointError(f"the checkpoint was trained with multi_label={kind}, the config sets "
                                  f"model.multi_label={self.multi_label}; use the config the checkpoint was trained with")
