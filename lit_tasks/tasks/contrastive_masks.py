"""The masks and distractors of wav2vec2 contrastive pretraining, drawn per clip from seeds of
their own (so a resumed run and every eval epoch draw the same), and the feature encoder's
gradient scale."""

from __future__ import annotations

from typing import Any

import torch

from lit_tasks.zoo.wav2vec2 import span_mask
from lit_tasks.zoo.wav2vec2_pretraining import sample_negatives


def scale_gradient(module: torch.nn.Module, inputs: Any, output: torch.Tensor, scale: float) -> torch.Tensor:
    """A forward hook: the same output, its gradient multiplied by `scale` on the way back."""
    return output * scale + output.detach() * (1 - scale)


def draw_masks(frames: torch.Tensor, num_frames: int, seeds: list[int], mask_prob: float, mask_length: int,
               min_spans: int, num_negatives: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks and distractors of a batch, each row from a generator of its own seed.

    frames (B,) real frames per row (the rest is padding), num_frames T, seeds B ints ->
    mask (B, T) bool: spans of `mask_length` frames inside the row's real frames (`span_mask`,
    about mask_prob * frames / mask_length spans, at least `min_spans` when they fit);
    negatives (B, T, K) indices into the flattened (B * T) frames: K draws, with repetition,
    from the other masked frames of the same row (`sample_negatives`).
    A row depends only on its own length and seed, not on the batch around it.
    """
    masks, negatives = [], []
    for row, (length, seed) in enumerate(zip(frames.tolist(), seeds)):
        generator = torch.Generator().manual_seed(int(seed))
        mask = span_mask((1, num_frames), mask_prob, mask_length, min_spans, torch.tensor([length]), generator)
        masks.append(mask)  # (1, T)
        negatives.append(sample_negatives(mask, num_negatives, generator) + row * num_frames)  # (1, T, K)
    return torch.cat(masks), torch.cat(negatives)
