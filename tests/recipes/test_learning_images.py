"""Learning tests (image classification): shortened recipes beat their baselines (tests/recipe_runs.py)."""

from __future__ import annotations

import pytest
from recipe_runs import fit

pytestmark = pytest.mark.slow


# -- image classification: chance is 0.1 (1000 val images, 100 per class) ----------------------


def test_convnext_fashion_mnist_learns(tmp_path):
    # 2 epochs of 30 batches (3840 images). Measured val/acc 0.534, 0.537, 0.535 (seeds 42, 1, 2),
    # 0.126 with --model.lr 0; 22 s of CPU.
    metrics = fit("image_classification/convnext_fashion_mnist.yaml", tmp_path,
                  "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "30")
    assert metrics["val/acc"] >= 0.40, metrics


def test_vit_fashion_mnist_learns(tmp_path):
    # 2 epochs of 60 batches (7680 images; the ViT starts slower than the ConvNeXT). Measured
    # val/acc 0.342, 0.429, 0.408 (seeds 42, 1, 2), 0.135 with --model.lr 0; 38 s of CPU.
    metrics = fit("image_classification/vit_fashion_mnist.yaml", tmp_path,
                  "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "60")
    assert metrics["val/acc"] >= 0.25, metrics
