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

    def metric(self, name: str) -> float:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}[name]

    def to_dict(self) -> dict:
        return asdict(self)


def quick_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (over every class the model knows)."""
    classes = list(range(num_classes))
    return (
        float(accuracy_score(y_true, y_pred)),
        float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
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
