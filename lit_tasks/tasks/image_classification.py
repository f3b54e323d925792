"""Image classification: a zoo backbone plus a linear head, trained with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lit_tasks import plots, zoo
from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.network import build_network

STAGES = ("train", "val", "test")
SAMPLES = 16  # images in the sample-prediction grid


class ImageClassification(TaskModule):
    """Classify images into `num_classes` labels.

    The network is `build_network("image", "classification", ...)`: a zoo preset (`backbone`,
    with `backbone_config` overriding preset fields) or an HF-format folder (`init_from`, e.g. a downloaded
    google/vit-base-patch16-224); a checkpoint whose head has another number of classes
    gets a fresh head. `num_classes` and `label_names` come from the DataModule.

    Batches: {"pixel_values": (B, 3, H, W) float, "labels": (B,) long, "paths": list[str]}.

    Args:
        backbone: an image preset of the zoo (`lit_tasks.zoo.PRESETS`), e.g. "vit-base-patch16-224".
        backbone_config: preset fields to override, e.g. {"image_size": 32, "patch_size": 4}.
        init_from: HF-format folder (config.json + safetensors) to fine-tune from.
        num_classes: number of labels (linked from the data).
        label_names: label names in class-index order (linked from the data).
        label_smoothing: cross-entropy label smoothing.
        top_k: the k of the top-k accuracy that is reported besides top-1.
        lr, weight_decay, warmup_fraction, min_lr_ratio, layer_decay: see TaskModule.
    """

    monitor = ("val/acc", "max")

    def __init__(
        self,
        backbone: str | None = None,
        backbone_config: dict[str, Any] | None = None,
        init_from: str | None = None,
        num_classes: int = 2,
        label_names: list[str] | None = None,
        label_smoothing: float = 0.1,
        top_k: int = 5,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, warmup_fraction, min_lr_ratio, layer_decay)
        self.save_hyperparameters()
        if label_names is not None and len(label_names) != num_classes:
            raise ConfigError(f"model.label_names has {len(label_names)} names but num_classes is {num_classes}")
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.net = build_network("image", "classification", backbone, backbone_config, init_from, num_classes)
        self.label_smoothing = label_smoothing
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                f"top{min(top_k, num_classes)}_acc": MulticlassAccuracy(num_classes, top_k=min(top_k, num_classes), average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            },
            compute_groups=False,  # grouping shares state between metrics whose states merely look equal
        )
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = torch.nn.ModuleDict({f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in STAGES})
        self.losses = torch.nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})  # sample-weighted under DDP
        self.confusion = torch.nn.ModuleDict({stage: MulticlassConfusionMatrix(num_classes) for stage in ("val", "test")})
        self._samples: dict[str, tuple[list[torch.Tensor], list[int], list[int]]] = {}
        self._confusion: dict[str, torch.Tensor] = {}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)  # (B, num_classes)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        labels = batch["labels"]  # (B,)
        if labels.numel() == 0:  # every image of the batch was skipped as unreadable
            return None
        logits = self(batch["pixel_values"])  # (B, C)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        batch_size = labels.shape[0]
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        else:
            self.losses[stage].update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", self.losses[stage], on_step=False, on_epoch=True, prog_bar=True)
        stage_metrics = self.metrics[f"{stage}_metrics"]
        stage_metrics.update(logits, labels)
        self.log_dict(stage_metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch_size)
        if stage in self.confusion:
            self.confusion[stage].update(logits, labels)
            self._keep_samples(stage, batch["pixel_values"], labels, logits)
        return loss

    def _keep_samples(self, stage: str, pixels: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """Two images of each batch (the first and the middle one) until SAMPLES are kept, so the
        grid spans the split even when it is ordered by class."""
        images, true, pred = self._samples.get(stage, ([], [], []))
        for i in sorted({0, labels.shape[0] // 2})[: SAMPLES - len(images)]:
            images.append(pixels[i].cpu())
            true.append(int(labels[i]))
            pred.append(int(logits[i].argmax()))
        self._samples[stage] = (images, true, pred)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        probs = self(batch["pixel_values"]).softmax(-1)  # (B, C)
        top = probs.topk(min(5, probs.shape[-1]), dim=-1)
        rows = []
        for i, path in enumerate(batch["paths"]):
            names = [self.label_names[j] for j in top.indices[i].tolist()]
            row = {"path": path, "label": names[0], "score": round(top.values[i, 0].item(), 6),
                   "top": [[n, round(p, 6)] for n, p in zip(names, top.values[i].tolist())]}
            if int(batch["labels"][i]) >= 0:
                row["true_label"] = self.label_names[int(batch["labels"][i])]
            rows.append(row)
        return rows

    def _end_epoch(self, stage: str) -> None:
        self._confusion[stage] = self.confusion[stage].compute().cpu()
        self.confusion[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self._samples.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._samples.pop("test", None)

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def figures(self, stage: str) -> dict[str, Any]:
        figs = {}
        if stage in self._confusion:
            figs["confusion_matrix"] = plots.confusion_matrix(self._confusion[stage], self.label_names)
        if stage in self._samples:
            images, true, pred = self._samples[stage]
            figs["predictions"] = plots.prediction_grid(torch.stack(images), torch.tensor(true), torch.tensor(pred),
                                                        self.label_names)
        return figs

    def layer_depth(self, name: str) -> tuple[int, int]:
        deepest = self.net.backbone.num_layers + 1
        if name.startswith("net.backbone."):
            return self.net.backbone.layer_index(name[len("net.backbone."):]), deepest
        return deepest, deepest

    def export_metadata(self) -> dict[str, Any]:
        preprocessor = self.data_preprocessor()
        return {"spec": zoo.spec(self.net), "label_names": self.label_names, "preprocessor": preprocessor}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lit_tasks", {}).get("spec")
        ours = zoo.spec(self.net)
        if saved is None:
            raise CheckpointError("the checkpoint was not written by lit_tasks (no 'lit_tasks' entry)")
        if (saved["family"], saved["num_classes"]) != (ours["family"], ours["num_classes"]) or saved["config"] != ours["config"]:
            raise CheckpointError(
                f"the checkpoint holds a '{saved['family']}' model with {saved['num_classes']} classes, "
                f"but the config builds a '{ours['family']}' model with {ours['num_classes']} classes"
                + ("" if saved["family"] != ours["family"] else " (or another size of it)")
                + "; use the config the checkpoint was trained with"
            )
