"""`python -m lit_tasks sweep FILE --count N`: a wandb sweep file, run locally and offline.

The files in `sweeps/` are ordinary wandb sweep configs, so online they need nothing from us:

    wandb sweep sweeps/convnext_fashion_mnist.yaml        # prints ENTITY/PROJECT/SWEEP_ID
    wandb agent ENTITY/PROJECT/SWEEP_ID                   # on each machine

Their `command` runs our CLI with wandb's `${args}` (`--model.lr=0.002 ...`). Offline, this
module plays the agent for the `grid` and `random` methods:

    python -m lit_tasks sweep sweeps/FILE.yaml --count 8 [--root runs/sweeps] [--seed 0] [--dry-run]
                                                         [-- --trainer.max_epochs 3 ...]

1. sample the trials: grid walks the Cartesian product of the parameters in the order they are
   written (the last one varies fastest; `--count` cuts it short); random draws each parameter
   from its distribution with `random.Random(seed)`, so a seed gives the same trials again;
2. check every trial against the real signatures before running any: the sweep's command with
   the trial's arguments goes through the `fit` parser of `LitTasksCLI` (parse only, nothing is
   built), so an unknown key, an unknown distribution or a value of the wrong type stops the
   sweep with an error naming the sweep file and the parameter;
3. run each trial as `python -m lit_tasks fit ... --run.dir ROOT/NAME/trial-K` with
   WANDB_MODE=offline (its output in trial-K/output.log); a failed trial is recorded as failed
   and the sweep goes on;
4. after each trial, rewrite ROOT/NAME/leaderboard.csv and leaderboard.md from the trials'
   results.json: best trial first by the sweep's metric and goal, failed trials last.

The metric is the trial's `metrics[name]` in results.json, the last logged value, which is what
the wandb summary holds and the online agent optimises. `bayes` needs a model of past trials
that no installed library gives us here; it runs online only (wandb agent). Arguments after
`--` are added to every trial, after the sweep's own (e.g. `--run.loggers [csv]`).

Distributed training: a trial is one subprocess whose arguments are fixed before it starts;
Lightning launches the other ranks from it with the same command line, so one process (this
runner) samples and every rank of a trial uses the same values by construction.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_tasks.errors import SweepError

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
TOP_LEVEL_KEYS = {"program", "entity", "project", "description", "name", "method", "metric", "parameters",
                  "early_terminate", "command", "run_cap", "controller", "job", "image_uri"}
SPEC_KEYS = {"distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma", "a", "b"}
# wandb's distributions and the keys each one needs (https://docs.wandb.ai/guides/sweeps/sweep-config-keys)
DISTRIBUTIONS = {
    "constant": ("value",), "categorical": ("values",),
    "int_uniform": ("min", "max"), "uniform": ("min", "max"), "q_uniform": ("min", "max"),
    "log_uniform": ("min", "max"), "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max"), "q_log_uniform_values": ("min", "max"),
    "inv_log_uniform": ("min", "max"), "inv_log_uniform_values": ("min", "max"),
    "normal": (), "q_normal": (), "log_normal": (), "q_log_normal": (), "beta": (), "q_beta": (),
}
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
ARG_MACROS = ("${args}", "${args_no_equals}")
DROPPED_ENV = ("LIT_TASKS_RUN_DIR", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "PL_GLOBAL_SEED")


@dataclass
class Parameter:
    key: str
    distribution: str
    spec: dict[str, Any]


@dataclass
class Sweep:
    path: Path
    name: str
    method: str
    metric: str
    goal: str
    target: float | None
    parameters: list[Parameter]
    cli_args: list[str]  # after `python -m lit_tasks`, with the ${args} macro still in place
    run_cap: int | None = None
    ignored: list[str] = field(default_factory=list)


# -- reading a sweep file ---------------------------------------------------------------------
def load(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a sweep file is a mapping with method, metric, parameters and command")
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown top-level key {unknown[0]!r} "
                         f"(a wandb sweep has {', '.join(sorted(TOP_LEVEL_KEYS))})")
    method = raw.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method must be one of {', '.join(METHODS)}, not {method!r}")
    metric = raw.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise SweepError(f"{path}: metric needs a name, e.g. metric: {{name: val/acc, goal: maximize}}")
    goal = metric.get("goal", "minimize")  # wandb's default
    if goal not in GOALS:
        raise SweepError(f"{path}: metric.goal must be maximize or minimize, not {goal!r}")
    if metric.get("target") is not None and not is_number(metric["target"]):
        raise SweepError(f"{path}: metric.target must be a number, not {metric['target']!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise SweepError(f"{path}: run_cap must be a positive integer, not {run_cap!r}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: parameters must map each config key (e.g. model.lr) to its values or distribution")
    return Sweep(
        path=path, name=path.stem, method=method, metric=metric["name"], goal=goal, target=metric.get("target"),
        parameters=[read_parameter(path, key, spec) for key, spec in parameters.items()],
        cli_args=read_command(path, raw.get("command")), run_cap=run_cap,
        ignored=[key for key in ("early_terminate",) if key in raw],
    )


def read_parameter(path: Path, key: Any, spec: Any) -> Parameter:
    where = f"{path}: parameter {key!r}"
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise SweepError(f"{where}: a parameter is a dotted config key such as model.lr")
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a mapping with value, values or distribution (+ min/max), got {spec!r}")
    if "parameters" in spec:
        raise SweepError(f"{where}: nested parameters are not supported; write each as a dotted key (model.lr)")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(SPEC_KEYS))})")
    distribution = spec.get("distribution") or infer_distribution(spec)
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise SweepError(f"{where}: unknown distribution {distribution!r} (wandb's: {', '.join(DISTRIBUTIONS)})")
    for needed in DISTRIBUTIONS[distribution]:
        if needed not in spec:
            raise SweepError(f"{where}: distribution {distribution} needs {needed!r}")
    if distribution == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: values must be a non-empty list")
        probabilities = spec.get("probabilities")
        if probabilities is not None and (not isinstance(probabilities, list) or len(probabilities) != len(values)
                                          or not all(is_number(p) and p >= 0 for p in probabilities)
                                          or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6)):
            raise SweepError(f"{where}: probabilities must be one non-negative number per value, summing to 1")
    for name in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if name in spec and not is_number(spec[name]):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if re.fullmatch(r"[-+]?\d+e[-+]?\d+", str(spec[name])) else ""
            raise SweepError(f"{where}: {name} must be a number, not {spec[name]!r}{hint}")
    if "min" in spec and "max" in spec:
        if spec["min"] > spec["max"]:
            raise SweepError(f"{where}: min {spec['min']} is larger than max {spec['max']}")
        if distribution.endswith("log_uniform_values") and spec["min"] <= 0:
            raise SweepError(f"{where}: {distribution} needs min > 0 (the bounds are values), got {spec['min']}")
    if distribution == "int_uniform" and not all(isinstance(spec[k], int) for k in ("min", "max")):
        raise SweepError(f"{where}: int_uniform needs integer min and max")
    for name in ("q", "sigma", "a", "b"):
        if name in spec and spec[name] <= 0:
            raise SweepError(f"{where}: {name} must be positive, got {spec[name]}")
    return Parameter(key, distribution, spec)


def infer_distribution(spec: dict[str, Any]) -> str | None:
    """wandb's defaults: values -> categorical, value -> constant, integer min/max -> int_uniform."""
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        integers = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if integers else "uniform"
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_command(path: Path, command: Any) -> list[str]:
    """The CLI arguments of `command: [${env}, python, -m, lit_tasks, fit, ..., ${args}]`."""
    example = "[${env}, python, -m, lit_tasks, fit, --config, FILE, ${args}]"
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise SweepError(f"{path}: command must be a list such as {example} (quote the ${{...}} macros in a flow list)")
    tokens = [str(c) for c in command]
    if tokens[:1] == ["${env}"]:
        tokens = tokens[1:]
    interpreter_ok = bool(tokens) and (tokens[0] == "${interpreter}" or re.fullmatch(r"(.*/)?python[\d.]*", tokens[0]))
    if not interpreter_ok or tokens[1:3] != ["-m", "lit_tasks"] or len(tokens) < 4:
        raise SweepError(f"{path}: command must run our CLI as {example}, got {command}")
    cli_args = tokens[3:]
    if cli_args[0] != "fit":
        raise SweepError(f"{path}: command runs `{cli_args[0]}`; a sweep trains, so it runs `fit`")
    if not any(token in ARG_MACROS for token in cli_args):
        raise SweepError(f"{path}: command has no ${{args}}, so the trials' parameters would never reach the CLI")
    for token in cli_args:
        macro = re.fullmatch(r"\$\{(\w+)\}", token)
        if macro and token not in ARG_MACROS:
            raise SweepError(f"{path}: command macro {token} is not supported here; use ${{args}}")
    return cli_args


