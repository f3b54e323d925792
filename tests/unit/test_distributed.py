"""The pieces of lit_tasks.distributed that need no second process: the timeout reaching the
strategy, and which errors are reported as a failed collective."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import tiny_args
from lightning.pytorch.strategies import DDPStrategy

from lit_tasks.cli import LitTasksCLI
from lit_tasks.distributed import apply_timeout, failure_message
from lit_tasks.errors import ConfigError

GLOO_TIMEOUT = ("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
                "Timed out waiting 30000ms for recv operation to complete")


def test_the_timeout_option_reaches_the_ddp_strategy(tmp_path, image_folder):
    def strategy(*extra):
        args = [*tiny_args(image_folder, tmp_path), "--trainer.strategy", "ddp", "--trainer.devices", "2", *extra]
        return LitTasksCLI(args=args, run=False).trainer.strategy

    assert strategy()._timeout == timedelta(minutes=30)
    assert strategy("--run.ddp_timeout_minutes", "0.5")._timeout == timedelta(seconds=30)
    with pytest.raises(ConfigError, match="run.ddp_timeout_minutes must be positive"):
        strategy("--run.ddp_timeout_minutes", "0")


def test_a_timeout_set_in_the_strategy_block_is_kept():
    own = DDPStrategy(timeout=timedelta(minutes=5))
    apply_timeout(own, 1.0)
    assert own._timeout == timedelta(minutes=5)


def test_failed_collectives_are_named_and_other_errors_are_left_alone():
    message = failure_message(RuntimeError(GLOO_TIMEOUT))
    assert message.startswith("a collective operation of the distributed run failed (Timed out waiting 30000ms")
    assert "run.ddp_timeout_minutes" in message
    try:  # found behind a wrapper too
        try:
            raise RuntimeError(GLOO_TIMEOUT)
        except RuntimeError as cause:
            raise ValueError("while testing") from cause
    except ValueError as wrapped:
        assert failure_message(wrapped) == message
    assert failure_message(RuntimeError("DataLoader timed out after 90 seconds")) is None
    assert failure_message(ValueError("nan")) is None
