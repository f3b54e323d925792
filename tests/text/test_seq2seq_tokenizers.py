"""Seq2seq tokenizers: BART's byte-level BPE, T5's SentencePiece Unigram with sentinels, mBART's
language codes (cc25 and 50 styles). Tiny tokenizer files are made here with the `tokenizers`
library in the layout of the hub checkpoints; ids are compared with transformers' tokenizer
classes reading the same folder. Training (train_bpe with BART's specials, train_unigram), the
CLI, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer

from lit_tasks.commands import main
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text import BART_SPECIALS, load_tokenizer, train_bpe, train_unigram, train_unigram_texts
from lit_tasks.text.byte_level import model_merges

transformers = pytest.importorskip("transformers")

WIKI = REPO / "demo_data" / "wiki_corpus"
EXTRA = ["Café naïve résumé Ångström déjà vu", "日本語のテキストと中文的文本", "Привет, мир! Ελληνικά"]
AWKWARD = [
    "Hello world", "The quick brown fox.", " leading space", "   three leading spaces", "trailing   ",
    "repeated     spaces   in  between", "tabs\tand\t\ttabs\t", "line one\nline two\n\n\nline five\n",
    "Café naïve RÉSUMÉ Ångström", "日本語のテキスト 中文", "Привет мир", "emoji 👍 👍🏽 ❤️", "digits 3.14159 ٣٤",
    "DON'T don't we'll", "x" * 300, "", " ", "\n", "ẞ ﬁ ① \u00a0nbsp",
]
SENTINEL_TEXTS = ["a <extra_id_0> b <extra_id_1>", "<extra_id_2>start", "end<extra_id_0>", "x<extra_id_1>y  z"]
MASK_TEXTS = ["a <mask> b", "a<mask>b", "  <mask>", "<mask> first", "two <mask><mask> masks"]
EXTRA_IDS = 5
LSTRIP_MASK = transformers.AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
CC25 = transformers.models.mbart.tokenization_mbart.FAIRSEQ_LANGUAGE_CODES  # 25 codes
MBART50 = transformers.models.mbart50.tokenization_mbart50.FAIRSEQ_LANGUAGE_CODES  # 52


def corpus() -> list[str]:
    return (WIKI / "val.txt").read_text(encoding="utf-8").splitlines() + EXTRA * 20


@pytest.fixture(scope="module")
def pieces() -> list[tuple[str, float]]:
    """A small SentencePiece Unigram vocabulary (pieces with log-probabilities, no specials)."""
    tk = RustTokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=300, show_progress=False))
    return [(p, s) for p, s in json.loads(tk.to_str())["model"]["vocab"]]


def save(tk: RustTokenizer, folder: Path, config: dict | None = None) -> Path:
    folder.mkdir()
    tk.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def ids(tk, text: str, pair: str | None = None, target: bool = False) -> list[int]:
    return tk.encode_raw([text], None if pair is None else [pair], truncation=False, target=target)[0].ids


# ------------------------------------------------------------------------------------ BART


@pytest.fixture(scope="module")
def bart_files(tmp_path_factory) -> Path:
    """vocab.json + merges.txt in BART's layout: <s> <pad> </s> <unk> = 0-3, ..., <mask> last."""
    tk = RustTokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(corpus(), trainer)
    vocab = tk.get_vocab()
    vocab["<mask>"] = len(vocab)
    folder = tmp_path_factory.mktemp("bart_files")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "".join(f"{a} {b}\n" for a, b in model_merges(tk))
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    return folder


def bart_folder(files: Path, folder: Path, tokenizer_config: dict | None = None, model_config: dict | None = None):
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((files / name).read_bytes())
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if model_config is not None:
        (folder / "config.json").write_text(json.dumps(model_config))
    return folder


def assert_bart_equal(ours, theirs, texts=AWKWARD + MASK_TEXTS):
    for text in texts:
        assert ids(ours, text) == theirs(text)["input_ids"], text
        assert ids(ours, text, "second text") == theirs(text, "second text")["input_ids"], text


