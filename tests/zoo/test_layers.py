"""The shared layers (lit_tasks/zoo/layers.py) against attention written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lit_tasks.zoo.layers import Attention, FeedForward, KVCache, RMSNorm

B, T, D, H = 2, 5, 8, 2


def reference(attn: Attention, x, memory=None, keep=None, causal=False, bias=None):
    """softmax(q k^T * scale + bias + mask) v, written out."""
    d = attn.head_dim
    if attn.cross:
        q = attn.q(x)
        k, v = attn.kv(memory).chunk(2, dim=-1)
    else:
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
    split = lambda t: t.view(t.shape[0], t.shape[1], H, d).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) * (attn.scale if attn.scale is not None else 1 / math.sqrt(d))
    if bias is not None:
        scores = scores + bias
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    if causal:
        Tq, Tk = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool).triu(1), float("-inf"))
    out = scores.softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


@pytest.fixture
def x():
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(0))


def test_self_attention_with_padding_causality_bias_and_scale(x):
    torch.manual_seed(0)
    attn = Attention(D, H, scale=1.0).eval()
    keep = torch.tensor([[True] * T, [True, True, True, False, False]])
    bias = torch.randn(1, H, T, T)
    torch.testing.assert_close(attn(x, keep=keep, causal=True, bias=bias),
                               reference(attn, x, keep=keep, causal=True, bias=bias))
    torch.testing.assert_close(attn(x, keep=keep), reference(attn, x, keep=keep))
    assert not torch.allclose(attn(x, keep=keep), attn(x))  # the mask matters


def test_cross_attention(x):
    torch.manual_seed(0)
    attn = Attention(D, H, cross=True, kv_dim=6).eval()
    memory = torch.randn(B, 7, 6)
    keep = torch.ones(B, 7, dtype=torch.bool)
    keep[1, 4:] = False
    torch.testing.assert_close(attn(x, memory, keep=keep), reference(attn, x, memory, keep=keep))


def test_causal_decoding_step_by_step_equals_the_whole_sequence(x):
    """With a cache, each new position attends to all earlier ones: the same outputs as one
    causal pass over the whole sequence (what incremental generation relies on)."""
    torch.manual_seed(0)
    attn = Attention(D, H).eval()
    whole = attn(x, causal=True)
    cache = KVCache()
    # a 2-token prompt, then 2 tokens at once (queries offset against the cached keys), then 1
    steps = [attn(x[:, a:b], causal=True, cache=cache.layer("self.0")) for a, b in ((0, 2), (2, 4), (4, 5))]
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    assert cache.length("self.0") == T


def test_cross_attention_cache_computes_the_memory_once(x):
    torch.manual_seed(0)
    attn = Attention(D, H, cross=True).eval()
    memory = torch.randn(B, 7, D)
    calls = []
    attn.kv.register_forward_hook(lambda *_: calls.append(1))
    cache = KVCache()
    outs = [attn(x[:, t:t + 1], memory, cache=cache.layer("cross.0")) for t in range(T)]
    assert len(calls) == 1
    torch.testing.assert_close(torch.cat(outs, dim=1), attn(x, memory))


def test_cache_reorder_keeps_the_chosen_rows(x):
    attn = Attention(D, H).eval()
    cache = KVCache()
    attn(x, causal=True, cache=cache.layer("self.0"))
    k = cache.layers["self.0"].k.clone()
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.layers["self.0"].k, k[[1, 1]])


def test_rms_norm_and_gated_feed_forward(x):
    torch.manual_seed(0)
    norm = RMSNorm(D, eps=1e-6)
    norm.weight.data.uniform_()
    torch.testing.assert_close(norm(x), norm.weight * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6))
    ff = FeedForward(D, 16, "relu", gated=True, bias=False)
    torch.testing.assert_close(ff(x), ff.fc2(torch.relu(ff.gate(x)) * ff.fc1(x)))
    assert ff.fc1.bias is None


def test_a_mask_without_padding_is_dropped_once_per_forward(monkeypatch):
    """BERT and wav2vec2 run SDPA with no mask tensor on a batch without padding (the fused
    kernel, no (B, 1, T, T) mask per layer) and with one when a row is padded; outputs agree."""
    from lit_tasks.zoo import layers
    from lit_tasks.zoo.bert import Bert, BertConfig
    from lit_tasks.zoo.wav2vec2 import Wav2Vec2, Wav2Vec2Config

    masks = []
    sdpa = layers.F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    bert = Bert(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=16)).eval()
    ids = torch.randint(0, 50, (2, 6))
    full, padded = torch.ones(2, 6, dtype=torch.long), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    unmasked = bert(ids).last_hidden_state
    torch.testing.assert_close(bert(ids, full).last_hidden_state, unmasked)
    assert masks[2:] == [None, None]
    bert(ids, padded)
    assert all(m is not None for m in masks[4:]) and len(masks) == 6
    assert layers.padding_keep(None) is None
    assert layers.padding_keep(padded.bool()) is not None

    masks.clear()
    audio = Wav2Vec2(Wav2Vec2Config(conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), hidden_size=16,
                                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)).eval()
    wave = torch.randn(2, 400)
    audio(wave, torch.ones(2, 400, dtype=torch.long))
    audio(wave, torch.tensor([[1] * 400, [1] * 300 + [0] * 100]))
    assert masks[0] is None and masks[1] is not None
