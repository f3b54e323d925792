"""Our BERT (lit_tasks.zoo.bert) vs `transformers`, same weights, same process, same threads,
and the text pipeline's throughput (tokenisation + collation through TextDataModule).

Model: `BertForSequenceClassification` with 16 labels on real text (the bundled Debian
descriptions, tokenised and padded as the recipe does). transformers loads the checkpoint
folder (by default models/all-MiniLM-L6-v2, the real weights; `--random` uses a random model of
the same shape), writes it with `save_pretrained`, and our loader reads that copy, so both
hold identical weights (the script prints the largest logits difference). After warm-up the
repetitions alternate between the two; the table gives median seconds of an eval forward
(`no_grad`) and of a train step (forward, cross-entropy, backward, AdamW step) and the ratio
ours / transformers (target <= 1.0).

Data: rows/s of TextDataModule tokenising the train CSV (no cache) and of its DataLoader
collating padded batches, beside transformers' fast tokenizer tokenising and padding the same
texts batch by batch (the usual `tokenizer(texts, padding=True, truncation=True)` loop).

    python benchmarks/bert.py --threads 2                   # MiniLM-L6, batch 32 x max_length 64
    python benchmarks/bert.py --threads 2 --batch-size 8 --max-length 128 --reps 10
    python benchmarks/bert.py --random --preset bert-base-uncased --batch-size 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians, timed  # noqa: E402  (the same clock for every benchmark)

from lit_tasks.data import TextDataModule  # noqa: E402
from lit_tasks import zoo  # noqa: E402
from lit_tasks.zoo import bert  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "demo_data" / "debian_sections"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"


def make_pair(args, tmp: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(transformers model, our model) holding the same weights."""
    torch.manual_seed(0)
    if args.random:
        config = bert.PRESETS[args.preset].to_hf()
        hf = transformers.BertForSequenceClassification(transformers.BertConfig(**config, num_labels=args.num_labels))
    else:
        hf = transformers.BertForSequenceClassification.from_pretrained(args.init_from, num_labels=args.num_labels)
    hf.save_pretrained(tmp)
    return hf, zoo.from_pretrained(tmp, head="sequence_classification", num_labels=args.num_labels)


def bench_model(args, batch: dict[str, torch.Tensor]) -> list[tuple[str, float, float]]:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = make_pair(args, tmp)
    models = {"transformers": hf.to(device), "ours": ours.to(device)}
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}
    labels = torch.randint(0, args.num_labels, (inputs["input_ids"].shape[0],), device=device)

    def logits(name: str) -> torch.Tensor:
        if name == "ours":
            return models[name](inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        return models[name](**inputs).logits

    with torch.no_grad():
        hf.eval(), ours.eval()
        expected = logits("transformers")
        diff = (expected - logits("ours")).abs().max().item()
    B, T = inputs["input_ids"].shape
    print(f"model: {B} x {T} tokens ({int(inputs['attention_mask'].sum())} real), max |logits diff| = {diff:.2e}, "
          f"HF attention = {getattr(hf.config, '_attn_implementation', '-')}")
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

    def forward(name):
        models[name].eval()
        with torch.no_grad():
            logits(name)

    def train_step(name):
        models[name].train()
        loss = F.cross_entropy(logits(name), labels)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    rows = []
    for label, fn in (("eval forward", forward), ("train step", train_step)):
        med = interleaved_medians({name: (lambda n=name: fn(n)) for name in models}, args.warmup, args.reps, device)
        rows.append((label, med["transformers"], med["ours"]))
    return rows


def bench_data(args) -> tuple[TextDataModule, list[tuple[str, float]]]:
    """(a DataModule, [(measure, rows per second)]), medians of interleaved repetitions.

    Each repetition builds a fresh TextDataModule (reading the CSV and loading the tokenizer
    are not timed) and times tokenising the train split, then iterating its loader (collation);
    the reference tokenises and pads the same strings batch by batch."""
    files = {"train_file": str(DATA / "train.csv"), "val_file": str(DATA / "val.csv")}
    reference = transformers.AutoTokenizer.from_pretrained(args.tokenizer)
    cpu = torch.device("cpu")
    times: dict[str, list[float]] = {"tokenise": [], "collate": [], "reference": []}
    for _ in range(args.data_reps):
        dm = TextDataModule(**files, tokenizer=str(args.tokenizer), max_length=args.max_length, batch_size=args.batch_size)
        texts = [r.text for r in dm.rows("train")]
        dm.tokenizer  # noqa: B018  (loaded before timing)
        times["tokenise"].append(timed(lambda: dm.encoded("train"), cpu))
        dm.setup("fit")
        times["collate"].append(timed(lambda: [None for _ in dm.train_dataloader()], cpu))
        times["reference"].append(timed(lambda: [
            reference(texts[i : i + args.batch_size], padding=True, truncation=True, max_length=args.max_length,
                      return_tensors="pt") for i in range(0, len(texts), args.batch_size)], cpu))
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    both = len(texts) / (statistics.median(times["tokenise"]) + statistics.median(times["collate"]))
    return dm, [("TextDataModule tokenise (train split)", rate["tokenise"]),
                ("TextDataModule collate (train loader)", rate["collate"]),
                ("TextDataModule tokenise + collate", both),
                ("transformers tokenizer(batch, padding=True)", rate["reference"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-from", default=str(MINILM), help="HF-format BERT folder (default: real MiniLM-L6)")
    parser.add_argument("--random", action="store_true", help="a random model of --preset's shape instead")
    parser.add_argument("--preset", default="all-minilm-l6-v2", choices=sorted(bert.PRESETS))
    parser.add_argument("--tokenizer", default=str(MINILM), help="tokenizer folder for the data (default: MiniLM's)")
    parser.add_argument("--num-labels", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--data-reps", type=int, default=3, help="repetitions of the data measures")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = parser.parse_args()
    if not (Path(args.tokenizer) / "vocab.txt").is_file() or not (args.random or Path(args.init_from).is_dir()):
        sys.exit(f"{MINILM} is missing: run scripts/setup.sh (or pass --tokenizer and --init-from / --random)")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, device {args.device}")

    dm, data_rows = bench_data(args)
    batch = next(iter(dm.val_dataloader()))  # real descriptions, dynamically padded
    model_rows = bench_model(args, batch)

    name = args.preset if args.random else Path(args.init_from).name
    print(f"\n{'model':<20} {'measure':<14} {'transformers s':>15} {'ours s':>10} {'ours/transformers':>18}")
    for label, theirs, mine in model_rows:
        print(f"{name:<20} {label:<14} {theirs:>15.4f} {mine:>10.4f} {mine / theirs:>18.2f}")
    print(f"\n{'data (max_length ' + str(args.max_length) + ', batch ' + str(args.batch_size) + ')':<46} {'rows/s':>10}")
    for label, rate in data_rows:
        print(f"{label:<46} {rate:>10.0f}")


if __name__ == "__main__":
    main()
