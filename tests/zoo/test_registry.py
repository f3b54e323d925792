"""The registry: every family keeps the family protocol (lit_tasks/zoo/registry.py), and the one
loader, saver and spec serve every head of every family: registering a family is what puts
it under these tests."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lit_tasks.zoo import PRESETS, REGISTRY, Head, build, from_pretrained, from_spec, head_of, save_pretrained, spec
from lit_tasks.zoo.blocks import BLOCKS

HEADS = [(name, head) for name, family in REGISTRY.items() for head in family.HEADS]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_family_keeps_the_protocol(name):
    family = REGISTRY[name]
    assert family.MODEL_TYPE == name and family.MODALITY in ("image", "text", "audio")
    assert dataclasses.is_dataclass(family.CONFIG) and callable(family.CONFIG.from_hf)
    assert family.PRESETS and all(isinstance(c, family.CONFIG) for c in family.PRESETS.values())
    assert f"{name}-test" in family.PRESETS  # the tiny preset the tests build
    assert all(isinstance(h, Head) for h in family.HEADS.values()) and family.HEADS["base"].model is family.MODEL
    architectures = [h.architecture for h in family.HEADS.values()]
    assert len(set(architectures)) == len(architectures)
    assert family.BLOCKS and all(isinstance(b, type) for b in family.BLOCKS)
    assert callable(family.hf_to_ours) and callable(family.ours_to_hf) and family.HF_BASE_PREFIX


def test_presets_and_blocks_come_from_every_family():
    assert len(PRESETS) == sum(len(f.PRESETS) for f in REGISTRY.values())  # preset names are unique
    assert set(BLOCKS) == {b for f in REGISTRY.values() for b in f.BLOCKS}


@pytest.mark.parametrize("name, head", HEADS, ids=[f"{n}-{h}" for n, h in HEADS])
def test_every_head_saves_loads_and_describes_itself(name, head, tmp_path):
    record = REGISTRY[name].HEADS[head]
    torch.manual_seed(0)
    model = build(f"{name}-test", head, num_labels=3 if record.output else None)
    assert head_of(model) == (name, head)
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [record.architecture]
    loaded = from_pretrained(tmp_path)  # the head config.json names
    assert type(loaded) is type(model)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    described = spec(model)
    assert json.loads(json.dumps(described)) == described and spec(from_spec(described)) == described
