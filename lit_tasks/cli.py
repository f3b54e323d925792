"""`python -m lit_tasks fit|validate|test|predict --config FILE`.

LightningCLI does the parsing: every constructor argument of the task (`model`), the
DataModule (`data`) and the Trainer is a config key and can be overridden on the
command line (`--model.init_args.lr 3e-4` or `--model.lr 3e-4`). On top of it we add
the run folder (`run.*`), default loggers, checkpoints, results.json and figures.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import lightning as L
import yaml
from jsonargparse._common import debug_mode_active
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

import lit_tasks.tasks  # noqa: F401  (imported so that --model.help and configs may name a task by its class name)
from lit_tasks import run_dir as runs
from lit_tasks.data import import_datamodules
from lit_tasks.callbacks import FigureLogger, PredictionWriter, ResultsWriter, ResumeState
from lit_tasks.callbacks.nonfinite import NonFiniteLoss
from lit_tasks.callbacks.progress_lines import Progress, ProgressLines, use_lines
from lit_tasks.callbacks.preemption import DEFAULT_MAX_REQUEUES, RequeueOnSignal, slurm_plugins
from lit_tasks.callbacks.speed import BlockOptions
from lit_tasks.checkpoint_io import AtomicCheckpointIO
from lit_tasks.distributed import DEFAULT_TIMEOUT_MINUTES, EndRanksOnFailure, apply_timeout, shared_run_dir
from lit_tasks.errors import ConfigError
from lit_tasks.loggers import build_loggers

def condense(message: str) -> str:
    """jsonargparse's nested union message, reduced to the key and the reason."""
    key = re.match(r'Parser key "([^"]+)"', message)
    problem = re.search(r"Problem with given class_path '([^']+)':\n(.*?)(?:\n\s*- Expected a|\Z)", message, re.S)
    if key and problem:
        reason = " ".join(line.strip() for line in problem.group(2).splitlines() if line.strip())
        return f"{key.group(1)} ({problem.group(1)}): {reason}"
    return message.strip()


