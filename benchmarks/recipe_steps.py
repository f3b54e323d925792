"""The shared runner of the recipe benchmarks (loaders.py, compile.py, gpu_recipes.py).

`run_recipe(config, steps, warmup, overrides)` runs one recipe of configs/ in this process, as
`python -m lit_tasks fit --config FILE` builds it (`LitTasksCLI(run=False)`, then
`trainer.fit`), for `warmup + steps` training steps on one device, without validation unless
asked, in a temporary run root that is removed afterwards. :class:`StepTimes`, a callback,
times every training step in two parts:

- **wait**: from the end of the previous step (or the start of the epoch, for an epoch's first
  batch) to `on_train_batch_start`: the DataLoader producing the batch, Lightning moving it to
  the device, and whatever other callbacks do between steps (logging, checkpoints);
- **step**: `on_train_batch_start` -> `on_train_batch_end`: forward, backward, optimiser.

On CUDA both marks wait for the device (`torch.cuda.synchronize`), so queued kernels are
counted in the step that launched them. The first `warmup` steps (worker start-up, the first
`torch.compile`, cuDNN autotuning) are kept apart; medians, ratio and samples/s are over the
steps after them. The returned row (plain dict) holds:

    recipe, status ("ok", "skipped: <why>", "failed: <first line of the error>"),
    workers, start (how workers start: fork / forkserver / spawn; "-" without workers),
    first_wait_s (the run's first batch: worker start-up), first_step_s (compile included),
    warmup_step_s (sum of the warm-up steps), wait_ms, step_ms (medians after warm-up),
    wait_ratio (wait_ms / step_ms), samples_per_s and steps_per_s (after warm-up, waits included),
    loss_finite, peak_mem_gb (CUDA only), wall_s (the whole call: build, data, steps, teardown).

A recipe that needs a file that is not here is skipped, never run: a `model.init_from` or data
path in its YAML that does not exist, or (a `# init_from: task/recipe.yaml` header line, as
scripts/check_recipes.py reads it) no `runs/<recipe>/*/checkpoints/best.ckpt` of that recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lit_tasks.callbacks.results import batch_size  # noqa: E402
from lit_tasks.run_dir import ENV_VAR as RUN_DIR_VAR  # noqa: E402
from scripts.check_recipes import find_recipes, parse_init_from  # noqa: E402  (one reading of the headers)

BASE = ["--run.progress", "none", "--run.loggers", "[csv]", "--run.test_after_fit", "false",
        "--trainer.enable_model_summary", "false", "--trainer.devices", "1"]  # one process, quiet
NO_VALIDATION = ["--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
DATA_PATH_KEYS = ("root", "train_file", "val_file", "test_file")


class StepTimes(Callback):
    """Per training step: seconds waiting for the batch, seconds of the step, samples, loss."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.steps: list[float] = []
        self.samples: list[int] = []
        self.losses: list[float] = []
        self.workers: int | None = None
        self.start_method = "-"
        self._mark = 0.0

    @staticmethod
    def _now(trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        self.workers = getattr(loader, "num_workers", None)
        if self.workers:
            context = getattr(loader, "multiprocessing_context", None)
            self.start_method = context.get_start_method() if context else multiprocessing.get_start_method()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = self._now(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = self._now(trainer)
        self.waits.append(now - self._mark)
        self.samples.append(batch_size(batch))
        self._mark = now

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = self._now(trainer)
        self.steps.append(now - self._mark)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach().float()))
        self._mark = time.perf_counter()  # the loss read above is not waiting for data

    def summary(self, warmup: int) -> dict[str, Any]:
        """The row's figures (module docstring); empty when no step finished."""
        n = len(self.steps)
        if n == 0:
            return {}
        kept = slice(warmup, n) if n > warmup else slice(0, n)  # too few steps: all of them
        waits, steps, samples = self.waits[kept], self.steps[kept], self.samples[kept]
        wait, step = statistics.median(waits), statistics.median(steps)
        return {"steps": n, "workers": self.workers, "start": self.start_method,
                "first_wait_s": self.waits[0], "first_step_s": self.steps[0], "warmup_step_s": sum(self.steps[:warmup]),
                "wait_ms": 1000 * wait, "step_ms": 1000 * step, "wait_ratio": wait / step,
                "samples_per_s": sum(samples) / (sum(waits) + sum(steps)),
                "steps_per_s": len(steps) / (sum(waits) + sum(steps)),
                "loss_finite": all(math.isfinite(x) for x in self.losses) if self.losses else None}


