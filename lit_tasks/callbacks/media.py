"""Task figures (confusion matrix, sample predictions) to wandb and to PNG files; audio
samples with their transcripts to wandb; generated text samples and predictions to wandb and files."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from lit_tasks import plots


class FigureLogger(Callback):
    """After each validation and test epoch, send the task's `figures(stage)` to wandb, and
    its `audio_samples(stage)` (when it has that hook) as a wandb table with audio players, and
    its `text_samples(stage)` (prompts and their continuations) as a wandb table and appended to
    `<stage>_samples.txt` in the run folder, under the epoch and step, and its
    `text_predictions(stage)` (one dict of strings per evaluated row) as a wandb table and
    `<stage>_predictions.jsonl` (the last epoch's).

    The figures of the last validation (during fit) and of the test are also written
    next to results.json as `<name>.png` (val) and `test_<name>.png` (test).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def _emit(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not hasattr(pl_module, "figures"):
            return
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for name, fig in pl_module.figures(stage).items():
            for logger in wandb_loggers:
                logger.log_image(key=f"{stage}/{name}", images=[fig], step=trainer.global_step)
            prefix = "" if stage == "val" else f"{stage}_"
            plots.save(fig, self.run_dir / f"{prefix}{name}.png")
        samples = pl_module.audio_samples(stage) if hasattr(pl_module, "audio_samples") else []
        if samples and wandb_loggers:
            self._log_audio(wandb_loggers, f"{stage}/samples", samples, trainer.global_step)
        texts = pl_module.text_samples(stage) if hasattr(pl_module, "text_samples") else []
        if texts:
            self._write_texts(wandb_loggers, stage, texts, trainer)
        rows = pl_module.text_predictions(stage) if hasattr(pl_module, "text_predictions") else []
        if rows:
            self._write_predictions(wandb_loggers, stage, rows, trainer.global_step)

    def _write_texts(self, loggers: list[WandbLogger], stage: str, samples: list[dict], trainer: L.Trainer) -> None:
        """{"prompt", "continuation"} dicts to a wandb table and to `<stage>_samples.txt`."""
        for logger in loggers:
            logger.log_table(key=f"{stage}/samples", columns=["prompt", "continuation"],
                             data=[[s["prompt"], s["continuation"]] for s in samples], step=trainer.global_step)
        lines = [f"=== {stage}, epoch {trainer.current_epoch}, step {trainer.global_step}"]
        for s in samples:
            lines += [f"--- prompt: {s['prompt']!r}", s["prompt"] + s["continuation"]]
        with open(self.run_dir / f"{stage}_samples.txt", "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n\n")

    def _write_predictions(self, loggers: list[WandbLogger], stage: str, rows: list[dict], step: int) -> None:
        """The epoch's generated texts (dicts of strings) to a wandb table and `<stage>_predictions.jsonl`
        (rewritten: the last epoch's)."""
        columns = list(rows[0])
        for logger in loggers:
            logger.log_table(key=f"{stage}/predictions", columns=columns, data=[[r[c] for c in columns] for r in rows],
                             step=step)
        with open(self.run_dir / f"{stage}_predictions.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    @staticmethod
    def _log_audio(loggers: list[WandbLogger], key: str, samples: list[dict], step: int) -> None:
        """A wandb table: path, audio player, reference and predicted transcript per clip
        (`audio_samples(stage)` of the task: dicts with those keys and "sampling_rate")."""
        import wandb

        columns = ["path", "audio", "reference", "prediction"]
        rows = [[s["path"], wandb.Audio(s["audio"], sample_rate=s["sampling_rate"]), s["reference"], s["prediction"]]
                for s in samples]
        for logger in loggers:
            logger.log_table(key=key, columns=columns, data=rows, step=step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, "test")
