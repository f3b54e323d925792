"""SetCriterion: equal to transformers' DETR loss (ForObjectDetectionLoss) with and without
auxiliary layers, gradients, images without targets, and the box normaliser over two gloo
processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from lit_tasks.errors import ConfigError
from lit_tasks.tasks.hungarian_matcher import HungarianMatcher
from lit_tasks.tasks.set_criterion import SetCriterion, box_normaliser, query_groups

NUM_CLASSES = 5
QUERIES = 8


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """n cxcywh boxes, normalised, of sizes in [0.05, 0.5]."""
    centre = 0.2 + 0.6 * torch.rand(n, 2, generator=generator)
    size = 0.05 + 0.45 * torch.rand(n, 2, generator=generator)
    return torch.cat([centre, size], dim=-1)


def random_layers(layers: int, counts: list[int], seed: int):
    """(layers, B, Q, C+1) logits, (layers, B, Q, 4) boxes, and B targets with `counts` boxes."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(counts)
    logits = 2 * torch.randn(layers, batch, QUERIES, NUM_CLASSES + 1, generator=generator)
    boxes = random_boxes(layers * batch * QUERIES, generator).view(layers, batch, QUERIES, 4)
    targets = [{"labels": torch.randint(0, NUM_CLASSES, (n,), generator=generator),
                "boxes": random_boxes(n, generator)} for n in counts]
    return logits, boxes, targets


