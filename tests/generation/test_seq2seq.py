"""generate on an encoder-decoder (a toy one written here, with the zoo's encode/decode contract):
the encoder runs once, its output is repeated per beam, the cross-attention cache is filled once,
the decoder prompt, forced bos/eos, generation_defaults, and the errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.generation import EncoderDecoder, GenerationConfig, generate, generation_defaults
from lit_tasks.generation.processors import process_scores
from lit_tasks.zoo.layers import Attention, KVCache

VOCAB, START, EOS, PAD, BOS = 23, 0, 18, 1, 5


class ToyEncoderDecoder(nn.Module):
    """One encoder self-attention layer, one decoder layer (causal self-attention, cross-attention),
    learned positions; it counts its encoder runs."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, dim), nn.Embedding(32, dim)
        self.encoder = Attention(dim, 2)
        self.self_attn, self.cross = Attention(dim, 2), Attention(dim, 2, cross=True)
        self.head = nn.Linear(dim, VOCAB)
        self.context_length = 32
        self.config = SimpleNamespace(vocab_size=VOCAB, decoder_start_token_id=START, eos_token_id=EOS,
                                      pad_token_id=PAD, bos_token_id=None, forced_bos_token_id=None,
                                      forced_eos_token_id=None)
        self.encoded = 0

    def encode(self, input_ids, attention_mask):
        self.encoded += 1
        x = self.embed(input_ids) + self.pos(torch.arange(input_ids.shape[1]))  # (B, S, D)
        return x + self.encoder(x, keep=None if attention_mask is None else attention_mask.bool())

    def decode(self, input_ids, memory, memory_mask, attention_mask, position_ids, cache: KVCache | None):
        x = self.embed(input_ids) + self.pos(position_ids)  # (N, T, D)
        self_cache, cross_cache = (None, None) if cache is None else (cache.layer("self.0"), cache.layer("cross.0"))
        keep = None if attention_mask is None else attention_mask.bool()
        x = x + self.self_attn(x, keep=keep, causal=True, cache=self_cache)
        x = x + self.cross(x, memory, keep=None if memory_mask is None else memory_mask.bool(), cache=cross_cache)
        return self.head(x)  # (N, T, V)


@pytest.fixture(scope="module")
def toy() -> ToyEncoderDecoder:
    torch.manual_seed(0)
    model = ToyEncoderDecoder().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)  # opinionated: each source gives its own continuation
    return model


def _sources() -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) (3, 5): sources of 5, 3 and 1 tokens, right-padded with PAD."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, VOCAB, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return ids.masked_fill(mask == 0, PAD), mask


OPTIONS = {
    "greedy": dict(eos_token_id=EOS),
    "beam3-return2": dict(num_beams=3, num_return_sequences=2, eos_token_id=EOS, length_penalty=1.5),
    "sample-return2": dict(do_sample=True, seed=0, num_return_sequences=2, eos_token_id=EOS),
}


def _run(toy, ids, mask, **options):
    return generate(toy, ids, mask, **{"max_new_tokens": 8, "decoder_start_token_id": START, "pad_token_id": PAD,
                                       **options})


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_source_gives_what_it_gives_alone(name, toy):
    """Batched, padded sources of different lengths: each source's rows equal that source alone (the
    memory and its mask repeated per beam / returned sequence, in generate's row order)."""
    ids, mask = _sources()
    options = OPTIONS[name]
    R = options.get("num_return_sequences", 1)
    batched = _run(toy, ids, mask, **options)
    assert batched.shape[0] == 3 * R and (batched[:, 0] == START).all()
    for b in range(3):
        n = int(mask[b].sum())
        alone = _run(toy, ids[b:b + 1, :n], None, **options)  # unpadded, no mask
        assert torch.equal(batched[b * R:(b + 1) * R, :alone.shape[1]], alone), b
        assert (batched[b * R:(b + 1) * R, alone.shape[1]:] == PAD).all()
    assert len({tuple(r) for r in batched[::R].tolist()}) == 3  # the sources matter
    assert (batched[:, 1:] == EOS).any()  # eos fired somewhere


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_encoder_runs_once_and_cross_attention_keys_are_computed_once(name, toy):
    ids, mask = _sources()
    kv_calls, query_calls = [], []
    hooks = [toy.cross.kv.register_forward_hook(lambda *_: kv_calls.append(1)),
             toy.cross.q.register_forward_hook(lambda *_: query_calls.append(1))]
    try:
        toy.encoded = 0
        out = _run(toy, ids, mask, **OPTIONS[name])
    finally:
        for hook in hooks:
            hook.remove()
    assert toy.encoded == 1
    assert len(kv_calls) == 1 and len(query_calls) == out.shape[1] - 1  # one step per new column


