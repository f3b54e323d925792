"""Figures for people who never open wandb: learning curves, confusion matrices, samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(history: Sequence[dict[str, float]]) -> Figure:
    """One panel per metric name (loss, acc, ...), a line per stage, against the epoch.

    `history` holds one dict per epoch: {"epoch": 0, "train/loss": ..., "val/acc": ...}.
    """
    names = sorted({k.split("/", 1)[1] for row in history for k in row if "/" in k and not k.endswith("_step")})
    names = [n.removesuffix("_epoch") for n in names]
    names = sorted(set(names))
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for stage in ("train", "val"):
            points = [
                (row["epoch"], row[key])
                for row in history
                for key in (f"{stage}/{name}", f"{stage}/{name}_epoch")
                if key in row
            ]
            if points:
                ax.plot(*zip(*points), marker="o", label=stage)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: torch.Tensor, label_names: Sequence[str]) -> Figure:
    """Counts (rows: true label, columns: predicted), each row also shown as a share."""
    counts = matrix.cpu().numpy().astype(np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.5 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(label_names))
    ax.set_xticks(ticks, label_names, rotation=60, ha="right")
    ax.set_yticks(ticks, label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(label_names) <= 30:
        for i in ticks:
            for j in ticks:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def prediction_grid(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, label_names: Sequence[str]) -> Figure:
    """A grid of (normalised) input images titled with true and predicted label."""
    n = images.shape[0]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, pred in zip(axes.flat, images, labels.tolist(), preds.tolist()):
        pixels = image.float().permute(1, 2, 0).numpy()
        pixels = (pixels - pixels.min()) / max(float(pixels.max() - pixels.min()), 1e-8)
        ax.imshow(pixels)
        ok = label == pred
        ax.set_title(f"{label_names[label]}\n→ {label_names[pred]}", fontsize=7, color="green" if ok else "red")
    fig.tight_layout()
    return fig


BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
               "#800000", "#469990")


def box_colour(label: int) -> str:
    """A distinct colour per label (cycling through BOX_COLOURS)."""
    return BOX_COLOURS[int(label) % len(BOX_COLOURS)]


def detection_grid(samples: Sequence[dict], label_names: Sequence[str]) -> Figure:
    """Images with their predicted boxes (solid, labelled with class and score) and true boxes
    (dashed white). `samples`: dicts with "image" (3, H, W) normalised pixels, "boxes" (K, 4)
    xyxy in its pixels, "labels", "scores", "true_boxes", "true_labels"."""
    n = len(samples)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, sample in zip(axes.flat, samples):
        pixels = sample["image"].float().permute(1, 2, 0).numpy()
        pixels = (pixels - pixels.min()) / max(float(pixels.max() - pixels.min()), 1e-8)
        ax.imshow(pixels)
        for (x1, y1, x2, y2) in sample["true_boxes"].tolist():
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linestyle="--",
                                       linewidth=1))
        for (x1, y1, x2, y2), label, score in zip(sample["boxes"].tolist(), sample["labels"].tolist(),
                                                  sample["scores"].tolist()):
            colour = box_colour(label)
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
            ax.text(x1, y1, f"{label_names[label]} {score:.2f}", fontsize=6, color="white",
                    bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> None:
    fig.savefig(path, dpi=100)
    plt.close(fig)
