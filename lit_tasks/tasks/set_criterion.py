"""DETR's set prediction loss (Carion et al. 2020, Sec. 3.1 "Object detection set prediction
loss", Eq. 2, and Sec. 3.2 "Auxiliary decoding losses"): queries are matched one to one to the
ground-truth objects (`hungarian_matcher.HungarianMatcher`), then every query is classified
(its matched class, or "no object") and every matched query's box regressed (L1 + GIoU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.tasks.boxes import cxcywh_to_xyxy, generalized_box_iou
from lit_tasks.tasks.hungarian_matcher import HungarianMatcher

LOSS_NAMES = ("loss_ce", "loss_bbox", "loss_giou")


def query_groups(outputs: dict, num_queries: int) -> list[dict]:
    """Group DETR's one-to-one assignment per group: the outputs of a pass with G query groups
    (G * num_queries queries, one group after the other, `DetrConfig.query_groups`) as G outputs
    of num_queries queries each, auxiliary layers included, for the criterion to match one by one.
    One group: [outputs]."""
    total = outputs["logits"].shape[1]
    if total % num_queries:
        raise ValueError(f"query_groups: {total} queries are not whole groups of {num_queries}")

    def group(d: dict, g: int) -> dict:
        part = slice(g * num_queries, (g + 1) * num_queries)
        return {k: [group(a, g) for a in v] if k == "aux_outputs" else v[:, part] for k, v in d.items()}

    return [outputs] if total == num_queries else [group(outputs, g) for g in range(total // num_queries)]


def box_normaliser(targets: list[dict[str, Tensor]], device: torch.device | str, sync: bool = True) -> Tensor:
    """The number the box losses are divided by: the batch's target boxes, summed over the
    processes of a distributed run and divided by their number (the average per process, so a
    process's loss has the same scale as in a one-process run), at least 1. A 0-dim float tensor.

    With `sync` False (or outside a distributed run) only this process's boxes are counted.
    Every process must call it with the same `sync` the same number of times: it is a
    collective operation.
    """
    count = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    if sync and dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1)


class SetCriterion(nn.Module):
    """The Hungarian loss of DETR's outputs, per decoder layer and weighted in total.

    For one layer, given the matching sigma of queries to targets:
    - "loss_ce": cross-entropy of every query's logits against its matched target's class, or
      "no object" (index `num_classes`) when unmatched, that class weighted by
      `eos_coefficient` ("down-weight the log-probability term when c_i = no object by a factor
      10 to account for class imbalance"), averaged over the queries' weights (PyTorch's
      weighted mean, as DETR);
    - "loss_bbox": L1 distance of matched cxcywh boxes, summed and divided by the number of
      target boxes (`box_normaliser`);
    - "loss_giou": 1 - GIoU of the matched boxes' corners, summed and divided the same way.

    With "aux_outputs" (the earlier decoder layers' predictions, through the shared heads),
    each layer is matched on its own and its losses are added under "<name>_<i>". "loss" is
    class_weight * loss_ce + bbox_weight * loss_bbox + giou_weight * loss_giou, summed over the
    final and every auxiliary layer.

    num_classes: the object classes C (logits have C + 1 columns, the last "no object").
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher, eos_coefficient: float = 0.1,
                 class_weight: float = 1.0, bbox_weight: float = 5.0, giou_weight: float = 2.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"SetCriterion: num_classes is {num_classes}; expected >= 1 object classes")
        if not 0 < eos_coefficient:
            raise ConfigError(f"SetCriterion: eos_coefficient is {eos_coefficient}; expected > 0 (the weight "
                              f"of the 'no object' class relative to the others, DETR's 0.1)")
        for name, value in (("class_weight", class_weight), ("bbox_weight", bbox_weight),
                            ("giou_weight", giou_weight)):
            if not value >= 0:
                raise ConfigError(f"SetCriterion: {name} is {value}; expected a weight >= 0")
        self.num_classes = num_classes
        self.matcher = matcher
        self.eos_coefficient = eos_coefficient
        self.weights = {"loss_ce": class_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        class_weights = torch.ones(num_classes + 1)
        class_weights[num_classes] = eos_coefficient
        # derived from the arguments, so not saved with a checkpoint; moves with the module's device
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]], *, sync: bool = True) -> dict[str, Tensor]:
        """outputs: "logits" (B, Q, C+1), "pred_boxes" (B, Q, 4) cxcywh in [0, 1], and optionally
        "aux_outputs", a list of such dicts for the earlier decoder layers; targets: B dicts with
        "labels" (N,) int64 in [0, C) and "boxes" (N, 4) cxcywh normalised.

        Returns "loss_ce", "loss_bbox", "loss_giou", the same with "_0", "_1", ... per auxiliary
        layer, and "loss", their weighted sum (0-dim tensors). The box normaliser is summed
        over the processes of a distributed run (`box_normaliser`); pass `sync=False` where
        processes may call this a different number of times (evaluation over unevenly split
        data), which divides by this process's own count instead.
        """
        layers = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs") or [])]
        num_boxes = box_normaliser(targets, outputs["logits"].device, sync)
        losses: dict[str, Tensor] = {}
        total = torch.zeros((), device=outputs["logits"].device)
        for suffix, layer in layers:
            for name, value in self.layer_losses(layer["logits"], layer["pred_boxes"], targets, num_boxes).items():
                losses[name + suffix] = value
                total = total + self.weights[name] * value
        losses["loss"] = total
        return losses

    def layer_losses(self, logits: Tensor, pred_boxes: Tensor, targets: list[dict[str, Tensor]],
                     num_boxes: Tensor) -> dict[str, Tensor]:
        """The three losses of one decoder layer's predictions, matched on their own (the
        matcher checks the shapes and labels)."""
        if logits.dim() != 3 or logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"logits have shape {tuple(logits.shape)}; SetCriterion was built for num_classes="
                             f"{self.num_classes}: expected (batch, queries, {self.num_classes + 1}), the last column "
                             f"for 'no object'")
        matches = self.matcher(logits, pred_boxes, targets)
        device = logits.device
        image = torch.cat([torch.full_like(pred, i) for i, (pred, _) in enumerate(matches)]).to(device)  # (M,)
        query = torch.cat([pred for pred, _ in matches]).to(device)  # (M,), M matched pairs in the batch

        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=device)  # (B, Q)
        classes[image, query] = torch.cat([t["labels"][j.to(t["labels"].device)]
                                           for t, (_, j) in zip(targets, matches)]).to(device)
        loss_ce = F.cross_entropy(logits.float().transpose(1, 2), classes, weight=self.class_weights.float())

        matched = pred_boxes[image, query].float()  # (M, 4)
        wanted = torch.cat([t["boxes"][j.to(t["boxes"].device)]
                            for t, (_, j) in zip(targets, matches)]).to(matched)  # (M, 4)
        loss_bbox = F.l1_loss(matched, wanted, reduction="sum") / num_boxes
        pair_giou = generalized_box_iou(cxcywh_to_xyxy(matched)[:, None], cxcywh_to_xyxy(wanted)[:, None])  # (M, 1, 1)
        loss_giou = (1 - pair_giou).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
