"""Token classification end to end: a tiny BERT learns context-dependent entity tags through
the CLI, beats the most-frequent-tag baseline, and predict writes entity spans."""

from __future__ import annotations

import json

import pytest
from helpers import NER_VOCAB, load_script, ner_args, run_cli, write_ner_data, write_ner_tokenizer

from lit_tasks.commands import main
from lit_tasks.metrics.entities import entity_spans


def test_most_frequent_tag_baseline():
    baseline = load_script("scripts/ner_baseline.py")
    from lit_tasks.data.token_classification import TaggedRow

    train = [TaggedRow("a", "a", ("mr", "paris", "met"), ("O", "B-PER", "O")),
             TaggedRow("b", "b", ("in", "paris"), ("O", "B-LOC")),
             TaggedRow("c", "c", ("near", "paris"), ("O", "B-LOC"))]
    table, default = baseline.fit_most_frequent(train)
    assert table["paris"] == "B-LOC" and default == "O"
    scores = baseline.score(train, [TaggedRow("d", "d", ("mr", "paris", "austin"), ("O", "B-PER", "B-PER"))])
    assert scores["acc"] == pytest.approx(1 / 3)  # "paris" -> B-LOC, unseen "austin" -> O
    assert scores["entity_precision"] == 0.0 and scores["entity_recall"] == 0.0 and scores["entity_f1"] == 0.0


@pytest.mark.slow
def test_fit_beats_most_frequent_tag_and_predicts_spans(tmp_path):
    files = write_ner_data(tmp_path / "ner", {"train": 200, "val": 40, "test": 40})
    tokenizer = write_ner_tokenizer(tmp_path / "tok")
    args = ner_args(tokenizer, files, tmp_path / "runs")
    no_dropout = {"vocab_size": len(NER_VOCAB), "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    fit = run_cli("fit", *args, "--trainer.max_epochs", "10", "--model.lr", "0.01",
                  "--model.backbone_config", json.dumps(no_dropout))
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "ner").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["commands"] == ["fit", "test"]
    metrics = results["metrics"]
    for key in ("val/entity_f1", "val/entity_precision", "val/entity_recall", "val/acc", "test/entity_f1",
                "test/entity_f1_PER", "test/entity_f1_LOC", "test/entity_f1_ORG", "test/acc", "test/loss"):
        assert key in metrics, key
    assert results["best"]["monitor"] == "val/entity_f1"
    from lit_tasks.data.token_classification import read_tagged_table

    train, test = (read_tagged_table(files[s], "tokens", "tags") for s in ("train", "test"))
    baseline = load_script("scripts/ner_baseline.py").score(train, test)
    assert baseline["entity_f1"] < 0.7  # the names are ambiguous without context
    assert metrics["test/entity_f1"] > baseline["entity_f1"] + 0.3, (metrics["test/entity_f1"], baseline)

    predict = tmp_path / "predict.jsonl"
    predict.write_text(json.dumps({"tokens": ["mrs", "paris", "austin", "praised", "them", ",", "in", "jordan",
                                              "people", "met", "."]}) + "\n")
    out = run_cli("predict", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "best",
                  "--data.predict_file", str(predict))
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert row["text"] == "mrs paris austin praised them , in jordan people met ."
    assert len(row["tags"]) == 11 and "true_tags" not in row
    words = row["text"].split(" ")
    spans = entity_spans(row["tags"])
    assert [e["label"] for e in row["entities"]] == [kind for kind, _, _ in spans]
    for entity, (_, a, b) in zip(row["entities"], spans):
        assert row["text"][entity["start"]: entity["end"]] == entity["text"] == " ".join(words[a:b])
        assert 0 < entity["score"] <= 1
    assert any(e["label"] == "PER" for e in row["entities"]), row  # "mrs paris austin" is learnt


def test_unknown_tag_in_val_is_one_paragraph(tmp_path, capsys):
    files = write_ner_data(tmp_path / "ner", {"train": 10, "val": 3})
    lines = files["val"].read_text().splitlines()
    bad = json.loads(lines[1])
    bad["tags"][0] = "B-DATE"
    files["val"].write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    args = ner_args(write_ner_tokenizer(tmp_path / "tok"), files, tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{files['val']} line 2" in err and "'B-DATE'" in err and "never occurs in the train data" in err
    assert "Traceback" not in err
