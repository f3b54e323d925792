"""Contract tests for lit_tasks.data.ImageDataModule, its sources, transforms and samplers."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from lit_tasks.data import BadImageError, DataError, ImageDataModule, UnpaddedDistributedSampler
from lit_tasks.data.image_transforms import open_image, random_resized_crop_box
from lit_tasks.data.samplers import distributed_eval_sampler

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "emu"]
SIZE = 8


def save(path: Path, mode: str = "RGB", size=(12, 10), value=None) -> Path:
    """A small image of the given mode with a per-file pattern."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = sum(path.as_posix().encode()) % 251
    w, h = size
    grid = (np.arange(w * h).reshape(h, w) * 7 + seed) % 256
    if mode == "RGB":
        img = Image.fromarray(np.stack([grid, 255 - grid, grid // 2], -1).astype(np.uint8))
    elif mode == "L":
        img = Image.fromarray(grid.astype(np.uint8))
    elif mode == "RGBA":
        img = Image.fromarray(np.stack([grid, grid, grid, np.full_like(grid, 128)], -1).astype(np.uint8))
    elif mode == "I;16":
        img = Image.fromarray((grid * 257).astype(np.uint16))
    elif mode == "P":
        img = Image.fromarray(grid.astype(np.uint8)).convert("P")
    else:
        img = Image.fromarray(grid.astype(np.uint8)).convert(mode)
    img.save(path)
    return path


def make_folder(root: Path, classes=CLASSES, n=(4, 2, 2), modes=("RGB",)) -> Path:
    """root/{train,val,test}/<class>/<i>.png, modes cycling through ``modes``."""
    k = 0
    for split, count in zip(("train", "val", "test"), n):
        for c in classes:
            for i in range(count):
                save(root / split / c / f"{split}_{c}_{i}.png", modes[k % len(modes)])
                k += 1
    return root


def folder_rows(root: Path, split: str) -> list[dict]:
    return [
        {"path": p.relative_to(root).as_posix(), "label": p.parent.name}
        for p in sorted((root / split).rglob("*.png"))
    ]


def write_csv(file: Path, rows: list[dict], fields=("path", "label")) -> Path:
    with open(file, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return file


def write_jsonl(file: Path, rows: list[dict]) -> Path:
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


def dm_kwargs(**kw):
    return {"image_size": SIZE, "batch_size": 4, "num_workers": 0, **kw}


@pytest.fixture()
def folder(tmp_path):
    return make_folder(tmp_path / "data")


def by_name(dm: ImageDataModule, split: str) -> dict[str, str]:
    """{file name: class name} over a split, read through the batches."""
    loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    out = {}
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (3, SIZE, SIZE)
        assert batch["pixel_values"].dtype == torch.float32 and batch["labels"].dtype == torch.long
        assert batch["skipped"] == []
        for path, label in zip(batch["paths"], batch["labels"].tolist()):
            out[path if "#" in path else Path(path).name] = dm.label_names[label]
    return out


# ------------------------------------------------------------------------------- sources


def test_folder_csv_jsonl_and_hf_sources_agree(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    for split in ("train", "val", "test"):
        write_csv(folder / f"{split}.csv", folder_rows(folder, split))
        write_jsonl(folder / f"{split}.jsonl", folder_rows(folder, split))
    hf_dir = tmp_path / "hf"
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"image": [str(folder / r["path"]) for r in folder_rows(folder, split)],
             "label": [CLASSES.index(r["label"]) for r in folder_rows(folder, split)]},
            features=features,
        )
        for name, split in (("train", "train"), ("validation", "val"), ("test", "test"))
    }).save_to_disk(str(hf_dir))

    modules = {
        "folder": ImageDataModule(root=str(folder), **dm_kwargs()),
        "csv": ImageDataModule(train_file=str(folder / "train.csv"), val_file=str(folder / "val.csv"),
                               test_file=str(folder / "test.csv"), **dm_kwargs()),
        "jsonl": ImageDataModule(train_file=str(folder / "train.jsonl"), val_file=str(folder / "val.jsonl"),
                                 test_file=str(folder / "test.jsonl"), **dm_kwargs()),
        "hf": ImageDataModule(hf_dataset=str(hf_dir), **dm_kwargs()),
    }
    for name, dm in modules.items():
        assert dm.label_names == CLASSES and dm.num_classes == 3, name
        dm.setup("fit")
        dm.setup("test")
    reference = by_name(modules["folder"], "val")
    assert len(reference) == 6 and sorted(set(reference.values())) == CLASSES
    assert by_name(modules["csv"], "val") == reference
    assert by_name(modules["jsonl"], "val") == reference
    hf_val = by_name(modules["hf"], "val")  # HF rows are named "<dir>/validation#<row>"
    assert sorted(hf_val.values()) == sorted(reference.values())
    assert all("validation#" in p for p in hf_val)
    # Same pixels from every source (eval transform is deterministic).
    batches = {n: next(iter(dm.test_dataloader())) for n, dm in modules.items()}
    for n, b in batches.items():
        assert torch.equal(b["labels"], batches["folder"]["labels"]), n
        assert torch.allclose(b["pixel_values"], batches["folder"]["pixel_values"]), n
    train = next(iter(modules["hf"].train_dataloader()))
    assert train["pixel_values"].shape == (4, 3, SIZE, SIZE)


def test_hf_string_labels_sorted_and_checked(tmp_path):
    datasets = pytest.importorskip("datasets")
    img = save(tmp_path / "x.png")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"image": [str(img)] * 3, "label": ["b", "a", "b"]}, features=features),
        "val": datasets.Dataset.from_dict({"image": [str(img)] * 2, "label": ["a", "zebra"]}, features=features),
    }).save_to_disk(str(tmp_path / "hf"))
    dm = ImageDataModule(hf_dataset=str(tmp_path / "hf"), **dm_kwargs())
    assert dm.label_names == ["a", "b"]
    with pytest.raises(DataError, match=r"split 'val' row 1: label 'zebra' never occurs"):
        dm.setup("fit")


