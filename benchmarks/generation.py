"""Our generation (lit_tasks.generation over the zoo) vs `transformers`' generate, same weights,
same process, same threads; and the model's forward and train step against HF's.

Model: a random `GPT2LMHeadModel` of a preset's shape (default: openai-community/gpt2, 124M;
`--shape gpt2-6x512` is 6 layers, 512 wide, 8 heads), or an encoder-decoder
(`--shape t5-small-2l`: t5-small's widths with 2 + 2 layers; `--shape bart-base-2l`: bart-base's
with 2 + 2 layers), is written with `save_pretrained` and read back by `zoo.from_pretrained`, so
both hold identical weights (the script prints the largest logits difference). No eos id (and
no forced bos/eos) on either side, so every setting generates exactly `new_tokens` per prompt.
For an encoder-decoder the prompt is the source (right-padded in batches > 1) and the decoder
starts from its decoder_start_token_id; forward and train step are teacher-forced with the
random tokens as both source and decoder input.

Generation: for each strategy (greedy, beam search with 4 beams), batch size (1, 8) and number of
new tokens (32, 128), a prompt batch of `--prompt-len` random tokens (batches > 1: left-padded,
lengths from half the prompt length up) goes through `hf.generate(do_sample=False, ...)` and our
`generate(...)`, repetitions alternating between the two. The table gives new tokens per second
(batch x new tokens / median seconds) and the ratio of times ours / transformers (target <= 1.0),
and whether both returned the same tokens (random weights make near-ties, so a float-level
difference can flip one; the tests compare tokens on opinionated tiny models).

Model steps: eval forward (`no_grad`) and train step (forward, next-token cross-entropy,
backward, AdamW step) on `--fwd-batch` x `--fwd-len` random tokens, alternating, medians and
the ratio ours / transformers.

    python benchmarks/generation.py --quick                     # tiny shape, seconds: checks the script runs
    python benchmarks/generation.py --threads 2 --shape gpt2-6x512 --reps 3
    python benchmarks/generation.py --device cuda               # gpt2 shape, the full grid
    python benchmarks/generation.py --shape bart-base-2l --new-tokens 32 --threads 2
    python benchmarks/generation.py --quick --shape t5-test     # the seq2seq path in seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402  (the same clock for every benchmark)

from lit_tasks import zoo  # noqa: E402
from lit_tasks.generation import generate, generation_defaults  # noqa: E402
from lit_tasks.zoo import gpt2  # noqa: E402

SHAPES = {**gpt2.PRESETS, "gpt2-6x512": dataclasses.replace(gpt2.PRESETS["gpt2"], n_layer=6, n_embd=512, n_head=8)}
# encoder-decoders: shape -> (transformers model class, its config class, config kwargs)
SEQ2SEQ_SHAPES = {
    "t5-small-2l": ("T5ForConditionalGeneration", "T5Config",
                    dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=2, num_decoder_layers=2,
                         num_heads=8, decoder_start_token_id=0)),
    "bart-base-2l": ("BartForConditionalGeneration", "BartConfig",
                     dict(vocab_size=50265, d_model=768, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
                          decoder_ffn_dim=3072)),
    "t5-test": ("T5ForConditionalGeneration", "T5Config",
                dict(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0)),
    "bart-test": ("BartForConditionalGeneration", "BartConfig",
                  dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64)),
}
STRATEGIES = {"greedy": {}, "beam4": {"num_beams": 4}}


def make_pair(shape: str, tmp: str) -> tuple[torch.nn.Module, torch.nn.Module, gpt2.GPT2Config]:
    """(transformers GPT2LMHeadModel, ours, config) holding the same random weights, no eos id."""
    config = dataclasses.replace(SHAPES[shape], bos_token_id=None, eos_token_id=None)
    hf_config = {k: v for k, v in config.to_hf().items() if k != "model_type"}
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config))
    hf.save_pretrained(tmp)
    return hf, zoo.from_pretrained(tmp), config


def make_seq2seq_pair(shape: str, tmp: str) -> tuple[torch.nn.Module, torch.nn.Module, SimpleNamespace]:
    """(transformers *ForConditionalGeneration, ours, config) holding the same random weights."""
    model_class, config_class, kwargs = SEQ2SEQ_SHAPES[shape]
    torch.manual_seed(0)
    hf = getattr(transformers, model_class)(getattr(transformers, config_class)(**kwargs))
    hf.save_pretrained(tmp)
    ours = zoo.from_pretrained(tmp)
    decoder_layers = getattr(hf.config, "decoder_layers", None) or hf.config.num_decoder_layers
    layers = f"{hf.config.num_hidden_layers} + {decoder_layers}"
    return hf, ours, SimpleNamespace(vocab_size=hf.config.vocab_size, seq2seq=True, layers=layers,
                                     width=hf.config.d_model, start=generation_defaults(ours.config)[
                                         "decoder_start_token_id"])


def make_prompts(batch: int, length: int, vocab: int, right: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) (batch, length): random tokens, rows after the first padded
    (left, or right when `right`: an encoder's sources) to lengths spread over [length / 2, length]."""
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for b in range(1, batch):
        pad = (length // 2) * b // batch
        cols = slice(length - pad, length) if right else slice(0, pad)
        mask[b, cols] = 0
        ids[b, cols] = 0
    return ids, mask


def seq2seq_options(config) -> tuple[dict, dict]:
    """(extra options of HF's generate, of ours): the decoder start, and no eos or forced tokens."""
    if not getattr(config, "seq2seq", False):
        return {}, {}
    hf = dict(decoder_start_token_id=config.start, forced_bos_token_id=None, forced_eos_token_id=None)
    return hf, dict(decoder_start_token_id=config.start)


def spread(times: list[float]) -> str:
    return f"{min(times):.3f}-{max(times):.3f}"


def bench_generation(args, hf, ours, config, device) -> None:
    print(f"\n{'strategy':<8} {'batch':>5} {'new':>4} {'transformers tok/s':>19} {'ours tok/s':>11} "
          f"{'ours/transformers':>18} {'same tokens':>12}")
    for strategy in args.strategies:
        for batch in args.batch_sizes:
            for new in args.new_tokens:
                seq2seq = getattr(config, "seq2seq", False)
                ids, mask = (t.to(device) for t in make_prompts(batch, args.prompt_len, config.vocab_size, seq2seq))
                options = dict(max_new_tokens=new, pad_token_id=0, **STRATEGIES[strategy])
                hf_extra, our_extra = seq2seq_options(config)
                outputs = {}

                def theirs():
                    outputs["transformers"] = hf.generate(ids, attention_mask=mask, do_sample=False, eos_token_id=None,
                                                          **options, **hf_extra)

                def mine():
                    outputs["ours"] = generate(ours, ids, mask, **options, **our_extra)

                times = interleaved({"transformers": theirs, "ours": mine}, args.warmup, args.reps, device)
                t, m = statistics.median(times["transformers"]), statistics.median(times["ours"])
                same = outputs["transformers"].shape == outputs["ours"].shape and torch.equal(*outputs.values())
                print(f"{strategy:<8} {batch:>5} {new:>4} {batch * new / t:>19.1f} {batch * new / m:>11.1f} "
                      f"{m / t:>18.2f} {str(same):>12}")


def bench_steps(args, hf, ours, config, device) -> None:
    models = {"transformers": hf, "ours": ours}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (args.fwd_batch, args.fwd_len), generator=g).to(device)

    def logits(name: str) -> torch.Tensor:
        if getattr(config, "seq2seq", False):  # teacher forcing: the tokens as source and decoder input
            return models[name](ids, None, ids) if name == "ours" else models[name](ids, decoder_input_ids=ids).logits
        return models[name](ids) if name == "ours" else models[name](ids).logits

    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in models.items()}

    def forward(name: str) -> None:
        models[name].eval()
        with torch.no_grad():
            logits(name)

    def train_step(name: str) -> None:
        models[name].train()
        out = logits(name)
        loss = F.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    print(f"\n{'measure (' + str(args.fwd_batch) + ' x ' + str(args.fwd_len) + ')':<22} "
          f"{'transformers s (min-max)':>26} {'ours s (min-max)':>22} {'ours/transformers':>18}")
    for label, fn in (("eval forward", forward), ("train step", train_step)):
        times = interleaved({name: (lambda n=name: fn(n)) for name in models}, args.warmup, args.reps, device)
        t, m = statistics.median(times["transformers"]), statistics.median(times["ours"])
        print(f"{label:<22} {t:>10.4f} ({spread(times['transformers']):>13}) {m:>8.4f} "
              f"({spread(times['ours']):>11}) {m / t:>18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shape (gpt2-test), few tokens and repetitions")
    parser.add_argument("--shape", default="gpt2", choices=sorted(SHAPES) + sorted(SEQ2SEQ_SHAPES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--fwd-batch", type=int, default=8, help="batch of the forward and train-step measures")
    parser.add_argument("--fwd-len", type=int, default=128, help="tokens per row of those measures")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-steps", action="store_true", help="generation only")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = parser.parse_args()
    if args.quick:
        args.shape = args.shape if args.shape.endswith("-test") else "gpt2-test"
        args.batch_sizes, args.new_tokens, args.prompt_len = [1, 4], [4, 16], 8
        args.fwd_batch, args.fwd_len, args.reps = 2, 16, 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
          f"device {args.device}")

    with tempfile.TemporaryDirectory() as tmp:
        hf, ours, config = (make_seq2seq_pair if args.shape in SEQ2SEQ_SHAPES else make_pair)(args.shape, tmp)
    hf, ours = hf.to(device).eval(), ours.to(device).eval()
    seq2seq = args.shape in SEQ2SEQ_SHAPES
    ids, mask = (t.to(device) for t in make_prompts(2, args.prompt_len, config.vocab_size, seq2seq))
    with torch.no_grad():
        if seq2seq:
            expected = hf(ids, attention_mask=mask, decoder_input_ids=ids).logits.flatten(0, 1)
            diff = (expected - ours(ids, mask, ids).flatten(0, 1)).abs().max().item()
        else:
            expected = hf(ids, attention_mask=mask).logits[mask.bool()]
            diff = (expected - ours(ids, mask)[mask.bool()]).abs().max().item()
    layers, width = (config.layers, config.width) if seq2seq else (config.n_layer, config.n_embd)
    print(f"{args.shape}: {layers} layers, {width} wide, vocab {config.vocab_size}; "
          f"max |logits diff| = {diff:.2e} (max |logits| {expected.abs().max().item():.2e}), "
          f"HF attention = {getattr(hf.config, '_attn_implementation', '-')}")
    bench_generation(args, hf, ours, config, device)
    if not args.skip_steps:
        bench_steps(args, hf, ours, config, device)


if __name__ == "__main__":
    main()
