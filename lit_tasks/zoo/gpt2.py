"""GPT-2: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (OpenAI
report), https://openai.com/research/better-language-models.

A decoder-only Transformer (Radford et al. 2018, "Improving Language Understanding by
Generative Pre-Training", Sec. 3.1): token plus learned position embeddings, a stack of
causal self-attention blocks and a final LayerNorm; the language-model head is the token
embedding matrix itself (tied). GPT-2 changes GPT-1 as its Sec. 2.3 says: LayerNorm moves to
the input of each sub-block (pre-LN), one more LayerNorm follows the last block (`ln_f`), and
the output projections of the residual branches start scaled by 1/sqrt(N), N = 2 * n_layer
residual branches. Heads return raw logits; losses belong to the tasks.

Decoding step by step: pass a `layers.KVCache` (block i keeps its keys and values under
"self.{i}") and only the new tokens; positions continue after the cached ones unless
`position_ids` says otherwise (left-padded batches), and `attention_mask` covers the cached
positions and the new ones.

Weights load from HF-format folders (`model_type: "gpt2"`) through `lit_tasks.zoo.from_pretrained`,
with or without the `transformer.` prefix (openai-community/gpt2 has none). HF's GPT-2 keeps its
projections as `Conv1D` modules, whose weights are (in, out): the key map transposes them to
(out, in) Linears. Our parameter names, HF's in brackets where they differ:
    wte, wpe, h.{i}.ln_1, h.{i}.ln_2, ln_f      [the same]
    h.{i}.attn.qkv, h.{i}.attn.proj             [h.{i}.attn.c_attn, h.{i}.attn.c_proj], transposed
    h.{i}.mlp.fc1, h.{i}.mlp.fc2                [h.{i}.mlp.c_fc, h.{i}.mlp.c_proj], transposed
    score                                       [the same]
The LM head has no weight of its own (`lm_head.weight` in a checkpoint must equal `wte.weight`).
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
from lit_tasks.zoo.base import Head, config_from_dict
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward, KVCache

MODEL_TYPE = "gpt2"
MODALITY = "text"
HF_BASE_PREFIX = "transformer"

# Training-time switches of older config.json files that do not change the model, and the
# label count older transformers versions wrote beside id2label.
_IGNORED_CONFIG_KEYS = frozenset({"gradient_checkpointing", "_num_labels"})


@dataclass(frozen=True)
class GPT2Config:
    """The fields and defaults of an HF `config.json` with `model_type: "gpt2"`.

    The `summary_*` keys configure the multiple-choice head of HF's GPT2DoubleHeadsModel, which
    the zoo does not build: they are accepted, kept and written back, and change none of our
    models. `reorder_and_upcast_attn` asks for float32 attention scores and softmax under mixed
    precision (HF honours it only in its eager attention, not in its default SDPA one); in
    float32 it changes nothing, and we, like HF's SDPA path, leave the precision to SDPA.
    Older config.json files also carry `n_ctx`, which must equal `n_positions` (`from_hf`).
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True  # False: scores are not divided by sqrt(head size)
    scale_attn_by_inverse_layer_idx: bool = False  # True: block i's scores are further divided by i + 1
    reorder_and_upcast_attn: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | tuple[int, ...] | None = 50256
    pad_token_id: int | None = None  # the sequence-classification head reads it without an attention_mask
    tie_word_embeddings: bool = True

    # HF's GPT2Config answers to the generic names too (its attribute_map); tasks read them.
    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def max_position_embeddings(self) -> int:
        return self.n_positions

    @property
    def num_attention_heads(self) -> int:
        return self.n_head

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layer

    @property
    def inner_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_hf(cls, d: dict, source: str) -> GPT2Config:
        d = dict(d)
        n_ctx = d.pop("n_ctx", None)
        config = config_from_dict(cls, d, source=source, ignore=_IGNORED_CONFIG_KEYS)
        if n_ctx is not None and n_ctx != config.n_positions:
            raise ConfigError(f"{source}: key 'n_ctx' is {n_ctx!r}; expected n_positions={config.n_positions} "
                              "(a causal span other than the positions is not supported)")
        config.check(source)
        return config

    def to_hf(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(self.eos_token_id, tuple):
            d["eos_token_id"] = list(self.eos_token_id)
        return {"model_type": MODEL_TYPE, **d}

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        if self.activation_function not in ACTIVATIONS:
            fail("activation_function", f"one of {sorted(ACTIVATIONS)}")
        if self.n_head < 1 or self.n_embd % self.n_head:
            fail("n_head", f"a positive divisor of n_embd={self.n_embd}")
        if self.n_inner is not None and self.n_inner < 1:
            fail("n_inner", "a positive width, or null for 4 * n_embd")
        if not self.tie_word_embeddings:
            fail("tie_word_embeddings", "true (the LM head is always the token embedding matrix)")


CONFIG = GPT2Config

PRESETS: dict[str, GPT2Config] = {
    # Mirrors the config.json of openai-community/gpt2 (124M; all HF defaults, plus n_ctx=1024).
    "gpt2": GPT2Config(),
    # Mirrors distilbert/distilgpt2 (GPT-2 distilled into 6 layers).
    "distilgpt2": GPT2Config(n_layer=6),
    # Tiny, for tests.
    "gpt2-test": GPT2Config(vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                            bos_token_id=98, eos_token_id=98),
}


@dataclass
class GPT2Output:
    """The HF base-model outputs of GPT-2.

    last_hidden_state: (B, T, D) after the final LayerNorm `ln_f`.
    hidden_states: on request, as HF gives them: the embeddings, then every block's output,
        the last one after `ln_f` (so hidden_states[-1] is last_hidden_state); n_layer + 1 in all.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


def init_weights(module: nn.Module, config: GPT2Config) -> None:
    """HF's initialisation of GPT-2: N(0, initializer_range) weights and embeddings, zero biases,
    LayerNorm (1, 0); the residual branches' output projections (attn.proj, mlp.fc2) drawn with
    std / sqrt(2 * n_layer) (Sec. 2.3)."""
    std = config.initializer_range
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            residual = name.endswith(("attn.proj", "mlp.fc2"))
            nn.init.normal_(m.weight, std=std / math.sqrt(2 * config.n_layer) if residual else std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Block(nn.Module):
    """One pre-LN decoder block (Sec. 2.3): x + Attn(LN(x)), then x + MLP(LN(x)), causal
    self-attention, dropout on each residual branch."""

    def __init__(self, config: GPT2Config, index: int):
        super().__init__()
        D = config.n_embd
        scale = (D // config.n_head) ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= index + 1
        self.cache_name = f"self.{index}"
        self.ln_1 = nn.LayerNorm(D, eps=config.layer_norm_epsilon)
        self.attn = Attention(D, config.n_head, dropout=config.attn_pdrop, scale=scale)
        self.ln_2 = nn.LayerNorm(D, eps=config.layer_norm_epsilon)
        self.mlp = FeedForward(D, config.inner_size, config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, keep: Tensor | None, cache: KVCache | None = None) -> Tensor:
        layer_cache = cache.layer(self.cache_name) if cache is not None else None
        x = x + self.dropout(self.attn(self.ln_1(x), keep=keep, causal=True, cache=layer_cache))  # (B, T, D)
        return x + self.dropout(self.mlp(self.ln_2(x)))  # (B, T, D)


class GPT2(nn.Module):
    """The GPT-2 decoder, equal to HF `GPT2Model`."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        config.check("GPT2Config")
        self.config = config
        self.num_features = config.n_embd
        self.num_layers = config.n_layer
        self.context_length = config.n_positions
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        init_weights(self, config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
    ) -> GPT2Output:
        """input_ids (B, T) long, the new tokens; attention_mask (B, P + T), 1 for tokens, 0 for
        padding, over the P positions in `cache` and the new ones; position_ids (B, T) or (1, T),
        default P .. P + T - 1; token_type_ids (B, T), embedded by `wte` and added (as HF does);
        cache: the keys and values of earlier steps, extended in place."""
        if input_ids.ndim != 2:
            raise ValueError(f"GPT2: expected input_ids (B, T), got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        P = cache.length(self.h[0].cache_name) if cache is not None and len(self.h) else 0
        if P + T > self.context_length:
            raise ValueError(f"GPT2: {P} cached + {T} new positions = {P + T} exceed n_positions={self.context_length}")
        for name, tensor, shapes in (("attention_mask", attention_mask, [(B, P + T)]),
                                     ("position_ids", position_ids, [(B, T), (1, T)]),
                                     ("token_type_ids", token_type_ids, [(B, T)])):
            if tensor is not None and tuple(tensor.shape) not in shapes:
                raise ValueError(f"GPT2: {name} has shape {tuple(tensor.shape)}; with input_ids {(B, T)} and {P} "
                                 f"cached positions it must be {' or '.join(map(str, shapes))}")
        if position_ids is None:
            position_ids = torch.arange(P, P + T, device=input_ids.device)[None]  # (1, T)
        x = self.wte(input_ids) + self.wpe(position_ids)  # (B, T, D)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x)
        keep = None if attention_mask is None else attention_mask.bool()  # (B, P + T) keys to attend
        hidden_states = [x] if output_hidden_states else None  # kept only on request: frees memory
        for block in self.h:
            x = block(x, keep, cache)  # (B, T, D)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.ln_f(x)  # (B, T, D)
        if hidden_states is not None:
            hidden_states[-1] = x
        return GPT2Output(x, tuple(hidden_states) if hidden_states is not None else None)

    def layer_index(self, param_name: str) -> int:
        """Depth for layer-wise lr decay: 0 embeddings (wte, wpe), i + 1 block i, num_layers + 1 ln_f."""
        if param_name.startswith(("wte.", "wpe.")):
            return 0
        if param_name.startswith("ln_f."):
            return self.num_layers + 1
        match = re.match(r"h\.(\d+)\.", param_name)
        if match is None:
            raise ValueError(f"GPT2.layer_index: {param_name!r} is not a parameter name of this model")
        return int(match.group(1)) + 1


# ----------------------------------------------------------------------------------------
# Heads. Each holds the decoder as `self.transformer` and returns raw logits.
class GPT2WithHead(nn.Module):
    """What the heads share: the decoder (`self.transformer`), its context length and the
    lr-decay depth."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2(config)

    @property
    def num_layers(self) -> int:
        return self.transformer.num_layers

    @property
    def context_length(self) -> int:
        return self.transformer.context_length

    def layer_index(self, param_name: str) -> int:
        """As `GPT2.layer_index` under `transformer.`; the head is num_layers + 1."""
        if param_name.startswith("transformer."):
            return self.transformer.layer_index(param_name.removeprefix("transformer."))
        return self.num_layers + 1


class GPT2LMHeadModel(GPT2WithHead):
    """Next-token scores (Sec. 2): the final hidden states times the token embedding matrix
    (tied, no weight of its own) -> (B, T, vocab_size) logits. Its forward is the decoder
    interface of `lit_tasks.generation`: call it with a KVCache and the new tokens only.
    `logits_to_keep` k > 0 scores the last k positions only (B, k, V): generation needs the last
    one, and scoring a whole prompt over a 50k vocabulary costs more than the blocks do."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                token_type_ids: Tensor | None = None, cache: KVCache | None = None, logits_to_keep: int = 0) -> Tensor:
        hidden = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, cache).last_hidden_state
        return F.linear(hidden[:, -logits_to_keep:], self.transformer.wte.weight)  # (B, T or k, V)


def last_token(input_ids: Tensor, attention_mask: Tensor | None, pad_token_id: int | None) -> Tensor:
    """(B,) index of each row's last token: the rightmost position whose attention_mask is 1;
    without a mask, HF's rule: the rightmost token that is not pad_token_id (position 0 when
    all are), or the last position for a single row when the config has no pad_token_id."""
    B, T = input_ids.shape
    if attention_mask is not None:
        real = attention_mask.long()
    elif pad_token_id is not None:
        real = (input_ids != pad_token_id).long()
    elif B == 1:
        return torch.full((1,), T - 1, dtype=torch.long, device=input_ids.device)
    else:
        raise ValueError(f"GPT2ForSequenceClassification: a batch of {B} sequences without attention_mask, and the "
                         "config has no pad_token_id: cannot tell which token is last; pass attention_mask")
    return (torch.arange(T, device=input_ids.device) * real).argmax(-1)  # (B,)


class GPT2ForSequenceClassification(GPT2WithHead):
    """One label per sequence, read from its last token (the only one that has seen all the
    others; Radford et al. 2018, Sec. 3.2): `score`, a Linear(D, num_labels) without bias ->
    (B, num_labels) logits. Works with right and left padding given an attention_mask."""

    def __init__(self, config: GPT2Config, num_labels: int):
        super().__init__(config)
        if num_labels < 1:
            raise ValueError(f"GPT2ForSequenceClassification: num_labels must be >= 1, got {num_labels}")
        self.num_labels = num_labels
        self.score = nn.Linear(config.n_embd, num_labels, bias=False)
        init_weights(self.score, config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None) -> Tensor:
        out = self.transformer(input_ids, attention_mask, position_ids, token_type_ids)
        hidden = out.last_hidden_state  # (B, T, D)
        last = last_token(input_ids, attention_mask, self.config.pad_token_id)  # (B,)
        return self.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])  # (B, num_labels)


