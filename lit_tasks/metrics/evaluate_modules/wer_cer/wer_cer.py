"""Word and character error rates as lit_tasks' speech recognition reports them, as an `evaluate` module."""

import datasets
import evaluate

from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
Corpus word error rate (wer) and character error rate (cer): (substitutions + deletions +
insertions) / reference length, summed over all utterances before dividing (jiwer's alignment;
spaces count as characters for cer). Computed by lit_tasks.metrics.asr.ErrorRate, the metric
lit_tasks' SpeechRecognition task logs, so the numbers equal the training's val/test wer and
cer. Texts are compared as given: the "reference" field of lit_tasks' predictions rows is the
transcript as the training normalised it.
"""

_CITATION = """\
@misc{jiwer, title={jiwer: similarity measures for automatic speech recognition evaluation},
  author={Vaessen, Nik}, howpublished={https://github.com/jitsi/jiwer}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one transcript per utterance.
    references: one reference transcript per utterance.
    case, remove_chars: normalise the references first as lit_tasks' audio data normalises raw
        transcripts (case "lower" / "upper" / "keep", then delete remove_chars, then collapse
        whitespace); setting either one turns it on, the other at the data's default ("lower",
        '.,?!;:"'). Default: texts compared as given.
Returns:
    wer, cer: error rates (0 is perfect; they can exceed 1).
Example:
    >>> rates = evaluate.load("<lit_tasks>/metrics/evaluate_modules/wer_cer")
    >>> rates.compute(predictions=["a cat sat"], references=["the cat sat"])
    {'wer': 0.333..., 'cer': 0.272...}
"""


class WerCer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://en.wikipedia.org/wiki/Word_error_rate"])

    def _compute(self, predictions, references, case=None, remove_chars=None):
        return scoring.wer_cer(predictions, references, case=case, remove_chars=remove_chars)