def test_numeric_labels_sort_numerically(tmp_path):
    rows = [{"path": save(tmp_path / f"{i}.png").name, "label": lab} for i, lab in enumerate([10, 2, 1, 2])]
    dm = ImageDataModule(train_file=str(write_jsonl(tmp_path / "train.jsonl", rows)), **dm_kwargs())
    assert dm.label_names == ["1", "2", "10"]


def test_predict_dir_is_recursive_and_unlabelled(folder, tmp_path):
    save(tmp_path / "new" / "a.png")
    save(tmp_path / "new" / "deep" / "b.jpg", mode="L")
    dm = ImageDataModule(root=str(folder), predict_dir=str(tmp_path / "new"), **dm_kwargs())
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert [Path(p).name for p in batch["paths"]] == ["a.png", "b.jpg"]
    assert batch["labels"].tolist() == [-1, -1]
    # Without predict_dir, predict reads the (labelled) test split.
    dm = ImageDataModule(root=str(folder), **dm_kwargs())
    dm.setup("predict")
    assert len(dm.predict_dataloader().dataset) == 6


# ----------------------------------------------------------------------------- image modes


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "I;16", "I", "P", "CMYK", "1", "F"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = save(tmp_path / ("x.tif" if mode in ("CMYK", "F", "I") else "x.png"), mode)
    img = open_image(str(path), str(path))
    assert img.mode == "RGB" and img.size == (12, 10)


