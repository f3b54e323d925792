"""Seq2SeqDataModule: source/target pairs, eos on both sides, length limits counted per side,
labels, predict without targets, errors naming file and row."""

from __future__ import annotations

import json

import pytest

from lit_tasks.data.seq2seq import IGNORE, Seq2SeqDataModule
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.bpe import train_bpe_texts

PAIRS = [
    ("convert an addressbook to VCARD file format; it reads abook and mutt files", "convert address books"),
    ("a tool to view images in a terminal window with colours", "image viewer for terminals"),
    ("the archive of Python's help pages", "pydoc pages"),
    ("a small library to parse JSON quickly and safely", "JSON parser"),
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    rows = [{"source": s, "target": t} for s, t in PAIRS * 3]
    write(root / "train.jsonl", rows)
    write(root / "val.jsonl", rows[:3])
    write(root / "predict.jsonl", [{"source": s} for s, _ in PAIRS[:2]])
    train_bpe_texts([x for pair in PAIRS for x in pair] * 3, 300, root / "tok")
    return root


def data(corpus, **kw) -> Seq2SeqDataModule:
    args = {"train_file": str(corpus / "train.jsonl"), "val_file": str(corpus / "val.jsonl"),
            "tokenizer": str(corpus / "tok"), "batch_size": 3} | kw
    return Seq2SeqDataModule(**args)


def bare(dm, text: str) -> list[int]:
    return dm.tokenizer.encode_raw([text], truncation=False, add_special_tokens=False)[0].ids


def test_batches_hold_sources_labels_and_target_texts(corpus):
    dm = data(corpus)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    eos, pad = dm.tokenizer.eos, dm.tokenizer.pad
    for k, (source, target) in enumerate(PAIRS[:3]):
        n = int(batch["attention_mask"][k].sum())
        assert batch["input_ids"][k, :n].tolist() == bare(dm, source) + [eos]
        assert (batch["input_ids"][k, n:] == pad).all()
        labels = batch["labels"][k]
        real = labels[labels != IGNORE].tolist()
        assert real == bare(dm, target) + [eos]
        assert (labels[len(real):] == IGNORE).all()  # padding only after the target
    assert batch["targets"] == [t for _, t in PAIRS[:3]]
    assert batch["index"].tolist() == [0, 1, 2]
    assert dm.truncated == {"train": 0, "val": 0}


def test_length_limits_cut_each_side_keep_eos_and_are_counted(corpus, caplog):
    dm = data(corpus, max_source_length=6, max_target_length=3)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[1] == 6
    assert (batch["input_ids"][:, 5] == dm.tokenizer.eos).all()
    assert batch["input_ids"][0, :5].tolist() == bare(dm, PAIRS[0][0])[:5]
    long_targets = sum(len(bare(dm, t)) + 1 > 3 for _, t in PAIRS[:3])
    assert dm.truncated["val"] == 3 + long_targets
    rows = dm.encoded("val").truncated_rows
    assert any(r.endswith("(source)") for r in rows) and any(r.endswith("(target)") for r in rows)
    assert "val split" in caplog.text and "cut" in caplog.text
    assert batch["targets"][0] == PAIRS[0][1]  # scores compare with the target as written


def test_source_prefix_goes_before_every_source(corpus):
    dm = data(corpus, source_prefix="summarize: ")
    dm.setup("fit")
    first = dm.encoded("val").ids[: dm.encoded("val").starts[1]].tolist()
    assert first == bare(dm, "summarize: " + PAIRS[0][0]) + [dm.tokenizer.eos]


def test_predict_reads_sources_only(corpus):
    dm = data(corpus, predict_file=str(corpus / "predict.jsonl"))
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert "labels" not in batch and "targets" not in batch
    assert batch["input_ids"].shape[0] == 2 and batch["ids"][0].endswith("predict.jsonl#1")


def test_encoded_splits_come_back_from_the_cache(corpus, tmp_path):
    first = data(corpus, cache_dir=str(tmp_path))
    first.setup("fit")
    second = data(corpus, cache_dir=str(tmp_path))
    second.setup("fit")
    assert second.cache_hits == {"train": True, "val": True}
    assert second.encoded("val").target_ids.tolist() == first.encoded("val").target_ids.tolist()
    third = data(corpus, cache_dir=str(tmp_path), max_target_length=3)
    third.setup("fit")
    assert third.cache_hits == {"train": False, "val": False}


def test_bad_rows_name_file_and_row(corpus, tmp_path):
    missing = write(tmp_path / "missing.jsonl", [{"source": "a b", "target": "c"}, {"source": "d e"}])
    with pytest.raises(DataError, match=r"missing.jsonl line 2: the 'target' column is missing"):
        data(corpus, train_file=missing).setup("fit")
    empty = write(tmp_path / "empty.jsonl", [{"source": "a b", "target": "  "}])
    with pytest.raises(DataError, match=r"empty.jsonl line 1: the 'target' field is empty"):
        data(corpus, train_file=empty).setup("fit")
    no_source = write(tmp_path / "src.jsonl", [{"text": "a b", "target": "c"}])
    with pytest.raises(DataError, match=r"src.jsonl line 1: the 'source' column is missing"):
        data(corpus, train_file=no_source).setup("fit")
    with pytest.raises(ConfigError, match="data.max_target_length is 1"):
        data(corpus, max_target_length=1)
    with pytest.raises(DataError, match="no training data"):
        Seq2SeqDataModule(val_file=str(corpus / "val.jsonl"), tokenizer=str(corpus / "tok")).setup("fit")


def test_languages_need_a_tokenizer_that_knows_them(corpus):
    dm = data(corpus, source_lang="en_XX", target_lang="de_DE")
    with pytest.raises(ConfigError, match=r"data.source_lang / data.target_lang: .*no language codes"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match="data.train_tokenizer_type is 'sentencepiece'"):
        data(corpus, train_tokenizer_type="sentencepiece")


@pytest.mark.parametrize("style", ["MBartTokenizer", "MBart50Tokenizer"])
def test_mbart_languages_mark_both_sides_and_tell_the_decoder(style, corpus, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for pair in PAIRS for text in pair for w in text.replace(";", " ").split()})
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="<unk>"))
    backend.add_special_tokens(specials + ["en_XX", "de_DE", "<mask>"])
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = tmp_path / "mbart"
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": style, "bos_token": "<s>",
                                                              "eos_token": "</s>", "pad_token": "<pad>"}))
    dm = data(corpus, train_file=str(corpus / "val.jsonl"), tokenizer=str(folder), source_lang="en_XX",
              target_lang="de_DE")
    dm.setup("fit")
    en, de, eos = dm.tokenizer.language_id("en_XX"), dm.tokenizer.language_id("de_DE"), dm.tokenizer.eos
    e = dm.encoded("val")
    source, target = e.ids[: e.starts[1]].tolist(), e.target_ids[: e.target_starts[1]].tolist()
    if style == "MBartTokenizer":  # mBART-cc25: "tokens </s> code"; the decoder starts from the code
        assert source[-2:] == [eos, en] and target[-2:] == [eos, de]
        assert dm.decoder_tokens() == {"decoder_start_token_id": de}
    else:  # mBART-50: "code tokens </s>"; generation forces the code first
        assert (source[0], source[-1], target[0], target[-1]) == (en, eos, de, eos)
        assert dm.decoder_tokens() == {"forced_bos_token_id": de}
    with pytest.raises(ConfigError, match=r"data.source_lang / data.target_lang: .*'fr_FR'"):
        data(corpus, tokenizer=str(folder), target_lang="fr_FR").setup("fit")


def test_naming_the_datamodule_reads_no_split(corpus):
    """jsonargparse formats the DataModule into a message when a link's source is absent (at every
    CLI start); Lightning's own __str__ would build every loader, encoding test and predict in fit."""
    dm = data(corpus, test_file=str(corpus / "val.jsonl"), predict_file=str(corpus / "predict.jsonl"))
    assert str(dm) == "Seq2SeqDataModule"
    assert dm._encoded == {} and dm._datasets == {}
