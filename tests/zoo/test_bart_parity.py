"""BART and mBART: parity with HF transformers (tiny random models) for the encoder, the
decoder and the LM head, KV-cached decoding, strict loading, key maps, configs and presets."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import padded_tokens
from safetensors.torch import load_file, save_file

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo import bart, from_pretrained, head_of, mbart, save_pretrained
from lit_tasks.zoo.layers import KVCache

transformers = pytest.importorskip("transformers")

PAD = 1
TINY = dict(vocab_size=99, max_position_embeddings=40, d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            pad_token_id=PAD, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
CONFIGS = {  # each switch of the config once
    "tiny": TINY,  # gelu, unscaled embeddings, equal stacks
    "scaled-relu-unequal": {**TINY, "scale_embedding": True, "activation_function": "relu", "encoder_layers": 3,
                            "decoder_layers": 1, "encoder_ffn_dim": 48, "decoder_ffn_dim": 24,
                            "decoder_attention_heads": 2},
    "silu-deep-decoder": {**TINY, "activation_function": "silu", "encoder_layers": 1, "decoder_layers": 3},
    "gelu_new-scaled": {**TINY, "activation_function": "gelu_new", "scale_embedding": True},
}
FAMILIES = {"bart": (bart, "Bart"), "mbart": (mbart, "MBart")}


def _randomize(model: torch.nn.Module) -> None:
    """HF inits LayerNorms to (1, 0), biases and final_logits_bias to 0; random values make the
    test able to fail on them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.ndim == 1 else 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith("final_logits_bias"):
                buffer.normal_(0, 0.5)


def _hf(family: str, cls: str, config: dict) -> torch.nn.Module:
    prefix = FAMILIES[family][1]
    model = getattr(transformers, prefix + cls)(getattr(transformers, prefix + "Config")(**config)).eval()
    _randomize(model)
    return model


def _batch(lengths=(11, 7, 3), seed: int = 0, left: bool = False):
    """Random tokens (ids from 3, never PAD) of the given lengths, padded with PAD: (input_ids, attention_mask)."""
    return padded_tokens(lengths, TINY["vocab_size"], PAD, low=3, left=left, seed=seed)


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _load(hf: torch.nn.Module, folder, head: str) -> torch.nn.Module:
    hf.save_pretrained(folder)
    return from_pretrained(folder, head).eval()


