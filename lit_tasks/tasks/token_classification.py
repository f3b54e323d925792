"""Token classification (NER, part-of-speech tagging): a BERT-family encoder with one tag per
word, read from the word's first sub-word; entity-level scores as seqeval defines them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.metrics.entities import EntityScores, entity_spans, iob2_types
from lit_tasks.tasks.base import EVAL_STAGES
from lit_tasks.tasks.classification import LabelledTask

IGNORE = -100


class TokenClassification(LabelledTask):
    """Tag every word of a sentence with one of `num_classes` tags.

    The network is the zoo's text "token_classification" head (see TaskModule), e.g. `init_from`
    all-MiniLM-L6-v2, whose tokenizer the CLI then hands to the data. `num_classes` and
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
        num_classes, label_names, label_smoothing: see LabelledTask (here: the tags).
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "token_classification"
    IGNORE_INDEX = IGNORE
    monitor = ("val/entity_f1", "max")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.num_classes < 2:
            raise ConfigError(f"model.num_classes is {self.num_classes}; tagging needs at least 2 tags "
                              "(the train data has fewer)")
        self.build_net(self.num_classes)
        self.iob2 = iob2_types(self.label_names) is not None
        if not self.iob2:
            self.monitor = ("val/acc", "max")
        self.stage_metrics({"acc": MulticlassAccuracy(self.num_classes, average="micro", ignore_index=IGNORE)})
        self.entities = nn.ModuleDict({s: EntityScores(self.label_names, IGNORE) for s in EVAL_STAGES} if self.iob2 else {})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_ids, attention_mask, token_type_ids)  # (B, T, C) logits

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, C)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch["labels"]  # (B, T), -100 where not scored
        logits = self._logits(batch)  # (B, T, C)
        if stage in self.entities:
            self.entities[stage].update(logits.argmax(-1), labels)
        return self.classify(stage, logits.flatten(0, 1), labels.flatten())

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

    def end_epoch(self, stage: str) -> None:
        super().end_epoch(stage)
        if stage in self.entities:
            scores = self.entities[stage].compute()  # summed over processes
            self.entities[stage].reset()
            self.log_dict({f"{stage}/entity_{k}": v for k, v in scores.items()})

    def check_checkpoint(self, meta: dict[str, Any]) -> None:
        names = meta.get("label_names")
        if names is not None and list(names) != self.label_names:
            raise CheckpointError(f"the checkpoint was trained on the tags {names[:8]}, the data gives "
                                  f"{self.label_names[:8]}; use the same tag set (same train data) as the checkpoint")
