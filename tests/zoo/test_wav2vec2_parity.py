"""wav2vec 2.0: parity with HF transformers (tiny random models) and the model contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo import from_pretrained, save_pretrained
from lit_tasks.zoo import wav2vec2 as w2v
from lit_tasks.zoo import wav2vec2_pretraining as pre

transformers = pytest.importorskip("transformers")
hf_w2v = pytest.importorskip("transformers.models.wav2vec2.modeling_wav2vec2")

TINY = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=[8, 8, 8],
    conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    num_codevector_groups=2, num_codevectors_per_group=6, codevector_dim=8, proj_codevector_dim=8, num_negatives=4,
    mask_time_prob=0.3, mask_time_length=2, vocab_size=10, classifier_proj_size=6,
)
# Both feature-encoder norms x both encoder layouts; odd/even position-conv kernels.
VARIANTS = {
    "group-postln": dict(feat_extract_norm="group", do_stable_layer_norm=False),
    "layer-preln": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    "group-preln-oddpos": dict(feat_extract_norm="group", do_stable_layer_norm=True, num_conv_pos_embeddings=15),
    "layer-postln": dict(feat_extract_norm="layer", do_stable_layer_norm=False, num_hidden_layers=3),
}
SAMPLES = 800  # 0.05 s at 16 kHz -> 39 frames
POS_CONV = "encoder.pos_conv_embed.conv."


def _hf_config(variant: str, **kwargs):
    return transformers.Wav2Vec2Config(**{**TINY, **VARIANTS[variant], **kwargs})


def _randomize(model: torch.nn.Module) -> None:
    """HF inits norms to (1, 0) and biases to 0; random values make the test able to fail on them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3 if p.ndim == 1 else 0.2)


