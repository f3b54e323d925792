"""A linear classification head on any zoo backbone's pooled embedding.

Equal to HF `ViTForImageClassification` (a Linear on the final-LN class token) and
`ConvNextForImageClassification` (a Linear on the LayerNorm'd global average pool):
both read `Backbone.forward_pooled`. In HF key names the head is `classifier.*` and
the backbone sits under `{HF_BASE_PREFIX}.`.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_tasks.zoo.base import Backbone


class ImageClassifier(nn.Module):
    """backbone -> (B, num_features) embedding -> Linear -> (B, num_classes) logits."""

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ImageClassifier: num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.num_features, num_classes)
        self.reset_head()

    @property
    def config(self):
        """The backbone's config (an image classifier's HF config.json adds only the labels)."""
        return self.backbone.config

    def reset_head(self) -> None:
        std = getattr(self.config, "initializer_range", 0.02)
        nn.init.trunc_normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.classifier(self.backbone.forward_pooled(pixel_values))  # (B, num_classes)
