"""read_json_object: the one reader of a JSON object file (model and tokenizer configs, COCO
instances, preprocessor configs, safetensors indexes), and the error each caller raises."""

from __future__ import annotations

import pytest

from lit_tasks.data.coco import read_coco_json
from lit_tasks.data.preprocessor import read_preprocessor_json
from lit_tasks.errors import DataError, LoadError, read_json_object
from lit_tasks.metrics.evaluate_modules.scoring import read_coco
from lit_tasks.zoo.hub import read_config

BAD = [
    ('{"a": ', r"x\.json: not valid JSON \(.*line 1.*\); expected a thing\."),
    ("[1, 2]", r"x\.json holds a JSON list; expected a thing\."),
    ('"text"', r"x\.json holds a JSON str; expected a thing\."),
    (b"\xff\xfe{", r"x\.json: not valid JSON \(.*utf-8.*\); expected a thing\."),
]


def test_an_object_is_returned(tmp_path):
    (tmp_path / "x.json").write_text('{"a": [1, {"b": null}]}', encoding="utf-8")
    assert read_json_object(tmp_path / "x.json", "a thing") == {"a": [1, {"b": None}]}


@pytest.mark.parametrize("text, message", BAD)
def test_bad_files_name_the_file_and_what_was_expected(tmp_path, text, message):
    file = tmp_path / "x.json"
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=message):
        read_json_object(file, "a thing")
    with pytest.raises(LoadError, match=message):
        read_json_object(file, "a thing", LoadError)


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.json: cannot be read \(No such file or directory\); expected a thing"):
        read_json_object(tmp_path / "nothing.json", "a thing")
    with pytest.raises(DataError, match=r"cannot be read \(Is a directory\)"):
        read_json_object(tmp_path, "a thing")


@pytest.mark.parametrize("read, name, error, what", [
    (lambda folder: read_config(folder), "config.json", LoadError, "a model config object"),
    (lambda folder: read_preprocessor_json(str(folder), "defaults"), "preprocessor_config.json", DataError,
     "a preprocessor config object"),
    (lambda folder: read_coco_json(folder / "instances.json"), "instances.json", DataError, "a COCO instances object"),
    (lambda folder: read_coco(folder / "instances.json"), "instances.json", DataError, "a COCO instances object"),
])
def test_each_caller_says_what_its_file_should_hold(tmp_path, read, name, error, what):
    (tmp_path / name).write_text("[]")
    with pytest.raises(error, match=rf"{name} holds a JSON list; expected {what}\."):
        read(tmp_path)
