"""Fixtures of the learning tests: the recipes' working directory and their torch threads."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import REPO


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the recipes name their data relative to the repository root


@pytest.fixture(autouse=True)
def two_threads():
    """conftest.py gives tests one torch thread (tests that start several processes would
    oversubscribe the cores); a run here gets two where the cores allow (on two threads the
    MiniLM runs take 0.63x the time, the small models 0.8-0.9x): its share of the cores when
    pytest-xdist runs several workers (scripts/test.sh), capped at 2."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    yield
    torch.set_num_threads(before)
