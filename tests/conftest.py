"""Fixtures shared by the test tiers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import make_image_folder

os.environ.setdefault("WANDB_MODE", "offline")  # tests never reach a wandb server
os.environ.setdefault("WANDB_SILENT", "true")
# Tiny models are overhead-bound: one thread per process avoids oversubscribing the cores
# when the CLI tests start several processes (DDP ranks, data workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """train 8, val 5, test 4 images per class (15 val images: uneven over 2 ranks)."""
    return make_image_folder(tmp_path / "images", {"train": 8, "val": 5, "test": 4})


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """In-process CLI calls get their arguments explicitly, not pytest's, and no run folder
    chosen by an earlier in-process call."""
    monkeypatch.setattr("sys.argv", ["lit_tasks"])
    # popped, not monkeypatch.delenv: that would restore, after the test, a folder an in-process
    # call in a module-scoped fixture chose, and the next module's in-process run would reuse it
    os.environ.pop("LIT_TASKS_RUN_DIR", None)
    yield
    os.environ.pop("LIT_TASKS_RUN_DIR", None)  # a run folder chosen inside the test does not leak out


# -- longest files first ---------------------------------------------------------------------
# scripts/test.sh runs the suite in pytest-xdist workers that take a whole file at a time, in
# collection order as they free up (--dist loadfile --no-loadscope-reorder). Starting with the
# longest files (the learning tests, then files with other slow tests) keeps the run from ending
# on one worker with a long file while the others sit idle: 8 of 35 minutes on 2 cores otherwise.


LONGEST_FIRST = ("test_learning_seq2seq.py", "test_learning_detection.py")  # about 20 and 10 min on one thread


def pytest_collection_modifyitems(config, items) -> None:
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:  # the learning tests (longest first), a file with a slow test, the rest
        if item.path.parent.name == "recipes":
            name = item.path.name
            return 0, LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return (1, 0) if item.path in slow else (2, 0)

    items.sort(key=rank)  # stable: files and tests keep their order within a rank


# -- under CI, a skipped test is a failure --------------------------------------------------
# A parity suite skips when `transformers` is missing, the entity-F1 reference when `seqeval` is,
# the real-weights tests when MiniLM is not linked: locally that is a hint, in CI it would turn a
# whole suite green without running it. Only the real-Slurm tests may skip there (.ci/run says
# when the test cluster did not start).
SKIPS_ALLOWED_IN_CI = {"slurm"}
forbidden_skips: list[str] = []


def _note_skip(report) -> None:
    if os.environ.get("CI", "").lower() not in ("true", "1") or not report.skipped:
        return
    if SKIPS_ALLOWED_IN_CI & set(getattr(report, "keywords", {})):
        return
    if "::" not in report.nodeid and Path(report.nodeid).parts[:2] == ("tests", "slurm"):
        return  # the Slurm module skipped whole
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    forbidden_skips.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report) -> None:
    _note_skip(report)


def pytest_collectreport(report) -> None:
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus) -> None:
    if forbidden_skips:
        print(f"\nCI=true: {len(forbidden_skips)} test(s) skipped, which CI does not allow "
              f"(a missing reference package or model hides a whole suite):")
        for line in forbidden_skips:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
