"""Input fuzzing: every DataModule is given malformed files and must answer with a DataError (or
ConfigError) naming the file and, for tables, the row or line; or, where the user asked for it
(skip_bad_images / skip_bad_audio), skip the sample and count it. Never a hang, never an
exception from inside numpy/PIL/json/csv/soundfile, never a silent skip.

Malformed variants are made from small valid files built here: named malformations (empty,
truncated, wrong magic bytes, invalid UTF-8, invalid JSON, wrong value types, missing columns,
decompression-bomb headers, NaN samples, ...) plus seeded random byte flips of image and audio
headers. Every case runs under `deadline` (SIGALRM); a few representative ones also go through
the CLI in one subprocess (exit status 2, one paragraph).
"""

from __future__ import annotations

import csv
import io
import json
import random
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import (
    REPO, make_image_folder, make_transcribed_audio, ner_rows, qa_rows, text_rows, write_ner_tokenizer,
    write_qa_tokenizer, write_text_tokenizer,
)
from PIL import Image

from lit_tasks.data import AudioDataModule, ImageDataModule, TextDataModule
from lit_tasks.data.masked_lm import MaskedLMDataModule
from lit_tasks.data.question_answering import QuestionAnsweringDataModule
from lit_tasks.data.token_classification import TokenClassificationDataModule
from lit_tasks.errors import ConfigError, DataError

LIMIT_S = 20.0  # per case; the slowest valid case takes well under a second


# ------------------------------------------------------------------------------ the harness


class Hang(BaseException):
    """Raised inside the code under test by `deadline`; a BaseException, so that no
    `except Exception` in the code under test can turn it into a DataError."""


@contextmanager
def deadline(seconds: float = LIMIT_S):
    """Interrupt the block after `seconds` (Python code only: a C call is interrupted when it
    returns, which is why the big inputs here stay small enough to finish either way)."""

    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    error: DataError | ConfigError | None
    batches: list[dict[str, Any]]


def exercise(build: Callable[[], Any]) -> Outcome:
    """Build the DataModule, set it up for fit and iterate its train and val loaders. Our errors
    are returned; anything else (a KeyError from json, a ValueError from numpy, ...) or a hang
    fails the test with its traceback."""
    batches: list[dict[str, Any]] = []
    with deadline():
        try:
            dm = build()
            dm.setup("fit")
            for loader in (dm.train_dataloader(), dm.val_dataloader()):
                batches += list(loader)
        except (DataError, ConfigError) as e:
            return Outcome(e, batches)
    return Outcome(None, batches)


