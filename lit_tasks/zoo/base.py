"""The contract every vision backbone in the zoo keeps.

A backbone turns pixels into a list of feature maps, one per level, and says what
each level holds (`feature_info`), as timm's `features_only` models do. Heads and
necks are built from that contract alone, so any backbone fits any head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


class ConfigError(ValueError):
    """A model config (ours or an HF `config.json`) that we cannot honour."""


class LoadError(ValueError):
    """Weights that do not fit the model they are loaded into."""


# Keys every HF `config.json` may carry that say nothing about the architecture.
GENERIC_HF_KEYS = frozenset(
    {
        "_name_or_path", "architectures", "auto_map", "model_type", "transformers_version",
        "torch_dtype", "dtype", "id2label", "label2id", "num_labels", "problem_type",
        "return_dict", "output_hidden_states", "output_attentions", "torchscript",
        "use_bfloat16", "pruned_heads", "tie_word_embeddings", "is_encoder_decoder",
        "is_decoder", "add_cross_attention", "chunk_size_feed_forward", "finetuning_task",
        "tokenizer_class", "prefix", "bos_token_id", "eos_token_id", "pad_token_id",
        "sep_token_id", "decoder_start_token_id", "task_specific_params", "cross_attention_hidden_size",
        "tf_legacy_loss", "use_cache", "_attn_implementation_autoset", "_attn_implementation",
        "attn_implementation", "output_scores", "return_dict_in_generate",
    }
)


def config_from_dict(cls: type, values: dict[str, Any], *, source: str, ignore: frozenset[str] = frozenset()):
    """Build the dataclass `cls` from `values`, failing on keys it does not know.

    `source` names where the values came from (a file path, a config key) so the
    error points at the culprit. Keys in GENERIC_HF_KEYS or `ignore` are skipped.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in values if k not in known and k not in GENERIC_HF_KEYS and k not in ignore)
    if unknown:
        raise ConfigError(
            f"{source}: unknown or unsupported key(s) {unknown} for {cls.__name__}; "
            f"known keys are {sorted(known)}"
        )
    kwargs = {k: v for k, v in values.items() if k in known}
    for k, v in kwargs.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


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

    Subclasses set `family` (the registry name, e.g. "vit"), keep their config
    dataclass in `self.config`, fill `self.feature_info` and `self.num_features`, and
    implement `forward`, `forward_features` and `layer_index`.
    """

    family: ClassVar[str]
    config: Any
    feature_info: list[FeatureInfo]
    num_features: int  # width of `forward_pooled`'s output
    num_layers: int  # layer-wise lr decay depth: 0 = embeddings, 1..num_layers = blocks

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False) -> BackboneOutput:
        raise NotImplementedError

    def forward_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) pixels -> one (B, C_i, H / s_i, W / s_i) map per level of `feature_info`."""
        raise NotImplementedError

    def forward_pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, num_features) image embedding."""
        return self(pixel_values).pooler_output

    def layer_index(self, param_name: str) -> int:
        """Depth of a parameter (name relative to this module) for layer-wise lr decay:
        0 for the embeddings, i for block i (1-based), num_layers + 1 for final norms."""
        raise NotImplementedError
