"""ResNet: He et al. 2016, "Deep Residual Learning for Image Recognition" (CVPR 2016, arXiv:1512.03385).

A 7x7/2 convolution and a 3x3/2 max-pool (the stem, stride 4), then stages of residual blocks
(Sec. 3.2-3.3, Table 1): "basic" blocks of two 3x3 convolutions (ResNet-18/34) or "bottleneck"
blocks 1x1 -> 3x3 -> 1x1 with a 4x narrower middle (Sec. 4.1, "Deeper Bottleneck
Architectures"; ResNet-50/101/152). Every stage but the first halves the resolution in its first
block; a 1x1 convolution projects the shortcut where the shape changes (option B, Sec. 3.3).
Batch norm follows every convolution (Sec. 3.4). Numerically equal to HF's `ResNetModel`,
including two of its choices: the stride of a downsampling bottleneck sits on the 3x3
convolution (torchvision's "ResNet v1.5"; `downsample_in_bottleneck` puts it on the first 1x1,
as in the paper), and `hidden_act` is used after the stem and after each residual sum while the
activations inside a block are always ReLU.

Our parameter names are torchvision's (and timm's, so the DETR checkpoints' timm ResNet-50 keys
are ours unchanged); `hf_to_ours` maps HF's names to them (stage i, block j, conv k; HF's in brackets):
    conv1, bn1                                  [embedder.embedder.convolution, .normalization]
    layer{i+1}.{j}.conv{k+1}, .bn{k+1}          [encoder.stages.{i}.layers.{j}.layer.{k}.convolution, .normalization]
    layer{i+1}.{j}.downsample.0, .downsample.1  [encoder.stages.{i}.layers.{j}.shortcut.convolution, .normalization]

`FrozenBatchNorm2d` and `freeze_batch_norm` fix batch norms to their statistics and affine terms,
as detection backbones are trained (DETR, Carion et al. 2020, Sec. 4: "frozen batchnorm layers").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo.base import Backbone, BackboneOutput, FeatureInfo, Head, hf_config_dict, read_hf_config
from lit_tasks.zoo.classifier import ImageClassifier
from lit_tasks.zoo.layers import ACTIVATIONS, activation

MODEL_TYPE = "resnet"
MODALITY = "image"
HF_BASE_PREFIX = "resnet"

LAYER_TYPES = ("basic", "bottleneck")
BOTTLENECK_REDUCTION = 4  # the middle of a bottleneck block is 4x narrower than its output (Sec. 4.1)


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of a ResNet; field names and defaults are those of HF's `config.json`.

    hidden_sizes: each stage's output channels (a bottleneck's middle has a quarter of them);
    embedding_size: the stem's. `stage_names`, `out_features` and `out_indices` are written by HF
    for its `ResNetBackbone`; `out_indices` / `out_features` choose the levels `forward_features`
    gives by default, the names are only checked.
    """

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    stage_names: tuple[str, ...] | None = None
    out_features: tuple[str, ...] | None = None
    out_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("hidden_sizes", "depths", "stage_names", "out_features", "out_indices"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        problems = _config_problems(self)
        if problems:
            raise ConfigError("ResNetConfig: " + "; ".join(problems))

    @classmethod
    def from_hf(cls, d: dict[str, Any], source: str) -> ResNetConfig:
        """Read an HF `config.json` dict; `source` (e.g. the file path) prefixes every error."""
        return read_hf_config(cls, d, source, MODEL_TYPE)

    def to_hf(self) -> dict[str, Any]:
        """JSON-ready dict that `transformers.ResNetConfig(**d)` and `from_hf` both accept."""
        return hf_config_dict(self, MODEL_TYPE)

    @property
    def stage_strides(self) -> tuple[int, ...]:
        """Each stage's output stride: the stem's 4, times 2 per downsampling stage."""
        strides, stride = [], 4
        for i in range(len(self.depths)):
            stride *= 2 if i > 0 or self.downsample_in_first_stage else 1
            strides.append(stride)
        return tuple(strides)


def _config_problems(c: ResNetConfig) -> list[str]:
    """Every value of `c` that this implementation cannot honour, as "key ...: why"."""
    problems = []

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    for key in ("num_channels", "embedding_size"):
        if not positive_int(getattr(c, key)):
            problems.append(f"key {key!r} is {getattr(c, key)!r}, expected a positive int")
    for key in ("hidden_sizes", "depths"):
        value = getattr(c, key)
        if not isinstance(value, tuple) or not value or not all(positive_int(v) for v in value):
            problems.append(f"key {key!r} is {value!r}, expected a non-empty list of positive ints")
    if not problems and len(c.hidden_sizes) != len(c.depths):
        problems.append(f"key 'hidden_sizes' has {len(c.hidden_sizes)} entries but 'depths' {len(c.depths)}; "
                        "expected one of each per stage")
    if c.layer_type not in LAYER_TYPES:
        problems.append(f"key 'layer_type' is {c.layer_type!r}, expected one of {list(LAYER_TYPES)}")
    elif c.layer_type == "bottleneck" and not problems and min(c.hidden_sizes) < BOTTLENECK_REDUCTION:
        problems.append(f"key 'hidden_sizes' is {list(c.hidden_sizes)}; a bottleneck stage needs at least "
                        f"{BOTTLENECK_REDUCTION} channels (its middle has hidden_size // {BOTTLENECK_REDUCTION})")
    if c.hidden_act not in ACTIVATIONS:
        problems.append(f"key 'hidden_act' is {c.hidden_act!r}, expected one of {sorted(ACTIVATIONS)}")
    for key in ("downsample_in_first_stage", "downsample_in_bottleneck"):
        if not isinstance(getattr(c, key), bool):
            problems.append(f"key {key!r} is {getattr(c, key)!r}, expected true or false")
    if problems:
        return problems  # the stage names below depend on depths
    names = ("stem",) + tuple(f"stage{i}" for i in range(1, len(c.depths) + 1))
    if c.stage_names is not None and c.stage_names != names:
        problems.append(f"key 'stage_names' is {list(c.stage_names)}, expected {list(names)}")
    if c.out_features is not None and not set(c.out_features) <= set(names):
        problems.append(f"key 'out_features' is {list(c.out_features)}, expected names from {list(names)}")
    if c.out_indices is not None and not all(-len(names) <= i < len(names) for i in c.out_indices):
        problems.append(f"key 'out_indices' is {list(c.out_indices)}, expected indices into {list(names)}")
    return problems


CONFIG = ResNetConfig

PRESETS: dict[str, ResNetConfig] = {
    # Mirrors microsoft/resnet-50 (HF's ResNetConfig defaults are its values): bottleneck blocks,
    # depths [3, 4, 6, 3], hidden_sizes [256, 512, 1024, 2048], embedding_size 64, relu.
    "resnet-50": ResNetConfig(),
    # Mirrors microsoft/resnet-18: basic blocks, depths [2, 2, 2, 2], hidden_sizes [64, 128, 256, 512].
    "resnet-18": ResNetConfig(hidden_sizes=(64, 128, 256, 512), depths=(2, 2, 2, 2), layer_type="basic"),
    # A few thousand parameters, for tests.
    "resnet-test": ResNetConfig(embedding_size=8, hidden_sizes=(8, 16, 16, 32), depths=(1, 1, 1, 1),
                                layer_type="basic"),
}


# ----------------------------------------------------------------------------- frozen batch norm

class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms: y = (x - mean) / sqrt(var + eps) * weight
    + bias, all four buffers (no gradients, no statistics update, the same in train and eval).
    Detection backbones are trained so (DETR Sec. 4, Mask R-CNN): images per GPU are too few for
    useful batch statistics. A `num_batches_tracked` entry in a loaded state dict is dropped."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm2d's counter, meaningless here
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale[None, :, None, None] + shift[None, :, None, None]  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}"


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every `nn.BatchNorm2d` inside `module` (in place) by a `FrozenBatchNorm2d` with its
    current statistics, affine terms and eps; returns `module` (or the frozen norm, if `module`
    is itself a BatchNorm2d). A norm without affine terms gets weight 1, bias 0."""
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None:
            raise ValueError("freeze_batch_norm: a BatchNorm2d without running statistics "
                             "(track_running_stats=False) has nothing to freeze")
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps).to(module.running_mean.device)
        with torch.no_grad():
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
        return frozen
    for name, child in module.named_children():
        frozen = freeze_batch_norm(child)
        if frozen is not child:
            setattr(module, name, frozen)
    return module


# ----------------------------------------------------------------------------- modules

def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free convolution, "same" padding (batch norm follows every convolution)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The projection shortcut (option B, Sec. 3.3) where the shape changes, else None (identity)."""
    if in_channels == out_channels and stride == 1:
        return None
    return nn.Sequential(_conv(in_channels, out_channels, 1, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the shortcut (Sec. 3.3, Fig. 2 / Fig. 5 left); the first one
    carries the stage's stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))  # (B, C_out, H / s, W / s)
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce to out / 4) -> 3x3 -> 1x1 (expand to out) and the shortcut (Sec. 4.1, Fig. 5
    right). The stride sits on the 3x3 convolution, or on the first 1x1 with `stride_in_1x1`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, stride_in_1x1: bool) -> None:
        super().__init__()
        mid = out_channels // BOTTLENECK_REDUCTION
        self.conv1 = _conv(in_channels, mid, 1, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = _conv(mid, mid, 3, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = _conv(mid, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))  # (B, C_out / 4, ., .)
        y = torch.relu(self.bn2(self.conv2(y)))  # (B, C_out / 4, H / s, W / s)
        y = self.bn3(self.conv3(y))  # (B, C_out, H / s, W / s)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(y + shortcut)


class ResNet(Backbone):
    """ResNet backbone, numerically equal to HF's `ResNetModel` (and `ResNetBackbone`'s maps).

    Level 0 is the stem's output (after the max-pool, stride 4, `embedding_size` channels),
    level i the output of stage i (`layer{i}`, stride 4, 8, 16, 32 for ResNet-50; twice that
    with `downsample_in_first_stage`). `forward_pooled` is the global average pool of the last
    stage (Sec. 3.4: "global average pooling"), which the classifier reads.
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.conv1 = _conv(c.num_channels, c.embedding_size, 7, stride=2)
        self.bn1 = nn.BatchNorm2d(c.embedding_size)
        self.act = activation(c.hidden_act)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = (c.embedding_size, *c.hidden_sizes)
        for i, depth in enumerate(c.depths):
            stride = 2 if i > 0 or c.downsample_in_first_stage else 1
            blocks = [self._block(widths[i] if j == 0 else widths[i + 1], widths[i + 1], stride if j == 0 else 1)
                      for j in range(depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.stage_names = ("stem",) + tuple(f"stage{i}" for i in range(1, len(c.depths) + 1))
        self.feature_info = [FeatureInfo(c.embedding_size, 4)] + [
            FeatureInfo(ch, s) for ch, s in zip(c.hidden_sizes, c.stage_strides)]
        if c.out_indices:
            self.out_indices = tuple(c.out_indices)
        elif c.out_features:
            self.out_indices = tuple(self.stage_names.index(name) for name in c.out_features)
        else:
            self.out_indices = tuple(range(1, len(c.depths) + 1))
        self.num_features = c.hidden_sizes[-1]
        self.num_layers = sum(c.depths)
        self.reset_parameters()

    def _block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        c = self.config
        if c.layer_type == "basic":
            return BasicBlock(in_channels, out_channels, stride, c.hidden_act)
        return Bottleneck(in_channels, out_channels, stride, c.hidden_act, c.downsample_in_bottleneck)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The stages in order (`layer1`, `layer2`, ...)."""
        return [getattr(self, f"layer{i}") for i in range(1, len(self.config.depths) + 1)]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-normal convolutions (fan-out, ReLU gain; He et al. 2015, as the paper's Sec. 3.4),
        batch norms weight 1, bias 0, mean 0, variance 1."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()

    def _run(self, pixel_values: Tensor) -> list[Tensor]:
        """[stem output, output of every stage]."""
        c = self.config
        if pixel_values.ndim != 4 or pixel_values.shape[1] != c.num_channels:
            raise ValueError(f"ResNet expects pixel_values of shape (B, {c.num_channels}, H, W), "
                             f"got {tuple(pixel_values.shape)}")
        x = self.maxpool(self.act(self.bn1(self.conv1(pixel_values))))  # (B, C_0, H / 4, W / 4)
        maps = [x]
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H / s_i, W / s_i)
            maps.append(x)
        return maps

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False) -> BackboneOutput:
        """As HF's `ResNetModel`: last_hidden_state (B, C, h, w) is the last stage's map,
        pooler_output (B, C) its spatial mean (HF's is (B, C, 1, 1)), hidden_states = (stem
        output, stage 1 output, ..., stage n output)."""
        maps = self._run(pixel_values)
        last = maps[-1]
        hidden = tuple(maps) if output_hidden_states else None
        return BackboneOutput(last_hidden_state=last, pooler_output=last.mean(dim=(-2, -1)), hidden_states=hidden)

    def forward_features(self, pixel_values: Tensor, out_indices: Sequence[int] | None = None) -> list[Tensor]:
        """The stem's (level 0) or stage i's (level i) output map, (B, C_i, H / s_i, W / s_i),
        per requested level."""
        levels = self.resolve_out_indices(out_indices)
        maps = self._run(pixel_values)
        return [maps[i] for i in levels]

    def layer_index(self, param_name: str) -> int:
        """0 for the stem; blocks numbered 1..num_layers across stages."""
        if param_name.startswith(("conv1.", "bn1.")):
            return 0
        match = re.match(r"layer(\d+)\.(\d+)\.", param_name)
        depths = self.config.depths
        stage, block = (int(match[1]) - 1, int(match[2])) if match else (-1, -1)
        if 0 <= stage < len(depths) and block < depths[stage]:
            return sum(depths[:stage]) + block + 1
        raise ValueError(f"ResNet.layer_index: unknown parameter {param_name!r}; expected names under "
                         "'conv1.', 'bn1.' or 'layer<i>.<j>.'")


