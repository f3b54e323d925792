"""Stopping a fit on a signal: checkpoint at the end of the step, and under Slurm requeue.

Two signals stop a fit this way:

- SIGTERM, always: what `kill`, a container runtime, a cluster's preemption and Slurm's end of
  a job send (Slurm: SIGTERM when the time limit is reached, a job is preempted or cancelled,
  then SIGKILL after `KillWait`, 30 s by default);
- the Slurm requeue signal SIGUSR1, under Slurm (`#SBATCH --signal=USR1@90`: 90 s before the
  time limit, or `scancel --signal=USR1 JOBID`).

Then, in every process of the job:

1. the signal handler only sets a flag (nothing unsafe runs inside a handler); during the fit
   it replaces Lightning's SIGTERM handler, which would stop each rank after whichever step it
   is in and broadcast from inside the handler;
2. at the end of the next training step that stepped the optimiser (with gradient
   accumulation: after the accumulated batches) the ranks agree whether any of them was
   signalled (one all-reduce of a boolean per step), so they all stop at the same step;
3. all ranks write `checkpoints/preempted.ckpt` with `trainer.save_checkpoint`: the same
   complete state as any checkpoint (loops, sampler position, RNG states, see
   :mod:`lit_tasks.callbacks.resume`), written atomically by
   :class:`lit_tasks.checkpoint_io.AtomicCheckpointIO`; `--ckpt_path last` resumes from it
   (it is the newer of last.ckpt and preempted.ckpt);
4. training stops through Lightning's own graceful stop: the loop logs the step, then raises
   ``SIGTERMException``; results.json says ``"status": "preempted"`` with the signal, the step,
   the checkpoint and the requeue decision under ``"stops"``; no test runs;
5. global rank 0 decides whether the job is requeued (:func:`requeue_decision`): only a Slurm
   batch job, at most `--run.max_requeues` times (counted by ``SLURM_RESTART_COUNT``), and on a
   SIGTERM only when Slurm is not ending the job for good (a job still running, or ending at
   its time limit or by preemption, is requeued; one being cancelled with `scancel` is not).
   When the process exits (after the loggers' exit hooks), it runs ``scontrol requeue JOBID``
   (``ARRAYJOBID_TASKID`` for a job array task, never the whole array); Slurm ends the job and
   queues it again with the same job id. The exit status is 0 when requeued, else
   128 + the signal (143 for SIGTERM), so a script sees that the fit did not finish
   (143 too for a validate, test or predict stopped by SIGTERM, which Lightning handles).

A signal at the fit's last step is ignored (the run just finishes), as is one during the final
validation or test. One that arrives while validating during the fit is acted on at the end of
the next training step; one before training starts (loading, sanity check) stops the fit
without a new checkpoint (the previous one is the resume point) and is requeued the same way.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lit_tasks.errors import ConfigError

CHECKPOINT_NAME = "preempted.ckpt"
DEFAULT_MAX_REQUEUES = 10
# Slurm's reasons for ending a job after which the job should run on: `scontrol show job` says
# JobState=COMPLETING while the job ends, and Reason=TimeLimit at the time limit (Reason=None
# when it was cancelled with scancel)
REQUEUE_REASONS = ("TimeLimit", "Preempted")


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


def slurm_job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job JOB_ID` as {field: value}; empty when Slurm does not answer."""
    try:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(part.split("=", 1) for part in shown.stdout.split() if "=" in part) if shown.returncode == 0 else {}


def requeue_decision(signum: int, max_requeues: int | None, env: Mapping[str, str] = os.environ,
                     job_fields: Callable[[str], dict[str, str]] = slurm_job_fields) -> tuple[str | None, str]:
    """Whether a Slurm job whose fit `signum` stopped is requeued: (the id to requeue, what
    happens) or (None, why not). Called on global rank 0 once the checkpoint is written."""
    job_id = requeue_job_id(env) if env.get("SLURM_JOB_ID") else None
    if job_id is None:
        return None, "not a Slurm job, so not requeued: resume with --ckpt_path last"
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    if max_requeues is not None and restarts >= max_requeues:
        return None, (f"job {job_id} was already restarted {restarts} time(s), the most --run.max_requeues "
                      f"({max_requeues}) allows, so it is not requeued again (a job stopped on every attempt would "
                      f"otherwise run forever): resume it with --ckpt_path last, or raise --run.max_requeues")
    if signum == signal.SIGTERM:
        fields = job_fields(job_id)
        state, reason = fields.get("JobState"), fields.get("Reason")
        if state not in (None, "RUNNING") and not any(reason and reason.startswith(r) for r in REQUEUE_REASONS):
            return None, (f"Slurm is ending job {job_id} (JobState={state}, Reason={reason}): it was cancelled "
                          f"(scancel), not stopped by its time limit or a preemption, so it is not requeued: resume "
                          f"with --ckpt_path last")
    limit = "" if max_requeues is None else f" of at most {max_requeues}"
    return job_id, f"job {job_id} is requeued (restart {restarts + 1}{limit}) and resumes from its newest checkpoint"


