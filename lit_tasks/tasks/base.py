"""What every task shares: the network, the optimiser and lr schedule, the loss and metric
logging per stage, the step wrappers and the architecture stored in checkpoints.

A task is a LightningModule that holds the system (network, loss, metrics, optimiser), not
the network's internals. A task names the input it feeds (`MODALITY`) and the zoo head it
needs (`HEAD`), builds `self.net` with `build_net`, and states its loss and metrics in `step`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection

from lit_tasks import zoo
from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.tasks.network import build_network

STAGES = ("train", "val", "test")
EVAL_STAGES = ("val", "test")


def warmup_cosine(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
    """lr multiplier: linear warm-up from 0, then cosine decay to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norms, position embeddings, tokens and layer scales are not decayed."""
    return param.ndim <= 1 or name.endswith((".position_embeddings", ".cls_token", "position_embedding"))


def describe(spec: dict[str, Any]) -> str:
    """"a 'bert' sequence_classification model with 3 labels" for a checkpoint's spec."""
    labels = f" with {spec['num_classes']} labels" if spec.get("num_classes") is not None else ""
    head = f"{spec['head']} " if spec.get("head") else ""
    return f"a '{spec.get('family')}' {head}model{labels}"


class TaskModule(L.LightningModule):
    """Shared base of the tasks: the network, AdamW + warm-up/cosine with optional layer-wise lr
    decay, per-stage metrics, and the architecture checked when a checkpoint is loaded.

    The network is `build_network(MODALITY, HEAD, ...)` (`lit_tasks.tasks.network`): a zoo preset
    (`backbone`, with `backbone_config` overriding preset fields), an HF-format folder or one of
    our own checkpoints (`init_from`) whose backbone is taken and whose head is kept when it is
    this task's (of the same size) and otherwise freshly initialised, with a warning.

    Args:
        backbone: a zoo preset of the task's modality with its head (`lit_tasks.zoo.PRESETS`),
            e.g. "vit-base-patch16-224", "all-minilm-l6-v2", "wav2vec2-base".
        backbone_config: preset fields to override, e.g. {"num_hidden_layers": 2}.
        init_from: an HF-format folder (config.json + safetensors) or a lit_tasks checkpoint
            (.ckpt, e.g. a pretraining run's best.ckpt) to fine-tune from.
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay (not applied to biases and norms).
        warmup_fraction: share of all optimiser steps spent warming up linearly.
        min_lr_ratio: the cosine ends at lr * min_lr_ratio.
        layer_decay: layer-wise lr decay (BEiT, Bao et al. 2022, sec. 3): the head gets lr,
            a block d layers below it lr * layer_decay**d; None turns it off.
    """

    MODALITY: ClassVar[str]  # "image", "text" or "audio": the families that fit
    HEAD: ClassVar[str]  # the zoo head the task trains
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")  # (metric, "min"|"max") choosing checkpoints

    def __init__(
        self,
        backbone: str | None = None,
        backbone_config: dict[str, Any] | None = None,
        init_from: str | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.0,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # every task's arguments, as built (results.json's config)
        if lr < 0 or weight_decay < 0 or not 0 <= warmup_fraction <= 1 or not 0 <= min_lr_ratio <= 1:
            raise ConfigError(f"expected model.lr ({lr}) and model.weight_decay ({weight_decay}) >= 0, "
                              f"model.warmup_fraction ({warmup_fraction}) and model.min_lr_ratio ({min_lr_ratio}) in [0, 1]")
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ConfigError(f"model.layer_decay is {layer_decay}; expected a factor in (0, 1] or null")
        self.lr, self.weight_decay, self.layer_decay = lr, weight_decay, layer_decay
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self.losses = nn.ModuleDict({s: MeanMetric() for s in EVAL_STAGES})  # sample-weighted under DDP

    def build_net(self, num_labels: int | None = None, backbone_config: dict[str, Any] | None = None) -> nn.Module:
        """`self.net`: the HEAD model of the configured backbone; `num_labels` sizes its output layer,
        `backbone_config` (default: the configured one) adds fields the data decides."""
        config = self.hparams.backbone_config if backbone_config is None else backbone_config
        self.net = build_network(self.MODALITY, self.HEAD, self.hparams.backbone, config, self.hparams.init_from,
                                 num_labels)
        return self.net

    def build_vocab_net(self, vocab_size: int | None) -> nn.Module:
        """`build_net` for a language model whose vocabulary is the tokenizer's (`vocab_size`,
        linked from the data): from scratch the embedding gets that many rows; a checkpoint given
        as `init_from` must have that vocabulary (else a ConfigError)."""
        init_from = self.hparams.init_from
        config = dict(self.hparams.backbone_config or {})
        if vocab_size is not None and init_from is None:
            if config.get("vocab_size", vocab_size) != vocab_size:
                raise ConfigError(f"model.backbone_config.vocab_size is {config['vocab_size']} but the tokenizer has "
                                  f"{vocab_size} tokens; drop backbone_config.vocab_size (it comes from the data)")
            config["vocab_size"] = vocab_size
        net = self.build_net(backbone_config=config)
        if vocab_size is not None and net.config.vocab_size != vocab_size:
            raise ConfigError(
                f"model.init_from {init_from} has a vocabulary of {net.config.vocab_size} tokens but the "
                f"tokenizer (data.tokenizer) has {vocab_size}; use the checkpoint's own tokenizer "
                f"(data.tokenizer: {init_from})"
            )
        return net

    # -- steps and logging ----------------------------------------------------------------
    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        """The loss of `batch` ("train", "val" or "test"), its metrics updated and logged."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self.step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.step(batch, "test")

    def stage_metrics(self, metrics: dict[str, Metric], stages: tuple[str, ...] = STAGES) -> None:
        """`self.metrics`: a copy of `metrics` per stage, logged as "<stage>/<name>" by `log_metrics`."""
        # compute_groups=False: grouping shares state between metrics whose states merely look equal
        collection = MetricCollection(metrics, compute_groups=False)
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the "_metrics" suffix
        self.metrics = nn.ModuleDict({f"{s}_metrics": collection.clone(prefix=f"{s}/") for s in stages})

    def log_loss(self, stage: str, loss: torch.Tensor, weight: int) -> None:
        """train/loss per step and epoch; val/test loss per epoch, weighted by `weight` (samples,
        words...) so that the epoch value is exact under DDP."""
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=weight)
        else:
            self.losses[stage].update(loss.detach(), weight=weight)
            self.log(f"{stage}/loss", self.losses[stage], on_step=False, on_epoch=True, prog_bar=True)

    def log_metrics(self, stage: str, weight: int, *inputs: Any) -> None:
        """Update the stage's metrics with `inputs` (predictions, targets) and log them per epoch."""
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(*inputs)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=weight)

    def start_epoch(self, stage: str) -> None:
        """Called as a val/test epoch starts (e.g. to clear the samples kept for figures)."""

    def end_epoch(self, stage: str) -> None:
        """Called as a train/val/test epoch ends (e.g. to log metrics computed over the epoch)."""

    def on_validation_epoch_start(self) -> None:
        self.start_epoch("val")

    def on_test_epoch_start(self) -> None:
        self.start_epoch("test")

    def on_train_epoch_end(self) -> None:
        self.end_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.end_epoch("test")

    # -- the data --------------------------------------------------------------------------
    def attached_data(self) -> Any | None:
        """The trainer's DataModule, None without one."""
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def setup(self, stage: str) -> None:
        """Check that the attached data fits the network before the first batch."""
        data = self.attached_data()
        if data is not None:
            self.check_data(data)

    def check_data(self, data: Any) -> None:
        """A ConfigError when `data` cannot feed the network: for text, the tokenizer's ids and the
        longest sequence."""
        tokenizer = getattr(data, "tokenizer", None)
        config = self.net.config
        if tokenizer is None or not hasattr(config, "vocab_size"):
            return
        if tokenizer.vocab_size > config.vocab_size:
            raise ConfigError(f"the tokenizer {tokenizer.source} has {tokenizer.vocab_size} tokens but the model's "
                              f"vocab_size is {config.vocab_size}; use the checkpoint's own tokenizer or set "
                              "model.backbone_config.vocab_size")
        positions = getattr(self.net, "context_length", None) or getattr(config, "max_position_embeddings", None)
        if positions is not None and data.max_length > positions:
            raise ConfigError(f"data.max_length is {data.max_length} but the model has {positions} positions; "
                              "lower data.max_length")

    def data_preprocessor(self) -> dict[str, Any] | None:
        """The attached DataModule's HF `preprocessor_config.json` dict (image and audio data
        describe their resizing / sampling rate and normalisation), or None without one."""
        data = self.attached_data()
        return data.preprocessor_config() if hasattr(data, "preprocessor_config") else None

    # -- the optimiser ---------------------------------------------------------------------
    def layer_depth(self, name: str) -> tuple[int, int]:
        """(depth of parameter `name`, depth of the head) for layer-wise lr decay: the base model's
        `layer_index` under the network's base model, the head's depth for everything else."""
        family = zoo.REGISTRY[zoo.head_of(self.net)[0]]
        attr, base = zoo.registry.base_of(self.net, family)
        deepest = base.num_layers + 1
        name = name.removeprefix("net.")
        if attr and not name.startswith(attr + "."):
            return deepest, deepest
        return base.layer_index(name.removeprefix(attr + ".") if attr else name), deepest

    def layer_scale(self, name: str) -> float:
        """lr multiplier of parameter `name`."""
        if self.layer_decay is None:
            return 1.0
        depth, deepest = self.layer_depth(name)
        return self.layer_decay ** (deepest - depth)

    def configure_optimizers(self) -> dict[str, Any]:
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            decay = 0.0 if no_weight_decay(name, param) else self.weight_decay
            groups.setdefault((decay, self.layer_scale(name)), []).append(param)
        param_groups = [
            {"params": params, "weight_decay": decay, "lr": self.lr * scale}
            for (decay, scale), params in groups.items()
        ]
        optimizer = torch.optim.AdamW(param_groups, lr=self.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = warmup_cosine(int(self.warmup_fraction * total), total, self.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- reports and checkpoints -----------------------------------------------------------
    def figures(self, stage: str) -> dict[str, Any]:
        """matplotlib figures describing the last `stage` epoch, by name (logged and saved)."""
        return {}

    def spec(self) -> dict[str, Any]:
        """The architecture as plain data (`zoo.spec`), stored in checkpoints and compared on loading."""
        return zoo.spec(self.net)

    def task_metadata(self) -> dict[str, Any]:
        """What the task adds to its checkpoints (label names, decoding settings...)."""
        return {}

    def export_metadata(self) -> dict[str, Any]:
        """What `lit_tasks export` needs besides the weights (stored in every checkpoint): the
        spec, the data's preprocessor config and tokenizer files, and the task's own entries."""
        meta: dict[str, Any] = {"spec": self.spec(), "preprocessor": self.data_preprocessor()}
        tokenizer = getattr(self.attached_data(), "tokenizer", None)
        if tokenizer is not None:
            meta["tokenizer_files"] = tokenizer.files()
        return {**meta, **self.task_metadata()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lit_tasks"] = {"task": type(self).__qualname__, **self.export_metadata()}

    def check_checkpoint(self, meta: dict[str, Any]) -> None:
        """A CheckpointError when the checkpoint's task entries (`meta`) do not fit this task;
        called once its architecture matched."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("lit_tasks")
        if not isinstance(meta, dict) or "spec" not in meta:
            raise CheckpointError("the checkpoint was not written by lit_tasks (no 'lit_tasks' entry with a spec)")
        saved, ours = meta["spec"], self.spec()
        if saved == ours:
            self.check_checkpoint(meta)
            return
        message = f"the checkpoint holds {describe(saved)}, but the config builds {describe(ours)}"
        if describe(saved) == describe(ours):
            theirs, mine = saved.get("config", {}), ours["config"]
            differ = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            message += f" of another size (config.json fields {differ} differ)"
        raise CheckpointError(message + "; use the config the checkpoint was trained with")
