"""A distributed run that fails, fails everywhere and soon: never a process waiting forever.

- Every collective (and the start-up rendezvous) waits at most ``run.ddp_timeout_minutes``
  for the other processes (:func:`apply_timeout`); past it the waiting process raises.
- When the process that launched the others (``--trainer.devices N``: Lightning starts ranks
  1..N-1 as child processes of rank 0) fails, it ends them (:class:`EndRanksOnFailure`);
  Lightning itself only does so on Ctrl-C. A failing child rank is noticed by Lightning's own
  observer in rank 0, which then ends every process. Under ``torchrun`` its agent does both.
- The CLI prints a failed collective as one paragraph (:func:`failure_message`), naming the
  timeout, instead of a gloo traceback.
- Under ``torchrun`` the processes agree on one run folder through torchrun's store
  (:func:`shared_run_dir`): each would otherwise name its own by the second it started.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from lit_tasks import run_dir as runs
from lit_tasks.errors import ConfigError

DEFAULT_TIMEOUT_MINUTES = 30.0  # torch's own default for gloo
# torch raises gloo's failures (a peer stuck past the timeout, or gone) as plain RuntimeErrors
# naming the gloo source file; NCCL's and the store's as DistError
BACKEND = re.compile(r"gloo|NCCL|ProcessGroup|c10d")


def apply_timeout(strategy: Any, minutes: float) -> None:
    """Sets how long every collective of a DDP/FSDP strategy waits for the other processes:
    the process group is created with it when the fit or test starts. A timeout given in the
    strategy's own config (``trainer.strategy.init_args.timeout``) is kept."""
    if not minutes > 0:
        raise ConfigError(f"run.ddp_timeout_minutes must be positive, got {minutes}")
    default = timedelta(minutes=DEFAULT_TIMEOUT_MINUTES)
    if getattr(strategy, "_timeout", None) == default:  # DDPStrategy, FSDPStrategy, ...: Lightning's default
        strategy._timeout = timedelta(minutes=minutes)


def process_label() -> str:
    """"rank R of W: " in a distributed process, "" otherwise."""
    if dist.is_available() and dist.is_initialized():
        return f"rank {dist.get_rank()} of {dist.get_world_size()}: "
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK"))
    return f"rank {rank}: " if rank is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1 else ""


def failure_message(exc: BaseException) -> str | None:
    """One paragraph for a collective that failed because another process is stuck or gone
    (gloo's and NCCL's errors), or None when `exc` is something else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and BACKEND.search(str(exc))):
            reason = str(exc).strip().splitlines()[0]
            reason = re.sub(r"^\[[^\]]*\] ?", "", reason)  # gloo's source location
            return (f"a collective operation of the distributed run failed ({reason}): another process of the "
                    f"run is stuck or has stopped (its own output says why, when it had a chance to). Every "
                    f"process waits at most run.ddp_timeout_minutes (default {DEFAULT_TIMEOUT_MINUTES:g}) for "
                    f"the others; raise it if a process legitimately works alone that long (e.g. rank 0 "
                    f"preparing data).")
        exc = exc.__cause__ or exc.__context__
    return None


class EndRanksOnFailure(Callback):
    """On the process that started the other ranks (Lightning's subprocess launcher): when the
    command fails, the other ranks get `grace_s` seconds to end by themselves (they usually
    fail the same way), then are killed, and how each ended is printed. SIGKILL: a rank stuck
    in a collective or a deadlock does not act on SIGTERM."""

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        procs: list[subprocess.Popen] = getattr(trainer.strategy.launcher, "procs", None) or []
        # taken over: Lightning's observer (which reads the same list every 5 s) would otherwise
        # SIGKILL this process as soon as it saw a child ended, before it reports its error
        children, procs[:] = list(procs), []
        deadline = time.monotonic() + self.grace_s
        for local_rank, child in enumerate(children, start=1):
            try:
                status = f"exited with status {child.wait(max(0.0, deadline - time.monotonic()))}"
            except subprocess.TimeoutExpired:
                child.kill()
                status = f"was still running {self.grace_s:g} s after this failure: killed (status {child.wait()})"
            sys.stderr.write(f"lit_tasks: local rank {local_rank} {status}\n")


def shared_run_dir(resolve: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """`resolve()` (:func:`lit_tasks.run_dir.resolve`) in every process of the run, all of them
    getting global rank 0's folder. Lightning's launcher passes it to the ranks it starts in
    the environment, Slurm's job id names it; under torchrun rank 0 publishes it in the store
    that torchrun's agent keeps for the run (MASTER_ADDR:MASTER_PORT)."""
    if runs.ENV_VAR in os.environ or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" \
            or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return resolve()
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(minutes=DEFAULT_TIMEOUT_MINUTES))
    key = f"lit_tasks/run_dir/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(os.environ["RANK"]) == 0:
        try:
            resolved = resolve()
        except BaseException:
            store.set(key, "")  # the others resolve by themselves and fail the same way
            raise
        store.set(key, str(resolved[0]))
        return resolved
    chosen = store.get(key).decode()
    if chosen:
        os.environ[runs.ENV_VAR] = chosen
    return resolve()

