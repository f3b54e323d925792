"""Image classification: a zoo backbone plus a linear head, trained with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.classification import MulticlassAccuracy

from lit_tasks import plots
from lit_tasks.metrics.classification import single_label_metrics
from lit_tasks.tasks.classification import LabelledTask

SAMPLES = 16  # images in the sample-prediction grid


class ImageClassification(LabelledTask):
    """Classify images into `num_classes` labels.

    The network is the zoo's "classification" head on an image backbone (see TaskModule): e.g.
    `init_from` a downloaded google/vit-base-patch16-224, whose head is re-initialised when it
    has another number of classes. `num_classes` and `label_names` come from the DataModule.

    Batches: {"pixel_values": (B, 3, H, W) float, "labels": (B,) long, "paths": list[str]}.
    Metrics: acc (top-1), top<k>_acc, f1 (macro); a confusion matrix and a grid of sample
    predictions per val/test epoch.

    Args:
        top_k: the k of the top-k accuracy that is reported besides top-1.
        num_classes, label_names, label_smoothing: see LabelledTask.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "image", "classification"

    def __init__(self, top_k: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        k = min(top_k, self.num_classes)
        self.build_net(self.num_classes)
        self.stage_metrics({**single_label_metrics(self.num_classes),
                            f"top{k}_acc": MulticlassAccuracy(self.num_classes, top_k=k, average="micro")})
        self._samples: dict[str, tuple[list[torch.Tensor], list[int], list[int]]] = {}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)  # (B, num_classes)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        labels = batch["labels"]  # (B,)
        if labels.numel() == 0:  # every image of the batch was skipped as unreadable
            return None
        logits = self(batch["pixel_values"])  # (B, C)
        if stage != "train":
            self._keep_samples(stage, batch["pixel_values"], labels, logits)
        return self.classify(stage, logits, labels)

    def _keep_samples(self, stage: str, pixels: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """Two images of each batch (the first and the middle one) until SAMPLES are kept, so the
        grid spans the split even when it is ordered by class."""
        images, true, pred = self._samples.get(stage, ([], [], []))
        for i in sorted({0, labels.shape[0] // 2})[: SAMPLES - len(images)]:
            images.append(pixels[i].cpu())
            true.append(int(labels[i]))
            pred.append(int(logits[i].argmax()))
        self._samples[stage] = (images, true, pred)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per image: {"path", "label", "score", "top": [[name, p], ...], "true_label"}."""
        return self.ranked(self(batch["pixel_values"]).softmax(-1), batch["labels"], "path", batch["paths"])

    def start_epoch(self, stage: str) -> None:
        self._samples.pop(stage, None)

    def figures(self, stage: str) -> dict[str, Any]:
        figs = super().figures(stage)
        if stage in self._samples:
            images, true, pred = self._samples[stage]
            figs["predictions"] = plots.prediction_grid(torch.stack(images), torch.tensor(true), torch.tensor(pred),
                                                        self.label_names)
        return figs