class Parser(LightningArgumentParser):
    """Errors as two short lines instead of a screen of usage."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(f"lit_tasks: error: {condense(message)}\n"
                         f"  (all options: {parser.prog.replace(' [options]', '')} --help)\n")
        sys.exit(2)


import_datamodules()  # likewise --data.help and configs, for DataModules


class LitTasksCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=None,
            seed_everything_default=42,
            auto_configure_optimizers=False,
            parser_class=Parser,
            parser_kwargs={"prog": "python -m lit_tasks"},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run.root", type=str, default="runs", help="folder holding all runs")
        parser.add_argument("--run.name", type=str | None, default=None,
                            help="run name (default: the config file's name)")
        parser.add_argument("--run.dir", type=str | None, default=None,
                            help="this run's folder (default: <root>/<name>/<date_time>)")
        parser.add_argument("--run.loggers", type=list[Literal["wandb", "csv"]], default=["wandb", "csv"],
                            help="loggers used when trainer.logger is not set")
        parser.add_argument("--run.wandb_project", type=str, default="lit_tasks", help="wandb project of the runs")
        parser.add_argument("--run.progress", type=Progress, default="auto",
                            help="bar: the progress bar; lines: a plain line every progress_every_n_steps steps and "
                                 "after each validation (for log files); auto: lines when stdout is not a terminal")
        parser.add_argument("--run.progress_every_n_steps", type=int, default=50,
                            help="training steps between two progress lines")
        parser.add_argument("--run.test_after_fit", type=bool, default=True,
                            help="after fit, test the best checkpoint if the data has a test split")
        parser.add_argument("--run.checkpoint_every_n_steps", type=int | None, default=None,
                            help="also write checkpoints/last.ckpt every N training steps (resume: --ckpt_path last)")
        parser.add_argument("--run.checkpoint_every_minutes", type=float | None, default=None,
                            help="also write checkpoints/last.ckpt every M minutes of training")
        parser.add_argument("--run.max_requeues", type=int | None, default=DEFAULT_MAX_REQUEUES,
                            help="a Slurm job stopped by a signal requeues itself while SLURM_RESTART_COUNT is "
                                 "below this (null: no limit; docs/slurm.md)")
        parser.add_argument("--run.activation_checkpointing", type=bool, default=False,
                            help="recompute each zoo block's activations in backward (less memory, docs/scaling.md)")
        parser.add_argument("--run.compile", type=bool, default=False,
                            help="torch.compile each zoo block of the model (docs/scaling.md)")
        parser.add_argument("--run.skip_nonfinite_loss", type=int, default=0,
                            help="skip up to N training steps whose loss is NaN/inf (0: the first one stops the run)")
        parser.add_argument("--run.ddp_timeout_minutes", type=float, default=DEFAULT_TIMEOUT_MINUTES,
                            help="how long a process of a distributed run waits for the others in a collective")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.init_args.label_names", apply_on="instantiate")
        parser.link_arguments("model.init_args.init_from", "data.init_args.preprocessor", apply_on="parse")
        # masked and causal LM: the tokenizer sizes the embedding, NSP is the data's choice; CTC: the character vocabulary sizes the head
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.nsp", "model.init_args.nsp", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Lightning would rebuild the model from a checkpoint's hyper-parameters, silently
        overriding the config (and only for file paths, not best/last). Here the config
        defines the model and the task checks that the checkpoint fits it."""

    def _config(self, namespace: Any) -> Any:
        """The part of a parsed config for the subcommand run (all of it with run=False)."""
        return namespace[self.subcommand] if self.subcommand else namespace

    # -- run folder --------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self._config(self.config)
        name = config.run.name or self._config_stem(config) or "run"
        self.run_dir, ckpt_path = shared_run_dir(  # the same folder in every process (torchrun too)
            lambda: runs.resolve(config.run.root, name, config.run.dir, config.get("ckpt_path")))
        if "ckpt_path" in config:
            config.ckpt_path = ckpt_path
        self.run_name = name
        config.run.dir = str(self.run_dir)
        config_file = self.run_dir / "config.yaml"
        if (self.subcommand in ("fit", None) or not config_file.exists()) and int(os.environ.get("LOCAL_RANK", 0)) == 0:
            self._save_config(config_file)

    def _save_config(self, path: Path) -> None:
        """The resolved config, reusable as `--config` by any command (same run name, new folder)."""
        data = self._config(yaml.safe_load(self.parser.dump(self.config, skip_none=False)))
        data.pop("config", None)
        data.pop("ckpt_path", None)
        data["run"].update(name=self.run_name, dir=None)
        header = f"# resolved config of {self.run_dir}\n# rerun: python -m lit_tasks fit --config {path}\n"
        path.write_text(header + yaml.safe_dump(data, sort_keys=False))

    @staticmethod
    def _config_stem(config: Any) -> str | None:
        files = config.get("config") or []
        return Path(str(files[-1])).stem if files else None

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self._config(self.config)
        trainer_config = self._config(self.config_init).trainer
        monitor = getattr(self.model, "monitor", ("val/loss", "min"))
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = build_loggers(config.run.loggers, self.run_dir, self.run_name, config.run.wandb_project)
        plugins = trainer_config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins = [*plugins, AtomicCheckpointIO()]
        kwargs["plugins"] = slurm_plugins(plugins)  # under Slurm: our requeue, not Lightning's
        kwargs["default_root_dir"] = str(self.run_dir)
        lines = use_lines(config.run.progress)
        if (lines or config.run.progress == "none") and trainer_config.get("enable_progress_bar") is None:
            kwargs["enable_progress_bar"] = False
        given = trainer_config.get("callbacks") or []
        kwargs["callbacks"] = [
            *(given if isinstance(given, list) else [given]),
            ModelCheckpoint(dirpath=self.run_dir / "checkpoints", filename="best", monitor=monitor[0], mode=monitor[1],
                            save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False),
            *self._last_checkpoints(config.run),
            ResultsWriter(self.run_dir, self._plain_config(), config.seed_everything, monitor,
                          recipe=[str(path) for path in config.get("config") or []]),
            FigureLogger(self.run_dir),
            PredictionWriter(self.run_dir),
            ResumeState(),
            *([BlockOptions(config.run.activation_checkpointing, config.run.compile)]
              if config.run.activation_checkpointing or config.run.compile else []),
            RequeueOnSignal(max_requeues=config.run.max_requeues),
            NonFiniteLoss(config.run.skip_nonfinite_loss),
            *([ProgressLines(config.run.progress_every_n_steps)] if lines else []),
            EndRanksOnFailure(),
        ]
        trainer = super().instantiate_trainer(**kwargs)
        apply_timeout(trainer.strategy, config.run.ddp_timeout_minutes)
        return trainer

    def _last_checkpoints(self, run: Any) -> list[ModelCheckpoint]:
        """Writers of checkpoints/last.ckpt, the newest state (what `--ckpt_path last` resumes):
        one at the end of every epoch, and one every run.checkpoint_every_n_steps steps or
        _minutes minutes, at the end of a training step, when set. (ModelCheckpoint's own
        save_last only writes when the monitored metric improved.)"""
        steps, minutes = run.get("checkpoint_every_n_steps"), run.get("checkpoint_every_minutes")
        if steps is not None and minutes is not None:
            raise ConfigError("run.checkpoint_every_n_steps and run.checkpoint_every_minutes: set one of them, not both")
        if (steps is not None and steps < 1) or (minutes is not None and minutes <= 0):
            raise ConfigError(f"run.checkpoint_every_n_steps / _minutes must be positive (got {steps or minutes})")
        triggers = [{}]
        if steps is not None or minutes is not None:
            triggers.append({"every_n_train_steps": steps,
                             "train_time_interval": timedelta(minutes=minutes) if minutes else None})
        return [ModelCheckpoint(dirpath=self.run_dir / "checkpoints", filename="last", save_top_k=1,
                                auto_insert_metric_name=False, enable_version_counter=False, **trigger)
                for trigger in triggers]

    def _plain_config(self) -> dict[str, Any]:
        """The resolved config as plain data, with the values links filled in (num_classes, ...)."""
        dumped = self.parser.dump(self.config, format="json", skip_none=False, skip_link_targets=False)
        config = self._config(json.loads(dumped))
        init_args = config.get("model", {}).setdefault("init_args", {})
        init_args.update({k: v for k, v in self.model.hparams.items() if not k.startswith("_")})  # as built
        return config

    # -- fit, then test; a closing summary ---------------------------------------------------
    def after_fit(self) -> None:
        if self.config.fit.run.test_after_fit and not self.trainer.interrupted \
                and getattr(self.datamodule, "has_split", lambda split: True)("test"):
            best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        self._summary()

    def after_validate(self) -> None:
        self._summary()

    def after_test(self) -> None:
        self._summary()

    def after_predict(self) -> None:
        self._summary()

    def _summary(self) -> None:
        """Where the run is, and its headline metrics, as the last lines printed."""
        if not self.trainer.is_global_zero:
            return
        results = self.run_dir / "results.json"
        metrics = json.loads(results.read_text()).get("metrics", {}) if results.is_file() else {}
        headline = {k: v for k, v in metrics.items() if k.split("/")[0] in ("val", "test") and isinstance(v, float)}
        print(f"\nrun folder: {self.run_dir}")
        if headline:
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(headline.items())))


def leave_process_group() -> None:
    """Shut the DDP process group down once the command is done. Lightning leaves it open; a
    gloo group still open when the interpreter exits can abort the process ("terminate called
    without an active exception"), which Slurm then reports as a failed task."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()


def run(argv: list[str] | None) -> None:
    """fit/validate/test/predict through LightningCLI (argv None: sys.argv, as jsonargparse reads it)."""
    LitTasksCLI(args=argv)
    leave_process_group()
