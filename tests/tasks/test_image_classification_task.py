"""ImageClassification: optimiser groups, schedule, pretrained init, checkpoint checks."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import attach_trainer

from lit_tasks import zoo
from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.tasks import ImageClassification
from lit_tasks.tasks.base import warmup_cosine

ORIGINAL_ESTIMATE = L.Trainer.__dict__["estimated_stepping_batches"]  # Lightning's property


def test_attach_trainer_leaves_the_trainer_class_alone():
    """A test that fakes the number of steps must not change it for every later Trainer."""
    attach_trainer(ImageClassification(backbone="vit-test", num_classes=3), steps=7)
    assert L.Trainer.__dict__["estimated_stepping_batches"] is ORIGINAL_ESTIMATE


def test_warmup_then_cosine_to_floor():
    f = warmup_cosine(warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_layer_decay_scales_lr_by_depth_and_skips_decay_on_norms(monkeypatch):
    task = ImageClassification(backbone="vit-test", num_classes=3, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    attach_trainer(task)
    optimizer = task.configure_optimizers()["optimizer"]
    lr_of, decay_of = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)], decay_of[id(p)] = group["initial_lr"], group["weight_decay"]  # "lr" is already warmed down
    named = dict(task.named_parameters())
    depth = task.net.backbone.num_layers + 1  # 3 for the 2-block vit-test
    assert lr_of[id(named["net.classifier.weight"])] == 1.0
    assert lr_of[id(named["net.backbone.embeddings.cls_token"])] == 0.5**depth
    block0 = [n for n in named if n.startswith("net.backbone.") and ".0." in n and n.endswith("weight") and named[n].ndim == 2]
    assert block0 and lr_of[id(named[block0[0]])] == 0.5 ** (depth - 1)
    assert decay_of[id(named[block0[0]])] == 0.1
    assert all(decay_of[id(p)] == 0.0 for n, p in named.items() if p.ndim == 1)
    assert len(lr_of) == len(named)  # every parameter is optimised once


def test_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    task = ImageClassification(backbone="convnext-test", num_classes=3, lr=3e-3, warmup_fraction=0.0)
    attach_trainer(task, steps=30)
    optimizer = task.configure_optimizers()["optimizer"]
    batch = {"pixel_values": torch.randn(6, 3, 32, 32), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(task(batch["pixel_values"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_needs_a_backbone_or_a_folder():
    with pytest.raises(ConfigError, match="model.backbone"):
        ImageClassification(num_classes=3)


@pytest.fixture
def vit_folder(tmp_path):
    model = zoo.build("vit-test", "classification", num_labels=5)
    zoo.save_pretrained(model, tmp_path / "vit", label_names=[f"c{i}" for i in range(5)])
    return tmp_path / "vit", model


def test_init_from_keeps_backbone_and_replaces_head_of_other_size(vit_folder):
    folder, source = vit_folder
    with pytest.warns(UserWarning, match="5"):
        task = ImageClassification(init_from=str(folder), num_classes=3)
    assert task.net.classifier.out_features == 3
    for name, tensor in source.backbone.state_dict().items():
        torch.testing.assert_close(task.net.backbone.state_dict()[name], tensor)


def test_init_from_same_classes_keeps_head(vit_folder):
    folder, source = vit_folder
    task = ImageClassification(init_from=str(folder), num_classes=5)
    torch.testing.assert_close(task.net.classifier.weight, source.classifier.weight)


def test_init_from_conflicting_family_or_overrides_is_an_error(vit_folder):
    folder, _ = vit_folder
    with pytest.raises(ConfigError, match="'vit' model but model.backbone is 'convnext-test'"):
        ImageClassification(backbone="convnext-test", init_from=str(folder), num_classes=3)
    with pytest.raises(ConfigError, match="backbone_config"):
        ImageClassification(init_from=str(folder), backbone_config={"hidden_size": 8}, num_classes=3)
    text = zoo.save_pretrained(zoo.build("bert-test"), folder.parent / "bert")
    with pytest.raises(ConfigError, match="holds a 'bert' model; this task takes image models"):
        ImageClassification(init_from=str(text), num_classes=3)


def test_checkpoint_of_another_model_is_refused():
    vit = ImageClassification(backbone="vit-test", num_classes=3)
    checkpoint = {"state_dict": vit.state_dict(), "lit_tasks": {"spec": zoo.spec(vit.net)}}
    convnext = ImageClassification(backbone="convnext-test", num_classes=3)
    with pytest.raises(CheckpointError, match="'vit' classification model with 3 labels.*'convnext'"):
        convnext.on_load_checkpoint(checkpoint)
    other_size = ImageClassification(backbone="vit-test", num_classes=4)
    with pytest.raises(CheckpointError, match="with 4 labels"):
        other_size.on_load_checkpoint(checkpoint)
    assert math.isfinite(vit(torch.randn(1, 3, 32, 32)).sum().item())
