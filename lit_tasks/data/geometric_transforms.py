"""Geometric transforms that move a PIL image and its :class:`~lit_tasks.data.targets.Targets`
together: the classifier's and the dense tasks' augmentations are built from these.

Three primitives, :func:`hflip`, :func:`resized_crop` (with :func:`crop` and :func:`resize` as
special cases), take ``(image, targets)`` and return both moved; ``targets`` may be None (a
classifier). Pixels are resampled by PIL (``"bilinear"``, what an HF image processor's
``resample=2`` does, or ``"bicubic"``); masks, semantic masks and depth maps by nearest
neighbour (see :meth:`Targets.resized_crop`). A crop that is a whole number of pixels and not
resized copies pixels exactly.

The steps (:class:`HFlip`, :class:`Resize`, :class:`ResizeShorter`, :class:`RandomCrop`,
:class:`RandomResizedCrop`, :class:`RandomChoice`) are callables
``step(image, targets, generator) -> (image, targets)``; every random draw comes from
``generator`` (the image DataModule seeds one per sample and epoch, see
:func:`lit_tasks.data.samplers.sample_generator`; None: torch's global RNG), so an augmentation
is reproducible and resumable. DETR's training recipe, for instance, is::

    scales = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
    [HFlip(), RandomChoice([[ResizeShorter(scales, max_size=1333)],
                            [ResizeShorter([400, 500, 600]), RandomCrop(384, 600),
                             ResizeShorter(scales, max_size=1333)]])]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol

import torch
from PIL import Image

from lit_tasks.data.targets import Targets

Resample = Literal["bilinear", "bicubic"]
_PIL_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
Pair = tuple[Image.Image, "Targets | None"]


# ------------------------------------------------------------------------------ primitives


def hflip(image: Image.Image, targets: Targets | None = None) -> Pair:
    """Mirror the image and its targets left-right."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), None if targets is None else targets.hflip()


def resized_crop(image: Image.Image, targets: Targets | None, box: tuple[float, float, float, float],
                 size: tuple[int, int], resample: Resample = "bilinear") -> Pair:
    """The region ``box`` (left, top, right, bottom pixels, inside the image) resized to
    ``size`` (H, W), pixels and targets alike (boxes cut by the region are clipped, boxes left
    empty dropped with their labels and masks)."""
    height, width = int(size[0]), int(size[1])
    left, top, right, bottom = box
    if tuple(box) == (0, 0, image.width, image.height) and image.size == (width, height):
        return image, targets
    if (right - left, bottom - top) == (width, height) and all(float(v).is_integer() for v in box):
        image = image.crop(tuple(int(v) for v in box))  # what PIL's resize at scale 1 gives, exactly
    else:
        image = image.resize((width, height), _PIL_RESAMPLE[resample], box=tuple(box))
    return image, None if targets is None else targets.resized_crop(box, (height, width))


def crop(image: Image.Image, targets: Targets | None, box: tuple[int, int, int, int]) -> Pair:
    """The region ``box`` (left, top, right, bottom), not resized."""
    return resized_crop(image, targets, box, (box[3] - box[1], box[2] - box[0]))


def resize(image: Image.Image, targets: Targets | None, size: tuple[int, int],
           resample: Resample = "bilinear") -> Pair:
    """The whole image resized to ``size`` (H, W)."""
    return resized_crop(image, targets, (0, 0, image.width, image.height), size, resample)


def shorter_side_size(height: int, width: int, shorter: int, max_size: int | None = None) -> tuple[int, int]:
    """(H, W) with the shorter side ``shorter`` and the aspect ratio kept (the longer side
    rounded down), unless the longer side would then exceed ``max_size``: then the longer side
    is at most ``max_size`` and the shorter one follows. The sizes HF's DETR image processor gives
    (``get_size_with_aspect_ratio``; an image whose shorter side is already at its target is left
    as it is)."""
    short, long = min(height, width), max(height, width)
    target = float(shorter)
    if max_size is not None and long / short * shorter > max_size:
        target = max_size * short / long
    new_short = max(int(round(target)), 1)
    if new_short == short:
        return height, width
    new_long = max(int(target * long / short), 1)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def random_resized_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """A random crop box (left, top, right, bottom) covering a ``scale`` fraction of the image
    area with aspect ratio (w/h) in ``ratio``, the aspect drawn log-uniformly.

    Up to ten draws are tried; if none fits inside the image, the largest centred box whose
    aspect ratio lies in ``ratio`` is returned. Draws from ``generator`` (None: torch's global RNG).
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item())
        aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand((), generator=generator).item())
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(0, height - h, generator)
            left = _randint(0, width - w, generator)
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


# ----------------------------------------------------------------------------------- steps


class Step(Protocol):
    def __call__(self, image: Image.Image, targets: Targets | None, generator: torch.Generator | None) -> Pair: ...


def apply(steps: Sequence[Step], image: Image.Image, targets: Targets | None,
          generator: torch.Generator | None = None) -> Pair:
    """Run ``steps`` in order."""
    for step in steps:
        image, targets = step(image, targets, generator)
    return image, targets


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class HFlip:
    """Mirror left-right with probability ``p`` (one draw per call)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, targets, generator=None) -> Pair:
        if torch.rand((), generator=generator).item() < self.p:
            return hflip(image, targets)
        return image, targets


