"""Audio classification (keyword spotting, speaker or emotion ids): a Wav2Vec2 encoder with the
SUPERB utterance head, trained with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lit_tasks import plots, zoo
from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.tasks import audio_model
from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.network import build_network

STAGES = ("train", "val", "test")
HEAD = "classification"
TOP = 5  # label/score pairs per predicted row


class AudioClassification(TaskModule):
    """Classify audio clips into `num_classes` labels.

    The network is `build_network("audio", "classification", ...)`: the encoder's last state (or, with
    `backbone_config: {use_weighted_layer_sum: true}`, a learned softmax-weighted sum of all
    hidden states), a linear projection, the mean over the clip's real frames and a linear
    classifier. Real frames are those the attention mask keeps after the feature encoder's
    length reduction (`Wav2Vec2.output_lengths`), as transformers' Wav2Vec2ForSequenceClassification
    pools. Models with a group-norm feature encoder (wav2vec2-base) still see the padding in the
    first conv's normalisation, as in transformers; length bucketing keeps padding small.

    Batches (lit_tasks.data.AudioDataModule, task="classification"): {"input_values": (B, T)
    float, "attention_mask": (B, T) long, "labels": (B,) long (-1: unlabelled), "paths": list}.

    Args:
        backbone: wav2vec2 preset (`lit_tasks.zoo.wav2vec2.PRESETS`), e.g. "wav2vec2-base".
        backbone_config: preset fields to override, e.g. {"num_hidden_layers": 4}.
        init_from: HF-format wav2vec2 folder to fine-tune from (its classifier is re-initialised
            when it has another number of labels).
        num_classes: number of labels (linked from the data).
        label_names: label names in class-index order (linked from the data).
        freeze_feature_encoder: do not train the conv feature encoder (usual when fine-tuning).
        label_smoothing: cross-entropy label smoothing.
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
        freeze_feature_encoder: bool = False,
        label_smoothing: float = 0.0,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.0,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, warmup_fraction, min_lr_ratio, layer_decay)
        self.save_hyperparameters()
        if label_names is not None and len(label_names) != num_classes:
            raise ConfigError(f"model.label_names has {len(label_names)} names but num_classes is {num_classes}")
        if num_classes < 2:
            raise ConfigError(f"model.num_classes is {num_classes}; a classifier needs at least 2 labels "
                              "(the train data has fewer)")
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.net = build_network("audio", HEAD, backbone, backbone_config, init_from, num_classes)
        if freeze_feature_encoder:
            self.net.freeze_feature_encoder()
        collection = MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro"), "f1": MulticlassF1Score(num_classes, average="macro")},
            compute_groups=False,  # grouping shares state between metrics whose states merely look equal
        )
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = torch.nn.ModuleDict({f"{s}_metrics": collection.clone(prefix=f"{s}/") for s in STAGES})
        self.losses = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})  # sample-weighted under DDP
        self.confusion = torch.nn.ModuleDict({s: MulticlassConfusionMatrix(num_classes) for s in ("val", "test")})
        self._confusion: dict[str, torch.Tensor] = {}

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_values, attention_mask)  # (B, C) logits

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        labels = batch["labels"]  # (B,)
        if labels.numel() == 0:  # every clip of the batch was skipped as undecodable
            return None
        logits = self(batch["input_values"], batch["attention_mask"])  # (B, C)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        batch_size = labels.shape[0]
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        else:
            self.losses[stage].update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", self.losses[stage], on_step=False, on_epoch=True, prog_bar=True)
            self.confusion[stage].update(logits, labels)
        stage_metrics = self.metrics[f"{stage}_metrics"]
        stage_metrics.update(logits, labels)
        self.log_dict(stage_metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=batch_size)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per clip: {"path", "label", "score", "top": [[name, p], ...], "true_label"}
        (true_label only when the clip has one, e.g. the test split)."""
        if not batch["paths"]:
            return []
        probs = self(batch["input_values"], batch["attention_mask"]).softmax(-1)  # (B, C)
        top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
        rows = []
        for i, path in enumerate(batch["paths"]):
            ranked = [[self.label_names[j], round(p, 6)] for j, p in zip(top.indices[i].tolist(), top.values[i].tolist())]
            row = {"path": path, "label": ranked[0][0], "score": ranked[0][1], "top": ranked}
            if int(batch["labels"][i]) >= 0:
                row["true_label"] = self.label_names[int(batch["labels"][i])]
            rows.append(row)
        return rows

    def _end_epoch(self, stage: str) -> None:
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
        return audio_model.layer_depth(self.net, name.removeprefix("net."))

    def spec(self) -> dict[str, Any]:
        """The architecture as plain data, stored in checkpoints and compared on loading."""
        return zoo.spec(self.net)

    def export_metadata(self) -> dict[str, Any]:
        preprocessor = self.data_preprocessor()
        return {"spec": self.spec(), "label_names": self.label_names, "preprocessor": preprocessor}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lit_tasks", {}).get("spec")
        if saved is None:
            raise CheckpointError("the checkpoint was not written by lit_tasks (no 'lit_tasks' entry)")
        ours = self.spec()
        if saved != ours:
            raise CheckpointError(
                f"the checkpoint holds a '{saved.get('family')}' {saved.get('head')} model with "
                f"{saved.get('num_classes')} classes, but the config builds a 'wav2vec2' {HEAD} model with "
                f"{ours['num_classes']} classes" + (" of another size" if saved.get("num_classes") == ours["num_classes"] else "")
                + "; use the config the checkpoint was trained with"
            )
