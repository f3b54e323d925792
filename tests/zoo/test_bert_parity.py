"""BERT: parity with HF transformers (tiny random models), strict loading, and the contract."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo import bert, from_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)
CONFIGS = {
    "tiny": TINY,
    "deep-2heads-relu": {**TINY, "num_hidden_layers": 3, "num_attention_heads": 2, "hidden_act": "relu"},
    "gelu-new-8heads-3types-eps-pad1": {**TINY, "hidden_act": "gelu_new", "num_attention_heads": 8, "type_vocab_size": 3,
                                        "layer_norm_eps": 1e-6, "pad_token_id": 1},
}
# head name -> (HF class, extra HF config)
HEADS = {
    "sequence_classification": ("BertForSequenceClassification", {"num_labels": 5}),
    "token_classification": ("BertForTokenClassification", {"num_labels": 3}),
    "question_answering": ("BertForQuestionAnswering", {}),
    "pretraining": ("BertForPreTraining", {}),
}


def _hf(cls_name: str, config: dict, **kwargs) -> torch.nn.Module:
    model = getattr(transformers, cls_name)(transformers.BertConfig(**config), **kwargs).eval()
    _randomize(model)
    return model


def _randomize(model: torch.nn.Module) -> None:
    """HF inits LN to (1, 0) and biases to 0; random values make the test able to fail on them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.ndim == 1 else 0.1)


def _batch(config: dict, lengths=(11, 7, 3), pad_to: int | None = None, seed: int = 0):
    """Sentence pairs of the given lengths, right-padded: (input_ids, attention_mask, token_type_ids)."""
    g = torch.Generator().manual_seed(seed)
    T = pad_to or max(lengths)
    pad = config.get("pad_token_id", 0)
    ids = torch.full((len(lengths), T), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    types = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(2, config["vocab_size"], (n,), generator=g)
        mask[b, :n] = 1
        types[b, n // 2:n] = config.get("type_vocab_size", 2) - 1  # second segment of the pair
    return ids, mask, types


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _outputs(out) -> list[torch.Tensor]:
    """Our head's outputs in the order of HF's logits fields."""
    return list(out) if isinstance(out, tuple) else [out]


def _hf_outputs(hf_out) -> list[torch.Tensor]:
    names = ("logits", "start_logits", "end_logits", "prediction_logits", "seq_relationship_logits")
    return [getattr(hf_out, n) for n in names if getattr(hf_out, n, None) is not None]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_base_model_matches_transformers(name, tmp_path):
    config = CONFIGS[name]
    hf = _hf("BertModel", config)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path, "base").eval()
    assert isinstance(ours, bert.Bert) and ours.pooler is not None
    ids, mask, types = _batch(config)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        got = ours(ids, mask, types, output_hidden_states=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == config["num_hidden_layers"] + 1
    for g, e in zip(got.hidden_states, expected.hidden_states):
        _assert_close(g, e)
    _assert_close(got.last_hidden_state, expected.last_hidden_state)
    _assert_close(got.pooler_output, expected.pooler_output)
    with torch.no_grad():  # no mask, no token types: HF's defaults are ours
        _assert_close(ours(ids).last_hidden_state, hf(ids).last_hidden_state)


@pytest.mark.parametrize("config_name", ["tiny", "gelu-new-8heads-3types-eps-pad1"])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_match_transformers(head, config_name, tmp_path):
    config = CONFIGS[config_name]
    cls_name, extra = HEADS[head]
    hf = _hf(cls_name, {**config, **extra})
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path, head).eval()
    assert type(ours).__name__ == cls_name
    ids, mask, types = _batch(config)
    with torch.no_grad():
        got, expected = _outputs(ours(ids, mask, types)), _hf_outputs(hf(ids, attention_mask=mask, token_type_ids=types))
    assert len(got) == len(expected) == (2 if head in ("question_answering", "pretraining") else 1)
    for g, e in zip(got, expected):
        _assert_close(g, e)


def test_pretraining_decoder_stays_tied(tmp_path):
    hf = _hf("BertForPreTraining", TINY)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path, "pretraining").eval()
    assert not any(p.shape == (TINY["vocab_size"], TINY["hidden_size"]) for p in ours.mlm.parameters())
    ids, mask, types = _batch(TINY)
    with torch.no_grad():  # change the input embeddings: a tied decoder changes with them, on both sides
        for model in (hf.bert, ours.bert):
            model.embeddings.word_embeddings.weight.mul_(-2.0)
        _assert_close(ours(ids, mask, types).prediction_logits, hf(ids, attention_mask=mask, token_type_ids=types).prediction_logits)
    loss = ours(ids, mask, types).prediction_logits.sum()
    loss.backward()  # the decoder's gradient reaches the word embeddings beyond the input tokens
    assert ours.bert.embeddings.word_embeddings.weight.grad[~torch.isin(torch.arange(TINY["vocab_size"]), ids)].abs().sum() > 0


