"""TextClassification: losses, metrics, predictions with label names, layer decay, and the
checks on checkpoints and on data that does not fit the network."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import attach_trainer

from lit_tasks.errors import CheckpointError
from lit_tasks.errors import ConfigError
from lit_tasks.tasks import TextClassification
from lit_tasks import zoo

NAMES = ["pets", "sport", "weather"]


def task(**kw) -> TextClassification:
    torch.manual_seed(0)
    args = {"backbone": "bert-test", "num_classes": 3, "label_names": NAMES, "lr": 3e-3, "warmup_fraction": 0.0, **kw}
    return TextClassification(**args)


def batch(labels: torch.Tensor, T: int = 7) -> dict:
    g = torch.Generator().manual_seed(1)
    B = labels.shape[0]
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, T - 2:] = 0  # one padded row
    return {"input_ids": torch.randint(5, 99, (B, T), generator=g) * mask, "attention_mask": mask,
            "token_type_ids": torch.zeros(B, T, dtype=torch.long), "labels": labels,
            "ids": [f"data.csv#{i + 2}" for i in range(B)]}


@pytest.mark.parametrize("multi_label", [False, True], ids=["multi-class", "multi-label"])
def test_loss_decreases_on_one_batch(multi_label):
    model = task(multi_label=multi_label)
    attach_trainer(model, steps=30)
    optimizer = model.configure_optimizers()["optimizer"]
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32) if multi_label \
        else torch.tensor([0, 1, 2, 0])
    data = batch(labels)
    model.log = model.log_dict = lambda *a, **k: None  # no trainer loop to log into
    losses = []
    for _ in range(25):
        loss = model.training_step(data, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    metrics = model.metrics["train_metrics"].compute()
    assert set(metrics) == ({"train/acc", "train/exact_match", "train/f1"} if multi_label else {"train/acc", "train/f1"})


def test_predict_rows_carry_label_names_and_scores():
    model = task().eval()
    with torch.no_grad():
        model.net.classifier.bias.copy_(torch.tensor([0.0, 20.0, 0.0]))  # "sport" wins everywhere
    rows = model.predict_step(batch(torch.tensor([2, -1])), 0)
    assert [r["id"] for r in rows] == ["data.csv#2", "data.csv#3"]
    assert all(r["label"] == "sport" and r["score"] > 0.99 for r in rows)
    assert [name for name, _ in rows[0]["top"]][0] == "sport" and len(rows[0]["top"]) == 3
    assert rows[0]["true_label"] == "weather" and "true_label" not in rows[1]  # -1: unlabelled


def test_multi_label_predictions_are_the_labels_over_the_threshold():
    model = task(multi_label=True, threshold=0.6).eval()
    with torch.no_grad():
        model.net.classifier.weight.zero_()
        model.net.classifier.bias.copy_(torch.tensor([3.0, 0.0, 5.0]))  # sigmoid: 0.95, 0.5, 0.99
    rows = model.predict_step(batch(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])), 0)
    assert rows[0]["labels"] == ["weather", "pets"] and rows[0]["scores"][0] > rows[0]["scores"][1] > 0.6
    assert rows[0]["true_labels"] == ["sport"] and "true_labels" not in rows[1]


def test_layer_decay_follows_bert_depth():
    model = task(lr=1.0, layer_decay=0.5)
    attach_trainer(model)
    optimizer = model.configure_optimizers()["optimizer"]
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    top = model.net.num_layers + 1  # 3 for the 2-block bert-test
    assert lr_of[id(named["net.classifier.weight"])] == 1.0
    assert lr_of[id(named["net.bert.pooler.weight"])] == 1.0
    assert lr_of[id(named["net.bert.embeddings.word_embeddings.weight"])] == 0.5**top
    assert lr_of[id(named["net.bert.layers.1.mlp.fc1.weight"])] == 0.5
    assert len(lr_of) == len(named)


def test_checkpoint_of_another_size_or_family_is_refused():
    model = task()
    good = {"lit_tasks": model.export_metadata(), "state_dict": model.state_dict()}
    model.on_load_checkpoint(good)  # its own checkpoint fits
    deeper = task(backbone_config={"num_hidden_layers": 3})
    with pytest.raises(CheckpointError, match="another size"):
        deeper.on_load_checkpoint(good)
    with pytest.raises(CheckpointError, match="with 4 labels"):
        task(num_classes=4, label_names=None).on_load_checkpoint(good)
    image = {"lit_tasks": {"spec": {"family": "vit", "config": {}, "num_classes": 3}}}
    with pytest.raises(CheckpointError, match="'vit'.*'bert'"):
        model.on_load_checkpoint(image)
    with pytest.raises(CheckpointError, match="multi_label"):
        task(multi_label=True).on_load_checkpoint(good)


def test_fine_tuning_an_hf_folder_gets_a_fresh_head_of_the_right_size(tmp_path):
    source = zoo.build("bert-test", "sequence_classification", num_labels=7)
    zoo.save_pretrained(source, tmp_path / "ckpt")
    model = TextClassification(init_from=str(tmp_path / "ckpt"), num_classes=3, label_names=NAMES)
    assert model.net.classifier.out_features == 3
    assert torch.equal(model.net.bert.layers[0].mlp.fc1.weight, source.bert.layers[0].mlp.fc1.weight)


@pytest.mark.parametrize("kwargs, needle", [
    ({"multi_label": True, "label_smoothing": 0.1}, "label_smoothing"),
    ({"threshold": 1.0}, "threshold"),
    ({"num_classes": 1, "label_names": None}, "at least 2"),
    ({"backbone": "vit-test"}, "one of the text presets with a 'sequence_classification' head"),
])
def test_bad_settings_are_config_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        task(**kwargs)


def test_data_that_does_not_fit_the_network_is_refused_before_training():
    model = task()
    tokenizer = SimpleNamespace(vocab_size=30, source="tok/vocab.txt")
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(tokenizer=tokenizer, max_length=16, multi_label=False))
    model.setup("fit")  # fits
    model._trainer.datamodule.tokenizer = SimpleNamespace(vocab_size=30522, source="big/tokenizer.json")
    with pytest.raises(ConfigError, match="30522 tokens.*vocab_size is 99"):
        model.setup("fit")
    model._trainer.datamodule = SimpleNamespace(tokenizer=tokenizer, max_length=128, multi_label=False)
    with pytest.raises(ConfigError, match="max_length is 128.*64 positions"):
        model.setup("fit")
    model._trainer.datamodule = SimpleNamespace(tokenizer=tokenizer, max_length=16, multi_label=True)
    with pytest.raises(ConfigError, match="data.multi_label"):
        model.setup("fit")
    with pytest.raises(ConfigError, match="multi_label"):
        model.training_step(batch(torch.zeros(2, 3)), 0)  # multi-hot labels for a multi-class model


def test_tokenizer_comes_from_the_preprocessor_folder_unless_given(tmp_path):
    """The CLI links model.init_from to data.preprocessor; an explicit data.tokenizer wins."""
    from helpers import write_text_csvs, write_text_tokenizer

    from lit_tasks.data import DataError, TextDataModule

    files = write_text_csvs(tmp_path / "data", {"train": 6})
    checkpoint, other = write_text_tokenizer(tmp_path / "ckpt"), write_text_tokenizer(tmp_path / "other")
    linked = TextDataModule(train_file=str(files["train"]), preprocessor=str(checkpoint))
    assert linked.tokenizer.source.startswith(str(checkpoint))
    explicit = TextDataModule(train_file=str(files["train"]), preprocessor=str(checkpoint), tokenizer=str(other))
    assert explicit.tokenizer.source.startswith(str(other))
    missing = TextDataModule(train_file=str(files["train"]), preprocessor=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data.preprocessor \(model.init_from\).*nowhere does not exist"):
        missing.tokenizer  # noqa: B018
