"""Atomic checkpoint writes and readable errors for damaged files."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.checkpoint_io import AtomicCheckpointIO, atomic_torch_save, load_checkpoint_file
from lit_tasks.errors import CheckpointError


def test_a_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(2)}}, path)

    def dies_half_way(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"state_dict": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_plugin_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(3)}, "epoch": 4}, tmp_path / "sub" / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "sub" / "a.ckpt")["epoch"] == 4


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_damaged_or_missing_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint_file(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "t.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint_file(path)
