"""The HF `preprocessor_config.json` of a checkpoint, as the image and audio data read it.

Kept free of Lightning, like the Dataset modules that import it (DataLoader workers started by
spawn or a fork server import them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lit_tasks.errors import DataError, read_json_object
from lit_tasks.safe_load import checkpoint_entry

log = logging.getLogger(__name__)

PREPROCESSOR_FILE = "preprocessor_config.json"


def read_preprocessor_json(path: str, instead: str) -> tuple[dict[str, Any], Path | None]:
    """(the HF `preprocessor_config.json` as a dict, its path) for a checkpoint folder, the JSON
    itself, a file in the folder, or a lit_tasks .ckpt (no path; the CLI links `model.init_from` here).

    A folder without the JSON logs a warning saying what is used `instead` and gives ({}, None);
    a path that does not exist, invalid JSON or a non-object is a DataError.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise DataError(
            f"preprocessor: {given} does not exist; expected a checkpoint folder holding {PREPROCESSOR_FILE}, "
            "or the JSON file itself."
        )
    if given.is_file() and given.suffix == ".ckpt":  # a lit_tasks checkpoint stores the dict
        config = (checkpoint_entry(given) or {}).get("preprocessor")
        if not config:
            log.warning("preprocessor: the checkpoint %s stores no %s; using %s.", given, PREPROCESSOR_FILE, instead)
        return config or {}, None
    folder = given if given.is_dir() else given.parent
    file = given if given.suffix == ".json" else folder / PREPROCESSOR_FILE
    if not file.is_file():
        log.warning("preprocessor: %s has no %s; using %s.", given, PREPROCESSOR_FILE, instead)
        return {}, None
    return read_json_object(file, "a preprocessor config object"), file
