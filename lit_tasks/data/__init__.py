"""LightningDataModules per modality, their transforms and samplers."""

from lit_tasks.data.image import ImageDataModule
from lit_tasks.data.image_transforms import BadImageError
from lit_tasks.data.samplers import UnpaddedDistributedSampler
from lit_tasks.errors import DataError

__all__ = ["BadImageError", "DataError", "ImageDataModule", "UnpaddedDistributedSampler"]
