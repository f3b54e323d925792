"""T5 (v1.0 and v1.1): parity with HF transformers (tiny random models), KV-cached decoding,
strict loading of the tied copies, key maps, config errors and presets."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import padded_tokens
from safetensors.torch import load_file, save_file

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo import from_pretrained, save_pretrained, t5
from lit_tasks.zoo.layers import KVCache

transformers = pytest.importorskip("transformers")

PAD = 0
TINY = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
            relative_attention_max_distance=12, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=1)
CONFIGS = {  # each switch of the config once; sequences of up to 13 tokens reach the logarithmic buckets
    "v1.0-relu-tied": TINY,
    "v1.1-gated-gelu-untied": {**TINY, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    "decoder-3-layers-encoder-1": {**TINY, "num_layers": 1, "num_decoder_layers": 3},
    "buckets-12-distance-30": {**TINY, "relative_attention_num_buckets": 12, "relative_attention_max_distance": 30},
    "dkv-6-heads-3": {**TINY, "d_kv": 6, "num_heads": 3, "feed_forward_proj": "gated-relu"},
    "exact-gelu-eps": {**TINY, "feed_forward_proj": "gelu", "layer_norm_epsilon": 1e-3},
}
HEADS = {"base": "T5Model", "seq2seq_lm": "T5ForConditionalGeneration"}


def _randomize(model: torch.nn.Module, seed: int = 1) -> None:
    """Random values in every parameter (norms too), so that a weight loaded wrong shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.ndim == 1 else 0.3)


def _hf_folder(config: dict, architecture: str, folder) -> torch.nn.Module:
    """A random HF model saved to `folder`, and that folder loaded back by transformers. An untied
    one is written as google/t5-v1_1-* are (tie_word_embeddings false, its own lm_head.weight):
    transformers >= 5 ties a freshly built model's lm_head whatever the config says."""
    hf = getattr(transformers, architecture)(transformers.T5Config(**config))
    _randomize(hf)
    hf.save_pretrained(folder)
    if config.get("tie_word_embeddings") is False and architecture == "T5ForConditionalGeneration":
        tensors = {k: v.clone() for k, v in hf.state_dict().items() if "embed_tokens" not in k}
        tensors["lm_head.weight"] = torch.randn_like(tensors["shared.weight"]) * 0.3
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        raw = json.loads((folder / "config.json").read_text())
        raw.pop("scale_decoder_outputs")
        (folder / "config.json").write_text(json.dumps({**raw, "tie_word_embeddings": False}))
    loaded = getattr(transformers, architecture).from_pretrained(folder).eval()
    if "lm_head.weight" in load_file(str(folder / "model.safetensors")):
        assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight)  # really untied
    return loaded


def _batch(lengths, left: bool = False, seed: int = 0):
    """Random tokens (ids from 2, never PAD) of the given lengths, padded with PAD: (input_ids, attention_mask)."""
    return padded_tokens(lengths, TINY["vocab_size"], PAD, low=2, left=left, seed=seed)


SOURCE = _batch((13, 9, 4), seed=0)
TARGET = _batch((11, 6, 3), seed=1)


def _outputs(hf, ours, source, target):
    """(HF, ours) for the encoder output, and the decoder output (base) or the logits (LM head)."""
    (ids, mask), (dec, dec_mask) = source, target
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        got = ours(ids, mask, dec, dec_mask)
        memory = ours.encode(ids, mask)
    last = theirs.logits if hasattr(theirs, "logits") else theirs.last_hidden_state
    return (theirs.encoder_last_hidden_state, last), (memory, got)


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_outputs_equal_transformers_with_padded_sources_and_targets(name, head, tmp_path):
    hf = _hf_folder(CONFIGS[name], HEADS[head], tmp_path)
    ours = from_pretrained(tmp_path, head=head).eval()
    assert type(ours) is t5.HEADS[head].model
    for source, target in ((SOURCE, TARGET), (_batch((13, 9, 4), left=True), _batch((11, 6, 3), left=True))):
        expected, got = _outputs(hf, ours, source, target)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["v1.0-relu-tied", "v1.1-gated-gelu-untied", "buckets-12-distance-30"])
def test_cached_decoding_equals_teacher_forcing(name, tmp_path):
    """Token by token through `decode` with a KVCache (after a 3-token first chunk) equals the full
    forward, for right- and left-padded decoder inputs: the relative bias of query P + t."""
    _hf_folder(CONFIGS[name], "T5ForConditionalGeneration", tmp_path)
    model = from_pretrained(tmp_path).eval()
    ids, mask = SOURCE
    for dec, dec_mask in (TARGET, _batch((11, 6, 3), left=True, seed=1)):
        with torch.no_grad():
            full = model(ids, mask, dec, dec_mask)  # (B, T, V)
            memory, cache = model.encode(ids, mask), KVCache()
            steps = [model.decode(dec[:, :3], memory, mask, dec_mask[:, :3], cache=cache)]
            for t in range(3, dec.shape[1]):
                steps.append(model.decode(dec[:, t:t + 1], memory, mask, dec_mask[:, :t + 1], cache=cache))
        assert set(cache.layers) == {f"{kind}.{i}" for kind in ("self", "cross") for i in range(2)}
        assert cache.length("self.0") == dec.shape[1] and cache.length("cross.0") == ids.shape[1]
        real = dec_mask.bool()  # a left pad sees no key: the full forward spreads it over later keys too
        torch.testing.assert_close(torch.cat(steps, dim=1)[real], full[real], atol=1e-5, rtol=1e-5)


