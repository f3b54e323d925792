"""generate's contract: seeded sampling, the KV cache against full recomputation, finished rows,
stop strings, truncate_left, and an encoder-decoder plugged in through the Decoder interface."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_tasks.generation import GenerationConfig, generate, truncate_left
from lit_tasks.zoo.layers import Attention, KVCache

FREQUENT_EOS = [7, 50]  # the tiny model's two most frequent tokens: most rows end early


def test_sampling_is_reproducible_from_its_seed(tiny):
    sampled = lambda seed, **kw: generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, do_sample=True, seed=seed,
                                          num_return_sequences=2, **kw)
    first = sampled(0)
    assert first.shape == (8, 6 + 8)
    assert torch.equal(first, sampled(0))
    assert not torch.equal(first, sampled(1))
    assert not torch.equal(first[0::2], first[1::2])  # two samples per prompt, not one repeated
    beams = lambda seed: generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, do_sample=True, seed=seed,
                                  num_beams=3, eos_token_id=50, pad_token_id=tiny.pad)
    assert torch.equal(beams(3), beams(3)) and not torch.equal(beams(3), beams(4))


def test_sampling_without_a_seed_draws_from_torch_global_generator(tiny):
    torch.manual_seed(11)
    first = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, do_sample=True)
    torch.manual_seed(11)
    assert torch.equal(first, generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, do_sample=True))


def test_sampling_follows_the_filters(tiny):
    greedy = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8)
    for filters in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)):
        sampled = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, do_sample=True, seed=0, **filters)
        assert torch.equal(sampled, greedy), filters


@pytest.mark.parametrize("options", [
    {}, dict(eos_token_id=FREQUENT_EOS, min_new_tokens=2, repetition_penalty=1.4),
    dict(num_beams=4, eos_token_id=50, num_return_sequences=3, no_repeat_ngram_size=2),
    dict(do_sample=True, seed=5, top_k=10, eos_token_id=50), dict(do_sample=True, seed=5, num_beams=2, eos_token_id=50),
], ids=["greedy", "greedy-eos-rules", "beam4", "sample", "beam-sample"])
def test_kv_cache_equals_full_recomputation(options, tiny):
    run = lambda cache: generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=10, pad_token_id=tiny.pad,
                                 use_cache=cache, **options)
    assert torch.equal(run(True), run(False))


def test_finished_rows_keep_their_eos_and_are_filled_with_pad(tiny):
    out = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=10, eos_token_id=FREQUENT_EOS, pad_token_id=tiny.pad)
    P = tiny.ids.shape[1]
    assert torch.equal(out[:, :P], tiny.ids)
    assert out.shape[1] < P + 10  # every row ended early, so fewer than max_new_tokens steps ran
    for row in out[:, P:].tolist():
        end = next(i for i, t in enumerate(row) if t in FREQUENT_EOS)
        assert all(t == tiny.pad for t in row[end + 1:]), row
    # without pad_token_id the fill is the first eos id (as HF)
    default = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=10, eos_token_id=FREQUENT_EOS)
    new = out[:, P:]
    assert torch.equal(default[:, P:], torch.where(new == tiny.pad, FREQUENT_EOS[0], new)) and (new == tiny.pad).any()


class Spelled:
    """A tokenizer whose text of id i is "<i>"."""

    def decode(self, ids: list[int]) -> str:
        return "".join(f"<{i}>" for i in ids)


def test_stop_strings_end_a_row_with_the_token_that_completes_them(tiny):
    P = tiny.ids.shape[1]
    free = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=10)[:, P:].tolist()
    stop = f"<{free[0][2]}><{free[0][3]}"  # row 0 meets it inside its 4th new token ("<a><b" of "<a><b>")
    out = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=10, stop_strings=["<no such>", stop],
                   pad_token_id=tiny.pad, tokenizer=Spelled())
    expected = []
    for row in free:
        end = next((k for k in range(1, 11) if stop in Spelled().decode(row[:k])), 10)
        expected.append(row[:end] + [tiny.pad] * (10 - end))
    width = max(next((k for k in range(1, 11) if stop in Spelled().decode(row[:k])), 10) for row in free)
    assert out[:, P:].tolist() == [row[:width] for row in expected]
    assert expected[0][:4] == free[0][:4] and expected[0][4:] == [tiny.pad] * 6  # the stop string stays


def test_beam_search_ends_hypotheses_on_stop_strings(tiny):
    P = tiny.ids.shape[1]
    out = generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=8, num_beams=3, num_return_sequences=3,
                   stop_strings="<7>", pad_token_id=tiny.pad, tokenizer=Spelled())
    ended = 0
    for row in out[:, P:].tolist():
        if 7 in row:  # the first 7 ends the hypothesis: only fill after it
            assert set(row[row.index(7) + 1:]) <= {tiny.pad}, row
            ended += 1
    assert ended > 0


def test_truncate_left_keeps_the_newest_tokens():
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 8], [0, 0, 0, 0, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    kept, kept_mask, lost = truncate_left(ids, mask, 3)
    assert kept.tolist() == [[5, 6, 7], [3, 4, 8], [0, 0, 9]]
    assert kept_mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 1]]
    assert lost.tolist() == [0, 2, 0]
    kept, kept_mask, lost = truncate_left(ids[[0, 2]], mask[[0, 2]], 4)  # the all-padding first column goes too
    assert kept.tolist() == [[5, 6, 7], [0, 0, 9]] and lost.tolist() == [0, 0]


def test_a_too_long_prompt_fits_after_truncate_left(tiny):
    long = torch.randint(0, tiny.vocab, (2, 36))
    ids, mask, lost = truncate_left(long, None, 40 - 10)
    out = generate(tiny.ours, ids, mask, max_new_tokens=10)
    assert out.shape == (2, 40) and lost.tolist() == [6, 6] and torch.equal(out[:, :30], long[:, 6:])


def test_options_override_the_config(tiny):
    config = GenerationConfig(max_new_tokens=3, num_beams=2)
    assert generate(tiny.ours, tiny.ids, tiny.mask, config).shape == (4, 9)
    assert torch.equal(generate(tiny.ours, tiny.ids, tiny.mask, config, max_new_tokens=5, num_beams=1),
                       generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=5))


# -- an encoder-decoder through the Decoder interface ---------------------------------------------
class ToySeq2Seq(nn.Module):
    """A one-layer decoder over an encoder output: causal self-attention and cross-attention, both
    cached under our layers' cache names, tied output embedding."""

    def __init__(self, vocab: int = 23, dim: int = 16) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Embedding(32, dim)
        self.self_attn, self.cross = Attention(dim, 2), Attention(dim, 2, cross=True)
        self.head = nn.Linear(dim, vocab)

    def decode(self, ids, memory, memory_mask, mask, positions, cache: KVCache | None):
        x = self.embed(ids) + self.pos(positions)  # (N, T, D)
        self_cache, cross_cache = (None, None) if cache is None else (cache.layer("self.0"), cache.layer("cross.0"))
        x = self.self_attn(x, keep=None if mask is None else mask.bool(), causal=True, cache=self_cache)
        x = x + self.cross(x, memory, keep=memory_mask, cache=cross_cache)
        return self.head(x)  # (N, T, V)


