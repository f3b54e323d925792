"""The learning tests' runs (tests/recipes/test_learning_*.py): each recipe in configs/, shortened, beats its baseline by a stated margin.

Every test runs the real config file through the CLI (in process, on two torch threads) with
overrides that make it short: fewer epochs or `limit_train_batches` (the recipe's warm-up and
cosine schedule are squeezed into the shorter run), no test after fit, data loaded in the main
process; some also shorten the inputs, take smaller batches or change the learning rate, and say
why. The margins come from measured runs of exactly these shortened recipes with several seeds
(figures in each test's comment, with the CPU time of one run on one thread), set below what
every seed reached and far above the baseline; planting `--model.lr 0` made every test fail.
Whether the full recipes still reach the figures their headers claim is checked by
scripts/check_recipes.py (for releases).
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import REPO

from lit_tasks.commands import main


def run(command: str, recipe: str, run_dir: Path, *overrides: str) -> dict:
    """The final metrics of `python -m lit_tasks COMMAND --config configs/RECIPE OVERRIDES`, run in process."""
    main([command, "--config", str(REPO / "configs" / recipe), "--run.dir", str(run_dir), "--run.loggers", "[csv]",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *overrides])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished"
    return results["metrics"]


def fit(recipe: str, run_dir: Path, *overrides: str) -> dict:
    return run("fit", recipe, run_dir, "--run.test_after_fit", "false", "--data.num_workers", "0", *overrides)
