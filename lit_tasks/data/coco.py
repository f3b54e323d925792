"""CocoDetectionDataModule: object detection data in COCO format (an images folder and a COCO
instances json per split, or an HF ``datasets`` folder with COCO-style ``objects``).

Every annotation is checked at set-up, and a bad one is a :class:`DataError` naming the file (or
HF split and row) and the annotation id: a missing key, a category id that is not among the
categories, an annotation of an unknown image, a missing image file, a box reaching outside its
image (``box_policy="error"``). Boxes outside the image with ``box_policy="clip"``, zero-area boxes
and crowd annotations are left out of (or clipped in) the training targets, counted, and reported
by one warning per split; the ground truth the split is scored against keeps them as given.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader

from lit_tasks.data import hf_datasets
from lit_tasks.data import image_sources as src
from lit_tasks.data.base import SplitDataModule
from lit_tasks.data.coco_dataset import CocoCollate, CocoDataset, ImageTargets
from lit_tasks.data.geometric_transforms import HFlip, RandomChoice, RandomCrop, ResizeShorter, Step
from lit_tasks.data.image import _three_floats
from lit_tasks.data.image_sources import ImageRecord
from lit_tasks.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD, TargetsTransform
from lit_tasks.data.preprocessor import read_preprocessor_json
from lit_tasks.data.samplers import split_loader
from lit_tasks.data.tables import preview
from lit_tasks.data.targets import BOX_TOLERANCE
from lit_tasks.errors import DataError, read_json_object

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# DETR's recipe (Carion et al. 2020, sec. 4 "Technical details": shorter side 480..800, longer at
# most 1333; half the time a crop first) scaled by 0.16 (800 -> 128) for the 128-pixel demo images.
DEFAULT_EVAL_SIZE = 128
DEFAULT_MAX_SIZE = 213
DEFAULT_SCALES = (80, 88, 96, 104, 112, 120, 128)
DEFAULT_CROP_SCALES = (64, 80, 96)
DEFAULT_CROP_SIZE = (64, 96)
BoxPolicy = Literal["clip", "error"]


@dataclass
class SplitData:
    records: list[ImageRecord]
    targets: list[ImageTargets]
    ground_truth: dict[str, Any] | None  # the COCO instances dict the split is scored against
    report: dict[str, int]  # "clipped", "zero_area", "crowd": annotations clipped or left out
    hf: Any = None  # the HF split with its images undecoded, or None for files


# ------------------------------------------------------------------------------ annotations


def _get(entry: Any, key: str, name: str, kinds: tuple[type, ...], expected: str) -> Any:
    """``entry[key]``, checked to be of ``kinds`` (never a bool); a DataError naming ``name`` else."""
    if not isinstance(entry, dict):
        raise DataError(f"{name} is {type(entry).__name__}; expected a JSON object.")
    if key not in entry or entry[key] is None:
        raise DataError(f"{name} has no {key!r} ({expected}); it has {preview(sorted(map(str, entry)))}.")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise DataError(f"{name}: {key!r} is {value!r}; expected {expected}.")
    return value


def _positive_int(entry: dict, key: str, name: str) -> int:
    value = _get(entry, key, name, (int,), "a positive integer (pixels)")
    if value <= 0:
        raise DataError(f"{name}: {key!r} is {value}; expected a positive integer (pixels).")
    return value


class BoxChecker:
    """Turns COCO annotations into training boxes (xyxy) and labels, applying ``policy`` to boxes
    that reach more than ``BOX_TOLERANCE`` pixels outside their image (within it a box is clipped
    silently: annotation rounding), and counting what it clips or leaves out."""

    def __init__(self, source: str, categories: dict[int, int], policy: BoxPolicy):
        self.source, self.categories, self.policy = source, categories, policy
        self.ids: dict[str, list[int]] = {"clipped": [], "zero_area": [], "crowd": []}

    def add(self, name: str, ann_id: int, category_id: Any, bbox: Any, iscrowd: Any, size: tuple[int, int],
            image_id: int, out: ImageTargets) -> None:
        if isinstance(category_id, bool) or not isinstance(category_id, int) or category_id not in self.categories:
            raise DataError(
                f"{name}: category_id {category_id!r} is not among the categories "
                f"(ids {preview([str(c) for c in self.categories])})."
            )
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
            raise DataError(f"{name}: bbox is {bbox!r}; expected [x, y, width, height], four finite numbers (pixels).")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise DataError(f"{name}: bbox {list(bbox)} has a negative width or height; COCO boxes are "
                            "[x, y, width, height] (not corners).")
        if iscrowd not in (0, 1):  # True/False compare equal to 1/0
            raise DataError(f"{name}: iscrowd is {iscrowd!r}; expected 0 or 1.")
        if iscrowd:  # kept in the ground truth (pycocotools ignores detections matched to it), not trained on
            self.ids["crowd"].append(ann_id)
            return
        if w == 0 or h == 0:
            self.ids["zero_area"].append(ann_id)
            return
        height, width = size
        box = [x, y, x + w, y + h]
        tol = BOX_TOLERANCE
        if x < -tol or y < -tol or box[2] > width + tol or box[3] > height + tol:
            if self.policy == "error":
                raise DataError(
                    f"{name}: bbox {list(bbox)} (x, y, width, height) reaches outside image {image_id}, which is "
                    f"{width}x{height} (width x height). Fix the annotation, or set box_policy: clip to clip "
                    "such boxes."
                )
            self.ids["clipped"].append(ann_id)
        box = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
               min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
        if box[2] <= box[0] or box[3] <= box[1]:  # wholly outside: nothing left to train on
            return
        out.boxes.append(box)
        out.labels.append(self.categories[category_id])

    def report(self) -> dict[str, int]:
        """The counts; logs one warning for what was clipped or left out."""
        parts = []
        if self.ids["clipped"]:
            parts.append(f"{len(self.ids['clipped'])} box(es) reaching outside their image clipped to it "
                         f"(box_policy='clip'; annotation ids {preview([str(i) for i in self.ids['clipped']])})")
        if self.ids["zero_area"]:
            parts.append(f"{len(self.ids['zero_area'])} annotation(s) with a zero width or height skipped "
                         f"(ids {preview([str(i) for i in self.ids['zero_area']])})")
        if parts:
            log.warning("%s: %s; the ground truth keeps them as given.", self.source, "; ".join(parts))
        return {k: len(v) for k, v in self.ids.items()}


def read_coco_json(file: Path) -> dict[str, Any]:
    """A COCO instances file as a dict with lists "images", "annotations" and "categories"."""
    if not file.is_file():
        raise DataError(f"{file}: the annotation file does not exist (expected a COCO instances json).")
    coco = read_json_object(file, "a COCO instances object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            have = "has no" if key not in coco else f"has {type(coco[key]).__name__} as"
            raise DataError(f"{file} {have} {key!r}; a COCO instances file has the lists 'images', "
                            "'annotations' and 'categories'.")
    return coco


def json_categories(coco: dict[str, Any], file: Path) -> dict[int, str]:
    """{category id: name}, sorted by id."""
    categories: dict[int, str] = {}
    for i, c in enumerate(coco["categories"]):
        name = f"{file} categories[{i}]"
        cat_id = _get(c, "id", name, (int,), "an integer category id")
        if cat_id in categories:
            raise DataError(f"{file}: category id {cat_id} appears twice in 'categories'.")
        categories[cat_id] = _get(c, "name", f"{file} category id {cat_id}", (str,), "the category's name")
    if not categories:
        raise DataError(f"{file}: 'categories' is empty; a detection dataset needs at least one category.")
    return dict(sorted(categories.items()))


def json_split(coco: dict[str, Any], file: Path, images_dir: Path, categories: dict[int, int],
               policy: BoxPolicy) -> SplitData:
    """Records and targets of a COCO json whose ``file_name``s are in ``images_dir``; ``coco``
    becomes the ground truth (missing ``iscrowd`` filled with 0, missing ``area`` with w * h)."""
    records, targets, position = [], [], {}
    for i, im in enumerate(coco["images"]):
        image_id = _get(im, "id", f"{file} images[{i}]", (int,), "an integer image id")
        name = f"{file} image id {image_id}"
        if image_id in position:
            raise DataError(f"{name} appears twice in 'images'.")
        file_name = _get(im, "file_name", name, (str,), "the image's file name")
        size = (_positive_int(im, "height", name), _positive_int(im, "width", name))
        path = images_dir / file_name
        if not path.is_file():
            raise DataError(f"{name}: the image file {path} does not exist (file_name {file_name!r} is "
                            f"resolved against the images folder {images_dir}).")
        position[image_id] = len(records)
        records.append(ImageRecord(path=str(path), label=-1, where=f"{name} ({path})"))
        targets.append(ImageTargets(image_id, size))
    checker, seen = BoxChecker(str(file), categories, policy), set()
    for k, a in enumerate(coco["annotations"]):
        ann_id = _get(a, "id", f"{file} annotations[{k}]", (int,), "an integer annotation id")
        name = f"{file} annotation id {ann_id}"
        if ann_id in seen:
            raise DataError(f"{name} appears twice in 'annotations'.")
        seen.add(ann_id)
        image_id = _get(a, "image_id", name, (int,), "the integer id of its image")
        if image_id not in position:
            raise DataError(f"{name}: image_id {image_id} is not among the file's images.")
        _get(a, "category_id", name, (int,), "an integer category id")
        bbox = _get(a, "bbox", name, (list,), "[x, y, width, height]")
        out = targets[position[image_id]]
        checker.add(name, ann_id, a["category_id"], bbox, a.get("iscrowd", 0), out.size, image_id, out)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(bbox[2]) * float(bbox[3])
    return SplitData(records, targets, coco, checker.report())


def _objects_list(value: Any, where: str) -> list[dict[str, Any]]:
    """A row's ``objects`` as one dict per object (HF stores a Sequence of dicts as a dict of lists)."""
    if value is None:
        return []
    if isinstance(value, dict):
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        if len(lengths) > 1:
            raise DataError(f"{where}: the 'objects' fields have different lengths ({sorted(lengths)}).")
        n = lengths.pop() if lengths else 0
        return [{k: v[j] for k, v in value.items() if isinstance(v, list)} for j in range(n)]
    if isinstance(value, list) and all(isinstance(o, dict) for o in value):
        return value
    raise DataError(f"{where}: 'objects' is {type(value).__name__}; expected a list of objects with "
                    "'bbox' [x, y, width, height] and 'category'.")


