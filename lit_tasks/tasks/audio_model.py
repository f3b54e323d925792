"""What the audio tasks share about their Wav2Vec2 network: layer depths for layer-wise lr
decay. (The network itself: `lit_tasks.tasks.network`.)"""

from __future__ import annotations

from torch import nn


def layer_depth(model: nn.Module, name: str) -> tuple[int, int]:
    """(depth, depth of the head) of parameter `name` (relative to the head model) for layer-wise
    lr decay: 0 for the feature encoder, projection and position conv, i for Transformer layer i
    (1-based), num_hidden_layers + 1 for the final norm of pre-LN models and the head."""
    deepest = model.wav2vec2.config.num_hidden_layers + 1
    prefix = "wav2vec2.encoder.layers."
    if name.startswith(prefix):
        return int(name[len(prefix):].split(".")[0]) + 1, deepest
    if not name.startswith("wav2vec2."):
        return deepest, deepest  # the head
    if name.startswith("wav2vec2.encoder.layer_norm.") and model.wav2vec2.config.do_stable_layer_norm:
        return deepest, deepest  # pre-LN: the final norm after the last layer
    return 0, deepest  # feature encoder, projection, position conv, post-LN embedding norm
