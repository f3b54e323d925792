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

import os
from collections.abc import Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``rank`` of ``num_replicas`` gets indices ``rank::num_replicas``, in order, no padding."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        # Replace the padded sizes computed by the parent.
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def distributed_eval_sampler(dataset: Sized, trainer=None) -> UnpaddedDistributedSampler | None:
    """The unpadded sampler when running with more than one data-parallel process, else None.

    The world size and rank come from the trainer's strategy when a trainer is attached (this
    is what Lightning itself would use), otherwise from an initialised ``torch.distributed``.
    """
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if kwargs is None and dist.is_available() and dist.is_initialized():
        kwargs = {"num_replicas": dist.get_world_size(), "rank": dist.get_rank()}
    if not kwargs or kwargs.get("num_replicas", 1) <= 1:
        return None
    return UnpaddedDistributedSampler(dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"])


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

    def __iter__(self) -> Iterator[SeededIndex]:
        n = len(self.dataset)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()  # by dataset index
        order = order.tolist()
        order += order[: self.total_size - n]  # pad: every rank gets num_samples
        mine = order[self.rank: self.total_size: self.num_replicas]
        start, self.start = self.start, 0
        return iter([SeededIndex(i, seeds[i]) for i in mine[start:]])


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


def training_sampler(dataset: Sized, trainer: Any = None, shuffle: bool = True) -> ResumableSampler:
    """A :class:`ResumableSampler` for this process's rank (from the trainer's strategy)."""
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    kwargs = kwargs or {"num_replicas": 1, "rank": 0}
    return ResumableSampler(dataset, seed=run_seed(), shuffle=shuffle,
                            num_replicas=kwargs["num_replicas"], rank=kwargs["rank"])
