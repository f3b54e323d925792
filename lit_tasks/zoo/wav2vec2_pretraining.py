"""wav2vec 2.0 pre-training: the product quantizer and the self-supervised objective
(Baevski et al. 2020, Sec. 2 "Quantization module" and Sec. 3.2 "Training Objective").

`Wav2Vec2ForPreTraining` (equal to HF's) returns raw predictions: the projected context
vectors c_t, the projected quantized latents q_t and the codebook perplexity. The losses are
functions: `contrastive_logits` / `contrastive_loss` (Eq. 3), `diversity_loss` (Eq. 4) and
`pretraining_loss` (Eq. 2, L = L_m + alpha L_d); `sample_negatives` draws the distractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # annotations only: wav2vec2.py builds this head, so it must not be imported back
    from lit_tasks.zoo.wav2vec2 import Wav2Vec2, Wav2Vec2Config


def codebook_perplexity(probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """sum over groups g of exp(H(p_bar_g)), p_bar_g the codeword distribution averaged over
    frames (Eq. 4's perplexity); probs (N, G, V) over N = B * T frames, mask (B, T) selects frames."""
    if mask is None:
        marginal = probs.mean(0)  # (G, V)
    else:
        keep = mask.flatten()[:, None, None].to(probs.dtype)  # (N, 1, 1)
        marginal = (probs * keep).sum(0) / mask.sum()  # (G, V)
    return torch.exp(-torch.xlogy(marginal, marginal).sum(-1)).sum()


class GumbelVectorQuantizer(nn.Module):
    """Product quantization with G codebooks of V entries (Sec. 2, Eq. 1; Jegou et al. 2011).

    The conv features map to G x V logits; in training one entry per group is picked with the
    straight-through Gumbel softmax (Jang et al. 2016) at `temperature` tau (annealed from 2 to
    0.5 in the paper; set it with `Wav2Vec2ForPreTraining.set_gumbel_temperature`); in eval the
    argmax. The chosen entries, each of codevector_dim / G, are concatenated.
    Perplexity uses the softmax probabilities in training and the one-hot choices in eval; these
    per-frame code distributions are returned too (to pool usage over many batches).
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.num_groups = config.num_codevector_groups
        self.num_vars = config.num_codevectors_per_group
        self.codevectors = nn.Parameter(torch.empty(1, self.num_groups * self.num_vars, config.codevector_dim // self.num_groups))
        self.weight_proj = nn.Linear(config.conv_dim[-1], self.num_groups * self.num_vars)
        self.temperature = 2.0
        nn.init.normal_(self.weight_proj.weight, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        nn.init.uniform_(self.codevectors)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """features (B, T, C) -> quantized (B, T, codevector_dim), the perplexity (a scalar) and
        the code distributions (B, T, G, V) it is computed from."""
        B, T, _ = features.shape
        logits = self.weight_proj(features).view(B * T, self.num_groups, self.num_vars)  # (N, G, V)
        if self.training:
            choice = F.gumbel_softmax(logits.float(), tau=self.temperature, hard=True).type_as(logits)
            probs = logits.float().softmax(-1)
        else:
            choice = F.one_hot(logits.argmax(-1), self.num_vars).type_as(logits)
            probs = choice.float()
        perplexity = codebook_perplexity(probs, mask)
        codebooks = self.codevectors.view(self.num_groups, self.num_vars, -1)  # (G, V, d)
        quantized = torch.einsum("ngv,gvd->ngd", choice, codebooks)  # (N, G, d)
        return quantized.reshape(B, T, -1), perplexity, probs.view(B, T, self.num_groups, self.num_vars)


@dataclass
class PreTrainingOutput:
    """projected_states (B, T, P): c_t through project_hid; projected_quantized_states (B, T, P):
    q_t through project_q; codevector_perplexity: a scalar over the masked frames;
    codevector_probs (B, T, G, V): each frame's code distribution (softmax in training, the
    one-hot choice in eval), what the perplexity averages."""

    projected_states: Tensor
    projected_quantized_states: Tensor
    codevector_perplexity: Tensor
    codevector_probs: Tensor


class Wav2Vec2ForPreTraining(nn.Module):
    """The pre-training model (Sec. 2, Fig. 1), equal to HF `Wav2Vec2ForPreTraining`: the
    context network sees masked features, the quantizer the unmasked ones."""

    head = "pretraining"

    def __init__(self, wav2vec2: Wav2Vec2):
        super().__init__()
        c = wav2vec2.config
        self.wav2vec2 = wav2vec2
        self.dropout_features = nn.Dropout(c.feat_quantizer_dropout)
        self.quantizer = GumbelVectorQuantizer(c)
        self.project_hid = nn.Linear(c.hidden_size, c.proj_codevector_dim)
        self.project_q = nn.Linear(c.codevector_dim, c.proj_codevector_dim)

    @property
    def config(self) -> Wav2Vec2Config:
        return self.wav2vec2.config

    def set_gumbel_temperature(self, temperature: float) -> None:
        self.quantizer.temperature = temperature

    def freeze_feature_encoder(self) -> None:
        self.wav2vec2.freeze_feature_encoder()

    def forward(
        self, input_values: Tensor, attention_mask: Tensor | None = None, mask_time_indices: Tensor | None = None,
    ) -> PreTrainingOutput:
        """mask_time_indices (B, T) bool: the frames to mask and predict (see `span_mask`)."""
        if mask_time_indices is not None:
            mask_time_indices = mask_time_indices.bool()
        out = self.wav2vec2(input_values, attention_mask, mask_time_indices)
        projected = self.project_hid(out.last_hidden_state)  # (B, T, P)
        quantized, perplexity, probs = self.quantizer(self.dropout_features(out.extract_features), mask_time_indices)
        return PreTrainingOutput(projected, self.project_q(quantized), perplexity, probs)  # (B, T, P)


@torch.no_grad()
def sample_negatives(mask_time_indices: Tensor, num_negatives: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, T, K) distractor indices into the flattened (B * T) frames (Sec. 3.2: K distractors
    drawn uniformly from the other masked frames of the same utterance). Rows of unmasked
    frames point at their utterance's first frame; the loss ignores them."""
    B, T = mask_time_indices.shape
    negatives = torch.zeros(B, T, num_negatives, dtype=torch.long)
    for b in range(B):
        frames = mask_time_indices[b].nonzero().flatten().cpu()  # (M,)
        m = frames.numel()
        if m > 1:
            picks = torch.randint(0, m - 1, (m, num_negatives), generator=generator)
            picks += (picks >= torch.arange(m)[:, None]).long()  # skip the positive itself
            negatives[b, frames] = frames[picks]
        negatives[b] += b * T
    return negatives.to(mask_time_indices.device)


