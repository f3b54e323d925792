"""wav2vec 2.0: Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning
of Speech Representations" (NeurIPS 2020), https://arxiv.org/abs/2006.11477.

Raw audio goes through a convolutional feature encoder (Sec. 2, "Feature encoder") to
latent frames z_t, about one per 20 ms; these are projected, masked (Sec. 3.1) and fed to
a Transformer context network with a convolutional relative position embedding
(Sec. 2, "Contextualized representations with Transformers"). Fine-tuning adds a linear
CTC head over characters (Sec. 4) or, as in SUPERB, a pooled classification head.
Pre-training (quantizer and contrastive task, Sec. 2-3.2) is in `wav2vec2_pretraining.py`.

Our parameter names are HF's (`Wav2Vec2Model` and its heads, as transformers 5 writes them)
but for the shared attention and feed-forward layers, so the key map is short; HF_RENAMES
reads the position conv's weight-norm spelling of older checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import keymaps
from lit_tasks.zoo.base import Head, config_from_dict
from lit_tasks.zoo.layers import ACTIVATIONS, Attention, FeedForward, padding_keep
from lit_tasks.zoo.wav2vec2_pretraining import Wav2Vec2ForPreTraining

MODEL_TYPE = "wav2vec2"
MODALITY = "audio"
HF_BASE_PREFIX = "wav2vec2"


# fairseq-era keys that old wav2vec2 config.json files carry and transformers never reads, and
# num_feat_extract_layers, which transformers derives from conv_dim (to_hf writes it).
LEGACY_HF_KEYS = frozenset({
    "num_feat_extract_layers",
    "feat_extract_dropout", "freeze_feat_extract_train", "gradient_checkpointing", "mask_channel_length",
    "mask_channel_min_space", "mask_channel_other", "mask_channel_prob", "mask_channel_selection",
    "mask_time_min_space", "mask_time_other", "mask_time_selection", "no_mask_channel_overlap", "no_mask_time_overlap",
})


@dataclass(frozen=True)
class Wav2Vec2Config:
    """The fields and defaults of an HF `config.json` with `model_type: "wav2vec2"`."""

    # Feature encoder (Sec. 2): one conv layer per entry.
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"  # "group": GroupNorm after conv 0 only; "layer": LayerNorm after each
    feat_extract_activation: str = "gelu"
    feat_proj_dropout: float = 0.0
    # Transformer context network.
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False  # pre-LN blocks (the large LV-60 models) instead of post-LN
    # SpecAugment-style masking of the projected features (Sec. 3.1; Park et al. 2019).
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    # Pre-training: quantizer and contrastive task (Sec. 2-3.2).
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 320
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    diversity_loss_weight: float = 0.1
    feat_quantizer_dropout: float = 0.0
    # CTC fine-tuning (Sec. 4): the blank is the pad token.
    vocab_size: int = 32
    pad_token_id: int = 0
    final_dropout: float = 0.1
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    # Sequence classification (HF's SUPERB head); num_labels comes from config.json's id2label.
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    num_labels: int = 2
    # HF options we do not implement: accepted at their "off" values only (see `check`).
    add_adapter: bool = False
    adapter_attn_dim: int | None = None
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None  # the adapters' width; None (kept for = hidden_size) means hidden_size
    # Only read by HF's x-vector head, which we do not offer; inert here.
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: int = 512

    def __post_init__(self) -> None:
        if self.output_hidden_size == self.hidden_size:  # kept as "the same", so overriding hidden_size moves it
            object.__setattr__(self, "output_hidden_size", None)

    @classmethod
    def from_hf(cls, d: dict, source: str) -> Wav2Vec2Config:
        supported = sorted(head.architecture for head in HEADS.values())
        unsupported = [a for a in d.get("architectures") or [] if a not in supported]
        if unsupported:
            raise ConfigError(
                f"{source}: key 'architectures' names {unsupported}, which lit_tasks does not implement; "
                f"supported are {supported}"
            )
        d = dict(d)
        if "num_labels" not in d and isinstance(d.get("id2label"), dict):
            d["num_labels"] = len(d["id2label"])
        config = config_from_dict(cls, d, source=source, ignore=LEGACY_HF_KEYS)
        config.check(source)
        return config

    def to_hf(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        num_labels = d.pop("num_labels")
        d["output_hidden_size"] = self.output_hidden_size or self.hidden_size
        d["num_feat_extract_layers"] = len(self.conv_dim)
        d["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        d["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
        return {"model_type": MODEL_TYPE, **d}

    def check(self, source: str) -> None:
        """Raise ConfigError (naming `source` and the key) for values we cannot honour."""

        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{source}: key {key!r} is {getattr(self, key)!r}; expected {expected}")

        if self.feat_extract_norm not in ("group", "layer"):
            fail("feat_extract_norm", "'group' or 'layer'")
        for key in ("feat_extract_activation", "hidden_act"):
            if getattr(self, key) not in ACTIVATIONS:
                fail(key, f"one of {sorted(ACTIVATIONS)}")
        for key in ("conv_kernel", "conv_stride"):
            if len(getattr(self, key)) != len(self.conv_dim):
                fail(key, f"one entry per conv layer, as conv_dim has ({len(self.conv_dim)})")
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            fail("num_attention_heads", f"a positive divisor of hidden_size={self.hidden_size}")
        if self.num_conv_pos_embedding_groups < 1 or self.hidden_size % self.num_conv_pos_embedding_groups:
            fail("num_conv_pos_embedding_groups", f"a positive divisor of hidden_size={self.hidden_size}")
        if self.codevector_dim % self.num_codevector_groups:
            fail("codevector_dim", f"a multiple of num_codevector_groups={self.num_codevector_groups}")
        if self.ctc_loss_reduction not in ("sum", "mean"):
            fail("ctc_loss_reduction", "'sum' or 'mean'")
        if self.add_adapter:
            fail("add_adapter", "false: the adapter layers after the encoder are not implemented")
        if self.adapter_attn_dim is not None:
            fail("adapter_attn_dim", "null: the per-layer attention adapters (MMS) are not implemented")


CONFIG = Wav2Vec2Config

PRESETS: dict[str, Wav2Vec2Config] = {
    # Mirrors facebook/wav2vec2-base (BASE, pre-trained on LibriSpeech 960 h, Sec. 4.1): post-LN, group-norm encoder.
    "wav2vec2-base": Wav2Vec2Config(
        activation_dropout=0.0, feat_proj_dropout=0.1, final_dropout=0.0, layerdrop=0.05,
    ),
    # Mirrors facebook/wav2vec2-large-lv60 (LARGE, LibriVox 60k h): pre-LN ("stable layer norm"),
    # LayerNorm after every conv, conv biases.
    "wav2vec2-large-lv60": Wav2Vec2Config(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, activation_dropout=0.0,
        feat_proj_dropout=0.1, final_dropout=0.0, layerdrop=0.1, codevector_dim=768, proj_codevector_dim=768,
    ),
    # Tiny, for tests: three convs (x20 downsampling), 2 layers of width 32.
    "wav2vec2-test": Wav2Vec2Config(
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_codevectors_per_group=16, codevector_dim=16, proj_codevector_dim=16,
        num_negatives=5, mask_time_length=2, classifier_proj_size=16, vocab_size=12,
    ),
}


def conv_output_lengths(config: Wav2Vec2Config, lengths: Tensor) -> Tensor:
    """Frames the feature encoder makes from `lengths` samples: floor((L - k) / s) + 1 per conv."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def span_mask(
    shape: tuple[int, int], prob: float, span: int, min_spans: int = 0, lengths: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, T) bool mask of about prob * T / span random spans of `span` steps, at least
    `min_spans` (Sec. 3.1). Spans may overlap, so `prob` (HF's mask_time_prob) bounds the masked
    fraction; the paper's p = 0.065 of steps as span starts with M = 10 is prob = 0.65 here.
    With `lengths` (B,), each row's spans stay within its length."""
    batch, steps = shape
    mask = torch.zeros(batch, steps, dtype=torch.bool)
    jitter = torch.rand((), generator=generator).item()  # probabilistic rounding of the span count
    for b, length in enumerate(lengths.tolist() if lengths is not None else [steps] * batch):
        starts = length - span + 1
        count = min(max(int(prob * length / span + jitter), min_spans), max(starts, 0))
        if count == 0:
            continue
        first = torch.randperm(starts, generator=generator)[:count]
        mask[b, (first[:, None] + torch.arange(span)).flatten()] = True
    return mask


class ConvLayer(nn.Module):
    """One conv of the feature encoder (Sec. 2): Conv1d, optional norm, GELU.

    norm "group": GroupNorm with one group per channel (normalises each channel over time);
    norm "layer": LayerNorm over the channels of each frame. Both use torch's eps of 1e-5.
    """

    def __init__(self, config: Wav2Vec2Config, index: int, norm: str | None):
        super().__init__()
        in_dim = config.conv_dim[index - 1] if index > 0 else 1
        out_dim = config.conv_dim[index]
        self.conv = nn.Conv1d(in_dim, out_dim, config.conv_kernel[index], config.conv_stride[index], bias=config.conv_bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim)
        self.activation = ACTIVATIONS[config.feat_extract_activation]()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # (B, C, T')
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """The convolutional feature encoder f: X -> Z (Sec. 2), (B, L) samples -> (B, C, T) frames."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        norms = [config.feat_extract_norm if (i == 0 or config.feat_extract_norm == "layer") else None
                 for i in range(len(config.conv_dim))]
        self.conv_layers = nn.ModuleList(ConvLayer(config, i, norm) for i, norm in enumerate(norms))

    def forward(self, input_values: Tensor) -> Tensor:
        x = input_values[:, None]  # (B, 1, L)
        for layer in self.conv_layers:
            x = layer(x)
        return x  # (B, C, T)


class FeatureProjection(nn.Module):
    """LayerNorm + Linear + dropout from conv channels to the Transformer width."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        normed = self.layer_norm(features)  # (B, T, C), the quantizer's input
        return self.dropout(self.projection(normed)), normed  # (B, T, D), (B, T, C)


class PositionalConvEmbedding(nn.Module):
    """Relative position information from a grouped conv with weight normalisation
    (Sec. 2, "Contextualized representations"; Salimans & Kingma 2016), kernel 128, 16 groups,
    then GELU. An even kernel makes one frame too many, which is dropped at the end."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        size = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, size, padding=size // 2,
                              groups=config.num_conv_pos_embedding_groups)
        # weight = g * v / ||v||, the norm over all dims but the kernel dim (2): g is (1, 1, k).
        nn.utils.parametrizations.weight_norm(self.conv, name="weight", dim=2)
        self.trim = 1 if size % 2 == 0 else 0
        self.activation = ACTIVATIONS[config.feat_extract_activation]()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x.transpose(1, 2))  # (B, D, T + trim)
        out = out[:, :, : out.shape[2] - self.trim]  # (B, D, T)
        return self.activation(out).transpose(1, 2)  # (B, T, D)


class EncoderLayer(nn.Module):
    """One Transformer block. Post-LN (BASE): LN(x + Attn(x)), then LN(x + FF(x)).
    Pre-LN ("stable layer norm", LARGE LV-60): x + Attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = Attention(config.hidden_size, config.num_attention_heads, dropout=config.attention_dropout)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act,
                                        dropout=config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.layer_norm(x), keep=key_mask))
            return x + self.dropout(self.feed_forward(self.final_layer_norm(x)))
        x = self.layer_norm(x + self.dropout(self.attention(x, keep=key_mask)))
        return self.final_layer_norm(x + self.dropout(self.feed_forward(x)))


