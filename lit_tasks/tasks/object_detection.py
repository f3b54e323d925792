"""Object detection as set prediction (DETR, Carion et al. 2020): a fixed set of queries, each a
class (or "no object") and a box, matched one-to-one to the ground truth for the loss and
scored by COCO mAP (pycocotools) at validation and test."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from lit_tasks import plots, zoo
from lit_tasks.errors import CheckpointError, ConfigError, DataError
from lit_tasks.metrics.coco_map import CocoMeanAP
from lit_tasks.tasks.base import EVAL_STAGES, TaskModule
from lit_tasks.tasks.boxes import xyxy_to_cxcywh
from lit_tasks.tasks.detection_postprocess import postprocess
from lit_tasks.tasks.hungarian_matcher import HungarianMatcher
from lit_tasks.tasks.set_criterion import SetCriterion, query_groups

SAMPLES = 8  # validation images kept for the prediction grid and wandb
LOSS_PARTS = ("loss_ce", "loss_bbox", "loss_giou")


class ObjectDetection(TaskModule):
    """Detect objects of `num_classes` categories with boxes.

    The network is the zoo's "object_detection" head (DETR): e.g. `backbone: detr-resnet-50` with
    `backbone_config` overrides, or `init_from` a downloaded facebook/detr-resnet-50 folder, whose
    class head is re-initialised for another number of classes. The matching costs and loss
    weights are the network config's (HF DetrConfig keys: class_cost, bbox_cost, giou_cost,
    eos_coefficient, bbox_loss_coefficient, giou_loss_coefficient, auxiliary_loss), so a
    downloaded model trains as it was configured; override them through `backbone_config`.

    Batches (lit_tasks.data.CocoDetectionDataModule): {"pixel_values" (B, 3, H, W), "pixel_mask"
    (B, H, W), "targets": B dicts with "boxes" (N, 4) xyxy in pixels of the transformed image,
    "labels" (N,), "size" and "orig_size" (H, W), "image_ids" (B,), "paths"}. Boxes are given to
    the loss as (cx, cy, w, h) divided by the image's own size (not the padded batch's), as the
    DETR paper's code does; predictions are scaled back to `orig_size` for COCO.

    Metrics: train/val/test loss and its parts (loss_ce, loss_bbox, loss_giou of the last decoder
    layer); at val and test the 12 COCO numbers (map, map_50, map_75, map_small/medium/large,
    mar_1/10/100, mar_small/medium/large). Each val/test epoch writes `<stage>_coco_results.json`
    (the detections, COCO results format) to the run folder, a grid of predictions
    (`predictions.png`) and, with wandb, the images with predicted and true boxes.

    Args:
        num_classes: number of object categories, without no-object (linked from the data).
        label_names: the category names in class-index order (linked from the data).
        backbone_lr_ratio: the backbone's lr as a share of `lr` (DETR trains its pretrained
            ResNet at 1e-5 against 1e-4 for the transformer: 0.1). 1 for a backbone from scratch.
        max_detections: detections per image scored by COCO (the queries' best classes, top-k).
        draw_threshold: score above which a detection is drawn (figures, wandb, predict images).
        predict_threshold: score above which a detection is written by `predict`.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "image", "object_detection"
    monitor = ("val/map", "max")

    def __init__(self, num_classes: int = 1, label_names: list[str] | None = None, backbone_lr_ratio: float = 0.1,
                 max_detections: int = 100, draw_threshold: float = 0.5, predict_threshold: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ConfigError(f"model.num_classes is {num_classes}; expected at least 1 (it comes from the data's "
                              "categories: give the data its annotation files, for predict too)")
        if label_names is not None and len(label_names) != num_classes:
            raise ConfigError(f"model.label_names has {len(label_names)} names but num_classes is {num_classes}")
        if not 0 < backbone_lr_ratio <= 1:
            raise ConfigError(f"model.backbone_lr_ratio is {backbone_lr_ratio}; expected a share in (0, 1]")
        if max_detections < 1:
            raise ConfigError(f"model.max_detections is {max_detections}; expected at least 1")
        self.num_classes = num_classes
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_classes)]
        self.backbone_lr_ratio, self.max_detections = backbone_lr_ratio, max_detections
        self.draw_threshold, self.predict_threshold = draw_threshold, predict_threshold
        net = self.build_net(num_classes)
        config = net.config
        matcher = HungarianMatcher(config.class_cost, config.bbox_cost, config.giou_cost)
        self.criterion = SetCriterion(num_classes, matcher, eos_coefficient=config.eos_coefficient,
                                      bbox_weight=config.bbox_loss_coefficient, giou_weight=config.giou_loss_coefficient)
        self.coco = torch.nn.ModuleDict({s: CocoMeanAP() for s in EVAL_STAGES})
        self.category_ids: list[int] = list(range(1, num_classes + 1))  # replaced by the data's at set-up
        self._data_category_ids: list[int] | None = None  # the attached data's, once checked
        self._samples: dict[str, list[dict[str, Any]]] = {}
        self._predicted: list[dict[str, Any]] = []
        self._predict_ids: dict[str, int] = {}  # path -> image id for images without a COCO id

    # -- the data --------------------------------------------------------------------------
    def check_data(self, data: Any) -> None:
        """The data's COCO category ids (label index -> id), which detections are written with."""
        super().check_data(data)
        ids = getattr(data, "category_ids", None)
        if ids is not None:
            if len(ids) != self.num_classes:
                raise ConfigError(f"the data has {len(ids)} categories but model.num_classes is {self.num_classes}")
            self.category_ids = self._data_category_ids = [int(i) for i in ids]

    def _ground_truth(self, stage: str) -> dict[str, Any]:
        data = self.attached_data()
        if data is None or not hasattr(data, "coco_ground_truth"):
            raise ConfigError("object detection is scored against COCO ground truth: use a DataModule with "
                              "coco_ground_truth(split), e.g. lit_tasks.data.CocoDetectionDataModule")
        return data.coco_ground_truth(stage)

    # -- the model and its loss -------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> Any:
        return self.net(pixel_values, pixel_mask)

    @staticmethod
    def loss_targets(targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """The criterion's targets: labels, and boxes as (cx, cy, w, h) over each image's size."""
        out = []
        for t in targets:
            height, width = (float(v) for v in t["size"])
            scale = t["boxes"].new_tensor([width, height, width, height])
            out.append({"labels": t["labels"], "boxes": xyxy_to_cxcywh(t["boxes"] / scale)})
        return out

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        targets = batch["targets"]
        if not targets:  # every image of the batch was skipped as unreadable
            return None
        out = self(batch["pixel_values"], batch["pixel_mask"])
        outputs = {"logits": out.logits, "pred_boxes": out.pred_boxes}
        if out.aux_outputs:
            outputs["aux_outputs"] = out.aux_outputs
        # the box count is summed across processes in training only: evaluation shards may differ in
        # batch count, and a collective call on one process alone would hang
        # Group DETR (config.query_groups, training only): each group is matched on its own, the mean taken
        loss_targets = self.loss_targets(targets)
        per_group = [self.criterion(group, loss_targets, sync=stage == "train")
                     for group in query_groups(outputs, self.net.config.num_queries)]
        losses = per_group[0] if len(per_group) == 1 else \
            {k: torch.stack([g[k] for g in per_group]).mean() for k in per_group[0]}
        self.log_loss(stage, losses["loss"], len(targets))
        self.log_dict({f"{stage}/{k}": losses[k].detach() for k in LOSS_PARTS}, on_step=False, on_epoch=True,
                      batch_size=len(targets), sync_dist=True)
        if stage != "train":
            self._score(stage, batch, out)
        return losses["loss"]

    def detections(self, out: Any, sizes: torch.Tensor, threshold: float, top_k: int | None) -> list[dict[str, Any]]:
        """Per image {"scores", "labels", "boxes" (xyxy in pixels of `sizes`), "category_ids"}."""
        found = postprocess(out.logits.float(), out.pred_boxes.float(), sizes, threshold=threshold, top_k=top_k)
        ids = torch.tensor(self.category_ids, device=out.logits.device)
        for d in found:
            d["category_ids"] = ids[d["labels"]]
        return found

    def _score(self, stage: str, batch: dict[str, Any], out: Any) -> None:
        targets = batch["targets"]
        original = torch.stack([t["orig_size"] for t in targets]).to(out.logits.device)
        self.coco[stage].update(batch["image_ids"], self.detections(out, original, 0.0, self.max_detections))
        self._keep_samples(stage, batch, out)

    def _keep_samples(self, stage: str, batch: dict[str, Any], out: Any) -> None:
        """The first SAMPLES images of the epoch with their boxes in the transformed image's pixels."""
        kept = self._samples.setdefault(stage, [])
        if len(kept) >= SAMPLES:
            return
        targets = batch["targets"]
        sizes = torch.stack([t["size"] for t in targets]).to(out.logits.device)
        found = self.detections(out, sizes, self.draw_threshold, self.max_detections)
        for i, (t, d) in enumerate(zip(targets, found)):
            if len(kept) >= SAMPLES:
                break
            height, width = (int(v) for v in t["size"])
            kept.append({"image": batch["pixel_values"][i, :, :height, :width].detach().cpu(),
                         "boxes": d["boxes"].cpu(), "labels": d["labels"].cpu(), "scores": d["scores"].cpu(),
                         "true_boxes": t["boxes"].cpu(), "true_labels": t["labels"].cpu()})

    def start_epoch(self, stage: str) -> None:
        self._samples.pop(stage, None)
        if stage in self.coco:
            self.coco[stage].reset()
            self.coco[stage].set_ground_truth(self._ground_truth(stage))

    def end_epoch(self, stage: str) -> None:
        if stage == "train":
            return
        scores = self.coco[stage].compute()  # over every process's detections: the same on each rank
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=False, sync_dist=False)

    # -- outputs ---------------------------------------------------------------------------
    def write_outputs(self, stage: str, run_dir: Path) -> None:
        """`<stage>_coco_results.json`: the last `stage` epoch's detections (COCO results format),
        which pycocotools' COCO.loadRes reads (called by FigureLogger on rank 0)."""
        if stage in self.coco and self.coco[stage].update_count:
            self.coco[stage].write_results(run_dir / f"{stage}_coco_results.json")

    def figures(self, stage: str) -> dict[str, Any]:
        samples = self._samples.get(stage)
        return {"predictions": plots.detection_grid(samples, self.label_names)} if samples else {}

    def box_samples(self, stage: str) -> list[dict[str, Any]]:
        """The kept images with predicted and true boxes (FigureLogger sends them to wandb)."""
        return self._samples.get(stage, [])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per image: {"path", "image_id", "detections": [{"label", "category_id", "score",
        "box": [x1, y1, x2, y2] in the original image's pixels}, ...]} above `predict_threshold`.
        An image without a COCO id (predict_dir's) gets 1 + its position in the predict split."""
        out = self(batch["pixel_values"], batch["pixel_mask"])
        original = torch.stack([t["orig_size"] for t in batch["targets"]]).to(out.logits.device)
        rows = []
        for path, image_id, d in zip(batch["paths"], batch["image_ids"].tolist(),
                                     self.detections(out, original, self.predict_threshold, self.max_detections)):
            image_id = image_id if image_id >= 0 else self._predict_ids.get(path, image_id)
            rows.append({"path": path, "image_id": image_id, "detections": [
                {"label": self.label_names[label], "category_id": category, "score": round(score, 6),
                 "box": [round(v, 2) for v in box]}
                for label, category, score, box in zip(d["labels"].tolist(), d["category_ids"].tolist(),
                                                       d["scores"].tolist(), d["boxes"].tolist())]})
        self._predicted.extend(rows)
        return rows

    def on_predict_epoch_start(self) -> None:
        self._predicted = []
        self._predict_ids = self._predict_dir_ids()

    def _predict_dir_ids(self) -> dict[str, int]:
        """{path: 1 + position} over the predict split's images (predict_dir's sorted listing), the
        same in every process: image ids for images the data gives none (-1), so that the COCO
        results json and the drawn images tell them apart."""
        data = self.attached_data()
        if not hasattr(data, "split_data"):
            return {}
        return {record.path: k + 1 for k, record in enumerate(data.split_data("predict").records)}

    def write_predict_outputs(self, run_dir: Path, suffix: str = "") -> None:
        """After predict (called by PredictionWriter in every process): `predictions_coco<suffix>.json`
        (COCO results: bbox as x, y, w, h) and `predicted_images<suffix>/` with the detections above
        `draw_threshold` drawn on each original image."""
        results = [{"image_id": row["image_id"], "category_id": d["category_id"], "score": d["score"],
                    "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
                   for row in self._predicted for d in row["detections"]]
        path = run_dir / f"predictions_coco{suffix}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, path)
        folder = run_dir / f"predicted_images{suffix}"
        folder.mkdir(exist_ok=True)
        for row in self._predicted:
            draw_detections(row, self.draw_threshold, folder)

    # -- checkpoints -----------------------------------------------------------------------
    def task_metadata(self) -> dict[str, Any]:
        return {"label_names": self.label_names, "category_ids": self.category_ids}

    def check_checkpoint(self, meta: dict[str, Any]) -> None:
        """The checkpoint's COCO category ids; a CheckpointError when the attached data's differ
        (its detections would be written, and scored, under the wrong categories)."""
        if "category_ids" not in meta:
            return
        saved = [int(i) for i in meta["category_ids"]]
        if self._data_category_ids is not None and saved != self._data_category_ids:
            raise CheckpointError(f"the checkpoint was trained on COCO category ids {saved}, the data has "
                                  f"{self._data_category_ids}; use data with the checkpoint's categories")
        self.category_ids = saved

    # -- the optimiser ---------------------------------------------------------------------
    def layer_scale(self, name: str) -> float:
        """The backbone's parameters train at lr * backbone_lr_ratio."""
        scale = super().layer_scale(name)
        return scale * self.backbone_lr_ratio if self.in_backbone(name) else scale

    def in_backbone(self, name: str) -> bool:
        """Whether parameter `name` (of this task) is the image backbone's."""
        if not hasattr(self, "_backbone_names"):
            ids = {id(p) for m in self.net.modules() if isinstance(m, zoo.Backbone) for p in m.parameters()}
            self._backbone_names = {n for n, p in self.named_parameters() if id(p) in ids}
        return name in self._backbone_names


def draw_detections(row: dict[str, Any], threshold: float, folder: Path) -> None:
    """The image of a predict row with its detections above `threshold` drawn, as a PNG in
    `folder` named after the image id."""
    path = Path(row["path"])
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except OSError as error:
        raise DataError(f"{path}: cannot read the image to draw its detections on ({error})") from error
    pen = ImageDraw.Draw(image)
    for d in row["detections"]:
        if d["score"] >= threshold:
            colour = plots.box_colour(d["category_id"])
            pen.rectangle(d["box"], outline=colour, width=2)
            pen.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=colour)
    image.save(folder / f"{row['image_id']}_{path.stem}.png")
