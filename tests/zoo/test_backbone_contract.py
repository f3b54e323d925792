"""The backbone contract (lit_tasks/zoo/base.py), checked for every vision backbone of the
registry: registering a family is what puts it under this test.

forward_features(x, out_indices) gives one (B, C_i, H / s_i, W / s_i) map per requested level,
as feature_info says; the default levels are `out_indices`; negative indices count from the
end; a bad index is a ValueError naming the levels; gradients reach the input from every level."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.zoo import REGISTRY, Backbone, build

VISION = {name: family for name, family in REGISTRY.items() if issubclass(family.MODEL, Backbone)}
# the smallest preset of each registered vision family (its "-test" one)
BACKBONES = {name: next(preset for preset in family.PRESETS if preset.endswith("-test")) for name, family in VISION.items()}
H, W = 64, 96  # divisible by every stride of the test presets


@pytest.fixture(params=sorted(BACKBONES))
def backbone(request):
    torch.manual_seed(0)
    return build(BACKBONES[request.param]).eval()


def test_every_vision_family_has_a_test_preset():
    assert set(BACKBONES) == set(VISION) and {"vit", "convnext"} <= set(VISION)


def test_every_level_has_the_shape_feature_info_gives(backbone):
    x = torch.randn(2, 3, H, W)
    levels = list(range(len(backbone.feature_info)))
    maps = backbone.forward_features(x, levels)
    assert len(maps) == len(levels)
    for level, (feature, info) in enumerate(zip(maps, backbone.feature_info)):
        assert feature.shape == (2, info.channels, H // info.stride, W // info.stride), level
        assert torch.isfinite(feature).all()


def test_default_negative_and_bad_levels(backbone):
    x = torch.randn(1, 3, H, W)
    default = backbone.forward_features(x)
    assert len(default) == len(backbone.out_indices)
    for got, level in zip(default, backbone.out_indices):
        torch.testing.assert_close(got, backbone.forward_features(x, [level])[0])
    torch.testing.assert_close(backbone.forward_features(x, [-1])[0],
                               backbone.forward_features(x, [len(backbone.feature_info) - 1])[0])
    with pytest.raises(ValueError, match="levels"):
        backbone.forward_features(x, [len(backbone.feature_info)])
    with pytest.raises(ValueError, match="levels"):
        backbone.forward_features(x, [])


def test_gradients_reach_the_pixels_from_every_level(backbone):
    for level in range(len(backbone.feature_info)):
        x = torch.randn(1, 3, H, W, requires_grad=True)
        backbone.forward_features(x, [level])[0].sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, level
