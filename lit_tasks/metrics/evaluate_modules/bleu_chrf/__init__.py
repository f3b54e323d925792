"""The `bleu_chrf` evaluate module (evaluate.load reads bleu_chrf.py); a package so that it ships with lit_tasks."""
