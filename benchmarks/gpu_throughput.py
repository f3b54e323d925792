"""Training throughput and model FLOPs utilisation (MFU) of three zoo models on one device.

Models, random weights from the zoo presets (`lit_tasks.zoo.build`):
    ViT-B/16     `vit-base-patch16-224`, classification head (1000 classes), batch 128 x 224x224
    BERT-base    `bert-base-uncased`, pretraining head: masked-LM scores at every position and
                 next-sentence scores; loss on 15% of the positions (BERT Sec. 3.1) plus NSP;
                 batch 32 x 512 tokens
    GPT-2 small  `gpt2` (124M), causal LM head (tied), next-token loss; batch 16 x 1024 tokens
and a ViT-B/16 inference row (eval, no_grad, batch 256): the figure to set beside timm's
published ViT-B/16 AMP inference rate (about 2.8k images/s on an RTX 4090).

A training step is forward under `torch.autocast` (bf16 by default; fp16 adds a GradScaler;
fp32 runs without autocast, TF32 as torch's defaults leave it), loss, backward, AdamW step
(fused on CUDA). Batches are synthetic and stay on the device; presets keep their dropout.
After `--warmup` steps, `--steps` steps are timed as one call with CUDA synchronised at both
ends (benchmarks/timing.py). `--compile` adds the same rows with `torch.compile(model)` (the
whole model; the loss stays eager), after all eager rows: its warm-up holds the compilation.

Per row: images or tokens per second, ms per step, peak memory (torch.cuda.max_memory_allocated,
weights, AdamW state and activations), achieved model TFLOP/s and MFU = model FLOPs per second /
the GPU's dense bf16/fp16 tensor-core peak (PEAKS below; `--peak-tflops` for other GPUs).

Model FLOPs are counted from the layer shapes, 2 FLOPs per multiply-add of each matrix product:
    per block and token   qkv (D x 3D), output (D x D), MLP (D x F, F x D)   2 (4 D^2 + 2 D F)
                          Q K^T and attention x V over T positions            4 T D
    ViT     the patch projection (C P^2 x D) per patch, the classifier (D x classes) on the
            class token; T = patches + 1
    BERT    MLM transform (D x D) and decoder (D x V) at every position, pooler (D x D) and
            NSP (D x 2) on [CLS]
    GPT-2   the LM head (D x V) at every position
    training = 3 x forward: backward computes two products per forward one (the gradients of
    the input and of the weight), Kaplan et al. 2020, "Scaling Laws for Neural Language
    Models", Sec. 2.1. (ViT's patch projection needs no gradient of the pixels: for ViT-B/16
    the count is about 0.2% above the products computed.)
Per token this is PaLM's count (Chowdhery et al. 2022, Appendix B): 6 N + 12 L D T, with N the
weights of the matrix products a token goes through (embedding lookups excluded, the LM and MLM
decoders included) and L layers. Not counted: biases, norms, activations, softmax, dropout, the
loss, the optimizer; causal attention counts the whole T x T square as PaLM and Kaplan do
(a causal kernel skips about half of it). Model FLOPs, not hardware FLOPs: nothing recomputed.

`--budget-s` bounds the run, counted from the start of `main` (after importing torch): once it
is spent the remaining rows are printed as skipped (a row already started runs to its end).
Out of memory in a row is printed as its status and the next row runs; another failure prints
its traceback, the next row runs, and the exit status is 1.

    python benchmarks/gpu_throughput.py --device cuda                        # bf16, all rows
    python benchmarks/gpu_throughput.py --device cuda --compile --budget-s 150 --json out.json
    python benchmarks/gpu_throughput.py --device cuda --models gpt2 --gpt2-batch 8 --precision fp16
    OMP_NUM_THREADS=1 python benchmarks/gpu_throughput.py --device cpu      # tiny shapes: the script runs
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import timed  # noqa: E402  (the same clock for every benchmark)

from lit_tasks import zoo  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Peak FLOPs. Dense (no sparsity) bf16 = fp16 tensor-core TFLOP/s with fp32 accumulation, at the
# boost clock, from NVIDIA's datasheets (their "with sparsity" figures halved): H100 and H200
# datasheets (SXM 989, PCIe 756, NVL 835), A100 datasheet (312), L40S datasheet (362), A10 (125),
# L4 (121), and for the RTX 4090 NVIDIA's Ada Lovelace architecture whitepaper, its GeForce RTX 4090
# table (165.2 fp16 and bf16 with fp32 accumulate; its dense 330 is fp16 with fp16 accumulate,
# which autocast's matrix products do not use).
# (pattern searched in torch.cuda.get_device_name, TFLOP/s, SMs of the full GPU): the first match
# counts; a GPU with another SM count (a MIG slice, a cut-down variant) has no known peak.
PEAKS: tuple[tuple[str, float, int], ...] = (
    (r"\bH100\b.*\bNVL\b", 835.0, 132),
    (r"\bH100\b.*\bPCIe\b", 756.0, 114),
    (r"\bH100\b", 989.0, 132),  # SXM: "NVIDIA H100 80GB HBM3"
    (r"\bH200\b.*\bNVL\b", 835.0, 132),
    (r"\bH200\b", 989.0, 132),
    (r"\bA100\b", 312.0, 108),
    (r"\bL40S\b", 362.0, 142),
    (r"\bRTX 4090$", 165.2, 128),  # not "RTX 4090 D" nor "... Laptop GPU"
    (r"\bA10$", 125.0, 72),  # not A10G
    (r"\bL4$", 121.0, 58),
)
MIXED = ("bf16", "fp16")  # the precisions the table's peaks are for


def peak_tflops(device_name: str, sm_count: int, precision: str) -> tuple[float | None, str]:
    """(dense peak TFLOP/s of this GPU at `precision`, or None; where it comes from or why none)."""
    if precision not in MIXED:
        return None, f"the table holds bf16/fp16 tensor-core peaks, not {precision}'s (pass --peak-tflops)"
    for pattern, tflops, sms in PEAKS:
        if re.search(pattern, device_name):
            if sm_count != sms:
                return None, (f"{device_name!r} has {sm_count} SMs, the full GPU {sms} (a MIG slice or a variant?): "
                              "no known peak (pass --peak-tflops)")
            return tflops, f"dense {'/'.join(MIXED)} peak of {device_name!r} (NVIDIA datasheet)"
    return None, f"{device_name!r} is not in the table of peaks (pass --peak-tflops)"


def mfu(flops_per_step: float, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (TFLOP/s); None without a peak."""
    return None if peak is None else flops_per_step / step_s / (peak * 1e12)


