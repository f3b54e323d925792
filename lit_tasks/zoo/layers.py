"""The layers every transformer family composes: attention, norms, feed-forward networks.

- :class:`Attention`: multi-head scaled dot-product attention (Vaswani et al. 2017, Sec. 3.2.2)
  through ``F.scaled_dot_product_attention``. Self-attention projects query, key and value by
  one fused Linear (``qkv``); cross-attention takes the query from ``x`` (``q``) and key and
  value from ``memory`` (``kv``). It takes a padding mask over the keys, a causal mask, an
  additive bias (T5's relative positions) and a per-layer :class:`KVCache` entry for
  incremental decoding; the scale is 1/sqrt(head size) unless given (T5: 1).
- :class:`RMSNorm` (Zhang & Sennrich 2019): x / RMS(x) * weight, in float32, no mean, no bias.
- :class:`FeedForward`: Linear -> activation -> Linear (Sec. 3.3), or gated
  (Shazeer 2020, GLU variants): act(gate(x)) * fc1(x) -> fc2.

Parameter names are ours (``qkv``, ``q``, ``kv``, ``proj``; ``fc1``, ``gate``, ``fc2``); each
family's key map turns HF's names into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# HF `hidden_act` names -> modules ("gelu" is the exact erf GELU, "gelu_new" the tanh one)
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


@dataclass
class LayerCache:
    """One attention layer's keys and values so far, (B, H, T, d) each (None before the first step)."""

    k: Tensor | None = None
    v: Tensor | None = None


@dataclass
class KVCache:
    """The caches of a decoder's attention layers, by name ("self.3", "cross.3", ...).
    Self-attention appends each step's keys and values; cross-attention computes them from
    the encoder output once and reuses them."""

    layers: dict[str, LayerCache] = field(default_factory=dict)

    def layer(self, name: str) -> LayerCache:
        return self.layers.setdefault(name, LayerCache())

    def length(self, name: str) -> int:
        """How many positions layer `name` has cached (0 before the first step)."""
        entry = self.layers.get(name)
        return 0 if entry is None or entry.k is None else entry.k.shape[2]

    def reorder(self, index: Tensor) -> None:
        """Keep the rows `index` of every cache (beam search's surviving hypotheses)."""
        for entry in self.layers.values():
            if entry.k is not None:
                entry.k, entry.v = entry.k.index_select(0, index), entry.v.index_select(0, index)


def padding_keep(keep: Tensor | None) -> Tensor | None:
    """A key padding mask `keep` (B, Tk), True = attend, or None when it masks nothing: a batch
    without padding then runs SDPA with no mask tensor at all (its fused kernels, no (B, 1, Tq,
    Tk) mask built and read in every layer). Checked once per forward by the model, not per
    layer: on a GPU the check waits for the mask."""
    return None if keep is None or bool(keep.all()) else keep


def attention_mask(keep: Tensor | None, causal: bool, bias: Tensor | None, q_len: int, k_len: int,
                   dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """One additive mask (B|1, H|1, Tq, Tk) for SDPA from a key padding mask `keep` (B, Tk)
    (True = attend), causality (query i sees keys up to i + Tk - Tq: its own position when
    earlier ones are cached) and an additive `bias`. Masked scores get the dtype's minimum, so
    an all-masked row stays finite; None when there is nothing to mask."""
    mask = None if bias is None else bias.to(dtype)
    blocked = None
    if keep is not None:
        blocked = ~keep[:, None, None, :]  # (B, 1, 1, Tk)
    if causal and q_len > 1:
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(k_len - q_len + 1)  # (Tq, Tk)
        blocked = future if blocked is None else blocked | future
    if blocked is None:
        return mask
    if mask is None:
        return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)
    return torch.where(blocked, torch.finfo(dtype).min, mask)


class Attention(nn.Module):
    """Multi-head attention over `x` (self) or from `x` to `memory` (cross, `cross=True`).

    Args:
        dim: model width; `num_heads` divides it unless `head_dim` is given (T5's d_kv).
        kv_dim: width of `memory` (cross-attention; default `dim`).
        bias: biases of the input projections; `out_bias` of the output one.
        dropout: attention-probability dropout in training.
        scale: the score scale; None = 1/sqrt(head size).
    """

    def __init__(self, dim: int, num_heads: int, *, cross: bool = False, kv_dim: int | None = None,
                 head_dim: int | None = None, bias: bool = True, out_bias: bool = True, dropout: float = 0.0,
                 scale: float | None = None) -> None:
        super().__init__()
        self.num_heads, self.cross, self.dropout_p, self.scale = num_heads, cross, dropout, scale
        self.head_dim = head_dim or dim // num_heads
        inner = self.num_heads * self.head_dim
        if cross:
            self.q = nn.Linear(dim, inner, bias=bias)
            self.kv = nn.Linear(kv_dim or dim, 2 * inner, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=bias)
        self.proj = nn.Linear(inner, dim, bias=out_bias)

    def _heads(self, x: Tensor, parts: int) -> tuple[Tensor, ...]:
        B, T, _ = x.shape
        return x.view(B, T, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, d)

    def forward(self, x: Tensor, memory: Tensor | None = None, keep: Tensor | None = None, causal: bool = False,
                bias: Tensor | None = None, cache: LayerCache | None = None) -> Tensor:
        """x (B, Tq, D); memory (B, Tk, D_kv) for cross-attention; keep (B, Tk) True = attend
        (the keys so far, cached ones included); bias (B|1, H, Tq, Tk) added to the scores."""
        B, Tq, _ = x.shape
        if self.cross:
            (q,) = self._heads(self.q(x), 1)
            if cache is not None and cache.k is not None:
                k, v = cache.k, cache.v  # the encoder output's keys and values, computed at the first step
            else:
                k, v = self._heads(self.kv(memory), 2)
                if cache is not None:
                    cache.k, cache.v = k, v
        else:
            q, k, v = self._heads(self.qkv(x), 3)
            if cache is not None:
                if cache.k is not None:
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        causal = causal and not self.cross
        dropout_p = self.dropout_p if self.training else 0.0
        if causal and keep is None and bias is None and Tq == k.shape[2]:  # SDPA's own causal kernel, no mask tensor
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=self.scale)
        else:
            mask = attention_mask(keep, causal, bias, Tq, k.shape[2], q.dtype, q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, Tq, -1))  # (B, Tq, D)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, computed in float32 (T5's LayerNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(self.weight.dtype if self.weight.dtype in (torch.float16, torch.bfloat16)
                                       else x.dtype)


class FeedForward(nn.Module):
    """fc2(dropout(act(fc1(x)))), or with `gated` fc2(dropout(act(gate(x)) * fc1(x)))."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", *, gated: bool = False, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.gate = nn.Linear(dim, hidden, bias=bias) if gated else None
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.act(self.fc1(x)) if self.gate is None else self.act(self.gate(x)) * self.fc1(x)
        return self.fc2(self.dropout(hidden))
