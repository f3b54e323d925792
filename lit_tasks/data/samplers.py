"""Samplers: unpadded for distributed evaluation; seeded and resumable for training.

torch's ``DistributedSampler`` pads the index list so that every rank gets the same number of
samples: with 10 samples on 4 ranks, two samples are seen twice, and validation accuracy under
DDP differs from the single-process number. :class:`UnpaddedDistributedSampler` gives rank ``r``
exactly the indices ``r, r + W, r + 2W, ...`` (``W`` = world size): every sample is seen once,
ranks may differ by one sample.

Lightning (2.6, ``_DataConnector._requires_distributed_sampler``) only injects its own sampler
when the loader's sampler is *not* a ``DistributedSampler``; subclassing it is what keeps ours in
place. Ranks may therefore run a different number of eval batches: metrics must be reduced at
epoch end (torchmetrics objects, or ``self.log(..., on_epoch=True, sync_dist=True)``), never by a
collective inside ``validation_step``.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import sys
import threading
import time
from collections.abc import Iterator, Sequence, Sized
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from lit_tasks.errors import DataError


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``rank`` of ``num_replicas`` gets entries ``rank::num_replicas`` of ``order`` (default
    0..N-1, e.g. indices sorted by length for less padding), in order, no padding."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 order: Sequence[int] | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.order = list(order) if order is not None else list(range(len(dataset)))
        if sorted(self.order) != list(range(len(dataset))):
            raise ValueError("order must hold every dataset index exactly once")
        # Replace the padded sizes computed by the parent.
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def distributed_eval_sampler(dataset: Sized, trainer=None,
                             order: Sequence[int] | None = None) -> UnpaddedDistributedSampler | None:
    """The unpadded sampler of this process's rank, or None (plain order) in a single process
    unless an `order` of the indices is asked for.

    The world size and rank come from the trainer's strategy when a trainer is attached (this
    is what Lightning itself would use), otherwise from an initialised ``torch.distributed``.
    """
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if kwargs is None and dist.is_available() and dist.is_initialized():
        kwargs = {"num_replicas": dist.get_world_size(), "rank": dist.get_rank()}
    kwargs = kwargs or {"num_replicas": 1, "rank": 0}
    if kwargs.get("num_replicas", 1) <= 1 and order is None:
        return None
    return UnpaddedDistributedSampler(dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"], order=order)


# -- training: an order that is a pure function of (seed, epoch), resumable mid-epoch -----------


class SeededIndex(int):
    """A dataset index that carries the seed of this sample's augmentation in this epoch.

    It is an ``int``, so any map-style dataset can use it as an index; a dataset that augments
    draws from :func:`sample_generator` instead of the process-global RNG, so a sample's
    augmentation depends on (run seed, epoch, index) only, never on which DataLoader worker
    loads it or on what that worker loaded before (which changes when a run resumes mid-epoch).
    """

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        self = super().__new__(cls, index)
        self.seed = seed
        return self

    def __reduce__(self):  # sent to DataLoader workers through pickle
        return SeededIndex, (int(self), self.seed)


def sample_generator(index: int) -> torch.Generator | None:
    """The generator a dataset's augmentation should draw from for `index`: seeded from a
    :class:`SeededIndex`, or None (torch's global RNG) for a plain int (e.g. ``dataset[3]``)."""
    seed = getattr(index, "seed", None)
    return None if seed is None else torch.Generator().manual_seed(seed)


class ResumableSampler(DistributedSampler):
    """Training order and per-sample augmentation seeds, both fixed by (seed, epoch).

    The epoch's permutation (or 0..N-1 when ``shuffle`` is False) comes from a generator seeded
    with ``seed`` and ``epoch``, so it is the same on every rank and in a resumed process. Like
    torch's ``DistributedSampler``, the list is padded to a multiple of ``num_replicas`` (training
    ranks must run the same number of steps) and rank ``r`` takes every ``num_replicas``-th
    entry from ``r``. Indices are yielded as :class:`SeededIndex`.

    ``start``: the number of this rank's samples to skip in the next iteration only (set by
    :class:`ResumableLoader` when a run resumes mid-epoch). Being a ``DistributedSampler``
    subclass keeps Lightning from replacing it under DDP.
    """

    def __init__(self, dataset: Sized, seed: int = 0, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def _order(self, generator: torch.Generator) -> list[int]:
        """This epoch's order of all dataset indices (before sharding over ranks)."""
        n = len(self.dataset)
        return (torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)).tolist()

    def __iter__(self) -> Iterator[SeededIndex]:
        n = len(self.dataset)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self._order(generator)
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()  # by dataset index
        order += order[: self.total_size - n]  # pad: every rank gets num_samples
        mine = order[self.rank: self.total_size: self.num_replicas]
        start, self.start = self.start, 0
        return iter([SeededIndex(i, seeds[i]) for i in mine[start:]])


class LengthGroupedSampler(ResumableSampler):
    """A :class:`ResumableSampler` whose batches hold rows of similar length (less padding).

    The shuffled indices are cut into mega-batches of ``mega`` global batches (``batch_size``
    rows on each of the ``num_replicas`` ranks), each sorted by length, longest first, and cut
    into global batches, which are shuffled. Sharding then gives every rank rows of similar
    length in each step. Like its parent, the order depends on (seed, epoch) only.
    """

    def __init__(self, lengths: Sized, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 mega: int = 50) -> None:
        super().__init__(lengths, seed=seed, shuffle=True, num_replicas=num_replicas, rank=rank)
        self.lengths, self.batch_size, self.mega = np.asarray(lengths), batch_size, mega

    def _order(self, generator: torch.Generator) -> list[int]:
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        step = self.batch_size * self.num_replicas
        batches = []
        for start in range(0, len(order), step * self.mega):
            chunk = order[start: start + step * self.mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i: i + step] for i in range(0, len(chunk), step)]
        return [int(i) for b in torch.randperm(len(batches), generator=generator).tolist() for i in batches[b]]


