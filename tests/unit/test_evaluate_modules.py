"""Our metrics as `evaluate` modules (lit_tasks.metrics.evaluate_modules): each loads offline from
the package with `evaluate.load(<folder>)` and gives exactly the numbers of the metric code the
training runs, updated batch by batch as training updates it, on fixed cases."""

from __future__ import annotations

import socket

import evaluate
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from lit_tasks.errors import ConfigError
from lit_tasks.metrics import METRIC_MODULES, evaluate_module, module_path
from lit_tasks.metrics.asr import ErrorRate
from lit_tasks.metrics.coco_map import CocoMeanAP
from lit_tasks.metrics.entities import EntityScores
from lit_tasks.metrics.rouge import RougeMetric
from lit_tasks.metrics.squad import SquadScores, score_question
from lit_tasks.metrics.translation import BleuChrfMetric
from lit_tasks.metrics.classification import single_label_metrics


@pytest.fixture(scope="module", autouse=True)
def offline_evaluate(tmp_path_factory):
    """evaluate's module and data caches under pytest's temp folder (one per session: evaluate
    imports the copied scripts as a package that must stay where it was first put), hub access
    switched off, and any socket connection an error, so a load that tried the network fails."""
    cache = tmp_path_factory.getbasetemp() / "hf_evaluate"
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("HF_EVALUATE_OFFLINE", "1")
    patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    patch.setattr(evaluate.config, "HF_MODULES_CACHE", cache / "modules")
    patch.setattr(evaluate.config, "HF_METRICS_CACHE", cache / "metrics")

    def no_network(*args, **kwargs):
        raise OSError("network access in a test")

    patch.setattr(socket.socket, "connect", no_network)
    yield cache
    patch.undo()


def batches(n: int, size: int):
    """Slices of range(n) of `size`: the batches a training epoch would update a metric with."""
    return [slice(i, i + size) for i in range(0, n, size)]


def test_every_module_loads_offline_from_the_package(offline_evaluate):
    for name in METRIC_MODULES:
        module = evaluate_module(name)
        assert isinstance(module, evaluate.EvaluationModule), name
        assert module_path(name) == module_path(name).parent / name and (module_path(name) / f"{name}.py").is_file()
        assert module.description.strip() and module.citation.strip() and module.inputs_description.strip(), name
    assert (offline_evaluate / "modules" / "evaluate_modules").is_dir()  # the copied scripts went to the temp cache


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown metric 'map'.*accuracy_f1, entity_f1, squad"):
        evaluate_module("map")


def test_accuracy_f1_equals_the_classifiers_metrics():
    names = ["cat", "dog", "fish", "owl"]
    logits = torch.randn(37, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 4, (37,), generator=torch.Generator().manual_seed(1))
    train = single_label_metrics(4)
    top2 = MulticlassAccuracy(4, top_k=2, average="micro")  # ImageClassification's top<k>_acc
    for s in batches(37, 8):
        for metric in (*train.values(), top2):
            metric.update(logits[s], labels[s])
    expected = {name: m.compute().item() for name, m in train.items()} | {"top2_acc": top2.compute().item()}

    module = evaluate.load(str(module_path("accuracy_f1")), keep_in_memory=True)
    ranked = [[names[j] for j in row] for row in logits.topk(4, dim=-1).indices.tolist()]
    references = [names[j] for j in labels.tolist()]
    assert module.compute(predictions=ranked, references=references, label_names=names, top_k=2) == expected
    top1 = [row[0] for row in ranked]
    plain = module.compute(predictions=top1, references=references, label_names=names)
    assert plain == {"acc": expected["acc"], "f1": expected["f1"]}
    as_indices = module.compute(predictions=logits.argmax(-1).tolist(), references=labels.tolist(), num_classes=4)
    assert as_indices == plain
    assert 0 < plain["f1"] < 1 and plain["f1"] != plain["acc"]  # a case where macro F1 and accuracy differ


def test_entity_f1_equals_token_classification_metrics():
    tags = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]  # MISC never occurs below: f1 0
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"], ["B-LOC", "I-LOC", "I-LOC", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"], ["B-PER", "O"], ["B-LOC", "I-LOC", "O", "O", "I-PER"]]
    index = {t: i for i, t in enumerate(tags)}

    def padded(rows):  # (B, T) tag indices, -100 after each sentence (token classification's IGNORE)
        out = torch.full((len(rows), 5), -100)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor([index[t] for t in row])
        return out

    preds, target = padded(pred), padded(gold)
    entities, acc = EntityScores(tags, -100), MulticlassAccuracy(len(tags), average="micro", ignore_index=-100)
    for s in batches(3, 2):
        entities.update(preds[s], target[s])
        acc.update(preds[s].clamp(min=0).flatten(), target[s].flatten())
    expected = {"acc": acc.compute().item()} | {f"entity_{k}": v.item() for k, v in entities.compute().items()}
    assert set(expected) >= {"entity_f1_MISC", "entity_f1_PER"}

    module = evaluate.load(str(module_path("entity_f1")), keep_in_memory=True)
    assert module.compute(predictions=pred, references=gold, label_names=tags) == expected
    without_names = module.compute(predictions=pred, references=gold)
    assert "entity_f1_MISC" not in without_names and without_names["entity_f1"] == expected["entity_f1"]


