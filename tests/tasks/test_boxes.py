"""Box formats, IoU and generalized IoU: hand-computed cases, the bounds GIoU must keep, and
transformers' own box functions on random boxes."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.tasks.boxes import (box_area, box_iou, cxcywh_to_xyxy, generalized_box_iou, xyxy_to_cxcywh,
                                   xyxy_to_xywh)


def random_xyxy(n: int, generator: torch.Generator) -> torch.Tensor:
    """n boxes inside [0, 10]^2 with sizes in (0.1, 5)."""
    top_left = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 10
    size = 0.1 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 4.9
    return torch.cat([top_left, top_left + size], dim=-1)


# (a, b, IoU, union, GIoU), worked out by hand
CASES = {
    "identical": ([1, 2, 4, 6], [1, 2, 4, 6], 1.0, 12.0, 1.0),
    "overlapping": ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7, 7.0, 1 / 7 - 2 / 9),  # enclosing 3 x 3
    "nested": ([0, 0, 4, 4], [1, 1, 2, 2], 1 / 16, 16.0, 1 / 16),  # enclosing = the outer box: GIoU = IoU
    "touching": ([0, 0, 1, 1], [1, 0, 2, 1], 0.0, 2.0, 0.0),  # enclosing = union
    "corner to corner": ([0, 0, 1, 1], [1, 1, 2, 2], 0.0, 2.0, -0.5),  # enclosing 2 x 2
    "disjoint": ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, 2.0, -1 / 3),  # enclosing 3 x 1
    "far apart": ([0, 0, 1, 1], [99, 99, 100, 100], 0.0, 2.0, 2 / 10000 - 1),  # enclosing 100 x 100
}


@pytest.mark.parametrize("name", CASES)
def test_iou_union_and_giou_by_hand(name):
    a, b, iou, union, giou = CASES[name]
    a, b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    got_iou, got_union = box_iou(a, b)
    assert got_iou.shape == got_union.shape == (1, 1)
    assert got_iou.item() == pytest.approx(iou, abs=1e-12)
    assert got_union.item() == pytest.approx(union, abs=1e-12)
    assert generalized_box_iou(a, b).item() == pytest.approx(giou, abs=1e-12)
    assert generalized_box_iou(b, a).item() == pytest.approx(giou, abs=1e-12)  # symmetric


def test_area_and_conversions_by_hand():
    xyxy = torch.tensor([[0.4, 0.3, 0.6, 0.7], [1.0, 2.0, 4.0, 3.0]])
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [2.5, 2.5, 3.0, 1.0]])
    torch.testing.assert_close(box_area(xyxy), torch.tensor([0.08, 3.0]))
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), cxcywh)
    torch.testing.assert_close(xyxy_to_xywh(xyxy), torch.tensor([[0.4, 0.3, 0.2, 0.4], [1.0, 2.0, 3.0, 1.0]]))


def test_conversions_round_trip_on_any_leading_shape():
    generator = torch.Generator().manual_seed(0)
    xyxy = random_xyxy(24, generator).view(2, 3, 4, 4)
    cxcywh = xyxy_to_cxcywh(xyxy)
    assert cxcywh.shape == (2, 3, 4, 4)
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(cxcywh)), cxcywh)
    torch.testing.assert_close(box_area(xyxy), cxcywh[..., 2] * cxcywh[..., 3])


def test_pairwise_matrix_equals_each_pair_and_transformers():
    transformers_boxes = pytest.importorskip("transformers.loss.loss_for_object_detection")
    generator = torch.Generator().manual_seed(1)
    a, b = random_xyxy(5, generator), random_xyxy(7, generator)
    iou, union = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    assert iou.shape == union.shape == giou.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert giou[i, j] == generalized_box_iou(a[i:i + 1], b[j:j + 1])[0, 0]
    reference_iou, reference_union = transformers_boxes.box_iou(a, b)
    torch.testing.assert_close(iou, reference_iou)
    torch.testing.assert_close(union, reference_union)
    torch.testing.assert_close(giou, transformers_boxes.generalized_box_iou(a, b))


def test_leading_dimensions_broadcast_and_pairs_need_no_matrix():
    generator = torch.Generator().manual_seed(2)
    a, b = random_xyxy(12, generator).view(3, 4, 4), random_xyxy(15, generator).view(3, 5, 4)
    giou = generalized_box_iou(a, b)
    assert giou.shape == (3, 4, 5)
    for k in range(3):
        torch.testing.assert_close(giou[k], generalized_box_iou(a[k], b[k]))
    matched = generalized_box_iou(a[0][:, None], b[0][:4][:, None])  # the 4 pairs (a_k, b_k)
    assert matched.shape == (4, 1, 1)
    torch.testing.assert_close(matched[:, 0, 0], generalized_box_iou(a[0], b[0][:4]).diagonal())


def test_giou_bounds_on_random_boxes():
    """-1 < GIoU <= IoU <= 1, with GIoU = IoU exactly when one box holds the other (C = U)."""
    generator = torch.Generator().manual_seed(3)
    a, b = random_xyxy(40, generator), random_xyxy(40, generator)
    iou, _ = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    assert bool((giou > -1).all()) and bool((giou <= iou + 1e-12).all()) and bool((iou <= 1).all())
    assert bool((iou >= 0).all())
    torch.testing.assert_close(generalized_box_iou(a, a).diagonal(), torch.ones(40, dtype=torch.float64))
    # boxes shrunk inside a: nested, so the enclosing box is a itself
    inner = torch.cat([a[:, :2] + 0.05, a[:, 2:] - 0.05], dim=-1)
    torch.testing.assert_close(generalized_box_iou(a, inner).diagonal(), box_iou(a, inner)[0].diagonal())
    assert bool((generalized_box_iou(a, inner).diagonal() > 0).all())


def test_giou_refuses_boxes_whose_corners_are_swapped():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    flat = torch.tensor([[0.0, 0.0, 0.0, 1.0]])  # zero width is allowed: a proper, empty box
    assert generalized_box_iou(good, flat).item() == pytest.approx(0.0)
    bad = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match=r"b\[1\] is \[0.5, 0.5, 0.3.*x2 < x1 or y2 < y1"):
        generalized_box_iou(good, bad)
    with pytest.raises(ValueError, match=r"a\[0, 1\]"):
        generalized_box_iou(bad[None], good)
