"""Building a task's network from the zoo: a preset, an HF-format folder, or one of our own
checkpoints to fine-tune.

Every task takes the same three arguments for its network and names the head it needs and
the kind of input it feeds (`modality`); any registered family of that modality with that
head fits:

    backbone="all-minilm-l6-v2", backbone_config={"num_hidden_layers": 2}   # from scratch
    init_from="path/to/all-MiniLM-L6-v2"                                     # fine-tune
    init_from="runs/bert_small_wiki/.../checkpoints/best.ckpt"               # after our pretraining
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lit_tasks import zoo
from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.safe_load import read_checkpoint
from lit_tasks.zoo.pretrained import from_tensors, hf_state_dict
from lit_tasks.zoo.registry import REGISTRY

NET_PREFIX = "net."  # where tasks keep the zoo network in their state dict


def checkpoint_network(checkpoint: dict[str, Any], where: str | Path) -> nn.Module:
    """The zoo network of a lit_tasks checkpoint (read with `safe_load`), rebuilt from its spec."""
    meta = checkpoint.get("lit_tasks") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "spec" not in meta:
        raise CheckpointError(f"{where}: no lit_tasks model description in this checkpoint (not written by lit_tasks)")
    model = zoo.from_spec(meta["spec"])
    state = {k[len(NET_PREFIX):]: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith(NET_PREFIX)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{where}: the weights do not fit the stored model (missing {missing}, "
                              f"unexpected {unexpected})")
    return model


def with_head(model: nn.Module, head: str, num_labels: int | None, where: str | Path) -> nn.Module:
    """The `head` model on `model`'s base model, as `zoo.from_pretrained` would load it from an
    HF folder of `model`: a head of another kind or an output layer of another size is freshly
    initialised, with a warning."""
    name, saved_head = zoo.head_of(model)
    raw = {**model.config.to_hf(), "architectures": [REGISTRY[name].HEADS[saved_head].architecture]}
    return from_tensors(name, raw, hf_state_dict(model), where, head=head, num_labels=num_labels)


def build_network(
    modality: str,
    head: str,
    backbone: str | None,
    backbone_config: dict[str, Any] | None,
    init_from: str | None,
    num_labels: int | None = None,
) -> nn.Module:
    """The `head` model of a `modality` family; `num_labels` sizes the head's output layer.

    With `init_from` the folder's config.json or the checkpoint's spec defines the architecture
    (an output layer of another size is re-initialised, with a warning; `backbone`, if given,
    must be a preset of the same family); otherwise the preset `backbone` with the fields of
    `backbone_config` replaced (e.g. `vocab_size` of a tokenizer trained from scratch).
    """
    families = sorted(name for name, family in REGISTRY.items() if family.MODALITY == modality and head in family.HEADS)
    if init_from is None:
        presets = sorted(preset for preset, (family, _) in zoo.PRESETS.items() if family in families)
        if backbone not in presets:
            raise ConfigError(f"model.backbone is {backbone!r}; set it to one of the {modality} presets with a {head!r} "
                              f"head ({', '.join(presets)}) or set model.init_from to an HF-format folder or a "
                              "lit_tasks checkpoint")
        return zoo.build(backbone, head, backbone_config, num_labels, source="model.backbone_config")
    if backbone_config:
        raise ConfigError("model.backbone_config cannot change a pretrained model (model.init_from); drop one of them")
    saved = checkpoint_network(read_checkpoint(init_from), init_from) if Path(init_from).is_file() else None
    family = zoo.head_of(saved)[0] if saved is not None else zoo.detect_family(init_from)
    if family not in families:
        raise ConfigError(f"model.init_from {init_from} holds a '{family}' model; this task takes {modality} "
                          f"models with a {head!r} head ({', '.join(families)})")
    if backbone is not None and zoo.PRESETS.get(backbone, (None,))[0] != family:
        raise ConfigError(
            f"model.init_from {init_from} holds a '{family}' model but model.backbone is '{backbone}'; "
            "drop model.backbone (the folder's config.json defines the architecture) or pick a matching one"
        )
    if saved is not None:
        return with_head(saved, head, num_labels, init_from)
    return zoo.from_pretrained(init_from, head=head, num_labels=num_labels)
