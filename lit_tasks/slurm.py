"""`python -m lit_tasks slurm`: fill a Slurm template from arguments and submit it with sbatch.

    python -m lit_tasks slurm --config configs/image_classification/vit_fashion_mnist.yaml \\
        --nodes 2 --gpus-per-node 4 --time 12:00:00 --partition gpu [--dry-run] \\
        [-- --trainer.max_epochs 30 --data.batch_size 128]

The templates are `scripts/slurm/one_node.sbatch` (``--nodes 1``) and
`scripts/slurm/multi_node.sbatch`: one srun task per GPU (`--ntasks-per-node` =
`--gpus-per-node`), `trainer.num_nodes`/`trainer.devices` taken from Slurm's variables in the
job, `--signal=USR1@90 --requeue --open-mode=append` for preemption (see
:mod:`lit_tasks.callbacks.preemption`). `--cpu` asks for CPU tasks instead of GPUs
(`--tasks-per-node` of them, gloo DDP across them). Arguments after `--` go to `fit`.

Before anything is submitted, the config and the overrides are parsed by the real `fit` parser,
so a typo fails here rather than after the wait in the queue. The filled script is written to
`<log-dir>/<job-name>.sbatch` and submitted (`--dry-run`: printed only); the job's output goes
to `<log-dir>/<job-name>-<job id>.out`.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from lit_tasks.errors import ConfigError, SweepError

TEMPLATES = Path(__file__).resolve().parents[1] / "scripts" / "slurm"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+")  # sbatch's forms: MM, HH:MM:SS, D-HH[:MM[:SS]] ...
NAME = re.compile(r"[\w.+-]+")  # a job name: no spaces, quotes, slashes or line breaks
PARTITIONS = re.compile(r"[\w.-]+(,[\w.-]+)*")  # one partition or a comma-separated list
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a line break here would start a new line of the script


def template_path(nodes: int) -> Path:
    return TEMPLATES / ("one_node.sbatch" if nodes == 1 else "multi_node.sbatch")


def fill(template: str, values: dict[str, str | None]) -> str:
    """Replace each {{name}}; a line whose value is None is left out (an optional #SBATCH line).
    A placeholder without a value is an error naming it."""
    lines = []
    for line in template.splitlines(keepends=True):
        names = PLACEHOLDER.findall(line)
        unknown = [name for name in names if name not in values]
        if unknown:
            raise ConfigError(f"Slurm template: no value for {{{{{unknown[0]}}}}} in line {line.strip()!r}")
        if any(values[name] is None for name in names):
            continue
        lines.append(PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), line))
    return "".join(lines)


def job_name(options: argparse.Namespace) -> str:
    return options.job_name or Path(options.config).stem


def check_options(options: argparse.Namespace) -> None:
    if not Path(options.config).is_file():
        raise ConfigError(f"--config {options.config}: no such file")
    for name in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not TIME.fullmatch(options.time):
        raise ConfigError(f"--time {options.time!r}: expected sbatch's format, e.g. 12:00:00, 1-00:00:00 or 90 (minutes)")
    if not NAME.fullmatch(job_name(options)):
        given = f"--job-name {options.job_name!r}" if options.job_name else \
            f"the job name {job_name(options)!r} (the config file's name; set another with --job-name)"
        raise ConfigError(f"{given}: use letters, digits and . _ + - only")
    if options.partition is not None and not PARTITIONS.fullmatch(options.partition):
        raise ConfigError(f"--partition {options.partition!r}: expected a partition name or a comma-separated list "
                          f"of them (letters, digits and . _ -)")
    for name, value in (("--log-dir", options.log_dir), ("--python", options.python), ("--config", options.config),
                        ("the working directory", os.getcwd())):
        if CONTROL.search(value):
            raise ConfigError(f"{name} {value!r}: a path with a line break or another control character cannot go "
                              f"into a Slurm script")
    if options.cpu and options.gpus_per_node is not None:
        raise ConfigError("--cpu and --gpus-per-node: a job asks for GPUs or runs on CPUs, not both")
    if not options.cpu and options.gpus_per_node is None:
        raise ConfigError("--gpus-per-node is required (or --cpu for CPU tasks)")
    if options.tasks_per_node is not None and not options.cpu:
        raise ConfigError("--tasks-per-node is for --cpu jobs; with GPUs it is --gpus-per-node")


def fit_args(options: argparse.Namespace, overrides: list[str]) -> list[str]:
    """What follows `python -m lit_tasks` in the job, without the node/device counts."""
    accelerator = ["--trainer.accelerator", "cpu"] if options.cpu else []
    return ["fit", "--config", str(Path(options.config).resolve()), *accelerator, *overrides]


def check_parses(options: argparse.Namespace, args: list[str], tasks_per_node: int) -> None:
    """The `fit` command as the job will run it, through the real parser (nothing is built)."""
    from lit_tasks.sweep import Sweep, fit_parser

    job_args = [*args, "--trainer.num_nodes", str(options.nodes), "--trainer.devices", str(tasks_per_node)]
    probe = Sweep(path=Path(options.config), name="slurm", method="grid", metric="", goal="maximize", target=None,
                  parameters=[], cli_args=job_args)
    try:
        fit_parser(probe, [])  # parses the command: an unknown key, a value of the wrong type, a bad config
    except SweepError as exc:
        raise ConfigError(f"python -m lit_tasks slurm: {exc}") from None


def render(options: argparse.Namespace, overrides: list[str]) -> str:
    """The filled sbatch script. Every value is checked (names and times by their form, paths for
    line breaks) and every path and argument is quoted: the shell and sbatch's #SBATCH parser both
    read shlex quoting, so a space or a quote in a path stays part of it."""
    check_options(options)
    tasks = options.gpus_per_node if not options.cpu else (options.tasks_per_node or 1)
    args = fit_args(options, overrides)
    check_parses(options, args, tasks)
    values = {
        "job_name": job_name(options),
        "partition": options.partition,
        "time": options.time,
        "nodes": str(options.nodes),
        "tasks_per_node": str(tasks),
        "gpus_per_node": None if options.cpu else str(options.gpus_per_node),
        "cpus_per_task": str(options.cpus_per_task) if options.cpus_per_task else None,
        "log_dir": shlex.quote(str(Path(options.log_dir).resolve())),
        "workdir": shlex.quote(str(Path.cwd())),
        "python": shlex.quote(options.python),
        "config": shlex.quote(args[2]),
        "overrides": " ".join(shlex.quote(a) for a in args[3:]),  # inside quotes a line break is harmless
    }
    return fill(template_path(options.nodes).read_text(), values)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_tasks slurm",
        description="Fill a Slurm template (scripts/slurm/) for `fit --config FILE` and submit it with sbatch.",
        epilog="Arguments after -- go to `fit`, e.g. -- --trainer.max_epochs 30 --data.batch_size 128")
    parser.add_argument("--config", required=True, help="the recipe, e.g. configs/image_classification/vit_fashion_mnist.yaml")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per node = tasks per node")
    parser.add_argument("--cpu", action="store_true", help="CPU tasks, no GPUs (gloo DDP)")
    parser.add_argument("--tasks-per-node", type=int, default=None, help="with --cpu: processes per node (default 1)")
    parser.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per task (data workers + 1)")
    parser.add_argument("--time", required=True, help="time limit, e.g. 12:00:00 (the job is signalled 90 s before)")
    parser.add_argument("--partition", default=None, help="default: the cluster's default partition")
    parser.add_argument("--job-name", default=None, help="default: the config file's name")
    parser.add_argument("--log-dir", default="runs/slurm", help="where the script and the job's output go")
    parser.add_argument("--python", default=sys.executable, help="the python of the job (default: this one)")
    parser.add_argument("--wait", action="store_true", help="sbatch --wait: return when the job has ended")
    parser.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    return parser


def main(argv: list[str]) -> None:
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options = build_arg_parser().parse_args(argv[:split])
    script = render(options, argv[split + 1:])
    if options.dry_run:
        print(script, end="")
        return
    log_dir = Path(options.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{job_name(options)}.sbatch"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "LIT_TASKS_RUN_DIR"}  # the job picks its own folder
    command = ["sbatch", "--parsable", *(["--wait"] if options.wait else []), str(path)]
    try:
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise ConfigError(f"sbatch is not installed here; the script is in {path} (submit it where Slurm runs)") from None
    job_id = done.stdout.strip().split(";")[0]
    if job_id:
        print(f"submitted job {job_id}: {path}; output in {log_dir}/{path.stem}-{job_id}.out")
    if done.returncode != 0:
        sys.exit(done.returncode)
