"""results.json: one file a script can read to know how a run went.

    {"status": "finished", "pid": .., "host": "..", "updated": "2026-11-25T10:42:39",
     "metrics": {"val/acc": .., "test/acc": ..},
     "best": {"monitor": "val/acc", "mode": "max", "score": .., "epoch": .., "metrics": {..}},
     "checkpoints": {"best": "...", "last": "..."}, "config": {...}, "recipe": ["configs/..."], "seed": 42,
     "versions": {...}, "hardware": {...}, "wall_time_s": {"fit": ..},
     "throughput": {"train_samples_per_s": ..},
     "skipped_samples": {"count": 0, "paths": []}, "history": [{"epoch": 0, ...}, ...],
     "skipped_steps": {"count": 0, "steps": [], "allowed": 0}}

`hardware` is what each command ran on, by command as `wall_time_s` ({"fit": {..}, "test":
{..}}; the model card of `export` shows the fit's): {"cpu": model name, "cpu_cores": cores
the process may use, "gpus": [names of the visible CUDA devices], "accelerator": "cpu",
"cuda", ..., "devices": devices per node, "num_nodes", "precision", "host"}.
`skipped_samples` counts distinct unreadable files met by global rank 0 (under DDP each
rank meets its own shard's; the log of every rank names them).
`skipped_steps` lists the training steps skipped for a non-finite loss
(`run.skip_nonfinite_loss`, :mod:`lit_tasks.callbacks.nonfinite`), written by fit.

Every fit / validate / test merges its part into the run folder's file, so `fit` followed
by `test` (or a resumed fit) leaves one file with everything. Only global rank 0 writes.

`status` is "running" from the start of a command (with the writing process's `pid` and
`host`, so `python -m lit_tasks runs` can tell a killed run), then "finished", "failed"
(with `error`) or "preempted" (stopped by SIGTERM or the Slurm requeue signal). Each such stop
is appended to `stops`: {"signal", "step", "checkpoint" (preempted.ckpt, or null when it came
before training began), "requeue" (what happened to the Slurm job, or why it was not requeued),
"requeued"}; a resumed run keeps the list. A logger that failed and was switched off mid-run
(wandb, see :mod:`lit_tasks.loggers`) is named under `logger_errors`. When results.json itself
cannot be written (disk full), the run goes on and the error is logged once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_tasks import plots
from lit_tasks.callbacks.nonfinite import NonFiniteLoss
from lit_tasks.callbacks.preemption import RequeueOnSignal

MAX_LISTED_SKIPS = 100
log = logging.getLogger(__name__)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("lit_tasks", "torch", "lightning", "torchmetrics", "numpy", "wandb"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; `platform.processor()` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(trainer: L.Trainer) -> dict[str, Any]:
    """What a command ran on, for results.json and the model card (see the module docstring)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    return {"cpu": cpu_name(), "cpu_cores": cores, "gpus": gpus, "accelerator": accelerator,
            "devices": trainer.num_devices, "num_nodes": trainer.num_nodes, "precision": str(trainer.precision),
            "host": socket.gethostname()}