# ---------------------------------------------------------------------------------------------
# Model FLOPs (see the module docstring): forward FLOPs of one image or one sequence.
TRAIN_FACTOR = 3  # forward + backward (two products per forward one)


def matmul_flops(rows: int, inner: int, cols: int) -> int:
    """FLOPs of a (rows x inner) @ (inner x cols) product: one multiply and one add per term."""
    return 2 * rows * inner * cols


def blocks_flops(tokens: int, width: int, ffn: int, layers: int) -> int:
    """Forward FLOPs of `layers` transformer blocks over one sequence of `tokens` positions."""
    projections = matmul_flops(tokens, width, 3 * width) + matmul_flops(tokens, width, width)  # qkv, output
    mlp = matmul_flops(tokens, width, ffn) + matmul_flops(tokens, ffn, width)
    attention = 2 * matmul_flops(tokens, width, tokens)  # Q K^T (T x D x T) and probabilities x V (T x T x D)
    return layers * (projections + mlp + attention)


def vit_flops(config, num_classes: int) -> int:
    """Forward FLOPs of one image through a ViT classifier (zoo.vit.ViTConfig)."""
    rows, cols = config.grid
    patches = rows * cols
    embed = matmul_flops(patches, config.num_channels * config.patch_size ** 2, config.hidden_size)
    blocks = blocks_flops(patches + 1, config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    return embed + blocks + matmul_flops(1, config.hidden_size, num_classes)


def bert_flops(config, seq_len: int) -> int:
    """Forward FLOPs of one sequence through BERT with its pretraining head (zoo.bert.BertConfig)."""
    D = config.hidden_size
    blocks = blocks_flops(seq_len, D, config.intermediate_size, config.num_hidden_layers)
    mlm = matmul_flops(seq_len, D, D) + matmul_flops(seq_len, D, config.vocab_size)  # transform, tied decoder
    return blocks + mlm + matmul_flops(1, D, D) + matmul_flops(1, D, 2)  # pooler, NSP on [CLS]


def gpt2_flops(config, seq_len: int) -> int:
    """Forward FLOPs of one sequence through GPT-2 with its LM head (zoo.gpt2.GPT2Config)."""
    blocks = blocks_flops(seq_len, config.n_embd, config.inner_size, config.n_layer)
    return blocks + matmul_flops(seq_len, config.n_embd, config.vocab_size)


# ---------------------------------------------------------------------------------------------
# The workloads.
SIZES = {  # batch sizes and sequence lengths per --shapes; each one has its own option
    "full": dict(vit_batch=128, vit_infer_batch=256, bert_batch=32, bert_seq=512, gpt2_batch=16, gpt2_seq=1024),
    "tiny": dict(vit_batch=4, vit_infer_batch=8, bert_batch=2, bert_seq=64, gpt2_batch=2, gpt2_seq=64),
}
TINY = {  # --shapes tiny: config fields replaced in the presets (2 layers, 64 wide, small vocabularies)
    "vit-base-patch16-224": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                 image_size=64),
    "bert-base-uncased": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=256, max_position_embeddings=128),
    "gpt2": dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128),
}
NUM_CLASSES = 1000
MODELS = ("vit", "vit-infer", "bert", "gpt2")  # the rows, in order