def assert_error(outcome: Outcome, *needles: str) -> str:
    assert outcome.error is not None, f"accepted without an error ({len(outcome.batches)} batches)"
    message = str(outcome.error)
    for needle in needles:
        assert needle in message, f"{needle!r} not in the message: {message[:600]}"
    return message


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    """1-6 random bytes changed, most in the first 64 (the header), sometimes truncated too."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(min(len(b), 64)) if rng.random() < 0.7 else rng.randrange(len(b))
        b[i] = rng.randrange(256)
    if rng.random() < 0.3:
        b = b[: rng.randrange(1, len(b))]
    return bytes(b)


# ------------------------------------------------------------------------------- the assets


def encode_image(fmt: str, seed: int = 0, size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with 100 bytes of image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b"")


def encode_audio(x: np.ndarray, fmt: str = "WAV", subtype: str | None = None, sr: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_with(field: str, value: int) -> bytes:
    """A valid 16-bit WAV (0.1 s) with one header field replaced (canonical 44-byte header)."""
    good = encode_audio(TONE)
    offset, fmt = {"channels": (22, "<H"), "rate": (24, "<I"), "data_size": (40, "<I")}[field]
    return good[:offset] + struct.pack(fmt, value) + good[offset + struct.calcsize(fmt):]


TONE = (0.3 * np.sin(np.arange(1600) * 0.2)).astype(np.float32)  # 0.1 s at 16 kHz


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """Valid images, clips and tokenizers the tables point to."""
    root = tmp_path_factory.mktemp("assets")
    for i in range(4):
        (root / "img").mkdir(exist_ok=True)
        (root / "img" / f"{i}.png").write_bytes(encode_image("PNG", seed=i))
        (root / "wav").mkdir(exist_ok=True)
        (root / "wav" / f"{i}.wav").write_bytes(encode_audio(TONE * (i + 1) / 4))
    write_text_tokenizer(root / "tok_text")
    write_ner_tokenizer(root / "tok_ner")
    write_qa_tokenizer(root / "tok_qa")  # has [MASK]: the masked-LM tokenizer too
    return root


# ------------------------------------------------------------- tables: one spec per DataModule


@dataclass(frozen=True)
class Spec:
    """A DataModule fed from a train and a val table. `columns`: column -> role, the role
    deciding which wrong values are tried (see BAD_VALUES)."""

    rows: Callable[[Path], list[dict[str, Any]]]
    columns: dict[str, str]
    formats: tuple[str, ...]
    build: Callable[[Path, Path, Path], Any]  # (assets, train file, val file) -> DataModule


def _image_rows(a: Path) -> list[dict]:
    return [{"path": str(a / "img" / f"{i}.png"), "label": "ab"[i % 2]} for i in range(4)]


def _audio_rows(a: Path, column: str | None = "label") -> list[dict]:
    rows = [{"path": str(a / "wav" / f"{i}.wav")} for i in range(4)]
    for i, row in enumerate(rows):
        if column == "label":
            row["label"] = "ab"[i % 2]
        elif column == "text":
            row["text"] = "ab c"
    return rows


SPECS = {
    "image": Spec(_image_rows, {"path": "path", "label": "label"}, ("jsonl", "csv"),
                  lambda a, t, v: ImageDataModule(train_file=str(t), val_file=str(v), image_size=8, batch_size=4,
                                                  num_workers=0)),
    "text": Spec(lambda a: [{"text": r["text"], "label": r["label"]} for r in text_rows(6, np.random.default_rng(0))],
                 {"text": "string", "label": "label"}, ("jsonl", "csv"),
                 lambda a, t, v: TextDataModule(train_file=str(t), val_file=str(v), tokenizer=str(a / "tok_text"),
                                                max_length=16, batch_size=4)),
    "token_classification": Spec(
        lambda a: [{"tokens": r["tokens"], "tags": r["tags"]} for r in ner_rows(4, np.random.default_rng(0), "r")],
        {"tokens": "words", "tags": "tags"}, ("jsonl", "csv"),
        lambda a, t, v: TokenClassificationDataModule(train_file=str(t), val_file=str(v), tokenizer=str(a / "tok_ner"),
                                                      max_length=48, batch_size=4)),
    "question_answering": Spec(
        lambda a: qa_rows(4, np.random.default_rng(0), "q"),
        {"id": "id", "context": "string", "question": "string", "answers": "answers"}, ("jsonl",),
        lambda a, t, v: QuestionAnsweringDataModule(train_file=str(t), val_file=str(v), tokenizer=str(a / "tok_qa"),
                                                    max_length=24, doc_stride=6, batch_size=4)),
    "masked_lm": Spec(
        lambda a: [{"text": t} for t in ("the cat sat on a box .", "a dog ran far .", "the ball is red .",
                                         "the big dog saw a small cat .")],
        {"text": "string"}, ("jsonl", "csv"),
        lambda a, t, v: MaskedLMDataModule(train_file=str(t), val_file=str(v), tokenizer=str(a / "tok_qa"),
                                           max_length=16, batch_size=4)),
    "audio": Spec(_audio_rows, {"path": "path", "label": "label"}, ("jsonl", "csv"),
                  lambda a, t, v: AudioDataModule(train_file=str(t), val_file=str(v), batch_size=4, num_workers=0)),
    "audio_transcription": Spec(
        lambda a: _audio_rows(a, "text"), {"path": "path", "text": "string"}, ("jsonl", "csv"),
        lambda a, t, v: AudioDataModule(train_file=str(t), val_file=str(v), task="transcription", batch_size=4,
                                        num_workers=0)),
    "audio_unlabelled": Spec(
        lambda a: _audio_rows(a, None), {"path": "path"}, ("jsonl", "csv"),
        lambda a, t, v: AudioDataModule(train_file=str(t), val_file=str(v), task="unlabelled", batch_size=4,
                                        num_workers=0)),
}

NAN = float("nan")
_STRING = {"number": 42, "nan": NAN, "list": ["a", "b"], "object": {"a": 1}, "bool": True, "empty": ""}
BAD_VALUES: dict[str, dict[str, Any]] = {  # role -> wrong value kind -> the value (written by json.dumps)
    "string": _STRING,
    "path": _STRING,
    "label": {"float": 1.5, "nan": NAN, "list": ["a", "b"], "object": {"a": 1}, "bool": True, "empty": ""},
    "id": {"float": 1.5, "list": ["a"], "object": {"a": 1}, "bool": True, "empty": ""},
    "words": {"number": 42, "object": {"a": 1}, "empty": [], "holds_null": ["mr", None, "met"],
              "holds_number": ["mr", 7, "met"]},
    "tags": {"number": 42, "object": {"a": 1}, "empty": [], "holds_null": None, "holds_list": None},  # per row
    "answers": {"number": 42, "string": "red", "list_of_numbers": [1], "no_answer_start": {"text": ["red"]},
                "text_not_string": {"text": [1], "answer_start": [0]},
                "negative_start": {"text": ["red"], "answer_start": [-1]},
                "start_is_string": {"text": ["red"], "answer_start": ["0"]},
                "counts_differ": {"text": ["red", "blue"], "answer_start": [0]}},
}


def _bad_value(role: str, kind: str, row: dict[str, Any], column: str) -> Any:
    if role == "tags" and kind == "holds_null":
        return [None] + row[column][1:]
    if role == "tags" and kind == "holds_list":
        return [[t] for t in row[column]]
    return BAD_VALUES[role][kind]


def write_table(file: Path, rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    """JSONL (json.dumps, so NaN is written as NaN) or CSV (lists space-separated); the bytes."""
    if file.suffix == ".jsonl":
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: " ".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
        data = out.getvalue().encode()
    file.write_bytes(data)
    return data


def _with_line(data: bytes, index: int, line: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[index] = line
    return b"\n".join(lines)


def _invalid_utf8(data: bytes) -> bytes:
    """Two bytes that are not UTF-8 in the second row: line 2 of JSONL, line 3 of CSV."""
    index = 1 if data.startswith(b"{") else 2
    line = data.split(b"\n")[index]
    return _with_line(data, index, line[:6] + b"\xff\xfe" + line[6:])


def _first_field(line: bytes) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(next(csv.reader([line.decode()]))[:1])
    return out.getvalue().encode()


def _truncated(data: bytes, spec: Spec) -> bytes:
    """Cut in the middle of the last row."""
    last = data.rstrip(b"\n").split(b"\n")[-1]
    return data[: len(data) - len(last) // 2 - 1]


# Malformations of a whole table: kind -> (formats, make(valid bytes, spec) -> bytes,
# where(format, number of rows) -> what the message must hold right after the file name).
TABLE_KINDS: dict[str, tuple[tuple[str, ...], Callable, Callable[[str, int], str]]] = {
    "valid": (("jsonl", "csv"), lambda d, s: d, lambda f, n: ""),
    "empty_file": (("jsonl", "csv"), lambda d, s: b"", lambda f, n: ""),
    "blank_lines_only": (("jsonl",), lambda d, s: b"\n  \n\t\n", lambda f, n: ""),
    "header_only": (("csv",), lambda d, s: d.split(b"\n")[0] + b"\n", lambda f, n: ""),
    "truncated": (("jsonl", "csv"), _truncated, lambda f, n: f" row {n}" if f == "csv" else f" line {n}"),
    "wrong_magic_png_bytes": (("jsonl", "csv"), lambda d, s: encode_image("PNG"), lambda f, n: " line 1"),
    "utf16_encoded": (("jsonl", "csv"), lambda d, s: d.decode().encode("utf-16"), lambda f, n: " line 1"),
    "invalid_utf8": (("jsonl", "csv"), lambda d, s: _invalid_utf8(d),
                     lambda f, n: " line 3" if f == "csv" else " line 2"),
    "invalid_json": (("jsonl",), lambda d, s: _with_line(d, 1, b'{"text": "abc",'), lambda f, n: " line 2"),
    "not_an_object": (("jsonl",), lambda d, s: _with_line(d, 1, b"[1, 2, 3]"), lambda f, n: " line 2"),
    "nested_100000_deep": (("jsonl",), lambda d, s: _with_line(d, 1, b"[" * 100_000 + b"]" * 100_000),
                           lambda f, n: " line 2"),
    "integer_of_5000_digits": (("jsonl",), lambda d, s: _with_line(d, 1, b'{"n": ' + b"9" * 5000 + b"}"),
                               lambda f, n: " line 2"),
    "header_lacks_column": (("csv",), lambda d, s: _with_line(d, 0, d.split(b"\n")[0].replace(_last(s), b"zz")),
                            lambda f, n: ""),
    "row_with_fewer_fields": (("csv",), lambda d, s: _with_line(d, 2, _first_field(d.split(b"\n")[2])),
                              lambda f, n: " row 2"),
    "row_with_extra_fields": (("csv",), lambda d, s: _with_line(d, 2, d.split(b"\n")[2] + b",surplus"),
                              lambda f, n: " row 2"),
    "quote_never_closed": (("csv",), lambda d, s: _with_line(d, 2, b'"' + d.split(b"\n")[2]), lambda f, n: " line 3"),
}


def _last(spec: Spec) -> bytes:
    return list(spec.columns)[-1].encode()


NEEDS_TWO_CSV_COLUMNS = {"truncated", "row_with_fewer_fields"}  # else the cut row is a valid shorter row


def table_cases():
    for name, spec in SPECS.items():
        for kind, (formats, _, _) in TABLE_KINDS.items():
            for fmt in formats:
                one_column_na = fmt == "csv" and kind in NEEDS_TWO_CSV_COLUMNS and len(spec.columns) < 2
                if fmt in spec.formats and not one_column_na:
                    yield pytest.param(name, fmt, kind, id=f"{name}-{fmt}-{kind}")


@pytest.mark.parametrize("name, fmt, kind", list(table_cases()))
def test_malformed_table(assets, tmp_path, name, fmt, kind):
    spec = SPECS[name]
    formats, make, where = TABLE_KINDS[kind]
    train, val = tmp_path / f"train.{fmt}", tmp_path / f"val.{fmt}"
    rows = spec.rows(assets)
    write_table(val, rows, list(spec.columns))
    train.write_bytes(make(write_table(train, rows, list(spec.columns)), spec))
    outcome = exercise(lambda: spec.build(assets, train, val))
    if kind == "valid":
        assert outcome.error is None, outcome.error
        assert outcome.batches
        return
    message = assert_error(outcome, str(train) + where(fmt, len(rows)))
    if kind == "header_lacks_column":
        assert repr(list(spec.columns)[-1]) in message


def field_cases():
    for name, spec in SPECS.items():
        for column, role in spec.columns.items():
            for kind in [*BAD_VALUES[role], "null", "missing"]:
                yield pytest.param(name, column, kind, id=f"{name}-{column}-{kind}")


@pytest.mark.parametrize("name, column, kind", list(field_cases()))
def test_wrong_value_in_a_jsonl_field_names_the_line_and_field(assets, tmp_path, name, column, kind):
    """Row 2 (line 2) gets a value of the wrong type, null, or loses the column."""
    spec = SPECS[name]
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    rows = spec.rows(assets)
    write_table(val, rows, list(spec.columns))
    if kind == "missing":
        del rows[1][column]
    else:
        rows[1][column] = None if kind == "null" else _bad_value(spec.columns[column], kind, rows[1], column)
    write_table(train, rows, list(spec.columns))
    message = assert_error(exercise(lambda: spec.build(assets, train, val)), f"{train} line 2")
    assert repr(column) in message


def test_a_long_csv_field_is_data_not_an_error(assets, tmp_path):
    """The csv module refuses fields over 128 KiB unless told otherwise; a long document is data."""
    spec = SPECS["masked_lm"]
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"
    rows = spec.rows(assets)
    write_table(val, rows, ["text"])
    write_table(train, [*rows, {"text": "the cat sat . " * 20_000}], ["text"])  # 280 KB
    outcome = exercise(lambda: spec.build(assets, train, val))
    assert outcome.error is None, outcome.error
    assert sum(len(b["input_ids"]) for b in outcome.batches) > 20_000 * 4 / 14  # the long row is in


# ------------------------------------------------------------------------------ HF datasets


def _hf_columns(name: str, assets: Path) -> dict[str, list]:
    if name == "image":
        return {"image": [{"bytes": (assets / "img" / f"{i}.png").read_bytes(), "path": None} for i in range(4)],
                "label": ["a", "b", "a", "b"]}
    rows = SPECS[name].rows(assets)
    columns = {c: [r[c] for r in rows] for c in SPECS[name].columns}
    return columns if len(columns) > 1 else {**columns, "n": list(range(len(rows)))}  # never left without columns


HF_MAIN_COLUMN = {"image": "image", "text": "text", "token_classification": "tokens",
                  "question_answering": "context", "masked_lm": "text"}
HF_KINDS = ("truncated_arrow_file", "wrong_magic_arrow_file", "main_column_of_numbers", "null_in_row_1",
            "main_column_missing")


@pytest.mark.parametrize("kind", HF_KINDS)
@pytest.mark.parametrize("name", list(HF_MAIN_COLUMN))
def test_malformed_hf_dataset_names_the_folder_split_and_row(assets, tmp_path, name, kind):
    datasets = pytest.importorskip("datasets")
    columns, main = _hf_columns(name, assets), HF_MAIN_COLUMN[name]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}) \
        if name == "image" else None
    train_columns = {c: list(v) for c, v in columns.items()}
    if kind == "main_column_of_numbers":
        train_columns[main], features = [7] * len(columns[main]), None
    elif kind == "null_in_row_1":
        train_columns[main][1] = None
    elif kind == "main_column_missing":
        del train_columns[main]
        features = None
    folder = tmp_path / "hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(train_columns, features=features),
                          "validation": datasets.Dataset.from_dict(columns, features=features if kind !=
                                                                   "main_column_of_numbers" else None)}
                         ).save_to_disk(str(folder))
    (arrow,) = (folder / "train").glob("*.arrow")
    if kind == "truncated_arrow_file":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    elif kind == "wrong_magic_arrow_file":
        arrow.write_bytes(b"XXXX" + arrow.read_bytes()[4:])
    kwargs = {"image": dict(image_size=8, num_workers=0), "text": dict(tokenizer=str(assets / "tok_text")),
              "token_classification": dict(tokenizer=str(assets / "tok_ner")),
              "question_answering": dict(tokenizer=str(assets / "tok_qa"), max_length=24, doc_stride=6),
              "masked_lm": dict(tokenizer=str(assets / "tok_qa"), max_length=16)}[name]
    module = {"image": ImageDataModule, "text": TextDataModule, "token_classification": TokenClassificationDataModule,
              "question_answering": QuestionAnsweringDataModule, "masked_lm": MaskedLMDataModule}[name]
    message = assert_error(exercise(lambda: module(hf_dataset=str(folder), batch_size=2, **kwargs)), str(folder))
    if kind == "null_in_row_1":
        assert "train row 1" in message
    elif kind in ("main_column_of_numbers", "main_column_missing"):
        assert repr(main) in message


# --------------------------------------------------------------------------------- images


IMAGE_KINDS: dict[str, tuple[str, Callable[[], bytes]]] = {  # kind -> (extension, bytes)
    "empty_file": (".png", lambda: b""),
    "truncated_png": (".png", lambda: encode_image("PNG")[: len(encode_image("PNG")) // 2]),
    "truncated_jpeg": (".jpg", lambda: encode_image("JPEG", size=32)[: len(encode_image("JPEG", size=32)) // 2]),
    "jpeg_magic_on_png": (".png", lambda: b"\xff\xd8\xff\xe0" + encode_image("PNG")[4:]),
    "text_named_png": (".png", lambda: b"path,label\nimg.png,cat\n"),
    "bomb_header_100000x100000": (".png", lambda: png_header(100_000, 100_000)),
    "bomb_header_12000x12000": (".png", lambda: png_header(12_000, 12_000)),  # PIL warns only; data missing
}


def image_data(assets: Path, tmp_path: Path, bad: bytes, ext: str) -> tuple[Path, Path, Path]:
    """(train.jsonl whose line 3 is the bad image, val.jsonl, the bad image)."""
    bad_file = tmp_path / f"bad{ext}"
    bad_file.write_bytes(bad)
    rows = _image_rows(assets)
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    write_table(train, rows[:2] + [{"path": str(bad_file), "label": "a"}] + rows[2:], ["path", "label"])
    write_table(val, rows, ["path", "label"])
    return train, val, bad_file


def build_image(train: Path, val: Path, skip: bool = False):
    return lambda: ImageDataModule(train_file=str(train), val_file=str(val), image_size=8, batch_size=2,
                                   num_workers=0, skip_bad_images=skip, hflip=False)


@pytest.mark.filterwarnings("ignore:Image size")  # PIL's DecompressionBombWarning below its error limit
@pytest.mark.parametrize("kind", list(IMAGE_KINDS))
def test_bad_image_is_named_or_counted_when_skipping(assets, tmp_path, kind):
    ext, make = IMAGE_KINDS[kind]
    train, val, bad = image_data(assets, tmp_path, make(), ext)
    assert_error(exercise(build_image(train, val)), str(bad), f"{train} line 3")
    skipping = exercise(build_image(train, val, skip=True))
    assert skipping.error is None, skipping.error
    assert [p for b in skipping.batches for p in b["skipped"]] == [str(bad)]
    assert sum(len(b["labels"]) for b in skipping.batches) == 4 + 4  # the other train images and val


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL's TIFF plugin warns about the tags it skips
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_random_header_flips_of_images_decode_or_name_the_file(assets, tmp_path, fmt):
    rng = random.Random(f"image-{fmt}")
    good = encode_image(fmt, size=16)
    errors = 0
    for n in range(12):
        variant = tmp_path / f"v{n}"
        variant.mkdir()
        train, val, bad = image_data(assets, variant, flip_bytes(good, rng), "." + fmt.lower())
        outcome = exercise(build_image(train, val))
        if outcome.error is not None:
            assert_error(outcome, str(bad))
            errors += 1
        else:
            assert all(torch.isfinite(b["pixel_values"]).all() for b in outcome.batches)
    assert errors > 0  # the flips do break files (else this test would test nothing)


def test_nan_and_inf_pixels_of_a_float_tiff_become_finite_values(assets, tmp_path):
    pixels = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pixels[0, :3] = [np.nan, np.inf, -np.inf]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")  # mode F
    train, val, _ = image_data(assets, tmp_path, buffer.getvalue(), ".tif")
    outcome = exercise(build_image(train, val))
    assert outcome.error is None, outcome.error
    assert all(torch.isfinite(b["pixel_values"]).all() for b in outcome.batches)


# ---------------------------------------------------------------------------------- audio


AUDIO_KINDS: dict[str, tuple[str, Callable[[], bytes]]] = {  # kind -> (extension, bytes)
    "empty_file": (".wav", lambda: b""),
    "header_only_wav": (".wav", lambda: encode_audio(TONE)[:44]),
    "truncated_wav": (".wav", lambda: encode_audio(TONE)[:1600]),
    "truncated_flac": (".flac", lambda: encode_audio(TONE, "FLAC")[: len(encode_audio(TONE, "FLAC")) // 2]),
    "truncated_ogg": (".ogg", lambda: encode_audio(TONE, "OGG")[: len(encode_audio(TONE, "OGG")) // 2]),
    "rifx_magic_on_wav": (".wav", lambda: b"RIFX" + encode_audio(TONE)[4:]),
    "png_named_wav": (".wav", lambda: encode_image("PNG")),
    "nan_samples": (".wav", lambda: encode_audio(np.where(np.arange(1600) == 100, np.nan, TONE), subtype="FLOAT")),
    "inf_samples": (".wav", lambda: encode_audio(np.where(np.arange(1600) == 100, -np.inf, TONE), subtype="FLOAT")),
    "header_claims_2e9_bytes": (".wav", lambda: wav_with("data_size", 0x7F000000)),
    "header_rate_1_hz": (".wav", lambda: wav_with("rate", 1)),  # 1600 frames would last 27 minutes
    "header_rate_2**31_hz": (".wav", lambda: wav_with("rate", 2**31 - 1)),  # resampling needs a 320 GiB filter
    "header_rate_0_hz": (".wav", lambda: wav_with("rate", 0)),
    "header_60000_channels": (".wav", lambda: wav_with("channels", 60_000)),
}


def audio_data(assets: Path, tmp_path: Path, bad: bytes, ext: str, task: str, durations: bool):
    """(train.jsonl whose line 3 is the bad clip, val.jsonl, the bad clip). With `durations` the
    manifest gives every duration, so no header is read at set-up: the decoder meets the clip."""
    bad_file = tmp_path / f"bad{ext}"
    bad_file.write_bytes(bad)
    column = "label" if task == "classification" else None
    rows = _audio_rows(assets, column)
    bad_row = {"path": str(bad_file), **({"label": "a"} if column else {})}
    train_rows = rows[:2] + [bad_row] + rows[2:]
    if durations:
        train_rows = [{**r, "duration": 0.1} for r in train_rows]
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    write_table(train, train_rows, [])
    write_table(val, rows, [])
    return train, val, bad_file


def build_audio(train: Path, val: Path, task: str, skip: bool = False):
    return lambda: AudioDataModule(train_file=str(train), val_file=str(val), task=task, batch_size=2, num_workers=0,
                                   skip_bad_audio=skip)


@pytest.mark.parametrize("durations", [False, True], ids=["header-read-at-setup", "durations-given"])
@pytest.mark.parametrize("task", ["classification", "unlabelled"])
@pytest.mark.parametrize("kind", list(AUDIO_KINDS))
def test_bad_clip_is_named_or_counted_when_skipping(assets, tmp_path, kind, task, durations):
    ext, make = AUDIO_KINDS[kind]
    train, val, bad = audio_data(assets, tmp_path, make(), ext, task, durations)
    assert_error(exercise(build_audio(train, val, task)), str(bad), f"{train} line 3")

    dms: list[AudioDataModule] = []

    def build():
        dms.append(build_audio(train, val, task, skip=True)())
        return dms[-1]

    skipping = exercise(build)
    assert skipping.error is None, skipping.error
    at_setup = dms[0].report["train"]["bad_files"]  # skipped when the header was read
    in_batches = [p for b in skipping.batches for p in b["skipped"]]  # skipped when decoded
    assert at_setup + in_batches == [str(bad)]  # counted once, wherever it was found
    assert sum(len(b["paths"]) for b in skipping.batches) == 4 + 4
    assert all(torch.isfinite(b["input_values"]).all() for b in skipping.batches)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None), ("OGG", None)])
def test_random_header_flips_of_clips_decode_or_name_the_file(assets, tmp_path, fmt, subtype):
    rng = random.Random(f"audio-{fmt}-{subtype}")
    good = encode_audio(TONE, fmt, subtype)
    errors = 0
    for n in range(12):
        variant = tmp_path / f"v{n}"
        variant.mkdir()
        train, val, bad = audio_data(assets, variant, flip_bytes(good, rng), "." + fmt.lower(), "classification",
                                     durations=n % 2 == 1)
        outcome = exercise(build_audio(train, val, "classification"))
        if outcome.error is not None:
            assert_error(outcome, str(bad))
            errors += 1
        else:
            assert all(torch.isfinite(b["input_values"]).all() for b in outcome.batches)
    assert errors > 0


def test_float_samples_near_the_float32_limit_give_finite_batches(assets, tmp_path):
    """Finite but huge float samples (|x| = 3e38): mixing and normalising must not overflow to NaN."""
    loud = np.full((1600, 2), 3e38, dtype=np.float32)
    loud[::2] *= -1
    train, val, _ = audio_data(assets, tmp_path, encode_audio(loud, subtype="FLOAT"), ".wav", "unlabelled", False)
    outcome = exercise(build_audio(train, val, "unlabelled"))
    assert outcome.error is None, outcome.error
    assert all(torch.isfinite(b["input_values"]).all() for b in outcome.batches)

    # Played slower (speed perturbation), the resampled clip overshoots the float32 range: named or skipped.
    def slowed(skip: bool):
        return lambda: AudioDataModule(train_file=str(train), val_file=str(val), task="unlabelled", batch_size=2,
                                       num_workers=0, speed_perturbation=(0.9, 0.9), skip_bad_audio=skip)

    bad = str(tmp_path / "bad.wav")
    assert_error(exercise(slowed(False)), bad, "float32 range")
    skipping = exercise(slowed(True))
    assert skipping.error is None and [p for b in skipping.batches for p in b["skipped"]] == [bad]
    assert all(torch.isfinite(b["input_values"]).all() for b in skipping.batches)


# ------------------------------------------------------------------ masked LM: plain-text corpus


CORPUS_KINDS: dict[str, bytes] = {
    "empty_file": b"",
    "blank_lines_only": b"\n \n\t\n",
    "invalid_utf8": b"the cat sat .\nthe \xff\xfe dog .\n",
    "utf16_encoded": "the cat sat .\n".encode("utf-16"),
    "png_bytes": encode_image("PNG"),
    "nul_bytes_only": b"\x00\x00\n\x00\n",
    "control_characters_only": "\u0001\u0002\n\u200b\n".encode(),
}


@pytest.mark.parametrize("nsp", [False, True], ids=["mlm", "nsp"])
@pytest.mark.parametrize("kind", list(CORPUS_KINDS))
def test_bad_corpus_file_is_named(assets, tmp_path, kind, nsp):
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_bytes(CORPUS_KINDS[kind])
    val.write_text("the cat sat .\n\na dog ran .\n")
    outcome = exercise(lambda: MaskedLMDataModule(train_file=str(train), val_file=str(val),
                                                  tokenizer=str(assets / "tok_qa"), max_length=16, nsp=nsp))
    expected = {"invalid_utf8": " line 2", "utf16_encoded": " line 1"}.get(kind, "")
    assert_error(outcome, str(train) + expected)


def test_one_sentence_of_30000_words_does_not_hang(assets, tmp_path):
    """A corpus line without sentence breaks (e.g. a file with one huge line): set-up must stay
    linear in its length (reading `Encoding.word_ids` per piece made it quadratic)."""
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("the cat " * 15_000 + "\n")
    val.write_text("the cat sat .\n")
    with deadline(10):
        dm = MaskedLMDataModule(train_file=str(train), val_file=str(val), tokenizer=str(assets / "tok_qa"),
                                max_length=64, batch_size=256)
        dm.setup("fit")
        assert sum(len(b["input_ids"]) for b in dm.train_dataloader()) == -(-30_000 // 62)


# ---------------------------------------------------------------------------- through the CLI

CLI_DRIVER = """
import contextlib, io, json, sys, traceback
from lit_tasks.commands import main
results = {}
for name, argv in json.load(open(sys.argv[1])).items():
    print("case", name, flush=True)
    err, code = io.StringIO(), 0
    try:
        with contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException:
        code, err = "escaped", io.StringIO(traceback.format_exc())
    results[name] = {"code": code, "stderr": err.getvalue()}