def hf_classlabel(ds):
    """The ClassLabel of ``objects.category``, or None when the categories are plain integers."""
    import datasets

    feature = ds.features["objects"]
    inner = getattr(feature, "feature", feature)  # List({...}) or {"category": List(...), ...}
    category = inner.get("category") if isinstance(inner, dict) else None
    category = getattr(category, "feature", category)
    return category if isinstance(category, datasets.ClassLabel) else None


def hf_categories(ds, folder: str, split_name: str) -> dict[int, str]:
    """{category id: name}: a ClassLabel ``objects.category`` gives ids 0..n-1 and its names;
    integer categories give the sorted ids of the split, named by their id."""
    hf_datasets.check_columns(ds, folder, split_name, ["objects"], "Store the boxes in an 'objects' column.")
    classlabel = hf_classlabel(ds)
    if classlabel is not None:
        return dict(enumerate(classlabel.names))
    ids = set()
    for row, value in enumerate(hf_datasets.column_values(ds, ["objects"])["objects"]):
        for j, obj in enumerate(_objects_list(value, f"hf_dataset {folder} split {split_name!r} row {row}")):
            c = obj.get("category")
            if isinstance(c, bool) or not isinstance(c, int):
                raise DataError(f"hf_dataset {folder} split {split_name!r} row {row} object {j}: category is "
                                f"{c!r}; expected an integer category id (or make the column a ClassLabel).")
            ids.add(c)
    if not ids:
        raise DataError(f"hf_dataset {folder} split {split_name!r} has no objects to take the categories from.")
    return {c: str(c) for c in sorted(ids)}


