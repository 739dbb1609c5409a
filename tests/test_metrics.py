"""A split's scores: accuracy, macro-F1 over every class the model knows, per-class precision,
recall and support, and the confusion matrix with true labels as rows."""

import numpy as np
import pytest

from textlstm.run.metrics import quick_scores, report


def test_the_report_of_a_small_confusion_by_hand():
    truth = np.array([0, 0, 0, 1, 1, 2])
    guess = np.array([0, 0, 1, 1, 0, 1])  # class 2 is never predicted
    rep = report(truth, guess, ["a", "b", "c"], loss=0.5)
    assert rep.rows == 6 and rep.loss == 0.5 and rep.labels == ["a", "b", "c"]
    assert rep.accuracy == pytest.approx(3 / 6)
    assert rep.confusion == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    a, b, c = rep.per_class
    assert (a.precision, a.recall, a.support) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert (b.precision, b.recall, b.support) == (pytest.approx(1 / 3), pytest.approx(1 / 2), 2)
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 1)
    assert rep.macro_f1 == pytest.approx((2 / 3 + 0.4 + 0.0) / 3)
    assert rep.metric("accuracy") == rep.accuracy and rep.metric("macro_f1") == rep.macro_f1
    assert rep.to_dict()["per_class"][2] == {
        "label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1
    }  # fmt: skip


def test_macro_f1_counts_a_known_class_that_this_split_lacks():
    """A class absent from the rows still counts (its F1 is 0), as the model can predict it."""
    truth = guess = np.array([0, 1, 0, 1])
    assert quick_scores(truth, guess, 2) == (1.0, 1.0)
    assert quick_scores(truth, guess, 3) == (1.0, pytest.approx(2 / 3))
