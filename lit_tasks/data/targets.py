"""What an image's dense and box targets are, how they follow a geometric transform, and how a
batch of images of different sizes is padded together with them.

:class:`Targets` holds one image's boxes (xyxy, in pixels), their labels and instance masks, a
semantic mask and a depth map; every per-pixel field has the image's size. Its two geometric
operations, :meth:`Targets.hflip` and :meth:`Targets.resized_crop` (crop and resize are special
cases), are what :mod:`lit_tasks.data.geometric_transforms` applies next to the pixels, so a
crop can never move the image without its targets.

Pixel coordinates are continuous: pixel (row i, column j) covers [j, j+1) x [i, i+1), so a box
around whole pixels has integer corners and the image spans [0, W] x [0, H].
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import torch

from lit_tasks.errors import DataError

IGNORE_INDEX = 255  # semantic label of padding (and of pixels a dataset marks as "void")
INVALID_DEPTH = 0.0  # depth of padding and of pixels without a measurement
BOX_TOLERANCE = 1.0  # pixels a box may reach past the image edge (rounding in annotations); clipped


@dataclass
class Targets:
    """The targets of one image of ``size`` (H, W).

    - ``boxes``: (N, 4) float32, xyxy in pixels of this image, 0 <= x1 <= x2 <= W, 0 <= y1 <= y2 <= H;
    - ``labels``: (N,) int64, one per box;
    - ``masks``: (N, H, W) bool instance masks, one per box, or None;
    - ``semantic``: (H, W) int64 class per pixel (``IGNORE_INDEX`` = not scored), or None;
    - ``depth``: (H, W) float32, ``INVALID_DEPTH`` (0) where unknown, or None;
    - ``orig_size``: (H, W) of the image as read, before any transform (default: ``size``);
    - ``where``: what error messages call the sample ("train.jsonl line 7"), not compared.

    Lists and numpy arrays are accepted and converted. Bad targets raise :class:`DataError`
    naming the field and what is wrong: a box with x2 < x1 or y2 < y1, a box reaching more than
    ``BOX_TOLERANCE`` pixels outside the image (within it, the box is clipped to the image), a
    count of labels or masks that differs from the count of boxes, a mask or depth map of
    another size than the image, a non-finite box or depth value.
    """

    size: tuple[int, int]
    boxes: Any = None
    labels: Any = None
    masks: Any = None
    semantic: Any = None
    depth: Any = None
    orig_size: tuple[int, int] | None = None
    where: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        self.size = _size(self.size, "size", self._fail)
        self.orig_size = self.size if self.orig_size is None else _size(self.orig_size, "orig_size", self._fail)
        h, w = self.size
        boxes = torch.as_tensor([] if self.boxes is None else self.boxes, dtype=torch.float32)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            self._fail(f"boxes have shape {tuple(boxes.shape)}; expected (N, 4), x1 y1 x2 y2 in pixels")
        x1, y1, x2, y2 = boxes.unbind(1)
        for bad, what in (
            (~torch.isfinite(boxes).all(1), "is not finite"),
            ((x2 < x1) | (y2 < y1), "has x2 < x1 or y2 < y1; boxes are x1 y1 x2 y2 (corners), not x y w h"),
            ((boxes.amin(1) < -BOX_TOLERANCE) | (x2 > w + BOX_TOLERANCE) | (y2 > h + BOX_TOLERANCE),
             f"lies outside the {w}x{h} (width x height) image"),
        ):
            if bad.any():
                i = int(bad.nonzero()[0])
                self._fail(f"box {i} {boxes[i].tolist()} {what}")
        self.boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float32))
        n = len(boxes)
        labels = torch.as_tensor([] if self.labels is None else self.labels)
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            self._fail(f"labels {labels.tolist()} are not integers")
        self.labels = labels.long()
        if self.labels.shape != (n,):
            self._fail(f"there are {n} boxes but labels have shape {tuple(self.labels.shape)}; expected ({n},)")
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks).bool()
            if self.masks.shape != (n, h, w):
                self._fail(f"masks have shape {tuple(self.masks.shape)}; expected ({n}, {h}, {w}): one per box, "
                           "the image's height and width")
        if self.semantic is not None:
            self.semantic = torch.as_tensor(self.semantic)
            if self.semantic.is_floating_point():
                self._fail("the semantic mask holds floats; expected integer class indices")
            self.semantic = self.semantic.long()
            if self.semantic.shape != (h, w):
                self._fail(f"the semantic mask has shape {tuple(self.semantic.shape)}; expected the image's ({h}, {w})")
        if self.depth is not None:
            self.depth = torch.as_tensor(self.depth, dtype=torch.float32)
            if self.depth.shape != (h, w):
                self._fail(f"the depth map has shape {tuple(self.depth.shape)}; expected the image's ({h}, {w})")
            if not torch.isfinite(self.depth).all():
                self._fail(f"the depth map has {int((~torch.isfinite(self.depth)).sum())} non-finite values; "
                           f"mark pixels without a measurement with {INVALID_DEPTH}")

    def _fail(self, what: str) -> NoReturn:
        raise DataError(f"{self.where + ': ' if self.where else ''}targets: {what}.")

    def __len__(self) -> int:
        """The number of boxes (objects)."""
        return len(self.boxes)

    # ------------------------------------------------------------------------ geometry

    def hflip(self) -> Targets:
        """The targets of the image mirrored left-right."""
        w = self.size[1]
        boxes = torch.stack([w - self.boxes[:, 2], self.boxes[:, 1], w - self.boxes[:, 0], self.boxes[:, 3]], 1)
        return replace(self, boxes=boxes, masks=_flip(self.masks), semantic=_flip(self.semantic),
                       depth=_flip(self.depth))

    def resized_crop(self, box: tuple[float, float, float, float], size: tuple[int, int]) -> Targets:
        """The targets of the region ``box`` (left, top, right, bottom in pixels, inside the image)
        resized to ``size`` (H, W).

        Boxes are shifted, scaled and clipped to the region; when the region is not the whole
        image, boxes left with no width or height are dropped with their labels and masks.
        Masks, the semantic mask and the depth map are resampled by nearest neighbour: each
        output pixel takes the value of the input pixel under its centre, so classes are never
        blended, and depth values are kept as measured (never mixed across an object's edge or
        with invalid pixels, and not rescaled: a resize does not move the camera).
        """
        left, top, right, bottom = (float(v) for v in box)
        h, w = self.size
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            raise ValueError(f"crop box {box} is not a non-empty region inside the {w}x{h} image")
        out_h, out_w = int(size[0]), int(size[1])
        scale = torch.tensor([out_w / (right - left), out_h / (bottom - top)] * 2)
        boxes = (self.boxes - torch.tensor([left, top, left, top])) * scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, out_h)
        keep = torch.ones(len(boxes), dtype=torch.bool)
        if (left, top, right, bottom) != (0, 0, w, h):
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        region = (left, top, right, bottom)
        return replace(
            self, size=(out_h, out_w), boxes=boxes[keep], labels=self.labels[keep],
            masks=None if self.masks is None else _nearest(self.masks[keep], region, (out_h, out_w)),
            semantic=_nearest(self.semantic, region, (out_h, out_w)),
            depth=_nearest(self.depth, region, (out_h, out_w)),
        )

    # ------------------------------------------------------------------------ batching

    def padded(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """This image's entry in a batch's ``targets`` list, its per-pixel fields padded at the
        bottom and right to ``size`` (H, W): masks with False, the semantic mask with
        ``IGNORE_INDEX``, depth with ``INVALID_DEPTH``. Boxes stay in this image's pixels."""
        out = {"boxes": self.boxes, "labels": self.labels, "orig_size": torch.tensor(self.orig_size),
               "size": torch.tensor(self.size)}
        for name, fill in (("masks", False), ("semantic", IGNORE_INDEX), ("depth", INVALID_DEPTH)):
            value = getattr(self, name)
            if value is not None:
                out[name] = _pad(value, size, fill)
        return out


