"""The `squad` evaluate module (evaluate.load reads squad.py); a package so that it ships with lit_tasks."""
