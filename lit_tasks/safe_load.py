"""Reading torch-pickled files (`.ckpt`, `pytorch_model.bin`) without running code from them.

A pickle can name any importable function and have the unpickler call it (`__reduce__`), so
`torch.load(weights_only=False)` on a file someone handed you runs their code. Every torch
file lit_tasks reads goes through :func:`torch_load`, which uses torch's restricted unpickler
(`weights_only=True`: tensors, numbers, strings and plain containers only) and never falls back
to the full one. A file that names a function the restricted unpickler refuses raises :class:`UnsafeFileError` naming the file and the
global it tried to load. Our own checkpoints hold only such types (RNG states included, see
:mod:`lit_tasks.callbacks.resume`).
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from lit_tasks.errors import CheckpointError, UnsafeFileError

REFUSED = "Weights only load failed"  # how torch's restricted unpickler starts its refusal
GLOBAL = re.compile(r"GLOBAL (\S+)")
__all__ = ["UnsafeFileError", "checkpoint_entry", "read_checkpoint", "torch_load"]


def torch_load(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """`torch.load` with the restricted unpickler; UnsafeFileError when the file asks for more.
    `mmap`: tensors are mapped from the file, not read, until used."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = GLOBAL.search(str(exc)) if REFUSED in str(exc) else None
        if found is None:
            raise  # damaged, or not a torch file: the caller names it
        raise UnsafeFileError(
            f"{path} was refused: it asks to load {found.group(1)}, and loading it would run code from the file. "
            f"lit_tasks reads torch files "
            f"with torch.load(weights_only=True) only (tensors, numbers, strings, lists and dicts); nothing from the "
            f"file was run. Use a checkpoint written by lit_tasks, or convert the weights to .safetensors."
        ) from None


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any:
    """A checkpoint's content via `torch_load`; a CheckpointError naming the file when it is damaged
    or not a torch file (an UnsafeFileError when it asks for code)."""
    try:
        return torch_load(path, mmap=mmap)
    except UnsafeFileError:
        raise
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError for damaged files
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({exc})") from exc


def checkpoint_entry(path: str | os.PathLike) -> dict[str, Any] | None:
    """The "lit_tasks" entry of a checkpoint fit wrote (spec, preprocessor config, tokenizer files,
    label names...), None when the file holds none. The weights are mapped, not read: the data
    asks for this entry (tokenizer, preprocessor, vocabulary) beside the network's full read."""
    checkpoint = read_checkpoint(path, mmap=True)
    entry = checkpoint.get("lit_tasks") if isinstance(checkpoint, dict) else None
    return entry if isinstance(entry, dict) else None
