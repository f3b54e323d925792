"""DETR: parity with HF `transformers` through our own loading code, the hub's timm ResNet-50
layout, the registry's label sizing (num_labels + 1 class outputs) and the model's contract.

Parity tests build tiny random HF models (use_timm_backbone=False, a tiny ResNet backbone; every
parameter and buffer random, batch-norm statistics too), save them with `save_pretrained`, load
the folder with `lit_tasks.zoo.from_pretrained` and compare in eval mode at atol 1e-5, on a batch
whose images are padded differently (pixel masks).

HF's decoder with auxiliary_loss=True feeds each layer the previous layer's *normed* output (and
norms the last one twice), unlike the DETR paper and its code; ours keeps the paper's decoder.
So the auxiliary outputs are compared with HF's own modules run as the paper says: HF's model
with auxiliary_loss false (whose main outputs are the paper's), each decoder layer's output
(a forward hook) through HF's decoder norm and prediction heads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import build, detr, from_spec, save_pretrained, spec
from lit_tasks.zoo.detr import DetrConfig, DetrForObjectDetection, DetrModel, sine_position_embedding
from lit_tasks.zoo.resnet import FrozenBatchNorm2d

ATOL = 1e-5
BACKBONES = {  # tiny HF backbone configs (read at their last stage, as DETR does)
    "basic": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[8, 16, 16, 24], depths=[1, 1, 1, 1],
                                   layer_type="basic", out_features=["stage4"])),
    "bottleneck": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[16, 16, 32, 32], depths=[1, 2, 1, 1],
                                        layer_type="bottleneck", downsample_in_bottleneck=True,
                                        out_features=["stage2", "stage4"])),
    "convnext": ("ConvNextConfig", dict(num_stages=4, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                        out_features=["stage4"])),
}
TRANSFORMER = dict(d_model=16, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2, decoder_attention_heads=4,
                   encoder_ffn_dim=32, decoder_ffn_dim=24, num_queries=6, dropout=0.1, attention_dropout=0.1,
                   activation_dropout=0.1)
CASES = {  # name: (backbone, auxiliary_loss, other DETR keys)
    "basic-aux": ("basic", True, {}),
    "basic-no-aux": ("basic", False, {}),
    "bottleneck-aux-gelu": ("bottleneck", True, {"activation_function": "gelu"}),
    "bottleneck-no-aux": ("bottleneck", False, {}),
    "convnext-aux": ("convnext", True, {}),
}


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter and buffer (batch-norm statistics too), matrices scaled
    by 1/sqrt(fan-in) so activations keep their size."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            leaf = name.rpartition(".")[2]
            if not tensor.is_floating_point():
                continue
            if tensor.ndim > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(tensor[0].numel()))
            elif leaf in ("running_var", "weight"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:  # biases, running means, layer scales
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))


def hf_config(transformers, backbone: str, auxiliary_loss: bool, num_labels: int = 3, **extra):
    config_class, kwargs = BACKBONES[backbone]
    return transformers.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                                   backbone_config=getattr(transformers, config_class)(**kwargs),
                                   auxiliary_loss=auxiliary_loss, num_labels=num_labels, **TRANSFORMER, **extra)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three images padded to 96x128 (a 3x4 map at stride 32): one whole, one padded at the bottom
    and right, one at the right only; the padding is zeros, as the collate writes it."""
    pixels = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(3, 96, 128, dtype=torch.long)
    mask[1, 60:] = 0
    mask[1, :, 70:] = 0
    mask[2, :, 40:] = 0
    return pixels * mask[:, None], mask


def hf_detection(hf, pixels, mask) -> dict:
    """HF's predictions with the paper's decoder: auxiliary_loss off, each layer's output (a
    forward hook) through HF's decoder norm and heads for the auxiliary outputs."""
    layer_outputs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: layer_outputs.append(o[0] if isinstance(o, tuple) else o))
             for layer in hf.model.decoder.layers]
    auxiliary_loss, hf.config.auxiliary_loss = hf.config.auxiliary_loss, False
    try:
        with torch.no_grad():
            out = hf(pixel_values=pixels, pixel_mask=mask)
            normed = [hf.model.decoder.layernorm(x) for x in layer_outputs]
            aux = [{"logits": hf.class_labels_classifier(x), "pred_boxes": hf.bbox_predictor(x).sigmoid()}
                   for x in normed[:-1]]
    finally:
        hf.config.auxiliary_loss = auxiliary_loss
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(normed[-1], out.last_hidden_state, atol=0, rtol=0)  # the hooks saw every layer
    return {"logits": out.logits, "pred_boxes": out.pred_boxes, "aux": aux, "last_hidden_state": out.last_hidden_state}


