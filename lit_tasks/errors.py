"""Errors that mean "the user's input is wrong", as opposed to a bug in lit_tasks.

The CLI prints these as one paragraph, without a traceback, and exits with status 2.
Each message names the culprit (file, row, field or config key) and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value we cannot honour: ours or an HF `config.json`'s, a CLI option's."""


class LoadError(ValueError):
    """Weights that do not fit the model they are loaded into."""


class DataError(ValueError):
    """Unreadable or inconsistent data: a corrupt image, a missing column, an unknown label."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, or holds another model than the config builds."""


class UnsafeFileError(ValueError):
    """A torch file that holds more than tensors and plain data: refused, never executed
    (`lit_tasks.safe_load`)."""


class SweepError(ValueError):
    """A sweep file or sweep command line that cannot be run: names the file and the key."""


USER_ERRORS = (ConfigError, LoadError, DataError, CheckpointError, SweepError, UnsafeFileError)


class TrainingError(RuntimeError):
    """The input was fine but the run cannot go on, e.g. a non-finite training loss. The CLI
    prints it as one paragraph too, with exit status 1 (not 2: there is no typo to fix)."""


def find_user_error(exc: BaseException) -> BaseException | None:
    """Our user error behind `exc`: itself, or the cause of a wrapper (jsonargparse wraps errors
    raised while it builds the classes). A DataLoader worker re-raises ours as the same type."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def user_message(exc: BaseException) -> str:
    """The paragraph to show: the error text, without a worker's re-raised traceback."""
    text = str(exc)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the last line
        lines = [line for line in text.strip().splitlines() if line.strip()]
        last = lines[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def read_json_object(file: str | Path, what: str, error: type[ValueError] = DataError) -> dict[str, Any]:
    """The JSON object in `file`. A file that cannot be read, invalid JSON or another JSON value
    (a list, a string) is an `error` naming the file and `what` it should hold ("a COCO
    instances object")."""
    try:
        value = json.loads(Path(file).read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"{file}: cannot be read ({e.strerror or e}); expected {what}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{file}: not valid JSON ({e}); expected {what}.") from None
    if not isinstance(value, dict):
        raise error(f"{file} holds a JSON {type(value).__name__}; expected {what}.")
    return value
