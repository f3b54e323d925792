"""Helpers shared by the test tiers: tiny image datasets and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("circle", "square", "stripes")

def draw(label: int, rng: np.random.Generator, size: int = 16) -> Image.Image:
    """A small learnable picture: the class decides the colour channel and the pattern."""
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    pixels[..., label] += 150
    if label == 2:
        pixels[::2] //= 3
    return Image.fromarray(pixels)


def make_image_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw(label, rng).save(folder / f"{i}.png")
    return root


def tiny_args(data_root: Path, runs: Path, backbone: str = "vit-test") -> list[str]:
    """CLI arguments of a seconds-long image-classification run on `data_root`."""
    return [
        "--model", "lit_tasks.tasks.ImageClassification",
        "--model.backbone", backbone,
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.ImageDataModule",
        "--data.root", str(data_root),
        "--data.image_size", "32",
        "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--run.root", str(runs),
        "--run.name", "tiny",
        "--run.loggers", "[csv]",
    ]


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m lit_tasks ARGS` in a fresh process (needed for DDP and exit codes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LIT_TASKS_RUN_DIR", None)
    return subprocess.run([sys.executable, "-m", "lit_tasks", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