class Encoder(nn.Module):
    """The context network g: Z -> C (Sec. 2), with LayerDrop (Fan et al. 2020) in training.

    Returns the last state and, per layer, its input: entry 0 is the first layer's input,
    entry i its output. For the pre-LN variant the final LayerNorm is applied to the last
    state only, as HF does (its hidden_states[-1] is the un-normed output).
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, frame_mask: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        key_mask = padding_keep(frame_mask)  # (B, T), True = attend; None without padding
        if key_mask is not None:
            x = x.masked_fill(~key_mask[:, :, None], 0.0)  # padding frames enter the pos conv as zeros
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        states = [x]
        for layer in self.layers:
            if not (self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop):
                x = layer(x, key_mask)
            states.append(x)
        if self.pre_norm:
            x = self.layer_norm(x)
        return x, states


@dataclass
class AudioOutput:
    """last_hidden_state (B, T, D); extract_features (B, T, C): the LayerNorm'd conv features
    before the projection (the quantizer's input); hidden_states: the first layer's input,
    then each layer's output; frame_mask (B, T) bool, True on real frames, when a mask was given."""

    last_hidden_state: Tensor
    extract_features: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    frame_mask: Tensor | None = None


class Wav2Vec2(nn.Module):
    """The wav2vec 2.0 model (Sec. 2), equal to HF `Wav2Vec2Model`.

    `masked_spec_embed` is the learned vector that replaces masked frames (Sec. 3.1); it
    exists, as in HF, only when `mask_time_prob` or `mask_feature_prob` is positive.
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        config.check("Wav2Vec2Config")
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        if config.mask_time_prob > 0 or config.mask_feature_prob > 0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size))
        self.encoder = Encoder(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """HF's initialisation scheme (the values differ, the distributions match)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv1d) and module is not self.encoder.pos_conv_embed.conv:
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    bound = (module.groups / (module.in_channels * module.kernel_size[0])) ** 0.5
                    nn.init.uniform_(module.bias, -bound, bound)
        conv = self.encoder.pos_conv_embed.conv
        with torch.no_grad():  # through weight_norm's right_inverse: g = ||w||, v = w
            conv.weight = torch.randn_like(conv.weight) * 2 * (1 / (conv.kernel_size[0] * conv.in_channels)) ** 0.5
        nn.init.zeros_(conv.bias)
        projection = self.feature_projection.projection
        bound = projection.in_features ** -0.5
        nn.init.uniform_(projection.weight, -bound, bound)
        nn.init.uniform_(projection.bias, -bound, bound)
        if hasattr(self, "masked_spec_embed"):
            nn.init.uniform_(self.masked_spec_embed)

    def freeze_feature_encoder(self) -> None:
        """Stop training the conv feature encoder (as in fine-tuning, Sec. 4.2)."""
        self.feature_extractor.requires_grad_(False)

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    def layer_index(self, param_name: str) -> int:
        """Depth of a parameter (name relative to this module) for layer-wise lr decay: 0 for the
        feature encoder, projection, position conv and post-LN embedding norm, i for Transformer
        layer i (1-based), num_layers + 1 for the final norm of pre-LN (stable layer norm) models."""
        if param_name.startswith("encoder.layers."):
            return int(param_name.split(".")[2]) + 1
        if param_name.startswith("encoder.layer_norm.") and self.config.do_stable_layer_norm:
            return self.num_layers + 1
        return 0

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """(B,) sample counts -> (B,) frame counts."""
        return conv_output_lengths(self.config, lengths)

    def frame_mask(self, attention_mask: Tensor, num_frames: int) -> Tensor:
        """(B, L) sample mask (right-padded, 1 = real) -> (B, T) bool frame mask."""
        lengths = self.output_lengths(attention_mask.sum(-1).long())
        return torch.arange(num_frames, device=attention_mask.device) < lengths[:, None]

    def spec_augment(self, x: Tensor, frame_mask: Tensor | None, mask_time_indices: Tensor | None) -> Tensor:
        """Masking (Sec. 3.1): frames in `mask_time_indices` (given, or drawn in training) become
        `masked_spec_embed`; in training, random channel spans are zeroed (`mask_feature_prob`)."""
        c = self.config
        if not c.apply_spec_augment:
            return x
        B, T, D = x.shape
        if mask_time_indices is None and self.training and c.mask_time_prob > 0:
            lengths = frame_mask.sum(-1) if frame_mask is not None else None
            mask_time_indices = span_mask((B, T), c.mask_time_prob, c.mask_time_length, c.mask_time_min_masks, lengths)
        if mask_time_indices is not None:
            if not hasattr(self, "masked_spec_embed"):
                raise ValueError("mask_time_indices given, but the model has no masked_spec_embed "
                                 "(config mask_time_prob and mask_feature_prob are both 0)")
            x = torch.where(mask_time_indices.to(x.device, torch.bool)[:, :, None], self.masked_spec_embed.to(x.dtype), x)
        if self.training and c.mask_feature_prob > 0:
            channels = span_mask((B, D), c.mask_feature_prob, c.mask_feature_length, c.mask_feature_min_masks)
            x = x.masked_fill(channels.to(x.device)[:, None, :], 0.0)
        return x

    def forward(
        self, input_values: Tensor, attention_mask: Tensor | None = None, mask_time_indices: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> AudioOutput:
        """input_values (B, L) float audio; attention_mask (B, L), 1 on real samples (right padding);
        mask_time_indices (B, T) bool frames to mask, applied also in eval."""
        features = self.feature_extractor(input_values).transpose(1, 2)  # (B, T, C)
        frame_mask = self.frame_mask(attention_mask, features.shape[1]) if attention_mask is not None else None
        x, extract_features = self.feature_projection(features)  # (B, T, D), (B, T, C)
        x = self.spec_augment(x, frame_mask, mask_time_indices)
        x, states = self.encoder(x, frame_mask)  # (B, T, D)
        return AudioOutput(x, extract_features, tuple(states) if output_hidden_states else None, frame_mask)


def ctc_loss(
    logits: Tensor, frame_lengths: Tensor, labels: Tensor, blank: int = 0, reduction: str = "sum",
    zero_infinity: bool = False,
) -> Tensor:
    """CTC loss (Graves et al. 2006) as HF's Wav2Vec2ForCTC computes it (Sec. 4: fine-tuning).

    logits (B, T, V); frame_lengths (B,) real frames per row; labels (B, U) padded with -100
    (or with the blank, which a CTC target never holds). Log-softmax in float32; "mean"
    divides each row's loss by its target length, then averages (torch's semantics).
    """
    keep = (labels != -100) & (labels != blank)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T, B, V)
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's CTC has other constraints and results
        return F.ctc_loss(log_probs, labels[keep], frame_lengths, keep.sum(-1), blank=blank,
                          reduction=reduction, zero_infinity=zero_infinity)


class Wav2Vec2ForCTC(nn.Module):
    """Dropout + a linear layer to the vocabulary over every frame (Sec. 4); returns logits
    (B, T, vocab_size). The loss is `ctc_loss`, with frame lengths from `wav2vec2.output_lengths`."""

    def __init__(self, wav2vec2: Wav2Vec2, vocab_size: int | None = None):
        super().__init__()
        self.wav2vec2 = wav2vec2
        self.dropout = nn.Dropout(wav2vec2.config.final_dropout)
        self.lm_head = nn.Linear(wav2vec2.config.hidden_size, vocab_size or wav2vec2.config.vocab_size)
        nn.init.normal_(self.lm_head.weight, std=wav2vec2.config.initializer_range)
        nn.init.zeros_(self.lm_head.bias)

    @property
    def config(self) -> Wav2Vec2Config:
        return dataclasses.replace(self.wav2vec2.config, vocab_size=self.lm_head.out_features)

    def freeze_feature_encoder(self) -> None:
        self.wav2vec2.freeze_feature_encoder()

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        hidden = self.wav2vec2(input_values, attention_mask).last_hidden_state  # (B, T, D)
        return self.lm_head(self.dropout(hidden))  # (B, T, V)


class Wav2Vec2ForSequenceClassification(nn.Module):
    """HF's utterance classifier (SUPERB, Yang et al. 2021): the last state, or a softmax-weighted
    sum over all hidden states, projected, mean-pooled over real frames, then a linear classifier."""

    def __init__(self, wav2vec2: Wav2Vec2, num_labels: int | None = None):
        super().__init__()
        c = wav2vec2.config
        self.wav2vec2 = wav2vec2
        if c.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.full((c.num_hidden_layers + 1,), 1 / (c.num_hidden_layers + 1)))
        self.projector = nn.Linear(c.hidden_size, c.classifier_proj_size)
        self.classifier = nn.Linear(c.classifier_proj_size, num_labels or c.num_labels)
        for layer in (self.projector, self.classifier):
            nn.init.normal_(layer.weight, std=c.initializer_range)
            nn.init.zeros_(layer.bias)

    @property
    def config(self) -> Wav2Vec2Config:
        return dataclasses.replace(self.wav2vec2.config, num_labels=self.classifier.out_features)

    def freeze_feature_encoder(self) -> None:
        self.wav2vec2.freeze_feature_encoder()

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        weighted = self.wav2vec2.config.use_weighted_layer_sum
        out = self.wav2vec2(input_values, attention_mask, output_hidden_states=weighted)
        if weighted:
            states = torch.stack(out.hidden_states)  # (L + 1, B, T, D)
            hidden = (states * self.layer_weights.softmax(-1)[:, None, None, None]).sum(0)  # (B, T, D)
        else:
            hidden = out.last_hidden_state
        hidden = self.projector(hidden)  # (B, T, P)
        if out.frame_mask is None:
            pooled = hidden.mean(1)
        else:
            keep = out.frame_mask[:, :, None].to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * keep).sum(1) / keep.sum(1)  # (B, P)
        return self.classifier(pooled)  # (B, num_labels)


