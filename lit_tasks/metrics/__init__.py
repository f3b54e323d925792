"""Metrics that torchmetrics does not give us (SQuAD EM/F1, entity-level F1, ROUGE via rouge-score,
corpus BLEU/chrF via sacreBLEU, ...)."""
