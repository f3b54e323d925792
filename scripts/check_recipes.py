"""Run the recipes in configs/ in full and check each against the figure its header claims.

For releases, not CI (the recipes take minutes to an hour each on a CPU). Every recipe states
its claim in a machine-readable header line beside the prose, one or more conditions on
results.json's final ``metrics``, separated by ``;``:

    #   check:    test/acc >= 0.80; test/f1 >= 0.80
    #   check:    none (needs a downloaded checkpoint and a GPU)     # a recipe that cannot run here

A recipe runs as its header's command (``python -m lit_tasks fit --config FILE``) in a fresh
run folder ``ROOT/<recipe>``, one after another; then a table gives each condition with the
claimed and measured figure, pass/fail and the run's wall and CPU time. The exit status is 1
when any condition fails (a run that fails or lacks the metric fails its conditions), else 0.

    python scripts/check_recipes.py                                   # every recipe
    python scripts/check_recipes.py --only convnext_fashion_mnist vit_fashion_mnist
    python scripts/check_recipes.py --dry-run                         # parse the headers only
    python scripts/check_recipes.py --only bert_small_wiki -- --trainer.accelerator gpu   # overrides for every run

A recipe that fine-tunes another's checkpoint says so in a header line naming that recipe:

    #   init_from: seq2seq_pretraining/mbart_small_debian_denoising.yaml

It then runs with ``--model.init_from ROOT/<that recipe>/checkpoints/best.ckpt``, after that
recipe (run first when it is not among those checked, or did not run yet under ROOT).

The machine's load inflates wall times; CPU time (user + system of the run's processes) is
the steadier figure on a shared machine. Set OMP_NUM_THREADS to choose torch's threads.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
CHECK_LINE = re.compile(r"^#\s*check:\s*(.+?)\s*$")
UNCHECKED = re.compile(r"^none\s*\(\S.*\)$")  # "none (needs a GPU and a downloaded checkpoint)"
INIT_FROM_LINE = re.compile(r"^#\s*init_from:\s*(\S+)\s*$")
CONDITION = re.compile(r"^(?P<metric>[\w/.-]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")


@dataclass(frozen=True)
class Condition:
    metric: str  # a key of results.json's "metrics", e.g. "test/acc"
    op: str  # one of OPERATORS
    value: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def holds(self, measured: float | None) -> bool:
        return measured is not None and OPERATORS[self.op](measured, self.value)


def parse_checks(config: Path) -> list[Condition]:
    """The conditions of a recipe's ``# check:`` header lines; ValueError naming the file and
    line when there is none or one does not parse. ``# check: none (why)`` marks a recipe that
    cannot run here (a GPU, a downloaded checkpoint): no conditions, and the reason is required."""
    conditions = []
    for number, line in enumerate(config.read_text().splitlines(), start=1):
        if not line.startswith("#"):
            break  # the header ends at the first line of YAML
        match = CHECK_LINE.match(line)
        if not match:
            continue
        if match.group(1).startswith("none"):
            if not UNCHECKED.match(match.group(1)):
                raise ValueError(f"{config} line {number}: 'check: none' needs its reason in parentheses, e.g. "
                                 "'check: none (needs a downloaded checkpoint and a GPU)'")
            return []
        for part in match.group(1).split(";"):
            cond = CONDITION.match(part.strip())
            if cond is None:
                raise ValueError(f"{config} line {number}: cannot read the condition {part.strip()!r} "
                                 "(expected METRIC >=|<=|>|< NUMBER, e.g. test/acc >= 0.80)")
            conditions.append(Condition(cond["metric"], cond["op"], float(cond["value"])))
    if not conditions:
        raise ValueError(f"{config}: no '# check: METRIC >= NUMBER' line in the header")
    return conditions


def parse_init_from(config: Path) -> Path | None:
    """The recipe whose best.ckpt this one starts from (a ``# init_from: task/name.yaml`` header
    line), or None; ValueError when it names no recipe in configs/."""
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            return None
        match = INIT_FROM_LINE.match(line)
        if match:
            parent = CONFIGS / match.group(1)
            if not parent.is_file():
                raise ValueError(f"{config}: init_from names {match.group(1)}, which is not a recipe in {CONFIGS}")
            return parent
    return None


def recipe_name(config: Path) -> str:
    return config.stem


def find_recipes(only: list[str] | None) -> list[Path]:
    """Every configs/**/*.yaml, or those whose name (file stem or task/stem) is in ``only``."""
    configs = sorted(CONFIGS.rglob("*.yaml"))
    if not only:
        return configs
    known = {c.stem: c for c in configs} | {f"{c.parent.name}/{c.stem}": c for c in configs}
    unknown = [name for name in only if name.removesuffix(".yaml") not in known]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; known: {sorted(c.stem for c in configs)}")
    return [known[name.removesuffix(".yaml")] for name in only]


@dataclass
class Outcome:
    """What one run left: its results.json metrics (None when it wrote none), wall and CPU seconds."""
    metrics: dict | None
    wall_s: float
    cpu_s: float
    returncode: int


def run_recipe(config: Path, run_dir: Path, overrides: list[str]) -> Outcome:
    """``python -m lit_tasks fit --config CONFIG`` in ``run_dir``, its output in run_dir/output.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lit_tasks", "fit", "--config", str(config), "--run.dir", str(run_dir), *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(run_dir / "output.log", "w") as log:
        code = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = run_dir / "results.json"
    metrics = json.loads(results.read_text()).get("metrics") if results.is_file() else None
    return Outcome(metrics, wall, cpu, code)


