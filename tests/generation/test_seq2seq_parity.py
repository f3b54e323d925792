"""Token-for-token parity with transformers' generate on tiny random encoder-decoders (T5, BART,
mBART) loaded through `zoo.from_pretrained`: greedy, beam search, sampling, a batch of padded
sources of different lengths, min_new_tokens, forced bos (mBART's language code) and forced eos
(BART's); and the encoder and the cross-attention keys computed once per call."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_tasks import zoo
from lit_tasks.generation import generate, generation_defaults
from lit_tasks.zoo.layers import Attention

transformers = pytest.importorskip("transformers")

VOCAB, MAX_NEW = 60, 10
LENGTHS = (7, 3, 5, 1)  # source lengths of the batch

# family -> (HF class, config kwargs, decoder start, pad, eos ids the model produces often enough
# to end hypotheses (each case checks that one does), a token to force first (mBART: a language code))
FAMILIES = {
    "t5": ("T5ForConditionalGeneration", "T5Config",
           dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                decoder_start_token_id=0, tie_word_embeddings=False), 0, 0, [11, 45], 52),
    "bart": ("BartForConditionalGeneration", "BartConfig",
             dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64),
             2, 1, [18, 45], 51),
    "mbart": ("MBartForConditionalGeneration", "MBartConfig",
              dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                   decoder_start_token_id=2), 2, 1, [38, 37], 58),
}


def _randomize(model: torch.nn.Module) -> None:
    """Values that make the tiny model opinionated and its outputs depend on the source (HF's init,
    N(0, 0.02), makes it near uniform)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1, 0.2)
            elif p.ndim == 1:
                p.normal_(0, 0.1)
            elif "shared" in name or "embed" in name or "relative_attention_bias" in name:
                p.normal_(0, 0.3)
            else:
                p.normal_(0, 1.0)