class RequeueOnSignal(Callback):
    """Checkpoint at the end of the step and stop on SIGTERM, and under Slurm on `signum`
    (SIGUSR1) too; requeue the Slurm job (at most `max_requeues` times, None: no limit)."""

    def __init__(self, signum: int = signal.SIGUSR1, max_requeues: int | None = DEFAULT_MAX_REQUEUES) -> None:
        if max_requeues is not None and max_requeues < 0:
            raise ConfigError(f"run.max_requeues must be 0 or more, or null for no limit (got {max_requeues})")
        self.signum = signal.Signals(signum)
        self.max_requeues = max_requeues
        self.received = False
        self.signal: signal.Signals | None = None  # the first stop signal this process received
        self._previous: dict[signal.Signals, Any] = {}
        self._slurm = False
        self._seen_step = -1
        self._stopping = False
        self._checkpoint: Path | None = None
        self._report: dict[str, Any] | None = None
        self._requeue_id: str | None = None
        # registered before the loggers' exit hooks (wandb's), so it runs after them: the job is
        # requeued (and its processes terminated by Slurm) once everything is written
        atexit.register(self._requeue_at_exit)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.received:  # acted on at the end of the current training step
            self.received, self.signal = True, signal.Signals(signum)

    # -- handler lifetime: the fit only ------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("lit_tasks: not in the main thread, stop signals (SIGTERM, Slurm's) are not handled")
            return
        self._slurm = isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
        for signum in dict.fromkeys([signal.SIGTERM, *([self.signum] if self._slurm else [])]):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _take_sigterm_back(self) -> None:
        """Lightning installs its SIGTERM handler after `setup`; during the fit ours alone decides."""
        if signal.SIGTERM in self._previous:
            signal.signal(signal.SIGTERM, self._on_signal)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore()

    # -- the decision, at the end of a step ---------------------------------------------------
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_sigterm_back()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_sigterm_back()
        self._seen_step = trainer.global_step  # the step a resumed run starts from

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._previous or self._stopping or trainer.global_step == self._seen_step:
            return  # handlers not installed, or inside a gradient accumulation (no optimiser step yet)
        self._seen_step = trainer.global_step
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        name = self.signal.name if self.signal else "a stop signal (to another rank)"
        if is_final_step(trainer, batch_idx):
            rank_zero_info(f"lit_tasks: {name} at the last training step: finishing the run instead")
            return
        path = Path(trainer.default_root_dir) / "checkpoints" / CHECKPOINT_NAME
        trainer.save_checkpoint(path, weights_only=False)  # every rank takes part; global rank 0 writes, atomically
        self._checkpoint = path
        rank_zero_info(f"lit_tasks: {name} received: checkpoint of step {trainer.global_step} written to {path}; "
                       f"stopping")
        self._stopping = True
        # Lightning's own graceful stop: the loop logs this step, then raises SIGTERMException
        trainer._signal_connector.received_sigterm = True

    def stop_report(self, trainer: L.Trainer) -> dict[str, Any] | None:
        """What stopped the fit, for results.json: signal, step, checkpoint and (global rank 0)
        the requeue decision, made once; None when no stop signal was received."""
        if not self.received and not self._stopping:
            return None
        if self._report is None:
            signum = self.signal or signal.SIGTERM
            report: dict[str, Any] = {"signal": self.signal.name if self.signal else None, "step": trainer.global_step,
                                      "checkpoint": str(self._checkpoint) if self._checkpoint else None}
            if trainer.is_global_zero:
                if self._slurm:
                    self._requeue_id, report["requeue"] = requeue_decision(signum, self.max_requeues)
                else:
                    report["requeue"] = "not a Slurm job, so not requeued: resume with --ckpt_path last"
                report["requeued"] = self._requeue_id is not None
            self._report = report
        return self._report

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if not isinstance(exception, SIGTERMException):
            return
        if not (self._stopping or self.received):  # Lightning's own SIGTERM stop (validate, test, predict)
            exception.code = 128 + signal.SIGTERM
            return
        report = self.stop_report(trainer)
        if not trainer.is_global_zero:
            return
        signum = self.signal or signal.SIGTERM
        exception.code = 0 if self._requeue_id else 128 + signum  # SIGTERMException is a SystemExit
        if self._requeue_id is None:
            where = (f"checkpoint of step {report['step']}: {report['checkpoint']}" if report["checkpoint"]
                     else "stopped before training began: no new checkpoint")
            sys.stderr.write(f"lit_tasks: stopped by {signum.name} ({where}); {report['requeue']}\n")
            sys.stderr.flush()

    def _requeue_at_exit(self) -> None:
        if self._requeue_id is None:
            return
        job_id, self._requeue_id = self._requeue_id, None
        print(f"lit_tasks: requeueing job {job_id}; it resumes from its newest checkpoint", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Slurm's SIGTERM to the requeued job: we exit anyway
        problem = requeue(job_id)
        if problem is None:
            print(f"lit_tasks: job {job_id} requeued", flush=True)
            return
        sys.stderr.write(f"lit_tasks: the job could not be requeued ({problem}); resume it by hand with "
                         f"--ckpt_path last (--run.dir <run folder>)\n")
        sys.stderr.flush()
        os._exit(1)  # the last exit hook to run: nothing is skipped


def is_final_step(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the step just done is the fit's last (then the run just finishes)."""
    if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
        return True
    max_epochs = trainer.max_epochs
    return (max_epochs is not None and max_epochs > 0 and trainer.current_epoch >= max_epochs - 1
            and batch_idx + 1 >= trainer.num_training_batches)