# ----------------------------------------------------------------------------------------
# HF key names: ours are HF's, but for the fused attention projections (q/k/v_proj -> qkv) and
# the shared layers' names.
_HF_QKV = ("attention.q_proj", "attention.k_proj", "attention.v_proj")
_RENAMED = {"attention.out_proj": "attention.proj", "feed_forward.intermediate_dense": "feed_forward.fc1",
            "feed_forward.output_dense": "feed_forward.fc2"}
# The position conv's weight norm as torch's deprecated `nn.utils.weight_norm` spelled it in older
# checkpoints (g and v), and as `nn.utils.parametrizations.weight_norm` does (what transformers 5 writes).
HF_RENAMES = ((r"pos_conv_embed\.conv\.weight_g$", "pos_conv_embed.conv.parametrizations.weight.original0"),
              (r"pos_conv_embed\.conv\.weight_v$", "pos_conv_embed.conv.parametrizations.weight.original1"))


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF keys (a base model's, or a head's with "wav2vec2." in front) -> ours; unknown keys pass unchanged."""
    return keymaps.rename(keymaps.fuse(sd, _HF_QKV, "attention.qkv"), _RENAMED)


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Ours -> the keys transformers 5 writes (the inverse of `hf_to_ours`)."""
    return keymaps.split(keymaps.rename(sd, keymaps.inverse(_RENAMED)), "attention.qkv", _HF_QKV)


MODEL = Wav2Vec2
BLOCKS = (EncoderLayer,)

HEADS: dict[str, Head] = {
    "base": Head("Wav2Vec2Model", Wav2Vec2),
    "ctc": Head("Wav2Vec2ForCTC", Wav2Vec2ForCTC, lambda config, size: Wav2Vec2ForCTC(Wav2Vec2(config), size),
                parts=("lm_head.",), output="lm_head", size_field="vocab_size"),
    "classification": Head("Wav2Vec2ForSequenceClassification", Wav2Vec2ForSequenceClassification,
                           lambda config, size: Wav2Vec2ForSequenceClassification(Wav2Vec2(config), size),
                           parts=("projector.", "classifier.", "layer_weights"), output="classifier",
                           size_field="num_labels"),
    "pretraining": Head("Wav2Vec2ForPreTraining", Wav2Vec2ForPreTraining,
                        lambda config: Wav2Vec2ForPreTraining(Wav2Vec2(config)),
                        parts=("quantizer.", "project_hid.", "project_q.")),
}
