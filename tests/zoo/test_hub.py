"""Reading HF-format folders: weight file layouts, strict loading and its error messages."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from lit_tasks.zoo import (
    REGISTRY,
    ImageClassifier,
    build,
    detect_family,
    from_pretrained,
    from_spec,
    read_preprocessor_config,
    save_pretrained,
    spec,
    vit,
)
from lit_tasks.errors import ConfigError, LoadError


@pytest.fixture
def saved(tmp_path):
    """A tiny ViT classifier (5 classes) saved as an HF folder; returns (model, folder)."""
    torch.manual_seed(0)
    model = build("vit-test", "classification", num_labels=5).eval()
    folder = save_pretrained(model, tmp_path / "vit", preprocessor={"size": {"height": 32, "width": 32}})
    return model, folder


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _rewrite(folder, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_sharded_safetensors(saved):
    model, folder = saved
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({k: tensors[k] for k in shard_keys}, folder / name)
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert _same_weights(from_pretrained(folder), model)


@pytest.mark.parametrize("sharded", [False, True])
def test_pytorch_model_bin(saved, sharded):
    model, folder = saved
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    if sharded:
        keys = sorted(tensors)
        torch.save({k: tensors[k] for k in keys[:5]}, folder / "pytorch_model-00001-of-00002.bin")
        torch.save({k: tensors[k] for k in keys[5:]}, folder / "pytorch_model-00002-of-00002.bin")
        weight_map = {k: f"pytorch_model-0000{1 + (i >= 5)}-of-00002.bin" for i, k in enumerate(keys)}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    else:
        torch.save(tensors, folder / "pytorch_model.bin")
    assert _same_weights(from_pretrained(folder), model)


def test_missing_weights_file_names_folder_and_files(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{folder}.*model\.safetensors.*pytorch_model\.bin"):
        from_pretrained(folder)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*config.json"):
        from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*no config\.json"):
        from_pretrained(tmp_path)


def test_unexpected_and_missing_keys_are_listed(saved):
    _, folder = saved

    def edit(tensors):
        tensors["vit.encoder.layer.0.extra.weight"] = torch.zeros(3)
        tensors["decoder.weight"] = torch.zeros(3)
        del tensors["vit.layernorm.bias"]

    _rewrite(folder, edit)
    with pytest.raises(LoadError) as error:
        from_pretrained(folder)
    message = str(error.value)
    assert str(folder) in message
    assert "missing [vit.layernorm.bias]" in message
    assert "unexpected" in message and "decoder.weight" in message and "vit.encoder.layer.0.extra.weight" in message


def test_shape_mismatch_is_listed(saved):
    _, folder = saved
    _rewrite(folder, lambda t: t.update({"vit.embeddings.position_embeddings": torch.zeros(1, 10, 32)}))
    with pytest.raises(LoadError, match=r"shape mismatch \[vit\.embeddings\.position_embeddings: checkpoint \(1, 10, 32\) vs model \(1, 17, 32\)"):
        from_pretrained(folder)
    _rewrite(folder, lambda t: t.update({"vit.embeddings.position_embeddings": torch.zeros(1, 17, 32),
                                         "classifier.weight": torch.zeros(5, 16)}))
    with pytest.raises(LoadError, match=r"shape mismatch \[classifier\.weight: checkpoint \(5, 16\) vs model \(5, 32\)"):
        from_pretrained(folder)


def test_pooler_of_a_base_checkpoint_is_ignored_with_a_note(saved, caplog):
    model, folder = saved
    tensors = {k.removeprefix("vit."): v for k, v in load_file(folder / "model.safetensors").items() if k.startswith("vit.")}
    tensors.update({"pooler.dense.weight": torch.zeros(32, 32), "pooler.dense.bias": torch.zeros(32)})
    save_file(tensors, folder / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="lit_tasks"):
        backbone = from_pretrained(folder)
    assert not isinstance(backbone, ImageClassifier)
    assert _same_weights(backbone, model.backbone)
    assert "pooler.dense.weight" in caplog.text


def test_unknown_config_key_is_named(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "use_mask_tokens": True}))
    with pytest.raises(ConfigError, match=r"config\.json.*use_mask_tokens"):
        from_pretrained(folder)


def test_unknown_model_type_is_named(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "swin"}))
    with pytest.raises(ConfigError, match=r"vit.*'swin'.*supported model types are " + re.escape(str(sorted(REGISTRY)))):
        detect_family(folder)


def test_head_reinitialised_for_another_class_count(saved, caplog):
    model, folder = saved
    with pytest.warns(UserWarning, match=r"classifier of ImageClassifier is freshly initialised: the checkpoint's "
                                         r"classifier has num_labels=5, the model's num_labels=3"):
        loaded = from_pretrained(folder, num_labels=3)
    assert "freshly initialised" in caplog.text
    assert loaded.num_classes == 3 and _same_weights(loaded.backbone, model.backbone)


def test_head_added_to_a_backbone_checkpoint(tmp_path):
    backbone = build("vit-test")
    folder = save_pretrained(backbone, tmp_path)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["ViTModel"]
    assert not isinstance(from_pretrained(folder), ImageClassifier)
    with pytest.warns(UserWarning, match="classifier of ImageClassifier is freshly initialised: the checkpoint has none"):
        model = from_pretrained(folder, "classification", num_labels=4)
    assert model.num_classes == 4 and _same_weights(model.backbone, backbone)


def test_same_class_count_keeps_the_head(saved):
    model, folder = saved
    assert _same_weights(from_pretrained(folder, num_labels=5), model)


def test_spec_round_trip_and_preprocessor(saved):
    model, folder = saved
    description = spec(model)
    assert json.loads(json.dumps(description)) == description
    assert description == {"family": "vit", "head": "classification", "config": model.backbone.config.to_hf(),
                           "num_classes": 5}
    rebuilt = from_spec(description)
    assert isinstance(rebuilt, ImageClassifier) and rebuilt.backbone.config == model.backbone.config
    assert spec(from_spec(spec(model.backbone))) == {"family": "vit", "head": "base", "config": description["config"]}
    old = {"family": "vit", "config": description["config"], "num_classes": None}  # written before heads
    assert spec(from_spec(old))["head"] == "base" and spec(from_spec({**old, "num_classes": 5})) == description
    assert read_preprocessor_config(folder) == {"size": {"height": 32, "width": 32}}
    (folder / "preprocessor_config.json").unlink()
    assert read_preprocessor_config(folder) is None
    with pytest.raises(ConfigError, match=r"unknown model family 'swin'.*" + re.escape(str(sorted(REGISTRY)))):
        from_spec({**description, "family": "swin"})


def test_build_errors_name_the_culprit():
    with pytest.raises(ConfigError, match=r"'hiden_size'.*valid keys are .*'hidden_size'"):
        build("vit-test", overrides={"hiden_size": 64})
    with pytest.raises(ConfigError, match=r"'vit-huge'.*available presets are .*'vit-test'"):
        build("vit-huge")
    with pytest.raises(ConfigError, match=r"num_attention_heads.*divisor of hidden_size=32"):
        build("vit-test", overrides={"num_attention_heads": 5})
    assert build("vit-test", overrides={"image_size": [16, 24]}).config.grid == (2, 3)
    assert vit.PRESETS["vit-test"].grid == (4, 4)


@pytest.mark.parametrize("key, value", [("is_encoder_decoder", True), ("tie_word_embeddings", False),
                                        ("decoder_start_token_id", 2), ("pruned_heads", {"0": [1]}),
                                        ("cross_attention_hidden_size", 64)])
def test_keys_that_change_a_model_are_not_dropped(key, value):
    """A config.json key that would change the model is refused by name unless the family
    implements it; at its neutral value it loads."""
    from lit_tasks.zoo import convnext, vit

    for family in (vit.ViTConfig, convnext.ConvNextConfig):
        with pytest.raises(ConfigError, match=rf"cfg\.json: key '{key}' is"):
            family.from_hf({key: value}, source="cfg.json")
    from lit_tasks.zoo.base import NEUTRAL_HF_KEYS

    vit.ViTConfig.from_hf({key: NEUTRAL_HF_KEYS[key]}, source="cfg.json")
