"""LightningDataModules per modality, their transforms and samplers."""

from lit_tasks.data.audio import AudioDataModule
from lit_tasks.data.coco import CocoDetectionDataModule
from lit_tasks.data.image import ImageDataModule
from lit_tasks.data.image_transforms import BadImageError
from lit_tasks.data.samplers import UnpaddedDistributedSampler
from lit_tasks.data.text import TextDataModule
from lit_tasks.errors import DataError

__all__ = [
    "AudioDataModule",
    "BadImageError",
    "CocoDetectionDataModule",
    "DataError",
    "ImageDataModule",
    "TextDataModule",
    "UnpaddedDistributedSampler",
]
