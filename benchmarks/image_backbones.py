"""Our zoo image classifiers vs `transformers`, same weights, same process, same threads.

For each family a random HF model of a preset's shape is saved with `save_pretrained`
and loaded back through `lit_tasks.zoo.from_pretrained`, so both hold identical
weights (checked: logits agree). Repetitions alternate between the two; the table
shows the median seconds per call and the ratio ours / transformers (target <= 1.0).

    python benchmarks/image_backbones.py                  # vit-base-patch16-224, convnext-tiny-224
    python benchmarks/image_backbones.py --small          # narrow, shallow shapes: seconds, not minutes
    python benchmarks/image_backbones.py --threads 2 --batch-size 8 --reps 5
    python benchmarks/image_backbones.py --device cuda --batch-size 64 --reps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402  (the same clock for every benchmark)

from lit_tasks import zoo  # noqa: E402

# Narrow and shallow versions of the presets for --small (same image size).
SMALL = {
    "vit-base-patch16-224": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
    "convnext-tiny-224": dict(hidden_sizes=(48, 96, 192, 384), depths=(1, 1, 3, 1)),
}
NUM_CLASSES = 10


def make_pair(preset: str, small: bool, tmp: str) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    """(transformers model, our model) with the same random weights, and the image size."""
    family, config = zoo.PRESETS[preset]
    if small:
        config = dataclasses.replace(config, **SMALL[preset])
    hf_config = transformers.AutoConfig.for_model(**config.to_hf(), num_labels=NUM_CLASSES)
    torch.manual_seed(0)
    hf = transformers.AutoModelForImageClassification.from_config(hf_config)
    hf.save_pretrained(tmp)
    ours = zoo.from_pretrained(tmp)
    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return hf, ours, image_size


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


def bench(preset: str, args) -> list[tuple[str, str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours, size = make_pair(preset, args.small, tmp)
    device = torch.device(args.device)
    models = {"transformers": hf.to(device), "ours": ours.to(device)}
    x = torch.randn(args.batch_size, 3, size, size, device=device)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    with torch.no_grad():
        hf.eval(), ours.eval()
        expected = logits(hf, x)
        diff, scale = (expected - logits(ours, x)).abs().max().item(), expected.abs().max().item()
    attn = getattr(hf.config, "_attn_implementation", "-")
    print(f"{preset}: batch {args.batch_size} x {size}x{size}, max |logits diff| = {diff:.2e} (max |logits| {scale:.2e}), HF attention = {attn}")
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

    def forward(name):
        models[name].eval()
        with torch.no_grad():
            logits(models[name], x)

    def train_step(name):
        model, optimizer = models[name], optimizers[name]
        model.train()
        loss = F.cross_entropy(logits(model, x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rows = []
    for label, fn in (("eval forward", forward), ("train step", train_step)):
        times = interleaved({name: (lambda n=name: fn(n)) for name in models}, args.warmup, args.reps, device)
        theirs, mine = statistics.median(times["transformers"]), statistics.median(times["ours"])
        rows.append((preset, label, theirs, mine))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["vit-base-patch16-224", "convnext-tiny-224"])
    parser.add_argument("--small", action="store_true", help="narrow, shallow versions of the presets")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, device {args.device}")

    rows = [row for preset in args.presets for row in bench(preset, args)]
    print(f"\n{'model':<24} {'measure':<14} {'transformers s':>15} {'ours s':>10} {'ours/transformers':>18}")
    for preset, label, theirs, mine in rows:
        print(f"{preset:<24} {label:<14} {theirs:>15.4f} {mine:>10.4f} {mine / theirs:>18.2f}")


if __name__ == "__main__":
    main()