def test_mode_conversions_keep_the_right_values(tmp_path):
    a16 = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "a16.png")
    with Image.open(tmp_path / "a16.png") as im:
        assert im.mode.startswith("I")  # PIL reads 16-bit PNG as I;16 (or I)
    got = np.asarray(open_image(str(tmp_path / "a16.png"), "a16"))
    assert got[0, :, 0].tolist() == [0, 128, 255] and (got[..., 0] == got[..., 2]).all()
    # RGBA: transparent -> white, opaque keeps its colour.
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    got = np.asarray(open_image(str(tmp_path / "a.png"), "a"))
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [10, 20, 30]
    # Palette with a transparent index: also composited on white.
    p = Image.new("P", (2, 1))
    p.putdata([0, 1])
    p.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    p.save(tmp_path / "p.png", transparency=0)
    got = np.asarray(open_image(str(tmp_path / "p.png"), "p"))
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [0, 0, 200]


def test_mixed_modes_batch_is_three_channel(tmp_path):
    root = make_folder(tmp_path / "d", modes=("L", "RGBA", "I;16", "P", "RGB"))
    dm = ImageDataModule(root=str(root), **dm_kwargs(batch_size=12))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (12, 3, SIZE, SIZE)
    assert torch.isfinite(batch["pixel_values"]).all()


# --------------------------------------------------------------------------- preprocessor


def test_preprocessor_config_is_honoured(folder, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cfg = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"height": 6, "width": 10}}
    (ckpt / "preprocessor_config.json").write_text(json.dumps(cfg))
    dm = ImageDataModule(root=str(folder), preprocessor=str(ckpt), batch_size=2, num_workers=0)
    assert dm.image_size == (6, 10) and dm.image_mean == [0.5] * 3 and dm.image_std == [0.25] * 3
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["pixel_values"].shape == (2, 3, 6, 10)
    # The pixels are (x/255 - 0.5) / 0.25 of the bilinear resize.
    with Image.open(batch["paths"][0]) as im:
        ref = np.asarray(im.convert("RGB").resize((10, 6), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = (torch.from_numpy(ref).permute(2, 0, 1) / 255 - 0.5) / 0.25
    assert torch.allclose(batch["pixel_values"][0], expected, atol=1e-5)
    exported = dm.preprocessor_config()
    assert exported["size"] == {"height": 6, "width": 10} and exported["image_mean"] == [0.5] * 3
    assert exported["resample"] == 2 and exported["rescale_factor"] == pytest.approx(1 / 255)
    # Explicit arguments win; shortest_edge gives a square size.
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 14}}))
    dm = ImageDataModule(root=str(folder), preprocessor=str(ckpt), image_mean=[0, 0, 0], num_workers=0)
    assert dm.image_size == (14, 14) and dm.image_mean == [0.0] * 3
    assert dm.image_std == pytest.approx([0.229, 0.224, 0.225])  # not in the JSON: the ImageNet default
    dm = ImageDataModule(root=str(folder), preprocessor=str(ckpt), image_size=[5, 7], num_workers=0)
    assert dm.image_size == (5, 7)
    with pytest.raises(DataError, match=r"preprocessor: .*nowhere does not exist"):
        ImageDataModule(root=str(folder), preprocessor=str(tmp_path / "nowhere"))


def test_checkpoint_without_preprocessor_json_warns_and_uses_defaults(folder, tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="lit_tasks.data.image"):
        dm = ImageDataModule(root=str(folder), preprocessor=str(ckpt), num_workers=0)
    assert dm.image_size == (224, 224) and dm.image_mean == pytest.approx([0.485, 0.456, 0.406])
    assert any("has no preprocessor_config.json" in r.getMessage() for r in caplog.records)


def test_errors_are_lit_tasks_user_errors():
    from lit_tasks.errors import find_user_error

    assert find_user_error(DataError("x")) is not None and find_user_error(BadImageError("y")) is not None


# ------------------------------------------------------------------------------ bad images


def corrupt(path: Path, kind: str) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"\x89PNG\r\n\x1a\nnot really a png")
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(folder, kind):
    bad = corrupt(sorted((folder / "val" / "dog").glob("*.png"))[0], kind)
    dm = ImageDataModule(root=str(folder), **dm_kwargs())
    dm.setup("validate")
    with pytest.raises(BadImageError, match="PIL says") as e:
        list(dm.val_dataloader())
    assert str(bad) in str(e.value) and "skip_bad_images" in str(e.value)