def test_position_ids_give_the_relative_bias_of_those_positions(tmp_path):
    """Left padding: positions counted from each row's first real token give the real tokens the
    same logits (relative distances are unchanged), cached or not; shifted positions the same too."""
    _hf_folder(TINY, "T5ForConditionalGeneration", tmp_path)
    model = from_pretrained(tmp_path).eval()
    ids, mask = SOURCE
    dec, dec_mask = _batch((11, 6, 3), left=True, seed=1)
    positions = (dec_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        memory = model.encode(ids, mask)
        plain = model.decode(dec, memory, mask, dec_mask)
        counted = model.decode(dec, memory, mask, dec_mask, positions)
        shifted = model.decode(dec, memory, mask, dec_mask, positions + 5)
        cache = KVCache()
        steps = [model.decode(dec[:, :4], memory, mask, dec_mask[:, :4], positions[:, :4], cache)]
        steps += [model.decode(dec[:, t:t + 1], memory, mask, dec_mask[:, :t + 1], positions[:, t:t + 1], cache)
                  for t in range(4, dec.shape[1])]
        far = model.decode(dec, memory, mask, dec_mask, positions * 3)  # other distances: other logits
    real = dec_mask.bool()
    for got in (counted, shifted, torch.cat(steps, dim=1)):
        torch.testing.assert_close(got[real], plain[real], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(far[real], plain[real], atol=1e-3)


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("name", ["v1.0-relu-tied", "v1.1-gated-gelu-untied", "dkv-6-heads-3"])
def test_our_folder_loads_in_transformers(name, head, tmp_path):
    config = t5.T5Config.from_hf({"model_type": "t5", **CONFIGS[name]}, source="test")
    torch.manual_seed(0)
    ours = t5.HEADS[head].make(config).eval()
    _randomize(ours, seed=2)
    save_pretrained(ours, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert ("lm_head.weight" in tensors) == (head == "seq2seq_lm" and not config.tie_word_embeddings)
    hf = getattr(transformers, HEADS[head]).from_pretrained(tmp_path).eval()
    expected, got = _outputs(hf, ours, SOURCE, TARGET)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
    again = from_pretrained(tmp_path)
    assert type(again) is type(ours) and again.config == ours.config


def test_fresh_transformers_v1_1_model_is_tied_without_scaling(tmp_path):
    """transformers >= 5 builds a v1.1 model (tie_word_embeddings false) with lm_head tied to shared
    and writes no lm_head.weight: we load it the same (no lm_head, no d_model**-0.5 scaling)."""
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**CONFIGS["v1.1-gated-gelu-untied"])).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(str(tmp_path / "model.safetensors"))
    ours = from_pretrained(tmp_path).eval()
    assert ours.lm_head is None
    expected, got = _outputs(hf, ours, SOURCE, TARGET)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)


def test_tied_copies_are_checked_and_an_old_cross_attention_bias_is_dropped(tmp_path):
    """Older checkpoints repeat shared.weight as {en,de}coder.embed_tokens.weight (and lm_head.weight when
    tied) and carry a decoder cross-attention relative bias: they load; a copy that differs is an error."""
    hf = _hf_folder(TINY, "T5ForConditionalGeneration", tmp_path)
    tensors = {k: v.clone() for k, v in hf.state_dict().items()}
    assert {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"} <= set(tensors)
    tensors["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.zeros(8, 4)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours = from_pretrained(tmp_path).eval()
    expected, got = _outputs(hf, ours, SOURCE, TARGET)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)
    assert type(from_pretrained(tmp_path, head="base")) is t5.T5Model
    tensors["decoder.embed_tokens.weight"] = tensors["decoder.embed_tokens.weight"] + 1
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(LoadError, match="decoder.embed_tokens.weight"):
        from_pretrained(tmp_path)


def test_a_missing_tensor_is_named(tmp_path):
    _hf_folder(TINY, "T5Model", tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(LoadError, match=r"decoder\.block\.1\.layer\.2\.DenseReluDense\.wo\.weight"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["v1.0-relu-tied", "v1.1-gated-gelu-untied"])
def test_key_maps_are_inverse_and_cover_the_hf_state_dict(name):
    config = dict(CONFIGS[name])
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**config))
    hf_keys = {k for k in hf.state_dict() if "embed_tokens" not in k}
    model = t5.T5ForConditionalGeneration(t5.T5Config.from_hf({"model_type": "t5", **config}, source="test"))
    ours = model.state_dict()
    as_hf = t5.ours_to_hf(ours)
    untied = model.lm_head is not None
    assert set(as_hf) == (hf_keys if untied else hf_keys - {"lm_head.weight"})
    back = t5.hf_to_ours(as_hf)
    assert back.keys() == ours.keys() and all(torch.equal(back[k], ours[k]) for k in ours)
    shapes = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    assert all(shapes[k] == tuple(v.shape) for k, v in as_hf.items())


