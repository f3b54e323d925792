"""GPT-2: parity with HF transformers (tiny random models), incremental decoding, strict loading,
and the contract."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import padded_tokens
from safetensors.torch import load_file, save_file

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo import from_pretrained, gpt2, save_pretrained
from lit_tasks.zoo.layers import KVCache

transformers = pytest.importorskip("transformers")

PAD = 0
TINY = dict(vocab_size=99, n_positions=40, n_embd=32, n_layer=2, n_head=4, bos_token_id=98, eos_token_id=98,
            pad_token_id=PAD)
CONFIGS = {  # each switch of the config once
    "tiny": TINY,  # gelu_new, scaled attention, n_inner = 4 * n_embd
    "gelu-3layers": {**TINY, "activation_function": "gelu", "n_layer": 3},
    "relu-inner48-eps": {**TINY, "activation_function": "relu", "n_inner": 48, "layer_norm_epsilon": 1e-3},
    "silu-inverse-layer-scale": {**TINY, "activation_function": "silu", "scale_attn_by_inverse_layer_idx": True},
    "unscaled-2heads": {**TINY, "scale_attn_weights": False, "n_head": 2},
}
HEADS = {"causal_lm": ("GPT2LMHeadModel", {}), "sequence_classification": ("GPT2ForSequenceClassification", {"num_labels": 5})}


def _randomize(model: torch.nn.Module) -> None:
    """HF inits LN to (1, 0) and biases to 0; random values make the test able to fail on them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.ndim == 1 else 0.1)


def _hf(cls_name: str, config: dict) -> torch.nn.Module:
    model = getattr(transformers, cls_name)(transformers.GPT2Config(**config)).eval()
    _randomize(model)
    return model


def _batch(lengths=(11, 7, 3), left: bool = False, seed: int = 0):
    """Random tokens (ids from 1, never PAD) of the given lengths, padded with PAD: (input_ids, attention_mask)."""
    return padded_tokens(lengths, TINY["vocab_size"], PAD, low=1, left=left, seed=seed)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Left padding's position ids: 0 at each row's first real token (pads get 0 too)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _load(hf: torch.nn.Module, folder, head: str) -> torch.nn.Module:
    hf.save_pretrained(folder)
    return from_pretrained(folder, head).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_base_model_matches_transformers(name, tmp_path):
    config = CONFIGS[name]
    hf = _hf("GPT2Model", config)
    ours = _load(hf, tmp_path, "base")
    assert isinstance(ours, gpt2.GPT2)
    ids, mask = _batch()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, output_hidden_states=True)
        got = ours(ids, mask, output_hidden_states=True)
        assert len(got.hidden_states) == len(expected.hidden_states) == config["n_layer"] + 1
        for g, e in zip(got.hidden_states, expected.hidden_states):
            _assert_close(g, e)
        _assert_close(got.last_hidden_state, expected.last_hidden_state)
        _assert_close(ours(ids).last_hidden_state, hf(ids).last_hidden_state)  # no mask: HF's defaults are ours


@pytest.mark.parametrize("config_name", ["tiny", "silu-inverse-layer-scale", "unscaled-2heads"])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_match_transformers(head, config_name, tmp_path):
    cls_name, extra = HEADS[head]
    hf = _hf(cls_name, {**CONFIGS[config_name], **extra})
    ours = _load(hf, tmp_path, head)
    assert type(ours).__name__ == cls_name
    ids, mask = _batch()
    with torch.no_grad():
        _assert_close(ours(ids, mask), hf(ids, attention_mask=mask).logits)


