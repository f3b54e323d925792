"""BERT: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (NAACL 2019), https://arxiv.org/abs/1810.04805.

Token, segment and position embeddings are summed (Sec. 3, Fig. 2) and LayerNorm'd, a stack
of post-LN Transformer encoder blocks follows (Vaswani et al. 2017, Sec. 3.1), and the pooler
(dense + tanh on the final [CLS] vector, the "C" of Sec. 3) gives the sentence representation
that the sequence-classification and next-sentence heads read. Heads return raw logits;
losses belong to the tasks.

Weights load from HF-format folders (`model_type: "bert"`) through `lit_tasks.zoo.from_pretrained`,
with or without the `bert.` prefix (sentence-transformers checkpoints have none), the pooler
optional (OPTIONAL_HF_PARTS). Our parameter names, HF's in brackets:
    embeddings.{word,position,token_type}_embeddings, embeddings.norm  [embeddings.LayerNorm]
    layers.{i}.attn.qkv        [encoder.layer.{i}.attention.self.{query,key,value}], fused
    layers.{i}.attn.proj, .attn_norm   [.attention.output.dense, .attention.output.LayerNorm]
    layers.{i}.mlp.fc1, .mlp.fc2, .mlp_norm  [.intermediate.dense, .output.dense, .output.LayerNorm]
    pooler                                    [pooler.dense]
    classifier, qa_outputs                    [the same]
    mlm.dense, mlm.norm, mlm.bias             [cls.predictions.transform.dense, ...LayerNorm, cls.predictions.bias]
    nsp                                       [cls.seq_relationship]
The MLM decoder has no weight of its own: it is the word embedding matrix (tied, as in the
reference implementation).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import keymaps
from lit_tasks.zoo.base import Head, config_from_dict
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward, padding_keep

MODEL_TYPE = "bert"
MODALITY = "text"
HF_BASE_PREFIX = "bert"

# Saved by old transformers versions; a training-time switch that does not change the model.
_IGNORED_CONFIG_KEYS = frozenset({"gradient_checkpointing"})


@dataclass(frozen=True)
class BertConfig:
    """The fields and defaults of an HF `config.json` with `model_type: "bert"`."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    # Decoder variants of BERT that we do not build; kept as fields so that they are checked.
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True

    @classmethod
    def from_hf(cls, d: dict, source: str) -> BertConfig:
        config = config_from_dict(cls, d, source=source, ignore=_IGNORED_CONFIG_KEYS)
        config.check(source)
        return config

    def to_hf(self) -> dict:
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", f"one of {sorted(ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            fail("position_embedding_type", "'absolute' (learned positions; relative ones are not supported)")
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            fail("num_attention_heads", f"a positive divisor of hidden_size={self.hidden_size}")
        if self.is_decoder:
            fail("is_decoder", "false (a causal BERT decoder is not supported)")
        if self.add_cross_attention:
            fail("add_cross_attention", "false (cross-attention is not supported)")


CONFIG = BertConfig

PRESETS: dict[str, BertConfig] = {
    # Mirrors the config.json of google-bert/bert-base-uncased (all HF defaults).
    "bert-base-uncased": BertConfig(),
    # Mirrors sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide MiniLM; no `bert.` prefix).
    "all-minilm-l6-v2": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    # Tiny, for tests.
    "bert-test": BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64),
}


@dataclass
class TextOutput:
    """The HF base-model outputs of a text encoder.

    last_hidden_state: (B, T, D) after the last block.
    pooler_output: (B, D) tanh(dense([CLS])), None for a model built without a pooler.
    hidden_states: embeddings output then every block's output, on request.
    """

    last_hidden_state: Tensor
    pooler_output: Tensor | None
    hidden_states: tuple[Tensor, ...] | None = None


def init_weights(module: nn.Module, std: float) -> None:
    """HF's initialisation of BERT: N(0, std) weights and embeddings (the padding row zero),
    zero biases, LayerNorm (1, 0). (The TF reference code draws from a truncated normal.)"""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Embeddings(nn.Module):
    """Word + learned absolute position + segment (token type) embeddings, LayerNorm, dropout (Fig. 2)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(positions)
        return self.dropout(self.norm(x))  # (B, T, D)


class Block(nn.Module):
    """One post-LN encoder block (Vaswani et al. 2017, Sec. 3.1): LN(x + Attn(x)), then LN(x + MLP(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attn = Attention(config.hidden_size, config.num_attention_heads,
                              dropout=config.attention_probs_dropout_prob)  # Sec. 3.2.2
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)  # Sec. 3.3
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, keep: Tensor | None) -> Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, keep=keep)))  # (B, T, D)
        return self.mlp_norm(x + self.dropout(self.mlp(x)))  # (B, T, D)


