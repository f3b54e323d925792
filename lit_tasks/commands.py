"""`python -m lit_tasks COMMAND ...`: the command table and the one entry point.

This module imports neither torch nor Lightning: a command that needs them imports them when
it runs, so `runs`, `score --help` or a mistyped command answer at once.
"""

from __future__ import annotations

import importlib
import os
import sys

from lit_tasks import run_dir as runs
from lit_tasks.errors import TrainingError, find_user_error, user_message

TRAINER_COMMANDS = {  # LightningCLI's subcommands (lit_tasks.cli)
    "fit": "train; then test the best checkpoint when the data has a test split",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "write predictions.jsonl (and a task's own files) to the run folder",
}
# Commands beside LightningCLI's: name -> (module with a `main(argv)`, imported when used; one line)
COMMANDS = {
    "export": ("lit_tasks.export", "write a checkpoint as an HF-format folder with a model card (README.md)"),
    "score": ("lit_tasks.score", "score a predictions file with one of our metrics, outside training"),
    "runs": ("lit_tasks.runs", "list run folders: status, wall time, best and test metric"),
    "sweep": ("lit_tasks.sweep", "run a wandb sweep file locally (offline)"),
    "slurm": ("lit_tasks.slurm", "submit a run to Slurm (multi-node, requeue on preemption)"),
    "tokenizer": ("lit_tasks.train_tokenizer", "train a tokenizer on text files"),
    "generate": ("lit_tasks.generate_text", "continue prompts with a causal LM checkpoint or HF folder"),
}
EXAMPLES = """\
examples:
  python -m lit_tasks fit --config configs/image_classification/vit_fashion_mnist.yaml
  python -m lit_tasks fit --config FILE --model.lr 3e-4 --data.batch_size 64 --trainer.max_epochs 3
  python -m lit_tasks test --config runs/NAME/VERSION/config.yaml --ckpt_path runs/NAME/VERSION/checkpoints/best.ckpt
  python -m lit_tasks export --ckpt_path runs/NAME/VERSION/checkpoints/best.ckpt --out exported/NAME

options of one command: python -m lit_tasks COMMAND --help
a task's options:       python -m lit_tasks fit --config FILE --model.help CLASS   (e.g. ImageClassification)
recipes: configs/<task>/<model>_<data>.yaml
"""


def usage() -> str:
    lines = ["usage: python -m lit_tasks COMMAND [options]", "", "commands:"]
    described = {**TRAINER_COMMANDS, **{name: line for name, (_, line) in COMMANDS.items()}}
    width = max(map(len, described))
    lines += [f"  {name.ljust(width)}  {line}" for name, line in described.items()]
    return "\n".join(lines) + "\n\n" + EXAMPLES


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return
    if argv[0] not in TRAINER_COMMANDS and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        sys.stderr.write(f"lit_tasks: error: unknown command {argv[0]!r}; "
                         f"one of {', '.join([*TRAINER_COMMANDS, *COMMANDS])} (python -m lit_tasks --help)\n")
        sys.exit(2)
    inherited = runs.ENV_VAR in os.environ
    try:
        if argv[0] in COMMANDS:
            importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
        else:
            from lit_tasks import cli

            cli.run(None if from_command_line else argv)
    except Exception as exc:
        from lit_tasks.distributed import failure_message, process_label

        user_error = find_user_error(exc)
        failure = str(exc) if isinstance(exc, TrainingError) else failure_message(exc)
        if user_error is None and failure is None:
            raise
        message = user_message(user_error) if user_error is not None else failure
        sys.stderr.write(f"lit_tasks: error: {process_label()}{message}\n")
        sys.exit(2 if user_error is not None else 1)
    finally:
        if not inherited:
            os.environ.pop(runs.ENV_VAR, None)