def test_left_padding_with_position_ids(tmp_path):
    """Left-padded rows with explicit position ids: the real tokens' outputs equal HF's, and equal
    those of each row run alone, unpadded; the classifier reads the last position."""
    hf = _hf("GPT2LMHeadModel", TINY)
    ours = _load(hf, tmp_path, "causal_lm")
    ids, mask = _batch(left=True)
    positions = _positions(mask)
    real = mask.bool()
    with torch.no_grad():
        got = ours(ids, mask, positions)
        _assert_close(got[real], hf(ids, attention_mask=mask, position_ids=positions).logits[real])
        for b in range(ids.shape[0]):
            _assert_close(got[b, real[b]], ours(ids[b:b + 1, real[b]])[0])
        assert not torch.allclose(ours(ids, mask)[real], got[real], atol=1e-3)  # the positions matter

    hf_cls = _hf("GPT2ForSequenceClassification", {**TINY, "num_labels": 3})
    classifier = _load(hf_cls, tmp_path / "cls", "sequence_classification")
    with torch.no_grad():
        expected = hf_cls(ids, attention_mask=mask, position_ids=positions).logits  # HF: the rightmost non-pad token
        _assert_close(classifier(ids, mask, None, positions), expected)


def test_token_type_ids_embed_through_wte(tmp_path):
    hf = _hf("GPT2ForSequenceClassification", {**TINY, "num_labels": 3})
    ours = _load(hf, tmp_path, "sequence_classification")
    ids, mask = _batch()
    types = (torch.arange(ids.shape[1]) >= 4).long().expand_as(ids) * mask  # a second segment from token 4
    with torch.no_grad():
        got = ours(ids, mask, types)  # the text-classification task's positional call
        _assert_close(got, hf(ids, attention_mask=mask, token_type_ids=types).logits)
        assert not torch.allclose(got, ours(ids, mask), atol=1e-3)


def test_incremental_decoding_matches_full_forward(tmp_path):
    """A prompt, then one token at a time with a KVCache: the logits equal one full forward,
    ours and HF's, for right-aligned (left-padded) prompts with position ids and masks too."""
    hf = _hf("GPT2LMHeadModel", CONFIGS["silu-inverse-layer-scale"])
    ours = _load(hf, tmp_path, "causal_lm")
    ids, mask = _batch(lengths=(12, 9, 6), left=True)
    positions = _positions(mask)
    real = mask.bool()
    with torch.no_grad():
        full = ours(ids, mask, positions)
        _assert_close(full[real], hf(ids, attention_mask=mask, position_ids=positions).logits[real])
        for prompt in (1, 7):  # the prompt's length, cached positions included
            cache = KVCache()
            steps = [ours(ids[:, :prompt], mask[:, :prompt], positions[:, :prompt], cache=cache)]
            for t in range(prompt, ids.shape[1]):
                steps.append(ours(ids[:, t:t + 1], mask[:, :t + 1], positions[:, t:t + 1], cache=cache))
            assert cache.length("self.1") == ids.shape[1]
            _assert_close(torch.cat(steps, dim=1)[real], full[real])

        plain = ids[:1, -12:]  # no padding, no mask, default positions: P .. P + T - 1
        cache = KVCache()
        steps = [ours(plain[:, :5], cache=cache)] + [ours(plain[:, t:t + 1], cache=cache) for t in range(5, 12)]
        _assert_close(torch.cat(steps, dim=1), hf(plain).logits)


def test_sequence_classification_picks_the_last_token(tmp_path):
    """With a mask: its rightmost 1. Without: HF's rule on pad_token_id (rightmost non-pad token;
    with none, the last position of a single row; a batch is an error)."""
    hf = _hf("GPT2ForSequenceClassification", {**TINY, "num_labels": 3})
    ours = _load(hf, tmp_path, "sequence_classification")
    ids, mask = _batch()
    with torch.no_grad():
        expected = hf(ids).logits  # pad_token_id rule
        _assert_close(ours(ids), expected)
        _assert_close(ours(ids, mask), expected)
        eos_padded = ids.masked_fill(mask == 0, TINY["eos_token_id"])  # GPT-2 tokenizers pad with eos
        _assert_close(ours(eos_padded, mask), expected)

    hf_nopad = _hf("GPT2ForSequenceClassification", {**TINY, "pad_token_id": None, "num_labels": 3})
    ours_nopad = _load(hf_nopad, tmp_path / "nopad", "sequence_classification")
    assert ours_nopad.config.pad_token_id is None
    with torch.no_grad():
        _assert_close(ours_nopad(ids[:1, :5]), hf_nopad(ids[:1, :5]).logits)
        with pytest.raises(ValueError, match="a batch of 3 sequences without attention_mask.*no pad_token_id"):
            ours_nopad(ids)
        _assert_close(ours_nopad(ids[1:2, :7]), ours_nopad(ids[1:2], mask[1:2]))  # the mask picks token 6