def contrastive_logits(
    projected_states: Tensor, projected_quantized_states: Tensor, mask_time_indices: Tensor,
    sampled_negative_indices: Tensor, temperature: float = 0.1,
) -> Tensor:
    """(M, 1 + K) logits of Eq. 3 at the M masked frames: cosine similarity of c_t to q_t (column
    0) and to its K distractors, divided by kappa = `temperature`. A distractor equal to q_t (a
    low-use codebook) gets -inf. projected_* (B, T, P), mask (B, T), negatives (B, T, K)."""
    B, T, P = projected_quantized_states.shape
    negatives = projected_quantized_states.reshape(B * T, P)[sampled_negative_indices.long().flatten()]
    negatives = negatives.view(B, T, -1, P)  # (B, T, K, P)
    candidates = torch.cat([projected_quantized_states[:, :, None], negatives], dim=2)  # (B, T, 1 + K, P)
    logits = F.cosine_similarity(projected_states.float()[:, :, None], candidates.float(), dim=-1) / temperature
    same = (negatives == projected_quantized_states[:, :, None]).all(-1)  # (B, T, K)
    logits[:, :, 1:] = logits[:, :, 1:].masked_fill(same, float("-inf"))
    return logits[mask_time_indices.bool()]  # (M, 1 + K), the positive at index 0


def contrastive_loss(
    projected_states: Tensor, projected_quantized_states: Tensor, mask_time_indices: Tensor,
    sampled_negative_indices: Tensor, temperature: float = 0.1,
) -> Tensor:
    """L_m (Eq. 3), summed over the masked frames: cross-entropy of picking q_t among
    {q_t} + distractors (`contrastive_logits`)."""
    masked = contrastive_logits(projected_states, projected_quantized_states, mask_time_indices,
                                sampled_negative_indices, temperature)  # (M, 1 + K)
    return F.cross_entropy(masked, masked.new_zeros(masked.shape[0], dtype=torch.long), reduction="sum")


def diversity_loss(perplexity: Tensor, num_codevectors: int, num_masked: Tensor | int) -> Tensor:
    """L_d (Eq. 4) as (GV - perplexity) / GV, scaled by the number of masked frames as HF does
    so that it adds to the summed L_m."""
    return (num_codevectors - perplexity) / num_codevectors * num_masked


def pretraining_loss(
    output: PreTrainingOutput, mask_time_indices: Tensor, sampled_negative_indices: Tensor, config: Wav2Vec2Config,
) -> tuple[Tensor, Tensor, Tensor]:
    """(L, L_m, L_d) with L = L_m + alpha L_d (Eq. 2), alpha = config.diversity_loss_weight."""
    l_m = contrastive_loss(output.projected_states, output.projected_quantized_states, mask_time_indices,
                           sampled_negative_indices, config.contrastive_logits_temperature)
    l_d = diversity_loss(output.codevector_perplexity, config.num_codevector_groups * config.num_codevectors_per_group,
                         mask_time_indices.bool().sum())
    return l_m + config.diversity_loss_weight * l_d, l_m, l_d
