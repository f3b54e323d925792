"""Learning tests (masked and causal language models): shortened recipes beat their baselines (tests/recipe_runs.py)."""

from __future__ import annotations

import pytest
from helpers import REPO, load_script
from recipe_runs import fit

pytestmark = pytest.mark.slow


# -- masked LM: a unigram model of the same pieces is the baseline that uses no context ---------------


def test_bert_small_wiki_learns_beyond_piece_frequencies(tmp_path):
    # 3 of the recipe's 16 epochs (1254 steps); the data cache (tokenizer, pieces) in tmp_path.
    # Measured val/perplexity 824, 797, 811 (seeds 42, 1, 2: 0.69-0.72 of the unigram's 1151),
    # 9880 with --model.lr 0 (the untrained model); 71 s of CPU. The full recipe reaches 226.
    cache = str(tmp_path / "cache")
    metrics = fit("masked_lm/bert_small_wiki.yaml", tmp_path / "run", "--trainer.max_epochs", "3",
                  "--data.cache_dir", cache)
    unigram = load_script("scripts/unigram_baseline.py")
    data = unigram.datamodule_from_config(REPO / "configs/masked_lm/bert_small_wiki.yaml", cache_dir=cache)
    baseline = unigram.unigram_perplexity(data)["perplexity"]
    assert 1000 < baseline < 1300  # 1151
    assert metrics["val/perplexity"] <= 0.85 * baseline, (metrics, baseline)


# -- causal LM: an add-k bigram model of the same tokens uses the previous token only ----------

def test_gpt2_small_pydoc_beats_the_bigram(tmp_path):
    # 7 of the recipe's 20 epochs, in batches of 4 rather than 16 at half the learning rate (1008
    # steps instead of 252: with the recipe's batch and rate a 6-epoch run stays above the bigram,
    # at 464; batches of 4 at the recipe's rate 1e-3 gave 176.5, 135.5, 198.3 over seeds 42, 1, 2).
    # Measured val/perplexity 139.3, 138.0, 133.3 (seeds 42, 2, 1) against the bigram's 194.4;
    # 2098 untrained; 200 s on two threads (quiet VM). The full recipe reaches 135.5.
    cache = str(tmp_path / "cache")
    metrics = fit("causal_lm/gpt2_small_pydoc.yaml", tmp_path / "run", "--trainer.max_epochs", "7",
                  "--data.batch_size", "4", "--model.lr", "5e-4", "--data.cache_dir", cache)
    bigram = load_script("scripts/bigram_baseline.py")
    data = bigram.recipe_data.datamodule_from_config(REPO / "configs/causal_lm/gpt2_small_pydoc.yaml",
                                                     "CausalLMDataModule", cache_dir=cache)
    baseline = min(bigram.bigram_perplexities(data.encoded("train"), data.encoded("val"), data.vocab_size).values())
    assert 185 < baseline < 205  # 194.4
    assert metrics["val/perplexity"] <= 0.85 * baseline, (metrics, baseline)
