"""Turning an image folder, a CSV/JSONL file or a saved HF ``datasets`` folder into records.

A record is one image to load: where it is, its class index, and how to name it in an error.
Every check that can be done without decoding images happens here, at set-up, and fails with
a :class:`DataError` whose message names the file, the row and the field at fault.

Layouts:

- **image folder**: ``root/<split>/<class name>/**/<image>``; classes are the sorted folder names
  of ``root/train``; val/test must have exactly the same class folders.
- **CSV / JSONL** (chosen by extension: ``.csv``, ``.jsonl``/``.ndjson``): one row per image with
  a path column and a label column; relative paths resolve against the file's folder. Classes
  are the sorted unique labels of the train file (numerically sorted when all are integers).
- **HF datasets** (a folder written by ``DatasetDict.save_to_disk``): splits ``train``,
  ``validation`` (or ``val``) and ``test``; an ``Image`` (or path string) column and a label
  column; a ``ClassLabel`` label column gives the class names, otherwise as for CSV.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_tasks.data.hf_datasets import check_columns
from lit_tasks.data.labels import sort_labels
from lit_tasks.data.tables import preview, read_rows, row_name, table_kind
from lit_tasks.errors import DataError  # the CLI prints these as one paragraph, no traceback

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a split.

    path:  the image file; for rows of an HF dataset ``<dataset dir>/<split>#<row>``
    label: class index into ``label_names``; -1 when unknown (predict)
    where: how messages name it, e.g. ``/data/val.csv row 7 (img/7.png)``
    row:   the row of an HF dataset split (None for files)
    """

    path: str
    label: int
    where: str
    row: int | None = None


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# ----------------------------------------------------------------------------- image folders


def folder_classes(root: str | Path, split: str) -> list[str]:
    """Sorted class folder names of ``root/<split>`` (cheap: one directory listing)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        if Path(root).is_dir():
            found = preview(sorted(p.name for p in Path(root).iterdir())) or "nothing"
        else:
            found = "nothing (the root folder does not exist)"
        raise DataError(
            f"Image folder layout: the {split} split folder {split_dir} does not exist. Expected "
            f"{Path(root)}/{{train,val,test}}/<class name>/<image files>; found in {root}: {found}."
        )
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        stray = sorted(p.name for p in split_dir.iterdir() if p.is_file() and _is_image(p.name))
        hint = f" It holds image files directly ({preview(stray)}); put them in one folder per class." if stray else ""
        raise DataError(f"Image folder layout: {split_dir} has no class sub-folders.{hint}")
    return classes


def _walk_images(folder: Path) -> tuple[list[str], list[str]]:
    """All image files under ``folder`` (recursive, sorted) and the non-image files found."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # .DS_Store and friends
            (images if _is_image(name) else others).append(os.path.join(dirpath, name))
    return images, others


def folder_records(root: str | Path, split: str, label_names: list[str]) -> list[ImageRecord]:
    """Records of ``root/<split>``; its class folders must be exactly the train classes."""
    split_dir = Path(root) / split
    classes = folder_classes(root, split)
    if split != "train" and classes != label_names:
        extra = sorted(set(classes) - set(label_names))
        missing = sorted(set(label_names) - set(classes))
        parts = []
        if extra:
            parts.append(f"class folder(s) {preview(extra)} that train/ lacks")
        if missing:
            parts.append(f"no folder for train class(es) {preview(missing)}")
        raise DataError(
            f"Image folder layout: {split_dir} has {' and '.join(parts)}. Every split must have "
            f"one folder per class, named as in {Path(root) / 'train'} ({len(label_names)} classes: "
            f"{preview(label_names)}). An empty class is not allowed either."
        )
    records: list[ImageRecord] = []
    ignored: list[str] = []
    for index, name in enumerate(classes):
        images, others = _walk_images(split_dir / name)
        ignored += others
        if not images:
            raise DataError(
                f"Image folder layout: the class folder {split_dir / name} has no image files "
                f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, recursively"
                + (f"; found only {preview([os.path.basename(o) for o in others])}" if others else "")
                + "). Add images or remove the folder from every split."
            )
        records += [ImageRecord(path=p, label=index, where=p) for p in images]
    if ignored:
        log.warning(
            "%s: ignored %d file(s) without an image extension: %s", split_dir, len(ignored), preview(ignored)
        )
    return records