def to_number(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for key in ("labels", "pixel_values", "input_ids", "input_values"):
            if key in batch and hasattr(batch[key], "shape"):
                return int(batch[key].shape[0])
    if isinstance(batch, (list, tuple)) and batch and hasattr(batch[0], "shape"):
        return int(batch[0].shape[0])
    return 0


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write (disk full): no partial file left


class ResultsWriter(Callback):
    """Keeps per-epoch history, timing and throughput and writes results.json + curves.png."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], seed: int | None, monitor: tuple[str, str],
                 recipe: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "results.json"
        self.config = config
        self.recipe = recipe or []
        self.seed = seed
        self.monitor, self.mode = monitor
        self.results: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.history: list[dict[str, Any]] = self.results.get("history", [])
        # distinct unreadable samples seen by this process (each epoch meets them again)
        self.skipped: set[str] = set(self.results.get("skipped_samples", {}).get("paths", []))
        self._started: dict[str, float] = {}
        self._train_seconds = 0.0
        self._train_samples = 0
        self._mark: float | None = None
        self._write_failed = False
        self._hardware: dict[str, Any] | None = None

    # -- bookkeeping ----------------------------------------------------------------------
    def _start(self, trainer: L.Trainer, stage: str) -> None:
        self._started[stage] = time.perf_counter()
        self.results.update(status="running", pid=os.getpid(), host=socket.gethostname())
        self._write(trainer, stage, final=False)

    def _count_skips(self, batch: Any) -> None:
        if isinstance(batch, dict) and batch.get("skipped"):
            self.skipped.update(batch["skipped"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, "fit")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._start(trainer, "validate")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, "test")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a resumed fit redoes the epochs after its checkpoint: their rows come again
        self.history = [row for row in self.history if row["epoch"] < trainer.current_epoch]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = time.perf_counter()  # validation time does not count towards training throughput
        if trainer.state.fn == "validate":
            self._finish(trainer, "validate")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self._train_seconds += now - self._mark
        self._mark = now
        self._train_samples += batch_size(batch) * trainer.world_size
        self._count_skips(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._count_skips(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._count_skips(batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: to_number(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")})
        self.history.append(row)
        self._write(trainer, "fit", final=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, "test")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):  # stopped by a signal, see callbacks/preemption.py
            self.results["status"] = "preempted"
            self.results.pop("error", None)
            stops = [cb.stop_report(trainer) for cb in trainer.callbacks if isinstance(cb, RequeueOnSignal)]
            if any(stops):
                self.results.setdefault("stops", []).extend(stop for stop in stops if stop)
        else:
            self.results["status"] = "failed"
            self.results["error"] = f"{type(exception).__name__}: {exception}"[:2000]
        self._write(trainer, None, final=False)

    # -- writing --------------------------------------------------------------------------
    def _finish(self, trainer: L.Trainer, stage: str) -> None:
        self.results.setdefault("wall_time_s", {})[stage] = round(time.perf_counter() - self._started.get(stage, time.perf_counter()), 3)
        self.results["status"] = "finished"
        self.results.pop("error", None)
        self._write(trainer, stage, final=True)

    def _best(self) -> dict[str, Any] | None:
        scored = [row for row in self.history if isinstance(row.get(self.monitor), (int, float))]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        row = pick(scored, key=lambda r: r[self.monitor])
        return {"monitor": self.monitor, "mode": self.mode, "score": row[self.monitor], "epoch": row["epoch"],
                "step": row["step"], "metrics": {k: v for k, v in row.items() if k not in ("epoch", "step")}}

    def _write(self, trainer: L.Trainer, stage: str | None, final: bool) -> None:
        if not trainer.is_global_zero:
            return
        results = self.results
        metrics = results.setdefault("metrics", {})
        if final:
            metrics.update({k: to_number(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")})
        results["best"] = self._best()
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        ckpt = trainer.checkpoint_callback  # the best-by-monitor one; last.ckpt has writers of its own
        last = self.run_dir / "checkpoints" / "last.ckpt"
        if isinstance(ckpt, ModelCheckpoint) and (ckpt.best_model_path or last.is_file()):
            # a test from best.ckpt restores the callback as it was when best.ckpt was written:
            # keep the best path already known
            known = results.get("checkpoints") or {}
            results["checkpoints"] = {"best": ckpt.best_model_path or known.get("best"),
                                      "last": str(last) if last.is_file() else known.get("last")}
        if stage is not None:
            results.setdefault("commands", [])
            if final:
                results["commands"].append(stage)
        results["config"] = self.config
        if self.recipe or "recipe" not in results:  # a later command from the run's own config.yaml keeps it
            results["recipe"] = self.recipe
        results["seed"] = self.seed
        results["versions"] = package_versions()
        results["world_size"] = trainer.world_size
        if stage is not None:  # per command, as wall_time_s: a later test elsewhere keeps the fit's record
            if self._hardware is None:  # read once: a file read and a CUDA query
                self._hardware = hardware(trainer)
            results.setdefault("hardware", {})[stage] = self._hardware
        if self._train_seconds > 0:
            results["throughput"] = {"train_samples_per_s": round(self._train_samples / self._train_seconds, 2)}
        results["skipped_samples"] = {"count": len(self.skipped), "paths": sorted(self.skipped)[:MAX_LISTED_SKIPS]}
        guard = next((cb for cb in trainer.callbacks if isinstance(cb, NonFiniteLoss)), None)
        if guard is not None and trainer.state.fn == "fit":  # a later test/validate keeps the fit's record
            results["skipped_steps"] = guard.report()
        results["history"] = self.history
        failed_loggers = {getattr(lg, "kind", type(lg).__name__): lg.failure for lg in trainer.loggers
                          if getattr(lg, "failure", None)}
        if failed_loggers:
            results.setdefault("logger_errors", {}).update(failed_loggers)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(results, self.path)
            if final and self.history:
                plots.save(plots.learning_curves(self.history), self.run_dir / "curves.png")
        except OSError as exc:  # e.g. the disk is full: say so once, never stop the run for it
            if not self._write_failed:
                log.error(f"lit_tasks: cannot write {self.path} ({exc}); the run goes on without updating it")
            self._write_failed = True
