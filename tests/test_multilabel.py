"""Multi-label data: a label column of lists (or cells joined by a separator) trains a sigmoid
per label; thresholds tuned on validation decide, the same way in every command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from textlstm.cli import app
from textlstm.errors import CheckpointError, DataError, RecipeError
from textlstm.run.decision import Decision, best_f1_threshold, read, tune_thresholds
from textlstm.run.metrics import multi_scores

from conftest import write_recipe

WORDS = {
    "joy": ["great", "superb", "lovely", "wonderful"],
    "anger": ["awful", "furious", "dreadful", "terrible"],
    "music": ["guitar", "song", "drums", "melody"],
}
FILLER = ["film", "plot", "actor", "scene", "story", "the", "a", "was", "and"]


def rows(count: int, seed: int) -> list[dict]:
    """Texts carrying one or two labels, each shown by a few of its words among filler."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        labels = rng.sample(sorted(WORDS), rng.choice([1, 1, 2]))
        words = rng.choices(FILLER, k=rng.randint(4, 10))
        for label in labels:
            for _ in range(rng.randint(1, 2)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS[label]))
        out.append({"text": " ".join(words), "labels": labels})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def multi_recipe(folder: Path, extra: str = "", records: list[dict] | None = None) -> Path:
    data = write_jsonl(folder / "data.jsonl", records or rows(300, 1))
    path = write_recipe(folder / "multi.toml", data, extra)
    text = path.read_text().replace("[data]\n", '[data]\nlabel = "labels"\n')
    text = text.replace("epochs = 3", "epochs = 8")
    path.write_text(text + 'metric = "macro_f1"\n')
    return path


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from textlstm.recipe import load_recipe
    from textlstm.training import train

    root = tmp_path_factory.mktemp("multi")
    recipe = load_recipe(multi_recipe(root))
    return train(recipe, root / "runs", device="cpu").run_dir


# --- thresholds and scores ---------------------------------------------------------------------


def test_the_best_threshold_is_the_cut_with_the_best_f1():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    truth = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    t = best_f1_threshold(scores, truth)
    assert 0.3 < t < 0.6  # keeps the first four: F1 6/7, better than any other cut
    assert f1_score(truth, scores >= t) == pytest.approx(6 / 7)
    assert best_f1_threshold(scores, np.zeros(6, dtype=bool)) == 0.5  # no positives: no change


def test_ties_fall_on_one_side_of_the_threshold():
    scores = np.array([0.7, 0.5, 0.5, 0.5, 0.1])
    truth = np.array([1, 1, 0, 0, 0], dtype=bool)
    t = best_f1_threshold(scores, truth)
    assert not (scores == t).any()
    assert f1_score(truth, scores >= t) == pytest.approx(max(f1_score(truth, scores >= c)
                                                             for c in (0.7, 0.5, 0.1)))  # fmt: skip


def test_global_and_fixed_thresholds():
    rng = np.random.default_rng(0)
    truth = rng.random((200, 4)) < 0.3
    probs = np.clip(truth * 0.4 + rng.random((200, 4)) * 0.6, 0, 1)
    one = tune_thresholds(probs, truth, "global", "micro_f1")
    assert len(set(one)) == 1 and 0 < one[0] < 1
    per = tune_thresholds(probs, truth, "per_label")
    assert (
        multi_scores(truth, probs >= np.array(per))["macro_f1"]
        >= multi_scores(truth, probs >= one[0])["macro_f1"]
    )
    assert tune_thresholds(probs, truth, 0.3) == (0.3,) * 4
    best = tune_thresholds(probs, truth, "global", "micro_f1")[0]
    halfway = tune_thresholds(probs, truth, "per_label", shrink=0.5)
    assert halfway == pytest.approx([(own + best) / 2 for own in per])


