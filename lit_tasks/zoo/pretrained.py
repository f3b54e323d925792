"""The one loader and saver of HF-format folders, for every family and head of the registry.

`from_pretrained(folder, head, num_labels)` builds the family's `head` model from config.json
and loads the weights strictly, in the checkpoint's key names, so that every tensor is used
or explicitly set aside and every parameter is filled or explicitly fresh:

- the base model loads strictly; a head checkpoint keeps it under `HF_BASE_PREFIX.`, a base
  one (or a sentence-transformers one) without the prefix;
- tensors of other heads, IGNORED_HF_KEYS and optional base parts the model lacks are dropped (logged);
- a part of the requested head the checkpoint lacks (or that config.json's "architectures"
  says belongs to another head), an optional base part it lacks, and an output layer of
  another size than `num_labels` are freshly initialised, each with a warning;
- tensors a checkpoint repeats (a tied decoder) must equal the tensor they repeat.

`save_pretrained(model, folder)` writes any zoo model so that `transformers` loads it.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo.base import Head
from lit_tasks.zoo.hub import CONFIG_FILE, check_weights, listing, read_config, read_weights, write_folder
from lit_tasks.zoo.registry import REGISTRY, base_of, build_head, detect_family, head_of, output_size

log = logging.getLogger("lit_tasks")


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, stacklevel=3)


def _renamed(weights: dict[str, Tensor], family: ModuleType, folder: str | Path) -> dict[str, Tensor]:
    """The checkpoint's tensors with older HF spellings (the family's HF_RENAMES) made current."""
    renames = getattr(family, "HF_RENAMES", ())
    out = {}
    for key, tensor in weights.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        out[key] = tensor
    if list(out) != list(weights):
        log.info("%s: read older HF tensor names (%s)", folder, ", ".join(p for p, _ in renames))
    return out


def _named_head(family: ModuleType, raw: dict) -> str | None:
    """The head config.json's "architectures" names, if the family has it."""
    by_architecture = {record.architecture: head for head, record in family.HEADS.items()}
    return next((by_architecture[a] for a in raw.get("architectures") or [] if a in by_architecture), None)


@dataclass
class _Checkpoint:
    """A checkpoint's tensors (HF names) sorted for one head: `base` (the base model's, without
    `shown`, the prefix as the checkpoint spells base keys), `own` (the head's), `dropped` (other
    heads' and ignored ones) and `unexpected` (the rest); `foreign`: the head's parts that
    config.json says belong to another head of the family."""

    shown: str
    foreign: set[str]
    base: dict[str, Tensor] = field(default_factory=dict)
    own: dict[str, Tensor] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _sort(weights: dict[str, Tensor], family: ModuleType, record: Head, named: str | None) -> _Checkpoint:
    prefix = family.HF_BASE_PREFIX + "."
    other = family.HEADS[named].parts if named and family.HEADS[named] is not record else ()
    found = _Checkpoint(prefix if any(k.startswith(prefix) for k in weights) else "",
                        {p for p in record.parts if p in other})
    all_parts = tuple(p for r in family.HEADS.values() for p in r.parts)
    ignored = getattr(family, "IGNORED_HF_KEYS", ())
    for key, tensor in weights.items():
        if key.startswith(record.parts) and not key.startswith(tuple(found.foreign)):
            found.own[key] = tensor
        elif key.startswith(all_parts) or (key.startswith(found.shown) and
                                            any(re.fullmatch(p, key[len(found.shown):]) for p in ignored)):
            found.dropped.append(key)
        elif key.startswith(found.shown):
            found.base[key[len(found.shown):]] = tensor
        else:
            found.unexpected.append(key)
    return found


def _output_size(record: Head, found: _Checkpoint, num_labels: int | None, config, raw: dict, where: str) -> int | None:
    """The output layer's size: `num_labels`, else the checkpoint's, else config.json's."""
    if record.output is None:
        if num_labels is not None:
            raise ConfigError(f"{where}: num_labels is for a head with an output layer; this one has none")
        return None
    in_checkpoint = found.own.get(f"{record.output}.weight")
    size = num_labels or (in_checkpoint.shape[0] - record.extra_outputs if in_checkpoint is not None else None)
    if not size and not found.foreign:
        size = getattr(config, record.size_field, None)
        if size is None and record.size_field == "num_labels":  # HF's num_labels: the label names
            size = len(raw.get("id2label") or {}) or None
    if not size:
        raise ConfigError(f"{where}: neither the checkpoint's {record.output} nor {CONFIG_FILE} gives "
                          f"{record.size_field}; pass num_labels")
    return size