def _rewrite(folder, change) -> None:
    """Apply `change` to the folder's tensors (a dict) and save them back."""
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_older_checkpoint_layouts_load(tmp_path):
    """openai-community/gpt2's layout (no `transformer.` prefix, the attn.bias / attn.masked_bias
    buffers, n_ctx, GPT2LMHeadModel named) loads as the LM; a repeated lm_head.weight must equal wte."""
    hf = _hf("GPT2LMHeadModel", TINY)
    hf.transformer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], n_ctx=TINY["n_positions"], gradient_checkpointing=False)
    (tmp_path / "config.json").write_text(json.dumps(config))

    def buffers(t):
        for i in range(TINY["n_layer"]):
            t[f"h.{i}.attn.bias"] = torch.ones(1, 1, 40, 40).tril()
            t[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)

    _rewrite(tmp_path, buffers)
    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, gpt2.GPT2LMHeadModel)
    ids, mask = _batch()
    with torch.no_grad():
        _assert_close(ours(ids, mask), hf(ids, attention_mask=mask).logits)

    prefixed = tmp_path / "prefixed"
    hf.save_pretrained(prefixed)
    _rewrite(prefixed, lambda t: t.update({"lm_head.weight": t["transformer.wte.weight"].clone()}))
    with torch.no_grad():
        _assert_close(from_pretrained(prefixed).eval()(ids, mask), hf(ids, attention_mask=mask).logits)
    _rewrite(prefixed, lambda t: t["lm_head.weight"].add_(1.0))
    with pytest.raises(LoadError, match=r"lm_head\.weight differs from transformer\.wte\.weight"):
        from_pretrained(prefixed)


def test_lm_head_is_tied(tmp_path):
    ours = _load(_hf("GPT2LMHeadModel", TINY), tmp_path, "causal_lm")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ours.transformer.parameters())
    ids, mask = _batch()
    ours(ids, mask).sum().backward()  # the head's gradient reaches embedding rows beyond the input tokens
    unseen = ~torch.isin(torch.arange(TINY["vocab_size"]), ids)
    assert ours.transformer.wte.weight.grad[unseen].abs().sum() > 0


def test_logits_to_keep_scores_the_last_positions_only(tmp_path):
    ours = _load(_hf("GPT2LMHeadModel", TINY), tmp_path, "causal_lm").eval()
    ids, mask = _batch()
    full = ours(ids, mask)
    torch.testing.assert_close(ours(ids, mask, logits_to_keep=1), full[:, -1:], rtol=0, atol=1e-6)  # another matmul shape
    torch.testing.assert_close(ours(ids, mask, logits_to_keep=3), full[:, -3:], rtol=0, atol=1e-6)


def test_other_heads_are_dropped(tmp_path):
    hf = _hf("GPT2ForSequenceClassification", {**TINY, "num_labels": 5})
    hf.save_pretrained(tmp_path)
    ids, mask = _batch()
    lm = from_pretrained(tmp_path, "causal_lm").eval()  # the LM head has nothing to be fresh: it is wte
    with torch.no_grad():
        _assert_close(lm.transformer(ids, mask).last_hidden_state, hf.transformer(ids, attention_mask=mask).last_hidden_state)
    with pytest.warns(UserWarning, match=r"score has num_labels=5, the model's num_labels=2"):
        from_pretrained(tmp_path, "sequence_classification", num_labels=2)


