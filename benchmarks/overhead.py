"""Framework overhead: `python -m lit_tasks fit` against a plain PyTorch loop, same model and data.

For each recipe (ViT, BERT/MiniLM, Wav2Vec2 classification), in one process:

- **ours**: the recipe run by `lit_tasks.cli.run` exactly as `python -m lit_tasks fit --config
  FILE` runs it (its loggers, checkpoints, progress output, DataLoader workers, metrics), shortened
  to `--epochs` epochs of `--batches` training batches and 2 validation batches; the figure is
  results.json's `throughput.train_samples_per_s` (training steps and the batch waits between
  them; validation is not counted).
- **plain**: what a user would write by hand: the same network (`task.net`, built from the same
  config), over the very batches ours trains on (each epoch's first `--batches` batches of the
  same DataModule, augmentation included), made before the clock starts and kept in memory;
  each step the task's forward, cross-entropy with the recipe's label smoothing, backward and an
  AdamW step. Its samples/s is timed the same way.

Repetitions alternate (ours, plain, ours, plain, ...); the table gives every run's samples/s,
the ratio of the medians ours / plain (target >= 0.95: our fit within 5% of the plain loop) and
the ratio of the best runs (a shared VM only ever slows a run down, so the best run of each side
is its least disturbed one).

    python benchmarks/overhead.py                          # vit, bert, wav2vec2; ~10 min on 2 cores
    python benchmarks/overhead.py --recipes vit --reps 3 --epochs 2
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lit_tasks.run_dir import ENV_VAR as RUN_DIR_VAR  # noqa: E402

RECIPES = {  # name: (config, training batches per epoch by default)
    "vit": ("configs/image_classification/vit_fashion_mnist.yaml", 40),
    "bert": ("configs/text_classification/minilm_debian_sections.yaml", 30),
    "wav2vec2": ("configs/audio_classification/wav2vec2_spoken_digits.yaml", 15),
}


def shortened(config: str, root: str, epochs: int, batches: int) -> list[str]:
    """The recipe's command line, shortened (what both sides train on)."""
    return ["--config", str(ROOT / config), "--trainer.max_epochs", str(epochs),
            "--trainer.limit_train_batches", str(batches), "--trainer.limit_val_batches", "2",
            "--run.root", root, "--run.test_after_fit", "false"]


def ours(config: str, epochs: int, batches: int, extra: list[str] = ()) -> float:
    """Training samples/s of `lit_tasks fit` on the shortened recipe (results.json)."""
    from lit_tasks.cli import run

    os.environ.pop(RUN_DIR_VAR, None)  # set by the previous CLI of this process
    with tempfile.TemporaryDirectory() as root:
        run(["fit", *shortened(config, root, epochs, batches), "--run.dir", f"{root}/run", *extra])
        return json.loads(Path(root, "run", "results.json").read_text())["throughput"]["train_samples_per_s"]


def plain_setup(config: str, epochs: int, batches: int):
    """The recipe's task (network) and, per epoch, the first `batches` training batches."""
    from lit_tasks.cli import LitTasksCLI

    os.environ.pop(RUN_DIR_VAR, None)
    with tempfile.TemporaryDirectory() as root:
        cli = LitTasksCLI(args=shortened(config, root, epochs, batches), run=False)
    task, data = cli.model, cli.datamodule
    data.setup("fit")
    loader, kept = data.train_dataloader(), []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        kept.append([{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
                     for batch, _ in zip(loader, range(batches))])
    return task, kept


def plain(task, epochs: list[list[dict[str, torch.Tensor]]]) -> float:
    """Training samples/s of a hand-written loop over in-memory batches."""
    inputs = [name for name in inspect.signature(task.forward).parameters]
    net = task.net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=task.lr, weight_decay=task.weight_decay)
    smoothing = getattr(task, "label_smoothing", 0.0)
    samples, start = 0, time.perf_counter()
    for batches in epochs:
        for batch in batches:
            loss = F.cross_entropy(task(*[batch.get(name) for name in inputs]), batch["labels"],
                                   label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += batch["labels"].shape[0]
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run")
    parser.add_argument("--batches", type=int, default=None, help="training batches per epoch (default: per recipe)")
    parser.add_argument("--reps", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("extra", nargs="*", help="after --: more options of our runs, e.g. -- --data.num_workers 0")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_SILENT", "true")
    rows = []
    for name in args.recipes:
        config, default_batches = RECIPES[name]
        batches = args.batches or default_batches
        task, kept = plain_setup(config, args.epochs, batches)
        figures: dict[str, list[float]] = {"ours": [], "plain": []}
        for _ in range(args.reps):
            figures["ours"].append(ours(config, args.epochs, batches, args.extra))
            figures["plain"].append(plain(task, kept))
        median = {side: statistics.median(v) for side, v in figures.items()}
        rows.append((name, batches, figures, median["ours"] / median["plain"],
                     max(figures["ours"]) / max(figures["plain"])))
    print(f"\n{args.epochs} epochs x batches per epoch, {args.reps} alternating runs per side, "
          f"{torch.get_num_threads()} torch threads; samples/s")
    print("| recipe | batches | ours (lit_tasks fit) | plain loop | ours / plain, medians | best runs |")
    print("|---|---|---|---|---|---|")
    for name, batches, figures, ratio, best in rows:
        print(f"| {name} | {batches} | {' / '.join(f'{v:.1f}' for v in figures['ours'])} | "
              f"{' / '.join(f'{v:.1f}' for v in figures['plain'])} | {ratio:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