@pytest.mark.parametrize("name", list(OPTIONS))
def test_kv_cache_equals_full_recomputation(name, toy):
    ids, mask = _sources()
    assert torch.equal(_run(toy, ids, mask, **OPTIONS[name]), _run(toy, ids, mask, use_cache=False, **OPTIONS[name]))


def test_decoder_input_ids_are_continued(toy):
    ids, mask = _sources()
    free = _run(toy, ids, mask)  # (3, 9) no eos: all 8 steps
    prefix = free[:, :4]
    out = _run(toy, ids, mask, decoder_input_ids=prefix)
    assert out.shape == (3, 4 + 8) and torch.equal(out[:, :9], free)  # the same path, continued past it


def test_forced_bos_is_the_first_new_token_and_forced_eos_the_last(toy):
    ids, mask = _sources()
    free = _run(toy, ids, mask)
    assert (free[:, 1] != BOS).any() and (free[:, -1] != EOS).any()  # so that forcing changes something
    for options in (dict(), dict(num_beams=3)):
        bos = _run(toy, ids, mask, forced_bos_token_id=BOS, **options)
        out = _run(toy, ids, mask, forced_bos_token_id=BOS, forced_eos_token_id=EOS, **options)
        assert out.shape == (3, 9) and (out[:, 1] == BOS).all() and (out[:, -1] == EOS).all(), out
        if not options:  # greedy: forced eos changes the last step only (no eos_token_id: nothing stops)
            assert torch.equal(out[:, :-1], bos[:, :-1]) and (bos[:, -1] != EOS).any()
    both = _run(toy, ids, mask, max_new_tokens=1, forced_bos_token_id=BOS, forced_eos_token_id=[EOS, 3])
    assert set(both[:, 1].tolist()) <= {EOS, 3}  # one step is first and last: forced eos comes after bos, as HF


def test_forced_eos_ids_are_what_the_last_step_allows():
    config = GenerationConfig(max_new_tokens=4, forced_eos_token_id=[2, 5], forced_bos_token_id=7)
    scores = torch.randn(2, 9)
    history = torch.zeros(2, 3, dtype=torch.long)
    for new, allowed in ((0, None), (2, None), (3, {2, 5})):
        out = process_scores(scores, history[:, :1 + new], torch.ones(2, 1 + new, dtype=torch.bool), new, config)
        if new == 0:
            assert out.isfinite().sum(-1).tolist() == [1, 1] and (out[:, 7] == 0).all()
        elif allowed is None:
            assert torch.equal(out, scores)
        else:
            assert set(out.isfinite().nonzero()[:, 1].tolist()) == allowed and (out[:, [2, 5]] == 0).all()


def test_the_encoder_decoder_decoder_is_a_decoder(toy):
    ids, mask = _sources()
    bound = EncoderDecoder.encode(toy, ids, mask)
    expanded = bound.expand(torch.tensor([0, 0, 2]))
    assert expanded.memory.shape == (3, 5, 16) and torch.equal(expanded.memory[1], bound.memory[0])
    assert expanded.memory_mask.tolist() == [mask[0].tolist(), mask[0].tolist(), mask[2].tolist()]
    assert expanded.context_length == 32


