"""The model zoo: one module per family, presets, and HF-format loading and saving.

Each image family module (`vit.py`, `convnext.py`) keeps one protocol: MODEL_TYPE (the HF
`model_type`), HF_BASE_PREFIX, CONFIG (a dataclass with `from_hf` / `to_hf`), MODEL,
PRESETS, `hf_to_ours` / `ours_to_hf` key maps and IGNORED_HF_KEYS.

The audio and text families (`wav2vec2.py`, `bert.py`) are a base model plus one of several
named heads ("ctc", "sequence_classification", ...); HEAD_FAMILIES registers how to rebuild a
head model from a task checkpoint's spec and which module's `save_pretrained` writes it.
`from_spec` and `save_pretrained` below serve both kinds, which is what `lit_tasks export` uses.

    backbone = build_backbone("vit-test")
    model = from_pretrained("path/to/vit-base-patch16-224")   # an HF-format folder
    save_pretrained(model, "out/", label_names=["cat", "dog"])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.zoo import bert, convnext, vit, wav2vec2
from lit_tasks.zoo.base import Backbone
from lit_tasks.zoo.classifier import ImageClassifier
from lit_tasks.zoo.hub import PREPROCESSOR_FILE, load_pretrained, read_config, read_preprocessor_config, write_folder, write_json

__all__ = [
    "FAMILIES", "HEAD_FAMILIES", "PRESETS", "Backbone", "ImageClassifier", "ConfigError", "build_backbone", "build_classifier",
    "detect_family", "from_pretrained", "save_pretrained", "read_preprocessor_config", "spec", "from_spec",
]

FAMILIES: dict[str, ModuleType] = {"vit": vit, "convnext": convnext}

# HF class names written to config.json "architectures": (base model, image classifier).
HF_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "vit": ("ViTModel", "ViTForImageClassification"),
    "convnext": ("ConvNextModel", "ConvNextForImageClassification"),
}



def _wav2vec2_head(head: str, config: wav2vec2.Wav2Vec2Config, num_classes: int | None) -> nn.Module:
    """The wav2vec2 `head` model; its output size is in `config` (vocab_size / num_labels)."""
    if head not in wav2vec2.HF_ARCHITECTURES:
        raise ConfigError(f"model spec: unknown wav2vec2 head {head!r}; expected one of {sorted(wav2vec2.HF_ARCHITECTURES)}")
    sized = () if num_classes is None else (num_classes,)  # the pretraining head has no output size
    return wav2vec2.head_class(head)(wav2vec2.Wav2Vec2(config), *sized)


def _bert_head(head: str, config: bert.BertConfig, num_classes: int | None) -> nn.Module:
    """The BERT `head` model; the label heads take `num_classes`."""
    if head not in bert.HEADS:
        raise ConfigError(f"model spec: unknown bert head {head!r}; expected one of {sorted(bert.HEADS)}")
    if head in ("sequence_classification", "token_classification"):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"model spec: the bert {head} head needs 'num_classes' >= 1, got {num_classes!r}")
        return bert.HEADS[head](config, num_classes)
    return bert.HEADS[head](config)


# Families of a base model plus a named head: (module, builder(head, config, num_classes)).
# The module gives CONFIG (from_hf / to_hf), the model classes and `save_pretrained`.
HEAD_FAMILIES: dict[str, tuple[ModuleType, Any]] = {
    "wav2vec2": (wav2vec2, _wav2vec2_head),
    "bert": (bert, _bert_head),
}

PRESETS: dict[str, tuple[str, Any]] = {
    name: (family, config) for family, module in FAMILIES.items() for name, config in module.PRESETS.items()
}


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
    modules = {**FAMILIES, **{name: module for name, (module, _) in HEAD_FAMILIES.items()}}
    for family, module in modules.items():
        if module.MODEL_TYPE == model_type:
            return family
    supported = sorted(m.MODEL_TYPE for m in modules.values())
    raise ConfigError(
        f"{Path(path)}: config.json has model_type {model_type!r}, which the zoo does not support; "
        f"supported model types are {supported}"
    )


def head_architectures(family: str) -> dict[str, str]:
    """{HF architecture class name: our head name} of a HEAD_FAMILIES family."""
    if family == "bert":
        return {cls.hf_architecture: head for head, cls in bert.HEADS.items()}
    return {arch: head for head, arch in wav2vec2.HF_ARCHITECTURES.items()}


def from_pretrained(path: str | Path, num_classes: int | None = None, head: str | None = None) -> nn.Module:
    """Load an HF-format folder of any zoo family, chosen by config.json's `model_type`.

    Image families: without `num_classes` an ImageClassifier when the checkpoint has a
    classification head, else a Backbone (a ConvNextBackbone folder: with its stage norms); with
    it an ImageClassifier, its head fresh (with a warning) when the checkpoint's is absent or of
    another size. Text and audio families: the `head` named (e.g. "sequence_classification",
    "ctc"), by default the one config.json's `architectures` names (else the base model);
    `num_classes` sets a label head's or the CTC vocabulary's size.
    """
    family = detect_family(path)
    if family in FAMILIES:
        if head not in (None, "base", "classification"):
            raise ConfigError(f"{Path(path)}: a {family} model has no head {head!r} (image families: "
                              f"'base' or 'classification')")
        return load_pretrained(path, FAMILIES[family], num_classes)
    module = HEAD_FAMILIES[family][0]
    if head is None:
        by_arch = head_architectures(family)
        head = next((by_arch[a] for a in read_config(path).get("architectures") or [] if a in by_arch), "base")
    return module.from_pretrained(path, head=head, num_labels=num_classes)


def _split(model: Backbone | ImageClassifier) -> tuple[Backbone, ImageClassifier | None]:
    if isinstance(model, ImageClassifier):
        return model.backbone, model
    if isinstance(model, Backbone):
        return model, None
    raise TypeError(f"expected a zoo Backbone or ImageClassifier, got {type(model).__name__}")


def _head_family(model: nn.Module) -> str | None:
    """The HEAD_FAMILIES name of a head model (or its base model), None for anything else."""
    if isinstance(model, (bert.Bert, bert.BertWithHead)):
        return "bert"
    if isinstance(model, wav2vec2.Wav2Vec2) or isinstance(getattr(model, "wav2vec2", None), wav2vec2.Wav2Vec2):
        return "wav2vec2"  # the base model or one of its heads
    return None


def spec(model: Backbone | ImageClassifier) -> dict:
    """The architecture of an image `model` as plain JSON data, rebuilt by `from_spec` (the audio
    and text tasks write their own, with the "head" that HEAD_FAMILIES rebuilds)."""
    backbone, classifier = _split(model)
    return {
        "family": backbone.family,
        "config": backbone.config.to_hf(),
        "num_classes": classifier.num_classes if classifier is not None else None,
        **({"backbone_norms": True} if getattr(backbone, "backbone_norms", False) else {}),
    }


def from_spec(spec: dict) -> nn.Module:
    """A randomly initialised model with the architecture `spec(model)` described.

    Task checkpoints store such a spec (the audio and text tasks with their "head"), so the
    image families give a Backbone / ImageClassifier and HEAD_FAMILIES the head model."""
    if not isinstance(spec.get("config"), dict):
        raise ConfigError(f"model spec: expected a 'config' dict (an HF config.json's content), got {spec.get('config')!r}")
    if spec.get("family") in HEAD_FAMILIES:
        module, build = HEAD_FAMILIES[spec["family"]]
        config = module.CONFIG.from_hf(spec["config"], source="model spec 'config'")
        if spec.get("head", "base") == "base":
            return module.MODEL(config)
        return build(spec["head"], config, spec.get("num_classes"))
    if spec.get("family") not in FAMILIES:
        raise ConfigError(f"model spec: unknown model family {spec.get('family')!r}; supported families are "
                          f"{sorted([*FAMILIES, *HEAD_FAMILIES])}")
    module = FAMILIES[spec["family"]]
    config = module.CONFIG.from_hf(spec["config"], source="model spec 'config'")
    backbone = module.MODEL(config, backbone_norms=True) if spec.get("backbone_norms") else module.MODEL(config)
    return backbone if spec.get("num_classes") is None else ImageClassifier(backbone, spec["num_classes"])


def save_pretrained(
    model: nn.Module,
    out_dir: str | Path,
    label_names: list[str] | None = None,
    preprocessor: dict | None = None,
) -> Path:
    """Write `model` as an HF-format folder that `transformers`' Auto classes load: config.json
    (label names as id2label), model.safetensors and, given, preprocessor_config.json."""
    family = _head_family(model)
    if family is not None:
        folder = HEAD_FAMILIES[family][0].save_pretrained(model, out_dir, label_names=label_names)
        if preprocessor is not None:
            write_json(folder, PREPROCESSOR_FILE, preprocessor)
        return folder
    backbone, classifier = _split(model)
    module = FAMILIES[backbone.family]
    base_arch, head_arch = HF_ARCHITECTURES[backbone.family]
    config = backbone.config.to_hf()
    tensors = module.ours_to_hf(backbone.state_dict())
    if classifier is None:
        if label_names is not None:
            raise ValueError("save_pretrained: label_names given for a backbone without a classification head")
        config["architectures"] = [module.HF_BACKBONE if getattr(backbone, "backbone_norms", False) else base_arch]
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
