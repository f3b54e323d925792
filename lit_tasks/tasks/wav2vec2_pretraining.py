"""wav2vec 2.0 self-supervised pretraining: mask spans of latent frames and pick each masked
frame's quantized latent among distractors (Baevski et al. 2020, Sec. 3.1-3.2 and 4.2)."""

from __future__ import annotations

import zlib
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from lit_tasks.data.samplers import run_seed
from lit_tasks.errors import ConfigError
from lit_tasks.metrics.codebook import CodebookPerplexity
from lit_tasks.tasks.base import STAGES, TaskModule
from lit_tasks.tasks.contrastive_masks import draw_masks, scale_gradient
from lit_tasks.zoo.wav2vec2_pretraining import contrastive_logits, diversity_loss

EVAL_SEED = 20200620  # val/test masks depend on this and the clip only, never on the run's seed
MEANS = ("contrastive_loss", "contrastive_acc")  # per masked frame


class Wav2Vec2Pretraining(TaskModule):
    """Pretrain a wav2vec2 on unlabelled audio with the contrastive task (Sec. 3.2).

    The network is the zoo's audio "pretraining" head (`lit_tasks.zoo.wav2vec2_pretraining`, see
    TaskModule): the context network sees the projected conv features with masked spans replaced by a
    learned vector; a Gumbel product quantizer (G groups of V codes) discretises the unmasked
    features. For every masked frame t the loss picks the quantized q_t among q_t and K
    distractors (other masked frames of the same clip) by cosine similarity to c_t / kappa.

    **Masks** cover only real frames (lengths from the attention mask after the conv encoder):
    spans of `mask_length` frames, about mask_prob * frames / mask_length of them, at least
    `mask_min_spans` (paper: p = 0.065 starts, M = 10, i.e. mask_prob 0.65; about half of the
    frames end up masked). **Randomness**: every clip's mask and distractors come from a
    generator of its own. In training it is seeded by (run seed, optimizer step, DDP rank,
    row), so a resumed run draws the masks it would have drawn (with gradient accumulation the
    micro-batches of one step share these seeds); val/test seeds depend on the clip's path
    only, so their masks are the same in every epoch and run and val metrics are comparable.
    The Gumbel noise and dropout use torch's RNG, which the checkpoints restore.

    **Gumbel temperature** at optimizer step s: max(max_gumbel_temperature *
    gumbel_temperature_decay ** s, min_gumbel_temperature), computed from the global step
    (nothing to save; a resumed run continues the schedule exactly). In eval the quantizer
    takes the argmax and the temperature plays no part.

    **Loss** per batch: (summed L_m + alpha * L_d * M) / M over its M masked frames, L_d = (GV
    - perplexity) / GV (Eq. 2-4), alpha = `diversity_loss_weight`. Under DDP the optimizer's
    loss divides by the mean M over ranks (gradients are averaged), i.e. by the masked frames
    of the whole step, as HF's pretraining example does.

    **Logged** for train on every step (`train/<name>_step`, this batch) and per epoch
    (`train/<name>_epoch`), for val/test per epoch (`val/<name>`): `contrastive_loss` (L_m per
    masked frame), `contrastive_acc` (share of masked frames whose q_t scores above every
    distractor), `codebook_perplexity` (`CodebookPerplexity`: from the softmax in training,
    from the codes chosen in eval; at most G * V), `diversity_loss` = (GV - that perplexity) /
    GV and `loss` = contrastive_loss + alpha * diversity_loss, plus train/gumbel_temperature.
    Epoch values pool the whole epoch (sums over all masked frames, then divided), so they are
    exact under DDP; a step's loss is the one the optimizer saw. Checkpoints are chosen by the
    lowest val/loss.

    Batches (lit_tasks.data.AudioDataModule, task="unlabelled"): {"input_values": (B, L) float,
    "attention_mask": (B, L) long, "paths": list of B paths}.

    The codebook is set by backbone_config's num_codevector_groups, num_codevectors_per_group,
    codevector_dim and proj_codevector_dim, kappa by contrastive_logits_temperature.

    Args:
        mask_prob: share of real frames that start a masked span, times mask_length (0.65: about
            half of the frames end up masked, see Masks above).
        mask_length: frames per masked span (M = 10 in the paper).
        mask_min_spans: masked spans per clip at least, however short the clip.
        num_negatives: distractors K per masked frame; None: the model config's (100 in the
            HF-mirroring presets).
        diversity_loss_weight: alpha; None: the model config's (0.1).
        max_gumbel_temperature: the Gumbel softmax temperature at step 0 (paper: 2).
        min_gumbel_temperature: the floor the temperature decays to (paper: 0.5).
        gumbel_temperature_decay: the temperature's factor per optimizer step (paper: 0.999995).
        feature_grad_scale: multiplies the gradient reaching the conv feature encoder (the paper
            uses 0.1 for BASE, Sec. 4.2 / fairseq's feature_grad_mult): the quantizer's targets
            then move slower than the context network, which keeps small runs from collapsing.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "audio", "pretraining"
    monitor = ("val/loss", "min")

    def __init__(
        self,
        mask_prob: float = 0.65,
        mask_length: int = 10,
        mask_min_spans: int = 2,
        num_negatives: int | None = None,
        diversity_loss_weight: float | None = None,
        max_gumbel_temperature: float = 2.0,
        min_gumbel_temperature: float = 0.5,
        gumbel_temperature_decay: float = 0.999995,
        feature_grad_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < mask_prob <= 1:
            raise ConfigError(f"model.mask_prob is {mask_prob}; expected a share in (0, 1]")
        if mask_length < 1 or mask_min_spans < 0:
            raise ConfigError(f"model.mask_length ({mask_length}) must be >= 1 and model.mask_min_spans "
                              f"({mask_min_spans}) >= 0")
        if not 0 < min_gumbel_temperature <= max_gumbel_temperature or not 0 < gumbel_temperature_decay <= 1:
            raise ConfigError(f"the Gumbel temperature schedule needs 0 < model.min_gumbel_temperature "
                              f"({min_gumbel_temperature}) <= model.max_gumbel_temperature ({max_gumbel_temperature}) "
                              f"and 0 < model.gumbel_temperature_decay ({gumbel_temperature_decay}) <= 1")
        config = self.build_net().config
        if not hasattr(self.net.wav2vec2, "masked_spec_embed"):
            raise ConfigError("the wav2vec2 has no mask embedding (its config has mask_time_prob and mask_feature_prob "
                              "0); set backbone_config.mask_time_prob > 0 (it is only used in fine-tuning)")
        if not 0 <= feature_grad_scale <= 1:
            raise ConfigError(f"model.feature_grad_scale is {feature_grad_scale}; expected a factor in [0, 1]")
        if feature_grad_scale != 1:
            self.net.wav2vec2.feature_extractor.register_forward_hook(partial(scale_gradient, scale=feature_grad_scale))
        self.num_negatives = config.num_negatives if num_negatives is None else num_negatives
        self.diversity_loss_weight = (config.diversity_loss_weight if diversity_loss_weight is None
                                      else diversity_loss_weight)
        if self.num_negatives < 1:
            raise ConfigError(f"model.num_negatives is {self.num_negatives}; expected at least 1")
        self.mask_prob, self.mask_length, self.mask_min_spans = mask_prob, mask_length, mask_min_spans
        self.max_gumbel_temperature, self.min_gumbel_temperature = max_gumbel_temperature, min_gumbel_temperature
        self.gumbel_temperature_decay = gumbel_temperature_decay
        self.num_codes = config.num_codevector_groups * config.num_codevectors_per_group  # G * V
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = nn.ModuleDict({
            f"{s}_metrics": nn.ModuleDict({
                **{name: MeanMetric() for name in MEANS},
                "codebook_perplexity": CodebookPerplexity(config.num_codevector_groups,
                                                          config.num_codevectors_per_group),
            }) for s in STAGES
        })

    def gumbel_temperature(self, step: int) -> float:
        """The quantizer's temperature at optimizer step `step`."""
        decayed = self.max_gumbel_temperature * self.gumbel_temperature_decay ** step
        return max(decayed, self.min_gumbel_temperature)

    def _seeds(self, batch: dict[str, Any], stage: str) -> list[int]:
        if stage == "train":
            entropy = [run_seed(), self.global_step, self.global_rank]
            return np.random.SeedSequence(entropy).generate_state(len(batch["paths"]), np.uint64).tolist()
        return [EVAL_SEED + zlib.crc32(str(path).encode()) for path in batch["paths"]]

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None):
        return self.net(input_values, attention_mask, mask_time_indices)  # PreTrainingOutput

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if not batch["paths"]:  # every clip of the batch was skipped as undecodable
            return None
        x, attention_mask = batch["input_values"], batch["attention_mask"]  # (B, L)
        wav2vec2 = self.net.wav2vec2
        num_frames = int(wav2vec2.output_lengths(torch.tensor(x.shape[1])))
        frames = wav2vec2.output_lengths(attention_mask.sum(-1)).clamp(0, num_frames).cpu()  # (B,)
        mask, negatives = draw_masks(frames, num_frames, self._seeds(batch, stage), self.mask_prob,
                                     self.mask_length, self.mask_min_spans, self.num_negatives)
        mask, negatives = mask.to(x.device), negatives.to(x.device)  # (B, T), (B, T, K)
        if stage == "train":
            temperature = self.gumbel_temperature(self.global_step)
            self.net.set_gumbel_temperature(temperature)
            self.log("train/gumbel_temperature", temperature, on_step=True, on_epoch=True, batch_size=x.shape[0])
        out = self(x, attention_mask, mask)
        logits = contrastive_logits(out.projected_states, out.projected_quantized_states, mask, negatives,
                                    self.net.config.contrastive_logits_temperature)  # (M, 1 + K)
        masked = logits.shape[0]
        if stage == "train":  # the masked frames of the whole step (the mean over ranks: DDP averages gradients)
            per_rank = self.trainer.strategy.reduce(torch.tensor(float(masked), device=x.device), reduce_op="mean")
        if masked == 0:  # every clip shorter than mask_length: nothing to predict, a zero loss in the graph
            return (out.projected_states.sum() + out.projected_quantized_states.sum()) * 0.0
        contrastive = F.cross_entropy(logits, logits.new_zeros(masked, dtype=torch.long), reduction="sum")
        diversity = diversity_loss(out.codevector_perplexity, self.num_codes, 1)  # (GV - perplexity) / GV
        summed = contrastive + self.diversity_loss_weight * diversity * masked
        correct = (logits[:, 1:] < logits[:, :1]).all(-1).float()  # (M,) q_t above every distractor
        metrics = self.metrics[f"{stage}_metrics"]
        metrics["contrastive_loss"](contrastive.detach() / masked, masked)  # weighted by the masked frames
        metrics["contrastive_acc"](correct.mean(), masked)
        metrics["codebook_perplexity"](out.codevector_probs[mask])  # (M, G, V)
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, on_step=stage == "train", on_epoch=True,
                     prog_bar=name in ("contrastive_acc", "codebook_perplexity"))
        if stage != "train":
            return None
        self.log_dict({"train/loss_step": summed.detach() / masked, "train/diversity_loss_step": diversity.detach()},
                      on_step=True, on_epoch=False, prog_bar=True)
        return summed / per_rank

    def end_epoch(self, stage: str) -> None:
        """loss and diversity_loss of the whole epoch, from the pooled metrics."""
        metrics = self.metrics[f"{stage}_metrics"]  # compute() syncs over ranks: every rank must call it
        diversity = (self.num_codes - metrics["codebook_perplexity"].compute()) / self.num_codes
        loss = metrics["contrastive_loss"].compute() + self.diversity_loss_weight * diversity
        suffix = "_epoch" if stage == "train" else ""
        self.log(f"{stage}/loss{suffix}", loss, prog_bar=stage != "train")
        self.log(f"{stage}/diversity_loss{suffix}", diversity)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        raise ConfigError("Wav2Vec2Pretraining makes no predictions; use validate or test for its metrics")
