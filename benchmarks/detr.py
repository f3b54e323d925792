"""Our DETR (`lit_tasks.zoo.detr`) vs `transformers`' DetrForObjectDetection, same weights,
same process, same threads.

A random HF model of a shape (use_timm_backbone=False, use_pretrained_backbone=False, a native
ResNet `backbone_config`) is saved with `save_pretrained` and loaded back through
`lit_tasks.zoo.from_pretrained(head="object_detection")`, so both hold identical weights; the
script prints the largest logits, boxes and loss differences. The batch is padded: image 0
fills it, the others are smaller and zero-padded at the bottom and right (pixel mask), each
with 1-6 random target boxes. Repetitions alternate between the two (benchmarks/timing.py):

- eval forward: `no_grad`, pixel values and mask;
- train step: forward, the set loss of the same targets, backward, AdamW step. Ours: the task's
  `SetCriterion` with a `HungarianMatcher`, both from the config's costs and coefficients;
  transformers: `labels` passed to the model, which computes its own (Hungarian) loss.

Both train the same parameters (`--backbone`): transformers' DETR on a native ResNet freezes
every backbone parameter (it means to freeze the stem and first stage, as the official code does,
but looks for "stage.1" in names that read "encoder.stages.1."), while our model and task
train the whole backbone (at a lower lr). "train" (the default) unfreezes HF's backbone, so both
do the work our training does; "freeze" freezes ours, so both do the work HF's training does.

auxiliary_loss is false on both: with it HF's decoder feeds each layer the previous layer's
normed output, ours the paper's un-normed one (see lit_tasks/zoo/detr.py), so the outputs differ.

    python benchmarks/detr.py --small --reps 3                # tiny shape: seconds
    python benchmarks/detr.py --threads 1 --batch-size 2 --image-size 256 --reps 5   # detr-resnet-50 shape
    python benchmarks/detr.py --small --backbone freeze       # both with HF's frozen backbone
    python benchmarks/detr.py --device cuda --batch-size 8 --image-size 800 --reps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402  (the same clock for every benchmark)

from lit_tasks import zoo  # noqa: E402
from lit_tasks.tasks.hungarian_matcher import HungarianMatcher  # noqa: E402
from lit_tasks.tasks.set_criterion import SetCriterion  # noqa: E402
from lit_tasks.zoo import detr, resnet  # noqa: E402

NUM_LABELS = 91  # facebook/detr-resnet-50's COCO label count
SHAPES = {
    # facebook/detr-resnet-50: ResNet-50, d_model 256, 6 + 6 layers, 8 heads, FFN 2048, 100 queries.
    "full": detr.PRESETS["detr-resnet-50"],
    # A narrow 4-block ResNet, d_model 64, 2 + 2 layers, 20 queries: seconds on a CPU.
    "small": dataclasses.replace(
        detr.PRESETS["detr-resnet-50"],
        backbone_config={**dataclasses.replace(resnet.PRESETS["resnet-18"], embedding_size=32,
                                               hidden_sizes=(32, 64, 128, 256), depths=(1, 1, 1, 1)).to_hf(),
                         "out_features": ["stage4"]},
        d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=256, decoder_ffn_dim=256, num_queries=20),
}


def make_pair(shape: str, tmp: str, backbone: str = "train") -> tuple[torch.nn.Module, torch.nn.Module]:
    """(transformers model, our model) with the same random weights, auxiliary_loss false, and the
    backbone's parameters trainable on both ("train") or on neither ("freeze")."""
    config = dataclasses.replace(SHAPES[shape], auxiliary_loss=False)
    hf_config = transformers.DetrConfig(**config.to_hf(), num_labels=NUM_LABELS)
    torch.manual_seed(0)
    hf = transformers.DetrForObjectDetection(hf_config)
    hf.save_pretrained(tmp)
    ours = zoo.from_pretrained(tmp, head="object_detection")
    for model in (hf.model.backbone, ours.model.backbone):
        model.requires_grad_(backbone == "train")
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (hf, ours)]
    if trainable[0] != trainable[1]:
        raise RuntimeError(f"transformers trains {trainable[0]} parameters, ours {trainable[1]}; expected the same")
    return hf, ours


