"""`python -m lit_tasks score` (in-process): references from the rows or from a file joined on the
key, the numbers of the training's metric code, and bad input as one line naming file and line
with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_tasks.commands import main
from lit_tasks.metrics.evaluate_modules import scoring


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def score(capsys, *args: str) -> dict:
    main(["score", *map(str, args)])
    return json.loads(capsys.readouterr().out)


def failure(capsys, *args: str) -> str:
    """The one-line message of a score command that must fail with exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(["score", *map(str, args)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


QA_ROWS = [{"id": "q1", "answer": "Paris", "score": 0.9, "start": 0, "end": 5, "true_answers": ["Paris", "in Paris"]},
           {"id": "q2", "answer": "the blue ball", "score": 0.5, "start": 3, "end": 16, "true_answers": ["red ball"]},
           {"id": "q3", "answer": "", "score": 0.7, "start": None, "end": None, "true_answers": []}]


def test_squad_from_the_rows_and_from_a_squad_file(tmp_path, capsys):
    predictions = write_jsonl(tmp_path / "predictions.jsonl", QA_ROWS)
    expected = scoring.squad([r["answer"] for r in QA_ROWS], [r["true_answers"] for r in QA_ROWS])
    out = tmp_path / "scores" / "squad.json"
    assert score(capsys, "--metric", "squad", "--predictions", predictions, "--out", out) == expected
    assert json.loads(out.read_text()) == expected
    assert 0 < expected["f1"] < 100 and expected["no_answer_total"] == 1
    # the QA data format itself (SQuAD's answers dict), in another order, with other true_answers in the rows
    data = write_jsonl(tmp_path / "test.jsonl", [
        {"id": "q3", "question": "?", "context": "...", "answers": {"text": [], "answer_start": []}},
        {"id": "q1", "question": "?", "context": "...", "answers": {"text": ["Paris", "in Paris"], "answer_start": [0, 3]}},
        {"id": "q2", "question": "?", "context": "...", "answers": {"text": ["red ball"], "answer_start": [4]}}])
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{**r, "true_answers": ["x"]} for r in QA_ROWS])
    assert score(capsys, "--metric", "squad", "--predictions", wrong, "--references", data) == expected


def test_wer_cer_joins_clip_paths_relative_to_the_manifest(tmp_path, capsys):
    clips = tmp_path / "corpus" / "clips"
    rows = [{"path": str(clips / "b.flac"), "text": "hello wrld"}, {"path": str(clips / "a.flac"), "text": "a cat sat"}]
    predictions = write_jsonl(tmp_path / "predictions.jsonl", rows)
    clips.mkdir(parents=True)
    manifest = tmp_path / "corpus" / "test.csv"
    manifest.write_text("path,text\nclips/a.flac,the cat sat\n./clips/../clips/b.flac,hello world\n")
    expected = scoring.wer_cer(["hello wrld", "a cat sat"], ["hello world", "the cat sat"])
    assert score(capsys, "--metric", "wer_cer", "--predictions", predictions, "--references", manifest) == expected
    assert expected["wer"] == pytest.approx(2 / 5)
    # raw transcripts: normalised as the audio data normalises them (data.case, data.remove_chars)
    manifest.write_text('path,text\nclips/a.flac,The  CAT sat.\nclips/b.flac,"Hello, world!"\n')
    assert score(capsys, "--metric", "wer_cer", "--predictions", predictions, "--references", manifest) != expected
    assert score(capsys, "--metric", "wer_cer", "--predictions", predictions, "--references", manifest,
                 "--case", "lower") == expected


def test_generated_text_needs_targets(tmp_path, capsys):
    rows = [{"id": "a#1", "prediction": "the cat sat", "target": "the cat sat down"},
            {"id": "a#2", "prediction": "a dog ran", "target": "the dog ran away"}]
    test_predictions = write_jsonl(tmp_path / "test_predictions.jsonl", rows)  # what fit's test writes
    expected = scoring.rouge([r["prediction"] for r in rows], [r["target"] for r in rows])
    assert score(capsys, "--metric", "rouge", "--predictions", test_predictions) == expected
    predict_rows = write_jsonl(tmp_path / "predictions.jsonl", [{"id": r["id"], "source": "...", "prediction": r["prediction"]}
                                                                for r in rows])  # predict's rows: no target
    message = failure(capsys, "--metric", "bleu_chrf", "--predictions", predict_rows)
    assert f"{predict_rows} line 1: no 'target' field" in message and "--references" in message
    data = write_jsonl(tmp_path / "test.jsonl", [{"id": r["id"], "source": "...", "target": r["target"]} for r in rows])
    assert score(capsys, "--metric", "rouge", "--predictions", predict_rows, "--references", data) == expected


