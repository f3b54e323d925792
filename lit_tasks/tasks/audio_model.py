"""Building the Wav2Vec2 network of an audio task: from a zoo preset or an HF-format folder.

Every audio task (classification, CTC speech recognition, contrastive pretraining) takes the
same three arguments for its network and calls `build_wav2vec2` with the head it needs:

    backbone="wav2vec2-base", backbone_config={"num_hidden_layers": 4}   # from scratch
    init_from="path/to/wav2vec2-base"                                     # fine-tune
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import wav2vec2
from lit_tasks.zoo.base import config_from_dict


def build_wav2vec2(
    head: str,
    backbone: str | None,
    backbone_config: dict[str, Any] | None,
    init_from: str | None,
    num_labels: int | None = None,
    freeze_feature_encoder: bool = False,
) -> nn.Module:
    """The `head` model of `lit_tasks.zoo.wav2vec2` ("classification", "ctc" or "pretraining").

    `num_labels` is the number of classes ("classification") or the vocabulary size ("ctc").
    With `init_from` the folder's config.json defines the architecture (an output layer of
    another size is re-initialised, with a warning); otherwise the preset `backbone` with the
    fields of `backbone_config` replaced. `freeze_feature_encoder` stops training the conv
    feature encoder (its parameters get requires_grad=False), as wav2vec2 fine-tuning does.
    """
    if init_from is not None:
        if backbone_config:
            raise ConfigError("model.backbone_config cannot change a pretrained model (model.init_from); "
                              "drop one of them")
        if backbone is not None:
            raise ConfigError("model.backbone and model.init_from both given: the folder's config.json defines "
                              "the architecture; drop model.backbone")
        model = wav2vec2.from_pretrained(init_from, head=head, num_labels=num_labels)
    else:
        if backbone not in wav2vec2.PRESETS:
            raise ConfigError(f"model.backbone is {backbone!r}; set it to a wav2vec2 preset "
                              f"({', '.join(sorted(wav2vec2.PRESETS))}) or set model.init_from to an HF-format folder")
        config = wav2vec2.PRESETS[backbone]
        if backbone_config:
            fields = {**dataclasses.asdict(config), **backbone_config}
            if "output_hidden_size" not in backbone_config:
                fields.pop("output_hidden_size")  # derived from hidden_size
            config = config_from_dict(wav2vec2.Wav2Vec2Config, fields, source="model.backbone_config")
            config.check("model.backbone_config")
        sized = () if num_labels is None else (num_labels,)  # the pretraining head has no output size
        model = wav2vec2.head_class(head)(wav2vec2.Wav2Vec2(config), *sized)
    if freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


def spec(model: nn.Module) -> dict[str, Any]:
    """The architecture as plain data (family, head, HF config dict), stored in checkpoints."""
    return {"family": "wav2vec2", "head": model.head, "config": model.config.to_hf()}


def layer_depth(model: nn.Module, name: str) -> tuple[int, int]:
    """(depth, depth of the head) of parameter `name` (relative to the head model) for layer-wise
    lr decay: 0 for the feature encoder, projection and position conv, i for Transformer layer i
    (1-based), num_hidden_layers + 1 for the final norm of pre-LN models and the head."""
    deepest = model.wav2vec2.config.num_hidden_layers + 1
    prefix = "wav2vec2.encoder.layers."
    if name.startswith(prefix):
        return int(name[len(prefix):].split(".")[0]) + 1, deepest
    if not name.startswith("wav2vec2."):
        return deepest, deepest  # the head
    if name.startswith("wav2vec2.encoder.layer_norm.") and model.wav2vec2.config.do_stable_layer_norm:
        return deepest, deepest  # pre-LN: the final norm after the last layer
    return 0, deepest  # feature encoder, projection, position conv, post-LN embedding norm