# -- generation_defaults ---------------------------------------------------------------------------
def test_generation_defaults_reads_the_special_tokens_of_a_model_config():
    bart = SimpleNamespace(decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, bos_token_id=0,
                           forced_bos_token_id=None, forced_eos_token_id=2, vocab_size=50)
    assert generation_defaults(bart) == dict(decoder_start_token_id=2, eos_token_id=2, pad_token_id=1,
                                             forced_eos_token_id=2)
    mbart = SimpleNamespace(decoder_start_token_id=None, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                            forced_bos_token_id=None, forced_eos_token_id=[2])
    defaults = generation_defaults(mbart)  # HF's fallback: the bos id starts the decoder
    assert defaults["decoder_start_token_id"] == 0 and defaults["forced_eos_token_id"] == (2,)
    gpt2 = SimpleNamespace(bos_token_id=50256, eos_token_id=50256)  # decoder-only: no decoder start
    assert generation_defaults(gpt2) == dict(eos_token_id=50256)
    GenerationConfig(**defaults)  # they are valid options


# -- errors ----------------------------------------------------------------------------------------
def _fails(error, fragments, call):
    with pytest.raises(error) as e:
        call()
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_an_encoder_decoder_needs_a_decoder_start_token(toy):
    ids, mask = _sources()
    _fails(ConfigError, ["decoder_start_token_id=None", "generation_defaults(model.config)"],
           lambda: generate(toy, ids, mask, max_new_tokens=2))
    _fails(ConfigError, ["decoder_start_token_id=40", "vocabulary of 23"],
           lambda: generate(toy, ids, mask, max_new_tokens=2, decoder_start_token_id=40))


def test_encoder_decoder_options_are_refused_for_a_decoder_only_model(tiny):
    for option in ("decoder_start_token_id", "forced_bos_token_id"):
        _fails(ConfigError, [f"{option}=3", "decoder-only"],
               lambda: generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=2, **{option: 3}))
    _fails(ConfigError, ["decoder_input_ids", "decoder-only"],
           lambda: generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=2, decoder_input_ids=tiny.ids))


def test_a_bad_decoder_prompt_is_named(toy):
    ids, mask = _sources()
    run = lambda prompt, **kw: _run(toy, ids, mask, decoder_input_ids=prompt, **kw)
    _fails(DataError, ["row(s) [1]", "decoder_start_token_id=0"], lambda: run(torch.tensor([[0, 4], [3, 4], [0, 2]])))
    _fails(DataError, ["(3, length >= 1)", "(2, 2)"], lambda: run(torch.zeros(2, 2, dtype=torch.long)))
    _fails(ConfigError, ["forced_bos_token_id=5", "2 columns"],
           lambda: run(torch.zeros(3, 2, dtype=torch.long), forced_bos_token_id=BOS))
    _fails(ConfigError, ["decoder prompt has 20 columns", "20 + 13 = 33", "context length of 32"],
           lambda: generate(toy, ids, mask, max_new_tokens=13, decoder_start_token_id=START,
                            decoder_input_ids=torch.zeros(3, 20, dtype=torch.long)))


def test_a_source_without_a_real_token_is_named_and_either_padding_side_is_taken(toy):
    ids, mask = _sources()
    empty = mask.clone()
    empty[1] = 0
    _fails(DataError, ["source row(s) [1]", "no real token"], lambda: _run(toy, ids, empty))
    left = torch.stack([row.roll(5 - int(row.sum())) for row in mask])  # left padding: taken too
    assert (left[:, -1] == 1).all() and (left[:, 0] == 0).any()
    assert _run(toy, ids, left).shape == (3, 9)


def test_forced_ids_outside_the_vocabulary_are_named(toy):
    ids, mask = _sources()
    _fails(ConfigError, ["forced_eos_token_id=[3, 30]", "[30]", "23 tokens"],
           lambda: _run(toy, ids, mask, forced_eos_token_id=[3, 30]))
    _fails(ConfigError, ["forced_bos_token_id=23"], lambda: _run(toy, ids, mask, forced_bos_token_id=23))


@pytest.mark.parametrize("options, option, expected", [
    (dict(decoder_start_token_id=-1), "decoder_start_token_id", "token id"),
    (dict(forced_bos_token_id="en"), "forced_bos_token_id", "token id"),
    (dict(forced_eos_token_id=[]), "forced_eos_token_id", "non-empty"),
])
def test_bad_encoder_decoder_option_values_are_named(options, option, expected):
    with pytest.raises(ConfigError) as e:
        GenerationConfig.from_dict(options, "my.yaml")
    assert f"{option}=" in str(e.value) and expected in str(e.value)