def predict_folder_records(folder: str | Path) -> list[ImageRecord]:
    """Every image under ``folder`` (recursive, sorted), label -1."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"predict_dir {folder} does not exist or is not a folder.")
    images, others = _walk_images(folder)
    if not images:
        raise DataError(
            f"predict_dir {folder} holds no image files (looked recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            + (f"; found only {preview([os.path.basename(o) for o in others])}" if others else "")
            + ")."
        )
    if others:
        log.warning("%s: ignored %d file(s) without an image extension: %s", folder, len(others), preview(others))
    return [ImageRecord(path=p, label=-1, where=p) for p in images]


# ------------------------------------------------------------------------------- CSV / JSONL


@dataclass(frozen=True)
class TableRow:
    number: int  # 1-based data row (CSV: header not counted; JSONL: line number)
    path: str  # resolved against the file's folder
    label: str


def read_table(file: str | Path, path_column: str, label_column: str | None) -> list[TableRow]:
    """Parse a CSV or JSONL file; ``label_column=None`` reads paths only (labels become "").

    Raises :class:`DataError` for a missing file, a missing column, an empty value, an
    unparseable JSON line, a path that is not a string or a label that is neither a string nor an integer.
    """
    file = Path(file).expanduser()
    kind = table_kind(file)
    base = file.parent
    wanted = [path_column] + ([label_column] if label_column else [])
    rows: list[TableRow] = []

    def check(number: int, record: dict[str, Any]) -> None:
        values = {}
        for column in wanted:
            value = record.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                have = "is missing" if column not in record or value is None else "is empty"
                raise DataError(
                    f"{file} {row_name(kind, number)}: the {column!r} field {have}; every row needs "
                    f"an image path in {path_column!r}"
                    + (f" and a class label in {label_column!r}" if label_column else "")
                    + f". Row fields: {preview(sorted(k for k in record if k is not None))}."
                )
            if isinstance(value, bool) or not isinstance(value, str if column == path_column else (str, int)):
                expected = "a path string" if column == path_column else "a class name (string) or an integer"
                raise DataError(
                    f"{file} {row_name(kind, number)}: the {column!r} field is {value!r} "
                    f"({type(value).__name__}); expected {expected}."
                )
            values[column] = str(value).strip()
        path = Path(values[path_column]).expanduser()
        rows.append(TableRow(number, str(path if path.is_absolute() else base / path), values.get(label_column, "")))

    for number, record in read_rows(file, kind, wanted, "Set path_column / label_column to the names used in the file."):
        check(number, record)
    if not rows:
        raise DataError(f"{file}: no rows; expected one row per image with columns {preview(wanted)}.")
    return rows


def table_records(
    file: str | Path, rows: list[TableRow], label_names: list[str] | None, split: str
) -> list[ImageRecord]:
    """Records of a parsed table; checks that every path exists and every label is a train class.
    ``label_names=None``: unlabelled (label -1)."""
    file = Path(file).expanduser()
    kind = table_kind(file)
    index = {name: i for i, name in enumerate(label_names or [])}
    records = []
    for row in rows:
        where = f"{file} {row_name(kind, row.number)} ({row.path})"
        if not os.path.isfile(row.path):
            raise DataError(
                f"{file} {row_name(kind, row.number)}: the image {row.path} does not exist "
                "(relative paths are resolved against the folder of the file)."
            )
        if label_names is None:
            label = -1
        elif row.label in index:
            label = index[row.label]
        else:
            raise DataError(
                f"{file} {row_name(kind, row.number)}: label {row.label!r} of the {split} split never "
                f"occurs in the train file ({len(label_names)} classes: {preview(label_names)}). "
                "A model cannot predict a class it was not trained on; fix the label or add training rows."
            )
        records.append(ImageRecord(path=row.path, label=label, where=where))
    if label_names is not None and split != "train":
        _warn_missing_classes(str(file), split, {r.label for r in records}, label_names)
    return records


def _warn_missing_classes(name: str, split: str, seen: set[int], label_names: list[str]) -> None:
    missing = [label_names[i] for i in range(len(label_names)) if i not in seen]
    if missing:
        log.warning(
            "%s (%s split) has no rows for %d train class(es): %s; per-class metrics for them will be empty.",
            name, split, len(missing), preview(missing),
        )


# ------------------------------------------------------------------------------ HF datasets


def hf_label_names(ds, folder, split_name: str, label_column: str) -> list[str]:
    """ClassLabel names when the label column is a ClassLabel, else the sorted unique labels."""
    import datasets

    check_columns(ds, folder, split_name, [label_column])
    feature = ds.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = _hf_labels(ds, folder, split_name, label_column)
    return sort_labels({str(v) for v in values})


def _hf_labels(ds, folder, split_name: str, label_column: str) -> list[Any]:
    values = ds.with_format("arrow")[label_column].to_pylist()
    for row, value in enumerate(values):
        if value is None or value == -1 or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"hf_dataset {folder} split {split_name!r} row {row}: the {label_column!r} field is "
                f"{'empty' if value is not None and value != -1 else repr(value)}; every row of a labelled "
                "split needs a label (unlabelled images belong in predict_dir)."
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise DataError(
                f"hf_dataset {folder} split {split_name!r} row {row}: the {label_column!r} field is "
                f"{value!r}; expected a class name (string) or an integer."
            )
    return values


def hf_prepare(ds, folder, split_name: str, image_column: str, label_column: str | None):
    """The split with its image column left undecoded (we decode with our own error handling)."""
    import datasets

    check_columns(ds, folder, split_name, [image_column] + ([label_column] if label_column else []))
    feature = ds.features[image_column]
    if isinstance(feature, datasets.Image):
        return ds.cast_column(image_column, datasets.Image(decode=False))
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return ds
    raise DataError(
        f"hf_dataset {folder} split {split_name!r}: column {image_column!r} is {feature}; expected an "
        "Image feature or a string path."
    )


def hf_records(ds, folder, split_name: str, label_column: str, label_names: list[str]) -> list[ImageRecord]:
    import datasets

    feature = ds.features[label_column]
    values = _hf_labels(ds, folder, split_name, label_column)
    records = []
    base = f"{Path(folder).expanduser()}/{split_name}"
    if isinstance(feature, datasets.ClassLabel):
        n = len(label_names)
        for row, value in enumerate(values):
            if not 0 <= value < n:
                raise DataError(
                    f"hf_dataset {folder} split {split_name!r} row {row}: label {value} is outside the "
                    f"{n} ClassLabel names of the train split."
                )
            records.append(ImageRecord(f"{base}#{row}", int(value), f"hf_dataset {base} row {row}", row))
    else:
        index = {name: i for i, name in enumerate(label_names)}
        for row, value in enumerate(values):
            if str(value) not in index:
                raise DataError(
                    f"hf_dataset {folder} split {split_name!r} row {row}: label {value!r} never occurs "
                    f"in the train split ({len(label_names)} classes: {preview(label_names)})."
                )
            records.append(ImageRecord(f"{base}#{row}", index[str(value)], f"hf_dataset {base} row {row}", row))
    if not records:
        raise DataError(f"hf_dataset {folder} split {split_name!r} has no rows.")
    if split_name != "train":
        _warn_missing_classes(f"hf_dataset {folder}", split_name, {r.label for r in records}, label_names)
    return records