@pytest.mark.parametrize("head", ["base", *sorted(HEADS)])
def test_save_pretrained_loads_in_transformers(head, tmp_path):
    torch.manual_seed(0)
    config = gpt2.GPT2Config.from_hf(CONFIGS["relu-inner48-eps"], source="test")
    ours = gpt2.HEADS[head].make(config, 3 if head == "sequence_classification" else None).eval()
    _randomize(ours)
    save_pretrained(ours, tmp_path)
    hf_cls = getattr(transformers, json.loads((tmp_path / "config.json").read_text())["architectures"][0])
    hf = hf_cls.from_pretrained(tmp_path).eval()
    ids, mask = _batch()
    with torch.no_grad():
        got, expected = ours(ids, mask), hf(ids, attention_mask=mask)
        _assert_close(got.last_hidden_state if head == "base" else got,
                      expected.last_hidden_state if head == "base" else expected.logits)
    again = from_pretrained(tmp_path)  # ... and back into ours, the head config.json names, bit for bit
    assert type(again) is type(ours)
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_key_maps_are_inverse_and_cover_transformers():
    config = gpt2.GPT2Config.from_hf({**TINY, "n_inner": 48}, source="x")
    for model in (gpt2.GPT2(config), gpt2.GPT2LMHeadModel(config), gpt2.GPT2ForSequenceClassification(config, 3)):
        sd = model.state_dict()
        back = gpt2.hf_to_ours(gpt2.ours_to_hf(sd))
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    for ours, theirs, tied in ((gpt2.GPT2LMHeadModel(config), "GPT2LMHeadModel", {"lm_head.weight"}),
                               (gpt2.GPT2ForSequenceClassification(config, 2), "GPT2ForSequenceClassification", set())):
        hf = getattr(transformers, theirs)(transformers.GPT2Config(**config.to_hf())).state_dict()
        mapped = {k: tuple(v.shape) for k, v in gpt2.ours_to_hf(ours.state_dict()).items()}
        assert mapped == {k: tuple(v.shape) for k, v in hf.items() if k not in tied}  # Conv1D (in, out) shapes too


def test_config_round_trip_and_presets():
    for name in ("gpt2", "distilgpt2", "gpt2-test"):
        config = gpt2.PRESETS[name]
        hf = transformers.AutoConfig.for_model(**config.to_hf())
        assert isinstance(hf, transformers.GPT2Config) and hf.n_layer == config.n_layer
        assert gpt2.GPT2Config.from_hf(hf.to_dict(), source="x") == config
    # The config.json of openai-community/gpt2.
    hub = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
           "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
           "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
           "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
           "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
           "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
           "vocab_size": 50257}
    assert gpt2.GPT2Config.from_hf(hub, source="x") == gpt2.PRESETS["gpt2"]
    assert gpt2.GPT2Config.from_hf({**hub, "n_layer": 6, "_num_labels": 1}, source="x") == gpt2.PRESETS["distilgpt2"]
    with torch.device("meta"):  # GPT-2 small's 124M parameters, without allocating them
        assert sum(p.numel() for p in gpt2.GPT2(gpt2.PRESETS["gpt2"]).parameters()) == 124_439_808
    multi_eos = gpt2.GPT2Config.from_hf({**TINY, "eos_token_id": [97, 98]}, source="x")
    assert transformers.AutoConfig.for_model(**multi_eos.to_hf()).eos_token_id == [97, 98]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"rotary_dim": 8}, r"cfg\.json: unknown or unsupported key\(s\) \['rotary_dim'\]"),
        ({"activation_function": "mish"}, r"cfg\.json: key 'activation_function' is 'mish'"),
        ({"n_head": 5}, r"cfg\.json: key 'n_head' is 5"),
        ({"n_inner": 0}, r"cfg\.json: key 'n_inner' is 0"),
        ({"tie_word_embeddings": False}, r"cfg\.json: key 'tie_word_embeddings' is False"),
        ({"n_ctx": 20}, r"cfg\.json: key 'n_ctx' is 20; expected n_positions=40"),
        ({"add_cross_attention": True}, r"cfg\.json: key 'add_cross_attention' is True"),
    ],
)
def test_config_errors_name_the_key(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        gpt2.GPT2Config.from_hf({**TINY, **change}, source="cfg.json")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda t: t.pop("transformer.h.1.attn.c_attn.weight"), r"missing \[transformer\.h\.1\.attn\.c_attn\.weight\]"),
        (lambda t: t.update({"transformer.h.1.extra.weight": torch.zeros(2)}), r"unexpected \[transformer\.h\.1\.extra\.weight\]"),
        (lambda t: t.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(128, 32)}),
         r"shape mismatch \[transformer\.h\.0\.mlp\.c_fc\.weight: checkpoint \(128, 32\) vs model \(32, 128\)\]"),
    ],
)
def test_load_errors_name_the_tensors(change, pattern, tmp_path):
    _hf("GPT2ForSequenceClassification", {**TINY, "num_labels": 2}).save_pretrained(tmp_path)
    _rewrite(tmp_path, change)
    with pytest.raises(LoadError, match=rf"the weights do not fit GPT2ForSequenceClassification.*{pattern}"):
        from_pretrained(tmp_path, "sequence_classification")


