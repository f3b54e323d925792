"""DETR: Carion et al. 2020, "End-to-End Object Detection with Transformers" (ECCV 2020,
arXiv:2005.12872).

A CNN backbone's last feature map (stride 32) is projected to d_model channels by a 1x1
convolution, flattened and given to a post-LN transformer encoder; a decoder turns
`num_queries` learned object queries into as many predictions at once: a class (or "no object")
and a box (Sec. 3.2, Fig. 2). Positions are fixed 2-D sine encodings, added to queries and keys
of every attention layer, never to values (Sec. 3.2, "Transformer encoder/decoder"; Appendix
A.3, Fig. 10). The decoder input starts at zeros; each decoder layer's output goes through the
shared final LayerNorm and the same prediction heads, for the auxiliary losses (Sec. 3.2,
"Auxiliary decoding losses"). Matching and losses are the task's (`tasks/object_detection.py`).

The backbone is a zoo vision backbone (`BACKBONES`) built from `backbone_config`, with frozen
batch norms (Sec. 4, "frozen batchnorm"), read through the backbone contract:
`forward_features(pixels, [-1])`, its last level. Numerically equal to HF's `DetrModel` /
`DetrForObjectDetection` (use_timm_backbone=False), with one exception: with `auxiliary_loss`
HF feeds each layer the previous layer's *normed* output and norms the last one twice; we keep
the paper's (and the official code's) decoder, whose predictions do not depend on that switch,
and equal HF's with auxiliary_loss false.

Checkpoints from the hub (facebook/detr-resnet-50) hold a timm ResNet-50 (use_timm_backbone=True,
backbone "resnet50"): its config becomes our ResNet-50 `backbone_config` and its tensors, named
as torchvision's, are renamed to HF's ResNet names (`HF_RENAMES`); such a model saves as an HF
folder with a native ResNet backbone, which transformers loads without timm.

Our names are HF's (as its save_pretrained writes them: `out_proj`, `fc1`, `backbone.conv_encoder.
model.`) but for: `backbone.<the backbone's own names>` [backbone.conv_encoder.model.<HF's>] and
`{encoder,decoder}.layers.{i}.mlp.fc1/fc2` [`.fc1/.fc2`].
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import convnext, resnet
from lit_tasks.zoo.base import Backbone, Head, read_hf_config
from lit_tasks.zoo.layers import ACTIVATIONS, FeedForward, attention_mask
from lit_tasks.zoo.resnet import freeze_batch_norm

MODEL_TYPE = "detr"
MODALITY = "image"
HF_BASE_PREFIX = "model"

# The vision families a DETR can stand on, by backbone_config's model_type: those HF's DETR can
# host too (AutoBackbone). The key maps try them in this order, each one only on its own keys
# (zoo.registry cannot be imported here: it imports this module).
BACKBONES: dict[str, ModuleType] = {"resnet": resnet, "convnext": convnext}
TIMM_BACKBONES = ("resnet50",)  # the timm backbones whose checkpoints we read (as our ResNet-50)

# The DETR paper's sine positional encoding (Appendix A.3): positions normalised to (0, 2 pi].
SINE_TEMPERATURE = 10000.0
SINE_SCALE = 2 * math.pi
_SINE_EPS = 1e-6  # keeps the normalisation finite for an all-padding row or column

# Keys of HF config.json files that say nothing about our model: the backbone's pretrained
# weights (a checkpoint brings its own; we never download), keys older versions wrote and the
# model never read, and HF's aliases (checked against what they alias).
_IGNORED_KEYS = frozenset({"use_pretrained_backbone", "max_position_embeddings", "scale_embedding",
                           "classifier_dropout", "backbone_kwargs", "backbone", "use_timm_backbone"})
_ALIASES = {"hidden_size": "d_model", "num_attention_heads": "encoder_attention_heads",
            "num_hidden_layers": "encoder_layers"}


def _resnet50_backbone(num_channels: int) -> dict[str, Any]:
    """HF's native equivalent of timm's resnet50 in DETR: ResNet-50 read at its last stage."""
    config = dataclasses.replace(resnet.PRESETS["resnet-50"], num_channels=num_channels, out_features=("stage4",),
                                 out_indices=(4,), stage_names=("stem", "stage1", "stage2", "stage3", "stage4"))
    return config.to_hf()


@dataclass(frozen=True)
class DetrConfig:
    """Architecture of a DETR; field names and defaults are those of HF's `config.json`.

    backbone_config: the backbone's config.json dict (its "model_type" one of `BACKBONES`); None
        gives ResNet-50 (HF's default backbone). Stored as the backbone family's `to_hf()`.
    auxiliary_loss: the model also returns every decoder layer's predictions (`aux_outputs`).
    class_cost ... eos_coefficient: the matching costs and loss weights the task reads.
    freeze_backbone_norms: the backbone's batch norms are frozen (FrozenBatchNorm2d), as HF and the
        DETR paper do for a pretrained backbone; false trains them, which a backbone trained from
        scratch needs (frozen at their initial values they normalise nothing). Our key: HF's
        DetrConfig keeps unknown keys as attributes and ignores it.
    query_groups: Group DETR (Chen et al. 2023, "Group DETR: Fast DETR Training with Group-Wise
        One-to-Many Assignment"): in training the decoder runs `query_groups` groups of
        `num_queries` queries, each group attending only to itself, and the task matches each
        group to the targets on its own (more matched queries per image, the same one-to-one
        model); in eval only the first group runs. The other groups' queries are the parameter
        `extra_query_embeddings`. Our key; a folder exported with it loads in `transformers`, which
        warns that it does not use `extra_query_embeddings` and predicts as we do.
    """

    backbone_config: dict[str, Any] | None = None
    num_channels: int = 3
    num_queries: int = 100
    encoder_layers: int = 6
    encoder_ffn_dim: int = 2048
    encoder_attention_heads: int = 8
    decoder_layers: int = 6
    decoder_ffn_dim: int = 2048
    decoder_attention_heads: int = 8
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    is_encoder_decoder: bool = True
    activation_function: str = "relu"
    d_model: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    init_xavier_std: float = 1.0
    auxiliary_loss: bool = False
    position_embedding_type: str = "sine"
    dilation: bool = False
    class_cost: float = 1
    bbox_cost: float = 5
    giou_cost: float = 2
    mask_loss_coefficient: float = 1
    dice_loss_coefficient: float = 1
    bbox_loss_coefficient: float = 5
    giou_loss_coefficient: float = 2
    eos_coefficient: float = 0.1
    freeze_backbone_norms: bool = True
    query_groups: int = 1

    def __post_init__(self) -> None:
        backbone = self.backbone_config
        if backbone is None:
            backbone = _resnet50_backbone(self.num_channels)
        if not isinstance(backbone, dict) or backbone.get("model_type") not in BACKBONES:
            got = backbone.get("model_type") if isinstance(backbone, dict) else backbone
            raise ConfigError(f"key 'backbone_config' has model_type {got!r}; supported backbones are "
                              f"{sorted(BACKBONES)} (a config.json dict with its 'model_type')")
        family = BACKBONES[backbone["model_type"]]
        parsed = family.CONFIG.from_hf(backbone, source="key 'backbone_config'")
        object.__setattr__(self, "backbone_config", parsed.to_hf())
        problems = _config_problems(self, parsed)
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_hf(cls, d: dict[str, Any], source: str) -> DetrConfig:
        """Read an HF `config.json` dict, a timm ResNet-50 one too; `source` prefixes every error."""
        for alias, key in _ALIASES.items():
            if alias in d and d[alias] != d.get(key, getattr(cls, key)):
                raise ConfigError(f"{source}: key {alias!r} is {d[alias]!r}, but it is HF's other name of "
                                  f"{key!r}, which is {d.get(key, getattr(cls, key))!r}")
        values = {k: v for k, v in d.items() if k not in _ALIASES}
        try:
            values["backbone_config"] = _native_backbone(d)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        return read_hf_config(cls, values, source, MODEL_TYPE, ignore=_IGNORED_KEYS)

    def to_hf(self) -> dict[str, Any]:
        """JSON-ready dict that `transformers.DetrConfig(**d)` and `from_hf` both accept: a native
        backbone (use_timm_backbone false), no download of pretrained backbone weights."""
        d: dict[str, Any] = {"model_type": MODEL_TYPE}
        d.update(dataclasses.asdict(self))
        return {**d, "use_timm_backbone": False, "use_pretrained_backbone": False}


def _native_backbone(d: dict[str, Any]) -> dict[str, Any] | None:
    """config.json's backbone as a native backbone_config: a timm resnet50 (HF's default, written
    as use_timm_backbone + backbone, or as a "timm_backbone" backbone_config) becomes our ResNet-50."""
    backbone = d.get("backbone_config")
    timm = backbone.get("model_type") == "timm_backbone" if isinstance(backbone, dict) else backbone is None
    if backbone is not None and not timm:
        if d.get("use_timm_backbone"):
            raise ConfigError("key 'use_timm_backbone' is true next to a native 'backbone_config'; expected false")
        return backbone
    if backbone is None and d.get("use_timm_backbone") is False:
        raise ConfigError("key 'use_timm_backbone' is false but there is no 'backbone_config'; expected the "
                          "backbone's config.json dict")
    timm_config = backbone or {}
    name = timm_config.get("backbone") or d.get("backbone") or "resnet50"
    if name not in TIMM_BACKBONES:
        raise ConfigError(f"key 'backbone' is {name!r} (a timm backbone); supported timm backbones are "
                          f"{list(TIMM_BACKBONES)}; other backbones go in 'backbone_config'")
    kwargs = {**(d.get("backbone_kwargs") or {}), **timm_config}
    if kwargs.get("output_stride") not in (None, 32):
        raise ConfigError(f"key 'backbone_kwargs' has output_stride {kwargs['output_stride']!r} (a dilated "
                          "backbone, DETR-DC5); only the plain stride-32 backbone is supported")
    return _resnet50_backbone(kwargs.get("num_channels", kwargs.get("in_chans", d.get("num_channels", 3))))


def _config_problems(c: DetrConfig, backbone: Any) -> list[str]:
    """Every value of `c` that this implementation cannot honour, as "key ...: why"."""
    problems = []

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    for key in ("num_channels", "num_queries", "encoder_layers", "encoder_ffn_dim", "encoder_attention_heads",
                "decoder_layers", "decoder_ffn_dim", "decoder_attention_heads", "d_model", "query_groups"):
        if not positive_int(getattr(c, key)):
            problems.append(f"key {key!r} is {getattr(c, key)!r}, expected a positive int")
    if problems:
        return problems
    if c.d_model % 4:
        problems.append(f"key 'd_model' is {c.d_model}, expected a multiple of 4 (sine and cosine encodings "
                        "of y and x share its channels)")
    for key in ("encoder_attention_heads", "decoder_attention_heads"):
        if c.d_model % getattr(c, key):
            problems.append(f"key {key!r} is {getattr(c, key)}, expected a divisor of d_model = {c.d_model}")
    if c.position_embedding_type != "sine":
        problems.append(f"key 'position_embedding_type' is {c.position_embedding_type!r}; only 'sine' is supported")
    if c.dilation:
        problems.append("key 'dilation' is true (DETR-DC5); only the plain stride-32 backbone is supported")
    for key in ("encoder_layerdrop", "decoder_layerdrop"):
        if getattr(c, key) != 0:
            problems.append(f"key {key!r} is {getattr(c, key)!r}; LayerDrop is not implemented, expected 0")
    if c.is_encoder_decoder is not True:
        problems.append(f"key 'is_encoder_decoder' is {c.is_encoder_decoder!r}; DETR is an encoder-decoder, "
                        "expected true")
    if c.activation_function not in ACTIVATIONS:
        problems.append(f"key 'activation_function' is {c.activation_function!r}, expected one of "
                        f"{sorted(ACTIVATIONS)}")
    for key in ("dropout", "attention_dropout", "activation_dropout"):
        if not (isinstance(getattr(c, key), (int, float)) and 0 <= getattr(c, key) < 1):
            problems.append(f"key {key!r} is {getattr(c, key)!r}, expected a number in [0, 1)")
    if backbone.num_channels != c.num_channels:
        problems.append(f"key 'num_channels' is {c.num_channels}, but backbone_config's is {backbone.num_channels}")
    # HF's DETR reads the last of the backbone's out_features, we its last level: they must agree.
    names = ["stem"] + [f"stage{i}" for i in range(1, len(backbone.depths) + 1)]
    if backbone.out_indices:
        last = names[backbone.out_indices[-1]]
    else:
        last = backbone.out_features[-1] if backbone.out_features else names[-1]
    if last != names[-1]:
        problems.append(f"key 'backbone_config' has out_features {list(backbone.out_features or [])} / out_indices "
                        f"{list(backbone.out_indices or [])}, read by DETR at {last!r}; DETR reads the backbone's "
                        f"last level, expected {names[-1]!r} last")
    return problems


CONFIG = DetrConfig

PRESETS: dict[str, DetrConfig] = {
    # Mirrors facebook/detr-resnet-50 (HF's DetrConfig defaults; auxiliary_loss false as in its
    # config.json), with its timm ResNet-50 as our ResNet-50 (read at stage4).
    "detr-resnet-50": DetrConfig(),
    # Tiny, for tests: the resnet-test backbone, d_model 16, 1 encoder and 2 decoder layers,
    # 5 queries, auxiliary outputs on.
    "detr-test": DetrConfig(
        backbone_config={**resnet.PRESETS["resnet-test"].to_hf(), "out_features": ["stage4"]},
        num_queries=5, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=16, auxiliary_loss=True),
}


# ----------------------------------------------------------------------------- modules

def build_backbone(config: DetrConfig) -> Backbone:
    """The zoo backbone of `config.backbone_config`, as HF's AutoBackbone builds it (the family's
    "backbone" head where it has one), its batch norms frozen unless `freeze_backbone_norms` is false."""
    family = BACKBONES[config.backbone_config["model_type"]]
    record = family.HEADS.get("backbone", family.HEADS["base"])
    backbone = record.make(family.CONFIG.from_hf(config.backbone_config, "key 'backbone_config'"))
    return freeze_batch_norm(backbone) if config.freeze_backbone_norms else backbone


def sine_position_embedding(mask: Tensor, dim: int, dtype: torch.dtype) -> Tensor:
    """DETR's 2-D sine positions (Appendix A.3) of a feature map whose real (unpadded) cells are
    `mask` (B, h, w) True: y and x are the cumulative counts of real cells down and across,
    divided by the image's own height / width and scaled to (0, 2 pi]; each gives dim / 2
    channels, sin and cos interleaved at frequencies 1 / 10000^(2 floor(k / 2) / (dim / 2)).
    Returns (B, dim, h, w): the y channels, then the x channels."""
    real = mask.to(dtype)
    y = real.cumsum(1)  # (B, h, w)
    x = real.cumsum(2)
    y = y / (y[:, -1:, :] + _SINE_EPS) * SINE_SCALE
    x = x / (x[:, :, -1:] + _SINE_EPS) * SINE_SCALE
    half = dim // 2
    k = torch.arange(half, device=mask.device).to(dtype)
    freqs = SINE_TEMPERATURE ** (2 * torch.div(k, 2, rounding_mode="floor") / half)  # (half,)

    def encode(position: Tensor) -> Tensor:
        angles = position[..., None] / freqs  # (B, h, w, half)
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(y), encode(x)), dim=-1).permute(0, 3, 1, 2)  # (B, dim, h, w)


class DetrAttention(nn.Module):
    """Multi-head attention whose queries, keys and values come from three inputs: DETR adds
    positions to queries and keys but not to values (Appendix A.3), so the zoo's fused-qkv
    `layers.Attention` does not fit; the mask is the zoo's (`layers.attention_mask`)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, keep: Tensor | None = None,
                allowed: Tensor | None = None) -> Tensor:
        """query (B, Tq, D); key and value (B, Tk, D); keep (B, Tk) True = attend; allowed (Tq, Tk)
        True where a query may attend to a key (query groups; not together with keep)."""
        B, Tq, D = query.shape

        def heads(x: Tensor) -> Tensor:
            return x.view(B, x.shape[1], self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, H, T, d)

        q, k, v = heads(self.q_proj(query)), heads(self.k_proj(key)), heads(self.v_proj(value))
        mask = allowed if allowed is not None else attention_mask(keep, False, None, Tq, k.shape[2], q.dtype, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, Tq, D))  # (B, Tq, D)


