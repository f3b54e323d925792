"""What the tasks that predict named labels share: the label names, cross-entropy with label
smoothing, a confusion matrix per evaluation stage, and predictions as ranked label lists."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_tasks import plots
from lit_tasks.errors import ConfigError
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule

TOP = 5  # label/score pairs per predicted row


class LabelledTask(TaskModule):
    """A task whose outputs are `num_classes` named labels (classes or tags).

    Args:
        num_classes: number of labels (linked from the data).
        label_names: label names in class-index order (linked from the data).
        label_smoothing: cross-entropy label smoothing.
    """

    IGNORE_INDEX: ClassVar[int | None] = None  # a target value that is not scored
    monitor = ("val/acc", "max")

    def __init__(self, num_classes: int = 2, label_names: list[str] | None = None, label_smoothing: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if label_names is not None and len(label_names) != num_classes:
            raise ConfigError(f"model.label_names has {len(label_names)} names but num_classes is {num_classes}")
        if num_classes < 1:
            raise ConfigError(f"model.num_classes is {num_classes}; expected at least 1")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing is {label_smoothing}; expected a share in [0, 1)")
        self.num_classes = num_classes
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.confusion = nn.ModuleDict(  # a single label (multi-label yes/no) has no confusion matrix
            {s: MulticlassConfusionMatrix(num_classes, ignore_index=self.IGNORE_INDEX) for s in EVAL_STAGES}
            if num_classes >= 2 else {})
        self._confusion: dict[str, torch.Tensor] = {}

    def classify(self, stage: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of (N, C) `logits` against (N,) label indices, with the loss, the stage's
        metrics and the confusion matrix updated and logged; weighted by the labels scored."""
        kwargs = {} if self.IGNORE_INDEX is None else {"ignore_index": self.IGNORE_INDEX}
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, **kwargs)
        scored = int((labels != self.IGNORE_INDEX).sum()) if self.IGNORE_INDEX is not None else labels.shape[0]
        self.log_loss(stage, loss, scored)
        self.log_metrics(stage, scored, logits, labels)
        if stage in self.confusion:
            self.confusion[stage].update(logits, labels)
        return loss

    def ranked(self, probs: torch.Tensor, labels: torch.Tensor, key: str, names: list[Any]) -> list[dict[str, Any]]:
        """One row per input: {key: its name, "label", "score", "top": [[label, p], ...] (the TOP
        most probable), "true_label" (inputs with a label)} from (B, C) probabilities."""
        top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
        rows = []
        for i, name in enumerate(names):
            ranked = [[self.label_names[j], round(p, 6)] for j, p in zip(top.indices[i].tolist(), top.values[i].tolist())]
            row = {key: name, "label": ranked[0][0], "score": ranked[0][1], "top": ranked}
            if int(labels[i]) >= 0:
                row["true_label"] = self.label_names[int(labels[i])]
            rows.append(row)
        return rows

    def end_epoch(self, stage: str) -> None:
        if stage in self.confusion:
            self._confusion[stage] = self.confusion[stage].compute().cpu()
            self.confusion[stage].reset()

    def figures(self, stage: str) -> dict[str, Any]:
        if stage not in self._confusion:
            return {}
        return {"confusion_matrix": plots.confusion_matrix(self._confusion[stage], self.label_names)}

    def task_metadata(self) -> dict[str, Any]:
        return {"label_names": self.label_names}
