"""DETR's bipartite matching of predictions to ground-truth boxes (Carion et al. 2020, Sec. 3.1,
Eq. 1): the one-to-one assignment of queries to an image's objects of least total cost, found
with the Hungarian algorithm (scipy's `linear_sum_assignment`). Queries left unmatched are
trained to predict "no object" by the loss (`set_criterion.SetCriterion`).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.tasks.boxes import cxcywh_to_xyxy, generalized_box_iou


def check_detection_inputs(logits: Tensor, pred_boxes: Tensor, targets: list[dict[str, Tensor]]) -> None:
    """Shapes of a DETR output and its targets, and every label a class the logits score:
    logits (B, Q, C+1) (the last column "no object"), pred_boxes (B, Q, 4), B target dicts with
    "labels" (N,) in [0, C) and "boxes" (N, 4). A ValueError names what does not fit."""
    if logits.dim() != 3 or logits.shape[-1] < 2:
        raise ValueError(f"logits have shape {tuple(logits.shape)}; expected (batch, queries, classes + 1) "
                         f"with the last column for 'no object'")
    if pred_boxes.shape != (*logits.shape[:2], 4):
        raise ValueError(f"pred_boxes have shape {tuple(pred_boxes.shape)}; expected {(*logits.shape[:2], 4)} "
                         f"(batch, queries, 4) to go with logits of shape {tuple(logits.shape)}")
    if len(targets) != logits.shape[0]:
        raise ValueError(f"{len(targets)} target dicts for a batch of {logits.shape[0]} images")
    for i, target in enumerate(targets):
        labels, boxes = target["labels"], target["boxes"]
        if labels.dim() != 1 or boxes.shape != (len(labels), 4):
            raise ValueError(f"targets[{i}] has labels of shape {tuple(labels.shape)} and boxes of shape "
                             f"{tuple(boxes.shape)}; expected (N,) and (N, 4)")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"targets[{i}]['labels'] are {labels.dtype}; expected class indices (int64)")
    num_classes = logits.shape[-1] - 1
    labels = torch.cat([t["labels"] for t in targets])
    if len(labels) and not bool(((labels >= 0) & (labels < num_classes)).all()):  # one look, not one per image
        i = next(i for i, t in enumerate(targets) if bool(((t["labels"] < 0) | (t["labels"] >= num_classes)).any()))
        raise ValueError(f"targets[{i}]['labels'] holds {targets[i]['labels'].tolist()}; the logits score classes "
                         f"0..{num_classes - 1} (their last column, {num_classes}, is 'no object')")


class HungarianMatcher(nn.Module):
    """Matches each image's targets to queries, one to one, minimising the summed cost

        class_cost * (-p_q(c_t)) + bbox_cost * |b_q - b_t|_1 + giou_cost * (-GIoU(b_q, b_t))

    with p_q the softmax of query q's logits, c_t and b_t target t's class and box, b_q the
    predicted box, L1 on cxcywh boxes and GIoU on their corners (Sec. 3.1, "L_match" and the
    box loss; -p rather than -log p, as the paper prefers for matching). A pure function of
    its inputs, run without gradients; the weights are DETR's (1, 5, 2) by default.
    """

    def __init__(self, class_cost: float = 1.0, bbox_cost: float = 5.0, giou_cost: float = 2.0) -> None:
        super().__init__()
        for name, value in (("class_cost", class_cost), ("bbox_cost", bbox_cost), ("giou_cost", giou_cost)):
            if not value >= 0:
                raise ConfigError(f"HungarianMatcher: {name} is {value}; expected a weight >= 0")
        if class_cost == bbox_cost == giou_cost == 0:
            raise ConfigError("HungarianMatcher: class_cost, bbox_cost and giou_cost are all 0; at least one "
                              "must be positive, or every assignment costs the same")
        self.class_cost, self.bbox_cost, self.giou_cost = class_cost, bbox_cost, giou_cost

    @torch.no_grad()
    def forward(self, logits: Tensor, pred_boxes: Tensor,
                targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """logits (B, Q, C+1), pred_boxes (B, Q, 4) cxcywh in [0, 1], targets B dicts with
        "labels" (N,) int64 and "boxes" (N, 4) cxcywh normalised -> B pairs
        (pred_indices, target_indices), int64 on the CPU, each of length N: query
        pred_indices[k] is matched to target target_indices[k] (pred_indices ascending).

        Costs are computed for the whole batch at once (every query against every target of
        the batch, as DETR does: one transfer to the CPU) and each image's block solved alone.
        An image needs at least as many queries as targets; a cost that is not finite (a
        diverged prediction) is replaced by the largest float so the assignment still exists:
        the loss, not the matcher, then reports the divergence.
        """
        check_detection_inputs(logits, pred_boxes, targets)
        batch, queries = logits.shape[:2]
        counts = [len(t["labels"]) for t in targets]
        for i, count in enumerate(counts):
            if count > queries:
                raise ValueError(f"targets[{i}] has {count} boxes but the model predicts only {queries} queries "
                                 f"per image: every target needs a query of its own (raise num_queries)")
        prob = logits.flatten(0, 1).float().softmax(-1)  # (B*Q, C+1)
        boxes = pred_boxes.flatten(0, 1).float()  # (B*Q, 4)
        labels = torch.cat([t["labels"] for t in targets]).to(logits.device)  # (T,), T = sum of N
        target_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes)  # (T, 4)

        cost = self.class_cost * -prob[:, labels]  # (B*Q, T)
        cost = cost + self.bbox_cost * torch.cdist(boxes, target_boxes, p=1)
        cost = cost - self.giou_cost * generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))
        biggest = torch.finfo(cost.dtype).max
        cost = torch.nan_to_num(cost, nan=biggest, posinf=biggest, neginf=biggest)
        cost = cost.view(batch, queries, -1).cpu()  # (B, Q, T)

        indices = []
        for i, block in enumerate(cost.split(counts, dim=-1)):  # block: (B, Q, N_i)
            rows, cols = linear_sum_assignment(block[i].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