json.dump(results, open(sys.argv[2], "w"))
"""


def _common(runs: Path, name: str) -> list[str]:
    return ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--run.root", str(runs), "--run.name", name,
            "--run.loggers", "[csv]"]


def test_cli_prints_one_paragraph_and_exits_2(assets, tmp_path):
    """A few representative malformations through `lit_tasks fit`, in one subprocess."""
    from helpers import ner_args, text_args

    runs = tmp_path / "runs"
    cases: dict[str, list[str]] = {}
    needles: dict[str, list[str]] = {}

    text = {s: tmp_path / f"text_{s}.csv" for s in ("train", "val")}
    for s, f in text.items():
        write_table(f, SPECS["text"].rows(assets), ["text", "label"])
    text["train"].write_bytes(_invalid_utf8(text["train"].read_bytes()))
    cases["text_invalid_utf8"] = ["fit", *text_args(text, runs, "--data.tokenizer", str(assets / "tok_text"),
                                                    "--model.backbone", "bert-test")]
    needles["text_invalid_utf8"] = [f"{text['train']} line 3", "not UTF-8"]

    ner = {s: tmp_path / f"ner_{s}.csv" for s in ("train", "val")}
    for f in ner.values():
        write_table(f, SPECS["token_classification"].rows(assets), ["tokens", "tags"])
    ner["train"].write_bytes(_with_line(ner["train"].read_bytes(), 2, ner["train"].read_bytes().split(b"\n")[2]
                                        + b",surplus"))
    cases["ner_extra_fields"] = ["fit", *ner_args(assets / "tok_ner", ner, runs)]
    needles["ner_extra_fields"] = [f"{ner['train']} row 2", "'surplus'"]

    images = make_image_folder(tmp_path / "images", {"train": 2, "val": 1})
    bomb = images / "train" / "circle" / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    cases["image_bomb"] = ["fit", "--model", "lit_tasks.tasks.ImageClassification", "--model.backbone", "vit-test",
                           "--data", "lit_tasks.data.ImageDataModule", "--data.root", str(images),
                           "--data.image_size", "32", "--data.num_workers", "0", *_common(runs, "image")]
    needles["image_bomb"] = [str(bomb), "DecompressionBombError"]

    speech = make_transcribed_audio(tmp_path / "speech", {"train": 2, "val": 1})
    nan_clip = speech / "clips" / "train_1.flac"  # line 2 of train.jsonl; found when decoded, in training
    nan_clip.unlink()
    nan_clip = nan_clip.with_suffix(".wav")
    nan_clip.write_bytes(AUDIO_KINDS["nan_samples"][1]())
    (speech / "train.jsonl").write_text((speech / "train.jsonl").read_text().replace("train_1.flac", "train_1.wav"))
    cases["audio_nan"] = ["fit", "--model", "lit_tasks.tasks.SpeechRecognition", "--model.backbone", "wav2vec2-test",
                          "--data", "lit_tasks.data.AudioDataModule", "--data.task", "transcription",
                          "--data.train_file", str(speech / "train.jsonl"), "--data.val_file",
                          str(speech / "val.jsonl"), "--data.batch_size", "2", "--data.num_workers", "0",
                          *_common(runs, "audio")]
    needles["audio_nan"] = [f"{speech / 'train.jsonl'} line 2", str(nan_clip), "NaN"]

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_bytes(CORPUS_KINDS["nul_bytes_only"])
    (corpus / "val.txt").write_text("the cat sat .\n")
    cases["corpus_without_pieces"] = ["fit", "--model", "lit_tasks.tasks.MaskedLanguageModeling",
                                      "--model.backbone", "bert-test",
                                      "--data", "lit_tasks.data.masked_lm.MaskedLMDataModule",
                                      "--data.train_file", str(corpus / "train.txt"), "--data.val_file",
                                      str(corpus / "val.txt"), "--data.tokenizer", str(assets / "tok_qa"),
                                      "--data.max_length", "16", *_common(runs, "mlm")]
    needles["corpus_without_pieces"] = [str(corpus / "train.txt"), "no word pieces"]

    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "driver.py").write_text(CLI_DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "cases.json"),
                           str(tmp_path / "results.json")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for name, result in results.items():
        assert result["code"] == 2, (name, result)
        assert "Traceback" not in result["stderr"], (name, result["stderr"][-3000:])
        message = result["stderr"].strip().splitlines()[-1]  # above it: warnings, if any
        assert message.startswith("lit_tasks: error: "), (name, result["stderr"][-3000:])
        for needle in needles[name]:
            assert needle in message, (name, needle, message)
