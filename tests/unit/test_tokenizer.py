"""lit_tasks.text.tokenizer: loading (tokenizer.json / vocab.txt), parity with transformers'
BertTokenizer, training and saving a WordPiece tokenizer, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_tasks.errors import DataError
from lit_tasks.text import Tokenizer, load_tokenizer, train_wordpiece

VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the quick brown fox jump ##s ##ed over lazy dog cafe , . ! ? "
    "hello world 中 文 run ##ning re ##run a b c ##e naive resume 's don ' t"
).split()

SENTENCES = [
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Hello, WORLD!", "the dog jumped?"),
    ("Café naïve résumé 中文 rerunning", None),  # accents stripped with lowercasing; CJK split per char
    ("don't [MASK] the fox", "a b c unknownword"),
    ("  hello\tworld \n ", None),
]


def write_vocab(folder: Path, tokens=VOCAB, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture()
def vocab_dir(tmp_path) -> Path:
    return write_vocab(tmp_path / "vocab")


def hf_tokenizer(folder: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast.from_pretrained(str(folder))


@pytest.mark.parametrize("lower", [True, False])
def test_vocab_txt_matches_transformers_bert_tokenizer(tmp_path, lower):
    tokens = VOCAB + ["Hello", "WORLD", "The", "Café"]
    folder = write_vocab(tmp_path / "v", tokens, {"do_lower_case": lower})
    ours, theirs = load_tokenizer(folder), hf_tokenizer(folder)
    assert ours.do_lower_case is lower
    for text, pair in SENTENCES:
        for max_length in (None, 6, 9):
            got = ours.encode(text, pair, max_length=max_length, truncation=max_length is not None)
            want = theirs(text, pair, max_length=max_length, truncation=max_length is not None,
                          return_offsets_mapping=True)
            assert got["input_ids"] == want["input_ids"], (text, pair, max_length)
            assert got["token_type_ids"] == want["token_type_ids"]
            assert got["attention_mask"] == want["attention_mask"]
            assert got["offsets"] == [tuple(o) for o in want["offset_mapping"]]
            if max_length is None:
                assert not got["truncated"]


def test_encoding_details(vocab_dir):
    tk = load_tokenizer(vocab_dir)
    ids = {t: i for i, t in enumerate(VOCAB)}
    assert (tk.pad, tk.unk, tk.cls, tk.sep, tk.mask) == (0, 1, 2, 3, 4) and tk.vocab_size == len(VOCAB)
    e = tk.encode("Café rerunning", "xyz")
    assert e["input_ids"] == [ids["[CLS]"], ids["cafe"], ids["re"], ids["##run"], ids["##ning"], ids["[SEP]"],
                              ids["[UNK]"], ids["[SEP]"]]
    assert e["token_type_ids"] == [0, 0, 0, 0, 0, 0, 1, 1]
    assert e["offsets"][1] == (0, 4) and e["offsets"][3] == (7, 10)  # characters of the original text
    # Truncation drops from the longer text first and says so.
    t = tk.encode("the quick brown fox jumps", "a b", max_length=7)
    assert tk.convert_ids_to_tokens(t["input_ids"]) == ["[CLS]", "the", "quick", "[SEP]", "a", "b", "[SEP]"]
    assert t["truncated"] and not tk.encode("the fox", max_length=7)["truncated"]
    batch = tk.encode_batch(["the fox", "a b c"], ["dog", "dog"])
    assert [b["input_ids"] for b in batch] == [tk.encode("the fox", "dog")["input_ids"], tk.encode("a b c", "dog")["input_ids"]]
    assert tk.decode(tk.encode("the fox jumps")["input_ids"]) == "the fox jumps"


def test_tokenizer_json_and_vocab_txt_give_the_same_ids(vocab_dir, tmp_path):
    ours = load_tokenizer(vocab_dir)
    hf_tokenizer(vocab_dir).save_pretrained(str(tmp_path / "hf"))  # writes tokenizer.json
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    from_json = load_tokenizer(tmp_path / "hf")
    assert from_json.source.endswith("tokenizer.json") and ours.source.endswith("vocab.txt")
    for text, pair in SENTENCES:
        assert from_json.encode(text, pair, max_length=8) == ours.encode(text, pair, max_length=8)
    assert (from_json.cls, from_json.sep, from_json.pad, from_json.mask) == (ours.cls, ours.sep, ours.pad, ours.mask)
    # Our own save gives the same again, from either file.
    ours.save(tmp_path / "saved")
    assert {p.name for p in (tmp_path / "saved").iterdir()} == {"tokenizer.json", "vocab.txt", "tokenizer_config.json"}
    assert (tmp_path / "saved" / "vocab.txt").read_text().split("\n")[:-1] == VOCAB
    for file in ("tokenizer.json", "vocab.txt"):
        again = load_tokenizer(tmp_path / "saved" / file)
        assert [again.encode(t, p)["input_ids"] for t, p in SENTENCES] == [ours.encode(t, p)["input_ids"] for t, p in SENTENCES]


def test_cased_vocab_keeps_accents_and_case(tmp_path):
    folder = write_vocab(tmp_path / "cased", VOCAB + ["Café"], {"do_lower_case": False})
    tk = load_tokenizer(folder)
    assert tk.convert_ids_to_tokens(tk.encode("Café cafe")["input_ids"]) == ["[CLS]", "Café", "cafe", "[SEP]"]


def test_train_wordpiece_round_trips(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["the quick brown fox jumps over the lazy dog"] * 20
                                + ["Lightning trains transformers", "tokenizers split words into pieces"] * 10))
    tk = train_wordpiece([corpus], vocab_size=120, out_dir=tmp_path / "trained")
    assert isinstance(tk, Tokenizer) and tk.vocab_size <= 120
    assert (tk.pad, tk.unk, tk.cls, tk.sep, tk.mask) == (0, 1, 2, 3, 4)
    assert {p.name for p in (tmp_path / "trained").iterdir()} == {"tokenizer.json", "vocab.txt", "tokenizer_config.json"}
    loaded = load_tokenizer(tmp_path / "trained")
    text = "The Quick fox trains pieces"
    assert loaded.encode(text)["input_ids"] == tk.encode(text)["input_ids"]
    assert tk.convert_ids_to_tokens(tk.encode("the fox")["input_ids"]) == ["[CLS]", "the", "fox", "[SEP]"]
    (tmp_path / "trained" / "tokenizer.json").unlink()  # vocab.txt alone gives the same pipeline
    assert load_tokenizer(tmp_path / "trained").encode(text, "the dog") == tk.encode(text, "the dog")
    with pytest.raises(DataError, match=r"corpus file\(s\) not found: .*nope\.txt"):
        train_wordpiece([tmp_path / "nope.txt"], 100, tmp_path / "x")


def test_missing_or_bad_tokenizer_files_are_named(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    with pytest.raises(DataError, match=r"folder .*ckpt has neither tokenizer\.json nor vocab\.txt \(found: config\.json\)"):
        load_tokenizer(tmp_path / "ckpt")
    with pytest.raises(DataError, match=r"tokenizer: .*nowhere does not exist.*tokenizer\.json or vocab\.txt"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "ckpt" / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=r"ckpt/tokenizer\.json cannot be read"):
        load_tokenizer(tmp_path / "ckpt")
    write_vocab(tmp_path / "dup", ["[CLS]", "[SEP]", "[UNK]", "a", "a"])
    with pytest.raises(DataError, match=r"vocab\.txt line 5: token 'a' already appears on line 4"):
        load_tokenizer(tmp_path / "dup")
    write_vocab(tmp_path / "nocls", ["[SEP]", "[UNK]", "a"])
    with pytest.raises(DataError, match=r"lacks the special token\(s\) \[CLS\]"):
        load_tokenizer(tmp_path / "nocls")


def _bpe_folder(folder, specials: list[str], config: dict | None = None):
    """A tiny byte-level BPE tokenizer.json with `specials` (and tokenizer_config.json)."""
    import json

    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*specials, *"abcdefgh", "Ġ"])}
    backend = RustTokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.add_special_tokens(specials)
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_roles_of_gpt2_and_bart_style_vocabularies(tmp_path):
    """GPT-2 has one <|endoftext|> for bos/eos and no pad: it pads with eos. BART's spellings
    (<s> </s> <pad> <unk> <mask>) fill every role; tokenizer_config.json's names win."""
    gpt2 = load_tokenizer(_bpe_folder(tmp_path / "gpt2", ["<|endoftext|>"]))
    assert gpt2.bos == gpt2.eos == gpt2.pad == 0 and gpt2.pad_is_eos
    assert gpt2.cls is None and gpt2.mask is None
    bart = load_tokenizer(_bpe_folder(tmp_path / "bart", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    assert (bart.bos, bart.pad, bart.eos, bart.unk, bart.mask, bart.cls, bart.sep) == (0, 1, 2, 3, 4, 0, 2)
    assert not bart.pad_is_eos
    named = load_tokenizer(_bpe_folder(tmp_path / "named", ["<s>", "</s>", "<end>"], {"eos_token": "<end>"}))
    assert named.eos == 2 and named.bos == 0 and named.pad == 2 and named.pad_is_eos


def test_bert_roles_are_unchanged(vocab_dir):
    tok = load_tokenizer(vocab_dir)
    assert tok.pad is not None and not tok.pad_is_eos and tok.bos is None and tok.eos is None


@pytest.mark.parametrize("trainer", ["train_wordpiece", "train_bpe", "train_unigram"])
def test_trainers_name_a_missing_corpus_file_and_a_line_that_is_not_utf8(trainer, tmp_path):
    import lit_tasks.text as text

    train = getattr(text, trainer)
    with pytest.raises(DataError, match=rf"{trainer}: corpus file\(s\) not found: .*absent.txt"):
        train([tmp_path / "absent.txt"], 300, tmp_path / "out")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nnot \xff utf-8\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: not UTF-8 text"):
        train([bad], 300, tmp_path / "out")
