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
    monkeypatch.delenv("LIT_TASKS_RUN_DIR", raising=False)