MODEL = GPT2
BLOCKS = (Block,)

HEADS: dict[str, Head] = {
    "base": Head("GPT2Model", GPT2),
    # transformers saves no lm_head.weight (it is tied); older checkpoints repeat it.
    "causal_lm": Head("GPT2LMHeadModel", GPT2LMHeadModel, parts=("lm_head.",),
                      tied=(("lm_head.weight", "transformer.wte.weight"),)),
    "sequence_classification": Head("GPT2ForSequenceClassification", GPT2ForSequenceClassification,
                                    parts=("score.",), output="score", size_field="num_labels"),
}
# The causal-mask buffers of older transformers versions; we build the mask per call.
IGNORED_HF_KEYS = (r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias")


# ----------------------------------------------------------------------------------------
# HF key names -> ours: the Conv1D modules get our Linear names, their (in, out) weights transposed.
_CONV1D = {"attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def _transpose(sd: dict[str, Tensor], modules: tuple[str, ...]) -> dict[str, Tensor]:
    """The 2-D weights of `modules` transposed, every other tensor as it is."""
    suffixes = tuple(f".{m}.weight" for m in modules)
    return {k: v.t() if f".{k}".endswith(suffixes) and v.ndim == 2 else v for k, v in sd.items()}


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF GPT-2 keys (with or without "transformer.") -> our state_dict keys. Keys it does not
    know pass through unchanged, so that a strict load names them."""
    return _transpose(keymaps.rename(sd, _CONV1D), tuple(_CONV1D.values()))


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`."""
    return keymaps.rename(_transpose(sd, tuple(_CONV1D.values())), keymaps.inverse(_CONV1D))
