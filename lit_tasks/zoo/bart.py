"""BART: Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural
Language Generation, Translation, and Comprehension" (ACL), https://arxiv.org/abs/1910.13461;
and the modules of mBART (Liu et al. 2020, https://arxiv.org/abs/2001.08210), whose family
file `mbart.py` reuses them.

The standard Transformer encoder-decoder (Vaswani et al. 2017, Sec. 3.1; BART Sec. 2.1) with
GeLU and learned positions: token embeddings (one matrix, `shared`, for the encoder, the
decoder and the LM head; times sqrt(d_model) when `scale_embedding`) plus learned positions,
a LayerNorm (`layernorm_embedding`), then the blocks. BART's blocks are post-LN:
x = LN(x + sublayer(x)). mBART's are pre-LN, x = x + sublayer(LN(x)), and each stack ends in
one more LayerNorm (`layer_norm`) (mBART Sec. 2.2: "an additional layer-normalization layer on
top of both the encoder and decoder"). The position table has max_position_embeddings + 2
rows: position p reads row p + 2 (fairseq kept two rows for the padding index). The LM head is
`shared` (tied) plus `final_logits_bias`, a (1, V) buffer that HF saves and never trains.

The encoder-decoder contract (shared with T5; `lit_tasks.generation` drives it):
    encode(input_ids (B, S), attention_mask (B, S) | None) -> memory (B, S, D)
    decode(input_ids (N, T), memory, memory_mask (N, S), attention_mask (N, P + T),
           position_ids (N, T), cache: KVCache) -> logits (N, T, V)   [the base model: hidden states]
    forward(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask) -> logits (B, T, V)
Decoder block i caches its self-attention keys and values under "self.{i}" (appended each
step) and its cross-attention ones under "cross.{i}" (computed from the memory at the first
call, then reused). Decoder positions default to P + arange(T), P the cached length, as HF
computes them (from the cache, not from the mask): a left-padded decoder input puts its first
real token at position k (k pads before it) there; pass `position_ids` to count from the first
real token instead (HF's BART ignores position ids). As in HF, `forward` without
decoder_input_ids decodes `shift_right(input_ids)` (BART's denoising setup, Sec. 2.2).

Weights load from HF-format folders (`model_type: "bart"`) through `lit_tasks.zoo.from_pretrained`.
Our names, HF's in brackets where they differ (HF keeps the encoder's and decoder's
`embed_tokens.weight` as tied copies of `shared.weight`; older checkpoints save them, we drop them):
    shared, {encoder,decoder}.embed_positions, {encoder,decoder}.layernorm_embedding,
    {encoder,decoder}.layer_norm (mBART), *.self_attn_layer_norm, *.encoder_attn_layer_norm,
    *.final_layer_norm                                        [the same]
    *.self_attn.qkv          [*.self_attn.{q,k,v}_proj, concatenated]
    *.encoder_attn.q, *.encoder_attn.kv   [*.encoder_attn.q_proj, *.encoder_attn.{k,v}_proj]
    *.self_attn.proj, *.encoder_attn.proj [*.out_proj]
    *.ffn.fc1, *.ffn.fc2     [*.fc1, *.fc2]
    final_logits_bias        [the same]; lm_head.weight in a checkpoint must equal model.shared.weight
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import keymaps
from lit_tasks.zoo.base import Head, config_from_dict, shift_right
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward, KVCache

MODEL_TYPE = "bart"
MODALITY = "text"
HF_BASE_PREFIX = "model"
POSITION_OFFSET = 2  # position p reads row p + 2 of embed_positions

# Keys of older config.json files that change no model: generation settings (transformers 5
# keeps them in generation_config.json; lit_tasks.generation takes its own arguments), the
# classification head's dropout under its old name (we build no classification head),
# training switches and old bookkeeping.
_IGNORED_CONFIG_KEYS = frozenset({
    "num_beams", "max_length", "min_length", "no_repeat_ngram_size", "length_penalty", "early_stopping",
    "force_bos_token_to_be_generated", "output_past", "gradient_checkpointing", "_num_labels", "classif_dropout",
})


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class BartConfig:
    """The fields and defaults of an HF `config.json` with `model_type: "bart"`.

    `encoder_layerdrop` / `decoder_layerdrop` are honoured as HF does: in training each layer
    is skipped with that probability (Fan et al. 2019, LayerDrop); in eval they change nothing.
    `classifier_dropout` (HF's sequence-classification head) is kept and written back; no model
    here reads it. Older config.json keys of the fairseq port (`normalize_before`,
    `add_final_layer_norm`, `add_bias_logits`, `normalize_embedding`, `static_position_embeddings`,
    `extra_pos_embeddings`) are accepted at the values this family implements (`LEGACY_KEYS`),
    else refused by name; `num_hidden_layers` (HF's alias) must equal encoder_layers.
    """

    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    activation_function: str = "gelu"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    classifier_dropout: float = 0.0
    scale_embedding: bool = False
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | tuple[int, ...] | None = 2
    decoder_start_token_id: int | None = 2
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | tuple[int, ...] | None = 2
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True

    MODEL_TYPE: ClassVar[str] = "bart"
    NORMALIZE_BEFORE: ClassVar[bool] = False  # pre-LN blocks and a final LayerNorm per stack (mBART)
    # Keys of the fairseq port -> the only value this family implements.
    LEGACY_KEYS: ClassVar[dict[str, Any]] = {
        "normalize_before": False, "add_final_layer_norm": False, "add_bias_logits": False,
        "normalize_embedding": True, "static_position_embeddings": False, "extra_pos_embeddings": POSITION_OFFSET,
    }
    LAYOUT_KEYS: ClassVar[tuple[str, ...]] = ("normalize_before", "add_final_layer_norm")
    LAYOUT_HINT: ClassVar[str] = " (a pre-LN checkpoint with final LayerNorms is model_type 'mbart')"

    # HF's BartConfig answers to the generic names too (its attribute_map); tasks read them.
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_layers

    @classmethod
    def from_hf(cls, d: dict, source: str):
        d = dict(d)
        for key, implemented in cls.LEGACY_KEYS.items():
            value = d.pop(key, implemented)
            if value != implemented:
                raise ConfigError(f"{source}: key {key!r} is {value!r}; a {cls.MODEL_TYPE} model implements only "
                                  f"{implemented!r}{cls.LAYOUT_HINT if key in cls.LAYOUT_KEYS else ''}")
        alias = d.pop("num_hidden_layers", None)
        config = config_from_dict(cls, d, source=source, ignore=_IGNORED_CONFIG_KEYS)
        if alias is not None and alias != config.encoder_layers:
            raise ConfigError(f"{source}: key 'num_hidden_layers' is {alias!r}; expected encoder_layers="
                              f"{config.encoder_layers} (HF's alias of it)")
        config.check(source)
        return config

    def to_hf(self) -> dict:
        d = {k: _as_list(v) for k, v in dataclasses.asdict(self).items()}
        return {"model_type": self.MODEL_TYPE, **d}

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        if self.activation_function not in ACTIVATIONS:
            fail("activation_function", f"one of {sorted(ACTIVATIONS)}")
        for key in ("vocab_size", "d_model", "max_position_embeddings", "encoder_ffn_dim", "decoder_ffn_dim"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                fail(key, "a positive integer")
        for key in ("encoder_layers", "decoder_layers"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                fail(key, "a non-negative integer")
        for key in ("encoder_attention_heads", "decoder_attention_heads"):
            if getattr(self, key) < 1 or self.d_model % getattr(self, key):
                fail(key, f"a positive divisor of d_model={self.d_model}")
        for key in ("encoder_layerdrop", "decoder_layerdrop", "dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                fail(key, "a probability in [0, 1)")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            fail("pad_token_id", f"a token id below vocab_size={self.vocab_size}, or null")
        if not self.is_encoder_decoder:
            fail("is_encoder_decoder", "true (BART's decoder-only form, BartForCausalLM, is not built)")
        if not self.tie_word_embeddings:
            fail("tie_word_embeddings", "true (the LM head is always the shared token embedding matrix)")


CONFIG = BartConfig

PRESETS: dict[str, BartConfig] = {
    # Mirrors facebook/bart-base (6 + 6 layers, d_model 768, 140M parameters).
    "bart-base": BartConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                            decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                            attention_dropout=0.1, activation_dropout=0.1, forced_bos_token_id=0),
    # Mirrors facebook/bart-large-cnn (bart-large fine-tuned on CNN/DailyMail; its vocabulary drops one token).
    "bart-large-cnn": BartConfig(vocab_size=50264, forced_bos_token_id=0),
    # Tiny, for tests.
    "bart-test": BartConfig(vocab_size=99, max_position_embeddings=64, d_model=32, encoder_layers=2,
                            decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                            encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=1, bos_token_id=0,
                            eos_token_id=2, decoder_start_token_id=2),
}


def init_weights(module: nn.Module, std: float) -> None:
    """HF's initialisation: N(0, init_std) Linear and Embedding weights (the padding row zero),
    zero biases, LayerNorm (1, 0); final_logits_bias stays zero."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Sublayer(nn.Module):
    """The residual wrapper around one sublayer: post-LN, LN(x + dropout(f(x))) (BART, Vaswani
    et al. Sec. 5.4), or pre-LN, x + dropout(f(LN(x))) (mBART)."""

    def __init__(self, pre_norm: bool, dropout: float) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, norm: nn.LayerNorm, branch: Callable[[Tensor], Tensor]) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(branch(norm(x)))
        return norm(x + self.dropout(branch(x)))


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the feed-forward network (Vaswani et al. Sec. 3.1)."""

    def __init__(self, config: BartConfig) -> None:
        super().__init__()
        D = config.d_model
        self.self_attn = Attention(D, config.encoder_attention_heads, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(D)
        self.ffn = FeedForward(D, config.encoder_ffn_dim, config.activation_function, dropout=config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(D)
        self.residual = Sublayer(config.NORMALIZE_BEFORE, config.dropout)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        x = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, keep=keep))  # (B, S, D)
        return self.residual(x, self.final_layer_norm, self.ffn)  # (B, S, D)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, feed-forward (Sec. 3.1)."""

    def __init__(self, config: BartConfig, index: int) -> None:
        super().__init__()
        D, H = config.d_model, config.decoder_attention_heads
        self.self_name, self.cross_name = f"self.{index}", f"cross.{index}"
        self.self_attn = Attention(D, H, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(D)
        self.encoder_attn = Attention(D, H, cross=True, dropout=config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(D)
        self.ffn = FeedForward(D, config.decoder_ffn_dim, config.activation_function, dropout=config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(D)
        self.residual = Sublayer(config.NORMALIZE_BEFORE, config.dropout)

    def forward(self, x: Tensor, keep: Tensor | None, memory: Tensor, memory_keep: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        own = cache.layer(self.self_name) if cache is not None else None
        cross = cache.layer(self.cross_name) if cache is not None else None
        x = self.residual(x, self.self_attn_layer_norm,
                          lambda h: self.self_attn(h, keep=keep, causal=True, cache=own))  # (N, T, D)
        x = self.residual(x, self.encoder_attn_layer_norm,
                          lambda h: self.encoder_attn(h, memory, keep=memory_keep, cache=cross))  # (N, T, D)
        return self.residual(x, self.final_layer_norm, self.ffn)  # (N, T, D)


class Stack(nn.Module):
    """What the encoder and the decoder share: learned positions, `layernorm_embedding`, the
    layers (skipped in training with probability `layerdrop`) and, pre-LN, a final `layer_norm`."""

    def __init__(self, config: BartConfig, layers: list[nn.Module], layerdrop: float) -> None:
        super().__init__()
        D = config.d_model
        self.embed_positions = nn.Embedding(config.max_position_embeddings + POSITION_OFFSET, D)
        self.layernorm_embedding = nn.LayerNorm(D)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(D) if config.NORMALIZE_BEFORE else None
        self.layerdrop = layerdrop

    def embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """Scaled token embeddings (B, T, D) plus the positions' rows, normalised."""
        return self.dropout(self.layernorm_embedding(tokens + self.embed_positions(positions + POSITION_OFFSET)))

    def active_layers(self) -> list[nn.Module]:
        """The layers to run: all of them, but in training each is dropped with p = layerdrop."""
        if not self.training or self.layerdrop == 0.0:
            return list(self.layers)
        return [layer for layer in self.layers if torch.rand([]).item() >= self.layerdrop]

    def finish(self, x: Tensor) -> Tensor:
        return x if self.layer_norm is None else self.layer_norm(x)


class BartModel(nn.Module):
    """The BART encoder-decoder, equal to HF `BartModel`: `encode`, `decode` (hidden states)
    and `forward` -> the decoder's last hidden state (B, T, D)."""

    CONFIG: ClassVar[type] = BartConfig

    def __init__(self, config: BartConfig) -> None:
        super().__init__()
        if type(config) is not self.CONFIG:
            raise TypeError(f"{type(self).__name__} takes a {self.CONFIG.__name__}, got a {type(config).__name__}")
        config.check(type(config).__name__)
        self.config = config
        self.num_features = config.d_model
        self.num_layers = config.encoder_layers + config.decoder_layers
        self.context_length = config.max_position_embeddings
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.shared = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = Stack(config, [EncoderLayer(config) for _ in range(config.encoder_layers)],
                             config.encoder_layerdrop)
        self.decoder = Stack(config, [DecoderLayer(config, i) for i in range(config.decoder_layers)],
                             config.decoder_layerdrop)
        init_weights(self, config.init_std)

    def _check_length(self, what: str, length: int) -> None:
        if length > self.context_length:
            raise ValueError(f"{type(self).__name__}: {what} = {length} exceed max_position_embeddings="
                             f"{self.context_length}")

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """input_ids (B, S) long; attention_mask (B, S), 1 = token, 0 = padding -> memory (B, S, D),
        the encoder output after its final norm (HF's encoder_last_hidden_state)."""
        if input_ids.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected input_ids (B, S), got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        self._check_length(f"{S} source positions", S)
        if attention_mask is not None and tuple(attention_mask.shape) != (B, S):
            raise ValueError(f"{type(self).__name__}: attention_mask has shape {tuple(attention_mask.shape)}; "
                             f"with input_ids {(B, S)} it must be {(B, S)}")
        positions = torch.arange(S, device=input_ids.device)[None]  # (1, S)
        x = self.encoder.embed(self.shared(input_ids) * self.embed_scale, positions)  # (B, S, D)
        keep = None if attention_mask is None else attention_mask.bool()  # (B, S)
        for layer in self.encoder.active_layers():
            x = layer(x, keep)
        return self.encoder.finish(x)  # (B, S, D)

    def decode(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
               attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        """The decoder over `memory` -> hidden states (N, T, D). input_ids (N, T), the new tokens;
        memory (N, S, D); memory_mask (N, S), 1 = source token; attention_mask (N, P + T) over the
        P cached positions and the new ones; position_ids (N, T) or (1, T), default P .. P + T - 1;
        cache: earlier steps' keys and values, extended in place."""
        if input_ids.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected decoder input_ids (N, T), got shape "
                             f"{tuple(input_ids.shape)}")
        N, T = input_ids.shape
        P = cache.length(self.decoder.layers[0].self_name) if cache is not None and len(self.decoder.layers) else 0
        for name, tensor, shapes in (("memory", memory, [(N, memory.shape[1], self.config.d_model)]),
                                     ("memory_mask", memory_mask, [(N, memory.shape[1])]),
                                     ("attention_mask", attention_mask, [(N, P + T)]),
                                     ("position_ids", position_ids, [(N, T), (1, T)])):
            if tensor is not None and tuple(tensor.shape) not in shapes:
                raise ValueError(f"{type(self).__name__}.decode: {name} has shape {tuple(tensor.shape)}; with "
                                 f"input_ids {(N, T)} and {P} cached positions it must be "
                                 f"{' or '.join(map(str, shapes))}")
        if position_ids is None:
            self._check_length(f"{P} cached + {T} new decoder positions", P + T)
            position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)
        elif T and int(position_ids.max()) >= self.context_length:
            raise ValueError(f"{type(self).__name__}: position id {int(position_ids.max())} is beyond "
                             f"max_position_embeddings={self.context_length}")
        x = self.decoder.embed(self.shared(input_ids) * self.embed_scale, position_ids)  # (N, T, D)
        keep = None if attention_mask is None else attention_mask.bool()  # (N, P + T)
        memory_keep = None if memory_mask is None else memory_mask.bool()  # (N, S)
        for layer in self.decoder.active_layers():
            x = layer(x, keep, memory, memory_keep, cache)
        return self.decoder.finish(x)  # (N, T, D)

    def shift_inputs(self, input_ids: Tensor) -> Tensor:
        """The decoder inputs HF derives from the source when given none."""
        return shift_right(input_ids, self.config.decoder_start_token_id, self.config.pad_token_id)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: the decoder's last hidden state (B, T, D) over the encoded sources;
        decoder_input_ids default to `shift_inputs(input_ids)` (as HF's)."""
        if decoder_input_ids is None:
            decoder_input_ids = self.shift_inputs(input_ids)
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask)  # (B, T, D)

    def layer_index(self, param_name: str) -> int:
        """Depth for layer-wise lr decay: 0 the embeddings (shared, positions, layernorm_embedding),
        i + 1 encoder layer i, encoder_layers + j + 1 decoder layer j, num_layers + 1 the final norms."""
        match = re.match(r"(encoder|decoder)\.layers\.(\d+)\.", param_name)
        if match:
            return int(match.group(2)) + 1 + (self.config.encoder_layers if match.group(1) == "decoder" else 0)
        if re.match(r"shared\.|(encoder|decoder)\.(embed_positions|layernorm_embedding)\.", param_name):
            return 0
        if re.match(r"(encoder|decoder)\.layer_norm\.", param_name):
            return self.num_layers + 1
        raise ValueError(f"{type(self).__name__}.layer_index: {param_name!r} is not a parameter name of this model")


class BartForConditionalGeneration(nn.Module):
    """Next-token scores of the decoder (BART Sec. 3.4, summarisation and translation): its
    hidden states times `shared` (tied) plus `final_logits_bias` -> (B, T, vocab_size) logits.
    Holds the base model as `self.model`."""

    BASE: ClassVar[type] = BartModel

    def __init__(self, config: BartConfig) -> None:
        super().__init__()
        self.config = config
        self.model = self.BASE(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))  # (1, V), not trained (as HF)

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def context_length(self) -> int:
        return self.model.context_length

    def layer_index(self, param_name: str) -> int:
        """As `BartModel.layer_index` under `model.`; anything else is num_layers + 1."""
        if param_name.startswith("model."):
            return self.model.layer_index(param_name.removeprefix("model."))
        return self.num_layers + 1

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model.encode(input_ids, attention_mask)  # (B, S, D)

    def decode(self, input_ids: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
               attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        """`BartModel.decode`'s hidden states -> logits (N, T, V)."""
        hidden = self.model.decode(input_ids, memory, memory_mask, attention_mask, position_ids, cache)
        return F.linear(hidden, self.model.shared.weight) + self.final_logits_bias  # (N, T, V)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing -> logits (B, T, V); decoder_input_ids default to the shifted input_ids."""
        if decoder_input_ids is None:
            decoder_input_ids = self.model.shift_inputs(input_ids)
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask)  # (B, T, V)


MODEL = BartModel
BLOCKS = (EncoderLayer, DecoderLayer)

HEADS: dict[str, Head] = {
    "base": Head("BartModel", BartModel),
    # transformers saves no lm_head.weight (tied to model.shared); older checkpoints repeat it.
    "seq2seq_lm": Head("BartForConditionalGeneration", BartForConditionalGeneration,
                       parts=("lm_head.", "final_logits_bias"), tied=(("lm_head.weight", "model.shared.weight"),)),
}
# The tied copies of shared.weight that older checkpoints save; we keep one matrix.
IGNORED_HF_KEYS = (r"(encoder|decoder)\.embed_tokens\.weight",)


# ----------------------------------------------------------------------------------------
# HF key names <-> ours. Cross-attention first (its q_proj is not fused), then self-attention.
_CROSS_KV = ("encoder_attn.k_proj", "encoder_attn.v_proj")
_QKV = ("q_proj", "k_proj", "v_proj")
_CROSS_Q = {"encoder_attn.q_proj": "encoder_attn.q"}
_RENAMES = {"out_proj": "proj", "fc1": "ffn.fc1", "fc2": "ffn.fc2"}


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF BART/mBART keys (with or without "model.") -> our state_dict keys. Keys it does not
    know pass through unchanged, so that a strict load names them."""
    sd = keymaps.rename(keymaps.fuse(sd, _CROSS_KV, "encoder_attn.kv"), _CROSS_Q)
    return keymaps.rename(keymaps.fuse(sd, _QKV, "qkv"), _RENAMES)


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`."""
    sd = keymaps.split(keymaps.rename(sd, keymaps.inverse(_RENAMES)), "qkv", _QKV)
    return keymaps.split(keymaps.rename(sd, keymaps.inverse(_CROSS_Q)), "encoder_attn.kv", _CROSS_KV)
