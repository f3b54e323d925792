"""Task figures (confusion matrix, sample predictions) to wandb and to PNG files; audio
samples with their transcripts to wandb; generated text samples and predictions to wandb and files;
images with boxes to wandb and a task's own result files to the run folder."""

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
    `<stage>_predictions.jsonl` (the last epoch's), and its `box_samples(stage)` (images with
    predicted and true boxes) to wandb; then the task's `write_outputs(stage, run_dir)` writes
    its own files (a detector's COCO results json).

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
        boxes = pl_module.box_samples(stage) if hasattr(pl_module, "box_samples") else []
        if boxes and wandb_loggers:
            self._log_boxes(wandb_loggers, f"{stage}/boxes", boxes, pl_module.label_names, trainer.global_step)
        if hasattr(pl_module, "write_outputs"):
            pl_module.write_outputs(stage, self.run_dir)

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

    @staticmethod
    def _log_boxes(loggers: list[WandbLogger], key: str, samples: list[dict], label_names: list[str], step: int) -> None:
        """Images with predicted and true boxes in wandb's box format (pixel positions, a class
        id, a caption and the score), one box group each (`box_samples(stage)` of the task)."""
        import wandb

        classes = dict(enumerate(label_names))

        def group(boxes, labels, scores=None) -> dict:
            data = []
            for i, ((x1, y1, x2, y2), label) in enumerate(zip(boxes.tolist(), labels.tolist())):
                box = {"position": {"minX": x1, "minY": y1, "maxX": x2, "maxY": y2}, "domain": "pixel",
                       "class_id": int(label), "box_caption": label_names[label]}
                if scores is not None:
                    box["scores"] = {"score": float(scores[i])}
                    box["box_caption"] += f" {float(scores[i]):.2f}"
                data.append(box)
            return {"box_data": data, "class_labels": classes}

        images = []
        for s in samples:
            pixels = s["image"].float().permute(1, 2, 0)
            pixels = (pixels - pixels.min()) / max(float(pixels.max() - pixels.min()), 1e-8)
            images.append(wandb.Image((pixels.numpy() * 255).astype("uint8"), boxes={
                "predictions": group(s["boxes"], s["labels"], s["scores"]),
                "ground_truth": group(s["true_boxes"], s["true_labels"])}))
        for logger in loggers:
            logger.log_image(key=key, images=images, step=step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, "test")
