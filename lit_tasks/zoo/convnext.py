"""ConvNeXt: Liu et al. 2022, "A ConvNet for the 2020s" (arXiv:2201.03545).

A ResNet "modernized" step by step towards a Swin-like design (Sec. 2): a patchify
stem, four stages with separate downsampling layers, and inverted-bottleneck blocks
with a large depthwise kernel, one LayerNorm and one GELU each (Fig. 4). Weights load
from an HF-format `ConvNextModel` folder; `hf_to_ours` is the one key map between
HF's names and ours.

Layout of our parameter names (HF's in brackets):
    stem.conv, stem.norm                          [embeddings.patch_embeddings, embeddings.layernorm]
    stages.{i}.downsample.norm / .conv, i >= 1    [encoder.stages.{i}.downsampling_layer.0 / .1]
    stages.{i}.blocks.{j}.dwconv/norm/pwconv1/pwconv2/gamma
                                                  [encoder.stages.{i}.layers.{j}.dwconv/layernorm/
                                                   pwconv1/pwconv2/layer_scale_parameter]
    norm                                          [layernorm]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_tasks.errors import ConfigError, LoadError
from lit_tasks.zoo.base import Backbone, BackboneOutput, FeatureInfo, Head, hf_config_dict, read_hf_config
from lit_tasks.zoo.classifier import ImageClassifier

MODEL_TYPE = "convnext"
MODALITY = "image"
HF_BASE_PREFIX = "convnext"

# The official code and HF use this epsilon for every LayerNorm inside the network;
# only the final (pooled) norm reads `layer_norm_eps` from the config.
_INNER_LN_EPS = 1e-6


@dataclass(frozen=True)
class ConvNextConfig:
    """Architecture of a ConvNeXt; field names and defaults are those of HF's `config.json`.

    `image_size` is informational (the network takes any input size). `stage_names`,
    `out_features` and `out_indices` are written by HF for its `ConvNextBackbone`; they
    do not change the base model, so we only check and keep them for round trips.
    """

    num_channels: int = 3
    patch_size: int = 4
    num_stages: int = 4
    hidden_sizes: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (3, 3, 9, 3)
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float = 0.0
    image_size: int | tuple[int, ...] = 224
    stage_names: tuple[str, ...] | None = None
    out_features: tuple[str, ...] | None = None
    out_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("hidden_sizes", "depths", "image_size", "stage_names", "out_features", "out_indices"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        problems = _config_problems(self)
        if problems:
            raise ConfigError("ConvNextConfig: " + "; ".join(problems))

    @classmethod
    def from_hf(cls, d: dict[str, Any], source: str) -> ConvNextConfig:
        """Read an HF `config.json` dict; `source` (e.g. the file path) prefixes every error."""
        return read_hf_config(cls, d, source, MODEL_TYPE)

    def to_hf(self) -> dict[str, Any]:
        """JSON-ready dict that `transformers.ConvNextConfig(**d)` and `from_hf` both accept."""
        return hf_config_dict(self, MODEL_TYPE)

    @property
    def min_input_size(self) -> int:
        """Smallest height/width that leaves the last stage at least one pixel."""
        return self.patch_size * 2 ** (self.num_stages - 1)


def _config_problems(c: ConvNextConfig) -> list[str]:
    """Every value of `c` that this implementation cannot honour, as "key ...: why"."""
    problems = []

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    for key in ("num_channels", "patch_size", "num_stages"):
        if not positive_int(getattr(c, key)):
            problems.append(f"key {key!r} is {getattr(c, key)!r}, expected a positive int")
    for key in ("hidden_sizes", "depths"):
        value = getattr(c, key)
        if not isinstance(value, tuple) or not all(positive_int(v) for v in value):
            problems.append(f"key {key!r} is {value!r}, expected a list of positive ints")
        elif positive_int(c.num_stages) and len(value) != c.num_stages:
            problems.append(f"key {key!r} has {len(value)} entries, expected num_stages = {c.num_stages}")
    if c.hidden_act != "gelu":
        problems.append(f"key 'hidden_act' is {c.hidden_act!r}, only 'gelu' (exact, erf-based) is supported")
    if not (isinstance(c.drop_path_rate, (int, float)) and 0.0 <= c.drop_path_rate < 1.0):
        problems.append(f"key 'drop_path_rate' is {c.drop_path_rate!r}, expected a number in [0, 1)")
    if not (isinstance(c.layer_scale_init_value, (int, float)) and c.layer_scale_init_value >= 0):
        problems.append(f"key 'layer_scale_init_value' is {c.layer_scale_init_value!r}, expected >= 0")
    if not (isinstance(c.layer_norm_eps, (int, float)) and c.layer_norm_eps > 0):
        problems.append(f"key 'layer_norm_eps' is {c.layer_norm_eps!r}, expected > 0")
    if problems:
        return problems  # the stage names below depend on num_stages
    names = ("stem",) + tuple(f"stage{i}" for i in range(1, c.num_stages + 1))
    if c.stage_names is not None and c.stage_names != names:
        problems.append(f"key 'stage_names' is {list(c.stage_names)}, expected {list(names)}")
    if c.out_features is not None and not set(c.out_features) <= set(names):
        problems.append(f"key 'out_features' is {list(c.out_features)}, expected names from {list(names)}")
    if c.out_indices is not None and not all(-len(names) <= i < len(names) for i in c.out_indices):
        problems.append(f"key 'out_indices' is {list(c.out_indices)}, expected indices into {list(names)}")
    return problems


CONFIG = ConvNextConfig

PRESETS: dict[str, ConvNextConfig] = {
    # facebook/convnext-tiny-224 config.json: depths [3, 3, 9, 3], hidden_sizes [96, 192, 384, 768],
    # patch_size 4, drop_path_rate 0.0, layer_scale_init_value 1e-06, layer_norm_eps 1e-12
    # (HF's ConvNextConfig defaults are this checkpoint's values).
    "convnext-tiny-224": ConvNextConfig(),
    # A few thousand parameters, for tests.
    "convnext-test": ConvNextConfig(num_stages=2, hidden_sizes=(8, 16), depths=(1, 2), image_size=32),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map (B, C, H, W), as in the stem and
    the downsampling layers (Sec. 2.6, "Separate downsampling layers")."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class Stem(nn.Module):
    """Patchify stem (Sec. 2.2): non-overlapping patch_size x patch_size conv, then LayerNorm."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size)
        self.norm = LayerNorm2d(out_channels, eps=_INNER_LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))  # (B, C, H / p, W / p)


