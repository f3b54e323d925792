"""RNG states saved in checkpoints: restorable, and loadable with torch.load(weights_only=True)."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from lit_tasks.callbacks.resume import rng_states, set_rng_states


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_states_round_trip_through_a_weights_only_load():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    buffer = io.BytesIO()
    torch.save({"resume": {"rng": rng_states()}}, buffer)
    expected = draws()
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True)["resume"]["rng"])
    assert draws() == expected