def test_shift_right_is_transformers():
    labels = torch.tensor([[5, 6, 7, 1], [8, 1, -100, -100]])
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**TINY))
    assert torch.equal(t5.shift_right(labels, PAD, PAD), hf._shift_right(labels))
    assert t5.shift_right(labels, 3, 2)[1].tolist() == [3, 8, 1, 2]


def test_relative_buckets_match_transformers():
    relative = torch.arange(-200, 200)[None]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 12), (12, 30)):
            theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
                relative, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance)
            assert torch.equal(t5.relative_position_bucket(relative, bidirectional, buckets, distance), theirs)


@pytest.mark.parametrize("key, value, message", [
    ("feed_forward_proj", "gated-swiglu", "feed_forward_proj"),
    ("feed_forward_proj", "relu-gated", "feed_forward_proj"),
    ("num_heads", 0, "num_heads"),
    ("num_decoder_layers", 0, "num_decoder_layers"),
    ("relative_attention_num_buckets", 1, "relative_attention_num_buckets"),
    ("is_encoder_decoder", False, "is_encoder_decoder"),
    ("is_decoder", True, "is_decoder"),
    ("dense_act_fn", "relu", "dense_act_fn"),
    ("is_gated_act", False, "is_gated_act"),
    ("scale_decoder_outputs", "yes", "scale_decoder_outputs"),
    ("rotary_dim", 8, "rotary_dim"),
    ("cross_attention_hidden_size", 16, "cross_attention_hidden_size"),
])
def test_config_errors_name_the_key(key, value, message):
    raw = {"model_type": "t5", **TINY, "feed_forward_proj": "gated-gelu", key: value}
    with pytest.raises(ConfigError, match=message):
        t5.T5Config.from_hf(raw, source="config.json")


def test_untied_scaled_outputs_are_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="scale_decoder_outputs"):
        t5.T5Config.from_hf({**TINY, "tie_word_embeddings": False, "scale_decoder_outputs": True}, source="c")


def test_feed_forward_proj_reads_as_transformers():
    for value, act, gated in (("relu", "relu", False), ("gated-gelu", "gelu_new", True), ("gelu", "gelu", False),
                              ("gated-relu", "relu", True), ("gated-silu", "silu", True)):
        config = transformers.T5Config(feed_forward_proj=value)
        assert (config.dense_act_fn, config.is_gated_act) == (act if value != "gated-gelu" else "gelu_new", gated)
        assert t5.parse_feed_forward_proj(value) == (act, gated)


@pytest.mark.parametrize("preset", sorted(t5.PRESETS))
def test_presets_round_trip_through_autoconfig(preset):
    config = t5.PRESETS[preset]
    hf = transformers.AutoConfig.for_model(**config.to_hf())
    assert hf.d_model == config.d_model and hf.num_decoder_layers == config.decoder_layers
    assert hf.scale_decoder_outputs == config.tie_word_embeddings
    assert t5.T5Config.from_hf(hf.to_dict(), source=preset) == config
    assert t5.T5Config.from_hf(config.to_hf(), source=preset) == config


def test_presets_mirror_their_hf_configs():
    small, v11 = t5.PRESETS["t5-small"], t5.PRESETS["t5-v1_1-small"]
    assert (small.d_model, small.d_ff, small.num_layers, small.num_heads, small.feed_forward_proj) == (
        512, 2048, 6, 8, "relu")
    assert small.tie_word_embeddings and not v11.tie_word_embeddings
    assert (v11.d_ff, v11.decoder_layers, v11.num_heads, v11.activation) == (1024, 8, 6, ("gelu_new", True))


def test_contract_of_the_lm_head_model():
    model = t5.T5ForConditionalGeneration(t5.PRESETS["t5-test"]).eval()
    assert model.context_length is None and model.config.decoder_start_token_id == 0
    assert (model.config.pad_token_id, model.config.eos_token_id, model.config.bos_token_id) == (0, 1, None)
    ids, mask = SOURCE
    with torch.no_grad():
        logits = model(ids, mask, TARGET[0], TARGET[1])
    assert logits.shape == (3, 11, 99)
    with pytest.raises(ValueError, match="attention_mask"):
        model.decode(TARGET[0], model.encode(ids, mask), mask, TARGET[1][:, :5])
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(ids, mask)
    assert {model.layer_index(n) for n, _ in model.named_parameters()} == set(range(0, 6))
    untied = dataclasses.replace(t5.PRESETS["t5-test"], tie_word_embeddings=False)
    assert t5.T5ForConditionalGeneration(untied).layer_index("lm_head.weight") == 5