class Downsample(nn.Module):
    """Separate downsampling layer between stages (Sec. 2.6): LayerNorm, then 2x2 stride-2 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_channels, eps=_INNER_LN_EPS)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.norm(x))  # (B, C_out, H / 2, W / 2)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth (Huang et al. 2016): zero a residual branch per sample with probability
    p and rescale the kept ones by 1 / (1 - p), so the expectation is unchanged."""
    if p == 0.0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) >= p
    return x * keep / (1.0 - p)


class Block(nn.Module):
    """ConvNeXt block (Fig. 4, right; Secs. 2.3-2.6): depthwise 7x7 conv, LayerNorm, inverted
    bottleneck MLP (C -> 4C -> C) with one GELU, optional layer scale, stochastic depth and
    the residual connection. The norm and MLP run channels-last, where a 1x1 conv is a Linear."""

    def __init__(self, dim: int, layer_scale_init_value: float, drop_path_rate: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_INNER_LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        # Layer scale (Touvron et al. 2021, "Going deeper with image transformers"; init 1e-6 in
        # the paper's Appendix A.1): a learned per-channel gain on the branch; absent when 0.
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None
        self.drop_path_rate = drop_path_rate

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x)  # (B, C, H, W)
        y = y.permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))  # (B, H, W, C) via (B, H, W, 4C)
        if self.gamma is not None:
            y = self.gamma * y
        y = y.permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + drop_path(y, self.drop_path_rate, self.training)

    def extra_repr(self) -> str:
        return f"drop_path_rate={self.drop_path_rate:g}"


