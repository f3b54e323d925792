"""COCO box mAP (lit_tasks.metrics.coco_map.CocoMeanAP): the 12 numbers equal pycocotools' own
COCO + loadRes + COCOeval run here on json files, the results json is a valid loadRes input,
only seen images count, each image is scored once, and two gloo processes (uneven shards, a
padded duplicate, a process without data) equal one process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lit_tasks.errors import DataError
from lit_tasks.metrics.coco_map import STAT_KEYS, CocoMeanAP

# image id -> (width, height); ids with gaps; 42 has no annotation
IMAGES = {3: (640, 480), 7: (320, 240), 10: (800, 600), 11: (500, 375), 20: (1024, 768), 42: (300, 300)}
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "kite"}]  # gapped ids
# (image id, category id, [x, y, w, h], iscrowd): small (< 32^2), medium and large (> 96^2) areas
BOXES = [
    (3, 1, [10, 20, 200, 150], 0), (3, 5, [300, 100, 60, 50], 0), (3, 9, [500, 400, 20, 15], 0),
    (7, 1, [5, 5, 100, 120], 0), (7, 1, [150, 30, 40, 40], 0), (7, 9, [250, 200, 25, 20], 0),
    (10, 5, [100, 100, 300, 200], 0), (10, 5, [0, 0, 800, 300], 1),  # a crowd region
    (10, 9, [600, 50, 50, 70], 0), (10, 1, [700, 500, 18, 22], 0),
    (11, 9, [20, 300, 120, 60], 0), (11, 5, [400, 10, 30, 30], 0),
] + [(20, 5, [40 + 60 * i, 600, 28, 28], 0) for i in range(14)] + [(20, 1, [100, 100, 400, 300], 0)]


def ground_truth() -> dict:
    images = [{"id": i, "width": w, "height": h, "file_name": f"{i}.jpg"} for i, (w, h) in IMAGES.items()]
    annotations = [{"id": n + 1, "image_id": img, "category_id": cat, "bbox": [float(v) for v in box],
                    "area": 0.9 * box[2] * box[3], "iscrowd": crowd}  # the area field, not w * h, sets the range
                   for n, (img, cat, box, crowd) in enumerate(BOXES)]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def make_detections(seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Per image: jittered true positives (some missed), a few lower-scored duplicates, random
    false positives (also of category 12, which the ground truth does not list), a detection on
    the crowd region; float32 xyxy as a model gives them; no two scores equal."""
    rng = np.random.default_rng(seed)
    rows: dict[int, list] = {i: [] for i in IMAGES}
    for img, cat, (x, y, w, h), crowd in BOXES:
        if crowd:
            rows[img].append((cat, [x + 30, y + 20, x + 230, y + 120], rng.uniform(0.2, 0.9)))
            continue
        if rng.uniform() < 0.15:
            continue  # missed
        for dup in range(1 + (rng.uniform() < 0.25)):
            jitter = rng.normal(0, 0.12 + 0.1 * dup, 4) * [w, h, w, h]
            box = [x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]]
            rows[img].append((cat if rng.uniform() > 0.1 else 9, box, rng.uniform(0.3, 1.0) - 0.3 * dup))
    for img, (W, H) in IMAGES.items():
        for _ in range(rng.integers(2, 6)):
            x1, y1 = rng.uniform(0, W - 20), rng.uniform(0, H - 20)
            box = [x1, y1, x1 + rng.uniform(5, W / 3), y1 + rng.uniform(5, H / 3)]
            rows[img].append((int(rng.choice([1, 5, 9, 12])), box, rng.uniform(0.0, 0.8)))
    out = {}
    for img, dets in rows.items():
        order = rng.permutation(len(dets))  # not sorted by score
        out[img] = {"boxes": torch.tensor([[min(max(v, 0.0), 2000.0) for v in dets[k][1]] for k in order],
                                          dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.tensor([dets[k][2] for k in order], dtype=torch.float32),
                    "category_ids": torch.tensor([dets[k][0] for k in order], dtype=torch.long)}
    for d in out.values():  # xyxy with x2 >= x1 after clipping
        d["boxes"][:, 2:] = torch.maximum(d["boxes"][:, 2:], d["boxes"][:, :2])
    return out


GT = ground_truth()
DETECTIONS = make_detections()
ALL = sorted(IMAGES)


def expected_results(image_ids) -> list[dict]:
    """Our own conversion, independent of the metric's: xyxy -> [x, y, w, h] in double."""
    out = []
    for img in sorted(image_ids):
        d = DETECTIONS[img]
        for box, score, cat in zip(d["boxes"].tolist(), d["scores"].tolist(), d["category_ids"].tolist()):
            out.append({"image_id": img, "category_id": cat, "bbox": [box[0], box[1], box[2] - box[0],
                                                                       box[3] - box[1]], "score": score})
    return out


def pycocotools_stats(gt_file, results_file, image_ids) -> np.ndarray:
    """pycocotools alone, as its README runs it, on files."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def run_metric(batches, detections=DETECTIONS) -> CocoMeanAP:
    metric = CocoMeanAP()
    metric.set_ground_truth(GT)
    for ids in batches:
        metric.update(torch.tensor(ids), [detections[i] for i in ids])
    return metric


def numbers(scores: dict[str, torch.Tensor]) -> np.ndarray:
    assert list(scores) == list(STAT_KEYS)
    return np.array([v.item() for v in scores.values()])


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path


def test_twelve_numbers_equal_pycocotools_on_files(tmp_path, capsys):
    metric = run_metric([[3, 7], [10, 11, 20], [42]])
    ours = numbers(metric.compute())
    written = json.loads(metric.write_results(tmp_path / "out" / "results.json").read_text())
    assert written == expected_results(ALL)  # boxes as x y w h, every detection, by image id
    assert not list((tmp_path / "out").glob("*.tmp*"))

    gt_file = write_json(tmp_path / "gt.json", GT)
    reference = pycocotools_stats(gt_file, write_json(tmp_path / "ref.json", expected_results(ALL)), ALL)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pycocotools_stats(gt_file, tmp_path / "out" / "results.json", ALL), reference,
                               rtol=0, atol=1e-12)  # our file is a loadRes input scoring the same
    # the data makes every number meaningful: no -1 (empty area range), no 0 or 1, recall grows with maxDets
    assert np.all((ours > 0.05) & (ours < 0.99)), dict(zip(STAT_KEYS, ours))
    assert ours[6] < ours[7] < ours[8]
    assert len(set(np.round(ours, 9))) >= 10

    assert capsys.readouterr().out == ""  # COCOeval's printing is captured
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in metric.summary
    assert metric.summary.count("\n") == 12


def test_only_seen_images_are_scored(tmp_path):
    seen = [3, 10, 42]
    ours = numbers(run_metric([seen]).compute())
    gt_file = write_json(tmp_path / "gt.json", GT)
    results_file = write_json(tmp_path / "r.json", expected_results(seen))
    np.testing.assert_allclose(ours, pycocotools_stats(gt_file, results_file, seen), rtol=0, atol=1e-12)
    # pycocotools over every image would count the unseen images' objects as missed
    assert ours[8] > pycocotools_stats(gt_file, results_file, ALL)[8] + 0.1

    # a seen image without detections still counts its objects as missed
    empty = {**DETECTIONS, 7: {k: v[:0] for k, v in DETECTIONS[7].items()}}
    with_empty = numbers(run_metric([seen + [7]], empty).compute())
    np.testing.assert_allclose(with_empty, pycocotools_stats(gt_file, results_file, seen + [7]), rtol=0, atol=1e-12)
    assert with_empty[8] < ours[8]


def test_no_detections_give_zeros(tmp_path):
    empty = {i: {k: v[:0] for k, v in d.items()} for i, d in DETECTIONS.items()}
    metric = run_metric([[3, 7], [42]], empty)
    assert numbers(metric.compute()).tolist() == [0.0] * 12
    assert metric.results() == []
    assert json.loads(metric.write_results(tmp_path / "r.json").read_text()) == []
    assert "no detections" in metric.summary


def test_each_image_scored_once_first_occurrence_kept():
    """An image repeated (a padding sampler's repeat) is scored once, with the detections of its
    first update, even when the repeat's detections differ."""
    whole = run_metric([ALL])
    other = {**DETECTIONS, 3: DETECTIONS[7], 10: {k: v[:1] for k, v in DETECTIONS[10].items()}}
    twice = run_metric([[3, 7, 10], [11, 20, 42]])
    for ids in ([10, 3], [3]):
        twice.update(torch.tensor(ids), [other[i] for i in ids])
    assert numbers(twice.compute()).tolist() == numbers(whole.compute()).tolist()
    assert twice.results() == expected_results(ALL)


def test_forward_in_halves_and_merged_states_equal_whole():
    whole = run_metric([ALL])
    expected = numbers(whole.compute())

    halves = CocoMeanAP()
    halves.set_ground_truth(GT)
    first = numbers(halves(torch.tensor([3, 7, 10]), [DETECTIONS[i] for i in (3, 7, 10)]))  # batch value
    halves(torch.tensor([11, 20, 42, 7]), [DETECTIONS[i] for i in (11, 20, 42)] + [DETECTIONS[3]])
    assert halves.results() == expected_results(ALL)  # not the last batch's cached results
    assert numbers(halves.compute()).tolist() == expected.tolist()
    assert first.tolist() != expected.tolist()

    a, b = run_metric([[3, 7], [10]]), run_metric([[11, 20, 42]])
    assert a.results() == expected_results([3, 7, 10])
    a.merge_state(b)
    assert a.results() == expected_results(ALL)
    assert numbers(a.compute()).tolist() == expected.tolist()
    clone = a.clone()
    clone.reset()
    assert clone.results() == [] and a.results() == expected_results(ALL)


def test_errors_name_what_is_wrong():
    with pytest.raises(RuntimeError, match=r"call set_ground_truth\(coco\)"):
        m = CocoMeanAP()
        m.update(torch.tensor([3]), [DETECTIONS[3]])
        m.compute()
    metric = run_metric([])
    with pytest.raises(DataError, match=r"image ids \[5\] .* not among the ground truth's images"):
        metric.update(torch.tensor([3, 5]), [DETECTIONS[3], DETECTIONS[3]])
    xywh = {**DETECTIONS[3], "boxes": torch.tensor([[10.0, 20.0, 5.0, 5.0]]), "scores": torch.ones(1),
            "category_ids": torch.ones(1, dtype=torch.long)}
    with pytest.raises(DataError, match="x2 >= x1 .* not x y w h"):
        metric.update(torch.tensor([3]), [xywh])
    with pytest.raises(DataError, match=r"detections\[0\] has boxes \(1, 4\), scores \(2,\)"):
        metric.update(torch.tensor([3]), [{**xywh, "scores": torch.ones(2)}])
    with pytest.raises(DataError, match="2 detection dicts for 1 image ids"):
        metric.update(torch.tensor([3]), [xywh, xywh])
    no_area = {k: v for k, v in GT["annotations"][2].items() if k != "area"}
    bad = {**GT, "annotations": GT["annotations"][:2] + [no_area]}
    with pytest.raises(DataError, match=r"annotations\[2\] has no 'area'"):
        metric.set_ground_truth(bad)
    with pytest.raises(DataError, match=r"annotations\[0\] has category_id 4, not among the categories \[1, 5, 9\]"):
        metric.set_ground_truth({**GT, "annotations": [{**GT["annotations"][0], "category_id": 4}]})
    with pytest.raises(DataError, match="'categories' is NoneType; expected a list"):
        metric.set_ground_truth({"images": [], "annotations": []})


def test_ground_truth_dict_is_not_modified():
    gt = ground_truth()  # fresh: GT itself would already carry what an earlier test wrote into it
    metric = CocoMeanAP()
    metric.set_ground_truth(gt)
    metric.update(torch.tensor(ALL), [DETECTIONS[i] for i in ALL])
    metric.compute()
    assert gt == ground_truth()  # COCOeval writes 'ignore' into its annotations: copies


# -------------------------------------------------------------------------- two gloo ranks

RANK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import torch.distributed as dist
    from lit_tasks.metrics.coco_map import CocoMeanAP

    rank, port, data, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    case = json.load(open(data))
    report = {}
    for name, shards in case["cases"].items():
        metric = CocoMeanAP()
        metric.set_ground_truth(case["gt"])
        for batch in shards[rank]:  # [[image id, detections key], ...]
            dets = [case["detections"][key] for _, key in batch]
            metric.update(torch.tensor([img for img, _ in batch]),
                          [{"boxes": torch.tensor(d["boxes"], dtype=torch.float32).reshape(-1, 4),
                            "scores": torch.tensor(d["scores"], dtype=torch.float32),
                            "category_ids": torch.tensor(d["category_ids"], dtype=torch.long)} for d in dets])
        scores = {k: v.item() for k, v in metric.compute().items()}  # synced over ranks
        if rank == 0:  # after compute one process writes alone (a collective here would hang)
            metric.write_results(f"{out}.{name}.json")
        report[name] = {"scores": scores, "results": metric.results()}
    json.dump(report, open(f"{out}.{rank}", "w"))
    dist.barrier()
    dist.destroy_process_group()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """'padded': rank 0 updates [3, 10], [20]; rank 1 [7], [11, 42, 3], where 3 is a padded
    repeat carrying other detections (image 7's): rank 0's first occurrence is kept.
    'idle': rank 0 takes every image, rank 1 none (an unpadded sampler with more ranks than
    images)."""
    as_lists = {str(i): {k: v.tolist() for k, v in d.items()} for i, d in DETECTIONS.items()}
    padded = [[[[3, "3"], [10, "10"]], [[20, "20"]]], [[[7, "7"]], [[11, "11"], [42, "42"], [3, "7"]]]]
    idle = [[[[i, str(i)] for i in ALL[:4]], [[i, str(i)] for i in ALL[4:]]], []]
    data = {"gt": GT, "detections": as_lists, "cases": {"padded": padded, "idle": idle}}
    (tmp_path / "case.json").write_text(json.dumps(data))
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    port, env = free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "rank.py"), str(rank), str(port),
                               str(tmp_path / "case.json"), str(tmp_path / "out")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            proc.kill()

    one = run_metric([ALL])
    expected = {k: v.item() for k, v in one.compute().items()}
    for rank in range(2):
        report = json.loads((tmp_path / f"out.{rank}").read_text())
        for name in ("padded", "idle"):
            assert report[name]["scores"] == expected, (rank, name)
            assert report[name]["results"] == one.results(), (rank, name)
    for name in ("padded", "idle"):
        assert json.loads((tmp_path / f"out.{name}.json").read_text()) == expected_results(ALL)
