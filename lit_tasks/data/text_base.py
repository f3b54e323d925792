"""What the text DataModules share (text classification, token classification, question
answering, masked-LM pretraining): splits from files or a saved HF ``DatasetDict``, the
tokenizer, each split encoded once into arrays that are cached under a fingerprint, setup and
the split loaders; and the helpers their readers and encoders share."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_tasks.data import hf_datasets
from lit_tasks.data.base import SplitDataModule
from lit_tasks.data.labels import sort_labels
from lit_tasks.data.samplers import split_loader
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.text.bpe import train_bpe_texts
from lit_tasks.text.byte_level import BART_SPECIALS
from lit_tasks.text.sentencepiece import train_unigram_texts
from lit_tasks.text.tokenizer import Tokenizer, load_tokenizer, train_wordpiece_texts


def _train_bart_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Tokenizer:
    return train_bpe_texts(texts, vocab_size, out_dir, specials=BART_SPECIALS)


# What `train_tokenizer_vocab_size` trains: the tokenizer kind -> its trainer (texts, size, folder).
TOKENIZER_TRAINERS = {"WordPiece": train_wordpiece_texts, "byte-level BPE": train_bpe_texts,
                      "bart-bpe": _train_bart_bpe, "unigram": train_unigram_texts}
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


# ---------------------------------------------------------------------- reading and batching


def text_field(value: Any, where: str, column: str) -> str:
    """``value`` of ``column`` checked to be a non-empty string; ``where`` names the row in errors."""
    if value is None:
        raise DataError(f"{where}: the {column!r} field is missing; every row needs a text in {column!r}.")
    if not isinstance(value, str):
        raise DataError(f"{where}: the {column!r} field is {value!r} ({type(value).__name__}); expected a string.")
    if not value.strip():
        raise DataError(f"{where}: the {column!r} field is empty; every row needs a non-empty text in {column!r}.")
    return value


def pad_sequences(sequences: list[np.ndarray], value: int) -> torch.Tensor:
    """1-D integer arrays -> a (B, T) long tensor, T the longest, right-padded with ``value``."""
    out = torch.full((len(sequences), max(len(x) for x in sequences)), value, dtype=torch.long)
    for n, x in enumerate(sequences):
        out[n, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
    return out


# ------------------------------------------------------------------------------ cache files


def save_arrays(file: Path, **arrays: np.ndarray) -> None:
    """Write a cache file of named arrays (``np.savez``) atomically: a reader never sees half a file."""
    tmp = file.with_name(file.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, file)


def hash_files(h, source: Path) -> None:
    """Feed the name and bytes of ``source`` (a file, or every file of a folder, sorted) to the hash ``h``."""
    for file in sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]:
        h.update(str(file.name).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)


def fingerprint(settings: dict[str, Any], source: str | Path, tokenizer: Tokenizer) -> str:
    """A cache key: the JSON ``settings``, the path and bytes of ``source`` (a file, or every
    file of a folder) and what ``tokenizer`` would save (its files)."""
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True).encode())
    source = Path(source).expanduser()
    h.update(str(source.resolve()).encode())  # row ids name the file
    hash_files(h, source)
    h.update(json.dumps(tokenizer.files(), sort_keys=True).encode())  # also one read from a .ckpt
    return h.hexdigest()[:24]


class CachedArrays:
    """Base of the dataclasses a split is encoded into: ``save`` writes every field to one
    ``.npz`` file (a ``list`` field, such as the rows named in messages, as strings) and
    ``load`` reads them back."""

    @classmethod
    def _list_fields(cls) -> set[str]:
        return {f.name for f in fields(cls) if str(f.type).startswith("list")}

    def save(self, file: Path) -> None:
        lists = self._list_fields()
        save_arrays(file, **{f.name: np.array(getattr(self, f.name), dtype=str) if f.name in lists
                             else getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, file: Path) -> CachedArrays:
        lists = cls._list_fields()
        with np.load(file, allow_pickle=False) as z:
            return cls(**{f.name: list(z[f.name]) if f.name in lists else z[f.name] for f in fields(cls)})


class PackedRows(CachedArrays):
    """Cached arrays of N rows (texts, sentences, windows) stored one after another in flat
    token arrays; the dataclass has a ``starts`` (N + 1,) int64 field of row boundaries."""

    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def lengths(self) -> np.ndarray:
        """(N,) the tokens of each row."""
        return np.diff(self.starts)

    def span(self, i: int) -> slice:
        """Where row ``i`` lies in the flat token arrays."""
        return slice(int(self.starts[i]), int(self.starts[i + 1]))


# --------------------------------------------------------------------------------- DataModule


class TextSplitDataModule(SplitDataModule):
    """A text DataModule: splits read from files or a saved HF ``DatasetDict`` into rows, each
    split encoded once with the tokenizer and batched by
    :func:`lit_tasks.data.samplers.split_loader`.

    A subclass states what is its own: its constructor (explicit arguments: LightningCLI reads
    the signature; the shared ones are documented here), how a file or an HF split becomes rows
    (``_read_file`` / ``_read_hf``), what it encodes (``arrays``, ``_encode``, the
    ``_cache_settings`` that change the result), its dataset (``_make_dataset``) and collate
    (``_collate``).

    ``cache_dir`` keeps each encoded split in ``<cache_name>-<split>-<fingerprint>.npz``, the
    fingerprint covering the split's file (or HF split folder) bytes, the tokenizer files and
    the settings, so a changed file or setting encodes again; ``cache_hits`` says per split
    whether it was read from there. With ``truncation`` set, the arrays list the rows cut to
    ``max_length`` (``truncated_rows``): counted per split in ``truncated`` and logged.

    Args:
        train_file: the train split: CSV (with a header) or JSONL (.jsonl, .ndjson), or plain
            UTF-8 text where the DataModule reads a corpus (causal, masked and denoising LMs);
            the columns are named by the DataModule's *_column options. None: hf_dataset
            gives the splits instead.
        val_file: the validation split (fit, validate), in train_file's format; None: none.
        test_file: the test split, in train_file's format; None: none.
        predict_file: the rows to predict, in train_file's format without the label or target
            columns; None: predict reads the test split.
        hf_dataset: a DatasetDict.save_to_disk folder with the splits train, validation (or
            val) and test, read instead of train_file / val_file / test_file (not together
            with train_file); predict_file still applies.
        tokenizer: a tokenizer or checkpoint folder holding tokenizer.json, vocab.txt
            (WordPiece) or vocab.json + merges.txt (byte-level BPE), one of those files, or a
            lit_tasks .ckpt (see lit_tasks.text.load_tokenizer). None: the one trained by
            train_tokenizer_vocab_size, else the preprocessor's.
        preprocessor: a checkpoint folder or lit_tasks .ckpt whose tokenizer is used when
            tokenizer is not given; the CLI links model.init_from here.
        max_length: the most tokens of an encoded row, special tokens included.
        batch_size: rows per training batch (on each process under data parallelism).
        eval_batch_size: rows per val/test/predict batch; None: batch_size.
        num_workers: DataLoader worker processes; 0 loads in the main process.
        group_by_length: batch training rows of similar token length together (less padding);
            False: training rows are shuffled plainly.
        cache_dir: a folder keeping the encoded splits and trained tokenizers, reused while
            their fingerprint matches; None: every split is encoded anew in each run.
        train_tokenizer_vocab_size: instead of loading one, train a tokenizer of this many
            tokens on the train split (a byte-level BPE, or the DataModule's
            trained_tokenizer_kind), kept in cache_dir (required) and reused while the train
            data is the same; not with tokenizer. None: load tokenizer (or the preprocessor's).
    """

    cache_name: str  # the cache files' prefix
    trained_tokenizer_kind: str = "byte-level BPE"  # what train_tokenizer_vocab_size trains (TOKENIZER_TRAINERS)
    arrays: type[CachedArrays]  # what `_encode` returns, and the cache holds
    truncation: str | None = None  # what happened to the rest of a row longer than max_length (for the log)

    def __init__(self, *, train_file: str | None, val_file: str | None, test_file: str | None,
                 predict_file: str | None, hf_dataset: str | None, tokenizer: str | None, preprocessor: str | None,
                 max_length: int, batch_size: int, eval_batch_size: int | None, num_workers: int,
                 group_by_length: bool, cache_dir: str | None, train_tokenizer_vocab_size: int | None = None):
        super().__init__()
        name = type(self).__name__
        if train_file and hf_dataset:
            raise DataError(f"{name}: give one data source, not train_file and hf_dataset.")
        if train_tokenizer_vocab_size is not None and tokenizer is not None:
            raise ConfigError(f"{name}: set data.tokenizer or data.train_tokenizer_vocab_size, not both.")
        if train_tokenizer_vocab_size is not None and not cache_dir:
            raise ConfigError(f"{name}: data.train_tokenizer_vocab_size needs data.cache_dir, where the trained "
                              "tokenizer is kept.")
        self.train_tokenizer_vocab_size = train_tokenizer_vocab_size
        self.files = {"train": train_file, "val": val_file, "test": test_file, "predict": predict_file}
        self.hf_dataset = hf_dataset
        self.tokenizer_path, self.preprocessor = tokenizer, preprocessor
        self.max_length = max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.group_by_length, self.cache_dir = num_workers, group_by_length, cache_dir
        self._hf = hf_datasets.load_hf_dataset(hf_dataset) if hf_dataset else None
        self._tokenizer: Tokenizer | None = None
        self._classes: list[str] | None = None  # set by `_train_classes`: the train data defines the classes
        self._rows: dict[str, list] = {}
        self._encoded: dict[str, CachedArrays] = {}
        self._datasets: dict[str, Dataset] = {}
        self.truncated: dict[str, int] = {}  # split -> rows cut to max_length
        self.cache_hits: dict[str, bool] = {}  # split -> whether the encoded split came from cache_dir

    # ------------------------------------------------------------------------------ what a subclass states

    def _read_file(self, file: str, labelled: bool) -> list:
        """The rows of a CSV/JSONL (or text) file; ``labelled``: labels are required (not predict_file)."""
        raise NotImplementedError

    def _read_hf(self, name: str, ds, labelled: bool) -> list:
        """The rows of the HF split ``name`` (a ``datasets.Dataset``)."""
        raise NotImplementedError

    def _cache_settings(self, split: str) -> dict[str, Any]:
        """Every setting that changes what ``_encode(split)`` gives (part of the cache key)."""
        raise NotImplementedError

    def _encode(self, split: str) -> CachedArrays:
        raise NotImplementedError

    def _make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _collate(self, split: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        raise NotImplementedError

    def _eval_sampler(self, dataset: Dataset) -> Sampler | None:
        """The val/test/predict sampler; None: the unpadded distributed one (every row once)."""
        return None

    # ------------------------------------------------------------------------------------ tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = self._open_tokenizer()
        return self._tokenizer

    def _tokenizer_texts(self) -> Iterable[str]:
        """The texts of the train split a tokenizer is trained on (``train_tokenizer_vocab_size``)."""
        raise NotImplementedError

    def _open_tokenizer(self) -> Tokenizer:
        """The folder ``tokenizer``, else one trained on the train split (``train_tokenizer_vocab_size``),
        else the checkpoint folder ``preprocessor`` (linked from ``model.init_from``); it must pad."""
        if self.train_tokenizer_vocab_size is not None and not self.tokenizer_path:
            self.tokenizer_path = str(self.trained_tokenizer())
        path, key = ((self.tokenizer_path, "data.tokenizer") if self.tokenizer_path
                     else (self.preprocessor, "data.preprocessor (model.init_from)"))
        if not path:
            raise DataError(f"{type(self).__name__}: no tokenizer given; set data.tokenizer to a checkpoint/tokenizer "
                            "folder (or model.init_from to a checkpoint folder holding one).")
        try:
            loaded = load_tokenizer(path)
        except DataError as e:
            raise DataError(f"{key}: {e}") from None
        if loaded.pad is None:
            wanted = loaded.config.get("pad_token", "[PAD]")
            raise DataError(f"{key}: tokenizer {path} has no padding token (looked for {wanted!r}).")
        return loaded

    def trained_tokenizer(self) -> Path:
        """The folder of a ``trained_tokenizer_kind`` tokenizer of ``train_tokenizer_vocab_size``
        tokens trained on the train split's ``_tokenizer_texts()``, once: it is kept in
        ``cache_dir/tokenizer-<fingerprint>/`` and found again while the train data is the same
        (the folder is logged; it is a valid ``data.tokenizer`` for later runs)."""
        kind = self.trained_tokenizer_kind
        size = self.train_tokenizer_vocab_size
        h = hashlib.sha256(json.dumps({**self._cache_settings("train"), "vocab_size": size, "kind": kind},
                                      sort_keys=True).encode())
        hash_files(h, Path(self._source("train")).expanduser())
        folder = Path(self.cache_dir).expanduser() / f"tokenizer-{h.hexdigest()[:24]}"
        if not (folder / "tokenizer.json").is_file():
            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
            TOKENIZER_TRAINERS[kind](self._tokenizer_texts(), size, tmp)
            try:
                os.replace(tmp, folder)  # atomic; another process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
            logging.getLogger(type(self).__module__).info(
                "trained a %s tokenizer of %d tokens on the train split: %s", kind, size, folder)
        return folder

    # --------------------------------------------------------------------------------------- sources

    def has_split(self, split: str) -> bool:
        if self._hf is not None:
            return split == "predict" or hf_datasets.hf_split(self._hf, self.hf_dataset, split, False) is not None
        return bool(self.files[split]) or (split == "predict" and bool(self.files["test"]))

    def _hf_split(self, split: str):
        """(name, Dataset) of the HF split that ``split`` is read from (predict: test), or None
        when it is read from a file."""
        if self._hf is None or (split == "predict" and self.files["predict"]):
            return None
        return hf_datasets.hf_split(self._hf, self.hf_dataset, "test" if split == "predict" else split, required=True)

    def _source(self, split: str) -> str:
        """The file (or HF folder/split) a split is read from; predict falls back to test."""
        if (hit := self._hf_split(split)) is not None:
            return f"{self.hf_dataset}/{hit[0]}"
        if split == "predict" and not self.files["predict"]:
            split = "test"
        if not self.files[split]:
            raise DataError(f"{type(self).__name__}: the {split} split is needed, but {split}_file was not given.")
        return self.files[split]

    def _labelled(self, split: str) -> bool:
        return not (split == "predict" and self.files["predict"])

    def rows(self, split: str) -> list:
        """Parsed and checked rows of ``train``/``val``/``test``/``predict``, read once."""
        if split not in self._rows:
            reuse_test = split == "predict" and not self.files["predict"]
            self._rows[split] = self.rows("test") if reuse_test else self._read(split)
        return self._rows[split]

    def _read(self, split: str) -> list:
        hit = self._hf_split(split)
        if hit is None:
            return self._read_file(self._source(split), self._labelled(split))
        return self._read_hf(*hit, self._labelled(split))

    def _train_classes(self, column: str, labels_of: Callable[[Any], Any]) -> list[str]:
        """The classes: the ``ClassLabel`` names of ``column`` in the HF train split (the
        dataset's own numbering), else the sorted distinct ``labels_of(row)`` of the train rows;
        [] without train data (then only predict works: the model knows its classes)."""
        self._classes = []
        if self.files["train"] or self._hf is not None:
            rows = self.rows("train")
            hit = self._hf_split("train")
            names = hf_datasets.classlabel_names(hit[1], column) if hit is not None else None
            self._classes = names if names is not None else sort_labels({x for row in rows for x in labels_of(row)})
        return self._classes

    def _check_train_data(self, stage_or_split: str | None) -> None:
        if self._classes == [] and stage_or_split != "predict":
            raise DataError(f"{type(self).__name__}: no training data given; set train_file or hf_dataset.")

    # -------------------------------------------------------------------------------------- encoding

    def encoded(self, split: str) -> CachedArrays:
        """The encoded split, once: from ``cache_dir`` when its fingerprint matches."""
        if split in self._encoded:
            return self._encoded[split]
        log = logging.getLogger(type(self).__module__)
        cache_file = None
        if self.cache_dir:
            key = fingerprint(self._cache_settings(split), self._source(split), self.tokenizer)
            cache_file = Path(self.cache_dir).expanduser() / f"{self.cache_name}-{split}-{key}.npz"
        self.cache_hits[split] = cache_file is not None and cache_file.is_file()
        if self.cache_hits[split]:
            arrays = self.arrays.load(cache_file)
            log.info("%s split: tokenised rows read from the cache %s", split, cache_file)
        else:
            arrays = self._encode(split)
            if cache_file is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                arrays.save(cache_file)
        if self.truncation is not None:
            cut = arrays.truncated_rows
            self.truncated[split] = len(cut)
            if cut:
                log.warning(
                    "%s split (%s): %d of %d rows are longer than max_length=%d tokens and were %s; first: %s.",
                    split, self._source(split), len(cut), len(arrays), self.max_length, self.truncation,
                    ", ".join(" ".join(w.split(" ")[-2:]) for w in cut[:5]),  # "row 7" / "line 7"
                )
        self._encoded[split] = arrays
        return arrays

    # ------------------------------------------------------------------------------- Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        """Read and encode the splits of ``stage`` (None: every split there is). Fit reads val
        when there is one (training without validation works); validate, test and predict
        need theirs."""
        self._check_train_data(stage)
        optional = {"fit": ("val",), None: ("val", "test")}.get(stage, ())
        for split in STAGE_SPLITS[stage] if stage else ("train", "val", "test"):
            if split not in optional or self.has_split(split):
                self._dataset(split)

    def _dataset(self, split: str) -> Dataset:
        if split not in self._datasets:
            self._datasets[split] = self._make_dataset(split)
        return self._datasets[split]

    def _loader(self, split: str) -> DataLoader:
        self._check_train_data(split)
        train = split == "train"
        dataset = self._dataset(split)
        lengths = self.encoded(split).lengths if train and self.group_by_length else None
        return split_loader(dataset, train, self.batch_size if train else self.eval_batch_size, self._collate(split),
                            self.num_workers, getattr(self, "trainer", None), lengths,
                            None if train else self._eval_sampler(dataset))