def test_context_length_layer_index_and_bad_input():
    model = gpt2.GPT2ForSequenceClassification(gpt2.GPT2Config.from_hf({**TINY, "n_layer": 3}, source="x"), 2)
    assert model.context_length == model.transformer.context_length == 40 and model.num_layers == 3
    assert model.config.max_position_embeddings == 40 and model.config.hidden_size == 32  # HF's generic names
    depths = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert depths["transformer.wte.weight"] == depths["transformer.wpe.weight"] == 0
    assert depths["transformer.h.0.attn.qkv.weight"] == 1 and depths["transformer.h.2.ln_2.bias"] == 3
    assert depths["transformer.ln_f.weight"] == depths["score.weight"] == 4
    base = model.transformer
    with pytest.raises(ValueError, match="0 cached \\+ 41 new positions = 41 exceed n_positions=40"):
        base(torch.ones(1, 41, dtype=torch.long))
    cache = KVCache()
    base(torch.ones(1, 38, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="38 cached \\+ 3 new positions = 41 exceed n_positions=40"):
        base(torch.ones(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\); .* 38 cached positions it must be \(1, 40\)"):
        base(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2), cache=cache)


def test_initialisation_follows_gpt2():
    torch.manual_seed(0)
    config = gpt2.GPT2Config(n_embd=256, n_layer=8, n_head=4, vocab_size=500)
    model = gpt2.GPT2LMHeadModel(config)
    block = model.transformer.h[0]
    assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.002
    for residual in (block.attn.proj.weight, block.mlp.fc2.weight):  # 0.02 / sqrt(2 * n_layer)
        assert abs(residual.std().item() - 0.005) < 0.0005
    assert torch.equal(block.ln_1.weight, torch.ones(256)) and not block.attn.qkv.bias.any()


def test_text_classification_builds_and_trains_a_gpt2():
    """The text-classification task's network from the gpt2-test preset: its positional call,
    layer-wise lr decay depths, and one batch learnt."""
    from lit_tasks.tasks.text_classification import TextClassification

    torch.manual_seed(0)
    task = TextClassification(backbone="gpt2-test", num_classes=3, layer_decay=0.5)
    assert isinstance(task.net, gpt2.GPT2ForSequenceClassification)
    assert task.layer_depth("net.transformer.wpe.weight") == (0, 3) and task.layer_depth("net.score.weight") == (3, 3)
    ids, mask = _batch(lengths=(11, 7, 3, 9, 5, 10))
    types, labels = torch.zeros_like(ids), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.AdamW(task.net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(task(ids, mask, types), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
