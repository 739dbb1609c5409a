"""The linear baselines (TF-IDF + LR, NBSVM) that show whether an LSTM earns its cost."""

import numpy as np
import pytest

from textlstm.evaluation.baselines import (
    ANALYZERS,
    BASELINE_C_GRID,
    analyzer_for,
    fit_nbsvm,
    fit_tfidf_lr,
    method_name,
)

from conftest import make_texts


def test_the_baselines_fit_several_classes_and_pick_c_on_validation():
    import numpy as np

    from textlstm.evaluation.baselines import fit_tfidf_lr

    labels = ("neg", "pos", "neutral")
    texts = [t for k in labels for t in make_texts(k, 60, 1)]
    y = np.repeat(np.arange(3), 60)
    held = [t for k in labels for t in make_texts(k, 20, 2)]
    held_y = np.repeat(np.arange(3), 20)
    for fit in (fit_tfidf_lr, fit_nbsvm):
        fitted = fit(texts, y, held, held_y)
        assert fitted.c in BASELINE_C_GRID and fitted.train_rows == 180
        assert (fitted.predict(held) == held_y).mean() >= 0.9
        assert fit(texts, y).c == 4.0  # no validation texts: the middle of the grid


@pytest.mark.parametrize("kind", ["regex", "whitespace", "spacy", "bpe", "char", "jieba"])
def test_text_without_spaces_is_read_as_characters_and_named_so(kind):
    analyzer = analyzer_for(kind)
    assert analyzer in ANALYZERS
    assert (analyzer == "char") == (kind in ("char", "jieba"))
    assert ("character" in method_name("TF-IDF 1-2 grams + LR", analyzer)) == (analyzer == "char")


def test_character_grams_separate_chinese_sentiment_that_word_grams_cannot():
    """Without spaces a word pattern reads each clause as one feature; characters generalise."""
    good, bad = ["很好", "不错", "满意"], ["很差", "失望", "糟糕"]
    texts = [f"这个{w}的手机" for w in good for _ in range(10)]
    texts += [f"这个{w}的手机" for w in bad for _ in range(10)]
    y = np.repeat([1, 0], 30)
    held = ["房间很好", "服务很差", "非常满意", "令人失望"]
    held_y = np.array([1, 0, 1, 0])
    chars = fit_tfidf_lr(texts, y, analyzer="char")
    assert (chars.predict(held) == held_y).mean() == 1.0