def test_corrupt_image_in_csv_names_file_and_row(folder):
    corrupt(sorted((folder / "val" / "cat").glob("*.png"))[1], "garbage")
    write_csv(folder / "train.csv", folder_rows(folder, "train"))
    write_csv(folder / "val.csv", folder_rows(folder, "val"))
    dm = ImageDataModule(train_file=str(folder / "train.csv"), val_file=str(folder / "val.csv"), **dm_kwargs())
    dm.setup("validate")
    with pytest.raises(BadImageError, match=r"val\.csv row 2 \(.*val_cat_1\.png\): cannot decode"):
        list(dm.val_dataloader())


def test_skip_bad_images_lists_them_in_the_batch(folder, caplog):
    bad = corrupt(sorted((folder / "val" / "dog").glob("*.png"))[0], "truncated")
    dm = ImageDataModule(root=str(folder), skip_bad_images=True, **dm_kwargs(batch_size=100))
    dm.setup("validate")
    with caplog.at_level(logging.WARNING, logger="lit_tasks.data.image"):
        (batch,) = list(dm.val_dataloader())
    assert batch["skipped"] == [str(bad)]
    assert batch["pixel_values"].shape == (5, 3, SIZE, SIZE) and len(batch["labels"]) == len(batch["paths"]) == 5
    assert str(bad) not in batch["paths"]
    assert any(str(bad) in r.getMessage() for r in caplog.records)


def test_all_skipped_batch_is_empty_not_an_error(folder):
    for p in (folder / "val" / "dog").glob("*.png"):
        corrupt(p, "garbage")
    dm = ImageDataModule(root=str(folder), skip_bad_images=True, image_size=SIZE, batch_size=2, num_workers=0)
    dm.setup("validate")
    batches = list(dm.val_dataloader())  # val order: cat, cat, dog, dog, emu, emu
    assert batches[1]["pixel_values"].shape == (0, 3, SIZE, SIZE) and len(batches[1]["skipped"]) == 2


# ------------------------------------------------------------------- set-up validation


def test_empty_class_folder_is_an_error(folder):
    for p in (folder / "train" / "emu").glob("*"):
        p.unlink()
    (folder / "train" / "emu" / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match=r"class folder .*train/emu has no image files.*notes\.txt"):
        ImageDataModule(root=str(folder), **dm_kwargs()).setup("fit")


def test_class_folder_missing_from_val_or_extra_in_test(folder):
    for p in (folder / "val" / "dog").glob("*"):
        p.unlink()
    (folder / "val" / "dog").rmdir()
    dm = ImageDataModule(root=str(folder), **dm_kwargs())
    with pytest.raises(DataError, match=r"val has no folder for train class\(es\) 'dog'"):
        dm.setup("fit")
    save(folder / "test" / "yak" / "1.png")
    with pytest.raises(DataError, match=r"test has class folder\(s\) 'yak' that train/ lacks"):
        dm.setup("test")


def test_missing_split_folders_name_what_was_looked_for(folder, tmp_path):
    with pytest.raises(DataError, match=r"train split folder .*/empty/train does not exist"):
        ImageDataModule(root=str(tmp_path / "empty"))
    import shutil

    shutil.rmtree(folder / "val")
    dm = ImageDataModule(root=str(folder), **dm_kwargs())
    dm.setup("test")  # test alone does not need val
    with pytest.raises(DataError, match=r"fit/validate needs the val split, but the folder .*/val"):
        dm.setup("fit")


