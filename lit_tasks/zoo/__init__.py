"""The model zoo: one module per family, presets, and HF-format loading and saving.

Each family module (`vit.py`, `convnext.py`) keeps one protocol: MODEL_TYPE (the HF
`model_type`), HF_BASE_PREFIX, CONFIG (a dataclass with `from_hf` / `to_hf`), MODEL,
PRESETS, `hf_to_ours` / `ours_to_hf` key maps and IGNORED_HF_KEYS.

    backbone = build_backbone("vit-test")
    model = from_pretrained("path/to/vit-base-patch16-224")   # an HF-format folder
    save_pretrained(model, "out/", label_names=["cat", "dog"])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from lit_tasks.zoo import convnext, vit
from lit_tasks.zoo.base import Backbone, ConfigError
from lit_tasks.zoo.classifier import ImageClassifier
from lit_tasks.zoo.hub import load_pretrained, read_config, read_preprocessor_config, write_folder

__all__ = [
    "FAMILIES", "PRESETS", "Backbone", "ImageClassifier", "ConfigError", "build_backbone", "build_classifier",
    "detect_family", "from_pretrained", "save_pretrained", "read_preprocessor_config", "spec", "from_spec",
]

FAMILIES: dict[str, ModuleType] = {"vit": vit, "convnext": convnext}

# HF class names written to config.json "architectures": (base model, image classifier).
HF_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "vit": ("ViTModel", "ViTForImageClassification"),
    "convnext": ("ConvNextModel", "ConvNextForImageClassification"),
}

PRESETS: dict[str, tuple[str, Any]] = {
    name: (family, config) for family, module in FAMILIES.items() for name, config in module.PRESETS.items()
}


def _family_module(family: str, source: str) -> ModuleType:
    if family not in FAMILIES:
        raise ConfigError(f"{source}: unknown model family {family!r}; supported families are {sorted(FAMILIES)}")
    return FAMILIES[family]


def build_backbone(name: str, overrides: dict | None = None) -> Backbone:
    """A randomly initialised backbone from preset `name`, with config fields replaced by `overrides`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; available presets are {sorted(PRESETS)}")
    family, config = PRESETS[name]
    module = FAMILIES[family]
    if overrides:
        fields = sorted(f.name for f in dataclasses.fields(config))
        unknown = sorted(k for k in overrides if k not in fields)
        if unknown:
            raise ConfigError(f"overrides for preset {name!r}: unknown key(s) {unknown}; valid keys are {fields}")
        config = module.CONFIG.from_hf({**dataclasses.asdict(config), **overrides}, source=f"overrides for preset {name!r}")
    return module.MODEL(config)


def build_classifier(name: str, num_classes: int, overrides: dict | None = None) -> ImageClassifier:
    """A randomly initialised ImageClassifier on preset `name` (see `build_backbone`)."""
    return ImageClassifier(build_backbone(name, overrides), num_classes)


def detect_family(path: str | Path) -> str:
    """The zoo family of an HF-format folder, from its config.json `model_type`."""
    model_type = read_config(path).get("model_type")
    for family, module in FAMILIES.items():
        if module.MODEL_TYPE == model_type:
            return family
    supported = sorted(m.MODEL_TYPE for m in FAMILIES.values())
    raise ConfigError(
        f"{Path(path)}: config.json has model_type {model_type!r}, which the zoo does not support; "
        f"supported model types are {supported}"
    )


def from_pretrained(path: str | Path, num_classes: int | None = None) -> Backbone | ImageClassifier:
    """Load an HF-format folder. Without `num_classes`: an ImageClassifier when the
    checkpoint has a classification head, else a Backbone. With it: an ImageClassifier,
    its head fresh (with a warning) when the checkpoint's is absent or of another size."""
    return load_pretrained(path, FAMILIES[detect_family(path)], num_classes)


def _split(model: Backbone | ImageClassifier) -> tuple[Backbone, ImageClassifier | None]:
    if isinstance(model, ImageClassifier):
        return model.backbone, model
    if isinstance(model, Backbone):
        return model, None
    raise TypeError(f"expected a zoo Backbone or ImageClassifier, got {type(model).__name__}")


def spec(model: Backbone | ImageClassifier) -> dict:
    """The architecture of `model` as plain JSON data, rebuilt by `from_spec`."""
    backbone, classifier = _split(model)
    return {
        "family": backbone.family,
        "config": backbone.config.to_hf(),
        "num_classes": classifier.num_classes if classifier is not None else None,
    }


def from_spec(spec: dict) -> Backbone | ImageClassifier:
    """A randomly initialised model with the architecture `spec(model)` described."""
    module = _family_module(spec.get("family"), "model spec")
    if not isinstance(spec.get("config"), dict):
        raise ConfigError(f"model spec: expected a 'config' dict (an HF config.json's content), got {spec.get('config')!r}")
    backbone = module.MODEL(module.CONFIG.from_hf(spec["config"], source="model spec 'config'"))
    return backbone if spec.get("num_classes") is None else ImageClassifier(backbone, spec["num_classes"])


def save_pretrained(
    model: Backbone | ImageClassifier,
    out_dir: str | Path,
    label_names: list[str] | None = None,
    preprocessor: dict | None = None,
) -> Path:
    """Write `model` as an HF-format folder that `transformers`' Auto classes load."""
    backbone, classifier = _split(model)
    module = FAMILIES[backbone.family]
    base_arch, head_arch = HF_ARCHITECTURES[backbone.family]
    config = backbone.config.to_hf()
    tensors = module.ours_to_hf(backbone.state_dict())
    if classifier is None:
        if label_names is not None:
            raise ValueError("save_pretrained: label_names given for a backbone without a classification head")
        config["architectures"] = [base_arch]
    else:
        names = label_names if label_names is not None else [f"LABEL_{i}" for i in range(classifier.num_classes)]
        if len(names) != classifier.num_classes:
            raise ValueError(f"save_pretrained: {len(names)} label_names for a {classifier.num_classes}-class model")
        config["architectures"] = [head_arch]
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
        tensors = {f"{module.HF_BASE_PREFIX}.{k}": v for k, v in tensors.items()}
        tensors.update({f"classifier.{k}": v for k, v in classifier.classifier.state_dict().items()})
    return write_folder(out_dir, config, tensors, preprocessor)