# -- sampling -----------------------------------------------------------------------------------
def grid(sweep: Sweep, count: int | None = None) -> list[dict[str, Any]]:
    """The Cartesian product in the order the parameters are written, the last varying fastest."""
    axes = []
    for param in sweep.parameters:
        if param.distribution not in GRID_DISTRIBUTIONS:
            raise SweepError(f"{sweep.path}: parameter {param.key!r}: grid search needs values, value, int_uniform or "
                             f"q_uniform, not the continuous distribution {param.distribution}")
        axes.append(grid_values(param))
    trials = (dict(zip([p.key for p in sweep.parameters], combo)) for combo in itertools.product(*axes))
    return list(itertools.islice(trials, count))


def grid_values(param: Parameter) -> list[Any]:
    spec = param.spec
    if param.distribution == "constant":
        return [spec["value"]]
    if param.distribution == "categorical":
        return list(spec["values"])
    if param.distribution == "int_uniform":
        return list(range(spec["min"], spec["max"] + 1))
    q = spec.get("q", 1)
    first, last = math.ceil(spec["min"] / q - 1e-9), math.floor(spec["max"] / q + 1e-9)
    return [quantize(k * q, q) for k in range(first, last + 1)]


def random_trials(sweep: Sweep, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{param.key: draw(param, rng) for param in sweep.parameters} for _ in range(count)]