@pytest.mark.parametrize("said_by", ["tokenizer_class", "model_type", "vocabulary"])
def test_bart_from_vocab_and_merges_matches_transformers(bart_files, tmp_path, said_by):
    config = {"tokenizer_class": "BartTokenizer"} if said_by == "tokenizer_class" else None
    model = {"model_type": "bart"} if said_by == "model_type" else None
    folder = bart_folder(bart_files, tmp_path / "bart", config, model)
    ours = load_tokenizer(folder)
    # transformers 5 reads a bare vocab.json + merges.txt with a <mask> that keeps the space before
    # it; BART's own tokenizer.json (and transformers 4) strip it, as we do: asked for here.
    theirs = transformers.BartTokenizerFast.from_pretrained(str(folder), mask_token=LSTRIP_MASK)
    assert ours.source.endswith("vocab.json") and ours.byte_level
    mask = ours.vocab_size - 1
    assert (ours.bos, ours.pad, ours.eos, ours.unk, ours.mask, ours.cls, ours.sep) == (0, 1, 2, 3, mask, 0, 2)
    assert ours.mask == theirs.mask_token_id and ours.sentinels == [] and ours.languages == {}
    assert_bart_equal(ours, theirs)
    hello = ids(ours, "Hello")
    assert hello[0] == 0 and hello[-1] == 2
    assert ids(ours, "Hello", "x") == hello + [2] + ids(ours, "x")[1:]  # <s> A </s></s> B </s>
    # <mask> takes the space before it: "a <mask> b" masks the word " b" of "a b c".
    assert ids(ours, "a <mask>")[1:-1] == [*ids(ours, "a")[1:-1], mask]
    # The folder written back is read by both as the same tokenizer.
    saved = ours.save(tmp_path / "saved")
    assert_bart_equal(load_tokenizer(saved), transformers.AutoTokenizer.from_pretrained(str(saved)), AWKWARD[:6])


def test_gpt2_kind_named_by_the_folder_wins_over_the_vocabulary(bart_files, tmp_path):
    folder = bart_folder(bart_files, tmp_path / "g", {"tokenizer_class": "GPT2TokenizerFast"})
    tk = load_tokenizer(folder)
    assert ids(tk, "Hello")[0] != 0 and 2 not in ids(tk, "Hello")  # nothing put around the text


def test_bart_tokenizer_json_written_by_transformers(bart_files, tmp_path):
    theirs = transformers.BartTokenizerFast.from_pretrained(str(bart_folder(bart_files, tmp_path / "b")),
                                                            mask_token=LSTRIP_MASK)
    theirs.save_pretrained(str(tmp_path / "hf"))
    ours = load_tokenizer(tmp_path / "hf")
    assert ours.source.endswith("tokenizer.json") and (ours.bos, ours.pad, ours.eos, ours.unk) == (0, 1, 2, 3)
    assert_bart_equal(ours, theirs)


# -------------------------------------------------------------------------------------- T5


def t5_backend(pieces, extra_ids: int = EXTRA_IDS, sentinels: list[str] | None = None) -> RustTokenizer:
    """T5's tokenizer.json as the hub has it: <pad> </s> <unk> = 0-2, pieces, sentinels reversed on top."""
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(extra_ids))] if sentinels is None else sentinels
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, *((s, 0.0) for s in sentinels)]
    tk = RustTokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Metaspace(prepend_scheme="always")])
    tk.decoder = decoders.Metaspace(prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                      special_tokens=[("</s>", 1)])
    tk.add_special_tokens(["<pad>", "</s>", "<unk>", *sentinels])
    return tk


def t5_config(extra_ids: int = EXTRA_IDS) -> dict:
    return {"tokenizer_class": "T5Tokenizer", "extra_ids": extra_ids, "eos_token": "</s>", "pad_token": "<pad>",
            "unk_token": "<unk>", "extra_special_tokens": [f"<extra_id_{i}>" for i in range(extra_ids)]}


def assert_t5_equal(ours, theirs):
    for text in AWKWARD + SENTINEL_TEXTS:
        assert ids(ours, text) == theirs(text)["input_ids"], text
        assert ids(ours, text, "B side") == theirs(text, "B side")["input_ids"], text
        assert ids(ours, text, target=True) == theirs(text_target=text)["input_ids"], text


