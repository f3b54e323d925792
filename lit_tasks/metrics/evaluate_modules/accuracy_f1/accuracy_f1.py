"""Accuracy and macro F1 as lit_tasks' single-label classifiers report them, as an `evaluate` module."""

import datasets
import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
Single-label classification: acc (micro top-1 accuracy), f1 (macro F1 over the classes that occur
as a label or a prediction; a class with neither is left out, as torchmetrics does) and, with
top_k and ranked predictions, top<k>_acc. Computed by lit_tasks.metrics.classification.single_label_metrics,
the classifiers' metrics (torchmetrics MulticlassAccuracy / MulticlassF1Score), and for top-k by
MulticlassAccuracy(top_k=k) as lit_tasks' image classification builds it, so the numbers equal
the training's val/test acc, f1 and top<k>_acc.
"""

_CITATION = """\
@misc{torchmetrics, title={TorchMetrics: Measuring Reproducibility in PyTorch},
  author={Detlefsen, Nicki Skafte and others}, year={2022}, doi={10.21105/joss.04101}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per example the predicted label, or its ranked labels (most probable first,
        e.g. the labels of the "top" field that lit_tasks predict writes).
    references: per example the true label.
    Labels are all names (strings) or all class indices (integers).
    label_names: the class names in class-index order (default: the sorted names that occur);
        a label outside them is an error.
    num_classes: the number of classes for integer labels (default: the largest index + 1).
        Macro F1 averages over the classes that occur as a label or a prediction, so any
        num_classes covering the labels gives the same f1.
    top_k: also report top<k>_acc, k = min(top_k, number of classes); needs ranked predictions
        of at least k labels.
Returns:
    acc, f1 (and top<k>_acc): in [0, 1].
Example:
    >>> acc_f1 = evaluate.load("<lit_tasks>/metrics/evaluate_modules/accuracy_f1")
    >>> acc_f1.compute(predictions=["cat", "dog", "dog"], references=["cat", "dog", "cat"])
    {'acc': 0.666..., 'f1': 0.666...}
"""

_LABEL = {"string": datasets.Value("string"), "int": datasets.Value("int64")}


class AccuracyF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=[  # evaluate takes the first that fits the first example
                datasets.Features({"predictions": _LABEL["string"], "references": _LABEL["string"]}),
                datasets.Features({"predictions": datasets.Sequence(_LABEL["string"]), "references": _LABEL["string"]}),
                datasets.Features({"predictions": _LABEL["int"], "references": _LABEL["int"]}),
                datasets.Features({"predictions": datasets.Sequence(_LABEL["int"]), "references": _LABEL["int"]}),
            ],
            reference_urls=["https://lightning.ai/docs/torchmetrics/stable/classification/f1_score.html"])

    def _compute(self, predictions, references, label_names=None, num_classes=None, top_k=None):
        return scoring.accuracy_f1(predictions, references, label_names=label_names, num_classes=num_classes,
                                   top_k=top_k)
