"""What the text tasks share about their network: checks against the attached data, and the
tokenizer files stored in checkpoints. (The network itself: `lit_tasks.tasks.network`.)"""

from __future__ import annotations

from typing import Any

from lit_tasks.errors import ConfigError


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