def padded_batch(batch_size: int, size: int, device: torch.device, seed: int = 0):
    """(pixel_values (B, 3, size, size), pixel_mask (B, size, size) long, targets): image i > 0
    is real on its top-left (1 - 0.25 i / B)^2 share and zero-padded elsewhere; 1-6 target
    boxes each, cxcywh normalised to the image's own size."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, size, size, generator=generator)
    mask = torch.zeros(batch_size, size, size, dtype=torch.long)
    targets = []
    for i in range(batch_size):
        real = max(32, round(size * (1 - 0.25 * i / batch_size)))
        mask[i, :real, :real] = 1
        n = int(torch.randint(1, 7, (), generator=generator))
        centres = 0.2 + 0.6 * torch.rand(n, 2, generator=generator)
        sizes = 0.05 + 0.3 * torch.rand(n, 2, generator=generator)
        targets.append({"labels": torch.randint(0, NUM_LABELS, (n,), generator=generator).to(device),
                        "boxes": torch.cat([centres, sizes], dim=1).to(device)})
    return (pixels * mask[:, None]).to(device), mask.to(device), targets


def bench(args) -> list[tuple[str, float, float, list[float], list[float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = make_pair(args.preset_shape, tmp, args.backbone)
    device = torch.device(args.device)
    models = {"transformers": hf.to(device), "ours": ours.to(device)}
    pixels, mask, targets = padded_batch(args.batch_size, args.image_size, device)
    hf_labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    c = ours.config
    criterion = SetCriterion(NUM_LABELS, HungarianMatcher(c.class_cost, c.bbox_cost, c.giou_cost),
                             eos_coefficient=c.eos_coefficient, bbox_weight=c.bbox_loss_coefficient,
                             giou_weight=c.giou_loss_coefficient).to(device)

    def our_loss(out) -> torch.Tensor:
        return criterion({"logits": out.logits, "pred_boxes": out.pred_boxes, "aux_outputs": out.aux_outputs},
                         targets)["loss"]

    with torch.no_grad():
        hf.eval(), ours.eval()
        expected, got = hf(pixel_values=pixels, pixel_mask=mask, labels=hf_labels), ours(pixels, mask)
        logits_diff = (expected.logits - got.logits).abs().max().item()
        boxes_diff = (expected.pred_boxes - got.pred_boxes).abs().max().item()
        loss_diff = (expected.loss - our_loss(got)).abs().item()
    print(f"{args.preset_shape} shape: batch {args.batch_size} x {args.image_size}x{args.image_size} (padded), "
          f"{sum(len(t['labels']) for t in targets)} target boxes, backbone {args.backbone}; "
          f"max |logits diff| = {logits_diff:.2e} "
          f"(max |logits| {expected.logits.abs().max().item():.2e}), max |boxes diff| = {boxes_diff:.2e}, "
          f"|loss diff| = {loss_diff:.2e} (loss {expected.loss.item():.4f}), "
          f"HF attention = {getattr(hf.config, '_attn_implementation', '-')}")
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

    def forward(name: str) -> None:
        models[name].eval()
        with torch.no_grad():
            models[name](pixel_values=pixels, pixel_mask=mask)

    def train_step(name: str) -> None:
        model, optimizer = models[name], optimizers[name]
        model.train()
        if name == "ours":
            loss = our_loss(model(pixels, mask))
        else:
            loss = model(pixel_values=pixels, pixel_mask=mask, labels=hf_labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rows = []
    for label, fn in (("eval forward", forward), ("train step", train_step)):
        times = interleaved({name: (lambda n=name: fn(n)) for name in models}, args.warmup, args.reps, device)
        rows.append((label, statistics.median(times["transformers"]), statistics.median(times["ours"]),
                     times["transformers"], times["ours"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset-shape", choices=sorted(SHAPES), default="full",
                        help="full: detr-resnet-50 (ResNet-50, d_model 256, 6 + 6 layers, 100 queries)")
    parser.add_argument("--small", action="store_true", help="the same as --preset-shape small")
    parser.add_argument("--backbone", choices=("train", "freeze"), default="train",
                        help="the backbone's parameters train on both (as our task does) or on neither (as HF's does)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256, help="padded side, pixels (a multiple of 32 is best)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = parser.parse_args()
    if args.small:
        args.preset_shape = "small"
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
          f"device {args.device}, {args.warmup} warm-up + {args.reps} interleaved repetitions")

    rows = bench(args)
    print(f"\n{'measure':<14} {'transformers s (min-max)':>26} {'ours s (min-max)':>26} {'ours/transformers':>18}")
    for label, theirs, mine, t_theirs, t_mine in rows:
        spread_theirs = f"{theirs:.4f} ({min(t_theirs):.3f}-{max(t_theirs):.3f})"
        spread_mine = f"{mine:.4f} ({min(t_mine):.3f}-{max(t_mine):.3f})"
        print(f"{label:<14} {spread_theirs:>26} {spread_mine:>26} {mine / theirs:>18.2f}")


if __name__ == "__main__":
    main()
