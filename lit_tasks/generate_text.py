"""`python -m lit_tasks generate --ckpt_path CKPT | --init_from FOLDER --prompt TEXT ...`: continue
prompts with a causal language model, for one-off use.

The model is a checkpoint written by fit (its tokenizer is stored in it) or an HF-format folder
(config.json + safetensors + tokenizer files, e.g. a downloaded GPT-2); `--tokenizer` names
another tokenizer folder. Prompts come from `--prompt` (repeatable) and `--prompts_file` (one
per line, or CSV/JSONL with a `text` column). Every option of
`lit_tasks.generation.GenerationConfig` is a flag (`--max_new_tokens 50 --num_beams 4`,
`--do_sample true --top_p 0.9 --seed 1`, `--stop_strings '["\\n\\n"]'`); values are read as
YAML, so numbers, booleans and lists are typed. The continuations are printed, or written as
JSON lines with `--jsonl`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import yaml

from lit_tasks import zoo
from lit_tasks.checkpoint_io import load_checkpoint_file
from lit_tasks.data.causal_lm import read_corpus
from lit_tasks.errors import ConfigError
from lit_tasks.generation import GenerationConfig
from lit_tasks.tasks.continuations import continue_prompts, encode_prompts
from lit_tasks.tasks.network import checkpoint_network
from lit_tasks.text.tokenizer import Tokenizer, load_tokenizer


def load_model(ckpt_path: str | None, init_from: str | None, tokenizer: str | None) -> tuple[torch.nn.Module, Tokenizer]:
    """The causal-LM network and its tokenizer (the checkpoint's or folder's unless `tokenizer`)."""
    source = ckpt_path or init_from
    net = checkpoint_network(load_checkpoint_file(ckpt_path), ckpt_path) if ckpt_path else zoo.from_pretrained(init_from)
    family, head = zoo.head_of(net)
    if head != "causal_lm":
        raise ConfigError(f"{source} holds a {family} {head} model; generate needs a causal language model "
                          "(a causal_lm head, e.g. GPT2LMHeadModel)")
    return net.eval(), load_tokenizer(tokenizer or source)


def generation_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per GenerationConfig option, its value read as YAML (None: the config's default)."""
    group = parser.add_argument_group("generation options (lit_tasks.generation.GenerationConfig)")
    for field in dataclasses.fields(GenerationConfig):
        group.add_argument(f"--{field.name}", type=yaml.safe_load, default=None, metavar="VALUE")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_tasks generate", description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt_path", help="a checkpoint written by fit (runs/.../checkpoints/best.ckpt)")
    model.add_argument("--init_from", help="an HF-format folder (config.json, *.safetensors, tokenizer files)")
    parser.add_argument("--tokenizer", help="a tokenizer folder (default: the model's own)")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for a batch)")
    parser.add_argument("--prompts_file", help="prompts, one per line (or CSV/JSONL with a 'text' column)")
    parser.add_argument("--truncate_prompts", action="store_true",
                        help="cut prompts too long for the context on the left (counted) instead of failing")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--jsonl", action="store_true", help="print {prompt, continuations} JSON lines")
    generation_flags(parser)
    args = parser.parse_args(argv)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [d.text for d in read_corpus(args.prompts_file, prompts=True)]
    if not prompts:
        parser.error("give at least one --prompt or a --prompts_file")
    net, tokenizer = load_model(args.ckpt_path, args.init_from, args.tokenizer)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(GenerationConfig)
               if getattr(args, f.name) is not None}
    config = GenerationConfig.from_dict({"eos_token_id": tokenizer.eos, "pad_token_id": tokenizer.pad, **options},
                                        source="generate options")
    input_ids, attention_mask = encode_prompts(tokenizer, prompts)
    device = torch.device(args.device)
    out = continue_prompts(net.to(device), tokenizer, input_ids.to(device), attention_mask.to(device), config,
                           args.truncate_prompts, names=[f"{i + 1} ({p[:40]!r})" for i, p in enumerate(prompts)])
    for prompt, continuations in zip(prompts, out.texts):
        if args.jsonl:
            print(json.dumps({"prompt": prompt, "continuations": continuations}, ensure_ascii=False))
        else:
            for text in continuations:
                print(f"{prompt}{text}\n")
    if out.truncated:
        print(f"{out.truncated} prompt(s) lost their beginning to fit the context", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
