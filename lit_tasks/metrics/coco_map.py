"""COCO box mAP and mAR (the 12 numbers of pycocotools' ``COCOeval(..., "bbox").summarize()``),
computed by pycocotools itself over the detections of every process, each image counted once.

What is scored, and how:

- Detections are converted to COCO results entries ``{"image_id", "category_id", "bbox": [x, y,
  w, h], "score"}`` (boxes arrive as absolute x1 y1 x2 y2 in the original image's pixels) and
  scored by ``COCO.loadRes`` + ``COCOeval`` against the ground truth given to
  ``set_ground_truth``: the numbers are pycocotools', not a re-implementation. ``results()`` /
  ``write_results(path)`` give exactly the entries that were scored, a valid ``loadRes`` input.
- Only the images seen are evaluated (``params.imgIds``): a shortened validation
  (``limit_val_batches``) is scored on what it saw, and a seen image without detections still
  counts its ground truth as missed.
- pycocotools' conventions are kept: 101-point interpolated precision, IoU 0.50:0.05:0.95,
  areas small < 32^2 <= medium < 96^2 <= large (the annotation's ``area`` field), at most 1, 10,
  100 detections per image, iscrowd annotations neither matched as positives nor counted as
  missed, categories with no ground truth left out of the mean, and -1 for a number with no
  ground truth at all (e.g. ``map_small`` when no object is small). Detections of a category id
  that the ground truth does not list are ignored, as pycocotools does.
- No detections at all (or no image seen): every number is 0. pycocotools cannot score that
  case (``loadRes`` fails on an empty list).
- COCOeval's printed report is captured, not printed: ``summary`` holds the summarize() text of
  the last compute, the rest is logged at debug level.

Under DDP the states are the per-image and per-detection tensors, concatenated over processes
(``dist_reduce_fx="cat"``), and pycocotools runs on every process over the same gathered data.
A padding DistributedSampler repeats samples to even out the last batches, so one image can
reach ``update`` twice (on two ranks, or on one). Each image is therefore scored once: every
image passed to ``update`` gets an occurrence key, ``rank * 2**40 + n`` with ``n`` from one
counter per process (shared by all instances, so clones and merged states never share a key),
and only the occurrence with the smallest key is kept, with its own detections; the others are
dropped with theirs. The kept one is the lowest rank's, and on one rank the earliest update.
Repeats of a sample normally carry identical detections (same image, same eval transform, same
model); the rule makes the choice deterministic when they do not. ``results()`` lists the kept
detections by image id, each image's in the order ``update`` received them, so the scored list
(and pycocotools' tie-breaking by that order) is the same however the images were split.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics import Metric

from lit_tasks.errors import DataError

log = logging.getLogger(__name__)

# COCOeval.stats order (summarize(), "bbox"): AP @ IoU .50:.95, .50, .75, small, medium, large
# (100 detections per image), then AR with 1, 10, 100 detections, and AR small, medium, large
STAT_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")

_RANK_STRIDE = 2 ** 40  # occurrence key = rank * stride + this process's counter
_OCCURRENCES = itertools.count()  # one per process: keys stay unique across instances and clones

# state name -> (dtype, shape of one row after the first dimension)
_STATES = {"image_ids": (torch.long, ()), "image_keys": (torch.long, ()), "det_keys": (torch.long, ()),
           "boxes": (torch.float64, (4,)), "scores": (torch.float64, ()), "category_ids": (torch.long, ())}


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(K, 4) corners x1 y1 x2 y2 -> COCO's x y w h (left, top, width, height)."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _required(entry: Any, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise DataError(f"COCO ground truth: {where} is a {type(entry).__name__}; expected a dict")
    for field in fields:
        if field not in entry:
            raise DataError(f"COCO ground truth: {where} has no {field!r}; expected the fields {list(fields)}")


def ground_truth_coco(coco: dict[str, Any]) -> COCO:
    """A pycocotools COCO index of the instances dict, checked field by field (DataError naming
    the entry). Annotations are shallow-copied: COCOeval writes an 'ignore' flag into them."""
    if not isinstance(coco, dict):
        raise DataError(f"COCO ground truth is a {type(coco).__name__}; expected the instances dict "
                        f"with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DataError(f"COCO ground truth: {key!r} is {type(coco.get(key)).__name__}; expected a list")
    image_ids, category_ids = set(), set()
    for i, image in enumerate(coco["images"]):
        _required(image, ("id",), f"images[{i}]")
        if not isinstance(image["id"], int) or image["id"] in image_ids:
            raise DataError(f"COCO ground truth: images[{i}] has id {image['id']!r}; expected a unique integer")
        image_ids.add(image["id"])
    for i, category in enumerate(coco["categories"]):
        _required(category, ("id",), f"categories[{i}]")
        category_ids.add(category["id"])
    annotations = []
    for i, ann in enumerate(coco["annotations"]):
        where = f"annotations[{i}]"
        _required(ann, ("id", "image_id", "category_id", "bbox", "area"), where)
        if ann["image_id"] not in image_ids:
            raise DataError(f"COCO ground truth: {where} has image_id {ann['image_id']!r}, not among the images")
        if ann["category_id"] not in category_ids:
            raise DataError(f"COCO ground truth: {where} has category_id {ann['category_id']!r}, "
                            f"not among the categories {sorted(category_ids)}")
        if not (isinstance(ann["bbox"], (list, tuple)) and len(ann["bbox"]) == 4):
            raise DataError(f"COCO ground truth: {where} has bbox {ann['bbox']!r}; expected [x, y, w, h]")
        annotations.append(dict(ann))
    index = COCO()
    index.dataset = {**coco, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        index.createIndex()
    return index


class CocoMeanAP(Metric):
    """COCO box mAP/mAR by pycocotools over all processes' detections, each image once (module
    docstring).

    ``set_ground_truth(coco)``: the COCO instances dict (images, annotations, categories).
    ``update(image_ids, detections)``: ``image_ids`` (B,) int64 COCO image ids; ``detections``
    B dicts {"boxes": (K, 4) float x1 y1 x2 y2 in the original image's pixels, "scores": (K,),
    "category_ids": (K,) int64 COCO category ids} (other keys are ignored; K may be 0).
    ``compute()`` -> the 12 numbers of STAT_KEYS, float64 scalars in [0, 1] (-1: no ground truth).
    ``results()`` / ``write_results(path)``: the scored detections as COCO results entries.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._coco_gt: COCO | None = None
        self._gt_image_ids: set[int] = set()
        self._results: list[dict[str, Any]] | None = None  # from the last compute, until states change
        self.summary = ""

    # -- ground truth ----------------------------------------------------------------------
    def set_ground_truth(self, coco: dict[str, Any]) -> None:
        """The COCO instances dict the detections are scored against (not a state: every process
        sets the same one). Not modified."""
        self._coco_gt = ground_truth_coco(coco)
        self._gt_image_ids = set(self._coco_gt.getImgIds())

    def _ground_truth(self) -> COCO:
        if self._coco_gt is None:
            raise RuntimeError("CocoMeanAP has no ground truth: call set_ground_truth(coco) with the COCO instances "
                               "dict (images, annotations, categories) of the split before compute()")
        return self._coco_gt

    def _check_image_ids(self, image_ids: list[int]) -> None:
        unknown = sorted(set(image_ids) - self._gt_image_ids)
        if unknown:
            raise DataError(f"CocoMeanAP: image ids {unknown[:10]} ({len(unknown)} in all) are not among the ground "
                            f"truth's images (set_ground_truth)")

    # -- states ----------------------------------------------------------------------------
    def update(self, image_ids: torch.Tensor, detections: list[dict[str, torch.Tensor]]) -> None:
        self._results = None
        if not isinstance(image_ids, torch.Tensor) or image_ids.dim() != 1 or image_ids.is_floating_point():
            raise DataError("CocoMeanAP.update: image_ids must be a (B,) integer tensor of COCO image ids")
        if len(detections) != len(image_ids):
            raise DataError(f"CocoMeanAP.update: {len(detections)} detection dicts for {len(image_ids)} image ids")
        ids = image_ids.tolist()
        if self._coco_gt is not None:
            self._check_image_ids(ids)
        keys = [_rank() * _RANK_STRIDE + next(_OCCURRENCES) for _ in ids]
        boxes, scores, categories, det_keys = [], [], [], []
        for i, (det, key) in enumerate(zip(detections, keys)):
            missing = [k for k in ("boxes", "scores", "category_ids") if k not in det]
            if missing:
                raise DataError(f"CocoMeanAP.update: detections[{i}] has no {missing}")
            k = det["boxes"].shape[0] if det["boxes"].dim() == 2 else -1
            if det["boxes"].shape != (k, 4) or det["scores"].shape != (k,) or det["category_ids"].shape != (k,):
                raise DataError(f"CocoMeanAP.update: detections[{i}] has boxes {tuple(det['boxes'].shape)}, scores "
                                f"{tuple(det['scores'].shape)}, category_ids {tuple(det['category_ids'].shape)}; "
                                f"expected (K, 4), (K,), (K,)")
            boxes.append(det["boxes"].detach().to(self.device, torch.float64))
            scores.append(det["scores"].detach().to(self.device, torch.float64))
            categories.append(det["category_ids"].detach().to(self.device, torch.long))
            det_keys.append(torch.full((k,), key, dtype=torch.long, device=self.device))
        boxes_ = torch.cat(boxes) if boxes else torch.zeros(0, 4, dtype=torch.float64, device=self.device)
        scores_ = torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64, device=self.device)
        if boxes_.numel():  # one device sync per batch for the checks
            bad = ~torch.isfinite(boxes_).all(1) | ~torch.isfinite(scores_) | (boxes_[:, 2] < boxes_[:, 0]) \
                | (boxes_[:, 3] < boxes_[:, 1])
            if bad.any():
                row = boxes_[bad.nonzero()[0, 0]].tolist()
                raise DataError(f"CocoMeanAP.update: a detection box {row} (score {scores_[bad][0].item()}) is not "
                                f"finite x1 y1 x2 y2 with x2 >= x1 and y2 >= y1 (boxes are corners, not x y w h)")
        self.image_ids.append(torch.tensor(ids, dtype=torch.long, device=self.device))
        self.image_keys.append(torch.tensor(keys, dtype=torch.long, device=self.device))
        self.boxes.append(boxes_)
        self.scores.append(scores_)
        self.category_ids.append(torch.cat(categories) if categories else
                                 torch.zeros(0, dtype=torch.long, device=self.device))
        self.det_keys.append(torch.cat(det_keys) if det_keys else torch.zeros(0, dtype=torch.long, device=self.device))

    def reset(self) -> None:
        super().reset()
        self._results = None

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        """merge_state and forward add states here: the cached results are stale after."""
        super()._reduce_states(incoming_state)
        self._results = None

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        """A process without any update (an unpadded sampler gives it no image) sends empty
        states of the right dtype and shape; torchmetrics would send float32 (0,) ones, which
        do not concatenate with the other processes' int64 / (K, 4) states."""
        for name, (dtype, row) in _STATES.items():
            if not getattr(self, name):
                setattr(self, name, [torch.zeros((0, *row), dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)

    def _state(self, name: str) -> np.ndarray:
        dtype, row = _STATES[name]
        value = getattr(self, name)
        if isinstance(value, list):
            value = torch.cat(value) if value else torch.zeros((0, *row), dtype=dtype)
        return value.cpu().numpy()

    def _kept_results(self) -> tuple[list[int], list[dict[str, Any]]]:
        """(seen image ids, sorted; the results entries of each image's kept occurrence, by image
        id and then in update order), from the current (gathered, within compute) states."""
        image_ids, image_keys, det_keys = self._state("image_ids"), self._state("image_keys"), self._state("det_keys")
        by_key = np.argsort(image_keys, kind="stable")
        seen, first = np.unique(image_ids[by_key], return_index=True)  # the smallest key of each image
        kept_keys = image_keys[by_key][first]  # (I,), the kept occurrence of each seen image
        keep = np.isin(det_keys, kept_keys)
        by_kept = np.argsort(kept_keys)
        images = seen[by_kept][np.searchsorted(kept_keys[by_kept], det_keys[keep])]  # each kept detection's image
        order = np.argsort(images, kind="stable")  # gathered in update order: stable keeps it per image
        boxes = xyxy_to_xywh(self._state("boxes")[keep][order])
        results = [{"image_id": image, "category_id": category, "bbox": box, "score": score}
                   for image, category, box, score in zip(images[order].tolist(),
                                                          self._state("category_ids")[keep][order].tolist(),
                                                          boxes.tolist(), self._state("scores")[keep][order].tolist())]
        return seen.tolist(), results

    # -- scores ----------------------------------------------------------------------------
    def compute(self) -> dict[str, torch.Tensor]:
        coco_gt = self._ground_truth()
        seen, results = self._kept_results()
        self._check_image_ids(seen)
        self._results = results
        if not results:
            self.summary = f"no detections on {len(seen)} images: every number is 0"
            stats = np.zeros(len(STAT_KEYS))
        else:
            report, summary = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(report):
                coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds fields to its input
                evaluator = COCOeval(coco_gt, coco_dt, "bbox")
                evaluator.params.imgIds = seen
                evaluator.evaluate()
                evaluator.accumulate()
            with contextlib.redirect_stdout(summary):
                evaluator.summarize()
            self.summary = summary.getvalue()
            log.debug("COCOeval on %d images, %d detections:\n%s%s", len(seen), len(results), report.getvalue(),
                      self.summary)
            stats = evaluator.stats
        return {key: torch.tensor(float(stats[i]), dtype=torch.float64, device=self.device)
                for i, key in enumerate(STAT_KEYS)}

    def results(self) -> list[dict[str, Any]]:
        """The scored detections as COCO results entries {"image_id", "category_id", "bbox": [x,
        y, w, h], "score"}, each image's once, sorted by image id. After compute() these are the
        entries it scored (every process holds all of them, so one process may write them);
        otherwise they are gathered now, which under DDP every process must call together."""
        if self._results is None:
            with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
                self._results = self._kept_results()[1]
        return self._results

    def write_results(self, path: str | os.PathLike) -> Path:
        """``results()`` as a JSON list at `path` (a COCO results file, ``COCO.loadRes`` reads it),
        written to a temporary file first and renamed, so a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.results()))
        os.replace(tmp, path)
        return path
