"""Does `--run.compile true` pay on a recipe? Eager against compiled, shortened runs.

Each recipe of configs/ runs twice in this process (benchmarks/recipe_steps.py): eager, then
with `--run.compile true` (torch.compile of each zoo block), each for `--warmup` + `--steps`
training steps without validation. Before the compiled run dynamo's caches are reset and
inductor gets an empty cache folder, so the compile is paid in full, as on a machine's first
run (a later run reuses inductor's on-disk cache and compiles faster). The table gives:

- **first_eager_s / first_compiled_s**: the first training step (compile included);
- **eager_ms / compiled_ms**: median step after the warm-up steps (forward, backward,
  optimiser; the loader wait is not counted: compile does not change it);
- **speedup**: eager ms / compiled ms, the steady state (> 1: compiled is faster);
- **break_even**: the step count after which the compiled run has spent less time in steps
  than the eager one: warm-up + (compiled warm-up steps - eager warm-up steps) / (eager ms -
  compiled ms); "never" when the steady state is not faster;
- **graphs**: graphs dynamo compiled in the compiled run; more than the model's kinds of
  block means recompiles (e.g. a new sequence length per batch in a text recipe, until dynamo
  marks the length dynamic): raise `--warmup` to keep them out of the steady state.

    OMP_NUM_THREADS=1 python benchmarks/compile.py --recipes vit_fashion_mnist --steps 4 --warmup 2   # smoke
    python benchmarks/compile.py --threads 2                       # every recipe, 5 + 20 steps each way
    python benchmarks/compile.py -- --trainer.accelerator cuda     # overrides after -- go to every run

CPU by default (the recipes' accelerator is auto: a GPU when there is one). Needs a C++
compiler for inductor's CPU kernels.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_steps import common_arguments, parse, recipes, run_recipe, table  # noqa: E402

COLUMNS = {"recipe": "{}", "first_eager_s": "{:.2f}", "first_compiled_s": "{:.2f}", "eager_ms": "{:.1f}",
           "compiled_ms": "{:.1f}", "speedup": "{:.2f}", "break_even": "{}", "graphs": "{}", "status": "{}"}


def compiled_run(config: Path, steps: int, warmup: int, overrides: list[str]) -> dict:
    """The compiled run from cold caches, with the number of graphs dynamo compiled."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # read at every lookup: an empty cache
        try:
            row = run_recipe(config, steps, warmup, [*overrides, "--run.compile", "true"])
        finally:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
            if previous is not None:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    row["graphs"] = counters["stats"]["unique_graphs"]
    return row


def compare(eager: dict, compiled: dict, warmup: int) -> dict:
    """One table row from the two runs (module docstring)."""
    failed = next((row["status"] for row in (eager, compiled) if row["status"] != "ok"), None)
    row = {"recipe": eager["recipe"], "status": failed or "ok", "graphs": compiled.get("graphs")}
    if failed:
        return row
    e, c = eager["step_ms"] / 1000, compiled["step_ms"] / 1000
    extra = compiled["warmup_step_s"] - eager["warmup_step_s"]
    return row | {"first_eager_s": eager["first_step_s"], "first_compiled_s": compiled["first_step_s"],
                  "eager_ms": 1000 * e, "compiled_ms": 1000 * c, "speedup": e / c,
                  "break_even": warmup + max(0, round(extra / (e - c))) if e > c else "never"}


def main(argv: list[str] | None = None) -> None:
    parser = common_arguments(__doc__.split("\n\n")[0], steps=20, warmup=5)
    args, overrides = parse(parser, argv)
    rows = []
    for config in recipes(args.recipes):
        eager = run_recipe(config, args.steps, args.warmup, overrides)
        ok = eager["status"] == "ok"
        compiled = compiled_run(config, args.steps, args.warmup, overrides) if ok else {"status": "not run"}
        rows.append(compare(eager, compiled, args.warmup))
        print(f"{config.stem}: {rows[-1]['status']}, {eager['wall_s'] + compiled.get('wall_s', 0):.1f} s",
              file=sys.stderr, flush=True)
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
