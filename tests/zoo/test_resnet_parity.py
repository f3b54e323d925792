"""ResNet: parity with HF `transformers` through our own loading code, frozen batch norm, and the
backbone contract.

Parity tests build tiny random HF models (every parameter and batch-norm statistic random), save
them with `save_pretrained`, load the folder with `lit_tasks.zoo.from_pretrained` and compare
every output in eval mode at atol 1e-5. The other tests need no `transformers`.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import resnet
from lit_tasks.zoo.resnet import FrozenBatchNorm2d, ResNet, ResNetClassifier, ResNetConfig, freeze_batch_norm

ATOL = 1e-5

# Tiny configs that differ in every axis the implementation branches on.
PARITY_CONFIGS = {
    "basic": dict(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[2, 1, 2], layer_type="basic"),
    "basic-downsample-first-silu": dict(embedding_size=6, hidden_sizes=[8, 12], depths=[1, 2], layer_type="basic",
                                        downsample_in_first_stage=True, hidden_act="silu"),
    "bottleneck": dict(embedding_size=8, hidden_sizes=[16, 24, 32, 32], depths=[2, 1, 1, 2], layer_type="bottleneck"),
    "bottleneck-stride-in-1x1-gelu": dict(embedding_size=4, hidden_sizes=[8, 16, 16], depths=[1, 2, 1],
                                          layer_type="bottleneck", downsample_in_bottleneck=True,
                                          downsample_in_first_stage=True, hidden_act="gelu"),
}
# Square, non-square, and sizes the strides do not divide (the maps are floored as in HF).
INPUT_SIZES = [(64, 64), (64, 96), (50, 75)]
BACKBONE_FIELDS = dict(stage_names=None, out_features=None, out_indices=None)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def from_pretrained():
    from lit_tasks.zoo import from_pretrained

    return from_pretrained


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter and batch-norm statistic (at their init values - ones,
    zeros - a mixed-up key could go unnoticed). Weights are scaled by 1/sqrt(fan-in) so the
    activations keep their size through the stages and float32 round-off stays far below ATOL."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            leaf = name.rpartition(".")[2]
            if leaf == "num_batches_tracked":
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if tensor.ndim > 1:
                tensor.copy_(noise / math.sqrt(tensor[0].numel()))
            elif leaf in ("running_var", "weight"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:  # biases and running means
                tensor.copy_(0.3 * noise)


def _images(height: int, width: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_base_model_matches_hf(name, transformers, from_pretrained, tmp_path):
    hf_config = transformers.ResNetConfig(**PARITY_CONFIGS[name])
    hf = transformers.ResNetModel(hf_config).eval()
    randomize(hf, seed=1)
    hf.save_pretrained(tmp_path)

    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, ResNet)
    for height, width in INPUT_SIZES:
        x = _images(height, width)
        with torch.no_grad():
            expected = hf(x, output_hidden_states=True)
            got = ours(x, output_hidden_states=True)
        assert len(got.hidden_states) == len(expected.hidden_states) == len(hf_config.depths) + 1
        for i, (a, b) in enumerate(zip(got.hidden_states, expected.hidden_states)):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0,
                                       msg=lambda m: f"hidden_states[{i}] at {height}x{width}: {m}")
        torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
        torch.testing.assert_close(got.pooler_output, expected.pooler_output.flatten(1), atol=ATOL, rtol=0)
        torch.testing.assert_close(ours.forward_pooled(x), expected.pooler_output.flatten(1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["basic", "bottleneck-stride-in-1x1-gelu"])
def test_classifier_matches_hf(name, transformers, from_pretrained, tmp_path):
    hf_config = transformers.ResNetConfig(**PARITY_CONFIGS[name], num_labels=5)
    hf = transformers.ResNetForImageClassification(hf_config).eval()
    randomize(hf, seed=2)
    hf.save_pretrained(tmp_path)

    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, ResNetClassifier) and isinstance(ours.backbone, ResNet) and ours.num_classes == 5
    for height, width in INPUT_SIZES:
        x = _images(height, width, seed=3)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), hf(x).logits, atol=ATOL, rtol=0)


def test_our_saved_folders_load_in_hf(transformers, tmp_path):
    from lit_tasks.zoo import build, save_pretrained

    config = ResNetConfig(**PARITY_CONFIGS["bottleneck"])
    classifier = ResNetClassifier(ResNet(config), num_classes=4).eval()
    randomize(classifier, seed=4)
    save_pretrained(classifier, tmp_path / "classifier")
    hf = transformers.ResNetForImageClassification.from_pretrained(tmp_path / "classifier").eval()
    x = _images(64, 96, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, classifier(x), atol=ATOL, rtol=0)

    base = build("resnet-test").eval()
    randomize(base, seed=6)
    save_pretrained(base, tmp_path / "base")
    hf = transformers.ResNetModel.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(x).last_hidden_state, base(x).last_hidden_state, atol=ATOL, rtol=0)


@pytest.mark.parametrize("out_features", [None, ["stem", "stage2", "stage3"]])
def test_hf_backbone_folder_loads_as_the_base_model(out_features, transformers, from_pretrained, tmp_path):
    """An HF `ResNetBackbone` folder (the same tensors as a ResNetModel) gives its feature maps
    through forward_features' default levels, its out_features."""
    config = transformers.ResNetConfig(**PARITY_CONFIGS["bottleneck"], out_features=out_features)
    hf = transformers.ResNetBackbone(config).eval()
    randomize(hf, seed=7)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, ResNet)
    x = _images(64, 96, seed=8)
    with torch.no_grad():
        expected, got = hf(x).feature_maps, ours.forward_features(x)
    assert len(got) == len(expected) == len(hf.out_features)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_key_maps_cover_the_hf_model_and_invert(transformers):
    for name in ("basic-downsample-first-silu", "bottleneck"):
        config = ResNetConfig(**PARITY_CONFIGS[name])
        hf_sd = transformers.ResNetModel(transformers.ResNetConfig(**config.to_hf())).state_dict()
        ours_sd = ResNet(config).state_dict()
        mapped = resnet.hf_to_ours(hf_sd)
        assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours_sd.items()}
        assert resnet.ours_to_hf(mapped).keys() == hf_sd.keys()
        assert resnet.hf_to_ours(resnet.ours_to_hf(ours_sd)).keys() == ours_sd.keys()
        assert all(resnet.ours_to_hf(mapped)[k] is v for k, v in hf_sd.items())
    assert resnet.hf_to_ours({"classifier.1.weight": hf_sd["embedder.embedder.convolution.weight"]}).keys() == {
        "classifier.1.weight"}  # head and unknown keys pass through