def test_accuracy_f1_from_the_rows_with_top_k(tmp_path, capsys):
    rows = [{"id": "1", "label": "cat", "top": [["cat", 0.6], ["dog", 0.3], ["owl", 0.1]], "true_label": "cat"},
            {"id": "2", "label": "dog", "top": [["dog", 0.5], ["owl", 0.3], ["cat", 0.2]], "true_label": "owl"},
            {"id": "3", "label": "dog", "top": [["dog", 0.8], ["owl", 0.15], ["cat", 0.05]], "true_label": "cat"}]
    predictions = write_jsonl(tmp_path / "predictions.jsonl", rows)
    scores = score(capsys, "--metric", "accuracy_f1", "--predictions", predictions, "--top-k", "2")
    assert scores == scoring.accuracy_f1([[p[0] for p in r["top"]] for r in rows], [r["true_label"] for r in rows],
                                         top_k=2)
    assert scores["acc"] == pytest.approx(1 / 3) and scores["top2_acc"] == pytest.approx(2 / 3)
    message = failure(capsys, "--metric", "accuracy_f1", "--predictions", predictions, "--label-names", "cat", "dog")
    assert f"{predictions} line 2: the label 'owl' is not among --label-names" in message


def test_coco_map_needs_every_image_on_both_sides(tmp_path, capsys):
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 3, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0}]}
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(gt))
    rows = [{"path": "1.jpg", "image_id": 1, "detections": [{"label": "cat", "category_id": 3, "score": 0.9,
                                                             "box": [10, 10, 50, 40]}]},
            {"path": "2.jpg", "image_id": 2, "detections": []}]
    predictions = write_jsonl(tmp_path / "predictions.jsonl", rows)
    scores = score(capsys, "--metric", "coco_map", "--predictions", predictions, "--references", instances)
    assert scores["map"] == pytest.approx(1.0) and len(scores) == 12
    one = write_jsonl(tmp_path / "one.jsonl", rows[:1])
    assert f"{instances}: no prediction for image_id 2 in {one}" in failure(
        capsys, "--metric", "coco_map", "--predictions", one, "--references", instances)
    other = write_jsonl(tmp_path / "other.jsonl", [*rows, {"path": "9.jpg", "image_id": 9, "detections": []}])
    assert f"{other} line 3: no reference for image_id 9" in failure(
        capsys, "--metric", "coco_map", "--predictions", other, "--references", instances)


@pytest.mark.parametrize("case", ["missing reference", "missing prediction", "bad json", "not an object",
                                  "duplicate key", "no truth field", "bad answer", "tag count"])
def test_bad_input_is_one_line_naming_file_and_line(case, tmp_path, capsys):
    predictions = write_jsonl(tmp_path / "predictions.jsonl", QA_ROWS)
    refs = [{"id": r["id"], "answers": r["true_answers"]} for r in QA_ROWS]
    references = write_jsonl(tmp_path / "references.jsonl", refs)
    metric, extra = "squad", []
    if case == "missing reference":
        write_jsonl(references, [refs[0], refs[2]])
        needle = f"{predictions} line 2: no reference for id 'q2' in {references}"
    elif case == "missing prediction":
        write_jsonl(references, [*refs, {"id": "q9", "answers": ["x"]}])
        needle = f"{references} line 4: no prediction for id 'q9' in {predictions}"
    elif case == "bad json":
        predictions.write_text(json.dumps(QA_ROWS[0]) + "\n{'id': 'q2'}\n")
        needle = f"{predictions} line 2: not valid JSON"
    elif case == "not an object":
        predictions.write_text(json.dumps(QA_ROWS[0]) + "\n\n[1, 2]\n")
        needle = f"{predictions} line 3: expected a JSON object"
    elif case == "duplicate key":
        write_jsonl(predictions, [*QA_ROWS, QA_ROWS[0]])
        needle = f"{predictions} line 4: id 'q1' is also on line 1"
    elif case == "no truth field":
        write_jsonl(predictions, [QA_ROWS[0], {k: v for k, v in QA_ROWS[1].items() if k != "true_answers"}])
        needle = f"{predictions} line 2: no 'true_answers' field"
    elif case == "bad answer":
        write_jsonl(references, [refs[0], {"id": "q2", "answers": "red ball"}, refs[2]])
        needle = f"{references} line 2: the 'answers' field is 'red ball'; expected a list of gold answer texts"
    else:
        write_jsonl(predictions, [{"id": "s1", "tags": ["O", "B-PER"], "true_tags": ["O", "B-PER"]},
                                  {"id": "s2", "tags": ["O"], "true_tags": ["O", "O"]}])
        metric, needle = "entity_f1", f"{predictions} line 2: 1 predicted tags for 2 reference tags"
    if case in ("missing reference", "missing prediction", "bad answer"):
        extra = ["--references", references]
    message = failure(capsys, "--metric", metric, "--predictions", predictions, *extra)
    assert needle in message, message


def test_unknown_metric_and_misplaced_options_exit_2(tmp_path, capsys):
    predictions = write_jsonl(tmp_path / "predictions.jsonl", QA_ROWS)
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--metric", "map", "--predictions", str(predictions)])
    assert exit_.value.code == 2
    assert "invalid choice: 'map'" in capsys.readouterr().err
    message = failure(capsys, "--metric", "squad", "--predictions", predictions, "--top-k", "2")
    assert "--top-k applies to --metric accuracy_f1, not to squad" in message
    message = failure(capsys, "--metric", "squad", "--predictions", tmp_path / "nope.jsonl")
    assert f"{tmp_path / 'nope.jsonl'}: the predictions file does not exist" in message
