"""What `generate` drives: a `Decoder`, one call per step over a KV cache.

A decoder-only LM (the zoo's causal-LM heads) already has the call; `as_decoder` wraps it in
`CausalLM`. An encoder-decoder (the zoo's seq2seq_lm heads: `encode` and `decode`, see
`EncoderDecoder`) plugs in with its encoder output bound: the call runs the decoder over that
output (cross-attention keys and values go to the cache at the first step) and `expand`
repeats the encoder output's rows, as generate repeats the prompts per beam or per returned
sequence. Beam search reorders the cache with `KVCache.reorder`, self- and cross-attention
entries alike.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lit_tasks.zoo.layers import KVCache


@runtime_checkable
class Decoder(Protocol):
    """One decoding step.

    `__call__(input_ids (N, T), attention_mask (N, P+T) long, 1 = real token, over the P cached
    positions and the T new ones, or None when every position is real, position_ids (N, T),
    cache: KVCache | None) -> logits (N, T', V)` of the last T' >= 1 of the T new positions
    (generate reads the last one only). With `cache` None the call sees the whole sequence (P = 0). `context_length`: the most
    positions the model takes (None: no limit). `expand(index)`: the decoder for the rows `index`
    (N,) of the batch it was built for (itself when it holds no per-row state).
    """

    context_length: int | None

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor,
                 cache: KVCache | None) -> Tensor: ...

    def expand(self, index: Tensor) -> Decoder: ...


class CausalLM:
    """A decoder-only LM as a `Decoder`: `model(input_ids, attention_mask, position_ids, cache=cache)`
    returns logits (N, T, V); `model.context_length` (if any) bounds the positions. A model whose
    forward takes `logits_to_keep` (the zoo's GPT-2) scores the last position only."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.context_length: int | None = getattr(model, "context_length", None)
        takes = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.options = {"logits_to_keep": 1} if takes else {}

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor,
                 cache: KVCache | None) -> Tensor:
        return self.model(input_ids, attention_mask, position_ids, cache=cache, **self.options)

    def expand(self, index: Tensor) -> CausalLM:
        return self


def is_encoder_decoder(model: object) -> bool:
    """Whether `model` offers the zoo's encoder-decoder contract: `encode` and `decode` methods."""
    return callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))


class EncoderDecoder:
    """An encoder-decoder's decoder over one batch's encoder output: a Decoder.

    `model.encode(input_ids (B, S), attention_mask (B, S) | None) -> memory (B, S, D)` ran once
    (`EncoderDecoder.encode`); each call is `model.decode(input_ids (N, T), memory (N, S, D),
    memory_mask (N, S) | None, attention_mask, position_ids, cache) -> logits (N, T, V)`, whose
    cross-attention layers compute their keys and values from the memory at the first cached call
    and reuse them. `expand(index)` repeats memory rows (and mask rows); nothing is re-encoded."""

    def __init__(self, model: nn.Module, memory: Tensor, memory_mask: Tensor | None) -> None:
        self.model, self.memory, self.memory_mask = model, memory, memory_mask
        self.context_length: int | None = getattr(model, "context_length", None)

    @classmethod
    def encode(cls, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None) -> EncoderDecoder:
        """Run the encoder over the sources `input_ids` (B, S) (`attention_mask` (B, S) long, 1 = real)."""
        return cls(model, model.encode(input_ids, attention_mask), attention_mask)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor,
                 cache: KVCache | None) -> Tensor:
        return self.model.decode(input_ids, self.memory, self.memory_mask, attention_mask, position_ids, cache)

    def expand(self, index: Tensor) -> EncoderDecoder:
        mask = None if self.memory_mask is None else self.memory_mask[index]
        return EncoderDecoder(self.model, self.memory[index], mask)  # (N, S, D), (N, S)


def as_decoder(model: nn.Module | Decoder) -> Decoder:
    """`model` itself when it is a Decoder (has `expand`), else `CausalLM(model)`."""
    return model if isinstance(model, Decoder) else CausalLM(model)


class Stepper:
    """Feeds a decoder a growing batch of sequences, one step at a time.

    `mask` (N, P) is the prompt's attention mask; every new position is real. Position ids come
    from the mask: the count of real tokens before a position (left padding: each row's first
    real token gets position 0, as HF's generate computes them). With a cache the first step
    feeds the whole prompt and each later step only the new tokens; without one every step
    feeds everything again."""

    def __init__(self, decoder: Decoder, mask: Tensor, total: int, use_cache: bool) -> None:
        N, P = mask.shape
        self.decoder = decoder
        full = torch.ones(N, total, dtype=torch.long, device=mask.device)  # (N, P + max_new_tokens)
        full[:, :P] = mask
        self.positions = (full.cumsum(-1) - 1).clamp(min=0)  # (N, P + max_new_tokens)
        self.mask = None if bool(mask.all()) else full  # no padding: no mask (the model can skip building one)
        self.cache = KVCache() if use_cache else None
        self.fed = 0  # positions the cache holds

    def logits(self, tokens: Tensor) -> Tensor:
        """The next-token logits (N, V), float32, after the sequences `tokens` (N, t)."""
        t = tokens.shape[1]
        start = self.fed if self.cache is not None else 0
        mask = None if self.mask is None else self.mask[:, :t]
        out = self.decoder(tokens[:, start:], mask, self.positions[:, start:t], self.cache)  # (N, t-start, V)
        self.fed = t
        return out[:, -1].float()

    def reorder(self, index: Tensor) -> None:
        """Keep the rows `index` (N,) of the cache (beam search's surviving hypotheses)."""
        if self.cache is not None:
            self.cache.reorder(index)
