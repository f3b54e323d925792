"""Write the bundled "pasted objects" detection set: Fashion-MNIST items pasted onto crops of real
photographs and textures from ``skimage.data``, with exact boxes and masks, in COCO format.

Output (what ``CocoDetectionDataModule(root="demo_data/pasted_objects")`` reads)::

    demo_data/pasted_objects/{train,val,test}/<image id>.jpg            128x128 RGB JPEG
    demo_data/pasted_objects/annotations/{train,val,test}.json          COCO instances

Each image is a random square crop (40 to 128 pixels) of one of eight ``skimage.data`` images
(grass, brick, gravel, camera, coffee, astronaut, chelsea, rocket; public domain or CC0), resized
to 128x128 and flattened in contrast, with 0 to 4 items pasted on it (about 3% of the images hold
none; the number of items is uniform in 1..4 otherwise). An
item is a 28x28 Fashion-MNIST image of one of five classes, taken from the same split of
``demo_data/fashion_mnist`` (train items for train images, ...), scaled 1.2x to 2.5x, mirrored
with probability 1/2, and coloured with a random saturated colour shaded by the item's own grey
levels. Its **mask** is the scaled item's foreground: the pixels above ``THRESHOLD`` after the
(bilinear) scaling; only those pixels are painted, so the mask is exactly what the image shows.

A placement that would hide more than ``MAX_HIDDEN`` of an earlier object's mask is redrawn
(up to ``TRIES`` times, then the item is left out). After all items are placed, each object's
mask is the part of it still visible (later items cover earlier ones), its ``area`` that mask's
pixel count and its ``bbox`` the tight box of that mask: ``[x, y, w, h]`` with x = first column,
w = last column + 1 - x (docs/image_targets.md: pixel j covers [j, j+1)). ``segmentation`` is the
mask as COCO compressed RLE (``pycocotools.mask.encode``).

Categories carry gapped COCO ids on purpose (1, 3, 5, 7, 9, not in name order), so that a loader
must map ids to contiguous label indices and back. Image and annotation ids are unique across
the splits. The output is a pure function of ``--seed`` (and the library versions: PIL's resize
and JPEG encoder): re-running rewrites the same bytes. Generation needs ``scikit-image`` (for
``skimage.data``), which lit_tasks itself does not::

    pip install scikit-image
    python scripts/make_demo_data.py              # demo_data/fashion_mnist, if missing
    python scripts/make_pasted_objects.py         # --seed 0 --train 700 --val 100 --test 100 --quality 80

The sizes keep the bundle under 3 MB: a 128x128 JPEG of a texture costs 2-4 KB, so the split
sizes, the JPEG quality (80) and the background crops (small crops, upscaled: smoother) were
chosen together; an annotation costs about 300 bytes of json (half of it the RLE).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ITEMS = REPO_ROOT / "demo_data" / "fashion_mnist"
DEFAULT_OUT = REPO_ROOT / "demo_data" / "pasted_objects"

# COCO category id -> (Fashion-MNIST class folder, supercategory). Gapped ids, not in name order.
CATEGORIES = {
    1: ("trouser", "clothing"),
    3: ("bag", "accessory"),
    5: ("sneaker", "footwear"),
    7: ("t-shirt_top", "clothing"),
    9: ("ankle_boot", "footwear"),
}
# skimage.data images used as backgrounds; all public domain or CC0 (see demo_data/ATTRIBUTION.md).
BACKGROUNDS = ("grass", "brick", "gravel", "camera", "coffee", "astronaut", "chelsea", "rocket")
SPLITS = ("train", "val", "test")
ID_OFFSET = {"train": 0, "val": 100_000, "test": 200_000}  # image and annotation ids unique across splits

IMAGE_SIZE = 128
ITEM_SIZE = 28
SCALE = (1.2, 2.5)  # item side 34..70 pixels
THRESHOLD = 40  # grey level (0..255) above which a scaled item pixel is the object
MAX_OBJECTS = 4
EMPTY_FRACTION = 0.03  # images with no object
MAX_HIDDEN = 0.3  # a placement may hide at most this fraction of an earlier object's mask
TRIES = 30
BACKGROUND_CROP = (40, 128)  # side of the square crop of the background image, before resizing
BACKGROUND_CONTRAST = (0.3, 0.55)  # background = mean + c * (crop - mean): items stand out


def load_items(folder: Path, split: str) -> dict[int, list[np.ndarray]]:
    """{category id: the 28x28 uint8 items of its class in ``folder/split``}, in file-name order."""
    items = {}
    for cat_id, (name, _) in CATEGORIES.items():
        files = sorted((folder / split / name).glob("*.png"), key=lambda p: int(p.stem))
        if not files:
            raise SystemExit(f"no items in {folder / split / name}: run scripts/make_demo_data.py first")
        items[cat_id] = [np.asarray(Image.open(f).convert("L")) for f in files]
    return items


def load_backgrounds() -> list[np.ndarray]:
    """The ``BACKGROUNDS`` as (H, W, 3) float RGB arrays."""
    try:
        import skimage.data
    except ImportError:
        raise SystemExit("scikit-image is needed to generate this data: pip install scikit-image") from None
    out = []
    for name in BACKGROUNDS:
        a = getattr(skimage.data, name)()
        out.append(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3])
    return [a.astype(np.float64) for a in out]


def background(textures: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A (IMAGE_SIZE, IMAGE_SIZE, 3) float crop of a random texture, flattened in contrast."""
    tex = textures[rng.integers(len(textures))]
    h, w = tex.shape[:2]
    side = int(rng.integers(BACKGROUND_CROP[0], min(BACKGROUND_CROP[1], h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(tex[top:top + side, left:left + side].astype(np.uint8))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a = np.asarray(crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), dtype=np.float64)
    contrast = rng.uniform(*BACKGROUND_CONTRAST)
    return a.mean() + contrast * (a - a.mean())


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright RGB colour (0..255) of random hue."""
    hue, sat, val = rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0)
    rgb = Image.new("HSV", (1, 1), (int(hue * 255), int(sat * 255), int(val * 255))).convert("RGB")
    return np.asarray(rgb, dtype=np.float64)[0, 0]


def scaled_item(item: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The item scaled by a random factor in ``SCALE`` (bilinear) and mirrored with p = 1/2."""
    side = int(round(ITEM_SIZE * rng.uniform(*SCALE)))
    img = Image.fromarray(item).resize((side, side), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(img)


def place(grey: np.ndarray, owner: np.ndarray, areas: list[int],
          rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(the full-image mask, (row, column) offset of ``grey`` in the image) of the item ``grey``
    at a random position where its mask lies inside the image and hides at most ``MAX_HIDDEN`` of
    every earlier object's full mask (``owner``: index of the object on top of each pixel,
    ``areas``: their full mask sizes); None when ``TRIES`` positions all fail."""
    local = grey > THRESHOLD
    rows, cols = np.flatnonzero(local.any(1)), np.flatnonzero(local.any(0))
    if len(rows) == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    local = local[r0:r1, c0:c1]
    h, w = local.shape
    for _ in range(TRIES):
        top, left = int(rng.integers(0, IMAGE_SIZE - h + 1)), int(rng.integers(0, IMAGE_SIZE - w + 1))
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        mask[top:top + h, left:left + w] = local
        after = np.bincount(owner[~mask & (owner >= 0)], minlength=len(areas))
        if all(after[k] >= (1 - MAX_HIDDEN) * areas[k] for k in range(len(areas))):
            return mask, (top - r0, left - c0)
    return None


def make_image(items: dict[int, list[np.ndarray]], textures: list[np.ndarray],
               rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """(the uint8 RGB image, [(category id, visible mask)]) of one random image."""
    canvas = background(textures, rng)
    owner = np.full((IMAGE_SIZE, IMAGE_SIZE), -1, dtype=np.int64)  # index of the object on top
    cats, areas = [], []
    n = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, MAX_OBJECTS + 1))
    cat_ids = sorted(CATEGORIES)
    for _ in range(n):
        cat = cat_ids[rng.integers(len(cat_ids))]
        pool = items[cat]
        grey = scaled_item(pool[rng.integers(len(pool))], rng)
        colour = random_colour(rng)
        placed = place(grey, owner, areas, rng)
        if placed is None:
            continue
        mask, (dy, dx) = placed
        shade = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
        ys, xs = np.nonzero(mask)
        shade[ys, xs] = grey[ys - dy, xs - dx] / 255.0
        canvas[mask] = colour * (0.45 + 0.55 * shade[mask, None])
        owner[mask] = len(cats)
        cats.append(cat)
        areas.append(int(mask.sum()))
    objects = [(cat, owner == k) for k, cat in enumerate(cats)]
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), objects


def annotation(ann_id: int, image_id: int, cat: int, mask: np.ndarray) -> dict:
    """The COCO annotation of one visible mask: tight box, pixel count, compressed RLE."""
    from pycocotools import mask as mask_utils

    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    x, y = int(cols[0]), int(rows[0])
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id, "image_id": image_id, "category_id": cat,
        "bbox": [x, y, int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y],
        "area": int(mask.sum()), "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def write_split(split: str, count: int, seed: int, items_dir: Path, out: Path, textures: list[np.ndarray],
                quality: int) -> dict:
    """Write ``count`` images of ``split`` and their json; returns the COCO dict."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    items = load_items(items_dir, split)
    folder = out / split
    if folder.exists():  # start clean: a smaller count leaves no stale files
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    images, annotations = [], []
    for i in range(count):
        image_id = ID_OFFSET[split] + i + 1
        pixels, objects = make_image(items, textures, rng)
        name = f"{image_id:06d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, optimize=True)
        (folder / name).write_bytes(buffer.getvalue())
        images.append({"id": image_id, "file_name": name, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        for cat, mask in objects:
            annotations.append(annotation(ID_OFFSET[split] + len(annotations) + 1, image_id, cat, mask))
    coco = {
        "info": {"description": f"pasted objects, {split} split: Fashion-MNIST items on skimage.data images",
                 "version": "1.0", "contributor": f"lit_tasks scripts/make_pasted_objects.py --seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": s} for i, (n, s) in CATEGORIES.items()],
    }
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")) + "\n")
    return coco


def summary(split: str, coco: dict, out: Path) -> str:
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    empty = sum(1 for im in coco["images"] if im["id"] not in per_image)
    per_cat = Counter(a["category_id"] for a in coco["annotations"])
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in coco["annotations"]]
    jpeg_bytes = sum(p.stat().st_size for p in (out / split).glob("*.jpg"))
    json_bytes = (out / "annotations" / f"{split}.json").stat().st_size
    names = ", ".join(f"{CATEGORIES[c][0]} {per_cat[c]}" for c in sorted(CATEGORIES))
    return (f"{split}: {len(coco['images'])} images ({empty} empty), {len(coco['annotations'])} objects "
            f"({names}); box side {min(sides)}..{max(sides)} px; "
            f"{jpeg_bytes / 1e6:.2f} MB of JPEG, {json_bytes / 1e6:.2f} MB of json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=700, help="train images")
    p.add_argument("--val", type=int, default=100, help="val images")
    p.add_argument("--test", type=int, default=100, help="test images")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality")
    p.add_argument("--items", type=Path, default=DEFAULT_ITEMS, help="the Fashion-MNIST image folders")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    textures = load_backgrounds()
    for split in SPLITS:
        coco = write_split(split, getattr(args, split), args.seed, args.items, args.out, textures, args.quality)
        print(summary(split, coco, args.out))
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
