"""Building a task's network from the zoo: a preset, or an HF-format folder to fine-tune.

Every task takes the same three arguments for its network and names the head it needs and
the kind of input it feeds (`modality`); any registered family of that modality with that
head fits:

    backbone="all-minilm-l6-v2", backbone_config={"num_hidden_layers": 2}   # from scratch
    init_from="path/to/all-MiniLM-L6-v2"                                     # fine-tune
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_tasks import zoo
from lit_tasks.errors import ConfigError


def build_network(
    modality: str,
    head: str,
    backbone: str | None,
    backbone_config: dict[str, Any] | None,
    init_from: str | None,
    num_labels: int | None = None,
) -> nn.Module:
    """The `head` model of a `modality` family; `num_labels` sizes the head's output layer.

    With `init_from` the folder's config.json defines the architecture (an output layer of
    another size is re-initialised, with a warning; `backbone`, if given, must be a preset of
    the folder's family); otherwise the preset `backbone` with the fields of `backbone_config`
    replaced (e.g. `vocab_size` of a tokenizer trained from scratch).
    """
    families = sorted(name for name, family in zoo.REGISTRY.items() if family.MODALITY == modality and head in family.HEADS)
    if init_from is None:
        presets = sorted(preset for preset, (family, _) in zoo.PRESETS.items() if family in families)
        if backbone not in presets:
            raise ConfigError(f"model.backbone is {backbone!r}; set it to one of the {modality} presets with a {head!r} "
                              f"head ({', '.join(presets)}) or set model.init_from to an HF-format folder")
        return zoo.build(backbone, head, backbone_config, num_labels, source="model.backbone_config")
    if backbone_config:
        raise ConfigError("model.backbone_config cannot change a pretrained model (model.init_from); drop one of them")
    family = zoo.detect_family(init_from)
    if family not in families:
        raise ConfigError(f"model.init_from {init_from} holds a '{family}' model; this task takes {modality} "
                          f"models with a {head!r} head ({', '.join(families)})")
    if backbone is not None and zoo.PRESETS.get(backbone, (None,))[0] != family:
        raise ConfigError(
            f"model.init_from {init_from} holds a '{family}' model but model.backbone is '{backbone}'; "
            "drop model.backbone (the folder's config.json defines the architecture) or pick a matching one"
        )
    return zoo.from_pretrained(init_from, head=head, num_labels=num_labels)
