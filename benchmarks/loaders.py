"""Does any recipe wait for its data? Per recipe: loader wait against step time.

Each recipe of configs/ runs in this process as `python -m lit_tasks fit` builds it, with its
own DataLoader settings (num_workers, batch size, augmentation), for `--warmup` + `--steps`
training steps and no validation (benchmarks/recipe_steps.py). The table gives, per recipe:

- **workers**: the training loader's num_workers; **start**: how its workers start;
- **wait_ms**: median time from the end of one step to the start of the next (the loader
  producing the batch, the copy to the device, other callbacks), after the warm-up steps;
- **step_ms**: median forward + backward + optimiser step;
- **wait_ratio**: the ratio of the two. Target: < 0.2 on every recipe, i.e. the model, not
  the data, sets the pace (a recipe above it wants more workers or a cheaper transform);
- **first_wait_s**: the run's first batch, i.e. starting the workers and filling their
  first batches: paid once per run (workers are persistent);
- **samples_per_s** over the measured steps, waits included.

On a machine with few cores the workers take CPU from the step itself, which a low ratio does
not show: compare samples_per_s with `-- --data.num_workers 0`.

`--context forkserver` starts the workers from a fork server, as one rank of a DDP run does
(lit_tasks.data.samplers.worker_context), here in a single process: the benchmark makes
`worker_context` see two ranks. The server is stopped after each recipe, so every recipe pays
its start (preloading torch and the dataset's modules) as a fresh rank does. `--context both`
runs each recipe twice, fork then forkserver (once when it has no workers: nothing starts).

    OMP_NUM_THREADS=1 python benchmarks/loaders.py --recipes vit_fashion_mnist --steps 4 --warmup 1   # smoke, ~15 s
    python benchmarks/loaders.py                                   # every recipe, 3 + 20 steps
    python benchmarks/loaders.py --context both --recipes vit_fashion_mnist wav2vec2_spoken_digits
    python benchmarks/loaders.py -- --trainer.accelerator cuda     # overrides after -- go to every run
"""

from __future__ import annotations

import contextlib
import multiprocessing.forkserver
import sys
from pathlib import Path

# Nothing heavy at module level: a fork server preloads `__main__`, which here is this file, and
# `python -m lit_tasks`'s is light; importing Lightning here would add its import to every
# forkserver figure. recipe_steps and lit_tasks are imported in the functions.
sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMNS = {"recipe": "{}", "workers": "{}", "start": "{}", "wait_ms": "{:.1f}", "step_ms": "{:.1f}",
           "wait_ratio": "{:.3f}", "first_wait_s": "{:.2f}", "samples_per_s": "{:.1f}", "status": "{}"}
TARGET = 0.2


class _TwoRanks:
    """What worker_context reads from a trainer that is one of two ranks."""
    distributed_sampler_kwargs = {"num_replicas": 2, "rank": 0}


@contextlib.contextmanager
def forkserver_workers():
    """`split_loader` starts workers from a fork server (as under DDP); the server ends after."""
    from lit_tasks.data import samplers

    original = samplers.worker_context
    samplers.worker_context = lambda dataset, collate_fn, num_workers, trainer=None: \
        original(dataset, collate_fn, num_workers, _TwoRanks())
    try:
        yield
    finally:
        samplers.worker_context = original
        stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)  # private API
        if stop is not None:  # the next recipe starts a fresh server
            stop()


def main(argv: list[str] | None = None) -> None:
    from recipe_steps import common_arguments, parse, recipes, run_recipe, table

    parser = common_arguments(__doc__.split("\n\n")[0], steps=20, warmup=3)
    parser.add_argument("--context", choices=("fork", "forkserver", "both"), default="fork",
                        help="how workers start: fork (one process), forkserver (as a DDP rank), both")
    args, overrides = parse(parser, argv)
    contexts = ("fork", "forkserver") if args.context == "both" else (args.context,)
    rows = []
    for config in recipes(args.recipes):
        for context in contexts:
            if context == "forkserver" and len(contexts) == 2 and rows[-1].get("workers") == 0:
                continue  # no workers to start: the fork row says it all
            with forkserver_workers() if context == "forkserver" else contextlib.nullcontext():
                row = run_recipe(config, args.steps, args.warmup, overrides)
            rows.append(row)
            print(f"{row['recipe']} ({context}): {row['status']}, {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    print(table(rows, COLUMNS))
    over = [row["recipe"] for row in rows if row.get("wait_ratio", 0) >= TARGET]
    print(f"\nwait/step >= {TARGET}: {', '.join(over) if over else 'none'}")


if __name__ == "__main__":
    main()
