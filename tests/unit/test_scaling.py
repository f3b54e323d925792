"""Activation checkpointing and torch.compile of the zoo blocks; the FSDP policy in the docs."""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from helpers import REPO

from lit_tasks.zoo import bert, blocks, build, vit, wav2vec2


def tiny_models():
    """(name, model, inputs) of each transformer family, dropout on so that RNG matters."""
    torch.manual_seed(0)
    vit_config = vit.PRESETS["vit-test"].__class__(**{**vit.PRESETS["vit-test"].__dict__, "hidden_dropout_prob": 0.2})
    bert_config = bert.PRESETS["bert-test"]
    w2v_config = wav2vec2.PRESETS["wav2vec2-test"]
    return [
        ("vit", vit.ViT(vit_config), lambda m: m(torch.randn(2, 3, 32, 32)).last_hidden_state),
        ("bert", bert.Bert(bert_config), lambda m: m(torch.randint(0, 99, (2, 12)), torch.ones(2, 12)).last_hidden_state),
        ("wav2vec2", wav2vec2.Wav2Vec2(w2v_config), lambda m: m(torch.randn(2, 800)).last_hidden_state),
        ("convnext", build("convnext-test"), lambda m: m.forward_features(torch.randn(2, 3, 32, 32))[-1]),
    ]


def grads(model, run) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    torch.manual_seed(1)  # same inputs, dropout masks, layer drops and time masks
    run(model).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,model,run", tiny_models(), ids=lambda x: x if isinstance(x, str) else "")
def test_activation_checkpointing_keeps_gradients(name, model, run):
    plain = grads(model, run)
    assert blocks.checkpoint_blocks(model) == len(blocks.blocks_of(model)) > 0
    checkpointed = grads(model, run)
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=0, atol=0, msg=key)
    assert blocks.checkpoint_blocks(model) == len(blocks.blocks_of(model))  # idempotent: wrapped once
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        run(model)  # eval without gradients runs the blocks plainly


def test_checkpointing_frees_block_activations():
    """Saved-for-backward tensors per forward: fewer with checkpointing (the point of it)."""
    torch.manual_seed(0)
    config = vit.PRESETS["vit-test"].__class__(**{**vit.PRESETS["vit-test"].__dict__, "num_hidden_layers": 6})
    model, x = vit.ViT(config), torch.randn(4, 3, 32, 32)

    def saved_bytes() -> int:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x).last_hidden_state.sum()
        return total

    plain = saved_bytes()
    blocks.checkpoint_blocks(model)
    assert saved_bytes() < plain / 2


def test_compile_blocks_in_place_keeps_outputs_and_names():
    torch.manual_seed(0)
    model = vit.ViT(vit.PRESETS["vit-test"]).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x).last_hidden_state
    names = list(model.state_dict())
    assert blocks.compile_blocks(model, backend="eager") == 2
    assert all(block._compiled_call_impl is not None for block in blocks.blocks_of(model))
    torch.testing.assert_close(model(x).last_hidden_state, expected)
    assert list(model.state_dict()) == names  # checkpoints stay interchangeable


def test_fsdp_policy_wraps_each_block():
    model = vit.ViT(vit.PRESETS["vit-test"])
    wrapped = [m for m in model.modules() if blocks.fsdp_wrap_policy(m, recurse=False, nonwrapped_numel=0)]
    assert wrapped == list(model.layers)
    assert blocks.fsdp_wrap_policy(model, recurse=True, nonwrapped_numel=0)


def test_fsdp_strategy_in_the_docs_builds():
    """The trainer.strategy block of docs/scaling.md parses against Lightning's FSDPStrategy."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy

    text = (REPO / "docs" / "scaling.md").read_text()
    (snippet,) = [block for block in re.findall(r"```yaml\n(.*?)```", text, re.S) if "FSDPStrategy" in block]
    strategy = yaml.safe_load(snippet)["trainer"]["strategy"]
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    built = parser.instantiate_classes(parser.parse_object({"strategy": strategy})).strategy
    assert isinstance(built, FSDPStrategy)
    assert built.kwargs["auto_wrap_policy"] is blocks.fsdp_wrap_policy
    assert built._activation_checkpointing_kwargs["auto_wrap_policy"] is blocks.fsdp_wrap_policy
    assert built.sharding_strategy.name == strategy["init_args"]["sharding_strategy"]
