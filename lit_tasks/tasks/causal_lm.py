"""Causal language modelling: train a decoder (GPT-2) to predict the next token, and generate."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from lit_tasks.errors import ConfigError
from lit_tasks.generation import GenerationConfig
from lit_tasks.tasks.base import TaskModule
from lit_tasks.tasks.token_loss import TokenLoss
from lit_tasks.tasks.continuations import continue_prompts, encode_prompts

log = logging.getLogger(__name__)


class CausalLanguageModeling(TokenLoss, TaskModule):
    """Train a decoder-only model on next-token prediction (Radford et al. 2019, Sec. 2:
    maximise log p(x_t | x_<t)) and continue prompts with it.

    The network is the zoo's text "causal_lm" head (GPT-2: LM head tied to the token
    embedding). From scratch (``backbone`` preset + ``backbone_config``) the embedding gets
    ``vocab_size`` rows, linked from the DataModule's tokenizer; with ``init_from`` (an HF
    folder or one of our checkpoints) the vocabulary must be the tokenizer's.

    Batches (lit_tasks.data.causal_lm.CausalLMDataModule): ``input_ids``, ``attention_mask``,
    ``labels`` (B, T) long (-100 on padding), ``ids``. Position t's logits are scored against
    the label at t + 1: the loss is the mean cross-entropy over every real next token, weighted
    by tokens across batches and ranks. Metrics: ``perplexity`` (exp of the summed loss over the
    epoch's tokens; exact under DDP) and ``acc`` (next-token top-1); checkpoints are chosen by
    the lowest ``val/perplexity``.

    Samples: after every validation (and test) the model continues ``sample_prompts`` (default:
    the first ``sample_prompt_length`` tokens of the first ``num_samples`` validation rows, the same
    every epoch) with the ``generation`` options; they go to a wandb table and to
    ``<stage>_samples.txt`` in the run folder. ``predict`` continues the data's prompts and writes
    ``{"id", "prompt", "continuations"}`` rows. A prompt that does not fit the context with
    ``max_new_tokens`` after it is an error, or with ``truncate_prompts`` loses its beginning
    (counted and logged).

    Args:
        vocab_size: the tokenizer's vocabulary size (linked from the data).
        generation: options of :class:`lit_tasks.generation.GenerationConfig` (max_new_tokens,
            num_beams, do_sample, temperature, top_k, top_p, repetition_penalty, seed, ...);
            eos and pad ids default to the tokenizer's.
        sample_prompts: fixed prompts for the samples; None: beginnings of validation rows.
        num_samples: how many validation rows give sample prompts (without sample_prompts).
        sample_prompt_length: tokens of a validation row taken as its sample prompt.
        truncate_prompts: cut prompts too long for the context on the left instead of failing.
        backbone, backbone_config, init_from, lr, weight_decay, warmup_fraction, min_lr_ratio,
            layer_decay: see TaskModule.
    """

    MODALITY, HEAD = "text", "causal_lm"
    monitor = ("val/perplexity", "min")

    def __init__(self, vocab_size: int | None = None, generation: dict[str, Any] | None = None,
                 sample_prompts: list[str] | None = None, num_samples: int = 4, sample_prompt_length: int = 8,
                 truncate_prompts: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_vocab_net(vocab_size)
        self.generation_options = dict(generation or {})
        GenerationConfig.from_dict(self.generation_options, source="model.generation")  # fail early on a typo
        if num_samples < 0 or sample_prompt_length < 1:
            raise ConfigError(f"expected model.num_samples >= 0 (got {num_samples}) and model.sample_prompt_length >= 1 "
                              f"(got {sample_prompt_length})")
        self.sample_prompts, self.num_samples, self.sample_prompt_length = sample_prompts, num_samples, sample_prompt_length
        self.truncate_prompts = truncate_prompts
        self.token_metrics()
        self._prompts: dict[str, list[list[int]]] = {}  # stage -> the sample prompts' ids kept this epoch
        self.truncated_prompts = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_ids, attention_mask)  # (B, T, V) next-token logits

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])[:, :-1]  # (B, T-1, V): predicts tokens 1..T-1
        targets = batch["labels"][:, 1:]  # (B, T-1)
        loss = self.token_loss(stage, logits, targets)
        if stage != "train":
            self._keep_prompts(stage, batch)
        return loss

    # -- samples and predictions -------------------------------------------------------------
    def generation_config(self) -> GenerationConfig:
        """The `generation` options, eos and pad ids from the tokenizer unless given."""
        tokenizer = self.tokenizer()
        defaults = {"eos_token_id": tokenizer.eos, "pad_token_id": tokenizer.pad}
        return GenerationConfig.from_dict({**defaults, **self.generation_options}, source="model.generation")

    def tokenizer(self):
        tokenizer = getattr(self.attached_data(), "tokenizer", None)
        if tokenizer is None:
            raise ConfigError("causal LM samples and predictions need the data's tokenizer (a CausalLMDataModule)")
        return tokenizer

    def start_epoch(self, stage: str) -> None:
        self._prompts[stage] = []

    def _keep_prompts(self, stage: str, batch: dict[str, Any]) -> None:
        kept = self._prompts.setdefault(stage, [])
        if self.sample_prompts is not None:
            return
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            if len(kept) >= self.num_samples:
                return
            kept.append(ids[mask.bool()][: self.sample_prompt_length].tolist())

    def text_samples(self, stage: str) -> list[dict[str, str]]:
        """{"prompt", "continuation"} per sample prompt, generated now (FigureLogger calls it on
        rank 0 after each validation and test)."""
        tokenizer = self.tokenizer()
        if self.sample_prompts is not None:
            prompts = list(self.sample_prompts)
        else:
            prompts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in self._prompts.get(stage, [])]
        if not prompts:
            return []
        input_ids, attention_mask = encode_prompts(tokenizer, prompts)
        out = continue_prompts(self.net, tokenizer, input_ids.to(self.device), attention_mask.to(self.device),
                               self.generation_config(), truncate=True)
        return [{"prompt": p, "continuation": c[0]} for p, c in zip(prompts, out.texts)]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        tokenizer = self.tokenizer()
        out = continue_prompts(self.net, tokenizer, batch["input_ids"], batch["attention_mask"],
                               self.generation_config(), self.truncate_prompts, names=batch["ids"])
        self.truncated_prompts += out.truncated
        prompts = [tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=False)
                   for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        return [{"id": i, "prompt": p, "continuations": c} for i, p, c in zip(batch["ids"], prompts, out.texts)]

    def on_predict_epoch_end(self) -> None:
        if self.truncated_prompts:
            log.warning("predict: %d prompt(s) were longer than the context leaves room for and lost their "
                        "beginning (truncate_prompts)", self.truncated_prompts)
