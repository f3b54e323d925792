"""ROUGE as lit_tasks' summarization reports it, as an `evaluate` module."""

import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (Lin 2004) by Google's rouge-score package,
the plain mean over examples in percent, with Porter stemming by default (use_stemmer). Not the
same numbers as evaluate's own "rouge" module, which reports 0-1, does not stem by default and
aggregates by bootstrap. Computed by lit_tasks.metrics.rouge.RougeMetric, the metric lit_tasks'
Summarization task logs, so the numbers equal the training's. rougeLsum splits sentences at
newlines: put one sentence per line.
"""

_CITATION = """\
@inproceedings{lin2004rouge,
  title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew}, booktitle={Text Summarization Branches Out}, year={2004}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one generated text per example.
    references: per example one reference text, or a list of them (the best one counts per type).
    use_stemmer: Porter-stem words longer than 3 characters (default True, as training).
Returns:
    rouge1, rouge2, rougeL, rougeLsum: mean F-measure in percent.
Example:
    >>> rouge = evaluate.load("<lit_tasks>/metrics/evaluate_modules/rouge")
    >>> rouge.compute(predictions=["the cat sat"], references=["the cat sat down"])
    {'rouge1': 85.7..., 'rouge2': 80.0, 'rougeL': 85.7..., 'rougeLsum': 85.7...}
"""


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=scoring.text_features(),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"])

    def _compute(self, predictions, references, use_stemmer=True):
        return scoring.rouge(predictions, references, use_stemmer=use_stemmer)
