"""TokenClassificationDataModule: reading, first-sub-word label alignment, truncation, caching,
and bad input named by file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import write_ner_data, write_ner_tokenizer

from lit_tasks.data.token_classification import IGNORE, TokenClassificationDataModule
from lit_tasks.errors import DataError


def write_jsonl(file: Path, rows: list[dict]) -> Path:
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    return write_ner_tokenizer(tmp_path / "tok")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return write_ner_data(tmp_path / "ner", {"train": 20, "val": 6, "test": 6})


def module(files: dict[str, Path], tokenizer: Path, **kw) -> TokenClassificationDataModule:
    return TokenClassificationDataModule(**{f"{s}_file": str(f) for s, f in files.items()},
                                         tokenizer=str(tokenizer), **kw)


def test_labels_sit_on_the_first_sub_word(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"tokens": ["mr", "paris", "visited", "austin", "."], "tags": ["O", "B-PER", "O", "B-LOC", "O"]},
    ])
    dm = TokenClassificationDataModule(train_file=str(train), tokenizer=str(tokenizer), batch_size=4)
    assert dm.label_names == ["B-LOC", "B-PER", "O"] and dm.num_classes == 3
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    pieces = dm.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert pieces == ["[CLS]", "mr", "paris", "visit", "##ed", "austin", ".", "[SEP]"]
    names = dm.label_names
    expected = [IGNORE, names.index("O"), names.index("B-PER"), names.index("O"), IGNORE, names.index("B-LOC"),
                names.index("O"), IGNORE]
    assert batch["labels"][0].tolist() == expected  # "##ed" is ignored
    assert batch["word_ids"][0].tolist() == [-1, 0, 1, 2, 2, 3, 4, -1]
    assert batch["attention_mask"].all() and not batch["token_type_ids"].any()


def test_batches_pad_labels_and_word_ids(files, tokenizer):
    dm = module(files, tokenizer, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < batch["input_ids"].shape[1]  # rows of different lengths: padding happened
    padding = batch["attention_mask"] == 0
    assert (batch["labels"][padding] == IGNORE).all() and (batch["word_ids"][padding] == -1).all()
    assert (batch["input_ids"][padding] == dm.tokenizer.pad).all()
    # every word has exactly one labelled position
    assert ((batch["labels"] != IGNORE).sum(1) == batch["num_words"]).all()


def test_truncation_is_counted_and_keeps_the_first_words(files, tokenizer, caplog):
    dm = module(files, tokenizer, max_length=8)
    dm.setup("fit")
    assert dm.truncated["train"] > 0 and dm.truncated["val"] > 0
    assert "were cut" in caplog.text
    enc = dm.encoded("train")
    assert enc.lengths.max() == 8
    row = dm.rows("train")[0]
    item = dm._dataset("train")[0]
    assert (item["labels"] != IGNORE).sum() <= min(6, len(row.words))


def test_csv_with_whitespace_separated_columns(tmp_path, tokenizer):
    train = tmp_path / "train.csv"
    train.write_text("words,ner\nmr paris visited austin .,O B-PER O B-LOC O\nin georgia people met .,O B-LOC O O O\n")
    dm = TokenClassificationDataModule(train_file=str(train), tokens_column="words", tags_column="ner",
                                       tokenizer=str(tokenizer))
    assert dm.rows("train")[1].words == ("in", "georgia", "people", "met", ".")
    assert dm.label_names == ["B-LOC", "B-PER", "O"]


def test_hf_dataset_with_classlabel_tags(tmp_path, tokenizer):
    datasets = pytest.importorskip("datasets")
    names = ["O", "B-PER", "B-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    split = {"tokens": [["mr", "paris"], ["in", "austin"]], "ner_tags": [[0, 1], [0, 2]]}
    folder = tmp_path / "hf"
    datasets.DatasetDict({s: datasets.Dataset.from_dict(split, features=features) for s in ("train", "validation")}) \
        .save_to_disk(str(folder))
    dm = TokenClassificationDataModule(hf_dataset=str(folder), tags_column="ner_tags", tokenizer=str(tokenizer))
    assert dm.label_names == names  # the dataset's own order
    assert dm.rows("val")[1].tags == ("O", "B-LOC")


def test_cache_is_reused_and_invalidated(files, tokenizer, tmp_path):
    cache = tmp_path / "cache"
    first = module(files, tokenizer, cache_dir=str(cache))
    first.setup("fit")
    assert first.cache_hits == {"train": False, "val": False}
    second = module(files, tokenizer, cache_dir=str(cache))
    second.setup("fit")
    assert second.cache_hits == {"train": True, "val": True}
    cached, fresh = second.encoded("train"), first.encoded("train")
    assert torch.equal(torch.from_numpy(cached.labels), torch.from_numpy(fresh.labels))
    assert torch.equal(torch.from_numpy(cached.word_ids), torch.from_numpy(fresh.word_ids))
    third = module(files, tokenizer, cache_dir=str(cache), max_length=10)
    third.setup("fit")
    assert third.cache_hits["train"] is False


def test_predict_file_without_tags_gives_words(tmp_path, files, tokenizer):
    predict = write_jsonl(tmp_path / "predict.jsonl", [{"tokens": ["mr", "jordan", "grew"]}])
    dm = module({**files, "predict": predict}, tokenizer)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["words"] == [["mr", "jordan", "grew"]]
    assert (batch["labels"] == IGNORE).all()


BAD_ROWS = {
    "length mismatch": ({"tokens": ["mr", "paris"], "tags": ["O"]}, r"2 words in 'tokens' but 1 tags in 'tags'"),
    "missing column": ({"tokens": ["mr", "paris"]}, r"the 'tags' column is missing from this row"),
    "empty tokens": ({"tokens": [], "tags": []}, r"the 'tokens' list is empty"),
    "blank word": ({"tokens": ["mr", " "], "tags": ["O", "O"]}, r"word 1 of 'tokens' is ' '"),
    "tokens not a list": ({"tokens": 3, "tags": ["O"]}, r"expected a list of words"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_name_file_and_line(tmp_path, files, tokenizer, case):
    row, message = BAD_ROWS[case]
    good = json.loads(files["train"].read_text().splitlines()[0])
    train = write_jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(DataError, match=message) as info:
        TokenClassificationDataModule(train_file=str(train), tokenizer=str(tokenizer))
    assert f"{train} line 3" in str(info.value)


def test_unknown_tag_in_val_names_file_line_and_tag(tmp_path, files, tokenizer):
    val = write_jsonl(tmp_path / "val.jsonl", [{"tokens": ["in", "paris"], "tags": ["O", "B-LOC"]},
                                               {"tokens": ["mr", "paris"], "tags": ["O", "B-MISC"]}])
    dm = module({**files, "val": val}, tokenizer)
    with pytest.raises(DataError, match=r"tag 'B-MISC' \(word 1, 'paris'\) of the val split never occurs") as info:
        dm.setup("fit")
    assert f"{val} line 2" in str(info.value)


def test_val_without_train_is_refused(files, tokenizer):
    with pytest.raises(DataError, match="need train_file"):
        TokenClassificationDataModule(val_file=str(files["val"]), tokenizer=str(tokenizer))