def assert_detections_equal(got, expected: dict, auxiliary_loss: bool) -> None:
    torch.testing.assert_close(got.logits, expected["logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(got.pred_boxes, expected["pred_boxes"], atol=ATOL, rtol=0)
    torch.testing.assert_close(got.last_hidden_state, expected["last_hidden_state"], atol=ATOL, rtol=0)
    if not auxiliary_loss:
        assert got.aux_outputs is None
        return
    assert len(got.aux_outputs) == len(expected["aux"]) == TRANSFORMER["decoder_layers"] - 1
    for i, (a, b) in enumerate(zip(got.aux_outputs, expected["aux"])):
        for key in ("logits", "pred_boxes"):
            torch.testing.assert_close(a[key], b[key], atol=ATOL, rtol=0, msg=lambda m: f"aux_outputs[{i}][{key}]: {m}")


@pytest.mark.parametrize("case", CASES)
def test_detection_matches_hf(case, transformers, tmp_path):
    from lit_tasks.zoo import from_pretrained

    backbone, auxiliary_loss, extra = CASES[case]
    hf = transformers.DetrForObjectDetection(hf_config(transformers, backbone, auxiliary_loss, **extra)).eval()
    randomize(hf, seed=1)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    assert isinstance(ours, DetrForObjectDetection) and ours.config.auxiliary_loss is auxiliary_loss
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ours.modules())  # frozen, as HF's
    pixels, mask = batch()
    with torch.no_grad():
        got = ours(pixels, mask)
    assert got.logits.shape == (3, TRANSFORMER["num_queries"], 3 + 1)
    assert_detections_equal(got, hf_detection(hf, pixels, mask), auxiliary_loss)
    with torch.no_grad():  # the masks matter: the same pixels unmasked give other predictions
        assert not torch.allclose(ours(pixels).logits[1:], got.logits[1:], atol=1e-3)
        torch.testing.assert_close(ours(pixels[:1]).logits, got.logits[:1], atol=ATOL, rtol=0)


def test_base_model_matches_hf(transformers, tmp_path):
    from lit_tasks.zoo import from_pretrained

    hf = transformers.DetrModel(hf_config(transformers, "bottleneck", auxiliary_loss=False)).eval()
    randomize(hf, seed=2)
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    assert type(ours) is DetrModel
    pixels, mask = batch(seed=3)
    with torch.no_grad():
        expected, got = hf(pixel_values=pixels, pixel_mask=mask), ours(pixels, mask)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=ATOL, rtol=0)
    assert got.intermediate_hidden_states is None


@pytest.mark.parametrize("backbone, auxiliary_loss", [("basic", True), ("bottleneck", False)])
def test_our_saved_folder_loads_in_hf(backbone, auxiliary_loss, transformers, tmp_path):
    read = DetrConfig.from_hf(hf_config(transformers, backbone, auxiliary_loss).to_dict(), "hf")
    torch.manual_seed(0)
    ours = DetrForObjectDetection(read, num_labels=4).eval()
    randomize(ours, seed=4)
    save_pretrained(ours, tmp_path / "detection", label_names=["a", "b", "c", "d"])
    saved = json.loads((tmp_path / "detection" / "config.json").read_text())
    assert saved["use_timm_backbone"] is False and saved["backbone_config"]["model_type"] == "resnet"
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "detection").eval()
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    pixels, mask = batch(seed=5)
    with torch.no_grad():
        got = ours(pixels, mask)
    assert_detections_equal(got, hf_detection(hf, pixels, mask), auxiliary_loss)

    save_pretrained(ours.model, tmp_path / "base")
    hf_base = transformers.DetrModel.from_pretrained(tmp_path / "base").eval()
    hf_base.config.auxiliary_loss = False  # HF's decoder with auxiliary_loss is not the paper's (module docstring)
    with torch.no_grad():
        expected = hf_base(pixel_values=pixels, pixel_mask=mask).last_hidden_state
    torch.testing.assert_close(ours.model(pixels, mask).last_hidden_state, expected, atol=ATOL, rtol=0)


