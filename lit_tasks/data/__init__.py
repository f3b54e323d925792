"""LightningDataModules per modality, their transforms and samplers.

The names below are imported when first used (`lit_tasks.data.ImageDataModule`, as configs name
them), so that a light user of one submodule (e.g. `lit_tasks.data.tables` for `score`) does not
import torch and every DataModule.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AudioDataModule": "lit_tasks.data.audio",
    "CausalLMDataModule": "lit_tasks.data.causal_lm",
    "CocoDetectionDataModule": "lit_tasks.data.coco",
    "DenoisingDataModule": "lit_tasks.data.denoising",
    "ImageDataModule": "lit_tasks.data.image",
    "MaskedLMDataModule": "lit_tasks.data.masked_lm",
    "QuestionAnsweringDataModule": "lit_tasks.data.question_answering",
    "Seq2SeqDataModule": "lit_tasks.data.seq2seq",
    "TextDataModule": "lit_tasks.data.text",
    "TokenClassificationDataModule": "lit_tasks.data.token_classification",
    "BadImageError": "lit_tasks.data.image_transforms",
    "DataError": "lit_tasks.errors",
    "UnpaddedDistributedSampler": "lit_tasks.data.samplers",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lit_tasks.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def import_datamodules() -> list[type]:
    """Every DataModule class, imported: what lets `--data.help NAME` and a config's
    `class_path: NAME` find a DataModule by its class name."""
    return [__getattr__(name) for name in _WHERE if name.endswith("DataModule")]
