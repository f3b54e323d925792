"""Add-k bigram baseline for causal language modelling: the perplexity of predicting each token
from the one before it alone, with counts from the train split.

A causal-LM recipe has learned to use context (beyond word frequencies and the previous
token) only when its ``val/perplexity`` is clearly below this figure. The data, tokenizer and
packing are the recipe's own: the script builds the recipe's ``CausalLMDataModule`` from its
config (training the tokenizer into ``cache_dir`` if needed, exactly as ``fit`` would) and
scores the same positions as the task: in every row, token t + 1 given token t, padding never,
the first token of a row never. Each is scored with

    p(w | v) = (count(v, w) + k) / (count(v) + k V)

over the V ids of the vocabulary, counts taken over the train rows the same way. ``k`` is
chosen on the evaluated split from a grid (which flatters the baseline; every k is printed),
and the perplexity is exp(mean -log p), the pooling of the task's ``val/perplexity``.

    python scripts/bigram_baseline.py                                  # configs/causal_lm/gpt2_small_pydoc.yaml
    python scripts/bigram_baseline.py --config FILE --split test
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

from lit_tasks.data.causal_lm import CausalLMDataModule, TokenRows  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "causal_lm" / "gpt2_small_pydoc.yaml"
K_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def pairs(rows: TokenRows) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) ids of every scored position: consecutive tokens inside a row."""
    ids = rows.ids.astype(np.int64)
    inside = np.ones(len(ids), dtype=bool)
    inside[rows.starts[:-1]] = False  # a row's first token has no previous token in its row
    nxt = np.flatnonzero(inside)
    return ids[nxt - 1], ids[nxt]


def bigram_perplexities(train: TokenRows, evaluated: TokenRows, vocab_size: int,
                        ks: tuple[float, ...] = K_GRID) -> dict[float, float]:
    """{k: perplexity on `evaluated`} of the add-k bigram model counted on `train`."""
    prev, nxt = pairs(train)
    keys, counts = np.unique(prev * vocab_size + nxt, return_counts=True)  # sparse bigram counts
    context = np.bincount(prev, minlength=vocab_size).astype(np.float64)
    eprev, enxt = pairs(evaluated)
    wanted = eprev * vocab_size + enxt
    at = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
    seen = np.where(keys[at] == wanted, counts[at], 0).astype(np.float64)
    return {k: math.exp(-np.mean(np.log((seen + k) / (context[eprev] + k * vocab_size)))) for k in ks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a causal-LM recipe")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--cache_dir", default=None, help="override data.cache_dir")
    args = parser.parse_args(argv)
    data: CausalLMDataModule = recipe_data.datamodule_from_config(args.config, "CausalLMDataModule",
                                                                  cache_dir=args.cache_dir)
    evaluated = data.encoded(args.split)
    result = bigram_perplexities(data.encoded("train"), evaluated, data.vocab_size)
    best = min(result, key=result.get)
    print(json.dumps({"config": str(args.config), "split": args.split, "vocab_size": data.vocab_size,
                      "tokens": int(len(pairs(evaluated)[0])), "best_k": best, "perplexity": round(result[best], 2),
                      "by_k": {str(k): round(v, 2) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
