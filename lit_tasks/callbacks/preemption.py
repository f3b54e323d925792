"""Slurm preemption: on the requeue signal, checkpoint at the end of the step and requeue.

Slurm sends SIGUSR1 to every task of the job step some time before the job's end
(`#SBATCH --signal=USR1@90`: 90 s before the time limit) or when an admin or a script
asks for it (`scancel --signal=USR1 JOBID`). Then, in every process of the job:

1. the signal handler only sets a flag (nothing unsafe runs inside a handler);
2. at the end of the next training step that stepped the optimiser (with gradient
   accumulation: after the accumulated batches) the ranks agree whether any of them was
   signalled (one all-reduce of a boolean per step), so they all stop at the same step;
3. all ranks write `checkpoints/preempted.ckpt` with `trainer.save_checkpoint`: the same
   complete state as any checkpoint (loops, sampler position, RNG states, see
   :mod:`lit_tasks.callbacks.resume`), written atomically by
   :class:`lit_tasks.checkpoint_io.AtomicCheckpointIO`;
4. training stops through Lightning's own graceful stop (the path a SIGTERM takes): the loop
   logs the step, then raises ``SIGTERMException``; results.json says ``"status": "preempted"``
   and no test runs;
5. when the process exits (after the loggers' exit hooks), global rank 0 runs
   ``scontrol requeue JOBID`` (``ARRAYJOBID_TASKID`` for a job array task, never the whole
   array). Slurm ends the job and queues it again with the same job id.

A signal at the fit's last step is ignored (the run just finishes), as is one during the final
validation or test.

The requeued job starts the same command again; :func:`lit_tasks.run_dir.resolve` puts it in
the same run folder (named by the job id) and resumes from its newest checkpoint, so it
continues at the next step and stops at ``max_steps`` / ``max_epochs`` as an uninterrupted run.

Lightning's own auto-requeue (``SLURMEnvironment(auto_requeue=True)``) saves and requeues
inside the signal handler, which can interrupt an optimiser step half done or a DDP
collective; :func:`slurm_plugins` turns it off, this callback replaces it.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

CHECKPOINT_NAME = "preempted.ckpt"


def slurm_plugins(plugins: list[Any]) -> list[Any]:
    """The trainer plugins, with Lightning's in-handler auto-requeue switched off under Slurm
    (a SLURMEnvironment that does everything else as Lightning's default one does)."""
    launched_by_srun = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    if any(isinstance(p, ClusterEnvironment) for p in plugins) or not launched_by_srun:  # as SLURMEnvironment.detect()
        return plugins
    return [*plugins, SLURMEnvironment(auto_requeue=False)]


def requeue_job_id(env: dict[str, str] | os._Environ = os.environ) -> str:
    """The id `scontrol requeue` needs: this array task (`123_4`), else the job (`123`)."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def requeue(job_id: str) -> str | None:
    """Runs `scontrol requeue JOB_ID`; None when done, else why it failed."""
    try:
        done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol requeue {job_id}: {exc}"
    if done.returncode != 0:
        return f"scontrol requeue {job_id} exited with {done.returncode}: {(done.stderr or done.stdout).strip()}"
    return None


class RequeueOnSignal(Callback):
    """Under Slurm: checkpoint and requeue on `signum` (SIGUSR1), from the training loop."""

    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        self.signum = signal.Signals(signum)
        self.received = False
        self._previous_handler: Any = None
        self._installed = False
        self._seen_step = -1
        self._stopping = False
        self._requeue_id: str | None = None
        # registered before the loggers' exit hooks (wandb's), so it runs after them: the job is
        # requeued (and its processes terminated by Slurm) once everything is written
        atexit.register(self._requeue_at_exit)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = True  # acted on at the end of the current training step

    # -- handler lifetime: the fit only ------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        if stage != "fit" or not isinstance(environment, SLURMEnvironment):
            return
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("lit_tasks: not in the main thread, Slurm preemption signals are not handled")
            return
        self._previous_handler = signal.signal(self.signum, self._on_signal)
        self._installed = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous_handler)
            self._installed = False

    # -- the decision, at the end of a step ---------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen_step = trainer.global_step  # the step a resumed run starts from

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._installed or self._stopping or trainer.global_step == self._seen_step:
            return  # not under Slurm, or inside a gradient accumulation (no optimiser step yet)
        self._seen_step = trainer.global_step
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        if is_final_step(trainer, batch_idx):
            rank_zero_info(f"lit_tasks: {self.signum.name} at the last training step: finishing the run instead")
            return
        path = Path(trainer.default_root_dir) / "checkpoints" / CHECKPOINT_NAME
        trainer.save_checkpoint(path)  # every rank takes part; global rank 0 writes, atomically
        rank_zero_info(f"lit_tasks: {self.signum.name} received: checkpoint of step {trainer.global_step} "
                       f"written to {path}; stopping to be requeued")
        self._stopping = True
        # Lightning's own graceful stop: the loop logs this step, then raises SIGTERMException
        trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._stopping and isinstance(exception, SIGTERMException) and trainer.is_global_zero:
            self._requeue_id = requeue_job_id()  # results.json now says "preempted"

    def _requeue_at_exit(self) -> None:
        if self._requeue_id is None:
            return
        job_id, self._requeue_id = self._requeue_id, None
        print(f"lit_tasks: requeueing job {job_id}; it resumes from checkpoints/{CHECKPOINT_NAME}", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Slurm's SIGTERM to the requeued job: we exit anyway
        problem = requeue(job_id)
        if problem is None:
            print(f"lit_tasks: job {job_id} requeued", flush=True)
            return
        sys.stderr.write(f"lit_tasks: the job could not be requeued ({problem}); resume it by hand with "
                         f"--ckpt_path <run folder>/checkpoints/{CHECKPOINT_NAME}\n")
        sys.stderr.flush()
        os._exit(1)  # the last exit hook to run: nothing is skipped


def is_final_step(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the step just done is the fit's last (then the run just finishes)."""
    if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
        return True
    max_epochs = trainer.max_epochs
    return (max_epochs is not None and max_epochs > 0 and trainer.current_epoch >= max_epochs - 1
            and batch_idx + 1 >= trainer.num_training_batches)
