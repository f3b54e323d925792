"""`python -m lit_tasks export --ckpt_path CKPT --out DIR`: a checkpoint as an HF-format folder.

The folder holds config.json (with the label names or the vocabulary size), model.safetensors
in HF key names, preprocessor_config.json (image and audio tasks) and the tokenizer files the
run used (text tasks: tokenizer.json, vocab.txt, tokenizer_config.json; speech recognition:
the `Wav2Vec2CTCTokenizer` vocab.json and tokenizer_config.json), so `transformers` and any
HF-format tool load it, and README.md, a model card (`lit_tasks.model_card`) built from the
run's results.json: metrics with their splits, how it was trained, how to load it.
The network is rebuilt from the checkpoint's model spec through `lit_tasks.zoo.from_spec` and
written by `lit_tasks.zoo.save_pretrained`, for every family. docs/export.md lists every file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lit_tasks import zoo
from lit_tasks.checkpoint_io import load_checkpoint_file
from lit_tasks.errors import ConfigError, DataError
from lit_tasks.model_card import Export, write_model_card
from lit_tasks.tasks.network import checkpoint_network


def default_results_path(ckpt_path: Path) -> Path:
    """Where fit leaves results.json for a checkpoint: `<run_dir>/checkpoints/X.ckpt` ->
    `<run_dir>/results.json`; for a checkpoint elsewhere, beside it."""
    folder = ckpt_path.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / "results.json"


def read_results(path: Path, given: bool) -> dict[str, Any] | None:
    """results.json as a dict; None when it is missing and was not asked for by `--results`."""
    if not path.is_file():
        if given:
            raise ConfigError(f"--results {path}: no such file (expected the run's results.json)")
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
                        "expected a results.json written by lit_tasks") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from exc
    if not isinstance(results, dict):
        raise DataError(f"{path}: holds a JSON {type(results).__name__}; expected an object (a results.json)")
    return results


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, results_path: str | Path | None = None,
                      license: str = "other") -> Path:
    """Write the checkpoint's network as an HF-format folder with a model card; the card reads
    `results_path` (default: the run folder's results.json) and names the folder as `out_dir` is given."""
    ckpt_path = Path(ckpt_path)
    results_file = Path(results_path) if results_path is not None else default_results_path(ckpt_path)
    results = read_results(results_file, given=results_path is not None)  # before anything is written
    checkpoint = load_checkpoint_file(ckpt_path)
    model = checkpoint_network(checkpoint, ckpt_path)
    meta = checkpoint["lit_tasks"]
    out = Path(out_dir)
    zoo.save_pretrained(model, out, label_names=meta.get("label_names"), preprocessor=meta.get("preprocessor"))
    for name, text in (meta.get("tokenizer_files") or {}).items():
        (out / name).write_text(text, encoding="utf-8")
    export = Export(
        folder=out, ckpt_path=ckpt_path, meta=meta,
        config_json=json.loads((out / "config.json").read_text(encoding="utf-8")),
        epoch=checkpoint.get("epoch"), step=checkpoint.get("global_step"),
        parameters=sum(p.numel() for p in model.parameters()),
        results=results, results_path=results_file,
        license=license,
    )
    write_model_card(export, folder=str(out_dir))
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by fit (e.g. runs/.../checkpoints/best.ckpt)")
    parser.add_argument("--out", required=True, help="folder to write (created; files in it are replaced)")
    parser.add_argument("--results", default=None,
                        help="the run's results.json, for the model card (default: the run folder's, "
                             "RUN/results.json for RUN/checkpoints/X.ckpt, else the one beside the checkpoint; "
                             "without it the card comes from the checkpoint alone)")
    parser.add_argument("--license", default="other",
                        help="the model's licence in the card, a Hub licence id such as apache-2.0 or mit "
                             "(default: other, and the card says to set it)")
    args = parser.parse_args(argv)
    out = export_checkpoint(args.ckpt_path, args.out, args.results, args.license)
    print(f"exported {args.ckpt_path} to {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