@pytest.mark.parametrize("preset, hf_kwargs, parameters", [
    ("resnet-50", {}, 23_508_032),  # ResNet-50 without its 1000-class fc (25,557,032 with it)
    ("resnet-18", dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"), 11_176_512),
])
def test_presets_mirror_the_hf_checkpoints(preset, hf_kwargs, parameters, transformers):
    hf_config = transformers.ResNetConfig(**hf_kwargs)
    read = ResNetConfig.from_hf(hf_config.to_dict(), "hf")
    assert dataclasses.replace(read, **BACKBONE_FIELDS) == resnet.PRESETS[preset]
    with torch.device("meta"):
        ours = ResNet(read)
        hf = transformers.ResNetModel(hf_config)
    assert {k: v.shape for k, v in resnet.ours_to_hf(ours.state_dict()).items()} == {
        k: v.shape for k, v in hf.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == parameters


@pytest.mark.parametrize("config", [*resnet.PRESETS.values(),
                                    ResNetConfig(**PARITY_CONFIGS["bottleneck-stride-in-1x1-gelu"])],
                         ids=[*resnet.PRESETS, "parity-config"])
def test_config_round_trips_through_hf(config, transformers):
    d = config.to_hf()
    assert d["model_type"] == "resnet"
    hf_dict = transformers.ResNetConfig(**d).to_dict()
    assert ResNetConfig.from_hf(d, "ours") == config
    assert dataclasses.replace(ResNetConfig.from_hf(hf_dict, "hf"), **BACKBONE_FIELDS) == config


# ---------------------------------------------------------------- frozen batch norm (no transformers)

def test_frozen_batch_norm_equals_eval_mode_batch_norm_and_never_changes():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(**PARITY_CONFIGS["bottleneck"]))
    randomize(model, seed=9)
    x = _images(48, 64, batch=4, seed=10)
    with torch.no_grad():
        expected = model.eval()(x).pooler_output
    frozen = freeze_batch_norm(model)
    assert frozen is model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    norms = {n: m for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    assert len(norms) == 1 + sum(3 * d + 1 for d in model.config.depths)  # stem, 3 per block, one shortcut per stage
    assert not any("num_batches_tracked" in k for k in model.state_dict())
    norm_state = {k: v.clone() for k, v in model.state_dict().items() if k.rpartition(".")[0] in norms}

    model.train()  # frozen norms are the same in training
    torch.testing.assert_close(model(x).pooler_output, expected, atol=ATOL, rtol=0)
    conv_before = model.layer1[0].conv2.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(x).pooler_output.square().mean()
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.layer1[0].conv2.weight, conv_before)  # the rest trains
    assert all(not p.requires_grad for m in norms.values() for p in m.parameters())
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in norm_state.items())  # statistics and affine terms unchanged