class BoundDecoder:
    """ToySeq2Seq with its encoder output bound: a Decoder."""

    context_length = None

    def __init__(self, model: ToySeq2Seq, memory: torch.Tensor, memory_mask: torch.Tensor) -> None:
        self.model, self.memory, self.memory_mask = model, memory, memory_mask

    def __call__(self, input_ids, attention_mask, position_ids, cache):
        return self.model.decode(input_ids, self.memory, self.memory_mask, attention_mask, position_ids, cache)

    def expand(self, index: torch.Tensor) -> BoundDecoder:
        return BoundDecoder(self.model, self.memory[index], self.memory_mask[index])


@pytest.mark.parametrize("options", [{}, dict(num_beams=3, num_return_sequences=2), dict(num_beams=2, eos_token_id=18)],
                         ids=["greedy", "beam3", "beam2-eos"])
def test_an_encoder_decoder_plugs_in_with_its_encoder_output_bound(options):
    torch.manual_seed(0)
    model = ToySeq2Seq().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)  # opinionated: each memory gives its own continuation
    memory = torch.randn(3, 5, 16)
    memory_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    start = torch.zeros(3, 1, dtype=torch.long)  # the decoder start token
    run = lambda rows, cache: generate(BoundDecoder(model, memory[rows], memory_mask[rows]), start[rows],
                                       max_new_tokens=6, use_cache=cache, pad_token_id=0, **options)
    batched = run(slice(None), True)
    assert torch.equal(batched, run(slice(None), False))
    R = options.get("num_return_sequences", 1)
    for b in range(3):  # each prompt's rows are what that prompt alone gives: expand kept rows aligned
        alone = run(slice(b, b + 1), True)
        assert torch.equal(batched[b * R:(b + 1) * R, :alone.shape[1]], alone)
        assert (batched[b * R:(b + 1) * R, alone.shape[1]:] == 0).all()
    assert len({tuple(r) for r in batched[::R].tolist()}) == 3  # the memory matters
    assert "eos_token_id" not in options or (batched[:, 1:] == options["eos_token_id"]).any()