class ResumableLoader(DataLoader):
    """A training DataLoader whose position inside the epoch is saved in checkpoints.

    Lightning (2.x ``FitLoop.on_save_checkpoint``) stores ``state_dict()`` of every training
    loader that has ``state_dict``/``load_state_dict`` in the checkpoint's fit-loop state, and
    on a mid-epoch resume calls ``load_state_dict`` before iterating; it keeps ``len(loader)``
    as the full epoch and counts the batches already done itself. The state is the sampler's
    seed and epoch and the number of batches handed out in that epoch: since Lightning does not
    prefetch from loaders with a length, that is the number of batches trained on. Worker
    processes need no state: a sample's augmentation is seeded by its :class:`SeededIndex`.

    Needs ``sampler`` to be a :class:`ResumableSampler` (and no ``batch_sampler``).
    """

    def __init__(self, dataset: Sized, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._batches = 0  # batches handed out in the current epoch
        self._resume: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    def __iter__(self) -> Iterator[Any]:
        # A generator: the sampler is read at the first batch, after Lightning's set_epoch.
        epoch, done = self._resume or (-1, 0)
        self._resume = None
        skip = done if epoch == self.sampler.epoch else 0  # a checkpoint at an epoch end: new epoch
        self.sampler.start = skip * self.batch_size
        self._batches = skip
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.sampler.seed, "epoch": self.sampler.epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.seed = state["seed"]
        self.sampler.set_epoch(state["epoch"])
        self._resume = (state["epoch"], state["batches"])


def run_seed() -> int:
    """The run's seed: what ``seed_everything`` (the CLI's ``seed_everything`` key) exported in
    PL_GLOBAL_SEED, inherited by DDP ranks; 0 without one."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def training_sampler(dataset: Sized, trainer: Any = None, shuffle: bool = True,
                     lengths: Sized | None = None, batch_size: int = 1) -> ResumableSampler:
    """A :class:`ResumableSampler` for this process's rank (from the trainer's strategy);
    a :class:`LengthGroupedSampler` of `batch_size` batches when the rows' `lengths` are given."""
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    kwargs = kwargs or {"num_replicas": 1, "rank": 0}
    shard = {"seed": run_seed(), "num_replicas": kwargs["num_replicas"], "rank": kwargs["rank"]}
    if lengths is not None:
        return LengthGroupedSampler(lengths, batch_size, **shard)
    return ResumableSampler(dataset, shuffle=shuffle, **shard)