def test_frozen_batch_norm_loads_a_batch_norm_state_and_copies_eps():
    bn = torch.nn.BatchNorm2d(3, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.5, 1.0]))
    frozen = freeze_batch_norm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and frozen.eps == 1e-3
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    other = FrozenBatchNorm2d(3)
    other.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, the rest copied
    torch.testing.assert_close(other.running_var, bn.running_var)


# ---------------------------------------------------------------- contract (no transformers)

def _test_model(**overrides) -> ResNet:
    torch.manual_seed(0)
    return ResNet(dataclasses.replace(resnet.PRESETS["resnet-test"], **overrides))


@pytest.mark.parametrize("overrides", [{}, dict(downsample_in_first_stage=True, layer_type="bottleneck",
                                                depths=(1, 2, 1, 1))])
def test_feature_info_matches_forward_features(overrides):
    model = _test_model(**overrides)
    first = 8 if overrides else 4
    assert [info.stride for info in model.feature_info] == [4, first, 2 * first, 4 * first, 8 * first]
    x = _images(64, 128)
    features = model.forward_features(x)  # by default every stage
    assert len(features) == len(model.feature_info) - 1 == 4
    for feature, info in zip(features, model.feature_info[1:]):
        assert feature.shape == (2, info.channels, 64 // info.stride, 128 // info.stride)
    hidden = model(x, output_hidden_states=True).hidden_states  # (stem, stage 1, ...)
    for level in range(len(hidden)):
        torch.testing.assert_close(model.forward_features(x, [level])[0], hidden[level])
    assert model.num_features == model.feature_info[-1].channels
    torch.testing.assert_close(model(x).pooler_output, features[-1].mean(dim=(-2, -1)))


def test_layer_index_orders_every_parameter():
    model = _test_model(depths=(2, 1, 1, 3))
    assert model.num_layers == 7
    index = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert list(index.values()) == sorted(index.values())
    assert set(index.values()) == set(range(model.num_layers + 1))
    assert index["conv1.weight"] == index["bn1.bias"] == 0
    assert index["layer1.1.conv2.weight"] == 2
    assert index["layer2.0.downsample.0.weight"] == index["layer2.0.bn1.weight"] == 3
    assert index["layer4.2.bn2.weight"] == 7
    with pytest.raises(ValueError, match="'classifier.1.weight'"):
        model.layer_index("classifier.1.weight")
    with pytest.raises(ValueError, match="'layer1.2.conv1.weight'"):
        model.layer_index("layer1.2.conv1.weight")


def test_loss_decreases_on_one_batch():
    model = _test_model()
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


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(2, 1, 8, 8\)"):
        _test_model()(torch.zeros(2, 1, 8, 8))


def test_config_errors_name_source_and_key():
    good = resnet.PRESETS["resnet-test"].to_hf()
    with pytest.raises(ConfigError, match=r"some/config\.json.*'groups'"):
        ResNetConfig.from_hf({**good, "groups": 32}, "some/config.json")
    with pytest.raises(ConfigError, match=r"some/config\.json.*'layer_type' is 'preactivation'"):
        ResNetConfig.from_hf({**good, "layer_type": "preactivation"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"some/config\.json.*'hidden_act' is 'tanh'"):
        ResNetConfig.from_hf({**good, "hidden_act": "tanh"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'hidden_sizes' has 4 entries but 'depths' 3"):
        ResNetConfig.from_hf({**good, "depths": [1, 1, 1]}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'hidden_sizes' is \[8, 16, 16, 2\]; a bottleneck"):
        ResNetConfig.from_hf({**good, "hidden_sizes": [8, 16, 16, 2], "layer_type": "bottleneck"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'model_type' is 'regnet'"):
        ResNetConfig.from_hf({**good, "model_type": "regnet"}, "some/config.json")
    with pytest.raises(ConfigError, match=r"'out_features'"):
        ResNetConfig.from_hf({**good, "out_features": ["stage5"]}, "some/config.json")
