"""Vision Transformer (ViT): Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale" (ICLR 2021), https://arxiv.org/abs/2010.11929.

The image is cut into P x P patches, each linearly embedded (a strided conv), a learned
class token is prepended, learned position embeddings are added, and a stack of pre-LN
Transformer encoder blocks follows (Sec. 3.1, Eq. 1-4). The final LayerNorm'd class token
is the image representation.

Weights load from HF-format folders (`model_type: "vit"`); `hf_to_ours` / `ours_to_hf` map
the HF key names to ours. Our attention keeps query, key and value in one fused Linear.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import keymaps
from lit_tasks.zoo.base import Backbone, BackboneOutput, FeatureInfo, Head, config_from_dict
from lit_tasks.zoo.classifier import ImageClassifier
from lit_tasks.zoo.layers import Attention, FeedForward

MODEL_TYPE = "vit"
MODALITY = "image"
HF_BASE_PREFIX = "vit"

# The pooler (dense + tanh on the class token) of `ViTModel(add_pooling_layer=True)`:
# ViTForImageClassification does not use it, neither do we.
IGNORED_HF_KEYS: tuple[str, ...] = (r"pooler\..*",)

SUPPORTED_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class ViTConfig:
    """The fields and defaults of an HF `config.json` with `model_type: "vit"`."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | tuple[int, int] = 224  # an int for square images, else (height, width)
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    # HF-only keys, accepted so that any ViT config.json loads; they do not change our model.
    encoder_stride: int = 16  # used by HF's masked-image-modeling decoder
    pooler_output_size: int | None = None  # the unused pooler (see IGNORED_HF_KEYS)
    pooler_act: str = "tanh"

    @classmethod
    def from_hf(cls, d: dict, source: str) -> ViTConfig:
        config = config_from_dict(cls, d, source=source)
        config.check(source)
        return config

    def to_hf(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(self.image_size, tuple):
            d["image_size"] = list(self.image_size)
        return {"model_type": MODEL_TYPE, **d}

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, columns) the position embeddings were learned for."""
        height, width = _pair(self.image_size)
        return height // self.patch_size, width // self.patch_size

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            fail("hidden_act", f"one of {list(SUPPORTED_ACTIVATIONS)} (the exact erf GELU)")
        if not isinstance(self.patch_size, int) or isinstance(self.patch_size, bool) or self.patch_size < 1:
            fail("patch_size", "a positive int (square patches)")
        size = self.image_size
        if not (isinstance(size, int) or (isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) for s in size))):
            fail("image_size", "an int or a [height, width] pair of ints")
        if min(self.grid) < 1:
            fail("image_size", f"at least patch_size={self.patch_size} on each side")
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            fail("num_attention_heads", f"a positive divisor of hidden_size={self.hidden_size}")


CONFIG = ViTConfig

PRESETS: dict[str, ViTConfig] = {
    # Mirrors the config.json of google/vit-base-patch16-224 (ViT-B/16, ImageNet-21k then 1k).
    "vit-base-patch16-224": ViTConfig(),
    # Mirrors google/vit-large-patch16-224.
    "vit-large-patch16-224": ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    # Tiny, for tests: 32 x 32 images, a 4 x 4 grid of 8 x 8 patches.
    "vit-test": ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8),
}


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


class Embeddings(nn.Module):
    """Patch embedding, class token and position embeddings (Sec. 3.1, Eq. 1).

    Position embeddings learned for the config's patch grid are resized bicubically to
    any other grid, as for fine-tuning at higher resolution (Sec. 3.2).
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.grid = config.grid
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_embeddings_for(self, grid: tuple[int, int]) -> Tensor:
        """(1, 1 + gh * gw, D) position embeddings for a `grid` = (gh, gw) of patches."""
        if grid == self.grid:
            return self.position_embeddings
        cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, *self.grid, dim).permute(0, 3, 1, 2)  # (1, D, h0, w0)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)  # (1, D, gh, gw)
        patch_pos = patch_pos.flatten(2).transpose(1, 2)  # (1, gh * gw, D)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, pixel_values: Tensor) -> Tensor:
        patches = self.projection(pixel_values)  # (B, D, gh, gw)
        grid = (patches.shape[2], patches.shape[3])
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, patches], dim=1) + self.position_embeddings_for(grid)  # (B, 1 + N, D)
        return self.dropout(x)


