"""The image classification Dataset and its collate, apart from the DataModule.

This module imports no Lightning: DataLoader workers started by spawn or a fork server (DDP
ranks) import it to unpickle the dataset, and Lightning would add seconds to each start
(benchmarks/loaders.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from lit_tasks.data.image_sources import ImageRecord
from lit_tasks.data.image_transforms import BadImageError, ImageTransform, normalise_pixels, open_image
from lit_tasks.data.samplers import sample_generator

log = logging.getLogger(__name__)


class SkippedImage(NamedTuple):
    """What :class:`ImageDataset` returns for an undecodable image when ``skip_bad_images``."""

    path: str
    reason: str


class ImageDataset(Dataset):
    """Records -> ``{"pixels": (3, H, W) uint8, "labels": int, "paths": str}`` (the collate
    normalises whole batches).

    ``hf`` is the HF split (image column undecoded) the records' rows point into, or None for
    files. With ``skip_bad_images`` an image that cannot be decoded gives a :class:`SkippedImage`
    (and a warning naming it) instead of raising :class:`BadImageError`. An index that is a
    :class:`~lit_tasks.data.samplers.SeededIndex` seeds the sample's augmentation.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: ImageTransform,
        skip_bad_images: bool = False,
        hf: Any = None,
        image_column: str = "image",
        hf_root: str | None = None,
    ):
        self.records, self.transform, self.skip_bad_images = records, transform, skip_bad_images
        self.hf, self.image_column, self.hf_root = hf, image_column, hf_root
        self._decoded: list[Image.Image | SkippedImage] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _source(self, record: ImageRecord) -> str | bytes:
        if record.row is None:
            return record.path
        value = self.hf[record.row][self.image_column]
        if isinstance(value, dict):  # Image(decode=False): {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if not value:
            raise BadImageError(f"{record.where}: the {self.image_column!r} field is empty (no image bytes or path).")
        return value if os.path.isabs(value) else os.path.join(self.hf_root or "", value)

    def decode(self, i: int) -> Image.Image | SkippedImage:
        """Image `i` as RGB (or, with ``skip_bad_images``, a :class:`SkippedImage` when it cannot
        be decoded)."""
        record = self.records[i]
        try:
            return open_image(self._source(record), record.where)
        except BadImageError as e:
            if not self.skip_bad_images:
                raise
            log.warning("Skipping image (skip_bad_images=True): %s", e)
            return SkippedImage(record.path, str(e))

    def cache(self) -> int:
        """Decode every image now and keep it, so that no epoch decodes again (DataLoader
        workers started later inherit the images); returns the bytes of pixels kept."""
        self._decoded = [self.decode(i) for i in range(len(self))]
        return sum(len(im.getbands()) * im.width * im.height for im in self._decoded if isinstance(im, Image.Image))

    def __getitem__(self, i: int) -> dict[str, Any] | SkippedImage:
        image = self._decoded[i] if self._decoded is not None else self.decode(i)
        if isinstance(image, SkippedImage):
            return image
        pixels = self.transform.pixels(image, generator=sample_generator(i))
        return {"pixels": pixels, "labels": self.records[i].label, "paths": self.records[i].path}


class ImageCollate:
    """Stack samples into the batch dict, normalising the pixels with `mean` and `std`; drop
    :class:`SkippedImage` (or None) items and list their paths under ``"skipped"``. A batch
    where every image was skipped has B = 0."""

    def __init__(self, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, items: list[dict[str, Any] | SkippedImage | None]) -> dict[str, Any]:
        good = [x for x in items if isinstance(x, dict)]
        skipped = [x.path if isinstance(x, SkippedImage) else "<unknown>" for x in items if not isinstance(x, dict)]
        if good:
            pixel_values = normalise_pixels(torch.stack([x["pixels"] for x in good]), self.mean, self.std)
        else:
            pixel_values = torch.empty(0, 3, *self.size)
        return {
            "pixel_values": pixel_values,  # (B, 3, H, W) float32
            "labels": torch.tensor([x["labels"] for x in good], dtype=torch.long),  # (B,)
            "paths": [x["paths"] for x in good],
            "skipped": skipped,
        }
