"""Tag accuracy and entity-level F1 as lit_tasks' token classification reports them, as an `evaluate` module."""

import datasets
import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
Word tagging (NER, part of speech): acc, the tag accuracy over all words, and for IOB2 tag sets
(O, B-X, I-X) entity_precision, entity_recall, entity_f1 (micro over all entities; entities
decoded by the CoNLL conlleval rules, seqeval's default mode) and entity_f1_<TYPE> per entity
type. Computed by torchmetrics MulticlassAccuracy and lit_tasks.metrics.entities.EntityScores,
the metrics lit_tasks' TokenClassification task logs, so the numbers equal the training's.
"""

_CITATION = """\
@inproceedings{tjong2003conll,
  title={Introduction to the {CoNLL}-2003 Shared Task: Language-Independent Named Entity Recognition},
  author={Tjong Kim Sang, Erik F. and De Meulder, Fien}, booktitle={CoNLL}, year={2003}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sentence the predicted tags, one per word.
    references: per sentence the true tags, as many as predicted.
    label_names: the tag set (default: the sorted tags that occur). entity_f1_<TYPE> is reported
        for every entity type of the tag set: pass the training's tags (results.json's
        config.model.init_args.label_names) to get the same keys as training.
Returns:
    acc, and for IOB2 tags entity_precision, entity_recall, entity_f1, entity_f1_<TYPE>: in [0, 1].
Example:
    >>> ner = evaluate.load("<lit_tasks>/metrics/evaluate_modules/entity_f1")
    >>> ner.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "O", "O"]])
    {'acc': 0.666..., 'entity_precision': 0.0, 'entity_recall': 0.0, 'entity_f1': 0.0, 'entity_f1_PER': 0.0}
"""


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://www.clips.uantwerpen.be/conll2003/ner/"])

    def _compute(self, predictions, references, label_names=None):
        return scoring.entity_f1(predictions, references, label_names=label_names)
