#!/usr/bin/env bash
# The test suite, on a fresh machine too: installs what it needs, then runs pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/zoo -x`).
# The tests run in pytest-xdist workers, one more than there are cores (TEST_WORKERS=N for
# another number, 0 for none): every test keeps to one torch thread, and many spend their time
# waiting (for DDP ranks, Slurm jobs, timeouts they test), when the extra worker keeps the
# cores busy. A worker takes a whole file at a time, so a file's module fixtures (one CLI run
# shared by its tests) run once; tests/conftest.py orders the longest files first.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_SILENT=true
workers=${TEST_WORKERS:-$(( $(nproc) + 1 ))}
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$status"
