"""Contract tests for lit_tasks.data.TextDataModule: sources, labels, batches, truncation,
caching, bad input, and the bundled Debian sections sample."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch

from lit_tasks.data import DataError, TextDataModule, UnpaddedDistributedSampler
from lit_tasks.data.samplers import LengthGroupedSampler

REPO = Path(__file__).resolve().parents[2]
VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat ran far away big small very and".split()
TRAIN = [
    ("the cat sat on the mat", "cat"),
    ("a dog ran far away", "dog"),
    ("the big dog sat", "dog"),
    ("a small cat ran", "cat"),
    ("the very very very big small cat sat on a mat and ran far away", "emu"),
]
VAL = [("a cat sat", "cat"), ("the dog ran", "dog"), ("a big dog", "dog")]


@pytest.fixture()
def tok(tmp_path) -> Path:
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return folder


def write_csv(file: Path, rows: list[tuple], header=("text", "label")) -> Path:
    with open(file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return file


def write_jsonl(file: Path, records: list[dict]) -> Path:
    file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return file


def dm_kwargs(tok: Path, **kw):
    return {"tokenizer": str(tok), "batch_size": 2, "max_length": 16, **kw}


def all_batches(loader) -> list[dict]:
    return list(loader)


def test_csv_labels_batches_and_dynamic_padding(tmp_path, tok):
    dm = TextDataModule(train_file=str(write_csv(tmp_path / "train.csv", TRAIN)),
                        val_file=str(write_csv(tmp_path / "val.csv", VAL)), **dm_kwargs(tok))
    assert dm.label_names == ["cat", "dog", "emu"] and dm.num_classes == 3  # right after __init__
    dm.setup("fit")
    batches = all_batches(dm.val_dataloader())
    assert [len(b["ids"]) for b in batches] == [2, 1]
    b = batches[0]
    assert set(b) == {"input_ids", "attention_mask", "token_type_ids", "labels", "ids"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert b[key].dtype == torch.long and b[key].shape == (2, 5)  # "[CLS] the dog ran [SEP]" is longest
    assert b["labels"].tolist() == [0, 1] and b["labels"].dtype == torch.long
    assert b["ids"] == [f"{tmp_path / 'val.csv'}#1", f"{tmp_path / 'val.csv'}#2"]
    assert b["input_ids"][0].tolist() == [2, VOCAB.index("a"), VOCAB.index("cat"), VOCAB.index("sat"), 3]
    assert b["token_type_ids"].sum() == 0 and b["attention_mask"].all()
    c = batches[1]  # one row: no padding beyond its own length
    assert c["input_ids"].shape == (1, 5)
    train = all_batches(dm.train_dataloader())
    assert sum(len(x["ids"]) for x in train) == 5
    padded = [x for x in train if (x["attention_mask"] == 0).any()]
    for x in padded:  # padding is the pad id with mask 0
        assert (x["input_ids"][x["attention_mask"] == 0] == 0).all()


def test_jsonl_pairs_get_token_type_ids(tmp_path, tok):
    records = [{"premise": t, "hypothesis": "a cat", "label": label} for t, label in TRAIN[:4]]
    f = write_jsonl(tmp_path / "train.jsonl", records)
    dm = TextDataModule(train_file=str(f), val_file=str(f), text_column="premise", text_pair_column="hypothesis",
                        **dm_kwargs(tok, batch_size=4))
    dm.setup("fit")
    (b,) = all_batches(dm.val_dataloader())
    row = b["input_ids"][0].tolist()
    # [CLS] the cat sat on the mat [SEP] a cat [SEP]
    assert row[:8] == [2, 5, 7, 9, 10, 5, 11, 3] and row[8:11] == [6, 7, 3]
    assert b["token_type_ids"][0].tolist() == [0] * 8 + [1] * 3
    assert b["ids"][0].endswith("train.jsonl#1")


def test_multi_label_csv_and_jsonl(tmp_path, tok):
    rows = [("the cat", "pet|small"), ("a big dog", "pet|big"), ("the mat", ""), ("far away", "big")]
    dm = TextDataModule(train_file=str(write_csv(tmp_path / "train.csv", rows)), val_file=str(tmp_path / "train.csv"),
                        multi_label=True, **dm_kwargs(tok, batch_size=4))
    assert dm.label_names == ["big", "pet", "small"]
    dm.setup("fit")
    (b,) = all_batches(dm.val_dataloader())
    assert b["labels"].dtype == torch.float32
    assert b["labels"].tolist() == [[0, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]]
    f = write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": labels.split("|") if labels else []} for t, labels in rows])
    dm2 = TextDataModule(train_file=str(f), val_file=str(f), multi_label=True, **dm_kwargs(tok, batch_size=4))
    dm2.setup("fit")
    assert torch.equal(next(iter(dm2.val_dataloader()))["labels"], b["labels"])
    write_csv(tmp_path / "bad.csv", [("the cat", "pet||small")])
    with pytest.raises(DataError, match=r"bad\.csv row 1: the 'label' field 'pet\|\|small' holds the label ''"):
        TextDataModule(train_file=str(tmp_path / "bad.csv"), multi_label=True, **dm_kwargs(tok))


def test_hf_dataset_with_classlabel(tmp_path, tok):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["dog", "cat"])})
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": [t for t, _ in TRAIN[:4]], "label": [1, 0, 0, 1]}, features=features),
        "validation": datasets.Dataset.from_dict({"text": [t for t, _ in VAL], "label": [1, 0, 0]}, features=features),
    }).save_to_disk(str(tmp_path / "hf"))
    dm = TextDataModule(hf_dataset=str(tmp_path / "hf"), **dm_kwargs(tok, batch_size=3))
    assert dm.label_names == ["dog", "cat"]  # the ClassLabel's own order and numbering
    dm.setup("fit")
    (b,) = all_batches(dm.val_dataloader())
    assert b["labels"].tolist() == [1, 0, 0] and b["ids"][2] == f"{tmp_path / 'hf'}/validation#2"
    with pytest.raises(DataError, match=r"no 'test' split"):
        dm.setup("test")


def test_truncation_is_counted_and_logged(tmp_path, tok, caplog):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    dm = TextDataModule(train_file=str(train), val_file=str(train), **dm_kwargs(tok, max_length=6))
    with caplog.at_level(logging.WARNING, logger="lit_tasks.data.text"):
        dm.setup("fit")
    # Rows 1, 2 and 5 have more than 4 words (6 tokens with [CLS] and [SEP]).
    assert dm.truncated == {"train": 3, "val": 3}
    messages = [r.getMessage() for r in caplog.records]
    assert any("train.csv): 3 of 5 rows are longer than max_length=6" in m and "first: row 1, row 2, row 5." in m
               for m in messages)
    assert max(len(x["input_ids"][0]) for x in dm.train_dataloader()) == 6


def test_cache_hit_then_miss_after_the_file_changes(tmp_path, tok):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    val = write_csv(tmp_path / "val.csv", VAL)
    kw = dm_kwargs(tok, cache_dir=str(tmp_path / "cache"))
    first = TextDataModule(train_file=str(train), val_file=str(val), **kw)
    first.setup("fit")
    assert first.cache_hits == {"train": False, "val": False} and len(list((tmp_path / "cache").iterdir())) == 2
    second = TextDataModule(train_file=str(train), val_file=str(val), **kw)
    second.setup("fit")
    assert second.cache_hits == {"train": True, "val": True}
    a, b = next(iter(first.val_dataloader())), next(iter(second.val_dataloader()))
    assert all(torch.equal(a[k], b[k]) for k in ("input_ids", "attention_mask", "token_type_ids", "labels"))
    assert a["ids"] == b["ids"]
    write_csv(val, [("a dog sat", "dog")] + VAL[1:])  # changed bytes -> re-tokenised
    third = TextDataModule(train_file=str(train), val_file=str(val), **kw)
    third.setup("fit")
    assert third.cache_hits == {"train": True, "val": False}
    assert next(iter(third.val_dataloader()))["labels"].tolist()[0] == 1
    other = TextDataModule(train_file=str(train), val_file=str(val), **{**kw, "max_length": 5})  # a setting
    other.setup("validate")
    assert other.cache_hits == {"val": False}


def test_predict_file_without_labels(tmp_path, tok):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    pred = write_csv(tmp_path / "pred.csv", [("the cat",), ("far away",)], header=("text",))
    dm = TextDataModule(train_file=str(train), predict_file=str(pred), **dm_kwargs(tok))
    dm.setup("predict")
    (b,) = list(dm.predict_dataloader())
    assert b["labels"].tolist() == [-1, -1] and b["ids"][1].endswith("pred.csv#2")


# ------------------------------------------------------------------------------ bad input


def test_empty_text_names_file_and_row(tmp_path, tok):
    write_csv(tmp_path / "train.csv", TRAIN[:2] + [("   ", "cat")])
    with pytest.raises(DataError, match=r"train\.csv row 3: the 'text' field is empty"):
        TextDataModule(train_file=str(tmp_path / "train.csv"), **dm_kwargs(tok))
    write_jsonl(tmp_path / "val.jsonl", [{"text": "a cat", "label": "cat"}, {"text": "", "label": "dog"}])
    dm = TextDataModule(train_file=str(write_csv(tmp_path / "ok.csv", TRAIN)), val_file=str(tmp_path / "val.jsonl"),
                        **dm_kwargs(tok))
    with pytest.raises(DataError, match=r"val\.jsonl line 2: the 'text' field is empty"):
        dm.setup("fit")


def test_missing_column_names_file_row_and_column(tmp_path, tok):
    (tmp_path / "short.csv").write_text("text,label\nthe cat,cat\nthe dog\n")
    with pytest.raises(DataError, match=r"short\.csv row 2: the 'label' column is missing from this row"):
        TextDataModule(train_file=str(tmp_path / "short.csv"), **dm_kwargs(tok))
    write_jsonl(tmp_path / "t.jsonl", [{"text": "the cat", "label": "cat"}, {"txt": "the dog", "label": "dog"}])
    with pytest.raises(DataError, match=r"t\.jsonl line 2: the 'text' column is missing from this row; row fields: 'label', 'txt'"):
        TextDataModule(train_file=str(tmp_path / "t.jsonl"), **dm_kwargs(tok))
    write_csv(tmp_path / "h.csv", TRAIN, header=("sentence", "label"))
    with pytest.raises(DataError, match=r"h\.csv: the header has no column 'text'; found columns 'sentence', 'label'"):
        TextDataModule(train_file=str(tmp_path / "h.csv"), **dm_kwargs(tok))
    write_csv(tmp_path / "p.csv", TRAIN)
    with pytest.raises(DataError, match=r"p\.csv: the header has no column 'hypothesis'"):
        TextDataModule(train_file=str(tmp_path / "p.csv"), text_pair_column="hypothesis", **dm_kwargs(tok))


def test_unseen_label_names_file_and_row(tmp_path, tok):
    dm = TextDataModule(train_file=str(write_csv(tmp_path / "train.csv", TRAIN)),
                        val_file=str(write_csv(tmp_path / "val.csv", VAL + [("a cat", "cow")])), **dm_kwargs(tok))
    with pytest.raises(DataError, match=r"val\.csv row 4: label 'cow' of the val split never occurs in the train data"):
        dm.setup("fit")


def test_tokenizer_missing_or_not_given(tmp_path):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    dm = TextDataModule(train_file=str(train), val_file=str(train))
    assert dm.num_classes == 3  # labels need no tokenizer
    with pytest.raises(DataError, match="no tokenizer given"):
        dm.setup("fit")
    with pytest.raises(DataError, match=r"tokenizer: .*nowhere does not exist"):
        TextDataModule(train_file=str(train), val_file=str(train), tokenizer=str(tmp_path / "nowhere")).setup("fit")


# ---------------------------------------------------------------------------- samplers


def test_group_by_length_batches_similar_lengths_reproducibly(tmp_path, tok):
    rows = [(" ".join(["cat"] * (1 + i % 7)), "cat" if i % 2 else "dog") for i in range(40)]
    train = write_csv(tmp_path / "train.csv", rows)
    dm = TextDataModule(train_file=str(train), group_by_length=True, **dm_kwargs(tok, batch_size=4))
    dm.setup(None)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    batches = list(loader)
    assert sorted(i for b in batches for i in b["ids"]) == sorted(f"{train}#{n}" for n in range(1, 41))
    padding = sum(int((b["attention_mask"] == 0).sum()) for b in batches)
    shuffled = TextDataModule(train_file=str(train), **dm_kwargs(tok, batch_size=4))
    torch.manual_seed(0)
    padding_shuffled = sum(int((b["attention_mask"] == 0).sum()) for b in shuffled.train_dataloader())
    assert padding < padding_shuffled
    s1, s2 = LengthGroupedSampler([3, 1, 2] * 10, 4, seed=5), LengthGroupedSampler([3, 1, 2] * 10, 4, seed=5)
    assert list(s1) == list(s2)  # the order is a function of (seed, epoch)
    s1.set_epoch(1)
    assert list(s1) != list(s2)


def test_eval_loaders_use_the_unpadded_sampler_under_ddp(tmp_path, tok):
    import lightning as L

    train = write_csv(tmp_path / "train.csv", TRAIN)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    dm = TextDataModule(train_file=str(train), val_file=str(train), **dm_kwargs(tok))
    dm.trainer = trainer
    dm.setup("fit")
    val = dm.val_dataloader()
    assert isinstance(val.sampler, UnpaddedDistributedSampler) and list(val.sampler) == [0, 2, 4]


# -------------------------------------------------------------------------- demo data


def test_demo_csvs_have_sixteen_classes_in_every_split():
    root = REPO / "demo_data" / "debian_sections"
    if not root.is_dir():
        pytest.fail(f"{root} missing; run scripts/make_text_demo_data.py")
    labels, packages = {}, {}
    for split in ("train", "val", "test"):
        with open(root / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and set(rows[0]) == {"package", "text", "label"}
        labels[split] = {r["label"] for r in rows}
        packages[split] = {r["package"] for r in rows}
        assert all(r["text"].strip() for r in rows)
    assert len(labels["train"]) == 16 and labels["val"] == labels["train"] == labels["test"]
    assert not packages["train"] & packages["val"] and not packages["train"] & packages["test"]
    dm = TextDataModule(train_file=str(root / "train.csv"), val_file=str(root / "val.csv"),
                        test_file=str(root / "test.csv"))
    assert dm.num_classes == 16 and "python" in dm.label_names


def test_hf_multi_label_sequence_of_classlabel(tmp_path, tok):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.Sequence(datasets.ClassLabel(names=["x", "y", "z"]))})
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a cat", "the dog"], "label": [[0, 2], []]}, features=features),
        "test": datasets.Dataset.from_dict({"text": ["a mat"], "label": [[1]]}, features=features),
    }).save_to_disk(str(tmp_path / "hf"))
    dm = TextDataModule(hf_dataset=str(tmp_path / "hf"), multi_label=True, **dm_kwargs(tok))
    assert dm.label_names == ["x", "y", "z"]
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["labels"].tolist() == [[0.0, 1.0, 0.0]]
    dm.setup("predict")  # without predict_file: the test split
    assert next(iter(dm.predict_dataloader()))["ids"] == [f"{tmp_path / 'hf'}/test#0"]


@pytest.mark.parametrize("group_by_length", [False, True])
def test_train_loader_resumes_mid_epoch(tmp_path, tok, group_by_length):
    """The text loaders are the resumable ones: a loader restored from the state saved after two
    batches yields exactly the rest of the epoch, length-grouped or shuffled."""
    rows = [(" ".join(["cat"] * (1 + i % 7)), "cat" if i % 2 else "dog") for i in range(30)]
    train = write_csv(tmp_path / "train.csv", rows)

    def loader():
        dm = TextDataModule(train_file=str(train), group_by_length=group_by_length, **dm_kwargs(tok, batch_size=4))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(3)
        return loader

    full = [b["ids"] for b in loader()]
    interrupted = loader()
    it = iter(interrupted)
    assert [next(it)["ids"], next(it)["ids"]] == full[:2]
    resumed = loader()
    resumed.load_state_dict(interrupted.state_dict())
    resumed.sampler.set_epoch(3)
    assert [b["ids"] for b in resumed] == full[2:]


def test_a_byte_level_bpe_is_trained_on_the_train_texts(tmp_path):
    """For a decoder trained from scratch (GPT-2 with a last-token head): no tokenizer folder."""
    train = write_csv(tmp_path / "train.csv", TRAIN * 20)
    kw = {"train_file": str(train), "train_tokenizer_vocab_size": 270, "cache_dir": str(tmp_path / "cache"),
          "batch_size": 2, "max_length": 64}
    dm = TextDataModule(**kw)
    tk = dm.tokenizer
    assert tk.byte_level and tk.pad == tk.eos and 257 < tk.vocab_size <= 270
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert tk.decode(row) in {text for text, _ in TRAIN}  # no special tokens added, text intact
    assert TextDataModule(**kw).tokenizer.files() == tk.files()  # trained once, found again
    assert len(list((tmp_path / "cache").glob("tokenizer-*"))) == 1
    with pytest.raises(Exception, match="not both"):
        TextDataModule(**kw, tokenizer=str(tmp_path))