def test_t5_tokenizer_json_matches_transformers(pieces, tmp_path):
    folder = save(t5_backend(pieces), tmp_path / "t5", t5_config())
    ours, theirs = load_tokenizer(folder), transformers.T5TokenizerFast.from_pretrained(str(folder))
    top = ours.vocab_size - 1
    assert (ours.pad, ours.eos, ours.unk, ours.bos, ours.mask) == (0, 1, 2, None, None) and not ours.pad_is_eos
    assert ours.sentinels == [top - i for i in range(EXTRA_IDS)]  # <extra_id_0> on top, reverse order
    assert ours.sentinels == theirs.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(EXTRA_IDS)])
    assert_t5_equal(ours, theirs)
    assert ids(ours, "Hello world")[-1] == 1 and top in ids(ours, "a <extra_id_0> b")
    assert ours.decode(ids(ours, "hello   world\n x")) == "hello world x"


def test_t5_sentinels_after_the_pieces_in_order(pieces, tmp_path):
    """transformers' T5Tokenizer(vocab=..., extra_ids=N) appends them in order instead: found by name."""
    theirs = transformers.T5TokenizerFast(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces],
                                          extra_ids=EXTRA_IDS)
    theirs.save_pretrained(str(tmp_path / "t5"))
    ours = load_tokenizer(tmp_path / "t5")
    first = len(pieces) + 3
    assert ours.sentinels == list(range(first, first + EXTRA_IDS))
    assert_t5_equal(ours, theirs)


def test_sentinel_problems_are_named(pieces, tmp_path):
    gap = ["<extra_id_3>", "<extra_id_1>", "<extra_id_0>"]
    with pytest.raises(DataError, match=r"sentinel tokens run to <extra_id_3> but <extra_id_2> is missing"):
        load_tokenizer(save(t5_backend(pieces, sentinels=gap), tmp_path / "gap"))
    with pytest.raises(DataError, match=r"t5/tokenizer\.json: tokenizer_config\.json says extra_ids: 7 but the "
                                        r"vocabulary holds 5 sentinel tokens"):
        load_tokenizer(save(t5_backend(pieces), tmp_path / "t5", t5_config(7)))
    assert load_tokenizer(save(t5_backend(pieces, 0), tmp_path / "none", t5_config(0))).sentinels == []


# ----------------------------------------------------------------------------------- mBART


def mbart_backend(pieces, codes: list[str], fifty: bool) -> RustTokenizer:
    """mBART's tokenizer.json: <s> <pad> </s> <unk> = 0-3, pieces, language codes, <mask> last,
    with each release's pre-tokenization (as transformers builds them)."""
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, *((c, 0.0) for c in codes),
             ("<mask>", 0.0)]
    tk = RustTokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    if fifty:
        tk.normalizer = normalizers.Sequence([normalizers.Replace(Regex(" {2,}"), " ")])
        tk.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                    pre_tokenizers.Metaspace(prepend_scheme="always")])
    tk.decoder = decoders.Metaspace(prepend_scheme="always")
    # The hub files carry en_XX's template; it tells the release apart when no tokenizer_class does.
    single = "en_XX $A </s>" if fifty else "$A </s> en_XX"
    tk.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("en_XX", vocab.index(
        ("en_XX", 0.0))), ("</s>", 2)])
    tk.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", *codes])
    tk.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    return tk


MBART = {  # release -> (transformers class, its language codes, tokenizer_class)
    "cc25": ("MBartTokenizerFast", CC25, "MBartTokenizer"),
    "50": ("MBart50TokenizerFast", MBART50, "MBart50Tokenizer"),
}


@pytest.mark.parametrize("release", ["cc25", "50"])
def test_mbart_languages_match_transformers(pieces, tmp_path, release):
    cls, codes, name = MBART[release]
    config = {"tokenizer_class": name, "src_lang": "de_DE", "tgt_lang": "fr_XX"}
    folder = save(mbart_backend(pieces, list(codes), release == "50"), tmp_path / "m", config)
    ours, theirs = load_tokenizer(folder), getattr(transformers, cls).from_pretrained(str(folder))
    n = len(pieces) + 4
    assert ours.languages == {c: n + i for i, c in enumerate(codes)} and ours.mask == n + len(codes)
    assert (ours.bos, ours.pad, ours.eos, ours.unk, ours.sentinels) == (0, 1, 2, 3, [])
    assert ours.language_id("de_DE") == theirs.convert_tokens_to_ids("de_DE") == n + codes.index("de_DE")
    assert (ours.src_lang, ours.tgt_lang) == ("de_DE", "fr_XX")
    for src, tgt in (("de_DE", "fr_XX"), ("en_XX", "ro_RO")):
        ours.set_languages(src, tgt)
        theirs.src_lang, theirs.tgt_lang = src, tgt
        for text in AWKWARD + MASK_TEXTS:
            want = theirs(text, text_target=text)
            assert ids(ours, text) == want["input_ids"], text
            assert ids(ours, text, target=True) == want["labels"], text
            assert ids(ours, text, "B side") == theirs(text, "B side")["input_ids"], text
    en, eos = ours.language_id("en_XX"), ours.eos  # sources are in en_XX now
    bare = ours.encode_raw(["Hello"], add_special_tokens=False)[0].ids
    assert ids(ours, "Hello") == ([en, *bare, eos] if release == "50" else [*bare, eos, en])
    # The languages travel with the saved files.
    again = load_tokenizer(ours.save(tmp_path / "saved"))
    assert (again.src_lang, again.tgt_lang) == ("en_XX", "ro_RO") and ids(again, "Hallo", target=True) == ids(
        ours, "Hallo", target=True)