def _hf_renamed(keys):
    """Keys through detr.HF_RENAMES, as the loader applies them."""
    out = []
    for key in keys:
        for pattern, replacement in detr.HF_RENAMES:
            key = re.sub(pattern, replacement, key)
        out.append(key)
    return out


def test_key_maps_cover_the_hf_model_and_invert(transformers, tmp_path):
    from safetensors.torch import load_file

    for backbone in ("bottleneck", "convnext"):
        hf = transformers.DetrModel(hf_config(transformers, backbone, auxiliary_loss=False))
        hf.save_pretrained(tmp_path / backbone)
        saved = load_file(tmp_path / backbone / "model.safetensors")  # the names HF writes (and older versions)
        ours_sd = DetrModel(DetrConfig.from_hf(hf.config.to_dict(), "hf")).state_dict()
        mapped = detr.hf_to_ours(saved)
        assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours_sd.items()}
        assert detr.ours_to_hf(mapped).keys() == saved.keys()
        assert all(detr.ours_to_hf(mapped)[k] is v for k, v in saved.items())
        # transformers' in-memory names (backbone.model., o_proj, mlp.fc1) read as the saved ones
        assert sorted(_hf_renamed(hf.state_dict())) == sorted(saved)


def _timm_resnet50_keys() -> list[str]:
    """The state-dict keys of timm's resnet50 (features_only: no fc), written out from its layout:
    conv1/bn1 stem, layer1..4 of 3, 4, 6, 3 Bottlenecks (conv1-3, bn1-3), a downsample (0: conv,
    1: bn) in each stage's first block. Batch norms as DETR's checkpoints hold them."""
    norm = ("weight", "bias", "running_mean", "running_var")
    keys = ["conv1.weight", *(f"bn1.{n}" for n in norm)]
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            for i in (1, 2, 3):
                keys += [f"layer{layer}.{block}.conv{i}.weight", *(f"layer{layer}.{block}.bn{i}.{n}" for n in norm)]
            if block == 0:
                keys += [f"layer{layer}.0.downsample.0.weight", *(f"layer{layer}.0.downsample.1.{n}" for n in norm)]
    return keys


def test_timm_resnet50_checkpoint_keys_map_onto_hf_and_our_resnet50(transformers):
    """facebook/detr-resnet-50 keeps a timm ResNet-50 under model.backbone.conv_encoder.model.:
    its keys renamed are those of HF's native ResNet-50 backbone, and ours."""
    timm = ["model.backbone.conv_encoder.model." + k for k in _timm_resnet50_keys()]
    renamed = _hf_renamed(timm)
    hf_config = transformers.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                                        backbone_config=transformers.ResNetConfig(out_features=["stage4"]))
    with torch.device("meta"):
        hf_backbone = transformers.DetrModel(hf_config).backbone.model.state_dict()
        ours = DetrModel(detr.PRESETS["detr-resnet-50"]).state_dict()
    assert sorted(renamed) == sorted("model.backbone.conv_encoder.model." + k for k in hf_backbone)
    ours_backbone = {k: v.shape for k, v in ours.items() if k.startswith("backbone.")}
    assert detr.hf_to_ours(dict.fromkeys(k.removeprefix("model.") for k in renamed)).keys() == ours_backbone.keys()


