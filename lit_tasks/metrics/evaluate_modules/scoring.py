"""What each metric computes from plain lists: the numbers behind our `evaluate` modules and
`python -m lit_tasks score`.

Every function here runs the metric code that training runs (the same classes with the same
options) on predictions and references given as Python lists, and returns the numbers under the
names training logs them (results.json's ``test/<name>`` without the ``test/``), as Python
floats taken with ``.item()`` as results.json takes them. So a score computed here equals the
training's on the same predictions, by construction, not by a second implementation:

- ``accuracy_f1``: `single_label_metrics` (`lit_tasks.metrics.classification`; the classifiers' acc and macro f1)
  and the ``top<k>_acc`` of image classification (torchmetrics ``MulticlassAccuracy(top_k=k)``);
- ``entity_f1``: the tag accuracy and `EntityScores` of token classification;
- ``squad``: `score_question` + `SquadScores`, as question answering scores each question;
- ``wer_cer``: `ErrorRate("word")` and `ErrorRate("char")` of speech recognition;
- ``rouge``, ``bleu_chrf``: `RougeMetric` (summarization) and `BleuChrfMetric` (translation);
- ``coco_map``: `CocoMeanAP` of object detection.

Bad input is a DataError (or ConfigError for an option) naming the example and the field.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lit_tasks.errors import ConfigError, DataError, read_json_object

Label = str | int


def text_features() -> list[Any]:
    """The `evaluate` features of the text metrics (rouge, bleu_chrf): a string per example, and per
    example one reference string or a list of them."""
    import datasets

    text = datasets.Value("string")
    return [datasets.Features({"predictions": text, "references": datasets.Sequence(text)}),
            datasets.Features({"predictions": text, "references": text})]


def _floats(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in scores.items()}


# ------------------------------------------------------------------------------ classification
def class_indices(labels: Sequence[Label], label_names: Sequence[str] | None, num_classes: int | None,
                  what: str) -> tuple[list[int], list[str] | None, int]:
    """(indices, label names or None, number of classes) of `labels`: names (strings) are
    looked up in `label_names` (default: the sorted names that occur), class indices (ints)
    must lie in [0, num_classes) (default: the largest index + 1). `what` names the list in
    errors, e.g. "references"."""
    if all(isinstance(x, str) for x in labels):
        names = list(label_names) if label_names is not None else sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        for i, label in enumerate(labels):
            if label not in index:
                raise DataError(f"{what}[{i}] is the label {label!r}, not among the label names {names[:20]}")
        if num_classes is not None and num_classes < len(names):
            raise ConfigError(f"num_classes is {num_classes} but there are {len(names)} label names")
        return [index[x] for x in labels], names, num_classes or len(names)
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int):
            raise DataError(f"{what}[{i}] is {label!r}; expected every label to be a name (string) or every "
                            f"label a class index (integer)")
    if label_names is not None:
        raise ConfigError("label_names apply to labels given as names; these labels are class indices "
                          "(pass num_classes instead)")
    n = num_classes if num_classes is not None else max(labels, default=-1) + 1
    for i, label in enumerate(labels):
        if not 0 <= label < n:
            raise DataError(f"{what}[{i}] is the class index {label}; expected 0 <= index < num_classes = {n}")
    return list(labels), None, n


def accuracy_f1(predictions: Sequence[Label | Sequence[Label]], references: Sequence[Label],
                label_names: Sequence[str] | None = None, num_classes: int | None = None,
                top_k: int | None = None) -> dict[str, float]:
    """{"acc", "f1"} of single-label classification, and "top<k>_acc" with `top_k`.

    predictions: per example the predicted label, or its ranked labels (most probable first,
    as the "top" field of our predictions rows); references: the true labels. Labels are all
    names (strings, indexed by `label_names`, default the sorted names that occur) or all class
    indices (integers, < `num_classes`). acc is micro top-1 accuracy; f1 is macro F1 over the
    classes that occur as a label or a prediction (torchmetrics leaves out a class with neither,
    so `num_classes` only has to cover the labels). top<k>_acc (k = min(top_k, classes), as
    image classification reports it) needs ranked predictions of at least k labels each.
    """
    from torchmetrics.classification import MulticlassAccuracy

    from lit_tasks.metrics.classification import single_label_metrics

    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} predictions for {len(references)} references")
    ranked = [list(p) if isinstance(p, (list, tuple)) else [p] for p in predictions]
    for i, labels in enumerate(ranked):
        if not labels:
            raise DataError(f"predictions[{i}] is an empty list; expected a label or ranked labels")
    flat = [label for labels in ranked for label in labels]
    if len({isinstance(x, str) for x in [*flat, *references]}) > 1:
        raise DataError("the labels mix names (strings) and class indices (integers); expected one kind throughout")
    if label_names is None and all(isinstance(x, str) for x in [*flat, *references]):
        label_names = sorted(set(flat) | set(references))
    targets, names, n = class_indices(list(references), label_names, num_classes, "references")
    predicted, _, _ = class_indices(flat, names, n, "predicted labels")
    metrics = single_label_metrics(n)
    starts = torch.tensor([0] + [len(labels) for labels in ranked]).cumsum(0).tolist()
    top1 = torch.tensor([predicted[s] for s in starts[:-1]], dtype=torch.long)  # (N,)
    target = torch.tensor(targets, dtype=torch.long)  # (N,)
    out = {}
    for name, metric in metrics.items():
        metric.update(top1, target)
        out[name] = metric.compute()
    if top_k is not None:
        k = min(top_k, n)
        if k < 1:
            raise ConfigError(f"top_k is {top_k}; expected at least 1")
        short = [i for i, labels in enumerate(ranked) if len(labels) < k]
        if short:
            raise DataError(f"predictions[{short[0]}] ranks {len(ranked[short[0]])} label(s); top_k={top_k} needs "
                            f"ranked predictions of at least {k} labels ({len(short)} example(s) have fewer)")
        scores = torch.zeros(len(ranked), n, dtype=torch.float64)  # (N, C): rank order as scores
        for i, (start, labels) in enumerate(zip(starts, ranked)):
            for r in reversed(range(len(labels))):  # a label listed twice keeps its better rank
                scores[i, predicted[start + r]] = len(labels) - r
        metric = MulticlassAccuracy(n, top_k=k, average="micro")
        metric.update(scores, target)
        out[f"top{k}_acc"] = metric.compute()
    return _floats(out)


# -------------------------------------------------------------------------------------- tagging
def entity_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
              label_names: Sequence[str] | None = None) -> dict[str, float]:
    """Token classification's scores of word tag sequences: "acc" (tag accuracy over words) and,
    for IOB2 tags (O, B-X, I-X), "entity_precision", "entity_recall", "entity_f1" (micro over
    entities, seqeval's default mode) and "entity_f1_<TYPE>" per entity type of `label_names`
    (default: the sorted tags that occur; pass the training's tags to get the same per-type keys).
    """
    from torchmetrics.classification import MulticlassAccuracy

    from lit_tasks.metrics.entities import EntityScores, iob2_types

    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} predicted tag sequences for {len(references)} references")
    for i, (pred, gold) in enumerate(zip(predictions, references)):
        if len(pred) != len(gold):
            raise DataError(f"sentence {i}: {len(pred)} predicted tags for {len(gold)} reference tags; "
                            "expected one tag per word on both sides")
    flat = [str(t) for tags in [*predictions, *references] for t in tags]
    names = list(label_names) if label_names is not None else sorted(set(flat))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(flat) - set(index))
    if unknown:
        raise DataError(f"the tags {unknown[:10]} are not among the label names {names[:20]}")
    ignore = -100  # token classification's IGNORE: the padding after each sentence here
    width = max((len(tags) for tags in references), default=0)
    preds = torch.full((len(references), width), ignore, dtype=torch.long)  # (B, T)
    target = preds.clone()
    for i, (pred, gold) in enumerate(zip(predictions, references)):
        preds[i, : len(pred)] = torch.tensor([index[str(t)] for t in pred], dtype=torch.long)
        target[i, : len(gold)] = torch.tensor([index[str(t)] for t in gold], dtype=torch.long)
    out = {}
    acc = MulticlassAccuracy(max(len(names), 2), average="micro", ignore_index=ignore)
    acc.update(preds.flatten().clamp(min=0), target.flatten())
    out["acc"] = acc.compute()
    if iob2_types(names) is not None:
        entities = EntityScores(names, ignore)
        entities.update(preds, target)
        out.update({f"entity_{k}": v for k, v in entities.compute().items()})
    return _floats(out)


# -------------------------------------------------------------------------------------- answers
def squad(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD "exact_match" and "f1" in percent (and the has_answer_* / no_answer_* breakdown when
    both kinds occur) of one answer per question against its gold answers ([]: unanswerable)."""
    from lit_tasks.metrics.squad import SquadScores, score_question

    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} answers for {len(references)} references")
    for i, (answer, golds) in enumerate(zip(predictions, references)):
        if not isinstance(answer, str):
            raise DataError(f"predictions[{i}] is {answer!r}; expected the answer text (\"\" for no answer)")
        if isinstance(golds, str) or not all(isinstance(g, str) for g in golds):
            raise DataError(f"references[{i}] is {golds!r}; expected a list of gold answer texts ([]: unanswerable)")
    scored = [score_question(answer, list(golds)) for answer, golds in zip(predictions, references)]
    metric = SquadScores()
    metric.update([em for em, _ in scored], [f for _, f in scored], [bool(golds) for golds in references])
    return _floats(metric.compute())


def wer_cer(predictions: Sequence[str], references: Sequence[str], case: str | None = None,
            remove_chars: str | None = None) -> dict[str, float]:
    """Corpus "wer" and "cer" (rates, not percent) of transcripts against references, as speech
    recognition reports them. Texts are compared as given, unless `case` ("lower", "upper",
    "keep") or `remove_chars` is set: then the references first go through the data's
    transcript normalisation (`TextNormalizer`, the other option at the data's default), as
    training normalises raw transcripts (predictions are decoded from the vocabulary already)."""
    from lit_tasks.metrics.asr import ErrorRate
    from lit_tasks.text.char_vocab import TextNormalizer

    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} transcripts for {len(references)} references")
    for what, texts in (("predictions", predictions), ("references", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"{what}[{i}] is {text!r}; expected a transcript string")
    if case is not None or remove_chars is not None:
        default = TextNormalizer()
        if case not in (None, "lower", "upper", "keep"):
            raise ConfigError(f"case is {case!r}; expected 'lower', 'upper' or 'keep'")
        normalize = TextNormalizer(case or default.case, default.remove_chars if remove_chars is None else remove_chars)
        references = [normalize(text) for text in references]
    out = {}
    for name, unit in (("wer", "word"), ("cer", "char")):
        metric = ErrorRate(unit)
        metric.update(list(predictions), list(references))
        out[name] = metric.compute()
    return _floats(out)


# ----------------------------------------------------------------------------- generated text
def rouge(predictions: Sequence[str], references: Sequence[str | Sequence[str]],
          use_stemmer: bool = True) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure in percent, as summarization reports it
    (`lit_tasks.metrics.rouge`: one sentence per line for rougeLsum)."""
    from lit_tasks.metrics.rouge import RougeMetric

    metric = RougeMetric(use_stemmer=use_stemmer)
    metric.update(list(predictions), list(references))
    return _floats(metric.compute())


def bleu_chrf(predictions: Sequence[str], references: Sequence[str | Sequence[str]], tokenize: str = "13a",
              lowercase: bool = False, smooth_method: str = "exp", word_order: int = 0) -> dict[str, float]:
    """Corpus "bleu" and "chrf" in percent, as translation reports them (sacreBLEU's defaults)."""
    from lit_tasks.metrics.translation import BleuChrfMetric

    metric = BleuChrfMetric(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method,
                            word_order=word_order)
    metric.update(list(predictions), list(references))
    return _floats(metric.compute())


# ----------------------------------------------------------------------------------- detection
def read_coco(ground_truth: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """The COCO instances dict, given as itself or as the path of its json file (a DataError
    naming the file when it does not hold a JSON object)."""
    if isinstance(ground_truth, dict):
        return ground_truth
    path = Path(ground_truth).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: the COCO ground truth file does not exist")
    return read_json_object(path, "a COCO instances object")


def coco_map(predictions: Sequence[dict[str, Any]], ground_truth: dict[str, Any]) -> dict[str, float]:
    """The 12 COCO box numbers (map, map_50, ..., mar_large; pycocotools' summarize()) of
    detections against a COCO instances dict, as object detection reports them.

    predictions: one dict per image, {"image_id": int, "boxes": [[x1, y1, x2, y2], ...] in the
    image's pixels, "scores": [...], "category_ids": [...] COCO category ids}.
    """
    from lit_tasks.metrics.coco_map import CocoMeanAP

    metric = CocoMeanAP()
    metric.set_ground_truth(ground_truth)
    if predictions:
        image_ids, detections = [], []
        for i, p in enumerate(predictions):
            missing = [k for k in ("image_id", "boxes", "scores", "category_ids") if k not in p]
            if missing:
                raise DataError(f"predictions[{i}] has no {missing}; expected image_id, boxes, scores, category_ids")
            image_ids.append(p["image_id"])
            detections.append({"boxes": torch.tensor(p["boxes"], dtype=torch.float64).reshape(-1, 4),
                               "scores": torch.tensor(p["scores"], dtype=torch.float64).reshape(-1),
                               "category_ids": torch.tensor(p["category_ids"], dtype=torch.long).reshape(-1)})
        metric.update(torch.tensor(image_ids, dtype=torch.long), detections)
    return _floats(metric.compute())
