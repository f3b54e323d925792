"""Does pretraining here pay off on the bundled data? Fine-tune from a pretraining run's best.ckpt
and train the same architecture from scratch, on the same fine-tuning budget, and print both.

    python scripts/pretrain_vs_scratch.py speech   # wav2vec2_small_digits -> CTC digit strings
    python scripts/pretrain_vs_scratch.py text     # bert_small_wiki (masked LM) -> wiki NER
    python scripts/pretrain_vs_scratch.py seq2seq  # mbart_small_debian_denoising -> Debian summaries

speech: the pretraining recipe in full, then the CTC recipe shortened to --epochs (default 40 of its
130) twice: from the pretraining checkpoint (`--model.init_from`, the architecture is the
checkpoint's, which is the CTC recipe's) and from scratch. text: the masked-LM recipe in full, then
the NER recipe with the small BERT for --epochs (default 10), from the checkpoint (its tokenizer
comes along) and from scratch with the same tokenizer and architecture. seq2seq: the denoising
recipe in full, then summarization for --epochs (default: all 8 of the recipes): the
mbart_small_debian_pretrained recipe from the checkpoint, and mbart_small_debian from scratch
with the pretraining's tokenizer. Runs go under --root; a
pretraining run already there is reused. Figures of these runs are quoted in the recipe headers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--run.loggers", "[csv]", "--trainer.enable_progress_bar", "false"]
SMALL_BERT = ("{hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 512, "
              "max_position_embeddings: 128, hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0, "
              "initializer_range: 0.05, vocab_size: %d}")


def fit(config: str, run_dir: Path, *overrides: str) -> dict:
    """results.json of `python -m lit_tasks fit --config configs/CONFIG OVERRIDES` in run_dir
    (reused when it finished before)."""
    results = run_dir / "results.json"
    if not (results.is_file() and json.loads(results.read_text())["status"] == "finished"):
        command = [sys.executable, "-m", "lit_tasks", "fit", "--config", str(REPO / "configs" / config),
                   "--run.dir", str(run_dir), *QUIET, *overrides]
        print("$", " ".join(command), flush=True)
        started = time.time()
        subprocess.run(command, cwd=REPO, check=True)
        print(f"  {time.time() - started:.0f} s", flush=True)
    return json.loads(results.read_text())


def speech(root: Path, epochs: int) -> list[tuple[str, dict]]:
    pretrained = fit("wav2vec2_pretraining/wav2vec2_small_digits.yaml", root / "pretrain_wav2vec2")
    ckpt = pretrained["checkpoints"]["best"]
    short = ["--trainer.max_epochs", str(epochs)]
    config = "speech_recognition/wav2vec2_ctc_digit_strings.yaml"
    return [
        ("ctc from scratch", fit(config, root / f"ctc_scratch_{epochs}", *short)["metrics"]),
        ("ctc from the pretraining", fit(config, root / f"ctc_pretrained_{epochs}", *short, "--model.init_from", ckpt,
                                         "--model.backbone_config", "null")["metrics"]),
    ]


def text(root: Path, epochs: int) -> list[tuple[str, dict]]:
    pretrained = fit("masked_lm/bert_small_wiki.yaml", root / "pretrain_mlm")
    ckpt = pretrained["checkpoints"]["best"]
    vocab_size = pretrained["config"]["model"]["init_args"]["vocab_size"]
    common = ["--trainer.max_epochs", str(epochs), "--model.lr", "0.001"]
    config = "token_classification/minilm_wiki_ner.yaml"
    return [
        ("ner from scratch", fit(config, root / f"ner_scratch_{epochs}", *common, "--model.init_from", "null",
                                 "--model.backbone", "bert-base-uncased", "--model.backbone_config",
                                 SMALL_BERT % vocab_size, "--data.tokenizer", ckpt)["metrics"]),
        ("ner from the pretraining", fit(config, root / f"ner_pretrained_{epochs}", *common,
                                         "--model.init_from", ckpt)["metrics"]),
    ]


def seq2seq(root: Path, epochs: int) -> list[tuple[str, dict]]:
    pretrained = fit("seq2seq_pretraining/mbart_small_debian_denoising.yaml", root / "pretrain_mbart")
    ckpt = pretrained["checkpoints"]["best"]
    short = ["--trainer.max_epochs", str(epochs)]
    return [
        ("summaries from scratch", fit("summarization/mbart_small_debian.yaml", root / f"sum_scratch_{epochs}", *short,
                                       "--data.train_tokenizer_vocab_size", "null", "--data.tokenizer", ckpt)["metrics"]),
        ("summaries from the pretraining", fit("summarization/mbart_small_debian_pretrained.yaml",
                                               root / f"sum_pretrained_{epochs}", *short,
                                               "--model.init_from", ckpt)["metrics"]),
    ]


EXPERIMENTS = {  # which -> (run, default fine-tuning epochs, metrics printed)
    "speech": (speech, 40, ("test/wer", "test/cer", "val/wer")),
    "text": (text, 10, ("test/entity_f1", "val/entity_f1", "test/acc")),
    "seq2seq": (seq2seq, 8, ("test/rougeL", "val/rougeL", "test/rouge1")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=list(EXPERIMENTS))
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (speech 40, text 10, seq2seq 8)")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "pretrain_vs_scratch")
    args = parser.parse_args()
    experiment, default_epochs, keys = EXPERIMENTS[args.which]
    rows = experiment(args.root.resolve(), args.epochs or default_epochs)
    print(f"\n{'run':28}" + "".join(f"{k:>16}" for k in keys))
    for name, metrics in rows:
        print(f"{name:28}" + "".join(f"{metrics.get(k, float('nan')):>16.3f}" for k in keys))


if __name__ == "__main__":
    main()
