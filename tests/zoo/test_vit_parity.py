"""ViT: parity with HF transformers (tiny random models) and the backbone contract."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import ImageClassifier, build, from_pretrained, save_pretrained, vit
from lit_tasks.zoo.base import FeatureInfo

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)
CONFIGS = {
    "tiny": TINY,
    "deep-2heads-no-qkv-bias": {**TINY, "num_hidden_layers": 3, "num_attention_heads": 2, "qkv_bias": False},
    "non-square-eps": {**TINY, "image_size": [32, 48], "layer_norm_eps": 1e-6, "num_channels": 1},
}


def _hf_config(**kwargs):
    return transformers.ViTConfig(**kwargs)


def _randomize(model: torch.nn.Module) -> None:
    """HF inits LN to (1, 0) and biases to 0; random values make the test able to fail on them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.ndim == 1 else 0.1)


def _pixels(config: dict, size: tuple[int, int] | None = None, batch: int = 2) -> torch.Tensor:
    image = config["image_size"]
    height, width = size or ((image, image) if isinstance(image, int) else tuple(image))
    return torch.randn(batch, config.get("num_channels", 3), height, width, generator=torch.Generator().manual_seed(0))


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_base_model_matches_transformers(name, tmp_path):
    config = CONFIGS[name]
    hf = transformers.ViTModel(_hf_config(**config), add_pooling_layer=True).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()  # the pooler is dropped with a note
    assert isinstance(ours, vit.ViT)
    x = _pixels(config)
    with torch.no_grad():
        expected = hf(x, output_hidden_states=True)
        got = ours(x, output_hidden_states=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == config["num_hidden_layers"] + 1
    for g, e in zip(got.hidden_states, expected.hidden_states):
        _assert_close(g, e)
    _assert_close(got.last_hidden_state, expected.last_hidden_state)
    _assert_close(got.pooler_output, expected.last_hidden_state[:, 0])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_classifier_matches_transformers(name, tmp_path):
    config = CONFIGS[name]
    hf = transformers.ViTForImageClassification(_hf_config(**config, num_labels=7)).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, ImageClassifier) and ours.num_classes == 7
    x = _pixels(config)
    with torch.no_grad():
        _assert_close(ours(x), hf(x).logits)


@pytest.mark.parametrize("size", [(48, 48), (24, 40)])
def test_interpolated_position_embeddings_match_transformers(size, tmp_path):
    hf = transformers.ViTForImageClassification(_hf_config(**TINY, num_labels=3)).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    x = _pixels(TINY, size)
    with torch.no_grad():
        expected = hf(x, interpolate_pos_encoding=True, output_hidden_states=True)
        _assert_close(ours(x), expected.logits)
        _assert_close(ours.backbone(x, output_hidden_states=True).hidden_states[0], expected.hidden_states[0])


def test_save_pretrained_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    ours = build("vit-test", "classification", {"image_size": [32, 48], "qkv_bias": False}, num_labels=4).eval()
    _randomize(ours)
    save_pretrained(ours, tmp_path, label_names=["a", "b", "c", "d"], preprocessor={"image_mean": [0.5] * 3})
    hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == "ViTForImageClassification"
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    x = _pixels({"image_size": [32, 48]})
    with torch.no_grad():
        _assert_close(hf(x).logits, ours(x))
    # ... and back into ours, bit for bit.
    again = from_pretrained(tmp_path).eval()
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_key_maps_are_inverse():
    sd = build("vit-test", overrides={"num_hidden_layers": 3}).state_dict()
    hf = vit.ours_to_hf(sd)
    assert "encoder.layer.2.attention.attention.value.weight" in hf and "pooler.dense.weight" not in hf
    back = vit.hf_to_ours(hf)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_config_round_trip_and_presets():
    config = vit.PRESETS["vit-base-patch16-224"]
    assert transformers.AutoConfig.for_model(**config.to_hf()).to_dict()["hidden_size"] == 768
    hf_keys = set(transformers.ViTConfig().to_dict())
    assert {f for f in config.to_hf() if f != "model_type"} <= hf_keys
    assert vit.ViTConfig.from_hf(config.to_hf(), source="x") == config


def test_unsupported_activation_is_named():
    with pytest.raises(ConfigError, match=r"cfg\.json.*hidden_act.*'relu'"):
        vit.ViTConfig.from_hf({**TINY, "hidden_act": "relu"}, source="cfg.json")


def test_features_and_layer_index():
    model = build("vit-test", overrides={"num_hidden_layers": 3}).eval()
    assert model.feature_info == [FeatureInfo(32, 8)] * 4 and model.num_features == 32 and model.num_layers == 3
    x = torch.randn(2, 3, 40, 56)
    (features,) = model.forward_features(x)  # by default the last block's, after the final norm
    assert features.shape == (2, 32, 5, 7)
    out = model(x, output_hidden_states=True)
    torch.testing.assert_close(features[:, :, 1, 2], out.last_hidden_state[:, 1 + 1 * 7 + 2])
    first, middle = model.forward_features(x, out_indices=[0, 2])  # embeddings, block 2: final norm applied
    torch.testing.assert_close(middle[:, :, 1, 2], model.layernorm(out.hidden_states[2])[:, 1 + 1 * 7 + 2])
    torch.testing.assert_close(first[:, :, 4, 6], model.layernorm(out.hidden_states[0])[:, 1 + 4 * 7 + 6])
    depths = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert depths["embeddings.cls_token"] == depths["embeddings.projection.weight"] == 0
    assert depths["layers.0.attn.qkv.weight"] == 1 and depths["layers.2.mlp.fc2.bias"] == 3
    assert depths["layernorm.weight"] == 4
    assert set(depths.values()) == {0, 1, 2, 3, 4}


def test_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    model = build("vit-test", "classification", {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}, num_labels=3)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
