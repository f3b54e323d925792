"""The contract every vision backbone in the zoo keeps.

A backbone turns pixels into feature maps, one per requested level, and says what every
level holds (`feature_info`: channels and stride), as timm's `features_only` models do.
Level 0 is the stem (patch embedding), level i the output of stage or block i, the names
of HF's `stage_names` ("stem", "stage1", ...). `forward_features(x, out_indices)` returns
the maps of `out_indices` (negative ones count from the end; default: the backbone's
`out_indices`, i.e. its HF config's, else the last level, or every stage for a
hierarchical backbone). Heads and necks (DETR, SegFormer, Mask2Former, GLPN) are built from
that contract alone, so any registered backbone fits any dense head; tests/zoo/
test_backbone_contract.py checks every backbone of the registry against it.

Every family (vision or not) also describes the models it offers as `HEADS`, a dict of
:class:`Head` records, from which `lit_tasks.zoo.from_pretrained` / `save_pretrained` load and
write HF folders; see `lit_tasks/zoo/registry.py` for the whole family protocol.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from lit_tasks.errors import ConfigError


# Keys every HF `config.json` may carry that say nothing about the architecture.
GENERIC_HF_KEYS = frozenset(
    {
        "_name_or_path", "architectures", "auto_map", "model_type", "transformers_version",
        "torch_dtype", "dtype", "id2label", "label2id", "num_labels", "problem_type",
        "return_dict", "output_hidden_states", "output_attentions", "torchscript",
        "use_bfloat16", "chunk_size_feed_forward", "finetuning_task",
        "tokenizer_class", "prefix", "bos_token_id", "eos_token_id", "pad_token_id",
        "sep_token_id", "task_specific_params",
        "tf_legacy_loss", "use_cache", "_attn_implementation_autoset", "_attn_implementation",
        "attn_implementation", "output_scores", "return_dict_in_generate",
    }
)
# Keys every HF config.json may carry that do change a model, with the value that means "as a
# plain encoder": a family that implements one declares it as a field of its config; for the
# others any other value is an error naming the key (never silently dropped).
NEUTRAL_HF_KEYS: dict[str, Any] = {
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "decoder_start_token_id": None,
    "cross_attention_hidden_size": None,
    "pruned_heads": {},
}


def config_from_dict(cls: type, values: dict[str, Any], *, source: str, ignore: frozenset[str] = frozenset()):
    """Build the dataclass `cls` from `values`, failing on keys it does not know.

    `source` names where the values came from (a file path, a config key) so the
    error points at the culprit. Keys in GENERIC_HF_KEYS or `ignore` are skipped; a key of
    NEUTRAL_HF_KEYS that `cls` does not declare must have its neutral value.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in values if k not in known and k not in GENERIC_HF_KEYS and k not in NEUTRAL_HF_KEYS
                     and k not in ignore)
    if unknown:
        raise ConfigError(
            f"{source}: unknown or unsupported key(s) {unknown} for {cls.__name__}; "
            f"known keys are {sorted(known)}"
        )
    for key, neutral in NEUTRAL_HF_KEYS.items():
        if key in values and key not in known and key not in ignore and values[key] != neutral:
            raise ConfigError(f"{source}: key {key!r} is {values[key]!r}; {cls.__name__} implements only "
                              f"{neutral!r} (the key changes the model, so it is not ignored)")
    kwargs = {k: v for k, v in values.items() if k in known}
    for k, v in kwargs.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


def read_hf_config(cls: type, d: dict[str, Any], source: str, model_type: str,
                   ignore: frozenset[str] = frozenset()):
    """`cls` from an HF `config.json` dict whose "model_type" (when given) is `model_type`; every
    error names `source`, the unknown keys `config_from_dict` finds and the values `cls`'s
    `__post_init__` rejects alike."""
    found = d.get("model_type", model_type)
    if found != model_type:
        raise ConfigError(f"{source}: key 'model_type' is {found!r}, expected {model_type!r}")
    try:
        return config_from_dict(cls, d, source=source, ignore=ignore)
    except ConfigError as err:
        if str(err).startswith(source):  # an unknown key, already named with its source
            raise
        raise ConfigError(f"{source}: {err}") from None  # a value __post_init__ rejected


def hf_config_dict(config: Any, model_type: str) -> dict[str, Any]:
    """The JSON-ready config.json dict of a config dataclass: "model_type", then every field that
    is not None, tuples as lists."""
    d: dict[str, Any] = {"model_type": model_type}
    for key, value in dataclasses.asdict(config).items():
        if value is not None:
            d[key] = list(value) if isinstance(value, tuple) else value
    return d