def _rewrite(folder, change) -> None:
    """Apply `change` to the folder's tensors (a dict) and save them back."""
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_legacy_checkpoint_names_load(tmp_path):
    """google-bert/bert-base-uncased style: LayerNorm gamma/beta, a saved position_ids buffer and the
    tied decoder repeated as cls.predictions.decoder.{weight,bias}."""
    hf = _hf("BertForPreTraining", TINY)
    hf.save_pretrained(tmp_path)

    def legacy(t):
        for key in [k for k in t if k.endswith(("LayerNorm.weight", "LayerNorm.bias"))]:
            t[key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")] = t.pop(key)
        t["bert.embeddings.position_ids"] = torch.arange(TINY["max_position_embeddings"])[None]
        t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"].clone()
        t["cls.predictions.decoder.bias"] = t["cls.predictions.bias"].clone()

    _rewrite(tmp_path, legacy)
    ours = from_pretrained(tmp_path, "pretraining").eval()
    ids, mask, types = _batch(TINY)
    with torch.no_grad():
        _assert_close(ours(ids, mask, types).prediction_logits, hf(ids, attention_mask=mask, token_type_ids=types).prediction_logits)

    _rewrite(tmp_path, lambda t: t["cls.predictions.decoder.weight"].add_(1.0))
    with pytest.raises(LoadError, match=r"cls\.predictions\.decoder\.weight differs from bert\.embeddings\.word_embeddings\.weight"):
        from_pretrained(tmp_path, "pretraining")


def test_encoder_loads_from_any_checkpoint_layout(tmp_path):
    """Prefixed head checkpoints load as a base model (the other head dropped); unprefixed
    (sentence-transformers, BertModel) ones load under a fresh head."""
    hf = _hf("BertForPreTraining", TINY)
    hf.save_pretrained(tmp_path / "pretraining")
    ids, mask, types = _batch(TINY)
    base = from_pretrained(tmp_path / "pretraining", "base").eval()
    with torch.no_grad():
        expected = hf.bert(ids, attention_mask=mask, token_type_ids=types)
        _assert_close(base(ids, mask, types).pooler_output, expected.pooler_output)

    hf.bert.save_pretrained(tmp_path / "unprefixed")
    assert not any(k.startswith("bert.") for k in load_file(tmp_path / "unprefixed" / "model.safetensors"))
    with pytest.warns(UserWarning, match=r"classifier of BertForSequenceClassification is freshly initialised: the checkpoint has none"):
        model = from_pretrained(tmp_path / "unprefixed", "sequence_classification", num_labels=4).eval()
    assert model.num_labels == 4
    with torch.no_grad():
        _assert_close(model.bert(ids, mask, types).pooler_output, expected.pooler_output)


def _warned(record) -> set[str]:
    """The warnings' messages without the folder in front."""
    return {str(w.message).split(": ", 1)[1] for w in record}


def test_other_heads_are_dropped(tmp_path):
    hf = _hf("BertForSequenceClassification", {**TINY, "num_labels": 5})
    hf.save_pretrained(tmp_path)
    ids, mask, types = _batch(TINY)
    with torch.no_grad():
        expected = hf.bert(ids, attention_mask=mask, token_type_ids=types).pooler_output
        _assert_close(from_pretrained(tmp_path, "base").eval()(ids, mask, types).pooler_output, expected)
    with pytest.warns(UserWarning) as record:
        qa = from_pretrained(tmp_path, "question_answering")
    assert _warned(record) == {"qa_outputs of BertForQuestionAnswering is freshly initialised: the checkpoint has none"}
    assert qa.bert.pooler is None


def test_checkpoint_without_pooler(tmp_path):
    hf = _hf("BertModel", TINY, add_pooling_layer=False)
    hf.save_pretrained(tmp_path)
    base = from_pretrained(tmp_path, "base").eval()
    assert base.pooler is None
    ids, mask, types = _batch(TINY)
    with torch.no_grad():
        out = base(ids, mask, types)
        assert out.pooler_output is None
        _assert_close(out.last_hidden_state, hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
    with pytest.warns(UserWarning) as record:
        model = from_pretrained(tmp_path, "sequence_classification", num_labels=2)
    assert model.bert.pooler is not None
    assert _warned(record) == {f"{part} of BertForSequenceClassification is freshly initialised: the checkpoint has none"
                               for part in ("classifier", "pooler")}
    with pytest.warns(UserWarning) as record:  # token classification needs no pooler: only the classifier is new
        from_pretrained(tmp_path, "token_classification", num_labels=2)
    assert _warned(record) == {"classifier of BertForTokenClassification is freshly initialised: the checkpoint has none"}


def test_masked_lm_checkpoint_loads_under_the_pretraining_head(tmp_path):
    """BertForMaskedLM saves no pooler and no NSP head: both fresh, the MLM logits equal."""
    hf = _hf("BertForMaskedLM", TINY)
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning) as record:
        ours = from_pretrained(tmp_path, "pretraining").eval()
    assert _warned(record) == {f"{part} of BertForPreTraining is freshly initialised: the checkpoint has none"
                               for part in ("cls.seq_relationship", "bert.pooler")}
    ids, mask, types = _batch(TINY)
    with torch.no_grad():
        _assert_close(ours(ids, mask, types).prediction_logits, hf(ids, attention_mask=mask, token_type_ids=types).logits)


def test_head_of_another_size_is_reinitialised_with_warning(tmp_path):
    hf = _hf("BertForSequenceClassification", {**TINY, "num_labels": 5})
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"classifier has num_labels=5, the model's num_labels=3"):
        model = from_pretrained(tmp_path, "sequence_classification", num_labels=3).eval()
    assert model.classifier.weight.shape == (3, TINY["hidden_size"])
    ids, mask, types = _batch(TINY)
    with torch.no_grad():
        _assert_close(model.bert(ids, mask, types).pooler_output, hf.bert(ids, attention_mask=mask, token_type_ids=types).pooler_output)


