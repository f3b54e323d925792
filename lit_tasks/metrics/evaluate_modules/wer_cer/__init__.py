"""The `wer_cer` evaluate module (evaluate.load reads wer_cer.py); a package so that it ships with lit_tasks."""
