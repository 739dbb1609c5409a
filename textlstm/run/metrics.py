"""Classification metrics, computed by scikit-learn."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


@dataclass
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Report:
    accuracy: float
    macro_f1: float
    loss: float | None
    rows: int
    per_class: list[ClassScore] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # rows: true label, columns: predicted
    labels: list[str] = field(default_factory=list)
    # multi-label: ``accuracy`` is the share of rows whose whole label set is right (subset
    # accuracy), F1 counts every (row, label) decision; there is no confusion matrix
    multi_label: bool = False
    micro_f1: float | None = None

    def metric(self, name: str) -> float:
        micro = self.accuracy if self.micro_f1 is None else self.micro_f1  # equal for one label
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "micro_f1": micro}[name]

    def to_dict(self) -> dict:
        return asdict(self)


def quick_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (over every class the model knows)."""
    classes = list(range(num_classes))
    return (
        float(accuracy_score(y_true, y_pred)),
        float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
    )


def multi_scores(truth: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
    """Subset accuracy, macro-F1 (each label's F1, averaged) and micro-F1 (every decision
    pooled) of (rows, labels) boolean matrices."""
    tp = (truth & chosen).sum(axis=0).astype(np.float64)
    predicted, actual = chosen.sum(axis=0), truth.sum(axis=0)
    denominator = predicted + actual
    per_label = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    pooled = predicted.sum() + actual.sum()
    return {
        "accuracy": float((truth == chosen).all(axis=1).mean()),
        "macro_f1": float(per_label.mean()),
        "micro_f1": float(2 * tp.sum() / pooled) if pooled else 0.0,
    }


def multi_report(
    truth: np.ndarray, chosen: np.ndarray, labels: list[str], loss: float | None = None
) -> Report:
    """The report of multi-label decisions: (rows, labels) boolean matrices."""
    scores = multi_scores(truth, chosen)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, chosen, average=None, zero_division=0
    )
    per_class = [
        ClassScore(name, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, name in enumerate(labels)
    ]
    return Report(
        scores["accuracy"],
        scores["macro_f1"],
        loss,
        len(truth),
        per_class,
        [],
        list(labels),
        multi_label=True,
        micro_f1=scores["micro_f1"],
    )


def report(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], loss: float | None = None
) -> Report:
    classes = list(range(len(labels)))
    accuracy, macro_f1 = quick_scores(y_true, y_pred, len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = [
        ClassScore(labels[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i in classes
    ]
    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    return Report(
        accuracy,
        macro_f1,
        loss,
        len(y_true),
        per_class,
        matrix.astype(int).tolist(),
        list(labels),
    )
