"""Text classification from the command line: fit/test/predict/resume with the tiny bert-test
model on CSVs made here, fine-tuning an HF folder (its tokenizer comes with it), and bad input
reported as one paragraph naming the file and row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import run_cli, text_args, write_text_csvs, write_text_tokenizer

from lit_tasks import zoo
from lit_tasks.commands import main

pytestmark = pytest.mark.slow


def only_run(runs: Path) -> Path:
    (run_dir,) = (runs / "tiny").iterdir()
    return run_dir


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Mean F1 over the classes that occur as a label or a prediction (true, predicted) pairs."""
    scores = []
    for label in {t for t, _ in pairs} | {p for _, p in pairs}:
        tp = sum(t == p == label for t, p in pairs)
        wrong = sum((t == label) != (p == label) for t, p in pairs)  # false positives + false negatives
        scores.append(2 * tp / (2 * tp + wrong))
    return sum(scores) / len(scores)


def assert_clear_error(result, *needles):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in message, (needle, message)


def test_fit_predict_and_resume_single_texts(tmp_path):
    files = write_text_csvs(tmp_path / "data", {"train": 48, "val": 12, "test": 9})
    with open(files["train"], "a", newline="") as f:  # one text longer than max_length=16 tokens
        csv.writer(f).writerow([" ".join(["cat"] * 30), "who", "pets"])
    runs = tmp_path / "runs"
    args = text_args(files, runs, "--model.backbone", "bert-test", "--data.tokenizer", str(write_text_tokenizer(tmp_path / "tok")))
    result = run_cli("fit", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 49 rows are longer than max_length=16" in result.stderr  # truncation is counted and named
    run_dir = only_run(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["commands"] == ["fit", "test"] and results["best"]["monitor"] == "val/acc"
    for key in ("val/acc", "val/f1", "val/loss", "test/acc", "test/f1", "train/loss"):
        assert key in results["metrics"], key
    assert results["config"]["model"]["init_args"]["label_names"] == ["pets", "sport", "weather"]
    assert (run_dir / "confusion_matrix.png").is_file()

    predicted = run_cli("predict", *args, "--ckpt_path", "best")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = [json.loads(line) for line in (only_run(runs) / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and rows[0]["id"] == f"{files['test']}#1"  # the test split's first row
    assert all(r["label"] in ("pets", "sport", "weather") and r["true_label"] and 0 < r["score"] <= 1 for r in rows)
    # fit's test metrics (best checkpoint) are the accuracy and macro F1 of these rows (same checkpoint)
    pairs = [(r["true_label"], r["label"]) for r in rows]
    assert sum(t == p for t, p in pairs) / len(pairs) == pytest.approx(results["metrics"]["test/acc"], abs=1e-6)
    assert macro_f1(pairs) == pytest.approx(results["metrics"]["test/f1"], abs=1e-6)
    # `score` on the rows gives fit's test metrics exactly: the training's own metric code (docs/scoring.md)
    scored = tmp_path / "scores.json"
    main(["score", "--metric", "accuracy_f1", "--predictions", str(only_run(runs) / "predictions.jsonl"),
          "--out", str(scored)])
    assert json.loads(scored.read_text()) == {"acc": results["metrics"]["test/acc"], "f1": results["metrics"]["test/f1"]}

    resumed = run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", "last", "--run.test_after_fit", "false")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((only_run(runs) / "results.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]  # three epochs from the first fit, one more


def test_pairs_multi_label_fine_tuned_from_a_folder_with_its_tokenizer(tmp_path):
    """model.init_from is linked to data.preprocessor: no data.tokenizer is needed."""
    folder = tmp_path / "ckpt"
    zoo.save_pretrained(zoo.build("bert-test"), folder)
    write_text_tokenizer(folder)
    files = write_text_csvs(tmp_path / "data", {"train": 48, "val": 12, "test": 6}, multi_label=True)
    runs = tmp_path / "runs"
    args = text_args(files, runs, "--model.init_from", str(folder), "--model.multi_label", "true",
                     "--model.threshold", "0.4", "--data.multi_label", "true", "--data.text_pair_column", "question")
    result = run_cli("fit", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((only_run(runs) / "results.json").read_text())
    assert results["best"]["monitor"] == "val/f1"
    for key in ("val/acc", "val/exact_match", "val/f1", "test/f1"):
        assert key in results["metrics"], key
    predicted = run_cli("predict", *args, "--ckpt_path", "best")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = [json.loads(line) for line in (only_run(runs) / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert set(row["labels"]) <= {"pets", "sport", "weather"} and all(p >= 0.4 for p in row["scores"])
        assert row["true_labels"] and len(row["top"]) == 3


@pytest.mark.parametrize("damage, needles", [
    ("unseen_label", ["val.csv row 2", "'emu'", "never occurs in the train data"]),
    ("empty_text", ["val.csv row 1", "'text' field is empty"]),
    ("missing_column", ["train.csv row 3", "'label' column is missing"]),
], ids=["unseen-val-label", "empty-text", "missing-column"])
def test_bad_rows_are_one_paragraph_naming_file_and_row(tmp_path, damage, needles):
    files = write_text_csvs(tmp_path / "data", {"train": 12, "val": 6})
    target = files["train" if damage == "missing_column" else "val"]
    lines = target.read_text().splitlines()
    if damage == "unseen_label":
        lines[2] = "a cat and a dog,what,emu"  # row 2: rows are counted after the header
    elif damage == "empty_text":
        lines[1] = '"  ",what,pets'
    else:
        lines[3] = "the cat purrs,what"  # the label field is absent
    target.write_text("\n".join(lines) + "\n")
    args = text_args(files, tmp_path / "runs", "--model.backbone", "bert-test",
                     "--data.tokenizer", str(write_text_tokenizer(tmp_path / "tok")))
    assert_clear_error(run_cli("fit", *args), str(target.parent), *needles)
