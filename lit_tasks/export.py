"""`python -m lit_tasks export --ckpt_path CKPT --out DIR`: a checkpoint as an HF-format folder.

The folder holds config.json (with the label names or the vocabulary size), model.safetensors
in HF key names, preprocessor_config.json (image and audio tasks) and the tokenizer files the
run used (text tasks: tokenizer.json, vocab.txt, tokenizer_config.json; speech recognition:
the `Wav2Vec2CTCTokenizer` vocab.json and tokenizer_config.json), so `transformers` and any
HF-format tool load it. The network is rebuilt from the checkpoint's model spec through
`lit_tasks.zoo.from_spec` and written by `lit_tasks.zoo.save_pretrained`, for every family.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_tasks import zoo
from lit_tasks.checkpoint_io import load_checkpoint_file
from lit_tasks.tasks.network import checkpoint_network


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    checkpoint = load_checkpoint_file(ckpt_path)
    model = checkpoint_network(checkpoint, ckpt_path)
    meta = checkpoint["lit_tasks"]
    out_dir = Path(out_dir)
    zoo.save_pretrained(model, out_dir, label_names=meta.get("label_names"), preprocessor=meta.get("preprocessor"))
    for name, text in (meta.get("tokenizer_files") or {}).items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return out_dir


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by fit (e.g. runs/.../checkpoints/best.ckpt)")
    parser.add_argument("--out", required=True, help="folder to write (created; files in it are replaced)")
    args = parser.parse_args(argv)
    out = export_checkpoint(args.ckpt_path, args.out)
    print(f"exported {args.ckpt_path} to {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
