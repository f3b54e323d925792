"""ObjectDetection (DETR as a task): the loss targets, training on one batch, the optimiser's
groups, COCO category ids from the data and in checkpoints, the scale detections are scored and
drawn at, the boxes sent to wandb and drawn by predict, and config errors naming the key."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import attach_trainer
from PIL import Image, ImageColor

from lit_tasks import plots
from lit_tasks.callbacks.media import FigureLogger
from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.tasks import ObjectDetection
from lit_tasks.tasks.object_detection import draw_detections

NO_DROPOUT = {"dropout": 0.0}


def detector(**kwargs) -> ObjectDetection:
    return ObjectDetection(**{"backbone": "detr-test", "num_classes": 3, **kwargs})


def fake_output(logits: list[list[list[float]]], boxes: list[list[list[float]]]) -> SimpleNamespace:
    """What the network returns, as far as `detections` reads it: logits (B, Q, C + 1), pred_boxes
    (B, Q, 4) cxcywh in [0, 1]."""
    return SimpleNamespace(logits=torch.tensor(logits), pred_boxes=torch.tensor(boxes))


def test_loss_targets_are_cxcywh_over_each_images_own_size():
    """Two images of different sizes padded to one batch: each box is divided by its own image's
    (height, width), not the batch's padded size nor the other image's."""
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([2]), "size": torch.tensor([80, 100])},
        {"boxes": torch.tensor([[0.0, 0.0, 30.0, 15.0], [6.0, 3.0, 12.0, 9.0]]), "labels": torch.tensor([0, 1]),
         "size": torch.tensor([30, 60])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "size": torch.tensor([50, 50])},
    ]
    out = ObjectDetection.loss_targets(targets)
    # (H, W) = (80, 100): cx = 30 / 100, cy = 40 / 80, w = 40 / 100, h = 40 / 80
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[0.3, 0.5, 0.4, 0.5]]))
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.15, 0.2, 0.1, 0.2]]))
    assert out[2]["boxes"].shape == (0, 4)
    assert [t["labels"].tolist() for t in out] == [[2], [0, 1], []]


def test_loss_decreases_when_overfitting_one_batch(monkeypatch):
    """The training step (network with pixel mask, auxiliary outputs, targets, set criterion) and
    the optimiser learn: 40 steps on two padded images cut the loss, and its box parts, by more than half."""
    torch.manual_seed(0)
    task = detector(lr=3e-3, weight_decay=0.0, warmup_fraction=0.0, backbone_lr_ratio=1.0, backbone_config=NO_DROPOUT)
    attach_trainer(task, steps=100)
    optimizer = task.configure_optimizers()["optimizer"]
    logged: dict[str, float] = {}  # what the step logs (Lightning's log needs a running loop)
    monkeypatch.setattr(task, "log", lambda name, value, **kw: logged.__setitem__(name, value.item()))
    monkeypatch.setattr(task, "log_dict", lambda d, **kw: logged.update({k: v.item() for k, v in d.items()}))
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, 64, 64, generator=g)
    pixels[1, :, 48:] = 0  # the second image is 48 x 64, padded to 64 x 64
    mask = torch.ones(2, 64, 64, dtype=torch.long)
    mask[1, 48:] = 0
    batch = {"pixel_values": pixels, "pixel_mask": mask, "image_ids": torch.tensor([1, 2]), "targets": [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0], [20.0, 36.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2]),
         "size": torch.tensor([64, 64]), "orig_size": torch.tensor([64, 64])},
        {"boxes": torch.tensor([[30.0, 4.0, 50.0, 40.0]]), "labels": torch.tensor([1]),
         "size": torch.tensor([48, 64]), "orig_size": torch.tensor([48, 64])}]}
    history = []
    for _ in range(40):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"loss": loss.item(), **{k: logged[f"train/{k}"] for k in ("loss_bbox", "loss_giou")}})
    first, last = history[0], history[-1]
    assert logged["train/loss"] == pytest.approx(last["loss"])
    assert last["loss"] < 0.4 * first["loss"], [round(h["loss"], 3) for h in history]  # about 0.2 *
    assert last["loss_bbox"] < 0.5 * first["loss_bbox"] and last["loss_giou"] < 0.5 * first["loss_giou"], (first, last)


def test_optimiser_trains_the_backbone_at_its_ratio_and_everything_once():
    task = detector(lr=1.0, weight_decay=0.1, backbone_lr_ratio=0.1)
    attach_trainer(task)
    optimizer = task.configure_optimizers()["optimizer"]
    lr_of, decay_of, count = {}, {}, 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)], decay_of[id(p)] = group["initial_lr"], group["weight_decay"]  # "lr" is warmed down
            count += 1
    named = dict(task.named_parameters())
    assert count == len(lr_of) == len(named)  # every parameter once
    backbone = {n for n in named if n.startswith("net.model.backbone.")}  # the ResNet
    assert backbone and len(backbone) < len(named)
    for name, p in named.items():
        assert lr_of[id(p)] == pytest.approx(0.1 if name in backbone else 1.0), name
    # the projection of the backbone's features belongs to the transformer, at the full lr
    assert lr_of[id(named["net.model.input_projection.weight"])] == 1.0
    assert decay_of[id(named["net.class_labels_classifier.weight"])] == 0.1
    assert decay_of[id(named["net.class_labels_classifier.bias"])] == 0.0


def test_detections_carry_the_datas_coco_category_ids():
    task = detector()
    task.check_data(SimpleNamespace(category_ids=[1, 3, 7]))
    assert task.category_ids == [1, 3, 7]
    # three queries whose best classes are 2, 0 and 1 (the 4th column is "no object"), best first
    out = fake_output([[[0.0, 0.0, 5.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]]],
                      [[[0.5, 0.5, 0.2, 0.2]] * 3])
    (found,) = task.detections(out, torch.tensor([[10, 10]]), threshold=0.0, top_k=None)
    assert found["labels"].tolist() == [2, 0, 1]
    assert found["category_ids"].tolist() == [7, 1, 3]


def test_data_with_another_number_of_categories_is_a_config_error():
    with pytest.raises(ConfigError, match="2 categories but model.num_classes is 3"):
        detector().check_data(SimpleNamespace(category_ids=[1, 2]))


@pytest.mark.parametrize("kwargs, key", [
    ({"num_classes": 0}, "model.num_classes"),
    ({"label_names": ["a", "b"]}, "model.label_names"),
    ({"backbone_lr_ratio": 0.0}, "model.backbone_lr_ratio"),
    ({"backbone_lr_ratio": 1.5}, "model.backbone_lr_ratio"),
    ({"max_detections": 0}, "model.max_detections"),
], ids=["no-classes", "label-names", "ratio-zero", "ratio-above-one", "no-detections"])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        detector(**kwargs)


def test_checkpoint_keeps_label_names_and_category_ids():
    task = detector(label_names=["cat", "dog", "emu"])
    task.check_data(SimpleNamespace(category_ids=[2, 4, 9]))
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint["lit_tasks"]["label_names"] == ["cat", "dog", "emu"]
    assert checkpoint["lit_tasks"]["category_ids"] == [2, 4, 9]
    restored = detector(label_names=["cat", "dog", "emu"])  # no data: the ids come from the checkpoint
    restored.on_load_checkpoint(checkpoint)
    assert restored.category_ids == [2, 4, 9]
    other_data = detector(label_names=["cat", "dog", "emu"])
    other_data.check_data(SimpleNamespace(category_ids=[1, 2, 3]))
    with pytest.raises(CheckpointError, match=r"category ids \[2, 4, 9\], the data has \[1, 2, 3\]"):
        other_data.on_load_checkpoint(checkpoint)


def test_scored_in_original_pixels_drawn_in_transformed_pixels():
    """A 100 x 200 (H x W) image resized to 50 x 100: COCO gets the box in the original image's
    pixels, the figure's sample in those of the image it shows."""
    task = detector(draw_threshold=0.5)
    task.check_data(SimpleNamespace(category_ids=[1, 3, 7]))
    task.coco["val"].set_ground_truth({
        "images": [{"id": 42, "height": 100, "width": 200}],
        "annotations": [{"id": 1, "image_id": 42, "category_id": 3, "bbox": [80, 30, 40, 40], "area": 1600, "iscrowd": 0}],
        "categories": [{"id": c} for c in (1, 3, 7)]})
    out = fake_output([[[0.0, 9.0, 0.0, 0.0]]], [[[0.5, 0.5, 0.2, 0.4]]])  # class 1 (id 3), sure of it
    batch = {"pixel_values": torch.zeros(1, 3, 56, 104), "image_ids": torch.tensor([42]), "targets": [
        {"boxes": torch.tensor([[40.0, 15.0, 60.0, 35.0]]), "labels": torch.tensor([1]),
         "size": torch.tensor([50, 100]), "orig_size": torch.tensor([100, 200])}]}
    task._score("val", batch, out)
    (result,) = task.coco["val"].results()
    assert result["image_id"] == 42 and result["category_id"] == 3
    assert result["bbox"] == pytest.approx([80.0, 30.0, 40.0, 40.0])
    assert task.coco["val"].compute()["map"].item() == pytest.approx(1.0)
    (sample,) = task.box_samples("val")
    assert sample["image"].shape == (3, 50, 100)  # the padding cut off
    torch.testing.assert_close(sample["boxes"], torch.tensor([[40.0, 15.0, 60.0, 35.0]]))


