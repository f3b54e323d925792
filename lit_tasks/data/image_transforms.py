"""Decoding any PIL image to RGB, and the train / eval transforms of the image DataModules.

Both transforms are lists of :mod:`lit_tasks.data.geometric_transforms` steps followed by
normalisation; :class:`TargetsTransform` moves an image's boxes, masks and depth with it.
Randomness comes from the ``generator`` passed in (the image DataModule seeds one per sample
and epoch) or, without one, torch's global generator. Resizing is PIL bilinear, which is what a
Hugging Face image processor with ``resample=2`` does, so exported models see the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_tasks.data.geometric_transforms import HFlip, RandomResizedCrop, Resize, Step, apply
from lit_tasks.data.geometric_transforms import random_resized_crop_box as random_resized_crop_box  # re-exported
from lit_tasks.data.targets import Targets
from lit_tasks.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The modes with an alpha channel and what they are composited from.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImageError(DataError):
    """An image that PIL cannot decode; the message names the file and what PIL said.

    A :class:`lit_tasks.errors.DataError`, so the CLI shows it as one paragraph, also when a
    DataLoader worker re-raises it."""


def open_image(source: str | Path | bytes, name: str) -> Image.Image:
    """Open and fully decode an image (a path or encoded bytes) and return it as RGB.

    ``name`` is what error messages call the image (a path, "train.csv row 7: img.png", ...).
    Decoding is forced here (``load()``), so a truncated file fails here and not later.
    """
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        with Image.open(fp) as img:
            img.load()
            return to_rgb(img)
    except BadImageError:
        raise
    except FileNotFoundError as e:
        raise BadImageError(f"{name}: the image file does not exist ({e.strerror}).") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise BadImageError(
            f"{name}: cannot decode the image (PIL says: {type(e).__name__}: {e}). The file is "
            "corrupt, truncated or not an image; replace or remove it, or set "
            "skip_bad_images: true to skip such images (they are counted in batch['skipped'])."
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    - alpha (RGBA, LA, palette with transparency): composited on a **white** background, so
      transparent regions become white rather than whatever colour the hidden pixels hold;
    - 16-bit greyscale (``I;16*``) and 32-bit integer (``I``) images: values are read as 16-bit
      (0..65535, clipped) and scaled by 255/65535, so full scale maps to full scale;
    - float (``F``): values in 0..1 are scaled by 255, otherwise clipped to 0..255;
    - 1-bit, greyscale, palette, CMYK, YCbCr, LAB, HSV: PIL's own conversion to RGB.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a, 0, 65535) * (255.0 / 65535.0)
        return Image.fromarray(np.round(a).astype(np.uint8)).convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255)
        return Image.fromarray(np.round(a).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class ImageTransform:
    """RGB PIL image -> normalised float tensor (3, H, W).

    ``train=False``: bilinear resize to ``size``. ``train=True``: a random resized crop
    (``scale`` range of the area, aspect 3/4..4/3) resized to ``size`` (or a plain resize when
    ``scale`` is None), then a horizontal flip with probability 1/2 when ``hflip``.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train: bool = False,
        scale: tuple[float, float] | None = (0.08, 1.0),
        hflip: bool = True,
    ):
        self.size = (int(size[0]), int(size[1]))  # (H, W)
        self.train, self.scale, self.hflip = train, scale, hflip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        steps: list[Step] = [RandomResizedCrop(self.size, scale) if train and scale is not None else Resize(self.size)]
        if train and hflip:
            steps.append(HFlip())
        self.steps = steps

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random draws come from ``generator`` (None: torch's global RNG)."""
        return normalise_pixels(self.pixels(img, generator), self.mean, self.std)

    def pixels(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """The steps without the normalisation: (3, H, W) uint8. The image DataModule normalises
        whole batches at once (:func:`normalise_pixels`, the same arithmetic), which costs a
        fraction of doing it image by image and sends workers' batches at a quarter of the size."""
        img, _ = apply(self.steps, img, None, generator)
        return to_tensor(img)

    def __repr__(self) -> str:
        kind = "train" if self.train else "eval"
        return f"ImageTransform({kind}, size={self.size}, scale={self.scale}, hflip={self.hflip})"


class TargetsTransform:
    """(RGB PIL image, :class:`Targets`) -> (normalised float tensor (3, H, W), Targets), the
    targets moved through the same ``steps`` as the pixels (e.g. DETR's recipe in
    :mod:`lit_tasks.data.geometric_transforms`). An image whose size is not the targets' size
    is a :class:`DataError`."""

    def __init__(self, steps: Sequence[Step], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.steps = list(steps)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img: Image.Image, targets: Targets,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, Targets]:
        if (img.height, img.width) != targets.size:
            raise DataError(
                f"{targets.where + ': ' if targets.where else ''}the image is {img.width}x{img.height} "
                f"(width x height) but its targets are for {targets.size[1]}x{targets.size[0]}."
            )
        img, targets = apply(self.steps, img, targets, generator)
        return normalise(img, self.mean, self.std), targets


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def normalise_pixels(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> float32 ``(x / 255 - mean) / std``, `mean` and `std` (3, 1, 1)."""
    return (x.float() / 255.0 - mean) / std


def normalise(img: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 ``(x / 255 - mean) / std``."""
    return normalise_pixels(to_tensor(img), mean, std)