def test_multi_label_scores_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth, chosen = rng.random((50, 5)) < 0.3, rng.random((50, 5)) < 0.3
    got = multi_scores(truth, chosen)
    assert got["micro_f1"] == pytest.approx(f1_score(truth, chosen, average="micro"))
    assert got["macro_f1"] == pytest.approx(
        f1_score(truth, chosen, average="macro", zero_division=0)
    )
    assert got["accuracy"] == pytest.approx((truth == chosen).all(axis=1).mean())


def test_a_decision_gives_every_label_over_its_threshold():
    decision = Decision(True, (0.5, 0.2, 0.9))
    probs = decision.probabilities(np.array([[0.0, -1.0, 3.0], [2.0, -2.0, 1.0]]))
    assert probs[0, 0] == pytest.approx(0.5)
    assert decision.chosen(probs).tolist() == [[True, True, True], [True, False, False]]
    assert Decision().chosen(np.array([[0.2, 0.8]])).tolist() == [[False, True]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"multi_label": "yes"}, 'expected a JSON object with "multi_label": true or false'),
        ({"multi_label": True, "thresholds": {"a": 0.5}}, "thresholds must give one number"),
        ({"multi_label": True, "thresholds": {"a": 0.5, "b": 1.2}}, "the threshold of 'b' is 1.2"),
        ({"multi_label": True, "thresholds": {"a": 0.5, "b": 0}}, "the threshold of 'b' is 0;"),
    ],
)
def test_a_bad_decision_file_is_one_line(raw, message, tmp_path):
    with pytest.raises(CheckpointError) as exc:
        read(tmp_path, ["a", "b"], raw)
    assert message in str(exc.value) and str(tmp_path / "decision.json") in str(exc.value)


# --- data ---------------------------------------------------------------------------------------