def as_outputs(logits: torch.Tensor, boxes: torch.Tensor) -> dict:
    """Our outputs dict of stacked decoder layers: the last is final, the others auxiliary."""
    outputs = {"logits": logits[-1], "pred_boxes": boxes[-1]}
    if len(logits) > 1:
        outputs["aux_outputs"] = [{"logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
    return outputs


SETTINGS = {  # HF DetrConfig's defaults, and others so that no weight can stand in for another
    "detr defaults": dict(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0, eos_coefficient=0.1,
                          bbox_loss_coefficient=5.0, giou_loss_coefficient=2.0),
    "other weights": dict(class_cost=2.0, bbox_cost=1.0, giou_cost=3.0, eos_coefficient=0.3,
                          bbox_loss_coefficient=4.0, giou_loss_coefficient=1.5),
}


@pytest.mark.parametrize("layers", [1, 4])
@pytest.mark.parametrize("setting", SETTINGS)
def test_equals_transformers_detr_loss(setting, layers):
    """transformers.loss.loss_for_object_detection.ForObjectDetectionLoss (what
    DetrForObjectDetection computes with labels) with its weight dict: every part and the total.
    One image without targets, one with as many targets as queries."""
    loss_module = pytest.importorskip("transformers.loss.loss_for_object_detection")
    s = SETTINGS[setting]
    config = SimpleNamespace(num_labels=NUM_CLASSES, auxiliary_loss=layers > 1, decoder_layers=layers, **s)
    ours = SetCriterion(NUM_CLASSES, HungarianMatcher(s["class_cost"], s["bbox_cost"], s["giou_cost"]),
                        eos_coefficient=s["eos_coefficient"], bbox_weight=s["bbox_loss_coefficient"],
                        giou_weight=s["giou_loss_coefficient"])
    for seed in range(3):
        logits, boxes, targets = random_layers(layers, [3, 0, QUERIES, 1], seed)
        hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        hf_loss, hf_parts, _ = loss_module.ForObjectDetectionLoss(
            logits[-1], hf_targets, "cpu", boxes[-1], config, outputs_class=logits, outputs_coord=boxes)
        got = ours(as_outputs(logits, boxes), targets)
        names = [f"{n}{suffix}" for suffix in ["", *[f"_{i}" for i in range(layers - 1)]]
                 for n in ("loss_ce", "loss_bbox", "loss_giou")]
        assert sorted(got) == sorted([*names, "loss"])
        for name in names:
            torch.testing.assert_close(got[name], hf_parts[name], atol=1e-5, rtol=0, msg=f"{name}, seed {seed}")
        torch.testing.assert_close(got["loss"], hf_loss, atol=1e-5, rtol=0)


def test_auxiliary_layers_are_matched_on_their_own():
    """A layer whose queries are a permutation of the final layer's has the same losses: its own
    matching follows the permutation (reusing the final layer's would not)."""
    logits, boxes, targets = random_layers(1, [4, 2], seed=3)
    order = torch.randperm(QUERIES, generator=torch.Generator().manual_seed(0))
    outputs = {"logits": logits[0], "pred_boxes": boxes[0],
               "aux_outputs": [{"logits": logits[0][:, order], "pred_boxes": boxes[0][:, order]}]}
    got = SetCriterion(NUM_CLASSES, HungarianMatcher())(outputs, targets)
    for name in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(got[f"{name}_0"], got[name])
    torch.testing.assert_close(got["loss"], 2 * (got["loss_ce"] + 5 * got["loss_bbox"] + 2 * got["loss_giou"]))


def test_gradients_reach_logits_and_only_matched_boxes():
    logits, boxes, targets = random_layers(1, [3, 0], seed=4)
    logits, boxes = logits[0].requires_grad_(True), boxes[0].requires_grad_(True)
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher())
    matched = criterion.matcher(logits, boxes, targets)
    criterion({"logits": logits, "pred_boxes": boxes}, targets)["loss"].backward()
    assert bool((logits.grad != 0).any(dim=-1).all())  # every query is classified, matched or not
    has_grad = (boxes.grad != 0).any(dim=-1)  # (B, Q)
    expected = torch.zeros(2, QUERIES, dtype=torch.bool)
    expected[0, matched[0][0]] = True
    assert has_grad.tolist() == expected.tolist()  # image 1 has no targets: no box is pulled anywhere


def test_a_batch_without_any_target_is_all_no_object():
    logits, boxes, targets = random_layers(1, [0, 0], seed=5)
    got = SetCriterion(NUM_CLASSES, HungarianMatcher(), eos_coefficient=0.1)(
        {"logits": logits[0], "pred_boxes": boxes[0]}, targets)
    assert got["loss_bbox"].item() == 0 and got["loss_giou"].item() == 0
    no_object = torch.full((2, QUERIES), NUM_CLASSES)
    # every query weighted 0.1: the weighted mean is the plain mean
    torch.testing.assert_close(got["loss_ce"], torch.nn.functional.cross_entropy(logits[0].transpose(1, 2), no_object))
    torch.testing.assert_close(got["loss"], got["loss_ce"])


def test_class_weights_are_a_buffer_that_follows_the_module():
    criterion = SetCriterion(3, HungarianMatcher(), eos_coefficient=0.25)
    assert dict(criterion.named_buffers())["class_weights"].tolist() == [1.0, 1.0, 1.0, 0.25]
    assert "class_weights" not in criterion.state_dict()  # derived from the arguments
    assert criterion.double().class_weights.dtype == torch.float64


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="eos_coefficient is 0"):
        SetCriterion(3, HungarianMatcher(), eos_coefficient=0.0)
    with pytest.raises(ConfigError, match="bbox_weight is -1"):
        SetCriterion(3, HungarianMatcher(), bbox_weight=-1.0)
    logits, boxes, targets = random_layers(1, [1], seed=6)  # 5 classes + no object
    with pytest.raises(ValueError, match=r"built for num_classes=4: expected \(batch, queries, 5\)"):
        SetCriterion(4, HungarianMatcher())({"logits": logits[0], "pred_boxes": boxes[0]}, targets)


def test_normaliser_outside_a_distributed_run_counts_this_batch():
    _, _, targets = random_layers(1, [3, 0, 2], seed=7)
    assert box_normaliser(targets, "cpu").item() == 5
    assert box_normaliser(targets[1:2], "cpu").item() == 1  # clamped: no division by 0


# ------------------------------------------------------------------- two gloo processes

