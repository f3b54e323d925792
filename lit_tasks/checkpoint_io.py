"""Checkpoints written atomically, read without running code, with a clear error when damaged.

A checkpoint is first written to a temporary file beside its target
(`.<name>.tmp-<host>-<pid>`), flushed and fsync'ed, then renamed over the target: a crash or
SIGKILL mid-write leaves the previous checkpoint intact and at worst a stray temporary file,
which the next write into that folder from the same host removes once its process is gone.
A write that fails because the disk or the quota is full raises a :class:`CheckpointError`
naming the file (the CLI prints it and exits with status 2); the temporary file is removed and
the previous checkpoint is untouched.

Reading goes through :func:`lit_tasks.safe_load.torch_load` (`weights_only=True`): a checkpoint
that would run code is refused, naming the file. A damaged one is refused too, with the intact
checkpoints of its folder listed, newest first, to resume from instead; nothing is chosen for
the user, changed or deleted.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_tasks.errors import CheckpointError
from lit_tasks.runs import process_alive
from lit_tasks.safe_load import UnsafeFileError, torch_load

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device / disk quota exceeded
TEMPORARY = re.compile(r"^\.(?P<target>.+)\.tmp-(?P<host>.+)-(?P<pid>\d+)$")


def temporary_path(path: Path) -> Path:
    """Where `path` is written before the rename: hidden, named by this host and process."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` left by writers on this host that no longer run
    (killed mid-write); returns them. Those of other hosts are left: their pid means nothing here."""
    removed = []
    host = socket.gethostname()
    for file in folder.glob(".*.tmp-*"):
        found = TEMPORARY.match(file.name)
        pid = int(found["pid"]) if found else None
        if found and found["host"] == host and pid != os.getpid() and not process_alive(pid):
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind `exc` (torch.save re-raises a failed write as a RuntimeError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in FULL:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        what = "the disk quota is exceeded" if full.errno == errno.EDQUOT else "no space is left on the device"
        kept = f"the previous {path.name} is unchanged" if path.is_file() else f"no earlier {path.name} existed"
        raise CheckpointError(
            f"cannot write checkpoint {path}: {what} ({os.strerror(full.errno)}; the disk or quota holding "
            f"{path.parent} is full). The partial file was removed and {kept}; free some space (df -h {path.parent}), "
            f"then resume with --ckpt_path last."
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_intact(path: Path) -> bool:
    """Whether a checkpoint file reads back whole, checked without unpickling anything: every
    member of the zip archive torch writes passes its CRC (older non-zip files: a restricted load)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        torch_load(path)
        return True
    except Exception:
        return False


def intact_alternatives(path: Path) -> list[Path]:
    """The other checkpoints of `path`'s folder that read back whole, newest first."""
    others = [p for p in path.parent.glob("*.ckpt") if p != path and p.is_file()]
    return sorted((p for p in others if is_intact(p)), key=lambda p: p.stat().st_mtime, reverse=True)


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
        intact = intact_alternatives(path)
        if intact:
            listed = ", ".join(f"{p.name} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(p.stat().st_mtime))})"
                               for p in intact)
            instead = (f"the intact checkpoints of {path.parent}, newest first: {listed}. Resume from one of them by "
                       f"name, e.g. --ckpt_path {intact[0]} (lit_tasks does not fall back to an older checkpoint by "
                       f"itself: the steps after it would be trained again)")
        else:
            instead = f"no other intact checkpoint is in {path.parent}"
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).strip()[:200]}); it is probably "
            f"truncated (copied half-way, or written outside lit_tasks' atomic writes) or not a checkpoint. "
            f"Nothing was changed or deleted; {instead}."
        ) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin with atomic writes and readable load and write errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location or "cpu")
