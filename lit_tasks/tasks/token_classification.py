"""Token classification (NER, part-of-speech tagging): a BERT-family encoder with one tag per
word, read from the word's first sub-word; entity-level scores as seqeval defines them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_tasks import plots
from lit_tasks import zoo
from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.metrics.entities import EntityScores, entity_spans, iob2_types
from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.network import build_network
from lit_tasks.tasks.text_model import attached_text_data, tokenizer_files

STAGES = ("train", "val", "test")
HEAD = "token_classification"
IGNORE = -100


class TokenClassification(TaskModule):
    """Tag every word of a sentence with one of `num_classes` tags.

    The network is `build_network("text", "token_classification", ...)`: a zoo preset (`backbone`, with
    `backbone_config` overriding preset fields) or an HF-format folder (`init_from`, e.g.
    all-MiniLM-L6-v2, whose tokenizer the CLI then hands to the data). `num_classes` and
    `label_names` (the tags) come from the data.

    Batches (lit_tasks.data.token_classification.TokenClassificationDataModule):
    {"input_ids", "attention_mask", "token_type_ids": (B, T) long, "labels": (B, T) long tag
    index on each word's first sub-word, -100 elsewhere, "word_ids": (B, T) long (-1 outside
    words), "ids": list of B row ids, and in predict "words": list of B word lists}.

    Loss: cross-entropy over the labelled positions (with `label_smoothing`). Metrics: acc (tag
    accuracy over words); when the tags are IOB2 (O, B-X, I-X), entity_precision,
    entity_recall and entity_f1 (micro over entities, exactly as seqeval's default mode,
    `lit_tasks.metrics.entities`) and entity_f1_<TYPE> per type, on val and test.
    Checkpoints are chosen by val/entity_f1 (IOB2 tags) or val/acc (other tag sets).

    Args:
        backbone: BERT preset name (`lit_tasks.zoo.bert.PRESETS`), e.g. "all-minilm-l6-v2".
        backbone_config: preset fields to override, e.g. {"num_hidden_layers": 2}.
        init_from: HF-format BERT folder (config.json + safetensors) to fine-tune from.
        num_classes: number of tags (linked from the data).
        label_names: tag names in index order (linked from the data).
        label_smoothing: cross-entropy label smoothing.
        lr, weight_decay, warmup_fraction, min_lr_ratio, layer_decay: see TaskModule.
    """

    monitor = ("val/entity_f1", "max")

    def __init__(
        self,
        backbone: str | None = None,
        backbone_config: dict[str, Any] | None = None,
        init_from: str | None = None,
        num_classes: int = 2,
        label_names: list[str] | None = None,
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
        if num_classes < 2:
            raise ConfigError(f"model.num_classes is {num_classes}; tagging needs at least 2 tags "
                              "(the train data has fewer)")
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.net = build_network("text", HEAD, backbone, backbone_config, init_from, num_classes)
        self.iob2 = iob2_types(self.label_names) is not None
        if not self.iob2:
            self.monitor = ("val/acc", "max")
        accuracy = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE)})
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = torch.nn.ModuleDict({f"{s}_metrics": accuracy.clone(prefix=f"{s}/") for s in STAGES})
        self.entities = torch.nn.ModuleDict(
            {s: EntityScores(self.label_names, IGNORE) for s in ("val", "test")} if self.iob2 else {}
        )
        self.losses = torch.nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})  # token-weighted under DDP
        self.confusion = torch.nn.ModuleDict(
            {s: MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE) for s in ("val", "test")}
        )
        self._confusion: dict[str, torch.Tensor] = {}

    def setup(self, stage: str) -> None:
        """Check that the data fits the network before the first batch."""
        attached_text_data(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_ids, attention_mask, token_type_ids)  # (B, T, C) logits

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, C)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch["labels"]  # (B, T), -100 where not scored
        logits = self._logits(batch)  # (B, T, C)
        flat_logits, flat_labels = logits.flatten(0, 1), labels.flatten()  # (B*T, C), (B*T,)
        loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, label_smoothing=self.label_smoothing)
        words = int((flat_labels != IGNORE).sum())
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=words)
        else:
            self.losses[stage].update(loss.detach(), weight=words)
            self.log(f"{stage}/loss", self.losses[stage], on_step=False, on_epoch=True, prog_bar=True)
        stage_metrics = self.metrics[f"{stage}_metrics"]
        stage_metrics.update(flat_logits, flat_labels)
        self.log_dict(stage_metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=words)
        if stage in self.confusion:
            self.confusion[stage].update(flat_logits, flat_labels)
        if stage in self.entities:
            self.entities[stage].update(logits.argmax(-1), labels)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per sentence::

            {"id", "text": the words joined by single spaces, "tags": one per word,
             "entities": [{"label", "start", "end", "text", "score"}, ...],
             "true_tags": [...] (labelled rows only), "truncated": true (only when words were cut)}

        ``start``/``end`` are character offsets into ``text`` (``text[start:end]`` is the
        entity); ``score`` is the mean probability of the entity's tags. Words cut off by
        ``max_length`` get no tag (``tags`` is shorter than the word list). ``entities`` is
        only written for IOB2 tag sets.
        """
        probs = self._logits(batch).softmax(-1)  # (B, T, C)
        best_p, best = probs.max(-1)  # (B, T)
        word_ids, labels = batch["word_ids"], batch["labels"]
        first = word_ids >= 0
        first[:, 1:] &= word_ids[:, 1:] != word_ids[:, :-1]  # (B, T) each word's first piece
        rows = []
        for i, words in enumerate(batch["words"]):
            at = first[i].nonzero().flatten()
            tags = [self.label_names[j] for j in best[i, at].tolist()]
            scores = best_p[i, at].tolist()
            text = " ".join(words)
            row: dict[str, Any] = {"id": batch["ids"][i], "text": text, "tags": tags}
            if self.iob2:
                starts = [0]
                for w in words[:-1]:
                    starts.append(starts[-1] + len(w) + 1)
                row["entities"] = [
                    {"label": kind, "start": starts[a], "end": starts[b - 1] + len(words[b - 1]),
                     "text": text[starts[a]: starts[b - 1] + len(words[b - 1])],
                     "score": round(sum(scores[a:b]) / (b - a), 6)}
                    for kind, a, b in entity_spans(tags)
                ]
            gold = labels[i, at]
            if bool((gold >= 0).all()) and len(at):
                row["true_tags"] = [self.label_names[j] for j in gold.tolist()]
            if len(tags) < len(words):
                row["truncated"] = True
            rows.append(row)
        return rows

    def _end_epoch(self, stage: str) -> None:
        self._confusion[stage] = self.confusion[stage].compute().cpu()
        self.confusion[stage].reset()
        if stage in self.entities:
            scores = self.entities[stage].compute()  # summed over processes
            self.entities[stage].reset()
            self.log_dict({f"{stage}/entity_{k}": v for k, v in scores.items()})

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def figures(self, stage: str) -> dict[str, Any]:
        if stage not in self._confusion:
            return {}
        return {"confusion_matrix": plots.confusion_matrix(self._confusion[stage], self.label_names)}

    def layer_depth(self, name: str) -> tuple[int, int]:
        deepest = self.net.num_layers + 1  # embeddings 0, block i at i + 1, the classifier on top
        return self.net.layer_index(name.removeprefix("net.")), deepest

    def spec(self) -> dict[str, Any]:
        """The architecture as plain data, stored in checkpoints and compared on loading."""
        return zoo.spec(self.net)

    def export_metadata(self) -> dict[str, Any]:
        return {"spec": self.spec(), "label_names": self.label_names, "tokenizer_files": tokenizer_files(self)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lit_tasks", {}).get("spec")
        ours = self.spec()
        if saved is None:
            raise CheckpointError("the checkpoint was not written by lit_tasks (no 'lit_tasks' entry)")
        if any(saved.get(k) != ours[k] for k in ("family", "head", "num_classes", "config")):
            raise CheckpointError(
                f"the checkpoint holds a '{saved.get('family')}' {saved.get('head', 'image_classification')} "
                f"model with "
                f"{saved.get('num_classes')} classes, but the config builds a '{ours['family']}' {HEAD} model with "
                f"{ours['num_classes']} tags (or another size of it); use the config the checkpoint was trained with"
            )
        names = checkpoint["lit_tasks"].get("label_names")
        if names is not None and list(names) != self.label_names:
            raise CheckpointError(f"the checkpoint was trained on the tags {names[:8]}, the data gives "
                                  f"{self.label_names[:8]}; use the same tag set (same train data) as the checkpoint")
