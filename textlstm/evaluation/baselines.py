"""Bag-of-words baselines fitted with scikit-learn, to show whether an LSTM earns its cost.

- TF-IDF + LR: ``TfidfVectorizer`` (1-2 grams, min_df 2, sublinear tf) and
  ``LogisticRegression``, C picked from :data:`BASELINE_C_GRID` on the validation texts;
- NBSVM (Wang & Manning 2012): binarized 1-2 gram counts scaled by the naive Bayes log-count
  ratio (alpha 1), then logistic regression (the NB-LR form of Mesnil et al. 2015); one model per
  class against the rest for more than two classes; C picked on the validation texts.

Both fit on the training texts only; the validation texts pick C and nothing else. Text written
without spaces between words (``analyzer="char"``: Chinese, Japanese) is read as character 1-3
grams instead, since a word pattern would make each clause between punctuation one feature.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from textlstm.model.naive_bayes import nb_ratio

# the baselines' inverse L2 strengths, the validation split picking one (model.wide has its own)
BASELINE_C_GRID = (1.0, 4.0, 16.0, 64.0)
TFIDF_LR = "TF-IDF 1-2 grams + LR"
NBSVM = "NBSVM 1-2 grams"
# how each analyzer reads a text: scikit-learn's word pattern and 1-2 grams, or characters 1-3
ANALYZERS = {"word": {"ngram_range": (1, 2)}, "char": {"analyzer": "char", "ngram_range": (1, 3)}}
SPACELESS_KINDS = ("char", "jieba")  # the tokenizer kinds of text without spaces between words


def analyzer_for(kind: str) -> str:
    """The analyzer for a recipe's ``tokenizer.kind``."""
    return "char" if kind in SPACELESS_KINDS else "word"


def method_name(method: str, analyzer: str) -> str:
    return method if analyzer == "word" else method.replace("1-2 grams", "characters 1-3")


@dataclass
class Fitted:
    """A fitted baseline: ``predict`` maps texts to class indices."""

    method: str
    predict: Callable[[Sequence[str]], np.ndarray]
    c: float
    features: int
    train_rows: int
    seconds: float  # fitting, the choice of C included

    @property
    def note(self) -> str:
        return f"C={self.c:g}, {self.features:,} features"


def _pick_c(score: Callable[[float], float], validation: bool) -> float:
    if not validation:
        return 4.0  # no texts to choose on: the middle of the grid
    return max(BASELINE_C_GRID, key=score)


def fit_tfidf_lr(
    texts: Sequence[str],
    labels: np.ndarray,
    val_texts: Sequence[str] = (),
    val_labels: np.ndarray | None = None,
    analyzer: str = "word",
) -> Fitted:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True, **ANALYZERS[analyzer])  # type: ignore[arg-type]
    train = vec.fit_transform(texts)
    val = vec.transform(val_texts) if len(val_texts) else None

    def model(c: float) -> Any:
        return LogisticRegression(C=c, max_iter=2000).fit(train, labels)

    best = _pick_c(lambda c: float((model(c).predict(val) == val_labels).mean()), val is not None)
    fitted = model(best)
    return Fitted(
        method_name(TFIDF_LR, analyzer),
        lambda xs: fitted.predict(vec.transform(xs)),
        best,
        train.shape[1],
        len(texts),
        time.perf_counter() - start,
    )


def fit_nbsvm(
    texts: Sequence[str],
    labels: np.ndarray,
    val_texts: Sequence[str] = (),
    val_labels: np.ndarray | None = None,
    analyzer: str = "word",
) -> Fitted:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vec = CountVectorizer(min_df=2, binary=True, **ANALYZERS[analyzer])  # type: ignore[arg-type]
    train = vec.fit_transform(texts)
    classes = np.unique(labels)

    def fit_one(c: float, target: np.ndarray) -> tuple[np.ndarray, Any]:
        r = nb_ratio(train, target if target.dtype == bool else target == classes[1])
        return r, LogisticRegression(C=c, max_iter=2000).fit(train.multiply(r).tocsr(), target)

    def models(c: float) -> list[tuple[np.ndarray, Any]]:
        if len(classes) == 2:
            return [fit_one(c, labels)]
        return [fit_one(c, labels == k) for k in classes]  # one against the rest, own ratios

    def predict(fits: list[tuple[np.ndarray, Any]], xs: Sequence[str]) -> np.ndarray:
        counts = vec.transform(xs)
        if len(fits) == 1:
            r, model = fits[0]
            return np.asarray(model.predict(counts.multiply(r).tocsr()))
        margins = [model.decision_function(counts.multiply(r).tocsr()) for r, model in fits]
        return np.asarray(classes[np.argmax(np.stack(margins), axis=0)])

    def score(c: float) -> float:
        return float((predict(models(c), val_texts) == val_labels).mean())

    best = _pick_c(score, len(val_texts) > 0)
    fitted = models(best)
    return Fitted(
        method_name(NBSVM, analyzer),
        lambda xs: predict(fitted, xs),
        best,
        train.shape[1],
        len(texts),
        time.perf_counter() - start,
    )


def fit_one_vs_rest(
    texts: Sequence[str],
    labels: np.ndarray,
    val_texts: Sequence[str],
    val_labels: np.ndarray | None,
    analyzer: str = "word",
) -> Fitted:
    """Multi-label TF-IDF + LR: one logistic regression per label (its rows against the rest),
    each label's threshold the one with the best F1 on the validation texts, and C the grid's
    value with the best macro-F1 there. ``labels`` are (rows, labels) 0/1; ``predict`` returns
    (rows, labels) booleans."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from textlstm.run.decision import best_f1_threshold
    from textlstm.run.metrics import multi_scores

    if val_labels is None:
        raise ValueError("the thresholds need a validation split")
    start = time.perf_counter()
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True, **ANALYZERS[analyzer])  # type: ignore[arg-type]
    train, val = vec.fit_transform(texts), vec.transform(val_texts)
    truth = val_labels.astype(bool)

    def model(c: float) -> tuple[Any, np.ndarray]:
        fitted = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear")).fit(
            train, labels.astype(int)
        )
        scores = fitted.predict_proba(val)
        cut = np.array([best_f1_threshold(scores[:, j], truth[:, j]) for j in range(len(cut_of))])
        return fitted, cut

    cut_of = range(labels.shape[1])
    fits = {c: model(c) for c in BASELINE_C_GRID}

    def macro(c: float) -> float:
        fitted, cut = fits[c]
        return multi_scores(truth, fitted.predict_proba(val) >= cut)["macro_f1"]

    best = max(BASELINE_C_GRID, key=macro)
    chosen, thresholds = fits[best]
    return Fitted(
        method_name("one-vs-rest " + TFIDF_LR, analyzer),
        lambda xs: chosen.predict_proba(vec.transform(xs)) >= thresholds,
        best,
        train.shape[1],
        len(texts),
        time.perf_counter() - start,
    )


BASELINES = {TFIDF_LR: fit_tfidf_lr, NBSVM: fit_nbsvm}
