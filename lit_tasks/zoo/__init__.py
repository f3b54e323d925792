"""The model zoo: one module per family, one registry, one loader and saver of HF folders.

REGISTRY (`registry.py`) maps each family's HF `model_type` to its module; a family module
declares its config, presets, modules, key map, heads and blocks (the protocol is in
registry.py's docstring, the checklist in docs/adding_a_family.md). Everything else is
generic: `build` (a preset), `from_pretrained` / `save_pretrained` (HF-format folders,
`pretrained.py`), `spec` / `from_spec` (the architecture as plain data, as task checkpoints
store it) and the blocks' speed options (`blocks.py`).

    model = build("vit-test", "classification", num_labels=5)
    model = from_pretrained("path/to/vit-base-patch16-224")        # an HF-format folder
    save_pretrained(model, "out/", label_names=["cat", "dog"])
"""

from __future__ import annotations

from lit_tasks.errors import ConfigError
from lit_tasks.zoo.base import Backbone, Head
from lit_tasks.zoo.classifier import ImageClassifier
from lit_tasks.zoo.hub import read_preprocessor_config
from lit_tasks.zoo.pretrained import from_pretrained, save_pretrained
from lit_tasks.zoo.registry import PRESETS, REGISTRY, build, detect_family, from_spec, head_of, spec

__all__ = [
    "REGISTRY", "PRESETS", "Backbone", "Head", "ImageClassifier", "ConfigError", "build", "detect_family", "head_of",
    "from_pretrained", "save_pretrained", "read_preprocessor_config", "spec", "from_spec",
]