def test_wandb_gets_predicted_and_true_boxes_in_the_images_pixels():
    samples = [{"image": torch.randn(3, 20, 30), "boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0]]),
                "labels": torch.tensor([1]), "scores": torch.tensor([0.75]),
                "true_boxes": torch.tensor([[0.0, 0.0, 5.0, 6.0]]), "true_labels": torch.tensor([0])}]
    logged = []
    logger = SimpleNamespace(log_image=lambda key, images, step: logged.append((key, images, step)))
    FigureLogger._log_boxes([logger], "val/boxes", samples, ["cat", "dog"], 7)
    ((key, (image,), step),) = logged
    assert key == "val/boxes" and step == 7 and image.image.size == (30, 20)  # PIL: (width, height)
    boxes = image._boxes  # wandb checked the format when the Image was made; its box groups by name
    (predicted,) = boxes["predictions"]._val
    assert predicted["position"] == {"minX": 1.0, "minY": 2.0, "maxX": 10.0, "maxY": 12.0}
    assert predicted["domain"] == "pixel" and predicted["class_id"] == 1 and predicted["box_caption"] == "dog 0.75"
    (true,) = boxes["ground_truth"]._val
    assert true["position"] == {"minX": 0.0, "minY": 0.0, "maxX": 5.0, "maxY": 6.0} and true["class_id"] == 0


def test_predict_draws_detections_above_the_threshold_on_the_original_image(tmp_path):
    Image.new("RGB", (40, 30), "black").save(tmp_path / "scene.png")
    row = {"path": str(tmp_path / "scene.png"), "image_id": 3, "detections": [
        {"label": "dog", "category_id": 4, "score": 0.9, "box": [5.0, 5.0, 30.0, 25.0]},
        {"label": "cat", "category_id": 2, "score": 0.2, "box": [1.0, 1.0, 38.0, 28.0]}]}
    draw_detections(row, 0.5, tmp_path)
    with Image.open(tmp_path / "3_scene.png") as drawn:
        assert drawn.size == (40, 30)
        pixels = drawn.convert("RGB")
        colour = ImageColor.getrgb(plots.box_colour(4))
        assert pixels.getpixel((5, 15)) == colour and pixels.getpixel((30, 20)) == colour  # the dog's box
        assert pixels.getpixel((1, 15)) == (0, 0, 0)  # the cat scored below the threshold: not drawn