def quantize(value: float, q: float) -> int | float:
    """round(value / q) * q as wandb does; an integer q gives integers (batch sizes, widths)."""
    result = round(value / q) * q
    return int(result) if isinstance(q, int) else round(result, 12)


def draw(param: Parameter, rng: random.Random) -> Any:
    spec, kind = param.spec, param.distribution
    low, high = spec.get("min"), spec.get("max")
    mu, sigma, q = spec.get("mu", 0.0), spec.get("sigma", 1.0), spec.get("q", 1)
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    if kind == "int_uniform":
        return rng.randint(low, high)
    base = kind.removeprefix("q_")
    if base == "uniform":
        value = rng.uniform(low, high)
    elif base == "log_uniform":  # min and max are natural logarithms
        value = math.exp(rng.uniform(low, high))
    elif base == "log_uniform_values":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    elif base == "inv_log_uniform":  # log(1/X) uniform in [min, max]
        value = math.exp(-rng.uniform(low, high))
    elif base == "inv_log_uniform_values":  # log(1/X) uniform in [log(1/max), log(1/min)]
        value = math.exp(-rng.uniform(math.log(1 / high), math.log(1 / low)))
    elif base == "normal":
        value = rng.gauss(mu, sigma)
    elif base == "log_normal":
        value = math.exp(rng.gauss(mu, sigma))
    elif base == "beta":
        value = rng.betavariate(spec.get("a", 1.0), spec.get("b", 1.0))
    else:  # read_parameter admits only known distributions
        raise AssertionError(kind)
    return quantize(value, q) if kind.startswith("q_") else value