class Bert(nn.Module):
    """The BERT encoder, equal to HF `BertModel(add_pooling_layer=...)`."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        config.check("BertConfig")
        self.config = config
        self.num_features = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        init_weights(self, config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> TextOutput:
        """input_ids (B, T) long; attention_mask (B, T), 1 for tokens, 0 for padding;
        token_type_ids (B, T), the segment (0 or 1) of each token, zeros when not given."""
        shapes = [tuple(t.shape) for t in (input_ids, attention_mask, token_type_ids) if t is not None]
        if input_ids.ndim != 2 or len(set(shapes)) > 1:
            raise ValueError(f"Bert: expected input_ids (B, T) and attention_mask / token_type_ids of the same shape, got {shapes}")
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"Bert: input_ids has {T} tokens; max_position_embeddings is {self.config.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = None if attention_mask is None else padding_keep(attention_mask.bool())  # (B, T) keys to attend
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        hidden_states = [x] if output_hidden_states else None  # kept only on request: frees memory
        for layer in self.layers:
            x = layer(x, keep)  # (B, T, D)
            if hidden_states is not None:
                hidden_states.append(x)
        return TextOutput(
            last_hidden_state=x,
            pooler_output=torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None,  # (B, D)
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
        )

    def layer_index(self, param_name: str) -> int:
        """Depth for layer-wise lr decay: 0 embeddings, i + 1 block i, num_layers + 1 the pooler."""
        if param_name.startswith("embeddings."):
            return 0
        if param_name.startswith("pooler."):
            return self.num_layers + 1
        match = re.match(r"layers\.(\d+)\.", param_name)
        if match is None:
            raise ValueError(f"Bert.layer_index: {param_name!r} is not a parameter name of this model")
        return int(match.group(1)) + 1


# ----------------------------------------------------------------------------------------
# Heads. Each holds the encoder as `self.bert` and returns raw logits.
class BertWithHead(nn.Module):
    """What the heads share: the encoder (`self.bert`) and their lr-decay depth. `uses_pooler`
    says whether the head reads the pooler, which the encoder then has."""

    uses_pooler: ClassVar[bool]

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config, add_pooling_layer=self.uses_pooler)

    @property
    def num_layers(self) -> int:
        return self.bert.num_layers

    def layer_index(self, param_name: str) -> int:
        """As `Bert.layer_index` under `bert.`; the head is num_layers + 1."""
        if param_name.startswith("bert."):
            return self.bert.layer_index(param_name.removeprefix("bert."))
        return self.num_layers + 1

    def _init_head(self) -> None:
        for name, module in self.named_children():
            if name != "bert":
                init_weights(module, self.config.initializer_range)


class _LabelHead(BertWithHead):
    """Dropout + Linear(D, num_labels) on what `_features` gives (the pooled or every token)."""

    def __init__(self, config: BertConfig, num_labels: int):
        super().__init__(config)
        if num_labels < 1:
            raise ValueError(f"{type(self).__name__}: num_labels must be >= 1, got {num_labels}")
        self.num_labels = num_labels
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self._init_head()

    def _features(self, out: TextOutput) -> Tensor:
        raise NotImplementedError

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self._features(self.bert(input_ids, attention_mask, token_type_ids))))


class BertForSequenceClassification(_LabelHead):
    """One label per sequence, read from the pooled [CLS] (Sec. 4.1) -> (B, num_labels) logits."""

    uses_pooler = True

    def _features(self, out: TextOutput) -> Tensor:
        return out.pooler_output  # (B, D)


class BertForTokenClassification(_LabelHead):
    """One label per token (Sec. 5.3, CoNLL-2003 NER) -> (B, T, num_labels) logits."""

    uses_pooler = False

    def _features(self, out: TextOutput) -> Tensor:
        return out.last_hidden_state  # (B, T, D)


class SpanLogits(NamedTuple):
    start_logits: Tensor  # (B, T)
    end_logits: Tensor  # (B, T)


class BertForQuestionAnswering(BertWithHead):
    """Answer-span start and end scores per token (Sec. 4.2, SQuAD): Linear(D, 2)."""

    uses_pooler = False

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_head()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> SpanLogits:
        logits = self.qa_outputs(self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state)  # (B, T, 2)
        return SpanLogits(logits[..., 0], logits[..., 1])


class PreTrainingLogits(NamedTuple):
    prediction_logits: Tensor  # (B, T, vocab_size), masked LM
    seq_relationship_logits: Tensor  # (B, 2), next sentence: 0 = is next, 1 = random


class MaskedLMHead(nn.Module):
    """Masked-LM scores (Sec. 3.1, Task #1): dense + act + LayerNorm, then the tied word
    embeddings plus a bias, as in the reference implementation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(self.norm(self.act(self.dense(x))), word_embeddings, self.bias)  # (B, T, V)


class BertForPreTraining(BertWithHead):
    """Masked LM (Sec. 3.1, Task #1) and next-sentence prediction (Task #2) heads."""

    uses_pooler = True

    def __init__(self, config: BertConfig):
        if not config.tie_word_embeddings:
            raise ConfigError("BertConfig: key 'tie_word_embeddings' is False; the MLM decoder is always the word embeddings")
        super().__init__(config)
        self.mlm = MaskedLMHead(config)
        self.nsp = nn.Linear(config.hidden_size, 2)
        self._init_head()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> PreTrainingLogits:
        out = self.bert(input_ids, attention_mask, token_type_ids)
        return PreTrainingLogits(
            self.mlm(out.last_hidden_state, self.bert.embeddings.word_embeddings.weight),  # (B, T, V), tied decoder
            self.nsp(out.pooler_output),  # (B, 2)
        )


MODEL = Bert
BLOCKS = (Block,)

_LABELS = dict(parts=("classifier.",), output="classifier", size_field="num_labels")
HEADS: dict[str, Head] = {
    "base": Head("BertModel", Bert),
    "sequence_classification": Head("BertForSequenceClassification", BertForSequenceClassification, **_LABELS),
    "token_classification": Head("BertForTokenClassification", BertForTokenClassification, **_LABELS),
    "question_answering": Head("BertForQuestionAnswering", BertForQuestionAnswering, parts=("qa_outputs.",)),
    # Older checkpoints repeat the tied MLM decoder (cls.predictions.decoder.*).
    "pretraining": Head("BertForPreTraining", BertForPreTraining, parts=("cls.predictions.", "cls.seq_relationship."),
                        tied=(("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                              ("cls.predictions.decoder.bias", "cls.predictions.bias"))),
}
# The pooler: `Bert` has one iff its checkpoint has; heads that read it get a fresh one when absent
# (a checkpoint saved with add_pooling_layer=False, as BertForMaskedLM does).
OPTIONAL_HF_PARTS = {"pooler.": "pooler"}
# An arange that older checkpoints (google-bert/bert-base-uncased) keep and we compute.
IGNORED_HF_KEYS = (r"embeddings\.position_ids",)
# Older checkpoints name LayerNorm parameters gamma / beta.
HF_RENAMES = ((r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias"))


# ----------------------------------------------------------------------------------------
# HF key names -> ours, as module paths: first those inside a block, then the others (encoder
# keys may sit under "bert.", kept as is). query/key/value are concatenated into our fused qkv.
_HF_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
_BLOCK_NAMES = {
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "mlp_norm",
}
_NAMES = {  # the first that fits: a longer path before a shorter one it starts with
    "encoder.layer": "layers",
    "embeddings.LayerNorm": "embeddings.norm",
    "pooler.dense": "pooler",
    "cls.predictions.transform.dense": "mlm.dense",
    "cls.predictions.transform.LayerNorm": "mlm.norm",
    "cls.predictions": "mlm",  # its bias
    "cls.seq_relationship": "nsp",
}


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF BERT keys (with or without "bert.") -> our state_dict keys. Keys it does not
    know pass through unchanged, so that a strict load names them."""
    return keymaps.rename(keymaps.rename(keymaps.fuse(sd, _HF_QKV, "attn.qkv"), _BLOCK_NAMES), _NAMES)


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`."""
    sd = keymaps.rename(keymaps.rename(sd, keymaps.inverse(_NAMES)), keymaps.inverse(_BLOCK_NAMES))
    return keymaps.split(sd, "attn.qkv", _HF_QKV)
