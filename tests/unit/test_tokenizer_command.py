"""`python -m lit_tasks tokenizer`: trains a WordPiece tokenizer that load_tokenizer, the
TextDataModule and transformers read back."""

from __future__ import annotations

import json

import pytest
from helpers import write_corpus

from lit_tasks.commands import main
from lit_tasks.data.text import TextDataModule
from lit_tasks.errors import DataError
from lit_tasks.text import load_tokenizer, train_wordpiece


@pytest.fixture()
def corpus(tmp_path):
    file = write_corpus(tmp_path / "corpus.txt", 40)
    with open(file, "a", encoding="utf-8") as f:
        f.write("\nCafé Naïve RÉSUMÉ Zebra.\n")
    return file


def test_command_writes_a_folder_that_reads_back(tmp_path, corpus, capsys):
    out = tmp_path / "tok"
    main(["tokenizer", "--files", str(corpus), "--vocab_size", "80", "--out", str(out)])
    assert "wrote" in capsys.readouterr().out
    assert {"tokenizer.json", "vocab.txt", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    tk = load_tokenizer(out)
    assert (tk.pad, tk.unk, tk.cls, tk.sep, tk.mask) == (0, 1, 2, 3, 4)
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == tk.vocab_size <= 80 + 60  # the alphabet may exceed the requested size
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    # The vocab.txt fallback builds the same tokenizer as tokenizer.json.
    (out / "tokenizer.json").rename(tmp_path / "moved.json")
    text = "The old farmer paints AN unbelievable story. [MASK] zebra"
    assert load_tokenizer(out).encode(text)["input_ids"] == tk.encode(text)["input_ids"]
    # Round trip: the corpus' words come back (lowercased, accents stripped); [MASK] stays whole.
    e = tk.encode(text)
    assert tk.decode(e["input_ids"]) == "the old farmer paints an unbelievable story. zebra"
    assert tk.convert_ids_to_tokens(e["input_ids"])[0] == "[CLS]" and tk.mask in e["input_ids"]
    assert tk.decode(tk.encode("Café naïve résumé")["input_ids"]) == "cafe naive resume"


def test_cased_keeps_case_and_accents(tmp_path, corpus):
    main(["tokenizer", "--files", str(corpus), "--vocab_size", "120", "--out", str(tmp_path / "c"), "--cased"])
    tk = load_tokenizer(tmp_path / "c")
    assert tk.do_lower_case is False
    assert tk.decode(tk.encode("Café")["input_ids"]) == "Café"
    assert tk.encode("Zebra")["input_ids"] != tk.encode("zebra")["input_ids"]


def test_jsonl_corpus_and_text_data_module(tmp_path):
    rows = [{"body": "The cat sees the river.\nThe dog likes a boat."}, {"body": "An old farmer paints."}] * 5
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["tokenizer", "--files", str(corpus), "--text_column", "body", "--vocab_size", "60",
          "--out", str(tmp_path / "tok"), "--min_frequency", "1"])
    table = tmp_path / "train.csv"
    table.write_text("text,label\nthe cat sees the river,a\nan old farmer,b\n")
    dm = TextDataModule(train_file=str(table), tokenizer=str(tmp_path / "tok"), max_length=16)
    tk = load_tokenizer(tmp_path / "tok")
    assert dm.tokenizer.vocab_size == tk.vocab_size
    row = dm.encoded("train").ids[: dm.encoded("train").starts[1]].tolist()
    assert row == tk.encode("the cat sees the river")["input_ids"] and tk.unk not in row


def test_transformers_reads_the_folder(tmp_path, corpus):
    transformers = pytest.importorskip("transformers")
    main(["tokenizer", "--files", str(corpus), "--vocab_size", "80", "--out", str(tmp_path / "tok")])
    theirs = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "tok"))
    ours = load_tokenizer(tmp_path / "tok")
    for text, pair in [("The cat sees a river.", None), ("Café naïve", "the old farmer")]:
        assert theirs(text, pair)["input_ids"] == ours.encode(text, pair)["input_ids"]


def test_missing_corpus_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "--files", str(tmp_path / "nope.txt"), "--vocab_size", "50", "--out", str(tmp_path / "t")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nope.txt" in err and len(err.strip().splitlines()) == 1


def test_undecodable_corpus_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\nbad \xff line\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: not UTF-8"):
        train_wordpiece([bad], 50, tmp_path / "tok")
