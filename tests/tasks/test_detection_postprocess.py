"""postprocess: equal to transformers' DETR post-processing (kept in our order, best first), the
strict threshold, top_k, and boxes scaled to each image's own (height, width)."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.tasks.detection_postprocess import postprocess

NUM_CLASSES = 6
QUERIES = 20
SIZES = torch.tensor([[480, 640], [300, 200], [51, 997]])  # (height, width): none square


def random_outputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(len(SIZES), QUERIES, NUM_CLASSES + 1, generator=generator)  # some scores above 0.5
    centre = torch.rand(len(SIZES), QUERIES, 2, generator=generator)
    size = 0.05 + 0.5 * torch.rand(len(SIZES), QUERIES, 2, generator=generator)
    return logits, torch.cat([centre, size], dim=-1)


def transformers_detections(logits, pred_boxes, threshold):
    """DetrImageProcessor.post_process_object_detection (its PIL variant: no torchvision here),
    each image's detections sorted by score, best first."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    assert transformers.__version__  # the installed reference
    outputs = DetrObjectDetectionOutput(logits=logits, pred_boxes=pred_boxes)
    found = DetrImageProcessorPil().post_process_object_detection(outputs, threshold=threshold, target_sizes=SIZES)
    ordered = []
    for d in found:
        order = d["scores"].sort(descending=True, stable=True).indices
        ordered.append({k: v[order] for k, v in d.items()})
    return ordered


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_equals_transformers_post_processing(threshold):
    for seed in range(3):
        logits, pred_boxes = random_outputs(seed)
        ours = postprocess(logits, pred_boxes, SIZES, threshold=threshold)
        reference = transformers_detections(logits, pred_boxes, threshold)
        kept = 0
        for got, expected in zip(ours, reference):
            assert got["labels"].dtype == torch.int64
            for key in ("scores", "labels", "boxes"):
                torch.testing.assert_close(got[key], expected[key], msg=f"{key}, seed {seed}")
            kept += len(got["scores"])
        if threshold == 0:
            assert kept == len(SIZES) * QUERIES  # every score is positive
        else:
            assert 0 < kept < len(SIZES) * QUERIES


def test_top_k_keeps_the_best_above_the_threshold():
    logits, pred_boxes = random_outputs(seed=4)
    reference = transformers_detections(logits, pred_boxes, 0.3)
    for top_k in (1, 3, QUERIES + 5):
        for got, expected in zip(postprocess(logits, pred_boxes, SIZES, threshold=0.3, top_k=top_k), reference):
            assert len(got["scores"]) == min(top_k, len(expected["scores"]))
            for key in ("scores", "labels", "boxes"):
                torch.testing.assert_close(got[key], expected[key][:top_k])
    everything = postprocess(logits, pred_boxes, SIZES, top_k=5)
    assert [len(d["scores"]) for d in everything] == [5, 5, 5]
    assert all(bool((d["scores"][:-1] >= d["scores"][1:]).all()) for d in everything)


def test_scores_labels_and_boxes_by_hand():
    """Two columns of equal logits give probability exactly 0.5; a threshold keeps scores above
    it, not equal to it. Boxes: cxcywh over (height 100, width 200) -> pixel corners."""
    logits = torch.tensor([[[0.0, 5.0, 0.0], [1.0, 0.0, 1.0]]])  # query 1: class 0 and no object tie
    pred_boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    found = postprocess(logits, pred_boxes, [[100, 200]], threshold=0.0)[0]
    assert found["labels"].tolist() == [1, 0]
    p = torch.tensor([0.0, 5.0, 0.0]).softmax(-1)[1].item()
    torch.testing.assert_close(found["scores"], torch.tensor([p, 0.5 / (1 + 0.5 * torch.e ** -1)]))
    torch.testing.assert_close(found["boxes"], torch.tensor([[80.0, 30.0, 120.0, 70.0], [0.0, 50.0, 100.0, 100.0]]))
    half = torch.tensor([[[0.0, 0.0]]])  # one class and no object, equal: score 0.5 exactly
    box = torch.tensor([[[0.5, 0.5, 1.0, 1.0]]])
    assert len(postprocess(half, box, [[10, 10]], threshold=0.5)[0]["scores"]) == 0
    assert len(postprocess(half, box, [[10, 10]], threshold=0.49)[0]["scores"]) == 1


def test_bad_arguments_are_named():
    logits, pred_boxes = random_outputs(seed=5)
    with pytest.raises(ValueError, match=r"sizes have shape \(2, 2\); expected \(3, 2\)"):
        postprocess(logits, pred_boxes, SIZES[:2])
    with pytest.raises(ValueError, match="top_k is 0"):
        postprocess(logits, pred_boxes, SIZES, top_k=0)
    with pytest.raises(ValueError, match="pred_boxes have shape"):
        postprocess(logits, pred_boxes[:, :3], SIZES)
