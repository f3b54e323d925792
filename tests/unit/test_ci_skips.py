"""Under CI=true a skipped test fails the run (tests/conftest.py), except the real-Slurm ones: a
missing `transformers` or `seqeval` cannot turn the parity or metric-reference suites green."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO

PROBES = {
    "test_probe_tests.py": """
import pytest

def test_passes():
    assert True

def test_reference_missing():
    pytest.importorskip("no_such_reference_package")

@pytest.mark.slurm
def test_needs_the_cluster():
    pytest.skip("no test Slurm here")
""",
    "test_probe_module.py": """
import pytest
reference = pytest.importorskip("no_such_reference_package")

def test_parity():
    assert reference
""",
}


def run_probes(tmp_path, ci: str | None, *options: str) -> subprocess.CompletedProcess:
    for name, text in PROBES.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO / "tests")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "conftest", "-q",
                           "-o", "markers=slurm: probe", *options, str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]], ids=["one process", "xdist"])
def test_a_skip_fails_the_run_under_ci(tmp_path, workers):
    # scripts/test.sh runs pytest-xdist workers: their skips, collection ones too, reach the controller
    result = run_probes(tmp_path, "true", *workers)
    assert result.returncode == 1, result.stdout
    assert "CI=true: 2 test(s) skipped" in result.stdout, result.stdout
    assert "test_probe_tests.py::test_reference_missing" in result.stdout
    assert "test_probe_module.py: " in result.stdout and "no_such_reference_package" in result.stdout
    assert "test_needs_the_cluster" not in result.stdout.split("CI=true:")[1]


def test_skips_are_only_reported_outside_ci(tmp_path):
    result = run_probes(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout and "CI=true" not in result.stdout