def test_a_timm_resnet50_checkpoint_loads(transformers):
    """A hub-style checkpoint: config.json with use_timm_backbone and backbone "resnet50", tensors in
    timm names (and a num_batches_tracked some carry) loads into our ResNet-50 DETR."""
    from lit_tasks.zoo.pretrained import from_tensors

    raw = {"model_type": "detr", "architectures": ["DetrForObjectDetection"], "use_timm_backbone": True,
           "backbone": "resnet50", "backbone_config": None, "use_pretrained_backbone": True, "dilation": False,
           "backbone_kwargs": {"in_chans": 3, "out_indices": [1, 2, 3, 4]}, "max_position_embeddings": 1024,
           "scale_embedding": False, "classifier_dropout": 0.0, "num_hidden_layers": 1, **TRANSFORMER,
           "encoder_layers": 1, "id2label": {str(i): f"c{i}" for i in range(5)}}
    torch.manual_seed(0)
    source = DetrForObjectDetection(DetrConfig.from_hf(raw, "hub"), num_labels=5)
    weights = {}
    for key, tensor in source.state_dict().items():
        if key.startswith("model.backbone."):  # our backbone names are timm's
            key = "model.backbone.conv_encoder.model." + key.removeprefix("model.backbone.")
        weights[re.sub(r"\.mlp\.fc", ".fc", key)] = tensor
    weights["model.backbone.conv_encoder.model.layer1.0.downsample.1.num_batches_tracked"] = torch.tensor(0)
    assert set(_timm_resnet50_keys()) == {k.removeprefix("model.backbone.conv_encoder.model.") for k in weights
                                          if k.startswith("model.backbone.") and "num_batches" not in k}
    loaded = from_tensors("detr", raw, weights, "hub-folder")
    assert loaded.config.backbone_config == detr.PRESETS["detr-resnet-50"].backbone_config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), source.state_dict().values()))


# ---------------------------------------------------------------- configs

def _without_backbone_outputs(config: DetrConfig) -> DetrConfig:
    skipped = ("stage_names", "out_features", "out_indices")
    backbone = {k: v for k, v in config.backbone_config.items() if k not in skipped}
    return dataclasses.replace(config, backbone_config={**backbone, "out_features": ["stage4"]})


def test_preset_mirrors_hf_detr_resnet_50(transformers):
    preset = detr.PRESETS["detr-resnet-50"]
    timm_default = transformers.DetrConfig().to_dict()  # HF's default: facebook/detr-resnet-50's timm ResNet-50
    assert DetrConfig.from_hf(timm_default, "hf default") == preset
    native = transformers.DetrConfig(use_timm_backbone=False, backbone_config=transformers.ResNetConfig(
        out_features=["stage4"]), use_pretrained_backbone=False, num_labels=91)
    assert DetrConfig.from_hf(native.to_dict(), "hf native") == preset
    with torch.device("meta"):
        ours = DetrForObjectDetection(preset, num_labels=91)
        hf = transformers.DetrForObjectDetection(native)
    hf_shapes = dict(zip(_hf_renamed(hf.state_dict()), (v.shape for v in hf.state_dict().values())))
    ours_hf = detr.ours_to_hf({k.removeprefix("model."): v for k, v in ours.state_dict().items()})
    assert {k: v.shape for k, v in ours_hf.items()} == {k.removeprefix("model."): v for k, v in hf_shapes.items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters()) == 41_524_768


@pytest.mark.parametrize("preset", detr.PRESETS)
def test_config_round_trips_through_hf(preset, transformers):
    config = detr.PRESETS[preset]
    d = config.to_hf()
    assert DetrConfig.from_hf(d, "ours") == config
    hf_dict = transformers.DetrConfig(**d).to_dict()
    assert _without_backbone_outputs(DetrConfig.from_hf(hf_dict, "hf")) == _without_backbone_outputs(config)


