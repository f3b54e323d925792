"""Corpus BLEU and chrF as lit_tasks' translation reports them, as an `evaluate` module."""

import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
Corpus BLEU (Papineni et al. 2002) and chrF (Popovic 2015) in percent, computed by sacreBLEU from
n-gram statistics summed over all segments (default tokenizer 13a, exponential smoothing, chrF
character order 6 and beta 2; word_order=2 gives chrF++). Computed by
lit_tasks.metrics.translation.BleuChrfMetric, the metric lit_tasks' Translation task logs, so
the numbers equal the training's and sacrebleu.corpus_bleu / corpus_chrf.
"""

_CITATION = """\
@inproceedings{papineni2002bleu, title={{BLEU}: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing}, booktitle={ACL}, year={2002}}
@inproceedings{popovic2015chrf, title={chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author={Popovi{\'c}, Maja}, booktitle={WMT}, year={2015}}
@inproceedings{post2018call, title={A Call for Clarity in Reporting {BLEU} Scores},
  author={Post, Matt}, booktitle={WMT}, year={2018}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one hypothesis per segment.
    references: per segment one reference, or a list of them (their number may vary).
    tokenize, lowercase, smooth_method: sacreBLEU's BLEU options (default "13a", False, "exp").
    word_order: chrF word n-gram order (0: chrF, as training; 2: chrF++).
Returns:
    bleu, chrf: percent.
Example:
    >>> bleu_chrf = evaluate.load("<lit_tasks>/metrics/evaluate_modules/bleu_chrf")
    >>> bleu_chrf.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])
    {'bleu': 100.0, 'chrf': 100.0}
"""


class BleuChrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=scoring.text_features(),
            reference_urls=["https://github.com/mjpost/sacrebleu"])

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp", word_order=0):
        return scoring.bleu_chrf(predictions, references, tokenize=tokenize, lowercase=lowercase,
                                 smooth_method=smooth_method, word_order=word_order)