class ResNetClassifier(ImageClassifier):
    """HF's `ResNetForImageClassification`: a Linear on the global average pool. HF keeps it as
    `classifier.1` behind a Flatten (`classifier.0`); so do we, so that the output layer has the
    same name in both (the registry's `Head.output`)."""

    def __init__(self, backbone: ResNet, num_classes: int) -> None:
        super().__init__(backbone, num_classes)
        self.classifier = nn.Sequential(nn.Flatten(), self.classifier)

    def reset_head(self) -> None:
        linear = self.classifier[-1] if isinstance(self.classifier, nn.Sequential) else self.classifier
        std = 0.02
        nn.init.trunc_normal_(linear.weight, std=std)
        nn.init.zeros_(linear.bias)


MODEL = ResNet
BLOCKS = (BasicBlock, Bottleneck)

HEADS: dict[str, Head] = {
    # HF's ResNetBackbone has the same tensors as ResNetModel: its folders load as the base model.
    "base": Head("ResNetModel", ResNet),
    "classification": Head("ResNetForImageClassification", ResNetClassifier,
                           lambda config, size: ResNetClassifier(ResNet(config), size),
                           parts=("classifier.",), output="classifier.1", size_field="num_labels"),
}


# ----------------------------------------------------------------------------- key map

_LEAF = r"(?P<leaf>weight|bias|running_mean|running_var|num_batches_tracked)"
_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

