"""ConvNeXt: parity with HF `transformers` through our own loading code, and the backbone contract.

Parity tests build tiny random HF models, save them with `save_pretrained`, load the folder
with `lit_tasks.zoo.from_pretrained` and compare every output at atol 1e-5. The contract tests
need no `transformers`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import convnext
from lit_tasks.zoo.convnext import ConvNext, ConvNextConfig

ATOL = 1e-5

# Tiny configs that differ in every axis the implementation branches on.
PARITY_CONFIGS = {
    "2stages-p4-layerscale": dict(num_stages=2, depths=[1, 2], hidden_sizes=[8, 16], patch_size=4,
                                  layer_scale_init_value=1e-6, drop_path_rate=0.0),
    "3stages-p2-no-layerscale-droppath": dict(num_stages=3, depths=[2, 1, 1], hidden_sizes=[8, 12, 16], patch_size=2,
                                              layer_scale_init_value=0.0, drop_path_rate=0.3),
    "4stages-p4-layerscale-droppath": dict(num_stages=4, depths=[1, 1, 2, 1], hidden_sizes=[4, 8, 8, 16], patch_size=4,
                                           layer_scale_init_value=1e-6, drop_path_rate=0.2, layer_norm_eps=1e-6),
}
# Square, non-square, and sizes the strides do not divide (the maps are floored, as in HF).
INPUT_SIZES = [(64, 64), (64, 96), (50, 75)]


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def from_pretrained():
    from lit_tasks.zoo import from_pretrained

    return from_pretrained


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Random values for every parameter, so norms' affine terms, biases and layer scale all
    matter (at their init values - ones, zeros, 1e-6 - a mixed-up key could go unnoticed)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def _images(height: int, width: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_base_model_matches_hf(name, transformers, from_pretrained, tmp_path):
    hf_config = transformers.ConvNextConfig(**PARITY_CONFIGS[name])
    hf = transformers.ConvNextModel(hf_config).eval()
    _randomize(hf, seed=1)
    hf.save_pretrained(tmp_path)

    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, ConvNext)
    for height, width in INPUT_SIZES:
        x = _images(height, width)
        with torch.no_grad():
            expected = hf(x, output_hidden_states=True)
            got = ours(x, output_hidden_states=True)
        assert len(got.hidden_states) == len(expected.hidden_states) == hf_config.num_stages + 1
        for i, (a, b) in enumerate(zip(got.hidden_states, expected.hidden_states)):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=lambda m: f"hidden_states[{i}] at {height}x{width}: {m}")
        torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
        torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=ATOL, rtol=0)
        torch.testing.assert_close(ours.forward_pooled(x), expected.pooler_output, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_classifier_matches_hf(name, transformers, from_pretrained, tmp_path):
    hf_config = transformers.ConvNextConfig(**PARITY_CONFIGS[name], num_labels=5)
    hf = transformers.ConvNextForImageClassification(hf_config).eval()
    _randomize(hf, seed=2)
    hf.save_pretrained(tmp_path)

    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours.backbone, ConvNext) and ours.num_classes == 5
    for height, width in INPUT_SIZES:
        x = _images(height, width, seed=3)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), hf(x).logits, atol=ATOL, rtol=0)


def test_our_saved_folder_loads_in_hf(transformers, tmp_path):
    from lit_tasks.zoo import ImageClassifier, save_pretrained

    config = ConvNextConfig(**PARITY_CONFIGS["3stages-p2-no-layerscale-droppath"])
    ours = ImageClassifier(ConvNext(config), num_classes=4).eval()
    _randomize(ours, seed=4)
    save_pretrained(ours, tmp_path)

    hf = transformers.ConvNextForImageClassification.from_pretrained(tmp_path).eval()
    x = _images(64, 96, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), atol=ATOL, rtol=0)


def test_key_maps_cover_the_hf_model_and_invert(transformers):
    config = ConvNextConfig.from_hf(transformers.ConvNextConfig(**PARITY_CONFIGS["4stages-p4-layerscale-droppath"]).to_dict(), "test")
    hf_sd = transformers.ConvNextModel(transformers.ConvNextConfig(**config.to_hf())).state_dict()
    ours_sd = ConvNext(config).state_dict()

    mapped = convnext.hf_to_ours(hf_sd)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours_sd.items()}
    assert convnext.ours_to_hf(mapped).keys() == hf_sd.keys()
    assert convnext.hf_to_ours(convnext.ours_to_hf(ours_sd)).keys() == ours_sd.keys()
    assert all(convnext.ours_to_hf(mapped)[k] is v for k, v in hf_sd.items())


def test_tiny_preset_mirrors_hf_convnext_tiny(transformers):
    # HF's ConvNextConfig defaults are facebook/convnext-tiny-224's values.
    hf_config = transformers.ConvNextConfig()
    read = ConvNextConfig.from_hf(hf_config.to_dict(), "hf defaults")
    backbone_fields = dict(stage_names=None, out_features=None, out_indices=None)
    assert dataclasses.replace(read, **backbone_fields) == convnext.PRESETS["convnext-tiny-224"]

    with torch.device("meta"):
        ours = convnext.ours_to_hf(ConvNext(read).state_dict())
        hf = transformers.ConvNextModel(hf_config).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in hf.items()}
    assert sum(v.numel() for v in ours.values()) == 27_820_128  # ConvNeXt-T without its 1000-class head


@pytest.mark.parametrize("config", [*convnext.PRESETS.values(), ConvNextConfig(**PARITY_CONFIGS["3stages-p2-no-layerscale-droppath"])],
                         ids=[*convnext.PRESETS, "parity-config"])
def test_config_round_trips_through_hf(config, transformers):
    d = config.to_hf()
    assert d["model_type"] == "convnext"
    hf_dict = transformers.ConvNextConfig(**d).to_dict()
    assert ConvNextConfig.from_hf(d, "ours") == config
    read = ConvNextConfig.from_hf(hf_dict, "hf")
    assert dataclasses.replace(read, stage_names=None, out_features=None, out_indices=None) == config


# ---------------------------------------------------------------- contract (no transformers)

def _test_model(**overrides) -> ConvNext:
    torch.manual_seed(0)
    config = dataclasses.replace(convnext.PRESETS["convnext-test"], **overrides)
    return ConvNext(config)


@pytest.mark.parametrize("overrides", [{}, dict(num_stages=3, depths=(1, 1, 2), hidden_sizes=(4, 8, 12), patch_size=2)])
def test_feature_info_matches_forward_features(overrides):
    model = _test_model(**overrides)
    x = _images(64, 96)
    features = model.forward_features(x)  # by default every stage
    assert len(features) == len(model.feature_info) - 1 == model.config.num_stages
    for feature, info in zip(features, model.feature_info[1:]):
        assert feature.shape == (2, info.channels, 64 // info.stride, 96 // info.stride)
    hidden = model(x, output_hidden_states=True).hidden_states  # (stem, stage 1, ...)
    for level in range(len(hidden)):
        torch.testing.assert_close(model.forward_features(x, [level])[0], hidden[level])
    assert model.num_features == model.feature_info[-1].channels
    assert model(x).pooler_output.shape == (2, model.num_features)
    torch.testing.assert_close(model(x).last_hidden_state, features[-1])


def test_layer_index_orders_every_parameter():
    model = _test_model(num_stages=3, depths=(2, 1, 3), hidden_sizes=(4, 8, 12))
    assert model.num_layers == 6
    index = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    # Parameters are registered input to output, so indices never decrease along them.
    assert list(index.values()) == sorted(index.values())
    assert set(index.values()) == set(range(model.num_layers + 2))
    assert index["stem.conv.weight"] == 0
    assert index["stages.0.blocks.1.dwconv.weight"] == 2
    assert index["stages.1.downsample.conv.weight"] == index["stages.1.blocks.0.pwconv1.weight"] == 3
    assert index["stages.2.downsample.norm.bias"] == 4
    assert index["stages.2.blocks.2.gamma"] == 6
    assert index["norm.weight"] == model.num_layers + 1
    with pytest.raises(ValueError, match="'classifier.weight'"):
        model.layer_index("classifier.weight")


def test_loss_decreases_on_one_batch():
    model = _test_model(drop_path_rate=0.1)
    head = torch.nn.Linear(model.num_features, 3)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    x, y = _images(32, 48, batch=6), torch.tensor([0, 1, 2, 0, 1, 2])
    model.eval()  # deterministic loss to compare; gradients flow the same through eval-mode layers
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(head(model.forward_pooled(x)), y)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in params)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_drop_path_is_random_in_training_and_off_in_eval():
    model = _test_model(drop_path_rate=0.5, layer_scale_init_value=1.0)
    x = _images(32, 32, batch=8)
    model.train()
    torch.manual_seed(0)
    first = model(x).pooler_output
    second = model(x).pooler_output
    assert not torch.allclose(first, second)
    model.eval()
    torch.testing.assert_close(model(x).pooler_output, model(x).pooler_output, atol=0, rtol=0)
    assert [b.drop_path_rate for s in model.stages for b in s.blocks] == pytest.approx([0.0, 0.25, 0.5])


def test_init_follows_the_config():
    model = _test_model(layer_scale_init_value=1e-3, initializer_range=0.05)
    weights = model.stages[1].blocks[0].pwconv1.weight
    assert weights.abs().max() <= 0.1 and 0.03 < weights.std() < 0.06
    assert torch.all(model.stages[1].blocks[0].pwconv1.bias == 0)
    assert torch.all(model.stages[1].blocks[1].gamma == 1e-3)
    assert torch.all(model.stem.norm.weight == 1) and torch.all(model.norm.bias == 0)
    assert _test_model(layer_scale_init_value=0.0).stages[0].blocks[0].gamma is None


def test_any_input_size_down_to_the_minimum():
    model = _test_model(patch_size=2)  # 2 stages: stride 4 at the last one
    assert model.config.min_input_size == 4
    assert model(_images(4, 7)).last_hidden_state.shape == (2, 16, 1, 1)
    with pytest.raises(ValueError, match=r"3x7 pixels is too small.*at least 4"):
        model(_images(3, 7))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(2, 1, 8, 8\)"):
        model(torch.zeros(2, 1, 8, 8))


def test_config_errors_name_source_and_key():
    good = convnext.PRESETS["convnext-test"].to_hf()
    with pytest.raises(ConfigError, match=r"some/config\.json.*'use_grn'"):
        ConvNextConfig.from_hf({**good, "use_grn": True}, "some/config.json")
    with pytest.raises(ConfigError, match=r"some/config\.json.*'hidden_act' is 'relu'"):
        ConvNextConfig.from_hf({**good, "hidden_act": "relu"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"some/config\.json.*'depths' has 3 entries, expected num_stages = 2"):
        ConvNextConfig.from_hf({**good, "depths": [1, 1, 1]}, "some/config.json")
    with pytest.raises(ConfigError, match=r"some/config\.json.*'model_type' is 'convnextv2'"):
        ConvNextConfig.from_hf({**good, "model_type": "convnextv2"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'patch_size' is \(4, 4\)"):
        ConvNextConfig.from_hf({**good, "patch_size": [4, 4]}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'stage_names'"):
        ConvNextConfig.from_hf({**good, "stage_names": ["stem", "stage1"]}, "some/config.json")


@pytest.mark.parametrize("out_features", [None, ["stage1", "stage2", "stage3", "stage4"], ["stem", "stage2", "stage4"]])
def test_hf_backbone_folder_loads_with_its_stage_norms(out_features, transformers, from_pretrained, tmp_path):
    """An HF `ConvNextBackbone` folder (per-stage LayerNorms on its out_features, no pooling norm)
    gives the same feature maps through forward_features, and saves back as a ConvNextBackbone."""
    from lit_tasks.zoo import save_pretrained

    config = dict(PARITY_CONFIGS["4stages-p4-layerscale-droppath"], out_features=out_features)
    hf = transformers.ConvNextBackbone(transformers.ConvNextConfig(**config)).eval()
    _randomize(hf, seed=6)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf").eval()
    assert isinstance(ours, ConvNext) and set(ours.out_norms) == set(hf.out_features)
    x = _images(64, 96, seed=7)
    with torch.no_grad():
        expected = hf(x).feature_maps
        got = ours.forward_features(x)
    assert len(got) == len(expected) == len(hf.out_features)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="ConvNextBackbone"):
        ours.forward_pooled(x)
    save_pretrained(ours, tmp_path / "ours")
    again = transformers.ConvNextBackbone.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        for a, b in zip(again(x).feature_maps, expected):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