@dataclass
class Case:
    """One model on the device with its synthetic batch: what a step runs and what it is worth."""

    model: nn.Module
    inputs: tuple[Tensor, ...]  # the model's positional inputs
    loss: Callable[[object], Tensor]  # model output -> scalar loss
    shape: str  # the batch, e.g. "128" or "32 x 512"
    items: int  # images or tokens per step
    unit: str  # "img" or "tok"
    forward_flops: int  # model FLOPs of one forward over the batch


def build(preset: str, head: str, shapes: str, device: torch.device, num_labels: int | None = None) -> nn.Module:
    """A random `head` model of `preset` (tiny fields with --shapes tiny), built on `device`."""
    torch.manual_seed(0)
    with device:  # parameters are created (and initialised) on the device
        return zoo.build(preset, head, overrides=TINY[preset] if shapes == "tiny" else None, num_labels=num_labels)


def vit_case(args, device: torch.device, batch: int) -> Case:
    model = build("vit-base-patch16-224", "classification", args.shapes, device, NUM_CLASSES)
    size = model.config.image_size
    pixels = torch.randn(batch, model.config.num_channels, size, size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    return Case(model, (pixels,), lambda logits: F.cross_entropy(logits, labels), str(batch), batch, "img",
                batch * vit_flops(model.config, NUM_CLASSES))


def bert_case(args, device: torch.device) -> Case:
    model = build("bert-base-uncased", "pretraining", args.shapes, device)
    B, T, V = args.bert_batch, args.bert_seq, model.config.vocab_size
    input_ids = torch.randint(0, V, (B, T), device=device)
    masked = torch.rand(B, T, device=device) < 0.15  # positions the MLM loss scores, as BERT's 15%
    mlm_labels = torch.where(masked, torch.randint(0, V, (B, T), device=device), -100)
    nsp_labels = torch.randint(0, 2, (B,), device=device)

    def loss(out) -> Tensor:
        return (F.cross_entropy(out.prediction_logits.flatten(0, 1), mlm_labels.flatten(), ignore_index=-100)
                + F.cross_entropy(out.seq_relationship_logits, nsp_labels))

    return Case(model, (input_ids,), loss, f"{B} x {T}", B * T, "tok", B * bert_flops(model.config, T))


def gpt2_case(args, device: torch.device) -> Case:
    model = build("gpt2", "causal_lm", args.shapes, device)
    B, T, V = args.gpt2_batch, args.gpt2_seq, model.config.vocab_size
    tokens = torch.randint(0, V, (B, T + 1), device=device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # next-token prediction
    return Case(model, (inputs,), lambda logits: F.cross_entropy(logits.flatten(0, 1), targets.flatten()),
                f"{B} x {T}", B * T, "tok", B * gpt2_flops(model.config, T))


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def train_step(case: Case, model: nn.Module, device: torch.device, precision: str) -> Callable[[], None]:
    """One training step of `model` (the case's, compiled or not) on the case's batch."""
    optimizer = torch.optim.AdamW(case.model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    model.train()

    def step() -> None:
        with autocast(device, precision):
            loss = case.loss(model(*case.inputs))
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def infer_step(case: Case, model: nn.Module, device: torch.device, precision: str) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(*case.inputs)

    return step


@dataclass
class Row:
    model: str
    mode: str  # "train" or "infer"
    precision: str
    compile: bool
    batch: str = ""
    unit: str = ""
    items_per_s: float | None = None
    step_ms: float | None = None
    peak_gib: float | None = None
    flops_per_step: int | None = None  # model FLOPs of one step (forward, or forward and backward)
    tflops: float | None = None  # achieved model TFLOP/s
    mfu: float | None = None
    status: str = "ok"


def measure(args, name: str, compiled: bool, device: torch.device, peak: float | None) -> Row:
    """The row `name` ("vit", "vit-infer", "bert", "gpt2"): build, warm up, time."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    case = {"vit": lambda: vit_case(args, device, args.vit_batch),
            "vit-infer": lambda: vit_case(args, device, args.vit_infer_batch),
            "bert": lambda: bert_case(args, device), "gpt2": lambda: gpt2_case(args, device)}[name]()
    model_name, mode = label(name, args.shapes)
    model = torch.compile(case.model) if compiled else case.model
    step = (infer_step if mode == "infer" else train_step)(case, model, device, args.precision)
    for _ in range(args.warmup):
        step()
    step_s = timed(lambda: [step() for _ in range(args.steps)], device) / args.steps
    flops = case.forward_flops * (1 if mode == "infer" else TRAIN_FACTOR)
    return Row(model_name, mode, args.precision, compiled, case.shape, case.unit, case.items / step_s,
               step_s * 1e3, torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
               flops, flops / step_s / 1e12, mfu(flops, step_s, peak))


def label(name: str, shapes: str) -> tuple[str, str]:
    """(model, mode) of the row `name`."""
    model, mode = {"vit": ("ViT-B/16", "train"), "vit-infer": ("ViT-B/16", "infer"), "bert": ("BERT-base", "train"),
                   "gpt2": ("GPT-2 small", "train")}[name]
    return (f"{model} (tiny)" if shapes == "tiny" else model), mode


def first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0]


def run_rows(args, device: torch.device, peak: float | None, start: float) -> list[Row]:
    """Every requested row, eager ones first, each measured unless the budget (counted from
    `start`, a perf_counter time) is spent; out of memory and failures are recorded in the row."""
    rows = []
    for compiled in ([False, True] if args.compile else [False]):
        for name in args.models:
            elapsed = time.perf_counter() - start
            status = None
            if args.budget_s is not None and elapsed >= args.budget_s:
                status = f"skipped: budget of {args.budget_s:g} s spent ({elapsed:.0f} s elapsed)"
            else:
                try:
                    rows.append(measure(args, name, compiled, device, peak))
                except torch.OutOfMemoryError as error:
                    status = f"out of memory: {first_line(error)}"
                except Exception as error:  # noqa: BLE001  (the other rows still run; exit status 1)
                    traceback.print_exc()
                    status = f"error: {type(error).__name__}: {first_line(error)}"
            if status is not None:
                rows.append(Row(*label(name, args.shapes), args.precision, compiled, status=status))
            print(f"  {rows[-1].model} {rows[-1].mode}{' compiled' if compiled else ''}: {rows[-1].status} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            gc.collect()  # the row's model, optimizer state and batch go before the next row
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a markdown table ("n/a": no peak memory on a CPU, no peak FLOP/s for MFU)."""

    def cell(r: Row, value: float | None, fmt: str) -> str:
        return "" if r.items_per_s is None else "n/a" if value is None else format(value, fmt)

    columns = ["model", "mode", "precision", "compile", "batch", "items/s", "step ms", "peak GiB", "model TFLOP/s",
               "MFU", "status"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        rate = "" if r.items_per_s is None else f"{r.items_per_s:,.0f} {r.unit}/s"
        lines.append(f"| {r.model} | {r.mode} | {r.precision} | {'yes' if r.compile else 'no'} | {r.batch} | {rate} | "
                     f"{cell(r, r.step_ms, '.1f')} | {cell(r, r.peak_gib, '.2f')} | {cell(r, r.tflops, '.3g')} | "
                     f"{cell(r, r.mfu, '.1%')} | {r.status} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16",
                        help="autocast dtype (fp16 with a GradScaler); fp32: no autocast, and MFU n/a "
                        "without --peak-tflops")
    parser.add_argument("--shapes", choices=sorted(SIZES), default=None,
                        help="full: the presets' shapes (default on cuda); tiny: 2 layers, 64 wide (default on cpu)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="the rows to run, in order")
    parser.add_argument("--compile", action="store_true",
                        help="also the rows with torch.compile(model), after the eager ones")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default 5; tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 20; tiny 2)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds after which the remaining rows are skipped (a started row finishes)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for MFU (default: the table of dense bf16/fp16 peaks)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    for key, value in SIZES["full"].items():
        what = "sequence length" if key.endswith("seq") else "batch size"
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"{what} (default {value}; tiny "
                            f"{SIZES['tiny'][key]})")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use --device cpu)")
    args.shapes = args.shapes or ("full" if device.type == "cuda" else "tiny")
    tiny = args.shapes == "tiny"
    args.warmup = args.warmup if args.warmup is not None else (1 if tiny else 5)
    args.steps = args.steps if args.steps is not None else (2 if tiny else 20)
    for key, value in SIZES[args.shapes].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        elif getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')}: expected a positive integer, got {getattr(args, key)}")
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    limits = {"bert_seq": ("bert-base-uncased", "max_position_embeddings"), "gpt2_seq": ("gpt2", "n_positions")}
    for key, (preset, field) in limits.items():
        limit = TINY[preset][field] if tiny else getattr(zoo.PRESETS[preset][1], field)
        if getattr(args, key) > limit:
            parser.error(f"--{key.replace('_', '-')} {getattr(args, key)}: the {args.shapes} {preset} model has "
                         f"{field}={limit} positions")
    return args


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()  # --budget-s counts from here (importing torch comes before)
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name, sms = props.name, props.multi_processor_count
        peak, source = peak_tflops(name, sms, args.precision)
        where = f"{name}, {sms} SMs, {props.total_memory / 2**30:.0f} GiB"
    else:
        peak, source = None, "no peak for a CPU"
        where = f"cpu, {torch.get_num_threads()} threads"
    if args.peak_tflops is not None:
        peak, source = args.peak_tflops, "--peak-tflops"
    print(f"torch {torch.__version__}, {where}, {args.shapes} shapes, {args.precision}; peak for MFU: "
          f"{'n/a' if peak is None else f'{peak:g} TFLOP/s'} ({source})")
    rows = run_rows(args, device, peak, start)
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": where, "torch": torch.__version__, "shapes": args.shapes,
                                         "peak_tflops": peak, "peak_source": source,
                                         "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
    return 1 if any(r.status.startswith("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
