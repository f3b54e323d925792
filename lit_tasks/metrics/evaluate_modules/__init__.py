"""Our metrics as Hugging Face `evaluate` modules: one folder per metric, ``<name>/<name>.py``,
each an ``evaluate.Metric`` whose ``_compute`` calls `scoring` (the training's own metric code).

    import evaluate
    from lit_tasks.metrics import evaluate_module, module_path

    squad = evaluate_module("squad")            # = evaluate.load(module_path("squad"), keep_in_memory=True)
    squad.compute(predictions=["Paris"], references=[["Paris", "in Paris"]])

Loading reads the script from the installed package, never the Hub, so it works offline
(``HF_HUB_OFFLINE=1``, ``HF_EVALUATE_OFFLINE=1``). evaluate copies the script into its modules
cache (``HF_MODULES_CACHE``, default ``~/.cache/huggingface/modules``) to import it.

This module imports neither torch nor evaluate: ``lit_tasks.metrics`` stays light to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_tasks.errors import ConfigError

HERE = Path(__file__).resolve().parent

# name -> what it scores (one line); the folder HERE/<name>/ holds <name>.py
METRIC_MODULES = {
    "accuracy_f1": "single-label classification: acc, macro f1 (and top<k>_acc), as image/text/audio classification",
    "entity_f1": "word tags: tag acc and, for IOB2 tags, entity precision/recall/F1 (seqeval's default mode)",
    "squad": "extractive QA: SQuAD exact match and F1 in percent (v2 has_answer/no_answer breakdown)",
    "wer_cer": "transcripts: corpus word and character error rates (jiwer)",
    "rouge": "summaries: ROUGE-1/2/L/Lsum F-measure in percent (rouge-score, stemmed)",
    "bleu_chrf": "translations: corpus BLEU and chrF in percent (sacreBLEU)",
    "coco_map": "detections: COCO box mAP/mAR, the 12 numbers of pycocotools' summarize()",
}


def module_path(name: str) -> Path:
    """The folder of metric `name`'s evaluate module (what ``evaluate.load`` takes); a
    ConfigError listing the known names for another name."""
    if name not in METRIC_MODULES:
        raise ConfigError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_MODULES)}")
    return HERE / name


def evaluate_module(name: str, **load_kwargs: Any):
    """``evaluate.load`` of metric `name` from the installed package (offline). `load_kwargs` go
    to ``evaluate.load`` (e.g. cache_dir, experiment_id); ``keep_in_memory`` defaults to True,
    so computing writes no Arrow cache files."""
    path = module_path(name)
    import evaluate

    return evaluate.load(str(path), **{"keep_in_memory": True, **load_kwargs})
