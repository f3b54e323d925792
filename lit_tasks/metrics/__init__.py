"""Metrics that torchmetrics does not give us (SQuAD EM/F1, entity-level F1, ROUGE via rouge-score,
corpus BLEU/chrF via sacreBLEU, ...), the classifiers' torchmetrics set (classification.py), and all our metrics as
Hugging Face `evaluate` modules (`evaluate_module`, `lit_tasks.metrics.evaluate_modules`).

Importing this package imports neither torch nor evaluate."""

from __future__ import annotations

from lit_tasks.metrics.evaluate_modules import METRIC_MODULES, evaluate_module, module_path

__all__ = ["METRIC_MODULES", "evaluate_module", "module_path"]