SOURCES = _batch((11, 7, 3))
TARGETS = _batch((6, 9, 4), seed=1)  # right-padded decoder inputs


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_base_model_matches_transformers(family, config_name, tmp_path):
    hf = _hf(family, "Model", CONFIGS[config_name])
    ours = _load(hf, tmp_path, "base")
    assert type(ours) is FAMILIES[family][0].MODEL
    (ids, mask), (dec, dec_mask) = SOURCES, TARGETS
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        _assert_close(ours.encode(ids, mask), expected.encoder_last_hidden_state)
        _assert_close(ours(ids, mask, dec, dec_mask), expected.last_hidden_state)
        # No masks and no decoder inputs: HF's defaults (the shifted sources) are ours.
        _assert_close(ours(ids), hf(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize("config_name", ["tiny", "scaled-relu-unequal"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lm_head_matches_transformers(family, config_name, tmp_path):
    hf = _hf(family, "ForConditionalGeneration", CONFIGS[config_name])
    ours = _load(hf, tmp_path, "seq2seq_lm")
    assert head_of(ours) == (family, "seq2seq_lm")
    (ids, mask), (dec, dec_mask) = SOURCES, TARGETS
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        memory = ours.encode(ids, mask)
        _assert_close(memory, expected.encoder_last_hidden_state)
        _assert_close(ours(ids, mask, dec, dec_mask), expected.logits)
        _assert_close(ours.decode(dec, memory, mask, dec_mask), expected.logits)
        _assert_close(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits)  # shifted sources


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cached_decoding_matches_the_full_forward(family, tmp_path):
    """A decoder prompt, then one token at a time over a KVCache: the logits equal one full
    forward (ours and HF's); cross-attention keys are computed once and reused."""
    hf = _hf(family, "ForConditionalGeneration", CONFIGS["scaled-relu-unequal"])
    ours = _load(hf, tmp_path, "seq2seq_lm")
    (ids, mask), (dec, _) = SOURCES, TARGETS
    with torch.no_grad():
        full = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        memory = ours.encode(ids, mask)
        for prompt in (1, 4):
            cache = KVCache()
            steps = [ours.decode(dec[:, :prompt], memory, mask, cache=cache)]
            cross = cache.layers["cross.0"].k
            for t in range(prompt, dec.shape[1]):
                mask_so_far = torch.ones(dec.shape[0], t + 1, dtype=torch.long)
                steps.append(ours.decode(dec[:, t:t + 1], memory, mask, mask_so_far, cache=cache))
            assert cache.length("self.0") == dec.shape[1] and cache.layers["cross.0"].k is cross
            assert cache.length("cross.0") == ids.shape[1]
            _assert_close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_left_padded_decoder_inputs(family, tmp_path):
    """HF numbers decoder positions from the cache, pads included: ours do by default. Explicit
    position_ids (from each row's first real token) give each row its unpadded logits."""
    hf = _hf(family, "ForConditionalGeneration", TINY)
    ours = _load(hf, tmp_path, "seq2seq_lm")
    (ids, mask), (dec, dec_mask) = SOURCES, _batch((6, 9, 4), seed=1, left=True)
    real = dec_mask.bool()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        memory = ours.encode(ids, mask)
        _assert_close(ours.decode(dec, memory, mask, dec_mask)[real], expected.logits[real])
        positions = (dec_mask.cumsum(-1) - 1).clamp(min=0)
        got = ours.decode(dec, memory, mask, dec_mask, positions)
        for b in range(dec.shape[0]):
            alone = ours.decode(dec[b, real[b]][None], memory[b:b + 1], mask[b:b + 1])  # (1, n, V), unpadded
            _assert_close(got[b, real[b]], alone[0])


@pytest.mark.parametrize("head", ["base", "seq2seq_lm"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_pretrained_loads_in_transformers(family, head, tmp_path):
    module = FAMILIES[family][0]
    torch.manual_seed(0)
    config = module.CONFIG.from_hf(CONFIGS["scaled-relu-unequal"], source="test")
    ours = module.HEADS[head].make(config).eval()
    _randomize(ours)
    save_pretrained(ours, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == family and written["architectures"] == [module.HEADS[head].architecture]
    hf = getattr(transformers, written["architectures"][0]).from_pretrained(tmp_path).eval()
    (ids, mask), (dec, dec_mask) = SOURCES, TARGETS
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        _assert_close(ours.encode(ids, mask), expected.encoder_last_hidden_state)
        _assert_close(ours(ids, mask, dec, dec_mask), expected.last_hidden_state if head == "base" else expected.logits)
    again = from_pretrained(tmp_path)  # ... and back into ours, bit for bit
    assert type(again) is type(ours)
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_key_maps_are_inverse_and_cover_transformers(family):
    module, prefix = FAMILIES[family]
    config = module.CONFIG.from_hf(CONFIGS["scaled-relu-unequal"], source="x")
    hf_config = getattr(transformers, prefix + "Config")(**config.to_hf())
    tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}  # copies of shared.weight
    tied_in_head = {"lm_head.weight", *(f"model.{k}" for k in tied)}
    for head, cls in (("base", "Model"), ("seq2seq_lm", "ForConditionalGeneration")):
        ours = module.HEADS[head].make(config)
        sd = ours.state_dict()
        back = module.hf_to_ours(module.ours_to_hf(sd))
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
        theirs = getattr(transformers, prefix + cls)(hf_config).state_dict()
        mapped = {k: tuple(v.shape) for k, v in module.ours_to_hf(sd).items()}
        skipped = tied if head == "base" else tied_in_head
        assert mapped == {k: tuple(v.shape) for k, v in theirs.items() if k not in skipped}


def _rewrite(folder, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_older_checkpoint_layouts_load(family, tmp_path):
    """Checkpoints that repeat the tied matrices (encoder/decoder embed_tokens, lm_head) load;
    a repeated lm_head.weight must equal model.shared.weight; without final_logits_bias it is
    zeros (with a warning), as in HF."""
    hf = _hf(family, "ForConditionalGeneration", TINY)
    hf.save_pretrained(tmp_path)
    shared = "model.shared.weight"

    def repeat(t):
        for key in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
            t[key] = t[shared].clone()

    _rewrite(tmp_path, repeat)
    (ids, mask), (dec, _) = SOURCES, TARGETS
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        _assert_close(from_pretrained(tmp_path).eval()(ids, mask, dec), expected)
    _rewrite(tmp_path, lambda t: t["lm_head.weight"].add_(1.0))
    with pytest.raises(LoadError, match=r"lm_head\.weight differs from model\.shared\.weight"):
        from_pretrained(tmp_path)
    _rewrite(tmp_path, lambda t: [t.pop("lm_head.weight"), t.pop("final_logits_bias")])
    with pytest.warns(UserWarning, match="final_logits_bias of .* is freshly initialised"):
        ours = from_pretrained(tmp_path, "seq2seq_lm").eval()
    assert not ours.final_logits_bias.any()
    with torch.no_grad():
        hf.final_logits_bias.zero_()
        _assert_close(ours(ids, mask, dec), hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits)


def test_shift_right_matches_transformers():
    from transformers.models.bart.modeling_bart import shift_tokens_right as bart_shift
    from transformers.models.mbart.modeling_mbart import shift_tokens_right as mbart_shift

    labels, mask = TARGETS
    labels = labels.masked_fill(mask == 0, -100)  # ignored label positions
    assert torch.equal(bart.shift_right(labels, 2, PAD), bart_shift(labels, PAD, 2))
    assert torch.equal(mbart.shift_right(labels, None, PAD), mbart_shift(labels, PAD))
    assert torch.equal(mbart.shift_right(labels, 2, PAD), bart_shift(labels, PAD, 2))
    with pytest.raises(ValueError, match="needs decoder_start_token_id and pad_token_id"):
        bart.shift_right(labels, None, PAD)


def test_bart_and_mbart_are_distinct():
    """The same fields build different layouts; each model saves as its own model_type, and a
    config of the other layout is refused by name."""
    b = bart.HEADS["seq2seq_lm"].make(bart.PRESETS["bart-test"])
    m = mbart.HEADS["seq2seq_lm"].make(mbart.PRESETS["mbart-test"])
    assert head_of(b) == ("bart", "seq2seq_lm") and head_of(m) == ("mbart", "seq2seq_lm")
    assert head_of(b.model) == ("bart", "base") and head_of(m.model) == ("mbart", "base")
    assert b.model.encoder.layer_norm is None and m.model.encoder.layer_norm is not None
    assert m.config.to_hf()["model_type"] == "mbart"
    with pytest.raises(TypeError, match="MBartModel takes a MBartConfig, got a BartConfig"):
        mbart.MBartModel(bart.PRESETS["bart-test"])
    with pytest.raises(ConfigError, match=r"x: key 'normalize_before' is True; a bart model implements only False "
                                          r"\(a pre-LN .* is model_type 'mbart'\)"):
        bart.BartConfig.from_hf({**TINY, "normalize_before": True}, source="x")
    with pytest.raises(ConfigError, match=r"x: key 'add_final_layer_norm' is False; a mbart model implements "
                                          r"only True \(a post-LN .* is model_type 'bart'\)"):
        mbart.MBartConfig.from_hf({**TINY, "add_final_layer_norm": False}, source="x")


def test_config_round_trip_and_presets():
    for module, prefix in FAMILIES.values():
        for name, config in module.PRESETS.items():
            hf = transformers.AutoConfig.for_model(**config.to_hf())
            assert type(hf).__name__ == prefix + "Config" and hf.d_model == config.d_model
            # transformers 5 moves forced_bos_token_id (a generation setting) out of the model config
            without_generation = dataclasses.replace(config, forced_bos_token_id=None)
            assert module.CONFIG.from_hf(hf.to_dict(), source="x") == without_generation
            assert module.CONFIG.from_hf(config.to_hf(), source="x") == config
    for module, prefix, preset in ((bart, "Bart", "bart-base"), (mbart, "MBart", "mbart-large-cc25")):
        config = module.PRESETS[preset]
        with torch.device("meta"):  # the real sizes, without allocating them
            theirs = getattr(transformers, prefix + "Model")(getattr(transformers, prefix + "Config")(**config.to_hf()))
            ours = module.MODEL(config)
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    # Keys of older config.json files (the fairseq port, generation settings) at their values.
    old = {**TINY, "add_bias_logits": False, "normalize_embedding": True, "static_position_embeddings": False,
           "extra_pos_embeddings": 2, "num_hidden_layers": 2, "num_beams": 4, "max_length": 20, "early_stopping": True,
           "no_repeat_ngram_size": 3, "output_past": True, "classif_dropout": 0.1, "forced_bos_token_id": 0}
    assert bart.BartConfig.from_hf({**old, "add_final_layer_norm": False, "normalize_before": False}, "x") == \
        bart.BartConfig.from_hf({**TINY, "forced_bos_token_id": 0}, "x")
    assert mbart.MBartConfig.from_hf({**old, "add_final_layer_norm": True, "normalize_before": True}, "x") == \
        mbart.MBartConfig.from_hf({**TINY, "forced_bos_token_id": 0}, "x")
    assert mbart.MBartConfig().decoder_start_token_id is None and bart.BartConfig().decoder_start_token_id == 2
    multi = bart.BartConfig.from_hf({**TINY, "forced_eos_token_id": [2, 3]}, source="x")
    assert multi.to_hf()["forced_eos_token_id"] == [2, 3]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"rotary_dim": 8}, r"cfg\.json: unknown or unsupported key\(s\) \['rotary_dim'\]"),
        ({"activation_function": "mish"}, r"cfg\.json: key 'activation_function' is 'mish'"),
        ({"decoder_attention_heads": 5}, r"cfg\.json: key 'decoder_attention_heads' is 5; expected a positive divisor"),
        ({"encoder_ffn_dim": 0}, r"cfg\.json: key 'encoder_ffn_dim' is 0"),
        ({"decoder_layerdrop": 1.0}, r"cfg\.json: key 'decoder_layerdrop' is 1\.0; expected a probability"),
        ({"pad_token_id": 99}, r"cfg\.json: key 'pad_token_id' is 99"),
        ({"tie_word_embeddings": False}, r"cfg\.json: key 'tie_word_embeddings' is False"),
        ({"is_encoder_decoder": False}, r"cfg\.json: key 'is_encoder_decoder' is False"),
        ({"is_decoder": True}, r"cfg\.json: key 'is_decoder' is True"),
        ({"add_bias_logits": True}, r"cfg\.json: key 'add_bias_logits' is True; a bart model implements only False"),
        ({"static_position_embeddings": True}, r"cfg\.json: key 'static_position_embeddings' is True"),
        ({"extra_pos_embeddings": 0}, r"cfg\.json: key 'extra_pos_embeddings' is 0; a bart model implements only 2"),
        ({"num_hidden_layers": 5}, r"cfg\.json: key 'num_hidden_layers' is 5; expected encoder_layers=2"),
    ],
)
def test_config_errors_name_the_key(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        bart.BartConfig.from_hf({**TINY, **change}, source="cfg.json")


def test_load_errors_name_the_tensors(tmp_path):
    _hf("bart", "ForConditionalGeneration", TINY).save_pretrained(tmp_path)
    _rewrite(tmp_path, lambda t: t.pop("model.decoder.layers.1.encoder_attn.v_proj.weight"))
    with pytest.raises(LoadError, match=r"missing \[model\.decoder\.layers\.1\.encoder_attn\.v_proj\.weight\]"):
        from_pretrained(tmp_path)


def test_context_length_layer_index_layerdrop_and_bad_input():
    config = bart.BartConfig.from_hf({**TINY, "encoder_layers": 3}, source="x")
    model = bart.BartForConditionalGeneration(config)
    assert model.context_length == 40 and model.num_layers == 5 and config.hidden_size == 32
    depths = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert depths["model.shared.weight"] == depths["model.decoder.embed_positions.weight"] == 0
    assert depths["model.encoder.layers.2.ffn.fc1.weight"] == 3
    assert depths["model.decoder.layers.0.self_attn.qkv.bias"] == 4 and model.layer_index("final_logits_bias") == 6
    with pytest.raises(ValueError, match="41 source positions = 41 exceed max_position_embeddings=40"):
        model.encode(torch.ones(1, 41, dtype=torch.long))
    memory, cache = model.encode(torch.ones(1, 5, dtype=torch.long)), KVCache()
    model.decode(torch.ones(1, 38, dtype=torch.long), memory, cache=cache)
    with pytest.raises(ValueError, match="38 cached \\+ 3 new decoder positions = 41 exceed"):
        model.decode(torch.ones(1, 3, dtype=torch.long), memory, cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\); .* 38 cached positions it must be "
                                         r"\(1, 40\)"):
        model.decode(torch.ones(1, 2, dtype=torch.long), memory, attention_mask=torch.ones(1, 2), cache=cache)
    # LayerDrop: in training some layers are skipped, in eval none.
    dropping = bart.BartModel(dataclasses.replace(config, encoder_layerdrop=0.5, dropout=0.0))
    torch.manual_seed(0)
    counts = {len(dropping.encoder.active_layers()) for _ in range(20)}
    assert len(counts) > 1 and max(counts) <= 3
    assert len(dropping.eval().encoder.active_layers()) == 3


def test_initialisation_and_tied_head():
    torch.manual_seed(0)
    model = bart.BartForConditionalGeneration(bart.BartConfig.from_hf({**TINY, "d_model": 256}, source="x"))
    assert abs(model.model.shared.weight.std().item() - 0.02) < 0.002
    assert not model.model.shared.weight[PAD].any() and not model.final_logits_bias.any()
    assert "final_logits_bias" not in dict(model.named_parameters())  # a buffer, as in HF
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.model.parameters())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_activation_checkpointing_keeps_gradients(family):
    """The registry's blocks (encoder and decoder layers) checkpoint without changing gradients."""
    from lit_tasks.zoo.blocks import checkpoint_blocks

    module = FAMILIES[family][0]
    torch.manual_seed(0)
    config = dataclasses.replace(module.PRESETS[f"{family}-test"], dropout=0.0)
    plain = module.HEADS["seq2seq_lm"].make(config)
    checkpointed = module.HEADS["seq2seq_lm"].make(config)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpoint_blocks(checkpointed) == config.encoder_layers + config.decoder_layers
    (ids, mask), (dec, dec_mask) = SOURCES, TARGETS
    for model in (plain, checkpointed):
        model(ids, mask, dec, dec_mask).logsumexp(-1).sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
