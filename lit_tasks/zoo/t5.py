"""T5: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer" (JMLR 21), https://arxiv.org/abs/1910.10683; and T5 v1.1 (its released follow-up).

An encoder-decoder Transformer (Sec. 2.1): one token embedding shared by encoder, decoder and
(v1.0) the output layer; pre-norm residual blocks whose norm is a scale-only RMS norm (no mean,
no bias anywhere in the model); no absolute positions but a learned scalar per head added to the
attention scores, looked up by the bucketed relative distance key - query (32 buckets, half
exact, half logarithmic up to 128; bidirectional in the encoder, only the past in the
decoder), computed in the first layer of each stack and shared by its later layers. Scores are
not divided by sqrt(d_kv) (the scale is folded into the initialisation). v1.0 uses a ReLU
feed-forward and the tied output layer on the decoder output times d_model**-0.5; v1.1 a
gated-GELU one (Shazeer 2020, "GLU Variants Improve Transformer") and an untied `lm_head`
without that scaling. Heads return raw logits; losses (and shifting labels right into the
decoder inputs, `shift_right`) belong to the tasks.

Decoding step by step (`T5ForConditionalGeneration.decode`): pass a `layers.KVCache` (decoder
block i keeps its self-attention keys and values under "self.{i}", its cross-attention ones,
computed from the encoder output at the first call, under "cross.{i}") and only the new tokens;
their positions continue after the cached ones (the relative bias of query P + t).

Weights load from HF-format folders (`model_type: "t5"`). HF keeps T5ForConditionalGeneration's
parts at the top level (no base-model prefix), so our head model is the base model plus
`lm_head`. Our parameter names follow HF's; where they differ, HF's in brackets:
    shared, {en,de}coder.final_layer_norm, {en,de}coder.block.{i}.layer.{j}.layer_norm
    {en,de}coder.relative_attention_bias     [{en,de}coder.block.0.layer.0.SelfAttention.relative_attention_bias]
    ....layer.0.SelfAttention.qkv            [....SelfAttention.q, .k, .v], fused
    ....layer.1.EncDecAttention.q, .kv       [....EncDecAttention.q, .k, .v], k and v fused
    ....SelfAttention.proj, EncDecAttention.proj      [.o]
    ....DenseReluDense.fc1, .fc2             [.wi, .wo]; gated: .gate, .fc1, .fc2  [.wi_0, .wi_1, .wo]
    lm_head                                  [the same; absent when tied to `shared`]
HF checkpoints may repeat `shared.weight` as `{en,de}coder.embed_tokens.weight` (tied copies).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import keymaps
from lit_tasks.zoo.base import Head, config_from_dict, shift_right
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward, KVCache, RMSNorm

MODEL_TYPE = "t5"
MODALITY = "text"
# HF's base_model_prefix for T5. No T5 checkpoint nests its base model there: T5ForConditionalGeneration
# keeps shared/encoder/decoder at the top level, and our head model is the base model plus `lm_head`.
HF_BASE_PREFIX = "transformer"

# Keys of older config.json files that change no model: n_positions (T5 has no absolute positions),
# training switches; and what transformers derives from feed_forward_proj (checked in from_hf).
_IGNORED_CONFIG_KEYS = frozenset({"n_positions", "output_past", "gradient_checkpointing", "_num_labels"})


def parse_feed_forward_proj(value: str) -> tuple[str, bool]:
    """HF's reading of `feed_forward_proj`: "ACT" or "gated-ACT" -> (activation, gated); "gated-gelu"
    means the tanh GELU ("gelu_new"), a plain "gelu" the exact one."""
    parts = value.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(value)
    act = "gelu_new" if value == "gated-gelu" else parts[-1]
    return act, len(parts) == 2


@dataclass(frozen=True)
class T5Config:
    """The fields and defaults of an HF `config.json` with `model_type: "t5"`.

    `num_decoder_layers` None means num_layers (HF's default). `classifier_dropout` configures
    HF's classification heads, which the zoo does not build: kept and written back. Transformers
    >= 5 writes `scale_decoder_outputs` (the v1.0 scaling) and always `tie_word_embeddings: true`;
    `from_hf` reads `tie_word_embeddings: true` with `scale_decoder_outputs: false` as an untied
    v1.1 model (see `from_hf`).
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    classifier_dropout: float = 0.0
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True  # True: the LM head is `shared` on the output times d_model**-0.5
    pad_token_id: int | None = 0
    eos_token_id: int | tuple[int, ...] | None = 1
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = None

    # HF's T5Config answers to the generic names too (its attribute_map); tasks read them.
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.num_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.num_layers

    @property
    def decoder_layers(self) -> int:
        return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers

    @property
    def activation(self) -> tuple[str, bool]:
        """(activation name, gated) of the feed-forward networks."""
        return parse_feed_forward_proj(self.feed_forward_proj)

    @classmethod
    def from_hf(cls, d: dict, source: str) -> T5Config:
        d = dict(d)
        derived = {key: d.pop(key) for key in ("dense_act_fn", "is_gated_act") if key in d}
        scale = d.pop("scale_decoder_outputs", None)
        is_decoder = d.pop("is_decoder", False)
        config = config_from_dict(cls, d, source=source, ignore=_IGNORED_CONFIG_KEYS)
        config.check(source)
        if config.num_decoder_layers is None:  # as transformers resolves it, so that configs compare equal
            config = dataclasses.replace(config, num_decoder_layers=config.num_layers)
        if is_decoder:
            raise ConfigError(f"{source}: key 'is_decoder' is {is_decoder!r}; expected false (a T5 config.json "
                              "describes the whole encoder-decoder)")
        act, gated = config.activation
        for key, expected in (("dense_act_fn", act), ("is_gated_act", gated)):
            if key in derived and derived[key] != expected and not (key == "dense_act_fn" and act == "gelu_new"
                                                                    and derived[key] == "gelu"):
                raise ConfigError(f"{source}: key {key!r} is {derived[key]!r}, but feed_forward_proj="
                                  f"{config.feed_forward_proj!r} means {expected!r}")
        if scale is not None and not isinstance(scale, bool):
            raise ConfigError(f"{source}: key 'scale_decoder_outputs' is {scale!r}; expected true or false")
        if scale is True and not config.tie_word_embeddings:
            raise ConfigError(f"{source}: key 'scale_decoder_outputs' is true with tie_word_embeddings false; "
                              "an untied T5 LM head does not scale the decoder output")
        if scale is False and config.tie_word_embeddings:
            # Written by transformers >= 5, which always writes tie_word_embeddings true and ties the LM head only
            # when the checkpoint has no lm_head.weight of its own: our model gets its own lm_head, which the
            # loader drops (tying it) when the checkpoint has none (OPTIONAL_HF_PARTS).
            config = dataclasses.replace(config, tie_word_embeddings=False)
        return config

    def to_hf(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(self.eos_token_id, tuple):
            d["eos_token_id"] = list(self.eos_token_id)
        return {"model_type": MODEL_TYPE, **d, "scale_decoder_outputs": self.tie_word_embeddings}

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        try:
            act, _ = self.activation
        except (ValueError, AttributeError):
            act = None
        if act not in ACTIVATIONS:
            fail("feed_forward_proj", f"'ACT' or 'gated-ACT' with ACT one of {sorted(ACTIVATIONS)}")
        for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                    "relative_attention_num_buckets", "relative_attention_max_distance"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                fail(key, "a positive integer")
        if self.num_decoder_layers is not None and (not isinstance(self.num_decoder_layers, int)
                                                    or self.num_decoder_layers < 1):
            fail("num_decoder_layers", "a positive integer, or null for num_layers")
        if self.relative_attention_num_buckets < 2:
            fail("relative_attention_num_buckets", "at least 2 (half of them per direction in the encoder)")
        if not self.is_encoder_decoder:
            fail("is_encoder_decoder", "true (the zoo builds T5's encoder-decoder models)")


CONFIG = T5Config

PRESETS: dict[str, T5Config] = {
    # Mirrors the config.json of google-t5/t5-small (60M; v1.0: ReLU, tied LM head).
    "t5-small": T5Config(num_decoder_layers=6, decoder_start_token_id=0),
    # Mirrors google/t5-v1_1-small (v1.1: gated GELU, untied LM head, 8 + 8 layers of 6 heads).
    "t5-v1_1-small": T5Config(d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
                              feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0),
    # Tiny, for tests.
    "t5-test": T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=20,
                        decoder_start_token_id=0),
}


def relative_position_bucket(relative: Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> Tensor:
    """Bucket of each relative position key - query (Sec. 2.1): distances below half the
    buckets (of one direction) get a bucket each, longer ones logarithmically spaced buckets up to
    `max_distance`, beyond which all share the last. Bidirectional: half of the buckets for keys
    after the query; otherwise keys after the query all fall in bucket 0 (masked anyway)."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    far = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                   * (num_buckets - exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < exact, distance, far)


def init_weights(module: nn.Module, config: T5Config) -> None:
    """HF's initialisation of T5 (Mesh TensorFlow's): the embedding N(0, f), norms f,
    the query N(0, f / sqrt(d_model * d_kv)) (the score scale folded in), key and value
    N(0, f / sqrt(d_model)), attention outputs N(0, f / sqrt(H * d_kv)), feed-forward inputs
    N(0, f / sqrt(d_model)), outputs N(0, f / sqrt(d_ff)), relative biases N(0, f / sqrt(d_model));
    f = initializer_factor."""
    f, D = config.initializer_factor, config.d_model
    inner = config.num_heads * config.d_kv
    for name, m in module.named_modules():
        if isinstance(m, RMSNorm):
            nn.init.constant_(m.weight, f)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=f * (D ** -0.5 if name.endswith("relative_attention_bias") else 1.0))
        elif isinstance(m, Attention):
            if m.cross:
                nn.init.normal_(m.q.weight, std=f * (D * config.d_kv) ** -0.5)
                nn.init.normal_(m.kv.weight, std=f * D ** -0.5)
            else:
                nn.init.normal_(m.qkv.weight, std=f * D ** -0.5)
                nn.init.normal_(m.qkv.weight[:inner], std=f * (D * config.d_kv) ** -0.5)
            nn.init.normal_(m.proj.weight, std=f * inner ** -0.5)
        elif isinstance(m, FeedForward):
            for linear in (m.fc1, m.gate):
                if linear is not None:
                    nn.init.normal_(linear.weight, std=f * D ** -0.5)
            nn.init.normal_(m.fc2.weight, std=f * config.d_ff ** -0.5)


# ----------------------------------------------------------------------------------------
# Blocks. HF's layout: block i holds `layer`, a list of pre-norm residual sub-layers, each
# x + dropout(module(layer_norm(x))): self-attention, [cross-attention,] feed-forward.
class SelfAttentionLayer(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.SelfAttention = Attention(config.d_model, config.num_heads, head_dim=config.d_kv, bias=False,
                                       out_bias=False, dropout=config.dropout_rate, scale=1.0)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: Tensor, keep: Tensor | None, bias: Tensor, causal: bool, cache=None) -> Tensor:
        return x + self.dropout(self.SelfAttention(self.layer_norm(x), keep=keep, causal=causal, bias=bias,
                                                   cache=cache))


class CrossAttentionLayer(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.EncDecAttention = Attention(config.d_model, config.num_heads, cross=True, head_dim=config.d_kv,
                                         bias=False, out_bias=False, dropout=config.dropout_rate, scale=1.0)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: Tensor, memory: Tensor, keep: Tensor | None, cache=None) -> Tensor:
        return x + self.dropout(self.EncDecAttention(self.layer_norm(x), memory, keep=keep, cache=cache))


class FeedForwardLayer(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        act, gated = config.activation
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.DenseReluDense = FeedForward(config.d_model, config.d_ff, act, gated=gated, bias=False,
                                          dropout=config.dropout_rate)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class Block(nn.Module):
    """One encoder block (self-attention, feed-forward) or decoder block (causal self-attention,
    cross-attention to the encoder output, feed-forward); Sec. 2.1."""

    def __init__(self, config: T5Config, index: int, decoder: bool):
        super().__init__()
        self.decoder = decoder
        self.cache_names = (f"self.{index}", f"cross.{index}")
        layers = [SelfAttentionLayer(config)] + ([CrossAttentionLayer(config)] if decoder else [])
        self.layer = nn.ModuleList([*layers, FeedForwardLayer(config)])

    def forward(self, x: Tensor, keep: Tensor | None, bias: Tensor, memory: Tensor | None = None,
                memory_keep: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        self_cache, cross_cache = (cache.layer(n) if cache is not None else None for n in self.cache_names)
        x = self.layer[0](x, keep, bias, causal=self.decoder, cache=self_cache)  # (B, T, D)
        if self.decoder:
            x = self.layer[1](x, memory, memory_keep, cache=cross_cache)  # (B, T, D)
        return self.layer[-1](x)  # (B, T, D)


class Stack(nn.Module):
    """The encoder or the decoder: blocks over the embedded tokens, then the final norm. Its
    first layer's relative bias (`relative_attention_bias`, buckets -> one scalar per head) is
    computed once and added in every layer's self-attention."""

    def __init__(self, config: T5Config, decoder: bool):
        super().__init__()
        self.decoder = decoder
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, config.num_heads)
        depth = config.decoder_layers if decoder else config.num_layers
        self.block = nn.ModuleList(Block(config, i, decoder) for i in range(depth))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def position_bias(self, queries: Tensor, keys: Tensor) -> Tensor:
        """(B|1, Tq) query and (B|1, Tk) key positions -> (B|1, H, Tq, Tk) additive bias."""
        buckets = relative_position_bucket(keys[:, None, :] - queries[:, :, None], not self.decoder,
                                           self.num_buckets, self.max_distance)  # (B|1, Tq, Tk)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)

    def forward(self, x: Tensor, keep: Tensor | None, queries: Tensor, keys: Tensor, memory: Tensor | None = None,
                memory_keep: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """x (B, T, D) embedded tokens; keep (B, Tk) True = attend; queries/keys their positions."""
        bias = self.position_bias(queries, keys)
        x = self.dropout(x)
        for block in self.block:
            x = block(x, keep, bias, memory, memory_keep, cache)  # (B, T, D)
        return self.dropout(self.final_layer_norm(x))  # (B, T, D)


def _check_shape(name: str, tensor: Tensor | None, shape: tuple[int, ...], why: str) -> None:
    if tensor is not None and tuple(tensor.shape) != shape:
        raise ValueError(f"T5: {name} has shape {tuple(tensor.shape)}; {why} it must be {shape}")


class T5Model(nn.Module):
    """The T5 encoder-decoder, equal to HF `T5Model`: `forward` returns the decoder's last hidden
    state (B, T, D); `encode` the encoder's."""

    context_length = None  # relative positions: no limit on the decoder's length

    def __init__(self, config: T5Config):
        super().__init__()
        config.check("T5Config")
        self.config = config
        self.num_features = config.d_model
        self.num_layers = config.num_layers + config.decoder_layers
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = Stack(config, decoder=False)
        self.decoder = Stack(config, decoder=True)
        init_weights(self, config)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """input_ids (B, S) long; attention_mask (B, S), 1 = token, 0 = padding -> (B, S, D) memory."""
        if input_ids.ndim != 2:
            raise ValueError(f"T5: expected input_ids (B, S), got shape {tuple(input_ids.shape)}")
        _check_shape("attention_mask", attention_mask, tuple(input_ids.shape), "like input_ids,")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, S)
        keep = None if attention_mask is None else attention_mask.bool()
        return self.encoder(self.shared(input_ids), keep, positions, positions)

    def decode_hidden(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
                      attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                      cache: KVCache | None = None) -> Tensor:
        """The decoder over `memory` -> (N, T, D) after its final norm. input_ids (N, T) the new
        tokens; memory (N, S, D); memory_mask (N, S); attention_mask (N, P + T) over the P cached
        positions and the new ones; position_ids (N|1, T), default P .. P + T - 1; cache extended
        in place. Given position_ids, the cached keys are taken to lie right before the first new one."""
        if input_ids.ndim != 2:
            raise ValueError(f"T5: expected decoder input_ids (N, T), got shape {tuple(input_ids.shape)}")
        N, T = input_ids.shape
        P = cache.length(self.decoder.block[0].cache_names[0]) if cache is not None and len(self.decoder.block) else 0
        _check_shape("memory_mask", memory_mask, tuple(memory.shape[:2]), "like memory's first two dimensions,")
        _check_shape("attention_mask", attention_mask, (N, P + T), f"with {P} cached and {T} new positions")
        if position_ids is not None and tuple(position_ids.shape) not in ((N, T), (1, T)):
            raise ValueError(f"T5: position_ids has shape {tuple(position_ids.shape)}; expected {(N, T)} or {(1, T)}")
        device = input_ids.device
        if position_ids is None:
            queries, keys = torch.arange(P, P + T, device=device)[None], torch.arange(P + T, device=device)[None]
        else:
            queries = position_ids
            keys = torch.cat([position_ids[:, :1] - P + torch.arange(P, device=device), position_ids], dim=1)
        keep = None if attention_mask is None else attention_mask.bool()
        memory_keep = None if memory_mask is None else memory_mask.bool()
        return self.decoder(self.shared(input_ids), keep, queries, keys, memory, memory_keep, cache)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: the decoder's (B, T, D) last hidden state over the encoded input_ids."""
        if decoder_input_ids is None:
            raise ValueError("T5: decoder_input_ids is required (shift the labels right with lit_tasks.zoo.base.shift_right)")
        memory = self.encode(input_ids, attention_mask)
        return self.decode_hidden(decoder_input_ids, memory, attention_mask, decoder_attention_mask)

    def layer_index(self, param_name: str) -> int:
        """Depth for layer-wise lr decay: 0 the embedding and relative biases, encoder block i -> i + 1,
        decoder block i -> num_layers(encoder) + i + 1, the final norms and lm_head num_layers + 1."""
        if param_name.startswith(("shared.", "encoder.relative_attention_bias.", "decoder.relative_attention_bias.")):
            return 0
        match = re.match(r"(encoder|decoder)\.block\.(\d+)\.", param_name)
        if match is None:
            if param_name.startswith(("encoder.final_layer_norm.", "decoder.final_layer_norm.", "lm_head.")):
                return self.num_layers + 1
            raise ValueError(f"T5.layer_index: {param_name!r} is not a parameter name of this model")
        offset = self.config.num_layers if match.group(1) == "decoder" else 0
        return offset + int(match.group(2)) + 1


