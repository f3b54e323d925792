"""Do the recipes train on a GPU in each precision, compiled, and under FSDP? A few steps each.

Each recipe of configs/ runs in this process (benchmarks/recipe_steps.py) for `--warmup` +
`--steps` training steps on `--accelerator` (one device), with one validation batch as the
sanity check (`limit_val_batches 1`), once per variant:

- **bf16**: `--trainer.precision bf16-mixed`;  **fp16**: `16-mixed` (loss scaling);
- **bf16+compile**: bf16-mixed with `--run.compile true` (torch.compile of each zoo block);
- **fsdp**: one run of `--fsdp-recipe` (vit_fashion_mnist) with its backbone replaced by the
  large preset `--fsdp-backbone` (vit-large-patch16-224, 304M parameters, at
  `--fsdp-image-size` 224) under the FSDP block of docs/scaling.md ("FSDP for the large
  presets": bf16-mixed, one FSDP unit and activation checkpoint per zoo block), on one device.

Rows run variant by variant (every recipe in bf16, then fp16, fsdp, and the compiled runs last,
the slowest), so the cheap checks are done first. Each row: recipe, variant, status ("ok",
"failed: <the error's first line>", "skipped: <why>": a missing file, or the time budget),
steps_per_s (after the warm-up, loader waits included), peak_mem_gb (CUDA's peak allocated
memory), loss_finite (every training loss finite), first_step_s (compile included) and wall_s.
`--budget-s` bounds the whole script: a row still running at the budget is stopped (failed)
and the rows after it are reported as skipped. `--json PATH` writes the rows.

    python benchmarks/gpu_recipes.py --json gpu_recipes.json                  # on the GPU: < 8 min
    OMP_NUM_THREADS=1 python benchmarks/gpu_recipes.py --accelerator cpu --recipes vit_fashion_mnist \\
        --fsdp-backbone vit-test --fsdp-image-size 32 --budget-s 300           # CPU smoke test

On CPU, bf16-mixed and 16-mixed run (autocast on CPU; slow, and fp16 there has no loss
scaling); a variant that cannot run on the accelerator is a failed row with Lightning's reason.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_steps import ROOT, common_arguments, first_line, parse, recipes, run_recipe, table  # noqa: E402

VARIANTS = {  # name: CLI overrides
    "bf16": ["--trainer.precision", "bf16-mixed"],
    "fp16": ["--trainer.precision", "16-mixed"],
    "fsdp": [],  # the docs' block sets bf16-mixed
    "bf16+compile": ["--trainer.precision", "bf16-mixed", "--run.compile", "true"],
}
COLUMNS = {"recipe": "{}", "variant": "{}", "steps_per_s": "{:.2f}", "peak_mem_gb": "{:.2f}", "loss_finite": "{}",
           "first_step_s": "{:.2f}", "wall_s": "{:.1f}", "status": "{}"}


class OverBudget(Exception):
    """Raised in the running row when --budget-s is reached."""


def _stop(signum, frame):
    raise OverBudget("stopped at --budget-s")


def fsdp_config(folder: str) -> Path:
    """The trainer block of docs/scaling.md's "FSDP for the large presets", as a config file."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "FSDPStrategy" in b]
    path = Path(folder) / "fsdp.yaml"
    path.write_text(block)
    return path


def plan(args, folder: str) -> list[tuple[Path, str, list[str]]]:
    """(recipe, variant, overrides) of every row, in running order."""
    rows = []
    for variant in args.variants:
        if variant == "fsdp":
            (config,) = recipes([args.fsdp_recipe])
            rows.append((config, f"fsdp {args.fsdp_backbone}", [
                "--config", str(fsdp_config(folder)), "--model.backbone", args.fsdp_backbone,
                "--model.backbone_config", "null", "--data.image_size", str(args.fsdp_image_size)]))
        else:
            rows += [(config, variant, VARIANTS[variant]) for config in recipes(args.recipes)]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = common_arguments(__doc__.split("\n\n")[0], steps=2, warmup=1)
    parser.add_argument("--accelerator", default="cuda", help="trainer.accelerator of every run (cpu: a smoke test)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--budget-s", type=float, default=420, help="seconds for the whole script (default: 7 min)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--fsdp-recipe", default="vit_fashion_mnist", help="the recipe of the FSDP row")
    parser.add_argument("--fsdp-backbone", default="vit-large-patch16-224", help="its backbone preset")
    parser.add_argument("--fsdp-image-size", type=int, default=224, help="its data.image_size")
    args, overrides = parse(parser, argv)
    deadline = time.monotonic() + args.budget_s
    signal.signal(signal.SIGALRM, _stop)
    common = ["--trainer.accelerator", args.accelerator, "--trainer.devices", "1",  # after the FSDP block's 8
              "--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for config, variant, extra in plan(args, folder):
            left = deadline - time.monotonic()
            if left <= 1:
                row = {"recipe": config.stem, "status": f"skipped: over --budget-s {args.budget_s:g}"}
            else:
                signal.setitimer(signal.ITIMER_REAL, left)
                try:
                    row = run_recipe(config, args.steps, args.warmup, [*extra, *common, *overrides], validation=True)
                except OverBudget as e:  # raised outside the run itself (its teardown)
                    row = {"recipe": config.stem, "status": f"failed: {first_line(e)}"}
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            row["variant"] = variant
            rows.append(row)
            print(f"{row['recipe']} {variant}: {row['status']}", file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")  # after each row: a killed run leaves its rows
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
