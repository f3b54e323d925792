"""The DataModule a recipe's config describes, for the baseline scripts (unigram, bigram)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml
from lightning import LightningDataModule

REPO_ROOT = Path(__file__).resolve().parent.parent
PATH_KEYS = ("train_file", "val_file", "test_file", "predict_file", "hf_dataset", "tokenizer", "cache_dir")


def datamodule_from_config(config: Path, expected: str, **overrides) -> LightningDataModule:
    """The `data` of recipe `config` (class `expected`, e.g. "MaskedLMDataModule"), built with
    `overrides` (None values ignored) and num_workers 0; relative paths are read from the
    repository root."""
    data = yaml.safe_load(Path(config).read_text())["data"]
    module, _, name = data["class_path"].rpartition(".")
    if name != expected:
        sys.exit(f"{config}: data.class_path is {data['class_path']}, not a {expected}")
    init_args = {**data["init_args"], **{k: v for k, v in overrides.items() if v is not None}}
    for key in PATH_KEYS:
        if init_args.get(key) and not Path(init_args[key]).expanduser().is_absolute():
            init_args[key] = str(REPO_ROOT / init_args[key])
    return getattr(importlib.import_module(module), name)(**{**init_args, "num_workers": 0})
