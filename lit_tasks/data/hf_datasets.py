"""HF `datasets` saved with `save_to_disk`, as every DataModule reads them: the DatasetDict, our
split names mapped to its ("val" is "validation" or "val"), columns checked, ClassLabel names.
Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from lit_tasks.data.tables import preview
from lit_tasks.errors import DataError

HF_SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}


def load_hf_dataset(folder: str | Path):
    """A ``DatasetDict`` written by ``save_to_disk`` (memory-mapped; nothing is downloaded)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise DataError("hf_dataset needs the `datasets` package: pip install datasets") from e
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"hf_dataset {folder} does not exist or is not a folder (expected a save_to_disk folder).")
    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as e:  # datasets raises FileNotFoundError / ValueError variants
        raise DataError(
            f"hf_dataset {folder}: cannot be read by datasets.load_from_disk ({type(e).__name__}: {e}). "
            "Expected a folder written by DatasetDict.save_to_disk."
        ) from None
    if not isinstance(ds, datasets.DatasetDict):
        raise DataError(
            f"hf_dataset {folder} holds a single Dataset, not a DatasetDict; save a DatasetDict with "
            "splits 'train', 'validation' (or 'val') and 'test'."
        )
    return ds


def hf_split(dsd, folder: str | Path, split: str, required: bool):
    """(split name in the DatasetDict, Dataset) for our split train/val/test; None if absent."""
    for name in HF_SPLIT_NAMES[split]:
        if name in dsd:
            return name, dsd[name]
    if required:
        raise DataError(
            f"hf_dataset {folder} has no {' or '.join(repr(n) for n in HF_SPLIT_NAMES[split])} split; "
            f"it has {preview(list(dsd.keys()))}."
        )
    return None


def check_columns(ds, folder, split_name: str, columns: list[str],
                  hint: str = "Set the *_column options to the names used.") -> None:
    """A DataError naming the split's missing `columns` and the ones it has; `hint` says which
    options name the columns."""
    absent = [c for c in columns if c not in ds.column_names]
    if absent:
        raise DataError(
            f"hf_dataset {folder} split {split_name!r} has no column {preview(absent)}; it has "
            f"{preview(ds.column_names)}. {hint}"
        )


def column_values(ds, columns: list[str]) -> dict[str, list]:
    """{column: its values as a Python list} for `columns` of a split, read in one go (Arrow)."""
    table = ds.select_columns(columns).with_format("arrow")[:]
    return {c: table.column(c).to_pylist() for c in columns}


def classlabel_names(ds, label_column: str) -> list[str] | None:
    """The names of a ``ClassLabel`` (or sequence-of-``ClassLabel``) column, else None."""
    import datasets

    feature = ds.features.get(label_column)
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
    for f in (feature, inner):
        if isinstance(f, datasets.ClassLabel):
            return list(f.names)
    return None