def _sources(pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) (4, 7): random sources of LENGTHS tokens, right-padded with `pad`."""
    g = torch.Generator().manual_seed(0)
    S = max(LENGTHS)
    ids = torch.full((len(LENGTHS), S), pad)
    mask = torch.zeros(len(LENGTHS), S, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[b, :n] = 1
    return ids, mask


@pytest.fixture(scope="module", params=list(FAMILIES))
def pair(request, tmp_path_factory) -> SimpleNamespace:
    """hf and ours (same weights, eval mode) of one family, its sources and special tokens."""
    name = request.param
    if name not in zoo.REGISTRY:
        pytest.skip(f"the zoo has no {name} family yet")
    model_class, config_class, kwargs, start, pad, eos, bos = FAMILIES[name]
    hf = getattr(transformers, model_class)(getattr(transformers, config_class)(vocab_size=VOCAB, **kwargs)).eval()
    _randomize(hf)
    folder = tmp_path_factory.mktemp(name)
    hf.save_pretrained(folder)
    ids, mask = _sources(pad)
    return SimpleNamespace(name=name, hf=hf, ours=zoo.from_pretrained(folder).eval(), ids=ids, mask=mask,
                           start=start, pad=pad, eos=eos, bos=bos)


CASES = {  # options with EOS (the family's first eos id) and EOS2 (both) filled in by _options
    "greedy": {},
    "greedy-eos": dict(eos_token_id="EOS"),
    "greedy-two-eos-min-new-tokens": dict(eos_token_id="EOS2", min_new_tokens=3),
    "greedy-ngram-repetition": dict(eos_token_id="EOS", no_repeat_ngram_size=2, repetition_penalty=1.3),
    "beam4-lp2-return2": dict(num_beams=4, length_penalty=2.0, eos_token_id="EOS2", num_return_sequences=2),
    "beam4-lp2-return2-early-stopping": dict(num_beams=4, length_penalty=2.0, eos_token_id="EOS2",
                                             num_return_sequences=2, early_stopping=True),
    "beam4-lp0.5-never": dict(num_beams=4, length_penalty=0.5, eos_token_id="EOS", early_stopping="never"),
    "beam4-ngram-return2": dict(num_beams=4, no_repeat_ngram_size=2, eos_token_id="EOS", num_return_sequences=2),
    "beam3-min-new-tokens": dict(num_beams=3, min_new_tokens=4, eos_token_id="EOS2", length_penalty=0.8),
    "greedy-forced-eos": dict(eos_token_id="EOS", forced_eos_token_id="EOS"),
    "beam4-forced-eos": dict(num_beams=4, eos_token_id="EOS", forced_eos_token_id="EOS", num_return_sequences=2),
    "greedy-forced-bos": dict(eos_token_id="EOS", forced_bos_token_id="BOS"),
    "beam4-forced-bos-eos": dict(num_beams=4, eos_token_id="EOS2", forced_bos_token_id="BOS",
                                 forced_eos_token_id="EOS", length_penalty=1.5),
}
SAMPLING = {  # HF draws with torch.multinomial from the global generator; so do we without a seed
    "top-k-eos": dict(top_k=5, eos_token_id="EOS", num_return_sequences=2),
    "beam2-top-p": dict(num_beams=2, top_p=0.7, eos_token_id="EOS"),
}


def _options(pair, options: dict) -> dict:
    names = {"EOS": pair.eos[0], "EOS2": pair.eos, "BOS": pair.bos}
    return {k: names.get(v, v) if isinstance(v, str) else v for k, v in options.items()}


def _both(pair, options, ids=None, mask=None, seed=None, decoder_input_ids=None):
    """(transformers' output, ours) for `options` (ids, mask: the sources, default the batch);
    also checks that both ran the decoder as often (the same steps: the same stopping rules)."""
    ids, mask = (pair.ids, pair.mask) if ids is None else (ids, mask)
    sampling = seed is not None
    base = dict(max_new_tokens=MAX_NEW, do_sample=sampling, decoder_start_token_id=pair.start, pad_token_id=pair.pad)
    steps = {"hf": 0, "ours": 0}
    hooks = [pair.hf.get_decoder().register_forward_hook(lambda *_: steps.__setitem__("hf", steps["hf"] + 1)),
             _cross_layers(pair.ours)[0].q.register_forward_hook(
                 lambda *_: steps.__setitem__("ours", steps["ours"] + 1))]
    extra = {} if decoder_input_ids is None else dict(decoder_input_ids=decoder_input_ids)
    try:
        if sampling:
            torch.manual_seed(seed)
        theirs = pair.hf.generate(ids, attention_mask=mask, **base, **extra,
                                  **{"eos_token_id": None, "forced_eos_token_id": None, "forced_bos_token_id": None,
                                     "top_k": 0, **options})
        if sampling:
            torch.manual_seed(seed)
        mine = generate(pair.ours, ids, mask, **base, **extra, **options)
    finally:
        for hook in hooks:
            hook.remove()
    assert steps["ours"] == steps["hf"], steps
    return theirs, mine


def _cross_layers(model) -> list[Attention]:
    return [m for m in model.modules() if isinstance(m, Attention) and m.cross]


def _filled(out: torch.Tensor, eos: list[int], fill: int) -> torch.Tensor:
    """`out` with every token after a row's first eos (new tokens) set to `fill`."""
    new = out[:, 1:]
    ended = torch.isin(new, torch.tensor(eos)).long().cumsum(1) - torch.isin(new, torch.tensor(eos)).long() > 0
    return torch.cat([out[:, :1], new.masked_fill(ended, fill)], 1)


def _same(pair, options, theirs, mine):
    if options.get("num_beams", 1) > 1 and pair.pad == 0 and "eos_token_id" in options:
        # HF's beam search fills finished hypotheses with `pad_token_id or eos`: the eos when pad is 0
        # (T5); ours fills with pad_token_id as its greedy search does
        eos = list(torch.tensor(options["eos_token_id"]).flatten().tolist())
        theirs = _filled(theirs, eos, pair.pad)
    assert mine.shape == theirs.shape and torch.equal(mine, theirs), f"\nours:\n{mine}\ntransformers:\n{theirs}"


@pytest.mark.parametrize("name", list(CASES))
def test_generate_equals_transformers(name, pair):
    options = _options(pair, CASES[name])
    theirs, mine = _both(pair, options)
    _same(pair, options, theirs, mine)
    R = options.get("num_return_sequences", 1)
    assert mine.shape[0] == len(LENGTHS) * R and (mine[:, 0] == pair.start).all()
    eos = torch.tensor(options.get("eos_token_id", [])).flatten()
    fired = torch.isin(mine[:, 1:-1], eos).any()  # a continuation ended on an eos before the limit
    if name.endswith("forced-eos"):
        assert mine.shape[1] == 1 + MAX_NEW, "no row ran to the limit: forced eos is not tested"
    if "forced_eos_token_id" in options and mine.shape[1] == 1 + MAX_NEW:
        ran_out = ~torch.isin(mine[:, 1:-1], eos).any(1)  # rows that reached the limit end on the forced eos
        assert (mine[ran_out, -1] == options["forced_eos_token_id"]).all()
        fired = fired or ran_out.any()
    if "eos_token_id" in options:
        assert fired, "no eos fired: the case does not test it"
    if "forced_bos_token_id" in options:
        assert (mine[:, 1] == options["forced_bos_token_id"]).all()


@pytest.mark.parametrize("name", list(SAMPLING))
def test_sampling_equals_transformers_from_the_same_global_seed(name, pair):
    options = _options(pair, SAMPLING[name])
    theirs, mine = _both(pair, options, seed=3)
    _same(pair, options, theirs, mine)


@pytest.mark.parametrize("options", [{}, dict(num_beams=3, num_return_sequences=2)], ids=["greedy", "beam3"])
def test_one_source_without_mask_and_left_padded_sources_equal_transformers(options, pair):
    theirs, mine = _both(pair, options, ids=pair.ids[:1], mask=None)
    _same(pair, options, theirs, mine)
    left = torch.stack([row.roll(len(row) - int(row.sum())) for row in pair.mask])  # padding first
    ids = torch.stack([row.roll(len(row) - int(m.sum())) for row, m in zip(pair.ids, pair.mask)])
    theirs, mine = _both(pair, options, ids=ids, mask=left)
    _same(pair, options, theirs, mine)


def test_a_decoder_prompt_is_continued_as_transformers_does(pair):
    prompt = torch.tensor([[pair.start, 5, 9]] * len(LENGTHS))
    for options in ({}, dict(num_beams=2, eos_token_id=pair.eos[0])):
        theirs, mine = _both(pair, options, decoder_input_ids=prompt)
        _same(pair, options, theirs, mine)
        assert torch.equal(mine[:, :3], prompt)


@pytest.mark.parametrize("options", [{}, dict(num_beams=4, num_return_sequences=2)], ids=["greedy", "beam4"])
def test_the_encoder_and_the_cross_attention_keys_run_once(options, pair, monkeypatch):
    calls = {"encode": 0, "kv": 0}
    encode = pair.ours.encode

    def counted(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(pair.ours, "encode", counted)
    layers = _cross_layers(pair.ours)
    hooks = [layer.kv.register_forward_hook(lambda *_: calls.__setitem__("kv", calls["kv"] + 1)) for layer in layers]
    try:
        out = generate(pair.ours, pair.ids, pair.mask, max_new_tokens=MAX_NEW, decoder_start_token_id=pair.start,
                       **options)
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape[1] == 1 + MAX_NEW and len(layers) == 2
    assert calls == {"encode": 1, "kv": len(layers)}  # once per layer for the whole run, not per step


def test_generation_defaults_give_what_transformers_reads_from_the_model_config(pair):
    defaults = generation_defaults(pair.ours.config)
    hf_config = pair.hf.generation_config
    for option, value in defaults.items():
        expected = getattr(hf_config, option)
        if option == "decoder_start_token_id" and expected is None:  # HF falls back to bos at generate time
            expected = pair.hf.config.bos_token_id
        assert value == (tuple(expected) if isinstance(expected, list) else expected), option
    theirs = pair.hf.generate(pair.ids, attention_mask=pair.mask, max_new_tokens=MAX_NEW, num_beams=2)
    mine = generate(pair.ours, pair.ids, pair.mask, max_new_tokens=MAX_NEW, num_beams=2, **defaults)
    _same(pair, dict(num_beams=2, **defaults), theirs, mine)
