"""The `rouge` evaluate module (evaluate.load reads rouge.py); a package so that it ships with lit_tasks."""
