"""A tiny random GPT-2 held by transformers and by our zoo (same weights), and left-padded prompts.

Fixtures: `tiny` (hf, ours, ids, mask, pad, vocab). Test modules cannot import this file (the
top-level tests/conftest.py owns the name), so the constants travel in the fixture.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_tasks import zoo

VOCAB = 60
# Left padding and the fill of finished rows. A token the tiny model almost never produces: HF's
# no-repeat-ngram rule counts left-padding ids as tokens and ours does not, so the two agree as
# long as the model does not generate this id (HF also fills beam outputs with eos when pad is 0).
PAD = 49
LENGTHS = (6, 2, 4, 1)  # prompt lengths of the batch


def _randomize(model: torch.nn.Module) -> None:
    """Values that make the tiny model opinionated (mean next-token entropy ~2.9 nats of 4.1) and
    its continuations depend on the prompt: HF's init (N(0, 0.02), LN (1, 0)) makes it near uniform."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                p.normal_(1, 0.2)
            elif p.ndim == 1:
                p.normal_(0, 0.1)
            elif "wte" in name or "wpe" in name:
                p.normal_(0, 0.3)
            else:
                p.normal_(0, 0.2)


def _prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) (4, 6): random prompts of LENGTHS tokens, left-padded with PAD."""
    g = torch.Generator().manual_seed(0)
    P = max(LENGTHS)
    ids = torch.full((len(LENGTHS), P), PAD)
    mask = torch.zeros(len(LENGTHS), P, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        ids[b, P - n:] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[b, P - n:] = 1
    return ids, mask


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """hf: a transformers GPT2LMHeadModel; ours: the zoo's, read by zoo.from_pretrained from the
    folder hf was saved to (both in eval mode); ids, mask: left-padded prompts (4, 6); pad; vocab."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=40, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=None, eos_token_id=None)  # no default eos: each test sets its own
    hf = transformers.GPT2LMHeadModel(config).eval()
    _randomize(hf)
    folder = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(folder)
    ids, mask = _prompts()
    return SimpleNamespace(hf=hf, ours=zoo.from_pretrained(folder).eval(), ids=ids, mask=mask, pad=PAD, vocab=VOCAB)