class Block(nn.Module):
    """One pre-LN encoder block (Sec. 3.1, Eq. 2-3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = Attention(config.hidden_size, config.num_attention_heads, bias=config.qkv_bias,
                              dropout=config.attention_probs_dropout_prob)  # Sec. 3.1, Eq. 2
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)  # Eq. 3
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.layernorm_before(x)))  # (B, 1 + N, D)
        return x + self.dropout(self.mlp(self.layernorm_after(x)))  # (B, 1 + N, D)


class ViT(Backbone):
    """The ViT encoder (Sec. 3.1, Eq. 1-4), equal to HF `ViTModel(add_pooling_layer=False)`.

    `pooler_output` is the final-LN class token (Eq. 4's y before the head).
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        config.check("ViTConfig")
        self.config = config
        self.patch_size = config.patch_size
        self.num_features = config.hidden_size
        self.num_layers = config.num_hidden_layers
        # level 0: the patch embeddings, level i: block i's output (all at the patch stride)
        self.feature_info = [FeatureInfo(config.hidden_size, config.patch_size)] * (config.num_hidden_layers + 1)
        self.out_indices = (config.num_hidden_layers,)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.embeddings.cls_token, std=std)
        nn.init.trunc_normal_(self.embeddings.position_embeddings, std=std)

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False) -> BackboneOutput:
        x = self.embeddings(pixel_values)  # (B, 1 + N, D)
        hidden_states = [x] if output_hidden_states else None  # kept only on request: frees memory
        for layer in self.layers:
            x = layer(x)  # (B, 1 + N, D)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.layernorm(x)
        return BackboneOutput(
            last_hidden_state=x,
            pooler_output=x[:, 0],  # (B, D)
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
        )

    def forward_features(self, pixel_values: Tensor, out_indices: Sequence[int] | None = None) -> list[Tensor]:
        """(B, C, H, W) -> [(B, D, H / p, W / p)] per level: the patch tokens of the embeddings
        (level 0) or of block i's output (level i), each through the final LayerNorm (so the
        last level is `last_hidden_state`'s patch tokens), reshaped to the patch grid."""
        B, _, H, W = pixel_values.shape
        levels = self.resolve_out_indices(out_indices)
        x = self.embeddings(pixel_values)  # (B, 1 + N, D)
        states = [x]
        for layer in self.layers[: max(levels)]:
            x = layer(x)  # (B, 1 + N, D)
            states.append(x)
        grid = (H // self.patch_size, W // self.patch_size)
        return [self.layernorm(states[i])[:, 1:].transpose(1, 2).reshape(B, self.num_features, *grid) for i in levels]

    def layer_index(self, param_name: str) -> int:
        if param_name.startswith("embeddings."):
            return 0
        if param_name.startswith("layernorm."):
            return self.num_layers + 1
        match = re.match(r"layers\.(\d+)\.", param_name)
        if match is None:
            raise ValueError(f"ViT.layer_index: {param_name!r} is not a parameter name of this model")
        return int(match.group(1)) + 1


MODEL = ViT
BLOCKS = (Block,)

HEADS: dict[str, Head] = {
    "base": Head("ViTModel", ViT),
    # A Linear on the final-LN class token (Sec. 3.1, Eq. 4's head).
    "classification": Head("ViTForImageClassification", ImageClassifier, lambda config, size: ImageClassifier(ViT(config), size),
                           parts=("classifier.",), output="classifier", size_field="num_labels"),
}


# ----------------------------------------------------------------------------------------
# HF key names -> ours, as module paths: first those inside a block, then the block list and
# the patch embedding. query/key/value are concatenated (in that order) into our fused qkv.
_HF_QKV = ("attention.attention.query", "attention.attention.key", "attention.attention.value")
_BLOCK_NAMES = {"attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
_NAMES = {"encoder.layer": "layers", "embeddings.patch_embeddings.projection": "embeddings.projection"}


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF ViTModel keys (no "vit." prefix) -> ViT state_dict keys; head keys ("classifier.*")
    and keys it does not know pass through unchanged, so that a strict load names them."""
    return keymaps.rename(keymaps.rename(keymaps.fuse(sd, _HF_QKV, "attn.qkv"), _BLOCK_NAMES), _NAMES)


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The exact inverse of `hf_to_ours`."""
    sd = keymaps.rename(keymaps.rename(sd, keymaps.inverse(_NAMES)), keymaps.inverse(_BLOCK_NAMES))
    return keymaps.split(sd, "attn.qkv", _HF_QKV)
