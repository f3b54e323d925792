"""mBART: Liu et al. 2020, "Multilingual Denoising Pre-training for Neural Machine
Translation" (TACL), https://arxiv.org/abs/2001.08210.

BART's architecture (`bart.py` holds the modules) with the changes of its Sec. 2.2: pre-LN
blocks, x + sublayer(LN(x)), and one more LayerNorm (`layer_norm`) on top of the encoder and
of the decoder; embeddings scaled by sqrt(d_model) in the released models (`scale_embedding`).
The HF names and the key map are BART's, plus `{encoder,decoder}.layer_norm`.

The one other difference is how HF makes decoder inputs from targets (`shift_right`): mBART's
targets end in `</s> <lang_code>` (cc25) or start with the language code (mBART-50), and HF's
MBart moves each row's last real token (the language code, or `</s>`) to the front instead of
prepending a fixed decoder_start_token_id. `forward` without decoder_input_ids does the same
to input_ids, as HF's MBartModel does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from lit_tasks.zoo import bart
from lit_tasks.zoo.base import Head

MODEL_TYPE = "mbart"
MODALITY = "text"
HF_BASE_PREFIX = bart.HF_BASE_PREFIX


@dataclass(frozen=True)
class MBartConfig(bart.BartConfig):
    """The fields and defaults of an HF `config.json` with `model_type: "mbart"`: BART's, but
    decoder_start_token_id is None by default (HF's). Older config.json files say
    `normalize_before: true` and `add_final_layer_norm: true`, the layout this family is."""

    decoder_start_token_id: int | None = None

    MODEL_TYPE: ClassVar[str] = "mbart"
    NORMALIZE_BEFORE: ClassVar[bool] = True
    LEGACY_KEYS: ClassVar[dict[str, Any]] = {**bart.BartConfig.LEGACY_KEYS, "normalize_before": True,
                                             "add_final_layer_norm": True}
    LAYOUT_HINT: ClassVar[str] = " (a post-LN checkpoint without final LayerNorms is model_type 'bart')"


CONFIG = MBartConfig

PRESETS: dict[str, MBartConfig] = {
    # Mirrors facebook/mbart-large-cc25 (12 + 12 layers, d_model 1024, 25 languages, 610M parameters).
    "mbart-large-cc25": MBartConfig(vocab_size=250027, scale_embedding=True),
    # Tiny, for tests.
    "mbart-test": MBartConfig(vocab_size=99, max_position_embeddings=64, d_model=32, encoder_layers=2,
                              decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                              encoder_ffn_dim=64, decoder_ffn_dim=64, scale_embedding=True, decoder_start_token_id=2),
}


def shift_right(labels: Tensor, decoder_start_token_id: int | None, pad_token_id: int | None) -> Tensor:
    """mBART's decoder inputs from targets (B, T), -100 read as pad_token_id. With
    decoder_start_token_id None, HF MBart's rule: each row's last non-pad token first, then the
    targets but their last token (right padding assumed, as HF does); with an id, BART's rule."""
    if decoder_start_token_id is not None:
        return bart.shift_right(labels, decoder_start_token_id, pad_token_id)
    if pad_token_id is None:
        raise ValueError("shift_right: mBART's rule needs pad_token_id (set it in the config)")
    tokens = labels.masked_fill(labels == -100, pad_token_id)  # (B, T)
    last = (tokens != pad_token_id).sum(dim=1, keepdim=True) - 1  # (B, 1): each row's last real token
    return torch.cat([tokens.gather(1, last.clamp(min=0)), tokens[:, :-1]], dim=1)  # (B, T)


class MBartModel(bart.BartModel):
    """The mBART encoder-decoder, equal to HF `MBartModel` (BartModel on an MBartConfig: pre-LN)."""

    CONFIG: ClassVar[type] = MBartConfig

    def shift_inputs(self, input_ids: Tensor) -> Tensor:
        return shift_right(input_ids, None, self.config.pad_token_id)


class MBartForConditionalGeneration(bart.BartForConditionalGeneration):
    """mBART's LM head, equal to HF `MBartForConditionalGeneration`."""

    BASE: ClassVar[type] = MBartModel


MODEL = MBartModel
BLOCKS = bart.BLOCKS
HEADS: dict[str, Head] = {
    "base": Head("MBartModel", MBartModel),
    "seq2seq_lm": Head("MBartForConditionalGeneration", MBartForConditionalGeneration,
                       parts=bart.HEADS["seq2seq_lm"].parts, tied=bart.HEADS["seq2seq_lm"].tied),
}
IGNORED_HF_KEYS = bart.IGNORED_HF_KEYS
hf_to_ours = bart.hf_to_ours
ours_to_hf = bart.ours_to_hf