def recipes(names: list[str] | None) -> list[Path]:
    """The recipe files: every configs/*/*.yaml, or those named by stem (e.g. vit_fashion_mnist)."""
    try:
        return find_recipes(names)
    except ValueError as e:
        raise SystemExit(f"--recipes: {e}") from None


def missing_input(config: Path, overrides: list[str]) -> tuple[str | None, list[str]]:
    """(why the recipe cannot run here or None, overrides it needs): see the module docstring."""
    if any(arg.startswith(("--model.init_from", "--model.init_args.init_from")) for arg in overrides):
        return None, []  # the caller chose the checkpoint
    parent = parse_init_from(config)
    if parent is not None:
        found = sorted(ROOT.glob(f"runs/{parent.stem}/*/checkpoints/best.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            return (f"needs runs/{parent.stem}/*/checkpoints/best.ckpt (run {parent.relative_to(ROOT)} first, "
                    "or pass --model.init_from PATH after --)"), []
        return None, ["--model.init_from", str(found[-1])]
    recipe = yaml.safe_load(config.read_text())
    paths = [("model.init_from", (recipe.get("model") or {}).get("init_args", {}).get("init_from"))]
    paths += [(f"data.{key}", (recipe.get("data") or {}).get("init_args", {}).get(key)) for key in DATA_PATH_KEYS]
    for key, path in paths:
        if isinstance(path, str) and not (ROOT / path).exists():
            return f"{key} {path} does not exist", []
    return None, []


@contextlib.contextmanager
def quiet():
    """Lightning's banners and per-run warnings off (our errors still propagate)."""
    names = ("lightning.pytorch", "lightning.fabric", "lit_tasks")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning\.")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}"


def run_recipe(config: Path, steps: int, warmup: int, overrides: Sequence[str] = (),
               validation: bool = False) -> dict[str, Any]:
    """One recipe for `warmup + steps` training steps; the row described in the module docstring.

    `overrides`: extra CLI arguments (any config key, e.g. ["--run.compile", "true"]).
    `validation`: keep the recipe's validation (else none: no val loader, no sanity check).
    """
    from lit_tasks.cli import LitTasksCLI

    row: dict[str, Any] = {"recipe": config.stem, "status": "ok"}
    overrides = list(overrides)
    reason, needed = missing_input(config, overrides)
    if reason:
        return row | {"status": f"skipped: {reason}", "wall_s": 0.0}
    timer = StepTimes()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    os.environ.pop(RUN_DIR_VAR, None)  # set by the previous run of this process
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, contextlib.chdir(ROOT), quiet():
        args = ["--config", str(config), *BASE, *([] if validation else NO_VALIDATION),
                "--trainer.max_steps", str(warmup + steps), "--trainer.max_epochs", "-1",
                "--run.root", root, *needed, *overrides]
        cli = None
        try:
            cli = LitTasksCLI(args=args, run=False)
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        except FileNotFoundError as e:
            row["status"] = f"skipped: {e.filename or first_line(e)} not found"
        except (Exception, SystemExit) as e:  # SystemExit: the CLI's parser rejected an argument (message on stderr)
            row["status"] = f"failed: {first_line(e)}"
        finally:
            del cli  # persistent DataLoader workers end with their loader
            gc.collect()
    row["wall_s"] = time.perf_counter() - start
    row.update(timer.summary(warmup))
    if torch.cuda.is_available() and "steps" in row:
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if row["status"] == "ok" and len(timer.steps) < warmup + steps:
        row["status"] = f"failed: stopped after {len(timer.steps)} of {warmup + steps} steps"
    return row


def common_arguments(description: str, steps: int, warmup: int) -> argparse.ArgumentParser:
    """The arguments every recipe benchmark takes; CLI overrides for every run go after `--`."""
    parser = argparse.ArgumentParser(description=description,
                                     epilog="Arguments after -- go to every run (e.g. -- --data.batch_size 32).")
    parser.add_argument("--recipes", nargs="+", metavar="NAME", help="config stems (default: every recipe in configs/)")
    parser.add_argument("--steps", type=int, default=steps, help="training steps measured, after the warm-up")
    parser.add_argument("--warmup", type=int, default=warmup, help="first steps kept apart (start-up, compile)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(options, the CLI overrides after `--`); sets torch's threads."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, argv[cut + 1:]


def table(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    """Rows as aligned text; `columns` maps a row key to its format ("{:.1f}"); missing: "-"."""
    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "-" if value is None else columns[key].format(value)

    cells = [list(columns)] + [[cell(row, key) for key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)
