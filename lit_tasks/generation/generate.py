"""`generate`: prompts in, token ids out, for any `Decoder` (decoder.py); and `truncate_left`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.generation.config import GenerationConfig, shown
from lit_tasks.generation.decoder import Decoder, Stepper, as_decoder
from lit_tasks.generation.search import beam_search, sample
from lit_tasks.generation.stopping import Decodes, StopCriteria


@torch.no_grad()
def generate(model: nn.Module | Decoder, input_ids: Tensor, attention_mask: Tensor | None = None,
             config: GenerationConfig | None = None, *, tokenizer: Decodes | None = None, **options: Any) -> Tensor:
    """Continue each prompt of `input_ids` (B, P) and return the prompts with their continuations.

    model: a decoder-only LM with the decoder interface (the zoo's causal-LM heads, e.g.
        `zoo.from_pretrained(gpt2_folder)`), or any `Decoder`. Put it in eval mode first
        (dropout is not switched off here).
    attention_mask: (B, P), 1 = real token, 0 = padding. Prompts of different lengths must be
        left-padded (the last column real in every row); position ids are computed from the mask.
        None: every token is real.
    config: the decoding options (GenerationConfig); `options` override single fields of it,
        e.g. `generate(lm, ids, mask, max_new_tokens=5, num_beams=4)`.
    tokenizer: needed with `stop_strings` (anything with `decode(list[int]) -> str`).

    Returns a LongTensor (B * R, P + n) on input_ids' device, R = num_return_sequences: row
    b * R + r holds prompt b's r-th sequence (beam search: best first). Its first P columns are
    the prompt exactly as given (padding included); the next n are the new tokens, where n <=
    max_new_tokens is the number of steps taken (the longest returned continuation). A row that
    finished earlier (on an eos id, which it keeps, or a stop string, which it keeps too) is filled
    up with pad_token_id (default: the first eos id). This is what HF's generate returns for
    decoder-only models; the new tokens alone are `out[:, P:]`.

    Raises DataError for a malformed prompt (an empty one, a row without a real token, right
    padding) and ConfigError for a bad option or a prompt that does not fit the model's
    `context_length` with max_new_tokens (see `truncate_left`).
    """
    config = config or GenerationConfig()
    if options:
        config = config.replace("generate()", **options)
    decoder = as_decoder(model)
    mask = _check_prompt(input_ids, attention_mask)
    B, P = input_ids.shape
    limit = decoder.context_length
    if limit is not None and P + config.max_new_tokens > limit:
        raise ConfigError(
            f"generate: the prompt has {P} columns (padding included) and max_new_tokens={config.max_new_tokens}; "
            f"{P} + {config.max_new_tokens} = {P + config.max_new_tokens} exceeds the model's context length of "
            f"{limit} positions. Lower max_new_tokens or shorten the prompt "
            f"(lit_tasks.generation.truncate_left(input_ids, attention_mask, {max(limit - config.max_new_tokens, 0)}))")
    if config.stops and tokenizer is None:
        raise ConfigError(f"generate: stop_strings={shown(config.stop_strings)!r} need a tokenizer to decode the new "
                          "tokens; pass tokenizer=")

    copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    rows = torch.arange(B, device=input_ids.device).repeat_interleave(copies)  # (N,) prompt of each row
    if copies > 1:
        decoder = decoder.expand(rows)
    N, total = B * copies, P + config.max_new_tokens
    fill = config.fill_id if config.fill_id is not None else 0  # without eos or stop strings nothing is filled
    tokens = torch.full((N, total), fill, dtype=torch.long, device=input_ids.device)
    tokens[:, :P] = input_ids[rows]
    counted = torch.ones(N, total, dtype=torch.bool, device=input_ids.device)  # real tokens, for the repetition rules
    counted[:, :P] = mask[rows].bool()
    step = Stepper(decoder, mask[rows], total, config.use_cache)
    stop = StopCriteria(config, P, total, tokenizer)
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(config.seed)
    search = beam_search if config.num_beams > 1 else sample
    return search(step, tokens, counted, P, config, stop, generator)


def _check_prompt(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """The attention mask (B, P) long, after checking the prompt's shape and padding."""
    if input_ids.ndim != 2 or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise DataError(f"generate: input_ids must be a (batch, length) tensor of token ids, got "
                        f"shape {tuple(input_ids.shape)} and dtype {input_ids.dtype}")
    B, P = input_ids.shape
    if B == 0 or P == 0:
        raise DataError(f"generate: the prompt is empty (input_ids has shape {tuple(input_ids.shape)}); "
                        "every row needs at least one token")
    if attention_mask is None:
        return torch.ones(B, P, dtype=torch.long, device=input_ids.device)
    if tuple(attention_mask.shape) != (B, P):
        raise DataError(f"generate: attention_mask has shape {tuple(attention_mask.shape)}; input_ids has {(B, P)}")
    mask = attention_mask.to(device=input_ids.device, dtype=torch.long)
    if ((mask != 0) & (mask != 1)).any():
        raise DataError("generate: attention_mask must hold only 0 (padding) and 1 (real token)")
    empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise DataError(f"generate: prompt row(s) {empty} have no real token (attention_mask all 0)")
    right = (mask[:, -1] == 0).nonzero().flatten().tolist()
    if right:
        raise DataError(f"generate: prompt row(s) {right} end with padding; generate continues after the last "
                        "column, so pad prompts on the left (tokenizer padding side 'left')")
    return mask


def truncate_left(input_ids: Tensor, attention_mask: Tensor | None, limit: int) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded prompts cut to at most `limit` columns by dropping their oldest tokens.

    Returns (input_ids, attention_mask, n_truncated): the last `limit` columns (fewer when the
    leading columns are padding in every row: those are dropped too), their mask, and (B,) how many
    real tokens each row lost. For `generate`, limit = context_length - max_new_tokens."""
    if limit < 1:
        raise ConfigError(f"truncate_left: limit={limit}; expected at least 1 column to keep")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
    kept_ids, kept_mask = input_ids[:, -limit:], mask[:, -limit:]
    n_truncated = mask.sum(1) - kept_mask.sum(1)
    first_real = int(kept_mask.any(0).long().argmax()) if kept_mask.any() else 0
    return kept_ids[:, first_real:], kept_mask[:, first_real:], n_truncated