def sample(sweep: Sweep, count: int | None, seed: int) -> list[dict[str, Any]]:
    count = count if count is not None else sweep.run_cap
    if sweep.method == "grid":
        return grid(sweep, count)
    if sweep.method == "bayes":
        raise SweepError(f"{sweep.path}: method bayes needs a model of the finished trials, which the offline runner "
                         f"does not have; run it online (wandb sweep {sweep.path}, then wandb agent SWEEP_ID), "
                         f"or use method random or grid here")
    if count is None:
        raise SweepError(f"{sweep.path}: random search never ends by itself; pass --count N or set run_cap")
    return random_trials(sweep, count, seed)


# -- command lines --------------------------------------------------------------------------------
def render(params: dict[str, Any], macro: str = "${args}") -> list[str]:
    """The trial's arguments exactly as the wandb agent writes them (`--key=value`, str(value))."""
    if macro == "${args_no_equals}":
        return [part for key, value in params.items() for part in (f"--{key}", str(value))]
    return [f"--{key}={value}" for key, value in params.items()]


def trial_args(sweep: Sweep, params: dict[str, Any], extra: list[str], run_dir: Path | None = None) -> list[str]:
    """`fit ...` for one trial: the sweep's command, its ${args}, the extra arguments, the run folder."""
    args: list[str] = []
    for token in sweep.cli_args:
        if token in ARG_MACROS:
            args += render(params, token)
        else:
            args.append(re.sub(r"\$\{envvar:(\w+)\}", lambda m: os.environ.get(m.group(1), m.group(1)), token))
    args += extra
    if run_dir is not None:
        args += ["--run.dir", str(run_dir)]
    return args


# -- checking against the real signatures, without building anything ------------------------------
def fit_parser(sweep: Sweep, extra: list[str]) -> Any:
    """The `fit` parser of LitTasksCLI, from the sweep's command alone (parse only)."""
    from lit_tasks.cli import LitTasksCLI

    class ParseOnly(LitTasksCLI):
        """Builds the parser and parses; instantiates nothing, creates no run folder, seeds nothing."""

        def init_parser(self, **kwargs: Any) -> Any:
            parser = super().init_parser(**kwargs)
            parser.exit_on_error = False  # errors raise, so we can name the parameter
            return parser

        def _set_seed(self) -> None:
            pass

        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

        def after_instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str | None) -> None:
            pass

    base = trial_args(sweep, {}, extra)
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees both args and sys.argv
    try:
        return ParseOnly(args=base).parser
    except Exception as exc:  # jsonargparse's ArgumentError, or a config file it cannot read
        why = reason(exc)
        if "does not exist" in why:
            why += f" (the command's paths are relative to the folder the sweep runs from, here {Path.cwd()})"
        raise SweepError(f"{sweep.path}: the command itself does not parse ({' '.join(shlex.quote(a) for a in base)}): "
                         f"{why}") from None
    finally:
        sys.argv = argv


def reason(exc: BaseException) -> str:
    from lit_tasks.cli import condense

    text = condense(str(exc))
    if text.startswith("unrecognized arguments"):
        text = f"no such config key ({text})"
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:500] + " ..."


def validate(sweep: Sweep, trials: list[dict[str, Any]], extra: list[str] = ()) -> None:
    """Every parameter on its own (its values, or draws of its distribution), then every trial whole."""
    extra = list(extra)
    parser = fit_parser(sweep, extra)
    command = " ".join(a for a in sweep.cli_args if a not in ARG_MACROS)

    def check(params: dict[str, Any], culprit: str) -> None:
        try:
            parser.parse_args(trial_args(sweep, params, extra))
        except Exception as exc:
            hint = ""
            if any(v is None for v in params.values()):
                hint = " (wandb writes null as the string None: leave the parameter out instead)"
            raise SweepError(f"{sweep.path}: {culprit} is rejected by `python -m lit_tasks {command}`: "
                             f"{reason(exc)}{hint}") from None

    probe = random.Random(0)
    for param in sweep.parameters:
        if param.distribution in GRID_DISTRIBUTIONS:
            values = grid_values(param)[:50]
        else:
            values = [draw(param, probe) for _ in range(3)]
        for value in values:
            check({param.key: value}, f"parameter {param.key!r} = {value!r}")
    for k, params in enumerate(trials):
        check(params, f"trial-{k} ({', '.join(f'{key}={value!r}' for key, value in params.items())})")


