#!/usr/bin/env bash
# The test suite, on a fresh machine too: installs what it needs, then runs pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/zoo -x`).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_SILENT=true
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$status"
