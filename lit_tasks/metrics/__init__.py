"""Metrics that torchmetrics does not give us (SQuAD EM/F1, entity-level F1, ...)."""
