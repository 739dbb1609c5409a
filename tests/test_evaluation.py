"""`evaluate` from the library: a run scored on its own test split, the numbers agreeing with
its predictions, the report files written beside the run."""

import json
import shutil

import numpy as np
import pytest

from textlstm.evaluation.evaluate import evaluate
from textlstm.predict.predictor import Predictor


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy: evaluation writes its reports into the run folder."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_the_scores_are_those_of_the_runs_own_predictions(run):
    result = evaluate(run, "test", device="cpu")
    rep = result.report
    assert result.name == "test" and rep.rows == len(result.texts) == len(result.truth) > 0
    predicted = [p.label for p in Predictor.load(run, device="cpu").predict(result.texts)]
    truth = [rep.labels[i] for i in result.truth]
    assert rep.accuracy == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert sum(map(sum, rep.confusion)) == rep.rows
    saved = json.loads(result.json_path.read_text())
    assert saved["accuracy"] == rep.accuracy and saved["evaluated_on"] == "test"
    assert result.plot_path.is_file()


def test_a_split_the_run_lacks_is_one_line(run):
    from textlstm.errors import TextLSTMError

    with pytest.raises(TextLSTMError) as info:
        evaluate(run, "nosuch", device="cpu")
    assert len(info.value.lines) == 1 and "nosuch" in info.value.lines[0]
