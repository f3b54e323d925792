"""The metrics every single-label classifier reports, shared by the tasks and the `accuracy_f1`
evaluate module."""

from __future__ import annotations

from typing import Any

from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


def single_label_metrics(num_classes: int, ignore_index: int | None = None) -> dict[str, Any]:
    """Top-1 accuracy (micro) and macro F1."""
    return {"acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index),
            "f1": MulticlassF1Score(num_classes, average="macro", ignore_index=ignore_index)}
