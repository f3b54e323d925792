"""When a sequence is finished: an eos id, the length limit, or a stop string in its text."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from lit_tasks.generation.config import GenerationConfig


class Decodes(Protocol):
    """What stop strings need of a tokenizer (ours, lit_tasks.text.Tokenizer, and HF's both fit)."""

    def decode(self, ids: list[int]) -> str: ...


class StopCriteria:
    """`stop(tokens (N, t)) -> (N,) bool`: which sequences are finished by their last token.

    A sequence is finished when its last token is one of the eos ids, when it reaches
    `total` tokens (prompt + max_new_tokens), or when the decoded new tokens (everything after
    the `prompt_len` prompt columns) contain one of the stop strings. The stop string stays in
    the output: the sequence ends with the token that completed it (and whatever else that token
    decodes to). Each check decodes the whole continuation, so stop strings cost one decode per
    row and step."""

    def __init__(self, config: GenerationConfig, prompt_len: int, total: int, tokenizer: Decodes | None) -> None:
        self.eos = torch.tensor(config.eos_ids, dtype=torch.long)
        self.strings = config.stops
        self.prompt_len, self.total, self.tokenizer = prompt_len, total, tokenizer

    def __call__(self, tokens: Tensor, rows: Tensor | None = None) -> Tensor:
        """`rows` (N,) bool: decode only those for stop strings (the unfinished ones)."""
        N, t = tokens.shape
        if t >= self.total:
            return torch.ones(N, dtype=torch.bool, device=tokens.device)
        done = torch.isin(tokens[:, -1], self.eos.to(tokens.device))
        if self.strings:
            check = (~done if rows is None else rows & ~done).nonzero().flatten()
            for i, new in zip(check.tolist(), tokens[check, self.prompt_len:].tolist()):
                text = self.tokenizer.decode(new)
                if any(s in text for s in self.strings):
                    done[i] = True
        return done
