"""From DETR's raw outputs to detections (Carion et al. 2020; the paper's code calls it
PostProcess): each query's most likely object class, its probability as the score, and its box
in pixels of the image it is drawn on or scored against. COCO's results format ((x, y, w, h)
boxes) is one step further: `boxes.xyxy_to_xywh`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_tasks.tasks.boxes import cxcywh_to_xyxy


def postprocess(logits: Tensor, pred_boxes: Tensor, sizes: Tensor | Sequence[Sequence[int]], threshold: float = 0.0,
                top_k: int | None = None) -> list[dict[str, Tensor]]:
    """Detections of a batch.

    logits (B, Q, C+1), the last column "no object"; pred_boxes (B, Q, 4) cxcywh in [0, 1];
    sizes (B, 2) (height, width) of each image to scale the boxes to -> B dicts
    {"scores" (K,), "labels" (K,) int64 in [0, C), "boxes" (K, 4) xyxy in pixels}, on the
    logits' device.

    The softmax is over all C + 1 columns, then "no object" is dropped: a query's score is the
    probability of its best object class (not renormalised), so a query sure of "no object"
    scores low whatever its best class. Queries scoring above `threshold` are kept, best first
    (ties in query order), at most `top_k` of them (all when None). Boxes are not clipped to
    the image.
    """
    if logits.dim() != 3 or logits.shape[-1] < 2:
        raise ValueError(f"logits have shape {tuple(logits.shape)}; expected (batch, queries, classes + 1) with "
                         f"the last column for 'no object'")
    if pred_boxes.shape != (*logits.shape[:2], 4):
        raise ValueError(f"pred_boxes have shape {tuple(pred_boxes.shape)}; expected {(*logits.shape[:2], 4)}")
    sizes = torch.as_tensor(sizes, device=logits.device)
    if sizes.shape != (len(logits), 2):
        raise ValueError(f"sizes have shape {tuple(sizes.shape)}; expected ({len(logits)}, 2): (height, width) "
                         f"of each image")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k is {top_k}; expected at least 1, or None for every query above the threshold")

    scores, labels = logits.softmax(-1)[..., :-1].max(-1)  # (B, Q), (B, Q)
    height, width = sizes.to(pred_boxes.dtype).unbind(-1)  # (B,), (B,)
    scale = torch.stack([width, height, width, height], dim=-1)[:, None, :]  # (B, 1, 4)
    boxes = cxcywh_to_xyxy(pred_boxes) * scale  # (B, Q, 4)

    results = []
    for image_scores, image_labels, image_boxes in zip(scores, labels, boxes):
        order = image_scores.sort(descending=True, stable=True).indices  # (Q,)
        order = order[image_scores[order] > threshold][:top_k]  # (K,)
        results.append({"scores": image_scores[order], "labels": image_labels[order], "boxes": image_boxes[order]})
    return results