def rows_of(name: str, conditions: list[Condition], outcome: Outcome) -> list[dict]:
    """One table row per condition: measured figure and pass/fail."""
    rows = []
    for cond in conditions:
        measured = (outcome.metrics or {}).get(cond.metric)
        measured = float(measured) if isinstance(measured, (int, float)) else None
        ok = outcome.returncode == 0 and cond.holds(measured)
        rows.append({"recipe": name, "metric": cond.metric, "claimed": f"{cond.op} {cond.value:g}",
                     "measured": "-" if measured is None else f"{measured:.4g}",
                     "result": "pass" if ok else ("FAIL" if outcome.returncode == 0 else f"FAIL (exit {outcome.returncode})"),
                     "wall": format_seconds(outcome.wall_s), "cpu": format_seconds(outcome.cpu_s)})
    return rows


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def table(rows: list[dict], columns: tuple[str, ...]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- are passed to every run (e.g. -- --trainer.accelerator gpu).")
    parser.add_argument("--only", nargs="+", metavar="RECIPE", help="recipe names (file stem, e.g. vit_fashion_mnist)")
    parser.add_argument("--root", type=Path, default=None,
                        help="where the run folders go (default: runs/check_recipes/<date_time>)")
    parser.add_argument("--dry-run", action="store_true", help="parse the headers and list the checks; run nothing")
    args = parser.parse_args(argv)

    try:
        checks = {config: parse_checks(config) for config in find_recipes(args.only)}
        for config in checks:
            parse_init_from(config)
    except ValueError as e:
        print(f"check_recipes: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        rows = [{"recipe": recipe_name(c), "config": str(c.relative_to(REPO_ROOT)), "check": "; ".join(map(str, conds))}
                for c, conds in checks.items()]
        print(table(rows, ("recipe", "config", "check")))
        return 0

    root = (args.root or REPO_ROOT / "runs" / "check_recipes" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    print(f"run folders under {root}; torch threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
          flush=True)
    rows = []
    for config, conditions in checks.items():
        name = recipe_name(config)
        if not conditions:
            print(f"{name}: not run (its header says check: none)", flush=True)
            continue
        extra = []
        parent = parse_init_from(config)
        if parent is not None:
            best = root / recipe_name(parent) / "checkpoints" / "best.ckpt"
            if not best.is_file():
                print(f"{name} starts from {recipe_name(parent)}: running that first", flush=True)
                run_recipe(parent, root / recipe_name(parent), overrides)
            extra = ["--model.init_from", str(best)]
        print(f"{name}: python -m lit_tasks fit --config {config.relative_to(REPO_ROOT)} {' '.join(extra)}...",
              flush=True)
        outcome = run_recipe(config, root / name, [*extra, *overrides])
        new = rows_of(name, conditions, outcome)
        for row in new:
            print(f"  {row['metric']} {row['claimed']}: measured {row['measured']} -> {row['result']} "
                  f"({row['wall']} wall, {row['cpu']} CPU)", flush=True)
        rows += new
    print()
    print(table(rows, ("recipe", "metric", "claimed", "measured", "result", "wall", "cpu")))
    failed = sum(not r["result"] == "pass" for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} checks passed" + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
