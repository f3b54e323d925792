"""Token-for-token parity with transformers' generate (greedy and beam search) on a tiny random
GPT-2, same weights, a left-padded batch of prompts of lengths 6, 2, 4 and 1."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.generation import generate

pytest.importorskip("transformers")

# Tokens the tiny model produces often enough that they end hypotheses (each case checks that one
# does); with EOS in "beam2" and BOTH_EOS in "beam4-lp2" the three early_stopping modes give three
# different outputs (test_early_stopping_modes_are_told_apart).
EOS, TWO_EOS, BOTH_EOS = 50, [29, 56], [7, 50]
MAX_NEW = 10

CASES = {
    "greedy": {},
    "greedy-eos": dict(eos_token_id=EOS),
    "greedy-two-eos-min-new-tokens": dict(eos_token_id=TWO_EOS, min_new_tokens=3),
    "greedy-ngram-repetition": dict(eos_token_id=EOS, no_repeat_ngram_size=2, repetition_penalty=1.3),
    "beam2": dict(num_beams=2, eos_token_id=EOS),
    "beam2-early-stopping": dict(num_beams=2, eos_token_id=EOS, early_stopping=True),
    "beam2-never": dict(num_beams=2, eos_token_id=EOS, early_stopping="never"),
    "beam2-repetition": dict(num_beams=2, eos_token_id=EOS, repetition_penalty=1.5),
    "beam4-lp2": dict(num_beams=4, length_penalty=2.0, eos_token_id=BOTH_EOS, num_return_sequences=2),
    "beam4-lp2-early-stopping": dict(num_beams=4, length_penalty=2.0, eos_token_id=BOTH_EOS, num_return_sequences=2,
                                     early_stopping=True),
    "beam4-lp2-never": dict(num_beams=4, length_penalty=2.0, eos_token_id=BOTH_EOS, num_return_sequences=2,
                            early_stopping="never"),
    "beam2-two-eos-never": dict(num_beams=2, eos_token_id=TWO_EOS, early_stopping="never"),
    "beam4-lp0.5-return4": dict(num_beams=4, length_penalty=0.5, eos_token_id=TWO_EOS, num_return_sequences=4),
    "beam4-lp-1-never": dict(num_beams=4, length_penalty=-1.0, eos_token_id=EOS, early_stopping="never"),
    "beam3-ngram-min-new-tokens": dict(num_beams=3, no_repeat_ngram_size=2, min_new_tokens=4, eos_token_id=TWO_EOS,
                                       num_return_sequences=3),
    "beam4-no-eos": dict(num_beams=4, num_return_sequences=2),
    # eos ids among the likeliest tokens: K = (1 + #eos) * num_beams candidates keep beams running
    "beam2-lp2-never-frequent-eos": dict(num_beams=2, length_penalty=2.0, early_stopping="never",
                                         eos_token_id=BOTH_EOS),
    "beam3-lp2-three-eos": dict(num_beams=3, length_penalty=2.0, eos_token_id=BOTH_EOS + [29]),
    # forced eos at the last step (HF: max_length - 1), for decoder-only models too
    "greedy-forced-eos": dict(forced_eos_token_id=EOS),
    "beam3-forced-two-eos": dict(num_beams=3, eos_token_id=TWO_EOS, forced_eos_token_id=TWO_EOS,
                                 num_return_sequences=2),
}
SAMPLING = {  # HF draws with torch.multinomial from the global generator; so do we without a seed
    "plain": {},
    "temperature-top-k": dict(top_k=5, temperature=0.7),
    "top-p-eos": dict(top_p=0.8, eos_token_id=EOS),
    "return3-two-eos-repetition": dict(num_return_sequences=3, eos_token_id=BOTH_EOS, top_k=3, repetition_penalty=1.3),
    # beam sampling's filters keep 1 + #eos tokens: with top_k=1 the three best are drawn from
    "beam3-two-eos-top-k1": dict(num_beams=3, eos_token_id=BOTH_EOS, top_k=1),
    "beam2-top-p-return2": dict(num_beams=2, eos_token_id=EOS, top_p=0.5, num_return_sequences=2, length_penalty=1.5),
}


def _both(tiny, ids, mask, options, seed=None):
    """(transformers' output, ours) for `options`; also checks that both ran the model as often
    (the same number of steps: the same stopping rules)."""
    calls = {"hf": 0, "ours": 0}
    hooks = [model.transformer.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
             for name, model in (("hf", tiny.hf), ("ours", tiny.ours))]
    sampling = seed is not None
    try:
        if sampling:
            torch.manual_seed(seed)
        theirs = tiny.hf.generate(ids, attention_mask=mask, do_sample=sampling, max_new_tokens=MAX_NEW,
                                  pad_token_id=tiny.pad, **{"eos_token_id": None, "top_k": 0, **options})
        if sampling:
            torch.manual_seed(seed)
        mine = generate(tiny.ours, ids, mask, do_sample=sampling, max_new_tokens=MAX_NEW, pad_token_id=tiny.pad,
                        **options)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls["ours"] == calls["hf"], calls
    return theirs, mine


@pytest.mark.parametrize("name", list(CASES))
def test_generate_equals_transformers(name, tiny):
    options = CASES[name]
    ids, mask = tiny.ids, tiny.mask
    theirs, mine = _both(tiny, ids, mask, options)
    assert mine.shape == theirs.shape, (mine, theirs)
    assert torch.equal(mine, theirs), f"\nours:\n{mine}\ntransformers:\n{theirs}"
    P = ids.shape[1]
    assert torch.equal(mine[:, :P], ids.repeat_interleave(options.get("num_return_sequences", 1), 0))
    if "eos_token_id" in options:  # the case exercises eos: some continuation ends on one
        eos = torch.tensor(options["eos_token_id"]).flatten()
        assert torch.isin(mine[:, P:], eos).any(), "no eos fired: the case does not test it"


def test_early_stopping_modes_are_told_apart(tiny):
    """The beam cases above can fail on the early-stopping rules: here the three modes give three
    different outputs (so a mode handled like another would break a parity case)."""
    ids, mask = tiny.ids, tiny.mask
    for base in ("beam2", "beam4-lp2"):
        outs = [_both(tiny, ids, mask, {**CASES[base], "early_stopping": mode})[0] for mode in (True, False, "never")]
        for i in range(3):
            for j in range(i):
                assert outs[i].shape != outs[j].shape or not torch.equal(outs[i], outs[j]), (base, i, j)


@pytest.mark.parametrize("options", [{}, dict(num_beams=3, eos_token_id=EOS, num_return_sequences=2)],
                         ids=["greedy", "beam3"])
def test_one_prompt_without_mask_equals_transformers(options, tiny):
    ids = tiny.ids[:1]  # the longest prompt, no padding
    theirs, mine = _both(tiny, ids, None, options)
    assert torch.equal(mine, theirs), f"\nours:\n{mine}\ntransformers:\n{theirs}"


@pytest.mark.parametrize("name", list(SAMPLING))
def test_sampling_equals_transformers_from_the_same_global_seed(name, tiny):
    options = SAMPLING[name]
    theirs, mine = _both(tiny, tiny.ids, tiny.mask, options, seed=3)
    assert mine.shape == theirs.shape and torch.equal(mine, theirs), f"\nours:\n{mine}\ntransformers:\n{theirs}"


@pytest.mark.parametrize("options", [dict(repetition_penalty=1.5), dict(repetition_penalty=3.0, num_beams=2)],
                         ids=["greedy", "beam2"])
def test_repetition_penalty_ignores_left_padding_as_transformers_does(options, tiny):
    """Left padding with the model's favourite token: penalised as if it were text, it would change the output."""
    ids = torch.where(tiny.mask.bool(), tiny.ids, 7)
    theirs, mine = _both(tiny, ids, tiny.mask, options)
    assert torch.equal(mine, theirs), f"\nours:\n{mine}\ntransformers:\n{theirs}"