_HF_TO_OURS: tuple[_Rule, ...] = (
    (re.compile(r"embedder\.embedder\.convolution\.weight"), lambda m: "conv1.weight"),
    (re.compile(rf"embedder\.embedder\.normalization\.{_LEAF}"), lambda m: f"bn1.{m['leaf']}"),
    (re.compile(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}.weight"),
    (re.compile(rf"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.{_LEAF}"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.{m['leaf']}"),
    (re.compile(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight"),
    (re.compile(rf"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.{_LEAF}"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m['leaf']}"),
)
_OURS_TO_HF: tuple[_Rule, ...] = (
    (re.compile(r"conv1\.weight"), lambda m: "embedder.embedder.convolution.weight"),
    (re.compile(rf"bn1\.{_LEAF}"), lambda m: f"embedder.embedder.normalization.{m['leaf']}"),
    (re.compile(r"layer([1-9]\d*)\.(\d+)\.conv([1-9])\.weight"),
     lambda m: f"encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.layer.{int(m[3]) - 1}.convolution.weight"),
    (re.compile(rf"layer([1-9]\d*)\.(\d+)\.bn([1-9])\.{_LEAF}"),
     lambda m: f"encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.layer.{int(m[3]) - 1}.normalization.{m['leaf']}"),
    (re.compile(r"layer([1-9]\d*)\.(\d+)\.downsample\.0\.weight"),
     lambda m: f"encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.shortcut.convolution.weight"),
    (re.compile(rf"layer([1-9]\d*)\.(\d+)\.downsample\.1\.{_LEAF}"),
     lambda m: f"encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.shortcut.normalization.{m['leaf']}"),
)


def _rename_key(key: str, rules: tuple[_Rule, ...]) -> str:
    for regex, new in rules:
        match = regex.fullmatch(key)
        if match:
            return new(match)
    return key


def hf_key_to_ours(key: str) -> str:
    """One HF `ResNetModel` key -> ours; a key it does not know comes back unchanged."""
    return _rename_key(key, _HF_TO_OURS)


def our_key_to_hf(key: str) -> str:
    """One of our (torchvision / timm) ResNet keys -> HF's; the inverse of `hf_key_to_ours`."""
    return _rename_key(key, _OURS_TO_HF)


def hf_to_ours(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF `ResNetModel` keys (no "resnet." prefix) -> our `ResNet` keys; head keys
    ("classifier.1.*", the same in both) and unknown keys pass through unchanged."""
    return {hf_key_to_ours(k): v for k, v in sd.items()}


def ours_to_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our `ResNet` keys -> HF `ResNetModel` keys; the inverse of `hf_to_ours`."""
    return {our_key_to_hf(k): v for k, v in sd.items()}
