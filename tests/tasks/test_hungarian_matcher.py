"""HungarianMatcher: the least-cost assignment (checked against every assignment, by brute
force), each cost term alone and combined, images without targets, bad input, and
transformers' own DETR matcher."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lit_tasks.errors import ConfigError
from lit_tasks.tasks.hungarian_matcher import HungarianMatcher

NUM_CLASSES = 4
COSTS = {"class": (1.0, 0.0, 0.0), "bbox": (0.0, 1.0, 0.0), "giou": (0.0, 0.0, 1.0), "combined": (1.0, 5.0, 2.0)}


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """n cxcywh boxes, normalised, of sizes in [0.05, 0.5]."""
    centre = torch.rand(n, 2, generator=generator)
    size = 0.05 + 0.45 * torch.rand(n, 2, generator=generator)
    return torch.cat([centre, size], dim=-1)


def random_case(queries: int, counts: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(len(counts), queries, NUM_CLASSES + 1, generator=generator)
    pred_boxes = random_boxes(len(counts) * queries, generator).view(len(counts), queries, 4)
    targets = [{"labels": torch.randint(0, NUM_CLASSES, (n,), generator=generator),
                "boxes": random_boxes(n, generator)} for n in counts]
    return logits, pred_boxes, targets


def giou(p: list[float], t: list[float]) -> float:
    """GIoU of two cxcywh boxes, written out for one pair."""
    (px1, py1, px2, py2), (tx1, ty1, tx2, ty2) = ([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                                                  for cx, cy, w, h in (p, t))
    inter = max(0.0, min(px2, tx2) - max(px1, tx1)) * max(0.0, min(py2, ty2) - max(py1, ty1))
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter
    enclosing = (max(px2, tx2) - min(px1, tx1)) * (max(py2, ty2) - min(py1, ty1))
    return inter / union - (enclosing - union) / enclosing


def cost_matrix(logits, pred_boxes, labels, boxes, weights) -> np.ndarray:
    """(Q, N) cost of one image, pair by pair, as Sec. 3.1 of the DETR paper states it."""
    class_w, bbox_w, giou_w = weights
    prob = logits.double().softmax(-1)
    cost = np.zeros((len(logits), len(labels)))
    for q in range(len(logits)):
        for t in range(len(labels)):
            l1 = float((pred_boxes[q].double() - boxes[t].double()).abs().sum())
            cost[q, t] = (-class_w * float(prob[q, labels[t]]) + bbox_w * l1
                          - giou_w * giou(pred_boxes[q].tolist(), boxes[t].tolist()))
    return cost


def brute_force(cost: np.ndarray) -> list[tuple[float, tuple[int, ...]]]:
    """Every assignment of the N targets to distinct queries, (total cost, query of each target),
    cheapest first."""
    queries, n = cost.shape
    return sorted((sum(cost[q, t] for t, q in enumerate(chosen)), chosen)
                  for chosen in itertools.permutations(range(queries), n))


@pytest.mark.parametrize("cost_name", COSTS)
def test_assignment_has_the_least_total_cost_of_all(cost_name):
    """Several images in one call (their costs are computed together and split per image), Q up
    to 6 queries, 0..Q targets each; the total cost equals the brute-force minimum, and when
    that minimum is unique the assignment is the brute-force one."""
    weights = COSTS[cost_name]
    matcher = HungarianMatcher(*weights)
    checked_unique = 0
    for seed in range(5):
        for queries in range(1, 7):
            counts = list(range(queries + 1))  # one image per target count
            logits, pred_boxes, targets = random_case(queries, counts, seed=100 * seed + queries)
            matches = matcher(logits, pred_boxes, targets)
            assert len(matches) == len(counts)
            for i, (pred_idx, target_idx) in enumerate(matches):
                assert pred_idx.dtype == target_idx.dtype == torch.int64
                assert len(pred_idx) == len(target_idx) == counts[i]
                assert sorted(target_idx.tolist()) == list(range(counts[i]))
                assert len(set(pred_idx.tolist())) == counts[i]
                cost = cost_matrix(logits[i], pred_boxes[i], targets[i]["labels"], targets[i]["boxes"], weights)
                got = float(cost[pred_idx.numpy(), target_idx.numpy()].sum())
                ranked = brute_force(cost)
                assert got == pytest.approx(ranked[0][0], abs=1e-5), (seed, queries, i)
                if len(ranked) > 1 and ranked[1][0] - ranked[0][0] > 1e-4:
                    query_of_target = dict(zip(target_idx.tolist(), pred_idx.tolist()))
                    assert tuple(query_of_target[t] for t in range(counts[i])) == ranked[0][1]
                    checked_unique += 1
    assert checked_unique > 25  # ties: class costs alone tie targets of one class


def test_each_cost_term_moves_the_assignment():
    """Two queries, two targets: class scores favour one assignment, boxes the other; the
    weights decide which wins."""
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])  # query 0 says class 0, query 1 class 1
    pred_boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2]]])
    targets = [{"labels": torch.tensor([1, 0]), "boxes": pred_boxes[0].clone()}]  # boxes say q0 -> t0
    by_class = HungarianMatcher(1.0, 0.0, 0.0)(logits, pred_boxes, targets)[0]
    assert by_class[0].tolist() == [0, 1] and by_class[1].tolist() == [1, 0]
    for weights in ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 5.0, 2.0)):
        by_boxes = HungarianMatcher(*weights)(logits, pred_boxes, targets)[0]
        assert by_boxes[0].tolist() == [0, 1] and by_boxes[1].tolist() == [0, 1], weights


def test_images_without_targets_get_empty_pairs():
    logits, pred_boxes, targets = random_case(5, [0, 3, 0], seed=7)
    matches = HungarianMatcher()(logits, pred_boxes, targets)
    for i in (0, 2):
        assert matches[i][0].shape == matches[i][1].shape == (0,)
        assert matches[i][0].dtype == torch.int64
    assert len(matches[1][0]) == 3
    logits, pred_boxes, targets = random_case(5, [0, 0], seed=8)
    assert all(len(p) == len(t) == 0 for p, t in HungarianMatcher()(logits, pred_boxes, targets))


def test_runs_without_gradients_and_ignores_non_finite_predictions():
    logits, pred_boxes, targets = random_case(4, [2], seed=9)
    logits.requires_grad_(True)
    matches = HungarianMatcher()(logits, pred_boxes, targets)
    assert not matches[0][0].requires_grad
    pred_boxes[0, 1] = math.nan  # a diverged query: never preferred while others are left
    pred_idx, _ = HungarianMatcher()(logits.detach(), pred_boxes, targets)[0]
    assert 1 not in pred_idx.tolist()


def test_bad_weights_and_targets_are_named():
    with pytest.raises(ConfigError, match="all 0"):
        HungarianMatcher(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="giou_cost is -1"):
        HungarianMatcher(giou_cost=-1.0)
    logits, pred_boxes, targets = random_case(3, [2, 4], seed=10)
    with pytest.raises(ValueError, match=r"targets\[1\] has 4 boxes but the model predicts only 3 queries"):
        HungarianMatcher()(logits, pred_boxes, targets)
    targets = [{"labels": torch.tensor([0, NUM_CLASSES]), "boxes": random_boxes(2, torch.Generator())}] * 2
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] holds \[0, 4\]; the logits score classes 0..3"):
        HungarianMatcher()(logits, pred_boxes, targets)
    targets = [{"labels": torch.tensor([0.0, 1.0]), "boxes": random_boxes(2, torch.Generator())}] * 2
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] are torch.float32; expected class indices"):
        HungarianMatcher()(logits, pred_boxes, targets)
    with pytest.raises(ValueError, match="pred_boxes have shape"):
        HungarianMatcher()(logits, pred_boxes[..., :2], targets)
    with pytest.raises(ValueError, match="1 target dicts for a batch of 2"):
        HungarianMatcher()(logits, pred_boxes, targets[:1])


@pytest.mark.parametrize("weights", [(1.0, 5.0, 2.0), (2.0, 1.0, 0.5)])
def test_equals_transformers_matcher(weights):
    loss_module = pytest.importorskip("transformers.loss.loss_for_object_detection")
    for seed in range(3):
        logits, pred_boxes, targets = random_case(10, [0, 3, 7, 10], seed=seed)
        ours = HungarianMatcher(*weights)(logits, pred_boxes, targets)
        reference = loss_module.HungarianMatcher(*weights)(
            {"logits": logits, "pred_boxes": pred_boxes},
            [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets])
        for (p, t), (ref_p, ref_t) in zip(ours, reference):
            assert p.tolist() == ref_p.tolist() and t.tolist() == ref_t.tolist(), seed
