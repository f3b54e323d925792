"""Test-only faults for distributed runs, injected through the CLI as callbacks
(`--trainer.callbacks faults.StallAtStep --trainer.callbacks.step 2 ...`, tests/ on PYTHONPATH),
and `python -m faults loop ...`, many commands in one pair of DDP processes."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset


class _AtStep(Callback):
    """Does `act` when training step `step` (and the `times` - 1 steps after it) is about to start
    on global rank `rank` (None: every rank); each process writes its pid to `folder`/pid-<rank>
    at setup, so a test can check that every process of the run has ended."""

    def __init__(self, step: int, rank: int | None = None, folder: str | None = None, times: int = 1):
        self.step, self.rank, self.folder, self.times = step, rank, folder, times

    def setup(self, trainer, pl_module, stage) -> None:
        if self.folder:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            (Path(self.folder) / f"pid-{trainer.global_rank}").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.step <= trainer.global_step < self.step + self.times and self.rank in (None, trainer.global_rank):
            self.act(batch)

    def act(self, batch) -> None:
        raise NotImplementedError


class StallAtStep(_AtStep):
    """The rank stops responding, as a rank deadlocked in a fork: it sleeps forever."""

    def act(self, batch) -> None:
        while True:
            time.sleep(1)


class RaiseAtStep(_AtStep):
    """The rank raises, as on a bug or a failing disk."""

    def act(self, batch) -> None:
        raise RuntimeError(f"injected failure on rank {os.environ.get('LOCAL_RANK', '0')}")


class NanAtStep(_AtStep):
    """The batch's float inputs become NaN, so the rank's training loss is NaN."""

    def act(self, batch) -> None:
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                value.fill_(float("nan"))


class RecordLoaders(Callback):
    """Each rank appends to `folder`/loaders-<rank>.jsonl, once per fit and test, its pid and how
    the workers of its loaders are started."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def _record(self, trainer, *groups) -> None:
        loaders = [loader for group in groups if group is not None
                   for loader in (group if isinstance(group, (list, tuple)) else [group])]
        methods = [loader.multiprocessing_context.get_start_method() if loader.multiprocessing_context else "fork"
                   for loader in loaders if loader.num_workers > 0]
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"loaders-{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "stage": trainer.state.fn, "start_methods": methods}) + "\n")

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(trainer, trainer.train_dataloader, trainer.val_dataloaders)

    def on_test_start(self, trainer, pl_module) -> None:
        self._record(trainer, trainer.test_dataloaders)


# -- a lock held while a rank starts its DataLoader workers ---------------------------------------
LOADER_LOCK = threading.Lock()


class LockingDataset(Dataset):
    """Items 0..n-1, each read under LOADER_LOCK, as library code reads under its own locks
    (an allocator, a logging handler, a file cache)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        with LOADER_LOCK:
            return torch.tensor(int(index))


# -- many commands in one pair of DDP processes -------------------------------------------------
def loop(runs: str, repeats: int, *args: str) -> None:
    """`fit ARGS --run.dir RUNS/<i>` `repeats` times in this process (fit tests the best
    checkpoint after it); Lightning's launcher starts rank 1 the same way, running the same
    loop, and the process group is made anew for each command."""
    import warnings

    from lit_tasks.commands import main
    from lit_tasks.run_dir import ENV_VAR

    # sys.argv stays as it is: Lightning's launcher starts rank 1 with it
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    for i in range(repeats):
        os.environ.pop(ENV_VAR, None)  # rank 1 inherits the first command's folder from rank 0
        start = time.monotonic()
        main(["fit", *args, "--run.dir", f"{runs}/{i}"])
        print(f"command {i} done on rank {os.environ.get('LOCAL_RANK', '0')} in {time.monotonic() - start:.1f} s",
              flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "loop":
        loop(sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
