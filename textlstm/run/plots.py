"""The plots of a run, as PNG files (matplotlib, no display): learning curves from its
``metrics.jsonl``, the confusion matrix in counts and row-normalised, and a reliability diagram
with its expected calibration error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textlstm.files import atomic_path
from textlstm.run.metrics import Report

CALIBRATION_BINS = 10


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Sequence[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """Training and validation loss, and the validation metric, per epoch; the best epoch
    (the weights kept) marked."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [row["train_loss"] for row in history], "o-", label="training")
    left.plot(epochs, [row["validation_loss"] for row in history], "o-", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    left.legend()
    # micro-F1 is left empty for single-label runs, where it equals accuracy
    values = [100 * float(v if (v := row.get(metric)) is not None else row["accuracy"])
              for row in history]  # fmt: skip
    right.plot(epochs, values, "o-", color="tab:green", label=f"validation {metric}")
    best = [row["epoch"] for row in history if row.get("best")]
    if best:
        chosen = best[-1]
        right.axvline(chosen, color="grey", linestyle=":", label=f"kept: epoch {chosen}")
    right.set(xlabel="epoch", ylabel=f"{metric} (%)", title=f"validation {metric}")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, plt)


def confusion(result: Report, path: Path, title: str) -> None:
    """The confusion matrix twice: counts, and each true label's row as shares."""
    plt = _pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    counts = np.asarray(result.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.8 * len(result.labels) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, matrix, name, fmt in (
        (axes[0], counts, "counts", "d"),
        (axes[1], shares, "share of each true label", ".2f"),
    ):
        ConfusionMatrixDisplay(matrix, display_labels=result.labels).plot(
            ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format=fmt
        )
        ax.set_title(name)
    fig.suptitle(f"{title}  (accuracy {result.accuracy:.2%})")
    fig.tight_layout()
    _save(fig, path, plt)


def label_scores(result: Report, path: Path, title: str) -> None:
    """A multi-label report: each label's precision, recall and F1, with its support."""
    plt = _pyplot()
    rows = result.per_class
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(rows) + 1.2)))
    y = np.arange(len(rows))
    for offset, name in ((-0.27, "precision"), (0.0, "recall"), (0.27, "f1")):
        ax.barh(y + offset, [getattr(r, name) for r in rows], height=0.27, label=name)
    ax.set_yticks(y, [f"{r.label} ({r.support})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="score")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(
        f"{title}  (micro-F1 {result.metric('micro_f1'):.3f}, macro-F1 {result.macro_f1:.3f})"
    )
    fig.tight_layout()
    _save(fig, path, plt)


@dataclass
class Calibration:
    ece: float  # expected calibration error: the bins' |accuracy - confidence|, by their size
    bins: list[dict[str, float]]  # per confidence bin: lower, upper, count, confidence, accuracy


def calibration(probabilities: np.ndarray, truth: np.ndarray) -> Calibration:
    """Confidence (the top probability) against accuracy, in equal-width bins (Guo et al.
    2017's reliability diagram and expected calibration error). For multi-label truth (rows,
    labels), every label's score of every row against whether the row has that label."""
    if truth.ndim == 2:
        confidence, correct = probabilities.ravel(), truth.ravel() > 0
    else:
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        inside = which == b
        count = int(inside.sum())
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += count / len(confidence) * abs(acc - conf)
            bins.append(
                {"lower": edges[b], "upper": edges[b + 1], "count": count,
                 "confidence": conf, "accuracy": acc}
            )  # fmt: skip
    return Calibration(float(ece), bins)


def reliability(result: Calibration, path: Path, title: str) -> None:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for row in result.bins:
        ax.bar(
            row["lower"], row["accuracy"], width=row["upper"] - row["lower"], align="edge",
            edgecolor="black", color="tab:blue", alpha=0.7,
        )  # fmt: skip
    ax.plot(
        [r["confidence"] for r in result.bins], [r["accuracy"] for r in result.bins], "o",
        color="tab:red", label="each bin: mean confidence, accuracy",
    )  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(f"{title}\nexpected calibration error {result.ece:.3f}")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
