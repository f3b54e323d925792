"""Text classification: a BERT-family encoder with a sequence-classification head, for single
texts or text pairs, one label per text (cross-entropy) or any number (multi-label, BCE)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score, MultilabelAccuracy, MultilabelExactMatch,
    MultilabelF1Score,
)

from lit_tasks import plots
from lit_tasks import zoo
from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.network import build_network
from lit_tasks.tasks.text_model import attached_text_data, tokenizer_files

STAGES = ("train", "val", "test")
HEAD = "sequence_classification"
TOP = 5  # label/score pairs per predicted row


def _describe(spec: dict[str, Any]) -> str:
    """'a 'bert' sequence_classification model with 3 classes' (image specs have no head)."""
    head = spec.get("head", "image_classification")
    return f"a '{spec.get('family')}' {head} model with {spec.get('num_classes')} classes"


class TextClassification(TaskModule):
    """Classify texts (or text pairs) into `num_classes` labels.

    The network is `build_network("text", "sequence_classification", ...)`: a zoo preset (`backbone`,
    with `backbone_config` overriding preset fields) or an HF-format folder (`init_from`, e.g.
    all-MiniLM-L6-v2) whose classifier is re-initialised when it has another number of labels.
    The CLI links `init_from` to the DataModule's `preprocessor`, so the folder's tokenizer is
    used unless `data.tokenizer` names another. `num_classes` and `label_names` come from the data.

    Batches (lit_tasks.data.TextDataModule): {"input_ids", "attention_mask", "token_type_ids":
    (B, T) long, "labels": (B,) long class indices (-1: unlabelled) or, multi-label, (B, C)
    float multi-hot, "ids": list of B row ids}.

    Multi-class: cross-entropy (with `label_smoothing`); metrics acc (top-1), f1 (macro).
    Multi-label (`multi_label`, which must equal `data.multi_label`): binary cross-entropy per
    label; a label is predicted when its sigmoid is >= `threshold`; metrics acc (per label),
    exact_match (all labels of a row right) and f1 (macro over labels). Checkpoints are chosen
    by val/acc (multi-class) or val/f1 (multi-label).

    Args:
        backbone: BERT preset name (`lit_tasks.zoo.bert.PRESETS`), e.g. "all-minilm-l6-v2".
        backbone_config: preset fields to override, e.g. {"num_hidden_layers": 2}.
        init_from: HF-format BERT folder (config.json + safetensors) to fine-tune from.
        num_classes: number of labels (linked from the data).
        label_names: label names in class-index order (linked from the data).
        multi_label: any number of labels per text (sigmoid + BCE) instead of exactly one.
        threshold: multi-label decision threshold on each label's sigmoid.
        label_smoothing: cross-entropy label smoothing (multi-class only).
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
        multi_label: bool = False,
        threshold: float = 0.5,
        label_smoothing: float = 0.0,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.0,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, warmup_fraction, min_lr_ratio, layer_decay)
        self.save_hyperparameters()
        if label_names is not None and len(label_names) != num_classes:
            raise ConfigError(f"model.label_names has {len(label_names)} names but num_classes is {num_classes}")
        if not multi_label and num_classes < 2:
            raise ConfigError(f"model.num_classes is {num_classes}; a multi-class model needs at least 2 labels "
                              "(the train data has fewer; for yes/no per label use multi_label)")
        if multi_label and label_smoothing:
            raise ConfigError("model.label_smoothing applies to multi-class cross-entropy; set it to 0 with multi_label")
        if not 0 < threshold < 1:
            raise ConfigError(f"model.threshold is {threshold}; expected a probability strictly between 0 and 1")
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.multi_label, self.threshold, self.label_smoothing = multi_label, threshold, label_smoothing
        self.net = build_network("text", HEAD, backbone, backbone_config, init_from, num_classes)
        if multi_label:
            self.monitor = ("val/f1", "max")
            metrics = {
                "acc": MultilabelAccuracy(num_classes, threshold=threshold, average="micro"),
                "exact_match": MultilabelExactMatch(num_classes, threshold=threshold),
                "f1": MultilabelF1Score(num_classes, threshold=threshold, average="macro"),
            }
        else:
            metrics = {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        # compute_groups=False: grouping shares state between metrics whose states merely look equal
        collection = MetricCollection(metrics, compute_groups=False)
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = torch.nn.ModuleDict({f"{s}_metrics": collection.clone(prefix=f"{s}/") for s in STAGES})
        self.losses = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})  # sample-weighted under DDP
        self.confusion = torch.nn.ModuleDict(
            {} if multi_label else {s: MulticlassConfusionMatrix(num_classes) for s in ("val", "test")}
        )
        self._confusion: dict[str, torch.Tensor] = {}

    def setup(self, stage: str) -> None:
        """Check that the data fits the network before the first batch: the tokenizer's ids,
        the longest sequence and the kind of labels."""
        data = attached_text_data(self)
        if data is not None and getattr(data, "multi_label", self.multi_label) != self.multi_label:
            raise ConfigError(f"model.multi_label is {self.multi_label} but data.multi_label is {data.multi_label}; "
                              "set both to the same value")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_ids, attention_mask, token_type_ids)  # (B, C) logits

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, C)

    def _check_labels(self, labels: torch.Tensor) -> None:
        if (labels.ndim == 2) != self.multi_label:
            raise ConfigError(
                f"model.multi_label is {self.multi_label} but the data gives "
                f"{'multi-hot' if labels.ndim == 2 else 'single'} labels; set model.multi_label and "
                "data.multi_label to the same value"
            )

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch["labels"]  # (B,) long or (B, C) float
        self._check_labels(labels)
        logits = self._logits(batch)  # (B, C)
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            preds, target = logits.sigmoid(), labels.long()
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            preds, target = logits, labels
        batch_size = labels.shape[0]
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        else:
            self.losses[stage].update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", self.losses[stage], on_step=False, on_epoch=True, prog_bar=True)
        stage_metrics = self.metrics[f"{stage}_metrics"]
        stage_metrics.update(preds, target)
        self.log_dict(stage_metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch_size)
        if stage in self.confusion:
            self.confusion[stage].update(logits, labels)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per text: {"id", "label", "score", "top": [[name, p], ...], "true_label"} or,
        multi-label, {"id", "labels": names with p >= threshold, "scores": their p, "top",
        "true_labels"}. true_label(s) only for rows that have labels (the test split)."""
        labels = batch["labels"]
        self._check_labels(labels)
        logits = self._logits(batch)
        probs = logits.sigmoid() if self.multi_label else logits.softmax(-1)  # (B, C)
        top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
        rows = []
        for i, row_id in enumerate(batch["ids"]):
            ranked = [[self.label_names[j], round(p, 6)] for j, p in zip(top.indices[i].tolist(), top.values[i].tolist())]
            if self.multi_label:
                chosen = sorted((p, j) for j, p in enumerate(probs[i].tolist()) if p >= self.threshold)[::-1]
                row = {"id": row_id, "labels": [self.label_names[j] for _, j in chosen],
                       "scores": [round(p, 6) for p, _ in chosen], "top": ranked}
                true = labels[i].nonzero().flatten().tolist()
                if true:
                    row["true_labels"] = [self.label_names[j] for j in true]
            else:
                row = {"id": row_id, "label": ranked[0][0], "score": ranked[0][1], "top": ranked}
                if int(labels[i]) >= 0:
                    row["true_label"] = self.label_names[int(labels[i])]
            rows.append(row)
        return rows

    def _end_epoch(self, stage: str) -> None:
        if stage in self.confusion:
            self._confusion[stage] = self.confusion[stage].compute().cpu()
            self.confusion[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def figures(self, stage: str) -> dict[str, Any]:
        if stage not in self._confusion:
            return {}
        return {"confusion_matrix": plots.confusion_matrix(self._confusion[stage], self.label_names)}

    def layer_depth(self, name: str) -> tuple[int, int]:
        deepest = self.net.num_layers + 1  # embeddings 0, block i at i + 1, pooler and classifier on top
        return self.net.layer_index(name.removeprefix("net.")), deepest

    def spec(self) -> dict[str, Any]:
        """The architecture as plain data, stored in checkpoints and compared on loading."""
        return zoo.spec(self.net)

    def export_metadata(self) -> dict[str, Any]:
        return {"spec": self.spec(), "label_names": self.label_names, "multi_label": self.multi_label,
                "threshold": self.threshold, "tokenizer_files": tokenizer_files(self)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lit_tasks", {}).get("spec")
        ours = self.spec()
        if saved is None:
            raise CheckpointError("the checkpoint was not written by lit_tasks (no 'lit_tasks' entry)")
        if any(saved.get(k) != ours[k] for k in ("family", "head", "num_classes", "config")):
            same = all(saved.get(k) == ours[k] for k in ("family", "head", "num_classes"))
            raise CheckpointError(
                f"the checkpoint holds {_describe(saved)}, but the config builds {_describe(ours)}"
                + (" of another size (config.json fields differ)" if same else "")
                + "; use the config the checkpoint was trained with"
            )
        kind = checkpoint["lit_tasks"].get("multi_label", False)
        if kind != self.multi_label:
            raise CheckpointError(f"the checkpoint was trained with multi_label={kind}, the config sets "
                                  f"model.multi_label={self.multi_label}; use the config the checkpoint was trained with")