@pytest.mark.parametrize("release", ["cc25", "50"])
def test_mbart_release_told_by_the_template_alone(pieces, tmp_path, release):
    _, codes, _ = MBART[release]
    ours = load_tokenizer(save(mbart_backend(pieces, list(codes), release == "50"), tmp_path / "m"))
    assert ours.language_style == ("prefix" if release == "50" else "suffix") and ours.src_lang == "en_XX"
    assert json.loads(ours.files()["tokenizer_config.json"])["tokenizer_class"] == MBART[release][2]


def test_unknown_language_codes_are_named(pieces, tmp_path):
    folder = save(mbart_backend(pieces, list(CC25), False), tmp_path / "m", {"tokenizer_class": "MBartTokenizer"})
    tk = load_tokenizer(folder)
    with pytest.raises(ConfigError, match=r"unknown language code 'xx_YY'; known: ar_AR, cs_CZ, de_DE, .*zh_CN"):
        tk.language_id("xx_YY")
    with pytest.raises(ConfigError, match=r"unknown tgt_lang code 'en_US'; known: ar_AR"):
        tk.set_languages("en_XX", "en_US")
    (folder / "tokenizer_config.json").write_text(json.dumps({"src_lang": "EN"}))
    with pytest.raises(ConfigError, match=r"m/tokenizer\.json: unknown src_lang code 'EN'"):
        load_tokenizer(folder)
    t5 = load_tokenizer(save(t5_backend(pieces), tmp_path / "t5"))
    with pytest.raises(ConfigError, match=r"has no language codes"):
        t5.set_languages("en_XX")
    with pytest.raises(ConfigError, match=r"unknown language code 'en_XX'; known: none"):
        t5.language_id("en_XX")


# ---------------------------------------------------------------------------------- training


def test_train_bart_bpe_is_deterministic_and_read_by_transformers(tmp_path):
    for out in ("one", "two"):
        tk = train_bpe([WIKI / "val.txt"], 400, tmp_path / out, specials=BART_SPECIALS)
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert (tk.bos, tk.pad, tk.eos, tk.unk, tk.mask, tk.vocab_size) == (0, 1, 2, 3, 4, 400)
    back = load_tokenizer(tmp_path / "one")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "one"))
    assert type(theirs).__name__ == "RobertaTokenizer"  # transformers 5's BartTokenizer
    assert_bart_equal(back, theirs)
    assert_bart_equal(tk, transformers.BartTokenizerFast.from_pretrained(str(tmp_path / "one")))
    with pytest.raises(DataError, match=r"specials \['<s>', '<pad>'\] are neither GPT-2's"):
        train_bpe([WIKI / "val.txt"], 400, tmp_path / "bad", specials=["<s>", "<pad>"])


def test_train_unigram_is_deterministic_and_read_by_transformers(tmp_path):
    for out in ("one", "two"):
        tk = train_unigram([WIKI / "val.txt"], 300, tmp_path / out, extra_ids=EXTRA_IDS)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    top = tk.vocab_size - 1
    assert (tk.pad, tk.eos, tk.unk, tk.bos, tk.vocab_size) == (0, 1, 2, None, 300)
    assert tk.sentinels == [top - i for i in range(EXTRA_IDS)]
    back = load_tokenizer(tmp_path / "one")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "one"))
    assert type(theirs).__name__ == "T5Tokenizer" and back.sentinels == tk.sentinels
    assert_t5_equal(back, theirs)
    assert_t5_equal(tk, transformers.T5TokenizerFast.from_pretrained(str(tmp_path / "one")))


