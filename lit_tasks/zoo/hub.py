"""Reading and writing HF-format model folders: `config.json` plus weights.

Weights come from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`),
or `pytorch_model.bin` (single or sharded), the latter only through
`lit_tasks.safe_load.torch_load` (`weights_only=True`). Nothing here downloads: a folder is a local path.

Loading is strict and checked in HF key names, so errors speak the checkpoint's language:
every tensor is consumed, every parameter filled, every shape matched, or a `LoadError`
lists what is missing, unexpected or mismatched.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from torch import Tensor

from lit_tasks.errors import LoadError
from lit_tasks.safe_load import UnsafeFileError, torch_load
from lit_tasks.zoo.base import Backbone
from lit_tasks.zoo.classifier import ImageClassifier

log = logging.getLogger("lit_tasks")

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)  # in order of preference
HEAD_KEYS = ("classifier.weight", "classifier.bias")


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such model folder; expected a directory holding {CONFIG_FILE} and one of {list(WEIGHT_FILES)}"
        )
    return folder


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LoadError(f"{file}: cannot read it as JSON ({e})") from e
    if not isinstance(data, dict):
        raise LoadError(f"{file}: expected a JSON object, found {type(data).__name__}")
    return data


def read_config(path: str | Path) -> dict:
    """The folder's `config.json` as a dict."""
    folder = _folder(path)
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; an HF-format model folder holds {CONFIG_FILE} and its weights")
    return _read_json(file)


def read_preprocessor_config(path: str | Path) -> dict | None:
    """The folder's `preprocessor_config.json` as a dict, or None when it has none."""
    file = _folder(path) / PREPROCESSOR_FILE
    return _read_json(file) if file.is_file() else None


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
        weight_map = _read_json(file).get("weight_map")
        if not isinstance(weight_map, dict):
            raise LoadError(f"{file}: expected a 'weight_map' object mapping tensor names to shard files")
        state = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise LoadError(f"{file}: lists shard {shard!r}, which is not in {folder}")
            state.update(_load_file(folder / shard))
        return state
    raise FileNotFoundError(f"{folder}: no weights; looked for {list(WEIGHT_FILES)}")


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]"


def _head_mismatch(head: dict[str, Tensor], num_features: int) -> list[str]:
    """The head's shape problems: classifier.weight must be (K, num_features), its bias (K,)."""
    weight, bias = head.get("classifier.weight"), head.get("classifier.bias")
    if weight is None or bias is None:
        return []  # reported as missing
    if weight.ndim == 2 and weight.shape[1] == num_features and tuple(bias.shape) == (weight.shape[0],):
        return []
    return [f"classifier.weight/bias: checkpoint {tuple(weight.shape)}/{tuple(bias.shape)} vs model (K, {num_features})/(K,)"]