class T5ForConditionalGeneration(T5Model):
    """T5 with its language-model head, equal to HF `T5ForConditionalGeneration`: scores over the
    vocabulary for each decoder position, (B, T, vocab_size). Tied (v1.0): the decoder output times
    d_model**-0.5, times the shared embedding matrix; untied (v1.1): `lm_head`, unscaled. A model
    whose checkpoint has no lm_head.weight is tied without the scaling (as transformers >= 5 does)."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=config.initializer_factor)

    def logits(self, hidden: Tensor) -> Tensor:
        """(N, T, D) decoder output -> (N, T, V)."""
        if self.config.tie_word_embeddings:
            return F.linear(hidden * self.config.d_model ** -0.5, self.shared.weight)
        return F.linear(hidden, self.shared.weight if self.lm_head is None else self.lm_head.weight)

    def decode(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
               attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        """`decode_hidden`'s arguments -> (N, T, V) logits: the decoder interface of lit_tasks.generation."""
        return self.logits(self.decode_hidden(input_ids, memory, memory_mask, attention_mask, position_ids, cache))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing -> (B, T, V) logits."""
        return self.logits(super().forward(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask))


MODEL = T5Model
BLOCKS = (Block,)

# Checkpoints may repeat the shared embedding as each stack's embed_tokens (older transformers wrote them).
_EMBED_COPIES = (("encoder.embed_tokens.weight", "shared.weight"), ("decoder.embed_tokens.weight", "shared.weight"))
HEADS: dict[str, Head] = {
    "base": Head("T5Model", T5Model, parts=("encoder.embed_tokens.", "decoder.embed_tokens."), tied=_EMBED_COPIES),
    "seq2seq_lm": Head("T5ForConditionalGeneration", T5ForConditionalGeneration,
                       parts=("encoder.embed_tokens.", "decoder.embed_tokens."), tied=_EMBED_COPIES),
}
# A tied LM head has no weight: a checkpoint without lm_head.weight gives a model without lm_head.
OPTIONAL_HF_PARTS = {"lm_head.": "lm_head"}
# Older checkpoints carry a never-used relative bias in the decoder's first cross-attention.
IGNORED_HF_KEYS = (r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight",)


# ----------------------------------------------------------------------------------------
# HF key names -> ours.
_SELF_QKV = ("SelfAttention.q", "SelfAttention.k", "SelfAttention.v")
_CROSS_KV = ("EncDecAttention.k", "EncDecAttention.v")
_RENAMES = {
    "block.0.layer.0.SelfAttention.relative_attention_bias": "relative_attention_bias",
    "SelfAttention.o": "SelfAttention.proj",
    "EncDecAttention.o": "EncDecAttention.proj",
    "DenseReluDense.wi_0": "DenseReluDense.gate",
    "DenseReluDense.wi_1": "DenseReluDense.fc1",
    "DenseReluDense.wi": "DenseReluDense.fc1",
    "DenseReluDense.wo": "DenseReluDense.fc2",
}


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF T5 keys -> our state_dict keys. Keys it does not know pass through unchanged, so that a
    strict load names them."""
    sd = keymaps.fuse(keymaps.fuse(sd, _SELF_QKV, "SelfAttention.qkv"), _CROSS_KV, "EncDecAttention.kv")
    return keymaps.rename(sd, _RENAMES)


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`: fc1 is wi_1 beside a gate (wi_0), else wi."""
    out = {}
    for key, tensor in sd.items():
        if ".DenseReluDense.fc1." in key:
            gated = key.replace(".fc1.", ".gate.") in sd
            key = key.replace(".fc1.", ".wi_1." if gated else ".wi.")
        out[key] = tensor
    out = keymaps.rename(out, {k: v for k, v in keymaps.inverse(_RENAMES).items() if k != "DenseReluDense.fc1"})
    return keymaps.split(keymaps.split(out, "SelfAttention.qkv", _SELF_QKV), "EncDecAttention.kv", _CROSS_KV)
