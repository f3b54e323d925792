"""`model.init_from` a lit_tasks checkpoint: the backbone is taken, the head kept when it is the
task's own (same size) and otherwise freshly initialised with a warning."""

from __future__ import annotations

import pytest
import torch

from lit_tasks import zoo
from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.tasks import ImageClassification, MaskedLanguageModeling, TextClassification, TokenClassification


def save(task, path) -> str:
    """`task` as fit writes it: weights and the lit_tasks entry (its spec)."""
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_masked_lm_checkpoint_gives_its_encoder_and_a_fresh_classifier(tmp_path):
    pretrained = MaskedLanguageModeling(backbone="bert-test", vocab_size=99)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(torch.randn_like(p))  # weights no fresh model has
    ckpt = save(pretrained, tmp_path / "best.ckpt")
    with pytest.warns(UserWarning, match="classifier of BertForSequenceClassification is freshly initialised"):
        task = TextClassification(init_from=ckpt, num_classes=3)
    assert same(task.net.bert.state_dict(), pretrained.net.bert.state_dict())
    assert task.net.classifier.out_features == 3


def test_a_checkpoint_of_the_same_task_and_size_keeps_its_head(tmp_path, recwarn):
    trained = TokenClassification(backbone="bert-test", num_classes=3, label_names=["B-X", "I-X", "O"])
    ckpt = save(trained, tmp_path / "tags.ckpt")
    again = TokenClassification(init_from=ckpt, num_classes=3, label_names=["B-X", "I-X", "O"])
    assert same(again.net.state_dict(), trained.net.state_dict())
    assert not [w for w in recwarn if "freshly initialised" in str(w.message)]
    with pytest.warns(UserWarning, match="num_labels=3, the model's num_labels=5"):
        wider = TokenClassification(init_from=ckpt, num_classes=5)
    assert same(wider.net.bert.state_dict(), trained.net.bert.state_dict())


def test_a_checkpoint_of_another_modality_or_not_ours_is_refused(tmp_path):
    image = save(ImageClassification(backbone="vit-test", num_classes=2), tmp_path / "image.ckpt")
    with pytest.raises(ConfigError, match=r"image.ckpt holds a 'vit' model; this task takes text models"):
        TextClassification(init_from=image, num_classes=2)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt: no lit_tasks model description"):
        TextClassification(init_from=str(foreign), num_classes=2)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged.ckpt cannot be read as a checkpoint"):
        TextClassification(init_from=str(damaged), num_classes=2)


def test_backbone_config_and_a_checkpoint_do_not_mix(tmp_path):
    ckpt = save(TextClassification(backbone="bert-test", num_classes=2), tmp_path / "text.ckpt")
    with pytest.raises(ConfigError, match="backbone_config cannot change a pretrained model"):
        TextClassification(init_from=ckpt, backbone_config={"num_hidden_layers": 1}, num_classes=2)
    assert zoo.spec(TextClassification(init_from=ckpt, num_classes=2).net)["family"] == "bert"
