"""Calibrated scores and prediction sets: the temperature fitted on held-out rows, split conformal
sets whose coverage holds on fresh rows of the same kind, and the commands that use them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.run.decision import Decision, _softmax_nll, calibrated, fit_temperature


def draw(rng: np.random.Generator, rows: int, temperature: float) -> tuple[np.ndarray, ...]:
    """Logits of 4 classes and labels drawn from softmax(logits / temperature)."""
    logits = rng.normal(0, 3, (rows, 4))
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
    return logits, labels


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    logits, labels = draw(np.random.default_rng(0), 20_000, 2.5)
    (t,) = fit_temperature(logits, labels, multi_label=False)
    assert t == pytest.approx(2.5, rel=0.05)
    assert _softmax_nll(logits / t, labels) < _softmax_nll(logits, labels)


def test_multi_label_temperatures_are_fitted_label_by_label():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (20_000, 2))
    truth = (rng.random((20_000, 2)) < 1 / (1 + np.exp(-logits / np.array([0.5, 3.0])))) * 1.0
    fitted = fit_temperature(logits, truth, multi_label=True)
    assert fitted == pytest.approx((0.5, 3.0), rel=0.06)


@pytest.mark.parametrize("seed", range(8))
def test_split_conformal_sets_cover_fresh_rows_as_promised(seed):
    rng = np.random.default_rng(seed)
    logits, labels = draw(rng, 20_000, 1.7)  # an overconfident network: scores alone fall short
    decision = calibrated(logits, labels, multi_label=False)
    fresh, truth = draw(rng, 20_000, 1.7)
    probabilities = decision.probabilities(fresh)
    for coverage in (0.8, 0.9, 0.95):
        sets = decision.sets(probabilities, coverage)
        held = sets[np.arange(len(truth)), truth].mean()
        assert coverage - 0.015 <= held <= coverage + 0.03
        assert sets.sum(axis=1).mean() < 4  # sets shrink where the model is sure
    small, large = decision.sets(probabilities, 0.8), decision.sets(probabilities, 0.95)
    assert (large >= small).all() and large.sum() > small.sum()


def test_the_expected_range_holds_95_percent_of_draws_of_fresh_rows():
    """Sets calibrated on 60 rows, scored on 50 fresh ones, 2,000 times: the share each draw
    covers lands in ``coverage_range`` in 95 % of draws. A binomial range around 0.9 alone
    (ignoring the 60 rows' own draw) holds 90 % of them: the test tells the two apart."""
    from textlstm.evaluation.evaluate import SetScore, coverage_range
    from textlstm.run.decision import conformal_scores

    n, m, rng = 60, 50, np.random.default_rng(0)
    low, high = coverage_range(n, m, 0.9)
    assert low < 0.9 < high
    inside = 0
    for _ in range(2000):
        logits, labels = draw(rng, n + m, 1.0)
        scores = Decision().probabilities(logits)
        decision = Decision(False, (), (1.0,), conformal_scores(scores[:n], labels[:n]))
        held = decision.sets(scores[n:], 0.9)[np.arange(m), labels[n:]].mean()
        inside += low <= held <= high
    assert 0.935 <= inside / 2000 <= 0.975
    wide, narrow = coverage_range(300, 755, 0.9), coverage_range(30_000, 755, 0.9)
    assert wide[0] < narrow[0] < 0.9 < narrow[1] < wide[1]  # more validation rows, less play
    assert coverage_range(5, 100, 0.9) == (1.0, 1.0)  # beyond 5 rows: every label, every set
    score = SetScore(0.9, 0.94, 1.0, (0.864, 0.936))  # TREC-6's test split: easier than its
    assert score.expected_text().endswith("not drawn like the validation ones)")  # training rows
    assert "outside" not in replace(score, empirical=0.93).expected_text()


def test_sets_are_as_small_as_the_coverage_allows():
    decision = Decision(False, (), (1.0,), tuple(np.linspace(0.0, 0.2, 99)))  # 1 - p(true)
    probabilities = np.array([[0.95, 0.05], [0.7, 0.3], [0.5, 0.5]])
    # at 0.9 the cut is the 90th of 99 scores, 0.1816...: a label needs a score of 0.818
    assert decision.sets(probabilities, 0.9).tolist() == [[True, False], [False, False],
                                                         [False, False]]  # fmt: skip
    assert decision.sets(probabilities, 0.999).all()  # beyond what 99 scores can promise


def test_calibration_keeps_single_label_decisions():
    logits, labels = draw(np.random.default_rng(3), 500, 0.4)
    decision = calibrated(logits, labels, multi_label=False)
    assert decision.temperature[0] < 1  # labels sharper than the logits say: scores sharpen
    assert (
        decision.probabilities(logits).argmax(1) == Decision().probabilities(logits).argmax(1)
    ).all()
    assert calibrated(logits, labels, False, held_out=False) == Decision(False, (), (1.0,), ())


def test_a_run_keeps_its_temperature_and_conformal_scores(trained_run):
    decision = json.loads((trained_run / "decision.json").read_text())
    assert decision["multi_label"] is False and decision["temperature"] > 0
    scores = decision["conformal_scores"]
    assert (
        scores == sorted(scores)
        and len(scores)
        == json.loads((trained_run / "meta.json").read_text())["split_rows"]["validation"]
    )


def test_evaluate_reports_calibration_and_sets(trained_run):
    from textlstm.evaluation.evaluate import evaluate

    done = evaluate(trained_run, split="validation", device="cpu", coverage=0.8)
    assert done.sets is not None and done.sets.coverage == 0.8
    assert done.sets.empirical >= 0.8  # on the rows the scores came from, by construction
    assert done.sets.expected is None  # no draw of fresh rows to promise a range for
    assert done.calibration is not None and done.calibration["ece_after"] >= 0
    saved = json.loads(done.json_path.read_text())
    assert saved["sets"]["mean_size"] == pytest.approx(done.sets.mean_size)


def test_predict_with_a_coverage_gives_each_text_its_set(trained_run, tmp_path):
    (tmp_path / "in.txt").write_text("a great film\nawful boring plot\nthe\n")
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(trained_run),
            str(tmp_path / "in.txt"),
            "--coverage",
            "0.9",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["label"] in record["set"]
        assert record["set"] == sorted(record["set"], key=lambda n: -record["scores"][n])
