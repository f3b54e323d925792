"""Our wav2vec2 (lit_tasks.zoo.wav2vec2) vs `transformers`, same weights, same process, same
threads, and the audio pipeline's throughput (AudioDataModule's train loader on the demo FLAC).

Model: a random `Wav2Vec2ForCTC` of the wav2vec2-base shape (12 layers, 768 wide, group-norm
feature encoder; layerdrop set to 0 on both so every train step runs every layer) is written
with `save_pretrained` and read back by `zoo.from_pretrained(head="ctc")`, so both hold
identical weights (the script prints the largest logits difference). The batch is random audio,
`--batch-size` clips of `--seconds` at 16 kHz, every other clip shorter by `--pad-fraction` and
zero-padded (attention mask). After warm-up the repetitions alternate between the two; the table
gives the median seconds, the spread (min-max) of an eval forward (`no_grad`) and of a train
step (forward, CTC loss, backward, AdamW step), and the ratio ours / transformers (target <= 1.0).

Data: seconds of audio per second of wall time through `AudioDataModule.train_dataloader()` on
demo_data/spoken_digits (classification, CSV) and demo_data/digit_strings (transcription, JSONL),
FLAC stored at 8 kHz: decode, resample to 16 kHz, normalise, collate with padding. One epoch is
run to start the loader (workers persist), then epochs are timed. The reference is a bare
`soundfile.read` of the same files in the same process, so the ratio pipeline / bare decode
shows what the pipeline adds (with workers it may exceed 1).

    python benchmarks/wav2vec2.py --threads 2                  # base shape, 2 x 3 s: a few minutes
    python benchmarks/wav2vec2.py --quick                      # tiny shape, seconds
    python benchmarks/wav2vec2.py --threads 2 --batch-size 4 --seconds 4 --reps 7
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import soundfile
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402  (the same clock for every benchmark)

from lit_tasks.data import AudioDataModule  # noqa: E402
from lit_tasks import zoo  # noqa: E402
from lit_tasks.zoo import wav2vec2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo_data"
DATASETS = {  # name: AudioDataModule arguments
    "spoken_digits": dict(train_file=str(DEMO / "spoken_digits" / "train.csv"),
                          val_file=str(DEMO / "spoken_digits" / "val.csv"), task="classification"),
    "digit_strings": dict(train_file=str(DEMO / "digit_strings" / "train.jsonl"),
                          val_file=str(DEMO / "digit_strings" / "val.jsonl"), task="transcription"),
}
SAMPLING_RATE = 16000


def make_pair(preset: str, tmp: str) -> tuple[torch.nn.Module, torch.nn.Module, wav2vec2.Wav2Vec2Config]:
    """(transformers Wav2Vec2ForCTC, our CTC model, config) holding the same random weights."""
    config = dataclasses.replace(wav2vec2.PRESETS[preset], layerdrop=0.0)
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**config.to_hf()))
    hf.save_pretrained(tmp)
    return hf, zoo.from_pretrained(tmp, head="ctc"), config


def make_batch(args, config: wav2vec2.Wav2Vec2Config) -> dict[str, torch.Tensor]:
    """Random audio (B, L), its mask (odd rows padded) and CTC labels (B, U), -100 padded."""
    B, L = args.batch_size, int(args.seconds * SAMPLING_RATE)
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(B, L, generator=generator)
    mask = torch.ones(B, L, dtype=torch.long)
    for b in range(1, B, 2):
        keep = int(L * (1 - args.pad_fraction))
        mask[b, keep:] = 0
        audio[b, keep:] = 0.0
    frames = wav2vec2.conv_output_lengths(config, mask.sum(-1))
    lengths = (frames // 4).clamp(min=1)  # about a character per 80 ms
    labels = torch.full((B, int(lengths.max())), -100, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        labels[b, :n] = torch.randint(1, config.vocab_size, (n,), generator=generator)
    return {"input_values": audio, "attention_mask": mask, "labels": labels}


def spread(times: list[float]) -> str:
    return f"{min(times):.3f}-{max(times):.3f}"


def bench_model(args) -> list[tuple[str, list[float], list[float]]]:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours, config = make_pair(args.preset, tmp)
    models = {"transformers": hf.to(device), "ours": ours.to(device)}
    batch = {k: v.to(device) for k, v in make_batch(args, config).items()}
    audio, mask, labels = batch["input_values"], batch["attention_mask"], batch["labels"]

    def logits(name: str) -> torch.Tensor:
        if name == "ours":
            return models[name](audio, mask)
        return models[name](audio, attention_mask=mask).logits

    with torch.no_grad():
        hf.eval(), ours.eval()
        expected = logits("transformers")
        diff, scale = (expected - logits("ours")).abs().max().item(), expected.abs().max().item()
    B, L = audio.shape
    print(f"{args.preset}: {B} x {L / SAMPLING_RATE:.1f} s ({int(mask.sum())} real samples, {expected.shape[1]} frames), "
          f"max |logits diff| = {diff:.2e} (max |logits| {scale:.2e}), "
          f"HF attention = {getattr(hf.config, '_attn_implementation', '-')}")
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in models.items()}

    def forward(name: str) -> None:
        models[name].eval()
        with torch.no_grad():
            logits(name)

    def train_step(name: str) -> None:
        model = models[name]
        model.train()
        if name == "ours":
            frames = model.wav2vec2.output_lengths(mask.sum(-1))
            loss = wav2vec2.ctc_loss(logits(name), frames, labels, blank=config.pad_token_id,
                                     reduction=config.ctc_loss_reduction, zero_infinity=config.ctc_zero_infinity)
        else:
            loss = model(audio, attention_mask=mask, labels=labels).loss
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    rows = []
    for label, fn in (("eval forward", forward), ("train step", train_step)):
        times = interleaved({name: (lambda n=name: fn(n)) for name in models}, args.warmup, args.reps, device)
        rows.append((label, times["transformers"], times["ours"]))
    return rows


def bench_data(args, name: str, num_workers: int) -> tuple[float, float, float]:
    """(audio seconds in one epoch, median audio-seconds/s of the train loader, of bare decode)."""
    dm = AudioDataModule(**DATASETS[name], batch_size=args.data_batch_size, num_workers=num_workers)
    dm.setup("fit")
    paths = [r.path for r in dm.records("train")]
    seconds = sum(soundfile.info(p).duration for p in paths)
    loader = dm.train_dataloader()
    cpu = torch.device("cpu")

    def epoch() -> None:
        for _ in loader:
            pass

    def decode() -> None:
        for p in paths:
            soundfile.read(p, dtype="float32")

    times = interleaved({"loader": epoch, "decode": decode}, warmup=1, reps=args.data_reps, device=cpu)
    return seconds, seconds / statistics.median(times["loader"]), seconds / statistics.median(times["decode"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shape (wav2vec2-test), 2 x 1 s, few repetitions")
    parser.add_argument("--preset", default="wav2vec2-base", choices=sorted(wav2vec2.PRESETS))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the longest clip")
    parser.add_argument("--pad-fraction", type=float, default=0.25, help="odd rows are this much shorter (padding)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--data-batch-size", type=int, default=8)
    parser.add_argument("--data-reps", type=int, default=5, help="timed epochs of each loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader num_workers to measure")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.seconds, args.reps, args.data_reps, args.workers = "wav2vec2-test", 1.0, 3, 2, [0]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, device {args.device}")

    if not args.skip_model:
        rows = bench_model(args)
        print(f"\n{'measure':<14} {'transformers s (min-max)':>26} {'ours s (min-max)':>22} {'ours/transformers':>18}")
        for label, theirs, mine in rows:
            t, m = statistics.median(theirs), statistics.median(mine)
            print(f"{label:<14} {t:>10.3f} ({spread(theirs):>13}) {m:>8.3f} ({spread(mine):>11}) {m / t:>18.2f}")
    if not args.skip_data:
        print(f"\n{'data (train loader, batch ' + str(args.data_batch_size) + ')':<34} {'workers':>7} {'audio s':>8} "
              f"{'loader audio-s/s':>17} {'soundfile.read audio-s/s':>25} {'ratio':>6}")
        for name in DATASETS:
            for workers in args.workers:
                seconds, ours, bare = bench_data(args, name, workers)
                print(f"{name:<34} {workers:>7} {seconds:>8.1f} {ours:>17.0f} {bare:>25.0f} {ours / bare:>6.2f}")


if __name__ == "__main__":
    main()
