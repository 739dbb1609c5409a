"""Explanations: integrated-gradient token scores that add up to the logit's distance from the
baseline (completeness) in every kind of model, that point at the words a decision rests on
(removing the strongest one moves the probability), and the command's three views."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.explain import Explainer
from textlstm.predict.predictor import Predictor
from textlstm.recipe import load_recipe
from textlstm.training import train

from conftest import write_label_folders, write_recipe

runner = CliRunner()
TEXTS = [
    "the film was great and the plot was lovely",
    "a boring , dull story and the actor was awful",
    "the movie",
    "",
]


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    """A model that has learned the corpus' sentiment words: attention pooling, a bigram bag
    and a linear model beside it, so that every part has its share to explain."""
    root = tmp_path_factory.mktemp("explain")
    corpus = write_label_folders(root / "corpus")
    path = write_recipe(root / "r.toml", corpus)
    text = path.read_text().replace(
        "[model]\n", '[model]\npooling = "attention"\nngrams = 2\nwide = "nblr"\n'
    )
    path.write_text(text.replace("epochs = 3", "epochs = 5"))
    return train(load_recipe(path), root / "runs", device="cpu").run_dir


def _complete(e, tolerance=0.01):
    gap = e.logit - e.baseline_logit
    assert sum(e.scores) == pytest.approx(gap, abs=tolerance * abs(gap) + 1e-3), e
    assert e.delta == pytest.approx(sum(e.scores) - gap, abs=1e-6)
    assert abs(e.delta) <= tolerance * abs(gap) + 1e-3


def test_scores_add_up_to_the_logit_gap_in_a_plain_model(trained_run):
    explanations = Explainer.load(trained_run).explain(TEXTS)
    for e in explanations:
        assert len(e.tokens) == len(e.scores) >= 1
        assert e.parts == {} and e.attention is None
        _complete(e)
    assert explanations[0].tokens[:3] == ["the", "film", "was"]
    assert explanations[3].tokens == ["<unk>"]  # an empty text is one unknown token


def test_scores_add_up_with_a_bag_a_linear_model_and_attention(sentiment_run):
    explainer = Explainer.load(sentiment_run)
    for label in (None, "neg", "pos"):
        for e in explainer.explain(TEXTS, label):
            _complete(e)
            assert set(e.parts) == {"network", "n-gram bag", "linear model"}
            assert sum(e.parts.values()) == pytest.approx(sum(e.scores), abs=1e-6)
            if e.text in TEXTS[:2]:  # each part has its say on words it knows
                assert all(abs(v) > 0.01 for v in e.parts.values()), e.parts
            assert e.attention is not None and len(e.attention) == len(e.tokens)
            assert sum(e.attention) == pytest.approx(1.0, abs=1e-5)
            if label is not None:
                assert e.label == label
    probs = Predictor.load(sentiment_run, precision="fp32").probabilities(TEXTS)
    for e, row in zip(explainer.explain(TEXTS), probs):
        assert e.probability == pytest.approx(float(row.max()), abs=1e-5)


def test_the_completeness_error_is_the_integral_s_and_shrinks_with_steps(sentiment_run):
    coarse = Explainer.load(sentiment_run, steps=1).explain(TEXTS[:2])
    fine = Explainer.load(sentiment_run, steps=64).explain(TEXTS[:2])
    for a, b in zip(coarse, fine):
        assert a.logit == b.logit and a.baseline_logit == b.baseline_logit
        assert abs(b.delta) < abs(a.delta), (a.delta, b.delta)


def test_removing_the_strongest_token_lowers_the_probability(sentiment_run):
    explainer = Explainer.load(sentiment_run)
    predictor = Predictor.load(sentiment_run, precision="fp32")

    for text, label in ((TEXTS[0], "pos"), (TEXTS[1], "neg")):
        (e,) = explainer.explain([text], label)
        assert e.predicted == label and e.probability > 0.8, e
        column = explainer.labels.index(label)
        kept = [" ".join(t for j, t in enumerate(e.tokens) if j != i) for i in range(len(e.tokens))]
        p = predictor.probabilities([text, *kept])[:, column].astype(np.float64)
        odds = np.log(p) - np.log1p(-p)
        drops = odds[0] - odds[1:]  # what removing each token takes off the label's log-odds
        best = int(np.argmax(e.scores))
        assert e.tokens[best] in {"great", "lovely", "boring", "dull", "awful"}, e.strongest(3)
        assert drops[best] > 0.5, (e.tokens[best], drops)  # its probability falls
        assert drops[best] > np.median(drops) + 0.5, (e.tokens[best], drops)


def test_an_unknown_label_is_one_line(trained_run):
    result = runner.invoke(app, ["explain", str(trained_run), "a film", "--label", "happy"])
    assert result.exit_code == 2
    assert "label 'happy': the model's labels are neg, pos; give one of them" in result.output
    assert "Traceback" not in result.output


def test_explain_command_views(trained_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the plot was great\nan awful film\n", encoding="utf-8")
    page = tmp_path / "why.html"
    result = runner.invoke(
        app, ["explain", str(trained_run), "--input", str(texts), "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert "completeness error" in result.output
    assert re.search(r"great\s+[+-]\d\.\d{4}", result.output), result.output
    html = page.read_text(encoding="utf-8")
    assert html.count("<section>") == 2 and 'title="' in html and ">awful</span>" in html
    assert "http" not in html.replace('lang="en"', "")  # nothing fetched from the network

    result = runner.invoke(app, ["explain", str(trained_run), "the plot was great", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert record["tokens"] == ["the", "plot", "was", "great"] and len(record["scores"]) == 4

    result = runner.invoke(app, ["explain", str(trained_run)])
    assert result.exit_code == 2 and "give texts" in result.output