def test_unigram_training_errors(tmp_path):
    with pytest.raises(DataError, match=r"vocab_size is 8; it must exceed 8 \(<pad> </s> <unk> and the 5 sentinels"):
        train_unigram_texts(["some text"], 8, tmp_path / "a", extra_ids=5)
    with pytest.raises(DataError, match=r"extra_ids is -1"):
        train_unigram_texts(["some text"], 80, tmp_path / "b", extra_ids=-1)
    with pytest.raises(DataError, match=r"corpus holds no text"):
        train_unigram_texts([], 80, tmp_path / "c", extra_ids=0)
    with pytest.raises(DataError, match=r"corpus file\(s\) not found: .*nope\.txt"):
        train_unigram([tmp_path / "nope.txt"], 80, tmp_path / "d")


def test_command_trains_bart_bpe_and_unigram(tmp_path, capsys):
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text((WIKI / "val.txt").read_text(encoding="utf-8"), encoding="utf-8")
    main(["tokenizer", "--type", "bart-bpe", "--files", str(corpus_file), "--vocab_size", "400",
          "--out", str(tmp_path / "bart")])
    assert "BART byte-level BPE tokenizer of 400 tokens" in capsys.readouterr().out
    bart = load_tokenizer(tmp_path / "bart")
    assert (bart.bos, bart.pad, bart.eos, bart.mask, bart.model_max_length) == (0, 1, 2, 4, 1024)
    main(["tokenizer", "--type", "unigram", "--files", str(corpus_file), "--vocab_size", "300", "--extra_ids", "3",
          "--out", str(tmp_path / "t5")])
    assert "T5 Unigram tokenizer of 300 tokens (3 sentinels)" in capsys.readouterr().out
    t5 = load_tokenizer(tmp_path / "t5")
    assert t5.sentinels == [299, 298, 297] and t5.model_max_length == 512 and (t5.pad, t5.eos) == (0, 1)


@pytest.mark.parametrize("args, message", [
    (["--type", "unigram", "--add_prefix_space"], "--add_prefix_space applies to --type bpe and bart-bpe only"),
    (["--type", "bart-bpe", "--extra_ids", "3"], "--extra_ids applies to --type unigram only"),
    (["--type", "unigram", "--cased"], "--cased applies to --type wordpiece only"),
])
def test_command_refuses_options_of_other_types(tmp_path, capsys, args, message):
    (tmp_path / "c.txt").write_text("some text\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "--files", str(tmp_path / "c.txt"), "--vocab_size", "300", "--out", str(tmp_path / "t"),
              *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ["spiece.model", "sentencepiece.bpe.model"])
def test_sentencepiece_model_alone_is_refused_with_the_way_out(tmp_path, name):
    (tmp_path / name).write_bytes(b"\n\x0b\n\x05<unk>\x15\x00\x00\x00\x00")
    for path in (tmp_path, tmp_path / name):
        with pytest.raises(DataError, match=rf"{name} is a SentencePiece model file.*needs the folder's tokenizer\.json"
                                            r".*save_pretrained.*--type unigram"):
            load_tokenizer(path)


def test_malformed_files_are_named(tmp_path, bart_files):
    folder = save(RustTokenizer(models.Unigram([("<unk>", 0.0)], unk_id=0)), tmp_path / "t")
    (folder / "tokenizer.json").write_text('{"model": {"type": "Unigram", "vocab": "oops"}}')
    with pytest.raises(DataError, match=r"t/tokenizer\.json cannot be read by the tokenizers library"):
        load_tokenizer(folder)
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("")
    (folder / "tokenizer_config.json").write_text("{bad")
    with pytest.raises(DataError, match=r"t/tokenizer_config\.json: not valid JSON"):
        load_tokenizer(folder)
    (folder / "tokenizer_config.json").unlink()
    (folder / "config.json").write_text("[1]")
    with pytest.raises(DataError, match=r"t/config\.json holds a JSON list; expected a model config object"):
        load_tokenizer(folder)
    vocab = {k: v for k, v in json.loads((bart_files / "vocab.json").read_text(encoding="utf-8")).items() if k != "<s>"}
    broken = bart_folder(bart_files, tmp_path / "b", {"tokenizer_class": "BartTokenizer"})
    (broken / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks BART's cls token '<s>'"):
        load_tokenizer(broken)