def test_config_errors_name_the_key():
    good = detr.PRESETS["detr-test"].to_hf()
    cases = [
        ({"backbone_config": None, "use_timm_backbone": True, "backbone": "resnet101"},
         r"'backbone' is 'resnet101'.*\['resnet50'\]"),
        ({"backbone_config": {"model_type": "timm_backbone", "backbone": "efficientnet_b0"}}, r"'efficientnet_b0'"),
        ({"backbone_config": {"model_type": "swin"}}, r"'backbone_config' has model_type 'swin'.*convnext.*resnet"),
        ({"backbone_config": None, "use_timm_backbone": True, "dilation": True}, r"'dilation' is true"),
        ({"position_embedding_type": "learned"}, r"'position_embedding_type' is 'learned'"),
        ({"encoder_layerdrop": 0.1}, r"'encoder_layerdrop' is 0.1"),
        ({"decoder_attention_heads": 3}, r"'decoder_attention_heads' is 3, expected a divisor"),
        ({"num_hidden_layers": 4}, r"'num_hidden_layers' is 4.*'encoder_layers'"),
        ({"two_stage": True}, r"'two_stage'"),
        ({"backbone_config": {**good["backbone_config"], "out_features": ["stage3"]}},
         r"'backbone_config'.*'stage4' last"),
        ({"backbone_config": {**good["backbone_config"], "layer_type": "wide"}}, r"'layer_type' is 'wide'"),
        ({"use_timm_backbone": True}, r"'use_timm_backbone' is true next to a native"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=r"some/config\.json.*" + message):
            DetrConfig.from_hf({**good, **change}, "some/config.json")


# ---------------------------------------------------------------- registry sizing and contract

def test_class_head_has_one_more_output_than_labels_through_spec_and_folders(tmp_path):
    from lit_tasks.zoo import from_pretrained

    torch.manual_seed(0)
    model = build("detr-test", "object_detection", num_labels=3)
    assert model.class_labels_classifier.out_features == 4 and model.num_labels == 3
    described = spec(model)
    assert described["num_classes"] == 3 and from_spec(described).class_labels_classifier.out_features == 4
    save_pretrained(model, tmp_path)
    assert len(json.loads((tmp_path / "config.json").read_text())["id2label"]) == 3
    assert from_pretrained(tmp_path).class_labels_classifier.out_features == 4
    with pytest.warns(UserWarning, match="class_labels_classifier.*num_labels=3.*num_labels=5"):
        resized = from_pretrained(tmp_path, num_labels=5)
    assert resized.class_labels_classifier.out_features == 6
    torch.testing.assert_close(resized.bbox_predictor.layers[0].weight, model.bbox_predictor.layers[0].weight)


def test_outputs_shapes_ranges_and_bad_masks():
    torch.manual_seed(0)
    model = build("detr-test", "object_detection", num_labels=2).eval()
    pixels, mask = batch()
    out = model(pixels, mask.bool())
    assert out.logits.shape == (3, 5, 3) and out.pred_boxes.shape == (3, 5, 4)
    assert ((out.pred_boxes >= 0) & (out.pred_boxes <= 1)).all()
    assert len(out.aux_outputs) == 1 and out.aux_outputs[0]["logits"].shape == (3, 5, 3)
    torch.testing.assert_close(model(pixels).logits, model(pixels, torch.ones(3, 96, 128)).logits)
    with pytest.raises(ValueError, match=r"pixel_mask has shape \(3, 96, 100\)"):
        model(pixels, mask[:, :, :100])


def test_backbone_batch_norms_stay_frozen_in_training():
    torch.manual_seed(0)
    model = build("detr-test", "object_detection", num_labels=2).train()
    norms = {n: m for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items() if k.rpartition(".")[0] in norms}
    conv = model.model.backbone.layer4[0].conv1.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pixels, mask = batch()
    out = model(pixels, mask)
    (out.logits.logsumexp(-1).mean() + out.pred_boxes.mean() + out.aux_outputs[0]["pred_boxes"].mean()).backward()
    optimizer.step()
    assert not torch.equal(model.model.backbone.layer4[0].conv1.weight, conv)  # the backbone trains
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items())


def test_backbone_norms_train_when_not_frozen(transformers):
    """freeze_backbone_norms false (a backbone from scratch): plain batch norms whose statistics and
    affine values train; the key survives the config's round trip and transformers accepts it."""
    torch.manual_seed(0)
    model = build("detr-test", "object_detection", num_labels=2, overrides={"freeze_backbone_norms": False}).train()
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    norm = model.model.backbone.bn1
    assert isinstance(norm, torch.nn.BatchNorm2d) and norm.weight.requires_grad
    mean = norm.running_mean.clone()
    pixels, mask = batch()
    model(pixels, mask).logits.sum().backward()
    assert not torch.equal(norm.running_mean, mean) and norm.weight.grad is not None
    config = model.config.to_hf()
    assert config["freeze_backbone_norms"] is False
    assert DetrConfig.from_hf(config, "test") == model.config
    assert transformers.AutoConfig.for_model(**config).freeze_backbone_norms is False


