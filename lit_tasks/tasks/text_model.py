"""Building the BERT-family network of a text task: from a zoo preset or an HF-format folder.

Every text task (classification, tokens, QA, masked-LM pretraining) takes the same three
arguments for its network and calls `build_bert` with the head it needs:

    backbone="all-minilm-l6-v2", backbone_config={"num_hidden_layers": 2}   # from scratch
    init_from="path/to/all-MiniLM-L6-v2"                                     # fine-tune
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import bert
from lit_tasks.zoo.base import config_from_dict

LABEL_HEADS = ("sequence_classification", "token_classification")


def build_bert(
    head: str,
    backbone: str | None,
    backbone_config: dict[str, Any] | None,
    init_from: str | None,
    num_labels: int | None = None,
) -> nn.Module:
    """The `head` model of `lit_tasks.zoo.bert.HEADS`; `num_labels` for the label heads only.

    With `init_from` the folder's config.json defines the architecture (a classifier of
    another size is re-initialised, with a warning); otherwise the preset `backbone` with the
    fields of `backbone_config` replaced (e.g. `vocab_size` of a tokenizer trained from scratch).
    """
    labels = {"num_labels": num_labels} if head in LABEL_HEADS else {}
    if init_from is not None:
        if backbone_config:
            raise ConfigError("model.backbone_config cannot change a pretrained model (model.init_from); "
                              "drop one of them")
        if backbone is not None:
            raise ConfigError("model.backbone and model.init_from both given: the folder's config.json defines "
                              "the architecture; drop model.backbone")
        return bert.from_pretrained(init_from, head=head, **labels)
    if backbone not in bert.PRESETS:
        raise ConfigError(f"model.backbone is {backbone!r}; set it to a BERT preset ({', '.join(sorted(bert.PRESETS))}) "
                          "or set model.init_from to an HF-format folder")
    config = bert.PRESETS[backbone]
    if backbone_config:
        fields = {**dataclasses.asdict(config), **backbone_config}
        config = config_from_dict(bert.BertConfig, fields, source="model.backbone_config")
        config.check("model.backbone_config")
    model = bert.HEADS[head](config, **labels)
    return model


def attached_text_data(task: Any) -> Any | None:
    """The DataModule of `task`'s trainer when it is a text one (has a tokenizer), after checking
    that it fits the network: the tokenizer's ids and the longest sequence. None without one."""
    data = getattr(task.trainer, "datamodule", None) if task._trainer is not None else None
    if data is None or not hasattr(data, "tokenizer"):
        return None
    config = task.net.config
    if data.tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(
            f"the tokenizer {data.tokenizer.source} has {data.tokenizer.vocab_size} tokens but the model's "
            f"vocab_size is {config.vocab_size}; use the checkpoint's own tokenizer or set "
            "model.backbone_config.vocab_size"
        )
    if data.max_length > config.max_position_embeddings:
        raise ConfigError(f"data.max_length is {data.max_length} but the model has "
                          f"{config.max_position_embeddings} positions; lower data.max_length")
    return data


def tokenizer_files(task: Any) -> dict[str, str] | None:
    """{file name: text} of the tokenizer `task` is trained with (its DataModule's), stored in
    checkpoints so that `lit_tasks export` writes them beside the weights; None without one."""
    data = getattr(task.trainer, "datamodule", None) if task._trainer is not None else None
    tokenizer = getattr(data, "tokenizer", None)
    return tokenizer.files() if tokenizer is not None else None
