"""Run part of the suite against the lowest versions pyproject.toml allows (for releases).

    python scripts/check_floors.py                       # unit, task, CLI and resume tests
    python scripts/check_floors.py tests/unit -x         # other pytest arguments

The floors of the pure-Python dependencies whose API we lean on (lightning, torchmetrics,
jsonargparse, jiwer) are installed with --no-deps into a temporary folder that is put before
the venv's site-packages (PYTHONPATH), so the tests import them instead of the newer ones; the
rest of the environment stays. Compiled dependencies (torch, tokenizers, numpy...) are not
swapped: their floors are stated from their changelogs, not run here.
Last run (2026-12-03, `tests/unit tests/cli/test_help.py`): lightning 2.6.0, torchmetrics 1.6.0,
jsonargparse 4.51.0, jiwer 4.0.0: 238 passed. Earlier (with jsonargparse 4.39.0, the default
tests): 181 passed. torchmetrics 1.5 lacks Metric.merge_state, jsonargparse 4.32 breaks lightning
2.6's CLI, jsonargparse before 4.51 shows no description for options a DataModule documents in its
base class (tests/cli/test_help.py), jiwer 3.1 raises on empty references.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWAPPED = ("lightning", "torchmetrics", "jsonargparse", "jiwer")
DEFAULT_TESTS = ["tests/unit", "tests/tasks", "tests/cli/test_cli.py", "tests/cli/test_resume.py", "tests/cli/test_help.py"]


def floors() -> dict[str, str]:
    """{package: lowest version} of the SWAPPED packages, from pyproject.toml's dependencies."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for requirement in dependencies:
        match = re.fullmatch(r"([\w-]+)(\[[\w,]+\])?>=([\w.]+)", requirement.replace(" ", ""))
        if match and match.group(1) in SWAPPED:
            found[match.group(1)] = match.group(3)
    missing = set(SWAPPED) - set(found)
    if missing:
        sys.exit(f"pyproject.toml states no '>=' floor for {sorted(missing)}")
    return found


def main(argv: list[str]) -> int:
    pinned = floors()
    if "lightning" in pinned:
        pinned["pytorch-lightning"] = pinned["lightning"]  # the same release under its other name
    with tempfile.TemporaryDirectory(prefix="lit_tasks_floors_") as target:
        print("installing:", ", ".join(f"{k}=={v}" for k, v in pinned.items()), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target,
                        *(f"{k}=={v}" for k, v in pinned.items())], check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([target, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                               *(argv or DEFAULT_TESTS)], cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