RANK_SCRIPT = textwrap.dedent("""
    import json, sys, types
    from pathlib import Path
    import torch
    import torch.distributed as dist
    import lit_tasks
    # the task package without its __init__, which imports every task and Lightning (seconds)
    sys.modules["lit_tasks.tasks"] = types.ModuleType("lit_tasks.tasks")
    sys.modules["lit_tasks.tasks"].__path__ = [str(Path(lit_tasks.__file__).parent / "tasks")]
    from lit_tasks.tasks.hungarian_matcher import HungarianMatcher
    from lit_tasks.tasks.set_criterion import SetCriterion, box_normaliser

    rank, port, case_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    case = json.load(open(case_file))
    criterion = SetCriterion(case["num_classes"], HungarianMatcher())
    result = {}
    for name, batch in case["batches"].items():
        mine = batch[rank]
        targets = [{"labels": torch.tensor(t["labels"], dtype=torch.int64),
                    "boxes": torch.tensor(t["boxes"]).view(-1, 4)} for t in mine["targets"]]
        outputs = {"logits": torch.tensor(mine["logits"]), "pred_boxes": torch.tensor(mine["pred_boxes"])}
        synced = criterion(outputs, targets)
        local = criterion(outputs, targets, sync=False)
        result[name] = {"normaliser": box_normaliser(targets, "cpu").item(),
                        "local_normaliser": box_normaliser(targets, "cpu", sync=False).item(),
                        "synced": {k: v.item() for k, v in synced.items()},
                        "local": {k: v.item() for k, v in local.items()}}
    json.dump(result, open(f"{out}.{rank}", "w"))
    dist.destroy_process_group()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_divide_by_the_global_count_over_the_world_size(tmp_path):
    """Rank 0 holds 1 + 0 boxes, rank 1 holds 4 + 2: the box losses of both are divided by
    (1 + 6) / 2 = 3.5, not by their own counts. A second batch with 0 and 1 boxes: 0.5, clamped
    to 1. The classification loss is a per-process mean and does not change."""
    counts = {"uneven": [[1, 0], [4, 2]], "few": [[0, 0], [1, 0]]}
    expected = {"uneven": 3.5, "few": 1.0}
    batches = {}
    for k, (name, per_rank) in enumerate(counts.items()):
        batches[name] = []
        for rank, image_counts in enumerate(per_rank):
            logits, boxes, targets = random_layers(1, image_counts, seed=10 * k + rank)
            batches[name].append({"logits": logits[0].tolist(), "pred_boxes": boxes[0].tolist(),
                                  "targets": [{"labels": t["labels"].tolist(), "boxes": t["boxes"].tolist()}
                                              for t in targets]})
    (tmp_path / "case.json").write_text(json.dumps({"num_classes": NUM_CLASSES, "batches": batches}))
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    port, env = free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "rank.py"), str(rank), str(port),
                               str(tmp_path / "case.json"), str(tmp_path / "out")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]

    for rank in range(2):
        result = json.loads((tmp_path / f"out.{rank}").read_text())
        for name, normaliser in expected.items():
            r = result[name]
            local_count = max(sum(counts[name][rank]), 1)
            assert r["normaliser"] == pytest.approx(normaliser), (rank, name)
            assert r["local_normaliser"] == local_count, (rank, name)
            assert r["synced"]["loss_ce"] == pytest.approx(r["local"]["loss_ce"], rel=1e-6)
            for part in ("loss_bbox", "loss_giou"):
                assert r["synced"][part] == pytest.approx(r["local"][part] * local_count / normaliser, rel=1e-6), \
                    (rank, name, part)


def test_query_groups_split_outputs_and_aux_layers_group_by_group():
    """Group DETR: 3 groups of 4 queries, one after the other, become 3 outputs of 4 queries."""
    logits, boxes = torch.randn(2, 12, NUM_CLASSES + 1), torch.rand(2, 12, 4)
    aux = [{"logits": logits + 1, "pred_boxes": boxes / 2}]
    groups = query_groups({"logits": logits, "pred_boxes": boxes, "aux_outputs": aux}, num_queries=4)
    assert len(groups) == 3
    for g, group in enumerate(groups):
        part = slice(4 * g, 4 * g + 4)
        assert torch.equal(group["logits"], logits[:, part]) and torch.equal(group["pred_boxes"], boxes[:, part])
        assert torch.equal(group["aux_outputs"][0]["logits"], logits[:, part] + 1)
        assert torch.equal(group["aux_outputs"][0]["pred_boxes"], boxes[:, part] / 2)
    single = {"logits": logits[:, :4], "pred_boxes": boxes[:, :4]}
    assert query_groups(single, num_queries=4) == [single]
    with pytest.raises(ValueError, match="12 queries are not whole groups of 5"):
        query_groups({"logits": logits, "pred_boxes": boxes}, num_queries=5)
