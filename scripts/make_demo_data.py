"""Write the bundled Fashion-MNIST sample as PNGs in the image-folder layout.

Source: the Debian package ``dataset-fashion-mnist`` (Zalando Research, MIT licence), which puts
the four IDX files of the official release under ``/usr/share/datasets/fashion-mnist/``.

Output (what ``ImageDataModule(root="demo_data/fashion_mnist")`` reads)::

    demo_data/fashion_mnist/{train,val,test}/<class name>/<index>.png     28x28 greyscale

``<index>`` is the image's position in the official file it came from (train or t10k), so every
PNG can be traced back. The selection is balanced and deterministic: for each class, in file
order, the first ``--train-per-class`` images of the official train set go to ``train/``, the next
``--val-per-class`` to ``val/`` (disjoint from train), and the first ``--test-per-class`` images of
the official test set to ``test/``. Re-running the script rewrites the same bytes.

    apt-get install dataset-fashion-mnist
    python scripts/make_demo_data.py            # defaults: 600 / 100 / 100 per class
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "demo_data" / "fashion_mnist"

# Label index -> folder name, in the order of the official label ids (0..9).
CLASS_NAMES = [
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
]

# IDX type codes (the third byte of the magic number) -> numpy dtype, big-endian as stored.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: 2 zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension, then the data in C order."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), file holds {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def load_split(source: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")  # (N, 28, 28) uint8
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")  # (N,) uint8
    if len(images) != len(labels):
        raise ValueError(f"{source}/{prefix}: {len(images)} images but {len(labels)} labels")
    return images, labels


def per_class_indices(labels: np.ndarray, start: int, count: int) -> list[np.ndarray]:
    """For each class, indices ``start .. start+count`` of its images in file order."""
    out = []
    for c in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == c)[start : start + count]
        if len(idx) < count:
            raise ValueError(f"class {CLASS_NAMES[c]!r} has only {len(idx)} images from position {start}, need {count}")
        out.append(idx)
    return out


def write_split(out: Path, images: np.ndarray, chosen: list[np.ndarray]) -> int:
    n = 0
    for c, indices in enumerate(chosen):
        folder = out / CLASS_NAMES[c]
        folder.mkdir(parents=True, exist_ok=True)
        for i in indices:
            Image.fromarray(images[i]).save(folder / f"{i}.png", optimize=True)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=SOURCE_DIR, help="folder with the *-ubyte.gz files")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--train-per-class", type=int, default=600)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=100)
    args = p.parse_args(argv)

    needed = [f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]
    missing = [name for name in needed if not (args.source / name).is_file()]
    if missing:
        print(
            f"Fashion-MNIST files not found in {args.source}: {', '.join(missing)}.\n"
            "Install them with:  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu)\n"
            "or pass --source DIR pointing at the official *-ubyte.gz files.",
            file=sys.stderr,
        )
        return 1

    train_images, train_labels = load_split(args.source, "train")
    test_images, test_labels = load_split(args.source, "t10k")

    splits = {
        "train": (train_images, per_class_indices(train_labels, 0, args.train_per_class)),
        "val": (train_images, per_class_indices(train_labels, args.train_per_class, args.val_per_class)),
        "test": (test_images, per_class_indices(test_labels, 0, args.test_per_class)),
    }
    for split, (images, chosen) in splits.items():
        target = args.out / split
        if target.exists():  # start clean so a smaller --train-per-class leaves no stale files
            shutil.rmtree(target)
        n = write_split(target, images, chosen)
        print(f"{target}: {n} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
