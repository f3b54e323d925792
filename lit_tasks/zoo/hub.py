"""Reading and writing HF-format model folders: `config.json` plus weights.

Weights come from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`),
or `pytorch_model.bin` (single or sharded), the latter only through
`lit_tasks.safe_load.torch_load` (`weights_only=True`). Nothing here downloads: a folder is a local path.

`check_weights` is strict loading's check, in HF key names so that errors speak the
checkpoint's language; `lit_tasks.zoo.pretrained` builds models from these folders.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from lit_tasks.errors import LoadError, read_json_object
from lit_tasks.safe_load import UnsafeFileError, torch_load

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)  # in order of preference


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such model folder; expected a directory holding {CONFIG_FILE} and one of {list(WEIGHT_FILES)}"
        )
    return folder


def read_config(path: str | Path) -> dict:
    """The folder's `config.json` as a dict."""
    folder = _folder(path)
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; an HF-format model folder holds {CONFIG_FILE} and its weights")
    return read_json_object(file, "a model config object", LoadError)


def read_preprocessor_config(path: str | Path) -> dict | None:
    """The folder's `preprocessor_config.json` as a dict, or None when it has none."""
    file = _folder(path) / PREPROCESSOR_FILE
    return read_json_object(file, "a preprocessor config object", LoadError) if file.is_file() else None


def _load_file(file: Path) -> dict[str, Tensor]:
    try:
        if file.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(file, device="cpu")
        state = torch_load(file)
    except UnsafeFileError:
        raise
    except Exception as e:  # a truncated or foreign file: name it
        raise LoadError(f"{file}: cannot read the weights ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise LoadError(f"{file}: expected a flat dict of tensors (a state_dict)")
    return state


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """All tensors of the folder, by HF key name, from the first weight file found."""
    folder = _folder(path)
    for name in WEIGHT_FILES:
        file = folder / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return _load_file(file)
        weight_map = read_json_object(file, "a safetensors index object", LoadError).get("weight_map")
        if not isinstance(weight_map, dict):
            raise LoadError(f"{file}: expected a 'weight_map' object mapping tensor names to shard files")
        state = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise LoadError(f"{file}: lists shard {shard!r}, which is not in {folder}")
            state.update(_load_file(folder / shard))
        return state
    raise FileNotFoundError(f"{folder}: no weights; looked for {list(WEIGHT_FILES)}")


def listing(keys: list[str], limit: int = 12) -> str:
    """`keys` for a message: the first `limit` of them and how many more."""
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]"


def check_weights(expected: dict[str, tuple[int, ...]], given: dict[str, Tensor], folder: str | Path, what: str,
                  unexpected: list[str] | None = None) -> None:
    """Strict loading's check: every expected tensor given with its shape, nothing left over.

    `expected` maps tensor names to the model's shapes, `given` holds the checkpoint's tensors
    under the same names (the checkpoint's own spelling); `unexpected` adds keys the caller
    found to belong nowhere. Raises a LoadError naming the folder and listing missing /
    unexpected / mismatched keys.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [*(unexpected or []), *(k for k in given if k not in expected)]
    mismatched = [f"{k}: checkpoint {tuple(t.shape)} vs model {expected[k]}"
                  for k, t in given.items() if k in expected and tuple(t.shape) != expected[k]]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} {listing(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise LoadError(f"{Path(folder)}: the weights do not fit {what} (names as in the checkpoint): {'; '.join(problems)}")


def write_json(folder: str | Path, name: str, data: dict) -> Path:
    """Write `data` as `folder/name`, indented with sorted keys (the HF folder files' style)."""
    file = Path(folder) / name
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return file


def write_folder(out_dir: str | Path, config: dict, tensors: dict[str, Tensor], preprocessor: dict | None = None) -> Path:
    """Write `config.json`, `model.safetensors` (and `preprocessor_config.json`) to `out_dir`."""
    from safetensors.torch import save_file

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder, CONFIG_FILE, config)
    # safetensors wants each tensor to own its memory (no views of a fused qkv).
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, folder / SAFETENSORS_FILE, metadata={"format": "pt"})
    if preprocessor is not None:
        write_json(folder, PREPROCESSOR_FILE, preprocessor)
    return folder
