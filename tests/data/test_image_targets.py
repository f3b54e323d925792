"""Targets (boxes, instance and semantic masks, depth) follow the pixels through every geometric
transform, and the collate pads images and targets with the right mask and ignore values.

The scene: a grey 64x48 image with a red rectangle (object A, label 3) and a blue one (object B,
label 7); their instance masks and the semantic mask are drawn on the same pixels, and the depth
map is 1 + x + 1000 y, so a depth value tells which source pixel it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lit_tasks.data.geometric_transforms import (
    HFlip, RandomChoice, RandomCrop, RandomResizedCrop, Resize, ResizeShorter, crop, hflip, random_resized_crop_box,
    resize, resized_crop, shorter_side_size,
)
from lit_tasks.data.image_transforms import ImageTransform, TargetsTransform
from lit_tasks.data.targets import IGNORE_INDEX, Targets, TargetsCollate
from lit_tasks.errors import DataError

W, H = 64, 48
GREY = (128, 128, 128)
# label: (colour, (x1, y1, x2, y2)) -- pixel columns x1..x2-1 and rows y1..y2-1
OBJECTS = {3: ((255, 0, 0), (20, 10, 36, 30)), 7: ((0, 0, 255), (48, 34, 60, 44))}


def scene() -> tuple[Image.Image, Targets]:
    pixels = np.full((H, W, 3), GREY, dtype=np.uint8)
    masks = np.zeros((2, H, W), dtype=bool)
    semantic = np.zeros((H, W), dtype=np.int64)
    for k, (label, (colour, (x1, y1, x2, y2))) in enumerate(OBJECTS.items()):
        pixels[y1:y2, x1:x2] = colour
        masks[k, y1:y2, x1:x2] = True
        semantic[y1:y2, x1:x2] = label
    ys, xs = np.mgrid[0:H, 0:W]
    depth = (1 + xs + 1000 * ys).astype(np.float32)
    boxes = [box for _, box in OBJECTS.values()]
    return Image.fromarray(pixels), Targets((H, W), boxes, list(OBJECTS), masks, semantic, depth)


def colour_pixels(pixels: np.ndarray, label: int) -> np.ndarray:
    """(h, w) bool: where an (h, w, 3) uint8 image is more than half-way from grey to the colour."""
    p = pixels.astype(np.int64)
    if label == 3:
        return p[..., 0] - p[..., 2] > 64
    return p[..., 2] - p[..., 0] > 64


def pixel_box(mask: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def as_array(image) -> np.ndarray:
    """A PIL image, or a (3, H, W) tensor normalised with mean 0 and std 1, as (H, W, 3) uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image)
    return (image.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()


def assert_consistent(image, t: Targets, tol: float = 0.0) -> None:
    """Targets agree with the pixels: each kept object's box bounds its colour's pixels (within
    ``tol`` pixels), its instance mask and its semantic class cover those pixels (exactly when
    ``tol`` is 0, else up to a ring along the box edge), a dropped object has no pixels left, and
    every depth value is one of the source image's."""
    pixels = as_array(image)
    assert pixels.shape[:2] == t.size and t.masks.shape == (len(t), *t.size)
    assert t.semantic.shape == t.size and t.depth.shape == t.size
    assert ((t.boxes[:, 0::2] >= 0) & (t.boxes[:, 0::2] <= t.size[1])).all()
    assert ((t.boxes[:, 1::2] >= 0) & (t.boxes[:, 1::2] <= t.size[0])).all()
    for label in OBJECTS:
        seen = colour_pixels(pixels, label)
        if label not in t.labels.tolist():
            assert not seen.any(), f"object {label} was dropped but {seen.sum()} of its pixels remain"
            assert not (t.semantic == label).any()
            continue
        (k,) = (t.labels == label).nonzero()[0].tolist()
        box, mask = t.boxes[k], t.masks[k].numpy()
        assert np.allclose(pixel_box(seen), box.numpy(), atol=tol), (label, pixel_box(seen), box.tolist())
        assert np.array_equal((t.semantic == label).numpy(), mask)  # one sampling for both masks
        if tol == 0:
            assert np.array_equal(mask, seen)
        else:
            w, h = (box[2] - box[0]).item(), (box[3] - box[1]).item()
            assert (mask ^ seen).sum() <= 2 * (w + h) + 4, (label, (mask ^ seen).sum())
            assert np.allclose(pixel_box(mask), box.numpy(), atol=1.0)
    assert (t.semantic[~t.masks.any(0)] == 0).all()
    src_x, src_y = decode_depth(t.depth)
    assert ((src_x >= 0) & (src_x < W) & (src_y >= 0) & (src_y < H)).all()


def decode_depth(depth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The source pixel (x, y) each depth value was read from."""
    d = depth.numpy().astype(np.int64) - 1
    assert np.array_equal(d + 1, depth.numpy())  # not interpolated, not rescaled
    return d % 1000, d // 1000


def assert_depth_follows(depth: torch.Tensor, ax: float, bx: float, ay: float, by: float) -> None:
    """Each output pixel holds the depth of the source pixel under its centre, where output
    (x, y) maps to source (ax x + bx, ay y + by) in continuous coordinates."""
    src_x, src_y = decode_depth(depth)
    rows, cols = np.mgrid[0: depth.shape[0], 0: depth.shape[1]]
    cx, cy = ax * (cols + 0.5) + bx, ay * (rows + 0.5) + by
    eps = 1e-6
    assert ((src_x - eps <= cx) & (cx <= src_x + 1 + eps)).all()
    assert ((src_y - eps <= cy) & (cy <= src_y + 1 + eps)).all()


# --------------------------------------------------------------------------- primitives


def test_hflip_moves_boxes_masks_and_depth():
    image, t = hflip(*scene())
    assert t.boxes.tolist() == [[28, 10, 44, 30], [4, 34, 16, 44]]
    assert t.labels.tolist() == [3, 7] and t.size == (H, W)
    assert_consistent(image, t)
    assert_depth_follows(t.depth, -1, W, 1, 0)


def test_crop_clips_cut_boxes_and_drops_the_ones_left_outside():
    image, t = scene()
    out, both = crop(image, t, (28, 5, 52, 40))  # cuts A on the left, B on the right and bottom
    assert both.boxes.tolist() == [[0, 5, 8, 25], [20, 29, 24, 35]] and both.labels.tolist() == [3, 7]
    assert both.size == (35, 24) and out.size == (24, 35)
    assert_consistent(out, both)
    assert_depth_follows(both.depth, 1, 28, 1, 5)

    out, one = crop(image, t, (24, 0, 44, 20))  # cuts A, leaves B outside
    assert one.boxes.tolist() == [[0, 10, 12, 20]] and one.labels.tolist() == [3]
    assert one.masks.shape == (1, 20, 20) and one.masks[0].sum() == 12 * 10
    assert_consistent(out, one)
    assert one.orig_size == (H, W)

    out, none = crop(image, t, (0, 32, 16, 48))  # neither object
    assert none.boxes.shape == (0, 4) and none.labels.shape == (0,) and none.masks.shape == (0, 16, 16)
    assert_consistent(out, none)


@pytest.mark.parametrize("size", [(20, 30), (100, 150), (48, 20)])
@pytest.mark.parametrize("resample", ["bilinear", "bicubic"])
def test_resize_scales_boxes_and_resamples_masks_by_nearest(size, resample):
    image, t = scene()
    out, r = resize(image, t, size, resample)
    sx, sy = size[1] / W, size[0] / H
    expected = [[x1 * sx, y1 * sy, x2 * sx, y2 * sy] for x1, y1, x2, y2 in t.boxes.tolist()]
    assert torch.allclose(r.boxes, torch.tensor(expected)) and r.size == size
    assert_consistent(out, r, tol=1.5)
    assert_depth_follows(r.depth, 1 / sx, 0, 1 / sy, 0)


def test_resized_crop_of_a_region():
    image, t = scene()
    out, r = resized_crop(image, t, (16, 8, 56, 40), (16, 20))  # 40x32 region -> 20x16: half size
    assert torch.allclose(r.boxes, torch.tensor([[2, 1, 10, 11], [16, 13, 20, 16]], dtype=torch.float32))
    assert_consistent(out, r, tol=1.5)
    assert_depth_follows(r.depth, 2, 16, 2, 8)


def test_chain_of_flip_crop_and_resize():
    image, t = scene()
    image, t = hflip(image, t)  # A -> x 28..44
    image, t = crop(image, t, (30, 6, 62, 46))  # 32x40, A -> (0, 4, 14, 24); B (x 4..16) dropped
    image, t = resize(image, t, (60, 48))  # x1.5
    assert t.labels.tolist() == [3]
    assert torch.allclose(t.boxes, torch.tensor([[0, 6, 21, 36]], dtype=torch.float32))
    assert_consistent(image, t, tol=1.5)
    # output x -> crop x / 1.5 -> flipped x + 30 -> source W - that
    assert_depth_follows(t.depth, -1 / 1.5, W - 30, 1 / 1.5, 6)


def test_shorter_side_resize_with_max_size():
    assert shorter_side_size(48, 64, 32) == (32, 42)
    assert shorter_side_size(48, 64, 32, max_size=40) == (30, 40)  # 42.7 > 40: the longer side rules
    assert shorter_side_size(64, 48, 32, max_size=40) == (40, 30)
    assert shorter_side_size(48, 64, 48, max_size=1333) == (48, 64)
    image, t = scene()
    out, r = ResizeShorter(32, max_size=40)(image, t)
    assert r.size == (30, 40) and out.size == (40, 30)
    assert_consistent(out, r, tol=1.5)
    assert_depth_follows(r.depth, W / 40, 0, H / 30, 0)


def test_shorter_side_size_matches_transformers():
    image_transforms = pytest.importorskip("transformers.image_transforms")
    for h in (17, 48, 333, 480, 640, 1000):
        for w in (13, 64, 427, 640, 1333):
            for shorter in (16, 480, 800):
                for max_size in (None, 700, 1333):
                    ours = shorter_side_size(h, w, shorter, max_size)
                    assert ours == image_transforms.get_size_with_aspect_ratio((h, w), shorter, max_size), (h, w)
                    if max_size is not None and ours != (h, w):
                        assert max(ours) <= max_size


# -------------------------------------------------------------------------------- steps


PIPELINES = {
    "flip_crop_resize": ([HFlip(), RandomCrop(12, 48), Resize((40, 50))], 1.5),
    "random_resized_crop": ([RandomResizedCrop(32, scale=(0.2, 1.0))], 1.5),
    "detr": ([HFlip(), RandomChoice([[ResizeShorter([30, 40], max_size=60)],
                                     [ResizeShorter([40, 48]), RandomCrop(20, 40), ResizeShorter([30], max_size=60)]])],
             2.5),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_random_pipelines_keep_targets_on_their_pixels(name):
    steps, tol = PIPELINES[name]
    transform = TargetsTransform(steps, mean=(0, 0, 0), std=(1, 1, 1))
    kept = set()
    for seed in range(30):
        pixels, t = transform(*scene(), generator=torch.Generator().manual_seed(seed))
        assert pixels.shape == (3, *t.size)
        assert_consistent(pixels, t, tol)
        kept.add(tuple(t.labels.tolist()))
        torch.manual_seed(seed + 99)  # the global RNG plays no part
        again, t2 = transform(*scene(), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(pixels, again) and torch.equal(t.boxes, t2.boxes) and torch.equal(t.depth, t2.depth)
    if name == "flip_crop_resize":
        assert len(kept) > 1  # crops did drop objects


def test_random_crop_can_insist_on_keeping_a_box():
    def labels(keep_box):
        step = RandomCrop(8, 8, keep_box=keep_box)
        return [len(step(*scene(), torch.Generator().manual_seed(s))[1]) for s in range(40)]

    assert 0 in labels(False)
    assert 0 not in labels(True)


def test_resize_shorter_draws_its_size_from_the_generator():
    step = ResizeShorter([24, 32, 40])
    drawn = [step(*scene(), torch.Generator().manual_seed(s))[1].size[0] for s in range(20)]
    assert set(drawn) == {24, 32, 40}
    assert drawn == [step(*scene(), torch.Generator().manual_seed(s))[1].size[0] for s in range(20)]


def test_classifier_transform_is_the_same_crop_and_flip():
    """ImageTransform draws the crop box, then the flip (the order resumed runs rely on), and
    gives the pixels TargetsTransform gives with the same steps."""
    image, t = scene()
    train = ImageTransform((24, 24), mean=(0, 0, 0), std=(1, 1, 1), train=True, scale=(0.3, 1.0))
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        box = random_resized_crop_box(W, H, (0.3, 1.0), generator=g)
        expected = np.asarray(image.resize((24, 24), Image.Resampling.BILINEAR, box=box))
        if torch.rand((), generator=g).item() < 0.5:
            expected = expected[:, ::-1]
        got = train(image, generator=torch.Generator().manual_seed(seed))
        assert np.array_equal(as_array(got), expected)
        same_steps = TargetsTransform(train.steps, mean=(0, 0, 0), std=(1, 1, 1))
        pixels, moved = same_steps(image, t, torch.Generator().manual_seed(seed))
        assert torch.equal(pixels, got)
        assert_consistent(pixels, moved, tol=1.5)


# ------------------------------------------------------------------------------- collate


class Skipped:
    path = "bad.png"


def sample(h: int, w: int, dense: bool = True) -> dict:
    t = Targets((h, w), [[1, 2, 5, 6]], [4], masks=torch.ones(1, h, w, dtype=torch.bool) if dense else None,
                semantic=torch.full((h, w), 2) if dense else None, depth=torch.full((h, w), 3.0) if dense else None)
    return {"pixel_values": torch.full((3, h, w), 0.5), "targets": t, "paths": f"{h}x{w}.png"}


def test_collate_pads_bottom_right_with_pixel_mask_and_ignore_values():
    batch = TargetsCollate()([sample(20, 30), Skipped(), sample(25, 18)])
    assert batch["pixel_values"].shape == (2, 3, 25, 30) and batch["pixel_mask"].shape == (2, 25, 30)
    assert batch["paths"] == ["20x30.png", "25x18.png"] and batch["skipped"] == ["bad.png"]
    for i, (h, w) in enumerate([(20, 30), (25, 18)]):
        real = torch.zeros(25, 30, dtype=torch.bool)
        real[:h, :w] = True
        assert torch.equal(batch["pixel_mask"][i], real.long())
        assert (batch["pixel_values"][i][:, real] == 0.5).all() and (batch["pixel_values"][i][:, ~real] == 0).all()
        t = batch["targets"][i]
        assert t["boxes"].tolist() == [[1, 2, 5, 6]] and t["labels"].tolist() == [4]
        assert t["size"].tolist() == [h, w] and t["orig_size"].tolist() == [h, w]
        assert t["masks"].shape == (1, 25, 30) and torch.equal(t["masks"][0], real)
        assert (t["semantic"][real] == 2).all() and (t["semantic"][~real] == IGNORE_INDEX).all()
        assert (t["depth"][real] == 3).all() and (t["depth"][~real] == 0).all()
        assert t["masks"].dtype == torch.bool and t["semantic"].dtype == torch.long
        assert t["depth"].dtype == torch.float32

    batch = TargetsCollate(size_divisor=16)([sample(20, 30, dense=False)])
    assert batch["pixel_values"].shape == (1, 3, 32, 32) and batch["pixel_mask"].sum() == 20 * 30
    assert set(batch["targets"][0]) == {"boxes", "labels", "orig_size", "size"}
    empty = TargetsCollate()([Skipped()])
    assert empty["pixel_values"].shape[0] == 0 and empty["targets"] == [] and empty["skipped"] == ["bad.png"]


def test_collate_of_transformed_samples_keeps_orig_size():
    transform = TargetsTransform([ResizeShorter([24, 40], max_size=60)], mean=(0, 0, 0), std=(1, 1, 1))
    items = []
    for seed in range(2):
        pixels, t = transform(*scene(), generator=torch.Generator().manual_seed(seed))
        items.append({"pixel_values": pixels, "targets": t, "paths": str(seed)})
    batch = TargetsCollate()(items)
    sizes = [tuple(t["size"].tolist()) for t in batch["targets"]]
    assert batch["pixel_values"].shape[2:] == tuple(map(max, zip(*sizes)))
    assert all(t["orig_size"].tolist() == [H, W] for t in batch["targets"])
    assert [int(m.sum()) for m in batch["pixel_mask"]] == [h * w for h, w in sizes]


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, message", [
    ({"boxes": [[10, 10, 70, 20]], "labels": [1]}, r"box 0 \[10.0, 10.0, 70.0, 20.0\] lies outside the 64x48"),
    ({"boxes": [[0, 0, 5, 5], [-3, 0, 5, 5]], "labels": [1, 2]}, r"box 1 .* lies outside the 64x48"),
    ({"boxes": [[30, 10, 20, 20]], "labels": [1]}, r"box 0 .* has x2 < x1 or y2 < y1"),
    ({"boxes": [[0, 0, float("nan"), 5]], "labels": [1]}, r"box 0 .* is not finite"),
    ({"boxes": [[0, 0, 5]], "labels": [1]}, r"boxes have shape \(1, 3\); expected \(N, 4\)"),
    ({"boxes": [[0, 0, 5, 5], [1, 1, 2, 2]], "labels": [1]}, r"there are 2 boxes but labels have shape \(1,\)"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [1.5]}, r"labels \[1.5\] are not integers"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [1], "masks": np.zeros((1, 40, 64), bool)},
     r"masks have shape \(1, 40, 64\); expected \(1, 48, 64\)"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [1], "masks": np.zeros((2, 48, 64), bool)},
     r"masks have shape \(2, 48, 64\); expected \(1, 48, 64\)"),
    ({"semantic": np.zeros((48, 63), np.int64)},
     r"the semantic mask has shape \(48, 63\); expected the image's \(48, 64\)"),
    ({"semantic": np.zeros((48, 64), np.float32)}, r"the semantic mask holds floats"),
    ({"depth": np.zeros((47, 64), np.float32)}, r"the depth map has shape \(47, 64\); expected the image's \(48, 64\)"),
    ({"depth": np.full((48, 64), np.inf, np.float32)}, r"the depth map has 3072 non-finite values"),
])
def test_bad_targets_are_data_errors_naming_what_is_wrong(kwargs, message):
    with pytest.raises(DataError, match=r"^train\.jsonl line 7: targets: " + message):
        Targets((H, W), where="train.jsonl line 7", **kwargs)


def test_box_within_a_pixel_of_the_edge_is_clipped_not_an_error():
    t = Targets((H, W), [[-0.5, 0, 64.75, 48.5]], [1])
    assert t.boxes.tolist() == [[0, 0, 64, 48]]


def test_image_of_another_size_than_its_targets_is_an_error():
    image, _ = scene()
    with pytest.raises(DataError, match=r"a\.png: the image is 64x48 \(width x height\) but its targets are for 60x48"):
        TargetsTransform([])(image, Targets((48, 60), where="a.png"))
