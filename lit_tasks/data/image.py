"""ImageDataModule: image classification data from an image folder, CSV/JSONL or HF datasets."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader

from lit_tasks.data import hf_datasets
from lit_tasks.data import image_sources as src
from lit_tasks.data.base import SplitDataModule
from lit_tasks.data.image_dataset import ImageCollate, ImageDataset
from lit_tasks.data.image_sources import DataError, ImageRecord
from lit_tasks.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from lit_tasks.data.labels import sort_labels
from lit_tasks.data.preprocessor import read_preprocessor_json
from lit_tasks.data.samplers import split_loader

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224


def _read_preprocessor(path: str) -> dict[str, Any]:
    """image_mean, image_std and size (H, W) from an HF ``preprocessor_config.json``.

    ``path`` is the JSON file, a checkpoint folder, or a file inside one (the CLI links
    ``model.init_from`` here). A checkpoint folder without the JSON gives a warning and {}: the
    explicit arguments or the defaults are used. A path that does not exist is an error.
    """
    cfg, file = read_preprocessor_json(
        path, f"image_size/image_mean/image_std as given (defaults: {DEFAULT_IMAGE_SIZE} and the ImageNet statistics)"
    )
    out: dict[str, Any] = {}
    if cfg.get("do_normalize", True) is False:
        out["image_mean"], out["image_std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    else:
        for key in ("image_mean", "image_std"):
            if key in cfg:
                out[key] = _three_floats(cfg[key], f"{file} field {key!r}")
    # crop_size (when present) is what the model finally sees; size is the pre-crop resize.
    for key in ("crop_size", "size"):
        if key not in cfg or cfg[key] is None:
            continue
        size = cfg[key]
        if isinstance(size, int):
            out["image_size"] = (size, size)
        elif isinstance(size, dict) and "height" in size and "width" in size:
            out["image_size"] = (int(size["height"]), int(size["width"]))
        elif isinstance(size, dict) and "shortest_edge" in size:
            out["image_size"] = (int(size["shortest_edge"]),) * 2
        else:
            raise DataError(
                f"preprocessor: {file} field {key!r} is {size!r}; expected an integer, "
                '{"height": H, "width": W} or {"shortest_edge": S}.'
            )
        break
    return out


def _three_floats(value: Any, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        value = [value] * 3
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise DataError(f"{name} is {value!r}; expected three numbers (one per RGB channel).")
    return [float(v) for v in value]


def _size_pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise DataError(f"image_size is {value!r}; expected a positive integer or [height, width].")
    return int(value[0]), int(value[1])


class ImageDataModule(SplitDataModule):
    """Image classification data from one of three sources, yielding model-agnostic batches.

    Sources: give exactly one of ``root`` (an image-folder layout), ``train_file`` (CSV/JSONL
    manifests) or ``hf_dataset``. ``train`` is required; ``val`` for fit/validate; ``test`` for
    test. Predict reads ``predict_dir`` or, without it, the test split.

    Batches (train, val, test and predict alike)::

        {
          "pixel_values": (B, 3, H, W) float32, normalised with image_mean / image_std,
          "labels":       (B,) int64 class indices into label_names; -1 where unknown (predict_dir),
          "paths":        list[str] of B image paths (HF rows: "<hf_dataset>/<split>#<row>"),
          "skipped":      list[str] paths dropped from this batch because they could not be
                          decoded (only with skip_bad_images=True; usually empty),
        }

    B can be smaller than the batch size when images were skipped (0 if all were).

    Images of every PIL mode become RGB: alpha is composited on **white**; 16-bit greyscale is
    scaled 65535 -> 255. Eval resizes (bilinear) to ``image_size``; train takes a random resized
    crop (``random_resized_crop``) and a random horizontal flip (``hflip``). Training order and
    augmentation are a function of the run's seed, the epoch and the sample index only
    (:class:`~lit_tasks.data.samplers.ResumableSampler`), whatever ``num_workers``, and a run
    resumed mid-epoch continues with the very same batches.

    ``label_names`` (sorted class folder names, sorted unique train labels, or the ClassLabel
    names) and ``num_classes`` are available right after construction, for linking into the
    model. Under multi-process data parallelism val/test/predict loaders use an unpadded
    distributed sampler, so every sample is evaluated exactly once.

    Args:
        root: an image-folder layout root/{train,val,test}/<class name>/<image files>
            (recursive); the class folders of every split must match train's. None: use
            train_file or hf_dataset.
        train_file: the train manifest, CSV (with a header) or JSONL with path_column and
            label_column; relative paths resolve against the file's folder. Its labels are
            the classes.
        val_file: the validation manifest, like train_file (needs train_file); None: none.
        test_file: the test manifest, like train_file (needs train_file); None: none.
        path_column: the manifests' column of the image path.
        label_column: the column of the class (a name or an integer) in the manifests or in
            hf_dataset (an HF ClassLabel gives its names and order).
        hf_dataset: a DatasetDict.save_to_disk folder with the splits train, validation
            (or val) and test, holding image_column and label_column.
        image_column: hf_dataset's column of the image: an HF Image, or a path string
            (relative: to the hf_dataset folder).
        predict_dir: a folder whose images (recursive) predict reads, unlabelled; None:
            predict reads the test split.
        image_size: the size the model sees, in pixels: one integer (square) or [height,
            width]. None: the preprocessor's (crop_size, else size), else 224.
        image_mean: the per-channel (R, G, B) mean subtracted from pixels scaled to 0..1.
            None: the preprocessor's, else ImageNet's.
        image_std: the per-channel (R, G, B) standard deviation the pixels are divided by
            (all > 0). None: the preprocessor's, else ImageNet's.
        preprocessor: an HF checkpoint folder, its preprocessor_config.json or a lit_tasks
            .ckpt, whose values fill image_size / image_mean / image_std where they are None
            (explicit values win); the CLI links model.init_from here.
        random_resized_crop: [min, max] share of the image area a training crop covers
            (aspect 3/4..4/3, then resized to image_size), 0 < min <= max <= 1; None: training
            images are resized as in eval.
        hflip: flip training images horizontally with probability 1/2.
        batch_size: images per training batch (on each process under data parallelism).
        eval_batch_size: images per val/test/predict batch; None: batch_size.
        num_workers: DataLoader worker processes; 0 loads in the main process; "auto": none
            when the model runs on the CPU, else one per CPU core of this process's share, at
            most 8 (:func:`lit_tasks.data.samplers.loader_workers`).
        skip_bad_images: leave an image that cannot be decoded out of its batch (warned,
            listed in the batch's "skipped"); False: it stops the run with a DataError naming it.
        cache_images: decode every image of a split once, when the split is set up, and keep
            the RGB pixels in memory (height x width x 3 bytes per image, logged), instead of
            decoding each image again every epoch; the augmentation still runs per epoch. For
            datasets of small images that fit in memory (the bundled Fashion-MNIST: 14 MB).
    """

    def __init__(
        self,
        root: str | None = None,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        path_column: str = "path",
        label_column: str = "label",
        hf_dataset: str | None = None,
        image_column: str = "image",
        predict_dir: str | None = None,
        image_size: int | list[int] | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        preprocessor: str | None = None,
        random_resized_crop: tuple[float, float] | None = (0.08, 1.0),
        hflip: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | Literal["auto"] = "auto",
        skip_bad_images: bool = False,
        cache_images: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        given = [name for name, v in (("root", root), ("train_file", train_file), ("hf_dataset", hf_dataset)) if v]
        if len(given) > 1:
            raise DataError(f"ImageDataModule: give one data source, not {' and '.join(given)}.")
        if (val_file or test_file) and not train_file:
            raise DataError("ImageDataModule: val_file/test_file need train_file (the train file defines the classes).")
        self.root = root
        self.train_file, self.val_file, self.test_file = train_file, val_file, test_file
        self.path_column, self.label_column = path_column, label_column
        self.hf_dataset, self.image_column = hf_dataset, image_column
        self.predict_dir = predict_dir
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.skip_bad_images, self.cache_images = skip_bad_images, cache_images
        if random_resized_crop is not None:
            lo, hi = random_resized_crop
            if not 0 < lo <= hi <= 1:
                raise DataError(
                    f"random_resized_crop is {random_resized_crop!r}; expected [min, max] with 0 < min <= max <= 1."
                )
            random_resized_crop = (float(lo), float(hi))
        self.random_resized_crop, self.hflip = random_resized_crop, hflip

        from_pre = _read_preprocessor(preprocessor) if preprocessor else {}
        # Explicit arguments win over the preprocessor's values, which win over the defaults.
        self.image_size: tuple[int, int] = (
            _size_pair(image_size) if image_size is not None
            else from_pre.get("image_size", (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE))
        )
        self.image_mean: list[float] = (
            _three_floats(image_mean, "image_mean") if image_mean is not None
            else from_pre.get("image_mean", list(IMAGENET_MEAN))
        )
        self.image_std: list[float] = (
            _three_floats(image_std, "image_std") if image_std is not None
            else from_pre.get("image_std", list(IMAGENET_STD))
        )
        if any(s <= 0 for s in self.image_std):
            raise DataError(f"image_std is {self.image_std}; every value must be positive.")

        self._hf = hf_datasets.load_hf_dataset(hf_dataset) if hf_dataset else None
        self._train_rows: list[src.TableRow] | None = None
        self._records: dict[str, list[ImageRecord]] = {}
        self._datasets: dict[str, ImageDataset] = {}
        self._hf_splits: dict[str, Any] = {}  # split -> HF Dataset with the image column undecoded
        self.label_names: list[str] = self._scan_label_names()
        self.num_classes: int = len(self.label_names)

    # ------------------------------------------------------------------ classes and records

    def _scan_label_names(self) -> list[str]:
        if self.root:
            return src.folder_classes(self.root, "train")
        if self.train_file:
            self._train_rows = src.read_table(self.train_file, self.path_column, self.label_column)
            return sort_labels({r.label for r in self._train_rows})
        if self._hf is not None:
            name, ds = hf_datasets.hf_split(self._hf, self.hf_dataset, "train", required=True)
            return src.hf_label_names(ds, self.hf_dataset, name, self.label_column)
        return []  # predict_dir only: classes come from the model

    def has_split(self, split: str) -> bool:
        """Whether the data has a `split` ("train", "val", "test"); the CLI tests after fit only if so."""
        if self.root:
            return (Path(self.root) / split).is_dir()
        if self.train_file or self.val_file or self.test_file:
            return bool({"train": self.train_file, "val": self.val_file, "test": self.test_file}[split])
        if self._hf is not None:
            return hf_datasets.hf_split(self._hf, self.hf_dataset, split, required=False) is not None
        return False

    def _missing_split_error(self, split: str, needed_for: str) -> DataError:
        if self.root:
            what = f"the folder {Path(self.root) / split}"
        elif self.hf_dataset:
            what = f"a {' or '.join(repr(n) for n in hf_datasets.HF_SPLIT_NAMES[split])} split in hf_dataset {self.hf_dataset}"
        elif self.train_file:
            what = f"{split}_file"
        else:
            what = "a data source (root, train_file or hf_dataset)"
        return DataError(f"ImageDataModule: {needed_for} needs the {split} split, but {what} was not found/given.")

    def records(self, split: str) -> list[ImageRecord]:
        """Records of ``train``/``val``/``test``/``predict``, validated and cached."""
        if split in self._records:
            return self._records[split]
        if split == "predict" and self.predict_dir:
            records = src.predict_folder_records(self.predict_dir)
        else:
            split_ = "test" if split == "predict" else split
            if not self.has_split(split_):
                needed_for = "predict (without predict_dir)" if split == "predict" else split_
                raise self._missing_split_error(split_, needed_for)
            if self.root:
                records = src.folder_records(self.root, split_, self.label_names)
            elif self.train_file:
                file = {"train": self.train_file, "val": self.val_file, "test": self.test_file}[split_]
                if split_ == "train":
                    rows = self._train_rows
                else:
                    rows = src.read_table(file, self.path_column, self.label_column)
                records = src.table_records(file, rows, self.label_names, split_)
            else:
                records = self._hf_records(split_)
        self._records[split] = records
        return records

    def _hf_records(self, split: str) -> list[ImageRecord]:
        import datasets

        name, ds = hf_datasets.hf_split(self._hf, self.hf_dataset, split, required=True)
        ds = src.hf_prepare(ds, self.hf_dataset, name, self.image_column, self.label_column)
        train_feature = hf_datasets.hf_split(self._hf, self.hf_dataset, "train", required=True)[1].features[self.label_column]
        feature = ds.features[self.label_column]
        if isinstance(train_feature, datasets.ClassLabel) != isinstance(feature, datasets.ClassLabel) or (
            isinstance(feature, datasets.ClassLabel) and list(feature.names) != self.label_names
        ):
            raise DataError(
                f"hf_dataset {self.hf_dataset} split {name!r}: the {self.label_column!r} column is {feature}, "
                f"but the train split's is {train_feature}; all splits must share the same labels."
            )
        self._hf_splits[split] = ds
        return src.hf_records(ds, self.hf_dataset, name, self.label_column, self.label_names)

    # ------------------------------------------------------------------------- Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        if not self.label_names and stage != "predict":
            raise DataError(
                "ImageDataModule: no training data given; set root, train_file or hf_dataset "
                "(only predict works with predict_dir alone)."
            )
        for split in self.splits_for(stage):
            if split in self._datasets:
                continue
            if split in ("val", "test") and not self.has_split(split):
                raise self._missing_split_error(split, "fit/validate" if split == "val" else "test")
            records = self.records(split)
            if not records:
                raise DataError(f"ImageDataModule: the {split} split has no images.")
            transform = ImageTransform(
                self.image_size, self.image_mean, self.image_std, train=split == "train",
                scale=self.random_resized_crop, hflip=self.hflip,
            )
            hf_split = "test" if split == "predict" else split
            hf = self._hf_splits.get(hf_split) if records[0].row is not None else None
            self._datasets[split] = ImageDataset(
                records, transform, self.skip_bad_images, hf=hf, image_column=self.image_column,
                hf_root=self.hf_dataset,
            )
            if self.cache_images:
                start = time.perf_counter()
                size = self._datasets[split].cache()
                log.info("cache_images: decoded the %d %s images (%.1f MB of pixels) in %.1f s", len(records), split,
                         size / 1e6, time.perf_counter() - start)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        if split not in self._datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        dataset = self._datasets[split]
        return split_loader(dataset, train, self.batch_size if train else self.eval_batch_size,
                            ImageCollate(self.image_size, self.image_mean, self.image_std), self.num_workers, getattr(self, "trainer", None))

    # ---------------------------------------------------------------------------- export

    def preprocessor_config(self) -> dict[str, Any]:
        """An HF image-processor dict (``preprocessor_config.json``) equivalent to the eval
        transform, written next to exported models."""
        height, width = self.image_size
        return {
            "image_processor_type": "ViTImageProcessor",
            "do_convert_rgb": True,
            "do_resize": True,
            "size": {"height": height, "width": width},
            "resample": 2,  # PIL bilinear
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
        }