def check_weights(
    expected: dict[str, tuple[int, ...]],
    given: dict[str, Tensor],
    folder: str | Path,
    what: str,
    shown_prefix: str = "",
    unexpected: list[str] | None = None,
    missing: list[str] | None = None,
    mismatched: list[str] | None = None,
) -> None:
    """Strict loading's check: every expected tensor given with its shape, nothing left over.

    `expected` maps HF key names to the model's shapes, `given` holds the checkpoint's
    tensors under the same names; `shown_prefix` is put in front of names in the message
    (the checkpoint's own spelling). Extra problems found by the caller can be passed in.
    Raises a LoadError naming the folder and listing missing / unexpected / mismatched keys.
    """
    missing = [*(missing or []), *(shown_prefix + k for k in expected if k not in given)]
    unexpected = [*(unexpected or []), *(shown_prefix + k for k in given if k not in expected)]
    mismatched = [
        *(mismatched or []),
        *(f"{shown_prefix}{k}: checkpoint {tuple(t.shape)} vs model {expected[k]}"
          for k, t in given.items() if k in expected and tuple(t.shape) != expected[k]),
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} {_listing(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise LoadError(f"{Path(folder)}: the weights do not fit {what} (names as in the checkpoint): {'; '.join(problems)}")


def split_weights(
    weights: dict[str, Tensor], prefix: str, head_of: Callable[[str], str | None]
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], list[str], str]:
    """Sort a checkpoint's tensors into the base model's and each head's.

    A task checkpoint keeps the base model under `prefix` (e.g. "vit.") beside its head
    tensors; a base checkpoint has no prefix. `head_of(key)` names the head a key belongs
    to, or None. Returns (base tensors with the prefix removed, {head: tensors}, keys that
    belong nowhere, the prefix as the checkpoint spells base keys: `prefix` or "").
    """
    prefixed = any(k.startswith(prefix) for k in weights)
    base: dict[str, Tensor] = {}
    heads: dict[str, dict[str, Tensor]] = {}
    unexpected: list[str] = []
    for key, tensor in weights.items():
        owner = head_of(key)
        if owner is not None:
            heads.setdefault(owner, {})[key] = tensor
        elif not prefixed:
            base[key] = tensor
        elif key.startswith(prefix):
            base[key[len(prefix):]] = tensor
        else:
            unexpected.append(key)
    return base, heads, unexpected, prefix if prefixed else ""


def load_pretrained(path: str | Path, family: ModuleType, num_classes: int | None = None) -> Backbone | ImageClassifier:
    """Build `family`'s model from the folder's config.json and load its weights strictly.

    A classification checkpoint holds `{HF_BASE_PREFIX}.*` + `classifier.*`, a base one
    unprefixed keys. With `num_classes=None` the result is an ImageClassifier when the
    checkpoint has a head, else a Backbone; a given `num_classes` always gives an
    ImageClassifier, whose head is fresh (and a warning says so) when the checkpoint has
    none or one of another size.
    """
    folder = _folder(path)
    raw_config = read_config(folder)
    config = family.CONFIG.from_hf(raw_config, source=str(folder / CONFIG_FILE))
    as_backbone = getattr(family, "HF_BACKBONE", None) in (raw_config.get("architectures") or [])
    backbone = family.MODEL(config, backbone_norms=True) if as_backbone else family.MODEL(config)
    weights = read_weights(folder)

    base, heads, unexpected, shown_prefix = split_weights(
        weights, family.HF_BASE_PREFIX + ".", lambda key: "classifier" if key in HEAD_KEYS else None
    )
    head = heads.get("classifier", {})
    ignored = [k for k in base if any(re.fullmatch(p, k) for p in family.IGNORED_HF_KEYS)]
    if ignored:
        log.info("%s: ignoring %d tensor(s) the %s model does not use: %s", folder, len(ignored), backbone.family, _listing(ignored))
        for key in ignored:
            del base[key]

    expected = {k: tuple(v.shape) for k, v in family.ours_to_hf(backbone.state_dict()).items()}
    extra_missing = [k for k in HEAD_KEYS if k not in head] if head else []
    extra_mismatched = _head_mismatch(head, backbone.num_features) if head else []
    check_weights(expected, base, folder, f"the {backbone.family} model built from its {CONFIG_FILE}",
                  shown_prefix=shown_prefix, unexpected=unexpected, missing=extra_missing, mismatched=extra_mismatched)
    backbone.load_state_dict(family.hf_to_ours(base), strict=True)

    found = head["classifier.weight"].shape[0] if head else None
    if num_classes is None and found is None:
        return backbone
    model = ImageClassifier(backbone, num_classes or found)
    if num_classes is None or num_classes == found:
        model.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in head.items()})
    else:
        had = f"a {found}-class head" if found else "no classification head"
        message = f"{folder}: the checkpoint has {had}; the {num_classes}-class head is freshly initialised"
        log.warning(message)
        warnings.warn(message, stacklevel=3)
    return model


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
