"""lit_tasks.text.byte_level and .bpe: GPT-2's byte-level BPE, trained here on the bundled
Wikipedia sample, read back from tokenizer.json and from vocab.json + merges.txt; ids against
transformers' GPT2Tokenizer and against a from-scratch reference of GPT-2's recipe (transformers
5 has no pure-Python GPT-2 tokenizer left: its GPT2Tokenizer runs on `tokenizers` too, so the
reference is the independent check of the regex and the merge loop); the CLI; the errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import REPO
from tokenizers import Tokenizer as RustTokenizer

from lit_tasks.commands import main
from lit_tasks.errors import DataError
from lit_tasks.text import Tokenizer, load_tokenizer, train_bpe, train_bpe_texts
from lit_tasks.text import bpe, byte_level

EOT = "<|endoftext|>"
WIKI = REPO / "demo_data" / "wiki_corpus"
VOCAB_SIZE = 900
# Lines added to the corpus (100 times), so that merges form inside multi-byte characters too.
EXTRA = ["Café naïve résumé Ångström déjà vu", "日本語のテキストと中文的文本", "emoji 👍 👍🏽 👨‍👩‍👧‍👦 ❤️",
         "\tindented\tcode()\n\n    return x  # four spaces", "Привет, мир! Ελληνικά"]
AWKWARD = [
    "Hello world", "The quick brown fox.", " leading space", "   three leading spaces", "trailing   ",
    "repeated     spaces   in  between", "tabs\tand\t\ttabs\t", "line one\nline two\n\n\nline five\n",
    "windows\r\nline\r\n\r\nend", "Café naïve RÉSUMÉ Ångström", "combining e\u0301 a\u0308 n\u0303 marks",
    "日本語のテキスト 中文", "Привет мир", "مرحبا", "emoji 👍 👍🏽 family 👨‍👩‍👧‍👦 flag 🏳️‍🌈 ❤️",
    "digits 1234567890 3.14159 2024-01-02 ٣٤", "DON'T don't we'll I'm they've it's 'quoted'",
    "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20, "x" * 700,
    f"text{EOT}more", f"{EOT} starts", f"ends {EOT}", f"a {EOT}{EOT} b", "<|endoftext|", "",
    " ", "\n", "  \n  \t ", "ẞ ǅ ﬁ ① ⅷ ﹏ \u00a0nbsp \u200bzwsp \u3000ideographic",
]
# GPT-2's pre-tokenization (Radford et al. 2019), as published with its encoder.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bpe")
    extra = root / "extra.txt"
    extra.write_text("\n".join(EXTRA * 100) + "\n", encoding="utf-8")
    train_bpe([WIKI / "train.txt", extra], VOCAB_SIZE, root / "tok")
    return root / "tok"


def gpt2_folder(trained: Path, folder: Path, config: dict | None = None) -> Path:
    """A GPT-2 style folder: vocab.json + merges.txt (+ tokenizer_config.json), no tokenizer.json."""
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(trained / name, folder / name)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def hf_gpt2(folder: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2Tokenizer.from_pretrained(str(folder))


def ids(tk: Tokenizer, text: str) -> list[int]:
    return tk.encode(text, truncation=False)["input_ids"]


# ---------------------------------------------------------------------------- a reference


def byte_chars() -> dict[int, str]:
    """GPT-2's table: visible Latin-1 bytes stand for themselves, the 68 others (in byte order)
    for chr(256), chr(257), ..."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in visible]
    return {**{b: chr(b) for b in visible}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


def reference_ids(text: str, folder: Path, add_prefix_space: bool) -> list[int]:
    """GPT-2's recipe written out: split off <|endoftext|>, cut words with the regex, bytes to
    stand-ins, then merge the lowest-ranked adjacent pair until none is ranked."""
    regex = pytest.importorskip("regex")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    ranks = {tuple(line.split(" ")): rank for rank, line in enumerate(lines)}
    table = byte_chars()
    out: list[int] = []
    for k, segment in enumerate(text.split(EOT)):
        if k:
            out.append(vocab[EOT])
        if add_prefix_space and segment and not segment.startswith(" "):
            segment = " " + segment
        for word in regex.findall(GPT2_PATTERN, segment):
            parts = [table[b] for b in word.encode("utf-8")]
            while len(parts) > 1:
                rank, i = min((ranks.get(pair, math.inf), i) for i, pair in enumerate(zip(parts, parts[1:])))
                if rank == math.inf:
                    break
                parts[i:i + 2] = [parts[i] + parts[i + 1]]
            out += [vocab[p] for p in parts]
    return out


def test_byte_table_is_the_librarys():
    table = byte_chars()
    assert set(table.values()) == byte_level.BYTE_CHARS and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


# ---------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_ids_match_transformers_and_the_reference(trained, tmp_path, add_prefix_space):
    folder = gpt2_folder(trained, tmp_path / "gpt2", {"add_prefix_space": add_prefix_space})
    ours, theirs = load_tokenizer(folder), hf_gpt2(folder)
    assert ours.source.endswith("vocab.json") and ours.byte_level and ours.vocab_size == VOCAB_SIZE
    for text in AWKWARD:
        got = ours.encode(text, truncation=False)
        want = theirs(text, return_offsets_mapping=True)
        assert got["input_ids"] == want["input_ids"] == reference_ids(text, folder, add_prefix_space), text
        # Our offsets leave out the spaces that transformers' GPT-2 counts in (trim_offsets),
        # except with add_prefix_space, where they are the same.
        if add_prefix_space:
            assert got["offsets"] == want["offset_mapping"]
        for (s, e), (hs, he) in zip(got["offsets"], want["offset_mapping"]):
            assert hs <= s <= e <= he and not (text[hs:s] + text[e:he]).strip(" "), (text, (s, e), (hs, he))
    # Something was merged inside multi-byte characters: CJK and emoji take fewer tokens than bytes.
    for text in ("日本語のテキスト", "👨‍👩‍👧‍👦"):
        assert len(ids(ours, text)) < len(text.encode())


def test_transformers_reads_the_whole_folder(trained):
    ours, theirs = load_tokenizer(trained), hf_gpt2(trained)
    assert [ids(ours, t) for t in AWKWARD] == [theirs(t)["input_ids"] for t in AWKWARD]
    assert theirs.eos_token_id == theirs.bos_token_id == 0 and theirs.pad_token is None


# ----------------------------------------------------------------------- the pipeline itself


def test_files_roles_and_no_special_tokens_added(trained):
    tk = load_tokenizer(trained)
    assert sorted(p.name for p in trained.iterdir()) == ["merges.txt", "tokenizer.json", "tokenizer_config.json",
                                                          "vocab.json"]
    config = json.loads((trained / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GPT2Tokenizer" and config["add_prefix_space"] is False
    assert config["do_lower_case"] is False and config["model_max_length"] == 1024 and "pad_token" not in config
    vocab = json.loads((trained / "vocab.json").read_text(encoding="utf-8"))
    assert list(vocab.values()) == list(range(VOCAB_SIZE)) and list(vocab)[0] == EOT
    assert set(list(vocab)[1:257]) == byte_level.BYTE_CHARS  # every byte has a token: nothing is unknown
    assert (trained / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\nĠ ")
    # <|endoftext|> is bos and eos, and pads; nothing else is special.
    assert tk.bos == tk.eos == tk.pad == 0 and tk.pad_is_eos
    assert tk.unk is tk.cls is tk.sep is tk.mask is None and not tk.do_lower_case
    assert 0 not in ids(tk, "Hello world") and ids(tk, "") == []
    assert tk.encode("Hello", "world")["input_ids"] == ids(tk, "Hello") + ids(tk, "world")
    e = ids(tk, f"one{EOT}two")
    assert e.count(0) == 1 and e == ids(tk, "one") + [0] + ids(tk, "two")
    # Still so after the files travel (a checkpoint stores files(); HF configs name no pad).
    files = tk.files()
    again = Tokenizer(RustTokenizer.from_str(files["tokenizer.json"]), json.loads(files["tokenizer_config.json"]))
    assert again.pad == again.eos == 0 and again.pad_is_eos and again.files() == files
    named = Tokenizer(tk.backend, {"pad_token": EOT})  # a config that names eos as pad
    assert named.pad_is_eos and "pad_token" in json.loads(named.files()["tokenizer_config.json"])


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_decode_round_trips(trained, tmp_path, add_prefix_space):
    tk = load_tokenizer(gpt2_folder(trained, tmp_path / "g", {"add_prefix_space": add_prefix_space}))
    for text in AWKWARD:
        # add_prefix_space puts a space before every piece of text between special tokens that has none.
        spaced = EOT.join(" " + p if add_prefix_space and p[:1] not in ("", " ") else p for p in text.split(EOT))
        e = ids(tk, text)
        assert tk.decode(e, skip_special_tokens=False) == spaced, text
        assert tk.decode(e) == spaced.replace(EOT, "")


def test_offsets_point_at_the_text(trained):
    tk = load_tokenizer(trained)
    to_byte = {c: b for b, c in byte_chars().items()}
    for text in AWKWARD:
        e = tk.encode(text, truncation=False)
        for token, (start, end) in zip(tk.convert_ids_to_tokens(e["input_ids"]), e["offsets"]):
            piece = EOT.encode() if token == EOT else bytes(to_byte[c] for c in token)
            try:  # a token of whole characters spans exactly them, less its spaces at either end
                assert text[start:end] == piece.decode("utf-8").strip(" "), (text, token)
            except UnicodeDecodeError:  # parts of characters: its span is those characters
                piece = piece.strip(b" ")
                assert piece in text[start:end].encode("utf-8") and 0 < end - start <= len(piece), (text, token)
    e = tk.encode("a  \u00e9t\u00e9 <|endoftext|>\tx")  # a, two spaces, "été" at 3-6, then <|endoftext|> at 7-20
    word = [(s, t) for s, t in e["offsets"] if 3 <= s < 6]
    assert min(s for s, _ in word) == 3 and max(t for _, t in word) == 6 and (7, 20) in e["offsets"]


def test_tokenizer_json_and_vocab_json_give_the_same_tokenizer(trained, tmp_path):
    from_json = load_tokenizer(trained)
    from_files = load_tokenizer(gpt2_folder(trained, tmp_path / "g"))
    assert from_json.source.endswith("tokenizer.json") and from_files.source.endswith("vocab.json")
    for text in AWKWARD:
        assert from_files.encode(text, truncation=False) == from_json.encode(text, truncation=False)
    # Built the same way, they write the same files; either file names the folder's tokenizer.
    assert from_files.files()["tokenizer.json"] == from_json.files()["tokenizer.json"]
    for name in ("vocab.json", "merges.txt"):
        assert from_json.files()[name] == (trained / name).read_text(encoding="utf-8")
        assert load_tokenizer(tmp_path / "g" / name).encode("Café 日本") == from_json.encode("Café 日本")


def test_add_prefix_space_tokenises_the_first_word_as_any_other(trained, tmp_path):
    plain = load_tokenizer(gpt2_folder(trained, tmp_path / "a"))
    spaced = load_tokenizer(gpt2_folder(trained, tmp_path / "b", {"add_prefix_space": True}))
    assert ids(spaced, "the") == ids(plain, " the") == ids(spaced, " the") != ids(plain, "the")
    assert json.loads(spaced.files()["tokenizer_config.json"])["add_prefix_space"] is True


# ------------------------------------------------------------------------------------ training


def test_training_twice_gives_identical_files(tmp_path):
    for out in ("one", "two"):
        train_bpe([WIKI / "val.txt"], 400, tmp_path / out)
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_files_are_read_in_pieces_that_split_like_the_whole(tmp_path, monkeypatch):
    text = "".join(f"def f{i}():\n    return {i}  \n\n\nword{i} x\r\nnext line\t\n" for i in range(60))
    corpus = tmp_path / "code.txt"
    corpus.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(bpe, "CHUNK_CHARS", 100)
    assert len(list(bpe._file_chunks([corpus]))) > 20 and "".join(bpe._file_chunks([corpus])) == text
    train_bpe([corpus], 320, tmp_path / "pieces", min_frequency=1)
    train_bpe_texts([text], 320, tmp_path / "whole", min_frequency=1)
    assert (tmp_path / "pieces" / "merges.txt").read_text() == (tmp_path / "whole" / "merges.txt").read_text()
    assert "ĊĊ" in json.loads((tmp_path / "whole" / "vocab.json").read_text())  # blank lines are text too


def test_training_errors_are_named(tmp_path):
    with pytest.raises(DataError, match=r"vocab_size is 257; it must exceed 257"):
        train_bpe_texts(["some text"], 257, tmp_path / "a")
    with pytest.raises(DataError, match=r"nothing was merged; the corpus holds no text"):
        train_bpe_texts([], 300, tmp_path / "b")
    with pytest.raises(DataError, match=r"corpus file\(s\) not found: .*nope\.txt"):
        train_bpe([tmp_path / "nope.txt"], 300, tmp_path / "c")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"bad\.txt line 2: not UTF-8"):
        train_bpe([bad], 300, tmp_path / "d")


# ----------------------------------------------------------------------------------------- CLI


def test_command_trains_a_bpe_folder(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    text = (WIKI / "val.txt").read_text(encoding="utf-8") + "\n\n" + "\n".join(EXTRA) + "\n"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "tok"
    main(["tokenizer", "--type", "bpe", "--files", str(corpus), "--vocab_size", "500", "--out", str(out)])
    assert "byte-level BPE tokenizer of 500 tokens" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"}
    tk = load_tokenizer(out)
    assert tk.byte_level and tk.vocab_size == 500 and tk.eos == tk.pad == 0 and tk.model_max_length == 1024
    assert tk.decode(ids(tk, AWKWARD[-1])) == AWKWARD[-1]
    assert [ids(tk, t) for t in AWKWARD] == [hf_gpt2(out)(t)["input_ids"] for t in AWKWARD]
    main(["tokenizer", "--type", "bpe", "--files", str(corpus), "--vocab_size", "500", "--out", str(tmp_path / "p"),
          "--add_prefix_space"])
    spaced = load_tokenizer(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "tokenizer_config.json").read_text())["add_prefix_space"] is True
    assert ids(spaced, "Hello") == ids(spaced, " Hello") and ids(tk, "Hello") != ids(tk, " Hello")


@pytest.mark.parametrize("args, message", [
    (["--type", "bpe", "--cased"], "--cased applies to --type wordpiece only"),
    (["--add_prefix_space"], "--add_prefix_space applies to --type bpe and bart-bpe only"),
    (["--type", "sentencepiece"], "invalid choice: 'sentencepiece'"),
])
def test_command_refuses_options_of_the_other_type(tmp_path, capsys, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("some text\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "--files", str(corpus), "--vocab_size", "300", "--out", str(tmp_path / "t"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


# -------------------------------------------------------------------------------------- errors

VOCAB = {EOT: 0, **{c: i + 1 for i, c in enumerate(sorted(byte_level.BYTE_CHARS))}}
VOCAB.update({"Ġt": 257, "he": 258, "Ġthe": 259})
VOCAB_TEXT = json.dumps(VOCAB, ensure_ascii=False, indent=2)  # id i on line i + 2: "he" (258) on line 260
MERGES = "#version: 0.2\nĠ t\nh e\nĠt he\n"


@pytest.mark.parametrize("vocab, merges, message", [
    ("{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3\n}", MERGES, r"vocab\.json line 4: not valid JSON \(Expecting ','"),
    ("[\"a\", \"b\"]", MERGES, r"vocab\.json line 1: holds an array; expected an object of token -> id"),
    (VOCAB_TEXT.replace('"he": 258', '"he": "258"'), MERGES, r"vocab\.json line 260: token 'he' has the id \"258\""),
    (VOCAB_TEXT.replace('"he": 258', '"he": -1'), MERGES, r"vocab\.json line 260: token 'he' has the id -1"),
    (VOCAB_TEXT.replace('"he": 258', '"he": true'), MERGES, r"line 260: token 'he' has the id true"),
    (VOCAB_TEXT.replace('"he": 258', '"he": 8'), MERGES,
     r"vocab\.json line 260: token 'he' has the id 8, as '\(' on line 10 does; ids must be distinct"),
    (VOCAB_TEXT.replace('"Ġthe": 259', '"Ġt": 259'), MERGES,
     r"vocab\.json line 261: token 'Ġt' already appears on line 259"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\nh e x\nĠt he\n", r"merges\.txt line 3: 'h e x' is not a merge"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\nhe\n", r"merges\.txt line 3: 'he' is not a merge; expected two tokens"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\n\n\nh e\n", r"merges\.txt line 3 is blank, yet merges follow"),
    (VOCAB_TEXT, "Ġ  t\n", r"merges\.txt line 1: 'Ġ  t' is not a merge"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\nh e\nĠt hex\n", r"merges\.txt line 4: the merge 'Ġt hex' needs the token 'hex', "
                                                        r"which vocab\.json lacks"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\nh e\nt he\n", r"merges\.txt line 4: the merge 't he' needs the token 'the'"),
    (VOCAB_TEXT, "#version: 0.2\nĠ t\nh e\nĠ t\n", r"merges\.txt line 4: the merge 'Ġ t' repeats line 2"),
    (VOCAB_TEXT, b"#version: 0.2\n\xc4\xa0 t\nh \xff\n", r"merges\.txt line 3: not UTF-8 text"),
])
def test_malformed_files_are_named_with_their_line(tmp_path, vocab, merges, message):
    (tmp_path / "vocab.json").write_text(vocab, encoding="utf-8")
    if isinstance(merges, bytes):
        (tmp_path / "merges.txt").write_bytes(merges)
    else:
        (tmp_path / "merges.txt").write_text(merges, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_tokenizer(tmp_path)


def test_well_formed_files_load_and_other_problems_are_named(tmp_path):
    (tmp_path / "vocab.json").write_text(VOCAB_TEXT, encoding="utf-8")
    (tmp_path / "merges.txt").write_text(MERGES.replace("#version: 0.2\n", ""), encoding="utf-8")
    assert VOCAB_TEXT.splitlines()[260 - 1] == '  "he": 258,'
    tk = load_tokenizer(tmp_path)  # no #version line, no config: GPT-2's defaults
    assert tk.convert_ids_to_tokens(ids(tk, " the")) == ["Ġthe"] and tk.eos == 0 and not tk.do_lower_case
    (tmp_path / "merges.txt").write_text(MERGES.replace("\n", "\r\n") + "\r\n\n", encoding="utf-8")  # CRLF, blank end
    assert load_tokenizer(tmp_path).encode(" the") == tk.encode(" the")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(DataError, match=r"tokenizer_config\.json names pad_token '<pad>', which .*vocab\.json lacks"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "vocab.json").write_text(json.dumps({k: v for k, v in VOCAB.items() if k != "Ċ"}), encoding="utf-8")
    with pytest.raises(DataError, match=r"vocab\.json lacks 1 of the 256 byte tokens .*'Ċ'"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").unlink()  # a CTC character vocabulary is a vocab.json alone
    with pytest.raises(DataError, match=r"vocab\.json has no merges\.txt beside it"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").rename(tmp_path / "merges.txt")
    with pytest.raises(DataError, match=r"merges\.txt has no vocab\.json beside it"):
        load_tokenizer(tmp_path / "merges.txt")