@dataclass(frozen=True)
class Head:
    """One model a family offers: its base model, or the base model with a head on top.

    architecture: the HF class name, written to and read from config.json's "architectures".
    model: our class; `save_pretrained` and `spec` recognise a model by it (exactly, no subclasses).
    build: `build(config)`, or `build(config, size)` for a head with an output layer; default: `model`.
    parts: the HF key prefixes (at the top level of a head checkpoint) of the head's own tensors.
    output: the name (ours and HF's alike) of the Linear whose size may differ from the checkpoint's.
    size_field: what sizes `output`: a config field ("vocab_size") or "num_labels" (the label
        names, config.json's id2label).
    tied: HF keys a checkpoint may repeat -> the key (in a head checkpoint's names) it must equal.
    extra_outputs: outputs of `output` beyond its size (DETR's "no object" class: num_labels + 1
        rows); sizes, specs and id2label count labels, not rows.
    """

    architecture: str
    model: type[nn.Module]
    build: Callable[..., nn.Module] | None = None
    parts: tuple[str, ...] = ()
    output: str | None = None
    size_field: str | None = None
    tied: tuple[tuple[str, str], ...] = ()
    extra_outputs: int = 0

    def make(self, config: Any, size: int | None = None) -> nn.Module:
        """A randomly initialised model of this head; `size` for a head with an output layer."""
        build = self.build or self.model
        return build(config) if self.output is None else build(config, size)


@dataclass(frozen=True)
class FeatureInfo:
    """What one level of `forward_features` holds: channels and stride w.r.t. the input."""

    channels: int
    stride: int


@dataclass
class BackboneOutput:
    """The HF base-model outputs, kept for parity tests and feature extraction.

    last_hidden_state: ViT (B, 1 + N, D) after the final norm; ConvNeXT (B, C, h, w).
    pooler_output: (B, num_features), the image embedding a classifier reads.
    hidden_states: embeddings output then every layer's (ViT) or stage's (ConvNeXT) output.
    """

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


class Backbone(nn.Module):
    """Base class of the zoo's vision backbones.

    Subclasses keep their config dataclass in `self.config`, fill `self.feature_info` and
    `self.num_features`, and implement `forward`, `forward_features` and `layer_index`.
    """

    config: Any
    feature_info: list[FeatureInfo]
    num_features: int  # width of `forward_pooled`'s output
    num_layers: int  # layer-wise lr decay depth: 0 = embeddings, 1..num_layers = blocks

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False) -> BackboneOutput:
        raise NotImplementedError

    out_indices: tuple[int, ...]  # the levels forward_features returns by default

    def forward_features(self, pixel_values: torch.Tensor, out_indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """(B, C, H, W) pixels -> one (B, C_i, H / s_i, W / s_i) map per level of `out_indices`
        (indices into `feature_info`; default `self.out_indices`)."""
        raise NotImplementedError

    def resolve_out_indices(self, out_indices: Sequence[int] | None) -> list[int]:
        """`out_indices` (or the default) as non-negative level numbers; a ValueError naming the
        levels there are for an index out of range."""
        levels = len(self.feature_info)
        chosen = self.out_indices if out_indices is None else out_indices
        if not chosen or any(not -levels <= i < levels for i in chosen):
            raise ValueError(f"{type(self).__name__}: out_indices {list(chosen)} must be non-empty indices of its "
                             f"{levels} levels (0 = stem, 1..{levels - 1} = stages or blocks; negative from the end)")
        return [i % levels for i in chosen]

    def forward_pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, num_features) image embedding."""
        return self(pixel_values).pooler_output

    def layer_index(self, param_name: str) -> int:
        """Depth of a parameter (name relative to this module) for layer-wise lr decay:
        0 for the embeddings, i for block i (1-based), num_layers + 1 for final norms."""
        raise NotImplementedError


def shift_right(labels: torch.Tensor, decoder_start_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """An encoder-decoder's decoder inputs under teacher forcing, from targets (B, T):
    decoder_start_token_id, then the targets but their last token, the ignored label -100 read
    as pad_token_id (Vaswani et al. 2017, Sec. 3: the outputs offset by one position). HF's BART
    and T5 do this inside the model when given labels; ours leave it to the task."""
    if decoder_start_token_id is None or pad_token_id is None:
        raise ConfigError(f"shift_right: needs decoder_start_token_id and pad_token_id, got "
                          f"{decoder_start_token_id!r} and {pad_token_id!r} (set them in the model's config)")
    shifted = torch.cat([labels.new_full((labels.shape[0], 1), decoder_start_token_id), labels[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == -100, pad_token_id)  # (B, T)
