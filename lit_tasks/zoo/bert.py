"""BERT: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" (NAACL 2019), https://arxiv.org/abs/1810.04805.

Token, segment and position embeddings are summed (Sec. 3, Fig. 2) and LayerNorm'd, a stack
of post-LN Transformer encoder blocks follows (Vaswani et al. 2017, Sec. 3.1), and the pooler
(dense + tanh on the final [CLS] vector, the "C" of Sec. 3) gives the sentence representation
that the sequence-classification and next-sentence heads read. Heads return raw logits;
losses belong to the tasks.

Weights load from HF-format folders (`model_type: "bert"`) with or without the `bert.`
prefix (sentence-transformers checkpoints have none). Our parameter names, HF's in brackets:
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
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.zoo.base import config_from_dict

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo.hub import CONFIG_FILE, check_weights, read_config, read_weights, write_folder
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward

log = logging.getLogger("lit_tasks")

MODEL_TYPE = "bert"
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

    family = "bert"
    hf_architecture = "BertModel"

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
        keep = None if attention_mask is None else attention_mask.bool()  # (B, T) keys to attend
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


MODEL = Bert


# ----------------------------------------------------------------------------------------
# Heads. Each holds the encoder as `self.bert` and returns raw logits.
class BertWithHead(nn.Module):
    """What the heads share: the encoder (`self.bert`), their HF names and their lr-decay depth.

    `hf_parts` are the HF key prefixes of the head's own tensors; `uses_pooler` says
    whether the head reads the pooler, which the encoder then has.
    """

    family = "bert"
    hf_architecture: ClassVar[str]
    hf_parts: ClassVar[tuple[str, ...]]
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

    hf_parts = ("classifier.",)

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

    hf_architecture = "BertForSequenceClassification"
    uses_pooler = True

    def _features(self, out: TextOutput) -> Tensor:
        return out.pooler_output  # (B, D)


class BertForTokenClassification(_LabelHead):
    """One label per token (Sec. 5.3, CoNLL-2003 NER) -> (B, T, num_labels) logits."""

    hf_architecture = "BertForTokenClassification"
    uses_pooler = False

    def _features(self, out: TextOutput) -> Tensor:
        return out.last_hidden_state  # (B, T, D)


class SpanLogits(NamedTuple):
    start_logits: Tensor  # (B, T)
    end_logits: Tensor  # (B, T)


class BertForQuestionAnswering(BertWithHead):
    """Answer-span start and end scores per token (Sec. 4.2, SQuAD): Linear(D, 2)."""

    hf_architecture = "BertForQuestionAnswering"
    hf_parts = ("qa_outputs.",)
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

    hf_architecture = "BertForPreTraining"
    hf_parts = ("cls.predictions.", "cls.seq_relationship.")
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


HEADS: dict[str, type[nn.Module]] = {
    "base": Bert,
    "sequence_classification": BertForSequenceClassification,
    "token_classification": BertForTokenClassification,
    "question_answering": BertForQuestionAnswering,
    "pretraining": BertForPreTraining,
}


# ----------------------------------------------------------------------------------------
# HF key names. Encoder keys may sit under "bert." (kept as is on both sides).
def _weight_bias(hf: str, ours: str) -> dict[str, str]:
    return {f"{hf}.{kind}": f"{ours}.{kind}" for kind in ("weight", "bias")}


_BLOCK_KEYS = {  # per block i: HF "encoder.layer.{i}." + left, ours "layers.{i}." + right
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "mlp_norm",
}
_TOP_KEYS = {
    **{f"embeddings.{name}.weight": f"embeddings.{name}.weight"
       for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")},
    **_weight_bias("embeddings.LayerNorm", "embeddings.norm"),
    **_weight_bias("pooler.dense", "pooler"),
}
_HEAD_KEYS = {
    **_weight_bias("classifier", "classifier"),
    **_weight_bias("qa_outputs", "qa_outputs"),
    **_weight_bias("cls.predictions.transform.dense", "mlm.dense"),
    **_weight_bias("cls.predictions.transform.LayerNorm", "mlm.norm"),
    "cls.predictions.bias": "mlm.bias",
    **_weight_bias("cls.seq_relationship", "nsp"),
}
_HF_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
_HF_BLOCK = re.compile(r"(bert\.)?encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_OUR_BLOCK = re.compile(r"(bert\.)?layers\.(\d+)\.(.+)\.(weight|bias)")


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF BERT keys (with or without "bert.") -> our state_dict keys. Keys it does not
    know pass through unchanged, so that a strict load names them."""
    ours, qkv_parts = {}, {}
    for key, tensor in sd.items():
        prefix, rest = ("bert.", key[5:]) if key.startswith("bert.") else ("", key)
        match = _HF_BLOCK.fullmatch(key)
        if key in _HEAD_KEYS:
            ours[_HEAD_KEYS[key]] = tensor
        elif rest in _TOP_KEYS:
            ours[prefix + _TOP_KEYS[rest]] = tensor
        elif match and match.group(3) in _BLOCK_KEYS:
            _, i, name, kind = match.groups()
            ours[f"{prefix}layers.{i}.{_BLOCK_KEYS[name]}.{kind}"] = tensor
        elif match and match.group(3) in _HF_QKV:
            _, i, name, kind = match.groups()
            qkv_parts.setdefault((prefix, i, kind), {})[name] = tensor
        else:
            ours[key] = tensor
    for (prefix, i, kind), parts in qkv_parts.items():
        if set(parts) == set(_HF_QKV):
            ours[f"{prefix}layers.{i}.attn.qkv.{kind}"] = torch.cat([parts[name] for name in _HF_QKV], dim=0)
        else:  # incomplete: keep the HF names so that a strict load shows them
            ours.update({f"{prefix}encoder.layer.{i}.{name}.{kind}": t for name, t in parts.items()})
    return ours


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`."""
    head = {our: hf for hf, our in _HEAD_KEYS.items()}
    top = {our: hf for hf, our in _TOP_KEYS.items()}
    block = {our: hf for hf, our in _BLOCK_KEYS.items()}
    hf = {}
    for key, tensor in sd.items():
        prefix, rest = ("bert.", key[5:]) if key.startswith("bert.") else ("", key)
        match = _OUR_BLOCK.fullmatch(key)
        if key in head:
            hf[head[key]] = tensor
        elif rest in top:
            hf[prefix + top[rest]] = tensor
        elif match and match.group(3) in block:
            _, i, name, kind = match.groups()
            hf[f"{prefix}encoder.layer.{i}.{block[name]}.{kind}"] = tensor
        elif match and match.group(3) == "attn.qkv":
            _, i, _, kind = match.groups()
            for name, chunk in zip(_HF_QKV, tensor.chunk(3, dim=0)):
                hf[f"{prefix}encoder.layer.{i}.{name}.{kind}"] = chunk
        else:
            hf[key] = tensor
    return hf


# ----------------------------------------------------------------------------------------
# Loading and saving HF-format folders.
_HEAD_PARTS = ("classifier.", "qa_outputs.", "cls.")  # top-level HF prefixes of every head's tensors
_LABEL_ARCHITECTURES = ("BertForSequenceClassification", "BertForTokenClassification")


def _legacy_names(weights: dict[str, Tensor], folder: Path) -> dict[str, Tensor]:
    """Old checkpoints (google-bert/bert-base-uncased) name LayerNorm parameters gamma/beta and
    keep the `embeddings.position_ids` buffer (an arange we recompute): rename / drop them."""
    out = {}
    for key, tensor in weights.items():
        if not key.endswith("embeddings.position_ids"):
            out[re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))] = tensor
    if list(out) != list(weights):
        log.info("%s: read legacy names (LayerNorm gamma/beta, embeddings.position_ids)", folder)
    return out


def _foreign_classifier(raw: dict, cls: type) -> bool:
    """Whether config.json says its `classifier.*` was saved by the other label head
    (same names, another meaning: pooled vs per token)."""
    archs = raw.get("architectures") or []
    return cls.hf_architecture not in archs and any(a in _LABEL_ARCHITECTURES for a in archs)


def _notify(message: str) -> None:
    log.warning(message)
    warnings.warn(message, stacklevel=3)


def from_pretrained(path: str | Path, head: str = "base", num_labels: int | None = None) -> nn.Module:
    """Build the `head` model (a key of HEADS) from an HF-format BERT folder and load it strictly.

    Every checkpoint tensor is used or explicitly set aside, every parameter is filled or
    explicitly fresh:
    - tensors of another head (`cls.*` when fine-tuning a classifier, ...) are dropped, logged;
    - the pooler: `head="base"` has one iff the checkpoint has one (else pooler_output is
      None); the token-classification and QA heads drop it; the sequence-classification and
      pre-training heads get a fresh one, with a warning, when the checkpoint has none
      (saved with `add_pooling_layer=False`, as BertForMaskedLM does);
    - a head part the checkpoint lacks, or a classifier of another size than `num_labels`,
      is freshly initialised, with a warning (naming both sizes).
    `num_labels` (label heads only) defaults to the checkpoint's classifier, else config.json's id2label.
    """
    folder = Path(path)
    if head not in HEADS:
        raise ValueError(f"bert.from_pretrained: unknown head {head!r}; choose one of {sorted(HEADS)}")
    cls = HEADS[head]
    raw = read_config(folder)
    config = BertConfig.from_hf(raw, source=str(folder / CONFIG_FILE))
    weights = _legacy_names(read_weights(folder), folder)
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""  # sentence-transformers: none
    pooler = f"{prefix}pooler."
    has_pooler = f"{pooler}dense.weight" in weights

    labelled = issubclass(cls, _LabelHead)
    foreign = labelled and _foreign_classifier(raw, cls)
    found = weights["classifier.weight"].shape[0] if labelled and "classifier.weight" in weights and not foreign else None
    if cls is Bert:
        model = Bert(config, add_pooling_layer=has_pooler)
        if not has_pooler:
            log.info("%s: no pooler weights; the model has no pooler and pooler_output is None", folder)
    elif labelled:
        labels = num_labels or found or (None if foreign else len(raw.get("id2label") or {}))
        if not labels:
            raise ValueError(f"{folder}: neither the checkpoint's classifier nor config.json's id2label "
                             "gives the number of labels; pass num_labels")
        model = cls(config, labels)
    elif num_labels is not None:
        raise ValueError(f"bert.from_pretrained: num_labels is for the label heads, not head={head!r}")
    else:
        model = cls(config)

    # The model's parts beyond the encoder, by HF prefix, and why any of them stays fresh.
    encoder = model if cls is Bert else model.bert
    parts = (*getattr(cls, "hf_parts", ()), *([pooler] if encoder.pooler is not None else []))
    fresh = {}
    if foreign:
        fresh["classifier."] = f"config.json says its classifier belongs to {raw['architectures']}"
    elif found is not None and found != model.num_labels:
        fresh["classifier."] = f"the checkpoint has a {found}-label classifier, the model {model.num_labels} labels"
    for part in parts:
        if part not in fresh and not any(k.startswith(part) for k in weights):
            fresh[part] = "the checkpoint has none"
    for part, why in fresh.items():
        _notify(f"{folder}: {part.rstrip('.')} of {cls.__name__} is freshly initialised: {why}")

    # Take the encoder and the model's non-fresh parts; drop other heads' tensors and an unused pooler.
    def taken(key: str) -> bool:
        if key.startswith(tuple(fresh)):
            return False
        return key.startswith(parts) or not key.startswith((*_HEAD_PARTS, pooler))

    kept = {k: v for k, v in weights.items() if taken(k)}
    dropped = [k for k in weights if k not in kept]
    if dropped:
        log.info("%s: %s does not use %d tensor(s): %s", folder, cls.__name__, len(dropped), dropped)
    tied = {"cls.predictions.decoder.weight": f"{prefix}embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    for key, source in tied.items():  # older checkpoints repeat the tied decoder: it must agree
        if key in kept:
            tensor, original = kept.pop(key), kept.get(source)
            if original is not None and (tensor.shape != original.shape or not torch.equal(tensor, original)):
                raise LoadError(f"{folder}: {key} differs from {source}; BERT's MLM decoder is tied to it")

    # Compare in the checkpoint's names: encoder keys with its prefix, head keys at the top.
    def checkpoint_name(hf_key: str) -> str:
        return hf_key if hf_key.startswith(_HEAD_PARTS) else prefix + hf_key.removeprefix("bert.")

    def model_name(key: str) -> str:
        return key if key.startswith(_HEAD_PARTS) else ("" if cls is Bert else "bert.") + key.removeprefix(prefix)

    expected = {checkpoint_name(k): tuple(v.shape) for k, v in ours_to_hf(model.state_dict()).items()}
    expected = {k: shape for k, shape in expected.items() if not k.startswith(tuple(fresh))}
    check_weights(expected, kept, folder, f"{cls.__name__} built from its {CONFIG_FILE}")
    state = model.state_dict()  # fresh parts keep their initialisation
    state.update(hf_to_ours({model_name(k): v for k, v in kept.items()}))
    model.load_state_dict(state, strict=True)
    return model


def save_pretrained(model: nn.Module, out_dir: str | Path, label_names: list[str] | None = None) -> Path:
    """Write `model` (a Bert or a head of HEADS) as an HF-format folder that transformers loads."""
    if not isinstance(model, (Bert, BertWithHead)):
        raise TypeError(f"bert.save_pretrained: expected a Bert or one of its heads, got {type(model).__name__}")
    config = {**model.config.to_hf(), "architectures": [model.hf_architecture]}
    if isinstance(model, _LabelHead):
        names = label_names if label_names is not None else [f"LABEL_{i}" for i in range(model.num_labels)]
        if len(names) != model.num_labels:
            raise ValueError(f"bert.save_pretrained: {len(names)} label_names for a {model.num_labels}-label model")
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
    elif label_names is not None:
        raise ValueError(f"bert.save_pretrained: label_names given for a {type(model).__name__}, which has no labels")
    return write_folder(out_dir, config, ours_to_hf(model.state_dict()))