def test_squad_equals_question_answering_scores():
    answers = ["Paris", "the blue ball", "", "a dog", "red", ""]
    golds = [["Paris", "in Paris"], ["blue ball"], [], ["the cat"], ["red box", "a red box"], ["green"]]
    train = SquadScores()
    for s in batches(6, 4):  # QuestionAnswering._score: score_question per question, then SquadScores
        scored = [score_question(a, g) for a, g in zip(answers[s], golds[s])]
        train.update([em for em, _ in scored], [f for _, f in scored], [bool(g) for g in golds[s]])
    expected = {k: v.item() for k, v in train.compute().items()}
    assert "no_answer_f1" in expected and 0 < expected["f1"] < 100

    module = evaluate.load(str(module_path("squad")), keep_in_memory=True)
    assert module.compute(predictions=answers, references=golds) == expected


def test_wer_cer_equal_speech_recognition_rates():
    hyps = ["a cat sat on the mat", "hello wrld", "", "one two three four"]
    refs = ["the cat sat on the mat", "hello world", "silence here", "one two three"]
    wer, cer = ErrorRate("word"), ErrorRate("char")
    for s in batches(4, 3):
        wer.update(hyps[s], refs[s])
        cer.update(hyps[s], refs[s])
    expected = {"wer": wer.compute().item(), "cer": cer.compute().item()}

    module = evaluate.load(str(module_path("wer_cer")), keep_in_memory=True)
    assert module.compute(predictions=hyps, references=refs) == expected


def test_rouge_and_bleu_chrf_equal_the_seq2seq_metrics():
    hyps = ["the cat sat on the mat .\nit was happy .", "a dog ran in the park", "nothing matches here"]
    refs = ["the cat sat on a mat .\nthe cat was happy .", "the dogs were running in a park", "completely different"]
    rouge, bleu = RougeMetric(), BleuChrfMetric()  # Summarization's and Translation's METRIC()
    for s in batches(3, 2):
        rouge.update(hyps[s], refs[s])
        bleu.update(hyps[s], refs[s])
    module = evaluate.load(str(module_path("rouge")), keep_in_memory=True)
    assert module.compute(predictions=hyps, references=refs) == {k: v.item() for k, v in rouge.compute().items()}
    module = evaluate.load(str(module_path("bleu_chrf")), keep_in_memory=True)
    expected = {k: v.item() for k, v in bleu.compute().items()}
    assert module.compute(predictions=hyps, references=refs) == expected and 0 < expected["bleu"] < 100
    several = module.compute(predictions=hyps, references=[[r, h] for r, h in zip(refs, hyps)])
    assert several["bleu"] == pytest.approx(100)  # a list of references per segment: each hypothesis is one


def test_coco_map_equals_object_detection_map():
    gt = {"images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 100, "height": 80}],
          "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 40, 30, 30], "area": 900, "iscrowd": 0},
                          {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 60, 60], "area": 3600, "iscrowd": 0}]}
    detections = [{"image_id": 1, "boxes": [[12, 10, 50, 42], [50, 40, 75, 70], [0, 0, 10, 10]],
                   "scores": [0.9, 0.6, 0.3], "category_ids": [3, 7, 3]},
                  {"image_id": 2, "boxes": [[5, 5, 60, 58]], "scores": [0.8], "category_ids": [7]}]
    train = CocoMeanAP()
    train.set_ground_truth(gt)
    for d in detections:  # one image per batch
        train.update(torch.tensor([d["image_id"]]), [{"boxes": torch.tensor(d["boxes"], dtype=torch.float64),
                                                       "scores": torch.tensor(d["scores"], dtype=torch.float64),
                                                       "category_ids": torch.tensor(d["category_ids"])}])
    expected = {k: v.item() for k, v in train.compute().items()}
    assert 0 < expected["map"] < 1

    module = evaluate.load(str(module_path("coco_map")), keep_in_memory=True)
    assert module.compute(predictions=detections, ground_truth=gt) == expected
    with pytest.raises(ConfigError, match="needs ground_truth"):
        module.compute(predictions=detections)