def _size(value: Any, name: str, fail: Any) -> tuple[int, int]:
    try:
        h, w = (operator.index(v) for v in value)
    except (TypeError, ValueError):
        h = w = 0
    if h <= 0 or w <= 0:
        fail(f"{name} is {value!r}; expected (height, width), two positive integers")
    return h, w


def _flip(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.flip(-1)


def _nearest(t: torch.Tensor | None, box: tuple[float, float, float, float],
             size: tuple[int, int]) -> torch.Tensor | None:
    """Nearest-neighbour resampling of the last two dims of ``t`` from ``box`` to ``size``:
    output pixel (i, j) reads the input pixel containing the point ``box`` maps its centre to."""
    if t is None:
        return None
    left, top, right, bottom = box
    (out_h, out_w), (h, w) = size, t.shape[-2:]
    if (right - left, bottom - top) == (out_w, out_h) and float(left).is_integer() and float(top).is_integer():
        return t[..., int(top):int(bottom), int(left):int(right)].clone()  # a plain crop
    cols = (left + (torch.arange(out_w, dtype=torch.float64) + 0.5) * ((right - left) / out_w)).floor()
    rows = (top + (torch.arange(out_h, dtype=torch.float64) + 0.5) * ((bottom - top) / out_h)).floor()
    cols, rows = cols.long().clamp(0, w - 1), rows.long().clamp(0, h - 1)
    return t[..., rows[:, None], cols[None, :]]


def _pad(t: torch.Tensor, size: tuple[int, int], fill: float | bool) -> torch.Tensor:
    out = torch.full((*t.shape[:-2], *size), fill, dtype=t.dtype)
    out[..., : t.shape[-2], : t.shape[-1]] = t
    return out


class TargetsCollate:
    """Batch ``{"pixel_values": (3, h, w) float, "targets": Targets, "paths": str}`` samples of
    any sizes. Items that are not dicts (a skipped image: anything with a ``path``, or None) are
    dropped and their paths listed under ``"skipped"``.

    Batch::

        {
          "pixel_values": (B, 3, H, W) float32, each image at the top left, zeros elsewhere;
          "pixel_mask":   (B, H, W) int64, 1 on an image's own pixels, 0 on padding;
          "targets":      B dicts (see Targets.padded): "boxes" (N, 4) float xyxy pixels,
                          "labels" (N,), "orig_size" and "size" (2,) int64 (H, W), and where
                          the samples have them "masks" (N, H, W) bool, "semantic" (H, W) int64
                          (IGNORE_INDEX in padding), "depth" (H, W) float (0 in padding);
          "paths":        B strings;  "skipped": paths of the dropped items,
        }

    H and W are the largest height and width in the batch, rounded up to a multiple of
    ``size_divisor`` (e.g. a backbone's stride).
    """

    def __init__(self, size_divisor: int = 1):
        self.size_divisor = int(size_divisor)

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        good = [x for x in items if isinstance(x, dict)]
        skipped = [getattr(x, "path", "<unknown>") for x in items if not isinstance(x, dict)]
        d = self.size_divisor
        height = -(-max((x["pixel_values"].shape[1] for x in good), default=0) // d) * d
        width = -(-max((x["pixel_values"].shape[2] for x in good), default=0) // d) * d
        pixel_values = torch.zeros(len(good), 3, height, width)
        pixel_mask = torch.zeros(len(good), height, width, dtype=torch.long)
        targets = []
        for i, x in enumerate(good):
            _, h, w = x["pixel_values"].shape
            if tuple(x["targets"].size) != (h, w):
                raise ValueError(f"sample {x.get('paths')}: targets are for {x['targets'].size}, the image is {(h, w)}")
            pixel_values[i, :, :h, :w] = x["pixel_values"]
            pixel_mask[i, :h, :w] = 1
            targets.append(x["targets"].padded((height, width)))
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "targets": targets,
                "paths": [x.get("paths") for x in good], "skipped": skipped}
