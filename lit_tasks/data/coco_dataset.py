"""The COCO detection Dataset and its collate, apart from the DataModule.

This module imports no Lightning: DataLoader workers started by spawn or a fork server (DDP
ranks) import it to unpickle the dataset, and Lightning would add seconds to each start
(benchmarks/loaders.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from lit_tasks.data.image_dataset import ImageDataset
from lit_tasks.data.image_sources import ImageRecord
from lit_tasks.data.image_transforms import BadImageError, TargetsTransform, open_image
from lit_tasks.data.samplers import sample_generator
from lit_tasks.data.targets import Targets, TargetsCollate
from lit_tasks.errors import DataError


@dataclass
class ImageTargets:
    """One image's training targets as annotated, before any transform.

    image_id: the COCO image id (-1 for predict_dir images)
    size:     (H, W) the annotation gives; None: the image's own (predict_dir)
    boxes:    xyxy pixels, clipped to the image; crowd and empty boxes left out
    labels:   label indices (positions in ``category_ids``), one per box
    """

    image_id: int
    size: tuple[int, int] | None = None
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


class CocoDataset(ImageDataset):
    """Records + targets -> ``{"pixel_values": (3, H, W), "targets": Targets, "paths", "image_ids"}``.

    The image and its boxes go through the same ``transform`` (a :class:`TargetsTransform`);
    its random draws come from the sample's generator (:func:`sample_generator`). An image whose
    real size is not the annotated one is a :class:`DataError`.
    """

    def __init__(self, records: list[ImageRecord], targets: list[ImageTargets], transform: TargetsTransform | None,
                 hf: Any = None, image_column: str = "image", hf_root: str | None = None):
        super().__init__(records, transform, hf=hf, image_column=image_column, hf_root=hf_root)
        self.targets = targets

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i`` from its header (the pixels are not decoded)."""
        record = self.records[i]
        source = self._source(record)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                return img.height, img.width
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise BadImageError(f"{record.where}: cannot read the image ({type(e).__name__}: {e}).") from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        record, annotated = self.records[i], self.targets[i]
        image = open_image(self._source(record), record.where)
        size = (image.height, image.width)
        if annotated.size is not None and size != annotated.size:
            raise DataError(
                f"{record.where}: the image is {size[1]}x{size[0]} (width x height) but its annotation says "
                f"{annotated.size[1]}x{annotated.size[0]}; fix the json's width/height or the file."
            )
        targets = Targets(size, boxes=annotated.boxes, labels=annotated.labels, where=record.where)
        pixel_values, targets = self.transform(image, targets, generator=sample_generator(i))
        return {"pixel_values": pixel_values, "targets": targets, "paths": record.path, "image_ids": annotated.image_id}


class CocoCollate(TargetsCollate):
    """:class:`TargetsCollate`'s batch plus ``"image_ids"``: (B,) int64 COCO image ids."""

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = super().__call__(items)
        batch["image_ids"] = torch.tensor([x["image_ids"] for x in items if isinstance(x, dict)], dtype=torch.long)
        return batch
