"""The run's loggers: wandb (offline unless an API key is set) and a CSV file."""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

LOGGER_NAMES = ("wandb", "csv")


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline() -> bool:
    """WANDB_MODE decides when set; otherwise offline unless credentials exist."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun")
    return not wandb_has_credentials()


def build_loggers(names: list[str], run_dir: Path, run_name: str, project: str) -> list[Logger]:
    """Loggers writing into the run folder. A resumed run continues its wandb run (same id)."""
    loggers: list[Logger] = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(save_dir=str(run_dir), name="logs", version=""))
        elif name == "wandb":
            id_file = run_dir / "wandb_run_id"
            if os.environ.get("WANDB_RUN_ID"):  # a wandb agent (sweep) chose the run
                run_id = os.environ["WANDB_RUN_ID"]
            elif id_file.is_file():
                run_id = id_file.read_text().strip()
            else:
                run_id = secrets.token_hex(6)
                if rank_zero_only.rank == 0:
                    id_file.write_text(run_id + "\n")
            loggers.append(WandbLogger(save_dir=str(run_dir), project=project, name=run_name, id=run_id,
                                       offline=wandb_offline(), resume="allow"))
        else:
            raise ValueError(f"run.loggers: unknown logger {name!r}; choose from {LOGGER_NAMES}")
    return loggers
