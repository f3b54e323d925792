#!/usr/bin/env bash
# Creates .venv with the CPU build of torch 2.13.0 and lit_tasks with its test extras.
# Idempotent: does nothing when .venv is newer than pyproject.toml.
# TORCH_INDEX_URL (optional): an extra package index that serves CPU torch wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.lit_tasks-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
extra=()
[ -n "${TORCH_INDEX_URL:-}" ] && extra=(--extra-index-url "$TORCH_INDEX_URL")
"${pip[@]}" "${extra[@]}" "torch==2.13.0"
"${pip[@]}" "${extra[@]}" -e ".[test]"
touch "$stamp"