def test_cells_joined_by_the_separator_are_multi_label(tmp_path):
    from textlstm.data import load_splits
    from textlstm.recipe import DataConfig

    lines = ["text,tags"] + [f"text {i},{'a|b' if i % 2 else 'c'}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    cfg = DataConfig(dataset=str(tmp_path / "d.csv"), label="tags", label_separator="|")
    splits = load_splits(cfg)
    assert splits.multi_label and splits.labels == ["a", "b", "c"]
    assert sorted(map(tuple, splits["train"]["label"])) <= [(0, 1), (2,)] * 20


def test_an_empty_label_list_names_its_row(tmp_path):
    from textlstm.data import load_splits
    from textlstm.recipe import DataConfig

    records = rows(20, 2)
    records[6]["labels"] = []
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(DataError) as exc:
        load_splits(DataConfig(dataset=str(path), label="labels"))
    assert str(exc.value) == (
        f"{path}: split 'train' row 7: an empty label list; every row needs at least one label "
        "(give texts with none a label of their own, e.g. 'none')"
    )


def test_a_label_smoothing_recipe_is_refused_before_a_folder_is_made(tmp_path):
    from textlstm.recipe import load_recipe
    from textlstm.training import train

    recipe = load_recipe(multi_recipe(tmp_path, "label_smoothing = 0.1\n"))
    with pytest.raises(RecipeError, match=r"train\.label_smoothing: spreads one class"):
        train(recipe, tmp_path / "runs", device="cpu")
    assert not (tmp_path / "runs").exists()


# --- a trained run ------------------------------------------------------------------------------


def test_the_run_keeps_thresholds_tuned_on_validation(multi_run):
    decision = json.loads((multi_run / "decision.json").read_text())
    meta = json.loads((multi_run / "meta.json").read_text())
    assert decision["multi_label"] is True and meta["multi_label"] is True
    assert sorted(decision["thresholds"]) == ["anger", "joy", "music"]
    assert all(0 < t < 1 for t in decision["thresholds"].values())
    assert meta["validation"]["micro_f1"] > 0.7  # the task is learnable in a few epochs


def test_evaluating_the_validation_split_reproduces_the_kept_scores(multi_run):
    from textlstm.evaluation.evaluate import evaluate

    meta = json.loads((multi_run / "meta.json").read_text())
    done = evaluate(multi_run, split="validation", device="cpu")
    rep = done.report
    assert rep.multi_label and rep.confusion == []
    assert rep.metric("micro_f1") == pytest.approx(meta["validation"]["micro_f1"], abs=1e-6)
    assert rep.macro_f1 == pytest.approx(meta["validation"]["macro_f1"], abs=1e-6)
    assert [c.label for c in rep.per_class] == ["anger", "joy", "music"]
    assert done.plot_path.name == "eval-validation-labels.png" and done.plot_path.is_file()


def test_predictions_give_every_label_over_its_threshold(multi_run):
    from textlstm.predict.predictor import Predictor

    predictor = Predictor.load(multi_run, device="cpu")
    thresholds = predictor.decision.thresholds
    texts = ["the guitar song was great superb lovely", "awful dreadful furious scene", "the"]
    for p in predictor.predict(texts):
        over = [name for name, t in zip(predictor.labels, thresholds) if p.scores[name] >= t]
        assert sorted(p.labels) == sorted(over)
        assert p.labels == sorted(p.labels, key=lambda n: -p.scores[n])
        assert p.label == max(p.scores, key=p.scores.get)
    both = predictor.predict(texts[:1])[0]
    assert set(both.labels) >= {"music"}


def test_the_cli_writes_the_labels_given(multi_run, tmp_path):
    (tmp_path / "in.txt").write_text("great guitar song\nawful film\n")
    runner = CliRunner()
    for out in ("p.jsonl", "p.csv"):
        result = runner.invoke(
            app, ["predict", str(multi_run), str(tmp_path / "in.txt"), "-o", str(tmp_path / out)]
        )
        assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    table = (tmp_path / "p.csv").read_text().splitlines()
    assert table[0].startswith("labels,label,score,p_anger")
    assert [row.split(",")[0] for row in table[1:]] == ["|".join(r["labels"]) for r in records]


def test_the_export_and_its_standalone_script_decide_alike(multi_run, tmp_path):
    from textlstm.export.onnx import export_onnx
    from textlstm.predict.exported import OnnxPredictor
    from textlstm.predict.predictor import Predictor

    folder = export_onnx(multi_run, tmp_path / "onnx").folder
    texts = ["great guitar song", "awful furious", "drums and melody", "the plot"]
    expected = Predictor.load(multi_run, device="cpu").predict(texts)
    got = OnnxPredictor.open(folder).predict(texts)
    assert [p.labels for p in got] == [p.labels for p in expected]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = subprocess.run(
        [sys.executable, str(folder / "predict.py"), str(tmp_path / "in.txt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["labels"] for r in records] == [p.labels for p in expected]
    for record, p in zip(records, expected):
        assert record["scores"][p.label] == pytest.approx(p.score, abs=1e-4)


def test_the_server_returns_the_labels_given(multi_run):
    from fastapi.testclient import TestClient

    from textlstm.predict.predictor import Predictor
    from textlstm.serve.app import create_app

    predictor = Predictor.load(multi_run, device="cpu")
    texts = ["great guitar song", "awful furious"]
    with TestClient(create_app(predictor)) as client:
        got = client.post("/predict", json={"texts": texts}).json()["predictions"]
        meta = client.get("/metadata").json()
    assert [g["labels"] for g in got] == [p.labels for p in predictor.predict(texts)]
    assert meta["decision"]["multi_label"] is True


def test_the_baseline_is_one_vs_rest_with_tuned_thresholds(multi_run):
    from textlstm.evaluation.evaluate import evaluate

    done = evaluate(multi_run, device="cpu", baseline=True)
    assert done.baseline is not None and done.baseline.report.multi_label
    assert done.baseline.method.startswith("one-vs-rest TF-IDF")
    assert done.baseline.report.metric("micro_f1") > 0.5


def test_a_threshold_outside_zero_and_one_in_the_run_is_one_line(multi_run, tmp_path):
    import shutil

    copy = Path(shutil.copytree(multi_run, tmp_path / "run"))
    raw = json.loads((copy / "decision.json").read_text())
    raw["thresholds"]["joy"] = 1.5
    (copy / "decision.json").write_text(json.dumps(raw))
    (tmp_path / "in.txt").write_text("great\n")
    result = CliRunner().invoke(app, ["predict", str(copy), str(tmp_path / "in.txt")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {copy / 'decision.json'}: the threshold of 'joy' is 1.5; give a number "
        "between 0 and 1 (exclusive)"
    )


def test_a_coverage_on_a_multi_label_run_is_one_line_and_writes_nothing(multi_run, tmp_path):
    (tmp_path / "in.txt").write_text("great\n")
    out = tmp_path / "p.jsonl"
    argv = [
        "predict",
        str(multi_run),
        str(tmp_path / "in.txt"),
        "--coverage",
        "0.9",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.strip() == (
        f"error: {multi_run}: --coverage gives sets with a coverage guarantee for single-label "
        "runs; a multi-label run already gives every label over its threshold (drop it)"
    )


def test_tune_searches_a_multi_label_recipe_on_micro_f1(tmp_path):
    from textlstm.recipe import load_recipe
    from textlstm.tuning import tune

    extra = (
        '\n[tune]\ntrials = 2\nmetric = "micro_f1"\n[tune.space]\n'
        '"train.lr" = { log_uniform = [3e-3, 3e-2] }\n'
    )
    path = multi_recipe(tmp_path, records=rows(120, 3))
    path.write_text(path.read_text() + extra)
    done = tune(load_recipe(path), tmp_path / "runs", device="cpu", prune=False, retrain=True)
    assert len(done.trials) == 2 and 0 < done.best_value <= 1
    trials = [json.loads((Path(t.run_dir) / "meta.json").read_text()) for t in done.trials]
    assert all(m["metric"] == "micro_f1" and m["multi_label"] for m in trials)
    assert max(m["validation"]["micro_f1"] for m in trials) == pytest.approx(done.best_value)
    assert done.retrained is not None  # on train + validation: no rows left to calibrate on
    retrained = json.loads((done.retrained.run_dir / "decision.json").read_text())
    assert retrained["temperature"] == 1.0 and retrained["multi_label"]


def test_explain_explains_each_label_a_text_is_given(multi_run):
    from textlstm.explain import Explainer
    from textlstm.predict.predictor import Predictor

    texts = ["great superb guitar song drums", "the plot"]
    given = [p.labels or [p.label] for p in Predictor.load(multi_run, device="cpu").predict(texts)]
    explained = Explainer.load(multi_run, "cpu", steps=16).explain(texts)
    assert [(e.text, e.label) for e in explained] == [
        (t, name) for t, labels in zip(texts, given) for name in labels
    ]
    assert len(explained) > len(texts)  # the first text is given more than one label


def test_the_bag_and_the_linear_model_serve_multi_label_runs_too(tmp_path):
    from textlstm.evaluation.evaluate import evaluate
    from textlstm.export.onnx import export_onnx
    from textlstm.predict.exported import OnnxPredictor
    from textlstm.predict.predictor import Predictor
    from textlstm.recipe import load_recipe
    from textlstm.training import train

    wide = 'pooling = "concat"\nngrams = 2\nwide = "nblr"\nwide_buckets = 4096\n'
    path = multi_recipe(tmp_path)
    path.write_text(path.read_text().replace("[model]\n", "[model]\n" + wide))
    run = train(load_recipe(path), tmp_path / "runs", device="cpu").run_dir
    meta = json.loads((run / "meta.json").read_text())
    assert meta["wide"]["scale"] > 0  # the linear scores joined the network's
    rep = evaluate(run, split="validation", device="cpu").report
    assert rep.macro_f1 == pytest.approx(meta["validation"]["macro_f1"], abs=1e-6)
    texts = ["great guitar song", "awful furious", "the plot"]
    expected = Predictor.load(run, device="cpu").predict(texts)
    got = OnnxPredictor.open(export_onnx(run, tmp_path / "onnx").folder).predict(texts)
    assert [p.labels for p in got] == [p.labels for p in expected]
