"""Samplers for distributed evaluation.

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

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


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