def _fresh_head_parts(record: Head, found: _Checkpoint, expected: dict, size: int | None, raw: dict) -> dict[str, str]:
    """{HF prefix: why} of the head's parts that stay freshly initialised."""
    fresh = {}
    for part in record.parts:
        if not any(k.startswith(part) for k in expected):
            continue  # a part this model does not have (e.g. unused layer weights)
        if part in found.foreign:
            fresh[part] = f"{CONFIG_FILE} says its {part.rstrip('.')} belongs to {raw['architectures']}"
        elif not any(k.startswith(part) for k in found.own):
            fresh[part] = "the checkpoint has none"
    weight = found.own.get(f"{record.output}.weight") if record.output else None
    saved = weight.shape[0] - record.extra_outputs if weight is not None else None
    if weight is not None and saved != size and not f"{record.output}.".startswith(tuple(fresh)):
        field_ = record.size_field
        fresh[f"{record.output}."] = (f"the checkpoint's {record.output} has {field_}={saved}, "
                                      f"the model's {field_}={size}")
    return fresh


def _fresh_base_parts(optional: dict[str, str], expected: dict, found: _Checkpoint) -> dict[str, str]:
    """{HF prefix: why} of the optional base parts the model has and the checkpoint lacks; those
    the checkpoint has and the model lacks are moved to `found.dropped`."""
    fresh = {}
    for part in optional:
        in_model, in_checkpoint = (any(k.startswith(part) for k in d) for d in (expected, found.base))
        if in_model and not in_checkpoint:
            fresh[part] = "the checkpoint has none"
        elif in_checkpoint and not in_model:
            found.dropped += [found.shown + k for k in found.base if k.startswith(part)]
            found.base = {k: v for k, v in found.base.items() if not k.startswith(part)}
    return fresh


def _check_tied(record: Head, found: _Checkpoint, weights: dict[str, Tensor], prefix: str, where: str) -> None:
    """Take the repeated (tied) tensors out of the head's, checking that each equals its original."""
    for key, source in record.tied:
        if key in found.own:
            tensor = found.own.pop(key)
            source = found.shown + source.removeprefix(prefix) if source.startswith(prefix) else source
            if source in weights and not torch.equal(tensor, weights[source]):
                raise LoadError(f"{where}: {key} differs from {source}, which it is tied to")


def from_pretrained(path: str | Path, head: str | None = None, num_labels: int | None = None) -> nn.Module:
    """Build the `head` model of the folder's family (config.json's `model_type`) and load it.

    `head` defaults to the one config.json's "architectures" names when the checkpoint holds
    its tensors (a classifier folder gives a classifier), else "base". `num_labels` sizes the
    head's output layer (classes, labels or the CTC vocabulary); by default the checkpoint's.
    """
    folder = Path(path)
    return from_tensors(detect_family(folder), read_config(folder), read_weights(folder), folder, head, num_labels)