def test_classifier_of_the_other_label_head_is_not_reused(tmp_path):
    hf = _hf("BertForTokenClassification", {**TINY, "num_labels": 3})
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning) as record:
        model = from_pretrained(tmp_path, "sequence_classification", num_labels=3)
    assert _warned(record) == {
        "classifier of BertForSequenceClassification is freshly initialised: config.json says its classifier "
        "belongs to ['BertForTokenClassification']",
        "bert.pooler of BertForSequenceClassification is freshly initialised: the checkpoint has none",  # token heads have none
    }
    assert not torch.equal(model.classifier.weight, hf.classifier.weight)
    with pytest.raises(ValueError, match="pass num_labels"):
        from_pretrained(tmp_path, "sequence_classification")


@pytest.mark.parametrize("head", ["base", *sorted(HEADS)])
def test_save_pretrained_loads_in_transformers(head, tmp_path):
    torch.manual_seed(0)
    config = bert.BertConfig.from_hf({**CONFIGS["deep-2heads-relu"], "classifier_dropout": 0.2}, source="test")
    ours = bert.HEADS[head].make(config, 3 if head.endswith("classification") else None).eval()
    _randomize(ours)
    labels = ["neg", "neutral", "pos"] if head.endswith("classification") else None
    save_pretrained(ours, tmp_path, label_names=labels)
    hf_cls = getattr(transformers, json.loads((tmp_path / "config.json").read_text())["architectures"][0])
    hf = hf_cls.from_pretrained(tmp_path).eval()
    if labels:
        assert hf.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    ids, mask, types = _batch(CONFIGS["deep-2heads-relu"])
    with torch.no_grad():
        got, expected = ours(ids, mask, types), hf(ids, attention_mask=mask, token_type_ids=types)
        if head == "base":
            _assert_close(got.last_hidden_state, expected.last_hidden_state)
            _assert_close(got.pooler_output, expected.pooler_output)
        else:
            for g, e in zip(_outputs(got), _hf_outputs(expected), strict=True):
                _assert_close(g, e)
    again = from_pretrained(tmp_path, head)  # ... and back into ours, bit for bit
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_key_maps_are_inverse():
    config = bert.PRESETS["bert-test"]
    for model in (bert.Bert(config), bert.BertForPreTraining(config), bert.BertForSequenceClassification(config, 3),
                  bert.BertForQuestionAnswering(config)):
        sd = model.state_dict()
        hf = bert.ours_to_hf(sd)
        back = bert.hf_to_ours(hf)
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    hf_names = set(bert.ours_to_hf(bert.BertForPreTraining(config).state_dict()))
    reference = set(transformers.BertForPreTraining(transformers.BertConfig(**config.to_hf())).state_dict())
    assert hf_names == reference - {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}


