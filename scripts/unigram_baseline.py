"""Unigram baseline for masked-LM pretraining: the perplexity a model reaches by predicting
every masked piece from word-piece frequencies alone, ignoring its context.

A masked-LM recipe has learned something beyond frequencies only when its ``val/perplexity``
is well below this figure. The data, tokenizer, packing and masks are the recipe's own: the
script builds the recipe's ``MaskedLMDataModule`` from its config (training the tokenizer into
``cache_dir`` if needed, exactly as ``fit`` would) and reads the validation batches, whose
masks never change. Each masked position is scored with

    p(piece) = (count in the train split + 1) / (train pieces + V)

over the V non-special pieces of the vocabulary (add-one smoothing; the special tokens are
never predicted), and the perplexity is exp(mean -log p) over all masked positions, the same
pooling as the task's ``val/perplexity``.

    python scripts/unigram_baseline.py                                  # configs/masked_lm/bert_small_wiki.yaml
    python scripts/unigram_baseline.py --config FILE --split val --max_length 64
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import recipe_data  # noqa: E402

from lit_tasks.data.masked_lm import IGNORE, MaskedLMDataModule, MaskingCollate  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "masked_lm" / "bert_small_wiki.yaml"


def unigram_log_probs(train_ids: np.ndarray, is_special: np.ndarray) -> np.ndarray:
    """(V,) log p of each vocabulary id, add-one smoothed over the non-special ids (-inf for special ones)."""
    counts = np.bincount(train_ids, minlength=len(is_special)).astype(np.float64)
    counts[is_special] = 0.0
    counts[~is_special] += 1.0
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def unigram_perplexity(data: MaskedLMDataModule, split: str = "val") -> dict[str, float]:
    """{"perplexity", "masked": number of masked positions, "train_pieces"} of the unigram model on ``split``."""
    collate = MaskingCollate(data.tokenizer, data.mlm_probability, data.whole_word_mask)
    log_p = unigram_log_probs(data.corpus("train").ids.astype(np.int64), collate.is_special)
    data.setup("validate" if split == "val" else "test")
    loader = data.val_dataloader() if split == "val" else data.test_dataloader()
    total, count = 0.0, 0
    for batch in loader:
        targets = batch["labels"][batch["labels"] != IGNORE].numpy()
        total -= float(log_p[targets].sum())
        count += len(targets)
    return {"perplexity": math.exp(total / count), "masked": count, "train_pieces": len(data.corpus("train").ids)}


def datamodule_from_config(config: Path, **overrides) -> MaskedLMDataModule:
    """The config's MaskedLMDataModule (relative paths are read from the repository root)."""
    return recipe_data.datamodule_from_config(config, "MaskedLMDataModule", **overrides)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a masked-LM recipe")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--max_length", type=int, default=None, help="override data.max_length")
    args = parser.parse_args(argv)
    data = datamodule_from_config(args.config, max_length=args.max_length)
    result = unigram_perplexity(data, args.split)
    print(json.dumps({"config": str(args.config), "split": args.split, "vocab_size": data.vocab_size,
                      "max_length": data.max_length, **{k: round(v, 2) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
