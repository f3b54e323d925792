"""Checkpoints written atomically, read without running code, with a clear error when damaged.

A checkpoint is first written to a temporary file beside its target, flushed and
fsync'ed, then renamed over the target: a crash or SIGKILL mid-write leaves the
previous checkpoint intact and at worst a stray temporary file. Reading goes through
:func:`lit_tasks.safe_load.torch_load` (`weights_only=True`): a checkpoint that would run code
is refused, naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_tasks.errors import CheckpointError
from lit_tasks.safe_load import UnsafeFileError, torch_load


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint, turning a missing or damaged file into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch_load(path, map_location=map_location)
    except UnsafeFileError:
        raise
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError for damaged files
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        instead = (f"pass another checkpoint of {path.parent} instead ({', '.join(others)}; e.g. --ckpt_path "
                   f"{path.parent / others[0]})" if others else "no other checkpoint is in its folder")
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).strip()[:200]}); it is probably "
            f"truncated (a process killed while writing it outside lit_tasks' atomic writes) or not a checkpoint. "
            f"Nothing was changed or deleted: {instead}."
        ) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin with atomic writes and readable load errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location or "cpu")
