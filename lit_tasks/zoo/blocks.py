"""The repeated blocks of the zoo's families, and what scaling does with them.

`BLOCKS` is the one list of the block classes: every registered family's `BLOCKS` (a ViT / BERT
encoder block, a Wav2Vec2 encoder layer, a ConvNeXt block). Three speed/memory options act on
exactly these modules:

- :func:`checkpoint_blocks`: activation checkpointing. Each block keeps only its input in the
  forward pass and recomputes its inside during backward (``torch.utils.checkpoint``,
  non-reentrant, RNG state preserved so dropout masks are the same): activation memory drops
  from O(layers x block internals) to O(layers x block input), for about one more forward of
  compute. Gradients are unchanged.
- :func:`compile_blocks`: ``torch.compile`` of each block in place (``nn.Module.compile``;
  state_dict keys unchanged, so checkpoints stay interchangeable). Blocks of a family share
  one compiled graph, so compiling takes seconds, not minutes, and the task's head, loss and
  metrics stay eager.
- :func:`fsdp_wrap_policy`: the auto-wrap policy for FSDP, one shard unit per block.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lit_tasks.zoo.registry import REGISTRY

BLOCKS: tuple[type[nn.Module], ...] = tuple(block for family in REGISTRY.values() for block in family.BLOCKS)


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The zoo blocks inside `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, BLOCKS)]


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap each block's forward in activation checkpointing (in training, when gradients are
    on; eval and no-grad calls run the block plainly). Idempotent. Returns the number of blocks."""
    blocks = blocks_of(model)
    for block in blocks:
        if getattr(block, "_checkpointed", False):
            continue
        plain = block.forward

        @functools.wraps(plain)
        def forward(*args, _plain=plain, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, **kwargs)
            return _plain(*args, **kwargs)

        block.forward = forward
        block._checkpointed = True
    return len(blocks)


def compile_blocks(model: nn.Module, **compile_kwargs) -> int:
    """``torch.compile`` each block in place (keyword arguments go to torch.compile, e.g.
    ``mode="max-autotune"``). Returns the number of blocks."""
    blocks = blocks_of(model)
    for block in blocks:
        block.compile(**compile_kwargs)
    return len(blocks)


def fsdp_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy (the callable form torch's ``_recursive_wrap`` calls): descend
    everywhere, make each zoo block its own FSDP unit (the root module wraps the rest)."""
    return recurse or isinstance(module, BLOCKS)
