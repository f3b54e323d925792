"""COCO box mAP through our metric (lit_tasks.metrics.coco_map.CocoMeanAP) vs pycocotools alone,
same synthetic data, same process.

Data: `--images` images (sizes 300-1000 px) with 1-12 ground-truth boxes each over 20
categories (ids with gaps, some crowd), and `--detections` detections per image: jittered true
positives, lower-scored duplicates and random false positives, float32 x1 y1 x2 y2 as a model
gives them.

- ours: ``set_ground_truth(gt)``, ``update`` in batches of `--batch-size` (tensors), ``compute()``
  (one process: no gathering), i.e. what a validation epoch adds to the model's own work;
- pycocotools: a COCO index of the same dict, ``loadRes`` of the same detections already in its
  results format (x y w h lists), ``COCOeval`` evaluate / accumulate / summarize.

Both print nothing (stdout captured on both sides). Repetitions alternate between the two
(benchmarks/timing.py); the script prints the medians, the ratio ours / pycocotools (the
overhead of the metric around the same COCOeval) with our update and compute phases apart, and
checks that the 12 numbers are identical.

    python benchmarks/coco_map.py                          # 500 images x 20 detections
    python benchmarks/coco_map.py --images 5000 --detections 100 --reps 3   # COCO val2017's size
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402  (the same clock for every benchmark)

from lit_tasks.metrics.coco_map import CocoMeanAP  # noqa: E402

CATEGORY_IDS = [1 + 3 * k for k in range(20)]  # 1, 4, 7, ...: gaps as in COCO's 91 ids


def synthetic(images: int, detections: int, seed: int = 0) -> tuple[dict, dict[int, dict[str, torch.Tensor]]]:
    """(COCO instances dict, {image id: {"boxes" (K, 4) float32 xyxy, "scores", "category_ids"}})."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": str(c)} for c in CATEGORY_IDS]}
    dets = {}
    for i in range(images):
        image_id = 2 * i + 1
        width, height = (int(v) for v in rng.integers(300, 1000, 2))
        gt["images"].append({"id": image_id, "width": width, "height": height})
        rows = []
        for _ in range(rng.integers(1, 13)):
            w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            cat = int(rng.choice(CATEGORY_IDS))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": cat,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.uniform() < 0.03)})
            for dup in range(1 + (rng.uniform() < 0.3)):
                if len(rows) < detections and rng.uniform() < 0.85:
                    j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                    box = [x + j[0], y + j[1], x + w + j[2], y + h + j[3]]
                    rows.append((cat, box, rng.uniform(0.3, 1) - 0.3 * dup))
        while len(rows) < detections:
            x, y = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
            rows.append((int(rng.choice(CATEGORY_IDS)), [x, y, x + rng.uniform(5, 300), y + rng.uniform(5, 300)],
                         rng.uniform(0, 0.7)))
        boxes = torch.tensor([r[1] for r in rows], dtype=torch.float32)
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])
        dets[image_id] = {"boxes": boxes, "scores": torch.tensor([r[2] for r in rows], dtype=torch.float32),
                          "category_ids": torch.tensor([r[0] for r in rows], dtype=torch.long)}
    return gt, dets


def results_format(dets: dict[int, dict[str, torch.Tensor]]) -> list[dict]:
    out = []
    for image_id, d in dets.items():
        for (x1, y1, x2, y2), score, cat in zip(d["boxes"].tolist(), d["scores"].tolist(), d["category_ids"].tolist()):
            out.append({"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--detections", type=int, default=20, help="per image")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gt, dets = synthetic(args.images, args.detections)
    ids = list(dets)
    batches = [ids[i:i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
    results = results_format(dets)
    out: dict[str, np.ndarray] = {}
    phases: dict[str, list[float]] = {"update": [], "compute": []}
    cpu = torch.device("cpu")

    def ours() -> None:
        metric = CocoMeanAP()
        metric.set_ground_truth(gt)
        start = time.perf_counter()
        for batch in batches:
            metric.update(torch.tensor(batch), [dets[i] for i in batch])
        middle = time.perf_counter()
        out["ours"] = np.array([v.item() for v in metric.compute().values()])
        phases["update"].append(middle - start)
        phases["compute"].append(time.perf_counter() - middle)

    def pycocotools() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
            coco.createIndex()
            evaluator = COCOeval(coco, coco.loadRes([dict(r) for r in results]), "bbox")
            evaluator.params.imgIds = ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        out["pycocotools"] = evaluator.stats

    times = interleaved({"pycocotools": pycocotools, "ours": ours}, args.warmup, args.reps, cpu)
    t_ref, t_ours = statistics.median(times["pycocotools"]), statistics.median(times["ours"])
    n_up, n_co = (statistics.median(phases[k][args.warmup:]) for k in ("update", "compute"))
    print(f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, {len(results)} detections, "
          f"{len(batches)} updates of {args.batch_size}; {args.reps} interleaved repetitions, {args.threads} thread(s)")
    print(f"pycocotools alone     {t_ref:8.3f} s  ({min(times['pycocotools']):.3f}-{max(times['pycocotools']):.3f})")
    print(f"ours (CocoMeanAP)     {t_ours:8.3f} s  ({min(times['ours']):.3f}-{max(times['ours']):.3f})"
          f"  = updates {n_up:.3f} s + compute {n_co:.3f} s + set_ground_truth")
    print(f"ratio ours / pycocotools: {t_ours / t_ref:.3f}")
    same = np.array_equal(out["ours"], out["pycocotools"])
    print(f"12 numbers identical: {same}  (map {out['ours'][0]:.4f}, mar_100 {out['ours'][8]:.4f})")


if __name__ == "__main__":
    main()
