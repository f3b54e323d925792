"""Precision and speed options through the CLI (docs/scaling.md), on CPU."""

from __future__ import annotations

import json
import math

import pytest
from helpers import run_cli, tiny_args

from lit_tasks.callbacks.speed import BlockOptions
from lit_tasks.cli import LitTasksCLI


def test_bf16_accumulation_clipping_and_activation_checkpointing_train(tmp_path, image_folder):
    result = run_cli("fit", *tiny_args(image_folder, tmp_path), "--trainer.max_epochs", "1", "--run.test_after_fit", "false",
                     "--trainer.precision", "bf16-mixed", "--trainer.accumulate_grad_batches", "2",
                     "--trainer.gradient_clip_val", "1.0", "--run.activation_checkpointing", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run.activation_checkpointing: applied to 2 blocks" in result.stderr + result.stdout
    (run_dir,) = (tmp_path / "tiny").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and math.isfinite(results["metrics"]["val/loss"])
    assert results["history"][0]["step"] == 2  # 3 batches, 2 accumulated per step: 2 optimiser steps


def test_compile_flag_reaches_the_blocks(tmp_path, image_folder):
    cli = LitTasksCLI(args=[*tiny_args(image_folder, tmp_path), "--run.compile", "true"], run=False)
    (options,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, BlockOptions)]
    assert options.compile and not options.activation_checkpointing
    options.setup(cli.trainer, cli.model, "fit")
    compiled = [m for m in cli.model.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert len(compiled) == 2  # the two blocks of vit-test, nothing else


def test_block_options_on_a_model_without_blocks_is_a_config_error(tmp_path, image_folder):
    import torch

    from lit_tasks.errors import ConfigError

    cli = LitTasksCLI(args=[*tiny_args(image_folder, tmp_path)], run=False)
    with pytest.raises(ConfigError, match="run.activation_checkpointing"):
        BlockOptions(activation_checkpointing=True).setup(cli.trainer, torch.nn.Linear(2, 2), "fit")