class EndWithRank:
    """``worker_init_fn`` of fork-server workers: the worker exits as soon as the rank process
    that uses it has ended. Torch's own check in workers watches their parent process, which
    here is the fork server; and the fork server lives as long as its workers do, so without
    this the workers of a killed rank would wait forever (holding its output pipes open)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self, worker_id: int) -> None:
        threading.Thread(target=self._watch, name="end-with-rank", daemon=True).start()

    def _watch(self) -> None:
        try:
            select.select([os.pidfd_open(self.pid)], [], [])  # readable once the process has ended
        except (AttributeError, OSError):  # no pidfd (old kernel or Python), or it has already ended
            while _alive(self.pid):
                time.sleep(1.0)
        os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def worker_context(dataset: Any, collate_fn: Any, num_workers: int, trainer: Any = None) -> Any:
    """How DataLoader workers are started: None (fork, Linux's default) in a single process;
    a ``forkserver`` context when this process is one rank of several.

    A rank runs threads (gloo/NCCL, the launcher's observer, loggers); forking it while one of
    them holds a lock leaves the child with that lock held forever, and the rank then hangs
    starting the worker while the other ranks wait in a collective. The fork server is a
    separate single-threaded process that forks the workers instead; it preloads torch, the
    modules of the dataset and collate and the main module (the first worker waits for that once
    per rank), so each worker starts as cheaply as a fork. The dataset and collate are pickled to
    the workers, once per loader (workers are persistent); :class:`EndWithRank` ends them with
    their rank.
    """
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if kwargs is None and dist.is_available() and dist.is_initialized():
        kwargs = {"num_replicas": dist.get_world_size()}
    if num_workers == 0 or (kwargs or {}).get("num_replicas", 1) <= 1:
        return None
    context = multiprocessing.get_context("forkserver")
    preload = {"__main__", "torch", type(dataset).__module__, getattr(collate_fn, "__module__", None)}
    main_module = getattr(sys.modules["__main__"], "__spec__", None)
    if main_module is not None and not main_module.name.endswith("__main__"):
        # `python -m tool`: the server only preloads a main module given by path, and each worker
        # then runs `tool` afresh; importing it in the server once makes that rerun cheap
        preload.add(main_module.name)
    context.set_forkserver_preload(sorted(name for name in preload if name))  # read when the server starts
    return context


MAX_AUTO_WORKERS = 8


def loader_workers(num_workers: int | Literal["auto"], trainer: Any = None) -> int:
    """The DataLoader worker count for a DataModule's `num_workers`.

    "auto" is 0 when the model runs on the CPU (or no trainer is attached): batches are then
    prepared in the main process between steps, because worker processes would run on the very
    cores torch's threads compute on and slow every step by more than they save (the ViT recipe
    on 2 cores: 0.80 of a plain loop's speed with 2 workers, 0.93 with none; benchmarks/overhead.py).
    On an accelerator it is one worker per CPU core of this process's share of the node (cores /
    devices), less one for the process itself, between 1 and MAX_AUTO_WORKERS.
    """
    if num_workers != "auto":
        if not isinstance(num_workers, int) or num_workers < 0:
            raise DataError(f"num_workers is {num_workers!r}; expected a count >= 0 or 'auto'")
        return num_workers
    strategy = getattr(trainer, "strategy", None) if trainer is not None else None
    if strategy is None or strategy.root_device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // max(1, trainer.num_devices) - 1))


def split_loader(dataset: Sized, train: bool, batch_size: int, collate_fn: Any,
                 num_workers: int | Literal["auto"] = 0,
                 trainer: Any = None, lengths: Sized | None = None,
                 eval_sampler: Sampler | None = None) -> DataLoader:
    """The loader of one split, the same for every DataModule.

    Training: a :class:`ResumableLoader` (its position inside the epoch is checkpointed) over
    :func:`training_sampler`, length-grouped when `lengths` are given. Evaluation: a plain
    loader over `eval_sampler`, by default the unpadded distributed one (None: one process).
    Worker seeds come from a generator of their own, so loading leaves the model's RNG alone.
    Workers (:func:`loader_workers`) are persistent, and started by :func:`worker_context` (a
    fork server under DDP).
    """
    num_workers = loader_workers(num_workers, trainer)
    if train:
        loader, sampler = ResumableLoader, training_sampler(dataset, trainer, lengths=lengths, batch_size=batch_size)
    else:
        sampler = eval_sampler if eval_sampler is not None else distributed_eval_sampler(dataset, trainer)
        loader = DataLoader
    context = worker_context(dataset, collate_fn, num_workers, trainer)
    return loader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                  generator=torch.Generator().manual_seed(run_seed()), num_workers=num_workers,
                  persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
                  multiprocessing_context=context, worker_init_fn=EndWithRank(os.getpid()) if context else None)
