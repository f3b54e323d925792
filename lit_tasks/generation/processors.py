"""Next-token score processors: functions of the scores (N, V) and the tokens so far.

Each one equals the `transformers` logits processor named in its docstring on the same input
(tests/generation/test_processors.py); `process_scores` applies them in `generate`'s order.
`history` is (N, L) token ids (prompt and new tokens); `counted` (N, L) bool marks the positions
that are real tokens (False on left padding), which the repetition rules skip.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_tasks.generation.config import GenerationConfig


def _seen(history: Tensor, counted: Tensor, vocab: int) -> Tensor:
    """(N, V) bool: which tokens occur at counted positions of `history`."""
    ids = torch.where(counted, history.clamp(max=vocab), vocab)  # uncounted (or out of vocab) -> spare column V
    seen = torch.zeros(history.shape[0], vocab + 1, dtype=torch.bool, device=history.device)
    return seen.scatter_(1, ids, True)[:, :vocab]


def repetition_penalty(scores: Tensor, history: Tensor, counted: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al. 2019, "penalized sampling") on every token already present: its score is
    divided by `penalty` when positive and multiplied by it when negative, so that penalty > 1
    always lowers it (HF's RepetitionPenaltyLogitsProcessor). Applied once per token."""
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(_seen(history, counted, scores.shape[1]), penalised, scores)


def no_repeat_ngram(scores: Tensor, history: Tensor, counted: Tensor, n: int) -> Tensor:
    """-inf on every token that would complete an n-gram already present (Paulus et al. 2017,
    trigram avoidance; HF's NoRepeatNGramLogitsProcessor): the last n-1 tokens are matched against the
    first n-1 of each earlier n-gram. n-grams touching padding do not count (HF counts the pad ids
    of left padding as tokens; the two agree whenever no n-gram spans padding)."""
    N, L = history.shape
    if L < n:
        return scores
    grams = history.unfold(1, n, 1)  # (N, L-n+1, n)
    real = counted.unfold(1, n, 1).all(-1)  # (N, L-n+1)
    tail = history[:, L - n + 1:]  # (N, n-1)
    hits = (grams[..., :-1] == tail[:, None, :]).all(-1) & real  # (N, L-n+1)
    banned = _seen(grams[..., -1], hits, scores.shape[1])
    return scores.masked_fill(banned, float("-inf"))


def suppress(scores: Tensor, ids: tuple[int, ...]) -> Tensor:
    """-inf on the tokens `ids` (min_new_tokens: the eos ids before that many new tokens;
    HF's MinNewTokensLengthLogitsProcessor)."""
    out = scores.clone()
    out[:, list(ids)] = float("-inf")
    return out


def force(scores: Tensor, ids: tuple[int, ...]) -> Tensor:
    """-inf everywhere but 0 on the tokens `ids`: one of them must come next (forced_bos_token_id
    at the first step, forced_eos_token_id at the last; HF's ForcedBOSTokenLogitsProcessor and
    ForcedEOSTokenLogitsProcessor)."""
    out = torch.full_like(scores, float("-inf"))
    out[:, list(ids)] = 0.0
    return out


def top_k(scores: Tensor, k: int, min_keep: int = 1) -> Tensor:
    """Keep the k best scores (ties with the k-th included; at least `min_keep`), -inf elsewhere
    (Fan et al. 2018; HF's TopKLogitsWarper)."""
    k = min(max(k, min_keep), scores.shape[-1])
    kth = scores.topk(k, dim=-1).values[:, -1:]  # (N, 1)
    return scores.masked_fill(scores < kth, float("-inf"))


def top_p(scores: Tensor, p: float, min_keep: int = 1) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020; HF's TopPLogitsWarper): keep the
    smallest set of most likely tokens whose probability reaches `p`. Tokens sorted from least to
    most likely are dropped while their cumulative probability is <= 1 - p; the `min_keep` most
    likely (at least one) are always kept."""
    ascending, order = scores.sort(dim=-1)
    tail_mass = ascending.softmax(-1).cumsum(-1)  # (N, V): probability of this token and all less likely ones
    drop = tail_mass <= 1 - p
    drop[:, -min_keep:] = False
    return scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def process_scores(scores: Tensor, history: Tensor, counted: Tensor, new_tokens: int, config: GenerationConfig,
                   min_keep: int = 1) -> Tensor:
    """The scores (N, V) after every rule `config` asks for, in HF's order: repetition penalty,
    no-repeat n-grams, min_new_tokens (`new_tokens` generated so far), forced bos (when `history`
    is one token, HF's test: so only after a one-token decoder prompt), forced eos (at new token
    max_new_tokens, HF's max_length - 1); then, when sampling, temperature, top-k, top-p (each
    keeping at least `min_keep` tokens)."""
    if config.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, history, counted, config.repetition_penalty)
    if config.no_repeat_ngram_size > 0:
        scores = no_repeat_ngram(scores, history, counted, config.no_repeat_ngram_size)
    if new_tokens < config.min_new_tokens and config.eos_ids:
        scores = suppress(scores, config.eos_ids)
    if config.forced_bos_token_id is not None and history.shape[1] == 1:
        scores = force(scores, (config.forced_bos_token_id,))
    if config.forced_eos_ids and new_tokens == config.max_new_tokens - 1:
        scores = force(scores, config.forced_eos_ids)
    if config.do_sample:
        if config.temperature != 1.0:
            scores = scores / config.temperature
        if config.top_k is not None:
            scores = top_k(scores, config.top_k, min_keep)
        if config.top_p < 1.0:
            scores = top_p(scores, config.top_p, min_keep)
    return scores
