"""PNG plots: confusion matrix, training curves, R@K bars (matplotlib, Agg backend)."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm, labels, path, title):
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(csv_paths, path):
    """Loss / accuracy / val R@1 curves from Keras `CSVLogger` files (stages concatenated; a
    metric one stage does not log, e.g. stage 2's val R@1, is drawn where it exists)."""
    rows = []
    for p in csv_paths:
        if Path(p).exists():
            with open(p) as f:
                rows += list(csv.DictReader(f))
    if not rows:
        return None
    # A classification-only model logs `acc` (Keras names a metric by its output only when there are several).
    panels = {"loss": [], "classification accuracy": [], "val text->video R@1 (%)": []}
    for key in ("loss", "val_loss", "logits_acc", "val_logits_acc", "acc", "val_acc", "val_t2v_r1"):
        points = [(epoch, float(r[key])) for epoch, r in enumerate(rows, 1) if r.get(key) not in (None, "")]
        title = "loss" if "loss" in key else "classification accuracy" if "acc" in key else "val text->video R@1 (%)"
        if points:
            panels[title].append((key, points))
    panels = {title: curves for title, curves in panels.items() if curves}  # only what the run logged
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(1 + 4 * len(panels), 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        for key, points in curves:
            ax.plot(*zip(*points, strict=True), label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_recall(results, path):
    """Grouped bars of R@1/5/10 per split and direction."""
    groups = [(f"{split}\n{d.replace('_to_', '->').replace('text', 't').replace('video', 'v')}", m)
              for split, r in results.items() for d, m in r.items()]  # fmt: skip
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups), 3.6))
    width = 0.25
    for i, k in enumerate(("R@1", "R@5", "R@10")):
        ax.bar(np.arange(len(groups)) + (i - 1) * width, [m[k] for _, m in groups], width, label=k)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
