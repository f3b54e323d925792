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
    "BadImageError": "lit_tasks.data.image_transforms",
    "CocoDetectionDataModule": "lit_tasks.data.coco",
    "DataError": "lit_tasks.errors",
    "ImageDataModule": "lit_tasks.data.image",
    "TextDataModule": "lit_tasks.data.text",
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