# -- running ------------------------------------------------------------------------------------
@dataclass
class Trial:
    index: int
    params: dict[str, Any]
    run_dir: Path
    status: str = "pending"
    metric: float | None = None
    test_metric: float | None = None
    error: str = ""
    seconds: float = 0.0


def test_metric_name(metric: str) -> str | None:
    return "test/" + metric.split("/", 1)[1] if metric.startswith("val/") else None


def read_results(trial: Trial, sweep: Sweep, returncode: int, log: Path) -> None:
    results_file = trial.run_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    metrics = results.get("metrics") or {}
    value = metrics.get(sweep.metric)
    trial.metric = float(value) if is_number(value) else None
    test_name = test_metric_name(sweep.metric)
    test_value = metrics.get(test_name) if test_name else None
    trial.test_metric = float(test_value) if is_number(test_value) else None
    if returncode == 0 and results.get("status") == "finished":
        trial.status = "finished"
        if trial.metric is None:
            known = ", ".join(sorted(metrics)) or "none"
            trial.error = f"results.json has no metric {sweep.metric!r} (it has: {known})"
    else:
        trial.status = "failed"
        trial.error = results.get("error") or failure_reason(log) or f"exit status {returncode}"
        trial.error = " ".join(trial.error.split())[:300]


def failure_reason(log: Path) -> str:
    """The line of a failed trial's output that says why: our one-paragraph error, else the
    root exception raised in lit_tasks, else the last exception, else the last line."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("lit_tasks: error:")]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt): ", line)]
    ours = [line for line in raised if line.startswith("lit_tasks.")]
    for pick in (said[-1:], ours[:1], raised[-1:], lines[-1:]):
        if pick:
            return pick[0]
    return ""


def run_trial(trial: Trial, sweep: Sweep, extra: list[str]) -> None:
    trial.run_dir.mkdir(parents=True)
    log = trial.run_dir / "output.log"
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["WANDB_MODE"] = "disabled" if env.get("WANDB_MODE") == "disabled" else "offline"  # never online
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "lit_tasks", *trial_args(sweep, trial.params, extra, trial.run_dir)]
    started = time.perf_counter()
    with log.open("w") as out:
        out.write("$ " + " ".join(shlex.quote(c) for c in command) + "\n")
        out.flush()
        returncode = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    trial.seconds = time.perf_counter() - started
    read_results(trial, sweep, returncode, log)


def ranked(trials: list[Trial], goal: str) -> list[Trial]:
    """Finished trials with a metric, best first (ties: the earlier trial); then the rest in order."""
    scored = [t for t in trials if t.status == "finished" and t.metric is not None]
    sign = -1.0 if goal == "maximize" else 1.0
    scored.sort(key=lambda t: (sign * t.metric, t.index))
    return scored + [t for t in trials if t not in scored]


def write_leaderboard(sweep: Sweep, trials: list[Trial], folder: Path) -> list[dict[str, Any]]:
    test_name = test_metric_name(sweep.metric)
    with_test = test_name is not None and any(t.test_metric is not None for t in trials)
    keys = [p.key for p in sweep.parameters]
    rows = []
    for rank, trial in enumerate(ranked(trials, sweep.goal), start=1):
        row: dict[str, Any] = {"rank": rank, "trial": f"trial-{trial.index}", sweep.metric: trial.metric}
        if with_test:
            row[test_name] = trial.test_metric
        row.update({key: trial.params.get(key) for key in keys})
        row.update(status=trial.status, seconds=round(trial.seconds, 1), run_dir=str(trial.run_dir), error=trial.error)
        rows.append(row)
    columns = list(rows[0]) if rows else []
    with (folder / "leaderboard.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    (folder / "leaderboard.md").write_text(markdown(sweep, rows, columns))
    return rows


def markdown(sweep: Sweep, rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = [f"# Sweep {sweep.name}: {sweep.metric} ({sweep.goal}), best first", "",
             f"sweep file: `{sweep.path}`, method {sweep.method}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def reached(target: float | None, value: float | None, goal: str) -> bool:
    if target is None or value is None:
        return False
    return value >= target if goal == "maximize" else value <= target


def run(sweep: Sweep, params: list[dict[str, Any]], folder: Path, extra: list[str], seed: int) -> list[Trial]:
    if folder.exists() and any(folder.glob("trial-*")):
        raise SweepError(f"{sweep.path}: {folder} already holds the trials of an earlier sweep; "
                         f"move it away or pass another --root")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text(sweep.path.read_text())
    (folder / "trials.json").write_text(json.dumps({"method": sweep.method, "seed": seed, "extra_args": extra,
                                                    "trials": params}, indent=2, default=str) + "\n")
    trials = [Trial(k, p, (folder / f"trial-{k}").resolve()) for k, p in enumerate(params)]
    for trial in trials:
        shown = " ".join(render(trial.params))
        print(f"[{trial.index + 1}/{len(trials)}] trial-{trial.index}: {shown}", flush=True)
        run_trial(trial, sweep, extra)
        outcome = f"{sweep.metric}={trial.metric:.4f}" if trial.metric is not None else trial.error
        print(f"    {trial.status} in {trial.seconds:.0f} s: {outcome}", flush=True)
        write_leaderboard(sweep, trials[: trial.index + 1], folder)
        if reached(sweep.target, trial.metric, sweep.goal):
            print(f"metric.target {sweep.target} reached: stopping the sweep", flush=True)
            trials = trials[: trial.index + 1]
            break
    return trials


# -- command line -------------------------------------------------------------------------------
def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_tasks sweep",
        description="Run a wandb sweep file (grid or random) locally, offline, one trial at a time.",
        epilog="Arguments after -- go to every trial, e.g. -- --trainer.max_epochs 3 --run.loggers [csv]")
    parser.add_argument("sweep_file", help="a wandb sweep YAML, e.g. sweeps/convnext_fashion_mnist.yaml")
    parser.add_argument("--count", type=int, default=None,
                        help="number of trials (random: required unless run_cap is set; grid: at most this many)")
    parser.add_argument("--root", default="runs/sweeps", help="trials go to ROOT/<sweep file name>/trial-K")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random search (not of training)")
    parser.add_argument("--dry-run", action="store_true", help="check and print the trials, run nothing")
    return parser


def main(argv: list[str]) -> None:
    argv = list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    options = build_arg_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if options.count is not None and options.count < 1:
        raise SweepError(f"--count must be at least 1, got {options.count}")
    sweep = load(options.sweep_file)
    params = sample(sweep, options.count, options.seed)
    validate(sweep, params, extra)
    folder = Path(options.root) / sweep.name
    print(f"sweep {sweep.path}: {len(params)} trial(s), method {sweep.method}, {sweep.metric} ({sweep.goal}); "
          f"all parameters check against the config", flush=True)
    for key in sweep.ignored:
        print(f"note: {key} is used by the online wandb agent only; every trial runs to its end here", flush=True)
    if options.dry_run:
        for k, p in enumerate(params):
            args = trial_args(sweep, p, extra, folder / f"trial-{k}")
            print("python -m lit_tasks " + " ".join(shlex.quote(a) for a in args))
        return
    trials = run(sweep, params, folder, extra, options.seed)
    rows = write_leaderboard(sweep, trials, folder)
    print(f"\nleaderboard: {folder / 'leaderboard.md'}")
    for row in rows[:5]:
        value = row[sweep.metric]
        print(f"  {row['rank']}. {row['trial']}  {sweep.metric}={'-' if value is None else f'{value:.4f}'}  "
              f"{row['status']}  {' '.join(render({k: row[k] for k in (p.key for p in sweep.parameters)}))}")
    if not any(t.status == "finished" for t in trials):
        sys.stderr.write(f"lit_tasks: every trial failed; see {folder}/trial-*/output.log\n")
        sys.exit(1)