def from_tensors(name: str, raw: dict, weights: dict[str, Tensor], folder: str | Path, head: str | None = None,
                 num_labels: int | None = None) -> nn.Module:
    """`from_pretrained` of a folder already read: family `name`, config.json's content `raw` and
    the tensors in HF names; `folder` names where they came from in messages."""
    family = REGISTRY[name]
    config = family.CONFIG.from_hf(raw, source=str(Path(folder) / CONFIG_FILE))
    weights = _renamed(weights, family, folder)
    named = _named_head(family, raw)
    if head is None:  # a head whose parts are all tied copies (GPT-2's LM head) may have none in its checkpoint
        parts = family.HEADS[named].parts if named else ()
        untied = [p for p in parts if not any(t.startswith(p) for t, _ in family.HEADS[named].tied)]
        head = named if named and (not untied or any(k.startswith(parts) for k in weights)) else "base"
    if head not in family.HEADS:
        raise ConfigError(f"{folder}: a {name} model has no head {head!r}; its heads are {sorted(family.HEADS)}")
    record = family.HEADS[head]
    found = _sort(weights, family, record, named)
    size = _output_size(record, found, num_labels, config, raw, f"{folder} ({name} {head})")
    model = build_head(name, head, config, size, source=str(folder))
    what = type(model).__name__
    attr, base_model = base_of(model, family)
    optional = getattr(family, "OPTIONAL_HF_PARTS", {})
    if not attr:  # a base model goes without the optional parts its checkpoint lacks
        for part, module in optional.items():
            if not any(k.startswith(part) for k in found.base):
                setattr(model, module, None)
                log.info("%s: no %s tensors; the %s has no %s", folder, found.shown + part.rstrip("."), what, module)

    # What the model expects (HF names) but for its parts that stay fresh, each with a warning.
    expected_base = {k: tuple(v.shape) for k, v in family.ours_to_hf(base_model.state_dict()).items()}
    head_state = {k: v for k, v in model.state_dict().items() if attr and not k.startswith(attr + ".")}
    expected_head = {k: tuple(v.shape) for k, v in family.ours_to_hf(head_state).items()}
    fresh_base = tuple(_fresh_base_parts(optional, expected_base, found).items())
    fresh = tuple(_fresh_head_parts(record, found, expected_head, size, raw).items())
    for part, why in [*((found.shown + p, w) for p, w in fresh_base), *fresh]:
        _warn(f"{folder}: {part.rstrip('.')} of {what} is freshly initialised: {why}")
    fresh_prefixes, fresh_base_prefixes = tuple(p for p, _ in fresh), tuple(p for p, _ in fresh_base)
    found.dropped += [k for k in found.own if k.startswith(fresh_prefixes)]
    found.own = {k: v for k, v in found.own.items() if not k.startswith(fresh_prefixes)}
    _check_tied(record, found, weights, family.HF_BASE_PREFIX + ".", str(folder))
    if found.dropped:
        log.info("%s: the %s does not use %d tensor(s): %s", folder, what, len(found.dropped), listing(found.dropped))

    expected = {found.shown + k: s for k, s in expected_base.items() if not k.startswith(fresh_base_prefixes)}
    expected.update({k: s for k, s in expected_head.items() if not k.startswith(fresh_prefixes)})
    given = {**{found.shown + k: v for k, v in found.base.items()}, **found.own}
    check_weights(expected, given, folder, f"{what} built from its {CONFIG_FILE}", unexpected=found.unexpected)
    state = model.state_dict()  # fresh parts keep their initialisation
    state.update({(attr + "." if attr else "") + k: v for k, v in family.hf_to_ours(found.base).items()})
    state.update(family.hf_to_ours(found.own))
    model.load_state_dict(state, strict=True)
    return model


def hf_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The tensors of a zoo `model` under the names of its HF class (what save_pretrained writes)."""
    name, _ = head_of(model)
    family = REGISTRY[name]
    attr, base_model = base_of(model, family)
    tensors = family.ours_to_hf(base_model.state_dict())
    if not attr:
        return tensors
    head_state = {k: v for k, v in model.state_dict().items() if not k.startswith(attr + ".")}
    return {**{f"{family.HF_BASE_PREFIX}.{k}": v for k, v in tensors.items()}, **family.ours_to_hf(head_state)}


def save_pretrained(model: nn.Module, out_dir: str | Path, label_names: list[str] | None = None,
                    preprocessor: dict | None = None) -> Path:
    """Write a zoo `model` as an HF-format folder that `transformers`' Auto classes load:
    config.json (with its HF class and, for label heads, the label names as id2label),
    model.safetensors and, given, preprocessor_config.json."""
    name, head = head_of(model)
    record = REGISTRY[name].HEADS[head]
    config = {**model.config.to_hf(), "architectures": [record.architecture]}
    if record.size_field == "num_labels":
        size = output_size(model, record)
        names = label_names if label_names is not None else [f"LABEL_{i}" for i in range(size)]
        if len(names) != size:
            raise ValueError(f"save_pretrained: {len(names)} label_names for a {size}-label {type(model).__name__}")
        config["id2label"] = {str(i): label for i, label in enumerate(names)}
        config["label2id"] = {label: i for i, label in enumerate(names)}
    elif label_names is not None:
        raise ValueError(f"save_pretrained: label_names given for a {type(model).__name__}, which has no labels")
    return write_folder(out_dir, config, hf_state_dict(model), preprocessor)
