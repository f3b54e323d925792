"""The `entity_f1` evaluate module (evaluate.load reads entity_f1.py); a package so that it ships with lit_tasks."""
