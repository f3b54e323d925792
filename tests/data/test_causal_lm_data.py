"""CausalLMDataModule: corpus reading, packing into blocks or rows, labels, prompts, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_tasks.data.causal_lm import IGNORE, CausalLMDataModule, read_corpus
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.bpe import train_bpe_texts

DOCS = [
    "def add(a, b):\n    return a + b",
    "The for statement iterates over a sequence.",
    "    indented line\nnext line",
    "while True:\n    pass",
    "A short one.",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("clm")
    rows = [{"id": i, "text": t} for i, t in enumerate(DOCS * 6)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS[:3]))
    (root / "prompts.txt").write_text("def add(\n\nThe for\n")
    train_bpe_texts([t for t in DOCS * 6], 300, root / "tok")
    return root


def data(corpus, **kw) -> CausalLMDataModule:
    args = {"train_file": str(corpus / "train.jsonl"), "val_file": str(corpus / "val.jsonl"),
            "tokenizer": str(corpus / "tok"), "max_length": 16, "batch_size": 4} | kw
    return CausalLMDataModule(**args)


def tokens(dm, text: str) -> list[int]:
    return dm.tokenizer.encode_raw([text], truncation=False, add_special_tokens=False)[0].ids


def test_reading_keeps_lines_and_indentation(tmp_path):
    text = tmp_path / "c.txt"
    text.write_text("\n\ndef f():\n    return 1   \n\n\nsecond doc\n", encoding="utf-8")
    docs = read_corpus(text)
    assert [d.text for d in docs] == ["def f():\n    return 1", "second doc"]
    assert docs[1].where.endswith("c.txt line 7")
    assert [d.text for d in read_corpus(text, prompts=True)] == ["def f():", "    return 1", "second doc"]
    table = tmp_path / "c.jsonl"
    table.write_text(json.dumps({"text": "a\n\n  b"}) + "\n")
    assert [d.text for d in read_corpus(table)] == ["a\n\n  b"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nnot \xff utf-8\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: not UTF-8"):
        read_corpus(bad)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(DataError, match=r"empty.txt: no text"):
        read_corpus(tmp_path / "empty.txt")


def test_blocks_pack_every_token_with_end_of_text_between_documents(corpus):
    dm = data(corpus)
    rows, eos = dm.encoded("val"), dm.tokenizer.eos
    expected = [i for t in DOCS[:3] for i in tokens(dm, t) + [eos]]
    assert rows.ids.tolist() == expected  # nothing dropped, nothing added but end-of-text
    assert np.diff(rows.starts)[:-1].tolist() == [16] * (len(rows) - 1) and 0 < np.diff(rows.starts)[-1] <= 16
    assert rows.truncated_rows == [] and rows.row_ids[0].endswith("val.jsonl#1")


def test_rows_keep_one_document_each_and_count_the_cut_ones(corpus):
    dm = data(corpus, packing="rows", max_length=8)
    rows, eos = dm.encoded("val"), dm.tokenizer.eos
    for i, text in enumerate(DOCS[:3]):
        full = tokens(dm, text) + [eos]
        assert rows.ids[rows.span(i)].tolist() == full[:8]
    long = [t for t in DOCS[:3] if len(tokens(dm, t)) + 1 > 8]
    assert len(rows.truncated_rows) == len(long) > 0
    dm.encoded("val")
    assert dm.truncated["val"] == len(long)


def test_labels_mask_padding_but_not_end_of_text(corpus):
    dm = data(corpus, packing="rows", max_length=64)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    eos = dm.tokenizer.eos
    assert dm.tokenizer.pad == eos  # GPT-2 style: no pad token, eos pads
    assert (labels[mask == 0] == IGNORE).all() and (labels[mask == 1] == ids[mask == 1]).all()
    last = mask.sum(1) - 1
    assert (ids[range(len(ids)), last] == eos).all() and (labels[range(len(ids)), last] == eos).all()
    assert (mask[:, 0] == 1).all()  # right-padded


def test_predict_left_pads_prompts(corpus):
    dm = data(corpus, predict_file=str(corpus / "prompts.txt"))
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert "labels" not in batch and len(batch["ids"]) == 2
    assert (batch["attention_mask"][:, -1] == 1).all()  # every prompt ends where generation starts
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert first == tokens(dm, "def add(")
    # without predict_file: the first prompt_length tokens of each test document
    dm = data(corpus, test_file=str(corpus / "val.jsonl"), prompt_length=3)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["attention_mask"].sum(1).tolist() == [min(3, len(tokens(dm, t))) for t in DOCS[:3]]
    assert dm.truncated.get("predict", 0) == 0


def test_encoded_splits_come_from_the_cache(corpus, tmp_path):
    first = data(corpus, cache_dir=str(tmp_path))
    ids = first.encoded("train").ids
    again = data(corpus, cache_dir=str(tmp_path))
    assert (again.encoded("train").ids == ids).all() and again.cache_hits["train"]
    for changed in ({"max_length": 8}, {"packing": "rows"}):  # another setting encodes anew
        other = data(corpus, cache_dir=str(tmp_path), **changed)
        other.encoded("train")
        assert not other.cache_hits["train"]


def test_trains_a_byte_level_bpe_when_asked(corpus, tmp_path):
    dm = data(corpus, tokenizer=None, train_tokenizer_vocab_size=300, cache_dir=str(tmp_path))
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.tokenizer.eos is not None
    folder = next(tmp_path.glob("tokenizer-*"))
    again = data(corpus, tokenizer=None, train_tokenizer_vocab_size=300, cache_dir=str(tmp_path))
    assert again.tokenizer.files() == dm.tokenizer.files() and list(tmp_path.glob("tokenizer-*")) == [folder]


@pytest.mark.parametrize("kw, message", [
    ({"packing": "docs"}, "data.packing is 'docs'"),
    ({"max_length": 1}, "data.max_length is 1"),
    ({"prompt_length": 0}, "data.prompt_length is 0"),
    ({"train_tokenizer_vocab_size": 300}, "not both"),
    ({"tokenizer": None, "train_tokenizer_vocab_size": 300}, "needs data.cache_dir"),
])
def test_config_errors_name_the_key(corpus, kw, message):
    with pytest.raises(ConfigError, match=message):
        data(corpus, **kw)


def test_a_tokenizer_without_end_of_text_is_refused(corpus, tmp_path):
    from helpers import write_corpus
    from lit_tasks.text import train_wordpiece

    write_corpus(tmp_path / "c.txt", 20, seed=0)
    train_wordpiece([tmp_path / "c.txt"], 80, tmp_path / "wp")
    with pytest.raises(DataError, match="no end-of-text token"):
        data(corpus, tokenizer=str(tmp_path / "wp")).tokenizer
