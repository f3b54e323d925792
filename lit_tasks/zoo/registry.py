"""The registry of model families, and what is built from it: presets, specs, model lookup.

A family is one module (`vit.py`, `bert.py`, ...) that declares, at module level:

    MODEL_TYPE      the HF config.json `model_type`, also its key in REGISTRY
    MODALITY        "image", "text" or "audio": which tasks can use it
    CONFIG          the config dataclass: `CONFIG.from_hf(dict, source)` (every key honoured or
                    rejected by name, see `base.config_from_dict`) and `config.to_hf()`
    PRESETS         {name: CONFIG(...)}, each citing the HF config.json it mirrors
    MODEL           the base model class, `MODEL(config)`
    HF_BASE_PREFIX  where a head checkpoint keeps the base model ("bert" -> "bert.*")
    hf_to_ours      HF tensor names -> ours (a base model's keys, and head keys at the top level)
    ours_to_hf      its inverse
    HEADS           {head name: base.Head}, "base" (the base model) among them
    BLOCKS          the repeated block classes (activation checkpointing, compile, FSDP units)

and, where it needs them:

    IGNORED_HF_KEYS    regexes of base-model tensors of HF's that we do not build (dropped, logged)
    HF_RENAMES         (regex, replacement) pairs from older HF spellings to the current ones
    OPTIONAL_HF_PARTS  {HF prefix: our attribute}: base-model parts a checkpoint may lack

Nothing else: loading and saving HF folders is `lit_tasks.zoo.pretrained`, for every family.
Registering a family is adding it to REGISTRY (docs/adding_a_family.md has the checklist).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import bart, bert, convnext, detr, gpt2, mbart, resnet, t5, vit, wav2vec2
from lit_tasks.zoo.base import Head
from lit_tasks.zoo.hub import read_config

REGISTRY: dict[str, ModuleType] = {"vit": vit, "convnext": convnext, "bert": bert, "wav2vec2": wav2vec2, "gpt2": gpt2,
                                   "bart": bart, "mbart": mbart, "t5": t5, "resnet": resnet,
                                   "detr": detr}

# Every preset of every family: name -> (family, config).
PRESETS: dict[str, tuple[str, Any]] = {
    preset: (name, config) for name, family in REGISTRY.items() for preset, config in family.PRESETS.items()
}


def get_family(name: str, source: str = "model spec") -> ModuleType:
    """The registered family `name`, or a ConfigError naming `source` and the registered ones."""
    if name not in REGISTRY:
        raise ConfigError(f"{source}: unknown model family {name!r}; supported families are {sorted(REGISTRY)}")
    return REGISTRY[name]


def detect_family(path: str | Path) -> str:
    """The family of an HF-format folder, from its config.json `model_type`."""
    model_type = read_config(path).get("model_type")
    if model_type not in REGISTRY:
        raise ConfigError(
            f"{Path(path)}: config.json has model_type {model_type!r}, which the zoo does not support; "
            f"supported model types are {sorted(REGISTRY)}"
        )
    return model_type


def base_of(model: nn.Module, module: ModuleType) -> tuple[str, nn.Module] | None:
    """(attribute, base model) inside `model`: ("", model) for a base model, ("bert", model.bert)
    for a head on one; None when `model` holds no base model of the family `module`."""
    if isinstance(model, module.MODEL):
        return "", model
    return next(((name, child) for name, child in model.named_children() if isinstance(child, module.MODEL)), None)


def head_of(model: nn.Module) -> tuple[str, str]:
    """(family, head) of a zoo model, recognised by its class and its base model."""
    for name, module in REGISTRY.items():
        for head, record in module.HEADS.items():
            if type(model) is record.model and base_of(model, module) is not None:
                return name, head
    raise TypeError(f"{type(model).__name__} is not a model of the zoo's registry (families {sorted(REGISTRY)})")


def build_head(name: str, head: str, config: Any, size: int | None = None, source: str = "model spec") -> nn.Module:
    """The `head` model of family `name` on `config`, randomly initialised. `size` sizes the
    output layer (default: the config field that sizes it); heads without one take none."""
    record = get_family(name, source).HEADS.get(head)
    if record is None:
        raise ConfigError(f"{source}: a {name} model has no head {head!r}; its heads are {sorted(REGISTRY[name].HEADS)}")
    if record.output is None:
        if size is not None:
            raise ConfigError(f"{source}: num_labels is {size}, but the {name} {head} model has no output layer to size")
        return record.make(config)
    size = size if size is not None else getattr(config, record.size_field, None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"{source}: the {name} {head} head needs num_labels ({record.size_field}) >= 1, got {size!r}")
    return record.make(config, size)


def build(preset: str, head: str = "base", overrides: dict | None = None, num_labels: int | None = None,
          source: str | None = None) -> nn.Module:
    """A randomly initialised `head` model of preset `preset`, with config fields replaced by
    `overrides` (named `source` in errors); `num_labels` sizes a head's output layer."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; available presets are {sorted(PRESETS)}")
    name, config = PRESETS[preset]
    source = source or f"overrides of preset {preset!r}"
    if overrides:
        fields = sorted(f.name for f in dataclasses.fields(config))
        unknown = sorted(k for k in overrides if k not in fields)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown} for preset {preset!r}; valid keys are {fields}")
        config = REGISTRY[name].CONFIG.from_hf({**dataclasses.asdict(config), **overrides}, source=source)
    return build_head(name, head, config, num_labels, source=f"preset {preset!r}")


def output_size(model: nn.Module, record: Head) -> int | None:
    """The size (labels, not rows: see `Head.extra_outputs`) of `record`'s output layer in `model`
    (None without one)."""
    return model.get_submodule(record.output).out_features - record.extra_outputs if record.output else None


def spec(model: nn.Module) -> dict[str, Any]:
    """The architecture of a zoo `model` as plain JSON data, which `from_spec` rebuilds; task
    checkpoints store it. "num_classes" is there for heads sized by their label names."""
    name, head = head_of(model)
    record = REGISTRY[name].HEADS[head]
    described = {"family": name, "head": head, "config": model.config.to_hf()}
    if record.size_field == "num_labels":
        described["num_classes"] = output_size(model, record)
    return described


def from_spec(described: dict[str, Any]) -> nn.Module:
    """A randomly initialised model with the architecture `spec(model)` described. Reads the
    image specs of earlier versions too (no "head": a classifier when "num_classes" is set)."""
    if not isinstance(described.get("config"), dict):
        raise ConfigError(f"model spec: expected a 'config' dict (an HF config.json's content), "
                          f"got {described.get('config')!r}")
    name = described.get("family")
    config = get_family(name).CONFIG.from_hf(described["config"], source="model spec 'config'")
    head = described.get("head")
    if head is None:  # written before the registry had heads: an image model
        head = ("classification" if described.get("num_classes") is not None
                else "backbone" if described.get("backbone_norms") else "base")
    return build_head(name, head, config, described.get("num_classes"))