class EncoderLayer(nn.Module):
    """Post-LN encoder layer (Appendix A.3, Fig. 10): self-attention with positions on queries
    and keys, add and norm, feed-forward, add and norm."""

    def __init__(self, c: DetrConfig) -> None:
        super().__init__()
        self.self_attn = DetrAttention(c.d_model, c.encoder_attention_heads, c.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.mlp = FeedForward(c.d_model, c.encoder_ffn_dim, c.activation_function, dropout=c.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, pos: Tensor, keep: Tensor) -> Tensor:
        """x, pos (B, S, D); keep (B, S) True on real cells."""
        q = x + pos
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(q, q, x, keep)))
        return self.final_layer_norm(x + self.dropout(self.mlp(x)))  # (B, S, D)


class DecoderLayer(nn.Module):
    """Post-LN decoder layer (Appendix A.3, Fig. 10): self-attention among the object queries
    (query positions on queries and keys), cross-attention to the encoder output (query
    positions on the queries, spatial positions on the keys), feed-forward; add and norm after each."""

    def __init__(self, c: DetrConfig) -> None:
        super().__init__()
        self.self_attn = DetrAttention(c.d_model, c.decoder_attention_heads, c.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.encoder_attn = DetrAttention(c.d_model, c.decoder_attention_heads, c.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.mlp = FeedForward(c.d_model, c.decoder_ffn_dim, c.activation_function, dropout=c.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, keep: Tensor,
                groups: Tensor | None = None) -> Tensor:
        """x, query_pos (B, Q, D); memory, pos (B, S, D); keep (B, S) True on real cells; groups (Q, Q)
        True where two queries are of one group (None: all are)."""
        q = x + query_pos
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(q, q, x, allowed=groups)))
        x = self.encoder_attn_layer_norm(x + self.dropout(self.encoder_attn(x + query_pos, memory + pos, memory, keep)))
        return self.final_layer_norm(x + self.dropout(self.mlp(x)))  # (B, Q, D)