def _audio(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) audio and a right-padded (B, L) mask: row 1 has 571 real samples (27 of 39 frames)."""
    x = torch.randn(batch, SAMPLES, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, SAMPLES, dtype=torch.long)
    mask[1, 571:] = 0
    return x, mask


def _hf_roundtrip(hf_model, tmp_path, head: str, **kwargs):
    hf_model.eval()
    _randomize(hf_model)
    hf_model.save_pretrained(tmp_path)
    return from_pretrained(tmp_path, head, **kwargs).eval()


def _close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_base_model_matches_transformers(variant, tmp_path):
    hf = transformers.Wav2Vec2Model(_hf_config(variant))
    ours = _hf_roundtrip(hf, tmp_path, "base")
    assert isinstance(ours, w2v.Wav2Vec2)
    x, mask = _audio()
    frames = int(ours.output_lengths(torch.tensor(SAMPLES)))
    spans = torch.zeros(2, frames, dtype=torch.bool)
    spans[0, 3:6] = spans[1, 10:12] = True
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": mask}, {"attention_mask": mask, "mask_time_indices": spans}):
            expected = hf(x, output_hidden_states=True, **kwargs)
            got = ours(x, output_hidden_states=True, **kwargs)
            assert len(got.hidden_states) == len(expected.hidden_states) == hf.config.num_hidden_layers + 1
            for g, e in zip(got.hidden_states, expected.hidden_states):
                _close(g, e)
            _close(got.last_hidden_state, expected.last_hidden_state)
            _close(got.extract_features, expected.extract_features)
    assert got.frame_mask.sum(-1).tolist() == [39, 27]


@pytest.mark.parametrize("variant", ["group-postln", "layer-preln"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ctc_matches_transformers(variant, reduction, tmp_path):
    hf = transformers.Wav2Vec2ForCTC(_hf_config(variant, ctc_loss_reduction=reduction))
    ours = _hf_roundtrip(hf, tmp_path, "ctc")
    x, mask = _audio()
    labels = torch.tensor([[3, 4, 4, 5, 9, 1], [2, 7, 8, 0, 0, -100]])  # padded with blank (0) or -100
    with torch.no_grad():
        expected = hf(x, attention_mask=mask, labels=labels)
        logits = ours(x, mask)
        loss = w2v.ctc_loss(logits, ours.wav2vec2.output_lengths(mask.sum(-1)), labels,
                            blank=ours.config.pad_token_id, reduction=reduction)
    _close(logits, expected.logits)
    _close(loss, expected.loss, atol=1e-4)  # a sum over ~40 frames of float32 log-probs


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("variant", ["group-postln", "layer-preln"])
def test_sequence_classification_matches_transformers(variant, weighted, tmp_path):
    hf = transformers.Wav2Vec2ForSequenceClassification(_hf_config(variant, num_labels=5, use_weighted_layer_sum=weighted))
    ours = _hf_roundtrip(hf, tmp_path, "classification")
    assert ours.classifier.out_features == 5 and hasattr(ours, "layer_weights") == weighted
    x, mask = _audio()
    with torch.no_grad():
        _close(ours(x, mask), hf(x, attention_mask=mask).logits)
        _close(ours(x), hf(x).logits)
        if variant == "layer-preln":  # GroupNorm (conv 0 of "group") normalises over padding too
            # Pooling reads real frames only: changing the padded audio does not change row 1.
            noisy = x.clone()
            noisy[1, 571:] = 5.0
            _close(ours(noisy, mask)[1], ours(x, mask)[1])


@pytest.mark.parametrize("variant", ["group-postln", "layer-preln"])
def test_pretraining_matches_transformers(variant, tmp_path):
    hf = transformers.Wav2Vec2ForPreTraining(_hf_config(variant, num_codevectors_per_group=3))
    ours = _hf_roundtrip(hf, tmp_path, "pretraining")
    x, mask = _audio()
    frames = int(ours.wav2vec2.output_lengths(torch.tensor(SAMPLES)))
    np.random.seed(0)
    frame_mask = ours.wav2vec2.frame_mask(mask, frames)
    spans = hf_w2v._compute_mask_indices((2, frames), 0.4, 2, attention_mask=frame_mask, min_masks=2)
    negatives = hf_w2v._sample_negative_indices((2, frames), hf.config.num_negatives, spans)
    spans, negatives = torch.tensor(spans), torch.tensor(negatives, dtype=torch.long)
    with torch.no_grad():
        expected = hf(x, attention_mask=mask, mask_time_indices=spans, sampled_negative_indices=negatives)
        got = ours(x, mask, spans)
        loss, l_m, l_d = pre.pretraining_loss(got, spans, negatives, ours.config)
    _close(got.projected_states, expected.projected_states)
    _close(got.projected_quantized_states, expected.projected_quantized_states)
    _close(got.codevector_perplexity, expected.codevector_perplexity)
    # Losses are sums over the masked frames (~20 here): 1e-4 absolute.
    _close(l_m, expected.contrastive_loss, atol=1e-4)
    _close(l_d, expected.diversity_loss, atol=1e-4)
    _close(loss, expected.loss, atol=1e-4)
    # 3 codewords per group and few frames: some distractors equal the positive (masked to -inf).
    assert torch.isfinite(loss)


def test_legacy_weight_norm_spelling_loads(tmp_path):
    hf = transformers.Wav2Vec2ForCTC(_hf_config("group-postln")).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    key = "wav2vec2." + POS_CONV
    assert key + "parametrizations.weight.original0" in sd  # what transformers 5 writes
    sd[key + "weight_g"] = sd.pop(key + "parametrizations.weight.original0")
    sd[key + "weight_v"] = sd.pop(key + "parametrizations.weight.original1")
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = from_pretrained(tmp_path, "ctc").eval()
    x, mask = _audio()
    with torch.no_grad():
        _close(ours(x, mask), hf(x, attention_mask=mask).logits)


@pytest.mark.parametrize("head", ["base", "ctc", "classification", "pretraining"])
def test_save_pretrained_loads_in_transformers(head, tmp_path):
    torch.manual_seed(0)
    config = w2v.Wav2Vec2Config.from_hf({**TINY, **VARIANTS["layer-preln"], "use_weighted_layer_sum": True}, source="t")
    ours = w2v.HEADS[head].make(config, {"classification": 3, "ctc": config.vocab_size}.get(head))
    _randomize(ours)
    ours.eval()
    save_pretrained(ours, tmp_path, label_names=["a", "b", "c"] if head == "classification" else None)
    hf_class = getattr(transformers, w2v.HEADS[head].architecture)
    hf = hf_class.from_pretrained(tmp_path).eval()
    x, mask = _audio()
    with torch.no_grad():
        if head == "base":
            _close(ours(x, mask).last_hidden_state, hf(x, attention_mask=mask).last_hidden_state)
        elif head == "pretraining":
            _close(ours(x, mask).projected_quantized_states, hf(x, attention_mask=mask).projected_quantized_states)
            _close(ours(x, mask).projected_states, hf(x, attention_mask=mask).projected_states)
        else:
            _close(ours(x, mask), hf(x, attention_mask=mask).logits)
    if head == "classification":
        assert hf.config.id2label == {0: "a", 1: "b", 2: "c"}
    again = from_pretrained(tmp_path, head)
    assert again.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(a, ours.state_dict()[k]) for k, a in again.state_dict().items())


def test_key_maps_are_inverse(tmp_path):
    hf = transformers.Wav2Vec2ForPreTraining(_hf_config("group-postln"))
    hf_sd = hf.state_dict()
    model = pre.Wav2Vec2ForPreTraining(w2v.Wav2Vec2(w2v.Wav2Vec2Config.from_hf(hf.config.to_dict(), source="t")))
    ours_sd = model.state_dict()
    assert w2v.hf_to_ours(hf_sd).keys() == ours_sd.keys()  # our names are transformers 5's
    assert w2v.ours_to_hf(w2v.hf_to_ours(hf_sd)).keys() == hf_sd.keys()
    back = w2v.hf_to_ours(w2v.ours_to_hf(ours_sd))
    assert back.keys() == ours_sd.keys() and all(torch.equal(back[k], ours_sd[k]) for k in ours_sd)


def test_config_round_trip_and_presets():
    hf_keys = set(transformers.Wav2Vec2Config().to_dict())
    for name, config in w2v.PRESETS.items():
        d = config.to_hf()
        assert set(d) <= hf_keys, (name, set(d) - hf_keys)
        hf = transformers.AutoConfig.for_model(**d)
        assert w2v.Wav2Vec2Config.from_hf(hf.to_dict(), source=name) == config
    base, large = w2v.PRESETS["wav2vec2-base"], w2v.PRESETS["wav2vec2-large-lv60"]
    assert (base.hidden_size, base.feat_extract_norm, base.do_stable_layer_norm) == (768, "group", False)
    assert (large.hidden_size, large.feat_extract_norm, large.do_stable_layer_norm) == (1024, "layer", True)
    # An HF default config maps to our defaults; its id2label gives num_labels.
    assert w2v.Wav2Vec2Config.from_hf(transformers.Wav2Vec2Config(num_labels=7).to_dict(), source="x").num_labels == 7
    # fairseq-era keys transformers never reads are accepted.
    assert w2v.Wav2Vec2Config.from_hf({"mask_channel_prob": 0.0, "gradient_checkpointing": True}, source="x") == w2v.Wav2Vec2Config()


@pytest.mark.parametrize(
    ("update", "pattern"),
    [
        ({"add_adapter": True}, r"cfg\.json.*'add_adapter'.*adapter"),
        ({"adapter_attn_dim": 16}, r"cfg\.json.*'adapter_attn_dim'"),
        ({"architectures": ["Wav2Vec2ForXVector"]}, r"cfg\.json.*'architectures'.*Wav2Vec2ForXVector"),
        ({"feat_extract_norm": "batch"}, r"cfg\.json.*'feat_extract_norm'.*'batch'"),
        ({"hidden_act": "mish"}, r"cfg\.json.*'hidden_act'.*'mish'"),
        ({"conv_kernel": [10, 3]}, r"cfg\.json.*'conv_kernel'"),
        ({"conv_sizes": [1]}, r"cfg\.json.*unknown or unsupported key.*'conv_sizes'"),
    ],
)
def test_unsupported_config_is_named(update, pattern):
    with pytest.raises(ConfigError, match=pattern):
        w2v.Wav2Vec2Config.from_hf({**TINY, **update}, source="cfg.json")


def _test_model(**overrides) -> w2v.Wav2Vec2:
    torch.manual_seed(0)
    return w2v.Wav2Vec2(dataclasses.replace(w2v.PRESETS["wav2vec2-test"], **overrides))


def test_spec_augment_only_in_training():
    quiet = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0)
    time_only = _test_model(**quiet, mask_time_prob=0.5)
    channels_only = _test_model(**quiet, mask_time_prob=0.0, mask_feature_prob=0.3, mask_feature_length=4)
    h = torch.randn(4, 39, 32)
    for model in (time_only, channels_only):
        assert torch.equal(model.eval().spec_augment(h, None, None), h)
    masked = time_only.train().spec_augment(h, None, None)
    replaced = (masked == time_only.masked_spec_embed).all(-1)  # (B, T)
    assert replaced.any() and torch.equal(masked[~replaced], h[~replaced])
    masked = channels_only.train().spec_augment(h, None, None)
    zeroed = (masked == 0).all(1)  # (B, D) channels zeroed on every frame
    assert zeroed.any() and torch.equal(masked.transpose(1, 2)[~zeroed], h.transpose(1, 2)[~zeroed])
    # Whole model: deterministic in eval, masked (so different) in training.
    x = torch.randn(4, SAMPLES)
    with torch.no_grad():
        assert torch.equal(time_only.eval()(x).last_hidden_state, time_only(x).last_hidden_state)
        assert not torch.allclose(time_only.train()(x).last_hidden_state, time_only.eval()(x).last_hidden_state)
    off = _test_model(**quiet, mask_time_prob=0.5, apply_spec_augment=False).train()
    assert torch.equal(off.spec_augment(h, None, None), h)


def test_span_mask_respects_lengths():
    torch.manual_seed(0)
    mask = w2v.span_mask((3, 50), 0.3, 4, min_spans=2, lengths=torch.tensor([50, 20, 5]))
    assert mask[1, 20:].sum() == 0 and mask[2, 5:].sum() == 0 and (mask.sum(-1) >= 4).all()


def test_sample_negatives_are_other_masked_frames():
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, 2:12] = mask[1, 20:25] = True
    negatives = pre.sample_negatives(mask, 7, torch.Generator().manual_seed(0))
    for b in range(2):
        for t in mask[b].nonzero().flatten().tolist():
            picked = negatives[b, t] - b * 30
            assert mask[b, picked].all() and (picked != t).all()


def test_freeze_feature_encoder_freezes_exactly_the_convs():
    model = w2v.Wav2Vec2ForCTC(_test_model())
    model.freeze_feature_encoder()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters() if name.startswith("wav2vec2.feature_extractor.")}
    assert frozen


def test_head_of_other_size_is_reinitialised_with_warning(tmp_path):
    hf = transformers.Wav2Vec2ForCTC(_hf_config("group-postln"))
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"vocab_size=10.*vocab_size=14"):
        ours = from_pretrained(tmp_path, "ctc", num_labels=14)
    assert ours.lm_head.out_features == 14 and ours.config.vocab_size == 14
    base = from_pretrained(tmp_path, "base")  # the lm_head is dropped (logged), the base loads
    assert torch.equal(base.encoder.layers[0].attention.qkv.weight, ours.wav2vec2.encoder.layers[0].attention.qkv.weight)
    with pytest.warns(UserWarning) as record:  # every part of a head the checkpoint lacks is fresh, with a warning
        from_pretrained(tmp_path, "classification", num_labels=3)
    assert {str(w.message).split(": ", 1)[1] for w in record} == {
        f"{part} of Wav2Vec2ForSequenceClassification is freshly initialised: the checkpoint has none"
        for part in ("projector", "classifier")}


def test_strict_loading_names_the_key(tmp_path):
    hf = transformers.Wav2Vec2Model(_hf_config("group-postln"))
    hf.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    del sd["encoder.layers.1.attention.k_proj.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadError, match=r"missing \[encoder\.layers\.1\.attention\.k_proj\.bias\].*unexpected \[encoder\.extra\.weight\]"):
        from_pretrained(tmp_path)


def test_ctc_loss_decreases_on_one_batch():
    model = w2v.Wav2Vec2ForCTC(_test_model(mask_time_prob=0.0))
    model.freeze_feature_encoder()
    x, mask = _audio(batch=2)
    labels = torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(15):
        logits = model(x, mask)
        loss = w2v.ctc_loss(logits, model.wav2vec2.output_lengths(mask.sum(-1)), labels, reduction="mean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_pretraining_step_in_training_mode():
    """Gumbel quantizer, our span masks and negatives: a finite loss whose gradient reaches
    the codebook, the quantizer logits and the conv encoder."""
    model = pre.Wav2Vec2ForPreTraining(_test_model(mask_time_prob=0.4)).train()
    model.set_gumbel_temperature(1.5)
    x, mask = _audio()
    frame_mask = model.wav2vec2.frame_mask(mask, int(model.wav2vec2.output_lengths(torch.tensor(SAMPLES))))
    spans = w2v.span_mask(frame_mask.shape, 0.4, 2, min_spans=2, lengths=frame_mask.sum(-1))
    out = model(x, mask, spans)
    loss, l_m, l_d = pre.pretraining_loss(out, spans, pre.sample_negatives(spans, 5), model.config)
    loss.backward()
    assert torch.isfinite(loss) and l_m > 0 and 0 <= l_d <= spans.sum()
    assert model.quantizer.temperature == 1.5
    for p in (model.quantizer.codevectors, model.quantizer.weight_proj.weight, model.wav2vec2.feature_extractor.conv_layers[0].conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
