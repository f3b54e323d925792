"""Our score rules against transformers' logits processors, on random scores and token histories."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.generation import GenerationConfig
from lit_tasks.generation import processors as ours

transformers = pytest.importorskip("transformers")

N, V, L = 6, 40, 12


def _scores(seed: int = 0, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(N, V, generator=g) * 3  # mixed signs: the repetition penalty's two branches
    return scores.round() if ties else scores  # rounding makes ties at the top-k boundary


def _history(seed: int = 0, vocab: int = 5) -> torch.Tensor:
    """(N, L) ids from a small alphabet, so that n-grams repeat."""
    return torch.randint(0, vocab, (N, L), generator=torch.Generator().manual_seed(seed))


def _same(mine: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 5, 39, 50])
@pytest.mark.parametrize("min_keep", [1, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_top_k(k, min_keep, ties):
    scores = _scores(ties=ties)
    theirs = transformers.TopKLogitsWarper(top_k=k, min_tokens_to_keep=min_keep)(_history(), scores)
    mine = ours.top_k(scores, k, min_keep)
    _same(mine, theirs)
    assert (mine.isfinite().sum(-1) >= max(min(k, V), min_keep)).all()


@pytest.mark.parametrize("p", [1e-4, 0.1, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("min_keep", [1, 3])
def test_top_p(p, min_keep):
    for seed, scale in ((0, 1.0), (1, 4.0)):  # flat and peaked distributions
        scores = _scores(seed) * scale
        theirs = transformers.TopPLogitsWarper(top_p=p, min_tokens_to_keep=min_keep)(_history(), scores)
        _same(ours.top_p(scores, p, min_keep), theirs)


@pytest.mark.parametrize("p, kept", [(0.5, 2), (0.75, 3), (0.25, 1), (0.3, 2)])
def test_top_p_on_a_uniform_distribution_keeps_the_tokens_that_reach_p(p, kept):
    scores = torch.zeros(1, 4)  # p = 0.25 each, exactly; the cumulative sums are exact too
    mine = ours.top_p(scores, p)
    assert mine.isfinite().sum() == kept
    _same(mine, transformers.TopPLogitsWarper(top_p=p)(_history()[:1], scores))


def test_top_p_keeps_the_best_token_even_when_it_alone_exceeds_p():
    scores = torch.tensor([[10.0, 0.0, -1.0, -2.0]])  # p(best) ~ 0.9999
    kept = ours.top_p(scores, 0.5).isfinite()
    assert kept.tolist() == [[True, False, False, False]]
    assert ours.top_p(scores, 0.5, min_keep=2).isfinite().sum() == 2


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty(penalty):
    scores, history = _scores(), _history(vocab=V)
    theirs = transformers.RepetitionPenaltyLogitsProcessor(penalty)(history, scores.clone())
    _same(ours.repetition_penalty(scores, history, torch.ones_like(history, dtype=torch.bool), penalty), theirs)


def test_repetition_penalty_skips_left_padding_as_transformers_does():
    scores, history = _scores(), _history(vocab=V)
    pads = torch.tensor([0, 3, 5, 0, 11, 1])  # leading padding per row
    counted = torch.arange(L)[None] >= pads[:, None]
    theirs = transformers.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=pads)(history, scores.clone())
    _same(ours.repetition_penalty(scores, history, counted, 1.5), theirs)


def test_repetition_penalty_lowers_every_seen_token():
    scores = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    history = torch.tensor([[0, 1, 0]])
    out = ours.repetition_penalty(scores, history, torch.ones_like(history, dtype=torch.bool), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0]]  # seen once or twice: penalised once; unseen unchanged


@pytest.mark.parametrize("n", [1, 2, 3, L, L + 1])
def test_no_repeat_ngram(n):
    scores, history = _scores(), _history()
    theirs = transformers.NoRepeatNGramLogitsProcessor(n)(history, scores)
    _same(ours.no_repeat_ngram(scores, history, torch.ones_like(history, dtype=torch.bool), n), theirs)


def test_no_repeat_ngram_ignores_ngrams_touching_padding():
    history = torch.tensor([[7, 7, 7, 3, 7]])  # the first two 7 are left padding: no 2-gram (7, 7) counts
    counted = torch.tensor([[False, False, True, True, True]])
    out = ours.no_repeat_ngram(torch.zeros(1, 10), history, counted, 2)
    assert out.isinf().nonzero()[:, 1].tolist() == [3]  # only (7, 3) is banned after the final 7 (HF: 3 and 7)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature(temperature):
    scores = _scores()
    theirs = transformers.TemperatureLogitsWarper(temperature)(_history(), scores)
    config = GenerationConfig(do_sample=True, temperature=temperature)
    _same(ours.process_scores(scores, _history(), torch.ones(N, L, dtype=torch.bool), 0, config), theirs)


@pytest.mark.parametrize("new_tokens", [0, 2, 3, 5])
def test_min_new_tokens(new_tokens):
    scores, prompt_len = _scores(), L - new_tokens
    theirs = transformers.MinNewTokensLengthLogitsProcessor(prompt_len, 3, [4, 9])(_history(), scores)
    config = GenerationConfig(min_new_tokens=3, eos_token_id=[4, 9])
    mine = ours.process_scores(scores, _history(), torch.ones(N, L, dtype=torch.bool), new_tokens, config)
    _same(mine, theirs)
    assert bool(mine[:, [4, 9]].isinf().all()) == (new_tokens < 3)


def test_all_rules_together_in_transformers_order():
    scores, history = _scores(), _history(vocab=V // 2)
    config = GenerationConfig(do_sample=True, repetition_penalty=1.2, no_repeat_ngram_size=2, min_new_tokens=4,
                              eos_token_id=3, temperature=0.7, top_k=12, top_p=0.8)
    theirs = transformers.LogitsProcessorList([
        transformers.RepetitionPenaltyLogitsProcessor(1.2), transformers.NoRepeatNGramLogitsProcessor(2),
        transformers.MinNewTokensLengthLogitsProcessor(L - 1, 4, 3), transformers.TemperatureLogitsWarper(0.7),
        transformers.TopKLogitsWarper(12), transformers.TopPLogitsWarper(0.8),
    ])(history, scores.clone())
    mine = ours.process_scores(scores, history, torch.ones(N, L, dtype=torch.bool), 1, config)
    _same(mine, theirs)
    assert mine[:, 3].isinf().all()


@pytest.mark.parametrize("length", [1, 2, 5])
def test_forced_bos_and_eos(length):
    """HF forces bos when the sequence so far is one token long and eos at max_length - 1, i.e. at new
    token max_new_tokens: here a one-token decoder prompt and max_new_tokens = 5."""
    scores, history = _scores(), _history()[:, :length]
    theirs = transformers.LogitsProcessorList([
        transformers.MinNewTokensLengthLogitsProcessor(1, 2, 3), transformers.ForcedBOSTokenLogitsProcessor(7),
        transformers.ForcedEOSTokenLogitsProcessor(1 + 5, [3, 11]),
    ])(history, scores.clone())
    config = GenerationConfig(max_new_tokens=5, min_new_tokens=2, eos_token_id=3, forced_bos_token_id=7,
                              forced_eos_token_id=[3, 11])
    mine = ours.process_scores(scores, history, torch.ones_like(history, dtype=torch.bool), length - 1, config)
    _same(mine, theirs)
    assert mine.isfinite().sum(-1).tolist() == [{1: 1, 2: V - 1, 5: 2}[length]] * N