class DetrEncoder(nn.Module):
    def __init__(self, c: DetrConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))

    def forward(self, x: Tensor, pos: Tensor, keep: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos, keep)
        return x  # (B, S, D)


class DetrDecoder(nn.Module):
    """The decoder layers and their shared final LayerNorm, which every layer's output goes through
    on its way to the prediction heads (Sec. 3.2, "Auxiliary decoding losses")."""

    def __init__(self, c: DetrConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.layernorm = nn.LayerNorm(c.d_model)

    def forward(self, query_pos: Tensor, memory: Tensor, pos: Tensor, keep: Tensor,
                groups: Tensor | None = None) -> list[Tensor]:
        """Every layer's output through the final norm, (B, Q, D) each; the target starts at zeros."""
        x, outputs = torch.zeros_like(query_pos), []
        for layer in self.layers:
            x = layer(x, query_pos, memory, pos, keep, groups)
            outputs.append(self.layernorm(x))
        return outputs


@dataclass
class DetrOutput:
    """What the base model gives. last_hidden_state (B, Q, D): the last decoder layer's output
    through the final norm; intermediate_hidden_states (L, B, Q, D): every layer's so (the last
    one included), when config.auxiliary_loss; encoder_last_hidden_state (B, h * w, D)."""

    last_hidden_state: Tensor
    intermediate_hidden_states: Tensor | None
    encoder_last_hidden_state: Tensor


class DetrModel(nn.Module):
    """The DETR transformer on a frozen-batch-norm backbone, equal to HF's `DetrModel`."""

    def __init__(self, config: DetrConfig) -> None:
        super().__init__()
        self.config = c = config
        self.backbone = build_backbone(c)
        self.input_projection = nn.Conv2d(self.backbone.feature_info[-1].channels, c.d_model, kernel_size=1)
        self.query_position_embeddings = nn.Embedding(c.num_queries, c.d_model)
        if c.query_groups > 1:  # Group DETR's other groups (training only)
            self.extra_query_embeddings = nn.Embedding(c.num_queries * (c.query_groups - 1), c.d_model)
        self.encoder = DetrEncoder(c)
        self.decoder = DetrDecoder(c)
        self.num_layers = c.encoder_layers + c.decoder_layers
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """As the official code: Xavier-uniform transformer matrices (gain init_xavier_std), zero
        biases, unit LayerNorms, N(0, 1) object queries; the backbone and the projection keep theirs."""
        for module in [*self.encoder.modules(), *self.decoder.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=self.config.init_xavier_std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.query_position_embeddings.weight)
        if self.config.query_groups > 1:
            nn.init.normal_(self.extra_query_embeddings.weight)

    def forward(self, pixel_values: Tensor, pixel_mask: Tensor | None = None) -> DetrOutput:
        """pixel_values (B, C, H, W); pixel_mask (B, H, W), 1 (True) on real pixels, 0 on padding
        (default: all real)."""
        B, _, H, W = pixel_values.shape
        if pixel_mask is None:
            pixel_mask = torch.ones(B, H, W, dtype=torch.bool, device=pixel_values.device)
        if pixel_mask.shape != (B, H, W):
            raise ValueError(f"DETR: pixel_mask has shape {tuple(pixel_mask.shape)}; expected (B, H, W) = {(B, H, W)} "
                             "as pixel_values")
        feature = self.backbone.forward_features(pixel_values, [-1])[0]  # (B, C, h, w), stride 32
        h, w = feature.shape[-2:]
        mask = F.interpolate(pixel_mask[:, None].float(), size=(h, w)).bool()[:, 0]  # (B, h, w), nearest
        pos = sine_position_embedding(mask, self.config.d_model, pixel_values.dtype)  # (B, D, h, w)
        pos = pos.flatten(2).transpose(1, 2)  # (B, S = h * w, D)
        memory = self.input_projection(feature).flatten(2).transpose(1, 2)  # (B, S = h * w, D)
        keep = mask.flatten(1)  # (B, S)
        memory = self.encoder(memory, pos, keep)
        queries, groups = self.queries(memory.device)  # (Q * G, D): G groups in training, else 1
        outputs = self.decoder(queries[None].expand(B, -1, -1), memory, pos, keep, groups)
        stacked = torch.stack(outputs) if self.config.auxiliary_loss else None  # (L, B, Q, D)
        return DetrOutput(last_hidden_state=outputs[-1], intermediate_hidden_states=stacked,
                          encoder_last_hidden_state=memory)

    def queries(self, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """The object queries this pass runs, (Q * G, D), and which of them share a group, (Q * G,
        Q * G) bool or None when there is one group (eval, or query_groups 1)."""
        first = self.query_position_embeddings.weight
        if not (self.training and self.config.query_groups > 1):
            return first, None
        queries = torch.cat((first, self.extra_query_embeddings.weight))
        group = torch.arange(queries.shape[0], device=device) // self.config.num_queries
        return queries, group[:, None] == group[None, :]

    def layer_index(self, param_name: str) -> int:
        """0 for the backbone, the input projection and the object queries; encoder layers 1..E,
        decoder layers E+1..E+D; num_layers + 1 for the final decoder norm."""
        if param_name.startswith(("backbone.", "input_projection.", "query_position_embeddings.",
                                  "extra_query_embeddings.")):
            return 0
        if param_name.startswith("decoder.layernorm."):
            return self.num_layers + 1
        match = re.match(r"(encoder|decoder)\.layers\.(\d+)\.", param_name)
        if match:
            return int(match[2]) + 1 + (self.config.encoder_layers if match[1] == "decoder" else 0)
        raise ValueError(f"DetrModel.layer_index: unknown parameter {param_name!r}; expected names under "
                         "'backbone.', 'input_projection.', 'query_position_embeddings.', 'encoder.layers.<i>.' "
                         "or 'decoder.'")


class BoxHead(nn.Module):
    """The box FFN (Sec. 3.2, "Prediction feed-forward networks"): 3 Linear layers with ReLU,
    then a sigmoid: (cx, cy, w, h) as fractions of the image's own (unpadded) size."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, 4)])

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.layers[1](F.relu(self.layers[0](x))))
        return self.layers[2](x).sigmoid()  # (..., 4)


@dataclass
class DetectionOutput:
    """logits (B, Q, num_labels + 1), the last class "no object"; pred_boxes (B, Q, 4) (cx, cy, w,
    h) in [0, 1] of each image's unpadded size; aux_outputs: the same ({"logits", "pred_boxes"})
    for every decoder layer but the last, when config.auxiliary_loss, else None;
    last_hidden_state (B, Q, D)."""

    logits: Tensor
    pred_boxes: Tensor
    aux_outputs: list[dict[str, Tensor]] | None
    last_hidden_state: Tensor


class DetrForObjectDetection(nn.Module):
    """HF's `DetrForObjectDetection`: a Linear class head (num_labels + 1 outputs) and the box FFN
    on each decoder output."""

    def __init__(self, config: DetrConfig, num_labels: int) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"DetrForObjectDetection: num_labels must be >= 1, got {num_labels}")
        self.model = DetrModel(config)
        self.num_labels = num_labels
        self.class_labels_classifier = nn.Linear(config.d_model, num_labels + 1)  # + "no object"
        self.bbox_predictor = BoxHead(config.d_model)

    @property
    def config(self) -> DetrConfig:
        return self.model.config

    def forward(self, pixel_values: Tensor, pixel_mask: Tensor | None = None) -> DetectionOutput:
        out = self.model(pixel_values, pixel_mask)
        logits = self.class_labels_classifier(out.last_hidden_state)  # (B, Q, num_labels + 1)
        boxes = self.bbox_predictor(out.last_hidden_state)  # (B, Q, 4)
        aux = None
        if out.intermediate_hidden_states is not None:
            earlier = out.intermediate_hidden_states[:-1]  # (L - 1, B, Q, D)
            aux = [{"logits": logits_i, "pred_boxes": boxes_i} for logits_i, boxes_i in
                   zip(self.class_labels_classifier(earlier), self.bbox_predictor(earlier))]
        return DetectionOutput(logits=logits, pred_boxes=boxes, aux_outputs=aux,
                               last_hidden_state=out.last_hidden_state)


MODEL = DetrModel
BLOCKS = (EncoderLayer, DecoderLayer)

HEADS: dict[str, Head] = {
    "base": Head("DetrModel", DetrModel),
    "object_detection": Head("DetrForObjectDetection", DetrForObjectDetection,
                             parts=("class_labels_classifier.", "bbox_predictor."), output="class_labels_classifier",
                             size_field="num_labels", extra_outputs=1),
}


# ----------------------------------------------------------------------------- key map

_HF_BACKBONE = "backbone.conv_encoder.model."
_TIMM_KEY = re.compile(r"^((?:model\.)?backbone\.conv_encoder\.model\.)((?:conv1|bn1|layer\d+)\..+)$")

# Other spellings -> the names HF's save_pretrained writes: transformers >= 5's own module names,
# and the timm ResNet-50 of hub checkpoints (torchvision's names) -> HF's ResNet names.
HF_RENAMES: tuple[tuple[str, Any], ...] = (
    (r"^((?:model\.)?)backbone\.model\.", r"\1" + _HF_BACKBONE),
    (r"\.o_proj\.", ".out_proj."),
    (r"layers\.(\d+)\.mlp\.fc([12])\.", r"layers.\1.fc\2."),
    (_TIMM_KEY.pattern, lambda m: m[1] + resnet.our_key_to_hf(m[2])),
)
# A batch-norm counter some timm checkpoints carry: frozen norms have none.
IGNORED_HF_KEYS: tuple[str, ...] = (r"backbone\.conv_encoder\.model\..*num_batches_tracked",)


def _backbone_key(key: str, direction: str) -> str:
    """One backbone key renamed by the first family of BACKBONES whose map knows it."""
    for family in BACKBONES.values():
        renamed = next(iter(getattr(family, direction)({key: None})))
        if renamed != key:
            return renamed
    return key


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF `DetrModel` keys (no "model." prefix) -> our `DetrModel` keys; head keys and unknown
    keys pass through unchanged."""
    out = {}
    for key, tensor in sd.items():
        if key.startswith(_HF_BACKBONE):
            key = "backbone." + _backbone_key(key.removeprefix(_HF_BACKBONE), "hf_to_ours")
        else:
            key = re.sub(r"^((?:en|de)coder\.layers\.\d+\.)(fc[12]\.)", r"\1mlp.\2", key)
        out[key] = tensor
    return out


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our `DetrModel` keys -> HF's; the inverse of `hf_to_ours`."""
    out = {}
    for key, tensor in sd.items():
        if key.startswith("backbone."):
            key = _HF_BACKBONE + _backbone_key(key.removeprefix("backbone."), "ours_to_hf")
        else:
            key = re.sub(r"^((?:en|de)coder\.layers\.\d+\.)mlp\.(fc[12]\.)", r"\1\2", key)
        out[key] = tensor
    return out
