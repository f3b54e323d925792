"""The `accuracy_f1` evaluate module (evaluate.load reads accuracy_f1.py); a package so that it ships with lit_tasks."""
