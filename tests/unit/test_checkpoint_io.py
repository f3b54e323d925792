"""Atomic checkpoint writes (a writer killed mid-save, a full disk) and readable errors for damaged files."""

from __future__ import annotations

import pytest
import torch
from helpers import FillsUp

from lit_tasks import run_dir
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


# -- a writer killed mid-save, a full disk ------------------------------------------------------

KILLED_WRITER = """
import sys, time
from pathlib import Path
import torch
from lit_tasks.checkpoint_io import atomic_torch_save

path, ready = Path(sys.argv[1]), Path(sys.argv[2])
atomic_torch_save({"state_dict": {"w": torch.ones(1000)}}, path)  # the previous checkpoint
real_save = torch.save

def slow_save(obj, f):  # half of the new checkpoint reaches the disk, then the writer stalls
    real_save(obj, f)
    f.truncate(f.tell() // 2)
    f.flush()
    ready.write_text("")
    time.sleep(600)

torch.save = slow_save
atomic_torch_save({"state_dict": {"w": torch.zeros(1000)}}, path)
"""


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint_and_its_temporary_is_cleaned(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "run" / "checkpoints"
    path, ready = folder / "last.ckpt", tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never got half-way"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)  # as the OOM killer, or Slurm after KillWait
    finally:
        writer.kill()
        writer.wait()
    (stray,) = folder.glob(".last.ckpt.tmp-*")  # the half-written new checkpoint, named by host and pid
    assert stray.name.endswith(f"-{writer.pid}") and stray.stat().st_size > 0
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.ones(1000))  # the previous one, whole
    monkeypatch.setenv(run_dir.ENV_VAR, "")  # resolve() exports the folder: gone again after the test
    assert run_dir.resolve(str(tmp_path), "run", str(tmp_path / "run"), "last")[1] == str(path)  # not the stray

    atomic_torch_save({"state_dict": {"w": torch.full((3,), 2.0)}}, path)  # the next write cleans up
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.full((3,), 2.0))


def test_only_temporaries_of_dead_writers_on_this_host_are_removed(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from lit_tasks.checkpoint_io import remove_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    files = {name: tmp_path / name for name in (
        f".last.ckpt.tmp-{host}-{dead.pid}",        # killed mid-write: removed
        f".best.ckpt.tmp-{host}-{os.getppid()}",    # a live writer (another process): kept
        f".last.ckpt.tmp-{host}-{os.getpid()}",     # this process: kept
        f".last.ckpt.tmp-other-node-{dead.pid}",    # another host's: its pid means nothing here, kept
        ".results.json.tmp-123",                   # not a checkpoint temporary: kept
        "last.ckpt")}
    for file in files.values():
        file.write_bytes(b"x")
    stale = f".last.ckpt.tmp-{host}-{dead.pid}"
    assert remove_stale_temporaries(tmp_path) == [files[stale]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(name for name in files if name != stale)


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("errno_name, says", [("ENOSPC", "no space is left on the device"),
                                               ("EDQUOT", "the disk quota is exceeded")])
def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where, errno_name,
                                                                       says):
    import errno
    import os

    from lit_tasks import checkpoint_io

    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(2)}}, path)
    previous = path.read_bytes()
    code = getattr(errno, errno_name)
    if where == "write":  # torch.save turns the failed write into a RuntimeError: found behind it
        monkeypatch.setattr(checkpoint_io, "open", lambda file, mode: FillsUp(open(file, mode), 3000, code),
                            raising=False)
    else:  # a network file system may only say so when the data is flushed
        def fsync(fd):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(checkpoint_io.os, "fsync", fsync)
    with pytest.raises(CheckpointError) as caught:
        atomic_torch_save({"state_dict": {"w": torch.randn(10_000)}}, path)
    monkeypatch.undo()
    message = str(caught.value)
    assert f"cannot write checkpoint {path}: {says}" in message and "the previous last.ckpt is unchanged" in message
    assert path.read_bytes() == previous  # the previous checkpoint, byte for byte
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the partial file removed


def test_other_write_errors_are_not_disguised(tmp_path, monkeypatch):
    from lit_tasks import checkpoint_io

    def broken(obj, f):
        raise RuntimeError("a bug in a custom state_dict")

    monkeypatch.setattr(checkpoint_io.torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        atomic_torch_save({"state_dict": {}}, tmp_path / "a.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(run_dir.time, "strftime", lambda fmt: "2026-12-04_09-06-50")
    first, second, third = (run_dir.claim_new(tmp_path, "recipe") for _ in range(3))
    assert [d.name for d in (first, second, third)] == ["2026-12-04_09-06-50", "2026-12-04_09-06-50_2",
                                                          "2026-12-04_09-06-50_3"]
    assert all(d.is_dir() for d in (first, second, third))
    monkeypatch.setenv(run_dir.ENV_VAR, "")  # resolve() exports the folder it chose
    assert run_dir.resolve(str(tmp_path), "recipe", None, None)[0].name == "2026-12-04_09-06-50_4"


def test_a_slurm_job_keeps_its_folder_across_requeues(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert run_dir.claim_new(tmp_path, "recipe") == run_dir.claim_new(tmp_path, "recipe") == tmp_path / "recipe/slurm-77"
