"""Object detection from the command line on demo_data/pasted_objects with the tiny detr-test
model: one short fit (with its test) and one predict shared by the tests below; the logged COCO
numbers are pycocotools' own on the written results files; predict's rows, COCO json and drawn
images; two gloo processes score as one; a bad annotation is one paragraph naming it.

Four training steps teach detr-test next to nothing: its boxes stay near where an untrained
DETR puts them, about the middle half of the image, so it finds almost none of the real objects
and every COCO number would be 0, which any scoring agrees with. The val and test ground truth
therefore get "decoys" (`with_decoys`): one object of each category over the middle half of
every image, which such boxes match, so the numbers compared below are not zero."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, validate_single_and_ddp
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lit_tasks.commands import main

DATA = REPO / "demo_data" / "pasted_objects"
# pycocotools' summarize() order, named as the task logs them
COCO_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
EVAL_BATCH, EVAL_BATCHES = 16, 2  # val and test see the first 32 images of their json
PREDICT_THRESHOLD = 0.05  # the task's default predict_threshold


def with_decoys(split: str, folder: Path, images: int | None = None) -> Path:
    """A copy of the split's annotation json (its first `images` images; None: all) in `folder`,
    each image given one more object of every category: the box [32, 32, 64, 64] (x, y, w, h),
    the middle half of the 128 x 128 image."""
    truth = json.loads((DATA / "annotations" / f"{split}.json").read_text())
    truth["images"] = truth["images"][:images]
    kept = {image["id"] for image in truth["images"]}
    truth["annotations"] = [a for a in truth["annotations"] if a["image_id"] in kept]
    next_id = max(a["id"] for a in truth["annotations"]) + 1
    for image in truth["images"]:
        for category in truth["categories"]:
            truth["annotations"].append({"id": next_id, "image_id": image["id"], "category_id": category["id"],
                                         "bbox": [32, 32, 64, 64], "area": 64 * 64, "iscrowd": 0})
            next_id += 1
    file = folder / f"{split}_with_decoys{'' if images is None else images}.json"
    file.write_text(json.dumps(truth))
    return file


def detection_args(run_dir: Path | None, *extra: str) -> list[str]:
    """A seconds-long run: 4 training steps of detr-test with 12 queries; images resized to 96 pixels (the
    originals are 128: boxes must be scaled back), in `run_dir` (None: the caller gives it)."""
    return [
        "--model", "lit_tasks.tasks.ObjectDetection",
        "--model.backbone", "detr-test",
        "--model.backbone_config", '{"dropout": 0.0, "num_queries": 12}',  # up to 4 objects + 5 decoys
        "--model.backbone_lr_ratio", "1.0",
        "--model.lr", "0.003",
        "--data", "lit_tasks.data.CocoDetectionDataModule",
        "--data.root", str(DATA),
        "--data.eval_size", "96",
        "--data.batch_size", "8",
        "--data.eval_batch_size", str(EVAL_BATCH),
        "--data.num_workers", "0",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", str(EVAL_BATCHES),
        "--trainer.limit_test_batches", str(EVAL_BATCHES),
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *(["--run.dir", str(run_dir)] if run_dir else []),
        "--run.loggers", "[csv]",
        *extra,
    ]


@dataclass
class Fitted:
    run_dir: Path
    results: dict  # results.json as fit + test left it
    truth: dict[str, Path]  # the annotation json (with decoys) val and test were scored against


def cli(*argv: str) -> None:
    """`lit_tasks ARGV` in this process (conftest's plain_argv is not active in module fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["lit_tasks"])
        os.environ.pop("LIT_TASKS_RUN_DIR", None)  # each run picks its own folder (run_dir.py keeps it here)
        try:
            main(list(argv))
        finally:
            os.environ.pop("LIT_TASKS_RUN_DIR", None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Fitted:
    """Train from demo_data/pasted_objects/annotations/train.json; val and test with decoys."""
    root = tmp_path_factory.mktemp("detection")
    truth = {split: with_decoys(split, root) for split in ("val", "test")}
    splits = [arg for split, file in truth.items()
              for arg in (f"--data.{split}_images", str(DATA / split), f"--data.{split}_annotations", str(file))]
    cli("fit", *detection_args(root / "run"), *splits)
    return Fitted(root / "run", json.loads((root / "run" / "results.json").read_text()), truth)


@pytest.fixture(scope="module")
def predicted(fitted) -> Path:
    """The fit's folder after `predict` of its best checkpoint on the first 32 test images, read
    from the test folder as predict_dir (no COCO ids)."""
    cli("predict", *detection_args(fitted.run_dir), "--ckpt_path", "best", "--data.predict_dir", str(DATA / "test"),
        "--trainer.limit_predict_batches", str(EVAL_BATCHES))
    return fitted.run_dir


def cocoeval_alone(annotations: Path, results: Path, image_ids: list[int]) -> dict[str, float]:
    """The 12 numbers of pycocotools alone: the results file scored against the annotation file
    on `image_ids` (images without detections count their objects as missed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        evaluator = COCOeval(truth, truth.loadRes(str(results)), "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(COCO_KEYS, evaluator.stats.tolist()))


def first_images(annotations: Path, n: int) -> list[dict]:
    """The first `n` images of a COCO json: what an unshuffled evaluation of `n` images sees."""
    return json.loads(annotations.read_text())["images"][:n]


def test_fit_logs_the_twelve_coco_numbers_for_val_and_test(fitted):
    results = fitted.results
    assert results["commands"] == ["fit", "test"]
    assert results["best"]["monitor"] == "val/map" and results["best"]["mode"] == "max"
    metrics = results["metrics"]
    for stage in ("val", "test"):
        for key in (*COCO_KEYS, "loss", "loss_ce", "loss_bbox", "loss_giou"):
            assert f"{stage}/{key}" in metrics, f"{stage}/{key}"
        assert all(-1 <= metrics[f"{stage}/{k}"] <= 1 for k in COCO_KEYS)


@pytest.mark.parametrize("stage", ["val", "test"])
def test_logged_numbers_are_cocoeval_alone_on_the_written_results(fitted, stage):
    """The issue's acceptance test at the run level: `<stage>_coco_results.json` scored by
    pycocotools alone against the split's json, on the images the run saw, gives results.json."""
    run_dir, results, annotations = fitted.run_dir, fitted.results, fitted.truth[stage]
    seen = [image["id"] for image in first_images(annotations, EVAL_BATCH * EVAL_BATCHES)]
    written = json.loads((run_dir / f"{stage}_coco_results.json").read_text())
    assert {r["image_id"] for r in written} <= set(seen)
    alone = cocoeval_alone(annotations, run_dir / f"{stage}_coco_results.json", seen)
    logged = {key: results["metrics"][f"{stage}/{key}"] for key in COCO_KEYS}
    assert logged == pytest.approx(alone, abs=1e-6)
    assert alone["map_50"] > 0 and alone["mar_100"] > 0  # not 0 == 0: the decoys are found


def test_fit_draws_prediction_grids(fitted):
    for name in ("predictions.png", "test_predictions.png"):
        with Image.open(fitted.run_dir / name) as image:
            assert image.format == "PNG" and image.width > 100, name


def test_predict_writes_rows_a_coco_json_and_drawn_images(predicted):
    run_dir = predicted
    test_json = DATA / "annotations" / "test.json"
    truth = json.loads(test_json.read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    images = first_images(test_json, EVAL_BATCH * EVAL_BATCHES)  # the folder's sorted first 32 are the json's
    assert [Path(r["path"]).name for r in rows] == [image["file_name"] for image in images]
    # predict_dir images have no COCO id: each gets 1 + its position in the folder's sorted listing
    assert [r["image_id"] for r in rows] == list(range(1, len(rows) + 1))
    assert sum(len(r["detections"]) for r in rows) > 0

    # The rows are the test run's scored detections (same best checkpoint, same eval resize) above
    # the threshold: boxes in the original 128 x 128 image's pixels, not the resized 96 x 96's.
    scored: dict[int, list[dict]] = {}
    for entry in json.loads((run_dir / "test_coco_results.json").read_text()):
        scored.setdefault(entry["image_id"], []).append(entry)
    for row, image in zip(rows, images):
        expected = sorted((e for e in scored[image["id"]] if e["score"] > PREDICT_THRESHOLD), key=lambda e: -e["score"])
        assert len(row["detections"]) == len(expected), row["path"]
        for d, e in zip(row["detections"], expected):
            assert d["category_id"] == e["category_id"] and d["label"] == names[d["category_id"]]
            assert d["score"] == pytest.approx(e["score"], abs=1e-5)
            x, y, w, h = e["bbox"]
            assert d["box"] == pytest.approx([x, y, x + w, y + h], abs=0.02)
            x1, y1, x2, y2 = d["box"]
            assert x1 < x2 and y1 < y2 and 0 < (x1 + x2) / 2 < image["width"] and 0 < (y1 + y2) / 2 < image["height"]

    # predictions_coco.json is a COCO results file over those image ids
    index = {"images": [{"id": r["image_id"], "file_name": r["path"], "height": 128, "width": 128} for r in rows],
             "annotations": [], "categories": truth["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = index
        coco.createIndex()
        loaded = coco.loadRes(str(run_dir / "predictions_coco.json"))
    for row in rows:
        anns = loaded.loadAnns(loaded.getAnnIds(imgIds=row["image_id"]))
        assert len(anns) == len(row["detections"])
        for a, d in zip(anns, row["detections"]):
            x1, y1, x2, y2 = d["box"]
            assert a["category_id"] == d["category_id"] and a["score"] == d["score"]
            assert a["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])

    drawn = sorted(p.name for p in (run_dir / "predicted_images").iterdir())
    assert drawn == sorted(f"{r['image_id']}_{Path(r['path']).stem}.png" for r in rows)
    with Image.open(run_dir / "predicted_images" / drawn[0]) as image:
        assert image.size == (128, 128)  # drawn on the original image


def test_two_gloo_processes_score_as_one(fitted, tmp_path):
    """`validate` of the fit's checkpoint on 45 val images (with decoys; an odd number: the ranks
    get 23 and 22, in batches of 8) in one process and in two: the same 12 numbers, pycocotools'
    own on the written file, which lists the same detections, each image's once."""
    subset = with_decoys("val", tmp_path, images=45)
    seen = [image["id"] for image in first_images(subset, 45)]
    args = [*detection_args(None), "--ckpt_path", str(fitted.run_dir / "checkpoints" / "best.ckpt"),
            "--data.val_images", str(DATA / "val"), "--data.val_annotations", str(subset),
            "--data.eval_batch_size", "8", "--trainer.limit_val_batches", "1.0"]
    one, two = validate_single_and_ddp(args, tmp_path)
    single = {key: one["metrics"][f"val/{key}"] for key in COCO_KEYS}
    assert {key: two["metrics"][f"val/{key}"] for key in COCO_KEYS} == pytest.approx(single, abs=1e-6)
    assert single == pytest.approx(cocoeval_alone(subset, tmp_path / "single" / "val_coco_results.json", seen),
                                   abs=1e-6)
    assert single["map_50"] > 0 and single["mar_100"] > 0
    files = [json.loads((tmp_path / d / "val_coco_results.json").read_text()) for d in ("single", "ddp")]
    assert sorted({r["image_id"] for r in files[0]}) == sorted(seen)
    assert [(r["image_id"], r["category_id"]) for r in files[1]] == [(r["image_id"], r["category_id"]) for r in files[0]]
    assert [r["score"] for r in files[1]] == pytest.approx([r["score"] for r in files[0]], abs=1e-5)


def test_unknown_category_id_is_one_paragraph_naming_file_and_annotation(tmp_path, capsys):
    truth = json.loads((DATA / "annotations" / "val.json").read_text())
    bad = truth["annotations"][7]
    bad["category_id"] = 4  # the categories are 1, 3, 5, 7, 9
    damaged = tmp_path / "val.json"
    damaged.write_text(json.dumps(truth))
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *detection_args(tmp_path / "run"), "--data.val_images", str(DATA / "val"),
              "--data.val_annotations", str(damaged)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    for needle in (str(damaged), f"annotation id {bad['id']}", "category_id 4"):
        assert needle in message, (needle, message)