class Resize:
    """Resize to ``size`` (H, W, or one int for a square); nothing is done at that size already."""

    def __init__(self, size: int | Sequence[int], resample: Resample = "bilinear"):
        self.size, self.resample = _hw(size), resample

    def __call__(self, image, targets, generator=None) -> Pair:
        return resize(image, targets, self.size, self.resample)


class ResizeShorter:
    """Resize the shorter side to one of ``sizes`` (drawn uniformly when there are several),
    the longer side capped at ``max_size``; see :func:`shorter_side_size`."""

    def __init__(self, sizes: int | Sequence[int], max_size: int | None = None, resample: Resample = "bilinear"):
        self.sizes = [sizes] if isinstance(sizes, int) else [int(s) for s in sizes]
        self.max_size, self.resample = max_size, resample

    def __call__(self, image, targets, generator=None) -> Pair:
        shorter = self.sizes[_randint(0, len(self.sizes) - 1, generator)] if len(self.sizes) > 1 else self.sizes[0]
        size = shorter_side_size(image.height, image.width, shorter, self.max_size)
        return resize(image, targets, size, self.resample)


class RandomCrop:
    """Crop a region whose width and height are drawn uniformly in [min_size, max_size] (each at
    most the image's), at a uniform position; not resized.

    With ``keep_box``, when the targets have boxes a region is drawn again (up to ``tries``
    times) until at least one box keeps some area in it; when none does, the image is left
    uncropped.
    """

    def __init__(self, min_size: int, max_size: int, keep_box: bool = False, tries: int = 10):
        if not 0 < min_size <= max_size:
            raise ValueError(f"RandomCrop: expected 0 < min_size <= max_size, got {min_size} and {max_size}")
        self.min_size, self.max_size, self.keep_box, self.tries = min_size, max_size, keep_box, tries

    def __call__(self, image, targets, generator=None) -> Pair:
        width, height = image.size
        for _ in range(self.tries if self.keep_box else 1):
            w = _randint(min(self.min_size, width), min(self.max_size, width), generator)
            h = _randint(min(self.min_size, height), min(self.max_size, height), generator)
            top, left = _randint(0, height - h, generator), _randint(0, width - w, generator)
            box = (left, top, left + w, top + h)
            if not self.keep_box or targets is None or len(targets) == 0 or _box_survives(targets.boxes, box):
                return crop(image, targets, box)
        return image, targets


def _box_survives(boxes: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    """Whether some box overlaps the region ``box`` with a positive area."""
    x1, y1 = boxes[:, 0].clamp(min=box[0]), boxes[:, 1].clamp(min=box[1])
    x2, y2 = boxes[:, 2].clamp(max=box[2]), boxes[:, 3].clamp(max=box[3])
    return bool(((x2 > x1) & (y2 > y1)).any())


class RandomResizedCrop:
    """A region of a ``scale`` fraction of the area, aspect (w/h) in ``ratio``
    (:func:`random_resized_crop_box`), resized to ``size`` (H, W): the classifier's crop."""

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), resample: Resample = "bilinear"):
        self.size, self.scale, self.ratio, self.resample = _hw(size), tuple(scale), tuple(ratio), resample

    def __call__(self, image, targets, generator=None) -> Pair:
        box = random_resized_crop_box(image.width, image.height, self.scale, self.ratio, generator=generator)
        return resized_crop(image, targets, box, self.size, self.resample)


class RandomChoice:
    """Run one of several step lists, drawn uniformly (DETR's ``RandomSelect`` of two)."""

    def __init__(self, choices: Sequence[Sequence[Step]]):
        if not choices:
            raise ValueError("RandomChoice needs at least one list of steps")
        self.choices = [list(c) for c in choices]

    def __call__(self, image, targets, generator=None) -> Pair:
        return apply(self.choices[_randint(0, len(self.choices) - 1, generator)], image, targets, generator)
