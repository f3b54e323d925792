"""Box formats, areas, IoU and generalized IoU: what DETR's matcher, loss and post-processing
share (Carion et al. 2020, "End-to-End Object Detection with Transformers", Sec. 3.1).

Formats, on the last dimension of a float tensor (..., 4):

- xyxy: corners (x1, y1, x2, y2), x2 >= x1 and y2 >= y1 (what `Targets` holds, in pixels);
- cxcywh: centre and size (cx, cy, w, h), what DETR predicts, normalised to [0, 1] by the image;
- xywh: top-left corner and size (x, y, w, h), what COCO's result files hold.

The pairwise functions take boxes (..., N, 4) and (..., M, 4) and give (..., N, M); leading
dimensions broadcast, so a[:, None] and b[:, None] (both (K, 1, 4)) give the K matched pairs'
values as (K, 1, 1) without the (K, K) matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), (..., 4)."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h), (..., 4)."""
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def xyxy_to_xywh(b: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> (x, y, w, h) with (x, y) the top-left corner: COCO's "bbox" of a
    detection result (and of an annotation), (..., 4)."""
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """Areas of xyxy boxes: (..., 4) -> (...)."""
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_iou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection over union of every pair of xyxy boxes: a (..., N, 4), b (..., M, 4) ->
    (iou, union), both (..., N, M). Disjoint or touching boxes have IoU 0; two boxes of no area
    at all have union 0 and IoU NaN."""
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (..., N, M, 2)
    size = (bottom_right - top_left).clamp(min=0)  # no overlap: 0, not a negative size
    intersection = size[..., 0] * size[..., 1]  # (..., N, M)
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - intersection
    return intersection / union, union


def _check_corners(boxes: Tensor, name: str) -> None:
    bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"generalized_box_iou: {name}[{', '.join(map(str, where))}] is "
                         f"{boxes[where].tolist()}, with x2 < x1 or y2 < y1; boxes must be (x1, y1, x2, y2) "
                         f"corners (convert cxcywh with cxcywh_to_xyxy; a negative predicted width or height "
                         f"has no generalized IoU)")


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Generalized IoU of every pair of xyxy boxes (Rezatofighi et al. 2019, "Generalized
    Intersection over Union", Algorithm 1): IoU - (C - U) / C with C the area of the smallest
    box enclosing both and U their union. In [-1, 1]: 1 for identical boxes, IoU when one box
    holds the other (C = U), towards -1 as disjoint boxes move apart.

    a (..., N, 4), b (..., M, 4) -> (..., N, M). Boxes with x2 < x1 or y2 < y1 are a ValueError:
    their "areas" are negative and the formula means nothing.
    """
    _check_corners(a, "a")
    _check_corners(b, "b")
    iou, union = box_iou(a, b)
    top_left = torch.minimum(a[..., :, None, :2], b[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = torch.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
    size = bottom_right - top_left  # >= 0 for boxes with proper corners
    enclosing = size[..., 0] * size[..., 1]  # (..., N, M)
    return iou - (enclosing - union) / enclosing
