"""TokenClassification contract: loss on labelled positions only, predict rows, tag sets
without entities, checkpoints of another tag set refused."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import NER_VOCAB, write_ner_data, write_ner_tokenizer

from lit_tasks.data.token_classification import TokenClassificationDataModule
from lit_tasks.errors import CheckpointError
from lit_tasks.metrics.entities import entity_spans
from lit_tasks.tasks.token_classification import TokenClassification


def tiny(label_names: list[str]) -> TokenClassification:
    torch.manual_seed(0)
    return TokenClassification(backbone="bert-test", backbone_config={"vocab_size": len(NER_VOCAB)},
                               num_classes=len(label_names), label_names=label_names, lr=0.01)


@pytest.fixture
def data(tmp_path) -> TokenClassificationDataModule:
    files = write_ner_data(tmp_path / "ner", {"train": 16, "val": 4})
    return TokenClassificationDataModule(train_file=str(files["train"]), val_file=str(files["val"]),
                                         tokenizer=str(write_ner_tokenizer(tmp_path / "tok")), batch_size=16)


def test_loss_ignores_unlabelled_positions_and_decreases(data):
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    model = tiny(data.label_names)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, C)
        assert logits.shape == (*batch["input_ids"].shape, data.num_classes)
        keep = batch["labels"] != -100
        loss = torch.nn.functional.cross_entropy(logits[keep], batch["labels"][keep])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # scores at ignored positions do not change the loss
    model.eval()
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        shifted = logits.clone()
        shifted[batch["labels"] == -100] += 100.0
        a = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        b = torch.nn.functional.cross_entropy(shifted.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    assert a == pytest.approx(b.item())


def test_predict_rows_have_one_tag_per_word_and_offsets(data, tmp_path):
    predict = tmp_path / "predict.jsonl"
    predict.write_text(json.dumps({"tokens": ["mr", "paris", "visited", "the", "austin", "company"]}) + "\n")
    data.files["predict"] = str(predict)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    model = tiny(data.label_names).eval()
    with torch.no_grad():
        (row,) = model.predict_step(batch, 0)
    assert row["text"] == "mr paris visited the austin company" and len(row["tags"]) == 6
    assert set(row["tags"]) <= set(data.label_names) and "true_tags" not in row
    assert [e["label"] for e in row["entities"]] == [kind for kind, _, _ in entity_spans(row["tags"])]
    for e in row["entities"]:
        assert row["text"][e["start"]: e["end"]] == e["text"]


def test_tags_that_are_not_iob2_are_scored_by_accuracy_only():
    model = tiny(["DET", "NOUN", "VERB"])
    assert model.monitor == ("val/acc", "max") and len(model.entities) == 0
    assert tiny(["B-PER", "I-PER", "O"]).monitor == ("val/entity_f1", "max")


def test_checkpoint_of_another_tag_set_is_refused():
    trained = tiny(["B-PER", "I-PER", "O"])
    checkpoint = {"state_dict": trained.state_dict(), "lit_tasks": trained.export_metadata()}
    with pytest.raises(CheckpointError, match="tags"):
        tiny(["B-LOC", "I-LOC", "O"]).on_load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match="with 4 labels"):
        tiny(["B-LOC", "I-LOC", "B-PER", "O"]).on_load_checkpoint(checkpoint)
    tiny(["B-PER", "I-PER", "O"]).on_load_checkpoint(checkpoint)  # the same tags load
