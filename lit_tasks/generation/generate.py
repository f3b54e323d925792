"""`generate`: prompts (or an encoder-decoder's sources) in, token ids out, for any `Decoder`
(decoder.py); and `truncate_left`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.generation.config import GenerationConfig, shown
from lit_tasks.generation.decoder import Decoder, EncoderDecoder, Stepper, as_decoder, is_encoder_decoder
from lit_tasks.generation.search import beam_search, sample
from lit_tasks.generation.stopping import Decodes, StopCriteria


@torch.no_grad()
def generate(model: nn.Module | Decoder, input_ids: Tensor, attention_mask: Tensor | None = None,
             config: GenerationConfig | None = None, *, decoder_input_ids: Tensor | None = None,
             tokenizer: Decodes | None = None, **options: Any) -> Tensor:
    """Continue each prompt of `input_ids` (B, P) and return the prompts with their continuations;
    for an encoder-decoder, translate each source of `input_ids` (B, S) into a decoder sequence.

    model: a decoder-only LM with the decoder interface (the zoo's causal-LM heads, e.g.
        `zoo.from_pretrained(gpt2_folder)`), any `Decoder`, or an encoder-decoder with `encode`
        and `decode` (the zoo's seq2seq_lm heads: T5, BART, mBART; see `EncoderDecoder`). Put it
        in eval mode first (dropout is not switched off here).
    attention_mask: (B, P), 1 = real token, 0 = padding. Prompts of different lengths must be
        left-padded (the last column real in every row); position ids are computed from the mask.
        Sources of an encoder-decoder may be padded on either side. None: every token is real.
    config: the decoding options (GenerationConfig); `options` override single fields of it,
        e.g. `generate(lm, ids, mask, max_new_tokens=5, num_beams=4)`.
    decoder_input_ids: encoder-decoders only, (B, T) the decoder prompt that generation continues,
        every row starting with decoder_start_token_id, no padding (default: that token alone).
        An argument, not an option: it is per-batch data.
    tokenizer: needed with `stop_strings` (anything with `decode(list[int]) -> str`).

    Returns a LongTensor (B * R, P + n) on input_ids' device, R = num_return_sequences: row
    b * R + r holds prompt b's r-th sequence (beam search: best first). Its first P columns are
    the prompt exactly as given (padding included); the next n are the new tokens, where n <=
    max_new_tokens is the number of steps taken (the longest returned continuation). A row that
    finished earlier (on an eos id, which it keeps, or a stop string, which it keeps too) is filled
    up with pad_token_id (default: the first eos id). This is what HF's generate returns for
    decoder-only models; the new tokens alone are `out[:, P:]`. For an encoder-decoder the
    prompt is the decoder's (the start token, or decoder_input_ids: P = T), as HF returns.
    One deliberate difference: HF's beam search fills with `pad_token_id or eos`, so with pad id
    0 (T5) its finished beams are filled with eos; ours fill with pad_token_id always. And HF
    prepends the start token to decoder_input_ids when no row starts with it; we refuse them.

    The encoder runs once; its output (and the cross-attention keys and values in the cache) is
    shared by all steps and repeated per beam or returned sequence.

    Raises DataError for a malformed prompt or source (an empty one, a row without a real token,
    right padding of a prompt) and ConfigError for a bad option, an option the model cannot take
    (decoder_start_token_id for a decoder-only model; none for an encoder-decoder), or a prompt
    that does not fit the model's `context_length` with max_new_tokens (see `truncate_left`).
    """
    config = config or GenerationConfig()
    if options:
        config = config.replace("generate()", **options)
    if not isinstance(model, Decoder) and is_encoder_decoder(model):
        decoder, prompt = _encode(model, input_ids, attention_mask, config, decoder_input_ids)
        mask = torch.ones_like(prompt)
    else:
        _check_decoder_only(config, decoder_input_ids)
        decoder, prompt = as_decoder(model), input_ids
        mask = _check_prompt(input_ids, attention_mask)
        limit = decoder.context_length
        _check_context(limit, prompt.shape[1], config, "prompt",
                       "or shorten the prompt (lit_tasks.generation.truncate_left(input_ids, attention_mask, "
                       f"{max((limit or 0) - config.max_new_tokens, 0)}))")
    if config.stops and tokenizer is None:
        raise ConfigError(f"generate: stop_strings={shown(config.stop_strings)!r} need a tokenizer to decode the new "
                          "tokens; pass tokenizer=")

    B, P = prompt.shape
    device = prompt.device
    copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    rows = torch.arange(B, device=device).repeat_interleave(copies)  # (N,) prompt of each row
    if copies > 1:
        decoder = decoder.expand(rows)
    N, total = B * copies, P + config.max_new_tokens
    fill = config.fill_id if config.fill_id is not None else 0  # without eos or stop strings nothing is filled
    tokens = torch.full((N, total), fill, dtype=torch.long, device=device)
    tokens[:, :P] = prompt[rows]
    counted = torch.ones(N, total, dtype=torch.bool, device=device)  # real tokens, for the repetition rules
    counted[:, :P] = mask[rows].bool()
    step = Stepper(decoder, mask[rows], total, config.use_cache)
    stop = StopCriteria(config, P, total, tokenizer)
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    search = beam_search if config.num_beams > 1 else sample
    return search(step, tokens, counted, P, config, stop, generator)


def _check_context(limit: int | None, P: int, config: GenerationConfig, what: str, remedy: str) -> None:
    """A ConfigError when `P` prompt columns and max_new_tokens exceed the model's `limit` positions."""
    if limit is not None and P + config.max_new_tokens > limit:
        raise ConfigError(
            f"generate: the {what} has {P} columns (padding included) and max_new_tokens={config.max_new_tokens}; "
            f"{P} + {config.max_new_tokens} = {P + config.max_new_tokens} exceeds the model's context length of "
            f"{limit} positions. Lower max_new_tokens {remedy}".rstrip())


def _check_decoder_only(config: GenerationConfig, decoder_input_ids: Tensor | None) -> None:
    """A ConfigError for the encoder-decoder options, which a decoder-only model cannot honour."""
    for option in ("decoder_start_token_id", "forced_bos_token_id"):
        if getattr(config, option) is not None:
            raise ConfigError(f"generation option {option}={getattr(config, option)!r}: expected null for a "
                              "decoder-only model (it only applies to encoder-decoders, models with encode/decode)")
    if decoder_input_ids is not None:
        raise ConfigError("generate: decoder_input_ids is for encoder-decoders (models with encode/decode); "
                          "a decoder-only model continues input_ids")


def _encode(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, config: GenerationConfig,
            decoder_input_ids: Tensor | None) -> tuple[EncoderDecoder, Tensor]:
    """(the decoder over the encoded sources, the decoder prompt (B, T)) after checking both."""
    start = config.decoder_start_token_id
    if start is None:
        raise ConfigError("generation option decoder_start_token_id=None: an encoder-decoder needs the token that "
                          "starts every decoder sequence (a token id >= 0); its config usually names it: "
                          "GenerationConfig(**lit_tasks.generation.generation_defaults(model.config), ...)")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None and start >= vocab:
        raise ConfigError(f"generation option decoder_start_token_id={start}: outside the model's vocabulary of "
                          f"{vocab} tokens")
    mask = _check_tokens(input_ids, attention_mask, "source")
    B = input_ids.shape[0]
    if decoder_input_ids is None:
        prompt = torch.full((B, 1), start, dtype=torch.long, device=input_ids.device)
    else:
        prompt = _check_decoder_prompt(decoder_input_ids, B, start).to(input_ids.device)
    if config.forced_bos_token_id is not None and prompt.shape[1] > 1:
        raise ConfigError(f"generation option forced_bos_token_id={config.forced_bos_token_id}: it forces the token "
                          f"after a one-token decoder prompt, and decoder_input_ids has {prompt.shape[1]} columns; "
                          "put the token in decoder_input_ids instead, or drop the option")
    _check_context(getattr(model, "context_length", None), prompt.shape[1], config, "decoder prompt", "")
    return EncoderDecoder.encode(model, input_ids, None if attention_mask is None else mask), prompt


def _check_decoder_prompt(ids: Tensor, batch: int, start: int) -> Tensor:
    """decoder_input_ids (B, T) long, after checking its shape and its first column."""
    if ids.ndim != 2 or ids.dtype not in (torch.long, torch.int32) or ids.shape[0] != batch or ids.shape[1] == 0:
        raise DataError(f"generate: decoder_input_ids must be a ({batch}, length >= 1) tensor of token ids (one row "
                        f"per source), got shape {tuple(ids.shape)} and dtype {ids.dtype}")
    wrong = (ids[:, 0] != start).nonzero().flatten().tolist()
    if wrong:
        raise DataError(f"generate: decoder_input_ids row(s) {wrong} do not start with decoder_start_token_id={start}; "
                        "every decoder sequence starts with it (prepend it)")
    return ids.long()


def _check_prompt(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """The attention mask (B, P) long, after checking the prompt's shape and left padding."""
    mask = _check_tokens(input_ids, attention_mask, "prompt")
    right = (mask[:, -1] == 0).nonzero().flatten().tolist()
    if right:
        raise DataError(f"generate: prompt row(s) {right} end with padding; generate continues after the last "
                        "column, so pad prompts on the left (tokenizer padding side 'left')")
    return mask


def _check_tokens(input_ids: Tensor, attention_mask: Tensor | None, what: str) -> Tensor:
    """The attention mask (B, P) long, after checking the token ids' shape and the mask's values."""
    if input_ids.ndim != 2 or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise DataError(f"generate: input_ids must be a (batch, length) tensor of token ids, got "
                        f"shape {tuple(input_ids.shape)} and dtype {input_ids.dtype}")
    B, P = input_ids.shape
    if B == 0 or P == 0:
        raise DataError(f"generate: the {what} is empty (input_ids has shape {tuple(input_ids.shape)}); "
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
        raise DataError(f"generate: {what} row(s) {empty} have no real token (attention_mask all 0)")
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