def test_csv_row_missing_a_value_or_column(tmp_path):
    save(tmp_path / "a.png")
    (tmp_path / "train.csv").write_text("path,label\na.png,cat\na.png,\n")
    with pytest.raises(DataError, match=r"train\.csv row 2: the 'label' field is empty"):
        ImageDataModule(train_file=str(tmp_path / "train.csv"))
    (tmp_path / "train.csv").write_text("path,label\na.png,cat\na.png\n")  # short row
    with pytest.raises(DataError, match=r"train\.csv row 2: the 'label' field is missing"):
        ImageDataModule(train_file=str(tmp_path / "train.csv"))
    (tmp_path / "train.csv").write_text("file,label\na.png,cat\n")
    with pytest.raises(DataError, match=r"train\.csv: the header has no column 'path'; found columns 'file', 'label'"):
        ImageDataModule(train_file=str(tmp_path / "train.csv"))
    write_jsonl(tmp_path / "train.jsonl", [{"path": "a.png", "label": "cat"}, {"label": "dog"}])
    with pytest.raises(DataError, match=r"train\.jsonl line 2: the 'path' field is missing"):
        ImageDataModule(train_file=str(tmp_path / "train.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"path": "a.png", "label": "cat"}\n{"path": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: not valid JSON"):
        ImageDataModule(train_file=str(tmp_path / "bad.jsonl"))


def test_csv_path_that_does_not_exist(tmp_path):
    save(tmp_path / "a.png")
    write_csv(tmp_path / "train.csv", [{"path": "a.png", "label": "cat"}, {"path": "sub/b.png", "label": "dog"}])
    dm = ImageDataModule(train_file=str(tmp_path / "train.csv"), **dm_kwargs())
    with pytest.raises(DataError, match=r"train\.csv row 2: the image .*sub/b\.png does not exist"):
        dm.records("train")


def test_label_unseen_in_train(tmp_path):
    save(tmp_path / "a.png")
    write_csv(tmp_path / "train.csv", [{"path": "a.png", "label": "cat"}, {"path": "a.png", "label": "dog"}])
    write_csv(tmp_path / "val.csv", [{"path": "a.png", "label": "cat"}, {"path": "a.png", "label": "cow"}])
    dm = ImageDataModule(train_file=str(tmp_path / "train.csv"), val_file=str(tmp_path / "val.csv"), **dm_kwargs())
    with pytest.raises(DataError, match=r"val\.csv row 2: label 'cow' of the val split never occurs in the train file"):
        dm.setup("fit")


def test_no_images_at_all(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="has no class sub-folders"):
        ImageDataModule(root=str(tmp_path / "d"))
    (tmp_path / "p").mkdir()
    dm = ImageDataModule(predict_dir=str(tmp_path / "p"), **dm_kwargs())
    with pytest.raises(DataError, match="holds no image files"):
        dm.setup("predict")
    with pytest.raises(DataError, match="no training data given"):
        dm.setup("fit")


def test_two_sources_is_an_error(folder):
    with pytest.raises(DataError, match="give one data source, not root and train_file"):
        ImageDataModule(root=str(folder), train_file=str(folder / "x.csv"))


# --------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("n", [1, 3, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_unpadded_sampler_splits_without_overlap_or_padding(n, world):
    shards = [list(UnpaddedDistributedSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # every index once: no overlap, no padding
    lengths = [len(UnpaddedDistributedSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    assert lengths == [len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_lightning_keeps_the_unpadded_sampler(folder):
    """Lightning injects a (padding) DistributedSampler only when the loader has none."""
    import lightning as L

    assert issubclass(UnpaddedDistributedSampler, DistributedSampler)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    dm = ImageDataModule(root=str(folder), **dm_kwargs())
    dm.trainer = trainer
    dm.setup("fit")
    val = dm.val_dataloader()
    assert isinstance(val.sampler, UnpaddedDistributedSampler) and val.sampler.num_replicas == 2
    assert list(val.sampler) == [0, 2, 4]
    assert not trainer._data_connector._requires_distributed_sampler(val)
    train = dm.train_dataloader()  # its own resumable, rank-sharded sampler is kept too
    assert not trainer._data_connector._requires_distributed_sampler(train) and train.sampler.num_replicas == 2
    assert distributed_eval_sampler(range(5), trainer=None) is None  # not distributed here


# ----------------------------------------------------------------------- augmentation


def test_train_augmentation_is_reproducible_under_the_run_seed(folder, monkeypatch):
    dm = ImageDataModule(root=str(folder), random_resized_crop=(0.3, 1.0), **dm_kwargs(batch_size=12))
    dm.setup("fit")

    def draw(seed):
        monkeypatch.setenv("PL_GLOBAL_SEED", str(seed))  # what seed_everything exports
        torch.manual_seed(seed + 100)  # the global RNG plays no part
        return next(iter(dm.train_dataloader()))

    a, b, c = draw(0), draw(0), draw(1)
    assert a["paths"] == b["paths"] and torch.equal(a["pixel_values"], b["pixel_values"])
    assert not torch.equal(a["pixel_values"], c["pixel_values"])
    # Eval is deterministic and differs from the augmented view of the same images.
    v1, v2 = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert torch.equal(v1["pixel_values"], v2["pixel_values"])


def test_random_resized_crop_box_respects_scale_and_bounds():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(40, 30, (0.2, 0.5))
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 0.15 * 1200 <= (right - left) * (bottom - top) <= 0.55 * 1200
    assert random_resized_crop_box(100, 10, (0.99, 1.0)) == (43, 0, 56, 10)  # fallback: centred, aspect 4/3


# -------------------------------------------------------------------------- demo data


def test_demo_data_has_ten_classes_in_every_split():
    root = REPO / "demo_data" / "fashion_mnist"
    if not root.is_dir():
        pytest.fail(f"{root} missing; run scripts/make_demo_data.py")
    classes = sorted(p.name for p in (root / "train").iterdir())
    assert len(classes) == 10 and "t-shirt_top" in classes and "ankle_boot" in classes
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (root / split).iterdir()) == classes
    assert {len(list((root / "val" / c).glob("*.png"))) for c in classes} == {100}
    # val is drawn from the official train set disjointly from train.
    for c in classes:
        assert not {p.name for p in (root / "train" / c).iterdir()} & {p.name for p in (root / "val" / c).iterdir()}
    with Image.open(next((root / "test" / "bag").iterdir())) as im:
        assert im.mode == "L" and im.size == (28, 28)
    dm = ImageDataModule(root=str(root), image_size=28, num_workers=0)
    assert dm.num_classes == 10 and dm.label_names == classes


def test_cached_images_give_the_same_batches_without_decoding_again(folder, monkeypatch, caplog):
    """cache_images decodes each image once, at setup; the epochs then give the same batches
    (augmentation included) as decoding every time, and skipped images stay skipped."""
    bad = corrupt(sorted((folder / "train" / "dog").glob("*.png"))[0], "truncated")
    kwargs = dict(root=str(folder), random_resized_crop=(0.3, 1.0), skip_bad_images=True, **dm_kwargs(batch_size=4))
    plain = ImageDataModule(**kwargs)
    plain.setup("fit")
    expected = list(plain.train_dataloader())
    cached = ImageDataModule(cache_images=True, **kwargs)
    with caplog.at_level(logging.INFO, logger="lit_tasks.data.image"):
        cached.setup("fit")
    assert any("cache_images: decoded the" in r.getMessage() for r in caplog.records)
    import lit_tasks.data.image_dataset as image_module

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_module, "open_image", no_decoding)
    for _ in range(2):  # two epochs of the same seed: the same batches each time
        got = list(cached.train_dataloader())
        assert [b["paths"] for b in got] == [b["paths"] for b in expected]
        assert all(torch.equal(g["pixel_values"], e["pixel_values"]) for g, e in zip(got, expected))
        assert [str(bad)] == [p for b in got for p in b["skipped"]]
    assert len(list(cached.val_dataloader())) > 0
