"""Prompts in, continuations out: what the causal-LM task's samples and predictions and
`python -m lit_tasks generate` share around `lit_tasks.generation.generate`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lit_tasks.data.causal_lm import CausalCollate
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.generation import GenerationConfig, generate, truncate_left
from lit_tasks.text.tokenizer import Tokenizer


@dataclass
class Continuations:
    """texts[i]: the continuations of prompt i (num_return_sequences of them); truncated: how
    many prompts lost tokens on their left to fit the context."""

    texts: list[list[str]]
    truncated: int


def encode_prompts(tokenizer: Tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (input_ids, attention_mask) (B, T), left-padded with the pad id as the data's
    predict batches are; an empty prompt (no token) is a DataError naming it."""
    encodings = tokenizer.encode_raw(list(prompts), truncation=False, add_special_tokens=False)
    empty = [i for i, e in enumerate(encodings) if not e.ids]
    if empty:
        raise DataError(f"prompt {empty[0]} ({prompts[empty[0]]!r}) has no tokens; every prompt needs some text")
    batch = CausalCollate(tokenizer.pad, left=True)([{"input_ids": np.asarray(e.ids), "id": str(i)}
                                                    for i, e in enumerate(encodings)])
    return batch["input_ids"], batch["attention_mask"]


def fit_context(input_ids: torch.Tensor, attention_mask: torch.Tensor, room: int, truncate: bool,
                names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts cut to their last `room` tokens when `truncate` (returns how many were
    cut), else a ConfigError naming the first prompt (by `names`) that is longer."""
    lengths = attention_mask.sum(1)
    long = (lengths > room).nonzero().flatten().tolist()
    if long and not truncate:
        first = long[0]
        raise ConfigError(f"prompt {names[first]} has {int(lengths[first])} tokens, but only {room} fit before the "
                          "new tokens in the model's context; shorten it, lower max_new_tokens, or let the prompt "
                          "lose its beginning (truncate_prompts)")
    if input_ids.shape[1] > room:
        input_ids, attention_mask, _ = truncate_left(input_ids, attention_mask, room)
    return input_ids, attention_mask, len(long)


@torch.inference_mode()
def continue_prompts(net: nn.Module, tokenizer: Tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     config: GenerationConfig, truncate: bool = False, names: Sequence[str] | None = None,
                     ) -> Continuations:
    """Generate with `net` (a zoo causal-LM model) from left-padded prompts and decode the new
    tokens. Prompts longer than the context leaves room for (`net.context_length` minus
    `max_new_tokens`) are cut on the left with `truncate`, else an error names them (`names`)."""
    names = names or [str(i) for i in range(len(input_ids))]
    room = net.context_length - config.max_new_tokens
    if room < 1:
        raise ConfigError(f"max_new_tokens is {config.max_new_tokens}, but the model's context holds "
                          f"{net.context_length} tokens, the prompt included; lower max_new_tokens")
    input_ids, attention_mask, truncated = fit_context(input_ids, attention_mask, room, truncate, names)
    was_training = net.training
    net.eval()
    try:
        out = generate(net, input_ids, attention_mask, config, tokenizer=tokenizer)
    finally:
        net.train(was_training)
    new = out[:, input_ids.shape[1]:].tolist()
    per_prompt = config.num_return_sequences
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in new]
    return Continuations([texts[i * per_prompt:(i + 1) * per_prompt] for i in range(len(input_ids))], truncated)