def test_config_round_trip_and_presets():
    config = bert.PRESETS["bert-base-uncased"]
    assert transformers.AutoConfig.for_model(**config.to_hf()).to_dict()["hidden_size"] == 768
    assert bert.BertConfig.from_hf(config.to_hf(), source="x") == config
    # The config.json of google-bert/bert-base-uncased, as written by transformers 4.6.
    hub = {"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
           "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
           "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
           "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
           "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522}
    assert bert.BertConfig.from_hf(hub, source="x") == config
    minilm = bert.PRESETS["all-minilm-l6-v2"]
    ours = sum(p.numel() for p in bert.Bert(minilm).parameters())
    assert ours == sum(p.numel() for p in transformers.BertModel(transformers.BertConfig(**minilm.to_hf())).parameters())


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"rotary_dim": 8}, r"cfg\.json: unknown or unsupported key\(s\) \['rotary_dim'\]"),
        ({"position_embedding_type": "relative_key"}, r"cfg\.json: key 'position_embedding_type' is 'relative_key'"),
        ({"hidden_act": "mish"}, r"cfg\.json: key 'hidden_act' is 'mish'"),
        ({"is_decoder": True}, r"cfg\.json: key 'is_decoder' is True"),
        ({"num_attention_heads": 5}, r"cfg\.json: key 'num_attention_heads' is 5"),
    ],
)
def test_config_errors_name_the_key(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        bert.BertConfig.from_hf({**TINY, **change}, source="cfg.json")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda t: t.pop("bert.encoder.layer.1.attention.self.key.weight"), r"missing \[bert\.encoder\.layer\.1\.attention\.self\.key\.weight\]"),
        (lambda t: t.update({"bert.encoder.layer.1.extra.weight": torch.zeros(2)}), r"unexpected \[bert\.encoder\.layer\.1\.extra\.weight\]"),
        (lambda t: t.update({"bert.pooler.dense.bias": torch.zeros(7)}), r"shape mismatch \[bert\.pooler\.dense\.bias: checkpoint \(7,\) vs model \(32,\)\]"),
        (lambda t: t.pop("classifier.bias"), r"missing \[classifier\.bias\]"),
    ],
)
def test_load_errors_name_the_tensors(change, pattern, tmp_path):
    _hf("BertForSequenceClassification", {**TINY, "num_labels": 2}).save_pretrained(tmp_path)
    _rewrite(tmp_path, change)
    with pytest.raises(LoadError, match=rf"{tmp_path}: the weights do not fit BertForSequenceClassification.*{pattern}"):
        from_pretrained(tmp_path, "sequence_classification")


def test_padding_does_not_change_real_tokens():
    model = bert.BertForTokenClassification(bert.PRESETS["bert-test"], 3).eval()
    _randomize(model)
    ids, mask, types = _batch(TINY, lengths=(9, 4))
    padded = _batch(TINY, lengths=(9, 4), pad_to=17)
    padded[0][:, 9:] = torch.randint(2, 99, (2, 8))  # junk under the mask: it must not leak into real tokens
    with torch.no_grad():
        short, long = model(ids, mask, types), model(*padded)
        pooled, pooled_long = model.bert(ids, mask, types).pooler_output, model.bert(*padded).pooler_output
    for b, n in enumerate((9, 4)):
        _assert_close(long[b, :n], short[b, :n])
    _assert_close(pooled_long, pooled)


def test_layer_index():
    model = bert.BertForSequenceClassification(bert.BertConfig.from_hf({**TINY, "num_hidden_layers": 3}, source="x"), 2)
    assert model.num_layers == 3
    depths = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert depths["bert.embeddings.word_embeddings.weight"] == depths["bert.embeddings.norm.bias"] == 0
    assert depths["bert.layers.0.attn.qkv.weight"] == 1 and depths["bert.layers.2.mlp_norm.bias"] == 3
    assert depths["bert.pooler.weight"] == depths["classifier.weight"] == 4
    assert set(depths.values()) == {0, 1, 2, 3, 4}


def test_bad_input_is_an_error():
    model = bert.Bert(bert.BertConfig.from_hf(TINY, source="x"))
    with pytest.raises(ValueError, match="41 tokens; max_position_embeddings is 40"):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match=r"of the same shape, got \[\(2, 5\), \(2, 4\)\]"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4))


def test_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    model = bert.BertForSequenceClassification(bert.PRESETS["bert-test"], 3)  # dropout 0.1 throughout
    ids, mask, types = _batch(TINY, lengths=(11, 7, 3, 9, 5, 10))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(ids, mask, types), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