# --------------------------------------------------------------------------------- the module


class CocoDetectionDataModule(SplitDataModule):
    """Object detection data in COCO format, yielding padded batches with box targets.

    Sources: give ``root``, per-split paths (``train_images`` + ``train_annotations``, ...) or
    ``hf_dataset``. ``train`` is needed for fit, ``val`` for fit/validate, ``test`` for test.
    Predict reads every image under ``predict_dir`` (no targets, image id -1) or, without it,
    the test split. The categories are those of the first split that exists (train, val,
    test); the others must have the same (id, name) pairs.

    Batches (:class:`~lit_tasks.data.targets.TargetsCollate`'s)::

        {
          "pixel_values": (B, 3, H, W) float32, normalised with image_mean / image_std, zero-padded
                          at the bottom and right to the batch's largest image (H, W multiples of
                          size_divisor);
          "pixel_mask":   (B, H, W) int64, 1 on an image's own pixels;
          "targets":      B dicts: "boxes" (N, 4) float xyxy in pixels of the transformed image,
                          "labels" (N,) int64 label indices (category_ids[label] is the COCO id),
                          "orig_size" (2,) and "size" (2,) int64 (H, W) as read / as transformed;
          "image_ids":    (B,) int64 COCO image ids;
          "paths":        B image paths (HF rows: "<hf_dataset>/<split>#<row>");  "skipped": [],
        }

    Transforms (docs/image_targets.md): DETR's (Carion et al. 2020, sec. 4 "Technical details"),
    by default with sizes scaled by 0.16 (800 -> 128) for small images; give DETR's own (in the
    Args) for COCO itself. Train: ``HFlip`` (when ``hflip``), then with probability 1/2 each
    ``ResizeShorter(scales, max_size)`` or ``ResizeShorter(crop_scales)`` +
    ``RandomCrop(*crop_size)`` + ``ResizeShorter(scales, max_size)``. Eval:
    ``ResizeShorter([eval_size], max_size)``. Random draws depend on (seed, epoch, index) only,
    whatever ``num_workers``, and a run resumed mid-epoch continues with the very same batches.

    Targets: labels are contiguous indices into ``label_names`` (category names ordered by
    category id); ``category_ids`` maps them back. ``iscrowd`` annotations stay in the ground
    truth but are not trained on (as DETR does); zero-area boxes are skipped (counted, one warning
    per split); a box reaching more than one pixel outside its image is clipped and counted
    (``box_policy: clip``) or a DataError (``error``); within one pixel it is clipped silently.
    Images without annotations are kept, with no boxes. :meth:`coco_ground_truth` gives the
    COCO dict a split is scored against: the json as read, or one built from the HF split.

    Args:
        root: a folder with root/{train,val,test}/ images and
            root/annotations/{train,val,test}.json (COCO instances; file_name relative
            to the split's images folder), the layout of demo_data/pasted_objects.
        train_images: the train images folder (e.g. COCO 2017's train2017/), given with
            train_annotations; wins over root's for that split.
        train_annotations: the train split's COCO instances json (e.g.
            annotations/instances_train2017.json), file_name relative to train_images.
        val_images: the validation images folder, given with val_annotations.
        val_annotations: the validation split's COCO instances json.
        test_images: the test images folder, given with test_annotations.
        test_annotations: the test split's COCO instances json.
        hf_dataset: a DatasetDict.save_to_disk folder (not with the json sources) with
            the splits train, validation (or val) and test: image_column, an optional
            image_id column (default: the row number) and objects with bbox [x, y,
            w, h] and category (a ClassLabel: ids are its indices, names its names;
            integers: the ids of the train split, named by their id), optional id
            (default: numbered from 1 per split), area (default w * h) and iscrowd
            (default 0). Image sizes are read from the images.
        image_column: hf_dataset's column of the image: an HF Image, or a path string.
        predict_dir: a folder whose images (recursive) predict reads; None: predict reads the
            test split.
        scales: the shorter-side sizes (pixels) a training image is resized to, one drawn per
            image; default 80..128 by 8 (DETR: 480..800 by 32).
        max_size: the cap (pixels) on the longer side when resizing to scales or eval_size.
            None: the preprocessor's longest_edge (or max_size), else 213 (DETR: 1333).
        crop_scales: the shorter-side sizes (pixels) before the random crop, one drawn per
            image; default 64, 80, 96 (DETR: 400, 500, 600).
        crop_size: [min, max] width and height (pixels) of the random crop, each drawn in
            that range; default 64..96 (DETR: 384..600).
        eval_size: the shorter side (pixels) val/test/predict images are resized to. None:
            the preprocessor's shortest_edge, else 128 (DETR: 800).
        hflip: flip training images (and their boxes) horizontally with probability 1/2.
        image_mean: the per-channel (R, G, B) mean subtracted from pixels scaled to 0..1.
            None: the preprocessor's, else ImageNet's.
        image_std: the per-channel (R, G, B) standard deviation the pixels are divided by
            (all > 0). None: the preprocessor's, else ImageNet's.
        preprocessor: an HF (DETR) checkpoint folder, its preprocessor_config.json or a
            lit_tasks .ckpt, whose values fill eval_size / max_size / image_mean / image_std
            where they are None (explicit values win); the CLI links model.init_from here.
        size_divisor: the padded batch's height and width are rounded up to a multiple of
            this (e.g. a backbone's stride); 1: no rounding.
        box_policy: a box reaching more than one pixel outside its image: "clip" clips it
            (counted, warned); "error" raises a DataError naming the annotation.
        batch_size: images per training batch (on each process under data parallelism).
        eval_batch_size: images per val/test/predict batch; None: batch_size.
        num_workers: DataLoader worker processes; 0 loads in the main process; "auto": none
            when the model runs on the CPU, else one per CPU core of this process's share, at
            most 8 (:func:`lit_tasks.data.samplers.loader_workers`).
        seed: fixes the training order and every augmentation; None: the run's
            seed_everything.
    """

    def __init__(
        self,
        root: str | None = None,
        train_images: str | None = None,
        train_annotations: str | None = None,
        val_images: str | None = None,
        val_annotations: str | None = None,
        test_images: str | None = None,
        test_annotations: str | None = None,
        hf_dataset: str | None = None,
        image_column: str = "image",
        predict_dir: str | None = None,
        scales: tuple[int, ...] = DEFAULT_SCALES,
        max_size: int | None = None,
        crop_scales: tuple[int, ...] = DEFAULT_CROP_SCALES,
        crop_size: tuple[int, int] = DEFAULT_CROP_SIZE,
        eval_size: int | None = None,
        hflip: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        preprocessor: str | None = None,
        size_divisor: int = 1,
        box_policy: BoxPolicy = "clip",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | Literal["auto"] = "auto",
        seed: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        given = {s: (p, a) for s, p, a in (("train", train_images, train_annotations),
                                           ("val", val_images, val_annotations),
                                           ("test", test_images, test_annotations))}
        for split, (images, annotations) in given.items():
            if bool(images) != bool(annotations):
                raise DataError(f"CocoDetectionDataModule: give {split}_images and {split}_annotations together.")
        if hf_dataset and (root or any(p for p, _ in given.values())):
            raise DataError("CocoDetectionDataModule: give hf_dataset or COCO json files (root, "
                            "*_images/*_annotations), not both.")
        if box_policy not in ("clip", "error"):
            raise DataError(f"box_policy is {box_policy!r}; expected 'clip' or 'error'.")
        self.files: dict[str, tuple[Path, Path]] = {}  # split -> (images folder, json)
        for split, (images, annotations) in given.items():
            if images:
                self.files[split] = (Path(images).expanduser(), Path(annotations).expanduser())
            elif root:
                base = Path(root).expanduser()
                self.files[split] = (base / split, base / "annotations" / f"{split}.json")
        self.root, self.hf_dataset, self.image_column, self.predict_dir = root, hf_dataset, image_column, predict_dir
        self.box_policy: BoxPolicy = box_policy
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size or batch_size, num_workers
        self.seed, self.size_divisor, self.hflip = seed, int(size_divisor), hflip
        if self.size_divisor < 1:
            raise DataError(f"size_divisor is {size_divisor}; expected a positive integer.")

        from_pre = self._read_preprocessor(preprocessor) if preprocessor else {}
        self.eval_size = _positive("eval_size", eval_size if eval_size is not None
                                   else from_pre.get("eval_size", DEFAULT_EVAL_SIZE))
        self.max_size = _positive("max_size", max_size if max_size is not None
                                  else from_pre.get("max_size", DEFAULT_MAX_SIZE))
        self.scales = [_positive("scales", s) for s in scales]
        self.crop_scales = [_positive("crop_scales", s) for s in crop_scales]
        if not self.scales or not self.crop_scales:
            raise DataError("scales and crop_scales need at least one size each.")
        if not (len(crop_size) == 2 and 0 < crop_size[0] <= crop_size[1]):
            raise DataError(f"crop_size is {crop_size!r}; expected [min, max] with 0 < min <= max (pixels).")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.image_mean = (_three_floats(image_mean, "image_mean") if image_mean is not None
                           else from_pre.get("image_mean", list(IMAGENET_MEAN)))
        self.image_std = (_three_floats(image_std, "image_std") if image_std is not None
                          else from_pre.get("image_std", list(IMAGENET_STD)))
        if any(s <= 0 for s in self.image_std):
            raise DataError(f"image_std is {self.image_std}; every value must be positive.")

        self._hf = hf_datasets.load_hf_dataset(hf_dataset) if hf_dataset else None
        self._json: dict[str, dict[str, Any]] = {}  # split -> the json as read (categories read first)
        self._splits: dict[str, SplitData] = {}
        self._category_source = ""  # what the categories were read from, for messages
        self._datasets: dict[str, CocoDataset] = {}
        self.categories: dict[int, str] = self._scan_categories()
        self.category_ids: list[int] = list(self.categories)
        self.label_names: list[str] = list(self.categories.values())
        self.num_classes: int = len(self.label_names)
        self._label_of = {c: i for i, c in enumerate(self.category_ids)}

    # ------------------------------------------------------------------------- categories

    @staticmethod
    def _read_preprocessor(path: str) -> dict[str, Any]:
        """image_mean / image_std and the eval resize of an HF (DETR) ``preprocessor_config.json``."""
        cfg, file = read_preprocessor_json(path, "eval_size/max_size/image_mean/image_std as given or their defaults")
        out: dict[str, Any] = {}
        if cfg.get("do_normalize", True) is False:
            out["image_mean"], out["image_std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        else:
            for key in ("image_mean", "image_std"):
                if key in cfg:
                    out[key] = _three_floats(cfg[key], f"{file} field {key!r}")
        size = cfg.get("size")
        if isinstance(size, dict) and "shortest_edge" in size:
            out["eval_size"] = size["shortest_edge"]
            if size.get("longest_edge"):
                out["max_size"] = size["longest_edge"]
        elif isinstance(size, int):
            out["eval_size"] = size
        elif size is not None:
            raise DataError(f"preprocessor: {file} field 'size' is {size!r}; expected an integer or "
                            '{"shortest_edge": S, "longest_edge": L}.')
        if cfg.get("max_size"):  # older DETR processors
            out.setdefault("max_size", cfg["max_size"])
        return out

    def _scan_categories(self) -> dict[int, str]:
        for split in SPLITS:
            if not self.has_split(split):
                continue
            if self._hf is not None:
                name, ds = hf_datasets.hf_split(self._hf, self.hf_dataset, split, required=True)
                self._category_source = f"hf_dataset {self.hf_dataset} split {name!r}"
                return hf_categories(ds, self.hf_dataset, name)
            file = self.files[split][1]
            self._json[split] = read_coco_json(file)
            self._category_source = str(file)
            return json_categories(self._json[split], file)
        if self.files or self._hf is not None:
            raise self._missing_split_error("train", "reading the categories")
        return {}  # predict_dir only: the categories come from the model

    def has_split(self, split: str) -> bool:
        """Whether the data has a `split` ("train", "val", "test"); the CLI tests after fit only if so."""
        if self._hf is not None:
            return hf_datasets.hf_split(self._hf, self.hf_dataset, split, required=False) is not None
        return split in self.files and self.files[split][1].is_file()

    def _missing_split_error(self, split: str, needed_for: str) -> DataError:
        if self._hf is not None:
            names = " or ".join(map(repr, hf_datasets.HF_SPLIT_NAMES[split]))
            what = f"a {names} split in hf_dataset {self.hf_dataset}"
        elif split in self.files:
            what = f"the annotation file {self.files[split][1]}"
        else:
            what = f"{split}_images/{split}_annotations (or root)"
        return DataError(f"CocoDetectionDataModule: {needed_for} needs the {split} split, but {what} was not "
                         "found/given.")

    # ----------------------------------------------------------------------------- splits

    def split_data(self, split: str) -> SplitData:
        """Records, targets and ground truth of ``train``/``val``/``test``/``predict``, checked and cached."""
        if split in self._splits:
            return self._splits[split]
        if split == "predict" and self.predict_dir:
            records = src.predict_folder_records(self.predict_dir)
            data = SplitData(records, [ImageTargets(-1) for _ in records], None, {})
        else:
            split_ = "test" if split == "predict" else split
            if not self.has_split(split_):
                needed_for = "predict (without predict_dir)" if split == "predict" else split_
                raise self._missing_split_error(split_, needed_for)
            data = self._hf_split(split_) if self._hf is not None else self._json_split(split_)
        self._splits[split] = data
        return data

    def _json_split(self, split: str) -> SplitData:
        images_dir, file = self.files[split]
        coco = self._json.pop(split, None) or read_coco_json(file)
        categories = json_categories(coco, file)
        if categories != self.categories:
            raise DataError(f"{file}: its categories {_pairs(categories)} differ from those of {self._category_source} "
                            f"{_pairs(self.categories)}; every split needs the same category ids and names.")
        if not images_dir.is_dir():
            raise DataError(f"{file}: the images folder {images_dir} does not exist.")
        return json_split(coco, file, images_dir, self._label_of, self.box_policy)

    def _hf_split(self, split: str) -> SplitData:
        folder = self.hf_dataset
        name, ds = hf_datasets.hf_split(self._hf, folder, split, required=True)
        ds = src.hf_prepare(ds, folder, name, self.image_column, None)
        hf_datasets.check_columns(ds, folder, name, ["objects"], "Store the boxes in an 'objects' column.")
        classlabel = hf_classlabel(ds)  # integer categories are checked one by one, naming the annotation
        if classlabel is not None and dict(enumerate(classlabel.names)) != self.categories:
            raise DataError(f"hf_dataset {folder} split {name!r}: its categories "
                            f"{_pairs(dict(enumerate(classlabel.names)))} differ from those of "
                            f"{self._category_source} {_pairs(self.categories)}.")
        has_ids = "image_id" in ds.column_names
        values = hf_datasets.column_values(ds, ["objects"] + (["image_id"] if has_ids else []))
        base = f"{Path(folder).expanduser()}/{name}"
        records = [ImageRecord(f"{base}#{row}", -1, f"hf_dataset {base} row {row}", row) for row in range(len(ds))]
        probe = CocoDataset(records, [], None, hf=ds, image_column=self.image_column, hf_root=folder)
        checker = BoxChecker(f"hf_dataset {base}", self._label_of, self.box_policy)
        images, annotations, targets, seen_images, seen_ids = [], [], [], set(), set()
        for row, record in enumerate(records):
            image_id = values["image_id"][row] if has_ids else row
            if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id in seen_images:
                raise DataError(f"{record.where}: image_id {image_id!r} is "
                                + ("repeated" if image_id in seen_images else "not an integer") + ".")
            seen_images.add(image_id)
            size = probe.image_size(row)
            images.append({"id": image_id, "file_name": record.path, "height": size[0], "width": size[1]})
            out = ImageTargets(image_id, size)
            for j, obj in enumerate(_objects_list(values["objects"][row], record.where)):
                ann_id = obj.get("id", len(annotations) + 1)
                where = f"{record.where} object {j} (annotation id {ann_id})"
                if isinstance(ann_id, bool) or not isinstance(ann_id, int) or ann_id in seen_ids:
                    problem = "repeated" if ann_id in seen_ids else "not an integer"
                    raise DataError(f"{where}: the id is {problem}.")
                seen_ids.add(ann_id)
                for key in ("bbox", "category"):
                    if obj.get(key) is None:
                        raise DataError(f"{where} has no {key!r}; objects need 'bbox' [x, y, width, height] and "
                                        "'category'.")
                bbox, iscrowd = obj["bbox"], obj.get("iscrowd")
                iscrowd = 0 if iscrowd is None else iscrowd
                checker.add(where, ann_id, obj["category"], bbox, iscrowd, size, image_id, out)
                area = obj.get("area")
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": obj["category"],
                                    "bbox": [float(v) for v in bbox],
                                    "area": float(bbox[2]) * float(bbox[3]) if area is None else float(area),
                                    "iscrowd": int(iscrowd)})
            targets.append(out)
        if not records:
            raise DataError(f"hf_dataset {folder} split {name!r} has no rows.")
        truth = {"images": images, "annotations": annotations,
                 "categories": [{"id": c, "name": n} for c, n in self.categories.items()]}
        return SplitData(records, targets, truth, checker.report(), hf=ds)

    def coco_ground_truth(self, split: str) -> dict[str, Any]:
        """The COCO instances dict (``images``, ``annotations``, ``categories``) that ``split``
        ("train", "val", "test") is scored against: the json as read (annotations keep their
        ``iscrowd`` and ``area``; only missing ones are filled: 0 and w * h), or the one built
        from the HF split (``file_name`` is the row's path). Not a copy: do not modify it."""
        if split not in SPLITS:
            raise ValueError(f"coco_ground_truth: split is {split!r}; expected one of {SPLITS}")
        return self.split_data(split).ground_truth

    @property
    def box_report(self) -> dict[str, dict[str, int]]:
        """{split: {"clipped", "zero_area", "crowd": annotation counts}} of the splits read so far."""
        return {split: data.report for split, data in self._splits.items()}

    # -------------------------------------------------------------------------- transforms

    def train_steps(self) -> list[Step]:
        """DETR's training augmentation with this module's sizes."""
        resize = ResizeShorter(self.scales, self.max_size)
        crop = [ResizeShorter(self.crop_scales), RandomCrop(*self.crop_size), ResizeShorter(self.scales, self.max_size)]
        return ([HFlip()] if self.hflip else []) + [RandomChoice([[resize], crop])]

    def eval_steps(self) -> list[Step]:
        return [ResizeShorter([self.eval_size], self.max_size)]

    # --------------------------------------------------------------------- Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        if not self.label_names and stage != "predict":
            raise DataError("CocoDetectionDataModule: no data given; set root, *_images/*_annotations or hf_dataset "
                            "(only predict works with predict_dir alone).")
        for split in self.splits_for(stage):
            if split in self._datasets:
                continue
            if split in ("val", "test") and not self.has_split(split):
                raise self._missing_split_error(split, "fit/validate" if split == "val" else "test")
            data = self.split_data(split)
            if not data.records:
                raise DataError(f"CocoDetectionDataModule: the {split} split has no images.")
            steps = self.train_steps() if split == "train" else self.eval_steps()
            self._datasets[split] = CocoDataset(
                data.records, data.targets, TargetsTransform(steps, self.image_mean, self.image_std),
                hf=data.hf, image_column=self.image_column, hf_root=self.hf_dataset,
            )

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        if split not in self._datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        loader = split_loader(self._datasets[split], train, self.batch_size if train else self.eval_batch_size,
                              CocoCollate(self.size_divisor), self.num_workers, getattr(self, "trainer", None))
        if train and self.seed is not None:
            loader.sampler.seed = self.seed  # the order and augmentation seeds (ResumableSampler)
        return loader

    def preprocessor_config(self) -> dict[str, Any]:
        """An HF ``DetrImageProcessor`` dict (``preprocessor_config.json``) equivalent to the eval
        transform, written next to exported models (padding to the batch's largest image)."""
        return {
            "image_processor_type": "DetrImageProcessor",
            "format": "coco_detection",
            "do_convert_rgb": True,
            "do_resize": True,
            "size": {"shortest_edge": self.eval_size, "longest_edge": self.max_size},
            "resample": 2,  # PIL bilinear
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_pad": True,
        }


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DataError(f"{name} is {value!r}; expected a positive integer (pixels).")
    return value


def _pairs(categories: dict[int, str]) -> str:
    return preview([f"{c}: {n}" for c, n in categories.items()])
