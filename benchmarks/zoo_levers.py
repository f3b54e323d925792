"""Zoo speed levers against `transformers`, one by one: ViT-B/16, ConvNeXT-T, BERT, Wav2Vec2.

Each model is built as in its own benchmark (image_backbones.py, bert.py, wav2vec2.py: a random
HF model of the preset's shape, saved and read back by `zoo.from_pretrained`, so the weights are
the same), then timed in one process, repetitions interleaved, against our variants:

- **eager**: our model as `lit_tasks fit` runs it by default;
- **compile**: each zoo block `torch.compile`d in place (`lit_tasks.zoo.blocks.compile_blocks`,
  what `--run.compile true` does; inductor on CPU), warm-up included before timing;
- **channels_last** (ConvNeXT): weights and input in channels-last memory format, so the
  depthwise convolutions run channels-last and the block's permutes to (B, H, W, C) are free.

Text and audio run twice: on a batch with padding (a mask in every attention) and on one without
(our models then run attention with no mask at all; `lit_tasks.zoo.layers.padding_keep`).
The table gives the median seconds of an eval forward (`no_grad`) and of a train step (forward,
a loss, backward, AdamW step), the ratio to transformers (target <= 0.9) and the largest eval
logits difference to transformers (must stay <= 1e-5).

    python benchmarks/zoo_levers.py --threads 2                          # all four, a few minutes
    python benchmarks/zoo_levers.py --models convnext --levers eager channels_last --reps 9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bert as bert_bench  # noqa: E402
import image_backbones  # noqa: E402
import wav2vec2 as wav2vec2_bench  # noqa: E402
from timing import interleaved  # noqa: E402

from lit_tasks.zoo.blocks import compile_blocks  # noqa: E402


def image_case(preset: str, batch_size: int):
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours, size = image_backbones.make_pair(preset, False, tmp)
    x = torch.randn(batch_size, 3, size, size)
    return hf, ours, {"x": x}, (lambda m, b: m(b["x"]).logits), (lambda m, b: m(b["x"]))


def text_case(batch_size: int, length: int, padded: bool):
    args = SimpleNamespace(random=True, preset="bert-base-uncased", num_labels=16, init_from=None)
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = bert_bench.make_pair(args, tmp)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch_size, length), generator=generator)
    mask = torch.ones_like(ids)
    if padded:  # every other row a third shorter
        mask[1::2, 2 * length // 3:] = 0
    batch = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return hf, ours, batch, (lambda m, b: m(**b).logits), \
        (lambda m, b: m(b["input_ids"], b["attention_mask"], b["token_type_ids"]))


def audio_case(batch_size: int, seconds: float, padded: bool):
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours, config = wav2vec2_bench.make_pair("wav2vec2-base", tmp)
    args = SimpleNamespace(batch_size=batch_size, seconds=seconds, pad_fraction=0.25 if padded else 0.0)
    batch = wav2vec2_bench.make_batch(args, config)
    return hf, ours, batch, (lambda m, b: m(b["input_values"], attention_mask=b["attention_mask"]).logits), \
        (lambda m, b: m(b["input_values"], b["attention_mask"]))


def cases(args):
    """name -> a function building (hf, ours, batch, hf logits fn, our logits fn)."""
    out = {}
    if "vit" in args.models:
        out["ViT-B/16"] = lambda: image_case("vit-base-patch16-224", args.image_batch)
    if "convnext" in args.models:
        out["ConvNeXT-T"] = lambda: image_case("convnext-tiny-224", args.image_batch)
    for padded in (True, False):
        tag = "padded" if padded else "no padding"
        if "bert" in args.models:
            out[f"BERT-base {tag}"] = lambda p=padded: text_case(args.text_batch, args.text_length, p)
        if "wav2vec2" in args.models:
            out[f"Wav2Vec2-base {tag}"] = lambda p=padded: audio_case(2, args.seconds, p)
    return out


def variants(ours: torch.nn.Module, batch: dict, levers: list[str], convolutional: bool):
    """{lever: (model, batch)} of our model."""
    out = {}
    for lever in levers:
        if lever == "eager":
            out[lever] = (ours, batch)
        elif lever == "compile":
            model = copy.deepcopy(ours)
            compile_blocks(model)
            out[lever] = (model, batch)
        elif lever == "channels_last" and convolutional:
            model = copy.deepcopy(ours).to(memory_format=torch.channels_last)
            out[lever] = (model, {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()})
    return out


def loss_of(logits: torch.Tensor) -> torch.Tensor:
    """The same loss on both sides: cross-entropy to class 0 of every output row."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, torch.zeros(flat.shape[0], dtype=torch.long))


def measure(name: str, build, args) -> list[tuple]:
    hf, ours, batch, hf_logits, our_logits = build()
    runs = {"transformers": (hf, batch, hf_logits)}
    convolutional = name.startswith("ConvNeXT")
    runs.update({lever: (m, b, our_logits) for lever, (m, b) in variants(ours, batch, args.levers, convolutional).items()})
    optimizers = {key: torch.optim.AdamW(m.parameters(), lr=1e-5) for key, (m, _, _) in runs.items()}
    with torch.no_grad():
        for m, _, _ in runs.values():
            m.eval()
        expected = hf_logits(hf, batch)
        diffs = {key: (fn(m, b) - expected).abs().max().item() for key, (m, b, fn) in runs.items()}

    def forward(key):
        model, b, fn = runs[key]
        model.eval()
        with torch.no_grad():
            fn(model, b)

    def train_step(key):
        model, b, fn = runs[key]
        model.train()
        loss = loss_of(fn(model, b))
        optimizers[key].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[key].step()

    rows = []
    for measure_name, fn in (("eval forward", forward), ("train step", train_step)):
        times = interleaved({key: (lambda k=key: fn(k)) for key in runs}, args.warmup, args.reps, torch.device("cpu"))
        base = statistics.median(times["transformers"])
        for key in runs:
            median = statistics.median(times[key])
            rows.append((name, measure_name, key, median, median / base, diffs[key]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit", "convnext", "bert", "wav2vec2"],
                        choices=["vit", "convnext", "bert", "wav2vec2"])
    parser.add_argument("--levers", nargs="+", default=["eager", "compile", "channels_last"],
                        choices=["eager", "compile", "channels_last"])
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--text-length", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="wav2vec2: 2 clips of this length")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (compile happens here)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, build in cases(args).items():
        rows += measure(name, build, args)
        print(f"{name}: done", file=sys.stderr)
    print(f"\n{args.threads} threads, {args.reps} interleaved repetitions after {args.warmup} warm-up rounds")
    print("| model | measure | variant | median s | / transformers | max eval logits diff |")
    print("|---|---|---|---|---|---|")
    for name, measure_name, key, median, ratio, diff in rows:
        print(f"| {name} | {measure_name} | {key} | {median:.4f} | {ratio:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