def test_sine_positions_are_those_of_the_unpadded_image():
    """Positions are normalised by each image's own size, so a padded image's real cells get the
    positions the image has alone; y channels vary down the rows only, x across the columns."""
    padded = torch.zeros(1, 5, 7, dtype=torch.bool)
    padded[0, :3, :4] = True
    alone = torch.ones(1, 3, 4, dtype=torch.bool)
    a, b = sine_position_embedding(padded, 16, torch.float32), sine_position_embedding(alone, 16, torch.float32)
    assert a.shape == (1, 16, 5, 7)
    torch.testing.assert_close(a[..., :3, :4], b)
    assert torch.equal(b[:, :8], b[:, :8, :, :1].expand(-1, -1, -1, 4))  # y: the same along a row
    assert torch.equal(b[:, 8:], b[:, 8:, :1].expand(-1, -1, 3, -1))  # x: the same down a column
    torch.testing.assert_close(b[0, 0, -1, 0], torch.sin(torch.tensor(2 * math.pi / (1 + 1e-6))))  # last row: 2 pi


def test_layer_index_orders_every_parameter():
    torch.manual_seed(0)
    model = build("detr-test")
    index = {name: model.layer_index(name) for name, _ in model.named_parameters()}
    assert list(index.values()) == sorted(index.values())
    assert set(index.values()) == set(range(model.num_layers + 2))
    assert index["encoder.layers.0.mlp.fc1.weight"] == 1 and index["decoder.layers.1.self_attn.q_proj.bias"] == 3
    with pytest.raises(ValueError, match="'class_labels_classifier.weight'"):
        model.layer_index("class_labels_classifier.weight")


def test_activation_checkpointing_keeps_outputs_and_gradients():
    """The encoder and decoder layers are the zoo blocks DETR offers to checkpointing (and FSDP)."""
    from lit_tasks.zoo.blocks import checkpoint_blocks

    pixels, mask = batch()
    results = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = build("detr-test", "object_detection", num_labels=2).train()
        if checkpointed:
            assert checkpoint_blocks(model) == 4 + 3  # the backbone's 4 blocks, 1 encoder and 2 decoder layers
        torch.manual_seed(1)  # the same dropout masks
        out = model(pixels, mask)
        (out.logits.square().mean() + out.aux_outputs[0]["pred_boxes"].mean()).backward()
        results.append((out.logits.detach(), model.model.encoder.layers[0].self_attn.q_proj.weight.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_query_groups_attend_within_their_group_and_eval_runs_the_first():
    """Group DETR: in training G groups of queries, none seeing another; eval: the first group alone."""
    torch.manual_seed(0)
    model = build("detr-test", "object_detection", overrides={"query_groups": 3, "dropout": 0.0}, num_labels=2)
    Q = model.config.num_queries
    assert model.model.extra_query_embeddings.weight.shape == (2 * Q, model.config.d_model)
    pixels, mask = batch()
    model.train()
    before = model(pixels, mask)
    assert before.logits.shape == (3, 3 * Q, 3) and before.aux_outputs[0]["pred_boxes"].shape == (3, 3 * Q, 4)
    with torch.no_grad():
        model.model.extra_query_embeddings.weight[Q:] += 1.0  # the third group only
        after = model(pixels, mask)
    for part, same in ((slice(0, 2 * Q), True), (slice(2 * Q, 3 * Q), False)):
        close = torch.allclose(after.logits[:, part], before.logits[:, part], atol=1e-6)
        assert close == same, part
    model.eval()
    with torch.no_grad():
        eval_out = model(pixels, mask)
    assert eval_out.logits.shape == (3, Q, 3)
    # batch-norm statistics aside (frozen here), the first group's training outputs are the eval outputs
    torch.testing.assert_close(eval_out.logits, after.logits[:, :Q], atol=1e-5, rtol=0)


def test_folder_with_query_groups_predicts_the_same_in_hf(transformers, tmp_path):
    read = DetrConfig.from_hf({**hf_config(transformers, "basic", False).to_dict(), "query_groups": 2}, "hf")
    torch.manual_seed(0)
    ours = DetrForObjectDetection(read, num_labels=4).eval()
    randomize(ours, seed=4)
    save_pretrained(ours, tmp_path / "detection", label_names=["a", "b", "c", "d"])
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "detection").eval()
    pixels, mask = batch(seed=5)
    with torch.no_grad():
        got = ours(pixels, mask)
    assert_detections_equal(got, hf_detection(hf, pixels, mask), False)
    again = from_spec(spec(ours))
    again.load_state_dict(ours.state_dict())  # our own round trip keeps the extra queries
    assert again.config.query_groups == 2