class Stage(nn.Module):
    """One resolution of the hierarchy: an optional Downsample, then `depth` Blocks."""

    def __init__(self, in_channels: int, out_channels: int, drop_path_rates: list[float],
                 layer_scale_init_value: float, downsample: bool) -> None:
        super().__init__()
        self.downsample = Downsample(in_channels, out_channels) if downsample else None
        self.blocks = nn.ModuleList(Block(out_channels, layer_scale_init_value, p) for p in drop_path_rates)

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class ConvNext(Backbone):
    """ConvNeXt backbone, numerically equal to HF's `ConvNextModel` (see `forward`).

    Stage i (0-based) has hidden_sizes[i] channels at stride patch_size * 2**i (the Swin-like
    hierarchy of Sec. 2.2). The stochastic-depth rate grows linearly from 0 to drop_path_rate
    over all blocks (the "linear decay" rule of Huang et al. 2016, Sec. 3; used in Sec. 2.1).
    `forward_pooled` is a LayerNorm of the global average pool, as in the official code.
    """

    def __init__(self, config: ConvNextConfig, backbone_norms: bool = False) -> None:
        super().__init__()
        self.config = c = config
        self.stem = Stem(c.num_channels, c.hidden_sizes[0], c.patch_size)
        rates = torch.linspace(0.0, float(c.drop_path_rate), sum(c.depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(c.depths):
            first = sum(c.depths[:i])
            self.stages.append(Stage(
                c.hidden_sizes[max(i - 1, 0)], c.hidden_sizes[i], rates[first:first + depth],
                c.layer_scale_init_value, downsample=i > 0,
            ))
        # level 0: the stem, level i: stage i (HF's stage_names "stem", "stage1", ...)
        self.stage_names = ("stem",) + tuple(f"stage{i}" for i in range(1, c.num_stages + 1))
        self.feature_info = [FeatureInfo(c.hidden_sizes[0], c.patch_size)] + [
            FeatureInfo(ch, c.patch_size * 2**i) for i, ch in enumerate(c.hidden_sizes)]
        if c.out_indices:
            self.out_indices = tuple(c.out_indices)
        elif c.out_features:
            self.out_indices = tuple(self.stage_names.index(name) for name in c.out_features)
        else:  # HF's backbone: the last stage; the model: every stage
            self.out_indices = (c.num_stages,) if backbone_norms else tuple(range(1, c.num_stages + 1))
        self.backbone_norms = backbone_norms
        # HF's ConvNextBackbone: a LayerNorm on each of its out_features and no pooling norm
        self.norm = None if backbone_norms else nn.LayerNorm(c.hidden_sizes[-1], eps=c.layer_norm_eps)
        self.out_norms = nn.ModuleDict({
            self.stage_names[i]: LayerNorm2d(self.feature_info[i].channels, eps=_INNER_LN_EPS)
            for i in self.resolve_out_indices(None)} if backbone_norms else {})
        self.num_features = c.hidden_sizes[-1]
        self.num_layers = sum(c.depths)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Truncated-normal conv/linear weights (std = initializer_range, cut at 2 std), zero
        biases, LayerNorm ones/zeros, layer scale = layer_scale_init_value."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, Block) and module.gamma is not None:
                module.gamma.fill_(self.config.layer_scale_init_value)

    def _check_input(self, pixel_values: Tensor) -> None:
        c = self.config
        if pixel_values.ndim != 4 or pixel_values.shape[1] != c.num_channels:
            raise ValueError(
                f"ConvNext expects pixel_values of shape (B, {c.num_channels}, H, W), "
                f"got {tuple(pixel_values.shape)}"
            )
        h, w = pixel_values.shape[-2:]
        if min(h, w) < c.min_input_size:
            raise ValueError(
                f"ConvNext: input of {h}x{w} pixels is too small; with patch_size {c.patch_size} and "
                f"{c.num_stages} stages height and width must be at least {c.min_input_size}"
            )

    def _run(self, pixel_values: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(stem output, [output of every stage])."""
        self._check_input(pixel_values)
        embeddings = self.stem(pixel_values)  # (B, C_0, H / p, W / p)
        x, outputs = embeddings, []
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H / (p * 2**i), W / (p * 2**i))
            outputs.append(x)
        return embeddings, outputs

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False) -> BackboneOutput:
        """As HF's `ConvNextModel`: last_hidden_state is the last stage's map (B, C, h, w) without
        the final norm; pooler_output = norm(mean over h, w) (B, C); hidden_states = (stem
        output, stage 1 output, ..., stage n output)."""
        embeddings, stage_outputs = self._run(pixel_values)
        last = stage_outputs[-1]  # (B, C, h, w)
        if self.norm is None:
            raise ValueError("ConvNext: this model was built as HF's ConvNextBackbone (per-stage norms, no pooling "
                             "norm): it gives feature maps (forward_features), not a pooled image embedding")
        pooled = self.norm(last.mean(dim=(-2, -1)))  # (B, C)
        hidden = (embeddings, *stage_outputs) if output_hidden_states else None
        return BackboneOutput(last_hidden_state=last, pooler_output=pooled, hidden_states=hidden)

    def forward_features(self, pixel_values: Tensor, out_indices: Sequence[int] | None = None) -> list[Tensor]:
        """The stem's (level 0) or stage i's (level i) output map, (B, C_i, H / s_i, W / s_i), per
        requested level; through that stage's norm when built as a ConvNextBackbone."""
        levels = self.resolve_out_indices(out_indices)
        embeddings, stage_outputs = self._run(pixel_values)
        maps = [embeddings, *stage_outputs]
        return [self.out_norms[self.stage_names[i]](maps[i]) if self.stage_names[i] in self.out_norms else maps[i]
                for i in levels]

    def layer_index(self, param_name: str) -> int:
        """0 for the stem; blocks numbered 1..num_layers across stages; a downsampling layer shares
        the index of its stage's first block; num_layers + 1 for the final norm."""
        if param_name.startswith("stem."):
            return 0
        if param_name.startswith(("norm.", "out_norms.")):
            return self.num_layers + 1
        match = re.match(r"stages\.(\d+)\.(downsample\.|blocks\.(\d+)\.)", param_name)
        if match and int(match[1]) < len(self.stages):
            first = sum(self.config.depths[: int(match[1])]) + 1
            return first if match[3] is None else first + int(match[3])
        raise ValueError(
            f"ConvNext.layer_index: unknown parameter {param_name!r}; expected names under "
            "'stem.', 'stages.<i>.downsample.', 'stages.<i>.blocks.<j>.' or 'norm.'"
        )


class ConvNextBackbone(ConvNext):
    """HF's `ConvNextBackbone`: a LayerNorm on each of its out_features' maps and no pooling norm."""

    def __init__(self, config: ConvNextConfig) -> None:
        super().__init__(config, backbone_norms=True)


MODEL = ConvNext
BLOCKS = (Block,)

HEADS: dict[str, Head] = {
    "base": Head("ConvNextModel", ConvNext),
    "backbone": Head("ConvNextBackbone", ConvNextBackbone),  # no head: other base-model tensors
    # A Linear on the LayerNorm'd global average pool.
    "classification": Head("ConvNextForImageClassification", ImageClassifier,
                           lambda config, size: ImageClassifier(ConvNext(config), size),
                           parts=("classifier.",), output="classifier", size_field="num_labels"),
}


# (HF base-model key, our key); "{i}"/"{j}" are stage/block numbers. A pattern ending in "."
# is a prefix (the rest of the key, e.g. "weight", is carried over), otherwise the whole key.
# First match wins, so the specific block entries come before the generic one.
_KEY_MAP: tuple[tuple[str, str], ...] = (
    ("embeddings.patch_embeddings.", "stem.conv."),
    ("embeddings.layernorm.", "stem.norm."),
    ("encoder.stages.{i}.downsampling_layer.0.", "stages.{i}.downsample.norm."),
    ("encoder.stages.{i}.downsampling_layer.1.", "stages.{i}.downsample.conv."),
    ("encoder.stages.{i}.layers.{j}.layer_scale_parameter", "stages.{i}.blocks.{j}.gamma"),
    ("encoder.stages.{i}.layers.{j}.layernorm.", "stages.{i}.blocks.{j}.norm."),
    ("encoder.stages.{i}.layers.{j}.", "stages.{i}.blocks.{j}."),  # dwconv, pwconv1, pwconv2
    ("layernorm.", "norm."),
    ("hidden_states_norms.", "out_norms."),  # ConvNextBackbone
)


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(regex + ("(?P<rest>.+)" if pattern.endswith(".") else "") + "$")


def _rename(sd: dict[str, Tensor], rules: list[tuple[re.Pattern[str], str]], what: str) -> dict[str, Tensor]:
    """Rename every key by the first matching rule; keys no rule matches are kept as they are,
    so strict loading reports them as unexpected under their own name."""
    out: dict[str, Tensor] = {}
    for key, tensor in sd.items():
        new = key
        for regex, template in rules:
            match = regex.match(key)
            if match:
                groups = match.groupdict()
                new = template.format(**groups) + groups.get("rest", "")
                break
        if new in out:
            raise LoadError(f"{what}: key {key!r} maps to {new!r}, which another key already produced")
        out[new] = tensor
    return out


_HF_TO_OURS = [(_compile(hf), ours) for hf, ours in _KEY_MAP]
_OURS_TO_HF = [(_compile(ours), hf) for hf, ours in _KEY_MAP]


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF `ConvNextModel` keys (no "convnext." prefix) -> our `ConvNext` state_dict keys."""
    return _rename(sd, _HF_TO_OURS, "convnext.hf_to_ours")


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our `ConvNext` state_dict keys -> HF `ConvNextModel` keys; the inverse of `hf_to_ours`."""
    return _rename(sd, _OURS_TO_HF, "convnext.ours_to_hf")

