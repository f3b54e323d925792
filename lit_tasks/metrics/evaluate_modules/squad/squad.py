"""SQuAD exact match and F1 as lit_tasks' question answering reports them, as an `evaluate` module."""

import datasets
import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
SQuAD exact match and token F1 in percent (Rajpurkar et al. 2016; v2.0: 2018): answers are
normalised (lower case, no punctuation, no articles a/an/the, single spaces), a question scores
its best gold answer, and a question without gold answers is right only when the answer is "".
Computed by lit_tasks.metrics.squad (score_question + SquadScores), the code lit_tasks'
QuestionAnswering task scores val/test with, so the numbers equal the training's.
"""

_CITATION = """\
@inproceedings{rajpurkar2016squad,
  title={{SQuAD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP}, year={2016}}
@inproceedings{rajpurkar2018know,
  title={Know What You Don't Know: Unanswerable Questions for {SQuAD}},
  author={Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle={ACL}, year={2018}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one answer text per question ("" for no answer).
    references: per question the list of gold answer texts ([] for an unanswerable question).
Returns:
    exact_match, f1: percent over the questions; when answerable and unanswerable questions both
    occur also has_answer_exact_match, has_answer_f1, has_answer_total and the no_answer_* ones.
Example:
    >>> squad = evaluate.load("<lit_tasks>/metrics/evaluate_modules/squad")
    >>> squad.compute(predictions=["the Eiffel tower", ""], references=[["Eiffel Tower"], []])
    {'exact_match': 100.0, 'f1': 100.0, ...}
"""


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"])

    def _compute(self, predictions, references):
        return scoring.squad(predictions, references)
